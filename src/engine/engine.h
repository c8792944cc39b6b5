/* engine — the one thread that owns every process the server supervises.
 *
 * An engine is an epoll loop on its own thread: file descriptors it watches, monotonic timers, a
 * wake-up any thread may send, a pool of worker threads for blocking work, and supervised
 * children. Parts of the server that run processes (the build runner; later app instances, the
 * router, scheduled events, test runs) are its *owners*: they register before it starts and from
 * then on are called back on the engine thread only, so an owner's state needs no lock as long
 * as other threads reach it only through engine_wake() (and the store).
 *
 * A supervised child (engine_child_start) is spawned into a cgroup v2 group of its own under its
 * owner's parent group (where the owner has one), with limits (pids, memory: through the owner's
 * cgroup_limiter), watched through its pidfd, its standard output and error piped to a callback.
 * When its main process exits, the engine drains the output, kills whatever is left in its group
 * (a daemon that left its session included), reaps it and calls the owner's exited callback. The
 * group is removed off the engine's path, once empty. engine_child_stop() asks politely first
 * (SIGTERM to the process group), and after the grace period kills the whole group.
 *
 * Separate kinds of owners keep their groups under separate parents (base/cgroup.h: the builds'
 * groups beneath the server's group, app instances in the "apps" sub-tree), so that one owner's
 * start-up sweep of what a crashed server left never touches another's.
 *
 * Restarting is the owner's decision: engine_backoff gives the delay before the next start and
 * an engine timer fires it (see tests/unit/engine/test_engine.c: a restarted child in 30 lines).
 *
 * Needs pidfds (Linux 5.3); without cgroup v2 for the server a child's tree is killed through
 * its process group only (and a sandbox's pid namespace, which dies with its pid 1).
 */
#ifndef SLIPWAY_ENGINE_ENGINE_H
#define SLIPWAY_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/cgroup.h"
#include "base/proc.h"

struct engine;

/* ---- the engine ----------------------------------------------------------------------------- */

struct engine_config {
    unsigned workers; /* threads for engine_submit() (0: none; at most ENGINE_MAX_WORKERS) */
    /* Called by each worker thread and the engine thread as they end (per-thread clean-up: the
     * store's connection, libgit2's handles). May be NULL. */
    void (*thread_exit)(void);
};
#define ENGINE_MAX_WORKERS 16

/* The name of a child's v1 limit groups: "limits-<run>-<n>", where <run> tells this engine's
 * run from earlier ones, whose groups may still hold processes (adopted app instances). */
#define ENGINE_V1_NAME_MAX 48

/* A part of the server that runs processes. Filled by the owner, registered before the start,
 * kept alive until engine_free(). Every callback runs on the engine thread. */
struct engine_owner {
    const char *name;                     /* in log lines: "builds" */
    int cgroup_fd;                        /* the parent of its children's groups, or -1: none */
    const struct cgroup_limiter *limiter; /* where its children's limits go (NULL: none) */
    unsigned spare_limit_groups;          /* empty v1 limit groups kept for the next child */
    void *arg;
    /* Once the engine thread runs, before anything else; engine_start() returns after it. May
     * be NULL. */
    void (*start)(struct engine_owner *o);
    /* After engine_wake(): something changed for owners (a queue, a cancel). May be NULL. */
    void (*wake)(struct engine_owner *o);
    /* The engine is stopping (the workers are done): end every child now, with
     * engine_child_kill() then engine_child_wait(). May be NULL. */
    void (*stop)(struct engine_owner *o);

    /* the engine's */
    struct engine *engine;
    struct engine_spare {
        int fd[CGROUP_NR_CONTROLLERS];
        char name[ENGINE_V1_NAME_MAX];
    } * spare;
    size_t nr_spare;
    unsigned long long seq;
};

/* Makes an engine (not running yet). 0 and *e, or -errno. */
int engine_new(const struct engine_config *cfg, struct engine **e);
/* Registers an owner (before engine_start). */
void engine_add_owner(struct engine *e, struct engine_owner *o);
/* Starts the worker threads and the engine thread, and returns once that thread has called each
 * owner's start(). 0, or -errno. */
int engine_start(struct engine *e);
/* From any thread: the engine calls the owners' wake() soon. Never blocks; signal-safe. */
void engine_wake(struct engine *e);
/* Whether engine_stop() began (on the engine thread: no new work should start). */
bool engine_stopping(const struct engine *e);
/* Stops the engine: the workers finish what they run (work not begun is dropped: each owner
 * knows what it handed over), finished work is delivered, each owner's stop() is called, then
 * the thread ends. From any thread but the engine's. */
void engine_stop(struct engine *e);
/* Frees a stopped (or never started) engine. */
void engine_free(struct engine *e);

/* ---- watches and timers (engine thread only) ----------------------------------------------- */

struct engine_watch {
    int fd;
    void (*ready)(struct engine_watch *w, uint32_t events); /* EPOLLIN, EPOLLHUP ... */
    void *arg;
    bool added; /* the engine's */
};
/* Watches w->fd for events (EPOLLIN ...). 0, or -errno. */
int engine_watch_add(struct engine *e, struct engine_watch *w, uint32_t events);
/* Stops watching; an event of this round not yet delivered is dropped, so the watch may be
 * freed at once. Does nothing for a watch that is not added. */
void engine_watch_del(struct engine *e, struct engine_watch *w);

struct engine_timer {
    void (*fire)(struct engine_timer *t); /* once, at or after the due time */
    void *arg;
    /* the engine's */
    int64_t due_ns;
    struct engine_timer *prev, *next;
    bool armed;
};
/* Arms (or moves) the timer to fire at due_ns (time_mono_ns()). Timers fire in order of their
 * due times, and those due at the same time in the order they were armed. */
void engine_timer_arm(struct engine *e, struct engine_timer *t, int64_t due_ns);
/* Disarms it; nothing if it is not armed. The timer may then be freed. */
void engine_timer_disarm(struct engine *e, struct engine_timer *t);

/* ---- blocking work --------------------------------------------------------------------------- */

struct engine_work {
    void (*run)(struct engine_work *w);  /* on a worker thread: anything that blocks */
    void (*done)(struct engine_work *w); /* then on the engine thread */
    void *arg;
    struct engine_work *next; /* the engine's */
};
/* Hands work to the workers (from the engine thread). Without workers it runs right here. */
void engine_submit(struct engine *e, struct engine_work *w);

/* ---- supervised children --------------------------------------------------------------------- */

struct engine_child;
/* Output as it comes (any split of the bytes). */
typedef void engine_output_fn(struct engine_child *c, const char *data, size_t len);
/* The main process exited (status as proc_wait: 0-255, or 128+signal), its output drained,
 * what was left of its tree killed. The engine never touches c again: it may be freed. */
typedef void engine_exit_fn(struct engine_child *c, int status);

struct engine_child {
    /* the owner's, changeable at any time on the engine thread */
    engine_output_fn *output; /* NULL: the output is read and dropped */
    engine_exit_fn *exited;   /* NULL: nothing is said */
    void *arg;
    /* read-only for the owner */
    pid_t pid;      /* 0: not running */
    int cgroup_fd;  /* its v2 group, or -1 */
    char group[48]; /* the group's name under the owner's parent */
    bool killed;    /* engine_child_kill() was called */
    int64_t started_ns;
    /* the engine's */
    struct engine_owner *owner;
    int pidfd;
    struct engine_watch out, exit;
    struct engine_timer grace;
    int v1[CGROUP_NR_CONTROLLERS];
    char v1_name[ENGINE_V1_NAME_MAX];
    struct cgroup_limits_count since;
};

struct engine_spawn {
    const char *path;
    char *const *argv, *const *envp; /* envp: the whole environment (never the server's) */
    struct proc_opts opts;           /* identity, mounts, file size...; the groups are added */
    int in_fd;                       /* the child's stdin (-1: /dev/null); the caller's to close */
    const char *group;               /* its group's name (NULL: "<owner name>-<n>") */
    const struct cgroup_limits *limits; /* NULL: none */
};

/* Starts a supervised child of owner o (on the engine thread). Its output goes to c->output
 * through a pipe. 0, or -errno (nothing is left running, and exited is not called). */
int engine_child_start(struct engine_owner *o, struct engine_child *c,
                       const struct engine_spawn *s);
/* Sets the child's limits again (a child started ahead for a use not known then). 0, or -errno. */
int engine_child_set_limits(struct engine_child *c, const struct cgroup_limits *lim);
/* Which limits the child's group ran into since it started, or since the last
 * engine_child_limits_mark() (bits 1 << CGROUP_PIDS ...). */
unsigned engine_child_limits_hit(const struct engine_child *c);
/* Takes a fresh snapshot of the limits' counters: engine_child_limits_hit() then tells what was
 * hit after now (a long-lived child that runs one piece of work after another). */
void engine_child_limits_mark(struct engine_child *c);
/* Reads and delivers the output the child's pipe holds now (before the owner acts on a message
 * the child sent another way, which its output written before must precede). */
void engine_child_drain(struct engine_child *c);
/* SIGTERM to the child's process group; after grace_ms, engine_child_kill(). */
void engine_child_stop(struct engine_child *c, int grace_ms);
/* Groups the owner did not start a child in (an adopted process's, found through
 * cgroup_limits_find): what is left in them is killed and they are removed once empty, as a
 * child's are after its exit. Takes the descriptors (v2 group fd or -1; v1 fds or -1). */
void engine_groups_bury(struct engine_owner *o, int fd, const char *name,
                        const int v1[CGROUP_NR_CONTROLLERS], const char *v1_name);
/* Kills the child's whole tree now: its group (cgroup.kill), its process group, itself. The exit
 * is reported as usual, through exited. */
void engine_child_kill(struct engine_child *c);
/* Waits for the child to exit, at most timeout_ms (-1: no limit; then it is killed and waited
 * for), drains its output and calls exited, here: for an owner's stop() (after
 * engine_child_kill) or a short child the owner needs the result of before going on. */
void engine_child_wait(struct engine_child *c, int timeout_ms);

/* ---- restart back-off ------------------------------------------------------------------------ */

/* The delay before starting again something that failed: first_ns, doubled after each failure
 * up to max_ns, and first_ns again once a run lasted stable_ns. */
struct engine_backoff {
    int64_t first_ns, max_ns, stable_ns;
    int64_t delay_ns;  /* the last delay given (0: none yet) */
    unsigned failures; /* in a row */
};
/* After a run that lasted ran_ns and failed: the delay before the next start. */
int64_t engine_backoff_next(struct engine_backoff *b, int64_t ran_ns);

#endif
