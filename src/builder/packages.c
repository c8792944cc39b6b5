/* packages — queueing, importing, finding, cancelling, deleting and pruning packages; see
 * packages.h. */
#include "builder/packages.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "builder/package.h"
#include "base/banned.h"

#define DEFAULT_VERSION "0.0.0.0"
#define COPY_BUF        (256 * 1024)

static struct packages_builder builder;

void packages_set_builder(const struct packages_builder *b)
{
    builder = b ? *b : (struct packages_builder){0};
}

__attribute__((format(printf, 3, 4))) static int fail(struct packages_error *err, int result,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return result;
}

/* ---- queueing a build ---- */

static bool version_valid(const char *v)
{
    /* major.minor.patch, each 1-9 digits without a leading zero ("0" itself is fine): "01.0.0"
     * would make a tag that sorts and reads as another version's */
    for (int part = 0; part < 3; part++) {
        size_t n = strspn(v, "0123456789");
        if (n < 1 || n > 9 || (n > 1 && v[0] == '0'))
            return false;
        v += n;
        if (part < 2 && *v++ != '.')
            return false;
    }
    return *v == '\0';
}

int packages_build_check(const struct packages_build *b, struct packages_error *err)
{
    if (!b->version || !version_valid(b->version))
        return fail(err, PACKAGES_INVALID_VERSION,
                    "the Version '%.40s' must be major.minor.patch, like 2.3.5",
                    b->version ? b->version : "");
    if (b->description && strlen(b->description) > STORE_DESC_MAX)
        return fail(err, PACKAGES_INVALID, "the Description is longer than %d bytes",
                    STORE_DESC_MAX);
    return PACKAGES_OK;
}

/* Queueing holds it while it checks the version tag and inserts the row, so that two builds
 * that would put the same tag on different commits cannot both pass the check. */
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;

/* A build of commit c puts the tag `tag` (<Version>.<Number>) on it. The tag must not name
 * another commit already, nor be what a queued or running build will put on another commit.
 * Under queue_lock. */
static int tag_check(const struct store_app *app, struct vcs_repo *repo, const struct vcs_commit *c,
                     const char *branch, const char *tag, struct packages_error *err)
{
    char named[VCS_OID_HEX];
    int r = vcs_tag_lookup(repo, tag, named);
    if (!r && strcmp(named, c->id))
        return fail(err, PACKAGES_TAG_EXISTS,
                    "the tag '%s' exists on %s%s; this build would put it on commit %s "
                    "(revision %lld of '%.60s'): a tag names one commit, choose another "
                    "Version",
                    tag, named[0] ? "commit " : "something that is not a commit", named, c->id,
                    (long long)c->number, branch);
    if (r && r != -ENOENT)
        return fail(err, PACKAGES_ERROR, "cannot read the tags");
    struct store_package holder;
    r = store_package_find_pending(app->id, tag, c->id, &holder);
    if (r && r != -ENOENT)
        return fail(err, PACKAGES_ERROR, "cannot list packages");
    if (!r)
        return fail(err, PACKAGES_TAG_EXISTS,
                    "build %s (%s) will put the tag '%s' on commit %s (revision %lld of "
                    "'%.60s'); this build would put it on commit %s (revision %lld of "
                    "'%.60s'): a tag names one commit, choose another Version",
                    holder.package_id, store_pkg_status_name(holder.status), tag, holder.revision,
                    (long long)holder.revision_number, holder.branch, c->id, (long long)c->number,
                    branch);
    return PACKAGES_OK;
}

int packages_queue(const struct store_app *app, struct vcs_repo *repo,
                   const struct packages_build *b, struct store_package *out,
                   struct packages_error *err)
{
    struct vcs_commit c = {0};
    const char *why = "builds are refused: the build engine is not running";
    int r = packages_build_check(b, err);
    if (r)
        return r;
    r = vcs_revision_find(repo, b->branch, b->revision, &c);
    if (r == -ENOENT) {
        r = fail(err, PACKAGES_REVISION_NOT_FOUND,
                 "branch '%.255s' has no revision '%.64s' (a revision Number or a commit hash "
                 "on the branch)",
                 b->branch, b->revision);
        goto out;
    }
    if (r) {
        r = fail(err, PACKAGES_ERROR, "cannot read the revision");
        goto out;
    }
    if (!builder.can_build || !builder.can_build(&why)) {
        r = fail(err, PACKAGES_REFUSED, "%s", why);
        goto out;
    }
    struct store_package p = {.app = app->id, .status = PKG_QUEUED};
    snprintf(p.app_id, sizeof(p.app_id), "%s", app->app_id);
    snprintf(p.version, sizeof(p.version), "%s.%lld", b->version, (long long)c.number);
    snprintf(p.branch, sizeof(p.branch), "%s", b->branch);
    snprintf(p.revision, sizeof(p.revision), "%s", c.id);
    p.revision_number = c.number;
    snprintf(p.description, sizeof(p.description), "%s", b->description ? b->description : "");
    snprintf(p.creator, sizeof(p.creator), "%s", b->creator);
    snprintf(p.name, sizeof(p.name), "%s-%s.tar.zst", b->branch, p.version);
    for (char *s = p.name; *s; s++)
        if (*s == '/')
            *s = '-';
    pthread_mutex_lock(&queue_lock);
    r = tag_check(app, repo, &c, b->branch, p.version, err);
    if (!r && (crypto_uuid(p.package_id) || store_package_insert(&p)))
        r = fail(err, PACKAGES_ERROR, "cannot queue the build");
    pthread_mutex_unlock(&queue_lock);
    if (r)
        goto out;
    if (builder.wake)
        builder.wake();
    *out = p;
out:
    vcs_commit_release(&c);
    return r;
}

int packages_cancel(const struct store_package *p, struct packages_error *err)
{
    int r = store_package_cancel(p->package_id);
    if (r == -ENOENT)
        return fail(err, PACKAGES_NOT_FOUND, "Package or build job not found");
    if (r == -EALREADY)
        return fail(err, PACKAGES_ENDED, "the build has ended already (%s)",
                    store_pkg_status_name(p->status));
    if (r)
        return fail(err, PACKAGES_ERROR, "cannot cancel the build");
    if (builder.wake)
        builder.wake();
    return PACKAGES_OK;
}

/* ---- importing an uploaded package ---- */

int packages_name_check(const char *name, struct packages_error *err)
{
    size_t len = name ? strlen(name) : 0;
    bool ok = len >= 1 && len <= STORE_NAME_MAX;
    for (const unsigned char *s = (const unsigned char *)name; ok && *s; s++)
        ok = *s >= 0x20 && *s != 0x7f && *s != '"' && *s != '/' && *s != '\\';
    json_t *utf8 = ok ? json_string(name) : NULL; /* jansson refuses invalid UTF-8 */
    json_decref(utf8);
    if (!utf8)
        return fail(err, PACKAGES_INVALID,
                    "the name must be 1 to %d bytes of UTF-8 without control characters, quotes, "
                    "slashes or backslashes",
                    STORE_NAME_MAX);
    return PACKAGES_OK;
}

/* The version the manifest states, when it is a plausible version string; else 0.0.0.0. */
static void manifest_version(json_t *manifest, char out[STORE_VERSION_MAX + 1])
{
    const char *v = json_string_value(json_object_get(manifest, "version"));
    size_t len = v ? strlen(v) : 0;
    bool ok =
        len >= 1 && len <= STORE_VERSION_MAX &&
        strspn(v, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.+-_") == len;
    snprintf(out, STORE_VERSION_MAX + 1, "%s", ok ? v : DEFAULT_VERSION);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* Copies fd (from offset 0) into a temp file next to dest, fsyncs it and renames it to dest. */
static int copy_to(int fd, const char *dest)
{
    char *tmp = NULL, *buf = NULL;
    int out = -1, r = -ENOMEM;
    if (asprintf(&tmp, "%s.tmp.XXXXXX", dest) < 0) {
        tmp = NULL;
        goto out;
    }
    if (!(buf = malloc(COPY_BUF)))
        goto out;
    if ((out = mkostemp(tmp, O_CLOEXEC)) < 0) {
        r = -errno;
        goto out;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        r = -errno;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        if ((r = fd_write_all(out, buf, (size_t)n)))
            goto out;
    }
    if (fsync(out) < 0 || rename(tmp, dest) < 0) {
        r = -errno;
        goto out;
    }
    r = 0;
out:
    if (out >= 0) {
        close(out);
        if (r)
            unlink(tmp);
    }
    free(tmp);
    free(buf);
    return r;
}

/* Puts the file of fd at dest (in dir) atomically: linked when it can be (same file system),
 * else copied; then the directory is fsynced. dest must not exist. */
static int place_file(int fd, const char *dir, const char *dest)
{
    char proc[64];
    int r = fs_mkdirs(dir, 0700);
    if (r)
        return r;
    if (fsync(fd) < 0)
        return -errno;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, dest, AT_SYMLINK_FOLLOW) < 0) {
        if (errno == EEXIST)
            return -EEXIST;
        if ((r = copy_to(fd, dest)))
            return r;
    }
    return fsync_dir(dir);
}

/* Records the job (and, when pkg is not NULL, the package) in one transaction. */
static int record(struct store_package *pkg, struct store_job *job)
{
    int r = store_begin();
    if (r)
        return r;
    if ((pkg && (r = store_package_insert(pkg))) || (r = store_job_insert(job))) {
        store_rollback();
        return r;
    }
    return store_commit();
}

int packages_import(const struct store_app *app, const struct packages_upload *up,
                    struct store_package *pkg, struct store_job *job, struct packages_error *err)
{
    json_t *manifest = NULL;
    char *dir = NULL, *dest = NULL;
    char why[STORE_REASON_MAX] = "";
    int r = packages_name_check(up->name, err);
    if (r)
        return r;
    *pkg = (struct store_package){.upload = true, .status = PKG_SUCCEEDED, .app = app->id};
    *job = (struct store_job){.kind = "upload", .app = app->id};
    if (crypto_uuid(pkg->package_id) || crypto_uuid(job->job_id))
        return fail(err, PACKAGES_ERROR, "cannot make an id");
    snprintf(pkg->app_id, sizeof(pkg->app_id), "%s", app->app_id);
    snprintf(job->package_id, sizeof(job->package_id), "%s", pkg->package_id);
    r = lseek(up->fd, 0, SEEK_SET) < 0
            ? -errno
            : package_validate(up->fd, NULL, &manifest, why, sizeof(why));
    str_utf8_fix(why); /* entry names may be anything; the message may cut a character */
    if (r == -EINVAL || r == -EFBIG) {
        /* the client's package is at fault: a Failed job says why */
        job->status = JOB_FAILED;
        snprintf(job->reason, sizeof(job->reason), "%s", why);
        r = record(NULL, job) ? fail(err, PACKAGES_ERROR, "cannot record the upload")
                              : fail(err, PACKAGES_INVALID_PACKAGE, "%s", why);
        goto out;
    }
    if (r) {
        r = fail(err, PACKAGES_UNREADABLE, "cannot validate: %s", why[0] ? why : strerror(-r));
        goto out;
    }
    snprintf(pkg->sha256, sizeof(pkg->sha256), "%s", up->sha256);
    pkg->size = (int64_t)up->size;
    snprintf(pkg->name, sizeof(pkg->name), "%s", up->name);
    snprintf(pkg->creator, sizeof(pkg->creator), "%s", up->creator);
    manifest_version(manifest, pkg->version);
    job->status = JOB_COMPLETED;
    if (!(dir = layout_package_dir(app->app_id)) ||
        !(dest = layout_package_path(app->app_id, pkg->package_id))) {
        r = fail(err, PACKAGES_UNSTORED, "cannot store the package: %s", strerror(errno));
        goto out;
    }
    if ((r = place_file(up->fd, dir, dest))) {
        r = fail(err, PACKAGES_UNSTORED, "cannot store the package: %s", strerror(-r));
        goto out;
    }
    if (record(pkg, job)) {
        unlink(dest);
        r = fail(err, PACKAGES_ERROR, "cannot record the upload");
        goto out;
    }
    r = PACKAGES_OK;
out:
    json_decref(manifest);
    free(dir);
    free(dest);
    return r;
}

/* ---- finding, deleting, retention ---- */

int packages_find(const struct store_app *app, const char *package_id, struct store_package *out,
                  struct packages_error *err)
{
    struct store_package p;
    int r = strlen(package_id) == CRYPTO_UUID_LEN - 1 ? store_package_get(package_id, &p) : -ENOENT;
    if (!r && p.app != app->id)
        r = -ENOENT;
    if (r == -ENOENT)
        return fail(err, PACKAGES_NOT_FOUND, "Package or build job not found");
    if (r)
        return fail(err, PACKAGES_ERROR, "cannot read the package");
    *out = p;
    return PACKAGES_OK;
}

char *packages_file_path(const struct store_package *p)
{
    return layout_package_path(p->app_id, p->package_id);
}

char *packages_log_path(const struct store_package *p)
{
    return layout_build_log_path(p->package_id);
}

int packages_delete(const struct store_package *p, struct packages_error *err)
{
    if (store_package_in_use(p->package_id))
        return fail(err, PACKAGES_IN_USE, "an environment holds this package");
    if (p->status == PKG_QUEUED || p->status == PKG_BUILDING)
        return fail(err, PACKAGES_BUILDING, "the package is still building: cancel it first");
    /* the statement checks again: a deployment may have taken it since */
    int r = store_package_delete_unused(p->id);
    if (r == -EBUSY)
        return fail(err, PACKAGES_IN_USE, "an environment holds this package");
    if (r == -ENOENT)
        return fail(err, PACKAGES_NOT_FOUND, "Package or build job not found");
    if (r)
        return fail(err, PACKAGES_ERROR, "cannot delete the package");
    char *path = packages_file_path(p), *log = packages_log_path(p);
    if (path)
        unlink(path);
    if (log)
        unlink(log);
    free(path);
    free(log);
    return PACKAGES_OK;
}

struct prune_list {
    struct store_package *item;
    size_t nr, alloc;
};

static int prune_collect(const struct store_package *p, void *arg)
{
    struct prune_list *l = arg;
    if (l->nr == l->alloc) {
        size_t n = l->alloc ? 2 * l->alloc : 16;
        struct store_package *grown = realloc(l->item, n * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        l->item = grown;
        l->alloc = n;
    }
    l->item[l->nr++] = *p;
    return 0;
}

unsigned packages_prune(int64_t app, const char *app_id, unsigned keep)
{
    struct prune_list l = {0};
    struct packages_error err;
    unsigned deleted = 0;
    if (!keep)
        return 0;
    /* listed first, deleted after: a delete's statement checks again that nothing holds it */
    if (store_package_each_prunable(app, keep, prune_collect, &l))
        log_error("retention: cannot list the old packages of app '%s'", app_id);
    for (size_t i = 0; i < l.nr; i++) {
        int r = packages_delete(&l.item[i], &err);
        if (r == PACKAGES_IN_USE || r == PACKAGES_NOT_FOUND) /* held or deleted since listed */
            continue;
        if (r) {
            log_error("retention: cannot delete package %s of app '%s': %s", l.item[i].package_id,
                      app_id, err.message);
            continue;
        }
        deleted++;
        log_info("retention: deleted package %s of app '%s' (--keep-packages %u)",
                 l.item[i].package_id, app_id, keep);
    }
    free(l.item);
    return deleted;
}
