/* Tests for the engine on its own: timers fire in order, a child's exit and output reach its
 * owner, a stop with grace (a child that leaves at SIGTERM, one that ignores it), the kill of a
 * whole tree including a setsid daemon, a wake from another thread, blocking work, and a second
 * kind of owner, a child restarted with back-off, written with the public API only.
 * The tree tests need a writable cgroup v2 hierarchy (root, as the tests run here and in CI).
 */
#include "engine/engine.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"

/* What the engine thread tells the test thread. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char trail[256]; /* timers' letters */
    char output[4096];
    size_t output_len;
    int status; /* of the last exit, -1: none yet */
    int exits;
    int wakes;
    pthread_t engine_thread, wake_thread, work_thread, done_thread;
    bool started;
    int64_t t_exit;
} T;

static struct engine *e;
static struct engine_owner owner;
static struct engine_child child;
static void (*on_start)(void);
static char dir[PATH_MAX];
static char tree[64];
static int cgroup_fd = -1;

static bool group_gone_within(const char *name, int ms);

static void note(void)
{
    pthread_cond_broadcast(&T.cond);
}

/* Waits (at most timeout_ms) until cond() holds, with T.lock held around each test of it. */
static bool wait_for(bool (*cond)(void), int timeout_ms)
{
    int64_t end = time_mono_ns() + (int64_t)timeout_ms * 1000000;
    pthread_mutex_lock(&T.lock);
    while (!cond() && time_mono_ns() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&T.cond, &T.lock, &ts);
    }
    bool ok = cond();
    pthread_mutex_unlock(&T.lock);
    return ok;
}

static void owner_start(struct engine_owner *o)
{
    (void)o;
    pthread_mutex_lock(&T.lock);
    T.engine_thread = pthread_self();
    T.started = true;
    pthread_mutex_unlock(&T.lock);
    if (on_start)
        on_start();
    note();
}

static void owner_wake(struct engine_owner *o)
{
    (void)o;
    pthread_mutex_lock(&T.lock);
    T.wakes++;
    T.wake_thread = pthread_self();
    pthread_mutex_unlock(&T.lock);
    note();
}

/* At the engine's stop: what still runs is killed and waited for. */
static void owner_stop(struct engine_owner *o)
{
    (void)o;
    if (child.pid) {
        engine_child_kill(&child);
        engine_child_wait(&child, -1);
    }
}

static void on_output(struct engine_child *c, const char *data, size_t len)
{
    (void)c;
    pthread_mutex_lock(&T.lock);
    size_t room = sizeof(T.output) - 1 - T.output_len;
    memcpy(T.output + T.output_len, data, len < room ? len : room);
    T.output_len += len < room ? len : room;
    T.output[T.output_len] = '\0';
    pthread_mutex_unlock(&T.lock);
    note();
}

static void on_exit_status(struct engine_child *c, int status)
{
    (void)c;
    pthread_mutex_lock(&T.lock);
    T.status = status;
    T.exits++;
    T.t_exit = time_mono_ns();
    pthread_mutex_unlock(&T.lock);
    note();
}

static void setup(void)
{
    memset(&T, 0, sizeof(T));
    pthread_mutex_init(&T.lock, NULL);
    pthread_cond_init(&T.cond, NULL);
    T.status = -1;
    memset(&child, 0, sizeof(child));
    on_start = NULL;
    temp_dir(dir, "engine");
    struct engine_config cfg = {.workers = 1};
    cr_assert_eq(engine_new(&cfg, &e), 0);
    cgroup_fd = -1;
    if (geteuid() == 0) { /* root: a cgroup v2 parent for the children, as the server has */
        char why[256] = "";
        snprintf(tree, sizeof(tree), "slipway-unit-engine-%d", (int)getpid());
        int r = cgroup_parent_open(tree, &cgroup_fd, why, sizeof(why));
        cr_assert_eq(r, 0, "cgroup_parent_open: %s (%s)", strerror(-r), why);
    }
    owner = (struct engine_owner){.name = "test",
                                  .cgroup_fd = cgroup_fd,
                                  .start = owner_start,
                                  .wake = owner_wake,
                                  .stop = owner_stop};
    engine_add_owner(e, &owner);
}

static void teardown(void)
{
    engine_free(e);
    e = NULL;
    if (cgroup_fd >= 0)
        cgroup_parent_close(cgroup_fd);
    sh("rm -rf '%s'", dir);
}

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 30);

/* Starts `sh -c script` as the test owner's child (on the engine thread). */
static const char *script;
static void start_script(void)
{
    char *argv[] = {"sh", "-c", (char *)script, NULL};
    char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    struct engine_spawn s = {.path = "/bin/sh", .argv = argv, .envp = envp, .in_fd = -1};
    child.output = on_output;
    child.exited = on_exit_status;
    int r = engine_child_start(&owner, &child, &s);
    if (r) {
        pthread_mutex_lock(&T.lock);
        T.status = 1000 - r; /* seen by the test as a start failure */
        pthread_mutex_unlock(&T.lock);
    }
}

static bool exited(void)
{
    return T.exits > 0;
}

/* ---- timers ---------------------------------------------------------------------------------- */

static struct engine_timer timer[5];
static void fire(struct engine_timer *t)
{
    pthread_mutex_lock(&T.lock);
    size_t n = strlen(T.trail);
    T.trail[n] = *(const char *)t->arg;
    T.trail[n + 1] = '\0';
    pthread_mutex_unlock(&T.lock);
    note();
}

static void arm_timers(void)
{
    static const char names[] = "ABCDE";
    int64_t now = time_mono_ns(), ms = 1000000;
    for (int i = 0; i < 5; i++)
        timer[i] = (struct engine_timer){.fire = fire, .arg = (void *)&names[i]};
    engine_timer_arm(e, &timer[0], now + 30 * ms); /* A */
    engine_timer_arm(e, &timer[1], now + 10 * ms); /* B */
    engine_timer_arm(e, &timer[2], now + 10 * ms); /* C: same time as B, armed later */
    engine_timer_arm(e, &timer[3], now + 20 * ms); /* D: disarmed, never fires */
    engine_timer_arm(e, &timer[4], now + 5 * ms);  /* E: moved after A */
    engine_timer_disarm(e, &timer[3]);
    engine_timer_arm(e, &timer[4], now + 40 * ms);
}

static bool four_fired(void)
{
    return strlen(T.trail) >= 4;
}

Test(engine, timers_fire_in_order_of_due_time_then_of_arming)
{
    on_start = arm_timers;
    cr_assert_eq(engine_start(e), 0);
    cr_assert(wait_for(four_fired, 5000), "fired: '%s'", T.trail);
    usleep(50000); /* D would have fired by now */
    pthread_mutex_lock(&T.lock);
    cr_expect_str_eq(T.trail, "BCAE");
    pthread_mutex_unlock(&T.lock);
}

/* ---- a child's exit -------------------------------------------------------------------------- */

Test(engine, a_childs_output_and_exit_status_reach_its_owner)
{
    script = "echo out; echo err >&2; exit 7";
    on_start = start_script;
    cr_assert_eq(engine_start(e), 0);
    cr_assert(wait_for(exited, 5000));
    cr_expect_eq(T.status, 7);
    cr_expect_str_eq(T.output, "out\nerr\n");
}

Test(engine, a_child_that_cannot_start_is_an_error_of_the_start_not_an_exit)
{
    /* an engine that is not running: the call is the engine thread's own */
    char *argv[] = {"nothing", NULL};
    char *envp[] = {NULL};
    struct engine_spawn s = {
        .path = "/nonexistent/nothing", .argv = argv, .envp = envp, .in_fd = -1};
    child.exited = on_exit_status;
    cr_expect_eq(engine_child_start(&owner, &child, &s), -ENOENT);
    cr_expect_eq(T.exits, 0);
    cr_expect_eq(child.pid, 0);
    if (cgroup_fd >= 0)
        cr_expect(group_gone_within(child.group, 3000), "cgroup %s was left", child.group);
}

Test(engine, a_wait_with_a_timeout_kills_a_child_that_does_not_end)
{
    /* an engine that is not running: the calls are the engine thread's own */
    script = "exec sleep 60";
    start_script();
    cr_assert_gt(child.pid, 0);
    int64_t t0 = time_mono_ns();
    engine_child_wait(&child, 100);
    double ms = (double)(time_mono_ns() - t0) / 1e6;
    cr_expect_eq(T.exits, 1);
    cr_expect_eq(T.status, 128 + SIGKILL);
    cr_expect_geq(ms, 100, "waited %.0f ms", ms);
    cr_expect_lt(ms, 3000, "waited %.0f ms", ms);
}

/* ---- stop with grace ------------------------------------------------------------------------- */

static bool ready(void)
{
    return strstr(T.output, "ready") != NULL;
}

static int stop_grace_ms;
static struct engine_timer stop_timer;
static int64_t t_stop;
static void stop_now(struct engine_timer *t)
{
    (void)t;
    t_stop = time_mono_ns();
    engine_child_stop(&child, stop_grace_ms);
}

/* Stops the child once it said "ready" (the wake from the test thread asks for it). */
static void stop_on_wake(struct engine_owner *o)
{
    owner_wake(o);
    stop_timer = (struct engine_timer){.fire = stop_now};
    engine_timer_arm(e, &stop_timer, time_mono_ns());
}

/* Kills the child's tree (the wake from the test thread asks for it). */
static void kill_on_wake(struct engine_owner *o)
{
    owner_wake(o);
    engine_child_kill(&child);
}

/* Runs `trap <on_term> TERM` then a loop as the child, stops it with grace_ms once it is ready,
 * and returns how long after the stop it exited. */
static double stop_after_ready(const char *on_term, int grace_ms)
{
    static char text[256];
    snprintf(text, sizeof(text), "trap '%s' TERM; echo ready; while :; do sleep 0.05; done",
             on_term);
    script = text;
    on_start = start_script;
    owner.wake = stop_on_wake;
    stop_grace_ms = grace_ms;
    cr_assert_eq(engine_start(e), 0);
    cr_assert(wait_for(ready, 5000));
    engine_wake(e);
    cr_assert(wait_for(exited, 5000));
    return (double)(T.t_exit - t_stop) / 1e6;
}

Test(engine, a_child_that_ignores_sigterm_is_killed_after_the_grace_period)
{
    double ms = stop_after_ready("", 300);
    cr_expect_eq(T.status, 128 + SIGKILL);
    cr_expect_geq(ms, 300, "killed after %.0f ms", ms);
    cr_expect_lt(ms, 2000, "killed after %.0f ms", ms);
}

Test(engine, a_child_that_leaves_at_sigterm_does_not_wait_for_the_grace_period)
{
    double ms = stop_after_ready("exit 3", 10000);
    cr_expect_eq(T.status, 3);
    cr_expect_lt(ms, 2000, "left after %.0f ms", ms);
}

Test(engine, the_engines_stop_ends_what_its_owners_run)
{
    script = "echo ready; exec sleep 60";
    on_start = start_script;
    cr_assert_eq(engine_start(e), 0);
    cr_assert(wait_for(ready, 5000));
    pid_t pid = child.pid;
    engine_stop(e);
    cr_expect_eq(T.status, 128 + SIGKILL);
    cr_expect_eq(proc_state(pid), '\0');
}

/* ---- the whole tree -------------------------------------------------------------------------- */

/* The daemon's pid, from the file it wrote. */
static pid_t daemon_pid(void)
{
    char *path = str("%s/daemon.pid", dir), buf[32] = "";
    FILE *f = NULL;
    for (int i = 0; i < 500 && !(f = fopen(path, "r")); i++)
        usleep(10000);
    cr_assert_not_null(f, "the daemon never wrote %s", path);
    cr_assert_not_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    free(path);
    return (pid_t)atoi(buf);
}

static bool gone_within(pid_t pid, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        char s = proc_state(pid);
        if (!s || s == 'Z' || s == 'X')
            return true;
        usleep(10000);
    }
    return false;
}

static bool group_gone_within(const char *name, int ms)
{
    struct stat st;
    for (int i = 0; i < ms / 10; i++) {
        if (fstatat(cgroup_fd, name, &st, 0) < 0 && errno == ENOENT)
            return true;
        usleep(10000);
    }
    return false;
}

static char daemon_script[4 * PATH_MAX + 512];

Test(engine, a_kill_takes_the_whole_tree_with_a_setsid_daemon)
{
    cr_assert_eq(geteuid(), 0, "the tree is killed through cgroups: run as root");
    snprintf(daemon_script, sizeof(daemon_script),
             "setsid sh -c 'echo $$ > %s/daemon.pid.tmp; mv %s/daemon.pid.tmp %s/daemon.pid; "
             "exec sleep 60' </dev/null >/dev/null 2>&1 & echo ready; exec sleep 60",
             dir, dir, dir);
    script = daemon_script;
    on_start = start_script;
    owner.wake = kill_on_wake;
    cr_assert_eq(engine_start(e), 0);
    cr_assert(wait_for(ready, 5000));
    pid_t daemon = daemon_pid();
    char group[sizeof(child.group)];
    memcpy(group, child.group, sizeof(group));
    cr_assert(!gone_within(daemon, 10));
    engine_wake(e); /* killed */
    cr_assert(wait_for(exited, 5000));
    cr_expect_eq(T.status, 128 + SIGKILL);
    cr_expect(gone_within(daemon, 2000), "the daemon %d outlived its tree", (int)daemon);
    cr_expect(group_gone_within(group, 3000), "cgroup %s was not removed", group);
}

Test(engine, nothing_of_a_tree_outlives_its_main_process)
{
    cr_assert_eq(geteuid(), 0, "the tree is killed through cgroups: run as root");
    snprintf(daemon_script, sizeof(daemon_script),
             "setsid sh -c 'echo $$ > %s/daemon.pid.tmp; mv %s/daemon.pid.tmp %s/daemon.pid; "
             "exec sleep 60' </dev/null >/dev/null 2>&1 & "
             "while [ ! -e %s/daemon.pid ]; do sleep 0.01; done; exit 0",
             dir, dir, dir, dir);
    script = daemon_script;
    on_start = start_script;
    cr_assert_eq(engine_start(e), 0);
    cr_assert(wait_for(exited, 5000));
    cr_expect_eq(T.status, 0);
    pid_t daemon = daemon_pid();
    cr_expect(gone_within(daemon, 2000), "the daemon %d outlived its tree", (int)daemon);
}

/* ---- wakes and work -------------------------------------------------------------------------- */

static bool woken(void)
{
    return T.wakes > 0;
}

static void *waker(void *arg)
{
    (void)arg;
    engine_wake(e);
    return NULL;
}

Test(engine, a_wake_from_another_thread_calls_the_owner_on_the_engine_thread)
{
    cr_assert_eq(engine_start(e), 0);
    cr_assert(wait_for(woken, 300) == false, "woken without a wake");
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, waker, NULL), 0);
    pthread_join(t, NULL);
    cr_assert(wait_for(woken, 5000));
    pthread_mutex_lock(&T.lock);
    cr_expect(pthread_equal(T.wake_thread, T.engine_thread));
    cr_expect(!pthread_equal(T.wake_thread, pthread_self()));
    pthread_mutex_unlock(&T.lock);
}

static struct engine_work work;
static bool work_finished;
static void work_run(struct engine_work *w)
{
    (void)w;
    T.work_thread = pthread_self();
    usleep(20000); /* blocking: the engine goes on meanwhile */
}
static void work_done(struct engine_work *w)
{
    (void)w;
    pthread_mutex_lock(&T.lock);
    T.done_thread = pthread_self();
    work_finished = true;
    pthread_mutex_unlock(&T.lock);
    note();
}
static void submit_work(void)
{
    work = (struct engine_work){.run = work_run, .done = work_done};
    engine_submit(e, &work);
}
static bool work_is_done(void)
{
    return work_finished;
}

Test(engine, work_runs_on_a_worker_and_comes_back_on_the_engine_thread)
{
    work_finished = false;
    on_start = submit_work;
    cr_assert_eq(engine_start(e), 0);
    cr_assert(wait_for(work_is_done, 5000));
    pthread_mutex_lock(&T.lock);
    cr_expect(!pthread_equal(T.work_thread, T.engine_thread));
    cr_expect(pthread_equal(T.done_thread, T.engine_thread));
    pthread_mutex_unlock(&T.lock);
}

/* ---- a second kind of owner: a child restarted with back-off --------------------------------- */

/* An app instance in miniature: a command that is started again each time it exits, after the
 * back-off's delay. Only the engine's public API: the environments' instances are this. */
struct instance {
    struct engine_owner owner;
    struct engine_child child;
    struct engine_timer restart;
    struct engine_backoff backoff;
    int64_t started[8];
    int starts;
};
static struct instance app;

static void instance_start(struct instance *in);

static void instance_due(struct engine_timer *t)
{
    instance_start(t->arg);
}

static void instance_exited(struct engine_child *c, int status)
{
    struct instance *in = c->arg;
    (void)status;
    int64_t delay = engine_backoff_next(&in->backoff, time_mono_ns() - c->started_ns);
    if (in->starts < 6 && !engine_stopping(in->owner.engine))
        engine_timer_arm(in->owner.engine, &in->restart, time_mono_ns() + delay);
    else
        note();
}

static void instance_start(struct instance *in)
{
    char *argv[] = {"sh", "-c", "exit 1", NULL};
    char *envp[] = {NULL};
    struct engine_spawn s = {.path = "/bin/sh", .argv = argv, .envp = envp, .in_fd = -1};
    in->child.exited = instance_exited;
    in->child.arg = in;
    pthread_mutex_lock(&T.lock);
    in->started[in->starts++] = time_mono_ns();
    pthread_mutex_unlock(&T.lock);
    if (engine_child_start(&in->owner, &in->child, &s))
        instance_exited(&in->child, -1);
}

static void instance_owner_start(struct engine_owner *o)
{
    instance_start(o->arg);
}

static void instance_owner_stop(struct engine_owner *o)
{
    struct instance *in = o->arg;
    engine_timer_disarm(o->engine, &in->restart);
    engine_child_kill(&in->child);
    engine_child_wait(&in->child, -1);
}

static bool six_starts(void)
{
    return app.starts >= 6;
}

Test(engine, a_second_owner_restarts_its_child_with_back_off)
{
    app = (struct instance){
        .owner = {.name = "apps", .cgroup_fd = -1, .arg = &app},
        .restart = {.fire = instance_due, .arg = &app},
        .backoff = {.first_ns = 20000000, .max_ns = 80000000, .stable_ns = 10000000000LL},
    };
    app.owner.start = instance_owner_start;
    app.owner.stop = instance_owner_stop;
    engine_add_owner(e, &app.owner);
    cr_assert_eq(engine_start(e), 0);
    cr_assert(wait_for(six_starts, 5000), "%d starts", app.starts);
    /* delays 20, 40, 80, 80, 80 ms (at most max_ns), each at least as long */
    static const int expect_ms[] = {20, 40, 80, 80, 80};
    for (int i = 1; i < 6; i++) {
        double gap = (double)(app.started[i] - app.started[i - 1]) / 1e6;
        cr_expect_geq(gap, expect_ms[i - 1], "restart %d after %.1f ms", i, gap);
        cr_expect_lt(gap, expect_ms[i - 1] + 500, "restart %d after %.1f ms", i, gap);
    }
}

Test(engine_backoff, doubles_up_to_the_most_and_starts_over_after_a_stable_run)
{
    struct engine_backoff b = {.first_ns = 100, .max_ns = 1000, .stable_ns = 5000};
    static const int64_t want[] = {100, 200, 400, 800, 1000, 1000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_eq(engine_backoff_next(&b, 10), want[i], "failure %zu", i + 1);
    cr_expect_eq(b.failures, 6u);
    cr_expect_eq(engine_backoff_next(&b, 5000), 100, "a stable run starts over");
    cr_expect_eq(b.failures, 1u);
}
