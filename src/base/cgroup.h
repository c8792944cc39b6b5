/* cgroup — cgroup v2 groups for the process trees the server starts.
 *
 * A process started inside a group (proc_spawn_into) stays in it with everything it forks, even
 * what leaves its process group or session (a daemon), so the whole tree is killed at once with
 * the group's cgroup.kill. Only cgroup v2 is used, and no controller: no limits are set here.
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

#endif
