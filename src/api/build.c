/* api — the Build API (Mendix-compatible) under /api/1/apps/<AppId>/packages, and Slipway's own
 * build endpoints under /api/slipway/apps/<AppId>/packages/<PackageId>/ (log, cancel, manifest,
 * details) and /api/slipway/apps/<AppId>/usage. A build answers at once with its PackageId; the
 * engine (builder/runner) runs it.
 *
 * The log can be followed while the build is Queued or Building (?follow=true: chunked text;
 * Accept: text/event-stream: Server-Sent Events, ending with an `end` event that carries the
 * Status and Reason). The stream sends what the log has, then what the engine appends, and ends
 * once the package has ended: http_answer_follow (http.h) streams it, blocking its HTTP worker
 * thread meanwhile, and reads the package's status at most once per wake-up. It stops when the
 * client goes away, after 24 h, or when the server stops. At most --threads minus one streams
 * follow at once, so that one worker always stays free.
 *
 * Download URLs (?url=true) are signed URLs (api_signed_url): they work without credentials until
 * they expire.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* A package as the Build API shows it, plus "Reason" (why a build failed) when there is one:
 * an extra field, which clients ignore. */
json_t *api_package_json(const struct store_package *p)
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
    return json_array_append_new(arg, api_package_json(p)) ? -ENOMEM : 0;
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

void api_package_url(json_t *j, const struct store_app *app, const struct store_package *p)
{
    if (p->status != PKG_SUCCEEDED)
        return;
    char path[STORE_APPID_MAX + CRYPTO_UUID_LEN + 64];
    snprintf(path, sizeof(path), "/api/1/apps/%s/packages/%s/download", app->app_id, p->package_id);
    char *url = api_signed_url(path, URL_TTL_S);
    if (url)
        json_object_set_new(j, "Url", json_pack("{s:s,s:i}", "Location", url, "TTL", URL_TTL_S));
    free(url);
}

void api_build_get(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct store_package p = caller->package;
    json_t *j = api_package_json(&p);
    if (http_query_bool(req, "url"))
        api_package_url(j, &app, &p);
    api_json(res, 200, j);
}

/* A download is allowed with credentials, or with a signed URL that has not expired (the
 * dispatcher checks either). */
void api_build_download(struct http_request *req, struct http_response *res,
                        const struct api_caller *caller)
{
    struct store_package p = caller->package;
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
    struct store_package p = caller->package;
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
    struct store_package p = caller->package;
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
    (void)req;
    const struct store_package p = caller->package;
    json_t *j = api_package_json(&p);
    json_object_set_new(j, "Branch", json_string(p.branch));
    json_object_set_new(j, "Revision", json_string(p.revision));
    json_object_set_new(j, "RevisionNumber", json_integer(p.revision_number));
    json_object_set_new(j, "Sha256", json_string(p.sha256));
    json_object_set_new(j, "Source", json_string(p.upload ? "upload" : "build"));
    json_object_set_new(j, "Reason", json_string(p.reason));
    api_json(res, 200, j);
}

/* ---- the build log, whole or followed ---- */

void api_stop_streams(void)
{
    api_git_stop();
}

/* Whether a followed build has ended, for http_answer_follow. */
struct log_end {
    char package_id[37];
    bool asked; /* the first answer is the handler's reading of the package */
    enum store_pkg_status status;
    char reason[STORE_REASON_MAX + 1];
};

static int log_end_done(void *arg, struct strbuf *end)
{
    struct log_end *e = arg;
    if (e->asked) {
        struct store_package p;
        int r = store_package_get(e->package_id, &p);
        if (r == -ENOENT)
            return -1; /* deleted meanwhile */
        if (r)
            return 0; /* asked again at the next wake-up */
        e->status = p.status;
        snprintf(e->reason, sizeof(e->reason), "%s", p.reason);
    }
    e->asked = true;
    /* the engine writes the whole log before it records the end */
    if (e->status != PKG_SUCCEEDED && e->status != PKG_FAILED)
        return 0;
    strbuf_adds(end, "{\"Status\":");
    strbuf_add_json_str(end, store_pkg_status_name(e->status));
    strbuf_adds(end, ",\"Reason\":");
    strbuf_add_json_str(end, e->reason);
    strbuf_addch(end, '}');
    return 1;
}

/* Answers the log as a stream that ends with the build (at once when it has ended). */
static void log_follow_start(struct http_request *req, struct http_response *res,
                             const struct store_package *p, bool sse)
{
    struct log_end *e = calloc(1, sizeof(*e));
    char *path = packages_log_path(p);
    if (!e || !path) {
        free(e);
        free(path);
        api_fail(req, res, 500, "INTERNAL_ERROR", "out of memory");
        return;
    }
    memcpy(e->package_id, p->package_id, sizeof(e->package_id));
    e->status = p->status;
    snprintf(e->reason, sizeof(e->reason), "%s", p->reason);
    struct http_follow opts = {
        .path = path, .fd = -1, .sse = sse, .done = log_end_done, .free = free, .arg = e};
    int r = http_answer_follow(req, res, &opts);
    free(path);
    if (r == -EBUSY) {
        http_res_header(res, "Retry-After", "10");
        api_fail(req, res, 503, "TOO_MANY_FOLLOWERS",
                 "%u clients follow build logs already, the most this server allows (one fewer "
                 "than its --threads %u): try again later, or read the log without following",
                 http_follow_limit(req), api_cfg.threads);
    } else if (r) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot follow the build log");
    }
}

void api_build_log(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    struct store_package p = caller->package;
    const char *accept = http_header(req, "Accept");
    bool sse = accept && strcasestr(accept, "text/event-stream");
    bool live = p.status == PKG_QUEUED || p.status == PKG_BUILDING;
    if (sse || (live && http_query_bool(req, "follow"))) {
        log_follow_start(req, res, &p, sse);
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
    struct store_package p = caller->package;
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
