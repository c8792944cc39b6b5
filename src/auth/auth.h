/* auth — credentials and rights.
 *
 * API keys and personal access tokens are 256-bit random secrets, shown once and stored only as
 * SHA-256 hashes; a short public prefix of each (its "id") finds the row, and the hash is compared
 * in constant time. Rights are app membership (viewer, developer, admin) plus per-environment
 * rights (store.h's RIGHT_*); a user flagged admin has every right everywhere.
 * It knows nothing of HTTP: the api/ module extracts header values and calls in here.
 */
#ifndef SLIPWAY_AUTH_H
#define SLIPWAY_AUTH_H

#include <stdbool.h>

#include "store/store.h"

#define AUTH_ID_LEN 12 /* characters of a secret that form its public id */

/* Scope a token needs for the App Repository API. */
#define AUTH_SCOPE_REPO_READ "mx:modelrepository:repo:read"

struct auth_principal {
    struct store_user user;
    enum store_cred_kind via;
    char scopes[STORE_SCOPES_MAX + 1]; /* tokens only */
};

/* Creates a credential for the user and returns the secret (caller frees; show it once). */
int auth_secret_new(int64_t user_id, enum store_cred_kind kind, const char *scopes, char **secret);
/* Revokes the user's credential whose id (first AUTH_ID_LEN characters, or the whole secret)
 * is given. 0, -ENOENT. */
int auth_secret_revoke(int64_t user_id, enum store_cred_kind kind, const char *id);

/* Checks Mendix-Username + Mendix-ApiKey. 0 and *out filled, or -EACCES. */
int auth_check_apikey(const char *email, const char *key, struct auth_principal *out);
/* Checks a personal access token. 0, or -EACCES. */
int auth_check_token(const char *token, struct auth_principal *out);
/* Checks an HTTP basic credential (the base64 part): email + API key or token. 0, or -EACCES. */
int auth_check_basic(const char *b64, struct auth_principal *out);

/* True when the comma-separated `scopes` hold `scope`. */
bool auth_scope_has(const char *scopes, const char *scope);
/* Validates a comma-separated scope list (names of [a-z0-9:._-]). */
bool auth_scopes_valid(const char *scopes);

/* Parses "api,transport,backups,monitoring,alerts,permissions" (any subset, any case) into
 * RIGHT_* bits. 0, or -EINVAL (and *bad points at the unknown name's start). */
int auth_rights_parse(const char *list, unsigned *out, const char **bad);
/* "viewer", "developer", "admin" (any case). 0, or -EINVAL. */
int auth_role_parse(const char *name, enum store_role *out);
const char *auth_role_name(enum store_role role);

/* The user's role in the app and the OR of their rights over its environments; admins get
 * STORE_ROLE_ADMIN and RIGHT_ALL. 0 or -EIO. */
int auth_app_access(const struct store_user *u, const struct store_app *app, enum store_role *role,
                    unsigned *rights);
/* The user's rights on one environment (RIGHT_ALL for admins; 0 for non-members). */
int auth_env_rights(const struct store_user *u, const struct store_app *app,
                    const struct store_env *env, unsigned *rights);

#endif
