/* packages — an app's packages as its users see them, built or uploaded: queueing a build,
 * importing an uploaded package, finding one with its files, cancelling a build, deleting a
 * package with its files, and retention. (package.h is the file format; runner.h runs builds.)
 *
 * The rules live here, once, whoever calls: the API (which only turns HTTP into these calls and
 * their results into answers), the build engine (retention), and later the transport of a
 * package to an environment (packages_find, then the file at packages_file_path).
 *
 * Results: each function returns an enum packages_result, PACKAGES_OK (0) on success, and on
 * failure fills err->message with a sentence for a person (lowercase, the subject quoted; it
 * names nothing local: no paths). No HTTP statuses: the caller maps outcomes to its own answers.
 * Nothing here logs, except packages_prune, which runs where nobody else would.
 *
 * Files: a package's file is layout_package_path(AppId, PackageId) and its build log
 * layout_build_log_path(PackageId) (base/layout.h).
 */
#ifndef SLIPWAY_BUILDER_PACKAGES_H
#define SLIPWAY_BUILDER_PACKAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"
#include "vcs/vcs.h"

enum packages_result {
    PACKAGES_OK = 0,
    PACKAGES_INVALID,            /* a field breaks its rule (a Description, a Name too long) */
    PACKAGES_INVALID_VERSION,    /* a Version that is not major.minor.patch */
    PACKAGES_REVISION_NOT_FOUND, /* the branch has no such revision */
    PACKAGES_REFUSED,            /* builds cannot run on this server; the message says why */
    PACKAGES_TAG_EXISTS,         /* the version tag names (or will name) another commit */
    PACKAGES_NOT_FOUND,          /* no such package (in this app) */
    PACKAGES_IN_USE,             /* an environment holds the package */
    PACKAGES_BUILDING,           /* the package is Queued or Building: cancel it first */
    PACKAGES_ENDED,              /* a cancel of a build that has ended */
    PACKAGES_INVALID_PACKAGE,    /* an upload that is not a valid package (a Failed job is kept) */
    PACKAGES_UNREADABLE,         /* an upload that could not be read back (I/O, not its content) */
    PACKAGES_UNSTORED,           /* an upload that could not be stored (disk full, ...) */
    PACKAGES_ERROR,              /* the database or the repository failed */
};

struct packages_error {
    char message[STORE_REASON_MAX];
};

/* Who runs the queued builds: packages_queue asks can_build (why: the reason when false) before
 * it queues, and calls wake after. `slipway serve` sets the build engine's (runner_can_build,
 * runner_wake); until it is set, builds are refused. Set it before the server answers. */
struct packages_builder {
    bool (*can_build)(const char **why);
    void (*wake)(void);
};
void packages_set_builder(const struct packages_builder *builder);

/* ---- queueing a build ---- */

/* A build as a client asks for it. */
struct packages_build {
    const char *branch;      /* a git branch of the app (the API has resolved "trunk" ...) */
    const char *revision;    /* a revision Number, or a commit hash on the branch */
    const char *version;     /* major.minor.patch, each 1 to 9 digits without a leading zero */
    const char *description; /* NULL or "": none; at most STORE_DESC_MAX bytes */
    const char *creator;     /* the user's name */
};

/* The rules of the build's own fields (Version, Description), which need no look-up: so that a
 * caller can refuse a bad request before it looks the branch up. PACKAGES_INVALID_VERSION,
 * PACKAGES_INVALID. */
int packages_build_check(const struct packages_build *b, struct packages_error *err);
/* Queues a build of the app's revision (packages_build_check first): finds the revision on the
 * branch in repo (the app's repository, layout_repo_path), gives the package its Version
 * (<Version>.<revision Number>) and Name (<branch>-<Version>.tar.zst, '/' as '-'), checks that
 * the version tag it will put on the commit names no other commit and that no Queued or
 * Building package of the app will put it on another commit (tags are unique; the same commit
 * is a rebuild, and fine), inserts the Queued row and wakes the builder. Queueing is serialized,
 * so two builds that would tag different commits the same cannot both pass the check.
 * 0 and *out (the package as inserted: package_id, version, name ...); or
 * PACKAGES_INVALID_VERSION, PACKAGES_INVALID, PACKAGES_REVISION_NOT_FOUND, PACKAGES_REFUSED,
 * PACKAGES_TAG_EXISTS, PACKAGES_ERROR. */
int packages_queue(const struct store_app *app, struct vcs_repo *repo,
                   const struct packages_build *b, struct store_package *out,
                   struct packages_error *err);
/* Asks a Queued or Building build to stop (the engine ends it Failed) and wakes the builder.
 * PACKAGES_NOT_FOUND, PACKAGES_ENDED (message: its status), PACKAGES_ERROR. */
int packages_cancel(const struct store_package *p, struct packages_error *err);

/* ---- importing an uploaded package ---- */

/* The rule of an uploaded package's Name (it becomes the download's file name): 1 to
 * STORE_NAME_MAX bytes of UTF-8 without control characters, quotes, slashes or backslashes.
 * PACKAGES_INVALID otherwise. */
int packages_name_check(const char *name, struct packages_error *err);

/* An upload, as the caller received it into a temp file. */
struct packages_upload {
    int fd;              /* the package, read from offset 0 (its offset is moved) */
    uint64_t size;       /* its bytes */
    const char *sha256;  /* their SHA-256, 64 lowercase hex digits (hashed on the way in) */
    const char *name;    /* the Name (packages_name_check) */
    const char *creator; /* the user's name */
};

/* Imports an uploaded package into the app: checks it (package_validate), stores it at its
 * package path (linked from fd's file when it is on the same file system, else copied; fsynced)
 * and records a Succeeded package (source 'upload'; Version from its manifest when plausible,
 * else 0.0.0.0; the manifest's other claims are not recorded) and a Completed "upload" job, in
 * one transaction. An invalid package is not kept: a Failed job is recorded with the reason.
 * *pkg and *job get their ids in both cases (a client polls the job).
 * 0; PACKAGES_INVALID_PACKAGE (err: why, valid UTF-8; the Failed job recorded), PACKAGES_INVALID
 * (a bad Name), PACKAGES_UNREADABLE, PACKAGES_UNSTORED, PACKAGES_ERROR. For the last three, the
 * message is for the operator's log and the audit ("cannot validate: ...", "cannot store the
 * package: ...", "cannot record the upload"). */
int packages_import(const struct store_app *app, const struct packages_upload *up,
                    struct store_package *pkg, struct store_job *job, struct packages_error *err);

/* ---- finding, deleting, retention ---- */

/* The package `package_id` of the app. 0 and *out; PACKAGES_NOT_FOUND (no such id, or another
 * app's: not told apart), PACKAGES_ERROR. */
int packages_find(const struct store_app *app, const char *package_id, struct store_package *out,
                  struct packages_error *err);
/* Its package file and its build log (either may not exist: a Queued build, an upload has no
 * log). Caller frees; NULL when out of memory. */
char *packages_file_path(const struct store_package *p);
char *packages_log_path(const struct store_package *p);

/* Deletes the package and then its files (package file, build log). Refuses a package an
 * environment holds (checked again in the delete's own statement, since a deployment may take it
 * meanwhile) and one that is Queued or Building. 0; PACKAGES_IN_USE, PACKAGES_BUILDING,
 * PACKAGES_NOT_FOUND (deleted meanwhile), PACKAGES_ERROR. */
int packages_delete(const struct store_package *p, struct packages_error *err);
/* Retention, after a build of the app succeeded: keeps the app's newest `keep` ended packages
 * (0: all) and deletes older ones with packages_delete, except those an environment holds.
 * Queued and Building packages never count and never go. Logs each deletion and each failure
 * (it runs on the engine's thread: there is nobody else to tell). The number deleted. */
unsigned packages_prune(int64_t app, const char *app_id, unsigned keep);

#endif
