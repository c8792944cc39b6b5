/* layout — the data directory: every path under it, composed here and nowhere else.
 *
 * The server (`slipway serve`) and `slipway admin` call layout_init() once with --data; every
 * other module asks this one for the paths it needs. Paths are absolute (the data directory is
 * resolved once, symlinks included): the builds' sandboxes and the git processes are recognised
 * after a crash by the paths on their command lines and in their environments.
 *
 * What lives where, and who owns it ("owner: writes it; readers"):
 *
 *   DIR/                              the data directory, 0700 (serve makes it)
 *   DIR/lock                          serve: an exclusive flock for the server's life (layout_lock)
 *   DIR/secret                        serve: 32 random bytes, 0600, made on the first start;
 *                                     read once (layout_secret_load), handed out from memory
 *                                     (layout_secret): it signs download URLs
 *   DIR/slipway.db (-wal, -shm)       store: the SQLite database
 *   DIR/tmp/                          http: spooled request bodies; api/upload: the uploaded
 *                                     package, an unnamed (O_TMPFILE) file until it is kept
 *   DIR/repos/<AppId>.git             admin makes it, git http-backend writes (pushes), vcs reads;
 *                                     everything under it is git's
 *   DIR/packages/<AppId>/<PackageId>.tar.zst
 *                                     builder: the runner writes a built one, builder/packages
 *                                     stores an uploaded one and deletes (API, retention); api
 *                                     downloads; the runner removes what no package owns at start
 *   DIR/logs/builds/<PackageId>.log   builder/runner writes; api reads and follows;
 *                                     builder/packages deletes it with its package
 *   DIR/builds/                       builder/runner, 0700: emptied at each start
 *   DIR/builds/run/                   builder/runner, 0711: bound at /mnt in the sandboxes' mount
 *                                     namespace
 *   DIR/builds/run/<name>             one build's root (<PackageId>) or an executor's
 *                                     (exec-<server pid>-<n>), and steps.seccomp; what is
 *                                     inside (ws/, tmp/, slipway/) is the runner's business
 *
 *   DIR/releases/<AppId>/<PackageId>/ deploy: a transported package, unpacked once (validated)
 *                                     and never changed; shared by the environments that run
 *                                     it; removed when no environment holds the package
 *   DIR/envs/<AppId>/<Mode>/          deploy, 0711: one environment
 *   DIR/envs/<AppId>/<Mode>/data/     the environment's persistent data ($DATA_DIR), owned by
 *                                     its instances' uid, 0700; what snapshots hold
 *   DIR/envs/<AppId>/<Mode>/logs/     app-YYYY-MM-DD.log (the instance launcher writes)
 *   DIR/envs/<AppId>/<Mode>/access/   access-YYYY-MM-DD.log (nginx writes, as the router's user)
 *   DIR/router/                       deploy/router: nginx's configuration, pid, temp files
 *   DIR/database/                     deploy/database: the PostgreSQL cluster of the
 *                                     environments that ask for one (owned by its user)
 *   DIR/snapshots/<AppId>/<Mode>/<SnapshotId>.tar.zst
 *                                     deploy: backups of an environment (data and database)
 *
 * DIR, DIR/releases, DIR/envs and the directories of one app or environment in them are 0711:
 * an instance (its own uid) passes through to its release and its data, and lists nothing. A new
 * path is added here, with its line above, before any module uses it.
 *
 * Names given to the functions below (AppIds, PackageIds, build root names) must be one path
 * component: not empty, no '/', not starting with '.'; anything else gives NULL with errno
 * EINVAL, so that no caller's input can name a path outside its directory.
 *
 * Not thread-safe to init or release; every other function may be called from any thread after
 * layout_init().
 */
#ifndef SLIPWAY_BASE_LAYOUT_H
#define SLIPWAY_BASE_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>

#define LAYOUT_SECRET_LEN 32
#define LAYOUT_ID_LEN     37 /* a PackageId (a UUID) and its NUL, as CRYPTO_UUID_LEN */

/* Takes the data directory, which must exist: resolves its absolute path and composes the fixed
 * paths below. 0, or -errno (-ENOENT: no such directory). Calling it again replaces the old. */
int layout_init(const char *data_dir);
/* Forgets the paths and wipes the secret from memory (the lock, if taken, stays held). */
void layout_release(void);
/* Where layout_reachable() binds a data directory that other users cannot reach. */
#define LAYOUT_REACH_DIR "/run/slipway"
/* For a root server: app instances, nginx and PostgreSQL run as users of their own and must
 * pass through the directories above DIR. When one does not let other users pass (a checkout
 * under /root), DIR is bound (a bind mount, made once) at LAYOUT_REACH_DIR/slipway-<16 hex
 * digits of the SHA-256 of its real path>, and every path is composed from there from now on;
 * said tells (else ""). Nothing to do when not root, or when every directory above lets others
 * pass. 0, or -errno (then nothing changed). */
int layout_reachable(char *said, size_t cap);
/* Removes layout_reachable's bind mount (lazily: open files and working directories in it go on
 * working), at a stop that leaves nothing running which reaches the data directory through it.
 * The paths stay as they are: call it last. Nothing to do without one. */
void layout_reach_end(void);
/* Makes the directories the server needs from its start (DIR/repos, DIR/tmp), 0700. 0, or
 * -errno with *failed (if not NULL) the directory that could not be made. */
int layout_prepare(const char **failed);
/* One server per data directory: an exclusive lock on DIR/lock, held (its descriptor left open)
 * until the process ends. A server just killed can leave it held a few milliseconds longer (a
 * child it was starting holds a copy until its execve), so a lock held by another is waited for
 * up to 2 s. 0, -EBUSY (another server holds it), or -errno. */
int layout_lock(void);
/* Makes DIR/secret (LAYOUT_SECRET_LEN random bytes, 0600) when it is missing, and reads it into
 * memory. The only read of the secret. 0, -EBADMSG (the file is not LAYOUT_SECRET_LEN bytes
 * long), -EIO (no random bytes), or -errno. */
int layout_secret_load(void);
/* The secret, LAYOUT_SECRET_LEN bytes, or NULL when layout_secret_load() did not succeed. */
const unsigned char *layout_secret(void);

/* The fixed paths (NULL before layout_init). Owned by the layout: do not free. */
const char *layout_dir(void);            /* DIR, absolute */
const char *layout_db_path(void);        /* DIR/slipway.db */
const char *layout_secret_path(void);    /* DIR/secret */
const char *layout_tmp_dir(void);        /* DIR/tmp */
const char *layout_repos_dir(void);      /* DIR/repos */
const char *layout_packages_dir(void);   /* DIR/packages */
const char *layout_build_logs_dir(void); /* DIR/logs/builds */
const char *layout_builds_dir(void);     /* DIR/builds */
const char *layout_builds_run_dir(void); /* DIR/builds/run */

/* The paths of one thing. Each allocates (caller frees); NULL with errno EINVAL (a name that is
 * not one path component, or no layout_init) or ENOMEM. */
char *layout_repo_path(const char *app_id);                            /* DIR/repos/<AppId>.git */
char *layout_package_dir(const char *app_id);                          /* DIR/packages/<AppId> */
char *layout_package_path(const char *app_id, const char *package_id); /* .../<PackageId>.tar.zst */
char *layout_build_log_path(const char *package_id); /* DIR/logs/builds/<PackageId>.log */
char *layout_build_root(const char *name);           /* DIR/builds/run/<name> */

const char *layout_releases_dir(void);                                /* DIR/releases */
const char *layout_envs_dir(void);                                    /* DIR/envs */
const char *layout_router_dir(void);                                  /* DIR/router */
const char *layout_database_dir(void);                                /* DIR/database */
const char *layout_snapshots_dir(void);                               /* DIR/snapshots */
char *layout_release_dir(const char *app_id, const char *package_id); /* DIR/releases/<A>/<P> */
/* The parts of an environment's directory. */
enum layout_env_part {
    LAYOUT_ENV_APP,    /* DIR/envs/<AppId> (mode ignored) */
    LAYOUT_ENV_DIR,    /* DIR/envs/<AppId>/<Mode> */
    LAYOUT_ENV_DATA,   /* .../data */
    LAYOUT_ENV_LOGS,   /* .../logs */
    LAYOUT_ENV_ACCESS, /* .../access */
};
char *layout_env_path(const char *app_id, const char *mode, enum layout_env_part part);
/* DIR/releases/<AppId> */
char *layout_release_app_dir(const char *app_id);
/* DIR/snapshots/<AppId>/<Mode>/<SnapshotId>.tar.zst */
char *layout_snapshot_path(const char *app_id, const char *mode, const char *snapshot_id);

/* Whether `file_name` (an entry of a DIR/packages/<AppId> directory) is the name a package file
 * has, <PackageId>.tar.zst with a 36-character id; then its PackageId in id. */
bool layout_package_file_id(const char *file_name, char id[LAYOUT_ID_LEN]);

#endif
