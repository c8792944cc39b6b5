/* deploy: the supervisor — the engine's owner "apps". It makes the environments' rows so: starts
 * (a start job: prepare, run the instances, wait for their health checks), stops, scaling,
 * restarts of crashed instances with back-off, scheduled events, the router's configuration,
 * and the adoption of what a previous server left running. Everything here runs on the engine
 * thread; blocking work (preparing a start, health checks, the router) goes to its workers. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/cgroup.h"
#include "base/cron.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "base/strv.h"
#include "base/util.h"
#include "deploy/database.h"
#include "deploy/deploy_int.h"
#include "deploy/router.h"
#include "deploy/runtime.h"
#include "base/banned.h"

#define TICK_FIRST_NS (2 * 1000000LL)   /* between health checks after a start */
#define TICK_MAX_NS   (50 * 1000000LL)  /* then more slowly, up to this */
#define TICK_FAST_NS  (500 * 1000000LL) /* checks stay TICK_FIRST_NS apart this long */
#define PROBE_TIMEOUT 1000              /* ms, one health check */
#define TAIL_BYTES    2048              /* of the app log, in a failed start's reason */

struct env_rt;

struct inst {
    struct runtime_instance rt;
    struct env_rt *env;
    int idx;
    bool wanted, stopping, healthy;
    int64_t started_ns;
    struct engine_backoff backoff;
    struct engine_timer restart;
};

struct event_rt {
    char *name, *command;
    struct cron cron;
    bool enabled;
    int64_t next; /* epoch s */
    struct runtime_instance rt;
    struct env_rt *env;
};

struct env_rt {
    struct env_rt *next;
    int64_t id;
    struct store_env row;
    char app_id[STORE_APPID_MAX + 1];
    struct inst inst[DEPLOY_MAX_INSTANCES];
    /* what runs, from the start that prepared it */
    bool prepared;
    char package[37], version[STORE_VERSION_MAX + 1];
    char *command, *health, *release_dir, *log_dir, *data_dir;
    int64_t start_timeout_s, stop_timeout_s;
    char **envp; /* without PORT and SLIPWAY_INSTANCE */
    size_t nr_envp;
    int64_t memory_mb;
    struct event_rt *events;
    size_t nr_events;
    struct engine_timer event_timer;
    /* a start in progress */
    bool starting, preparing;
    int64_t job;
    int64_t deadline_ns, tick_ns;
    struct engine_timer tick;
    /* work on a worker: preparing a start, or a round of health checks */
    struct engine_work work;
    bool working;
    char fail_code[40], fail_reason[STORE_REASON_MAX + 1];
    int probe_port[DEPLOY_MAX_INSTANCES];
    bool probe_ok[DEPLOY_MAX_INSTANCES];
    struct prepared *prep;
    unsigned long long seq;
};

/* What a worker prepared for a start. */
struct prepared {
    struct store_env row;
    char app_id[STORE_APPID_MAX + 1];
    char package[37], version[STORE_VERSION_MAX + 1];
    char *command, *health, *release_dir, *log_dir, *data_dir;
    int64_t start_timeout_s, stop_timeout_s;
    char **envp;
    size_t nr_envp;
    struct event_rt *events;
    size_t nr_events;
    char code[40], reason[STORE_REASON_MAX + 1];
};

static struct {
    struct engine_owner owner;
    struct runtime_driver *driver;
    struct env_rt *envs;
    struct cgroup_limiter limiter;
    bool limited;
    /* the router: one apply at a time */
    struct engine_work router_work;
    bool router_busy;
    char *router_done, *router_live; /* the signatures being applied (or last), in effect */
    long router_test_delay_ms;       /* SLIPWAY_TEST_ROUTER_DELAY_MS (deploy_int.h) */
    struct router_site *sites;
    size_t nr_sites;
    int *site_ports;
    char router_why[512];
    int router_result;
    struct engine_timer check_timer;
    struct engine_work check_work;
} S;

static void reconcile(struct env_rt *e);
static void router_refresh(void);

/* ---- helpers ---- */

static void prepared_free(struct prepared *p)
{
    if (!p)
        return;
    free(p->command);
    free(p->health);
    free(p->release_dir);
    free(p->log_dir);
    free(p->data_dir);
    strv_free(p->envp);
    for (size_t i = 0; i < p->nr_events; i++) {
        free(p->events[i].name);
        free(p->events[i].command);
    }
    free(p->events);
    free(p);
}

static void run_forget(struct env_rt *e)
{
    free(e->command);
    free(e->health);
    free(e->release_dir);
    free(e->log_dir);
    free(e->data_dir);
    strv_free(e->envp);
    for (size_t i = 0; i < e->nr_events; i++) {
        free(e->events[i].name);
        free(e->events[i].command);
    }
    free(e->events);
    e->command = e->health = e->release_dir = e->log_dir = e->data_dir = NULL;
    e->envp = NULL;
    e->nr_envp = 0;
    e->events = NULL;
    e->nr_events = 0;
    e->prepared = false;
}

/* Takes what a worker prepared (which then owns nothing). */
static void run_take(struct env_rt *e, struct prepared *p)
{
    run_forget(e);
    memcpy(e->package, p->package, sizeof(e->package));
    memcpy(e->version, p->version, sizeof(e->version));
    e->command = p->command;
    e->health = p->health;
    e->release_dir = p->release_dir;
    e->log_dir = p->log_dir;
    e->data_dir = p->data_dir;
    e->start_timeout_s = p->start_timeout_s;
    e->stop_timeout_s = p->stop_timeout_s;
    e->envp = p->envp;
    e->nr_envp = p->nr_envp;
    e->events = p->events;
    e->nr_events = p->nr_events;
    e->memory_mb = p->row.memory_mb;
    for (size_t i = 0; i < e->nr_events; i++)
        e->events[i].env = e;
    memset(p, 0, sizeof(*p));
    e->prepared = true;
}

static struct env_rt *env_find(int64_t id)
{
    for (struct env_rt *e = S.envs; e; e = e->next)
        if (e->id == id)
            return e;
    return NULL;
}

static bool any_running(const struct env_rt *e)
{
    for (int i = 0; i < DEPLOY_MAX_INSTANCES; i++)
        if (e->inst[i].rt.running)
            return true;
    for (size_t i = 0; i < e->nr_events; i++)
        if (e->events[i].rt.running)
            return true;
    return false;
}

/* The last bytes of today's app log: what an app that failed to start said. */
static void log_tail(const struct env_rt *e, char *out, size_t cap)
{
    out[0] = '\0';
    char date[16], *path = NULL;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d", &tm);
    if (!e->log_dir || asprintf(&path, "%s/app-%s.log", e->log_dir, date) < 0)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    size_t want = cap - 1 < TAIL_BYTES ? cap - 1 : TAIL_BYTES;
    off_t from = end > (off_t)want ? end - (off_t)want : 0;
    ssize_t n = pread(fd, out, want, from);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    char *nl = from > 0 ? strchr(out, '\n') : NULL; /* whole lines only */
    if (nl)
        memmove(out, nl + 1, strlen(nl + 1) + 1);
    str_utf8_fix(out);
}

/* prefix + the end of tail (the last lines, which say most) as fits in out. */
static void reason_with_tail(char *out, size_t cap, const char *prefix, const char *tail)
{
    size_t p = strlen(prefix), t = strlen(tail);
    if (p >= cap)
        p = cap - 1;
    memcpy(out, prefix, p);
    size_t room = cap - 1 - p;
    const char *from = t > room ? tail + (t - room) : tail;
    if (t > room) /* start at a line */
        from = strchr(from, '\n') ? strchr(from, '\n') + 1 : from;
    size_t n = strlen(from) < room ? strlen(from) : room;
    memcpy(out + p, from, n);
    out[p + n] = '\0';
    str_utf8_fix(out);
}

/* ---- instances ---- */

/* Restarts after a crash: 100 ms, doubled each time up to a minute; a run of a minute starts
 * the count again. */
static void backoff_reset(struct inst *in)
{
    in->backoff = (struct engine_backoff){
        .first_ns = 100000000LL, .max_ns = 60000000000LL, .stable_ns = 60000000000LL};
}

static void inst_exited(struct runtime_instance *rt, int status);

/* Starts a process of the environment (an instance or a scheduled event) through the driver:
 * `command` with the environment's variables, PORT and, for an instance, SLIPWAY_INSTANCE. */
static int env_run(struct env_rt *e, struct runtime_instance *rt, const char *command,
                   const char *label, const char *group, int port, int instance)
{
    char port_text[16], idx[16];
    snprintf(port_text, sizeof(port_text), "%d", port);
    snprintf(idx, sizeof(idx), "%d", instance);
    char **envp = NULL;
    size_t nr = 0;
    int r = 0;
    for (size_t i = 0; !r && i < e->nr_envp; i++)
        r = strv_add(&envp, &nr, e->envp[i]);
    if (!r)
        r = strv_add_env(&envp, &nr, "PORT", port_text);
    if (!r && instance >= 0)
        r = strv_add_env(&envp, &nr, "SLIPWAY_INSTANCE", idx);
    struct runtime_spec spec = {
        .release_dir = e->release_dir,
        .command = command,
        .log_dir = e->log_dir,
        .label = label,
        .envp = envp,
        .set_ids = deploy_g.cfg.set_ids,
        .uid = deploy_env_uid(&e->row),
        .gid = deploy_env_uid(&e->row),
        .memory_bytes = S.limited ? e->memory_mb << 20 : 0,
        .group = group,
    };
    if (!r)
        r = S.driver->start(rt, &spec);
    strv_free(envp);
    return r;
}

static int inst_spawn(struct env_rt *e, struct inst *in)
{
    char group[48], label[16];
    snprintf(label, sizeof(label), "%d", in->idx);
    snprintf(group, sizeof(group), "env%d-%d-%llu", e->row.slot, in->idx, ++e->seq);
    in->rt.exited = inst_exited;
    in->rt.arg = in;
    in->healthy = false;
    in->stopping = false;
    int r = env_run(e, &in->rt, e->command, label, group,
                    deploy_instance_port(e->row.slot, in->idx), in->idx);
    if (r) {
        log_error("deploy: %s/%s: cannot start instance %d: %s", e->app_id, e->row.mode, in->idx,
                  strerror(-r));
        return r;
    }
    in->started_ns = time_mono_ns();
    struct store_instance row = {.env = e->id, .idx = in->idx};
    S.driver->describe(&in->rt, &row);
    if (store_instance_put(&row))
        log_warn("deploy: %s/%s: cannot record instance %d (a restarted server will start it "
                 "again)",
                 e->app_id, e->row.mode, in->idx);
    return 0;
}

static void inst_stop(struct env_rt *e, struct inst *in)
{
    in->wanted = false;
    engine_timer_disarm(S.owner.engine, &in->restart);
    if (in->rt.running && !in->stopping) {
        in->stopping = true;
        int64_t grace = e->stop_timeout_s ? e->stop_timeout_s : 10;
        S.driver->stop(&in->rt, (int)(grace * 1000));
    }
}

static void stop_all(struct env_rt *e)
{
    for (int i = 0; i < DEPLOY_MAX_INSTANCES; i++)
        inst_stop(e, &e->inst[i]);
    engine_timer_disarm(S.owner.engine, &e->event_timer);
}

static void restart_fire(struct engine_timer *t)
{
    struct inst *in = t->arg;
    struct env_rt *e = in->env;
    if (!in->wanted || in->rt.running || !e->row.want_running)
        return;
    log_info("deploy: %s/%s: starting instance %d again", e->app_id, e->row.mode, in->idx);
    if (inst_spawn(e, in)) {
        engine_timer_arm(S.owner.engine, &in->restart,
                         time_mono_ns() + engine_backoff_next(&in->backoff, 0));
        return;
    }
    in->healthy = true;
}

/* ---- starts ---- */

static void start_fail(struct env_rt *e, const char *code, const char *reason)
{
    log_warn("deploy: %s/%s: the start failed: %s: %s", e->app_id, e->row.mode, code, reason);
    store_job_set_status(e->job, JOB_FAILED, code, reason);
    store_env_set_want(e->id, false);
    e->row.want_running = false;
    e->starting = false;
    engine_timer_disarm(S.owner.engine, &e->tick);
    stop_all(e);
}

static void start_done(struct env_rt *e)
{
    e->starting = false;
    engine_timer_disarm(S.owner.engine, &e->tick);
    if (store_env_started(e->id, e->package) ||
        store_job_set_status(e->job, JOB_COMPLETED, NULL, NULL))
        log_error("deploy: %s/%s: cannot record the start", e->app_id, e->row.mode);
    store_env_get(e->id, &e->row);
    log_info("deploy: %s/%s runs version %s (%d instance%s, %.1f ms from the start job)", e->app_id,
             e->row.mode, e->version, e->row.instances, e->row.instances > 1 ? "s" : "",
             (time_mono_ns() - (e->deadline_ns - e->start_timeout_s * 1000000000LL)) / 1e6);
    for (int i = 0; i < DEPLOY_MAX_INSTANCES; i++)
        backoff_reset(&e->inst[i]);
    reconcile(e);
}

/* A round of health checks, on a worker: a GET of run.health on each port (or a connection,
 * without run.health); 2xx is healthy. */
static bool probe(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = false;
    int64_t deadline = time_mono_ns() + PROBE_TIMEOUT * 1000000LL;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS)
        goto out;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof(err);
    if (poll(&p, 1, PROBE_TIMEOUT) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err)
        goto out;
    if (!path) {
        ok = true;
        goto out;
    }
    char req[2300];
    int n = snprintf(req, sizeof(req),
                     "GET %.2048s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: slipway-health\r\n"
                     "Connection: close\r\n\r\n",
                     path, port);
    if (fd_write_all(fd, req, (size_t)n))
        goto out;
    char buf[64];
    size_t got = 0;
    while (got < 12) {
        int64_t left = (deadline - time_mono_ns()) / 1000000;
        p.events = POLLIN;
        if (left <= 0 || poll(&p, 1, (int)left) != 1)
            goto out;
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (r <= 0)
            goto out;
        got += (size_t)r;
    }
    buf[got] = '\0';
    ok = !strncmp(buf, "HTTP/1.", 7) && buf[9] == '2';
out:
    close(fd);
    return ok;
}

static void probe_run(struct engine_work *w)
{
    struct env_rt *e = w->arg;
    for (int i = 0; i < DEPLOY_MAX_INSTANCES; i++)
        e->probe_ok[i] = e->probe_port[i] && probe(e->probe_port[i], e->health);
}

static void tick_fire(struct engine_timer *t);

/* Whether a router signature (router_refresh) holds the environment at its scale. */
static bool sig_holds(const char *sig, const struct env_rt *e)
{
    char want[48];
    snprintf(want, sizeof(want), ";%d:%d", e->row.slot, e->row.instances);
    const char *p = sig ? strstr(sig, want) : NULL;
    return p && (p[strlen(want)] == ';' || !p[strlen(want)]);
}

/* Whether the router's live configuration has the environment at its scale (or there is no
 * router): Started means the URL answers. A configuration being applied that does not hold it
 * (a clean's, just before a redeploy) is about to replace the live one: not yet. */
static bool router_serves(const struct env_rt *e)
{
    if (!deploy_g.have_router)
        return true;
    if (S.router_busy && !sig_holds(S.router_done, e))
        return false;
    return sig_holds(S.router_live, e);
}

/* Whether the router's last configuration, refused, was the one that would serve e. */
static bool router_refused(const struct env_rt *e)
{
    return deploy_g.have_router && !S.router_busy && S.router_result && sig_holds(S.router_done, e);
}

static void probe_done(struct engine_work *w)
{
    struct env_rt *e = w->arg;
    e->working = false;
    if (!e->starting) {
        reconcile(e);
        return;
    }
    bool all = true;
    for (int i = 0; i < e->row.instances && i < DEPLOY_MAX_INSTANCES; i++) {
        if (e->probe_ok[i])
            e->inst[i].healthy = true;
        all &= e->inst[i].healthy && e->inst[i].rt.running;
    }
    if (all && router_serves(e)) {
        start_done(e);
        return;
    }
    if (all && router_refused(e)) {
        char reason[STORE_REASON_MAX + 1];
        snprintf(reason, sizeof(reason), "the router cannot serve the environment: %.400s",
                 S.router_why);
        start_fail(e, "START_FAILED", reason);
        return;
    }
    if (time_mono_ns() > e->deadline_ns) {
        char tail[TAIL_BYTES + 1], prefix[256], reason[STORE_REASON_MAX + 1];
        log_tail(e, tail, sizeof(tail));
        snprintf(prefix, sizeof(prefix),
                 "no healthy answer from %.100s within run.start_timeout (%llds); the app log's "
                 "last lines:\n",
                 e->health ? e->health : "the instances' port", (long long)e->start_timeout_s);
        reason_with_tail(reason, sizeof(reason), prefix, tail);
        start_fail(e, "START_FAILED", reason);
        return;
    }
    /* every 2 ms for the first half second (most apps are up within it), then more slowly */
    int64_t since = time_mono_ns() - (e->deadline_ns - e->start_timeout_s * 1000000000LL);
    if (since > TICK_FAST_NS)
        e->tick_ns = e->tick_ns * 2 > TICK_MAX_NS ? TICK_MAX_NS : e->tick_ns * 2;
    engine_timer_arm(S.owner.engine, &e->tick, time_mono_ns() + e->tick_ns);
}

static void tick_fire(struct engine_timer *t)
{
    struct env_rt *e = t->arg;
    if (!e->starting || e->working)
        return;
    for (int i = 0; i < DEPLOY_MAX_INSTANCES; i++)
        e->probe_port[i] = i < e->row.instances && e->inst[i].rt.running && !e->inst[i].healthy
                               ? deploy_instance_port(e->row.slot, i)
                               : 0;
    e->working = true;
    e->work = (struct engine_work){.run = probe_run, .done = probe_done, .arg = e};
    engine_submit(S.owner.engine, &e->work);
}

/* On a worker: everything a start needs that may block — the release, the manifest, the
 * settings (secrets opened), the directories, the database. */
static void prepare(struct prepared *p)
{
    json_t *m = deploy_release_manifest(p->app_id, p->package);
    char *err = p->reason;
    size_t cap = sizeof(p->reason);
    if (!m) {
        char why[400] = "";
        if (deploy_release_ensure(p->app_id, p->package, why, sizeof(why)) ||
            !(m = deploy_release_manifest(p->app_id, p->package))) {
            snprintf(p->code, sizeof(p->code), "NO_PACKAGE");
            snprintf(err, cap, "the release of package %s cannot be read: %s", p->package, why);
            return;
        }
    }
    json_t *run = json_object_get(m, "run");
    const char *command = json_string_value(json_object_get(run, "command"));
    if (!command) {
        snprintf(p->code, sizeof(p->code), "START_FAILED");
        snprintf(err, cap, "the package's slipway.yml has no run.command");
        goto out;
    }
    const char *health = json_string_value(json_object_get(run, "health"));
    p->command = strdup(command);
    p->health = health ? strdup(health) : NULL;
    p->start_timeout_s = json_integer_value(json_object_get(run, "start_timeout_s"));
    p->stop_timeout_s = json_integer_value(json_object_get(run, "stop_timeout_s"));
    if (p->start_timeout_s <= 0)
        p->start_timeout_s = 60;
    if (p->stop_timeout_s <= 0)
        p->stop_timeout_s = 10;
    snprintf(p->version, sizeof(p->version), "%s",
             json_string_value(json_object_get(m, "version")) ?: "");
    p->release_dir = layout_release_dir(p->app_id, p->package);
    p->log_dir = layout_env_path(p->app_id, p->row.mode, LAYOUT_ENV_LOGS);
    p->data_dir = layout_env_path(p->app_id, p->row.mode, LAYOUT_ENV_DATA);
    int r = deploy_env_dirs(p->app_id, &p->row);
    if (r || !p->release_dir || !p->log_dir || !p->data_dir || !p->command) {
        snprintf(p->code, sizeof(p->code), "START_FAILED");
        snprintf(err, cap, "cannot make the environment's directories: %s",
                 strerror(r ? -r : ENOMEM));
        goto out;
    }
    /* the environment, from scratch: nothing of the server's */
    char **v = NULL;
    size_t nr = 0;
    r = strv_add_env(&v, &nr, "PATH", "/usr/local/bin:/usr/bin:/bin") ||
        strv_add_env(&v, &nr, "LANG", "C.UTF-8") || strv_add_env(&v, &nr, "HOME", p->data_dir) ||
        strv_add_env(&v, &nr, "DATA_DIR", p->data_dir) ||
        strv_add_env(&v, &nr, "SLIPWAY_APP", p->app_id) ||
        strv_add_env(&v, &nr, "SLIPWAY_ENV", p->row.mode) ||
        strv_add_env(&v, &nr, "SLIPWAY_VERSION", p->version);
    /* constants: the environment's value, else the default; a missing one fails the start */
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(m, "constants"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *def = json_string_value(json_object_get(c, "default"));
        if (!name || r)
            continue;
        char *value = NULL;
        int got = deploy_setting_value(p->row.id, "constant", name,
                                       json_is_true(json_object_get(c, "secret")), &value);
        if (got < 0) {
            r = got;
            break;
        }
        if (!value && !def) {
            snprintf(p->code, sizeof(p->code), "MISSING_CONSTANT");
            snprintf(err, cap,
                     "constant %s has no value in %s and no default: set it in the "
                     "settings",
                     name, p->row.mode);
            free(value);
            strv_free(v);
            goto out;
        }
        char env_name[STORE_NAME_MAX + 8];
        snprintf(env_name, sizeof(env_name), "MX_%s", name);
        for (char *q = env_name; *q; q++)
            if (*q == '.')
                *q = '_';
        r = strv_add_env(&v, &nr, env_name, value ? value : def);
        free(value);
    }
    /* the database, when the app asks for one */
    json_t *db = json_object_get(run, "database");
    if (!r && json_is_string(db)) {
        char name[32], url[512], why[400] = "";
        deploy_db_name(&p->row, name);
        if (!deploy_g.have_database || database_ensure(name, url, sizeof(url), why, sizeof(why))) {
            snprintf(p->code, sizeof(p->code), "START_FAILED");
            snprintf(err, cap, "the app needs a PostgreSQL database: %s",
                     deploy_g.have_database ? why : "PostgreSQL is not installed on the server");
            strv_free(v);
            goto out;
        }
        r = strv_add_env(&v, &nr, "DATABASE_URL", url);
    }
    /* scheduled events */
    json_t *events = json_object_get(m, "scheduled_events");
    p->events =
        json_array_size(events) ? calloc(json_array_size(events), sizeof(*p->events)) : NULL;
    json_array_foreach(events, i, c)
    {
        struct event_rt *ev = &p->events[p->nr_events];
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *cron = json_string_value(json_object_get(c, "cron"));
        const char *cmd = json_string_value(json_object_get(c, "command"));
        if (!p->events || !name || !cron || !cmd || cron_parse(cron, &ev->cron, NULL))
            continue;
        char *value = NULL;
        deploy_setting_value(p->row.id, "event", name, false, &value);
        ev->enabled = value && !strcmp(value, "Enabled");
        free(value);
        ev->name = strdup(name);
        ev->command = strdup(cmd);
        p->nr_events++;
    }
    if (r) {
        snprintf(p->code, sizeof(p->code), "START_FAILED");
        snprintf(err, cap, "cannot read the settings or build the environment");
        strv_free(v);
        goto out;
    }
    p->envp = v;
    p->nr_envp = nr;
out:
    json_decref(m);
}

static void prepare_run(struct engine_work *w)
{
    struct env_rt *e = w->arg;
    prepare(e->prep);
}

static void events_schedule(struct env_rt *e);

/* Whether 127.0.0.1:port can be listened on (nothing listens there now). */
static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return true; /* cannot tell: the app will say */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static void prepare_done(struct engine_work *w)
{
    struct env_rt *e = w->arg;
    struct prepared *p = e->prep;
    e->working = false;
    e->preparing = false;
    e->prep = NULL;
    if (!e->starting || !e->row.want_running) { /* stopped meanwhile (reconcile waited) */
        prepared_free(p);
        reconcile(e);
        return;
    }
    if (p->code[0]) {
        start_fail(e, p->code, p->reason);
        prepared_free(p);
        return;
    }
    run_take(e, p);
    prepared_free(p);
    e->deadline_ns = time_mono_ns() + e->start_timeout_s * 1000000000LL;
    int n = e->row.instances;
    for (int i = 0; i < n && i < DEPLOY_MAX_INSTANCES; i++) {
        int port = deploy_instance_port(e->row.slot, i);
        if (!port_free(port)) { /* another process (an app that ignores $PORT?) holds it */
            char reason[200];
            snprintf(reason, sizeof(reason),
                     "port %d, instance %d's, is in use by another process on 127.0.0.1", port, i);
            start_fail(e, "START_FAILED", reason);
            return;
        }
    }
    for (int i = 0; i < n && i < DEPLOY_MAX_INSTANCES; i++) {
        e->inst[i].wanted = true;
        if (inst_spawn(e, &e->inst[i])) {
            start_fail(e, "START_FAILED", "an instance could not be started (see the server log)");
            return;
        }
    }
    e->tick_ns = TICK_FIRST_NS;
    engine_timer_arm(S.owner.engine, &e->tick, time_mono_ns() + e->tick_ns);
}

/* Starts the prepared start job (once no instance of an earlier run is left). */
static void start_begin(struct env_rt *e, const struct store_job *job)
{
    e->starting = true;
    e->job = job->id;
    store_job_set_status(job->id, JOB_RUNNING, NULL, NULL);
    if (!(e->prep = calloc(1, sizeof(*e->prep)))) {
        start_fail(e, "START_FAILED", "out of memory");
        return;
    }
    e->prep->row = e->row;
    snprintf(e->prep->app_id, sizeof(e->prep->app_id), "%s", e->app_id);
    snprintf(e->prep->package, sizeof(e->prep->package), "%s", e->row.package_id);
    e->preparing = e->working = true;
    e->work = (struct engine_work){.run = prepare_run, .done = prepare_done, .arg = e};
    engine_submit(S.owner.engine, &e->work);
}

/* ---- exits ---- */

static void inst_exited(struct runtime_instance *rt, int status)
{
    struct inst *in = rt->arg;
    struct env_rt *e = in->env;
    store_instance_del(e->id, in->idx);
    bool asked = in->stopping || !in->wanted;
    in->stopping = false;
    if (!asked && e->starting) {
        char tail[TAIL_BYTES + 1], prefix[128], reason[STORE_REASON_MAX + 1];
        log_tail(e, tail, sizeof(tail));
        snprintf(prefix, sizeof(prefix),
                 "instance %d exited with status %d during the start; the app log's last lines:\n",
                 in->idx, status);
        reason_with_tail(reason, sizeof(reason), prefix, tail);
        start_fail(e, "START_FAILED", reason);
    } else if (!asked && e->row.want_running) {
        int64_t ran = time_mono_ns() - in->started_ns;
        int64_t delay = engine_backoff_next(&in->backoff, ran);
        log_warn("deploy: %s/%s: instance %d exited with status %d after %.1f s; starting it "
                 "again in %.1f s",
                 e->app_id, e->row.mode, in->idx, status, ran / 1e9, delay / 1e9);
        if (in->backoff.failures >= DEPLOY_CRASH_LOOP && !e->row.crash_looping) {
            e->row.crash_looping = true;
            store_env_set_crash_looping(e->id, true);
            log_error("deploy: %s/%s is crash-looping: instance %d failed %u times in a row",
                      e->app_id, e->row.mode, in->idx, in->backoff.failures);
        }
        engine_timer_arm(S.owner.engine, &in->restart, time_mono_ns() + delay);
    }
    reconcile(e);
}

/* ---- scheduled events ---- */

static void event_exited(struct runtime_instance *rt, int status)
{
    struct event_rt *ev = rt->arg;
    log_info("deploy: %s/%s: scheduled event %s exited with status %d", ev->env->app_id,
             ev->env->row.mode, ev->name, status);
    reconcile(ev->env);
}

static void event_fire(struct engine_timer *t)
{
    struct env_rt *e = t->arg;
    int64_t now = time_now_ms() / 1000;
    for (size_t i = 0; i < e->nr_events; i++) {
        struct event_rt *ev = &e->events[i];
        if (!ev->enabled || ev->next <= 0 || ev->next > now)
            continue;
        if (ev->rt.running) {
            log_warn("deploy: %s/%s: scheduled event %s is still running: this run is skipped",
                     e->app_id, e->row.mode, ev->name);
            continue;
        }
        char label[STORE_NAME_MAX + 8], group[48];
        snprintf(label, sizeof(label), "event:%s", ev->name);
        snprintf(group, sizeof(group), "env%d-ev%zu-%llu", e->row.slot, i, ++e->seq);
        ev->rt.exited = event_exited;
        ev->rt.arg = ev;
        int r = env_run(e, &ev->rt, ev->command, label, group, deploy_env_port(&e->row), -1);
        if (r)
            log_error("deploy: %s/%s: cannot run scheduled event %s: %s", e->app_id, e->row.mode,
                      ev->name, strerror(-r));
        else
            log_info("deploy: %s/%s: scheduled event %s runs", e->app_id, e->row.mode, ev->name);
    }
    events_schedule(e);
}

static void events_schedule(struct env_rt *e)
{
    int64_t now = time_now_ms() / 1000, first = 0;
    for (size_t i = 0; i < e->nr_events; i++) {
        struct event_rt *ev = &e->events[i];
        ev->next = ev->enabled ? cron_next(&ev->cron, now) : -1;
        if (ev->next > 0 && (!first || ev->next < first))
            first = ev->next;
    }
    e->event_timer = (struct engine_timer){.fire = event_fire, .arg = e};
    if (first)
        engine_timer_arm(S.owner.engine, &e->event_timer,
                         time_mono_ns() + (first * 1000 - time_now_ms()) * 1000000LL);
}

/* ---- reconciling an environment with its row ---- */

static void reconcile(struct env_rt *e)
{
    if (e->preparing)
        return; /* prepare_done comes back here */
    if (!e->row.want_running) {
        if (e->starting) {
            e->starting = false;
            engine_timer_disarm(S.owner.engine, &e->tick);
            store_job_set_status(e->job, JOB_FAILED, "START_FAILED",
                                 "the environment was stopped during its start");
        }
        stop_all(e);
        if (!any_running(e) && !strcmp(e->row.status, "Running")) {
            store_env_set_status(e->id, "Stopped");
            snprintf(e->row.status, sizeof(e->row.status), "Stopped");
            log_info("deploy: %s/%s stopped", e->app_id, e->row.mode);
        }
        if (!any_running(e)) { /* a start job that never began (stopped right after) */
            struct store_job job;
            if (!store_job_active_start(e->id, &job))
                store_job_set_status(job.id, JOB_FAILED, "START_FAILED",
                                     "the environment was stopped during its start");
        }
        return;
    }
    if (e->starting)
        return;
    struct store_job job;
    if (!store_job_active_start(e->id, &job)) {
        if (job.status == JOB_RUNNING) { /* a start a previous server did not finish */
            store_job_set_status(job.id, JOB_FAILED, "START_FAILED",
                                 "the server restarted during the start: start again");
            store_env_set_want(e->id, false);
            e->row.want_running = false;
            reconcile(e);
            return;
        }
        if (any_running(e)) { /* an earlier run first */
            for (int i = 0; i < DEPLOY_MAX_INSTANCES; i++)
                inst_stop(e, &e->inst[i]);
            return;
        }
        start_begin(e, &job);
        return;
    }
    if (strcmp(e->row.status, "Running") || !e->prepared)
        return;
    /* running: the scale's instances, no more */
    for (int i = 0; i < DEPLOY_MAX_INSTANCES; i++) {
        struct inst *in = &e->inst[i];
        if (i < e->row.instances && !in->wanted) {
            in->wanted = true;
            backoff_reset(in);
            if (!in->rt.running && !inst_spawn(e, in))
                in->healthy = true;
        } else if (i >= e->row.instances && in->wanted) {
            inst_stop(e, in);
        }
    }
    if (!e->event_timer.armed && e->nr_events)
        events_schedule(e);
}

static struct env_rt *env_rt_new(const struct store_env *row)
{
    struct env_rt *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->id = row->id;
    e->row = *row;
    /* group names go on from this run's start time: an adopted instance's group, named by an
     * earlier run, is never taken again while it may still hold processes */
    e->seq = (unsigned long long)time_now_ms();
    for (int i = 0; i < DEPLOY_MAX_INSTANCES; i++) {
        struct inst *in = &e->inst[i];
        in->env = e;
        in->idx = i;
        in->restart = (struct engine_timer){.fire = restart_fire, .arg = in};
        backoff_reset(in);
        in->rt.pidfd = -1;
        in->rt.group_fd = -1;
        for (int k = 0; k < CGROUP_NR_CONTROLLERS; k++)
            in->rt.v1[k] = -1;
    }
    e->tick = (struct engine_timer){.fire = tick_fire, .arg = e};
    e->event_timer = (struct engine_timer){.fire = event_fire, .arg = e};
    e->next = S.envs;
    S.envs = e;
    return e;
}

/* The AppId of an app's row id ("" when it is gone). */
static void app_id_of(int64_t app, char out[STORE_APPID_MAX + 1])
{
    struct store_app a;
    snprintf(out, STORE_APPID_MAX + 1, "%s", store_app_by_id(app, &a) ? "" : a.app_id);
}

static int reconcile_row(const struct store_env *row, void *arg)
{
    (void)arg;
    struct env_rt *e = env_find(row->id);
    if (!e) {
        if (!row->want_running && !row->package_id[0])
            return 0; /* nothing to do for it yet */
        if (!(e = env_rt_new(row)))
            return 0;
    }
    if (!e->app_id[0])
        app_id_of(row->app, e->app_id);
    int slot = e->row.slot;
    e->row = *row;
    e->row.slot = slot;
    reconcile(e);
    return 0;
}

static void reconcile_all(void)
{
    store_env_each(0, reconcile_row, NULL);
    router_refresh();
}

/* ---- the router ---- */

/* The router serves the environments that hold a package (no nginx runs before one does). */
static int site_row(const struct store_env *row, void *arg)
{
    struct strbuf *sig = arg;
    if (row->package_id[0])
        strbuf_addf(sig, ";%d:%d", row->slot, row->instances);
    return 0;
}

static void router_apply_run(struct engine_work *w)
{
    (void)w;
    if (S.router_test_delay_ms > 0)
        nanosleep(&(struct timespec){S.router_test_delay_ms / 1000,
                                     S.router_test_delay_ms % 1000 * 1000000},
                  NULL);
    S.router_result = router_apply(S.sites, S.nr_sites, S.router_why, sizeof(S.router_why));
}

static void router_apply_done(struct engine_work *w)
{
    (void)w;
    S.router_busy = false;
    if (S.router_result) {
        log_error("deploy: the router's configuration was refused: %s", S.router_why);
    } else {
        free(S.router_live);
        S.router_live = S.router_done ? strdup(S.router_done) : NULL;
    }
    free(S.site_ports);
    for (size_t i = 0; i < S.nr_sites; i++) {
        free((char *)S.sites[i].name);
        free((char *)S.sites[i].access_log_dir);
    }
    free(S.sites);
    S.sites = NULL;
    S.site_ports = NULL;
    S.nr_sites = 0;
    router_refresh(); /* a change that came meanwhile */
}

static int site_add(const struct store_env *row, void *arg)
{
    (void)arg;
    if (!row->package_id[0])
        return 0;
    char app_id[STORE_APPID_MAX + 1];
    app_id_of(row->app, app_id);
    if (!app_id[0])
        return 0;
    struct router_site *s = &S.sites[S.nr_sites];
    char name[64];
    snprintf(name, sizeof(name), "env%d", row->slot);
    s->name = strdup(name);
    s->port = deploy_slot_port(row->slot);
    s->backends = S.site_ports + S.nr_sites * DEPLOY_MAX_INSTANCES;
    for (int i = 0; i < row->instances && i < DEPLOY_MAX_INSTANCES; i++)
        S.site_ports[S.nr_sites * DEPLOY_MAX_INSTANCES + i] = deploy_instance_port(row->slot, i);
    s->nr_backends = (size_t)row->instances;
    s->running = true; /* instances that do not answer give 503 */
    s->access_log_dir = layout_env_path(app_id, row->mode, LAYOUT_ENV_ACCESS);
    deploy_env_dirs(app_id, row);
    S.nr_sites++;
    return 0;
}

static int count_env(const struct store_env *row, void *arg)
{
    (void)row;
    (*(size_t *)arg)++;
    return 0;
}

/* Applies the router's configuration when the environments or their scales changed. */
static void router_refresh(void)
{
    if (!deploy_g.have_router || S.router_busy)
        return;
    /* the local date is part of it: the access logs' file names change at midnight */
    struct strbuf sig = STRBUF_INIT;
    char date[16];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d", &tm);
    strbuf_adds(&sig, date);
    store_env_each(0, site_row, &sig);
    if (!strbuf_ok(&sig) || (S.router_done && !strcmp(S.router_done, sig.buf)) ||
        (!S.router_done && sig.len == strlen(date))) {
        strbuf_release(&sig);
        return;
    }
    size_t n = 0;
    store_env_each(0, count_env, &n);
    S.sites = calloc(n ? n : 1, sizeof(*S.sites));
    S.site_ports = calloc((n ? n : 1) * DEPLOY_MAX_INSTANCES, sizeof(int));
    S.nr_sites = 0;
    if (!S.sites || !S.site_ports) {
        free(S.sites);
        free(S.site_ports);
        S.sites = NULL;
        S.site_ports = NULL;
        strbuf_release(&sig);
        return;
    }
    store_env_each(0, site_add, NULL);
    free(S.router_done);
    S.router_done = strbuf_detach(&sig, NULL);
    S.router_busy = true;
    S.router_work = (struct engine_work){.run = router_apply_run, .done = router_apply_done};
    engine_submit(S.owner.engine, &S.router_work);
}

/* Every 5 s, on a worker: nginx and PostgreSQL still run (a master that died is started
 * again); then, on the engine thread, the router's configuration for a new day. */
static void check_run(struct engine_work *w)
{
    (void)w;
    char why[512];
    if (deploy_g.have_router && router_check(why, sizeof(why)) == 1)
        log_warn("deploy: nginx had stopped: started again");
    if (deploy_g.have_database) {
        int r = database_check(why, sizeof(why));
        if (r == 1)
            log_warn("deploy: PostgreSQL had stopped: started again");
        else if (r < 0)
            log_error("deploy: PostgreSQL: %s", why);
    }
}

static void check_done(struct engine_work *w)
{
    (void)w;
    if (S.router_result && !S.router_busy) { /* refused last time: try again */
        free(S.router_done);
        S.router_done = NULL;
    }
    router_refresh(); /* a new day: the access logs' new files */
    engine_timer_arm(S.owner.engine, &S.check_timer, time_mono_ns() + 5000000000LL);
}

static void check_fire(struct engine_timer *t)
{
    (void)t;
    S.check_work = (struct engine_work){.run = check_run, .done = check_done};
    engine_submit(S.owner.engine, &S.check_work);
}

/* ---- the owner ---- */

struct adopt_ctx {
    int adopted, restarted, killed;
};

static int adopt_row(const struct store_instance *row, void *arg)
{
    struct adopt_ctx *a = arg;
    struct store_env env;
    if (store_env_get(row->env, &env))
        return 0;
    struct env_rt *e = env_find(row->env);
    if (!e && !(e = env_rt_new(&env)))
        return 0;
    if (!e->app_id[0])
        app_id_of(env.app, e->app_id);
    if (row->idx < 0 || row->idx >= DEPLOY_MAX_INSTANCES)
        return 0;
    struct inst *in = &e->inst[row->idx];
    bool wanted = env.want_running && !strcmp(env.status, "Running");
    in->rt.exited = inst_exited;
    in->rt.arg = in;
    if (S.driver->adopt(&in->rt, row)) {
        store_instance_del(row->env, row->idx);
        if (wanted) {
            log_warn("deploy: %s/%s: instance %d (pid %d) is gone: it will be started again",
                     e->app_id, env.mode, row->idx, row->pid);
            a->restarted++;
        }
        return 0;
    }
    if (!wanted || row->idx >= env.instances) {
        in->wanted = false;
        S.driver->kill(&in->rt);
        a->killed++;
        return 0;
    }
    in->wanted = in->healthy = true;
    in->started_ns = time_mono_ns();
    a->adopted++;
    return 0;
}

static void owner_start(struct engine_owner *o)
{
    (void)o;
    /* what runs must be prepared again (a blocking read of the releases, at start-up only) */
    struct adopt_ctx a = {0};
    store_instance_each(0, adopt_row, &a);
    /* the v1 limit groups of instances that ended while no server ran (the adopted ones' hold
     * their processes) */
    if (S.owner.limiter)
        cgroup_limits_sweep_empty(S.owner.limiter);
    for (struct env_rt *e = S.envs; e; e = e->next) {
        store_env_get(e->id, &e->row);
        if (!e->row.want_running || strcmp(e->row.status, "Running"))
            continue;
        struct prepared *p = calloc(1, sizeof(*p));
        if (!p)
            continue;
        p->row = e->row;
        snprintf(p->app_id, sizeof(p->app_id), "%s", e->app_id);
        snprintf(p->package, sizeof(p->package), "%s",
                 e->row.running_package[0] ? e->row.running_package : e->row.package_id);
        prepare(p);
        if (p->code[0]) {
            log_error("deploy: %s/%s cannot run again after the restart: %s", e->app_id,
                      e->row.mode, p->reason);
            store_env_set_want(e->id, false);
            e->row.want_running = false;
        } else {
            run_take(e, p);
        }
        prepared_free(p);
    }
    if (a.adopted || a.restarted || a.killed)
        log_info("deploy: adopted %d running instance%s; %d gone (started again), %d no longer "
                 "wanted (stopped)",
                 a.adopted, a.adopted == 1 ? "" : "s", a.restarted, a.killed);
    reconcile_all();
    S.check_timer = (struct engine_timer){.fire = check_fire};
    engine_timer_arm(S.owner.engine, &S.check_timer, time_mono_ns() + 5000000000LL);
}

static void owner_wake(struct engine_owner *o)
{
    (void)o;
    reconcile_all();
}

/* The server stops: instances keep running for the next server to adopt. */
static void owner_stop(struct engine_owner *o)
{
    (void)o;
    for (struct env_rt *e = S.envs; e; e = e->next) {
        engine_timer_disarm(S.owner.engine, &e->tick);
        engine_timer_disarm(S.owner.engine, &e->event_timer);
        for (int i = 0; i < DEPLOY_MAX_INSTANCES; i++)
            engine_timer_disarm(S.owner.engine, &e->inst[i].restart);
    }
    engine_timer_disarm(S.owner.engine, &S.check_timer);
}

int deploy_supervisor_init(int cgroup_fd, const char *tree)
{
    const char *delay = getenv("SLIPWAY_TEST_ROUTER_DELAY_MS");
    S.router_test_delay_ms = delay ? strtol(delay, NULL, 10) % 60000 : 0;
    S.owner = (struct engine_owner){
        .name = "apps",
        .cgroup_fd = cgroup_fd,
        .spare_limit_groups = 2, /* made ahead: a v1 memory group costs milliseconds to make */
        .start = owner_start,
        .wake = owner_wake,
        .stop = owner_stop,
    };
    if (cgroup_fd >= 0) {
        char why[1024], name[96];
        snprintf(name, sizeof(name), "%s-apps", tree);
        unsigned found = cgroup_limiter_keep(name, cgroup_fd, &S.limiter, why, sizeof(why));
        S.limited = found & (1u << CGROUP_MEMORY);
        S.owner.limiter = &S.limiter;
        if (!S.limited)
            log_warn("deploy: instances run without a memory limit on this host: %s", why);
    } else {
        log_warn("deploy: instances run without a memory limit: no cgroup for them");
    }
    S.driver = runtime_process(&S.owner, deploy_g.cfg.launcher);
    engine_add_owner(deploy_g.cfg.engine, &S.owner);
    return 0;
}

void deploy_supervisor_free(void)
{
    while (S.envs) {
        struct env_rt *e = S.envs;
        S.envs = e->next;
        run_forget(e);
        prepared_free(e->prep);
        free(e);
    }
    free(S.router_done);
    free(S.router_live);
    S.router_done = S.router_live = NULL;
    if (S.owner.limiter)
        cgroup_limiter_close(&S.limiter);
}

struct group_names {
    char ***groups;
    size_t nr;
};

static int group_name(const struct store_instance *row, void *arg)
{
    struct group_names *g = arg;
    return row->group[0] && !strchr(row->group, '/') ? strv_add(g->groups, &g->nr, row->group) : 0;
}

int deploy_instance_groups(int64_t env, int *cgroup_fd, char ***groups)
{
    struct group_names g = {groups, 0};
    *groups = NULL;
    *cgroup_fd = S.owner.cgroup_fd;
    int r = store_instance_each(env, group_name, &g);
    if (r) {
        strv_free(*groups);
        *groups = NULL;
    }
    return r;
}
