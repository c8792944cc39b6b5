/* deploy — environments run packages: transport, start, stop, clean, scale, settings, tags,
 * logs; the supervisor that keeps instances running (restarts with back-off, health checks,
 * scheduled events, adoption after a restart of the server); the router in front of them and a
 * database per environment that asks for one.
 *
 * Each change to an environment is one call below with its inputs as arguments, made on an
 * HTTP thread: it checks, writes its intent as rows (the database is the queue) and wakes the
 * engine, whose owner "apps" (supervisor.c) makes it so. A later approval can make the same call
 * with the inputs it stored.
 *
 * Ports and users: the environment in slot k (store_env.slot) listens at
 * port_base + DEPLOY_PORTS_PER_ENV * k (the router), its instance i at that + 1 + i; when the
 * server is root its instances run as uid and gid uid_base + k, so that no two environments
 * share files or processes. Without nginx the URL is the first instance's port.
 *
 * Files: layout.h (releases, envs/<AppId>/<Mode>/{data,logs,access}, router, database).
 */
#ifndef SLIPWAY_DEPLOY_DEPLOY_H
#define SLIPWAY_DEPLOY_DEPLOY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "engine/engine.h"
#include "store/store.h"

#define DEPLOY_MAX_INSTANCES 9
#define DEPLOY_PORTS_PER_ENV (1 + DEPLOY_MAX_INSTANCES)
#define DEPLOY_MIN_MEMORY_MB 1024
#define DEPLOY_MAX_MEMORY_MB 65536
#define DEPLOY_LOG_URL_TTL_S 900
#define DEPLOY_CRASH_LOOP    5 /* failures in a row that make an environment crash-looping */
#define DEPLOY_SECRET_MASK   "********"

struct deploy_config {
    struct engine *engine;
    const char *launcher;   /* the slipway binary: `<launcher> instance ...` runs an instance */
    int port_base;          /* see above; the highest slot's ports must stay below 65536 */
    const char *url_host;   /* the host in environment URLs ("127.0.0.1") */
    const char *url_scheme; /* "http" */
    bool set_ids;           /* root: instances run as uid_base + slot */
    unsigned uid_base;
    bool svc_set_ids; /* root: nginx and PostgreSQL run as svc_uid/svc_gid */
    uid_t svc_uid;
    gid_t svc_gid;
    const char *nginx;             /* NULL: /usr/sbin/nginx; "" : no router */
    int64_t snapshot_retention_ms; /* a snapshot is deleted this long after it was asked for */
};

/* Registers the supervisor with the engine (before engine_start); the router and the database
 * are opened (and what a previous server left running adopted) on the engine's start. 0 or
 * -errno. */
int deploy_init(const struct deploy_config *cfg);
/* After engine_stop: forgets everything; instances, nginx and PostgreSQL keep running for the
 * next server to adopt. Returns the number of instances that still run (0: none, or
 * deploy_init never ran). */
int deploy_shutdown(void);

/* What went wrong, in the words of Mendix's Deploy API: the kind gives the HTTP status the API
 * answers with, code and message its body. */
enum deploy_err {
    DEPLOY_OK,
    DEPLOY_E_INVALID,     /* 400 */
    DEPLOY_E_FORBIDDEN,   /* 403 */
    DEPLOY_E_NOT_FOUND,   /* 404 */
    DEPLOY_E_STATE,       /* 422: not in a state that allows it */
    DEPLOY_E_INTERNAL,    /* 500 (Mendix answers start errors with 500 too) */
    DEPLOY_E_UNAVAILABLE, /* 503: try again */
};
struct deploy_error {
    enum deploy_err kind;
    char code[40];
    char message[512];
};

/* Transport: the environment holds the package from now on; it runs at the next start (also
 * while the environment runs). The package is unpacked (validated) once into its release. */
int deploy_transport(const struct store_app *app, const struct store_env *env,
                     const char *package_id, struct deploy_error *err);
/* Start: a start job (JobId in job_id). *already is true (and no job made) when the
 * environment runs already. */
int deploy_start(const struct store_app *app, const struct store_env *env, char job_id[37],
                 bool *already, struct deploy_error *err);
/* The start job: "Starting", "Started", or an error (code and the reason). */
int deploy_start_status(const struct store_env *env, const char *job_id, const char **status,
                        struct deploy_error *err);
/* Stop: SIGTERM to each instance, killed after run.stop_timeout; returns once stopped, or
 * fails (STOP_FAILED) as soon as a start made after it takes the environment back. Blocks its
 * thread meanwhile: it is deploy_stop_begin, then deploy_stop_done until it is not 0 (at most
 * DEPLOY_STOP_MAX_NS), which an HTTP answer given later does without a thread of its own. */
int deploy_stop(const struct store_app *app, const struct store_env *env, struct deploy_error *err);
int deploy_stop_begin(const struct store_env *env, struct deploy_error *err);
/* 1 once the environment has stopped, 0 while it is stopping, or -1 with err (STOP_FAILED: a
 * start came after the stop, deadline_ns (time_mono_ns) passed, or the environment cannot be
 * read). */
int deploy_stop_done(const struct store_env *env, int64_t deadline_ns, struct deploy_error *err);
#define DEPLOY_STOP_MAX_NS ((int64_t)(24 * 3600 + 30) * 1000000000)
/* Clean: forgets the package and removes the environment's data and database (it must be
 * stopped). */
int deploy_clean(const struct store_app *app, const struct store_env *env,
                 struct deploy_error *err);
/* Scale: instances (1..DEPLOY_MAX_INSTANCES) now, memory per instance (MB) at the next start. */
int deploy_scale(const struct store_app *app, const struct store_env *env, int64_t instances,
                 int64_t memory_mb, struct deploy_error *err);
/* The settings, as the settings API shows them: {"Constants": [{Name, DataType, Value,
 * DeployedValue}], "CustomSettings": [], "ScheduledEvents": [{Name, Value, DeployedValue}]};
 * a secret constant's values are DEPLOY_SECRET_MASK once set. NULL with err on failure. */
json_t *deploy_settings(const struct store_app *app, const struct store_env *env,
                        struct deploy_error *err);
/* Sets the settings a body of that shape names (each checked before any is written; a secret
 * given as DEPLOY_SECRET_MASK is left as it is). Applied at the next start. */
int deploy_settings_set(const struct store_app *app, const struct store_env *env, json_t *body,
                        struct deploy_error *err);
/* The manifest of a transported package's release (a new reference), or NULL. */
json_t *deploy_release_manifest(const char *app_id, const char *package_id);
/* The environment's URL (scheme://host:port). */
void deploy_env_url(const struct store_env *env, char *out, size_t cap);
/* The port the environment answers at. */
int deploy_env_port(const struct store_env *env);
/* The app log (access false) or the router's access log (true) of a local date (YYYY-MM-DD),
 * or NULL (errno EINVAL: not a date). Caller frees. */
char *deploy_log_path(const struct store_app *app, const struct store_env *env, bool access,
                      const char *date);

#endif
