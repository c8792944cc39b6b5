/* store — Slipway's database: SQLite at DIR/slipway.db in WAL mode with foreign keys, numbered
 * migrations under PRAGMA user_version, and one connection per thread with cached prepared
 * statements. One file per entity implements the functions below; nothing else runs SQL.
 *
 * Strings in the structs below are bounded by the validation done before insert (see the
 * *_MAX constants); longer stored values are truncated on read, never overflowed.
 * Functions return 0, -ENOENT (no such row), -EEXIST (unique key taken), -EINVAL (a reference to
 * a row that does not exist, or a value the schema refuses) or -EIO.
 */
#ifndef SLIPWAY_STORE_H
#define SLIPWAY_STORE_H

#include <stdbool.h>
#include <stdint.h>

#define STORE_EMAIL_MAX  254
#define STORE_NAME_MAX   200
#define STORE_APPID_MAX  40
#define STORE_URL_MAX    512
#define STORE_BRANCH_MAX 255
#define STORE_SCOPES_MAX 512
#define STORE_MODE_MAX   40

/* Opens the database file at path (creating it; the server's is layout_db_path(),
 * DIR/slipway.db), applies pending migrations in one transaction, and makes the path the one
 * every thread's connection uses. Call once per process before other calls. 0, or -EIO with the
 * reason logged. */
int store_init(const char *path);
/* Closes this thread's connection and its statements (also done when the thread exits). */
void store_thread_release(void);
/* The schema version after migrations. */
int store_schema_version(void);

/* A read transaction (BEGIN DEFERRED ... COMMIT): several reads see one snapshot and take the
 * database's locks once instead of once each. No-ops inside another transaction. */
void store_read_begin(void);
void store_read_end(void);
/* Transactions on this thread's connection (BEGIN IMMEDIATE). */
int store_begin(void);
int store_commit(void);
void store_rollback(void);

/* ---- users (users.c) ---- */
struct store_user {
    int64_t id;
    char email[STORE_EMAIL_MAX + 1];
    char name[STORE_NAME_MAX + 1];
    bool admin;
    bool active;
    int64_t created_ms;
};
int store_user_insert(const char *email, const char *name, bool admin, int64_t *id);
int store_user_by_email(const char *email, struct store_user *out);
int store_user_by_id(int64_t id, struct store_user *out);
int store_user_each(int (*fn)(const struct store_user *, void *), void *arg);

/* ---- credentials: API keys and tokens (credentials.c) ---- */
enum store_cred_kind { STORE_CRED_APIKEY, STORE_CRED_TOKEN };
struct store_cred {
    int64_t id;
    int64_t user_id;
    enum store_cred_kind kind;
    char lookup[33]; /* public prefix used to find the row */
    char hash[65];   /* sha256 hex of the whole secret */
    char scopes[STORE_SCOPES_MAX + 1];
    bool revoked;
};
int store_cred_insert(int64_t user_id, enum store_cred_kind kind, const char *lookup,
                      const char *hash, const char *scopes);
int store_cred_by_lookup(const char *lookup, struct store_cred *out);
/* The credential and its user in one query (the per-request path). */
int store_cred_user_by_lookup(const char *lookup, struct store_cred *cred, struct store_user *user);
/* Revokes the user's credential with that lookup; -ENOENT if none (or already revoked). */
int store_cred_revoke(int64_t user_id, const char *lookup);

/* ---- apps and environments (apps.c) ---- */
struct store_app {
    int64_t id;
    char app_id[STORE_APPID_MAX + 1];
    char name[STORE_NAME_MAX + 1];
    char project_id[37];
    char url[STORE_URL_MAX + 1];
    char default_branch[STORE_BRANCH_MAX + 1];
    int64_t created_ms;
};
struct store_env {
    int64_t id;
    int64_t app;
    char mode[STORE_MODE_MAX + 1]; /* "Test", "Acceptance", "Production" */
    char environment_id[37];
    bool production;
    char status[16]; /* "Empty", "Stopped", "Running" */
    char url[STORE_URL_MAX + 1];
    int slot;                 /* 0, 1, ...: unique among environments (its ports, its uid) */
    int instances;            /* the scale: instances that run */
    int memory_mb;            /* per instance */
    char package_id[37];      /* transported: what the next start runs ("" when Empty) */
    char running_package[37]; /* what the instances run, from the last start ("" never) */
    bool want_running;        /* started and not stopped since: the engine keeps it running */
    bool crash_looping;       /* an instance failed again and again */
};
/* Inserts the app (id filled in) with its Test, Acceptance and Production environments. */
int store_app_insert(struct store_app *app);
int store_app_by_appid(const char *app_id, struct store_app *out);
int store_app_by_project_id(const char *project_id, struct store_app *out);
int store_app_by_id(int64_t id, struct store_app *out);
/* All apps (user_id 0), or those the user is a member of, ordered by AppId. */
int store_app_each(int64_t user_id, int (*fn)(const struct store_app *, void *), void *arg);
/* Adds an environment after the app's others (a flexible one): -EEXIST when the app has one of
 * that mode already (in any case), -EINVAL for an app that does not exist. */
int store_env_insert(int64_t app, const char *mode, bool production);
/* One more than the highest slot taken (0 without environments), or -EIO. */
int store_env_slots(void);
/* Mode is matched case-insensitively. */
int store_env_by_mode(int64_t app, const char *mode, struct store_env *out);
int store_env_get(int64_t id, struct store_env *out);
int store_env_by_uuid(const char *environment_id, struct store_env *out);
/* The app's environments in their order, or every environment (app 0) by id. */
int store_env_each(int64_t app, int (*fn)(const struct store_env *, void *), void *arg);

/* ---- what environments run (envs.c) ---- */
#define STORE_SETTING_MAX 4096 /* bytes of a constant's value (encrypted: its stored form) */
#define STORE_TAG_MAX     100
int store_env_set_status(int64_t env, const char *status);
int store_env_set_want(int64_t env, bool running);
int store_env_set_scale(int64_t env, int instances, int memory_mb);
int store_env_set_crash_looping(int64_t env, bool on);
/* The start succeeded: status Running, running_package, every setting's deployed value = its
 * value, crash_looping off. One transaction. */
int store_env_started(int64_t env, const char *package_id);
/* Clean: no package (status Empty), settings forgotten, not wanted running. */
int store_env_clean(int64_t env);
/* Transport: holds the package (status Stopped when it was Empty). */
int store_env_transport(int64_t env, const char *package_id);
struct store_setting {
    char kind[12]; /* "constant", "event" */
    char name[STORE_NAME_MAX + 1];
    bool has_value, has_deployed; /* NULL columns: the default / never started */
    char value[STORE_SETTING_MAX + 1];
    char deployed[STORE_SETTING_MAX + 1];
};
/* The environment's settings rows (those set at least once), by kind and name. */
int store_setting_each(int64_t env, int (*fn)(const struct store_setting *, void *), void *arg);
/* Sets a setting's value (NULL: back to the default). */
int store_setting_set(int64_t env, const char *kind, const char *name, const char *value);
int store_tag_add(int64_t env, const char *tag);
/* -ENOENT when it was not there. */
int store_tag_del(int64_t env, const char *tag);
int store_tag_each(int64_t env, int (*fn)(const char *tag, void *), void *arg);
/* An instance the engine runs, as a restarted server finds it. */
struct store_instance {
    int64_t env;
    int idx;
    int pid;
    int64_t start_ticks; /* /proc/<pid>/stat field 22: tells a reused pid apart */
    char group[48];      /* its cgroup's name */
};
int store_instance_put(const struct store_instance *in);
int store_instance_del(int64_t env, int idx);
/* Every instance row (env 0), or one environment's. */
int store_instance_each(int64_t env, int (*fn)(const struct store_instance *, void *), void *arg);

/* ---- membership and per-environment rights (members.c) ---- */
/* Per-environment rights, named as Mendix names them; stored as these bits. */
enum store_right {
    RIGHT_API = 1 << 0,         /* API Rights */
    RIGHT_TRANSPORT = 1 << 1,   /* Transport Rights */
    RIGHT_BACKUPS = 1 << 2,     /* Access to Backups */
    RIGHT_MONITORING = 1 << 3,  /* Access to Monitoring */
    RIGHT_ALERTS = 1 << 4,      /* Receive Alerts */
    RIGHT_PERMISSIONS = 1 << 5, /* Manage Permissions */
    RIGHT_ALL = (1 << 6) - 1,
};
enum store_role { STORE_ROLE_NONE, STORE_ROLE_VIEWER, STORE_ROLE_DEVELOPER, STORE_ROLE_ADMIN };
/* "viewer", "developer", "admin" ("none" for STORE_ROLE_NONE); parsing ignores case and gives
 * STORE_ROLE_NONE for anything else. */
const char *store_role_name(enum store_role role);
enum store_role store_role_parse(const char *name);
/* Adds the member or changes the role. A new member gets the default rights: API Rights on every
 * non-production environment. */
int store_member_set(int64_t app, int64_t user, enum store_role role);
/* The user's role in the app; STORE_ROLE_NONE (and 0) when not a member. */
int store_member_role(int64_t app, int64_t user, enum store_role *out);
/* Rights bits (RIGHT_*) of a member on one environment; 0 when none. */
int store_rights_get(int64_t env, int64_t user, unsigned *out);
/* OR of the member's rights over all environments of the app. */
int store_rights_any(int64_t app, int64_t user, unsigned *out);
/* Role and store_rights_any in one query; STORE_ROLE_NONE and 0 for a non-member. */
int store_member_access(int64_t app, int64_t user, enum store_role *role, unsigned *rights);
/* rights = (rights | set) & ~clear on one environment; -ENOENT when the user is not a member,
 * -EINVAL when the environment is not the app's. */
int store_rights_update(int64_t app, int64_t env, int64_t user, unsigned set, unsigned clear);
struct store_member {
    int64_t user_id;
    char email[STORE_EMAIL_MAX + 1];
    enum store_role role;
};
int store_member_each(int64_t app, int (*fn)(const struct store_member *, void *), void *arg);

/* ---- packages (packages.c): built or uploaded; the rows are the build queue ---- */
enum store_pkg_status { PKG_QUEUED, PKG_BUILDING, PKG_SUCCEEDED, PKG_FAILED };
#define STORE_VERSION_MAX 64
#define STORE_REASON_MAX  512
#define STORE_DESC_MAX    1000
struct store_package {
    int64_t id;
    char package_id[37];
    int64_t app;
    char app_id[STORE_APPID_MAX + 1];
    bool upload; /* source: 'upload' or 'build' */
    char name[STORE_NAME_MAX + 1];
    char description[STORE_DESC_MAX + 1];
    char version[STORE_VERSION_MAX + 1];
    char branch[STORE_BRANCH_MAX + 1];
    char revision[41];
    int64_t revision_number;
    char creator[STORE_NAME_MAX + 1];
    int64_t created_ms;
    enum store_pkg_status status;
    char reason[STORE_REASON_MAX + 1];
    int64_t size;
    char sha256[65];
    bool cancel;
};
const char *store_pkg_status_name(enum store_pkg_status s);
/* Inserts a package (its package_id, app, source, names, version, ... filled by the caller);
 * fills p->id. */
int store_package_insert(struct store_package *p);
int store_package_get(const char *package_id, struct store_package *out);
/* The app's packages, newest first. */
int store_package_each(int64_t app, int (*fn)(const struct store_package *, void *), void *arg);
/* The oldest Queued or Building build of the app with this Version of a commit other than
 * `revision` (the one that will put the same version tag on another commit): 0 and *out,
 * -ENOENT if none, or -EIO. */
int store_package_find_pending(int64_t app, const char *version, const char *revision,
                               struct store_package *out);
/* Takes the oldest Queued build: sets it Building (started now) and fills *out. -ENOENT if none. */
int store_package_claim(struct store_package *out);
/* Ends a build: Succeeded (with size and sha256) or Failed (with a reason). */
int store_package_finish(int64_t id, enum store_pkg_status status, const char *reason, int64_t size,
                         const char *sha256);
/* Asks for a build to stop; -ENOENT if no such package, -EALREADY if it has ended. */
int store_package_cancel(const char *package_id);
/* Whether cancel was asked for. */
bool store_package_cancelled(int64_t id);
/* After a crash: every Building row becomes Failed with `reason`; fn (may be NULL) is called
 * with each one's PackageId. The number of rows, or -errno. */
int store_package_fail_unfinished(const char *reason, void (*fn)(const char *package_id, void *),
                                  void *arg);
/* Whether an environment holds the package (deployed or transported to it). */
bool store_package_in_use(const char *package_id);
/* Retention: the app's ended (Succeeded or Failed) packages beyond its newest `keep` ended ones
 * that no environment holds, oldest first. Queued and Building rows are not counted and never
 * listed; held packages count toward `keep` but are never listed. */
int store_package_each_prunable(int64_t app, unsigned keep,
                                int (*fn)(const struct store_package *, void *), void *arg);
/* Deletes an ended package that no environment holds, checked in the same statement: 0, or
 * -EBUSY when it is held or not ended (nothing deleted), -ENOENT when there is no such row. */
int store_package_delete_unused(int64_t id);
/* Makes an environment hold a package (NULL: none). */
int store_env_set_package(int64_t env, const char *package_id);

/* ---- jobs (jobs.c): operations a client polls by JobId (package uploads) ---- */
enum store_job_status { JOB_QUEUED, JOB_RUNNING, JOB_COMPLETED, JOB_FAILED };
struct store_job {
    int64_t id;
    char job_id[37];
    int64_t app;
    char package_id[37]; /* the package the job makes or starts ("" when none) */
    char kind[16];       /* a row of the job_kinds table: "upload", "start" */
    enum store_job_status status;
    char reason[STORE_REASON_MAX + 1]; /* why it failed */
    int64_t created_ms;
    int64_t env;   /* the environment a start job starts (0: none) */
    char code[40]; /* the error code of a failed start: "START_FAILED" ... */
};
/* "Queued", "Running", "Completed", "Failed". */
const char *store_job_status_name(enum store_job_status s);
/* Inserts a job (job_id, app, package_id, kind, status, reason filled by the caller); fills
 * j->id and j->created_ms. -EINVAL for an app that does not exist or a kind that is not a row
 * of job_kinds (a new kind of job is added by a migration: INSERT INTO job_kinds). */
int store_job_insert(struct store_job *j);
int store_job_get(const char *job_id, struct store_job *out);
/* The environment's start job that is Queued or Running: 0 and *out, or -ENOENT. */
int store_job_active_start(int64_t env, struct store_job *out);
/* Every Queued or Running start job (the engine's queue), oldest first. */
int store_job_each_active_start(int (*fn)(const struct store_job *, void *), void *arg);
int store_job_set_status(int64_t id, enum store_job_status status, const char *code,
                         const char *reason);

/* ---- backups (snapshots.c): snapshots, their archives, restores; the rows are the queue ---- */
enum store_bk_state { BK_QUEUED, BK_RUNNING, BK_COMPLETED, BK_FAILED };
/* "queued", "running", "completed", "failed". */
const char *store_bk_state_name(enum store_bk_state s);
#define STORE_COMMENT_MAX 1000 /* bytes of a snapshot's comment */
struct store_snapshot {
    int64_t id;
    char snapshot_id[37];
    int64_t env;
    char comment[STORE_COMMENT_MAX + 1];
    enum store_bk_state state;
    char status_message[STORE_REASON_MAX + 1];
    char model_version[STORE_VERSION_MAX + 1];
    int64_t created_ms, updated_ms, finished_ms, expires_ms; /* finished_ms 0: not ended */
    int64_t size;
    char kind[24]; /* what it holds: "files", "files_and_database" ("" until taken) */
    /* read with it: the environment's app and mode */
    int64_t app;
    char mode[STORE_MODE_MAX + 1];
    char app_id[STORE_APPID_MAX + 1];
};
/* Inserts a queued snapshot (snapshot_id, env, comment, model_version, expires_ms and, when not
 * 0, created_ms filled by the caller); fills id, state, created_ms (now, when 0) and
 * updated_ms. */
int store_snapshot_insert(struct store_snapshot *s);
int store_snapshot_get(const char *snapshot_id, struct store_snapshot *out);
/* The environment's snapshots, newest first, from offset, at most limit. */
int store_snapshot_each(int64_t env, int64_t offset, int64_t limit,
                        int (*fn)(const struct store_snapshot *, void *), void *arg);
int store_snapshot_count(int64_t env, int64_t *out);
/* Changes the comment (updated_ms stays). */
int store_snapshot_set_comment(int64_t id, const char *comment);
/* Takes the oldest queued snapshot: sets it running and fills *out. -ENOENT if none. */
int store_snapshot_claim(struct store_snapshot *out);
/* Ends a snapshot: completed (with size and kind) or failed (with a message). */
int store_snapshot_finish(int64_t id, enum store_bk_state state, const char *message, int64_t size,
                          const char *kind);
/* Deletes an ended snapshot (its archives with it) that no queued or running restore reads,
 * checked in the same statement: 0, -EBUSY (not ended, or being restored), -ENOENT. */
int store_snapshot_delete_unused(int64_t id);
/* Ended snapshots that expired by now_ms, oldest first. */
int store_snapshot_each_expired(int64_t now_ms, int (*fn)(const struct store_snapshot *, void *),
                                void *arg);
/* The soonest expires_ms of an ended snapshot (0 when none). */
int store_snapshot_next_expiry(int64_t *out);

struct store_archive {
    int64_t id;
    char archive_id[37];
    int64_t snapshot;
    char snapshot_id[37];
    char data_type[24]; /* "database_only", "files_and_database" */
    enum store_bk_state state;
    char status_message[STORE_REASON_MAX + 1];
    int64_t created_ms, updated_ms, finished_ms;
};
/* Inserts a queued archive (archive_id, snapshot, data_type filled by the caller). */
int store_archive_insert(struct store_archive *a);
int store_archive_get(const char *archive_id, struct store_archive *out);
int store_archive_claim(struct store_archive *out);
int store_archive_finish(int64_t id, enum store_bk_state state, const char *message);

struct store_restore {
    int64_t id;
    char restore_id[37];
    int64_t snapshot; /* 0: the snapshot was deleted since */
    char snapshot_id[37];
    int64_t source_env, target_env;
    bool db_only;
    enum store_bk_state state;
    char status_message[STORE_REASON_MAX + 1];
    int64_t created_ms, updated_ms, finished_ms;
};
/* Inserts a queued restore (restore_id, snapshot, snapshot_id, source_env, target_env, db_only
 * filled by the caller) unless one is queued or running for target_env already: -EBUSY then. */
int store_restore_insert(struct store_restore *r);
int store_restore_get(const char *restore_id, struct store_restore *out);
int store_restore_claim(struct store_restore *out);
int store_restore_finish(int64_t id, enum store_bk_state state, const char *message);
/* Whether a restore into the environment is queued or running. */
bool store_restore_active(int64_t target_env);
/* After a crash: every running snapshot, archive and restore becomes failed with `reason`. The
 * number of rows, or -errno. */
int store_backups_fail_unfinished(const char *reason);

/* ---- audit log (audit.c): append-only, hash-chained ---- */
struct store_audit {
    int64_t id;
    int64_t at_ms;
    const char *actor, *action, *app, *env, *source, *result,
        *detail; /* app/env/detail may be "" */
    const char *hash;
};
/* Appends an entry. Fields may hold any bytes (paths and names come from clients): each is stored
 * as valid UTF-8, every byte that is not part of a valid sequence replaced by U+FFFD, and the
 * hash covers what is stored. */
int store_audit_append(const char *actor, const char *action, const char *app, const char *env,
                       const char *source, const char *result, const char *detail);
/* Entries with id > after_id, oldest first, at most limit. Every field handed to fn is valid UTF-8:
 * rows that older versions stored with other bytes are read lossily (U+FFFD), never refused. */
int store_audit_each(int64_t after_id, int limit, int (*fn)(const struct store_audit *, void *),
                     void *arg);
/* Recomputes the hash chain; 0 when intact, -EBADMSG (and *bad_id) at the first broken entry. */
int store_audit_verify(int64_t *bad_id);

#endif
