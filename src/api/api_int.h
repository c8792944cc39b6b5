/* api internals shared by the surface files; not for other modules. */
#ifndef SLIPWAY_API_INT_H
#define SLIPWAY_API_INT_H

#include <jansson.h>

#include "api/api.h"
#include "auth/auth.h"
#include "store/store.h"
#include "vcs/vcs.h"

extern struct api_config api_cfg;

/* ---- Who may call what: the route table (routes.c) ----
 *
 * Every endpoint is one row of the table in routes.c: its method, pattern and handler, and the
 * access it needs. The dispatcher there enforces that access before the handler runs, so a
 * handler only ever sees callers the table lets through; `slipway routes` prints the table and
 * the authorization tests are generated from it. */

enum api_auth_kinds {
    API_AUTH_APIKEY = 1 << 0, /* Mendix-Username + Mendix-ApiKey */
    API_AUTH_TOKEN = 1 << 1,  /* Authorization: MxToken <token> */
    API_AUTH_BASIC = 1 << 2,  /* HTTP basic: email + API key or token (git) */
    API_AUTH_SIGNED = 1 << 3, /* or no credentials, with a signed URL (api_signed_url) */
};

/* What the first route parameter names. */
enum api_target {
    API_TARGET_NONE,    /* nothing: the route is not about one app */
    API_TARGET_APP,     /* an AppId */
    API_TARGET_PROJECT, /* a ProjectId (the App Repository API) */
    API_TARGET_GIT,     /* "<AppId>.git" */
};

struct api_access {
    unsigned auth;          /* API_AUTH_* accepted; 0: public, no credentials looked at */
    const char *scopes;     /* a token needs one of these (space-separated); NULL: any token */
    enum api_target target; /* the app whose role and rights count */
    enum store_role role;   /* the least role in the app; STORE_ROLE_NONE: no app */
    unsigned rights;        /* RIGHT_* needed on at least one of the app's environments */
    bool admin;             /* Slipway administrators only */
};

/* The caller as the dispatcher found it. Admins have the admin role and every right. */
struct api_caller {
    const struct api_route *row;  /* the table's row the request matched */
    bool authenticated;           /* false on public routes and signed URLs */
    struct auth_principal who;    /* when authenticated */
    struct store_app app;         /* the target app, when the route has one */
    struct store_package package; /* the app's package :package names, when the path has one */
    struct store_env env;         /* the environment :env (Mode) or :envid names, when one does;
                                     the row's rights are then checked on it */
    enum store_role role;
    unsigned rights;
};

typedef void (*api_handler_fn)(struct http_request *req, struct http_response *res,
                               const struct api_caller *c);

struct api_route {
    const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *pattern; /* as http_route's */
    const char *query;   /* "name=value" this row needs; rows sharing a method and pattern are
                            told apart by it (NULL: the row for any other query) */
    api_handler_fn fn;
    unsigned flags; /* HTTP_ROUTE_* */
    struct api_access access;
    const char *action; /* the audit log's name for it, used when access is refused to a known
                           user (NULL: "<METHOD> <path>", as any request) */
};

extern const struct api_route api_route_table[];
extern const size_t api_nr_route_table;

/* Builds the http layer's routes from the table (one per method and pattern, all dispatched
 * through the access checks). 0 or -ENOMEM. */
int api_routes_init(void);
void api_routes_release(void);

/* A URL (public URL + path + ?expires=...&signature=...) that works without credentials on a
 * route that accepts API_AUTH_SIGNED, for ttl_s seconds. Caller frees; NULL when out of memory. */
char *api_signed_url(const char *path, int ttl_s);

/* The handlers, by surface file. */
void api_ts_apps_list(struct http_request *, struct http_response *,
                      const struct api_caller *caller);
void api_ts_app_get(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_ts_branches_list(struct http_request *, struct http_response *,
                          const struct api_caller *caller);
void api_ts_branch_get(struct http_request *, struct http_response *,
                       const struct api_caller *caller);
void api_repo_info(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_repo_branches(struct http_request *, struct http_response *,
                       const struct api_caller *caller);
void api_repo_branch(struct http_request *, struct http_response *,
                     const struct api_caller *caller);
void api_repo_commits(struct http_request *, struct http_response *,
                      const struct api_caller *caller);
void api_sw_healthz(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_sw_me(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_sw_users_list(struct http_request *, struct http_response *,
                       const struct api_caller *caller);
void api_sw_users_add(struct http_request *, struct http_response *,
                      const struct api_caller *caller);
void api_sw_apikey_add(struct http_request *, struct http_response *,
                       const struct api_caller *caller);
void api_sw_apikey_revoke(struct http_request *, struct http_response *,
                          const struct api_caller *caller);
void api_sw_token_add(struct http_request *, struct http_response *,
                      const struct api_caller *caller);
void api_sw_token_revoke(struct http_request *, struct http_response *,
                         const struct api_caller *caller);
void api_sw_apps_list(struct http_request *, struct http_response *,
                      const struct api_caller *caller);
void api_sw_apps_add(struct http_request *, struct http_response *,
                     const struct api_caller *caller);
void api_sw_members_list(struct http_request *, struct http_response *,
                         const struct api_caller *caller);
void api_sw_members_add(struct http_request *, struct http_response *,
                        const struct api_caller *caller);
void api_sw_grant(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_sw_env_add(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_sw_revoke(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_sw_audit_list(struct http_request *, struct http_response *,
                       const struct api_caller *caller);
void api_sw_metrics(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_git_serve(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_git_dumb(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_build_start(struct http_request *, struct http_response *,
                     const struct api_caller *caller);
void api_build_list(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_build_get(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_build_delete(struct http_request *, struct http_response *,
                      const struct api_caller *caller);
void api_build_download(struct http_request *, struct http_response *,
                        const struct api_caller *caller);
void api_build_details(struct http_request *, struct http_response *,
                       const struct api_caller *caller);
void api_build_log(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_build_manifest(struct http_request *, struct http_response *,
                        const struct api_caller *caller);
void api_build_cancel(struct http_request *, struct http_response *,
                      const struct api_caller *caller);
void api_build_usage(struct http_request *, struct http_response *,
                     const struct api_caller *caller);
void api_upload_v1(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_upload_v2(struct http_request *, struct http_response *, const struct api_caller *caller);
void api_upload_job_get(struct http_request *, struct http_response *,
                        const struct api_caller *caller);

/* Deploy API v1 (deploy.c) */
json_t *api_env_json(const struct store_app *app, const struct store_env *env);
#define ENV_HANDLER(name)                                                                          \
    void name(struct http_request *, struct http_response *, const struct api_caller *caller)
ENV_HANDLER(api_env_list);
ENV_HANDLER(api_env_get);
ENV_HANDLER(api_env_start);
ENV_HANDLER(api_env_start_job);
ENV_HANDLER(api_env_stop);
ENV_HANDLER(api_env_transport);
ENV_HANDLER(api_env_clean);
ENV_HANDLER(api_env_package);
ENV_HANDLER(api_env_settings);
ENV_HANDLER(api_env_settings_set);
ENV_HANDLER(api_env_scale);
ENV_HANDLER(api_env_tags);
ENV_HANDLER(api_env_tag_add);
ENV_HANDLER(api_env_tag_del);
ENV_HANDLER(api_env_logs);
ENV_HANDLER(api_env_access_logs);
ENV_HANDLER(api_env_logs_download);
ENV_HANDLER(api_env_access_logs_download);

/* Deploy API v4 (v4.c) */
ENV_HANDLER(api_v4_apps_list);
ENV_HANDLER(api_v4_app_get);
ENV_HANDLER(api_v4_envs_list);
ENV_HANDLER(api_v4_env_get);
ENV_HANDLER(api_v4_permissions_get);
ENV_HANDLER(api_v4_permissions_set);
/* Backups API v1 and v2 (backups.c) */
ENV_HANDLER(api_bk1_list);
ENV_HANDLER(api_bk1_get);
ENV_HANDLER(api_bk1_create);
ENV_HANDLER(api_bk1_restore);
ENV_HANDLER(api_bk2_list);
ENV_HANDLER(api_bk2_create);
ENV_HANDLER(api_bk2_get);
ENV_HANDLER(api_bk2_update);
ENV_HANDLER(api_bk2_delete);
ENV_HANDLER(api_bk2_archive);
ENV_HANDLER(api_bk2_archive_get);
ENV_HANDLER(api_bk2_restore);
ENV_HANDLER(api_bk2_restore_get);
ENV_HANDLER(api_bk_download);

int api_git_init(void);
void api_git_shutdown(void);
/* Kills the git processes of requests in progress (their answers end) and refuses new ones;
 * called with api_stop_streams() before the HTTP server stops. */
void api_git_stop(void);

/* ---- the audit of git pushes (git_push.c) ---- */
#define API_GIT_PUSH_MAX_REFS 32 /* ref updates named in an audit entry; more are counted */
struct api_git_push_cmd {
    char old_oid[VCS_OID_HEX], new_oid[VCS_OID_HEX]; /* 0000... for a create / a delete */
    char *ref;                                       /* full name, malloc'd */
};
/* The ref updates a receive-pack request asks for. Zero-initialize; api_git_push_release. */
struct api_git_push {
    struct api_git_push_cmd cmd[API_GIT_PUSH_MAX_REFS];
    size_t nr, nr_more; /* kept, and seen beyond the cap (or cut off by the read limit) */
};
/* Parses the pkt-line command list at the start of a receive-pack request (buf may end within
 * it). 0, or -EINVAL when buf holds no command. */
int api_git_push_parse(const char *buf, size_t len, struct api_git_push *out);
/* The same from the spooled body at fd (pread from offset 0: fd's offset is left alone), at
 * most its first 64 kB, inflated first when gzipped. 0, or -errno. */
int api_git_push_read(int fd, bool gzipped, struct api_git_push *out);
void api_git_push_release(struct api_git_push *p);
/* The detail of a push's `started` entry: "push=<id> <old>..<new> <ref> ...". */
void api_git_push_describe(const char *push_id, const struct api_git_push *p, struct strbuf *out);
/* The detail of an `interrupted` entry: where each ref the push asked to update stands now in
 * the app's repository, and whether that is the push's (landed) or the old value (not landed):
 * "push=<id> <ref> <oid>|absent (landed|not landed|changed since) ...". */
void api_git_push_outcome(const char *app_id, const char *push_id, const struct api_git_push *p,
                          struct strbuf *out);
/* At start-up, before the server answers and once git processes a crashed server left are
 * gone: appends an `interrupted` entry for each push the audit log has a `started` entry and no
 * end of. The number appended, or -errno (logged). */
int api_git_push_reconcile(void);

/* A package as the Build API shows it (build.c); api_package_url adds "Url" {Location, TTL}, a
 * signed download link, to a Succeeded one. */
json_t *api_package_json(const struct store_package *p);
void api_package_url(json_t *j, const struct store_app *app, const struct store_package *p);

/* Answers with the error body of the request's surface. Always returns -1 (for `return api_fail`).
 */
__attribute__((format(printf, 5, 6))) int api_fail(const struct http_request *req,
                                                   struct http_response *res, int status,
                                                   const char *code, const char *fmt, ...);
/* api_fail with the v4 body's "invalid-params": invalid is an array of {"name","reason"}
 * (taken; NULL: none); other surfaces answer errorCode INVALID_PARAMETERS without it. Always
 * returns -1. */
__attribute__((format(printf, 5, 6))) int api_fail_params(const struct http_request *req,
                                                          struct http_response *res, int status,
                                                          json_t *invalid, const char *fmt, ...);
/* Answers with `json` (taking ownership) serialized compactly. */
void api_json(struct http_response *res, int status, json_t *json);

/* Authenticates the request with one of the allowed kinds (API_AUTH_APIKEY, API_AUTH_TOKEN).
 * 0 and *p filled (and req->user set), or -1 with a 401 answer in res. The dispatcher calls it. */
int api_authenticate(struct http_request *req, struct http_response *res, unsigned kinds,
                     struct auth_principal *p);
/* Parses a JSON request body leniently: whitespace only or empty is {}; anything but an object
 * is an error. A new object, or NULL with the reason in err. Never reads past len. */
json_t *api_parse_body(const char *body, size_t len, char *err, size_t err_len);
/* Parses the JSON request body leniently: any or no Content-Type, and an empty body as {}.
 * Returns a new object, or NULL with a 400 answer in res. */
json_t *api_body_object(const struct http_request *req, struct http_response *res);
/* Text from a repository (names, emails, messages: any bytes) as a JSON string; bytes that are
 * not UTF-8 become U+FFFD. NULL only when out of memory. */
json_t *api_text(const char *s);
/* A commit message as api_text, without its trailing newlines. */
json_t *api_commit_message(const char *msg);
/* A string member of obj, or NULL when absent or not a string. */
const char *api_str(json_t *obj, const char *key);
/* Writes an audit entry for the request (source: its remote address) and marks it recorded. */
void api_audit(struct http_request *req, const char *actor, const char *action, const char *app,
               const char *env, int status, const char *detail);

/* ---- counters for GET /metrics, and the audit budget (metrics.c) ---- */
/* Why a mutating request was counted instead of written to the audit log. */
enum api_unaudited {
    API_UNAUDITED_UNROUTED,          /* it matched no route: nothing ran */
    API_UNAUDITED_ANONYMOUS,         /* it presented no credentials and was refused */
    API_UNAUDITED_FAILED_LOGIN_RATE, /* refused credentials beyond the budget below */
    API_UNAUDITED_NR,
};
/* Requests whose credentials were refused get an audit entry each, up to this many a minute
 * (all clients together); beyond it they are counted, and summed up in one entry later. */
#define API_FAILED_LOGINS_PER_MINUTE 60
void api_metrics_init(void);
/* Counts a completed request by its status class, and whether it matched a route. */
void api_metrics_request(int status, bool routed);
void api_metrics_unaudited(enum api_unaudited why);
/* Takes one audit entry of the refused-credentials budget: true when there is room; false when
 * the minute's budget is spent (the request is then counted). When a new minute starts,
 * *counted_before is how many the previous one counted (0: none) and *since_ms its start. */
bool api_failed_login_budget(uint64_t *counted_before, int64_t *since_ms);
/* Appends every counter in the Prometheus text format (version 0.0.4). */
void api_metrics_text(struct strbuf *out);
/* Finds the app by AppId: 0, or -1 with 400 INVALID_APPID / 404 APP_NOT_FOUND answered. */
int api_app_find(const struct http_request *req, struct http_response *res, const char *app_id,
                 struct store_app *app);
/* Opens the app's repository (this thread's cached handle). 0, or -1 with a 500 answered. */
int api_repo_open(const struct http_request *req, struct http_response *res,
                  const struct store_app *app, struct vcs_repo **repo);
/* The git branch a client's name means: the name itself, the default branch for "trunk", or
 * <name> for "branches/<name>". 0 and *git_name (pointing into `name` or `app`) and, when
 * head_id is not NULL, the branch's head commit id; or -ENOENT, -EIO. */
int api_branch_name(struct vcs_repo *repo, const struct store_app *app, const char *name,
                    const char **git_name, char head_id[VCS_OID_HEX]);
/* api_branch_name, then the branch itself. 0 and *out filled (caller releases), -ENOENT, -EIO. */
int api_branch_resolve(struct vcs_repo *repo, const struct store_app *app, const char *name,
                       struct vcs_branch *out);

#endif
