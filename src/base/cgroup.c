/* cgroup — cgroup v2 groups for process trees; see cgroup.h. */
#include "base/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/crypto.h"
#include "base/util.h"

/* Reads a small file of the group into buf (NUL-terminated). Bytes read, or -errno. */
static ssize_t read_at(int dir_fd, const char *file, char *buf, size_t size)
{
    int fd = openat(dir_fd, file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, size - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return -err;
    buf[n] = '\0';
    return n;
}

static int write_at(int dir_fd, const char *file, const char *text)
{
    int fd = openat(dir_fd, file, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int err = errno;
    close(fd);
    return n < 0 ? -err : 0;
}

/* Where cgroup v2 is mounted (the hybrid layout has it at /sys/fs/cgroup/unified), from the
 * mount table; only a mount of the hierarchy's root is taken. */
static int find_mount(char *out, size_t size)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char line[4096];
    int r = -ENOENT;
    while (r && fgets(line, sizeof(line), f)) {
        /* id parent major:minor root mountpoint options... - fstype source super-options */
        char root[PATH_MAX], point[PATH_MAX], fstype[64];
        const char *sep = strstr(line, " - ");
        if (!sep || sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2 ||
            sscanf(sep + 3, "%63s", fstype) != 1)
            continue;
        if (strcmp(fstype, "cgroup2") == 0 && strcmp(root, "/") == 0 && strlen(point) < size &&
            !strchr(point, '\\')) { /* no escaped (odd) mount points */
            strcpy(out, point);
            r = 0;
        }
    }
    fclose(f);
    return r;
}

/* This process's own group in the v2 hierarchy: the "0::/path" line of /proc/self/cgroup. */
static int own_group(char *out, size_t size)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return -errno;
    char line[PATH_MAX + 16];
    int r = -ENOENT;
    while (r && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "0::/", 4) != 0)
            continue;
        line[strcspn(line, "\n")] = '\0';
        if (strlen(line + 3) < size && !strstr(line + 3, " (deleted)")) {
            strcpy(out, line + 3);
            r = 0;
        }
    }
    fclose(f);
    return r;
}

int cgroup_populated(int fd)
{
    char buf[256];
    ssize_t n = read_at(fd, "cgroup.events", buf, sizeof(buf));
    if (n < 0)
        return (int)n;
    const char *p = strstr(buf, "populated ");
    return p ? p[10] == '1' : -EINVAL;
}

int cgroup_kill(int fd)
{
    int r = write_at(fd, "cgroup.kill", "1");
    if (r != -ENOENT)
        return r;
    /* A kernel before 5.14: kill what cgroup.procs lists until it is empty (a process may fork
     * while it is read; the bounded rounds catch those). */
    for (int round = 0; round < 64; round++) {
        char buf[8192];
        ssize_t n = read_at(fd, "cgroup.procs", buf, sizeof(buf));
        if (n <= 0)
            return (int)n;
        for (char *line = buf, *end; *line; line = end) {
            end = line + strcspn(line, "\n");
            if (*end)
                *end++ = '\0';
            int64_t pid;
            if (parse_i64(line, 1, INT32_MAX, &pid) == 0)
                kill((pid_t)pid, SIGKILL);
        }
    }
    return 0;
}

/* Waits until the group has no process, at most timeout_ms: cgroup.events signals POLLPRI when
 * "populated" changes. 0, or -EBUSY at the timeout. */
static int wait_empty(int fd, int timeout_ms)
{
    int events = openat(fd, "cgroup.events", O_RDONLY | O_CLOEXEC);
    int64_t deadline = time_mono_ns() + (int64_t)timeout_ms * 1000000;
    int r;
    while ((r = cgroup_populated(fd)) == 1) {
        int64_t left = (deadline - time_mono_ns()) / 1000000;
        if (left <= 0) {
            r = -EBUSY;
            break;
        }
        if (events >= 0) {
            struct pollfd p = {.fd = events, .events = POLLPRI};
            poll(&p, 1, left > 50 ? 50 : (int)left + 1); /* bounded: a missed edge costs 50 ms */
        } else {
            usleep(1000);
        }
    }
    if (events >= 0)
        close(events);
    return r < 0 ? r : 0;
}

int cgroup_destroy(int parent_fd, const char *name, int fd, int timeout_ms)
{
    int r = 0;
    if (cgroup_populated(fd) == 1) {
        cgroup_kill(fd);
        r = wait_empty(fd, timeout_ms);
    }
    close(fd);
    if (!r && unlinkat(parent_fd, name, AT_REMOVEDIR) < 0)
        r = -errno;
    return r;
}

int cgroup_create(int parent_fd, const char *name, int *fd)
{
    if (mkdirat(parent_fd, name, 0700) < 0) {
        if (errno != EEXIST)
            return -errno;
        int old = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (old < 0)
            return -errno;
        int r = cgroup_destroy(parent_fd, name, old, 2000);
        if (r)
            return r;
        if (mkdirat(parent_fd, name, 0700) < 0)
            return -errno;
    }
    *fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *fd < 0 ? -errno : 0;
}

/* Kills and removes the child groups a previous run left under the parent. */
static void sweep(int parent_fd)
{
    int dup_fd = dup(parent_fd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_type != DT_DIR || de->d_name[0] == '.' || cgroup_is_subtree(de->d_name))
            continue;
        int fd = openat(parent_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
            cgroup_destroy(parent_fd, de->d_name, fd, 5000);
    }
    if (d)
        closedir(d);
    else if (dup_fd >= 0)
        close(dup_fd);
}

int cgroup_parent_open(const char *name, int *fd, char *why, size_t why_len)
{
    char mount[PATH_MAX], own[PATH_MAX], *path = NULL;
    int r = find_mount(mount, sizeof(mount));
    if (r) {
        snprintf(why, why_len, "no cgroup v2 hierarchy is mounted");
        return r;
    }
    if ((r = own_group(own, sizeof(own)))) {
        snprintf(why, why_len, "this process's cgroup v2 group is unknown");
        return r;
    }
    if (asprintf(&path, "%s%s/%s", mount, strcmp(own, "/") ? own : "", name) < 0)
        return -ENOMEM;
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        snprintf(why, why_len, "cannot create %s: %s", path, strerror(errno));
        free(path);
        return r;
    }
    *fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0 || faccessat(*fd, "cgroup.procs", W_OK, AT_EACCESS) < 0) {
        r = -errno;
        snprintf(why, why_len, "cannot use %s: %s", path, strerror(errno));
        if (*fd >= 0)
            close(*fd);
        free(path);
        return r;
    }
    free(path);
    sweep(*fd);
    return 0;
}

void cgroup_parent_close(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    close(fd);
    if (n > 0) {
        path[n] = '\0';
        rmdir(path); /* fails harmlessly when a group is still in it */
    }
}

bool cgroup_is_subtree(const char *name)
{
    static const char *const subtrees[] = CGROUP_SUBTREES;
    for (size_t i = 0; i < sizeof(subtrees) / sizeof(subtrees[0]); i++)
        if (strcmp(name, subtrees[i]) == 0)
            return true;
    return false;
}

void cgroup_tree_name(const char *data_dir, char *out, size_t size)
{
    char real[PATH_MAX], hash[CRYPTO_SHA256_HEX];
    if (!realpath(data_dir, real))
        snprintf(real, sizeof(real), "%s", data_dir);
    crypto_sha256_hex(real, strlen(real), hash);
    snprintf(out, size, "slipway-%.16s", hash);
}

int cgroup_subtree_open(const char *name, const char *sub, int *fd, char *why, size_t why_len)
{
    char mount[PATH_MAX], own[PATH_MAX], *path = NULL;
    int r;
    if (!cgroup_is_subtree(sub) || strchr(name, '/'))
        return -EINVAL;
    if ((r = find_mount(mount, sizeof(mount)))) {
        snprintf(why, why_len, "no cgroup v2 hierarchy is mounted");
        return r;
    }
    if ((r = own_group(own, sizeof(own)))) {
        snprintf(why, why_len, "this process's cgroup v2 group is unknown");
        return r;
    }
    const char *base = strcmp(own, "/") ? own : "";
    for (int level = 0; level < 2; level++) {
        free(path);
        if (asprintf(&path, "%s%s/%s%s%s", mount, base, name, level ? "/" : "", level ? sub : "") <
            0)
            return -ENOMEM;
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            r = -errno;
            snprintf(why, why_len, "cannot create %s: %s", path, strerror(errno));
            free(path);
            return r;
        }
    }
    *fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0 || faccessat(*fd, "cgroup.procs", W_OK, AT_EACCESS) < 0) {
        r = -errno;
        snprintf(why, why_len, "cannot use %s: %s", path, strerror(errno));
        if (*fd >= 0)
            close(*fd);
        free(path);
        return r;
    }
    free(path);
    sweep(*fd);
    return 0;
}

void cgroup_subtree_close(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    close(fd);
    if (n > 0) {
        path[n] = '\0';
        if (rmdir(path) == 0 && strrchr(path, '/')) {
            *strrchr(path, '/') = '\0';
            rmdir(path); /* the server's parent group, when no build's group is left in it */
        }
    }
}
