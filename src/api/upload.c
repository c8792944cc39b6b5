/* api — package uploads (Deploy API v1 and v2): POST /api/{1,v2}/apps/<AppId>/packages/upload
 * with a multipart/form-data body whose part `file` is a package, and the v2 job status
 * GET /api/v2/apps/<AppId>/jobs/<JobId>.
 *
 * The body is spooled to DIR/tmp by http/ (at most --max-upload bytes); the part `file` is copied
 * from it into a second unnamed temp file there (hashed on the way), checked with
 * package_validate, and, when valid, linked (or copied) to DIR/packages/<AppId>/<PackageId>.tar.zst
 * and recorded as a Succeeded package with source 'upload', so it lists and downloads like a
 * built one. An invalid package is not kept. All of it happens within the request: the job is
 * written once, Completed or Failed, before the answer, so clients never see Queued or Running.
 * A large upload holds its worker thread while it is validated (it reads the whole package).
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_int.h"
#include "base/crypto.h"
#include "base/log.h"
#include "base/util.h"
#include "builder/package.h"
#include "builder/runner.h"
#include "http/multipart.h"
#include "base/banned.h"

#define DEFAULT_NAME    "default.mda"
#define DEFAULT_VERSION "0.0.0.0"
#define COPY_BUF        (256 * 1024)

/* The part `file`, copied into an unnamed temp file and hashed (libsodium's streaming SHA-256:
 * base/crypto has one-shot hashes only). */
struct upload_file {
    int fd;
    int err; /* -errno of the first failed write */
    uint64_t size;
    crypto_hash_sha256_state sha;
};

static int file_sink(void *arg, const void *data, size_t len)
{
    struct upload_file *f = arg;
    if ((f->err = fd_write_all(f->fd, data, len)))
        return f->err;
    crypto_hash_sha256_update(&f->sha, data, len);
    f->size += len;
    return 0;
}

/* The length of the valid UTF-8 sequence at p, or 0 when it is not one. Never reads past a NUL. */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned c = p[0], cp, min;
    size_t n;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        n = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        n = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        n = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : n;
}

/* Makes a message fit for JSON: bytes that are not valid UTF-8 (a package's entry names may be
 * anything, and a message may be cut inside a character) become '?', in place. */
static void utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = utf8_seq(p);
        if (n) {
            p += n;
        } else {
            *p++ = '?';
        }
    }
}

/* The package name of the query (?name=, default default.mda): 1 to STORE_NAME_MAX bytes of
 * UTF-8 without control characters, quotes, slashes or backslashes (it becomes the download's
 * file name). 0 and *out (caller frees), or -EINVAL. */
static int name_param(const struct http_request *req, char **out)
{
    char *name = http_query(req, "name");
    if (!name)
        name = strdup(DEFAULT_NAME);
    if (!name)
        return -ENOMEM;
    size_t len = strlen(name);
    bool ok = len >= 1 && len <= STORE_NAME_MAX;
    for (const unsigned char *s = (const unsigned char *)name; ok && *s; s++)
        ok = *s >= 0x20 && *s != 0x7f && *s != '"' && *s != '/' && *s != '\\';
    json_t *utf8 = ok ? json_string(name) : NULL; /* jansson refuses invalid UTF-8 */
    json_decref(utf8);
    if (!utf8) {
        free(name);
        return -EINVAL;
    }
    *out = name;
    return 0;
}

/* The version the manifest states, when it is a plausible version string; else 0.0.0.0. An
 * uploaded package's other manifest fields (branch, revision) are claims nobody checked, and are
 * not recorded. */
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

/* Puts the temp file fd at dest atomically: linked when it can be (same file system), else
 * copied; then the directory is fsynced. dest must not exist. */
static int place_file(int fd, const char *dest)
{
    char *dir = strndup(dest, (size_t)(strrchr(dest, '/') - dest));
    char proc[64];
    int r = -ENOMEM;
    if (!dir || (r = fs_mkdirs(dir, 0700)))
        goto out;
    if (fsync(fd) < 0) {
        r = -errno;
        goto out;
    }
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, dest, AT_SYMLINK_FOLLOW) < 0) {
        if (errno == EEXIST) {
            r = -EEXIST;
            goto out;
        }
        if ((r = copy_to(fd, dest)))
            goto out;
    }
    r = fsync_dir(dir);
out:
    free(dir);
    return r;
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

static void upload(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller, bool v1)
{
    const struct store_app app = caller->app;
    const struct auth_principal *who = &caller->who;
    struct upload_file f = {.fd = -1};
    struct store_package pkg = {.upload = true, .status = PKG_SUCCEEDED};
    struct store_job job = {.kind = "upload"};
    json_t *manifest = NULL;
    char *name = NULL, *dest = NULL, *tmp_dir = NULL;
    /* err fits api_fail's message (512 bytes) and a job's reason uncut */
    char err[STORE_REASON_MAX] = "", detail[STORE_REASON_MAX + 256];
    int r;
    bool refused = false; /* a v2 answer of 200 for a package that was refused */
    r = name_param(req, &name);
    if (r) {
        api_fail(req, res, r == -ENOMEM ? 500 : 400,
                 r == -ENOMEM ? "INTERNAL_ERROR" : "INVALID_PARAMETERS",
                 "the name must be 1 to %d bytes of UTF-8 without control characters, quotes, "
                 "slashes or backslashes",
                 STORE_NAME_MAX);
        snprintf(detail, sizeof(detail), "invalid name");
        goto out;
    }
    if (asprintf(&tmp_dir, "%s/tmp", api_cfg.data_dir) < 0) {
        tmp_dir = NULL;
        api_fail(req, res, 500, "INTERNAL_ERROR", "out of memory");
        snprintf(detail, sizeof(detail), "out of memory");
        goto out;
    }
    f.fd = open(tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (f.fd < 0) {
        log_error("cannot create a temp file in '%s': %s", tmp_dir, strerror(errno));
        api_fail(req, res, 500, "UPLOAD_COPY_FAILED", "cannot store the upload");
        snprintf(detail, sizeof(detail), "cannot create a temp file: %s", strerror(errno));
        goto out;
    }
    crypto_hash_sha256_init(&f.sha);
    r = http_multipart_read(req, "file", file_sink, &f, NULL, err, sizeof(err));
    if (r == -ECANCELED || r == -EIO || r == -ENOMEM) {
        const char *why = r == -ECANCELED ? strerror(-f.err) : err;
        log_error("cannot store an upload for '%s': %s", app.app_id, why);
        api_fail(req, res, 500, "UPLOAD_COPY_FAILED", "cannot store the upload");
        snprintf(detail, sizeof(detail), "cannot store the upload: %s", why);
        goto out;
    }
    if (r) {
        api_fail(req, res, 400, "INVALID_PARAMETERS", "%s", err);
        snprintf(detail, sizeof(detail), "%s", err);
        goto out;
    }

    if (crypto_uuid(pkg.package_id) || crypto_uuid(job.job_id)) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot make an id");
        snprintf(detail, sizeof(detail), "cannot make an id");
        goto out;
    }
    job.app = app.id;
    snprintf(job.package_id, sizeof(job.package_id), "%s", pkg.package_id);
    r = lseek(f.fd, 0, SEEK_SET) < 0 ? -errno
                                     : package_validate(f.fd, NULL, &manifest, err, sizeof(err));
    utf8_fix(err);
    if (r == -EINVAL || r == -EFBIG) {
        /* the client's package is at fault: a Failed job, and for v1 (synchronous at Mendix
         * too) an error answer */
        job.status = JOB_FAILED;
        snprintf(job.reason, sizeof(job.reason), "%s", err);
        int rr = record(NULL, &job);
        snprintf(detail, sizeof(detail), "job=%s invalid package: %.300s", job.job_id, err);
        if (rr) {
            api_fail(req, res, 500, "INTERNAL_ERROR", "cannot record the upload");
        } else if (v1) {
            api_fail(req, res, 400, "INVALID_PACKAGE", "%s", err);
        } else {
            refused = true;
            api_json(res, 200,
                     json_pack("{s:s,s:s}", "PackageId", pkg.package_id, "JobId", job.job_id));
        }
        goto out;
    }
    if (r) {
        log_error("cannot validate an upload for '%s': %s", app.app_id,
                  err[0] ? err : strerror(-r));
        api_fail(req, res, 500, "UPLOAD_COPY_FAILED", "cannot read the uploaded package");
        snprintf(detail, sizeof(detail), "cannot validate: %s", err[0] ? err : strerror(-r));
        goto out;
    }

    unsigned char md[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&f.sha, md);
    hex_encode(md, sizeof(md), pkg.sha256);
    pkg.app = app.id;
    pkg.size = (int64_t)f.size;
    snprintf(pkg.name, sizeof(pkg.name), "%s", name);
    snprintf(pkg.creator, sizeof(pkg.creator), "%s", who->user.name);
    manifest_version(manifest, pkg.version);
    job.status = JOB_COMPLETED;
    dest = runner_package_path(api_cfg.data_dir, app.app_id, pkg.package_id);
    if (!dest || (r = place_file(f.fd, dest))) {
        log_error("cannot store the package '%s': %s", dest ? dest : "?",
                  strerror(dest ? -r : ENOMEM));
        api_fail(req, res, 500, "UPLOAD_COPY_FAILED", "cannot store the package");
        snprintf(detail, sizeof(detail), "cannot store the package: %s",
                 strerror(dest ? -r : ENOMEM));
        goto out;
    }
    if (record(&pkg, &job)) {
        unlink(dest);
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot record the upload");
        snprintf(detail, sizeof(detail), "cannot record the upload");
        goto out;
    }
    snprintf(detail, sizeof(detail), "package=%s job=%s version=%s size=%lld sha256=%s",
             pkg.package_id, job.job_id, pkg.version, (long long)pkg.size, pkg.sha256);
    api_json(res, 200, json_pack("{s:s,s:s}", "PackageId", pkg.package_id, "JobId", job.job_id));
out:
    /* the audit tells the upload's outcome: a refused package is an error in v2 too */
    api_audit(req, who->user.email, "package upload", app.app_id, "", refused ? 400 : res->status,
              detail);
    json_decref(manifest);
    if (f.fd >= 0)
        close(f.fd);
    free(name);
    free(dest);
    free(tmp_dir);
}

void api_upload_v1(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    upload(req, res, caller, true);
}

void api_upload_v2(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    upload(req, res, caller, false);
}

void api_upload_job_get(struct http_request *req, struct http_response *res,
                        const struct api_caller *caller)
{
    const struct store_app app = caller->app;
    struct store_job job;
    int r = strlen(req->params[1]) == CRYPTO_UUID_LEN - 1 ? store_job_get(req->params[1], &job)
                                                          : -ENOENT;
    if (!r && job.app != app.id)
        r = -ENOENT;
    if (r == -ENOENT) {
        /* the id is not echoed: it may be any bytes, and the answer must be UTF-8 */
        api_fail(req, res, 404, "JOB_NOT_FOUND", "app '%s' has no such job", app.app_id);
        return;
    }
    if (r) {
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot read the job");
        return;
    }
    json_t *j = json_pack("{s:s}", "Status", store_job_status_name(job.status));
    if (job.status == JOB_FAILED)
        json_object_set_new(j, "Reason", api_text(job.reason));
    api_json(res, 200, j);
}
