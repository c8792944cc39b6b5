/* engine — the thread that owns every supervised process; see engine.h. */
#include "engine/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "base/banned.h"

#define MAX_OWNERS  8
#define BATCH       32
#define GRAVE_EVERY 10000000LL   /* a group not empty yet is tried again after 10 ms */
#define GRAVE_GIVE  5000000000LL /* and given up (with a log line) after 5 s */

/* A child's groups whose processes are being killed: removed once empty. */
struct grave {
    struct engine_owner *owner;
    int fd; /* v2 group, or -1 */
    char name[48];
    int v1[CGROUP_NR_CONTROLLERS];
    char v1_name[ENGINE_V1_NAME_MAX];
    int64_t since_ns;
};

struct engine {
    struct engine_config cfg;
    int epoll_fd, wake_fd;
    struct engine_watch wake_watch;
    pthread_t thread;
    bool started;
    atomic_bool stopping;
    struct engine_owner *owner[MAX_OWNERS];
    size_t nr_owners;
    struct engine_timer *first, *last; /* armed timers, by due time */
    struct epoll_event batch[BATCH];   /* the round being delivered */
    int batch_n, batch_i;
    unsigned long long run; /* in v1 group names: the start's time in ms */
    struct grave *graves;
    size_t nr_graves, alloc_graves;
    struct engine_timer grave_timer;
    /* the workers */
    pthread_mutex_t lock;
    pthread_cond_t cond, started_cond;
    struct engine_work *queue, **queue_tail, *done;
    bool workers_stop;
    bool owners_started; /* engine_start() returns once every owner's start() ran */
    pthread_t worker[ENGINE_MAX_WORKERS];
    size_t nr_workers;
};

static void graves_visit(struct engine_timer *t);

int engine_new(const struct engine_config *cfg, struct engine **out)
{
    struct engine *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->cfg = *cfg;
    e->wake_fd = e->epoll_fd = -1;
    if (e->cfg.workers > ENGINE_MAX_WORKERS)
        e->cfg.workers = ENGINE_MAX_WORKERS;
    e->queue_tail = &e->queue;
    e->run = (unsigned long long)time_now_ms();
    e->grave_timer = (struct engine_timer){.fire = graves_visit, .arg = e};
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    pthread_cond_init(&e->started_cond, NULL);
    e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    e->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (e->wake_fd < 0 || e->epoll_fd < 0) {
        int r = -errno;
        engine_free(e);
        return r;
    }
    *out = e;
    return 0;
}

void engine_add_owner(struct engine *e, struct engine_owner *o)
{
    o->engine = e;
    o->nr_spare = 0;
    if (o->spare_limit_groups && !o->spare)
        o->spare = calloc(o->spare_limit_groups, sizeof(*o->spare));
    if (!o->spare)
        o->spare_limit_groups = 0;
    if (e->nr_owners < MAX_OWNERS)
        e->owner[e->nr_owners++] = o;
    else
        log_error("engine: too many owners; '%s' is not registered", o->name);
}

bool engine_stopping(const struct engine *e)
{
    return atomic_load(&e->stopping);
}

void engine_wake(struct engine *e)
{
    uint64_t one = 1;
    if (e && e->wake_fd >= 0) {
        ssize_t w = write(e->wake_fd, &one, sizeof(one));
        (void)w;
    }
}

/* ---- watches ------------------------------------------------------------------------------- */

int engine_watch_add(struct engine *e, struct engine_watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(e->epoll_fd, EPOLL_CTL_ADD, w->fd, &ev) < 0)
        return -errno;
    w->added = true;
    return 0;
}

void engine_watch_del(struct engine *e, struct engine_watch *w)
{
    if (!w->added)
        return;
    epoll_ctl(e->epoll_fd, EPOLL_CTL_DEL, w->fd, NULL);
    w->added = false;
    for (int i = e->batch_i + 1; i < e->batch_n; i++)
        if (e->batch[i].data.ptr == w)
            e->batch[i].data.ptr = NULL;
}

/* ---- timers -------------------------------------------------------------------------------- */

void engine_timer_disarm(struct engine *e, struct engine_timer *t)
{
    if (!t->armed)
        return;
    *(t->prev ? &t->prev->next : &e->first) = t->next;
    *(t->next ? &t->next->prev : &e->last) = t->prev;
    t->prev = t->next = NULL;
    t->armed = false;
}

void engine_timer_arm(struct engine *e, struct engine_timer *t, int64_t due_ns)
{
    engine_timer_disarm(e, t);
    t->due_ns = due_ns;
    struct engine_timer *after = e->last; /* most timers go last: walk from the end */
    while (after && after->due_ns > due_ns)
        after = after->prev;
    t->prev = after;
    t->next = after ? after->next : e->first;
    *(t->next ? &t->next->prev : &e->last) = t;
    *(after ? &after->next : &e->first) = t;
    t->armed = true;
}

static void timers_fire(struct engine *e)
{
    int64_t now = time_mono_ns();
    while (e->first && e->first->due_ns <= now) {
        struct engine_timer *t = e->first;
        engine_timer_disarm(e, t);
        t->fire(t);
    }
}

/* ---- work ---------------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct engine *e = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&e->lock);
    for (;;) {
        while (!e->queue && !e->workers_stop)
            pthread_cond_wait(&e->cond, &e->lock);
        if (e->workers_stop)
            break;
        struct engine_work *w = e->queue;
        if (!(e->queue = w->next))
            e->queue_tail = &e->queue;
        pthread_mutex_unlock(&e->lock);
        w->run(w);
        pthread_mutex_lock(&e->lock);
        w->next = e->done;
        e->done = w;
        engine_wake(e);
    }
    pthread_mutex_unlock(&e->lock);
    if (e->cfg.thread_exit)
        e->cfg.thread_exit();
    return NULL;
}

void engine_submit(struct engine *e, struct engine_work *w)
{
    if (!e->nr_workers) {
        w->run(w);
        w->done(w);
        return;
    }
    w->next = NULL;
    pthread_mutex_lock(&e->lock);
    *e->queue_tail = w;
    e->queue_tail = &w->next;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

/* Hands finished work back to its owner, oldest first. */
static void work_deliver(struct engine *e)
{
    pthread_mutex_lock(&e->lock);
    struct engine_work *w = e->done, *reversed = NULL, *next;
    e->done = NULL;
    pthread_mutex_unlock(&e->lock);
    for (; w; w = next) {
        next = w->next;
        w->next = reversed;
        reversed = w;
    }
    for (w = reversed; w; w = next) {
        next = w->next;
        w->done(w);
    }
}

static void workers_stop(struct engine *e)
{
    pthread_mutex_lock(&e->lock);
    e->workers_stop = true;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
    for (size_t i = 0; i < e->nr_workers; i++)
        pthread_join(e->worker[i], NULL);
    e->nr_workers = 0;
    e->queue = NULL; /* not begun: the owners know what they handed over */
    e->queue_tail = &e->queue;
}

/* ---- groups -------------------------------------------------------------------------------- */

/* The v1 groups of the limits on a hybrid host (pids and memory hierarchies): unlike a v2 group
 * (one per child: cgroup.kill, once written, kills what joins later), they are used again once
 * empty, as making and removing a memory cgroup costs more than all the rest of a child's cgroup
 * work. Whoever takes them sets the limits again and reads the counters first. */
static void limits_take(struct engine_owner *o, struct engine_child *c)
{
    bool any = false;
    for (int k = 0; k < CGROUP_NR_CONTROLLERS; k++) {
        c->v1[k] = -1;
        any |= o->limiter && o->limiter->v1_fd[k] >= 0;
    }
    c->v1_name[0] = '\0';
    c->since = (struct cgroup_limits_count){0, 0};
    if (!any)
        return;
    if (o->nr_spare) {
        struct engine_spare *g = &o->spare[--o->nr_spare];
        memcpy(c->v1, g->fd, sizeof(g->fd));
        memcpy(c->v1_name, g->name, sizeof(g->name));
        cgroup_limits_count(o->limiter, -1, c->v1, &c->since);
        return;
    }
    snprintf(c->v1_name, sizeof(c->v1_name), "limits-%llx-%llu", o->engine->run, ++o->seq);
    int r = cgroup_limits_create(o->limiter, c->v1_name, c->v1);
    if (r)
        log_warn("%s: cannot create the v1 cgroups %s: %s", o->name, c->v1_name, strerror(-r));
}

static bool v1_any(const int v1[CGROUP_NR_CONTROLLERS])
{
    for (int k = 0; k < CGROUP_NR_CONTROLLERS; k++)
        if (v1[k] >= 0)
            return true;
    return false;
}

/* Tries to end a grave: true when nothing of it is left. `last`: now or never (at the stop, or
 * after GRAVE_GIVE), waiting a little and saying what is left. */
static bool grave_end(struct grave *g, bool last)
{
    struct engine_owner *o = g->owner;
    if (g->fd >= 0) {
        if (!last && cgroup_populated(g->fd) == 1)
            return false;
        int r = cgroup_destroy(o->cgroup_fd, g->name, g->fd, last ? 2000 : 0);
        g->fd = -1;
        if (r && r != -ENOENT)
            log_warn("%s: cannot remove cgroup %s: %s", o->name, g->name, strerror(-r));
    }
    if (v1_any(g->v1)) {
        int empty = cgroup_limits_empty(g->v1);
        if (!last && empty == 0)
            return false;
        if (empty == 1 && o->nr_spare < o->spare_limit_groups) {
            struct engine_spare *s = &o->spare[o->nr_spare++];
            memcpy(s->fd, g->v1, sizeof(s->fd));
            memcpy(s->name, g->v1_name, sizeof(s->name));
        } else if (cgroup_limits_destroy(o->limiter, g->v1_name, g->v1, 2000)) {
            log_warn("%s: cannot remove the v1 cgroups %s (processes left in them)", o->name,
                     g->v1_name);
        }
    }
    return true;
}

/* Every 10 ms while graves are left: those now empty go; after 5 s, the rest is given up on. */
static void graves_visit(struct engine_timer *t)
{
    struct engine *e = t->arg;
    int64_t now = time_mono_ns();
    for (size_t i = 0; i < e->nr_graves;) {
        struct grave *g = &e->graves[i];
        bool last = now - g->since_ns > GRAVE_GIVE;
        if (grave_end(g, last))
            e->graves[i] = e->graves[--e->nr_graves];
        else
            i++;
    }
    if (e->nr_graves && !engine_stopping(e))
        engine_timer_arm(e, &e->grave_timer, now + GRAVE_EVERY);
}

/* The child's groups after its exit: whatever is left in them is killed, and they go once
 * empty (at once, most of the time), off the engine's path. */
static void groups_bury(struct engine_owner *o, int fd, const char *name,
                        const int v1[CGROUP_NR_CONTROLLERS], const char *v1_name)
{
    struct engine *e = o->engine;
    struct grave g = {.owner = o, .fd = fd, .since_ns = time_mono_ns()};
    snprintf(g.name, sizeof(g.name), "%s", name);
    memcpy(g.v1, v1, sizeof(g.v1));
    snprintf(g.v1_name, sizeof(g.v1_name), "%s", v1_name);
    if (fd < 0 && !v1_any(v1))
        return;
    if (fd >= 0 && cgroup_populated(fd) == 1)
        cgroup_kill(fd);
    if (grave_end(&g, false))
        return;
    if (e->nr_graves == e->alloc_graves) {
        size_t n = e->alloc_graves ? 2 * e->alloc_graves : 8;
        struct grave *grown = realloc(e->graves, n * sizeof(*grown));
        if (!grown) {
            grave_end(&g, true);
            return;
        }
        e->graves = grown;
        e->alloc_graves = n;
    }
    e->graves[e->nr_graves++] = g;
    if (!e->grave_timer.armed)
        engine_timer_arm(e, &e->grave_timer, time_mono_ns() + GRAVE_EVERY);
}

void engine_groups_bury(struct engine_owner *o, int fd, const char *name,
                        const int v1[CGROUP_NR_CONTROLLERS], const char *v1_name)
{
    groups_bury(o, fd, name, v1, v1_name);
}

/* ---- children ------------------------------------------------------------------------------ */

static void child_drain(struct engine_child *c)
{
    char buf[16384];
    while (c->out.fd >= 0) {
        ssize_t n = read(c->out.fd, buf, sizeof(buf));
        if (n > 0) {
            if (c->output)
                c->output(c, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return; /* EOF, or nothing more for now */
    }
}

static void child_output_ready(struct engine_watch *w, uint32_t events)
{
    struct engine_child *c = w->arg;
    child_drain(c);
    if (events & (EPOLLHUP | EPOLLERR)) /* the tree closed its output; the exit comes next */
        engine_watch_del(c->owner->engine, &c->out);
}

/* The main process is gone: drain, kill what is left, reap, tell the owner, bury the groups. */
static void child_finish(struct engine_child *c)
{
    struct engine_owner *o = c->owner;
    struct engine *e = o->engine;
    child_drain(c);
    engine_watch_del(e, &c->out);
    engine_watch_del(e, &c->exit);
    engine_timer_disarm(e, &c->grace);
    close(c->out.fd);
    close(c->pidfd);
    c->out.fd = c->pidfd = -1;
    kill(-c->pid, SIGKILL); /* what it left in its process group */
    if (c->cgroup_fd >= 0 && cgroup_populated(c->cgroup_fd) == 1)
        cgroup_kill(c->cgroup_fd); /* and anywhere else in its tree */
    int status = proc_wait(c->pid);
    c->pid = 0;
    /* exited may free c, and reads the limits' counters first */
    int fd = c->cgroup_fd, v1[CGROUP_NR_CONTROLLERS];
    char name[sizeof(c->group)], v1_name[sizeof(c->v1_name)];
    memcpy(v1, c->v1, sizeof(v1));
    memcpy(name, c->group, sizeof(name));
    memcpy(v1_name, c->v1_name, sizeof(v1_name));
    if (c->exited)
        c->exited(c, status);
    groups_bury(o, fd, name, v1, v1_name);
}

static void child_exit_ready(struct engine_watch *w, uint32_t events)
{
    (void)events;
    child_finish(w->arg);
}

static void child_grace_over(struct engine_timer *t)
{
    engine_child_kill(t->arg);
}

int engine_child_start(struct engine_owner *o, struct engine_child *c, const struct engine_spawn *s)
{
    struct engine *e = o->engine;
    int out[2] = {-1, -1}, r;
    c->owner = o;
    c->pid = 0;
    c->pidfd = -1;
    c->cgroup_fd = -1;
    c->killed = false;
    c->out = (struct engine_watch){.fd = -1, .ready = child_output_ready, .arg = c};
    c->exit = (struct engine_watch){.fd = -1, .ready = child_exit_ready, .arg = c};
    c->grace = (struct engine_timer){.fire = child_grace_over, .arg = c};
    if (s->group)
        snprintf(c->group, sizeof(c->group), "%s", s->group);
    else
        snprintf(c->group, sizeof(c->group), "%s-%llu", o->name, ++o->seq);
    if (o->cgroup_fd >= 0 && (r = cgroup_create(o->cgroup_fd, c->group, &c->cgroup_fd))) {
        log_warn("%s: cannot create cgroup %s: %s", o->name, c->group, strerror(-r));
        c->cgroup_fd = -1;
    }
    limits_take(o, c);
    if (s->limits && (r = engine_child_set_limits(c, s->limits)))
        log_warn("%s: cannot set the limits of cgroup %s: %s", o->name, c->group, strerror(-r));
    struct proc_opts opts = s->opts;
    if (c->cgroup_fd >= 0 && opts.nr_cgroups < PROC_MAX_CGROUPS)
        opts.cgroup_fd[opts.nr_cgroups++] = c->cgroup_fd;
    for (int k = 0; k < CGROUP_NR_CONTROLLERS; k++)
        if (c->v1[k] >= 0 && opts.nr_cgroups < PROC_MAX_CGROUPS)
            opts.cgroup_fd[opts.nr_cgroups++] = c->v1[k];
    r = pipe2(out, O_CLOEXEC) < 0 ? -errno : 0;
    if (!r)
        r = proc_spawn_opts(&opts, s->path, s->argv, s->envp, s->in_fd, out[1], out[1], &c->pid,
                            &c->pidfd);
    if (out[1] >= 0)
        close(out[1]);
    c->out.fd = out[0];
    c->exit.fd = c->pidfd;
    if (!r) {
        fcntl(c->out.fd, F_SETFL, O_NONBLOCK);
        r = engine_watch_add(e, &c->out, EPOLLIN);
        if (!r && (r = engine_watch_add(e, &c->exit, EPOLLIN)))
            engine_watch_del(e, &c->out);
        if (r)
            proc_kill_wait(c->pid);
    }
    if (r) {
        if (c->out.fd >= 0)
            close(c->out.fd);
        if (c->pidfd >= 0)
            close(c->pidfd);
        c->out.fd = c->pidfd = -1;
        c->pid = 0;
        groups_bury(o, c->cgroup_fd, c->group, c->v1, c->v1_name);
        c->cgroup_fd = -1;
        return r;
    }
    c->started_ns = time_mono_ns();
    return 0;
}

int engine_child_set_limits(struct engine_child *c, const struct cgroup_limits *lim)
{
    if (!c->owner->limiter)
        return 0;
    return cgroup_limits_set(c->owner->limiter, c->cgroup_fd, c->v1, lim);
}

unsigned engine_child_limits_hit(const struct engine_child *c)
{
    if (!c->owner->limiter)
        return 0;
    return cgroup_limits_hit(c->owner->limiter, c->cgroup_fd, c->v1, &c->since);
}

void engine_child_limits_mark(struct engine_child *c)
{
    if (c->owner->limiter)
        cgroup_limits_count(c->owner->limiter, c->cgroup_fd, c->v1, &c->since);
}

void engine_child_drain(struct engine_child *c)
{
    if (c->pid)
        child_drain(c);
}

void engine_child_kill(struct engine_child *c)
{
    if (c->pid <= 0 || c->killed)
        return;
    if (c->cgroup_fd >= 0)
        cgroup_kill(c->cgroup_fd);
    kill(-c->pid, SIGKILL);
    kill(c->pid, SIGKILL);
    c->killed = true;
}

void engine_child_stop(struct engine_child *c, int grace_ms)
{
    if (c->pid <= 0 || c->killed)
        return;
    kill(-c->pid, SIGTERM);
    kill(c->pid, SIGTERM);
    engine_timer_arm(c->owner->engine, &c->grace,
                     time_mono_ns() + (int64_t)(grace_ms > 0 ? grace_ms : 0) * 1000000);
}

static void pidfd_wait(int pidfd, int timeout_ms)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR)
        ;
}

void engine_child_wait(struct engine_child *c, int timeout_ms)
{
    if (c->pid <= 0)
        return;
    struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
    if (timeout_ms >= 0 && poll(&p, 1, timeout_ms) != 1) {
        log_warn("%s: child %d did not end within %d ms: killing it", c->owner->name, (int)c->pid,
                 timeout_ms);
        engine_child_kill(c);
    }
    pidfd_wait(c->pidfd, -1);
    child_finish(c);
}

/* ---- back-off ------------------------------------------------------------------------------ */

int64_t engine_backoff_next(struct engine_backoff *b, int64_t ran_ns)
{
    if (ran_ns >= b->stable_ns || !b->delay_ns) {
        b->failures = 0;
        b->delay_ns = b->first_ns;
    } else {
        b->delay_ns = b->delay_ns > b->max_ns / 2 ? b->max_ns : 2 * b->delay_ns;
    }
    b->failures++;
    return b->delay_ns;
}

/* ---- the thread ---------------------------------------------------------------------------- */

static void wake_ready(struct engine_watch *w, uint32_t events)
{
    struct engine *e = w->arg;
    uint64_t v;
    (void)events;
    ssize_t rd = read(e->wake_fd, &v, sizeof(v));
    (void)rd;
    work_deliver(e);
    for (size_t i = 0; i < e->nr_owners && !engine_stopping(e); i++)
        if (e->owner[i]->wake)
            e->owner[i]->wake(e->owner[i]);
}

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (size_t i = 0; i < e->nr_owners; i++)
        if (e->owner[i]->start)
            e->owner[i]->start(e->owner[i]);
    pthread_mutex_lock(&e->lock);
    e->owners_started = true;
    pthread_cond_broadcast(&e->started_cond);
    pthread_mutex_unlock(&e->lock);
    while (!engine_stopping(e)) {
        int timeout = -1;
        if (e->first) {
            int64_t ms = (e->first->due_ns - time_mono_ns()) / 1000000 + 1;
            timeout = ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
        }
        int n = epoll_wait(e->epoll_fd, e->batch, BATCH, timeout);
        e->batch_n = n > 0 ? n : 0;
        for (e->batch_i = 0; e->batch_i < e->batch_n; e->batch_i++) {
            struct engine_watch *w = e->batch[e->batch_i].data.ptr;
            if (w) /* NULL: deleted by an earlier event of this round */
                w->ready(w, e->batch[e->batch_i].events);
        }
        e->batch_n = e->batch_i = 0;
        timers_fire(e);
    }
    workers_stop(e);
    work_deliver(e);
    for (size_t i = 0; i < e->nr_owners; i++)
        if (e->owner[i]->stop)
            e->owner[i]->stop(e->owner[i]);
    engine_timer_disarm(e, &e->grave_timer);
    while (e->nr_graves)
        grave_end(&e->graves[--e->nr_graves], true);
    for (size_t i = 0; i < e->nr_owners; i++) {
        struct engine_owner *o = e->owner[i];
        while (o->nr_spare) {
            struct engine_spare *g = &o->spare[--o->nr_spare];
            cgroup_limits_destroy(o->limiter, g->name, g->fd, 2000);
        }
    }
    if (e->cfg.thread_exit)
        e->cfg.thread_exit();
    return NULL;
}

int engine_start(struct engine *e)
{
    e->wake_watch = (struct engine_watch){.fd = e->wake_fd, .ready = wake_ready, .arg = e};
    int r = engine_watch_add(e, &e->wake_watch, EPOLLIN);
    if (r)
        return r;
    atomic_store(&e->stopping, false);
    e->workers_stop = false;
    for (e->nr_workers = 0; e->nr_workers < e->cfg.workers; e->nr_workers++)
        if ((r = pthread_create(&e->worker[e->nr_workers], NULL, worker_main, e)))
            break;
    if (!r)
        r = pthread_create(&e->thread, NULL, engine_main, e);
    if (r) {
        workers_stop(e);
        return -r;
    }
    e->started = true;
    pthread_mutex_lock(&e->lock);
    while (!e->owners_started)
        pthread_cond_wait(&e->started_cond, &e->lock);
    pthread_mutex_unlock(&e->lock);
    return 0;
}

void engine_stop(struct engine *e)
{
    if (!e || !e->started)
        return;
    atomic_store(&e->stopping, true);
    engine_wake(e);
    pthread_join(e->thread, NULL);
    e->started = false;
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    engine_stop(e);
    for (size_t i = 0; i < e->nr_owners; i++) {
        struct engine_owner *o = e->owner[i];
        free(o->spare);
        o->spare = NULL;
        o->engine = NULL;
    }
    if (e->wake_fd >= 0)
        close(e->wake_fd);
    if (e->epoll_fd >= 0)
        close(e->epoll_fd);
    free(e->graves);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cond);
    pthread_cond_destroy(&e->started_cond);
    free(e);
}
