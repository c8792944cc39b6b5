/* util — parsing, time, strings and file helpers; see util.h. */
#include "base/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "base/banned.h"

int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int parse_size(const char *s, int64_t min, int64_t max, int64_t *out)
{
    static const struct {
        const char *name;
        int shift;
    } units[] = {{"", 0},    {"B", 0},    {"KB", 10},  {"MB", 20},  {"GB", 30},
                 {"TB", 40}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}};
    size_t digits = s ? strspn(s, "0123456789") : 0;
    if (digits == 0 || digits > 18)
        return digits ? -ERANGE : -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(s + digits, units[i].name) != 0)
            continue;
        char number[20];
        int64_t v;
        memcpy(number, s, digits);
        number[digits] = '\0';
        if (parse_i64(number, 0, INT64_MAX, &v))
            return -EINVAL;
        if (v > (INT64_MAX >> units[i].shift))
            return -ERANGE;
        v <<= units[i].shift;
        if (v < min || v > max)
            return -ERANGE;
        *out = v;
        return 0;
    }
    return -EINVAL;
}

void format_size(int64_t bytes, char out[24])
{
    static const char *const names[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (u < 4 && bytes > 0 && bytes % 1024 == 0) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, 24, "%lld%s", (long long)bytes, names[u]);
}

int64_t time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void time_rfc3339(int64_t epoch_s, char out[21])
{
    /* RFC 3339 has four-digit years: clamp to 0001-01-01 .. 9999-12-31 (commit times come from
     * users and can be anything) */
    if (epoch_s < -62135596800)
        epoch_s = -62135596800;
    if (epoch_s > 253402300799)
        epoch_s = 253402300799;
    time_t t = (time_t)epoch_s;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        memcpy(out, "1970-01-01T00:00:00Z", 21);
}

void hex_encode(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

bool str_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_ieq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

int fd_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int fs_write(const char *path, const void *data, size_t len, unsigned mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    int r = fd_write_all(fd, data, len);
    if (close(fd) < 0 && !r)
        r = -errno;
    return r;
}

int fs_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0)
        return -ENOMEM;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = -errno;
        free(tmp);
        return e;
    }
    int r = fd_write_all(fd, data, len);
    if (!r && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && !r)
        r = -errno;
    if (!r && rename(tmp, path) < 0)
        r = -errno;
    if (r)
        unlink(tmp);
    free(tmp);
    return r;
}

int fs_mkdirs(const char *path, unsigned mode)
{
    if (!*path)
        return -EINVAL;
    char *buf = strdup(path);
    if (!buf)
        return -ENOMEM;
    int r = 0;
    for (char *p = buf + 1; *p && !r; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            r = -errno;
        *p = '/';
    }
    struct stat st;
    if (!r && mkdir(buf, mode) < 0 && errno != EEXIST)
        r = -errno;
    if (!r && (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode)))
        r = errno == ENOENT ? -ENOENT : -ENOTDIR;
    free(buf);
    return r;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

int fs_remove_tree(const char *path)
{
    if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) < 0)
        return errno == ENOENT ? 0 : -errno;
    return 0;
}

/* Calls visit(dir_fd, name, st, arg) for each entry below the directory dir_fd (not following
 * symlinks, not entering other file systems), depth-first, the directory's entries before its
 * subdirectories' own. Stops at the first non-zero return. */
typedef int (*walk_fn)(int dir_fd, const char *name, const struct stat *st, void *arg);

static int walk(int dir_fd, dev_t dev, int depth, walk_fn visit, void *arg)
{
    if (depth > 256)
        return -ELOOP;
    DIR *d = fdopendir(dir_fd);
    if (!d) {
        int e = -errno;
        close(dir_fd);
        return e;
    }
    struct dirent *de;
    int r = 0;
    while (!r && (errno = 0, de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT) /* gone since readdir: nothing to count */
                r = -errno;
            continue;
        }
        if ((r = visit(dirfd(d), de->d_name, &st, arg)))
            break;
        if (S_ISDIR(st.st_mode) && st.st_dev == dev) {
            int sub = openat(dirfd(d), de->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
            if (sub < 0)
                r = errno == ENOENT ? 0 : -errno;
            else
                r = walk(sub, dev, depth + 1, visit, arg);
        }
    }
    if (!r && !de && errno)
        r = -errno;
    closedir(d);
    return r;
}

/* Runs walk() on the tree at path after visiting its top. */
static int walk_tree(const char *path, walk_fn visit, void *arg)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return -errno;
    int r = fstat(fd, &st) < 0 ? -errno : visit(fd, "", &st, arg);
    if (r) {
        close(fd);
        return r;
    }
    return walk(fd, st.st_dev, 1, visit, arg);
}

struct usage {
    uint64_t bytes, stop_above;
};

static int add_usage(int dir_fd, const char *name, const struct stat *st, void *arg)
{
    (void)dir_fd;
    (void)name;
    struct usage *u = arg;
    u->bytes += (uint64_t)st->st_blocks * 512;
    return u->bytes > u->stop_above ? 1 : 0;
}

int fs_disk_usage(const char *path, uint64_t stop_above, uint64_t *bytes)
{
    struct usage u = {0, stop_above};
    int r = walk_tree(path, add_usage, &u);
    if (r < 0)
        return r;
    *bytes = u.bytes;
    return 0;
}

struct owner {
    uid_t uid;
    gid_t gid;
};

static int chown_one(int dir_fd, const char *name, const struct stat *st, void *arg)
{
    (void)st;
    const struct owner *o = arg;
    int r = *name ? fchownat(dir_fd, name, o->uid, o->gid, AT_SYMLINK_NOFOLLOW)
                  : fchown(dir_fd, o->uid, o->gid);
    return r < 0 ? -errno : 0;
}

int fs_chown_tree(const char *path, unsigned uid, unsigned gid)
{
    struct owner o = {uid, gid};
    return walk_tree(path, chown_one, &o);
}
