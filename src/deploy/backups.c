/* deploy: backups — the engine's owner "backups" (snapshots, archives, restores, one at a time on
 * a worker thread; the retention sweep on the engine thread) and the calls of backups.h made on
 * HTTP threads. What a snapshot holds and how it is taken and restored: backups.h. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "base/strv.h"
#include "base/util.h"
#include "deploy/backups.h"
#include "deploy/database.h"
#include "deploy/deploy_int.h"
#include "base/banned.h"

#define SWEEP_EVERY_NS  (3600LL * 1000000000LL)
#define FREEZE_WAIT_MS  5000
#define MAX_DEPTH       256
#define COPY_BUF        (256 * 1024)
#define DUMP_ENTRY      "database.dump"
#define FILES_PREFIX    "files/"
#define KIND_FILES      "files"
#define KIND_FILES_DB   "files_and_database"
#define INTERRUPTED_MSG "the server stopped while this was running (found at its next start)"

enum job_kind { JOB_NONE, JOB_SNAPSHOT, JOB_ARCHIVE, JOB_RESTORE };

static struct {
    struct engine_owner owner;
    struct engine_work work;
    bool busy;
    enum job_kind job;
    struct store_snapshot snap;
    struct store_archive arch;
    struct store_restore rest;
    /* the outcome, from the worker */
    bool ok;
    char message[STORE_REASON_MAX + 1];
    int64_t size;
    char kind[24];
    struct engine_timer sweep;
} B;

static int bfail(struct backups_error *err, enum backups_err kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bfail(struct backups_error *err, enum backups_err kind, const char *fmt, ...)
{
    err->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -1;
}

/* libarchive converts names through the locale: under the server's "C" it cannot store UTF-8
 * names. Each use runs under a thread-local C.UTF-8 locale (as builder/package.c does). */
struct utf8_locale {
    locale_t loc, old;
};

static void utf8_enter(struct utf8_locale *l)
{
    l->loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    l->old = l->loc ? uselocale(l->loc) : (locale_t)0;
}

static void utf8_leave(struct utf8_locale *l)
{
    if (l->loc) {
        uselocale(l->old);
        freelocale(l->loc);
    }
}

char *backups_snapshot_path(const struct store_snapshot *s)
{
    return layout_snapshot_path(s->app_id, s->mode, s->snapshot_id);
}

/* Whether the environment has a database: its package asks for one and PostgreSQL is there. */
static bool env_has_database(const char *app_id, const struct store_env *env)
{
    const char *pkg = env->running_package[0] ? env->running_package : env->package_id;
    if (!deploy_g.have_database || !pkg[0])
        return false;
    json_t *m = deploy_release_manifest(app_id, pkg);
    const char *db = json_string_value(json_object_get(json_object_get(m, "run"), "database"));
    bool has = db && db[0];
    json_decref(m);
    return has;
}

static bool env_runs(const struct store_env *env)
{
    return !strcmp(env->status, "Running") || env->want_running;
}

/* ---- the calls (HTTP threads) ---- */

static void wake(void)
{
    if (deploy_g.cfg.engine)
        engine_wake(deploy_g.cfg.engine);
}

int backups_snapshot_queue(const struct store_env *env, const char *comment,
                           struct store_snapshot *out, struct backups_error *err)
{
    if (strlen(comment) > STORE_COMMENT_MAX || !str_utf8_valid(comment))
        return bfail(err, BACKUPS_E_INVALID, "the comment must be valid UTF-8 of at most %d bytes",
                     STORE_COMMENT_MAX);
    if (!env->package_id[0] && !env->running_package[0])
        return bfail(err, BACKUPS_E_STATE, "%s holds no package: there is nothing to back up",
                     env->mode);
    memset(out, 0, sizeof(*out));
    struct store_package pkg;
    const char *pid = env->running_package[0] ? env->running_package : env->package_id;
    if (!store_package_get(pid, &pkg))
        snprintf(out->model_version, sizeof(out->model_version), "%s", pkg.version);
    if (crypto_uuid(out->snapshot_id))
        return bfail(err, BACKUPS_E_INTERNAL, "no random bytes");
    out->env = env->id;
    snprintf(out->comment, sizeof(out->comment), "%s", comment);
    out->created_ms = time_now_ms(); /* the retention counts from the same instant */
    out->expires_ms = out->created_ms + deploy_g.cfg.snapshot_retention_ms;
    if (store_snapshot_insert(out) || store_snapshot_get(out->snapshot_id, out))
        return bfail(err, BACKUPS_E_INTERNAL, "cannot record the snapshot");
    wake();
    return 0;
}

int backups_snapshot_delete(const struct store_snapshot *s, struct backups_error *err)
{
    int r = store_snapshot_delete_unused(s->id);
    if (r == -EBUSY)
        return bfail(err, BACKUPS_E_STATE,
                     "snapshot '%s' is being taken or restored: try again when that has ended",
                     s->snapshot_id);
    if (r == -ENOENT)
        return bfail(err, BACKUPS_E_NOT_FOUND, "no snapshot '%s'", s->snapshot_id);
    if (r)
        return bfail(err, BACKUPS_E_INTERNAL, "cannot delete the snapshot");
    char *path = backups_snapshot_path(s);
    if (path && unlink(path) < 0 && errno != ENOENT)
        log_warn("backups: cannot remove %s: %s", path, strerror(errno));
    free(path);
    return 0;
}

int backups_archive_queue(const struct store_snapshot *s, const char *data_type,
                          struct store_archive *out, struct backups_error *err)
{
    if (strcmp(data_type, "database_only") && strcmp(data_type, KIND_FILES_DB))
        return bfail(err, BACKUPS_E_INVALID,
                     "data_type must be database_only or files_and_database");
    if (s->state != BK_COMPLETED)
        return bfail(err, BACKUPS_E_STATE, "snapshot '%s' is %s, not completed", s->snapshot_id,
                     store_bk_state_name(s->state));
    if (!strcmp(data_type, "database_only") && strcmp(s->kind, KIND_FILES_DB))
        return bfail(err, BACKUPS_E_STATE, "snapshot '%s' holds no database", s->snapshot_id);
    memset(out, 0, sizeof(*out));
    if (crypto_uuid(out->archive_id))
        return bfail(err, BACKUPS_E_INTERNAL, "no random bytes");
    out->snapshot = s->id;
    snprintf(out->snapshot_id, sizeof(out->snapshot_id), "%s", s->snapshot_id);
    snprintf(out->data_type, sizeof(out->data_type), "%s", data_type);
    if (store_archive_insert(out))
        return bfail(err, BACKUPS_E_INTERNAL, "cannot record the archive");
    wake();
    return 0;
}

int backups_restore_queue(const struct store_env *target, const struct store_snapshot *s,
                          bool db_only, struct store_restore *out, struct backups_error *err)
{
    if (s->app != target->app)
        return bfail(err, BACKUPS_E_NOT_FOUND, "no snapshot '%s' in this app", s->snapshot_id);
    if (s->state != BK_COMPLETED)
        return bfail(err, BACKUPS_E_STATE, "snapshot '%s' is %s, not completed", s->snapshot_id,
                     store_bk_state_name(s->state));
    if (db_only && strcmp(s->kind, KIND_FILES_DB))
        return bfail(err, BACKUPS_E_STATE, "snapshot '%s' holds no database", s->snapshot_id);
    if (env_runs(target))
        return bfail(err, BACKUPS_E_NOT_STOPPED, "%s must be stopped for a restore", target->mode);
    memset(out, 0, sizeof(*out));
    if (crypto_uuid(out->restore_id))
        return bfail(err, BACKUPS_E_INTERNAL, "no random bytes");
    out->snapshot = s->id;
    snprintf(out->snapshot_id, sizeof(out->snapshot_id), "%s", s->snapshot_id);
    out->source_env = s->env;
    out->target_env = target->id;
    out->db_only = db_only;
    int r = store_restore_insert(out);
    if (r == -EBUSY)
        return bfail(err, BACKUPS_E_BUSY, "a restore into %s is in progress already", target->mode);
    if (r)
        return bfail(err, BACKUPS_E_INTERNAL, "cannot record the restore");
    wake();
    return 0;
}

/* ---- taking a snapshot (a worker thread) ---- */

/* Writes "0" or "1" to the group's cgroup.freeze. 0, or -errno. */
static int freeze_write(int group_fd, bool on)
{
    int fd = openat(group_fd, "cgroup.freeze", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = write(fd, on ? "1" : "0", 1) == 1 ? 0 : -errno;
    close(fd);
    return r;
}

/* Whether cgroup.events says "frozen 1". */
static bool frozen(int group_fd)
{
    int fd = openat(group_fd, "cgroup.events", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return strstr(buf, "frozen 1") != NULL;
}

struct freezer {
    int *fds;
    size_t nr;
};

static void thaw(struct freezer *f)
{
    for (size_t i = 0; i < f->nr; i++) {
        if (freeze_write(f->fds[i], false))
            log_error("backups: cannot thaw an instance's group: %s", strerror(errno));
        close(f->fds[i]);
    }
    free(f->fds);
    f->fds = NULL;
    f->nr = 0;
}

/* Freezes the environment's instances: 1 when frozen, 0 when it has none, -errno (with why)
 * when they could not be frozen (they run on, thawed). */
static int freeze(int64_t env, struct freezer *f, char *why, size_t cap)
{
    int cg = -1;
    char **groups = NULL;
    int r = deploy_instance_groups(env, &cg, &groups);
    if (r) {
        snprintf(why, cap, "cannot read the instances: %s", strerror(-r));
        return r;
    }
    size_t nr = 0;
    while (groups && groups[nr])
        nr++;
    if (!nr) {
        strv_free(groups);
        return 0;
    }
    if (cg < 0) {
        snprintf(why, cap, "no cgroup for the instances on this host");
        strv_free(groups);
        return -ENOTSUP;
    }
    f->fds = calloc(nr, sizeof(int));
    r = f->fds ? 0 : -ENOMEM;
    for (size_t i = 0; !r && i < nr; i++) {
        int fd = openat(cg, groups[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) /* the instance ended meanwhile */
                continue;
            r = -errno;
            snprintf(why, cap, "cannot open the group '%s': %s", groups[i], strerror(errno));
            break;
        }
        f->fds[f->nr++] = fd;
        if ((r = freeze_write(fd, true)))
            snprintf(why, cap, "cannot freeze the group '%s': %s", groups[i], strerror(-r));
    }
    int64_t deadline = time_mono_ns() + FREEZE_WAIT_MS * 1000000LL;
    for (size_t i = 0; !r && i < f->nr; i++) {
        while (!frozen(f->fds[i]) && time_mono_ns() < deadline)
            usleep(1000);
        if (!frozen(f->fds[i])) {
            r = -ETIMEDOUT;
            snprintf(why, cap, "an instance's group did not freeze within %d ms", FREEZE_WAIT_MS);
        }
    }
    strv_free(groups);
    if (r) {
        thaw(f);
        return r;
    }
    return f->nr ? 1 : 0;
}

struct writer {
    struct archive *a;
    struct archive_entry *ae;
    char *buf;
    unsigned skipped; /* sockets, FIFOs, devices */
    char *msg;
    size_t cap;
};

static int archive_fail(struct writer *w, const char *what)
{
    snprintf(w->msg, w->cap, "cannot write the snapshot (%s): %s", what,
             archive_error_string(w->a) ? archive_error_string(w->a) : "unknown error");
    return -EIO;
}

static void entry_from_stat(struct archive_entry *ae, const char *path, const struct stat *st)
{
    archive_entry_clear(ae);
    archive_entry_copy_pathname(ae, path);
    archive_entry_set_mode(ae, st->st_mode & (S_IFMT | 07777));
    archive_entry_set_uid(ae, st->st_uid);
    archive_entry_set_gid(ae, st->st_gid);
    archive_entry_set_mtime(ae, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    archive_entry_set_size(ae, S_ISREG(st->st_mode) ? st->st_size : 0);
}

static int header(struct writer *w)
{
    int rc = archive_write_header(w->a, w->ae);
    return rc == ARCHIVE_OK || rc == ARCHIVE_WARN ? 0 : archive_fail(w, "header");
}

/* Copies size bytes (at most) of fd into the current entry; a file that shrank meanwhile is
 * padded by libarchive at the entry's end. */
static int copy_data(struct writer *w, int fd, int64_t size)
{
    while (size > 0) {
        ssize_t n = read(fd, w->buf, size < COPY_BUF ? (size_t)size : COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(w->msg, w->cap, "cannot read a file: %s", strerror(errno));
            return -errno;
        }
        if (n == 0)
            break;
        if (archive_write_data(w->a, w->buf, (size_t)n) < 0)
            return archive_fail(w, "data");
        size -= n;
    }
    return 0;
}

/* Adds what directory dfd holds (path: its name in the archive, with a trailing '/'). */
static int add_tree(struct writer *w, int dfd, struct strbuf *path, int depth)
{
    if (depth > MAX_DEPTH) {
        snprintf(w->msg, w->cap, "the data directory is nested deeper than %d", MAX_DEPTH);
        return -ELOOP;
    }
    int dup_fd = dup(dfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        snprintf(w->msg, w->cap, "cannot read '%s': %s", path->buf, strerror(errno));
        return -errno;
    }
    int r = 0;
    size_t base = path->len;
    struct dirent *de;
    while (!r && (errno = 0, de = readdir(d))) {
        const char *n = de->d_name;
        if (n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
            continue;
        struct stat st;
        if (fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            r = -errno;
            snprintf(w->msg, w->cap, "cannot stat '%s%s': %s", path->buf, n, strerror(errno));
            break;
        }
        path->len = base;
        path->buf[base] = '\0';
        strbuf_adds(path, n);
        if (!strbuf_ok(path)) {
            r = -ENOMEM;
            break;
        }
        if (S_ISREG(st.st_mode)) {
            int fd = openat(dfd, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
            if (fd < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(w->msg, w->cap, "cannot read '%s': %s", path->buf, strerror(errno));
                if (fd >= 0)
                    close(fd);
                break;
            }
            entry_from_stat(w->ae, path->buf, &st);
            r = header(w);
            if (!r)
                r = copy_data(w, fd, st.st_size);
            close(fd);
        } else if (S_ISLNK(st.st_mode)) {
            char target[4097];
            ssize_t len = readlinkat(dfd, n, target, sizeof(target) - 1);
            if (len < 0) {
                r = -errno;
                snprintf(w->msg, w->cap, "cannot read the link '%s': %s", path->buf,
                         strerror(errno));
                break;
            }
            target[len] = '\0';
            entry_from_stat(w->ae, path->buf, &st);
            archive_entry_copy_symlink(w->ae, target);
            r = header(w);
        } else if (S_ISDIR(st.st_mode)) {
            int sub = openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                r = -errno;
                snprintf(w->msg, w->cap, "cannot open '%s': %s", path->buf, strerror(errno));
                break;
            }
            entry_from_stat(w->ae, path->buf, &st);
            r = header(w);
            strbuf_addch(path, '/');
            if (!r)
                r = add_tree(w, sub, path, depth + 1);
            close(sub);
        } else {
            w->skipped++;
        }
    }
    if (!r && errno && !de) {
        r = -errno;
        snprintf(w->msg, w->cap, "cannot list '%s': %s", path->buf, strerror(errno));
    }
    path->len = base;
    path->buf[base] = '\0';
    closedir(d);
    return r;
}

/* Copies fd (from offset 0, size bytes) into the archive as a regular file `name`. */
static int add_file_fd(struct writer *w, const char *name, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
        snprintf(w->msg, w->cap, "cannot read the dump: %s", strerror(errno));
        return -errno;
    }
    st.st_mode = S_IFREG | 0600;
    st.st_uid = st.st_gid = 0;
    entry_from_stat(w->ae, name, &st);
    int r = header(w);
    return r ? r : copy_data(w, fd, st.st_size);
}

static ssize_t fd_write_cb(struct archive *a, void *arg, const void *buf, size_t len)
{
    (void)a;
    int fd = *(int *)arg;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            archive_set_error(a, errno, "%s", strerror(errno));
            return -1;
        }
        done += (size_t)n;
    }
    return (ssize_t)len;
}

static int fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* Takes snapshot s: fills B.ok, B.message, B.size, B.kind. */
static void snapshot_take(const struct store_snapshot *s)
{
    char *final = backups_snapshot_path(s), *tmp = NULL, *data = NULL, *dir = NULL;
    char rnd[CRYPTO_UUID_LEN], why[512] = "";
    struct store_env env;
    struct freezer fz = {0};
    struct utf8_locale loc = {0};
    struct writer w = {.msg = B.message, .cap = sizeof(B.message)};
    struct strbuf path = STRBUF_INIT;
    int out_fd = -1, dump_fd = -1, dfd = -1, r = -ENOMEM;
    B.ok = false;
    utf8_enter(&loc);
    if (!final || crypto_uuid(rnd) || asprintf(&tmp, "%s.tmp-%s", final, rnd) < 0 ||
        !(dir = strdup(final))) {
        tmp = NULL;
        snprintf(B.message, sizeof(B.message), "out of memory");
        goto out;
    }
    if (store_env_get(s->env, &env)) {
        snprintf(B.message, sizeof(B.message), "cannot read the environment");
        goto out;
    }
    if (!(data = layout_env_path(s->app_id, env.mode, LAYOUT_ENV_DATA)))
        goto out;
    if ((r = fs_mkdirs(dirname(dir), 0700))) {
        snprintf(B.message, sizeof(B.message), "cannot make the snapshots' directory: %s",
                 strerror(-r));
        goto out;
    }
    bool has_db = env_has_database(s->app_id, &env);
    out_fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    w.a = archive_write_new();
    w.ae = archive_entry_new();
    w.buf = malloc(COPY_BUF);
    if (out_fd < 0 || !w.a || !w.ae || !w.buf) {
        r = out_fd < 0 ? -errno : -ENOMEM;
        snprintf(B.message, sizeof(B.message), "cannot write the snapshot: %s", strerror(-r));
        goto out;
    }
    if (archive_write_add_filter_zstd(w.a) != ARCHIVE_OK ||
        archive_write_set_filter_option(w.a, "zstd", "compression-level", "3") != ARCHIVE_OK ||
        archive_write_set_format_pax_restricted(w.a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(w.a, 1) != ARCHIVE_OK ||
        archive_write_open(w.a, &out_fd, NULL, fd_write_cb, NULL) != ARCHIVE_OK) {
        r = archive_fail(&w, "open");
        goto out;
    }
    dfd = open(data, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 && errno != ENOENT) {
        r = -errno;
        snprintf(B.message, sizeof(B.message), "cannot open the data directory: %s",
                 strerror(errno));
        goto out;
    }
    strbuf_adds(&path, FILES_PREFIX);
    /* the files, with the instances frozen while they are copied */
    int frozen_r = freeze(env.id, &fz, why, sizeof(why));
    int64_t t0 = time_mono_ns();
    r = dfd >= 0 ? add_tree(&w, dfd, &path, 0) : 0;
    int64_t ms = (time_mono_ns() - t0) / 1000000;
    if (frozen_r > 0)
        thaw(&fz);
    if (r)
        goto out;
    char how[600];
    if (frozen_r > 0)
        snprintf(how, sizeof(how), "files copied with the instances frozen for %lld ms",
                 (long long)ms);
    else if (frozen_r == 0)
        snprintf(how, sizeof(how), "environment stopped: files copied as they are");
    else
        snprintf(how, sizeof(how), "files copied while the app ran (%.400s)", why);
    /* then the database, in one transaction */
    if (has_db) {
        char name[32];
        deploy_db_name(&env, name);
        dump_fd = open(layout_tmp_dir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (dump_fd < 0) {
            r = -errno;
            snprintf(B.message, sizeof(B.message), "cannot make a file for the dump: %s",
                     strerror(errno));
            goto out;
        }
        why[0] = '\0';
        if ((r = database_dump(name, dump_fd, why, sizeof(why)))) {
            snprintf(B.message, sizeof(B.message), "cannot dump the database: %.400s", why);
            goto out;
        }
        if ((r = add_file_fd(&w, DUMP_ENTRY, dump_fd)))
            goto out;
        size_t len = strlen(how);
        snprintf(how + len, sizeof(how) - len, "; database dumped in one transaction");
    }
    if (archive_write_close(w.a) != ARCHIVE_OK) {
        r = archive_fail(&w, "end");
        goto out;
    }
    struct stat st;
    if (fsync(out_fd) < 0 || fstat(out_fd, &st) < 0 || close(out_fd) < 0) {
        out_fd = -1;
        r = -errno;
        snprintf(B.message, sizeof(B.message), "cannot write the snapshot: %s", strerror(errno));
        goto out;
    }
    out_fd = -1;
    if (rename(tmp, final) < 0) {
        r = -errno;
        snprintf(B.message, sizeof(B.message), "cannot keep the snapshot: %s", strerror(errno));
        goto out;
    }
    fsync_dir_of(final);
    B.ok = true;
    B.size = st.st_size;
    snprintf(B.kind, sizeof(B.kind), "%s", has_db ? KIND_FILES_DB : KIND_FILES);
    if (w.skipped)
        snprintf(B.message, sizeof(B.message), "%s (%u sockets, FIFOs or devices left out)", how,
                 w.skipped);
    else
        snprintf(B.message, sizeof(B.message), "%s", how);
    log_info("backups: snapshot %s of %s/%s: %s (%lld bytes)", s->snapshot_id, s->app_id, env.mode,
             B.message, (long long)B.size);
out:
    if (fz.nr)
        thaw(&fz);
    if (w.a)
        archive_write_free(w.a);
    archive_entry_free(w.ae);
    free(w.buf);
    utf8_leave(&loc);
    if (out_fd >= 0)
        close(out_fd);
    if (dump_fd >= 0)
        close(dump_fd);
    if (dfd >= 0)
        close(dfd);
    if (!B.ok && tmp)
        unlink(tmp);
    if (!B.ok && !B.message[0])
        snprintf(B.message, sizeof(B.message), "%s", strerror(r < 0 ? -r : ENOMEM));
    strbuf_release(&path);
    free(final);
    free(tmp);
    free(data);
    free(dir);
}

/* ---- reading a snapshot ---- */

static struct archive *reader_open(const struct store_snapshot *s, int *fd,
                                   struct backups_error *err)
{
    char *path = backups_snapshot_path(s);
    *fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    free(path);
    if (*fd < 0) {
        bfail(err, BACKUPS_E_INTERNAL, "the snapshot's file is missing: %s", strerror(errno));
        return NULL;
    }
    struct archive *a = archive_read_new();
    if (!a || archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
        archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_open_fd(a, *fd, 64 * 1024) != ARCHIVE_OK) {
        bfail(err, BACKUPS_E_INTERNAL, "cannot read the snapshot: %s",
              a && archive_error_string(a) ? archive_error_string(a) : "out of memory");
        if (a)
            archive_read_free(a);
        close(*fd);
        *fd = -1;
        return NULL;
    }
    return a;
}

/* Copies the current entry's data to fd. 0, or -1 with err. */
static int entry_to_fd(struct archive *a, int fd, struct backups_error *err)
{
    const void *buf;
    size_t len;
    la_int64_t off;
    int rc;
    while ((rc = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK) {
        for (size_t done = 0; done < len;) {
            ssize_t n = write(fd, (const char *)buf + done, len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return bfail(err, BACKUPS_E_INTERNAL, "cannot write: %s", strerror(errno));
            done += (size_t)n;
        }
    }
    if (rc != ARCHIVE_EOF)
        return bfail(err, BACKUPS_E_INTERNAL, "cannot read the snapshot: %s",
                     archive_error_string(a) ? archive_error_string(a) : "unknown error");
    return 0;
}

int backups_export(const struct store_snapshot *s, enum backups_part part, int out_fd,
                   struct backups_error *err)
{
    if (s->state != BK_COMPLETED)
        return bfail(err, BACKUPS_E_STATE, "snapshot '%s' is %s, not completed", s->snapshot_id,
                     store_bk_state_name(s->state));
    if (part == BACKUPS_DATABASE && strcmp(s->kind, KIND_FILES_DB))
        return bfail(err, BACKUPS_E_STATE, "snapshot '%s' holds no database", s->snapshot_id);
    int fd = -1, r = -1;
    struct utf8_locale loc;
    utf8_enter(&loc);
    struct archive *a = reader_open(s, &fd, err), *w = NULL;
    struct archive_entry *ae;
    if (!a)
        goto out;
    if (part == BACKUPS_FILES) {
        w = archive_write_new();
        if (!w || archive_write_add_filter_gzip(w) != ARCHIVE_OK ||
            archive_write_set_format_pax_restricted(w) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(w, 1) != ARCHIVE_OK ||
            archive_write_open(w, &out_fd, NULL, fd_write_cb, NULL) != ARCHIVE_OK) {
            bfail(err, BACKUPS_E_INTERNAL, "cannot write the archive");
            goto out;
        }
    }
    int rc;
    bool found = false;
    while ((rc = archive_read_next_header(a, &ae)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
        const char *name = archive_entry_pathname(ae);
        if (!name)
            continue;
        if (part == BACKUPS_DATABASE) {
            if (strcmp(name, DUMP_ENTRY))
                continue;
            found = true;
            if (entry_to_fd(a, out_fd, err))
                goto out;
            break;
        }
        if (strncmp(name, FILES_PREFIX, strlen(FILES_PREFIX)) || !name[strlen(FILES_PREFIX)])
            continue;
        char *rel = strdup(name + strlen(FILES_PREFIX));
        if (!rel) {
            bfail(err, BACKUPS_E_INTERNAL, "out of memory");
            goto out;
        }
        archive_entry_copy_pathname(ae, rel);
        free(rel);
        rc = archive_write_header(w, ae);
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
            bfail(err, BACKUPS_E_INTERNAL, "cannot write the archive: %s",
                  archive_error_string(w) ? archive_error_string(w) : "unknown error");
            goto out;
        }
        const void *buf;
        size_t len;
        la_int64_t off;
        while ((rc = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK)
            if (archive_write_data(w, buf, len) < 0) {
                bfail(err, BACKUPS_E_INTERNAL, "cannot write the archive");
                goto out;
            }
        if (rc != ARCHIVE_EOF) {
            bfail(err, BACKUPS_E_INTERNAL, "cannot read the snapshot: %s",
                  archive_error_string(a) ? archive_error_string(a) : "unknown error");
            goto out;
        }
    }
    if (part == BACKUPS_DATABASE && !found) {
        bfail(err, BACKUPS_E_INTERNAL, "the snapshot's file holds no database dump");
        goto out;
    }
    if (part == BACKUPS_FILES && rc != ARCHIVE_EOF) {
        bfail(err, BACKUPS_E_INTERNAL, "cannot read the snapshot: %s",
              archive_error_string(a) ? archive_error_string(a) : "unknown error");
        goto out;
    }
    if (w && archive_write_close(w) != ARCHIVE_OK) {
        bfail(err, BACKUPS_E_INTERNAL, "cannot write the archive");
        goto out;
    }
    r = 0;
out:
    if (w)
        archive_write_free(w);
    if (a)
        archive_read_free(a);
    if (fd >= 0)
        close(fd);
    utf8_leave(&loc);
    return r;
}

/* ---- restoring (a worker thread) ---- */

struct extract {
    int root; /* the new data directory */
    bool set_ids;
    unsigned uid;
    char **dirs; /* directories made, to get their modes at the end */
    size_t nr_dirs;
    mode_t *modes;
    size_t cap_modes;
};

/* Whether rel is a path the restore may create: relative, no empty, '.' or '..' component. */
static bool rel_ok(const char *rel)
{
    if (!rel[0] || rel[0] == '/' || strlen(rel) > 4096)
        return false;
    for (const char *p = rel; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return p[n] == '\0' && n == 0; /* a trailing '/' is fine */
        p += n;
        if (*p == '/')
            p++;
    }
    return true;
}

/* Opens the parent directory of rel inside root (making missing ones 0700), never following a
 * symlink; *last is rel's last component (within the copy in buf). -errno or a directory fd. */
static int open_parent(struct extract *x, char *buf, char **last)
{
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    int cur = dup(x->root);
    if (cur < 0)
        return -errno;
    char *p = buf;
    for (char *slash; (slash = strchr(p, '/'));) {
        *slash = '\0';
        int next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT) {
            if (mkdirat(cur, p, 0700) < 0 && errno != EEXIST) {
                int e = -errno;
                close(cur);
                return e;
            }
            if (x->set_ids)
                fchownat(cur, p, x->uid, x->uid, AT_SYMLINK_NOFOLLOW);
            next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        int e = -errno;
        close(cur);
        if (next < 0)
            return e;
        cur = next;
        p = slash + 1;
    }
    *last = p;
    return cur;
}

static int extract_entry(struct extract *x, struct archive *a, struct archive_entry *ae,
                         const char *rel, struct backups_error *err)
{
    char *buf = strdup(rel), *last = NULL;
    if (!buf)
        return bfail(err, BACKUPS_E_INTERNAL, "out of memory");
    int r = -1, fd = -1;
    int parent = open_parent(x, buf, &last);
    mode_t type = archive_entry_filetype(ae);
    mode_t perm = archive_entry_perm(ae) & 0777;
    if (parent < 0) {
        bfail(err, BACKUPS_E_INTERNAL, "cannot restore '%.200s': %s", rel, strerror(-parent));
        goto out;
    }
    if (archive_entry_hardlink(ae)) {
        bfail(err, BACKUPS_E_INTERNAL, "the snapshot holds a hard link ('%.200s')", rel);
        goto out;
    }
    if (type == AE_IFDIR) {
        if (mkdirat(parent, last, 0700) < 0 && errno != EEXIST) {
            bfail(err, BACKUPS_E_INTERNAL, "cannot make '%.200s': %s", rel, strerror(errno));
            goto out;
        }
        struct stat st;
        if (fstatat(parent, last, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
            bfail(err, BACKUPS_E_INTERNAL, "'%.200s' is not a directory", rel);
            goto out;
        }
        if (x->set_ids)
            fchownat(parent, last, x->uid, x->uid, AT_SYMLINK_NOFOLLOW);
        if (x->nr_dirs >= x->cap_modes) {
            size_t cap = x->cap_modes ? 2 * x->cap_modes : 64;
            mode_t *m = realloc(x->modes, cap * sizeof(*m));
            if (!m) {
                bfail(err, BACKUPS_E_INTERNAL, "out of memory");
                goto out;
            }
            x->modes = m;
            x->cap_modes = cap;
        }
        if (strv_add(&x->dirs, &x->nr_dirs, rel)) {
            bfail(err, BACKUPS_E_INTERNAL, "out of memory");
            goto out;
        }
        x->modes[x->nr_dirs - 1] = perm;
    } else if (type == AE_IFLNK) {
        const char *target = archive_entry_symlink(ae);
        if (!target || symlinkat(target, parent, last) < 0) {
            bfail(err, BACKUPS_E_INTERNAL, "cannot restore the link '%.200s': %s", rel,
                  target ? strerror(errno) : "no target");
            goto out;
        }
        if (x->set_ids)
            fchownat(parent, last, x->uid, x->uid, AT_SYMLINK_NOFOLLOW);
    } else if (type == AE_IFREG) {
        fd = openat(parent, last, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            bfail(err, BACKUPS_E_INTERNAL, "cannot restore '%.200s': %s", rel, strerror(errno));
            goto out;
        }
        if (entry_to_fd(a, fd, err))
            goto out;
        if ((x->set_ids && fchown(fd, x->uid, x->uid) < 0) || fchmod(fd, perm) < 0) {
            bfail(err, BACKUPS_E_INTERNAL, "cannot restore '%.200s': %s", rel, strerror(errno));
            goto out;
        }
        struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT},
                                 {archive_entry_mtime(ae), archive_entry_mtime_nsec(ae)}};
        futimens(fd, ts);
    } else {
        bfail(err, BACKUPS_E_INTERNAL,
              "the snapshot holds '%.200s', neither a file, a directory "
              "nor a link",
              rel);
        goto out;
    }
    r = 0;
out:
    if (fd >= 0)
        close(fd);
    if (parent >= 0)
        close(parent);
    free(buf);
    return r;
}

/* Sets the directories' modes, deepest first (a read-only directory got its content first). */
static void extract_dir_modes(struct extract *x)
{
    for (size_t i = x->nr_dirs; i-- > 0;) {
        char *buf = strdup(x->dirs[i]), *last = NULL;
        int parent = buf ? open_parent(x, buf, &last) : -1;
        if (parent >= 0) {
            fchmodat(parent, last, x->modes[i], 0);
            close(parent);
        }
        free(buf);
    }
}

/* Restores restore r: fills B.ok and B.message. */
static void restore_run(const struct store_restore *rs)
{
    struct store_snapshot s;
    struct store_env env;
    struct backups_error err = {0};
    struct extract x = {.root = -1};
    struct utf8_locale loc = {0};
    char *data = NULL, *tmp = NULL, rnd[CRYPTO_UUID_LEN];
    int sfd = -1, dump_fd = -1;
    struct archive *a = NULL;
    B.ok = false;
    utf8_enter(&loc);
    if (!rs->snapshot || store_snapshot_get(rs->snapshot_id, &s)) {
        bfail(&err, BACKUPS_E_NOT_FOUND, "the snapshot was deleted");
        goto out;
    }
    if (store_env_get(rs->target_env, &env)) {
        bfail(&err, BACKUPS_E_INTERNAL, "cannot read the environment");
        goto out;
    }
    if (env_runs(&env)) {
        bfail(&err, BACKUPS_E_NOT_STOPPED, "%s was started before the restore could run", env.mode);
        goto out;
    }
    bool want_db = !strcmp(s.kind, KIND_FILES_DB) && deploy_g.have_database;
    if (rs->db_only && !want_db) {
        bfail(&err, BACKUPS_E_STATE, "the snapshot holds no database, or PostgreSQL is missing");
        goto out;
    }
    if (deploy_env_dirs(s.app_id, &env) ||
        !(data = layout_env_path(s.app_id, env.mode, LAYOUT_ENV_DATA)) || crypto_uuid(rnd) ||
        asprintf(&tmp, "%s.restore-%s", data, rnd) < 0) {
        tmp = NULL;
        bfail(&err, BACKUPS_E_INTERNAL, "cannot prepare the environment's directories");
        goto out;
    }
    x.set_ids = deploy_g.cfg.set_ids;
    x.uid = deploy_env_uid(&env);
    if (!rs->db_only) {
        if (mkdir(tmp, 0700) < 0 || (x.set_ids && chown(tmp, x.uid, x.uid) < 0) ||
            (x.root = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
            bfail(&err, BACKUPS_E_INTERNAL, "cannot make a directory for the files: %s",
                  strerror(errno));
            goto out;
        }
    }
    if (want_db && (dump_fd = open(layout_tmp_dir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) < 0) {
        bfail(&err, BACKUPS_E_INTERNAL, "cannot make a file for the dump: %s", strerror(errno));
        goto out;
    }
    if (!(a = reader_open(&s, &sfd, &err)))
        goto out;
    struct archive_entry *ae;
    int rc;
    bool dumped = false;
    while ((rc = archive_read_next_header(a, &ae)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
        const char *name = archive_entry_pathname(ae);
        if (!name) {
            bfail(&err, BACKUPS_E_INTERNAL, "the snapshot holds an entry without a name");
            goto out;
        }
        if (!strcmp(name, DUMP_ENTRY)) {
            if (want_db && (entry_to_fd(a, dump_fd, &err)))
                goto out;
            dumped = want_db;
            continue;
        }
        if (rs->db_only)
            continue;
        if (strncmp(name, FILES_PREFIX, strlen(FILES_PREFIX)) ||
            !rel_ok(name + strlen(FILES_PREFIX))) {
            bfail(&err, BACKUPS_E_INTERNAL,
                  "the snapshot holds an entry outside its files: "
                  "'%.200s'",
                  name);
            goto out;
        }
        if (extract_entry(&x, a, ae, name + strlen(FILES_PREFIX), &err))
            goto out;
    }
    if (rc != ARCHIVE_EOF) {
        bfail(&err, BACKUPS_E_INTERNAL, "cannot read the snapshot: %s",
              archive_error_string(a) ? archive_error_string(a) : "unknown error");
        goto out;
    }
    if (!rs->db_only)
        extract_dir_modes(&x);
    char why[512] = "";
    if (dumped) {
        char name[32], url[DATABASE_URL_MAX];
        deploy_db_name(&env, name);
        if (lseek(dump_fd, 0, SEEK_SET) < 0 ||
            database_ensure(name, url, sizeof(url), why, sizeof(why)) ||
            database_restore(name, dump_fd, why, sizeof(why))) {
            explicit_bzero(url, sizeof(url));
            bfail(&err, BACKUPS_E_INTERNAL, "cannot restore the database: %.400s",
                  why[0] ? why : strerror(errno));
            goto out;
        }
        explicit_bzero(url, sizeof(url));
    }
    if (!rs->db_only) {
        /* the new files take the old ones' place at once; the old go where the new were */
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, data, RENAME_EXCHANGE) < 0 &&
            (errno != ENOENT || rename(tmp, data) < 0)) {
            bfail(&err, BACKUPS_E_INTERNAL, "cannot put the files in place: %s", strerror(errno));
            goto out;
        }
        fsync_dir_of(data);
    }
    B.ok = true;
    snprintf(B.message, sizeof(B.message), "%s%s",
             rs->db_only ? "database restored" : "files restored",
             rs->db_only ? ""
             : dumped    ? " and database restored"
                         : "");
    log_info("backups: restore %s of snapshot %s (%s/%s) into %s/%s: %s", rs->restore_id,
             s.snapshot_id, s.app_id, s.mode, s.app_id, env.mode, B.message);
out:
    if (a)
        archive_read_free(a);
    if (sfd >= 0)
        close(sfd);
    if (dump_fd >= 0)
        close(dump_fd);
    if (x.root >= 0)
        close(x.root);
    strv_free(x.dirs);
    free(x.modes);
    utf8_leave(&loc);
    struct stat st;
    if (tmp && lstat(tmp, &st) == 0)
        fs_remove_tree(tmp); /* a failed restore's files, or the old files after the swap */
    if (!B.ok)
        snprintf(B.message, sizeof(B.message), "%s", err.message[0] ? err.message : "failed");
    free(tmp);
    free(data);
}

/* An archive: the snapshot's file is there and holds what data_type asks for. */
static void archive_run(const struct store_archive *ar)
{
    struct store_snapshot s;
    B.ok = false;
    if (store_snapshot_get(ar->snapshot_id, &s)) {
        snprintf(B.message, sizeof(B.message), "the snapshot was deleted");
        return;
    }
    char *path = backups_snapshot_path(&s);
    struct stat st;
    if (!path || stat(path, &st) < 0) {
        snprintf(B.message, sizeof(B.message), "the snapshot's file is missing");
    } else if (!strcmp(ar->data_type, "database_only") && strcmp(s.kind, KIND_FILES_DB)) {
        snprintf(B.message, sizeof(B.message), "the snapshot holds no database");
    } else {
        B.ok = true;
        B.message[0] = '\0';
    }
    free(path);
}

/* ---- the owner (engine thread) ---- */

static void work_run(struct engine_work *w)
{
    (void)w;
    B.message[0] = '\0';
    B.size = 0;
    B.kind[0] = '\0';
    if (B.job == JOB_SNAPSHOT)
        snapshot_take(&B.snap);
    else if (B.job == JOB_RESTORE)
        restore_run(&B.rest);
    else
        archive_run(&B.arch);
}

static void pick(void);
static void sweep_arm(void);

static void work_done(struct engine_work *w)
{
    (void)w;
    enum store_bk_state st = B.ok ? BK_COMPLETED : BK_FAILED;
    int r = 0;
    if (B.job == JOB_SNAPSHOT) {
        r = store_snapshot_finish(B.snap.id, st, B.message, B.size, B.kind);
        if (!B.ok)
            log_warn("backups: snapshot %s of %s/%s failed: %s", B.snap.snapshot_id, B.snap.app_id,
                     B.snap.mode, B.message);
        if (r && B.ok) { /* the row is gone (deleted meanwhile): so is its file */
            char *path = backups_snapshot_path(&B.snap);
            if (path)
                unlink(path);
            free(path);
        }
        sweep_arm();
    } else if (B.job == JOB_RESTORE) {
        r = store_restore_finish(B.rest.id, st, B.message);
        if (!B.ok)
            log_warn("backups: restore %s failed: %s", B.rest.restore_id, B.message);
    } else {
        r = store_archive_finish(B.arch.id, st, B.message);
    }
    if (r)
        log_error("backups: cannot record the end of a %s: %s",
                  B.job == JOB_SNAPSHOT  ? "snapshot"
                  : B.job == JOB_RESTORE ? "restore"
                                         : "archive",
                  strerror(-r));
    B.busy = false;
    B.job = JOB_NONE;
    pick();
}

static void pick(void)
{
    if (B.busy || engine_stopping(B.owner.engine))
        return;
    if (!store_restore_claim(&B.rest))
        B.job = JOB_RESTORE;
    else if (!store_snapshot_claim(&B.snap))
        B.job = JOB_SNAPSHOT;
    else if (!store_archive_claim(&B.arch))
        B.job = JOB_ARCHIVE;
    else
        return;
    B.busy = true;
    B.work = (struct engine_work){.run = work_run, .done = work_done};
    engine_submit(B.owner.engine, &B.work);
}

struct expired {
    struct store_snapshot *v;
    size_t nr, cap;
};

static int collect_expired(const struct store_snapshot *s, void *arg)
{
    struct expired *e = arg;
    if (e->nr == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 16;
        struct store_snapshot *v = realloc(e->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        e->v = v;
        e->cap = cap;
    }
    e->v[e->nr++] = *s;
    return e->nr >= 1000 ? 1 : 0; /* a round at a time */
}

/* The sweep again at the soonest expiry, hourly at most apart. */
static void sweep_arm(void)
{
    int64_t next = 0, now = time_now_ms();
    int64_t due = time_mono_ns() + SWEEP_EVERY_NS;
    if (!store_snapshot_next_expiry(&next) && next) {
        int64_t in_ms = next - now;
        if (in_ms < 1000)
            in_ms = 1000; /* one that could not be deleted now: in a second */
        if (in_ms * 1000000LL < SWEEP_EVERY_NS)
            due = time_mono_ns() + in_ms * 1000000LL;
    }
    engine_timer_arm(B.owner.engine, &B.sweep, due);
}

static void sweep_fire(struct engine_timer *t)
{
    (void)t;
    struct expired e = {0};
    store_snapshot_each_expired(time_now_ms(), collect_expired, &e);
    for (size_t i = 0; i < e.nr; i++) {
        struct backups_error err;
        if (backups_snapshot_delete(&e.v[i], &err))
            continue; /* being restored: the next round */
        log_info("backups: snapshot %s of %s/%s expired: deleted", e.v[i].snapshot_id,
                 e.v[i].app_id, e.v[i].mode);
    }
    free(e.v);
    sweep_arm();
}

/* Removes what a server that stopped in the middle left: DIR/snapshots/<A>/<M>/<file>.tmp-* and
 * DIR/envs/<A>/<M>/data.restore-*. */
static void sweep_leftovers(const char *top, const char *marker)
{
    DIR *d1 = top ? opendir(top) : NULL;
    if (!d1)
        return;
    struct dirent *a;
    while ((a = readdir(d1))) {
        if (a->d_name[0] == '.')
            continue;
        int afd = openat(dirfd(d1), a->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d2 = afd >= 0 ? fdopendir(afd) : NULL;
        if (!d2) {
            if (afd >= 0)
                close(afd);
            continue;
        }
        struct dirent *m;
        while ((m = readdir(d2))) {
            if (m->d_name[0] == '.')
                continue;
            int mfd = openat(dirfd(d2), m->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            DIR *d3 = mfd >= 0 ? fdopendir(mfd) : NULL;
            if (!d3) {
                if (mfd >= 0)
                    close(mfd);
                continue;
            }
            struct dirent *f;
            while ((f = readdir(d3))) {
                if (!strstr(f->d_name, marker))
                    continue;
                char *p = NULL;
                if (asprintf(&p, "%s/%s/%s/%s", top, a->d_name, m->d_name, f->d_name) < 0)
                    continue;
                int r = fs_remove_tree(p);
                log_info("backups: removed %s, left by a server that stopped during a %s%s%s", p,
                         strcmp(marker, ".tmp-") ? "restore" : "snapshot", r ? ": " : "",
                         r ? strerror(-r) : "");
                free(p);
            }
            closedir(d3);
        }
        closedir(d2);
    }
    closedir(d1);
}

/* Thaws every instance's group: a server killed during a snapshot leaves them frozen. */
static void thaw_all(void)
{
    int cg = -1;
    char **groups = NULL;
    if (deploy_instance_groups(0, &cg, &groups) || cg < 0) {
        strv_free(groups);
        return;
    }
    for (size_t i = 0; groups && groups[i]; i++) {
        int fd = openat(cg, groups[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (frozen(fd)) {
            freeze_write(fd, false);
            log_warn("backups: thawed the group '%s', left frozen by a server that stopped "
                     "during a snapshot",
                     groups[i]);
        }
        close(fd);
    }
    strv_free(groups);
}

static void owner_start(struct engine_owner *o)
{
    (void)o;
    int n = store_backups_fail_unfinished(INTERRUPTED_MSG);
    if (n > 0)
        log_warn("backups: %d snapshot(s), archive(s) or restore(s) were running when the server "
                 "stopped: failed",
                 n);
    sweep_leftovers(layout_snapshots_dir(), ".tmp-");
    sweep_leftovers(layout_envs_dir(), "data.restore-");
    thaw_all();
    B.sweep.fire = sweep_fire;
    engine_timer_arm(B.owner.engine, &B.sweep, time_mono_ns());
    pick();
}

static void owner_wake(struct engine_owner *o)
{
    (void)o;
    pick();
}

static void owner_stop(struct engine_owner *o)
{
    (void)o;
    engine_timer_disarm(B.owner.engine, &B.sweep);
}

int deploy_backups_init(void)
{
    if (deploy_g.cfg.snapshot_retention_ms <= 0)
        deploy_g.cfg.snapshot_retention_ms = 30LL * 24 * 3600 * 1000;
    B.owner = (struct engine_owner){
        .name = "backups",
        .cgroup_fd = -1,
        .start = owner_start,
        .wake = owner_wake,
        .stop = owner_stop,
    };
    engine_add_owner(deploy_g.cfg.engine, &B.owner);
    return 0;
}
