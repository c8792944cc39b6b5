/* runtime — how an environment's instances run: the driver interface.
 *
 * The supervisor (deploy/supervisor.c) decides what runs, restarts what crashed and checks
 * health; a driver only starts, stops and watches one instance at a time. The process driver
 * (deploy/process.c) runs each instance as a process tree on this machine under the engine;
 * container drivers (Docker, Kubernetes) implement the same calls later.
 *
 * What a driver must do:
 *   - start: run `command` with /bin/sh -c from `release_dir` with exactly `envp` (nothing of the
 *     server's environment), as `uid`/`gid` with no capability when set_ids (always when the
 *     server is root), under `memory_bytes` where the host allows it (saying once in the log
 *     where it does not), its output into the environment's daily app log in `log_dir`, one
 *     line per line with time and `label`. The instance must outlive the server (a restart of
 *     Slipway does not take apps down).
 *   - report the instance's end through inst->exited, once, on the engine thread.
 *   - stop: SIGTERM to the instance's processes, all of them killed after grace_ms.
 *   - adopt: take over an instance a previous server left running, from what `describe` wrote
 *     (pid, its start time, its group); -ESRCH when it is gone or is not that instance any more.
 * Every call runs on the engine thread.
 */
#ifndef SLIPWAY_DEPLOY_RUNTIME_H
#define SLIPWAY_DEPLOY_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/engine.h"
#include "store/store.h"

struct runtime_spec {
    const char *release_dir, *command, *log_dir, *label;
    char *const *envp;
    bool set_ids;
    uid_t uid;
    gid_t gid;
    int64_t memory_bytes; /* 0: none */
    const char *group;    /* a name for the instance's group, unique among running instances */
};

struct runtime_instance {
    void (*exited)(struct runtime_instance *inst, int status); /* status as proc_wait */
    void *arg;
    /* the driver's */
    bool running;
    pid_t pid;
    int64_t start_ticks;
    char group[48];
    struct engine_child child; /* started by this server */
    int pidfd;                 /* adopted: watched through its pidfd */
    struct engine_watch watch;
    int group_fd;
    int v1[CGROUP_NR_CONTROLLERS]; /* adopted: its v1 limit groups (engine_groups_bury) */
    char v1_name[ENGINE_V1_NAME_MAX];
};

struct runtime_driver {
    const char *name;
    int (*start)(struct runtime_instance *inst, const struct runtime_spec *spec);
    void (*stop)(struct runtime_instance *inst, int grace_ms);
    void (*kill)(struct runtime_instance *inst);
    int (*adopt)(struct runtime_instance *inst, const struct store_instance *row);
    /* What a later server needs to adopt it (pid, start ticks, group). */
    void (*describe)(const struct runtime_instance *inst, struct store_instance *row);
};

/* The process driver: instances are children of the engine owner `o` (its group under the
 * owner's cgroup parent, limits through its limiter), each started through `launcher` (the
 * slipway binary's `instance` command, which writes the log). */
struct runtime_driver *runtime_process(struct engine_owner *o, const char *launcher);

#endif
