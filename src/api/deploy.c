/* api — Deploy API v1: environments, start/stop/transport/clean, the environment's package,
 * settings, scale, tags and logs (shared/design/mendix-api.md §3). The dispatcher has found the
 * environment (caller->env) and checked the caller's rights on it; the changes are deploy/'s. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api_int.h"
#include "base/crypto.h"
#include "base/util.h"
#include "deploy/deploy.h"
#include "base/banned.h"

static const int deploy_status[] = {
    [DEPLOY_OK] = 200,
    [DEPLOY_E_INVALID] = 400,
    [DEPLOY_E_FORBIDDEN] = 403,
    [DEPLOY_E_NOT_FOUND] = 404,
    [DEPLOY_E_STATE] = 422,
    [DEPLOY_E_INTERNAL] = 500,
    [DEPLOY_E_UNAVAILABLE] = 503,
};

static void fail(struct http_request *req, struct http_response *res,
                 const struct deploy_error *err)
{
    api_fail(req, res, deploy_status[err->kind], err->code[0] ? err->code : "INTERNAL_ERROR", "%s",
             err->message);
}

/* The release's runtime (MendixVersion) of a package, "" when unknown. */
static void package_runtime(const char *app_id, const char *package_id, char *out, size_t cap)
{
    out[0] = '\0';
    if (!package_id[0])
        return;
    json_t *m = deploy_release_manifest(app_id, package_id);
    const char *rt = json_string_value(json_object_get(m, "runtime"));
    snprintf(out, cap, "%s", rt ? rt : "");
    json_decref(m);
}

json_t *api_env_json(const struct store_app *app, const struct store_env *env)
{
    char url[STORE_URL_MAX], runtime[256];
    struct store_package pkg = {0};
    deploy_env_url(env, url, sizeof(url));
    if (env->package_id[0])
        store_package_get(env->package_id, &pkg);
    package_runtime(app->app_id, env->package_id, runtime, sizeof(runtime));
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:i,s:i,s:i,s:b}", "Status", env->status,
                     "EnvironmentId", env->environment_id, "Url", url, "Mode", env->mode,
                     "ModelVersion", pkg.version, "MendixVersion", runtime, "Production",
                     env->production, "Instances", env->instances, "MemoryPerInstance",
                     env->memory_mb, "TotalMemory", env->instances * env->memory_mb, "CrashLooping",
                     env->crash_looping);
}

struct env_list {
    const struct store_app *app;
    json_t *arr;
};

static int add_env(const struct store_env *e, void *arg)
{
    struct env_list *l = arg;
    return json_array_append_new(l->arr, api_env_json(l->app, e)) ? -ENOMEM : 0;
}

void api_env_list(struct http_request *req, struct http_response *res,
                  const struct api_caller *caller)
{
    struct env_list l = {&caller->app, json_array()};
    if (!l.arr || store_env_each(caller->app.id, add_env, &l)) {
        json_decref(l.arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot list the environments");
        return;
    }
    api_json(res, 200, l.arr);
}

void api_env_get(struct http_request *req, struct http_response *res,
                 const struct api_caller *caller)
{
    (void)req;
    api_json(res, 200, api_env_json(&caller->app, &caller->env));
}

/* The environment as it is now (after a change). */
static void env_now(struct http_response *res, const struct api_caller *caller)
{
    struct store_env env = caller->env;
    store_env_get(env.id, &env);
    api_json(res, 200, api_env_json(&caller->app, &env));
}

static void audit(struct http_request *req, const struct api_caller *c, const char *action,
                  int status, const char *detail)
{
    api_audit(req, c->who.user.email, action, c->app.app_id, c->env.mode, status,
              detail ? detail : "");
}

void api_env_start(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    json_t *body = api_body_object(req, res);
    if (!body)
        return;
    json_t *sync = json_object_get(body, "AutoSyncDb"); /* true, "true", or absent: all fine */
    (void)sync;
    json_decref(body);
    struct deploy_error err;
    char job[37];
    bool already;
    if (deploy_start(&caller->app, &caller->env, job, &already, &err)) {
        fail(req, res, &err);
        audit(req, caller, "env start", res->status, err.code);
        return;
    }
    if (already) {
        api_fail(req, res, 200, "ALREADY_STARTED", "%s is running already", caller->env.mode);
        return;
    }
    audit(req, caller, "env start", 200, job);
    api_json(res, 200, json_pack("{s:s}", "JobId", job));
}

void api_env_start_job(struct http_request *req, struct http_response *res,
                       const struct api_caller *caller)
{
    struct deploy_error err;
    const char *status;
    if (deploy_start_status(&caller->env, req->params[2], &status, &err))
        fail(req, res, &err);
    else
        api_json(res, 200, json_pack("{s:s}", "Status", status));
}

/* A stop answered once the environment has stopped: checked on the HTTP server's waiting
 * thread, so that no worker thread waits for the instances. */
struct stop_wait {
    struct api_caller caller;
    int64_t deadline_ns;
};

static int stop_answer(const struct api_caller *caller, struct http_request *req,
                       struct http_response *res, int done, const struct deploy_error *err)
{
    if (!done)
        return 0;
    if (done < 0) {
        fail(req, res, err);
        audit(req, caller, "env stop", res->status, err->code);
    } else {
        audit(req, caller, "env stop", 200, NULL);
        env_now(res, caller);
    }
    return 1;
}

static int stop_check(void *arg, struct http_request *req, struct http_response *res)
{
    struct stop_wait *w = arg;
    struct deploy_error err;
    return stop_answer(&w->caller, req, res, deploy_stop_done(&w->caller.env, w->deadline_ns, &err),
                       &err);
}

void api_env_stop(struct http_request *req, struct http_response *res,
                  const struct api_caller *caller)
{
    struct deploy_error err;
    /* the body, if any, is ignored: clients send {}, nothing, or {"dummy": ...} */
    int64_t deadline = time_mono_ns() + DEPLOY_STOP_MAX_NS;
    int done = deploy_stop_begin(&caller->env, &err);
    if (!done)
        done = deploy_stop_done(&caller->env, deadline, &err);
    if (stop_answer(caller, req, res, done, &err))
        return;
    struct stop_wait *w = malloc(sizeof(*w));
    if (w) {
        w->caller = *caller;
        w->deadline_ns = deadline;
    }
    if (!w || http_answer_wait(req, stop_check, free, w, 5)) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "out of memory");
        audit(req, caller, "env stop", 500, "INTERNAL_ERROR");
    }
}

void api_env_transport(struct http_request *req, struct http_response *res,
                       const struct api_caller *caller)
{
    json_t *body = api_body_object(req, res);
    if (!body)
        return;
    const char *id = api_str(body, "PackageId");
    struct deploy_error err;
    int r = id ? deploy_transport(&caller->app, &caller->env, id, &err)
               : (api_fail(req, res, 400, "INVALID_PARAMETERS", "the body needs a PackageId"), 1);
    if (r < 0)
        fail(req, res, &err);
    audit(req, caller, "env transport", r ? res->status : 200, id ? id : "");
    json_decref(body);
    if (!r)
        env_now(res, caller);
}

void api_env_clean(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    struct deploy_error err;
    if (deploy_clean(&caller->app, &caller->env, &err)) {
        fail(req, res, &err);
        audit(req, caller, "env clean", res->status, err.code);
        return;
    }
    audit(req, caller, "env clean", 200, NULL);
    struct store_env env = caller->env;
    store_env_get(env.id, &env);
    char url[STORE_URL_MAX];
    deploy_env_url(&env, url, sizeof(url));
    api_json(res, 200,
             json_pack("[{s:s,s:s,s:s}]", "Status", env.status, "Mode", env.mode, "Url", url));
}

void api_env_package(struct http_request *req, struct http_response *res,
                     const struct api_caller *caller)
{
    struct store_package p;
    if (!caller->env.package_id[0] || store_package_get(caller->env.package_id, &p)) {
        api_fail(req, res, 404, "PACKAGE_NOT_FOUND", "%s holds no package", caller->env.mode);
        return;
    }
    json_t *j = api_package_json(&p);
    json_object_set_new(j, "ExpiryDate", json_null());
    if (http_query_bool(req, "url"))
        api_package_url(j, &caller->app, &p);
    api_json(res, 200, j);
}

void api_env_settings(struct http_request *req, struct http_response *res,
                      const struct api_caller *caller)
{
    struct deploy_error err;
    json_t *j = deploy_settings(&caller->app, &caller->env, &err);
    if (!j)
        fail(req, res, &err);
    else
        api_json(res, 200, j);
}

void api_env_settings_set(struct http_request *req, struct http_response *res,
                          const struct api_caller *caller)
{
    json_t *body = api_body_object(req, res);
    if (!body)
        return;
    struct deploy_error err;
    int r = deploy_settings_set(&caller->app, &caller->env, body, &err);
    json_decref(body);
    /* the detail names what changed, never a value */
    audit(req, caller, "env settings", r ? deploy_status[err.kind] : 200, r ? err.code : NULL);
    if (r)
        fail(req, res, &err);
    else
        api_env_settings(req, res, caller);
}

void api_env_scale(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    json_t *body = api_body_object(req, res);
    if (!body)
        return;
    json_t *n = json_object_get(body, "Instances"), *m = json_object_get(body, "MemoryPerInstance");
    struct deploy_error err;
    int r;
    if ((n && !json_is_integer(n)) || (m && !json_is_integer(m)) || (!n && !m))
        r = api_fail(req, res, 400, "INVALID_REQUEST",
                     "the body needs Instances and/or MemoryPerInstance (MB), as numbers");
    else if ((r = deploy_scale(&caller->app, &caller->env,
                               n ? json_integer_value(n) : caller->env.instances,
                               m ? json_integer_value(m) : caller->env.memory_mb, &err)))
        fail(req, res, &err);
    json_decref(body);
    char detail[64];
    snprintf(detail, sizeof(detail), "instances=%lld memory=%lld",
             (long long)(n ? json_integer_value(n) : caller->env.instances),
             (long long)(m ? json_integer_value(m) : caller->env.memory_mb));
    audit(req, caller, "env scale", r ? res->status : 200, detail);
    if (!r)
        env_now(res, caller);
}

struct tag_list {
    json_t *arr;
};

static int add_tag(const char *tag, void *arg)
{
    return json_array_append_new(arg, json_string(tag)) ? -ENOMEM : 0;
}

static void tags_answer(struct http_request *req, struct http_response *res, int64_t env,
                        int status)
{
    json_t *arr = json_array();
    if (!arr || store_tag_each(env, add_tag, arr)) {
        json_decref(arr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the tags");
        return;
    }
    /* {"Tag": "<last>"} as Mendix's examples show, and every tag in "Tags" */
    json_t *j =
        json_pack("{s:o,s:o}", "Tag",
                  json_array_size(arr) ? json_incref(json_array_get(arr, json_array_size(arr) - 1))
                                       : json_null(),
                  "Tags", arr);
    api_json(res, status, j);
}

void api_env_tags(struct http_request *req, struct http_response *res,
                  const struct api_caller *caller)
{
    tags_answer(req, res, caller->env.id, 200);
}

/* The body's Tag: 0 and *tag, or -1 with 400 answered. */
static int body_tag(struct http_request *req, struct http_response *res, json_t **body,
                    const char **tag)
{
    if (!(*body = api_body_object(req, res)))
        return -1;
    *tag = api_str(*body, "Tag");
    if (!*tag || !**tag || strlen(*tag) > STORE_TAG_MAX || !str_utf8_validn(*tag, strlen(*tag))) {
        api_fail(req, res, 400, "INVALID_PARAMETERS", "the body needs a Tag: text of 1 to %d bytes",
                 STORE_TAG_MAX);
        json_decref(*body);
        return -1;
    }
    return 0;
}

void api_env_tag_add(struct http_request *req, struct http_response *res,
                     const struct api_caller *caller)
{
    json_t *body;
    const char *tag;
    if (body_tag(req, res, &body, &tag))
        return;
    int r = store_tag_add(caller->env.id, tag);
    audit(req, caller, "env tag add", r ? 500 : 200, tag);
    json_decref(body);
    if (r)
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot add the tag");
    else
        tags_answer(req, res, caller->env.id, 200);
}

void api_env_tag_del(struct http_request *req, struct http_response *res,
                     const struct api_caller *caller)
{
    json_t *body;
    const char *tag;
    if (body_tag(req, res, &body, &tag))
        return;
    int r = store_tag_del(caller->env.id, tag);
    audit(req, caller, "env tag delete", r && r != -ENOENT ? 500 : 204, tag);
    json_decref(body);
    if (r && r != -ENOENT)
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot delete the tag");
    else
        http_res_json_text(res, 204, "", 0);
}

/* ---- logs ---- */

static void log_link(struct http_request *req, struct http_response *res,
                     const struct api_caller *caller, bool access)
{
    const char *date = req->params[2];
    char *file = deploy_log_path(&caller->app, &caller->env, access, date);
    if (!file) {
        api_fail(req, res, 400, "INVALID_PARAMETERS", "the date must be YYYY-MM-DD");
        return;
    }
    struct stat st;
    bool exists = stat(file, &st) == 0;
    free(file);
    if (!exists) {
        api_fail(req, res, 404, "NOT_FOUND", "%s has no %s log of %s", caller->env.mode,
                 access ? "access" : "app", date);
        return;
    }
    struct tm tm = {0};
    strptime(date, "%Y-%m-%d", &tm);
    tm.tm_isdst = -1;
    char path[256];
    snprintf(path, sizeof(path), "/api/slipway/apps/%s/environments/%s/%s/%s/download",
             caller->app.app_id, caller->env.mode, access ? "access-logs" : "logs", date);
    char *url = api_signed_url(path, DEPLOY_LOG_URL_TTL_S);
    if (!url) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "out of memory");
        return;
    }
    api_json(res, 200,
             json_pack("{s:s,s:I,s:s}", "Environment", caller->env.environment_id, "Date",
                       (json_int_t)mktime(&tm) * 1000, "DownloadUrl", url));
    free(url);
}

void api_env_logs(struct http_request *req, struct http_response *res,
                  const struct api_caller *caller)
{
    log_link(req, res, caller, false);
}

void api_env_access_logs(struct http_request *req, struct http_response *res,
                         const struct api_caller *caller)
{
    log_link(req, res, caller, true);
}

static void log_download(struct http_request *req, struct http_response *res,
                         const struct api_caller *caller, bool access)
{
    char *file = deploy_log_path(&caller->app, &caller->env, access, req->params[2]);
    int fd = file ? open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
    struct stat st;
    free(file);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        api_fail(req, res, 404, "NOT_FOUND", "no such log");
        return;
    }
    res->status = 200;
    res->file_fd = fd;
    res->file_size = (uint64_t)st.st_size; /* what is there now; the day may go on */
    snprintf(res->content_type, sizeof(res->content_type), "text/plain; charset=utf-8");
}

void api_env_logs_download(struct http_request *req, struct http_response *res,
                           const struct api_caller *caller)
{
    log_download(req, res, caller, false);
}

void api_env_access_logs_download(struct http_request *req, struct http_response *res,
                                  const struct api_caller *caller)
{
    log_download(req, res, caller, true);
}
