/* proc — the only code that starts processes. The child is cloned with CLONE_VM|CLONE_VFORK as
 * posix_spawn does (no fork of the threaded server), may join cgroups before its execve, and
 * gets a new process group, an environment the caller builds explicitly (never the server's own),
 * stdio redirected to the given descriptors. A failed exec is reported as an error by
 * proc_spawn itself, distinct from a child that ran and exited non-zero.
 *
 * For a user's code (base/sandbox.h builds these options) the child can also, in this order and
 * before its execve: join its cgroups, join a mount namespace made before (proc_mount_ns_new) or
 * get a private one with one directory bound where an unprivileged user can reach it, become an
 * ordinary user (no supplementary groups, no capabilities, no_new_privs) and have its file size
 * limited.
 */
#ifndef SLIPWAY_BASE_PROC_H
#define SLIPWAY_BASE_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define PROC_MAX_CGROUPS 4

/* What proc_spawn_opts() does in the child besides argv, envp and stdio. A zeroed struct (with
 * PROC_OPTS_INIT) changes nothing. Every pointer is borrowed for the call only. */
struct proc_opts {
    const char *cwd;                 /* working directory (NULL: unchanged) */
    int cgroup_fd[PROC_MAX_CGROUPS]; /* groups (v2, or v1 of other hierarchies) to join first */
    unsigned nr_cgroups;             /* failing to join one is the spawn's error */
    int mount_ns;                    /* > 0: join this mount namespace (root only; an fd from
                                        proc_mount_ns_new), before the working directory */
    const char *bind_src, *bind_dst; /* not NULL: in a new private mount namespace (root only),
                                        bind_src is mounted on bind_dst (an existing dir) */
    bool set_ids;                    /* become uid/gid, with no supplementary groups: a uid */
    uid_t uid;                       /*   other than 0 leaves no capability */
    gid_t gid;
    bool no_new_privs;      /* PR_SET_NO_NEW_PRIVS: setuid files give nothing */
    uint64_t max_file_size; /* RLIMIT_FSIZE, soft and hard (0: unchanged) */
    int death_sig; /* PR_SET_PDEATHSIG (0: none): sent when the spawning thread exits; a child
                      whose parent died before it was armed exits at once */
    int fd3;       /* > 0: becomes the child's descriptor 3 (a second pipe beside stdio); the
                      caller's to close */
};
#define PROC_OPTS_INIT                                                                             \
    {                                                                                              \
        0                                                                                          \
    }

/* Starts `path` with argv and envp; stdin/stdout/stderr of the child are the given descriptors
 * (-1: /dev/null). 0 and *pid, or -errno (e.g. -ENOENT when path cannot be executed). */
int proc_spawn(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd,
               int err_fd, pid_t *pid);
/* As proc_spawn, with the child's working directory set to cwd (NULL: unchanged). */
int proc_spawn_at(const char *cwd, const char *path, char *const argv[], char *const envp[],
                  int in_fd, int out_fd, int err_fd, pid_t *pid);
/* As proc_spawn_at, with the child inside the cgroup v2 group open as cgroup_fd (-1: none; it
 * joins the group before its execve, so nothing it starts is ever outside; failing to is the
 * spawn's error), and, when pidfd is not NULL, *pidfd set to a pidfd for it (Linux 5.2). */
int proc_spawn_into(int cgroup_fd, const char *cwd, const char *path, char *const argv[],
                    char *const envp[], int in_fd, int out_fd, int err_fd, pid_t *pid, int *pidfd);
/* The general form: as proc_spawn with what `opts` asks for (NULL: nothing more); *pidfd as in
 * proc_spawn_into. 0, or -errno of the first step that failed in the child (it then never ran). */
int proc_spawn_opts(const struct proc_opts *opts, const char *path, char *const argv[],
                    char *const envp[], int in_fd, int out_fd, int err_fd, pid_t *pid, int *pidfd);
/* As proc_spawn_into, and the child gets death_sig (proc_opts.death_sig) when the thread that
 * called this exits, the whole process's death included (PR_SET_PDEATHSIG; a child whose parent
 * died before it was armed exits at once). Not inherited by what the child starts: a child must
 * pass the signal on to its own (git does, for the commands it runs with clean_on_exit). The
 * calling thread must outlive the child's useful life: a pool thread, not a short-lived one. */
int proc_spawn_tied(int death_sig, int cgroup_fd, const char *cwd, const char *path,
                    char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd,
                    pid_t *pid, int *pidfd);
/* Makes a mount namespace (root only): a copy of this process's, where what the host mounts later
 * is seen too (slave propagation, nothing goes back), and src is bound on dst (an existing dir).
 * For proc_opts.mount_ns: children join it (setns) instead of making a namespace each, which
 * costs a copy of the mount table at the start and its teardown at the end. 0 and *ns_fd
 * (CLOEXEC, above 2; the namespace lives as long as it is open), or -errno. */
int proc_mount_ns_new(const char *src, const char *dst, int *ns_fd);
/* A pidfd for the child (readable once it has exited), or -errno. */
int proc_pidfd(pid_t pid);
/* Waits for the child; returns its exit status (0-255), 128+signal if killed, or -errno. */
int proc_wait(pid_t pid);
/* Sends SIGKILL to the child's process group, then waits for the child. Returns as proc_wait. */
int proc_kill_wait(pid_t pid);
/* Reaps the children this process did not start with proc_spawn*: processes re-parented to it
 * because it is pid 1 (a container without an init) and their parent died. Only one thread
 * calls it (the server's main thread, on SIGCHLD). The number reaped. */
int proc_reap_orphans(void);

/* Tells whether process pid, whose /proc/<pid>/<file> holds data (len bytes, NUL-terminated;
 * cmdline and environ are NUL-separated strings), is one to kill. */
typedef bool (*proc_match_fn)(pid_t pid, const char *data, size_t len, void *arg);
/* Sends SIGKILL to every other process whose /proc/<pid>/<file> (its first 64 kB) `match`
 * picks, and waits at most timeout_ms for them to be gone (through pidfds): what a crashed
 * server left, on hosts without cgroups for it. The number of processes killed. */
int proc_kill_matching(const char *file, proc_match_fn match, void *arg, int timeout_ms);
/* The soft RLIMIT_NOFILE that children get (set before their execve), for a server that raised
 * its own: programs that use select() or loop over every descriptor expect the usual limit.
 * 0 (the default): children inherit the server's. Call before any child is started. */
void proc_set_child_nofile(unsigned long soft);
/* Finds an executable by name in the colon-separated `path_list`; caller frees. NULL if none. */
char *proc_find_program(const char *name, const char *path_list);

#endif
