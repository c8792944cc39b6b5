/* api — package uploads (Deploy API v1 and v2): POST /api/{1,v2}/apps/<AppId>/packages/upload
 * with a multipart/form-data body whose part `file` is a package, and the v2 job status
 * GET /api/v2/apps/<AppId>/jobs/<JobId>.
 *
 * The body is spooled to DIR/tmp by http/ (at most --max-upload bytes); the part `file` is copied
 * from it into a second unnamed temp file there (hashed on the way) and handed to
 * packages_import (builder/packages.h), which checks it, stores it at its package path and
 * records it as a Succeeded package with source 'upload', so it lists and downloads like a
 * built one. This file only turns HTTP into that call and its result into the answer and the
 * audit entry. An invalid package is not kept. All of it happens within the request: the job is
 * written once, Completed or Failed, before the answer, so clients never see Queued or Running.
 * A large upload holds its worker thread while it is validated (it reads the whole package).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_int.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/util.h"
#include "builder/packages.h"
#include "http/multipart.h"
#include "base/banned.h"

#define DEFAULT_NAME "default.mda"

/* The part `file`, copied into an unnamed temp file and hashed as it comes. */
struct upload_file {
    int fd;
    int err; /* -errno of the first failed write */
    uint64_t size;
    struct crypto_sha256_ctx *sha;
};

static int file_sink(void *arg, const void *data, size_t len)
{
    struct upload_file *f = arg;
    if ((f->err = fd_write_all(f->fd, data, len)))
        return f->err;
    crypto_sha256_update(f->sha, data, len);
    f->size += len;
    return 0;
}

/* The package name of the query (?name=, default default.mda). 0 and *out (caller frees), or
 * -EINVAL (packages_name_check refuses it; err says why), -ENOMEM. */
static int name_param(const struct http_request *req, char **out, struct packages_error *err)
{
    char *name = http_query(req, "name");
    if (!name)
        name = strdup(DEFAULT_NAME);
    if (!name)
        return -ENOMEM;
    if (packages_name_check(name, err)) {
        free(name);
        return -EINVAL;
    }
    *out = name;
    return 0;
}

static void upload(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller, bool v1)
{
    const struct store_app app = caller->app;
    const struct auth_principal *who = &caller->who;
    struct upload_file f = {.fd = -1};
    struct store_package pkg;
    struct store_job job;
    struct packages_error perr;
    char *name = NULL;
    /* err fits api_fail's message (512 bytes) and a job's reason uncut */
    char err[STORE_REASON_MAX] = "", detail[STORE_REASON_MAX + 256];
    int r;
    bool refused = false; /* a v2 answer of 200 for a package that was refused */
    r = name_param(req, &name, &perr);
    if (r) {
        if (r == -ENOMEM)
            api_fail(req, res, 500, "INTERNAL_ERROR", "out of memory");
        else
            api_fail(req, res, 400, "INVALID_PARAMETERS", "%s", perr.message);
        snprintf(detail, sizeof(detail), "invalid name");
        goto out;
    }
    f.fd = open(layout_tmp_dir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (f.fd < 0) {
        log_error("cannot create a temp file in '%s': %s", layout_tmp_dir(), strerror(errno));
        api_fail(req, res, 500, "UPLOAD_COPY_FAILED", "cannot store the upload");
        snprintf(detail, sizeof(detail), "cannot create a temp file: %s", strerror(errno));
        goto out;
    }
    if (!(f.sha = crypto_sha256_new())) {
        api_fail(req, res, 500, "UPLOAD_COPY_FAILED", "cannot store the upload");
        snprintf(detail, sizeof(detail), "out of memory");
        goto out;
    }
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

    unsigned char md[CRYPTO_SHA256_LEN];
    char sha256[CRYPTO_SHA256_HEX];
    if (crypto_sha256_final(f.sha, md)) {
        api_fail(req, res, 500, "UPLOAD_COPY_FAILED", "cannot hash the upload");
        snprintf(detail, sizeof(detail), "cannot hash the upload");
        goto out;
    }
    hex_encode(md, sizeof(md), sha256);
    struct packages_upload up = {
        .fd = f.fd, .size = f.size, .sha256 = sha256, .name = name, .creator = who->user.name};
    r = packages_import(&app, &up, &pkg, &job, &perr);
    switch (r) {
    case PACKAGES_OK:
        snprintf(detail, sizeof(detail), "package=%s job=%s version=%s size=%lld sha256=%s",
                 pkg.package_id, job.job_id, pkg.version, (long long)pkg.size, pkg.sha256);
        api_json(res, 200,
                 json_pack("{s:s,s:s}", "PackageId", pkg.package_id, "JobId", job.job_id));
        break;
    case PACKAGES_INVALID_PACKAGE:
        /* the client's package is at fault: a Failed job, and for v1 (synchronous at Mendix
         * too) an error answer */
        snprintf(detail, sizeof(detail), "job=%s invalid package: %.300s", job.job_id,
                 perr.message);
        if (v1) {
            api_fail(req, res, 400, "INVALID_PACKAGE", "%s", perr.message);
        } else {
            refused = true;
            api_json(res, 200,
                     json_pack("{s:s,s:s}", "PackageId", pkg.package_id, "JobId", job.job_id));
        }
        break;
    case PACKAGES_INVALID:
        api_fail(req, res, 400, "INVALID_PARAMETERS", "%s", perr.message);
        snprintf(detail, sizeof(detail), "invalid name");
        break;
    case PACKAGES_UNREADABLE:
    case PACKAGES_UNSTORED:
        log_error("cannot import an upload for '%s': %s", app.app_id, perr.message);
        api_fail(req, res, 500, "UPLOAD_COPY_FAILED",
                 r == PACKAGES_UNREADABLE ? "cannot read the uploaded package"
                                          : "cannot store the package");
        snprintf(detail, sizeof(detail), "%s", perr.message);
        break;
    default:
        api_fail(req, res, 500, "INTERNAL_ERROR", "%s", perr.message);
        snprintf(detail, sizeof(detail), "%s", perr.message);
        break;
    }
out:
    /* the audit tells the upload's outcome: a refused package is an error in v2 too */
    api_audit(req, who->user.email, "package upload", app.app_id, "", refused ? 400 : res->status,
              detail);
    if (f.fd >= 0)
        close(f.fd);
    crypto_sha256_free(f.sha);
    free(name);
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
