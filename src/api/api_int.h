/* api internals shared by the surface files; not for other modules. */
#ifndef SLIPWAY_API_INT_H
#define SLIPWAY_API_INT_H

#include <jansson.h>

#include "api/api.h"
#include "auth/auth.h"
#include "store/store.h"
#include "vcs/vcs.h"

extern struct api_config api_cfg;

/* Route tables of each surface file. */
extern const struct http_route api_teamserver_routes[];
extern const size_t api_teamserver_nr_routes;
extern const struct http_route api_repository_routes[];
extern const size_t api_repository_nr_routes;
extern const struct http_route api_slipway_routes[];
extern const size_t api_slipway_nr_routes;
extern const struct http_route api_git_routes[];
extern const size_t api_git_nr_routes;
int api_git_init(void);
extern const struct http_route api_build_routes[];
extern const size_t api_build_nr_routes;
int api_build_init(void);
extern const struct http_route api_upload_routes[];
extern const size_t api_upload_nr_routes;
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

/* Answers with the error body of the request's surface. Always returns -1 (for `return api_fail`).
 */
__attribute__((format(printf, 5, 6))) int api_fail(const struct http_request *req,
                                                   struct http_response *res, int status,
                                                   const char *code, const char *fmt, ...);
/* Answers with `json` (taking ownership) serialized compactly. */
void api_json(struct http_response *res, int status, json_t *json);

enum api_auth_kinds {
    API_AUTH_APIKEY = 1 << 0, /* Mendix-Username + Mendix-ApiKey */
    API_AUTH_TOKEN = 1 << 1,  /* Authorization: MxToken <token> */
};
/* Authenticates the request with one of the allowed kinds. 0 and *p filled (and req->user set),
 * or -1 with a 401 answer in res. */
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

/* Authenticates (API key or token), finds the app of the first route parameter and requires
 * membership with API Rights on at least one of its environments (admins have every right).
 * 0 (and *who filled when not NULL), or -1 with 401/400/404/403 answered. */
int api_app_access(struct http_request *req, struct http_response *res, struct store_app *app,
                   struct auth_principal *who);
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
