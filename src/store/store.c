/* store — connections, statement cache, migrations, transactions; see store.h. */
#include "store/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/banned.h"

/* Migrations: append only; never edit one that has shipped. Index i brings user_version to i+1. */
static const char *const migrations[] = {
    /* 1: users, credentials, apps, environments, members, rights, audit */
    "CREATE TABLE users("
    "  id INTEGER PRIMARY KEY,"
    "  email TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    "  name TEXT NOT NULL,"
    "  is_admin INTEGER NOT NULL DEFAULT 0,"
    "  active INTEGER NOT NULL DEFAULT 1,"
    "  created_ms INTEGER NOT NULL) STRICT;"
    "CREATE TABLE credentials("
    "  id INTEGER PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL CHECK (kind IN ('apikey', 'token')),"
    "  lookup TEXT NOT NULL UNIQUE,"
    "  hash TEXT NOT NULL,"
    "  scopes TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  revoked_ms INTEGER) STRICT;"
    "CREATE INDEX credentials_user ON credentials(user_id);"
    "CREATE TABLE apps("
    "  id INTEGER PRIMARY KEY,"
    "  app_id TEXT NOT NULL UNIQUE,"
    "  name TEXT NOT NULL,"
    "  project_id TEXT NOT NULL UNIQUE,"
    "  url TEXT NOT NULL,"
    "  default_branch TEXT NOT NULL DEFAULT 'main',"
    "  created_ms INTEGER NOT NULL) STRICT;"
    "CREATE TABLE environments("
    "  id INTEGER PRIMARY KEY,"
    "  app INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
    "  mode TEXT NOT NULL COLLATE NOCASE,"
    "  environment_id TEXT NOT NULL UNIQUE,"
    "  production INTEGER NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'Empty',"
    "  url TEXT NOT NULL DEFAULT '',"
    "  position INTEGER NOT NULL,"
    "  UNIQUE (app, mode)) STRICT;"
    "CREATE TABLE members("
    "  app INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
    "  user INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  role TEXT NOT NULL CHECK (role IN ('viewer', 'developer', 'admin')),"
    "  PRIMARY KEY (app, user)) STRICT;"
    "CREATE TABLE env_rights("
    "  env INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,"
    "  user INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  rights INTEGER NOT NULL,"
    "  PRIMARY KEY (env, user)) STRICT;"
    "CREATE TABLE audit("
    "  id INTEGER PRIMARY KEY,"
    "  at_ms INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  app TEXT NOT NULL DEFAULT '',"
    "  env TEXT NOT NULL DEFAULT '',"
    "  source TEXT NOT NULL,"
    "  result TEXT NOT NULL,"
    "  detail TEXT NOT NULL DEFAULT '',"
    "  prev_hash TEXT NOT NULL,"
    "  hash TEXT NOT NULL) STRICT;"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    /* 2: packages (built or uploaded) and upload jobs; the packages table is the build queue */
    "CREATE TABLE packages("
    "  id INTEGER PRIMARY KEY,"
    "  package_id TEXT NOT NULL UNIQUE,"
    "  app INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
    "  source TEXT NOT NULL CHECK (source IN ('build', 'upload')),"
    "  name TEXT NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  version TEXT NOT NULL,"
    "  branch TEXT NOT NULL DEFAULT '',"
    "  revision TEXT NOT NULL DEFAULT '',"
    "  revision_number INTEGER NOT NULL DEFAULT 0,"
    "  creator TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('Queued', 'Building', 'Succeeded', 'Failed')),"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  sha256 TEXT NOT NULL DEFAULT '',"
    "  started_ms INTEGER,"
    "  finished_ms INTEGER,"
    "  cancel INTEGER NOT NULL DEFAULT 0) STRICT;"
    "CREATE INDEX packages_app ON packages(app, id);"
    "CREATE INDEX packages_status ON packages(status, id);"
    "ALTER TABLE environments ADD COLUMN package TEXT REFERENCES packages(package_id);",
    /* 3: jobs a client polls (package uploads); package_id is no reference: a failed upload's
     * package is never kept */
    "CREATE TABLE jobs("
    "  id INTEGER PRIMARY KEY,"
    "  job_id TEXT NOT NULL UNIQUE,"
    "  app INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
    "  package_id TEXT NOT NULL DEFAULT '',"
    "  kind TEXT NOT NULL CHECK (kind IN ('upload')),"
    "  status TEXT NOT NULL CHECK (status IN ('Queued', 'Running', 'Completed', 'Failed')),"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL) STRICT;"
    "CREATE INDEX jobs_app ON jobs(app, id);",
    /* 4: job kinds are rows of job_kinds, which jobs.kind references (foreign keys are on): a new
     * kind is one INSERT in a new migration, where migration 3's CHECK needed the table rebuilt.
     * Kinds are never deleted, so jobs.kind needs no index for the reference. */
    "CREATE TABLE job_kinds(name TEXT PRIMARY KEY) STRICT, WITHOUT ROWID;"
    "INSERT INTO job_kinds(name) VALUES ('upload');"
    "CREATE TABLE jobs_v4("
    "  id INTEGER PRIMARY KEY,"
    "  job_id TEXT NOT NULL UNIQUE,"
    "  app INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
    "  package_id TEXT NOT NULL DEFAULT '',"
    "  kind TEXT NOT NULL REFERENCES job_kinds(name),"
    "  status TEXT NOT NULL CHECK (status IN ('Queued', 'Running', 'Completed', 'Failed')),"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL) STRICT;"
    "INSERT INTO jobs_v4(id, job_id, app, package_id, kind, status, reason, created_ms)"
    "  SELECT id, job_id, app, package_id, kind, status, reason, created_ms FROM jobs;"
    "DROP TABLE jobs;"
    "ALTER TABLE jobs_v4 RENAME TO jobs;"
    "CREATE INDEX jobs_app ON jobs(app, id);",
    /* 5: environments run packages. An environment gets a slot (its block of ports, its
     * instances' uids), its scale, the package its instances run (set at a start; `package` is
     * the one transported, which the next start runs), whether it should run (the engine makes
     * it so), and whether it crash-loops. Settings (constants, scheduled events) per environment,
     * tags, start jobs (jobs.env, jobs.code), and the instances that run (for adoption after a
     * restart of the server). */
    "ALTER TABLE environments ADD COLUMN slot INTEGER;"
    "UPDATE environments SET slot = id - 1;"
    "CREATE UNIQUE INDEX environments_slot ON environments(slot);"
    "ALTER TABLE environments ADD COLUMN instances INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE environments ADD COLUMN memory_mb INTEGER NOT NULL DEFAULT 1024;"
    "ALTER TABLE environments ADD COLUMN running_package TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE environments ADD COLUMN want_running INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE environments ADD COLUMN crash_looping INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE env_settings("
    "  env INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL CHECK (kind IN ('constant', 'event')),"
    "  name TEXT NOT NULL,"
    "  value TEXT,"
    "  deployed TEXT,"
    "  PRIMARY KEY (env, kind, name)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE env_tags("
    "  env INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,"
    "  tag TEXT NOT NULL,"
    "  PRIMARY KEY (env, tag)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE instances("
    "  env INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,"
    "  idx INTEGER NOT NULL,"
    "  pid INTEGER NOT NULL,"
    "  start_ticks INTEGER NOT NULL,"
    "  grp TEXT NOT NULL,"
    "  PRIMARY KEY (env, idx)) STRICT;"
    "ALTER TABLE jobs ADD COLUMN env INTEGER REFERENCES environments(id) ON DELETE CASCADE;"
    "ALTER TABLE jobs ADD COLUMN code TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX jobs_env ON jobs(env, status);"
    "INSERT INTO job_kinds(name) VALUES ('start');",
    /* 6: backups. A snapshot of an environment (its data directory, and its database when it
     * has one: `kind`), the archives (downloads) of a snapshot, and restores of a snapshot into
     * an environment of the same app. The rows are the queue: queued -> running -> completed |
     * failed. A restore keeps its history when its snapshot is deleted (snapshot set NULL). */
    "CREATE TABLE snapshots("
    "  id INTEGER PRIMARY KEY,"
    "  snapshot_id TEXT NOT NULL UNIQUE,"
    "  env INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,"
    "  comment TEXT NOT NULL DEFAULT '',"
    "  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed')),"
    "  status_message TEXT NOT NULL DEFAULT '',"
    "  model_version TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  finished_ms INTEGER,"
    "  expires_ms INTEGER NOT NULL,"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  kind TEXT NOT NULL DEFAULT '' CHECK (kind IN ('', 'files', 'files_and_database'))) STRICT;"
    "CREATE INDEX snapshots_env ON snapshots(env, id);"
    "CREATE INDEX snapshots_state ON snapshots(state, id);"
    "CREATE INDEX snapshots_expires ON snapshots(expires_ms);"
    "CREATE TABLE snapshot_archives("
    "  id INTEGER PRIMARY KEY,"
    "  archive_id TEXT NOT NULL UNIQUE,"
    "  snapshot INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,"
    "  data_type TEXT NOT NULL CHECK (data_type IN ('database_only', 'files_and_database')),"
    "  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed')),"
    "  status_message TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  finished_ms INTEGER) STRICT;"
    "CREATE INDEX snapshot_archives_snapshot ON snapshot_archives(snapshot);"
    "CREATE INDEX snapshot_archives_state ON snapshot_archives(state, id);"
    "CREATE TABLE restores("
    "  id INTEGER PRIMARY KEY,"
    "  restore_id TEXT NOT NULL UNIQUE,"
    "  snapshot INTEGER REFERENCES snapshots(id) ON DELETE SET NULL,"
    "  snapshot_id TEXT NOT NULL,"
    "  source_env INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,"
    "  target_env INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,"
    "  db_only INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed')),"
    "  status_message TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  finished_ms INTEGER) STRICT;"
    "CREATE INDEX restores_snapshot ON restores(snapshot);"
    "CREATE INDEX restores_target ON restores(target_env, state);"
    "CREATE INDEX restores_source ON restores(source_env);"
    "CREATE INDEX restores_state ON restores(state, id);",
};
#define NR_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

static char *db_path;

struct thread_conn {
    sqlite3 *db;
    const char *sql[STORE_STMT_CACHE];
    sqlite3_stmt *stmt[STORE_STMT_CACHE];
    size_t nr_stmt;
};
static _Thread_local struct thread_conn *tconn;
static pthread_key_t conn_key;
static pthread_once_t conn_key_once = PTHREAD_ONCE_INIT;

static void conn_free(void *p)
{
    struct thread_conn *c = p;
    if (!c)
        return;
    for (size_t i = 0; i < c->nr_stmt; i++)
        sqlite3_finalize(c->stmt[i]);
    sqlite3_close(c->db);
    free(c);
}

static void make_key(void)
{
    pthread_key_create(&conn_key, conn_free);
}

static int exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        log_error("store: %s", err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return -EIO;
    }
    return 0;
}

/* Waits for a lock another connection holds: briefly at first, since most writes hold it for
 * tens of microseconds (SQLite's own busy_timeout handler sleeps a whole millisecond at the
 * first collision, which a build's claim right after the API's insert used to pay), then longer,
 * giving up after about 10 s in all. */
static int busy_wait(void *arg, int tries)
{
    static const unsigned steps_us[] = {20,   50,   100,   200,   500,   1000,
                                        2000, 5000, 10000, 20000, 50000, 100000};
    enum { NR_STEPS = sizeof(steps_us) / sizeof(steps_us[0]), MORE = 98 /* x 100 ms */ };
    (void)arg;
    if (tries >= NR_STEPS + MORE)
        return 0;
    usleep(tries < NR_STEPS ? steps_us[tries] : steps_us[NR_STEPS - 1]);
    return 1;
}

static sqlite3 *open_db(void)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(db_path, &db, flags, NULL) != SQLITE_OK) {
        log_error("store: cannot open '%s': %s", db_path, db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_handler(db, busy_wait, NULL);
    sqlite3_extended_result_codes(db, 1);
    if (exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;")) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

sqlite3 *store_conn(void)
{
    if (tconn)
        return tconn->db;
    pthread_once(&conn_key_once, make_key);
    struct thread_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->db = open_db();
    if (!c->db) {
        free(c);
        return NULL;
    }
    tconn = c;
    pthread_setspecific(conn_key, c);
    return c->db;
}

void store_thread_release(void)
{
    if (!tconn)
        return;
    pthread_setspecific(conn_key, NULL);
    conn_free(tconn);
    tconn = NULL;
}

sqlite3_stmt *store_stmt(const char *sql)
{
    if (!store_conn())
        return NULL;
    struct thread_conn *c = tconn;
    for (size_t i = 0; i < c->nr_stmt; i++) {
        if (c->sql[i] == sql) {
            sqlite3_reset(c->stmt[i]);
            sqlite3_clear_bindings(c->stmt[i]);
            return c->stmt[i];
        }
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        log_error("store: cannot prepare: %s", sqlite3_errmsg(c->db));
        return NULL;
    }
    if (c->nr_stmt == STORE_STMT_CACHE) {
        /* full: drop the oldest that no one is stepping (an outer loop may be in the middle of
         * its rows while its callback runs other queries) */
        size_t i = 0;
        while (i < c->nr_stmt && sqlite3_stmt_busy(c->stmt[i]))
            i++;
        if (i == c->nr_stmt) {
            sqlite3_finalize(st);
            log_error("store: more than %d statements are being stepped at once", STORE_STMT_CACHE);
            return NULL;
        }
        sqlite3_finalize(c->stmt[i]);
        memmove(c->sql + i, c->sql + i + 1, sizeof(c->sql[0]) * (STORE_STMT_CACHE - 1 - i));
        memmove(c->stmt + i, c->stmt + i + 1, sizeof(c->stmt[0]) * (STORE_STMT_CACHE - 1 - i));
        c->nr_stmt--;
    }
    c->sql[c->nr_stmt] = sql;
    c->stmt[c->nr_stmt++] = st;
    return st;
}

void store_col_text(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, col) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, t, n);
    dst[n] = '\0';
}

int store_exec_stmt(sqlite3_stmt *st)
{
    if (!st)
        return -EIO;
    int rc = sqlite3_step(st);
    int r = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        if ((rc & 0xff) == SQLITE_CONSTRAINT) {
            r = (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) ? -EEXIST
                                                                                       : -EINVAL;
        } else {
            log_error("store: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
            r = -EIO;
        }
    }
    sqlite3_reset(st);
    return r;
}

int store_row(sqlite3_stmt *st, int rc)
{
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return -ENOENT;
    log_error("store: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
    return -EIO;
}

static _Thread_local bool reading;

void store_read_begin(void)
{
    sqlite3 *db = store_conn();
    if (db && sqlite3_get_autocommit(db) && !reading) {
        sqlite3_stmt *st = store_stmt("BEGIN DEFERRED");
        reading = st && sqlite3_step(st) == SQLITE_DONE;
    }
}

void store_read_end(void)
{
    if (!reading)
        return;
    reading = false;
    sqlite3_stmt *st = store_stmt("COMMIT");
    if (!st || sqlite3_step(st) != SQLITE_DONE)
        store_rollback();
}

int store_begin(void)
{
    sqlite3 *db = store_conn();
    return db ? exec(db, "BEGIN IMMEDIATE") : -EIO;
}

int store_commit(void)
{
    sqlite3 *db = store_conn();
    return db ? exec(db, "COMMIT") : -EIO;
}

void store_rollback(void)
{
    sqlite3 *db = store_conn();
    if (db && !sqlite3_get_autocommit(db))
        exec(db, "ROLLBACK");
}

int store_schema_version(void)
{
    sqlite3_stmt *st = store_stmt("PRAGMA user_version");
    if (!st || sqlite3_step(st) != SQLITE_ROW)
        return -EIO;
    int v = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return v;
}

/* Applies the migrations that bring the schema from its version to `target`. */
static int migrate(sqlite3 *db, int target)
{
    if (exec(db, "BEGIN IMMEDIATE"))
        return -EIO;
    int version = store_schema_version();
    if (version < 0)
        goto fail;
    if (version > target) {
        log_error("store: '%s' has schema version %d; this slipway knows up to %d: upgrade it",
                  db_path, version, target);
        goto fail;
    }
    for (int i = version; i < target; i++) {
        if (exec(db, migrations[i]))
            goto fail;
    }
    if (version < target) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", target);
        if (exec(db, sql))
            goto fail;
    }
    return exec(db, "COMMIT");
fail:
    exec(db, "ROLLBACK");
    return -EIO;
}

int store_init(const char *path)
{
    return store_init_version(path, NR_MIGRATIONS);
}

int store_init_version(const char *path, int version)
{
    if (version < 0 || version > NR_MIGRATIONS)
        return -EINVAL;
    free(db_path);
    db_path = strdup(path);
    if (!db_path)
        return -ENOMEM;
    sqlite3 *db = store_conn();
    if (!db)
        return -EIO;
    return migrate(db, version);
}
