/* api — App Repository API (Mendix-compatible) under /v1/repositories/<ProjectId>: info, branches
 * and commits with cursor paging. Authentication is a personal access token (MxToken) with the
 * scope mx:modelrepository:repo:read; the user must be a member of the app (routes.c checks). Dates
 * are RFC 3339; errors are {"errorCode":"RS<status>","errorMessage"}.
 *
 * Cursors are opaque to clients: base64url of "o:<offset>".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "base/crypto.h"
#include "base/util.h"
#include "base/banned.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX     100

void api_repo_info(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    char *url = NULL;
    if (asprintf(&url, "%s/git/%s.git", api_cfg.public_url, app.app_id) < 0) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "out of memory");
        return;
    }
    api_json(res, 200,
             json_pack("{s:s,s:s,s:s}", "appId", app.project_id, "type", "git", "url", url));
    free(url);
}

static json_t *commit_json(const struct vcs_commit *c)
{
    char date[21];
    time_rfc3339(c->time_s, date);
    return json_pack("{s:s,s:{s:o,s:o},s:s,s:o,s:s,s:[]}", "id", c->id, "author", "name",
                     api_text(c->author_name), "email", api_text(c->author_email), "date", date,
                     "message", api_commit_message(c->message), "mendixVersion", "",
                     "relatedStories");
}

static json_t *cursor(size_t offset)
{
    char text[32], enc[48];
    int n = snprintf(text, sizeof(text), "o:%zu", offset);
    crypto_base64url((const unsigned char *)text, (size_t)n, enc);
    return json_string(enc);
}

/* Reads ?limit and ?cursor. -1 with a 400 answered when malformed. */
static int paging(struct http_request *req, struct http_response *res, size_t *limit,
                  size_t *offset)
{
    char *l = http_query(req, "limit"), *c = http_query(req, "cursor");
    int64_t v;
    int r = 0;
    *limit = PAGE_DEFAULT;
    *offset = 0;
    if (l) {
        if (parse_i64(l, 1, PAGE_MAX, &v))
            r = api_fail(req, res, 400, "INVALID_PARAMETERS", "limit must be 1 to %d", PAGE_MAX);
        else
            *limit = (size_t)v;
    }
    if (!r && c) {
        unsigned char dec[32];
        long n = strlen(c) < 40 ? crypto_base64url_decode(c, strlen(c), dec, sizeof(dec) - 1) : -1;
        if (n > 2)
            dec[n] = '\0';
        if (n <= 2 || dec[0] != 'o' || dec[1] != ':' ||
            parse_i64((const char *)dec + 2, 0, INT32_MAX, &v))
            r = api_fail(req, res, 400, "INVALID_PARAMETERS", "the cursor is not valid");
        else
            *offset = (size_t)v;
    }
    free(l);
    free(c);
    return r;
}

/* {items, cursors:{first, prev?, next?, last}} for a page of `limit` at `offset` of `total`. */
static json_t *page_json(json_t *items, size_t offset, size_t limit, size_t total)
{
    json_t *cursors = json_object();
    size_t last = total ? (total - 1) / limit * limit : 0;
    json_object_set_new(cursors, "first", cursor(0));
    if (offset > 0)
        json_object_set_new(cursors, "prev", cursor(offset > limit ? offset - limit : 0));
    if (offset + limit < total)
        json_object_set_new(cursors, "next", cursor(offset + limit));
    json_object_set_new(cursors, "last", cursor(last));
    return json_pack("{s:o,s:o}", "items", items, "cursors", cursors);
}

struct branch_page {
    size_t index, offset, limit;
    json_t *items;
};

static int add_branch(const struct vcs_branch *b, void *arg)
{
    struct branch_page *bp = arg;
    size_t i = bp->index++;
    if (i < bp->offset || i >= bp->offset + bp->limit)
        return 0;
    json_t *j =
        json_pack("{s:o,s:o}", "name", api_text(b->name), "latestCommit", commit_json(&b->head));
    return json_array_append_new(bp->items, j) ? -ENOMEM : 0;
}

void api_repo_branches(struct http_request *req, struct http_response *res,
                       const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct vcs_repo *repo;
    struct branch_page bp = {0};
    if (paging(req, res, &bp.limit, &bp.offset) || api_repo_open(req, res, &app, &repo))
        return;
    bp.items = json_array();
    if (vcs_branch_each(repo, add_branch, &bp)) {
        json_decref(bp.items);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list branches");
        return;
    }
    api_json(res, 200, page_json(bp.items, bp.offset, bp.limit, bp.index));
}

static int find_branch(struct http_request *req, struct http_response *res,
                       const struct store_app *app, struct vcs_repo **repo, struct vcs_branch *b)
{
    if (api_repo_open(req, res, app, repo))
        return -1;
    int r = api_branch_resolve(*repo, app, req->params[1], b);
    if (r == -ENOENT)
        return api_fail(req, res, 404, "BRANCH_NOT_FOUND", "no branch '%.255s'", req->params[1]);
    if (r)
        return api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the branch");
    return 0;
}

void api_repo_branch(struct http_request *req, struct http_response *res,
                     const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct vcs_repo *repo;
    struct vcs_branch b = {0};
    if (find_branch(req, res, &app, &repo, &b))
        return;
    api_json(
        res, 200,
        json_pack("{s:o,s:o}", "name", api_text(b.name), "latestCommit", commit_json(&b.head)));
    vcs_branch_release(&b);
}

static int add_commit(const struct vcs_commit *c, void *arg)
{
    return json_array_append_new(arg, commit_json(c)) ? -ENOMEM : 0;
}

void api_repo_commits(struct http_request *req, struct http_response *res,
                      const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct vcs_repo *repo;
    struct vcs_branch b = {0};
    size_t limit, offset;
    if (paging(req, res, &limit, &offset) || find_branch(req, res, &app, &repo, &b))
        return;
    json_t *items = json_array();
    if (vcs_revision_each(repo, b.name, offset, limit, add_commit, items)) {
        json_decref(items);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the commits");
    } else {
        api_json(res, 200, page_json(items, offset, limit, (size_t)b.head.number));
    }
    vcs_branch_release(&b);
}
