/* proc — process spawning, waiting and killing; see proc.h. */
#include "base/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "base/banned.h"

/* The children started here and not yet waited for: proc_reap_orphans() leaves them to their
 * owner. A child is added under the lock before anyone can see it exit. */
static struct {
    pthread_mutex_t lock;
    pid_t *pid;
    size_t nr, alloc;
} kids = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool kid_known(pid_t pid)
{
    for (size_t i = 0; i < kids.nr; i++)
        if (kids.pid[i] == pid)
            return true;
    return false;
}

static void kid_forget(pid_t pid)
{
    pthread_mutex_lock(&kids.lock);
    for (size_t i = 0; i < kids.nr; i++) {
        if (kids.pid[i] == pid) {
            kids.pid[i] = kids.pid[--kids.nr];
            break;
        }
    }
    pthread_mutex_unlock(&kids.lock);
}

int proc_spawn(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd,
               int err_fd, pid_t *pid)
{
    return proc_spawn_at(NULL, path, argv, envp, in_fd, out_fd, err_fd, pid);
}

int proc_pidfd(pid_t pid)
{
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}

int proc_spawn_at(const char *cwd, const char *path, char *const argv[], char *const envp[],
                  int in_fd, int out_fd, int err_fd, pid_t *pid)
{
    return proc_spawn_into(-1, cwd, path, argv, envp, in_fd, out_fd, err_fd, pid, NULL);
}

/* proc_set_child_nofile: written once before any child, then only read. */
static rlim_t child_nofile;

void proc_set_child_nofile(unsigned long soft)
{
    child_nofile = soft;
}

/* What the child of proc_spawn_opts needs; it shares the parent's memory until its execve. */
struct spawn_req {
    const struct proc_opts *o;
    const char *path;
    char *const *argv, *const *envp;
    int fds[3];
    int err;      /* set by the child when it fails before or at execve */
    pid_t parent; /* this process, which the child checks once its death signal is armed */
};

/* The child's steps for a user's code, after its cgroups: a private mount namespace with the
 * bind, the working directory (reached as root), the unprivileged identity, the file size limit.
 * Raw syscalls for the ids: glibc's setuid() would try to signal the parent's threads, whose
 * memory this child shares. 0 or errno. */
__attribute__((no_sanitize("address"))) static int child_confine(const struct proc_opts *o)
{
    if (o->mount_ns > 0 && setns(o->mount_ns, CLONE_NEWNS) < 0)
        return errno;
    if (o->bind_src) {
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount(o->bind_src, o->bind_dst, NULL, MS_BIND, NULL) < 0)
            return errno;
    }
    if (o->cwd && chdir(o->cwd) < 0)
        return errno;
    if (o->set_ids) {
        if (syscall(SYS_setgroups, 0, NULL) < 0 ||
            syscall(SYS_setresgid, o->gid, o->gid, o->gid) < 0 ||
            syscall(SYS_setresuid, o->uid, o->uid, o->uid) < 0)
            return errno;
    }
    if ((o->no_new_privs || o->set_ids) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return errno;
    if (o->max_file_size) {
        struct rlimit lim = {o->max_file_size, o->max_file_size};
        if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
            return errno;
    }
    struct rlimit nofile; /* the usual descriptor limit, not the server's raised one */
    if (child_nofile && getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur > child_nofile) {
        nofile.rlim_cur = child_nofile;
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
            return errno;
    }
    return 0;
}

/* The child of proc_spawn_into, between clone and execve: it runs on its own stack in the
 * parent's memory (CLONE_VM, the parent waits: CLONE_VFORK), as posix_spawn's child does, so
 * only async-signal-safe calls and no writes but req->err. It joins its cgroup first, so nothing
 * it starts is ever outside (posix_spawn cannot do that before glibc 2.39). Not instrumented by
 * ASan: its frames never return. */
__attribute__((no_sanitize("address"))) static int spawn_child(void *arg)
{
    struct spawn_req *req = arg;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL); /* fails harmlessly for SIGKILL, SIGSTOP and RT internals */
    sigset_t none;
    sigemptyset(&none);
    int err = 0;
    const struct proc_opts *o = req->o;
    for (unsigned i = 0; i < o->nr_cgroups && !err; i++) {
        int procs = openat(o->cgroup_fd[i], "cgroup.procs", O_WRONLY | O_CLOEXEC);
        if (procs < 0 || write(procs, "0", 1) != 1)
            err = errno;
        if (procs >= 0)
            close(procs);
    }
    if (!err && setpgid(0, 0) < 0)
        err = errno;
    if (!err && o->death_sig && prctl(PR_SET_PDEATHSIG, o->death_sig) < 0)
        err = errno;
    if (o->death_sig && getppid() != req->parent)
        _exit(127); /* the parent died before the signal was armed: nobody waits for this */
    for (int i = 0; i < 3 && !err; i++) {
        int fd = req->fds[i] >= 0 ? req->fds[i] : open("/dev/null", i ? O_WRONLY : O_RDONLY);
        if (fd < 0 || (fd == i ? fcntl(fd, F_SETFD, 0) : dup2(fd, i)) < 0)
            err = errno;
    }
    if (!err)
        err = child_confine(o); /* it may use descriptors above 2 (the mount namespace's) */
    /* after the confinement, which may use descriptor 3 (the mount namespace's) */
    if (!err && o->fd3 > 0 && (o->fd3 == 3 ? fcntl(3, F_SETFD, 0) : dup2(o->fd3, 3)) < 0)
        err = errno;
    /* Nothing but 0-2 (and 3 when asked) goes on: not a descriptor the server inherited without
     * close-on-exec (a step could read or openat() through it), nor the /dev/null opened above. */
    int first = o->fd3 > 0 ? 4 : 3;
    if (!err && syscall(SYS_close_range, first, ~0U, 0) < 0) {
        struct rlimit lim;
        if (errno != ENOSYS || getrlimit(RLIMIT_NOFILE, &lim) < 0)
            err = errno;
        /* the hard limit: the soft one may have been lowered below open descriptors */
        for (rlim_t fd = (rlim_t)first; !err && fd < lim.rlim_max && fd < (1u << 20); fd++)
            close((int)fd);
    }
    if (!err) {
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(req->path, req->argv, req->envp);
        err = errno;
    }
    req->err = err;
    _exit(127);
}

/* What the child of proc_mount_ns_new does, in its new mount namespace: the propagation, the
 * bind, and a descriptor of the namespace in the file table it shares with the parent. */
struct ns_req {
    const char *src, *dst;
    int fd, err;
};

__attribute__((no_sanitize("address"))) static int ns_child(void *arg)
{
    struct ns_req *req = arg;
    int fd = -1;
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0 ||
        mount(req->src, req->dst, NULL, MS_BIND, NULL) < 0 ||
        (fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC)) < 0 ||
        (req->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
        req->err = errno;
    if (fd >= 0)
        close(fd);
    _exit(0);
}

int proc_mount_ns_new(const char *src, const char *dst, int *ns_fd)
{
    enum { STACK = 64 * 1024 };
    struct ns_req req = {src, dst, -1, 0};
    char *stack = mmap(NULL, STACK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED)
        return -errno;
    /* the kids lock keeps proc_reap_orphans() off this child; signals stay blocked in it */
    sigset_t all, old;
    sigfillset(&all);
    pthread_mutex_lock(&kids.lock);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int child = clone(ns_child, stack + STACK,
                      CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_NEWNS | SIGCHLD, &req);
    int r = child >= 0 ? 0 : -errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!r)
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            ;
    pthread_mutex_unlock(&kids.lock);
    munmap(stack, STACK);
    if (!r && req.err) {
        if (req.fd >= 0)
            close(req.fd);
        r = -req.err;
    }
    if (!r)
        *ns_fd = req.fd;
    return r;
}

int proc_spawn_into(int cgroup_fd, const char *cwd, const char *path, char *const argv[],
                    char *const envp[], int in_fd, int out_fd, int err_fd, pid_t *pid, int *pidfd)
{
    return proc_spawn_tied(0, cgroup_fd, cwd, path, argv, envp, in_fd, out_fd, err_fd, pid, pidfd);
}

int proc_spawn_tied(int death_sig, int cgroup_fd, const char *cwd, const char *path,
                    char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd,
                    pid_t *pid, int *pidfd)
{
    struct proc_opts o = PROC_OPTS_INIT;
    o.cwd = cwd;
    o.death_sig = death_sig;
    if (cgroup_fd >= 0)
        o.cgroup_fd[o.nr_cgroups++] = cgroup_fd;
    return proc_spawn_opts(&o, path, argv, envp, in_fd, out_fd, err_fd, pid, pidfd);
}

int proc_spawn_opts(const struct proc_opts *opts, const char *path, char *const argv[],
                    char *const envp[], int in_fd, int out_fd, int err_fd, pid_t *pid, int *pidfd)
{
    enum { STACK = 256 * 1024 };
    static const struct proc_opts none = PROC_OPTS_INIT;
    if (opts && opts->nr_cgroups > PROC_MAX_CGROUPS)
        return -EINVAL;
    struct spawn_req req = {opts ? opts : &none,     path, argv,    envp,
                            {in_fd, out_fd, err_fd}, 0,    getpid()};
    char *stack = mmap(NULL, STACK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED)
        return -errno;
    pthread_mutex_lock(&kids.lock);
    if (kids.nr == kids.alloc) {
        size_t n = kids.alloc ? 2 * kids.alloc : 16;
        pid_t *grown = realloc(kids.pid, n * sizeof(*grown));
        if (!grown) {
            pthread_mutex_unlock(&kids.lock);
            munmap(stack, STACK);
            return -ENOMEM;
        }
        kids.pid = grown;
        kids.alloc = n;
    }
    /* signals stay blocked until the child has reset their handlers (it shares ours) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int child_pidfd = -1;
    int child =
        clone(spawn_child, stack + STACK,
              CLONE_VM | CLONE_VFORK | (pidfd ? CLONE_PIDFD : 0) | SIGCHLD, &req, &child_pidfd);
    int r = child >= 0 ? 0 : -errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!r)
        kids.pid[kids.nr++] = child;
    pthread_mutex_unlock(&kids.lock);
    munmap(stack, STACK);
    if (!r && req.err) { /* it failed before or at execve, and is gone */
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            ;
        kid_forget(child);
        if (pidfd)
            close(child_pidfd);
        r = -req.err;
    } else if (!r) {
        *pid = child;
        if (pidfd)
            *pidfd = child_pidfd;
    }
    return r;
}

int proc_wait(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            int err = errno;
            kid_forget(pid);
            return -err;
        }
    }
    kid_forget(pid);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

int proc_kill_wait(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    return proc_wait(pid);
}

/* Calls fn with each child of each thread of this process (/proc/self/task/<tid>/children: an
 * orphan goes to one of them). */
static void each_child(void (*fn)(pid_t))
{
    DIR *tasks = opendir("/proc/self/task");
    struct dirent *t;
    while (tasks && (t = readdir(tasks))) {
        if (t->d_name[0] == '.')
            continue;
        char path[64], buf[4096];
        snprintf(path, sizeof(path), "/proc/self/task/%.20s/children", t->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        for (char *p = buf, *end;; p = end) {
            long pid = strtol(p, &end, 10);
            if (end == p)
                break;
            if (pid > 0)
                fn((pid_t)pid);
        }
    }
    if (tasks)
        closedir(tasks);
}

static int nr_reaped;

static void reap_if_orphan(pid_t pid)
{
    pthread_mutex_lock(&kids.lock);
    if (!kid_known(pid) && waitpid(pid, NULL, WNOHANG) == pid)
        nr_reaped++;
    pthread_mutex_unlock(&kids.lock);
}

int proc_reap_orphans(void)
{
    nr_reaped = 0;
    each_child(reap_if_orphan);
    return nr_reaped;
}

char *proc_find_program(const char *name, const char *path_list)
{
    if (strchr(name, '/'))
        return access(name, X_OK) == 0 ? strdup(name) : NULL;
    const char *p = path_list ? path_list : "/usr/bin:/bin";
    while (*p) {
        const char *end = strchrnul(p, ':');
        char *cand = NULL;
        if (asprintf(&cand, "%.*s/%s", (int)(end - p), p, name) < 0)
            return NULL;
        if (access(cand, X_OK) == 0)
            return cand;
        free(cand);
        p = *end ? end + 1 : end;
    }
    return NULL;
}

int proc_kill_matching(const char *file, proc_match_fn match, void *arg, int timeout_ms)
{
    enum { DATA_MAX = 64 * 1024 };
    struct pollfd dying[64];
    nfds_t nr_dying = 0;
    int killed = 0;
    DIR *proc = opendir("/proc");
    char *data = malloc(DATA_MAX + 1);
    struct dirent *de;
    while (data && proc && (de = readdir(proc))) {
        int64_t pid;
        if (parse_i64(de->d_name, 2, INT32_MAX, &pid) || pid == getpid())
            continue;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%lld/%s", (long long)pid, file);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, data, DATA_MAX);
        close(fd);
        if (n <= 0)
            continue;
        data[n] = '\0';
        if (!match((pid_t)pid, data, (size_t)n, arg))
            continue;
        int pidfd = proc_pidfd((pid_t)pid);
        if (kill((pid_t)pid, SIGKILL) == 0)
            killed++;
        if (pidfd >= 0 && nr_dying < sizeof(dying) / sizeof(dying[0]))
            dying[nr_dying++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
        else if (pidfd >= 0)
            close(pidfd);
    }
    if (proc)
        closedir(proc);
    free(data);
    int64_t deadline = time_mono_ns() + (int64_t)timeout_ms * 1000000;
    for (nfds_t i = 0; i < nr_dying; i++) {
        int64_t left = (deadline - time_mono_ns()) / 1000000;
        poll(&dying[i], 1, left > 0 ? (int)left : 0); /* readable once it has exited */
        close(dying[i].fd);
    }
    return killed;
}
