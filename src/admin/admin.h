/* admin — the administrative operations, shared by `slipway admin` (on a data dir, whether or
 * not a server runs) and the HTTP API under /api/slipway/ (for admin users). Each operation
 * validates its input, does its work in the store (and the repositories), and writes one audit
 * entry with its result, success or not.
 *
 * Errors are the module's own, not any surface's: every operation returns 0, or -kind (a
 * negative enum admin_err) with *err filled: the kind of failure, what it is about, and a message
 * for a person. The HTTP API turns them into statuses and error bodies, the CLI into exit codes;
 * nothing here knows either.
 */
#ifndef SLIPWAY_ADMIN_H
#define SLIPWAY_ADMIN_H

#include <stdbool.h>

#include "store/store.h"

struct admin_actor {
    const char *name;   /* the acting user's email, or "cli" */
    const char *source; /* remote address, or "cli" */
};

/* The kind of failure. */
enum admin_err {
    ADMIN_OK = 0,
    ADMIN_INVALID,   /* an input is not valid: a malformed AppId, email, name, role, right, scope */
    ADMIN_NOT_FOUND, /* what the operation names does not exist (a user, an app, an environment,
                      * an active key or token, the user's membership of the app) */
    ADMIN_EXISTS,    /* what the operation would create exists already (a user, an app) */
    ADMIN_INTERNAL,  /* the store, the repository or the system failed; the log says why */
};

/* What a failure is about. */
enum admin_subject {
    ADMIN_ABOUT_INPUT,      /* a value given to the operation (ADMIN_INVALID) */
    ADMIN_ABOUT_USER,       /* the user named by email */
    ADMIN_ABOUT_APP,        /* the app named by AppId (ADMIN_INVALID: the AppId's form) */
    ADMIN_ABOUT_ENV,        /* the environment named by mode */
    ADMIN_ABOUT_CREDENTIAL, /* the API key or token named by id */
    ADMIN_ABOUT_MEMBER,     /* the user's membership of the app */
    ADMIN_ABOUT_SYSTEM,     /* ADMIN_INTERNAL */
};

struct admin_error {
    enum admin_err kind;
    enum admin_subject about;
    char message[320]; /* lowercase, names the subject: "no user with email 'x@y'" */
};

/* The stable name of an error, by kind and subject: "INVALID_APPID", "INVALID_PARAMETERS",
 * "USER_NOT_FOUND", "APP_NOT_FOUND", "ENVIRONMENT_NOT_FOUND", "NOT_FOUND" (a key or token),
 * "NOT_A_MEMBER", "USER_EXISTS", "APPLICATION_ALREADY_EXISTS", "INTERNAL_ERROR". Audit entries
 * record it ("error <NAME>: <message>") and the HTTP API answers it as its errorCode (they are
 * the names of the Mendix APIs Slipway mirrors). Static storage. */
const char *admin_error_name(const struct admin_error *err);

bool admin_app_id_valid(const char *app_id);
bool admin_email_valid(const char *email);

int admin_user_add(const struct admin_actor *a, const char *email, const char *name, bool admin,
                   struct store_user *out, struct admin_error *err);
/* Creates an API key / a token; *secret is the value to show once (caller frees). */
int admin_apikey_add(const struct admin_actor *a, const char *email, char **secret,
                     struct admin_error *err);
int admin_token_add(const struct admin_actor *a, const char *email, const char *scopes,
                    char **secret, struct admin_error *err);
/* Revokes by id (the first 12 characters of the secret, after "slw_" for tokens) or by secret. */
int admin_secret_revoke(const struct admin_actor *a, const char *email, bool token, const char *id,
                        struct admin_error *err);
/* Creates the app, its environments and its bare repository (default branch "main"), at
 * layout_repo_path(): layout_init() first. */
int admin_app_add(const struct admin_actor *a, const char *app_id, const char *name,
                  struct store_app *out, struct admin_error *err);
int admin_member_add(const struct admin_actor *a, const char *app_id, const char *email,
                     const char *role, struct admin_error *err);
/* Adds a flexible environment to the app: mode is its name, [A-Za-z0-9][A-Za-z0-9_-]{0,39},
 * unique in the app in any case; production marks it as one (API Rights then need granting). */
int admin_env_add(const struct admin_actor *a, const char *app_id, const char *mode,
                  bool production, struct store_env *out, struct admin_error *err);
/* Grants (revoke=false) or revokes rights ("api,transport,...") on the environment `mode`. */
int admin_rights_change(const struct admin_actor *a, const char *app_id, const char *email,
                        const char *mode, const char *rights, bool revoke, struct admin_error *err);

#endif
