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
#include "base/banned.h"

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
            snprintf(out, size, "%s", point);
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
            snprintf(out, size, "%s", line + 3);
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
    int dup_fd = fcntl(parent_fd, F_DUPFD_CLOEXEC, 0);
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

/* Opens (making them) the group <own group>/name, or <own group>/name/sub when sub is not NULL,
 * and sweeps what is left in it. */
static int group_open(const char *name, const char *sub, int *fd, char *why, size_t why_len,
                      bool keep)
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
    const char *base = strcmp(own, "/") ? own : "";
    for (int level = 0; level < (sub ? 2 : 1); level++) {
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
    if (!keep)
        sweep(*fd);
    return 0;
}

int cgroup_parent_open(const char *name, int *fd, char *why, size_t why_len)
{
    return group_open(name, NULL, fd, why, why_len, false);
}

/* Closes a group_open'ed fd and removes the group, then as many levels above it as `levels` asks
 * (each fails harmlessly while a group is still in it). */
static void group_close(int fd, int levels)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    close(fd);
    if (n <= 0)
        return;
    path[n] = '\0';
    for (int i = 0; i < levels && rmdir(path) == 0 && strrchr(path, '/'); i++)
        *strrchr(path, '/') = '\0';
}

void cgroup_parent_close(int fd)
{
    group_close(fd, 1);
}

/* ---- limits ------------------------------------------------------------------------------- */

static const char *const controller_name[CGROUP_NR_CONTROLLERS] = {"pids", "memory"};

/* Whether the list (words separated by sep) holds word. */
static bool list_has(const char *list, const char *word, char sep)
{
    size_t len = strlen(word);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, (char[]){sep, '\n', '\0'});
        if (n == len && strncmp(p, word, len) == 0)
            return true;
        p += n;
        if (*p)
            p++;
    }
    return false;
}

/* Where the v1 hierarchy with the controller is mounted, as a path for this process's group in
 * it (mount point + the group's path below the mount's root). */
static int own_v1_group(const char *ctl, char *out, size_t size)
{
    char line[4096], point[PATH_MAX], root[PATH_MAX], own[PATH_MAX] = "";
    bool found = false;
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return -errno;
    while (!own[0] && fgets(line, sizeof(line), f)) { /* "N:ctl,ctl:/path" */
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b)
            continue;
        *b = '\0';
        b[1 + strcspn(b + 1, "\n")] = '\0';
        if (list_has(a + 1, ctl, ',') && strlen(b + 1) < sizeof(own))
            snprintf(own, sizeof(own), "%s", b + 1);
    }
    fclose(f);
    if (!own[0] || !(f = fopen("/proc/self/mountinfo", "re")))
        return -ENOENT;
    while (!found && fgets(line, sizeof(line), f)) {
        char fstype[64], opts[1024];
        const char *sep = strstr(line, " - ");
        if (!sep || sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2 ||
            sscanf(sep + 3, "%63s %*s %1023s", fstype, opts) != 2)
            continue;
        found = strcmp(fstype, "cgroup") == 0 && list_has(opts, ctl, ',') && !strchr(point, '\\');
    }
    fclose(f);
    if (!found)
        return -ENOENT;
    const char *rel = own;
    if (strcmp(root, "/") != 0) { /* a mount of a sub-tree (a container): the path below it */
        size_t n = strlen(root);
        if (strncmp(own, root, n) != 0 || (own[n] && own[n] != '/'))
            return -ENOENT;
        rel = own + n;
    }
    if ((size_t)snprintf(out, size, "%s%s", point, strcmp(rel, "/") ? rel : "") >= size)
        return -ENAMETOOLONG;
    return 0;
}

/* Whether the group's cgroup.procs lists a process. 1, 0 or -errno. */
static int v1_populated(int fd)
{
    char buf[16];
    ssize_t n = read_at(fd, "cgroup.procs", buf, sizeof(buf));
    return n < 0 ? (int)n : n > 0;
}

/* Removes the v1 group `name` of parent_fd once empty: what is still in it gets SIGKILL; waits at
 * most timeout_ms. */
static int v1_remove(int parent_fd, const char *name, int timeout_ms)
{
    int64_t deadline = time_mono_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        if (unlinkat(parent_fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return -errno;
        if (time_mono_ns() > deadline)
            return -EBUSY;
        int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            if (v1_populated(fd) == 1)
                cgroup_kill(fd); /* v1 has no cgroup.kill: SIGKILL to each listed process */
            close(fd);
        }
        usleep(2000);
    }
}

/* Opens (making it) the v1 parent `name` of the controller, and removes what a previous run
 * left in it. */
static int v1_parent_open(const char *ctl, const char *name, int *fd, bool keep)
{
    char own[PATH_MAX], path[PATH_MAX + 256];
    int r = own_v1_group(ctl, own, sizeof(own));
    if (r)
        return r;
    snprintf(path, sizeof(path), "%s/%s", own, name);
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return -errno;
    *fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
        return -errno;
    if (faccessat(*fd, "cgroup.procs", W_OK, AT_EACCESS) < 0) {
        r = -errno;
        close(*fd);
        *fd = -1;
        return r;
    }
    if (keep)
        return 0;
    int dup_fd = fcntl(*fd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_type == DT_DIR && de->d_name[0] != '.')
            v1_remove(*fd, de->d_name, 5000);
    if (d)
        closedir(d);
    else if (dup_fd >= 0)
        close(dup_fd);
    return 0;
}

/* Opens this process's own v2 group. */
static int own_v2_open(int *fd)
{
    char mount[PATH_MAX], own[PATH_MAX], path[2 * PATH_MAX];
    int r = find_mount(mount, sizeof(mount));
    if (!r)
        r = own_group(own, sizeof(own));
    if (r)
        return r;
    snprintf(path, sizeof(path), "%s%s", mount, strcmp(own, "/") ? own : "");
    *fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *fd < 0 ? -errno : 0;
}

/* Moves this process (all its threads) into the leaf group `leaf` of own_fd, when it is the only
 * process in own_fd: a v2 group holding processes cannot enable controllers for its children. */
static int v2_move_self(int own_fd, const char *leaf)
{
    char buf[64], pid[24];
    ssize_t n = read_at(own_fd, "cgroup.procs", buf, sizeof(buf));
    snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (n < 0)
        return (int)n;
    if (strcmp(buf, pid) != 0)
        return -EBUSY; /* other processes share the group: not ours to move */
    if (mkdirat(own_fd, leaf, 0755) < 0 && errno != EEXIST)
        return -errno;
    int fd = openat(own_fd, leaf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = write_at(fd, "cgroup.procs", "0");
    close(fd);
    return r;
}

/* Enables the controller for the v2 parent's groups, first for the parent itself (in this
 * process's group's subtree) when needed. */
static int v2_enable(int parent_fd, const char *name, const char *ctl, const char **reason)
{
    char buf[512], plus[32], leaf[256];
    snprintf(plus, sizeof(plus), "+%s", ctl);
    ssize_t n = read_at(parent_fd, "cgroup.controllers", buf, sizeof(buf));
    if (n >= 0 && !list_has(buf, ctl, ' ')) {
        int own_fd, r = own_v2_open(&own_fd);
        if (r) {
            *reason = "this process's v2 group is unknown";
            return r;
        }
        n = read_at(own_fd, "cgroup.controllers", buf, sizeof(buf));
        if (n < 0 || !list_has(buf, ctl, ' ')) {
            close(own_fd);
            *reason = "cgroup v2 does not offer it to the server's group";
            return -ENOENT;
        }
        r = write_at(own_fd, "cgroup.subtree_control", plus);
        if (r == -EBUSY) {
            snprintf(leaf, sizeof(leaf), "%s.server", name);
            r = v2_move_self(own_fd, leaf);
            if (!r)
                r = write_at(own_fd, "cgroup.subtree_control", plus);
            if (r)
                *reason = "the server's v2 group holds other processes (give the server a "
                          "group of its own, e.g. systemd's Delegate=yes)";
        } else if (r) {
            *reason = "cannot enable it in the server's v2 group";
        }
        close(own_fd);
        if (r)
            return r;
    } else if (n < 0) {
        *reason = "cannot read the v2 parent's controllers";
        return (int)n;
    }
    int r = write_at(parent_fd, "cgroup.subtree_control", plus);
    if (r)
        *reason = "cannot enable it for the builds' v2 groups";
    return r;
}

static unsigned limiter_open(const char *name, int v2_fd, struct cgroup_limiter *l, char *why,
                             size_t why_len, bool keep)
{
    unsigned found = 0;
    size_t used = 0;
    l->v2_fd = v2_fd;
    why[0] = '\0';
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++) {
        const char *reason = "no cgroup v2 group for the builds";
        l->v2[c] = false;
        l->v1_fd[c] = -1;
        if (v2_fd >= 0 && v2_enable(v2_fd, name, controller_name[c], &reason) == 0) {
            l->v2[c] = true;
            found |= 1u << c;
            continue;
        }
        int r = v1_parent_open(controller_name[c], name, &l->v1_fd[c], keep);
        if (!r) {
            found |= 1u << c;
            continue;
        }
        if (used < why_len)
            used += (size_t)snprintf(
                why + used, why_len - used, "%sno '%s' controller (cgroup v2: %s; v1: %s)",
                used ? "; " : "", controller_name[c], reason, r == -ENOENT ? "none" : strerror(-r));
    }
    return found;
}

unsigned cgroup_limiter_open(const char *name, int v2_fd, struct cgroup_limiter *l, char *why,
                             size_t why_len)
{
    return limiter_open(name, v2_fd, l, why, why_len, false);
}

unsigned cgroup_limiter_keep(const char *name, int v2_fd, struct cgroup_limiter *l, char *why,
                             size_t why_len)
{
    return limiter_open(name, v2_fd, l, why, why_len, true);
}

void cgroup_limiter_close(struct cgroup_limiter *l)
{
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++) {
        if (l->v1_fd[c] >= 0)
            cgroup_parent_close(l->v1_fd[c]);
        l->v1_fd[c] = -1;
    }
}

int cgroup_limits_create(const struct cgroup_limiter *l, const char *name,
                         int fds[CGROUP_NR_CONTROLLERS])
{
    int r = 0;
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++)
        fds[c] = -1;
    for (int c = 0; c < CGROUP_NR_CONTROLLERS && !r; c++) {
        int parent = l->v1_fd[c];
        if (parent < 0)
            continue;
        if (mkdirat(parent, name, 0755) < 0) {
            if (errno != EEXIST)
                r = -errno;
            else if (!(r = v1_remove(parent, name, 2000)) && mkdirat(parent, name, 0755) < 0)
                r = -errno;
        }
        if (!r && (fds[c] = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            r = -errno;
    }
    if (r)
        cgroup_limits_destroy(l, name, fds, 0);
    return r;
}

static int write_i64(int fd, const char *file, int64_t v)
{
    char text[24];
    snprintf(text, sizeof(text), "%lld", (long long)v);
    return write_at(fd, file, text);
}

int cgroup_limits_set(const struct cgroup_limiter *l, int v2_fd,
                      const int fds[CGROUP_NR_CONTROLLERS], const struct cgroup_limits *lim)
{
    int r = 0, fd;
    if (lim->pids > 0) {
        fd = l->v2[CGROUP_PIDS] ? v2_fd : fds[CGROUP_PIDS];
        if (fd >= 0)
            r = write_i64(fd, "pids.max", lim->pids);
    }
    if (!r && lim->memory_bytes > 0 && l->v2[CGROUP_MEMORY] && v2_fd >= 0) {
        r = write_i64(v2_fd, "memory.max", lim->memory_bytes);
        if (!r && write_at(v2_fd, "memory.swap.max", "0") == -EACCES)
            r = -EACCES; /* absent (no swap accounting) is fine */
    } else if (!r && lim->memory_bytes > 0 && (fd = fds[CGROUP_MEMORY]) >= 0) {
        /* memsw (memory + swap) must stay >= the memory limit: raise it first, lower it after */
        write_i64(fd, "memory.memsw.limit_in_bytes", lim->memory_bytes);
        r = write_i64(fd, "memory.limit_in_bytes", lim->memory_bytes);
        int s = write_i64(fd, "memory.memsw.limit_in_bytes", lim->memory_bytes);
        if (!r && s && s != -ENOENT)
            r = s;
    }
    return r;
}

/* The number after `key ` in a "key value" file of the group, or 0. */
static int64_t read_counter(int fd, const char *file, const char *key)
{
    char buf[2048];
    if (fd < 0 || read_at(fd, file, buf, sizeof(buf)) < 0)
        return 0;
    size_t len = strlen(key);
    for (const char *p = buf; *p; p += strcspn(p, "\n") + (p[strcspn(p, "\n")] != '\0')) {
        if (strncmp(p, key, len) == 0 && p[len] == ' ')
            return strtoll(p + len + 1, NULL, 10);
    }
    return 0;
}

void cgroup_limits_count(const struct cgroup_limiter *l, int v2_fd,
                         const int fds[CGROUP_NR_CONTROLLERS], struct cgroup_limits_count *c)
{
    int pids_fd = l->v2[CGROUP_PIDS] ? v2_fd : fds[CGROUP_PIDS];
    c->pids_max = read_counter(pids_fd, "pids.events", "max");
    c->oom_kill = l->v2[CGROUP_MEMORY]
                      ? read_counter(v2_fd, "memory.events", "oom_kill")
                      : read_counter(fds[CGROUP_MEMORY], "memory.oom_control", "oom_kill");
}

unsigned cgroup_limits_hit(const struct cgroup_limiter *l, int v2_fd,
                           const int fds[CGROUP_NR_CONTROLLERS],
                           const struct cgroup_limits_count *since)
{
    static const struct cgroup_limits_count zero = {0, 0};
    struct cgroup_limits_count now;
    unsigned hit = 0;
    if (!since)
        since = &zero;
    cgroup_limits_count(l, v2_fd, fds, &now);
    if (now.pids_max > since->pids_max)
        hit |= 1u << CGROUP_PIDS;
    if (now.oom_kill > since->oom_kill)
        hit |= 1u << CGROUP_MEMORY;
    return hit;
}

int cgroup_limits_empty(const int fds[CGROUP_NR_CONTROLLERS])
{
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++) {
        int r = fds[c] >= 0 ? v1_populated(fds[c]) : 0;
        if (r)
            return r < 0 ? r : 0;
    }
    return 1;
}

int cgroup_limits_sweep_empty(const struct cgroup_limiter *l)
{
    int removed = 0;
    for (int k = 0; k < CGROUP_NR_CONTROLLERS; k++) {
        if (l->v1_fd[k] < 0)
            continue;
        int dup_fd = fcntl(l->v1_fd[k], F_DUPFD_CLOEXEC, 0);
        DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
        if (!d) {
            if (dup_fd >= 0)
                close(dup_fd);
            continue;
        }
        for (struct dirent *de; (de = readdir(d));) {
            if (de->d_type != DT_DIR || de->d_name[0] == '.')
                continue;
            int fd = openat(l->v1_fd[k], de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            bool empty = fd >= 0 && v1_populated(fd) == 0;
            if (fd >= 0)
                close(fd);
            /* rmdir refuses a group that a process joined meanwhile (EBUSY): it stays */
            if (empty && unlinkat(l->v1_fd[k], de->d_name, AT_REMOVEDIR) == 0)
                removed++;
        }
        closedir(d);
    }
    return removed;
}

int cgroup_limits_find(const struct cgroup_limiter *l, pid_t pid, char *name, size_t cap,
                       int fds[CGROUP_NR_CONTROLLERS])
{
    for (int k = 0; k < CGROUP_NR_CONTROLLERS; k++)
        fds[k] = -1;
    name[0] = '\0';
    char path[64], line[1024], procs[4096], own[24];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    snprintf(own, sizeof(own), "%d", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    int found = 0;
    while (fgets(line, sizeof(line), f)) {
        /* "id:controllers:/path/of/the/group" */
        char *ctls = strchr(line, ':'), *p = ctls ? strchr(ctls + 1, ':') : NULL;
        if (!p)
            continue;
        *p++ = '\0';
        p[strcspn(p, "\n")] = '\0';
        const char *base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
        if (!*base || base[0] == '.' || strlen(base) >= cap || (name[0] && strcmp(name, base)))
            continue;
        for (int k = 0; k < CGROUP_NR_CONTROLLERS; k++) {
            if (l->v1_fd[k] < 0 || fds[k] >= 0 || !list_has(ctls + 1, controller_name[k], ','))
                continue;
            int fd = openat(l->v1_fd[k], base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                continue;
            /* the group of that name beneath our parent is the process's own */
            if (read_at(fd, "cgroup.procs", procs, sizeof(procs)) <= 0 ||
                !list_has(procs, own, '\n')) {
                close(fd);
                continue;
            }
            snprintf(name, cap, "%s", base);
            fds[k] = fd;
            found++;
        }
    }
    fclose(f);
    return found ? 0 : -ENOENT;
}

int cgroup_limits_destroy(const struct cgroup_limiter *l, const char *name,
                          int fds[CGROUP_NR_CONTROLLERS], int timeout_ms)
{
    int r = 0;
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++) {
        if (fds[c] < 0)
            continue;
        close(fds[c]);
        fds[c] = -1;
        int e = v1_remove(l->v1_fd[c], name, timeout_ms);
        if (e && !r)
            r = e;
    }
    return r;
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
    if (!cgroup_is_subtree(sub) || strchr(name, '/'))
        return -EINVAL;
    return group_open(name, sub, fd, why, why_len, false);
}

int cgroup_subtree_keep(const char *name, const char *sub, int *fd, char *why, size_t why_len)
{
    if (!cgroup_is_subtree(sub) || strchr(name, '/'))
        return -EINVAL;
    return group_open(name, sub, fd, why, why_len, true);
}

void cgroup_subtree_close(int fd)
{
    group_close(fd, 2); /* and the server's parent group, when no build's group is left in it */
}
