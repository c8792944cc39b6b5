/* deploy: the process driver — instances as process trees under the engine (see runtime.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base/cgroup.h"
#include "base/log.h"
#include "base/proc.h"
#include "base/util.h"
#include "deploy/runtime.h"
#include "base/banned.h"

static struct {
    struct engine_owner *owner;
    const char *launcher;
    struct runtime_driver driver;
} P;

/* Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot; 0 when the
 * process is gone. */
static int64_t start_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
        return 0; /* dead, not yet reaped: gone */
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoll(p + 1, NULL, 10) : 0;
}

static void child_exited(struct engine_child *c, int status)
{
    struct runtime_instance *inst = c->arg;
    inst->running = false;
    inst->pid = 0;
    if (inst->exited)
        inst->exited(inst, status);
}

static int process_start(struct runtime_instance *inst, const struct runtime_spec *s)
{
    char uid[24], gid[24];
    snprintf(uid, sizeof(uid), "%u", (unsigned)s->uid);
    snprintf(gid, sizeof(gid), "%u", (unsigned)s->gid);
    const char *argv[20];
    size_t n = 0;
    argv[n++] = P.launcher;
    argv[n++] = "instance";
    argv[n++] = "--log-dir";
    argv[n++] = s->log_dir;
    argv[n++] = "--label";
    argv[n++] = s->label;
    argv[n++] = "--cwd";
    argv[n++] = s->release_dir;
    if (s->set_ids) {
        argv[n++] = "--uid";
        argv[n++] = uid;
        argv[n++] = "--gid";
        argv[n++] = gid;
    }
    argv[n++] = "--";
    argv[n++] = "/bin/sh";
    argv[n++] = "-c";
    argv[n++] = s->command;
    argv[n] = NULL;
    struct cgroup_limits lim = {.memory_bytes = s->memory_bytes};
    struct engine_spawn sp = {
        .path = P.launcher,
        .argv = (char *const *)argv,
        .envp = s->envp,
        .opts = PROC_OPTS_INIT,
        .in_fd = -1,
        .group = s->group,
        .limits = s->memory_bytes ? &lim : NULL,
    };
    memset(&inst->child, 0, sizeof(inst->child));
    inst->child.exited = child_exited;
    inst->child.arg = inst;
    inst->pidfd = -1;
    inst->group_fd = -1;
    int r = engine_child_start(P.owner, &inst->child, &sp);
    if (r)
        return r;
    inst->running = true;
    inst->pid = inst->child.pid;
    inst->start_ticks = start_ticks(inst->pid);
    snprintf(inst->group, sizeof(inst->group), "%s", inst->child.group);
    return 0;
}

/* ---- adopted instances: not this process's children, watched through a pidfd ---- */

static void adopted_end(struct runtime_instance *inst)
{
    engine_watch_del(P.owner->engine, &inst->watch);
    close(inst->pidfd);
    inst->pidfd = -1;
    /* what the launcher left is killed; the groups go once empty, as a child's */
    engine_groups_bury(P.owner, inst->group_fd, inst->group, inst->v1, inst->v1_name);
    inst->group_fd = -1;
    for (int k = 0; k < CGROUP_NR_CONTROLLERS; k++)
        inst->v1[k] = -1;
    inst->running = false;
    inst->pid = 0;
}

static void adopted_ready(struct engine_watch *w, uint32_t events)
{
    (void)events;
    struct runtime_instance *inst = w->arg;
    adopted_end(inst);
    /* Its exit status went to the process that reaped it (init): the supervisor counts it as a
     * crash unless it asked for the stop. */
    if (inst->exited)
        inst->exited(inst, 128 + SIGKILL);
}

static int process_adopt(struct runtime_instance *inst, const struct store_instance *row)
{
    if (row->pid <= 1 || start_ticks(row->pid) != row->start_ticks)
        return -ESRCH;
    inst->pidfd = proc_pidfd(row->pid);
    if (inst->pidfd < 0)
        return -ESRCH;
    inst->pid = row->pid;
    inst->start_ticks = row->start_ticks;
    snprintf(inst->group, sizeof(inst->group), "%s", row->group);
    inst->group_fd =
        P.owner->cgroup_fd >= 0 && row->group[0] && !strchr(row->group, '/')
            ? openat(P.owner->cgroup_fd, row->group, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            : -1;
    /* its v1 limit groups (an earlier run's names), to remove after it */
    if (!P.owner->limiter || cgroup_limits_find(P.owner->limiter, row->pid, inst->v1_name,
                                                sizeof(inst->v1_name), inst->v1)) {
        for (int k = 0; k < CGROUP_NR_CONTROLLERS; k++)
            inst->v1[k] = -1;
        inst->v1_name[0] = '\0';
    }
    inst->watch = (struct engine_watch){.fd = inst->pidfd, .ready = adopted_ready, .arg = inst};
    int r = engine_watch_add(P.owner->engine, &inst->watch, EPOLLIN);
    if (r) {
        close(inst->pidfd);
        inst->pidfd = -1;
        if (inst->group_fd >= 0)
            close(inst->group_fd);
        inst->group_fd = -1;
        for (int k = 0; k < CGROUP_NR_CONTROLLERS; k++) {
            if (inst->v1[k] >= 0)
                close(inst->v1[k]);
            inst->v1[k] = -1;
        }
        return r;
    }
    memset(&inst->child, 0, sizeof(inst->child));
    inst->running = true;
    return 0;
}

static void process_kill(struct runtime_instance *inst)
{
    if (!inst->running)
        return;
    if (inst->pidfd < 0) {
        engine_child_kill(&inst->child);
        return;
    }
    if (inst->group_fd >= 0)
        cgroup_kill(inst->group_fd);
    kill(-inst->pid, SIGKILL);
    kill(inst->pid, SIGKILL);
}

static void grace_fire(struct engine_timer *t)
{
    process_kill(t->arg);
}

static void process_stop(struct runtime_instance *inst, int grace_ms)
{
    if (!inst->running)
        return;
    if (inst->pidfd < 0) {
        engine_child_stop(&inst->child, grace_ms);
        return;
    }
    kill(-inst->pid, SIGTERM);
    kill(inst->pid, SIGTERM);
    /* the adopted instance's timer lives in its child struct, unused otherwise */
    inst->child.grace = (struct engine_timer){.fire = grace_fire, .arg = inst};
    engine_timer_arm(P.owner->engine, &inst->child.grace,
                     time_mono_ns() + (int64_t)grace_ms * 1000000);
}

static void process_describe(const struct runtime_instance *inst, struct store_instance *row)
{
    row->pid = inst->pid;
    row->start_ticks = inst->start_ticks;
    snprintf(row->group, sizeof(row->group), "%s", inst->group);
}

struct runtime_driver *runtime_process(struct engine_owner *o, const char *launcher)
{
    P.owner = o;
    P.launcher = launcher;
    P.driver = (struct runtime_driver){
        .name = "process",
        .start = process_start,
        .stop = process_stop,
        .kill = process_kill,
        .adopt = process_adopt,
        .describe = process_describe,
    };
    return &P.driver;
}
