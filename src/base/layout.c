/* layout — every path under the data directory, the lock and the secret; see layout.h. */
#include "base/layout.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "base/crypto.h"
#include "base/util.h"
#include "base/banned.h"

#define PACKAGE_SUFFIX ".tar.zst"
#define LOCK_WAIT_NS   (2 * 1000000000LL)

static struct {
    char *dir, *db, *secret_path, *tmp, *repos, *packages, *build_logs, *builds, *builds_run;
    char *releases, *envs, *router, *database, *snapshots;
    char alias[PATH_MAX]; /* layout_reachable's bind mount, "" when none */
    unsigned char secret[LAYOUT_SECRET_LEN];
    bool have_secret;
} L;

void layout_release(void)
{
    char **paths[] = {&L.dir,      &L.db,         &L.secret_path, &L.tmp,        &L.repos,
                      &L.packages, &L.build_logs, &L.builds,      &L.builds_run, &L.releases,
                      &L.envs,     &L.router,     &L.database,    &L.snapshots};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        free(*paths[i]);
        *paths[i] = NULL;
    }
    sodium_memzero(L.secret, sizeof(L.secret));
    L.have_secret = false;
    L.alias[0] = '\0';
}

/* DIR + rest, or NULL when out of memory. */
static char *under(const char *rest)
{
    char *p = NULL;
    return asprintf(&p, "%s%s", L.dir, rest) < 0 ? NULL : p;
}

/* The fixed paths under L.dir (freed first: the directory may be re-based). */
static int compose_fixed(void)
{
    char **paths[] = {&L.db,         &L.secret_path, &L.tmp,        &L.repos,    &L.packages,
                      &L.build_logs, &L.builds,      &L.builds_run, &L.releases, &L.envs,
                      &L.router,     &L.database,    &L.snapshots};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        free(*paths[i]);
        *paths[i] = NULL;
    }
    L.db = under("/slipway.db");
    L.secret_path = under("/secret");
    L.tmp = under("/tmp");
    L.repos = under("/repos");
    L.packages = under("/packages");
    L.build_logs = under("/logs/builds");
    L.builds = under("/builds");
    L.builds_run = under("/builds/run");
    L.releases = under("/releases");
    L.envs = under("/envs");
    L.router = under("/router");
    L.database = under("/database");
    L.snapshots = under("/snapshots");
    if (!L.db || !L.secret_path || !L.tmp || !L.repos || !L.packages || !L.build_logs ||
        !L.builds || !L.builds_run || !L.releases || !L.envs || !L.router || !L.database ||
        !L.snapshots) {
        layout_release();
        return -ENOMEM;
    }
    return 0;
}

int layout_init(const char *data_dir)
{
    layout_release();
    struct stat st;
    if (!data_dir || !*data_dir)
        return -EINVAL;
    if (stat(data_dir, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    if (!(L.dir = realpath(data_dir, NULL)))
        return -errno;
    return compose_fixed();
}

int layout_reachable(char *said, size_t cap)
{
    said[0] = '\0';
    if (!L.dir)
        return -EINVAL;
    if (geteuid() != 0)
        return 0; /* what the server runs runs as itself */
    char path[PATH_MAX];
    bool closed = false;
    snprintf(path, sizeof(path), "%s", L.dir);
    for (char *slash; !closed && (slash = strrchr(path, '/')) && slash != path;) {
        *slash = '\0';
        struct stat st;
        closed = stat(path, &st) == 0 && !(st.st_mode & S_IXOTH);
    }
    if (!closed)
        return 0;
    char hex[CRYPTO_SHA256_HEX], alias[PATH_MAX];
    crypto_sha256_hex(L.dir, strlen(L.dir), hex);
    snprintf(alias, sizeof(alias), "%s/slipway-%.16s", LAYOUT_REACH_DIR, hex);
    if ((mkdir(LAYOUT_REACH_DIR, 0711) < 0 && errno != EEXIST) ||
        chmod(LAYOUT_REACH_DIR, 0711) < 0 || (mkdir(alias, 0711) < 0 && errno != EEXIST))
        return -errno;
    struct stat a, d;
    if (stat(alias, &a) < 0 || stat(L.dir, &d) < 0)
        return -errno;
    if ((a.st_dev != d.st_dev || a.st_ino != d.st_ino) &&
        mount(L.dir, alias, NULL, MS_BIND, NULL) < 0)
        return -errno;
    snprintf(L.alias, sizeof(L.alias), "%s", alias);
    snprintf(said, cap,
             "%s is reached as %s (a bind mount: a directory above it does not let "
             "other users pass, and app instances, nginx and PostgreSQL run as users of their "
             "own)",
             L.dir, alias);
    char *old = L.dir;
    if (!(L.dir = strdup(alias))) {
        L.dir = old;
        return -ENOMEM;
    }
    free(old);
    return compose_fixed();
}

void layout_reach_end(void)
{
    if (!L.alias[0])
        return;
    /* detached: what still has a descriptor or a working directory in it keeps it */
    if (umount2(L.alias, MNT_DETACH) == 0)
        rmdir(L.alias);
    L.alias[0] = '\0';
}

int layout_prepare(const char **failed)
{
    const char *dirs[] = {L.repos, L.tmp};
    if (!L.dir)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        int r = fs_mkdirs(dirs[i], 0700);
        if (r) {
            if (failed)
                *failed = dirs[i];
            return r;
        }
    }
    return 0;
}

int layout_lock(void)
{
    char *path = L.dir ? under("/lock") : NULL;
    if (!path)
        return L.dir ? -ENOMEM : -EINVAL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(path);
    if (fd < 0)
        return -errno;
    /* another server holds it for good; a just-killed one's child only until its execve */
    int64_t deadline = time_mono_ns() + LOCK_WAIT_NS;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (e != -EBUSY || time_mono_ns() > deadline) {
            close(fd);
            return e;
        }
        usleep(10000);
    }
    return 0; /* the descriptor stays open: the lock lasts until the process ends */
}

int layout_secret_load(void)
{
    unsigned char key[LAYOUT_SECRET_LEN];
    int r = 0;
    if (!L.dir)
        return -EINVAL;
    L.have_secret = false;
    if (access(L.secret_path, F_OK) != 0)
        r = crypto_random(key, sizeof(key))
                ? -EIO
                : fs_write_atomic(L.secret_path, key, sizeof(key), 0600);
    sodium_memzero(key, sizeof(key));
    if (r)
        return r;
    int fd = open(L.secret_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* one byte more than the secret: a longer file is not ours either */
    unsigned char buf[LAYOUT_SECRET_LEN + 1];
    ssize_t n;
    do
        n = read(fd, buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    r = n < 0 ? -errno : n == LAYOUT_SECRET_LEN ? 0 : -EBADMSG;
    close(fd);
    if (!r) {
        memcpy(L.secret, buf, LAYOUT_SECRET_LEN);
        L.have_secret = true;
    }
    sodium_memzero(buf, sizeof(buf));
    return r;
}

const unsigned char *layout_secret(void)
{
    return L.have_secret ? L.secret : NULL;
}

const char *layout_dir(void)
{
    return L.dir;
}
const char *layout_db_path(void)
{
    return L.db;
}
const char *layout_secret_path(void)
{
    return L.secret_path;
}
const char *layout_tmp_dir(void)
{
    return L.tmp;
}
const char *layout_repos_dir(void)
{
    return L.repos;
}
const char *layout_packages_dir(void)
{
    return L.packages;
}
const char *layout_build_logs_dir(void)
{
    return L.build_logs;
}
const char *layout_builds_dir(void)
{
    return L.builds;
}
const char *layout_builds_run_dir(void)
{
    return L.builds_run;
}

/* One path component of at most NAME_MAX bytes, not hidden (no ".", "..", ".git"). */
static bool component_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n && n <= NAME_MAX - 16 && name[0] != '.' && !strchr(name, '/');
}

/* dir/a[mid b][suffix] when every name is a component, or NULL with errno. */
static char *compose(const char *dir, const char *a, const char *b, const char *suffix)
{
    char *p = NULL;
    if (!dir || !component_ok(a) || (b && !component_ok(b))) {
        errno = EINVAL;
        return NULL;
    }
    if (asprintf(&p, "%s/%s%s%s%s", dir, a, b ? "/" : "", b ? b : "", suffix) < 0) {
        errno = ENOMEM;
        return NULL;
    }
    return p;
}

char *layout_repo_path(const char *app_id)
{
    return compose(L.repos, app_id, NULL, ".git");
}

char *layout_package_dir(const char *app_id)
{
    return compose(L.packages, app_id, NULL, "");
}

char *layout_package_path(const char *app_id, const char *package_id)
{
    return compose(L.packages, app_id, package_id, PACKAGE_SUFFIX);
}

char *layout_build_log_path(const char *package_id)
{
    return compose(L.build_logs, package_id, NULL, ".log");
}

char *layout_build_root(const char *name)
{
    return compose(L.builds_run, name, NULL, "");
}

const char *layout_releases_dir(void)
{
    return L.releases;
}

const char *layout_envs_dir(void)
{
    return L.envs;
}

const char *layout_router_dir(void)
{
    return L.router;
}

const char *layout_snapshots_dir(void)
{
    return L.snapshots;
}

const char *layout_database_dir(void)
{
    return L.database;
}

char *layout_release_dir(const char *app_id, const char *package_id)
{
    return compose(L.releases, app_id, package_id, "");
}

char *layout_env_path(const char *app_id, const char *mode, enum layout_env_part part)
{
    static const char *const parts[] = {"", "", "/data", "/logs", "/access"};
    if ((unsigned)part >= sizeof(parts) / sizeof(parts[0])) {
        errno = EINVAL;
        return NULL;
    }
    if (part == LAYOUT_ENV_APP)
        return compose(L.envs, app_id, NULL, "");
    return compose(L.envs, app_id, mode, parts[part]);
}

char *layout_release_app_dir(const char *app_id)
{
    return compose(L.releases, app_id, NULL, "");
}

char *layout_snapshot_path(const char *app_id, const char *mode, const char *snapshot_id)
{
    char *dir = compose(L.snapshots, app_id, mode, "");
    if (!dir)
        return NULL;
    char *p = compose(dir, snapshot_id, NULL, ".tar.zst");
    free(dir);
    return p;
}

bool layout_package_file_id(const char *file_name, char id[LAYOUT_ID_LEN])
{
    size_t id_len = LAYOUT_ID_LEN - 1;
    if (strlen(file_name) != id_len + strlen(PACKAGE_SUFFIX) ||
        strcmp(file_name + id_len, PACKAGE_SUFFIX) != 0 || !component_ok(file_name))
        return false;
    memcpy(id, file_name, id_len);
    id[id_len] = '\0';
    return true;
}
