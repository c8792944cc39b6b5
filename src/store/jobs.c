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
    sqlite3_stmt *st = store_stmt("INSERT INTO jobs(job_id, app, package_id, kind, status, "
                                  "reason, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)");
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
    int r = store_exec_stmt(st);
    if (!r)
        j->id = sqlite3_last_insert_rowid(store_conn());
    return r;
}

int store_job_get(const char *job_id, struct store_job *out)
{
    sqlite3_stmt *st = store_stmt("SELECT id, job_id, app, package_id, kind, status, reason, "
                                  "created_ms FROM jobs WHERE job_id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    int r = store_row(st, sqlite3_step(st));
    if (!r) {
        out->id = sqlite3_column_int64(st, 0);
        store_col_text(st, 1, out->job_id, sizeof(out->job_id));
        out->app = sqlite3_column_int64(st, 2);
        store_col_text(st, 3, out->package_id, sizeof(out->package_id));
        store_col_text(st, 4, out->kind, sizeof(out->kind));
        out->status = status_parse(sqlite3_column_text(st, 5));
        store_col_text(st, 6, out->reason, sizeof(out->reason));
        out->created_ms = sqlite3_column_int64(st, 7);
    }
    sqlite3_reset(st);
    return r;
}
