/* admin — validated, audited administrative operations; see admin.h. */
#include "admin/admin.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "vcs/vcs.h"
#include "base/banned.h"

bool admin_app_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n < 2 || n > STORE_APPID_MAX || id[0] == '-' || id[n - 1] == '-')
        return false;
    return strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

bool admin_email_valid(const char *email)
{
    size_t n = strlen(email);
    const char *at = strchr(email, '@');
    if (n < 3 || n > STORE_EMAIL_MAX || !at || at == email || !at[1] || strchr(at + 1, '@') ||
        !str_utf8_valid(email))
        return false;
    for (const char *p = email; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f || strchr("\"(),:;<>[\\]", *p))
            return false;
    return true;
}

static bool name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > STORE_NAME_MAX || !str_utf8_valid(name))
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < ' ' || *p == 0x7f)
            return false;
    return true;
}

const char *admin_error_name(const struct admin_error *err)
{
    switch (err->kind) {
    case ADMIN_OK:
        return "OK";
    case ADMIN_INVALID:
        return err->about == ADMIN_ABOUT_APP ? "INVALID_APPID" : "INVALID_PARAMETERS";
    case ADMIN_NOT_FOUND:
        switch (err->about) {
        case ADMIN_ABOUT_USER:
            return "USER_NOT_FOUND";
        case ADMIN_ABOUT_APP:
            return "APP_NOT_FOUND";
        case ADMIN_ABOUT_ENV:
            return "ENVIRONMENT_NOT_FOUND";
        case ADMIN_ABOUT_MEMBER:
            return "NOT_A_MEMBER";
        default:
            return "NOT_FOUND";
        }
    case ADMIN_EXISTS:
        return err->about == ADMIN_ABOUT_USER  ? "USER_EXISTS"
               : err->about == ADMIN_ABOUT_APP ? "APPLICATION_ALREADY_EXISTS"
                                               : "ALREADY_EXISTS";
    case ADMIN_INTERNAL:
        break;
    }
    return "INTERNAL_ERROR";
}

/* Fills *err; returns -kind. */
__attribute__((format(printf, 4, 5))) static int
fail(struct admin_error *err, enum admin_err kind, enum admin_subject about, const char *fmt, ...)
{
    err->kind = kind;
    err->about = about;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -(int)kind;
}

static int internal(struct admin_error *err)
{
    return fail(err, ADMIN_INTERNAL, ADMIN_ABOUT_SYSTEM,
                "the operation failed on the server; see its log");
}

/* Writes the audit entry for an operation that returned r. */
static int audited(const struct admin_actor *a, const char *action, const char *app,
                   const char *env, const char *detail, int r, const struct admin_error *err)
{
    char result[400];
    if (r)
        snprintf(result, sizeof(result), "error %s: %s", admin_error_name(err), err->message);
    else
        snprintf(result, sizeof(result), "ok");
    if (store_audit_append(a->name, action, app, env, a->source, result, detail))
        log_error("cannot write the audit log entry for '%s'", action);
    return r;
}

static int find_user(const char *email, struct store_user *u, struct admin_error *err)
{
    int r = store_user_by_email(email, u);
    if (r == -ENOENT)
        return fail(err, ADMIN_NOT_FOUND, ADMIN_ABOUT_USER, "no user with email '%s'", email);
    return r ? internal(err) : 0;
}

static int find_app(const char *app_id, struct store_app *app, struct admin_error *err)
{
    if (!admin_app_id_valid(app_id))
        return fail(err, ADMIN_INVALID, ADMIN_ABOUT_APP,
                    "'%s' is not a valid AppId: 2-40 characters of a-z, 0-9 and '-'", app_id);
    int r = store_app_by_appid(app_id, app);
    if (r == -ENOENT)
        return fail(err, ADMIN_NOT_FOUND, ADMIN_ABOUT_APP, "no app with AppId '%s'", app_id);
    return r ? internal(err) : 0;
}

int admin_user_add(const struct admin_actor *a, const char *email, const char *name, bool admin,
                   struct store_user *out, struct admin_error *err)
{
    int r;
    if (!admin_email_valid(email))
        r = fail(err, ADMIN_INVALID, ADMIN_ABOUT_INPUT, "'%.*s' is not a valid email address", 254,
                 email);
    else if (!name_valid(name))
        r = fail(err, ADMIN_INVALID, ADMIN_ABOUT_INPUT,
                 "the name must be 1-200 characters without control characters");
    else if ((r = store_user_insert(email, name, admin, NULL)) == -EEXIST)
        r = fail(err, ADMIN_EXISTS, ADMIN_ABOUT_USER, "a user with email '%s' exists already",
                 email);
    else if (r || (r = store_user_by_email(email, out)))
        r = internal(err);
    char detail[300];
    snprintf(detail, sizeof(detail), "email=%.254s admin=%s", email, admin ? "yes" : "no");
    return audited(a, "user add", "", "", detail, r, err);
}

static int secret_add(const struct admin_actor *a, const char *email, bool token,
                      const char *scopes, char **secret, struct admin_error *err)
{
    struct store_user u;
    int r = find_user(email, &u, err);
    if (!r && token && !auth_scopes_valid(scopes))
        r = fail(err, ADMIN_INVALID, ADMIN_ABOUT_INPUT,
                 "scopes must be a comma-separated list such as '%s'", AUTH_SCOPE_REPO_READ);
    if (!r && auth_secret_new(u.id, token ? STORE_CRED_TOKEN : STORE_CRED_APIKEY, scopes, secret))
        r = internal(err);
    char detail[STORE_EMAIL_MAX + STORE_SCOPES_MAX + 32];
    snprintf(detail, sizeof(detail), "email=%s%s%s", email, token ? " scopes=" : "",
             token ? scopes : "");
    return audited(a, token ? "token add" : "apikey add", "", "", detail, r, err);
}

int admin_apikey_add(const struct admin_actor *a, const char *email, char **secret,
                     struct admin_error *err)
{
    return secret_add(a, email, false, "", secret, err);
}

int admin_token_add(const struct admin_actor *a, const char *email, const char *scopes,
                    char **secret, struct admin_error *err)
{
    return secret_add(a, email, true, scopes, secret, err);
}

int admin_secret_revoke(const struct admin_actor *a, const char *email, bool token, const char *id,
                        struct admin_error *err)
{
    struct store_user u;
    int r = find_user(email, &u, err);
    if (!r) {
        r = auth_secret_revoke(u.id, token ? STORE_CRED_TOKEN : STORE_CRED_APIKEY, id);
        if (r == -ENOENT)
            r = fail(err, ADMIN_NOT_FOUND, ADMIN_ABOUT_CREDENTIAL,
                     "no active %s with that id for '%s'", token ? "token" : "API key", email);
        else if (r)
            r = internal(err);
    }
    char detail[STORE_EMAIL_MAX + 64];
    /* only the public id, never the secret */
    snprintf(detail, sizeof(detail), "email=%s id=%.*s", email, AUTH_ID_LEN,
             token && strncmp(id, "slw_", 4) == 0 ? id + 4 : id);
    return audited(a, token ? "token revoke" : "apikey revoke", "", "", detail, r, err);
}

int admin_app_add(const struct admin_actor *a, const char *app_id, const char *name,
                  struct store_app *out, struct admin_error *err)
{
    int r = 0;
    char *path = NULL;
    struct store_app app = {0};
    if (!admin_app_id_valid(app_id)) {
        r = fail(err, ADMIN_INVALID, ADMIN_ABOUT_APP,
                 "'%.40s' is not a valid AppId: 2-40 characters of a-z, 0-9 and '-'", app_id);
        goto out;
    }
    if (!name_valid(name)) {
        r = fail(err, ADMIN_INVALID, ADMIN_ABOUT_INPUT,
                 "the name must be 1-200 characters without control characters");
        goto out;
    }
    if (store_app_by_appid(app_id, &app) == 0) {
        r = fail(err, ADMIN_EXISTS, ADMIN_ABOUT_APP, "an app with AppId '%s' exists already",
                 app_id);
        goto out;
    }
    snprintf(app.app_id, sizeof(app.app_id), "%s", app_id);
    snprintf(app.name, sizeof(app.name), "%s", name);
    snprintf(app.default_branch, sizeof(app.default_branch), "main");
    if (crypto_uuid(app.project_id) || !(path = layout_repo_path(app_id))) {
        r = internal(err);
        goto out;
    }
    r = vcs_repo_create(path, app.default_branch);
    if (r && r != -EEXIST) {
        log_error("cannot create the repository '%s': %s", path, strerror(-r));
        r = internal(err);
        goto out;
    }
    /* A repository left by an earlier failed attempt is reused: it has no app row. */
    r = store_app_insert(&app);
    if (r == -EEXIST)
        r = fail(err, ADMIN_EXISTS, ADMIN_ABOUT_APP, "an app with AppId '%s' exists already",
                 app_id);
    else if (r)
        r = internal(err);
    else
        *out = app;
out:
    free(path);
    char detail[STORE_NAME_MAX + 64];
    snprintf(detail, sizeof(detail), "name=%s project=%s", name, r ? "" : app.project_id);
    return audited(a, "app add", app_id, "", detail, r, err);
}

int admin_member_add(const struct admin_actor *a, const char *app_id, const char *email,
                     const char *role, struct admin_error *err)
{
    struct store_app app;
    struct store_user u;
    enum store_role rl;
    int r = find_app(app_id, &app, err);
    if (!r)
        r = find_user(email, &u, err);
    if (!r && auth_role_parse(role, &rl))
        r = fail(err, ADMIN_INVALID, ADMIN_ABOUT_INPUT,
                 "role must be viewer, developer or admin, not '%.40s'", role);
    if (!r && store_member_set(app.id, u.id, rl))
        r = internal(err);
    char detail[STORE_EMAIL_MAX + 64];
    snprintf(detail, sizeof(detail), "email=%s role=%.20s", email, role);
    return audited(a, "member add", app_id, "", detail, r, err);
}

static bool mode_valid(const char *mode)
{
    size_t n = strlen(mode);
    if (n < 1 || n > 40 || !isalnum((unsigned char)mode[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)mode[i]) && mode[i] != '_' && mode[i] != '-')
            return false;
    return true;
}

int admin_env_add(const struct admin_actor *a, const char *app_id, const char *mode,
                  bool production, struct store_env *out, struct admin_error *err)
{
    struct store_app app;
    int r = find_app(app_id, &app, err);
    if (!r && !mode_valid(mode))
        r = fail(err, ADMIN_INVALID, ADMIN_ABOUT_INPUT,
                 "an environment's name is 1 to 40 letters, digits, '_' or '-', starting with a "
                 "letter or digit");
    if (!r) {
        r = store_env_insert(app.id, mode, production);
        if (r == -EEXIST)
            r = fail(err, ADMIN_EXISTS, ADMIN_ABOUT_ENV, "app '%s' has an environment '%s' already",
                     app_id, mode);
        else if (r)
            r = internal(err);
    }
    if (!r && store_env_by_mode(app.id, mode, out))
        r = internal(err);
    char detail[80];
    snprintf(detail, sizeof(detail), "mode=%.40s production=%s", mode, production ? "yes" : "no");
    return audited(a, "env add", app_id, r ? "" : out->mode, detail, r, err);
}

int admin_rights_change(const struct admin_actor *a, const char *app_id, const char *email,
                        const char *mode, const char *rights, bool revoke, struct admin_error *err)
{
    struct store_app app;
    struct store_user u;
    struct store_env env;
    unsigned bits = 0;
    const char *bad = NULL;
    int r = find_app(app_id, &app, err);
    if (!r)
        r = find_user(email, &u, err);
    if (!r) {
        r = store_env_by_mode(app.id, mode, &env);
        if (r == -ENOENT)
            r = fail(err, ADMIN_NOT_FOUND, ADMIN_ABOUT_ENV, "app '%s' has no environment '%.40s'",
                     app_id, mode);
        else if (r)
            r = internal(err);
    }
    if (!r && auth_rights_parse(rights, &bits, &bad))
        r = fail(err, ADMIN_INVALID, ADMIN_ABOUT_INPUT,
                 "unknown right '%.40s': use api, transport, backups, monitoring, alerts, "
                 "permissions",
                 bad);
    if (!r) {
        r = store_rights_update(app.id, env.id, u.id, revoke ? 0 : bits, revoke ? bits : 0);
        if (r == -ENOENT)
            r = fail(err, ADMIN_NOT_FOUND, ADMIN_ABOUT_MEMBER,
                     "'%s' is not a member of '%s': add them with 'member add' first", email,
                     app_id);
        else if (r)
            r = internal(err);
    }
    char detail[STORE_EMAIL_MAX + 200];
    snprintf(detail, sizeof(detail), "email=%s rights=%.100s", email, rights);
    return audited(a, revoke ? "revoke" : "grant", app_id, r ? mode : env.mode, detail, r, err);
}
