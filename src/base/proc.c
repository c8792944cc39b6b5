/* proc — process spawning, waiting and killing; see proc.h. */
#include "base/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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
