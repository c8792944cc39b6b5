/* auth — secrets, credential checks, rights; see auth.h. */
#include "auth/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/crypto.h"
#include "base/banned.h"

#define SECRET_BYTES 32
#define TOKEN_PREFIX "slw_"

int auth_secret_new(int64_t user_id, enum store_cred_kind kind, const char *scopes, char **secret)
{
    unsigned char raw[SECRET_BYTES];
    char enc[4 * ((SECRET_BYTES + 2) / 3) + 1];
    if (crypto_random(raw, sizeof(raw)))
        return -EIO;
    crypto_base64url(raw, sizeof(raw), enc);
    const char *prefix = kind == STORE_CRED_TOKEN ? TOKEN_PREFIX : "";
    size_t n = strlen(prefix) + strlen(enc) + 1;
    char *s = malloc(n);
    if (!s)
        return -ENOMEM;
    snprintf(s, n, "%s%s", prefix, enc);
    char lookup[AUTH_ID_LEN + 1];
    memcpy(lookup, enc, AUTH_ID_LEN);
    lookup[AUTH_ID_LEN] = '\0';
    char hash[CRYPTO_SHA256_HEX];
    crypto_sha256_hex(s, strlen(s), hash);
    int r = store_cred_insert(user_id, kind, lookup, hash, kind == STORE_CRED_TOKEN ? scopes : "");
    if (r) {
        free(s);
        return r;
    }
    *secret = s;
    return 0;
}

/* The public id of a secret: the first AUTH_ID_LEN characters after any prefix. */
static bool secret_id(const char *secret, enum store_cred_kind kind, char id[AUTH_ID_LEN + 1])
{
    if (kind == STORE_CRED_TOKEN && strncmp(secret, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) == 0)
        secret += strlen(TOKEN_PREFIX);
    if (strlen(secret) < AUTH_ID_LEN)
        return false;
    memcpy(id, secret, AUTH_ID_LEN);
    id[AUTH_ID_LEN] = '\0';
    return true;
}

int auth_secret_revoke(int64_t user_id, enum store_cred_kind kind, const char *id)
{
    char lookup[AUTH_ID_LEN + 1];
    if (!secret_id(id, kind, lookup))
        return -ENOENT;
    struct store_cred c;
    int r = store_cred_by_lookup(lookup, &c);
    if (r)
        return r;
    if (c.kind != kind || c.user_id != user_id)
        return -ENOENT;
    return store_cred_revoke(user_id, lookup);
}

/* Finds and verifies a secret of the given kind; fills the principal. */
static int check_secret(const char *secret, enum store_cred_kind kind, struct auth_principal *out)
{
    char lookup[AUTH_ID_LEN + 1];
    if (!secret || strlen(secret) > 256 || !secret_id(secret, kind, lookup))
        return -EACCES;
    struct store_cred c;
    if (store_cred_user_by_lookup(lookup, &c, &out->user))
        return -EACCES;
    char hash[CRYPTO_SHA256_HEX];
    crypto_sha256_hex(secret, strlen(secret), hash);
    bool match = crypto_equal(hash, strlen(hash), c.hash, strlen(c.hash));
    if (!match || c.revoked || c.kind != kind || !out->user.active)
        return -EACCES;
    out->via = kind;
    memcpy(out->scopes, c.scopes, sizeof(out->scopes));
    return 0;
}

int auth_check_apikey(const char *email, const char *key, struct auth_principal *out)
{
    if (!email || !key)
        return -EACCES;
    int r = check_secret(key, STORE_CRED_APIKEY, out);
    if (r)
        return r;
    if (strcasecmp(out->user.email, email) != 0)
        return -EACCES;
    return 0;
}

int auth_check_token(const char *token, struct auth_principal *out)
{
    return check_secret(token, STORE_CRED_TOKEN, out);
}

int auth_check_basic(const char *b64, struct auth_principal *out)
{
    unsigned char buf[768];
    size_t len = strlen(b64);
    if (len > 1000)
        return -EACCES;
    long n = crypto_base64_decode(b64, len, buf, sizeof(buf) - 1);
    if (n <= 0)
        return -EACCES;
    buf[n] = '\0';
    if (memchr(buf, '\0', (size_t)n))
        return -EACCES;
    char *colon = strchr((char *)buf, ':');
    if (!colon)
        return -EACCES;
    *colon = '\0';
    const char *email = (const char *)buf, *password = colon + 1;
    int r;
    if (strncmp(password, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) == 0) {
        r = auth_check_token(password, out);
        if (!r && email[0] && strcasecmp(email, out->user.email) != 0)
            r = -EACCES;
    } else {
        r = auth_check_apikey(email, password, out);
    }
    return r;
}

bool auth_scope_has(const char *scopes, const char *scope)
{
    size_t n = strlen(scope);
    for (const char *p = scopes; *p;) {
        const char *end = strchrnul(p, ',');
        if ((size_t)(end - p) == n && memcmp(p, scope, n) == 0)
            return true;
        p = *end ? end + 1 : end;
    }
    return false;
}

bool auth_scopes_valid(const char *scopes)
{
    if (strlen(scopes) > STORE_SCOPES_MAX)
        return false;
    bool empty_item = true;
    for (const char *p = scopes; *p; p++) {
        if (*p == ',') {
            if (empty_item)
                return false;
            empty_item = true;
            continue;
        }
        if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789:._-", *p))
            return false;
        empty_item = false;
    }
    return !empty_item || !*scopes;
}

static const struct {
    const char *name;
    unsigned bit;
} right_names[] = {
    {"api", RIGHT_API},         {"transport", RIGHT_TRANSPORT},
    {"backups", RIGHT_BACKUPS}, {"monitoring", RIGHT_MONITORING},
    {"alerts", RIGHT_ALERTS},   {"permissions", RIGHT_PERMISSIONS},
};

int auth_rights_parse(const char *list, unsigned *out, const char **bad)
{
    unsigned bits = 0;
    const char *p = list;
    if (!*p)
        goto fail;
    while (*p) {
        const char *end = strchrnul(p, ',');
        size_t n = (size_t)(end - p);
        bool found = false;
        for (size_t i = 0; i < sizeof(right_names) / sizeof(right_names[0]); i++) {
            if (strlen(right_names[i].name) == n && strncasecmp(p, right_names[i].name, n) == 0) {
                bits |= right_names[i].bit;
                found = true;
            }
        }
        if (!found)
            goto fail;
        p = *end ? end + 1 : end;
        if (*end && !*p) /* a trailing comma: an empty last item */
            goto fail;
    }
    *out = bits;
    return 0;
fail:
    if (bad)
        *bad = p;
    return -EINVAL;
}

int auth_role_parse(const char *name, enum store_role *out)
{
    enum store_role role = store_role_parse(name);
    if (role == STORE_ROLE_NONE)
        return -EINVAL;
    *out = role;
    return 0;
}

const char *auth_role_name(enum store_role role)
{
    return store_role_name(role);
}

int auth_app_access(const struct store_user *u, const struct store_app *app, enum store_role *role,
                    unsigned *rights)
{
    if (u->admin) {
        *role = STORE_ROLE_ADMIN;
        *rights = RIGHT_ALL;
        return 0;
    }
    return store_member_access(app->id, u->id, role, rights);
}

int auth_env_rights(const struct store_user *u, const struct store_app *app,
                    const struct store_env *env, unsigned *rights)
{
    (void)app;
    if (u->admin) {
        *rights = RIGHT_ALL;
        return 0;
    }
    return store_rights_get(env->id, u->id, rights);
}
