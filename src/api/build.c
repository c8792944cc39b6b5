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
#include "builder/runner.h"
#include "base/banned.h"

#define URL_TTL_S    900
#define MANIFEST_MAX (16 * 1024 * 1024)

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
    int r = strlen(req->params[1]) == CRYPTO_UUID_LEN - 1 ? store_package_get(req->params[1], p)
                                                          : -ENOENT;
    if (!r && p->app != app->id)
        r = -ENOENT;
    if (r == -ENOENT)
        return api_fail(req, res, 404, "PACKAGE_NOT_FOUND", "Package or build job not found");
    if (r)
        return api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the package");
    return 0;
}

static bool version_valid(const char *v)
{
    /* major.minor.patch, each 1-9 digits without a leading zero ("0" itself is fine): "01.0.0"
     * would make a tag that sorts and reads as another version's */
    for (int part = 0; part < 3; part++) {
        size_t n = strspn(v, "0123456789");
        if (n < 1 || n > 9 || (n > 1 && v[0] == '0'))
            return false;
        v += n;
        if (part < 2 && *v++ != '.')
            return false;
    }
    return *v == '\0';
}

/* POSTs check the version tag and queue their build one at a time, so that two builds that
 * would put the same tag on different commits cannot both pass the check. */
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;

/* A build of commit c puts the tag `tag` (<Version>.<Number>) on it. The tag must not name
 * another commit already, nor be what a queued or running build will put on another commit
 * (tags are unique, as on Mendix's Team Server); on the same commit it is a rebuild, and fine.
 * Call with queue_lock held. 0, or -1 with 409 TAG_EXISTS (or 500) answered. */
static int tag_check(struct http_request *req, struct http_response *res,
                     const struct store_app *app, struct vcs_repo *repo, const struct vcs_commit *c,
                     const char *branch, const char *tag)
{
    char named[VCS_OID_HEX];
    int r = vcs_tag_lookup(repo, tag, named);
    if (!r && strcmp(named, c->id))
        return api_fail(req, res, 409, "TAG_EXISTS",
                        "the tag '%s' exists on %s%s; this build would put it on commit %s "
                        "(revision %lld of '%.60s'): a tag names one commit, choose another "
                        "Version",
                        tag, named[0] ? "commit " : "something that is not a commit", named, c->id,
                        (long long)c->number, branch);
    if (r && r != -ENOENT)
        return api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the tags");
    struct store_package holder;
    r = store_package_find_pending(app->id, tag, c->id, &holder);
    if (r && r != -ENOENT)
        return api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list packages");
    if (!r)
        return api_fail(req, res, 409, "TAG_EXISTS",
                        "build %s (%s) will put the tag '%s' on commit %s (revision %lld of "
                        "'%.60s'); this build would put it on commit %s (revision %lld of "
                        "'%.60s'): a tag names one commit, choose another Version",
                        holder.package_id, store_pkg_status_name(holder.status), tag,
                        holder.revision, (long long)holder.revision_number, holder.branch, c->id,
                        (long long)c->number, branch);
    return 0;
}

void api_build_start(struct http_request *req, struct http_response *res,
                     const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    const struct auth_principal *who = &caller->who;
    struct vcs_repo *repo;
    struct vcs_commit c = {0};
    json_t *body = NULL;
    const char *why;
    if (!(body = api_body_object(req, res)))
        goto out;
    const char *branch = api_str(body, "Branch"), *revision = api_str(body, "Revision");
    const char *version = api_str(body, "Version"), *desc = api_str(body, "Description");
    json_t *rev_num = json_object_get(body, "Revision");
    char rev_buf[32];
    if (!revision && json_is_integer(rev_num)) { /* some clients send the Number as a number */
        snprintf(rev_buf, sizeof(rev_buf), "%lld", (long long)json_integer_value(rev_num));
        revision = rev_buf;
    }
    if (!branch || !revision || !version || !*revision || !*version) {
        api_fail(req, res, 400, "INVALID_PARAMETERS", "Please set Branch, Revision and Version");
        goto out;
    }
    if (!version_valid(version)) {
        api_fail(req, res, 400, "INVALID_VERSION",
                 "the Version '%.40s' must be major.minor.patch, like 2.3.5", version);
        goto out;
    }
    if (desc && strlen(desc) > STORE_DESC_MAX) {
        api_fail(req, res, 400, "INVALID_PARAMETERS", "the Description is longer than %d bytes",
                 STORE_DESC_MAX);
        goto out;
    }
    if (api_repo_open(req, res, &app, &repo))
        goto out;
    const char *git_name;
    int r = api_branch_name(repo, &app, branch, &git_name, NULL);
    if (r == -ENOENT) {
        api_fail(req, res, 404, "BRANCH_NOT_FOUND", "app '%s' has no branch '%.255s'", app.app_id,
                 branch);
        goto out;
    }
    r = r ? r : vcs_revision_find(repo, git_name, revision, &c);
    if (r == -ENOENT) {
        api_fail(req, res, 404, "REVISION_NOT_FOUND",
                 "branch '%.255s' has no revision '%.64s' (a revision Number or a commit hash "
                 "on the branch)",
                 git_name, revision);
        goto out;
    }
    if (r) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the revision");
        goto out;
    }
    if (!runner_can_build(&why)) {
        api_fail(req, res, 500, "BUILD_FAILED", "%s", why);
        goto out;
    }
    struct store_package p = {.app = app.id, .status = PKG_QUEUED};
    snprintf(p.version, sizeof(p.version), "%s.%lld", version, (long long)c.number);
    snprintf(p.branch, sizeof(p.branch), "%s", git_name);
    snprintf(p.revision, sizeof(p.revision), "%s", c.id);
    p.revision_number = c.number;
    snprintf(p.description, sizeof(p.description), "%s", desc ? desc : "");
    snprintf(p.creator, sizeof(p.creator), "%s", who->user.name);
    snprintf(p.name, sizeof(p.name), "%s-%s.tar.zst", git_name, p.version);
    for (char *s = p.name; *s; s++)
        if (*s == '/')
            *s = '-';
    pthread_mutex_lock(&queue_lock);
    if (tag_check(req, res, &app, repo, &c, git_name, p.version)) {
        pthread_mutex_unlock(&queue_lock);
        goto out;
    }
    r = crypto_uuid(p.package_id) || store_package_insert(&p);
    pthread_mutex_unlock(&queue_lock);
    if (r) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot queue the build");
        goto out;
    }
    runner_wake();
    char detail[128];
    snprintf(detail, sizeof(detail), "package=%s version=%s", p.package_id, p.version);
    api_audit(req, who->user.email, "build", app.app_id, "", 201, detail);
    api_json(res, 201, json_pack("{s:s}", "PackageId", p.package_id));
out:
    vcs_commit_release(&c);
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
    char *path = runner_package_path(api_cfg.data_dir, app.app_id, p.package_id);
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
    if (store_package_in_use(p.package_id)) {
        api_fail(req, res, 409, "PACKAGE_IN_USE", "an environment holds this package");
        return;
    }
    if (p.status == PKG_QUEUED || p.status == PKG_BUILDING) {
        api_fail(req, res, 409, "PACKAGE_IN_USE",
                 "the package is still building: cancel it "
                 "first");
        return;
    }
    char *path = runner_package_path(api_cfg.data_dir, app.app_id, p.package_id);
    char *log = runner_log_path(api_cfg.data_dir, p.package_id);
    if (store_package_delete(p.id)) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot delete the package");
    } else {
        if (path)
            unlink(path);
        if (log)
            unlink(log);
        api_json(res, 200, json_object());
    }
    free(path);
    free(log);
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
    char *path = runner_package_path(api_cfg.data_dir, app.app_id, p.package_id);
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
    char *path = runner_log_path(api_cfg.data_dir, p->package_id);
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
    const struct store_app app = caller->app;
    struct store_package p;
    if (find_package(req, res, &app, &p))
        return;
    const char *accept = http_header(req, "Accept");
    bool sse = accept && strcasestr(accept, "text/event-stream");
    bool live = p.status == PKG_QUEUED || p.status == PKG_BUILDING;
    if (sse || (live && http_query_bool(req, "follow"))) {
        log_follow_start(req, res, &p, sse);
        return;
    }
    char *path = runner_log_path(api_cfg.data_dir, p.package_id);
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
    char *log = runner_log_path(api_cfg.data_dir, p->package_id);
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
    int r = store_package_cancel(p.package_id);
    if (r == -EALREADY) {
        api_fail(req, res, 409, "BUILD_ENDED", "the build has ended already (%s)",
                 store_pkg_status_name(p.status));
        return;
    }
    if (r) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot cancel the build");
        return;
    }
    runner_wake();
    api_audit(req, who->user.email, "build cancel", app.app_id, "", 202, p.package_id);
    api_json(res, 202, json_pack("{s:s}", "PackageId", p.package_id));
}
