/* admin — the administrative operations, shared by `slipway admin` (on a data dir, whether or
 * not a server runs) and the HTTP API under /api/slipway/ (for admin users). Each operation
 * validates its input, does its work in the store (and the repositories), and writes one audit
 * entry with its result, success or not.
 *
 * Every function returns 0, or a negative value with *err filled: an HTTP-like status, a
 * Mendix-style error code ("INVALID_PARAMETERS", "APP_NOT_FOUND", ...) and a message for a person.
 */
#ifndef SLIPWAY_ADMIN_H
#define SLIPWAY_ADMIN_H

#include <stdbool.h>

#include "store/store.h"

struct admin_actor {
    const char *name;   /* the acting user's email, or "cli" */
    const char *source; /* remote address, or "cli" */
};

struct admin_error {
    int status;
    const char *code;
    char message[320];
};

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
/* Grants (revoke=false) or revokes rights ("api,transport,...") on the environment `mode`. */
int admin_rights_change(const struct admin_actor *a, const char *app_id, const char *email,
                        const char *mode, const char *rights, bool revoke, struct admin_error *err);

#endif
