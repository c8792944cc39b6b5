/* Tests for store jobs: insert and read back, unknown ids, unique JobIds, and the schema's
 * refusals (an unknown app, an unknown kind). One Test case: Criterion starts a process per test.
 */
#include "store/store.h"

#include "base/crypto.h"
#include "base/util.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmp[PATH_MAX];

static void setup(void)
{
    temp_dir(tmp, "jobs");
    char *db = str("%s/slipway.db", tmp);
    cr_assert_eq(store_init(db), 0);
    free(db);
}

static void teardown(void)
{
    store_thread_release();
    fs_remove_tree(tmp);
}

TestSuite(jobs, .init = setup, .fini = teardown, .timeout = 10);

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
    struct store_app a;
    memset(&a, 0, sizeof(a));
    snprintf(a.app_id, sizeof(a.app_id), "jobs-app");
    snprintf(a.name, sizeof(a.name), "Jobs");
    cr_assert_eq(crypto_uuid(a.project_id), 0);
    snprintf(a.default_branch, sizeof(a.default_branch), "main");
    cr_assert_eq(store_app_insert(&a), 0);

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
