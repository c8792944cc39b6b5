/* api — the Build API (Mendix-compatible) under /api/1/apps/<AppId>/packages, and Slipway's own
 * build endpoints under /api/slipway/apps/<AppId>/packages/<PackageId>/ (log, cancel, manifest,
 * details) and /api/slipway/apps/<AppId>/usage. A build answers at once with its PackageId; the
 * engine (builder/runner) runs it.
 *
 * The log can be followed while the build is Queued or Building (?follow=true: chunked text;
 * Accept: text/event-stream: Server-Sent Events, ending with an `end` event that carries the
 * Status and Reason). The stream sends what the log has, then what the engine appends, and ends
 * once the package has ended. It blocks its HTTP worker thread meanwhile: it waits in poll() on
 * inotify (or 100 ms ticks) and the client's socket, reads the package's status once per wake-up,
 * and stops when the client goes away, after 24 h, or at api_stop_streams(). At most --threads
 * minus one streams follow at once, so that one worker always stays free.
 *
 * Download URLs (?url=true) are signed URLs (api_signed_url): they work without credentials until
 * they expire.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/admin.h"
#include "api/api_int.h"
#include "base/crypto.h"
#include "base/log.h"
#include "base/util.h"
#include "builder/package.h"
#include "builder/packages.h"
#include "base/banned.h"

#define URL_TTL_S    900
#define MANIFEST_MAX (16 * 1024 * 1024)

#define FOLLOW_POLL_MS      100
#define FOLLOW_MAX_NS       (24 * 3600 * 1000000000LL) /* no build runs longer (build.timeout) */
#define FOLLOW_KEEPALIVE_NS (15 * 1000000000LL)        /* SSE comment after this much silence */
#define FOLLOW_READ         (64 * 1024)                /* bytes of log read at once */
#define FOLLOW_LINE_MAX     (16 * 1024)                /* SSE: a longer line is sent in pieces */
#define FOLLOW_OUT_MAX      (1024 * 1024) /* one event: SSE adds 7 bytes to each line */

/* A package as the Build API shows it, plus "Reason" (why a build failed) when there is one:
 * an extra field, which clients ignore. */
static json_t *package_json(const struct store_package *p)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:I}", "PackageId", p->package_id, "Name",
                          p->name, "Description", p->description, "Version", p->version, "Creator",
                          p->creator, "CreationDate", (json_int_t)p->created_ms, "Status",
                          store_pkg_status_name(p->status), "Size", (json_int_t)p->size);
    if (j && p->reason[0])
        json_object_set_new(j, "Reason", api_text(p->reason));
    return j;
}

/* Finds the package of the second route parameter in the app. -1 with 404 answered. */
static int find_package(struct http_request *req, struct http_response *res,
                        const struct store_app *app, struct store_package *p)
{
    struct packages_error err;
    int r = packages_find(app, req->params[1], p, &err);
    if (r == PACKAGES_NOT_FOUND)
        return api_fail(req, res, 404, "PACKAGE_NOT_FOUND", "%s", err.message);
    if (r)
        return api_fail(req, res, 500, "INTERNAL_ERROR", "%s", err.message);
    return 0;
}

void api_build_start(struct http_request *req, struct http_response *res,
                     const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    const struct auth_principal *who = &caller->who;
    struct vcs_repo *repo;
    struct packages_error err;
    struct store_package p;
    json_t *body = NULL;
    if (!(body = api_body_object(req, res)))
        goto out;
    const char *branch = api_str(body, "Branch"), *revision = api_str(body, "Revision");
    json_t *rev_num = json_object_get(body, "Revision");
    char rev_buf[32];
    if (!revision && json_is_integer(rev_num)) { /* some clients send the Number as a number */
        snprintf(rev_buf, sizeof(rev_buf), "%lld", (long long)json_integer_value(rev_num));
        revision = rev_buf;
    }
    struct packages_build b = {.revision = revision,
                               .version = api_str(body, "Version"),
                               .description = api_str(body, "Description"),
                               .creator = who->user.name};
    if (!branch || !revision || !b.version || !*revision || !*b.version) {
        api_fail(req, res, 400, "INVALID_PARAMETERS", "Please set Branch, Revision and Version");
        goto out;
    }
    /* the request's own fields first, then what needs the repository */
    int r = packages_build_check(&b, &err);
    if (!r) {
        if (api_repo_open(req, res, &app, &repo))
            goto out;
        r = api_branch_name(repo, &app, branch, &b.branch, NULL);
        if (r == -ENOENT) {
            api_fail(req, res, 404, "BRANCH_NOT_FOUND", "app '%s' has no branch '%.255s'",
                     app.app_id, branch);
            goto out;
        }
        if (r) {
            api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the revision");
            goto out;
        }
        r = packages_queue(&app, repo, &b, &p, &err);
    }
    switch (r) {
    case PACKAGES_OK:
        break;
    case PACKAGES_INVALID_VERSION:
        api_fail(req, res, 400, "INVALID_VERSION", "%s", err.message);
        goto out;
    case PACKAGES_INVALID:
        api_fail(req, res, 400, "INVALID_PARAMETERS", "%s", err.message);
        goto out;
    case PACKAGES_REVISION_NOT_FOUND:
        api_fail(req, res, 404, "REVISION_NOT_FOUND", "%s", err.message);
        goto out;
    case PACKAGES_REFUSED:
        api_fail(req, res, 500, "BUILD_FAILED", "%s", err.message);
        goto out;
    case PACKAGES_TAG_EXISTS:
        api_fail(req, res, 409, "TAG_EXISTS", "%s", err.message);
        goto out;
    default:
        api_fail(req, res, 500, "INTERNAL_ERROR", "%s", err.message);
        goto out;
    }
    char detail[128];
    snprintf(detail, sizeof(detail), "package=%s version=%s", p.package_id, p.version);
    api_audit(req, who->user.email, "build", app.app_id, "", 201, detail);
    api_json(res, 201, json_pack("{s:s}", "PackageId", p.package_id));
out:
    json_decref(body);
}

static int add_package(const struct store_package *p, void *arg)
{
    return json_array_append_new(arg, package_json(p)) ? -ENOMEM : 0;
}

void api_build_list(struct http_request *req, struct http_response *res,
                    const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    json_t *arr = json_array();
    if (store_package_each(app.id, add_package, arr)) {
        json_decref(arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list packages");
        return;
    }
    api_json(res, 200, arr);
}

void api_build_get(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct store_package p;
    if (find_package(req, res, &app, &p))
        return;
    json_t *j = package_json(&p);
    if (http_query_bool(req, "url") && p.status == PKG_SUCCEEDED) {
        char path[STORE_APPID_MAX + CRYPTO_UUID_LEN + 64];
        snprintf(path, sizeof(path), "/api/1/apps/%s/packages/%s/download", app.app_id,
                 p.package_id);
        char *url = api_signed_url(path, URL_TTL_S);
        if (url)
            json_object_set_new(j, "Url",
                                json_pack("{s:s,s:i}", "Location", url, "TTL", URL_TTL_S));
        free(url);
    }
    api_json(res, 200, j);
}

/* A download is allowed with credentials, or with a signed URL that has not expired (the
 * dispatcher checks either). */
void api_build_download(struct http_request *req, struct http_response *res,
                        const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct store_package p;
    if (find_package(req, res, &app, &p))
        return;
    if (p.status != PKG_SUCCEEDED) {
        api_fail(req, res, 500, "BUILD_NOT_SUCCEEDED", "the package's build has not succeeded");
        return;
    }
    char *path = packages_file_path(&p);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    free(path);
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        api_fail(req, res, 500, "INTERNAL_ERROR", "the package file is missing");
        return;
    }
    res->status = 200;
    res->file_fd = fd;
    res->file_size = (uint64_t)st.st_size;
    snprintf(res->content_type, sizeof(res->content_type), "application/zstd");
    char disp[STORE_NAME_MAX + 64];
    snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", p.name);
    http_res_header(res, "Content-Disposition", disp);
}

void api_build_delete(struct http_request *req, struct http_response *res,
                      const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct store_package p;
    if (find_package(req, res, &app, &p))
        return;
    struct packages_error err;
    int r = packages_delete(&p, &err);
    if (r == PACKAGES_IN_USE || r == PACKAGES_BUILDING)
        api_fail(req, res, 409, "PACKAGE_IN_USE", "%s", err.message);
    else if (r == PACKAGES_NOT_FOUND)
        api_fail(req, res, 404, "PACKAGE_NOT_FOUND", "%s", err.message);
    else if (r)
        api_fail(req, res, 500, "INTERNAL_ERROR", "%s", err.message);
    else
        api_json(res, 200, json_object());
}

/* ---- Slipway's own ---- */

/* The package's manifest.json: the first entry of the package file (the package was checked
 * when it was written or uploaded). */
void api_build_manifest(struct http_request *req, struct http_response *res,
                        const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct store_package p;
    if (find_package(req, res, &app, &p))
        return;
    if (p.status != PKG_SUCCEEDED) {
        api_fail(req, res, 404, "PACKAGE_NOT_FOUND",
                 "the package has no manifest: its build "
                 "has not succeeded");
        return;
    }
    char *path = packages_file_path(&p);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    free(path);
    json_t *manifest = NULL;
    char err[256] = "";
    int r = fd >= 0 ? package_read_manifest(fd, NULL, &manifest, err, sizeof(err)) : -ENOENT;
    if (fd >= 0)
        close(fd);
    if (r) {
        log_error("package %s: cannot read its manifest: %s", p.package_id,
                  err[0] ? err : strerror(-r));
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the package's manifest");
        return;
    }
    api_json(res, 200, manifest);
}

void api_build_details(struct http_request *req, struct http_response *res,
                       const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct store_package p;
    if (find_package(req, res, &app, &p))
        return;
    json_t *j = package_json(&p);
    json_object_set_new(j, "Branch", json_string(p.branch));
    json_object_set_new(j, "Revision", json_string(p.revision));
    json_object_set_new(j, "RevisionNumber", json_integer(p.revision_number));
    json_object_set_new(j, "Sha256", json_string(p.sha256));
    json_object_set_new(j, "Source", json_string(p.upload ? "upload" : "build"));
    json_object_set_new(j, "Reason", json_string(p.reason));
    api_json(res, 200, j);
}

/* ---- the build log, whole or followed ---- */

static atomic_bool streams_stopping;
static atomic_uint nr_followers;

void api_stop_streams(void)
{
    atomic_store(&streams_stopping, true);
    api_git_stop();
}

/* One followed log. Lives from the handler until the server calls follow_free. */
struct log_follow {
    char package_id[37];
    char *path;     /* the build log */
    int log_fd;     /* -1 until the engine has created the log */
    int inotify_fd; /* wakes the wait when the log changes; -1 without inotify (100 ms ticks) */
    int conn_fd;    /* the client's socket, polled for POLLRDHUP; -1 if unknown */
    bool sse;
    bool live;         /* counted in nr_followers */
    uint64_t offset;   /* bytes of the log read */
    struct strbuf out; /* formatted bytes not yet handed to the server, from out_off */
    size_t out_off;
    struct strbuf line; /* SSE: the start of a line whose end has not been read yet */
    bool final;         /* the build has ended: read to the end of the log, then end */
    bool ended;         /* the end is in `out`: the stream ends once it is sent */
    enum store_pkg_status status;
    char reason[STORE_REASON_MAX + 1];
    int64_t deadline_ns, keepalive_ns;
};

static void follow_free(void *arg)
{
    struct log_follow *f = arg;
    if (f->log_fd >= 0)
        close(f->log_fd);
    if (f->inotify_fd >= 0)
        close(f->inotify_fd);
    if (f->live)
        atomic_fetch_sub(&nr_followers, 1);
    strbuf_release(&f->out);
    strbuf_release(&f->line);
    free(f->path);
    free(f);
}

/* One SSE event of text (whole lines; the last terminator is not a line of its own): each line
 * a `data:` field. CR, LF and CRLF all end lines, as for an SSE parser. */
static void sse_event(struct strbuf *out, uint64_t id, const char *text, size_t len)
{
    strbuf_addf(out, "id: %" PRIu64 "\n", id);
    size_t i = 0;
    do {
        size_t j = i;
        while (j < len && text[j] != '\n' && text[j] != '\r')
            j++;
        strbuf_adds(out, "data: ");
        strbuf_add(out, text + i, j - i);
        strbuf_addch(out, '\n');
        if (j + 1 < len && text[j] == '\r' && text[j + 1] == '\n')
            j++;
        i = j + 1;
    } while (i < len);
    strbuf_addch(out, '\n');
}

/* New log bytes into `out`: raw, or for SSE as events of whole lines (a line waits for its end,
 * unless it grows past FOLLOW_LINE_MAX or the log is complete). The number of bytes read. */
static ssize_t follow_read(struct log_follow *f)
{
    char buf[FOLLOW_READ];
    if (f->log_fd < 0) {
        f->log_fd = open(f->path, O_RDONLY | O_CLOEXEC);
        if (f->log_fd < 0)
            return 0; /* not created yet */
        if (f->inotify_fd >= 0 &&
            inotify_add_watch(f->inotify_fd, f->path, IN_MODIFY | IN_CLOSE_WRITE) < 0) {
            close(f->inotify_fd);
            f->inotify_fd = -1;
        }
    }
    ssize_t n = pread(f->log_fd, buf, sizeof(buf), (off_t)f->offset);
    if (n < 0)
        return -1;
    f->offset += (uint64_t)n;
    if (!f->sse) {
        strbuf_add(&f->out, buf, (size_t)n);
        return n;
    }
    strbuf_add(&f->line, buf, (size_t)n);
    size_t cut = f->line.len;
    if (!(f->final && n == 0)) {
        /* up to the last line end; a CR at the very end may be the start of a CRLF */
        while (cut && f->line.buf[cut - 1] != '\n' &&
               (f->line.buf[cut - 1] != '\r' || cut == f->line.len))
            cut--;
        if (f->line.len - cut > FOLLOW_LINE_MAX)
            cut = f->line.len;
    }
    if (cut) {
        sse_event(&f->out, f->offset - (f->line.len - cut), f->line.buf, cut);
        memmove(f->line.buf, f->line.buf + cut, f->line.len - cut);
        f->line.len -= cut;
        f->line.buf[f->line.len] = '\0';
    }
    return n;
}

/* The end of the stream after the whole log: for SSE the `end` event. */
static void follow_end(struct log_follow *f)
{
    if (f->sse) {
        strbuf_adds(&f->out, "event: end\ndata: {\"Status\":");
        strbuf_add_json_str(&f->out, store_pkg_status_name(f->status));
        strbuf_adds(&f->out, ",\"Reason\":");
        strbuf_add_json_str(&f->out, f->reason);
        strbuf_adds(&f->out, "}\n\n");
    }
    f->ended = true;
}

/* Waits up to FOLLOW_POLL_MS for the log to change. -1 when the client went away. */
static int follow_wait(struct log_follow *f)
{
    struct pollfd pfd[2];
    nfds_t n = 0;
    if (f->conn_fd >= 0)
        pfd[n++] = (struct pollfd){.fd = f->conn_fd, .events = POLLRDHUP};
    if (f->inotify_fd >= 0 && f->log_fd >= 0)
        pfd[n++] = (struct pollfd){.fd = f->inotify_fd, .events = POLLIN};
    if (poll(pfd, n, FOLLOW_POLL_MS) <= 0)
        return 0;
    /* clients do not half-close while they read an answer: RDHUP means this one has gone */
    if (f->conn_fd >= 0 && (pfd[0].revents & (POLLRDHUP | POLLHUP | POLLERR)))
        return -1;
    char events[4096];
    while (f->inotify_fd >= 0 && read(f->inotify_fd, events, sizeof(events)) > 0)
        ;
    return 0;
}

/* Fills `out` with the next bytes of the stream, waiting for them as long as it takes.
 * 0 (out has bytes, or the stream has ended), or -1 to break the stream off. */
static int follow_next(struct log_follow *f)
{
    for (;;) {
        if (atomic_load(&streams_stopping) || time_mono_ns() > f->deadline_ns)
            return -1; /* cut off without the end: the client asks again to go on */
        ssize_t n = follow_read(f);
        if (n < 0 || !strbuf_ok(&f->out) || !strbuf_ok(&f->line))
            return -1;
        if (f->final && n == 0 && !f->line.len) {
            follow_end(f);
            return 0;
        }
        if (f->out.len) {
            f->keepalive_ns = time_mono_ns() + FOLLOW_KEEPALIVE_NS;
            return 0;
        }
        if (f->final || n > 0)
            continue;
        struct store_package p;
        int r = store_package_get(f->package_id, &p);
        if (r == -ENOENT)
            return -1; /* deleted meanwhile */
        if (!r && (p.status == PKG_SUCCEEDED || p.status == PKG_FAILED)) {
            /* everything the engine wrote is in the file before it records the end */
            f->final = true;
            f->status = p.status;
            snprintf(f->reason, sizeof(f->reason), "%s", p.reason);
            continue;
        }
        if (f->sse && time_mono_ns() > f->keepalive_ns) {
            strbuf_adds(&f->out, ": keep-alive\n\n");
            f->keepalive_ns = time_mono_ns() + FOLLOW_KEEPALIVE_NS;
            return 0;
        }
        if (follow_wait(f))
            return -1;
    }
}

static ssize_t follow_stream_read(void *arg, char *buf, size_t max)
{
    struct log_follow *f = arg;
    if (f->out_off == f->out.len) {
        strbuf_reset(&f->out);
        f->out_off = 0;
        if (f->ended)
            return 0;
        if (follow_next(f))
            return -1;
        if (!f->out.len)
            return 0; /* ended with nothing more to send */
    }
    size_t n = f->out.len - f->out_off;
    if (n > max)
        n = max;
    memcpy(buf, f->out.buf + f->out_off, n);
    f->out_off += n;
    return (ssize_t)n;
}

/* Answers the log as a stream (live: the build had not ended when asked). */
static void log_follow_start(struct http_request *req, struct http_response *res,
                             const struct store_package *p, bool sse, bool live)
{
    unsigned max_live = api_cfg.threads > 1 ? api_cfg.threads - 1 : 0;
    if (live && atomic_fetch_add(&nr_followers, 1) >= max_live) {
        atomic_fetch_sub(&nr_followers, 1);
        http_res_header(res, "Retry-After", "10");
        api_fail(req, res, 503, "TOO_MANY_FOLLOWERS",
                 "%u clients follow build logs already, the most this server allows (one fewer "
                 "than its --threads %u): try again later, or read the log without following",
                 max_live, api_cfg.threads);
        return;
    }
    struct log_follow *f = calloc(1, sizeof(*f));
    if (!f || !(f->path = packages_log_path(p))) {
        free(f);
        if (live)
            atomic_fetch_sub(&nr_followers, 1);
        api_fail(req, res, 500, "INTERNAL_ERROR", "out of memory");
        return;
    }
    memcpy(f->package_id, p->package_id, sizeof(f->package_id));
    f->live = live;
    f->sse = sse;
    f->log_fd = -1;
    f->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    f->conn_fd = http_conn_socket(req);
    strbuf_init(&f->out, FOLLOW_OUT_MAX);
    strbuf_init(&f->line, FOLLOW_LINE_MAX + FOLLOW_READ);
    f->final = !live;
    f->status = p->status;
    snprintf(f->reason, sizeof(f->reason), "%s", p->reason);
    f->deadline_ns = time_mono_ns() + FOLLOW_MAX_NS;
    f->keepalive_ns = time_mono_ns() + FOLLOW_KEEPALIVE_NS;
    const char *last_id = sse ? http_header(req, "Last-Event-ID") : NULL;
    int64_t resume;
    if (last_id && !parse_i64(last_id, 0, INT64_MAX, &resume)) /* EventSource reconnects */
        f->offset = (uint64_t)resume;
    http_conn_no_timeout(req);
    res->status = 200;
    snprintf(res->content_type, sizeof(res->content_type), "%s",
             sse ? "text/event-stream" : "text/plain; charset=utf-8");
    http_res_header(res, "Cache-Control", "no-cache");
    http_res_header(res, "X-Accel-Buffering", "no"); /* nginx in front: do not hold it back */
    res->stream_read = follow_stream_read;
    res->stream_free = follow_free;
    res->stream_arg = f;
}

void api_build_log(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct store_package p;
    if (find_package(req, res, &app, &p))
        return;
    const char *accept = http_header(req, "Accept");
    bool sse = accept && strcasestr(accept, "text/event-stream");
    bool live = p.status == PKG_QUEUED || p.status == PKG_BUILDING;
    if (sse || (live && http_query_bool(req, "follow"))) {
        log_follow_start(req, res, &p, sse, live);
        return;
    }
    char *path = packages_log_path(&p);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    free(path);
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        api_fail(req, res, 404, "LOG_NOT_FOUND",
                 p.status == PKG_QUEUED ? "the build has not started yet" : "no build log");
        return;
    }
    res->status = 200;
    res->file_fd = fd;
    res->file_size = (uint64_t)st.st_size;
    snprintf(res->content_type, sizeof(res->content_type), "text/plain; charset=utf-8");
}

/* ---- disk usage ---- */

struct usage {
    json_int_t packages, package_bytes, log_bytes;
};

static int add_usage(const struct store_package *p, void *arg)
{
    struct usage *u = arg;
    struct stat st;
    char *log = packages_log_path(p);
    if (!log)
        return -ENOMEM;
    u->packages++;
    u->package_bytes += p->size > 0 ? p->size : 0;
    if (stat(log, &st) == 0)
        u->log_bytes += st.st_size;
    free(log);
    return 0;
}

void api_build_usage(struct http_request *req, struct http_response *res,
                     const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct usage u = {0};
    if (store_package_each(app.id, add_usage, &u)) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list packages");
        return;
    }
    api_json(res, 200,
             json_pack("{s:s,s:I,s:I,s:I}", "AppId", app.app_id, "Packages", u.packages,
                       "PackageBytes", u.package_bytes, "LogBytes", u.log_bytes));
}

void api_build_cancel(struct http_request *req, struct http_response *res,
                      const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    const struct auth_principal *who = &caller->who;
    struct store_package p;
    if (find_package(req, res, &app, &p))
        return;
    struct packages_error err;
    int r = packages_cancel(&p, &err);
    if (r) {
        if (r == PACKAGES_ENDED)
            api_fail(req, res, 409, "BUILD_ENDED", "%s", err.message);
        else if (r == PACKAGES_NOT_FOUND)
            api_fail(req, res, 404, "PACKAGE_NOT_FOUND", "%s", err.message);
        else
            api_fail(req, res, 500, "INTERNAL_ERROR", "%s", err.message);
        return;
    }
    api_audit(req, who->user.email, "build cancel", app.app_id, "", 202, p.package_id);
    api_json(res, 202, json_pack("{s:s}", "PackageId", p.package_id));
}
