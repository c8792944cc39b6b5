/* api — Deploy API v4 (shared/design/mendix-api.md §7.2): apps, their environments and the
 * members' permissions on each environment, for personal access tokens only. Apps are named by
 * their ProjectId, environments by their EnvironmentId; dates are ISO 8601; errors have the v4
 * body ({"error":{code, message, invalid-params}}). The dispatcher has found the app (and the
 * environment) and checked the caller's role and rights; v4 has no start, stop or transport
 * (Deploy API v1, deploy.c, does those).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "base/util.h"
#include "deploy/deploy.h"
#include "base/banned.h"

#define V4_LIMIT_DEFAULT   100
#define V4_LIMIT_MAX       1000
#define V4_PERMISSIONS_MAX 1000 /* entries of one PATCH */

/* The v4 permission object's names and the rights they stand for, in the object's order. */
static const struct {
    const char *name;
    unsigned right;
} perms[] = {
    {"canDeployApp", RIGHT_TRANSPORT}, {"canManageBackups", RIGHT_BACKUPS},
    {"canViewAlerts", RIGHT_ALERTS},   {"canAccessAPI", RIGHT_API},
    {"canViewLogs", RIGHT_MONITORING}, {"canManagePrivileges", RIGHT_PERMISSIONS},
};
#define NR_PERMS (sizeof(perms) / sizeof(perms[0]))

static int bad_param(struct http_request *req, struct http_response *res, const char *name,
                     const char *reason)
{
    return api_fail_params(req, res, 400, json_pack("[{s:s,s:s}]", "name", name, "reason", reason),
                           "invalid parameter '%s': %s", name, reason);
}

/* ---- pagination ---- */

struct page {
    int64_t offset, limit;
    size_t size; /* how many there are in all (before offset and limit) */
};

/* ?offset (0..) and ?limit (1..V4_LIMIT_MAX, default V4_LIMIT_DEFAULT): 0, or -1 with 400
 * answered. */
static int page_parse(struct http_request *req, struct http_response *res, struct page *pg)
{
    static const char *const names[] = {"offset", "limit"};
    const int64_t max[] = {INT32_MAX, V4_LIMIT_MAX}, min[] = {0, 1};
    int64_t *out[] = {&pg->offset, &pg->limit};
    pg->offset = 0;
    pg->limit = V4_LIMIT_DEFAULT;
    pg->size = 0;
    for (int i = 0; i < 2; i++) {
        char *v = http_query(req, names[i]);
        int r = v && parse_i64(v, min[i], max[i], out[i]);
        free(v);
        if (r) {
            char reason[64];
            snprintf(reason, sizeof(reason), "a number from %lld to %lld", (long long)min[i],
                     (long long)max[i]);
            return bad_param(req, res, names[i], reason);
        }
    }
    return 0;
}

/* Whether the item at index i (0-based, counted over all) is on the page. */
static bool page_has(const struct page *pg, size_t i)
{
    return (int64_t)i >= pg->offset && (int64_t)i < pg->offset + pg->limit;
}

static json_t *page_json(const struct page *pg)
{
    return json_pack("{s:I,s:I,s:I}", "offset", (json_int_t)pg->offset, "limit",
                     (json_int_t)pg->limit, "size", (json_int_t)pg->size);
}

/* ---- apps ---- */

struct contact {
    struct store_user user;
    bool found;
};

static int first_admin(const struct store_member *m, void *arg)
{
    struct contact *c = arg;
    if (m->role != STORE_ROLE_ADMIN)
        return 0;
    c->found = !store_user_by_id(m->user_id, &c->user);
    return c->found ? 1 : 0; /* stop at the first */
}

/* The technical contact: the app's first admin member (by email), or null fields. */
static json_t *contact_json(const struct store_app *app)
{
    struct contact c = {.found = false};
    if (store_member_each(app->id, first_admin, &c) < 0 || !c.found)
        return json_pack("{s:n,s:n,s:n}", "userId", "name", "status");
    return json_pack("{s:o,s:o,s:s}", "userId", api_text(c.user.email), "name",
                     api_text(c.user.name), "status", c.user.active ? "active" : "inactive");
}

static json_t *app_json(const struct store_app *app)
{
    return json_pack("{s:s,s:o,s:s,s:s,s:o,s:s}", "id", app->project_id, "name",
                     api_text(app->name), "licenseType", "licensed", "subdomain", app->app_id,
                     "technicalContact", contact_json(app), "region", "self-hosted");
}

struct app_list {
    struct page *pg;
    json_t *arr;
};

static int add_app(const struct store_app *app, void *arg)
{
    struct app_list *l = arg;
    if (page_has(l->pg, l->pg->size++))
        return json_array_append_new(l->arr, app_json(app)) ? -ENOMEM : 0;
    return 0;
}

void api_v4_apps_list(struct http_request *req, struct http_response *res,
                      const struct api_caller *caller)
{
    struct page pg;
    if (page_parse(req, res, &pg))
        return;
    char *license = http_query(req, "licenseType");
    bool free_only = license && !strcmp(license, "free");
    bool bad = license && !free_only && strcmp(license, "licensed");
    free(license);
    if (bad) {
        bad_param(req, res, "licenseType", "'free' or 'licensed'");
        return;
    }
    struct app_list l = {&pg, json_array()};
    /* every Slipway app is "licensed": none is free */
    int r = !l.arr ? -ENOMEM
            : free_only
                ? 0
                : store_app_each(caller->who.user.admin ? 0 : caller->who.user.id, add_app, &l);
    if (r < 0) {
        json_decref(l.arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list the apps");
        return;
    }
    api_json(res, 200, json_pack("{s:o,s:o}", "apps", l.arr, "pagination", page_json(&pg)));
}

void api_v4_app_get(struct http_request *req, struct http_response *res,
                    const struct api_caller *caller)
{
    (void)req;
    api_json(res, 200, app_json(&caller->app));
}

/* ---- environments ---- */

static const char *env_state(const struct store_env *env)
{
    if (!strcmp(env->status, "Running"))
        return "running";
    if (!strcmp(env->status, "Stopped"))
        return "stopped";
    return "notdeployed";
}

static json_t *iso_time(int64_t ms)
{
    char t[21];
    time_rfc3339(ms / 1000, t);
    return json_string(t);
}

/* The package the environment holds, v4's shape; NULL when it holds none. */
static json_t *env_package_json(const struct store_app *app, const struct store_env *env)
{
    struct store_package p;
    if (!env->package_id[0] || store_package_get(env->package_id, &p))
        return NULL;
    const char *runtime = "";
    json_t *m = deploy_release_manifest(app->app_id, p.package_id);
    if (json_is_string(json_object_get(m, "runtime")))
        runtime = json_string_value(json_object_get(m, "runtime"));
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:o,s:n,s:o,s:o,s:I}", "id", p.package_id, "appId",
                          app->project_id, "modelVersion", p.version, "runtimeVersion", runtime,
                          "createdOn", iso_time(p.created_ms), "expiresOn", "description",
                          api_text(p.description), "fileName", api_text(p.name), "fileSize",
                          (json_int_t)p.size);
    json_decref(m);
    return j;
}

static json_t *env_json(const struct store_app *app, const struct store_env *env, bool with_package)
{
    char url[STORE_URL_MAX];
    deploy_env_url(env, url, sizeof(url));
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:s}", "id", env->environment_id, "appId",
                  app->project_id, "name", env->mode, "state", env_state(env), "isProduction",
                  env->production, "url", url, "dbVersion", "", "planName", "self-hosted");
    json_t *pkg = with_package ? env_package_json(app, env) : NULL;
    if (j && pkg)
        json_object_set_new(j, "package", pkg);
    else
        json_decref(pkg);
    return j;
}

/* ?expand: absent, or "package". *package set; -1 with 400 answered for anything else. */
static int expand_parse(struct http_request *req, struct http_response *res, bool *package)
{
    char *v = http_query(req, "expand");
    *package = v && !strcmp(v, "package");
    bool bad = v && !*package;
    free(v);
    return bad ? bad_param(req, res, "expand", "only 'package' can be expanded") : 0;
}

#define NR_ENVS_MAX 64 /* an app has three; a cap for the sort below */

struct env_rows {
    struct store_env rows[NR_ENVS_MAX];
    size_t nr;
};

static int collect_env(const struct store_env *e, void *arg)
{
    struct env_rows *l = arg;
    if (l->nr == NR_ENVS_MAX)
        return -E2BIG;
    l->rows[l->nr++] = *e;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct store_env *)a)->mode, ((const struct store_env *)b)->mode);
}

void api_v4_envs_list(struct http_request *req, struct http_response *res,
                      const struct api_caller *caller)
{
    struct page pg;
    bool with_package;
    if (page_parse(req, res, &pg) || expand_parse(req, res, &with_package))
        return;
    /* sort: name or index (the environments' order), ascending, or descending with '-'; '+'
     * may arrive as a space when a client does not encode it */
    char *sort = http_query(req, "sort");
    const char *key = sort ? sort : "index";
    bool desc = key[0] == '-';
    if (key[0] == '-' || key[0] == '+' || key[0] == ' ')
        key++;
    bool name = !strcmp(key, "name"), bad = !name && strcmp(key, "index");
    free(sort);
    if (bad) {
        bad_param(req, res, "sort", "name or index, with + (ascending) or - (descending)");
        return;
    }
    struct env_rows *l = calloc(1, sizeof(*l));
    if (!l || store_env_each(caller->app.id, collect_env, l)) {
        free(l);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list the environments");
        return;
    }
    if (name)
        qsort(l->rows, l->nr, sizeof(l->rows[0]), by_name);
    json_t *arr = json_array();
    pg.size = l->nr;
    for (size_t i = 0; arr && i < l->nr; i++) {
        const struct store_env *e = &l->rows[desc ? l->nr - 1 - i : i];
        if (page_has(&pg, i) && json_array_append_new(arr, env_json(&caller->app, e, with_package)))
            json_decref(arr), arr = NULL;
    }
    free(l);
    if (!arr) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "out of memory");
        return;
    }
    api_json(res, 200, json_pack("{s:o,s:o}", "environments", arr, "pagination", page_json(&pg)));
}

void api_v4_env_get(struct http_request *req, struct http_response *res,
                    const struct api_caller *caller)
{
    bool with_package;
    if (expand_parse(req, res, &with_package))
        return;
    api_json(res, 200, env_json(&caller->app, &caller->env, with_package));
}

/* ---- permissions ---- */

struct perm_list {
    const struct store_env *env;
    const char *user_id; /* ?userId: only that member (NULL: all) */
    struct page *pg;
    json_t *arr;
};

static int add_member(const struct store_member *m, void *arg)
{
    struct perm_list *l = arg;
    if (l->user_id && strcasecmp(l->user_id, m->email))
        return 0;
    if (!page_has(l->pg, l->pg->size++))
        return 0;
    unsigned rights = 0;
    if (store_rights_get(l->env->id, m->user_id, &rights))
        return -EIO;
    json_t *p = json_pack("{s:{s:o}}", "member", "userId", api_text(m->email));
    for (size_t i = 0; p && i < NR_PERMS; i++)
        json_object_set_new(p, perms[i].name,
                            json_string(rights & perms[i].right ? "true" : "false"));
    return json_array_append_new(l->arr, p) ? -ENOMEM : 0;
}

/* The GET answer: the members' permissions on the environment, as now. */
static void permissions_answer(struct http_request *req, struct http_response *res,
                               const struct api_caller *caller, struct page *pg,
                               const char *user_id)
{
    struct perm_list l = {&caller->env, user_id, pg, json_array()};
    int r = l.arr ? store_member_each(caller->app.id, add_member, &l) : -ENOMEM;
    if (r < 0) {
        json_decref(l.arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the permissions");
        return;
    }
    api_json(res, 200,
             json_pack("{s:o,s:o,s:o}", "technicalContact", contact_json(&caller->app),
                       "permissions", l.arr, "pagination", page_json(pg)));
}

void api_v4_permissions_get(struct http_request *req, struct http_response *res,
                            const struct api_caller *caller)
{
    struct page pg;
    if (page_parse(req, res, &pg))
        return;
    char *user_id = http_query(req, "userId");
    permissions_answer(req, res, caller, &pg, user_id);
    free(user_id);
}

/* One entry of a PATCH, checked. */
struct perm_change {
    int64_t user;
    const char *email; /* in the body */
    unsigned set, clear;
};

/* Checks entry i of the body's permissions against the app: 0 and *out, or a reason in
 * `reason` and the offending name in `name`. */
static int perm_check(const struct store_app *app, json_t *entry, size_t i, struct perm_change *out,
                      char *name, size_t name_cap, char *reason, size_t reason_cap)
{
    const char *email =
        json_string_value(json_object_get(json_object_get(entry, "member"), "userId"));
    snprintf(name, name_cap, "permissions[%zu].member.userId", i);
    if (!json_is_object(entry) || !email || !*email || strlen(email) > STORE_EMAIL_MAX) {
        snprintf(reason, reason_cap, "each entry needs member.userId: a member's email");
        return -1;
    }
    struct store_user u;
    enum store_role role = STORE_ROLE_NONE;
    int r = store_user_by_email(email, &u);
    if (!r)
        r = store_member_role(app->id, u.id, &role);
    if (r == -ENOENT || (!r && role == STORE_ROLE_NONE)) {
        snprintf(reason, reason_cap, "'%.100s' is not a member of app '%s'", email, app->app_id);
        return -1;
    }
    if (r) {
        snprintf(reason, reason_cap, "cannot read the member");
        return -1;
    }
    *out = (struct perm_change){.user = u.id, .email = email};
    for (size_t k = 0; k < NR_PERMS; k++) {
        json_t *v = json_object_get(entry, perms[k].name);
        if (!v)
            continue; /* absent: unchanged */
        if (!json_is_boolean(v)) {
            snprintf(name, name_cap, "permissions[%zu].%s", i, perms[k].name);
            snprintf(reason, reason_cap, "true or false");
            return -1;
        }
        if (json_is_true(v))
            out->set |= perms[k].right;
        else
            out->clear |= perms[k].right;
    }
    return 0;
}

/* "<email> +canX -canY" for the audit entry. */
static void describe_change(const struct perm_change *c, struct strbuf *out)
{
    strbuf_addf(out, "%s%s", out->len ? "; " : "", c->email);
    for (size_t k = 0; k < NR_PERMS; k++)
        if ((c->set | c->clear) & perms[k].right)
            strbuf_addf(out, " %c%s", c->set & perms[k].right ? '+' : '-', perms[k].name);
}

void api_v4_permissions_set(struct http_request *req, struct http_response *res,
                            const struct api_caller *caller)
{
    struct perm_change *changes = NULL;
    struct strbuf detail = STRBUF_INIT;
    json_t *invalid = NULL, *body = api_body_object(req, res);
    if (!body)
        goto out;
    json_t *list = json_object_get(body, "permissions");
    size_t nr = json_array_size(list);
    if (!json_is_array(list) || !nr || nr > V4_PERMISSIONS_MAX) {
        char reason[80];
        snprintf(reason, sizeof(reason), "a list of 1 to %d {member: {userId}, ...} objects",
                 V4_PERMISSIONS_MAX);
        bad_param(req, res, "permissions", reason);
        goto out;
    }
    changes = calloc(nr, sizeof(*changes));
    invalid = json_array();
    if (!changes || !invalid) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "out of memory");
        goto out;
    }
    /* every entry is checked before any is written */
    for (size_t i = 0; i < nr; i++) {
        char name[80], reason[300];
        if (perm_check(&caller->app, json_array_get(list, i), i, &changes[i], name, sizeof(name),
                       reason, sizeof(reason)))
            json_array_append_new(invalid,
                                  json_pack("{s:s,s:o}", "name", name, "reason", api_text(reason)));
    }
    if (json_array_size(invalid)) {
        const char *first =
            json_string_value(json_object_get(json_array_get(invalid, 0), "reason"));
        char msg[320];
        snprintf(msg, sizeof(msg), "%s", first ? first : "invalid permissions");
        api_fail_params(req, res, 400, invalid, "the permissions cannot be set: %s", msg);
        invalid = NULL; /* taken */
        goto out;
    }
    int r = store_begin();
    for (size_t i = 0; !r && i < nr; i++) {
        r = store_rights_update(caller->app.id, caller->env.id, changes[i].user, changes[i].set,
                                changes[i].clear);
        describe_change(&changes[i], &detail);
    }
    if (r || store_commit()) {
        store_rollback();
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot change the permissions");
        goto out;
    }
    res->status = 200;
    struct page pg = {0, V4_LIMIT_MAX, 0};
    permissions_answer(req, res, caller, &pg, NULL);
out:
    if (body) /* the detail names who got and lost what, never more */
        api_audit(req, caller->who.user.email, "env permissions", caller->app.app_id,
                  caller->env.mode, res->status,
                  res->status < 400 && strbuf_ok(&detail) ? detail.buf : "");
    json_decref(invalid);
    free(changes);
    strbuf_release(&detail);
    json_decref(body);
}
