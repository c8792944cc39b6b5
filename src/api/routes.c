/* api — the route table: every endpoint of Slipway, with the credentials, token scope, app role
 * and environment rights it needs, and the one dispatcher that enforces them before a handler
 * runs. Handlers live in the surface files; nothing else decides who may call what.
 *
 * `slipway routes` prints this table (api_routes_describe); docs/api.md shows it, and the
 * authorization tests (tests/e2e/test_matrix.py) are generated from it, so a new row cannot go
 * untested. Signed URLs (API_AUTH_SIGNED) are checked here too.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "admin/admin.h"
#include "api/api_int.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/util.h"
#include "builder/packages.h"
#include "base/banned.h"

/* Token scopes: Mendix's names where Mendix has one, slipway:* for the rest. A row lists the
 * scopes that allow it, any one of them enough (Mendix: mx:deployment:write allows reads too). */
#define SC_REPO_READ    "mx:modelrepository:repo:read"
#define SC_REPO_WRITE   "mx:modelrepository:repo:write"
#define SC_DEPLOY_READ  "mx:deployment:read mx:deployment:write"
#define SC_DEPLOY_WRITE "mx:deployment:write"
#define SC_ADMIN        "slipway:admin"

#define KEYS (API_AUTH_APIKEY | API_AUTH_TOKEN)

/* The shapes of access, as initializers of struct api_access. */
#define PUBLIC                                                                                     \
    {                                                                                              \
        0, NULL, API_TARGET_NONE, STORE_ROLE_NONE, 0, false                                        \
    }
#define USER(scopes)                                                                               \
    {                                                                                              \
        KEYS, scopes, API_TARGET_NONE, STORE_ROLE_NONE, 0, false                                   \
    }
#define ADMIN                                                                                      \
    {                                                                                              \
        KEYS, SC_ADMIN, API_TARGET_NONE, STORE_ROLE_NONE, 0, true                                  \
    }
#define ADMIN_APP                                                                                  \
    {                                                                                              \
        KEYS, SC_ADMIN, API_TARGET_APP, STORE_ROLE_NONE, 0, true                                   \
    }
#define APP(role, scopes)                                                                          \
    {                                                                                              \
        KEYS, scopes, API_TARGET_APP, role, RIGHT_API, false                                       \
    }
#define APP_RIGHTS(role, scopes, rights)                                                           \
    {                                                                                              \
        KEYS, scopes, API_TARGET_APP, role, rights, false                                          \
    }
#define APP_SIGNED(role, sc)                                                                       \
    {                                                                                              \
        KEYS | API_AUTH_SIGNED, sc, API_TARGET_APP, role, RIGHT_API, false                         \
    }
/* Backups: API Rights and Access to Backups on the environment the path names; v2 names the
 * app by its ProjectId but takes the API-key headers (and tokens) as v1 does. */
#define BACKUPS(role, scopes)                                                                      \
    {                                                                                              \
        KEYS, scopes, API_TARGET_APP, role, RIGHT_API | RIGHT_BACKUPS, false                       \
    }
#define BACKUPS_SIGNED(role, scopes)                                                               \
    {                                                                                              \
        KEYS | API_AUTH_SIGNED, scopes, API_TARGET_APP, role, RIGHT_API | RIGHT_BACKUPS, false     \
    }
#define BACKUPS_V2(role, scopes)                                                                   \
    {                                                                                              \
        KEYS, scopes, API_TARGET_PROJECT, role, RIGHT_API | RIGHT_BACKUPS, false                   \
    }
#define PROJECT(role, scopes)                                                                      \
    {                                                                                              \
        API_AUTH_TOKEN, scopes, API_TARGET_PROJECT, role, 0, false                                 \
    }
#define TOKEN_USER(scopes)                                                                         \
    {                                                                                              \
        API_AUTH_TOKEN, scopes, API_TARGET_NONE, STORE_ROLE_NONE, 0, false                         \
    }
#define PROJECT_RIGHTS(role, scopes, rights)                                                       \
    {                                                                                              \
        API_AUTH_TOKEN, scopes, API_TARGET_PROJECT, role, rights, false                            \
    }
#define GIT(role, scopes)                                                                          \
    {                                                                                              \
        API_AUTH_BASIC, scopes, API_TARGET_GIT, role, 0, false                                     \
    }
#define VIEWER    STORE_ROLE_VIEWER
#define DEVELOPER STORE_ROLE_DEVELOPER

#define SPOOL  HTTP_ROUTE_SPOOL
#define UPLOAD (HTTP_ROUTE_SPOOL | HTTP_ROUTE_UPLOAD)

/* clang-format off */
const struct api_route api_route_table[] = {
    /* Slipway's own */
    {"GET",    "/healthz", NULL, api_sw_healthz, 0, PUBLIC, NULL},
    {"GET",    "/api/slipway/me", NULL, api_sw_me, 0, USER(NULL), NULL},
    {"GET",    "/api/slipway/users", NULL, api_sw_users_list, 0, ADMIN, NULL},
    {"POST",   "/api/slipway/users", NULL, api_sw_users_add, 0, ADMIN, NULL},
    {"POST",   "/api/slipway/users/:email/apikeys", NULL, api_sw_apikey_add, 0, ADMIN, NULL},
    {"DELETE", "/api/slipway/users/:email/apikeys/:id", NULL, api_sw_apikey_revoke, 0, ADMIN, NULL},
    {"POST",   "/api/slipway/users/:email/tokens", NULL, api_sw_token_add, 0, ADMIN, NULL},
    {"DELETE", "/api/slipway/users/:email/tokens/:id", NULL, api_sw_token_revoke, 0, ADMIN, NULL},
    {"GET",    "/api/slipway/apps", NULL, api_sw_apps_list, 0, ADMIN, NULL},
    {"POST",   "/api/slipway/apps", NULL, api_sw_apps_add, 0, ADMIN, NULL},
    {"GET",    "/api/slipway/apps/:app/members", NULL, api_sw_members_list, 0, ADMIN_APP, NULL},
    {"POST",   "/api/slipway/apps/:app/members", NULL, api_sw_members_add, 0, ADMIN_APP, NULL},
    {"POST",   "/api/slipway/apps/:app/grant", NULL, api_sw_grant, 0, ADMIN_APP, NULL},
    {"POST",   "/api/slipway/apps/:app/environments", NULL, api_sw_env_add, 0, ADMIN_APP, NULL},
    {"POST",   "/api/slipway/apps/:app/revoke", NULL, api_sw_revoke, 0, ADMIN_APP, NULL},
    {"GET",    "/api/slipway/audit", NULL, api_sw_audit_list, 0, ADMIN, NULL},
    {"GET",    "/metrics", NULL, api_sw_metrics, 0, ADMIN, NULL},
    {"GET",    "/api/slipway/apps/:app/packages/:package", NULL, api_build_details, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"GET",    "/api/slipway/apps/:app/packages/:package/log", NULL, api_build_log, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"GET",    "/api/slipway/apps/:app/packages/:package/manifest", NULL, api_build_manifest, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/slipway/apps/:app/packages/:package/cancel", NULL, api_build_cancel, 0,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "build cancel"},
    {"GET",    "/api/slipway/apps/:app/usage", NULL, api_build_usage, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},

    /* Team Server API v1 */
    {"GET",    "/api/1/apps", NULL, api_ts_apps_list, 0, USER(SC_REPO_READ), NULL},
    {"GET",    "/api/1/apps/:app", NULL, api_ts_app_get, 0, APP(VIEWER, SC_REPO_READ), NULL},
    {"GET",    "/api/1/apps/:app/branches", NULL, api_ts_branches_list, 0,
               APP(VIEWER, SC_REPO_READ), NULL},
    {"GET",    "/api/1/apps/:app/branches/*", NULL, api_ts_branch_get, HTTP_ROUTE_TAIL,
               APP(VIEWER, SC_REPO_READ), NULL},

    /* Build API v1 and Deploy API v1/v2 packages */
    {"GET",    "/api/1/apps/:app/packages", NULL, api_build_list, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/1/apps/:app/packages", NULL, api_build_start, 0,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "build"},
    {"POST",   "/api/1/apps/:app/packages/upload", NULL, api_upload_v1, UPLOAD,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "package upload"},
    {"GET",    "/api/1/apps/:app/packages/:package", NULL, api_build_get, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"DELETE", "/api/1/apps/:app/packages/:package", NULL, api_build_delete, 0,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "package delete"},
    {"GET",    "/api/1/apps/:app/packages/:package/download", NULL, api_build_download, 0,
               APP_SIGNED(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/v2/apps/:app/packages/upload", NULL, api_upload_v2, UPLOAD,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "package upload"},
    {"GET",    "/api/v2/apps/:app/jobs/:job", NULL, api_upload_job_get, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},

    /* Deploy API v1: environments (rights are checked on the environment the path names) */
    {"GET",    "/api/1/apps/:app/environments", NULL, api_env_list, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"GET",    "/api/1/apps/:app/environments/:env", NULL, api_env_get, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/1/apps/:app/environments/:env/start", NULL, api_env_start, 0,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "env start"},
    {"GET",    "/api/1/apps/:app/environments/:env/start/:job", NULL, api_env_start_job, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/1/apps/:app/environments/:env/stop", NULL, api_env_stop, 0,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "env stop"},
    {"POST",   "/api/1/apps/:app/environments/:env/transport", NULL, api_env_transport, 0,
               APP_RIGHTS(DEVELOPER, SC_DEPLOY_WRITE, RIGHT_API | RIGHT_TRANSPORT),
               "env transport"},
    {"POST",   "/api/1/apps/:app/environments/:env/clean", NULL, api_env_clean, 0,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "env clean"},
    {"GET",    "/api/1/apps/:app/environments/:env/package", NULL, api_env_package, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"GET",    "/api/1/apps/:app/environments/:env/settings", NULL, api_env_settings, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/1/apps/:app/environments/:env/settings", NULL, api_env_settings_set, 0,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "env settings"},
    {"POST",   "/api/1/apps/:app/environments/:env/scale", NULL, api_env_scale, 0,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "env scale"},
    {"GET",    "/api/1/apps/:app/environments/:env/tags", NULL, api_env_tags, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/1/apps/:app/environments/:env/tags", NULL, api_env_tag_add, 0,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "env tag add"},
    {"DELETE", "/api/1/apps/:app/environments/:env/tags", NULL, api_env_tag_del, 0,
               APP(DEVELOPER, SC_DEPLOY_WRITE), "env tag delete"},
    {"GET",    "/api/1/apps/:app/environments/:env/logs/:date", NULL, api_env_logs, 0,
               APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"GET",    "/api/1/apps/:app/environments/:env/access-logs/:date", NULL,
               api_env_access_logs, 0, APP(VIEWER, SC_DEPLOY_READ), NULL},
    {"GET",    "/api/slipway/apps/:app/environments/:env/logs/:date/download", NULL,
               api_env_logs_download, 0, APP_SIGNED(VIEWER, SC_DEPLOY_READ), NULL},
    {"GET",    "/api/slipway/apps/:app/environments/:env/access-logs/:date/download", NULL,
               api_env_access_logs_download, 0, APP_SIGNED(VIEWER, SC_DEPLOY_READ), NULL},

    /* Deploy API v4: tokens only; apps by ProjectId, environments by EnvironmentId (rights
     * are checked on the environment the path names) */
    {"GET",    "/api/v4/apps", NULL, api_v4_apps_list, 0, TOKEN_USER(SC_DEPLOY_READ), NULL},
    {"GET",    "/api/v4/apps/:project", NULL, api_v4_app_get, 0,
               PROJECT(VIEWER, SC_DEPLOY_READ), NULL},
    {"GET",    "/api/v4/apps/:project/environments", NULL, api_v4_envs_list, 0,
               PROJECT_RIGHTS(VIEWER, SC_DEPLOY_READ, RIGHT_API), NULL},
    {"GET",    "/api/v4/apps/:project/environments/:envid", NULL, api_v4_env_get, 0,
               PROJECT_RIGHTS(VIEWER, SC_DEPLOY_READ, RIGHT_API), NULL},
    {"GET",    "/api/v4/apps/:project/environments/:envid/permissions", NULL,
               api_v4_permissions_get, 0, PROJECT_RIGHTS(VIEWER, SC_DEPLOY_READ, RIGHT_API), NULL},
    {"PATCH",  "/api/v4/apps/:project/environments/:envid/permissions", NULL,
               api_v4_permissions_set, 0,
               PROJECT_RIGHTS(DEVELOPER, SC_DEPLOY_WRITE, RIGHT_API | RIGHT_PERMISSIONS),
               "env permissions"},
    /* Backups API v1 and v2 (rights are checked on the environment the path names) */
    {"GET",    "/api/1/apps/:app/environments/:env/snapshots", NULL, api_bk1_list, 0,
               BACKUPS(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/1/apps/:app/environments/:env/snapshots", NULL, api_bk1_create, 0,
               BACKUPS(DEVELOPER, SC_DEPLOY_WRITE), "backup snapshot"},
    {"GET",    "/api/1/apps/:app/environments/:env/snapshots/:snapshot", NULL, api_bk1_get, 0,
               BACKUPS(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/1/apps/:app/environments/:env/restore/:snapshot", NULL, api_bk1_restore, 0,
               BACKUPS(DEVELOPER, SC_DEPLOY_WRITE), "backup restore"},
    {"GET",    "/api/v2/apps/:project/environments/:envid/snapshots", NULL, api_bk2_list, 0,
               BACKUPS_V2(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/v2/apps/:project/environments/:envid/snapshots", NULL, api_bk2_create, 0,
               BACKUPS_V2(DEVELOPER, SC_DEPLOY_WRITE), "backup snapshot"},
    {"GET",    "/api/v2/apps/:project/environments/:envid/snapshots/:snapshot", NULL,
               api_bk2_get, 0, BACKUPS_V2(VIEWER, SC_DEPLOY_READ), NULL},
    {"PUT",    "/api/v2/apps/:project/environments/:envid/snapshots/:snapshot", NULL,
               api_bk2_update, 0, BACKUPS_V2(DEVELOPER, SC_DEPLOY_WRITE),
               "backup snapshot update"},
    {"DELETE", "/api/v2/apps/:project/environments/:envid/snapshots/:snapshot", NULL,
               api_bk2_delete, 0, BACKUPS_V2(DEVELOPER, SC_DEPLOY_WRITE),
               "backup snapshot delete"},
    {"POST",   "/api/v2/apps/:project/environments/:envid/snapshots/:snapshot/archives", NULL,
               api_bk2_archive, 0, BACKUPS_V2(DEVELOPER, SC_DEPLOY_WRITE), "backup archive"},
    {"GET",    "/api/v2/apps/:project/environments/:envid/snapshots/:snapshot/archives/:archive",
               NULL, api_bk2_archive_get, 0, BACKUPS_V2(VIEWER, SC_DEPLOY_READ), NULL},
    {"POST",   "/api/v2/apps/:project/environments/:envid/restores", NULL, api_bk2_restore, 0,
               BACKUPS_V2(DEVELOPER, SC_DEPLOY_WRITE), "backup restore"},
    {"GET",    "/api/v2/apps/:project/environments/:envid/restores/:restore", NULL,
               api_bk2_restore_get, 0, BACKUPS_V2(VIEWER, SC_DEPLOY_READ), NULL},
    {"GET",    "/api/slipway/apps/:app/environments/:env/snapshots/:snapshot/:part", NULL,
               api_bk_download, 0, BACKUPS_SIGNED(VIEWER, SC_DEPLOY_READ), NULL},

    /* App Repository API */
    {"GET",    "/v1/repositories/:project/info", NULL, api_repo_info, 0,
               PROJECT(VIEWER, SC_REPO_READ), NULL},
    {"GET",    "/v1/repositories/:project/branches", NULL, api_repo_branches, 0,
               PROJECT(VIEWER, SC_REPO_READ), NULL},
    {"GET",    "/v1/repositories/:project/branches/:branch", NULL, api_repo_branch, 0,
               PROJECT(VIEWER, SC_REPO_READ), NULL},
    {"GET",    "/v1/repositories/:project/branches/:branch/commits", NULL, api_repo_commits, 0,
               PROJECT(VIEWER, SC_REPO_READ), NULL},

    /* git smart HTTP: fetching needs membership, pushing the developer role */
    {"GET",    "/git/:repo/info/refs", "service=git-upload-pack", api_git_serve, 0,
               GIT(VIEWER, SC_REPO_READ), NULL},
    {"GET",    "/git/:repo/info/refs", "service=git-receive-pack", api_git_serve, 0,
               GIT(DEVELOPER, SC_REPO_WRITE), NULL},
    {"GET",    "/git/:repo/info/refs", NULL, api_git_dumb, 0, PUBLIC, NULL},
    {"POST",   "/git/:repo/git-upload-pack", NULL, api_git_serve, SPOOL,
               GIT(VIEWER, SC_REPO_READ), NULL},
    {"POST",   "/git/:repo/git-receive-pack", NULL, api_git_serve, SPOOL,
               GIT(DEVELOPER, SC_REPO_WRITE), "git push"},
    {"GET",    "/git/:repo/*", NULL, api_git_dumb, HTTP_ROUTE_TAIL, PUBLIC, NULL},
};
/* clang-format on */
const size_t api_nr_route_table = sizeof(api_route_table) / sizeof(api_route_table[0]);

/* ---- signed URLs ---- */

/* The signature of a path until `expires` (epoch seconds), as 64 hex digits. */
static void sign(const char *path, int64_t expires, char out[65])
{
    struct strbuf msg = STRBUF_INIT;
    unsigned char mac[CRYPTO_SHA256_LEN];
    strbuf_addf(&msg, "GET\n%s\n%lld", path, (long long)expires);
    const unsigned char *key = layout_secret();
    if (key)
        crypto_hmac_sha256(key, LAYOUT_SECRET_LEN, msg.buf, msg.len, mac);
    else /* no secret: nothing signed verifies (the server refuses to start without one) */
        crypto_random(mac, sizeof(mac));
    strbuf_release(&msg);
    hex_encode(mac, sizeof(mac), out);
}

char *api_signed_url(const char *path, int ttl_s)
{
    int64_t expires = time_now_ms() / 1000 + ttl_s;
    char sig[65], *url = NULL;
    sign(path, expires, sig);
    if (asprintf(&url, "%s%s?expires=%lld&signature=%s", api_cfg.public_url, path,
                 (long long)expires, sig) < 0)
        return NULL;
    return url;
}

/* A request with ?expires=&signature=: 0 when the signature is good and current, else -1 with
 * 403 answered. */
static int check_signed(struct http_request *req, struct http_response *res, char *sig, char *exp)
{
    int64_t expires = 0;
    char want[65];
    bool ok = layout_secret() && sig && exp && !parse_i64(exp, 0, INT64_MAX, &expires);
    if (ok) {
        sign(req->raw_path, expires, want);
        ok = crypto_equal(want, 64, sig, strlen(sig));
    }
    if (!ok)
        return api_fail(req, res, 403, "INVALID_SIGNATURE", "the URL's signature is not valid");
    if (expires < time_now_ms() / 1000)
        return api_fail(req, res, 403, "URL_EXPIRED",
                        "the URL has expired: ask for a new one (?url=true)");
    return 0;
}

/* ---- the dispatcher ---- */

/* The row of the table for this request: among the rows that share the matched method and
 * pattern (first is the one the http layer matched), the one whose query the request carries. */
static const struct api_route *pick_row(const struct http_request *req)
{
    const struct api_route *first = req->route_ctx, *fallback = NULL;
    const struct api_route *end = api_route_table + api_nr_route_table;
    for (const struct api_route *r = first; r < end; r++) {
        if (strcmp(r->method, first->method) || strcmp(r->pattern, first->pattern))
            continue;
        if (!r->query) {
            if (!fallback)
                fallback = r;
            continue;
        }
        const char *eq = strchr(r->query, '=');
        char name[32];
        snprintf(name, sizeof(name), "%.*s", (int)(eq - r->query), r->query);
        char *value = http_query(req, name);
        bool match = value && strcmp(value, eq + 1) == 0;
        free(value);
        if (match)
            return r;
    }
    return fallback;
}

/* The next scope of a row's space-separated list (*p: where to look, moved past it): its length
 * and *scope its start, or 0 at the end. */
static size_t next_scope(const char **p, const char **scope)
{
    *p += strspn(*p, " ");
    *scope = *p;
    size_t n = strcspn(*p, " ");
    *p += n;
    return n;
}

static bool scope_allowed(const char *token_scopes, const char *allowed)
{
    const char *p = allowed, *scope;
    for (size_t n; (n = next_scope(&p, &scope));) {
        char one[STORE_SCOPES_MAX + 1];
        snprintf(one, sizeof(one), "%.*s", (int)n, scope);
        if (auth_scope_has(token_scopes, one))
            return true;
    }
    return false;
}

/* 403 naming the scopes that would do: "'a'" or "'a' or 'b'". */
static int scope_missing(const struct http_request *req, struct http_response *res,
                         const char *allowed)
{
    struct strbuf names = STRBUF_INIT;
    const char *p = allowed, *scope;
    for (size_t n; (n = next_scope(&p, &scope));)
        strbuf_addf(&names, "%s'%.*s'", names.len ? " or " : "", (int)n, scope);
    api_fail(req, res, 403, "NO_ACCESS", "the token lacks the scope %s",
             strbuf_ok(&names) ? names.buf : "it needs");
    strbuf_release(&names);
    return -1;
}

static int unauthorized(struct http_request *req, struct http_response *res, bool basic,
                        const char *msg)
{
    if (basic)
        http_res_header(res, "WWW-Authenticate", "Basic realm=\"Slipway\", charset=\"UTF-8\"");
    return api_fail(req, res, 401, "UNAUTHORIZED", "%s", msg);
}

/* Checks the credentials the row accepts. 0 and c->who filled, or -1 with 401 answered. */
static int authenticate(struct http_request *req, struct http_response *res,
                        const struct api_access *a, struct api_caller *c)
{
    if (a->auth & (API_AUTH_APIKEY | API_AUTH_TOKEN))
        return api_authenticate(req, res, a->auth, &c->who);
    const char *authz = http_header(req, "Authorization");
    if (!authz || strncasecmp(authz, "Basic ", 6) != 0)
        return unauthorized(req, res, true,
                            "authentication needed: your email and an API key or token");
    if (auth_check_basic(authz + 6, &c->who))
        return unauthorized(req, res, true, "invalid credentials");
    snprintf(req->user, sizeof(req->user), "%s", c->who.user.email);
    return 0;
}

/* Finds the target app of the first route parameter. 0, or -1 with 400/404 answered. */
static int find_target(struct http_request *req, struct http_response *res, enum api_target target,
                       struct store_app *app)
{
    const char *param = req->params[0];
    if (target == API_TARGET_APP)
        return api_app_find(req, res, param, app);
    if (target == API_TARGET_PROJECT) {
        int r =
            strlen(param) == CRYPTO_UUID_LEN - 1 ? store_app_by_project_id(param, app) : -ENOENT;
        if (r == -ENOENT)
            return api_fail(req, res, 404, "APP_NOT_FOUND", "no app with id '%.60s'", param);
        return r ? api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the app") : 0;
    }
    /* API_TARGET_GIT: "<AppId>.git" (or the bare AppId) */
    char app_id[STORE_APPID_MAX + 1];
    size_t len = strlen(param);
    if (len > 4 && strcmp(param + len - 4, ".git") == 0)
        len -= 4;
    if (len >= sizeof(app_id))
        return api_fail(req, res, 404, "APP_NOT_FOUND", "no such repository");
    memcpy(app_id, param, len);
    app_id[len] = '\0';
    return api_app_find(req, res, app_id, app);
}

/* How Mendix names the first of these rights. */
static const char *right_name(unsigned rights)
{
    static const char *const names[] = {"API Rights",        "Transport Rights",
                                        "Access to Backups", "Access to Monitoring",
                                        "Receive Alerts",    "Manage Permissions"};
    for (unsigned k = 0; k < 6; k++)
        if (rights & (1u << k))
            return names[k];
    return "rights";
}

/* The target app's role and rights against what the row needs. 0, or -1 with 403 answered. */
static int authorize_app(struct http_request *req, struct http_response *res,
                         const struct api_access *a, struct api_caller *c)
{
    if (auth_app_access(&c->who.user, &c->app, &c->role, &c->rights))
        return api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the rights");
    if (a->admin)
        return 0; /* Slipway administrators, checked already */
    if (c->role == STORE_ROLE_NONE)
        return api_fail(req, res, 403, "NO_ACCESS", "you are not a member of app '%s'",
                        c->app.app_id);
    if (c->role < a->role)
        return api_fail(req, res, 403, "NO_ACCESS", "this needs the %s role on app '%s'",
                        auth_role_name(a->role), c->app.app_id);
    if ((c->rights & a->rights) != a->rights)
        return api_fail(req, res, 403, "NO_ACCESS", "you have no %s on any environment of app '%s'",
                        right_name(a->rights & ~c->rights), c->app.app_id);
    return 0;
}

static int authorize(struct http_request *req, struct http_response *res,
                     const struct api_access *a, struct api_caller *c)
{
    if (a->auth & API_AUTH_SIGNED) {
        char *sig = http_query(req, "signature"), *exp = http_query(req, "expires");
        bool signed_url = sig || exp;
        int r = signed_url ? check_signed(req, res, sig, exp) : 0;
        free(sig);
        free(exp);
        if (signed_url) /* the signature stands for the credentials */
            return r ? -1 : find_target(req, res, a->target, &c->app);
    }
    if (authenticate(req, res, a, c))
        return -1;
    c->authenticated = true;
    if (c->who.via == STORE_CRED_TOKEN && a->scopes && !scope_allowed(c->who.scopes, a->scopes))
        return scope_missing(req, res, a->scopes);
    if (a->admin && !c->who.user.admin)
        return api_fail(req, res, 403, "NO_ACCESS", "this needs an administrator");
    if (a->target == API_TARGET_NONE)
        return 0;
    store_read_begin();
    int r = find_target(req, res, a->target, &c->app) || authorize_app(req, res, a, c);
    store_read_end();
    return r ? -1 : 0;
}

/* The row's access for this request: 0 and *c filled, or -1 with the refusal answered (and a
 * known user's attempt audited under the operation's name, with its app). */
static int admit_row(struct http_request *req, struct http_response *res,
                     const struct api_route *row, struct api_caller *c)
{
    if (!row->access.auth || !authorize(req, res, &row->access, c))
        return 0;
    if (row->action && c->authenticated)
        api_audit(req, c->who.user.email, row->action, c->app.app_id, "", res->status, "");
    return -1;
}

/* The package a path names (its second parameter, `:package`), once the caller is admitted: 0
 * (or no such parameter), or -1 with 404/500 answered. */
static int find_package(struct http_request *req, struct http_response *res,
                        const struct api_route *row, struct api_caller *c)
{
    if (!strstr(row->pattern, "/:package"))
        return 0;
    struct packages_error err;
    int r = packages_find(&c->app, req->params[1], &c->package, &err);
    if (r == PACKAGES_NOT_FOUND)
        return api_fail(req, res, 404, "PACKAGE_NOT_FOUND", "%s", err.message);
    if (r)
        return api_fail(req, res, 500, "INTERNAL_ERROR", "%s", err.message);
    return 0;
}

/* The environment a path names (its second parameter: `:env`, a Mode, any case; or `:envid`,
 * an EnvironmentId), and the caller's rights on it against the row's: 0 (or no such
 * parameter), or -1 with 404 or 403 answered (and a refused known user audited). */
static int find_env(struct http_request *req, struct http_response *res,
                    const struct api_route *row, struct api_caller *c)
{
    size_t len = strlen(row->pattern);
    bool by_mode =
        strstr(row->pattern, "/:env/") || (len > 5 && !strcmp(row->pattern + len - 5, "/:env"));
    bool by_id = strstr(row->pattern, "/:envid");
    if (!by_mode && !by_id)
        return 0;
    const char *name = req->params[1];
    int r = strlen(name) > STORE_MODE_MAX || (by_id && strlen(name) != CRYPTO_UUID_LEN - 1)
                ? -ENOENT
            : by_mode ? store_env_by_mode(c->app.id, name, &c->env)
                      : store_env_by_uuid(name, &c->env);
    if (!r && c->env.app != c->app.id)
        r = -ENOENT;
    if (r == -ENOENT)
        return api_fail(req, res, 404, "ENVIRONMENT_NOT_FOUND",
                        "app '%s' has no environment "
                        "'%.40s'",
                        c->app.app_id, str_utf8_validn(name, strlen(name)) ? name : "?");
    if (r)
        return api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the environment");
    if (!c->authenticated) /* a signed URL */
        return 0;
    unsigned rights = 0;
    if (auth_env_rights(&c->who.user, &c->app, &c->env, &rights))
        return api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the rights");
    unsigned need = row->access.rights;
    if ((rights & need) == need)
        return 0;
    const char *code = "NO_ACCESS";
    const char *what = right_name(need & ~rights);
    if ((need & RIGHT_TRANSPORT) && (rights & RIGHT_API) && !(rights & RIGHT_TRANSPORT))
        code = "TRANSPORT_NOT_ALLOWED";
    api_fail(
        req, res, 403, code, "you have no %s on %s of app '%s'%s", what, c->env.mode, c->app.app_id,
        c->env.production && !(rights & RIGHT_API) ? " (Production needs them granted explicitly)"
                                                   : "");
    if (row->action)
        api_audit(req, c->who.user.email, row->action, c->app.app_id, c->env.mode, 403, "");
    return -1;
}

static void dispatch(struct http_request *req, struct http_response *res)
{
    const struct api_route *row = pick_row(req);
    struct api_caller c = {.row = row};
    if (!row)
        api_fail(req, res, 404, "NOT_FOUND", "no such operation");
    else if (!admit_row(req, res, row, &c) && !find_package(req, res, row, &c) &&
             !find_env(req, res, row, &c))
        row->fn(req, res, &c);
}

int api_admit(struct http_request *req, struct http_response *res)
{
    const struct api_route *row = pick_row(req);
    struct api_caller c = {.row = row};
    return row ? admit_row(req, res, row, &c) : 0; /* no row: dispatch answers 404 */
}

/* ---- the table for the http layer, and for people ---- */

static struct http_route *http_routes;
static size_t nr_http_routes;

int api_routes_init(void)
{
    http_routes = calloc(api_nr_route_table, sizeof(*http_routes));
    if (!http_routes)
        return -ENOMEM;
    for (size_t i = 0; i < api_nr_route_table; i++) {
        const struct api_route *r = &api_route_table[i];
        bool seen = false;
        for (size_t j = 0; j < nr_http_routes && !seen; j++)
            seen = !strcmp(http_routes[j].method, r->method) &&
                   !strcmp(http_routes[j].pattern, r->pattern);
        if (!seen)
            http_routes[nr_http_routes++] =
                (struct http_route){r->method, r->pattern, dispatch, r->flags, (void *)r};
    }
    return 0;
}

void api_routes_release(void)
{
    free(http_routes);
    http_routes = NULL;
    nr_http_routes = 0;
}

const struct http_route *api_routes(size_t *nr)
{
    *nr = nr_http_routes;
    return http_routes;
}

static const char *target_name(enum api_target t)
{
    static const char *const names[] = {"", "app", "project", "git"};
    return names[t];
}

char *api_routes_describe(void)
{
    json_t *arr = json_array();
    static const char *const kinds[] = {"apikey", "token", "basic", "signed"};
    static const char *const right_names[] = {"api",        "transport", "backups",
                                              "monitoring", "alerts",    "permissions"};
    for (size_t i = 0; arr && i < api_nr_route_table; i++) {
        const struct api_route *r = &api_route_table[i];
        const struct api_access *a = &r->access;
        json_t *auth = json_array(), *scopes = json_array(), *rights = json_array();
        for (unsigned k = 0; k < 4; k++)
            if (a->auth & (1u << k))
                json_array_append_new(auth, json_string(kinds[k]));
        const char *p = a->scopes ? a->scopes : "", *scope;
        for (size_t n; (n = next_scope(&p, &scope));)
            json_array_append_new(scopes, json_stringn(scope, n));
        for (unsigned k = 0; k < 6; k++)
            if (a->rights & (1u << k))
                json_array_append_new(rights, json_string(right_names[k]));
        json_array_append_new(arr,
                              json_pack("{s:s,s:s,s:s?,s:o,s:o,s:s,s:s,s:o,s:b,s:s?}", "method",
                                        r->method, "pattern", r->pattern, "query", r->query, "auth",
                                        auth, "scopes", scopes, "target", target_name(a->target),
                                        "role", a->role ? auth_role_name(a->role) : "", "rights",
                                        rights, "admin", a->admin, "action", r->action));
    }
    char *text = arr ? json_dumps(arr, JSON_INDENT(1)) : NULL;
    json_decref(arr);
    return text;
}
