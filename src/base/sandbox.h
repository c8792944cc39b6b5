/* sandbox — how Slipway runs a user's code (build steps now; app instances, tests and scheduled
 * events next): under bubblewrap, as an ordinary unprivileged host user with no capabilities.
 *
 * bwrap gets its own mount, pid, ipc, uts, cgroup and user namespaces (network too unless asked
 * for), --cap-drop ALL, and --disable-userns (the code cannot make user namespaces, so neither
 * `unshare -r` nor a nested sandbox gives it capabilities). Who the code is on the host:
 *  - a server running as root spawns bwrap as the sandbox user (sandbox_user_init: by default the
 *    system user slipway-build, made with useradd when missing), with no supplementary groups and
 *    no_new_privs; bwrap then uses an unprivileged user namespace, so the code is that user on the
 *    host, never root. That user cannot reach into the data directory (0700, root), so the child
 *    first gets a private mount namespace in which the sandbox's host directory is bound at
 *    `mount` (/mnt, or /tmp where there is no /mnt), and bwrap binds from there; or, after
 *    sandbox_user_share(), joins one namespace made once where the sandboxes' parent directory
 *    is bound there;
 *  - a server running as another user keeps its uid (bwrap makes the user namespace).
 * The writable directories must belong to the sandbox user: sandbox_chown().
 *
 * It sets no cgroup and no limit: the caller adds those to the proc_opts it gets.
 */
#ifndef SLIPWAY_BASE_SANDBOX_H
#define SLIPWAY_BASE_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/proc.h"

#define SANDBOX_DEFAULT_USER "slipway-build"

/* Who runs user code on this host. */
struct sandbox_user {
    bool drop;         /* the server is root: children become uid/gid */
    uid_t uid;         /* never 0 when drop */
    gid_t gid;         /* never 0 when drop */
    char name[64];     /* the user's name, for messages ("" when !drop) */
    const char *mount; /* where a root server's child binds the sandbox's host directory */
    int mount_ns;      /* > 0: sandbox_user_share()'s namespace */
    char *shared;      /* the directory bound at `mount` in it (owned), or NULL */
};

/* Resolves the sandbox user: when this process is root, the user `name` (never one with uid or
 * gid 0), made with `useradd --system` when it does not exist and `create` is true; otherwise
 * this process's own ids (drop false, name ignored). 0, or -errno with the reason in why. */
int sandbox_user_init(const char *name, bool create, struct sandbox_user *u, char *why,
                      size_t why_len);
/* For a root server: one mount namespace in which `dir` (the parent of the sandboxes' host
 * directories, traversable but not readable by the user) is bound at u->mount, joined by the child
 * that starts bubblewrap for a spec->dir directly beneath it, instead of a namespace per sandbox
 * with that one directory bound. Nothing but that child and bubblewrap's outer process run there
 * (the code in the sandbox is in bubblewrap's namespaces, with its pivoted root); code run
 * without bubblewrap (sandbox_host_opts) still gets a namespace of its own. Nothing to do when
 * !u->drop. 0, or -errno (then sandboxes go on with a namespace each). */
int sandbox_user_share(struct sandbox_user *u, const char *dir);
/* Frees what sandbox_user_init and sandbox_user_share hold. */
void sandbox_user_release(struct sandbox_user *u);
/* Gives the user the directory at path (and, with tree, everything below it, not following
 * symlinks). Nothing to do when !u->drop. 0 or -errno. */
int sandbox_chown(const struct sandbox_user *u, const char *path, bool tree);

/* A directory of the sandbox's host directory, bound inside. */
struct sandbox_bind {
    const char *name; /* below sandbox_spec.dir: "ws" */
    const char *dest; /* inside: "/workspace" */
    bool writable;    /* else read-only */
};

struct sandbox_spec {
    const char *dir; /* the host directory holding each bind's name (traversable by the user) */
    const struct sandbox_bind *binds;
    size_t nr_binds;
    const char *chdir; /* inside, or NULL */
    bool network;      /* share the host's network (and see its resolv.conf and hosts) */
    /* set up, then wait for a byte on this descriptor ("4"), which bubblewrap closes before
     * the command (NULL: no wait) */
    const char *block_fd;
    char *const *command; /* what runs inside: argv, NULL-terminated; it is pid 1 there */
    /* Run by an executor's agent (sandbox_executor_init), inside the executor's user and network
     * namespaces: the command line only (no identity: the agent is who it is), dir as the agent
     * sees it, fresh mount, pid and IPC namespaces, --cap-drop ALL (the agent is root of its
     * user namespace; bubblewrap, not setuid, then runs as that root and drops everything). */
    bool inner;
    /* With inner, the step's root is the executor's prepared one (dir/SANDBOX_PREPARED, see
     * sandbox_executor_init: binds are ignored here, the executor made them), with a fresh tmpfs
     * at /dev/shm and its own /proc; network must be false (no resolv.conf there). */
    const char *seccomp_fd; /* with inner: bubblewrap reads a seccomp program from it (NULL) */
};

#define SANDBOX_MAX_ARGS  112
#define SANDBOX_MAX_BINDS 8

/* A bwrap command line and the proc_opts that go with it. */
struct sandbox_cmd {
    char *argv[SANDBOX_MAX_ARGS]; /* NULL-terminated, for proc_spawn_opts(opts, bwrap, argv...) */
    struct proc_opts opts;        /* identity and bind set; the caller adds cgroups and limits */
    char *owned[3 * SANDBOX_MAX_BINDS + 32];
    size_t nr_owned;
};

/* Builds the command line of a sandbox as spec says, run by u. The argv names the host directory
 * of the first bind (a link /.slipway-host inside, which nothing reads), so that ps shows whose
 * sandbox it is and a restarted server finds those a crashed one left. 0, -EINVAL (too many
 * binds or arguments) or -ENOMEM; release with sandbox_cmd_release either way. */
int sandbox_cmd_init(struct sandbox_cmd *c, const struct sandbox_user *u,
                     const struct sandbox_spec *spec);
void sandbox_cmd_release(struct sandbox_cmd *c);

/* Beneath an executor's directory: an empty directory (made by the caller) over which the
 * executor mounts the steps' /etc and /dev. */
#define SANDBOX_PREPARED "sys"

/* What a sandbox binds of the host's /etc, by identity (device and inode; 0 when missing). */
#define SANDBOX_ETC_FILES 6
struct sandbox_etc_stamp {
    dev_t dev[SANDBOX_ETC_FILES];
    ino_t ino[SANDBOX_ETC_FILES];
};
/* Stats those files below root ("" or NULL: the host's own /etc; a test's directory else). */
void sandbox_etc_stamp(const char *root, struct sandbox_etc_stamp *s);
/* Whether two stamps name the same files. A bind holds an inode: a file replaced by a rename
 * (dpkg, ldconfig, useradd do so) is not seen through a bind made before, while a file changed
 * in place, or a directory's entries, are; so only the identity counts, not the times. */
bool sandbox_etc_same(const struct sandbox_etc_stamp *a, const struct sandbox_etc_stamp *b);

/* An executor: a long-lived sandbox holding a user namespace (whose root it is, with every
 * capability there and none on the host, where it is u's user), a network namespace with only
 * a loopback device, IPC and UTS namespaces; it sees the host's file system as that user does (in
 * sandbox_user_share()'s namespace for a root server), and runs `command`, which starts each
 * step with an inner sandbox (spec.inner) and so skips the user and network namespaces' set-up
 * per step. dir: the executor's host directory (for a root server directly beneath u->shared,
 * else -EINVAL); *seen (in c->owned) is where the executor sees it. The command line names
 * dir/ws (as a sandbox's names its first bind), so that a restarted server finds those a crashed
 * one left. It also prepares the steps' root once (spec.inner binds it whole): a tmpfs over
 * dir/SANDBOX_PREPARED (an empty directory the caller makes) holding /usr, the host's /etc files
 * of sandbox_etc_stamp (as they were when it started: the caller replaces an executor whose
 * stamp no longer matches the host's), the /bin, /sbin, /lib, /lib64 links, a dev as bubblewrap's
 * --dev makes it (null, zero, full, random, urandom, tty, a devpts of its own, the fd, stdin,
 * stdout, stderr, ptmx links), all read-only, a mount point for /proc, and binds (dir/name at
 * dest; they must exist), which stay as writable as they are for the executor's life.
 * 0, -EINVAL or -ENOMEM; release c either way. */
int sandbox_executor_init(struct sandbox_cmd *c, const struct sandbox_user *u, const char *dir,
                          const struct sandbox_bind *binds, size_t nr_binds, char *const *command,
                          const char **seen);

/* Writes to fd the seccomp program of a step run in an executor (bubblewrap's --seccomp): the
 * key management calls (add_key, keyctl, request_key) fail with ENOSYS, as on a kernel without
 * keys. Keyrings belong to a user namespace: without it, a key a step of one build adds to its
 * user keyring would be there for the next build in the same executor. 0, or -errno. */
int sandbox_seccomp_write(int fd);

/* For code run without bubblewrap (--unsafe-no-sandbox): the same identity, and for a root
 * server the private mount namespace with dir bound at u->mount. Returns the path at which the
 * child sees dir (u->mount, or dir itself). */
const char *sandbox_host_opts(const struct sandbox_user *u, const char *dir,
                              struct proc_opts *opts);

#endif
