/* store: jobs a client polls by JobId. An upload's job is written once, with its final status
 * (the upload is checked within the request); Queued and Running exist for jobs that will run in
 * the background. */
#include <errno.h>
#include <string.h>

#include "base/util.h"
#include "store/store_int.h"
#include "base/banned.h"

static const char *const status_names[] = {"Queued", "Running", "Completed", "Failed"};

const char *store_job_status_name(enum store_job_status s)
{
    return (unsigned)s < 4 ? status_names[s] : "Failed";
}

static enum store_job_status status_parse(const unsigned char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp((const char *)s, status_names[i]) == 0)
            return (enum store_job_status)i;
    return JOB_FAILED;
}

int store_job_insert(struct store_job *j)
{
    sqlite3_stmt *st =
        store_stmt("INSERT INTO jobs(job_id, app, package_id, kind, status, reason, created_ms, "
                   "env, code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st)
        return -EIO;
    j->created_ms = time_now_ms();
    sqlite3_bind_text(st, 1, j->job_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, j->app);
    sqlite3_bind_text(st, 3, j->package_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, j->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, store_job_status_name(j->status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, j->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, j->created_ms);
    if (j->env)
        sqlite3_bind_int64(st, 8, j->env);
    else
        sqlite3_bind_null(st, 8);
    sqlite3_bind_text(st, 9, j->code, -1, SQLITE_STATIC);
    int r = store_exec_stmt(st);
    if (!r)
        j->id = sqlite3_last_insert_rowid(store_conn());
    return r;
}

#define JOB_COLS "id, job_id, app, package_id, kind, status, reason, created_ms, env, code"

static void job_read(sqlite3_stmt *st, struct store_job *out)
{
    out->id = sqlite3_column_int64(st, 0);
    store_col_text(st, 1, out->job_id, sizeof(out->job_id));
    out->app = sqlite3_column_int64(st, 2);
    store_col_text(st, 3, out->package_id, sizeof(out->package_id));
    store_col_text(st, 4, out->kind, sizeof(out->kind));
    out->status = status_parse(sqlite3_column_text(st, 5));
    store_col_text(st, 6, out->reason, sizeof(out->reason));
    out->created_ms = sqlite3_column_int64(st, 7);
    out->env = sqlite3_column_int64(st, 8);
    store_col_text(st, 9, out->code, sizeof(out->code));
}

static int job_one(sqlite3_stmt *st, struct store_job *out)
{
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        job_read(st, out);
    sqlite3_reset(st);
    return r;
}

int store_job_get(const char *job_id, struct store_job *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " JOB_COLS " FROM jobs WHERE job_id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    return job_one(st, out);
}

int store_job_active_start(int64_t env, struct store_job *out)
{
    sqlite3_stmt *st =
        store_stmt("SELECT " JOB_COLS " FROM jobs WHERE env = ? AND kind = "
                   "'start' AND status IN ('Queued', 'Running') ORDER BY id LIMIT 1");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    return job_one(st, out);
}

int store_job_each_active_start(int (*fn)(const struct store_job *, void *), void *arg)
{
    sqlite3_stmt *st = store_stmt("SELECT " JOB_COLS " FROM jobs WHERE kind = 'start' AND "
                                  "status IN ('Queued', 'Running') ORDER BY id");
    if (!st)
        return -EIO;
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_job j;
        job_read(st, &j);
        r = fn(&j, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}

int store_job_set_status(int64_t id, enum store_job_status status, const char *code,
                         const char *reason)
{
    sqlite3_stmt *st = store_stmt("UPDATE jobs SET status = ?, code = ?, reason = ? WHERE id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, store_job_status_name(status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, code ? code : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, id);
    return store_exec_stmt(st);
}
