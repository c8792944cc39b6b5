/* vcs — the apps' git repositories, read through libgit2: create a bare repository, list branches,
 * walk a branch's first-parent history, find version tags.
 *
 * Revision numbers: a commit's Number is the count of commits in its first-parent history,
 * itself included (a root commit is 1). Numbers are cached in memory per repository (keyed by
 * commit id, so a force-push that rewrites history stays correct) and computed incrementally.
 *
 * Repositories are opened through vcs_open(), which keeps one git_repository per thread per path;
 * a handle must not be shared between threads. Pushes by `git http-backend` are seen at once.
 * It knows nothing of HTTP, users or the store.
 */
#ifndef SLIPWAY_VCS_H
#define SLIPWAY_VCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"

#define VCS_OID_HEX 41 /* 40 hex digits + NUL */

struct vcs_repo; /* opaque; owned by the per-thread cache */

struct vcs_commit {
    char id[VCS_OID_HEX];
    int64_t number;     /* first-parent count, see above */
    int64_t time_s;     /* committer time, epoch seconds */
    char *message;      /* full message (malloc'd) */
    char *author_name;  /* malloc'd */
    char *author_email; /* malloc'd */
};

struct vcs_branch {
    char *name; /* short name, e.g. "main" or "feature/x" (malloc'd) */
    struct vcs_commit head;
    char *latest_tagged_version; /* highest version tag on the first-parent history, or "" */
};

/* Frees the contents (not the struct). */
void vcs_commit_release(struct vcs_commit *c);
void vcs_branch_release(struct vcs_branch *b);

/* Process-wide setup and teardown (libgit2 init/shutdown, caches). vcs_open and
 * vcs_repo_create call vcs_init on first use, so an idle server does not pay for libgit2's
 * start-up (OpenSSL through libssh2). Thread-safe. */
int vcs_init(void);
void vcs_shutdown(void);
/* Closes this thread's cached repositories (call before a worker thread ends; optional). */
void vcs_thread_release(void);

/* Creates a bare repository at `path` whose HEAD is refs/heads/<default_branch>.
 * 0, -EEXIST if the path exists, or another negative error. */
int vcs_repo_create(const char *path, const char *default_branch);
/* Opens (or reuses this thread's handle for) the bare repository at `path`. 0, -ENOENT, -EIO. */
int vcs_open(const char *path, struct vcs_repo **out);

/* Lists branches sorted by name; calls fn for each with a filled branch (valid only during the
 * call). A non-zero return from fn stops the walk and is returned. */
int vcs_branch_each(struct vcs_repo *repo, int (*fn)(const struct vcs_branch *, void *), void *arg);
/* Looks up one branch by short name; fills *out (caller releases). 0, -ENOENT, -EIO. */
int vcs_branch_get(struct vcs_repo *repo, const char *name, struct vcs_branch *out);
/* Whether branch `name` exists and points at a commit (a cheap check: no commit is read); when
 * head_id is not NULL it receives the commit id. 0, -ENOENT, or -EIO. */
int vcs_branch_exists(struct vcs_repo *repo, const char *name, char head_id[VCS_OID_HEX]);
/* The object the reference `refname` (full: "refs/heads/main", "refs/tags/v1") points at, after
 * symbolic references: 0 and oid (40 hex digits), -ENOENT (none, or not a valid name), -EIO. */
int vcs_ref_get(struct vcs_repo *repo, const char *refname, char oid[VCS_OID_HEX]);
/* Walks the first-parent history of `branch` newest first, skipping `skip` commits and giving at
 * most `limit`; fn gets each commit (valid only during the call). 0, -ENOENT (no branch), -EIO,
 * or fn's non-zero return. */
int vcs_revision_each(struct vcs_repo *repo, const char *branch, size_t skip, size_t limit,
                      int (*fn)(const struct vcs_commit *, void *), void *arg);
/* As vcs_revision_each, from the commit `head_id` (40 hex digits) instead of a branch's head;
 * -EINVAL for a malformed id, -EIO if the commit is missing. */
int vcs_history_each(struct vcs_repo *repo, const char *head_id, size_t skip, size_t limit,
                     int (*fn)(const struct vcs_commit *, void *), void *arg);
/* Number of branches. */
int vcs_branch_count(struct vcs_repo *repo, size_t *out);

/* Finds a revision of a branch for a build: `revision` is a revision Number of the branch or a
 * commit hash (at least 4 hex digits) on the branch's history. Fills *out (caller releases).
 * 0, -ENOENT (no such branch or revision), or -EIO. */
int vcs_revision_find(struct vcs_repo *repo, const char *branch, const char *revision,
                      struct vcs_commit *out);
/* Reads the file at `path` of a commit into out, refusing files larger than max.
 * 0, -ENOENT (no such file), -EISDIR, -EFBIG, -EINVAL (bad id), -EIO. */
int vcs_file_read(struct vcs_repo *repo, const char *commit_id, const char *path, size_t max,
                  struct strbuf *out);
/* Writes the files of a commit into dest_dir (which exists), without any .git. 0, or -EIO. */
int vcs_export(struct vcs_repo *repo, const char *commit_id, const char *dest_dir);
/* Creates the lightweight tag `name` on a commit. 0, -EEXIST, -EIO. */
int vcs_tag(struct vcs_repo *repo, const char *commit_id, const char *name);
/* Looks up the tag `name` (lightweight or annotated): 0 and commit_id receives the commit it
 * names, or "" when it names no commit (a tree, a blob, a missing object); -ENOENT when there
 * is no such tag; -ENOMEM or -EIO. */
int vcs_tag_lookup(struct vcs_repo *repo, const char *name, char commit_id[VCS_OID_HEX]);

/* True if `name` is a valid git branch short name (git check-ref-format rules). */
bool vcs_branch_name_valid(const char *name);

#endif
