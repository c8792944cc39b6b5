/* cgroup — cgroup v2 groups for the process trees the server starts, and their limits.
 *
 * A process started inside a group (proc_spawn_into) stays in it with everything it forks, even
 * what leaves its process group or session (a daemon), so the whole tree is killed at once with
 * the group's cgroup.kill. Groups and killing use cgroup v2 only.
 *
 * Limits (pids, memory) use the controllers where the host has them: in the v2 groups themselves
 * when cgroup v2 has the controller, else (a hybrid host, where it is bound to a v1 hierarchy) in
 * a group of the same name in that v1 hierarchy, which the process joins too (proc_opts holds up
 * to four groups). A host with neither just has no such limit: cgroup_limiter_open() says so.
 *
 * The server's groups live under one parent group beneath the server's own cgroup, named after
 * the data directory, so that a restarted server finds (and kills) what a crashed one left.
 * Hosts without a writable cgroup v2 hierarchy (no cgroup2 mount, not root, a kernel before
 * 5.7) make cgroup_parent_open() fail with a reason: callers go on without groups and say so.
 */
#ifndef SLIPWAY_BASE_CGROUP_H
#define SLIPWAY_BASE_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Opens, creating it, the group `name` beneath this process's own cgroup v2 group; child groups
 * a previous run left in it are killed, waited for (bounded) and removed, except sub-trees (see
 * cgroup_subtree_open). 0 and *fd (a directory descriptor), or -errno with the reason in why. */
int cgroup_parent_open(const char *name, int *fd, char *why, size_t why_len);
/* Closes the parent group, and removes it when empty (at a clean stop). */
void cgroup_parent_close(int fd);
/* Opens, creating both, the sub-tree `name/sub` beneath this process's own group: a second parent
 * beside the groups cgroup_parent_open(name) gives, owned by another part of the server.
 * cgroup_parent_open's sweep leaves sub-trees alone, and this one's sweeps only its own child
 * groups. `sub` must be one of CGROUP_SUBTREES. 0 and *fd, or -errno and why. */
int cgroup_subtree_open(const char *name, const char *sub, int *fd, char *why, size_t why_len);
/* As cgroup_subtree_open, but what the sub-tree holds is kept: for processes that outlive the
 * server (app instances), which a restarted server adopts instead of killing. */
int cgroup_subtree_keep(const char *name, const char *sub, int *fd, char *why, size_t why_len);
/* Closes the sub-tree; removes it when empty, then its parent `name` when that is empty too. */
void cgroup_subtree_close(int fd);
/* The sub-trees of the server's parent group: "git" (git requests, api/git.c), "apps" (reserved
 * for app instances). The builds' groups are beside them; none may take these names. */
#define CGROUP_SUBTREES                                                                            \
    {                                                                                              \
        "git", "apps"                                                                              \
    }
/* Whether `name` is one of CGROUP_SUBTREES. */
bool cgroup_is_subtree(const char *name);
/* The name of the server's parent group for the data directory: slipway-<16 hex digits of the
 * SHA-256 of its real path> (one server per data directory). out holds at least 32 bytes. */
void cgroup_tree_name(const char *data_dir, char *out, size_t size);
/* Creates the child group `name` (a fresh one: a leftover of that name is killed and removed
 * first) and opens it: *fd is what proc_spawn_into() takes. 0, or -errno. */
int cgroup_create(int parent_fd, const char *name, int *fd);
/* Kills every process in the group: cgroup.kill, or on kernels without it (before 5.14)
 * SIGKILL to each process cgroup.procs lists. 0, or -errno. */
int cgroup_kill(int fd);
/* Whether processes are still in the group (1), none (0), or -errno. */
int cgroup_populated(int fd);
/* Kills the group's processes, waits at most timeout_ms for them to be gone, removes the group
 * and closes fd. 0, or -errno (-EBUSY: processes still in it at the timeout; it stays). */
int cgroup_destroy(int parent_fd, const char *name, int fd, int timeout_ms);

/* ---- limits --------------------------------------------------------------------------------- */

enum cgroup_controller { CGROUP_PIDS, CGROUP_MEMORY, CGROUP_NR_CONTROLLERS };

/* Where each controller limits the groups under one parent group. */
struct cgroup_limiter {
    int v2_fd;                        /* the v2 parent (borrowed from the caller), or -1 */
    bool v2[CGROUP_NR_CONTROLLERS];   /* the controller is enabled for the v2 parent's groups */
    int v1_fd[CGROUP_NR_CONTROLLERS]; /* else the parent of the same name in the controller's v1
                                         hierarchy, or -1: no such limit on this host */
};

/* 0: no limit. */
struct cgroup_limits {
    int64_t pids;         /* tasks (processes and threads) at once: pids.max */
    int64_t memory_bytes; /* memory.max (v2, and memory.swap.max 0) or memory.limit_in_bytes
                           * (v1, and memory.memsw.limit_in_bytes when swap is accounted) */
};

/* Finds, for the groups beneath the parent `name` (v2_fd as cgroup_parent_open gave it, or -1),
 * where each controller is: enabled in the v2 parent's subtree when this process's v2 group can
 * have it (a v2 group holding processes cannot pass controllers on, so when the server is alone
 * in its group it first moves itself into a leaf group `<name>.server` beside the parent); else
 * the group `name` beneath this process's group in the controller's v1 hierarchy (made, and the
 * groups a previous run left in it removed). Always fills *l; returns the controllers found as
 * bits (1 << CGROUP_PIDS ...), and in why ("" when all were found) what is missing and why. */
unsigned cgroup_limiter_open(const char *name, int v2_fd, struct cgroup_limiter *l, char *why,
                             size_t why_len);
/* As cgroup_limiter_open, but the v1 groups a previous run left are kept (cgroup_subtree_keep). */
unsigned cgroup_limiter_keep(const char *name, int v2_fd, struct cgroup_limiter *l, char *why,
                             size_t why_len);
/* Closes the v1 parents (removing them when empty). The v2 parent stays the caller's. */
void cgroup_limiter_close(struct cgroup_limiter *l);
/* Makes the groups `name` a v2 group of that name needs in v1 hierarchies (a leftover of that
 * name is removed first): fds[c] is a directory descriptor for proc_opts.cgroup_fd, or -1 where
 * the controller is in v2 or missing. 0, or -errno (then every fds[c] is -1). */
int cgroup_limits_create(const struct cgroup_limiter *l, const char *name,
                         int fds[CGROUP_NR_CONTROLLERS]);
/* Sets the limits of one group: v2_fd (its v2 group, or -1) and fds (its v1 groups). May be
 * called again while processes run in it. 0, or -errno of the first write that failed. */
int cgroup_limits_set(const struct cgroup_limiter *l, int v2_fd,
                      const int fds[CGROUP_NR_CONTROLLERS], const struct cgroup_limits *lim);
/* The group's counters of limits reached, cumulative over its life: a v1 group used again for
 * another process tree (cgroup_limits_empty) keeps them, so its user takes them first. */
struct cgroup_limits_count {
    int64_t pids_max; /* forks refused at pids.max */
    int64_t oom_kill; /* processes the OOM killer took within the group */
};
/* Reads the counters of one group (v2_fd and fds as for cgroup_limits_set); 0 where unknown. */
void cgroup_limits_count(const struct cgroup_limiter *l, int v2_fd,
                         const int fds[CGROUP_NR_CONTROLLERS], struct cgroup_limits_count *c);
/* Which limits the group ran into since `since` (NULL: since it was made): bit CGROUP_PIDS when
 * a fork was refused at pids.max, bit CGROUP_MEMORY when a process was killed for memory (the
 * OOM killer, within the group). */
unsigned cgroup_limits_hit(const struct cgroup_limiter *l, int v2_fd,
                           const int fds[CGROUP_NR_CONTROLLERS],
                           const struct cgroup_limits_count *since);
/* Whether no process is left in any of the v1 groups fds (1), some is (0), or -errno: groups
 * that are empty may be joined by another process tree instead of being removed and made again
 * (set its limits and take its counters first). */
int cgroup_limits_empty(const int fds[CGROUP_NR_CONTROLLERS]);
/* Removes the v1 groups beneath the limiter's parents that no process is in (an earlier run's,
 * kept by cgroup_limiter_keep, whose processes ended while no server ran): how many. */
int cgroup_limits_sweep_empty(const struct cgroup_limiter *l);
/* The v1 groups beneath the limiter's parents that hold the process pid (an earlier run's, for a
 * process adopted): 0 with their name and fds (-1 where it is in none), -ENOENT when in none, or
 * -errno. */
int cgroup_limits_find(const struct cgroup_limiter *l, pid_t pid, char *name, size_t cap,
                       int fds[CGROUP_NR_CONTROLLERS]);
/* Removes the v1 groups `name` once their processes are gone (killed through the v2 group, or
 * here with SIGKILL; waits at most timeout_ms) and closes fds (set to -1). 0, or -errno
 * (-EBUSY: processes still in one at the timeout; it stays). */
int cgroup_limits_destroy(const struct cgroup_limiter *l, const char *name,
                          int fds[CGROUP_NR_CONTROLLERS], int timeout_ms);

#endif
