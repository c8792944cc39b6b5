/* api — Slipway's own API: /healthz (no auth) and, under /api/slipway/, who-am-I, and the
 * administration of users, credentials, apps, members and rights (admin users only), and the
 * audit log. Errors are {"errorCode","errorMessage"}. The operations are the admin module's, the
 * same that `slipway admin` runs; they audit themselves. And /metrics (admin users only).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "api/api_int.h"
#include "base/util.h"
#include "base/banned.h"

#define AUDIT_PAGE_DEFAULT 100
#define AUDIT_PAGE_MAX     1000

void api_sw_healthz(struct http_request *req, struct http_response *res,
                    const struct api_caller *caller)
{
    (void)req;
    (void)caller;
    api_json(res, 200, json_pack("{s:s}", "status", "ok"));
}

static json_t *user_json(const struct store_user *u)
{
    return json_pack("{s:s,s:s,s:b,s:b,s:I}", "email", u->email, "name", u->name, "admin", u->admin,
                     "active", u->active, "created", (json_int_t)u->created_ms);
}

void api_sw_me(struct http_request *req, struct http_response *res, const struct api_caller *caller)
{
    (void)req;
    api_json(res, 200, user_json(&caller->who.user));
}

/* The administrator making the request, for the admin operations (routes.c checked that the
 * caller is one). */
static struct admin_actor actor_of(const struct http_request *req, const struct api_caller *caller)
{
    return (struct admin_actor){.name = caller->who.user.email, .source = req->remote_addr};
}

/* Reads required string members; -1 with a 400 answered when one is missing. */
static int need(const struct http_request *req, struct http_response *res, json_t *body,
                const char *key, const char **out)
{
    *out = api_str(body, key);
    if (!*out)
        return api_fail(req, res, 400, "INVALID_PARAMETERS", "'%s' is required (a string)", key);
    return 0;
}

/* Marks the request as audited by the admin operation it ran; returns the operation's result. */
static int ran(struct http_request *req, int r)
{
    req->recorded = true;
    return r;
}

/* The HTTP status of an admin error. As in the Mendix APIs, an app that exists already and a user
 * who is not a member of the app are 400; otherwise the status says what HTTP means by it. */
static int admin_status(const struct admin_error *err)
{
    switch (err->kind) {
    case ADMIN_INVALID:
        return 400;
    case ADMIN_NOT_FOUND:
        return err->about == ADMIN_ABOUT_MEMBER ? 400 : 404;
    case ADMIN_EXISTS:
        return err->about == ADMIN_ABOUT_APP ? 400 : 409;
    case ADMIN_OK:
    case ADMIN_INTERNAL:
        break;
    }
    return 500;
}

static void answer_error(const struct http_request *req, struct http_response *res,
                         const struct admin_error *err)
{
    api_fail(req, res, admin_status(err), admin_error_name(err), "%s", err->message);
}

static int add_user(const struct store_user *u, void *arg)
{
    return json_array_append_new(arg, user_json(u)) ? -ENOMEM : 0;
}

void api_sw_users_list(struct http_request *req, struct http_response *res,
                       const struct api_caller *caller)
{
    (void)caller;
    json_t *arr = json_array();
    if (store_user_each(add_user, arr)) {
        json_decref(arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list users");
        return;
    }
    api_json(res, 200, arr);
}

void api_sw_users_add(struct http_request *req, struct http_response *res,
                      const struct api_caller *caller)
{
    struct admin_actor a = actor_of(req, caller);
    struct admin_error err;
    struct store_user u;
    const char *email, *name;
    json_t *body;
    if (!(body = api_body_object(req, res)))
        return;
    if (!need(req, res, body, "email", &email) && !need(req, res, body, "name", &name)) {
        bool is_admin = json_is_true(json_object_get(body, "admin"));
        if (ran(req, admin_user_add(&a, email, name, is_admin, &u, &err)))
            answer_error(req, res, &err);
        else
            api_json(res, 201, user_json(&u));
    }
    json_decref(body);
}

static void secret_add(struct http_request *req, struct http_response *res,
                       const struct api_caller *caller, bool token)
{
    struct admin_actor a = actor_of(req, caller);
    struct admin_error err;
    json_t *body;
    char *secret = NULL;
    if (!(body = api_body_object(req, res)))
        return;
    const char *scopes = api_str(body, "scopes");
    int r = token
                ? ran(req, admin_token_add(&a, req->params[0], scopes ? scopes : "", &secret, &err))
                : ran(req, admin_apikey_add(&a, req->params[0], &secret, &err));
    if (r) {
        answer_error(req, res, &err);
    } else {
        const char *id = secret + (token ? 4 : 0);
        api_json(res, 201,
                 json_pack("{s:s,s:s%}", token ? "token" : "apikey", secret, "id", id,
                           (size_t)AUTH_ID_LEN));
    }
    free(secret);
    json_decref(body);
}

void api_sw_apikey_add(struct http_request *req, struct http_response *res,
                       const struct api_caller *caller)
{
    secret_add(req, res, caller, false);
}

void api_sw_token_add(struct http_request *req, struct http_response *res,
                      const struct api_caller *caller)
{
    secret_add(req, res, caller, true);
}

static void secret_revoke(struct http_request *req, struct http_response *res,
                          const struct api_caller *caller, bool token)
{
    struct admin_actor a = actor_of(req, caller);
    struct admin_error err;
    if (ran(req, admin_secret_revoke(&a, req->params[0], token, req->params[1], &err)))
        answer_error(req, res, &err);
    else
        api_json(res, 200, json_object());
}

void api_sw_apikey_revoke(struct http_request *req, struct http_response *res,
                          const struct api_caller *caller)
{
    secret_revoke(req, res, caller, false);
}

void api_sw_token_revoke(struct http_request *req, struct http_response *res,
                         const struct api_caller *caller)
{
    secret_revoke(req, res, caller, true);
}

static json_t *app_json(const struct store_app *a)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "AppId", a->app_id, "Name", a->name, "ProjectId",
                     a->project_id, "Url", a->url, "DefaultBranch", a->default_branch, "Created",
                     (json_int_t)a->created_ms);
}

static int add_app(const struct store_app *a, void *arg)
{
    return json_array_append_new(arg, app_json(a)) ? -ENOMEM : 0;
}

void api_sw_apps_list(struct http_request *req, struct http_response *res,
                      const struct api_caller *caller)
{
    (void)caller;
    json_t *arr = json_array();
    if (store_app_each(0, add_app, arr)) {
        json_decref(arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list apps");
        return;
    }
    api_json(res, 200, arr);
}

void api_sw_apps_add(struct http_request *req, struct http_response *res,
                     const struct api_caller *caller)
{
    struct admin_actor a = actor_of(req, caller);
    struct admin_error err;
    struct store_app app;
    const char *app_id, *name;
    json_t *body;
    if (!(body = api_body_object(req, res)))
        return;
    if (!need(req, res, body, "AppId", &app_id) && !need(req, res, body, "Name", &name)) {
        if (ran(req, admin_app_add(&a, app_id, name, &app, &err)))
            answer_error(req, res, &err);
        else
            api_json(res, 201, app_json(&app));
    }
    json_decref(body);
}

void api_sw_members_add(struct http_request *req, struct http_response *res,
                        const struct api_caller *caller)
{
    struct admin_actor a = actor_of(req, caller);
    struct admin_error err;
    const char *email, *role;
    json_t *body;
    if (!(body = api_body_object(req, res)))
        return;
    if (!need(req, res, body, "email", &email) && !need(req, res, body, "role", &role)) {
        if (ran(req, admin_member_add(&a, req->params[0], email, role, &err)))
            answer_error(req, res, &err);
        else
            api_json(res, 200, json_pack("{s:s,s:s}", "email", email, "role", role));
    }
    json_decref(body);
}

struct member_list {
    int64_t app;
    json_t *arr;
};

static int add_member(const struct store_member *m, void *arg)
{
    struct member_list *ml = arg;
    json_t *rights = json_object();
    /* rights per environment, named as Mendix names them */
    static const char *const names[] = {"API Rights",        "Transport Rights",
                                        "Access to Backups", "Access to Monitoring",
                                        "Receive Alerts",    "Manage Permissions"};
    for (const char *const *mode = (const char *const[]){"Test", "Acceptance", "Production", NULL};
         *mode; mode++) {
        struct store_env env;
        unsigned bits = 0;
        if (store_env_by_mode(ml->app, *mode, &env) || store_rights_get(env.id, m->user_id, &bits))
            continue;
        json_t *list = json_array();
        for (int i = 0; i < 6; i++)
            if (bits & (1u << i))
                json_array_append_new(list, json_string(names[i]));
        json_object_set_new(rights, env.mode, list);
    }
    json_t *j = json_pack("{s:s,s:s,s:o}", "email", m->email, "role", auth_role_name(m->role),
                          "rights", rights);
    return json_array_append_new(ml->arr, j) ? -ENOMEM : 0;
}

void api_sw_members_list(struct http_request *req, struct http_response *res,
                         const struct api_caller *caller)
{
    struct member_list ml = {caller->app.id, json_array()};
    if (store_member_each(caller->app.id, add_member, &ml)) {
        json_decref(ml.arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list members");
        return;
    }
    api_json(res, 200, ml.arr);
}

static void rights_change(struct http_request *req, struct http_response *res,
                          const struct api_caller *caller, bool revoke)
{
    struct admin_actor a = actor_of(req, caller);
    struct admin_error err;
    const char *email, *env, *rights;
    json_t *body;
    if (!(body = api_body_object(req, res)))
        return;
    if (!need(req, res, body, "email", &email) && !need(req, res, body, "env", &env) &&
        !need(req, res, body, "rights", &rights)) {
        if (ran(req, admin_rights_change(&a, req->params[0], email, env, rights, revoke, &err)))
            answer_error(req, res, &err);
        else
            api_json(res, 200, json_object());
    }
    json_decref(body);
}

void api_sw_env_add(struct http_request *req, struct http_response *res,
                    const struct api_caller *caller)
{
    struct admin_actor a = actor_of(req, caller);
    struct admin_error err;
    const char *mode;
    json_t *body;
    if (!(body = api_body_object(req, res)))
        return;
    if (!need(req, res, body, "Mode", &mode)) {
        struct store_env env;
        json_t *prod = json_object_get(body, "Production");
        if (prod && !json_is_boolean(prod))
            api_fail(req, res, 400, "INVALID_PARAMETERS", "Production must be true or false");
        else if (ran(req, admin_env_add(&a, req->params[0], mode, json_is_true(prod), &env, &err)))
            answer_error(req, res, &err);
        else
            api_json(res, 201, api_env_json(&caller->app, &env));
    }
    json_decref(body);
}

void api_sw_grant(struct http_request *req, struct http_response *res,
                  const struct api_caller *caller)
{
    rights_change(req, res, caller, false);
}

void api_sw_revoke(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    rights_change(req, res, caller, true);
}

static int add_audit(const struct store_audit *e, void *arg)
{
    json_t *j = json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)e->id,
                          "at", (json_int_t)e->at_ms, "actor", e->actor, "action", e->action, "app",
                          e->app, "env", e->env, "source", e->source, "result", e->result, "detail",
                          e->detail, "hash", e->hash);
    return json_array_append_new(arg, j) ? -ENOMEM : 0;
}

void api_sw_audit_list(struct http_request *req, struct http_response *res,
                       const struct api_caller *caller)
{
    (void)caller;
    int64_t after = 0, limit = AUDIT_PAGE_DEFAULT;
    char *s_after = http_query(req, "after"), *s_limit = http_query(req, "limit");
    bool bad = (s_after && parse_i64(s_after, 0, INT64_MAX, &after)) ||
               (s_limit && parse_i64(s_limit, 1, AUDIT_PAGE_MAX, &limit));
    free(s_after);
    free(s_limit);
    if (bad) {
        api_fail(req, res, 400, "INVALID_PARAMETERS",
                 "'after' must be an entry id and 'limit' "
                 "1 to %d",
                 AUDIT_PAGE_MAX);
        return;
    }
    json_t *arr = json_array();
    int64_t bad_id = 0;
    if (store_audit_each(after, (int)limit, add_audit, arr)) {
        json_decref(arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the audit log");
        return;
    }
    bool intact = store_audit_verify(&bad_id) == 0;
    api_json(res, 200, json_pack("{s:o,s:b}", "entries", arr, "chainIntact", intact));
}

/* GET /metrics: the server's counters in the Prometheus text format, for administrators (a
 * scraper sends an admin's token with the scope slipway:admin). */
void api_sw_metrics(struct http_request *req, struct http_response *res,
                    const struct api_caller *caller)
{
    (void)req;
    (void)caller;
    res->status = 200;
    strbuf_reset(&res->body);
    api_metrics_text(&res->body);
    snprintf(res->content_type, sizeof(res->content_type), "%s",
             "text/plain; version=0.0.4; charset=utf-8");
}
