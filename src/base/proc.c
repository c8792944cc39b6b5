/* proc — process spawning, waiting and killing; see proc.h. */
#include "base/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int r = posix_spawn_file_actions_init(&fa);
    if (r)
        return -r;
    if ((r = posix_spawnattr_init(&attr))) {
        posix_spawn_file_actions_destroy(&fa);
        return -r;
    }
    const int fds[3] = {in_fd, out_fd, err_fd};
    for (int i = 0; i < 3 && !r; i++) {
        if (fds[i] < 0)
            r = posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i ? O_WRONLY : O_RDONLY, 0);
        else
            r = posix_spawn_file_actions_adddup2(&fa, fds[i], i);
    }
    if (!r && cwd)
        r = posix_spawn_file_actions_addchdir_np(&fa, cwd);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (!r)
        r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                POSIX_SPAWN_SETSIGDEF);
    if (!r)
        r = posix_spawnattr_setpgroup(&attr, 0);
    if (!r)
        r = posix_spawnattr_setsigmask(&attr, &none);
    if (!r)
        r = posix_spawnattr_setsigdefault(&attr, &all);
    if (!r)
        r = posix_spawn(pid, path, &fa, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return -r;
}

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* struct clone_args of the clone3 ABI (linux/sched.h, which clashes with glibc's sched.h). */
struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

/* The child of proc_spawn_into, between clone3 and execve: a copy of a threaded process, so only
 * async-signal-safe calls. An exec failure is sent back as errno on report_fd. */
static _Noreturn void spawn_child(const char *cwd, const char *path, char *const argv[],
                                  char *const envp[], const int fds[3], int report_fd)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL); /* fails harmlessly for SIGKILL, SIGSTOP and RT internals */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int err = 0;
    if (setpgid(0, 0) < 0)
        err = errno;
    for (int i = 0; i < 3 && !err; i++) {
        int fd = fds[i] >= 0 ? fds[i] : open("/dev/null", i ? O_WRONLY : O_RDONLY);
        if (fd < 0 || (fd == i ? fcntl(fd, F_SETFD, 0) : dup2(fd, i)) < 0)
            err = errno;
    }
    if (!err && cwd && chdir(cwd) < 0)
        err = errno;
    if (!err) {
        execve(path, argv, envp);
        err = errno;
    }
    ssize_t w = write(report_fd, &err, sizeof(err));
    (void)w;
    _exit(127);
}

int proc_spawn_into(int cgroup_fd, const char *cwd, const char *path, char *const argv[],
                    char *const envp[], int in_fd, int out_fd, int err_fd, pid_t *pid, int *pidfd)
{
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0)
        return -errno;
    int child_pidfd = -1;
    struct clone3_args args = {
        .flags = CLONE_PIDFD | CLONE_INTO_CGROUP,
        .pidfd = (uint64_t)(uintptr_t)&child_pidfd,
        .exit_signal = SIGCHLD,
        .cgroup = (uint64_t)cgroup_fd,
    };
    const int fds[3] = {in_fd, out_fd, err_fd};
    long child = syscall(SYS_clone3, &args, sizeof(args));
    if (child == 0)
        spawn_child(cwd, path, argv, envp, fds, report[1]);
    int r = child >= 0                                                     ? 0
            : errno == ENOSYS || errno == E2BIG || errno == EOPNOTSUPP ? -ENOSYS
                                                                      : -errno;
    close(report[1]);
    if (!r) {
        int err = 0;
        ssize_t n;
        while ((n = read(report[0], &err, sizeof(err))) < 0 && errno == EINTR)
            ;
        if (n == (ssize_t)sizeof(err)) { /* the exec failed: the child is gone */
            while (waitpid((pid_t)child, NULL, 0) < 0 && errno == EINTR)
                ;
            close(child_pidfd);
            r = -err;
        } else {
            *pid = (pid_t)child;
            *pidfd = child_pidfd;
        }
    }
    close(report[0]);
    return r;
}

int proc_wait(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
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
