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

#define AUDIT_PAGE_DEFAULT 100
#define AUDIT_PAGE_MAX     1000

static void healthz(struct http_request *req, struct http_response *res)
{
    (void)req;
    api_json(res, 200, json_pack("{s:s}", "status", "ok"));
}

static json_t *user_json(const struct store_user *u)
{
    return json_pack("{s:s,s:s,s:b,s:b,s:I}", "email", u->email, "name", u->name, "admin", u->admin,
                     "active", u->active, "created", (json_int_t)u->created_ms);
}

static void me(struct http_request *req, struct http_response *res)
{
    struct auth_principal p;
    if (api_authenticate(req, res, API_AUTH_APIKEY | API_AUTH_TOKEN, &p))
        return;
    api_json(res, 200, user_json(&p.user));
}

/* Authenticates an admin user; fills the actor. -1 with 401/403 answered otherwise. */
static int admin_only(struct http_request *req, struct http_response *res, struct auth_principal *p,
                      struct admin_actor *a)
{
    if (api_authenticate(req, res, API_AUTH_APIKEY | API_AUTH_TOKEN, p))
        return -1;
    if (!p->user.admin)
        return api_fail(req, res, 403, "NO_ACCESS", "this needs an administrator");
    a->name = p->user.email;
    a->source = req->remote_addr;
    return 0;
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

static void answer_error(const struct http_request *req, struct http_response *res,
                         const struct admin_error *err)
{
    api_fail(req, res, err->status, err->code, "%s", err->message);
}

static int add_user(const struct store_user *u, void *arg)
{
    return json_array_append_new(arg, user_json(u)) ? -ENOMEM : 0;
}

static void users_list(struct http_request *req, struct http_response *res)
{
    struct auth_principal p;
    struct admin_actor a;
    if (admin_only(req, res, &p, &a))
        return;
    json_t *arr = json_array();
    if (store_user_each(add_user, arr)) {
        json_decref(arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list users");
        return;
    }
    api_json(res, 200, arr);
}

static void users_add(struct http_request *req, struct http_response *res)
{
    struct auth_principal p;
    struct admin_actor a;
    struct admin_error err;
    struct store_user u;
    const char *email, *name;
    json_t *body;
    if (admin_only(req, res, &p, &a) || !(body = api_body_object(req, res)))
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

static void secret_add(struct http_request *req, struct http_response *res, bool token)
{
    struct auth_principal p;
    struct admin_actor a;
    struct admin_error err;
    json_t *body;
    char *secret = NULL;
    if (admin_only(req, res, &p, &a) || !(body = api_body_object(req, res)))
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

static void apikey_add(struct http_request *req, struct http_response *res)
{
    secret_add(req, res, false);
}

static void token_add(struct http_request *req, struct http_response *res)
{
    secret_add(req, res, true);
}

static void secret_revoke(struct http_request *req, struct http_response *res, bool token)
{
    struct auth_principal p;
    struct admin_actor a;
    struct admin_error err;
    if (admin_only(req, res, &p, &a))
        return;
    if (ran(req, admin_secret_revoke(&a, req->params[0], token, req->params[1], &err)))
        answer_error(req, res, &err);
    else
        api_json(res, 200, json_object());
}

static void apikey_revoke(struct http_request *req, struct http_response *res)
{
    secret_revoke(req, res, false);
}

static void token_revoke(struct http_request *req, struct http_response *res)
{
    secret_revoke(req, res, true);
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

static void apps_list(struct http_request *req, struct http_response *res)
{
    struct auth_principal p;
    struct admin_actor a;
    if (admin_only(req, res, &p, &a))
        return;
    json_t *arr = json_array();
    if (store_app_each(0, add_app, arr)) {
        json_decref(arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list apps");
        return;
    }
    api_json(res, 200, arr);
}

static void apps_add(struct http_request *req, struct http_response *res)
{
    struct auth_principal p;
    struct admin_actor a;
    struct admin_error err;
    struct store_app app;
    const char *app_id, *name;
    json_t *body;
    if (admin_only(req, res, &p, &a) || !(body = api_body_object(req, res)))
        return;
    if (!need(req, res, body, "AppId", &app_id) && !need(req, res, body, "Name", &name)) {
        if (ran(req, admin_app_add(&a, app_id, name, &app, &err)))
            answer_error(req, res, &err);
        else
            api_json(res, 201, app_json(&app));
    }
    json_decref(body);
}

static void members_add(struct http_request *req, struct http_response *res)
{
    struct auth_principal p;
    struct admin_actor a;
    struct admin_error err;
    const char *email, *role;
    json_t *body;
    if (admin_only(req, res, &p, &a) || !(body = api_body_object(req, res)))
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

static void members_list(struct http_request *req, struct http_response *res)
{
    struct auth_principal p;
    struct admin_actor a;
    struct store_app app;
    if (admin_only(req, res, &p, &a) || api_app_find(req, res, req->params[0], &app))
        return;
    struct member_list ml = {app.id, json_array()};
    if (store_member_each(app.id, add_member, &ml)) {
        json_decref(ml.arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list members");
        return;
    }
    api_json(res, 200, ml.arr);
}

static void rights_change(struct http_request *req, struct http_response *res, bool revoke)
{
    struct auth_principal p;
    struct admin_actor a;
    struct admin_error err;
    const char *email, *env, *rights;
    json_t *body;
    if (admin_only(req, res, &p, &a) || !(body = api_body_object(req, res)))
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

static void grant(struct http_request *req, struct http_response *res)
{
    rights_change(req, res, false);
}

static void revoke(struct http_request *req, struct http_response *res)
{
    rights_change(req, res, true);
}

static int add_audit(const struct store_audit *e, void *arg)
{
    json_t *j = json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)e->id,
                          "at", (json_int_t)e->at_ms, "actor", e->actor, "action", e->action, "app",
                          e->app, "env", e->env, "source", e->source, "result", e->result, "detail",
                          e->detail, "hash", e->hash);
    return json_array_append_new(arg, j) ? -ENOMEM : 0;
}

static void audit_list(struct http_request *req, struct http_response *res)
{
    struct auth_principal p;
    struct admin_actor a;
    if (admin_only(req, res, &p, &a))
        return;
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
 * scraper sends an admin's token: `Authorization: MxToken <token>`). */
static void metrics(struct http_request *req, struct http_response *res)
{
    struct auth_principal p;
    struct admin_actor a;
    if (admin_only(req, res, &p, &a))
        return;
    res->status = 200;
    strbuf_reset(&res->body);
    api_metrics_text(&res->body);
    snprintf(res->content_type, sizeof(res->content_type), "%s",
             "text/plain; version=0.0.4; charset=utf-8");
}

const struct http_route api_slipway_routes[] = {
    {"GET", "/healthz", healthz, 0, NULL},
    {"GET", "/api/slipway/me", me, 0, NULL},
    {"GET", "/api/slipway/users", users_list, 0, NULL},
    {"POST", "/api/slipway/users", users_add, 0, NULL},
    {"POST", "/api/slipway/users/:email/apikeys", apikey_add, 0, NULL},
    {"DELETE", "/api/slipway/users/:email/apikeys/:id", apikey_revoke, 0, NULL},
    {"POST", "/api/slipway/users/:email/tokens", token_add, 0, NULL},
    {"DELETE", "/api/slipway/users/:email/tokens/:id", token_revoke, 0, NULL},
    {"GET", "/api/slipway/apps", apps_list, 0, NULL},
    {"POST", "/api/slipway/apps", apps_add, 0, NULL},
    {"GET", "/api/slipway/apps/:app/members", members_list, 0, NULL},
    {"POST", "/api/slipway/apps/:app/members", members_add, 0, NULL},
    {"POST", "/api/slipway/apps/:app/grant", grant, 0, NULL},
    {"POST", "/api/slipway/apps/:app/revoke", revoke, 0, NULL},
    {"GET", "/api/slipway/audit", audit_list, 0, NULL},
    {"GET", "/metrics", metrics, 0, NULL},
};
const size_t api_slipway_nr_routes = sizeof(api_slipway_routes) / sizeof(api_slipway_routes[0]);
