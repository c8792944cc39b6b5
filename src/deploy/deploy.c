/* deploy: the changes to an environment, made on HTTP threads (see deploy.h). */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/cgroup.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "builder/package.h"
#include "deploy/database.h"
#include "deploy/deploy_int.h"
#include "deploy/router.h"
#include "base/banned.h"

struct deploy_state deploy_g;

int deploy_fail(struct deploy_error *err, enum deploy_err kind, const char *fmt, ...)
{
    err->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    /* "CODE: message" */
    char buf[sizeof(err->code) + sizeof(err->message)];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    const char *colon = strstr(buf, ": ");
    size_t n = colon ? (size_t)(colon - buf) : 0;
    if (n >= sizeof(err->code))
        n = 0;
    snprintf(err->code, sizeof(err->code), "%.*s", (int)n, buf);
    const char *msg = n ? colon + 2 : buf;
    size_t len = strlen(msg);
    if (len >= sizeof(err->message))
        len = sizeof(err->message) - 1;
    memcpy(err->message, msg, len);
    err->message[len] = '\0';
    return -1;
}

int deploy_slot_port(int slot)
{
    return deploy_g.cfg.port_base + DEPLOY_PORTS_PER_ENV * slot;
}

int deploy_instance_port(int slot, int idx)
{
    return deploy_slot_port(slot) + 1 + idx;
}

int deploy_env_port(const struct store_env *env)
{
    return deploy_g.have_router ? deploy_slot_port(env->slot) : deploy_instance_port(env->slot, 0);
}

void deploy_env_url(const struct store_env *env, char *out, size_t cap)
{
    const char *host = deploy_g.cfg.url_host ? deploy_g.cfg.url_host : "127.0.0.1";
    snprintf(out, cap, "%s://%s%s%s:%d", deploy_g.cfg.url_scheme ? deploy_g.cfg.url_scheme : "http",
             strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
             deploy_env_port(env));
}

unsigned deploy_env_uid(const struct store_env *env)
{
    return deploy_g.cfg.uid_base + (unsigned)env->slot;
}

void deploy_db_name(const struct store_env *env, char out[32])
{
    snprintf(out, 32, "env_%d", env->slot);
}

/* ---- releases ---- */

/* Makes dir and its missing parents 0711 (an instance passes through, lists nothing). */
static int mkdir_pass(const char *dir)
{
    int r = fs_mkdirs(dir, 0711);
    return r ? r : chmod(dir, 0711) < 0 ? -errno : 0;
}

/* A release is never changed: nothing in it is writable but by its owner (the server), whatever
 * modes the package gave; instances run as other users. */
static int seal_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if ((type == FTW_F || type == FTW_D || type == FTW_DP) && (st->st_mode & 0022))
        chmod(path, st->st_mode & 07755);
    return 0;
}

static void release_seal(const char *dir)
{
    nftw(dir, seal_one, 16, FTW_PHYS | FTW_DEPTH);
}

/* Removes the app's releases that no environment holds (a transport or a clean let one go). */
static void releases_prune(const char *app_id)
{
    char *dir = layout_release_app_dir(app_id);
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (strlen(de->d_name) != CRYPTO_UUID_LEN - 1 || store_package_in_use(de->d_name))
            continue;
        char *path = layout_release_dir(app_id, de->d_name);
        if (path && !fs_remove_tree(path))
            log_info("deploy: release %s/%s removed: no environment holds it", app_id, de->d_name);
        free(path);
    }
    if (d)
        closedir(d);
    free(dir);
}

int deploy_release_ensure(const char *app_id, const char *package_id, char *err, size_t err_cap)
{
    char *dir = layout_release_dir(app_id, package_id);
    char *pkg = layout_package_path(app_id, package_id);
    char *tmp = NULL, *manifest_path = NULL;
    json_t *manifest = NULL;
    int r = -ENOMEM, fd = -1;
    if (!dir || !pkg)
        goto out;
    struct stat st;
    if (stat(dir, &st) == 0) {
        r = 0;
        goto out;
    }
    /* unpacked beside it under a temporary name, then renamed: never half there */
    char rnd[CRYPTO_UUID_LEN];
    if (crypto_uuid(rnd) || asprintf(&tmp, "%s.tmp-%s", dir, rnd) < 0) {
        tmp = NULL;
        goto out;
    }
    const char *releases = layout_releases_dir();
    char *app_dir = layout_release_app_dir(app_id);
    if (!app_dir)
        goto out;
    r = mkdir_pass(releases);
    if (!r)
        r = mkdir_pass(app_dir);
    free(app_dir);
    if (r) {
        snprintf(err, err_cap, "cannot make the release directory: %s", strerror(-r));
        goto out;
    }
    if (mkdir(tmp, 0755) < 0) {
        r = -errno;
        snprintf(err, err_cap, "cannot make the release directory: %s", strerror(errno));
        goto out;
    }
    if ((fd = open(pkg, O_RDONLY | O_CLOEXEC)) < 0) {
        r = -errno;
        snprintf(err, err_cap, "the package file is missing: %s", strerror(errno));
        goto out;
    }
    if ((r = package_validate(fd, NULL, &manifest, err, err_cap)))
        goto out;
    if (lseek(fd, 0, SEEK_SET) < 0 || (r = package_extract(fd, tmp, NULL, err, err_cap))) {
        if (!r)
            r = -errno;
        goto out;
    }
    release_seal(tmp);
    char *text = json_dumps(manifest, JSON_COMPACT);
    if (!text || asprintf(&manifest_path, "%s/manifest.json", tmp) < 0) {
        free(text);
        manifest_path = NULL;
        r = -ENOMEM;
        goto out;
    }
    r = fs_write(manifest_path, text, strlen(text), 0644);
    free(text);
    if (r) {
        snprintf(err, err_cap, "cannot write the release's manifest: %s", strerror(-r));
        goto out;
    }
    if (chmod(tmp, 0755) < 0 || rename(tmp, dir) < 0) {
        r = errno == EEXIST || errno == ENOTEMPTY ? 0 : -errno; /* another made it meanwhile */
        if (r)
            snprintf(err, err_cap, "cannot keep the release: %s", strerror(-r));
    }
out:
    if (fd >= 0)
        close(fd);
    if (tmp && stat(tmp, &st) == 0)
        fs_remove_tree(tmp);
    json_decref(manifest);
    free(manifest_path);
    free(tmp);
    free(pkg);
    free(dir);
    if (r == -ENOMEM && !err[0])
        snprintf(err, err_cap, "out of memory");
    return r;
}

json_t *deploy_release_manifest(const char *app_id, const char *package_id)
{
    char *dir = layout_release_dir(app_id, package_id), *path = NULL;
    json_t *m = NULL;
    if (dir && asprintf(&path, "%s/manifest.json", dir) >= 0)
        m = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
    else
        path = NULL;
    free(path);
    free(dir);
    if (m && !json_is_object(m)) {
        json_decref(m);
        m = NULL;
    }
    return m;
}

int deploy_env_dirs(const char *app_id, const struct store_env *env)
{
    char *app_dir = NULL, *dir = layout_env_path(app_id, env->mode, LAYOUT_ENV_DIR);
    char *data = layout_env_path(app_id, env->mode, LAYOUT_ENV_DATA);
    char *logs = layout_env_path(app_id, env->mode, LAYOUT_ENV_LOGS);
    char *access = layout_env_path(app_id, env->mode, LAYOUT_ENV_ACCESS);
    int r = -ENOMEM;
    if (!dir || !data || !logs || !access ||
        !(app_dir = layout_env_path(app_id, NULL, LAYOUT_ENV_APP)))
        goto out;
    if ((r = mkdir_pass(layout_envs_dir())) || (r = mkdir_pass(app_dir)) || (r = mkdir_pass(dir)))
        goto out;
    if ((r = fs_mkdirs(logs, 0700)) || (r = fs_mkdirs(data, 0700)) || (r = fs_mkdirs(access, 0700)))
        goto out;
    if (deploy_g.cfg.set_ids) {
        unsigned id = deploy_env_uid(env);
        if (chown(data, id, id) < 0) {
            r = -errno;
            goto out;
        }
    }
    if (deploy_g.cfg.svc_set_ids && chown(access, deploy_g.cfg.svc_uid, deploy_g.cfg.svc_gid) < 0)
        r = -errno;
out:
    free(app_dir);
    free(dir);
    free(data);
    free(logs);
    free(access);
    return r;
}

char *deploy_log_path(const struct store_app *app, const struct store_env *env, bool access,
                      const char *date)
{
    struct tm tm = {0};
    const char *end = date ? strptime(date, "%Y-%m-%d", &tm) : NULL;
    if (!end || *end || strlen(date) != 10) {
        errno = EINVAL;
        return NULL;
    }
    char *dir =
             layout_env_path(app->app_id, env->mode, access ? LAYOUT_ENV_ACCESS : LAYOUT_ENV_LOGS),
         *p = NULL;
    if (dir && asprintf(&p, "%s/%s-%s.log", dir, access ? "access" : "app", date) < 0)
        p = NULL;
    free(dir);
    return p;
}

/* ---- the calls ---- */

static void wake(void)
{
    if (deploy_g.cfg.engine)
        engine_wake(deploy_g.cfg.engine);
}

int deploy_transport(const struct store_app *app, const struct store_env *env,
                     const char *package_id, struct deploy_error *err)
{
    struct store_package pkg;
    int r =
        strlen(package_id) < sizeof(pkg.package_id) ? store_package_get(package_id, &pkg) : -ENOENT;
    if (r == -ENOENT || (!r && pkg.app != app->id))
        return deploy_fail(err, DEPLOY_E_NOT_FOUND,
                           "PACKAGE_NOT_FOUND: no package '%.60s' in app '%s'", package_id,
                           app->app_id);
    if (r)
        return deploy_fail(err, DEPLOY_E_INTERNAL, "INTERNAL_ERROR: cannot read the package");
    if (pkg.status == PKG_QUEUED || pkg.status == PKG_BUILDING)
        return deploy_fail(err, DEPLOY_E_UNAVAILABLE,
                           "SERVICE UNAVAILABLE: the package is still being built: try again "
                           "once its Status is Succeeded");
    if (pkg.status != PKG_SUCCEEDED)
        return deploy_fail(err, DEPLOY_E_FORBIDDEN,
                           "NOT ALLOWED: the package's build failed: it cannot be transported");
    char why[512] = "";
    if (deploy_release_ensure(app->app_id, pkg.package_id, why, sizeof(why)))
        return deploy_fail(err, DEPLOY_E_INTERNAL, "PACKAGE_PARSE_FAILED: %s", why);
    if (store_env_transport(env->id, pkg.package_id))
        return deploy_fail(err, DEPLOY_E_INTERNAL, "INTERNAL_ERROR: cannot record the transport");
    log_info("deploy: %s/%s holds package %s (version %s)%s", app->app_id, env->mode,
             pkg.package_id, pkg.version, env->want_running ? "; it runs at the next start" : "");
    releases_prune(app->app_id);
    return 0;
}

int deploy_start(const struct store_app *app, const struct store_env *env, char job_id[37],
                 bool *already, struct deploy_error *err)
{
    *already = false;
    if (!env->package_id[0])
        return deploy_fail(err, DEPLOY_E_INTERNAL,
                           "NO_MDA_HAS_BEEN_DEPLOYED: transport a package to %s first", env->mode);
    if (store_begin())
        return deploy_fail(err, DEPLOY_E_INTERNAL, "INTERNAL_ERROR: cannot start");
    struct store_env now;
    struct store_job job = {0};
    int r = store_env_get(env->id, &now);
    if (!r && !store_job_active_start(env->id, &job)) {
        store_rollback();
        return deploy_fail(err, DEPLOY_E_INTERNAL,
                           "APP_ALREADY_HAS_A_STARTING_JOB: start job %s is not done yet",
                           job.job_id);
    }
    if (!r && now.want_running && !strcmp(now.status, "Running")) {
        store_rollback();
        *already = true;
        return 0;
    }
    if (!r && store_restore_active(env->id)) { /* checked in the transaction the start is in */
        store_rollback();
        return deploy_fail(err, DEPLOY_E_INTERNAL,
                           "ALREADY_LOCKED: a restore of a snapshot into %s is not done yet: "
                           "start it once the restore has ended",
                           env->mode);
    }
    memset(&job, 0, sizeof(job));
    if (!r && crypto_uuid(job.job_id))
        r = -EIO;
    if (!r) {
        job.app = app->id;
        job.env = env->id;
        snprintf(job.kind, sizeof(job.kind), "start");
        snprintf(job.package_id, sizeof(job.package_id), "%s", now.package_id);
        job.status = JOB_QUEUED;
        r = store_job_insert(&job);
    }
    if (!r)
        r = store_env_set_want(env->id, true);
    if (r || store_commit()) {
        store_rollback();
        return deploy_fail(err, DEPLOY_E_INTERNAL, "INTERNAL_ERROR: cannot record the start");
    }
    memcpy(job_id, job.job_id, 37);
    wake();
    return 0;
}

int deploy_start_status(const struct store_env *env, const char *job_id, const char **status,
                        struct deploy_error *err)
{
    struct store_job job;
    int r = strlen(job_id) < sizeof(job.job_id) ? store_job_get(job_id, &job) : -ENOENT;
    if (r == -ENOENT || (!r && (job.env != env->id || strcmp(job.kind, "start"))))
        return deploy_fail(err, DEPLOY_E_NOT_FOUND, "NO_SUCH_STARTJOB: no start job '%.60s' in %s",
                           job_id, env->mode);
    if (r)
        return deploy_fail(err, DEPLOY_E_INTERNAL, "INTERNAL_ERROR: cannot read the job");
    if (job.status == JOB_FAILED)
        return deploy_fail(err, DEPLOY_E_INTERNAL, "%s: %s",
                           job.code[0] ? job.code : "START_FAILED", job.reason);
    *status = job.status == JOB_COMPLETED ? "Started" : "Starting";
    return 0;
}

static int count_instance(const struct store_instance *in, void *arg)
{
    (void)in;
    (*(int *)arg)++;
    return 0;
}

int deploy_stop_begin(const struct store_env *env, struct deploy_error *err)
{
    if (store_env_set_want(env->id, false))
        return deploy_fail(err, DEPLOY_E_INTERNAL, "STOP_FAILED: cannot record the stop");
    wake();
    return 0;
}

int deploy_stop_done(const struct store_env *env, int64_t deadline_ns, struct deploy_error *err)
{
    struct store_env now;
    struct store_job job;
    if (store_env_get(env->id, &now))
        return deploy_fail(err, DEPLOY_E_INTERNAL, "STOP_FAILED: cannot read the environment");
    /* a start came after this stop: the environment runs again, a Stopped never comes */
    if (now.want_running)
        return deploy_fail(err, DEPLOY_E_INTERNAL,
                           "STOP_FAILED: a start of %s came while it was stopping: it runs again",
                           env->mode);
    int running = 0;
    if (strcmp(now.status, "Running") && store_job_active_start(env->id, &job) == -ENOENT &&
        !store_instance_each(env->id, count_instance, &running) && !running)
        return 1;
    if (time_mono_ns() > deadline_ns)
        return deploy_fail(err, DEPLOY_E_INTERNAL, "STOP_FAILED: the environment did not stop");
    return 0;
}

int deploy_stop(const struct store_app *app, const struct store_env *env, struct deploy_error *err)
{
    (void)app;
    if (deploy_stop_begin(env, err))
        return -1;
    /* The supervisor stops the instances (SIGTERM, then SIGKILL after run.stop_timeout, at most
     * 24 h by the pipeline's rules) and then marks the environment Stopped. */
    int64_t deadline = time_mono_ns() + DEPLOY_STOP_MAX_NS;
    for (unsigned round = 0;; round++) {
        int r = deploy_stop_done(env, deadline, err);
        if (r)
            return r < 0 ? r : 0;
        struct timespec ts = {0, round < 50 ? 2000000 : 20000000};
        nanosleep(&ts, NULL);
    }
}

int deploy_clean(const struct store_app *app, const struct store_env *env, struct deploy_error *err)
{
    if (env->want_running || !strcmp(env->status, "Running"))
        return deploy_fail(err, DEPLOY_E_FORBIDDEN,
                           "ENVIRONMENT_NOT_STOPPED: stop %s before cleaning it", env->mode);
    if (!env->package_id[0] && !strcmp(env->status, "Empty"))
        return deploy_fail(err, DEPLOY_E_STATE, "ENVIRONMENT_NOT_DEPLOYED: %s holds no package",
                           env->mode);
    char *data = layout_env_path(app->app_id, env->mode, LAYOUT_ENV_DATA);
    int r = data ? fs_remove_tree(data) : -ENOMEM;
    free(data);
    if (r && r != -ENOENT)
        return deploy_fail(err, DEPLOY_E_INTERNAL,
                           "ENVIRONMENT_CLEAN_FAILED: cannot remove the data: %s", strerror(-r));
    if (deploy_g.have_database) {
        char name[32], why[512] = "";
        deploy_db_name(env, name);
        if (database_drop(name, why, sizeof(why)))
            return deploy_fail(err, DEPLOY_E_INTERNAL,
                               "ENVIRONMENT_CLEAN_FAILED: cannot remove the database: %s", why);
    }
    if (store_env_clean(env->id))
        return deploy_fail(err, DEPLOY_E_INTERNAL, "ENVIRONMENT_CLEAN_FAILED: cannot record it");
    log_info("deploy: %s/%s cleaned", app->app_id, env->mode);
    releases_prune(app->app_id);
    wake(); /* the router no longer serves it */
    return 0;
}

int deploy_scale(const struct store_app *app, const struct store_env *env, int64_t instances,
                 int64_t memory_mb, struct deploy_error *err)
{
    (void)app;
    if (instances < 1 || instances > DEPLOY_MAX_INSTANCES)
        return deploy_fail(err, DEPLOY_E_INVALID, "INVALID_REQUEST: Instances must be 1 to %d",
                           DEPLOY_MAX_INSTANCES);
    if (memory_mb < DEPLOY_MIN_MEMORY_MB || memory_mb > DEPLOY_MAX_MEMORY_MB)
        return deploy_fail(err, DEPLOY_E_INVALID,
                           "INVALID_REQUEST: MemoryPerInstance must be %d to %d (MB)",
                           DEPLOY_MIN_MEMORY_MB, DEPLOY_MAX_MEMORY_MB);
    if (store_env_set_scale(env->id, (int)instances, (int)memory_mb))
        return deploy_fail(err, DEPLOY_E_INTERNAL, "INTERNAL_ERROR: cannot record the scale");
    wake();
    return 0;
}

/* ---- settings ---- */

struct settings_ctx {
    json_t *manifest;
    json_t *rows; /* "constant/Name" -> [value|null, deployed|null] */
};

static int setting_row(const struct store_setting *s, void *arg)
{
    json_t *rows = arg;
    char key[STORE_NAME_MAX + 16];
    snprintf(key, sizeof(key), "%s/%s", s->kind, s->name);
    json_object_set_new(
        rows, key,
        json_pack("[s?s?]", s->has_value ? s->value : NULL, s->has_deployed ? s->deployed : NULL));
    return 0;
}

static json_t *settings_rows(const struct store_env *env)
{
    json_t *rows = json_object();
    if (rows && store_setting_each(env->id, setting_row, rows)) {
        json_decref(rows);
        return NULL;
    }
    return rows;
}

/* A stored value as the API shows it: a secret's as the mask, else the plain text. */
static json_t *shown(const char *stored, bool secret)
{
    if (!stored)
        return json_null();
    return json_string(secret ? DEPLOY_SECRET_MASK : stored);
}

/* What the instances got at the last start: the value then (a row's deployed column), else the
 * default when the environment has started since (the row came later), else (never started)
 * what the next start gives. */
static json_t *deployed_value(const struct store_env *env, const char *value, const char *deployed,
                              const char *def, bool secret)
{
    if (deployed)
        return shown(deployed, secret);
    if (env->running_package[0])
        return shown(def, false);
    return shown(value ? value : def, secret && value);
}

json_t *deploy_settings(const struct store_app *app, const struct store_env *env,
                        struct deploy_error *err)
{
    json_t *manifest =
        env->package_id[0] ? deploy_release_manifest(app->app_id, env->package_id) : NULL;
    json_t *rows = settings_rows(env);
    json_t *out = json_pack("{s:[],s:[],s:[]}", "Constants", "CustomSettings", "ScheduledEvents");
    if (!rows || !out) {
        json_decref(manifest);
        json_decref(rows);
        json_decref(out);
        deploy_fail(err, DEPLOY_E_INTERNAL, "INTERNAL_ERROR: cannot read the settings");
        return NULL;
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(manifest, "constants"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *def = json_string_value(json_object_get(c, "default"));
        bool secret = json_is_true(json_object_get(c, "secret"));
        if (!name)
            continue;
        char key[STORE_NAME_MAX + 16];
        snprintf(key, sizeof(key), "constant/%s", name);
        json_t *row = json_object_get(rows, key);
        const char *value = row ? json_string_value(json_array_get(row, 0)) : NULL;
        const char *deployed = row ? json_string_value(json_array_get(row, 1)) : NULL;
        json_array_append_new(json_object_get(out, "Constants"),
                              json_pack("{s:s,s:s,s:o,s:o}", "Name", name, "DataType",
                                        json_string_value(json_object_get(c, "type")) ?: "String",
                                        "Value", shown(value ? value : def, secret && value),
                                        "DeployedValue",
                                        deployed_value(env, value, deployed, def, secret)));
    }
    json_array_foreach(json_object_get(manifest, "scheduled_events"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        if (!name)
            continue;
        char key[STORE_NAME_MAX + 16];
        snprintf(key, sizeof(key), "event/%s", name);
        json_t *row = json_object_get(rows, key);
        const char *value = row ? json_string_value(json_array_get(row, 0)) : NULL;
        const char *deployed = row ? json_string_value(json_array_get(row, 1)) : NULL;
        json_array_append_new(json_object_get(out, "ScheduledEvents"),
                              json_pack("{s:s,s:s,s:s}", "Name", name, "Value",
                                        value ? value : "Disabled", "DeployedValue",
                                        deployed ? deployed : "Disabled"));
    }
    json_decref(manifest);
    json_decref(rows);
    return out;
}

static json_t *manifest_find(json_t *list, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (n && !strcmp(n, name))
            return c;
    }
    return NULL;
}

/* Whether text is a value of the constant's type. */
static bool type_ok(const char *type, const char *text)
{
    int64_t i;
    if (!strcmp(type, "Integer"))
        return !parse_i64(text, INT64_MIN, INT64_MAX, &i);
    if (!strcmp(type, "Boolean"))
        return !strcmp(text, "true") || !strcmp(text, "false");
    if (!strcmp(type, "Decimal")) {
        const char *p = text + (*text == '+' || *text == '-');
        size_t d = strspn(p, "0123456789");
        if (!d)
            return false;
        p += d;
        if (*p == '.') {
            d = strspn(++p, "0123456789");
            if (!d)
                return false;
            p += d;
        }
        return !*p;
    }
    return true;
}

/* A constant's value as given in a body: a string, a number or a boolean, as text. */
static const char *value_text(json_t *v, char *buf, size_t cap)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    if (json_is_real(v)) {
        snprintf(buf, cap, "%.17g", json_real_value(v));
        return buf;
    }
    if (json_is_boolean(v))
        return json_is_true(v) ? "true" : "false";
    return NULL;
}

int deploy_settings_set(const struct store_app *app, const struct store_env *env, json_t *body,
                        struct deploy_error *err)
{
    json_t *constants = json_object_get(body, "Constants");
    json_t *events = json_object_get(body, "ScheduledEvents");
    json_t *custom = json_object_get(body, "CustomSettings");
    if ((constants && !json_is_array(constants)) || (events && !json_is_array(events)) ||
        (custom && !json_is_array(custom)))
        return deploy_fail(err, DEPLOY_E_INVALID,
                           "INVALID_PARAMETERS: Constants, CustomSettings and ScheduledEvents "
                           "must be arrays");
    if (json_array_size(custom))
        return deploy_fail(err, DEPLOY_E_INVALID,
                           "CUSTOM_SETTING_NOT_SUPPORTED: custom runtime settings are not "
                           "supported; use constants");
    json_t *manifest =
        env->package_id[0] ? deploy_release_manifest(app->app_id, env->package_id) : NULL;
    json_t *mc = json_object_get(manifest, "constants"),
           *me = json_object_get(manifest, "scheduled_events");
    size_t i;
    json_t *c;
    int r = 0;
    char num[64];
    /* check everything first */
    json_array_foreach(constants, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "Name"));
        json_t *def = name ? manifest_find(mc, name) : NULL;
        if (!def) {
            r = deploy_fail(err, DEPLOY_E_INVALID,
                            "CONSTANT_NOT_FOUND: no constant '%.100s' in "
                            "the package of %s",
                            name ? name : "(no Name)", env->mode);
            goto out;
        }
        json_t *v = json_object_get(c, "Value");
        const char *text = json_is_null(v) || !v ? NULL : value_text(v, num, sizeof(num));
        const char *type = json_string_value(json_object_get(def, "type")) ?: "String";
        if ((v && !json_is_null(v) && !text) || (text && strlen(text) > STORE_SETTING_MAX / 2) ||
            (text && strcmp(text, DEPLOY_SECRET_MASK) && !type_ok(type, text)) ||
            (text && !str_utf8_validn(text, strlen(text)))) {
            r = deploy_fail(err, DEPLOY_E_INVALID,
                            "INVALID_PARAMETERS: the value of constant '%s' is not a %s (at most "
                            "%d bytes)",
                            name, type, STORE_SETTING_MAX / 2);
            goto out;
        }
    }
    json_array_foreach(events, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "Name"));
        const char *value = json_string_value(json_object_get(c, "Value"));
        if (!name || !manifest_find(me, name)) {
            r = deploy_fail(err, DEPLOY_E_INVALID,
                            "SCHEDULED_EVENT_NOT_FOUND: no scheduled event "
                            "'%.100s' in the package of %s",
                            name ? name : "(no Name)", env->mode);
            goto out;
        }
        if (!value || (strcmp(value, "Enabled") && strcmp(value, "Disabled"))) {
            r = deploy_fail(err, DEPLOY_E_INTERNAL,
                            "INVALID_SCHEDULED_EVENT_PARAMETER: the "
                            "Value of scheduled event '%s' must be Enabled or Disabled",
                            name);
            goto out;
        }
    }
    if (store_begin()) {
        r = deploy_fail(err, DEPLOY_E_INTERNAL, "INTERNAL_ERROR: cannot save the settings");
        goto out;
    }
    json_array_foreach(constants, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "Name"));
        json_t *def = manifest_find(mc, name), *v = json_object_get(c, "Value");
        const char *text = json_is_null(v) || !v ? NULL : value_text(v, num, sizeof(num));
        bool secret = json_is_true(json_object_get(def, "secret"));
        if (secret && text && !strcmp(text, DEPLOY_SECRET_MASK))
            continue; /* shown masked, sent back unchanged */
        char *sealed = secret && text ? crypto_seal(deploy_g.settings_key, text) : NULL;
        if ((secret && text && !sealed) ||
            store_setting_set(env->id, "constant", name, sealed ? sealed : text))
            r = -EIO;
        free(sealed);
        if (r)
            break;
    }
    json_array_foreach(events, i, c)
    {
        if (!r && store_setting_set(env->id, "event", json_string_value(json_object_get(c, "Name")),
                                    json_string_value(json_object_get(c, "Value"))))
            r = -EIO;
    }
    if (r || store_commit()) {
        store_rollback();
        r = deploy_fail(err, DEPLOY_E_INTERNAL, "INTERNAL_ERROR: cannot save the settings");
    }
out:
    json_decref(manifest);
    return r;
}

struct setting_find {
    const char *kind, *name;
    bool found;
    char value[STORE_SETTING_MAX + 1];
};

static int setting_match(const struct store_setting *s, void *arg)
{
    struct setting_find *f = arg;
    if (strcmp(s->kind, f->kind) || strcmp(s->name, f->name) || !s->has_value)
        return 0;
    f->found = true;
    memcpy(f->value, s->value, sizeof(f->value));
    return 1;
}

int deploy_setting_value(int64_t env, const char *kind, const char *name, bool secret, char **value)
{
    struct setting_find *f = calloc(1, sizeof(*f));
    *value = NULL;
    if (!f)
        return -ENOMEM;
    f->kind = kind;
    f->name = name;
    int r = store_setting_each(env, setting_match, f);
    if (r < 0) {
        free(f);
        return r;
    }
    if (f->found) {
        *value = secret ? crypto_open(deploy_g.settings_key, f->value) : strdup(f->value);
        if (!*value)
            r = secret ? -EBADMSG : -ENOMEM;
    }
    free(f);
    return r < 0 ? r : 0;
}

/* ---- start and end ---- */

/* DIR becomes 0711 so that an instance (its own uid) passes through to its release and data;
 * everything else at the top of DIR is closed to other users first (the database's files, which
 * SQLite makes with the umask's mode, included). */
static int data_dir_open(void)
{
    DIR *d = opendir(layout_dir());
    if (!d)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.' && (!de->d_name[1] || !strcmp(de->d_name, "..")))
            continue;
        if (!strcmp(de->d_name, "releases") || !strcmp(de->d_name, "envs"))
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK(st.st_mode) &&
            (st.st_mode & 0077))
            fchmodat(dirfd(d), de->d_name, st.st_mode & 07700, 0);
    }
    closedir(d);
    if (chmod(layout_dir(), 0711) < 0)
        return -errno;
    /* the directories above must let other users pass too */
    char path[4096];
    snprintf(path, sizeof(path), "%s", layout_dir());
    for (char *slash; (slash = strrchr(path, '/')) && slash != path;) {
        *slash = '\0';
        struct stat st;
        if (stat(path, &st) == 0 && !(st.st_mode & S_IXOTH))
            log_warn("deploy: %s does not let other users pass (mode %o): app instances, nginx "
                     "and PostgreSQL, which run as users of their own, cannot reach the data "
                     "directory; chmod o+x it",
                     path, (unsigned)(st.st_mode & 07777));
    }
    return 0;
}

/* Ports of the kernel's ephemeral range are taken by any outgoing connection for a while (nginx's
 * to the instances, for one): an environment's port there can be found taken at its start. */
static void warn_ephemeral_ports(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
    int lo = 0, hi = 0;
    bool known = f && fscanf(f, "%d %d", &lo, &hi) == 2;
    if (f)
        fclose(f);
    int slots = store_env_slots();
    if (!known || slots < 0)
        return;
    int first = deploy_g.cfg.port_base - 1; /* the database's */
    int last = deploy_slot_port(slots < 3 ? 3 : slots) - 1;
    if (first <= hi && last >= lo)
        log_warn("deploy: the environments' ports %d-%d (--env-ports) reach into the kernel's "
                 "ephemeral ports %d-%d (net.ipv4.ip_local_port_range), which outgoing "
                 "connections take: an environment may find its port taken at its start; "
                 "choose --env-ports outside them",
                 first, last, lo, hi);
}

int deploy_init(const struct deploy_config *cfg)
{
    deploy_g.cfg = *cfg;
    const unsigned char *secret = layout_secret();
    if (!secret)
        return -EINVAL;
    crypto_hmac_sha256(secret, LAYOUT_SECRET_LEN, "settings", 8, deploy_g.settings_key);
    warn_ephemeral_ports();
    char why[512] = "";
    if (cfg->nginx && !cfg->nginx[0]) {
        log_info("deploy: no router (--nginx ''): each environment's URL is its first instance's");
    } else {
        struct router_config rc = {
            .nginx = cfg->nginx,
            .dir = layout_router_dir(),
            .set_ids = cfg->svc_set_ids,
            .uid = cfg->svc_uid,
            .gid = cfg->svc_gid,
        };
        int r = router_open(&rc, why, sizeof(why));
        deploy_g.have_router = r == 0;
        if (r)
            log_warn("deploy: %s: environments are served without a router, each URL pointing "
                     "straight at its first instance",
                     why);
    }
    struct database_config dc = {
        .dir = layout_database_dir(),
        .set_ids = cfg->svc_set_ids,
        .uid = cfg->svc_uid,
        .gid = cfg->svc_gid,
        .port = cfg->port_base - 1,
        .secret = secret,
        .secret_len = LAYOUT_SECRET_LEN,
    };
    why[0] = '\0';
    deploy_g.have_database = database_open(&dc, why, sizeof(why)) == 0;
    if (!deploy_g.have_database)
        log_warn("deploy: %s: apps that ask for a database (run.database) cannot start", why);
    char tree[64];
    int fd = -1;
    cgroup_tree_name(layout_dir(), tree, sizeof(tree));
    why[0] = '\0';
    if (cgroup_subtree_keep(tree, "apps", &fd, why, sizeof(why))) {
        fd = -1;
        log_warn("cgroups: %s; an instance's tree is stopped through its process group only", why);
    }
    if (data_dir_open())
        log_warn("deploy: cannot open the data directory to the instances' users: %s",
                 strerror(errno));
    deploy_g.initialized = true;
    return deploy_supervisor_init(fd, tree) || deploy_backups_init() ? -EIO : 0;
}

int deploy_shutdown(void)
{
    if (!deploy_g.initialized)
        return 0;
    deploy_supervisor_free();
    router_close(false);
    database_close(false);
    deploy_g.initialized = false;
    int running = 0;
    if (store_instance_each(0, count_instance, &running))
        running = 1; /* cannot tell: assume some */
    return running;
}
