/* backups — snapshots of environments (Mendix's Backups API v1 and v2): take one, download its
 * parts, restore one into a stopped environment of the same app, and delete them when they
 * expire.
 *
 * A snapshot is ONE file, layout_snapshot_path(AppId, Mode, SnapshotId): a tar (pax) compressed
 * with zstd holding the environment's data directory under `files/` (directories, regular files
 * and symlinks, with their modes and mtimes; sockets and FIFOs are left out) and, when the
 * environment has a database (its package asks for one with run.database and PostgreSQL is
 * available), its dump as `database.dump` (pg_dump's custom format: one transaction). It is
 * written under a temporary name beside it (`<file>.tmp-<uuid>`), fsynced and renamed: a
 * snapshot file is complete or absent.
 *
 * Consistency: when the environment runs, its instances are frozen (cgroup v2 `cgroup.freeze` of
 * each instance's group) for the time of the files' copy, then thawed, then the database is
 * dumped. Without cgroups the files are copied while the app runs (the server log says so).
 *
 * The calls below run on HTTP threads: they check, write a queued row (the database is the
 * queue) and wake the engine, whose owner "backups" (backups.c) claims the rows one at a time and
 * does the work on a worker thread: queued -> running -> completed | failed. A server that stops
 * (or dies) meanwhile: at its next start, what was running is failed with a reason, and
 * temporary files and directories are removed. Expired snapshots (created + the retention,
 * deploy_config.snapshot_retention_ms) are deleted, file and row, at the start and then at the
 * soonest expiry or hourly.
 *
 * Restore: into a stopped environment (status not Running, not wanted running) of the same app.
 * The files are extracted into a directory beside the data directory (every entry created with
 * *at() calls that never follow a symlink, nothing outside it; owned by the target
 * environment's uid when the server is root), the database (when the snapshot has one) is
 * restored with database_restore (a failed restore leaves it as it was), and then the new data
 * directory takes the old one's place in one rename (RENAME_EXCHANGE). db_only restores only the
 * database.
 */
#ifndef SLIPWAY_DEPLOY_BACKUPS_H
#define SLIPWAY_DEPLOY_BACKUPS_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

#define BACKUPS_URL_TTL_S (8 * 3600) /* download links, from when they are handed out */

enum backups_err {
    BACKUPS_OK,
    BACKUPS_E_INVALID,     /* a bad input */
    BACKUPS_E_NOT_FOUND,   /* no such snapshot (of this app / environment) */
    BACKUPS_E_NOT_STOPPED, /* the target environment runs */
    BACKUPS_E_BUSY,        /* a restore into the environment is queued or running already */
    BACKUPS_E_STATE,       /* the snapshot is not completed, or holds no package's environment */
    BACKUPS_E_INTERNAL,
};
struct backups_error {
    enum backups_err kind;
    char message[512];
};

/* Queues a snapshot of env (comment: valid UTF-8, at most STORE_COMMENT_MAX bytes): *out is its
 * row (queued). The environment must hold a package. 0, or -1 with err. */
int backups_snapshot_queue(const struct store_env *env, const char *comment,
                           struct store_snapshot *out, struct backups_error *err);
/* Deletes an ended snapshot, its file and its archives. 0, or -1 with err (BACKUPS_E_STATE:
 * still being taken, or a restore reads it). */
int backups_snapshot_delete(const struct store_snapshot *s, struct backups_error *err);
/* Queues an archive of a completed snapshot: data_type "database_only" (the snapshot must hold
 * a database) or "files_and_database". 0, or -1 with err. */
int backups_archive_queue(const struct store_snapshot *s, const char *data_type,
                          struct store_archive *out, struct backups_error *err);
/* Queues a restore of completed snapshot s (of target's app) into target, which must be
 * stopped. 0, or -1 with err. */
int backups_restore_queue(const struct store_env *target, const struct store_snapshot *s,
                          bool db_only, struct store_restore *out, struct backups_error *err);

/* What a download holds: the files (a .tar.gz of the data directory), the database dump, or the
 * whole snapshot file. */
enum backups_part { BACKUPS_FILES, BACKUPS_DATABASE, BACKUPS_ALL };
/* Writes that part of completed snapshot s to out_fd (borrowed; BACKUPS_ALL: a copy of the
 * file). Blocks for as long as it takes to read the snapshot. 0, or -1 with err
 * (BACKUPS_E_STATE: the snapshot holds no database). */
int backups_export(const struct store_snapshot *s, enum backups_part part, int out_fd,
                   struct backups_error *err);
/* The snapshot's file (caller frees), or NULL. */
char *backups_snapshot_path(const struct store_snapshot *s);

#endif
