/* Tests for store jobs: insert and read back, unknown ids, unique JobIds, and the schema's
 * refusals (an unknown app, an unknown kind); a new kind of job is one INSERT, and a database
 * from before job kinds migrates with its jobs. Criterion starts a process per test.
 */
#include "store/store.h"
#include "store/store_int.h"

#include "base/crypto.h"
#include "base/util.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

TestSuite(jobs, .init = test_store_setup, .fini = test_store_teardown, .timeout = 10);

static struct store_job job(int64_t app, enum store_job_status status, const char *reason)
{
    struct store_job j;
    memset(&j, 0, sizeof(j));
    cr_assert_eq(crypto_uuid(j.job_id), 0);
    cr_assert_eq(crypto_uuid(j.package_id), 0);
    j.app = app;
    snprintf(j.kind, sizeof(j.kind), "upload");
    j.status = status;
    snprintf(j.reason, sizeof(j.reason), "%s", reason);
    return j;
}

Test(jobs, insert_get_and_refusals)
{
    struct store_app a = test_store_app("jobs-app");

    struct store_job done = job(a.id, JOB_COMPLETED, "");
    struct store_job failed = job(a.id, JOB_FAILED, "package entry '../x' leaves the package");
    cr_assert_eq(store_job_insert(&done), 0);
    cr_assert_eq(store_job_insert(&failed), 0);
    cr_assert_gt(failed.id, done.id);
    cr_assert_gt(done.created_ms, 0);

    struct store_job got;
    cr_assert_eq(store_job_get(failed.job_id, &got), 0);
    cr_assert_str_eq(got.job_id, failed.job_id);
    cr_assert_str_eq(got.package_id, failed.package_id);
    cr_assert_str_eq(got.kind, "upload");
    cr_assert_eq(got.app, a.id);
    cr_assert_eq(got.status, JOB_FAILED);
    cr_assert_str_eq(got.reason, failed.reason);
    cr_assert_eq(got.created_ms, failed.created_ms);
    cr_assert_eq(store_job_get(done.job_id, &got), 0);
    cr_assert_eq(got.status, JOB_COMPLETED);
    cr_assert_str_eq(store_job_status_name(got.status), "Completed");
    cr_assert_str_eq(store_job_status_name(JOB_QUEUED), "Queued");
    cr_assert_str_eq(store_job_status_name(JOB_RUNNING), "Running");
    cr_assert_str_eq(store_job_status_name((enum store_job_status)42), "Failed");

    cr_assert_eq(store_job_get("00000000-0000-4000-8000-000000000000", &got), -ENOENT);
    cr_assert_eq(store_job_insert(&done), -EEXIST); /* the same JobId twice */
    struct store_job orphan = job(a.id + 1000, JOB_COMPLETED, "");
    cr_assert_eq(store_job_insert(&orphan), -EINVAL); /* no such app */
    struct store_job odd = job(a.id, JOB_COMPLETED, "");
    snprintf(odd.kind, sizeof(odd.kind), "build");
    cr_assert_eq(store_job_insert(&odd), -EINVAL); /* a kind the schema does not know */
}

/* ---- job kinds: a new kind is a plain migration ----------------------------------------------
 * Migration 4 made job kinds rows of job_kinds, referenced by jobs.kind. */

static void sql_exec(const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(store_conn(), sql, NULL, NULL, &err);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : "?");
    sqlite3_free(err);
}

/* The first column of the first row of `sql` as text (caller frees; "" when no row). */
static char *sql_text(const char *sql)
{
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(store_conn(), sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(store_conn()));
    const unsigned char *t = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    char *s = strdup(t ? (const char *)t : "");
    sqlite3_finalize(st);
    return s;
}

Test(jobs, a_new_kind_is_one_insert_and_unknown_kinds_stay_refused)
{
    struct store_app a = test_store_app("kinds-app");
    struct store_job up = job(a.id, JOB_COMPLETED, "");
    cr_assert_eq(store_job_insert(&up), 0);
    struct store_job later = job(a.id, JOB_QUEUED, "");
    snprintf(later.kind, sizeof(later.kind), "deploy");
    cr_assert_eq(store_job_insert(&later), -EINVAL); /* not a kind yet */

    /* what the migration that brings a new kind of job holds: one INSERT, no table rebuilt */
    char *jobs_before = sql_text("SELECT sql FROM sqlite_schema WHERE name = 'jobs'");
    sql_exec("BEGIN IMMEDIATE;"
             "INSERT INTO job_kinds(name) VALUES ('deploy');"
             "COMMIT;");
    char *jobs_after = sql_text("SELECT sql FROM sqlite_schema WHERE name = 'jobs'");
    cr_assert_str_eq(jobs_after, jobs_before);
    free(jobs_before);
    free(jobs_after);

    cr_assert_eq(store_job_insert(&later), 0);
    struct store_job got;
    cr_assert_eq(store_job_get(later.job_id, &got), 0);
    cr_assert_str_eq(got.kind, "deploy");
    cr_assert_eq(store_job_get(up.job_id, &got), 0);
    cr_assert_str_eq(got.kind, "upload");

    /* a kind no migration added is still refused */
    struct store_job odd = job(a.id, JOB_QUEUED, "");
    snprintf(odd.kind, sizeof(odd.kind), "teleport");
    cr_assert_eq(store_job_insert(&odd), -EINVAL);
    snprintf(odd.kind, sizeof(odd.kind), "UPLOAD");
    cr_assert_eq(store_job_insert(&odd), -EINVAL);
    cr_assert_eq(store_job_get(odd.job_id, &got), -ENOENT);
}

Test(jobs, a_database_from_before_job_kinds_migrates_with_its_jobs)
{
    /* the database of the Slipway before job kinds: schema 3, with a job and its app */
    char *dir = str("%s/old", test_store.tmp), *old = str("%s/slipway.db", dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    free(dir);
    store_thread_release();
    cr_assert_eq(store_init_version(old, 3), 0);
    cr_assert_eq(store_schema_version(), 3);
    /* rows as that Slipway wrote them (today's functions know later columns) */
    struct store_app a = {.id = 1};
    struct store_job done = job(a.id, JOB_COMPLETED, "");
    struct store_job failed = job(a.id, JOB_FAILED, "the package is not a tar");
    char *sql = str("INSERT INTO apps(id, app_id, name, project_id, url, created_ms) VALUES "
                    "(1, 'old-app', 'Old', 'p', 'u', 1);"
                    "INSERT INTO jobs(job_id, app, package_id, kind, status, reason, created_ms) "
                    "VALUES ('%s', 1, '%s', 'upload', 'Completed', '', 5), "
                    "('%s', 1, '%s', 'upload', 'Failed', '%s', 6);",
                    done.job_id, done.package_id, failed.job_id, failed.package_id, failed.reason);
    cr_assert_eq(sqlite3_exec(store_conn(), sql, NULL, NULL, NULL), SQLITE_OK);
    free(sql);
    done.created_ms = 5;
    failed.created_ms = 6;
    failed.id = 2;
    store_thread_release();

    cr_assert_eq(store_init(old), 0);
    cr_assert_geq(store_schema_version(), 4);
    struct store_job got;
    cr_assert_eq(store_job_get(failed.job_id, &got), 0);
    cr_assert_eq(got.id, failed.id);
    cr_assert_eq(got.app, a.id);
    cr_assert_str_eq(got.package_id, failed.package_id);
    cr_assert_str_eq(got.kind, "upload");
    cr_assert_eq(got.status, JOB_FAILED);
    cr_assert_str_eq(got.reason, failed.reason);
    cr_assert_eq(got.created_ms, failed.created_ms);
    cr_assert_eq(store_job_get(done.job_id, &got), 0);
    cr_assert_eq(got.status, JOB_COMPLETED);

    /* the converted table: kinds by reference, its index kept, the references intact */
    char *s = sql_text("SELECT \"table\" FROM pragma_foreign_key_list('jobs') WHERE \"from\" = "
                       "'kind'");
    cr_assert_str_eq(s, "job_kinds");
    free(s);
    s = sql_text("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'jobs' AND "
                 "name = 'jobs_app'");
    cr_assert_str_eq(s, "jobs_app");
    free(s);
    s = sql_text("SELECT count(*) FROM pragma_foreign_key_check");
    cr_assert_str_eq(s, "0");
    free(s);
    struct store_job odd = job(a.id, JOB_QUEUED, "");
    snprintf(odd.kind, sizeof(odd.kind), "build");
    cr_assert_eq(store_job_insert(&odd), -EINVAL);
    /* the app's jobs still go with it */
    sql_exec("DELETE FROM apps WHERE app_id = 'old-app'");
    cr_assert_eq(store_job_get(done.job_id, &got), -ENOENT);
    free(old);
}
