/* api — Backups API v1 (/api/1/apps/<AppId>/environments/<Mode>/snapshots, restore) and v2
 * (/api/v2/apps/<ProjectId>/environments/<EnvironmentId>/snapshots, archives, restores), as
 * shared/design/mendix-api.md §6 describes them, and the signed download of a snapshot's parts.
 * The dispatcher has found the environment and checked the caller's rights on it (API Rights +
 * Access to Backups); the work is deploy/backups'. Dates: epoch ms in v1, ISO 8601 in v2. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_int.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/util.h"
#include "deploy/backups.h"
#include "base/banned.h"

#define V1_RESTORE_WAIT_MS (240 * 1000) /* below the connections' idle timeout */
#define V2_LIST_MAX        1000

static void audit(struct http_request *req, const struct api_caller *c, const char *action,
                  int status, const char *detail)
{
    api_audit(req, c->who.user.email, action, c->app.app_id, c->env.mode, status,
              detail ? detail : "");
}

/* The status and code (per surface) of a backups error. */
static void fail(struct http_request *req, struct http_response *res, bool v2,
                 const struct backups_error *err)
{
    int status = 400;
    const char *code = "INVALID_PARAMETERS";
    switch (err->kind) {
    case BACKUPS_OK:
    case BACKUPS_E_INVALID:
        break;
    case BACKUPS_E_NOT_FOUND:
        status = v2 ? 404 : 400, code = "NOT_FOUND";
        break;
    case BACKUPS_E_NOT_STOPPED:
        code = v2 ? "INVALID_STATE" : "ERROR_NOT_ALLOWED";
        break;
    case BACKUPS_E_BUSY:
        code = v2 ? "ENVIRONMENT_BUSY" : "ERROR_NOT_ALLOWED";
        break;
    case BACKUPS_E_STATE:
        code = v2 ? "INVALID_STATE" : "INVALID_ENVIRONMENT";
        break;
    case BACKUPS_E_INTERNAL:
        status = 500, code = v2 ? "SERVICE_UNAVAILABLE" : "INTERNAL_SERVER_ERROR";
        break;
    }
    api_fail(req, res, status, code, "%s", err->message);
}

/* The snapshot params[2] names, of the caller's environment: 0, or -1 with 404 answered (v1's
 * restore answers 400 NOT_FOUND, as documented). */
static int find_snapshot(struct http_request *req, struct http_response *res,
                         const struct api_caller *c, const char *id, int status, const char *code,
                         struct store_snapshot *s)
{
    int r = strlen(id) == CRYPTO_UUID_LEN - 1 ? store_snapshot_get(id, s) : -ENOENT;
    if (!r && s->env != c->env.id)
        r = -ENOENT;
    if (r == -ENOENT)
        return api_fail(req, res, status, code, "%s has no snapshot '%.40s'", c->env.mode,
                        str_utf8_validn(id, strlen(id)) ? id : "?");
    if (r)
        return api_fail(req, res, 500, "INTERNAL_SERVER_ERROR", "cannot read the snapshot");
    return 0;
}

/* ---- v1 ---- */

static const char *v1_state(enum store_bk_state s)
{
    static const char *const names[] = {"Queued", "Running", "Completed", "Failed"};
    return (unsigned)s < 4 ? names[s] : "Failed";
}

static json_t *v1_json(const struct store_snapshot *s)
{
    return json_pack("{s:s,s:o,s:s,s:I,s:I,s:s}", "SnapshotID", s->snapshot_id, "Comment",
                     api_text(s->comment), "State", v1_state(s->state), "ExpiresOn",
                     (json_int_t)s->expires_ms, "CreatedOn", (json_int_t)s->created_ms,
                     "ModelVersion", s->model_version);
}

static int add_v1(const struct store_snapshot *s, void *arg)
{
    return json_array_append_new(arg, v1_json(s)) ? -ENOMEM : 0;
}

void api_bk1_list(struct http_request *req, struct http_response *res, const struct api_caller *c)
{
    json_t *arr = json_array();
    if (!arr || store_snapshot_each(c->env.id, 0, INT64_MAX, add_v1, arr)) {
        json_decref(arr);
        api_fail(req, res, 500, "SNAPSHOT_LISTING_FAILED", "cannot list the snapshots");
        return;
    }
    api_json(res, 200, arr);
}

/* A signed link to one part of the snapshot (NULL when out of memory). */
static char *part_url(const struct api_caller *c, const struct store_snapshot *s, const char *part,
                      int ttl_s)
{
    char path[256];
    snprintf(path, sizeof(path), "/api/slipway/apps/%s/environments/%s/snapshots/%s/%s",
             c->app.app_id, c->env.mode, s->snapshot_id, part);
    return api_signed_url(path, ttl_s);
}

void api_bk1_get(struct http_request *req, struct http_response *res, const struct api_caller *c)
{
    struct store_snapshot s;
    if (find_snapshot(req, res, c, req->params[2], 404, "SNAPSHOT_NOT_FOUND", &s))
        return;
    if (s.state != BK_COMPLETED) { /* v1 clients poll this until it stops answering 500 */
        api_fail(req, res, 500, "INTERNAL_SERVER_ERROR", "the snapshot is %s%s%s",
                 store_bk_state_name(s.state), s.status_message[0] ? ": " : "", s.status_message);
        return;
    }
    bool db = !strcmp(s.kind, "files_and_database");
    char *files = part_url(c, &s, "files", BACKUPS_URL_TTL_S);
    char *dbu = db ? part_url(c, &s, "database", BACKUPS_URL_TTL_S) : NULL;
    char *all = part_url(c, &s, "all", BACKUPS_URL_TTL_S);
    if (!files || !all || (db && !dbu))
        api_fail(req, res, 500, "INTERNAL_SERVER_ERROR", "out of memory");
    else
        api_json(res, 200,
                 json_pack("{s:s,s:s?,s:s}", "FilesOnly", files, "DatabaseOnly", dbu,
                           "DatabaseAndFiles", all));
    free(files);
    free(dbu);
    free(all);
}

/* The body's comment (key v1 "Comment", v2 "comment"): 0 and *out (in body), or -1 with 400. */
static int body_comment(struct http_request *req, struct http_response *res, json_t *body,
                        const char *key, bool required, const char **out)
{
    json_t *v = json_object_get(body, key);
    *out = json_string_value(v);
    if ((!v && !required) || json_is_null(v)) {
        *out = "";
        return 0;
    }
    if (!*out || strlen(*out) > STORE_COMMENT_MAX || !str_utf8_valid(*out))
        return api_fail(req, res, 400, "INVALID_PARAMETERS", "%s must be text of at most %d bytes",
                        key, STORE_COMMENT_MAX);
    return 0;
}

static json_t *v2_json(const struct store_snapshot *s);

/* POST snapshots, v1 ({Comment} -> 200 snapshot) or v2 ({comment} -> 201 snapshot). */
static void snapshot_create(struct http_request *req, struct http_response *res,
                            const struct api_caller *c, bool v2)
{
    json_t *body = api_body_object(req, res);
    if (!body)
        return;
    const char *comment;
    struct store_snapshot s;
    struct backups_error err;
    int ok = v2 ? 201 : 200;
    if (body_comment(req, res, body, v2 ? "comment" : "Comment", false, &comment)) {
        audit(req, c, "backup snapshot", 400, NULL);
    } else if (backups_snapshot_queue(&c->env, comment, &s, &err)) {
        fail(req, res, v2, &err);
        audit(req, c, "backup snapshot", res->status, err.message);
    } else {
        audit(req, c, "backup snapshot", ok, s.snapshot_id);
        api_json(res, ok, v2 ? v2_json(&s) : v1_json(&s));
    }
    json_decref(body);
}

void api_bk1_create(struct http_request *req, struct http_response *res, const struct api_caller *c)
{
    snapshot_create(req, res, c, false);
}

/* Waits for a restore to end (the v1 call answers once the data is back), at most
 * V1_RESTORE_WAIT_MS or until the client goes away. */
static void restore_wait(struct http_request *req, struct store_restore *r)
{
    int sock = http_conn_socket(req);
    int64_t deadline = time_mono_ns() + V1_RESTORE_WAIT_MS * 1000000LL;
    while ((r->state == BK_QUEUED || r->state == BK_RUNNING) && time_mono_ns() < deadline) {
        struct pollfd p = {.fd = sock, .events = POLLRDHUP};
        if (sock >= 0 ? poll(&p, 1, 50) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))
                      : usleep(50000) != 0)
            break;
        struct store_restore now;
        if (store_restore_get(r->restore_id, &now))
            break;
        *r = now;
    }
}

void api_bk1_restore(struct http_request *req, struct http_response *res,
                     const struct api_caller *c)
{
    struct store_snapshot s;
    struct store_restore r;
    struct backups_error err;
    if (find_snapshot(req, res, c, req->params[2], 400, "NOT_FOUND", &s)) {
        audit(req, c, "backup restore", res->status, NULL);
        return;
    }
    if (backups_restore_queue(&c->env, &s, false, &r, &err)) {
        fail(req, res, false, &err);
        audit(req, c, "backup restore", res->status, err.message);
        return;
    }
    restore_wait(req, &r);
    if (r.state == BK_FAILED) {
        api_fail(req, res, 500, "INTERNAL_SERVER_ERROR", "the restore failed: %s",
                 r.status_message);
        audit(req, c, "backup restore", 500, s.snapshot_id);
        return;
    }
    audit(req, c, "backup restore", 200, s.snapshot_id);
    api_json(res, 200, v1_json(&s));
}

/* ---- v2 ---- */

static json_t *iso(int64_t ms)
{
    if (!ms)
        return json_null();
    char out[21];
    time_rfc3339(ms / 1000, out);
    return json_string(out);
}

static json_t *text_or_null(const char *s)
{
    return s[0] ? api_text(s) : json_null();
}

static json_t *v2_json(const struct store_snapshot *s)
{
    return json_pack("{s:s,s:o,s:o,s:o,s:o,s:s,s:s,s:o,s:o}", "snapshot_id", s->snapshot_id,
                     "status_message", text_or_null(s->status_message), "finished_at",
                     iso(s->finished_ms), "updated_at", iso(s->updated_ms), "created_at",
                     iso(s->created_ms), "state", store_bk_state_name(s->state), "model_version",
                     s->model_version, "expires_at", iso(s->expires_ms), "comment",
                     api_text(s->comment));
}

static int add_v2(const struct store_snapshot *s, void *arg)
{
    return json_array_append_new(arg, v2_json(s)) ? -ENOMEM : 0;
}

/* A query number in [min, max] (def when absent): 0, or -1 with 400 answered. */
static int query_num(struct http_request *req, struct http_response *res, const char *name,
                     int64_t def, int64_t min, int64_t max, int64_t *out)
{
    char *v = http_query(req, name);
    *out = def;
    int r = v && parse_i64(v, min, max, out) ? -1 : 0;
    free(v);
    if (r)
        api_fail(req, res, 400, "INVALID_PARAMETERS", "%s must be a number of %lld to %lld", name,
                 (long long)min, (long long)max);
    return r;
}

void api_bk2_list(struct http_request *req, struct http_response *res, const struct api_caller *c)
{
    int64_t offset, limit, total = 0;
    if (query_num(req, res, "offset", 0, 0, INT32_MAX, &offset) ||
        query_num(req, res, "limit", 100, 1, V2_LIST_MAX, &limit))
        return;
    json_t *arr = json_array();
    if (!arr || store_snapshot_count(c->env.id, &total) ||
        store_snapshot_each(c->env.id, offset, limit, add_v2, arr)) {
        json_decref(arr);
        api_fail(req, res, 500, "SNAPSHOT_LISTING_FAILED", "cannot list the snapshots");
        return;
    }
    api_json(res, 200,
             json_pack("{s:I,s:I,s:I,s:o}", "limit", (json_int_t)limit, "offset",
                       (json_int_t)offset, "total", (json_int_t)total, "snapshots", arr));
}

void api_bk2_create(struct http_request *req, struct http_response *res, const struct api_caller *c)
{
    snapshot_create(req, res, c, true);
}

void api_bk2_get(struct http_request *req, struct http_response *res, const struct api_caller *c)
{
    struct store_snapshot s;
    if (!find_snapshot(req, res, c, req->params[2], 404, "NOT_FOUND", &s))
        api_json(res, 200, v2_json(&s));
}

void api_bk2_update(struct http_request *req, struct http_response *res, const struct api_caller *c)
{
    struct store_snapshot s;
    if (find_snapshot(req, res, c, req->params[2], 404, "NOT_FOUND", &s))
        return;
    json_t *body = api_body_object(req, res);
    if (!body)
        return;
    const char *comment;
    if (body_comment(req, res, body, "comment", true, &comment)) {
        audit(req, c, "backup snapshot update", 400, s.snapshot_id);
    } else if (store_snapshot_set_comment(s.id, comment) || store_snapshot_get(s.snapshot_id, &s)) {
        api_fail(req, res, 500, "SERVICE_UNAVAILABLE", "cannot change the comment");
        audit(req, c, "backup snapshot update", 500, s.snapshot_id);
    } else {
        audit(req, c, "backup snapshot update", 200, s.snapshot_id);
        api_json(res, 200, v2_json(&s));
    }
    json_decref(body);
}

void api_bk2_delete(struct http_request *req, struct http_response *res, const struct api_caller *c)
{
    struct store_snapshot s;
    struct backups_error err;
    if (find_snapshot(req, res, c, req->params[2], 404, "NOT_FOUND", &s)) {
        audit(req, c, "backup snapshot delete", res->status, NULL);
        return;
    }
    if (backups_snapshot_delete(&s, &err)) {
        fail(req, res, true, &err);
        audit(req, c, "backup snapshot delete", res->status, s.snapshot_id);
        return;
    }
    audit(req, c, "backup snapshot delete", 204, s.snapshot_id);
    http_res_json_text(res, 204, "", 0);
}

static json_t *archive_json(const struct api_caller *c, const struct store_snapshot *s,
                            const struct store_archive *a)
{
    char *url = NULL;
    if (a->state == BK_COMPLETED) { /* valid 8 h after completion */
        int64_t left_s = (a->finished_ms + BACKUPS_URL_TTL_S * 1000LL - time_now_ms()) / 1000;
        if (left_s > 0)
            url = part_url(c, s, strcmp(a->data_type, "database_only") ? "all" : "database",
                           (int)left_s);
    }
    json_t *j = json_pack("{s:s,s:o,s:o,s:o,s:o,s:s,s:s,s:s,s:s?}", "archive_id", a->archive_id,
                          "status_message", text_or_null(a->status_message), "finished_at",
                          iso(a->finished_ms), "updated_at", iso(a->updated_ms), "created_at",
                          iso(a->created_ms), "state", store_bk_state_name(a->state), "data_type",
                          a->data_type, "snapshot_id", a->snapshot_id, "url", url);
    free(url);
    return j;
}

void api_bk2_archive(struct http_request *req, struct http_response *res,
                     const struct api_caller *c)
{
    struct store_snapshot s;
    struct store_archive a;
    struct backups_error err;
    if (find_snapshot(req, res, c, req->params[2], 404, "NOT_FOUND", &s)) {
        audit(req, c, "backup archive", res->status, NULL);
        return;
    }
    char *type = http_query(req, "data_type");
    int r = backups_archive_queue(&s, type ? type : "files_and_database", &a, &err);
    free(type);
    if (r) {
        fail(req, res, true, &err);
        audit(req, c, "backup archive", res->status, s.snapshot_id);
        return;
    }
    audit(req, c, "backup archive", 201, a.archive_id);
    api_json(res, 201, archive_json(c, &s, &a));
}

void api_bk2_archive_get(struct http_request *req, struct http_response *res,
                         const struct api_caller *c)
{
    struct store_snapshot s;
    struct store_archive a;
    if (find_snapshot(req, res, c, req->params[2], 404, "NOT_FOUND", &s))
        return;
    const char *id = req->params[3];
    int r = strlen(id) == CRYPTO_UUID_LEN - 1 ? store_archive_get(id, &a) : -ENOENT;
    if (!r && a.snapshot != s.id)
        r = -ENOENT;
    if (r)
        api_fail(req, res, r == -ENOENT ? 404 : 500,
                 r == -ENOENT ? "NOT_FOUND" : "SERVICE_UNAVAILABLE",
                 "snapshot '%s' has no archive '%.40s'", s.snapshot_id,
                 str_utf8_validn(id, strlen(id)) ? id : "?");
    else
        api_json(res, 200, archive_json(c, &s, &a));
}

static json_t *restore_json(const struct store_restore *r)
{
    struct store_env src = {0}, dst = {0};
    store_env_get(r->source_env, &src);
    store_env_get(r->target_env, &dst);
    return json_pack("{s:s,s:o,s:o,s:o,s:o,s:s,s:s,s:s,s:s,s:b}", "restore_id", r->restore_id,
                     "status_message", text_or_null(r->status_message), "finished_at",
                     iso(r->finished_ms), "updated_at", iso(r->updated_ms), "created_at",
                     iso(r->created_ms), "state", store_bk_state_name(r->state),
                     "source_snapshot_id", r->snapshot_id, "source_environment_id",
                     src.environment_id, "target_environment_id", dst.environment_id, "db_only",
                     r->db_only);
}

void api_bk2_restore(struct http_request *req, struct http_response *res,
                     const struct api_caller *c)
{
    char *id = http_query(req, "source_snapshot_id"), *db = http_query(req, "db_only");
    struct store_snapshot s;
    struct store_restore r;
    struct backups_error err;
    int rc = -1;
    if (!id || strlen(id) != CRYPTO_UUID_LEN - 1 ||
        (db && strcmp(db, "true") && strcmp(db, "false"))) {
        api_fail(req, res, 400, "INVALID_PARAMETERS",
                 "source_snapshot_id must be a snapshot's id, db_only true or false");
        goto out;
    }
    int g = store_snapshot_get(id, &s);
    if (!g && s.app != c->app.id)
        g = -ENOENT;
    if (g) {
        api_fail(req, res, g == -ENOENT ? 404 : 500,
                 g == -ENOENT ? "NOT_FOUND" : "SERVICE_UNAVAILABLE",
                 "app '%s' has no snapshot '%s'", c->app.app_id, id);
        goto out;
    }
    /* the snapshot's data is its environment's: the caller needs Access to Backups there too */
    struct store_env src;
    unsigned rights = 0;
    if (store_env_get(s.env, &src) || auth_env_rights(&c->who.user, &c->app, &src, &rights)) {
        api_fail(req, res, 500, "SERVICE_UNAVAILABLE", "cannot read the rights");
        goto out;
    }
    if ((rights & (RIGHT_API | RIGHT_BACKUPS)) != (RIGHT_API | RIGHT_BACKUPS)) {
        api_fail(req, res, 403, "NO_ACCESS",
                 "you have no Access to Backups on %s, where the snapshot was taken", src.mode);
        goto out;
    }
    if (backups_restore_queue(&c->env, &s, db && !strcmp(db, "true"), &r, &err)) {
        fail(req, res, true, &err);
        goto out;
    }
    rc = 0;
    api_json(res, 201, restore_json(&r));
out:
    audit(req, c, "backup restore", rc ? res->status : 201, id && strlen(id) < 64 ? id : "");
    free(id);
    free(db);
}

void api_bk2_restore_get(struct http_request *req, struct http_response *res,
                         const struct api_caller *c)
{
    const char *id = req->params[2];
    struct store_restore r;
    int g = strlen(id) == CRYPTO_UUID_LEN - 1 ? store_restore_get(id, &r) : -ENOENT;
    if (!g && r.target_env != c->env.id)
        g = -ENOENT;
    if (g)
        api_fail(req, res, g == -ENOENT ? 404 : 500,
                 g == -ENOENT ? "NOT_FOUND" : "SERVICE_UNAVAILABLE", "%s has no restore '%.40s'",
                 c->env.mode, str_utf8_validn(id, strlen(id)) ? id : "?");
    else
        api_json(res, 200, restore_json(&r));
}

/* ---- the signed download of a part ---- */

void api_bk_download(struct http_request *req, struct http_response *res,
                     const struct api_caller *c)
{
    struct store_snapshot s;
    if (find_snapshot(req, res, c, req->params[2], 404, "NOT_FOUND", &s))
        return;
    const char *part = req->params[3];
    enum backups_part p = !strcmp(part, "files")      ? BACKUPS_FILES
                          : !strcmp(part, "database") ? BACKUPS_DATABASE
                          : !strcmp(part, "all")      ? BACKUPS_ALL
                                                      : (enum backups_part) - 1;
    if ((int)p < 0) {
        api_fail(req, res, 404, "NOT_FOUND", "a snapshot's parts are files, database and all");
        return;
    }
    if (s.state != BK_COMPLETED) {
        api_fail(req, res, 404, "NOT_FOUND", "the snapshot is %s", store_bk_state_name(s.state));
        return;
    }
    int fd = -1;
    struct backups_error err = {BACKUPS_E_INTERNAL, "cannot read the snapshot"};
    if (p == BACKUPS_ALL) {
        char *path = backups_snapshot_path(&s);
        fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
        free(path);
    } else {
        /* converted into an unnamed file first: the answer then has a length */
        fd = open(layout_tmp_dir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0 && (backups_export(&s, p, fd, &err) || lseek(fd, 0, SEEK_SET) < 0)) {
            close(fd);
            fail(req, res, true, &err);
            return;
        }
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        api_fail(req, res, 500, "INTERNAL_SERVER_ERROR", "cannot read the snapshot");
        return;
    }
    char disposition[128];
    snprintf(disposition, sizeof(disposition), "attachment; filename=\"%s%s\"", s.snapshot_id,
             p == BACKUPS_FILES      ? "-files.tar.gz"
             : p == BACKUPS_DATABASE ? "-database.dump"
                                     : ".tar.zst");
    http_res_header(res, "Content-Disposition", disposition);
    res->status = 200;
    res->file_fd = fd;
    res->file_size = (uint64_t)st.st_size;
    snprintf(res->content_type, sizeof(res->content_type), "application/octet-stream");
}
