/* api — Team Server API v1 (Mendix-compatible): apps, branches and revisions under /api/1.
 * Dates are epoch milliseconds; errors are {"errorCode","errorMessage"}. Reading an app needs
 * membership and API Rights on at least one of its environments (admins have every right). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "api/api_int.h"
#include "deploy/deploy.h"
#include "base/layout.h"
#include "base/util.h"
#include "base/banned.h"

#define REVISIONS_DEFAULT 20
#define REVISIONS_MAX     1000

int api_app_find(const struct http_request *req, struct http_response *res, const char *app_id,
                 struct store_app *app)
{
    if (!admin_app_id_valid(app_id))
        return api_fail(req, res, 400, "INVALID_APPID", "'%.60s' is not a valid AppId", app_id);
    int r = store_app_by_appid(app_id, app);
    if (r == -ENOENT)
        return api_fail(req, res, 404, "APP_NOT_FOUND", "app '%s' does not exist", app_id);
    if (r)
        return api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the app");
    return 0;
}

int api_repo_open(const struct http_request *req, struct http_response *res,
                  const struct store_app *app, struct vcs_repo **repo)
{
    char *path = layout_repo_path(app->app_id);
    int r = path ? vcs_open(path, repo) : -ENOMEM;
    free(path);
    if (r)
        return api_fail(req, res, 500, "INTERNAL_ERROR", "cannot open the app's repository");
    return 0;
}

int api_branch_name(struct vcs_repo *repo, const struct store_app *app, const char *name,
                    const char **git_name, char head_id[VCS_OID_HEX])
{
    int r = vcs_branch_exists(repo, name, head_id);
    if (r != -ENOENT) {
        *git_name = name;
        return r;
    }
    if (strcmp(name, "trunk") == 0)
        *git_name = app->default_branch;
    else if (str_has_prefix(name, "branches/"))
        *git_name = name + 9;
    else
        return -ENOENT;
    return vcs_branch_exists(repo, *git_name, head_id);
}

int api_branch_resolve(struct vcs_repo *repo, const struct store_app *app, const char *name,
                       struct vcs_branch *out)
{
    const char *git_name;
    int r = api_branch_name(repo, app, name, &git_name, NULL);
    return r ? r : vcs_branch_get(repo, git_name, out);
}

/* An app as Mendix shows it; its Url is the Production environment's once a package is
 * there, else the one it was made with. */
static json_t *app_json(const struct store_app *a)
{
    struct store_env prod;
    char url[STORE_URL_MAX + 1];
    snprintf(url, sizeof(url), "%s", a->url);
    if (!store_env_by_mode(a->id, "Production", &prod) && prod.package_id[0])
        deploy_env_url(&prod, url, sizeof(url));
    return json_pack("{s:s,s:s,s:s,s:s}", "AppId", a->app_id, "Name", a->name, "ProjectId",
                     a->project_id, "Url", url);
}

static int add_app(const struct store_app *a, void *arg)
{
    return json_array_append_new(arg, app_json(a)) ? -ENOMEM : 0;
}

void api_ts_apps_list(struct http_request *req, struct http_response *res,
                      const struct api_caller *caller)
{
    const struct store_user *u = &caller->who.user;
    json_t *arr = json_array();
    if (store_app_each(u->admin ? 0 : u->id, add_app, arr)) {
        json_decref(arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list apps");
        return;
    }
    api_json(res, 200, arr);
}

void api_ts_app_get(struct http_request *req, struct http_response *res,
                    const struct api_caller *caller)
{
    (void)req;
    api_json(res, 200, app_json(&caller->app));
}

static json_t *branch_json(const struct store_app *app, const struct vcs_branch *b)
{
    bool is_default = strcmp(b->name, app->default_branch) == 0;
    return json_pack("{s:o,s:o,s:I,s:s,s:s,s:s}", "Name", api_text(b->name), "DisplayName",
                     is_default ? json_string("Main line") : api_text(b->name),
                     "LatestRevisionNumber", (json_int_t)b->head.number,
                     "LatestRevisionMendixVersion", "", "LatestTaggedVersion",
                     b->latest_tagged_version, "LatestRevisionHash", b->head.id);
}

struct branch_list {
    const struct store_app *app;
    json_t *arr;
};

static int add_branch(const struct vcs_branch *b, void *arg)
{
    struct branch_list *bl = arg;
    return json_array_append_new(bl->arr, branch_json(bl->app, b)) ? -ENOMEM : 0;
}

void api_ts_branches_list(struct http_request *req, struct http_response *res,
                          const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct vcs_repo *repo;
    if (api_repo_open(req, res, &app, &repo))
        return;
    struct branch_list bl = {&app, json_array()};
    if (vcs_branch_each(repo, add_branch, &bl)) {
        json_decref(bl.arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list branches");
        return;
    }
    api_json(res, 200, bl.arr);
}

/* The branch name spelled by path segments [first, end) joined with '/': clients send
 * "branches%2Fx" in one segment, and some send "branches/x" unencoded. */
static int join_segments(const struct http_request *req, size_t first, size_t end,
                         struct strbuf *name)
{
    for (size_t i = first; i < end; i++) {
        if (i > first)
            strbuf_addch(name, '/');
        strbuf_adds(name, req->path.seg[i]);
    }
    return strbuf_ok(name) ? 0 : -ENOMEM;
}

static int branch_lookup(const struct http_request *req, const struct store_app *app,
                         struct vcs_repo *repo, size_t first, size_t end, struct strbuf *name,
                         struct vcs_branch *b)
{
    int r = join_segments(req, first, end, name);
    return r ? r : api_branch_resolve(repo, app, name->buf, b);
}

/* As branch_lookup; -1 with 404 BRANCH_NOT_FOUND (or 500) answered. */
static int branch_find(struct http_request *req, struct http_response *res,
                       const struct store_app *app, struct vcs_repo *repo, size_t first, size_t end,
                       struct vcs_branch *b)
{
    struct strbuf name = STRBUF_INIT;
    int r = branch_lookup(req, app, repo, first, end, &name, b);
    if (r == -ENOENT)
        api_fail(req, res, 404, "BRANCH_NOT_FOUND", "app '%s' has no branch '%.255s'", app->app_id,
                 name.buf);
    else if (r)
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the branch");
    strbuf_release(&name);
    return r ? -1 : 0;
}

static void revisions_list(struct http_request *req, struct http_response *res,
                           const struct store_app *app, struct vcs_repo *repo, const char *name,
                           int resolved, const char *head_id);

/* Answers ".../<Name>/revisions" (path segments [first, end) with "revisions" last) and returns
 * true, unless the whole path names a branch. git refuses a branch "<Name>/revisions" while
 * "<Name>" exists (and the reverse), so the order of the lookups does not change the meaning. */
static bool revisions_of(struct http_request *req, struct http_response *res,
                         const struct store_app *app, struct vcs_repo *repo, size_t first,
                         size_t end)
{
    struct strbuf name = STRBUF_INIT, full = STRBUF_INIT;
    const char *git_name, *full_git_name;
    char head_id[VCS_OID_HEX] = "";
    int r = join_segments(req, first, end - 1, &name);
    if (!r)
        r = api_branch_name(repo, app, name.buf, &git_name, head_id);
    bool answered = r != -ENOENT || join_segments(req, first, end, &full) ||
                    api_branch_name(repo, app, full.buf, &full_git_name, NULL) != 0;
    if (answered)
        revisions_list(req, res, app, repo, name.buf, r, head_id);
    strbuf_release(&name);
    strbuf_release(&full);
    return answered;
}

/* GET /api/1/apps/<AppId>/branches/<Name>[/revisions]: <Name> may span several segments. */
void api_ts_branch_get(struct http_request *req, struct http_response *res,
                       const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct vcs_repo *repo;
    struct vcs_branch b = {0};
    size_t first = req->tail_index, end = req->path.nr_seg;
    if (api_repo_open(req, res, &app, &repo))
        return;
    if (end - first > 1 && strcmp(req->path.seg[end - 1], "revisions") == 0 &&
        revisions_of(req, res, &app, repo, first, end))
        return;
    if (branch_find(req, res, &app, repo, first, end, &b))
        return;
    api_json(res, 200, branch_json(&app, &b));
    vcs_branch_release(&b);
}

/* Revisions are the API's busiest answer: they are written straight into the answer's buffer,
 * since building a jansson object per value cost more than the rest of the request. */
static int add_revision(const struct vcs_commit *c, void *arg)
{
    struct strbuf *sb = arg;
    size_t msg_len = strlen(c->message);
    while (msg_len && (c->message[msg_len - 1] == '\n' || c->message[msg_len - 1] == '\r'))
        msg_len--;
    if (sb->len > 1)
        strbuf_addch(sb, ',');
    strbuf_addf(sb, "{\"Number\":%lld,\"CommitMessage\":", (long long)c->number);
    strbuf_add_json_strn(sb, c->message, msg_len);
    strbuf_addf(sb, ",\"Date\":%lld,\"Author\":", (long long)c->time_s * 1000);
    strbuf_add_json_str(sb, c->author_email);
    strbuf_addf(sb, ",\"MendixVersion\":\"\",\"Hash\":\"%s\"}", c->id);
    return strbuf_ok(sb) ? 0 : -ENOMEM;
}

/* Reads an optional non-negative integer query parameter. -1 with a 400 answered if malformed. */
static int query_num(struct http_request *req, struct http_response *res, const char *name,
                     int64_t min, int64_t max, int64_t *out)
{
    char *v = http_query(req, name);
    if (!v)
        return 0;
    int r = parse_i64(v, min, max, out);
    free(v);
    if (r)
        return api_fail(req, res, 400, "INVALID_PARAMETERS",
                        "'%s' must be a number from %lld to %lld", name, (long long)min,
                        (long long)max);
    return 0;
}

/* Answers the revisions of a branch the caller resolved: r is api_branch_name's result for the
 * client's `name`, and head_id the branch's head. */
static void revisions_list(struct http_request *req, struct http_response *res,
                           const struct store_app *app, struct vcs_repo *repo, const char *name,
                           int r, const char *head_id)
{
    int64_t limit = REVISIONS_DEFAULT, offset = 0;
    if (query_num(req, res, "limit", 1, REVISIONS_MAX, &limit) ||
        query_num(req, res, "offset", 0, INT32_MAX, &offset))
        return;
    if (!r) {
        strbuf_reset(&res->body);
        strbuf_addch(&res->body, '[');
        r = vcs_history_each(repo, head_id, (size_t)offset, (size_t)limit, add_revision,
                             &res->body);
        strbuf_addch(&res->body, ']');
        res->status = 200;
    }
    if (r == -ENOENT)
        api_fail(req, res, 404, "BRANCH_NOT_FOUND", "app '%s' has no branch '%.255s'", app->app_id,
                 name);
    else if (r)
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the revisions");
}
