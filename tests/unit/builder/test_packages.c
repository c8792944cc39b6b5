/* Tests for builder/packages: the rules of queueing a build (Version, Name, tags), importing an
 * upload, finding, cancelling, deleting a package with its files, and retention. A real data
 * directory (base/layout), store and git repository; the builder is a stub that counts wake-ups.
 */
#include "builder/packages.h"

#include "admin/admin.h"
#include "base/layout.h"
#include "builder/package.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GIT "git -c user.name=T -c user.email=t@example.com "

static char tmp[PATH_MAX];
static char *work; /* a work tree whose commits are pushed to app1's repository */
static struct store_app app, other;
static struct vcs_repo *repo;
static int wakes;

static bool yes(const char **why)
{
    (void)why;
    return true;
}

static bool no(const char **why)
{
    *why = "builds are refused: no sandbox here";
    return false;
}

static void wake(void)
{
    wakes++;
}

static void push(const char *refspec)
{
    char *bare = layout_repo_path("app1");
    sh("git -C %s push -q -f %s '%s' 2>/dev/null", work, bare, refspec);
    free(bare);
}

static void commit(const char *message)
{
    sh(GIT "-C %s commit -q --allow-empty -m '%s'", work, message);
}

static void setup(void)
{
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
    temp_dir(tmp, "packages");
    cr_assert_eq(layout_init(tmp), 0);
    cr_assert_eq(layout_prepare(NULL), 0);
    cr_assert_eq(store_init(layout_db_path()), 0);
    cr_assert_eq(vcs_init(), 0);
    struct admin_actor a = {"test", "local"};
    struct admin_error err;
    cr_assert_eq(admin_app_add(&a, "app1", "App 1", &app, &err), 0, "%s", err.message);
    cr_assert_eq(admin_app_add(&a, "app2", "App 2", &other, &err), 0, "%s", err.message);
    work = str("%s/work", tmp);
    sh("git init -q -b main %s", work);
    commit("one");
    push("main");
    char *bare = layout_repo_path("app1");
    cr_assert_eq(vcs_open(bare, &repo), 0);
    free(bare);
    wakes = 0;
    packages_set_builder(&(struct packages_builder){yes, wake});
}

static void teardown(void)
{
    packages_set_builder(NULL);
    vcs_shutdown();
    store_thread_release();
    sh("rm -rf '%s'", tmp);
    layout_release();
    free(work);
}

TestSuite(packages, .init = setup, .fini = teardown, .timeout = 60);

static int queue(const char *branch, const char *revision, const char *version,
                 struct store_package *p, struct packages_error *err)
{
    struct packages_build b = {.branch = branch,
                               .revision = revision,
                               .version = version,
                               .description = "a build",
                               .creator = "Alice"};
    return packages_queue(&app, repo, &b, p, err);
}

/* ---- queueing ---- */

Test(packages, the_version_rule)
{
    struct packages_error err;
    const char *good[] = {"1.2.3", "0.0.0", "10.200.3000", "999999999.0.1"};
    const char *bad[] = {"",      "1.2",    "1.2.3.4", "01.0.0",         "1.02.0",
                         "a.b.c", "1.2.3 ", "-1.2.3",  "1234567890.0.0", "1..3"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct packages_build b = {.version = good[i]};
        cr_assert_eq(packages_build_check(&b, &err), PACKAGES_OK, "%s", good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct packages_build b = {.version = bad[i]};
        cr_assert_eq(packages_build_check(&b, &err), PACKAGES_INVALID_VERSION, "%s", bad[i]);
        cr_assert(strstr(err.message, "must be major.minor.patch"), "%s", err.message);
    }
    char *desc = calloc(1, STORE_DESC_MAX + 2);
    memset(desc, 'd', STORE_DESC_MAX + 1);
    struct packages_build b = {.version = "1.0.0", .description = desc};
    cr_assert_eq(packages_build_check(&b, &err), PACKAGES_INVALID);
    cr_assert_str_eq(err.message, "the Description is longer than 1000 bytes");
    desc[STORE_DESC_MAX] = '\0';
    cr_assert_eq(packages_build_check(&b, &err), PACKAGES_OK);
    free(desc);
}

Test(packages, a_build_is_queued_with_its_version_and_name_and_the_builder_woken)
{
    struct store_package p, got;
    struct packages_error err;
    commit("two");
    push("main");
    cr_assert_eq(queue("main", "2", "1.4.0", &p, &err), PACKAGES_OK, "%s", err.message);
    cr_assert_eq(wakes, 1);
    cr_assert_str_eq(p.version, "1.4.0.2");
    cr_assert_str_eq(p.name, "main-1.4.0.2.tar.zst");
    cr_assert_eq(store_package_get(p.package_id, &got), 0);
    cr_assert_eq(got.status, PKG_QUEUED);
    cr_assert_eq(got.app, app.id);
    cr_assert_str_eq(got.branch, "main");
    cr_assert_eq(got.revision_number, 2);
    cr_assert_str_eq(got.creator, "Alice");
    cr_assert_str_eq(got.description, "a build");
    cr_assert_not(got.upload);

    /* a branch with '/' in its name: the Name has '-' */
    sh("git -C %s checkout -q -b feature/x", work);
    push("feature/x");
    cr_assert_eq(queue("feature/x", "1", "2.0.0", &p, &err), PACKAGES_OK, "%s", err.message);
    cr_assert_str_eq(p.name, "feature-x-2.0.0.1.tar.zst");
}

Test(packages, an_unknown_revision)
{
    struct store_package p;
    struct packages_error err;
    cr_assert_eq(queue("main", "7", "1.0.0", &p, &err), PACKAGES_REVISION_NOT_FOUND);
    cr_assert(strstr(err.message, "branch 'main' has no revision '7'"), "%s", err.message);
    cr_assert_eq(wakes, 0);
}

Test(packages, no_build_when_the_builder_refuses_or_is_missing)
{
    struct store_package p;
    struct packages_error err;
    packages_set_builder(&(struct packages_builder){no, wake});
    cr_assert_eq(queue("main", "1", "1.0.0", &p, &err), PACKAGES_REFUSED);
    cr_assert_str_eq(err.message, "builds are refused: no sandbox here");
    packages_set_builder(NULL);
    cr_assert_eq(queue("main", "1", "1.0.0", &p, &err), PACKAGES_REFUSED);
    cr_assert(strstr(err.message, "not running"), "%s", err.message);
    /* and the version rule comes first */
    cr_assert_eq(queue("main", "1", "1.0", &p, &err), PACKAGES_INVALID_VERSION);
}

Test(packages, a_version_tag_names_one_commit)
{
    struct store_package p;
    struct packages_error err;
    /* branch "other" has its own first commit: revision 1 like main's, another commit */
    sh("git -C %s checkout -q --orphan other && " GIT "-C %s commit -q --allow-empty -m x", work,
       work);
    push("other");
    cr_assert_eq(queue("main", "1", "1.0.0", &p, &err), PACKAGES_OK, "%s", err.message);
    /* the same commit again: a rebuild */
    cr_assert_eq(queue("main", "1", "1.0.0", &p, &err), PACKAGES_OK, "%s", err.message);
    /* the same tag on another commit, while a build will put it on main's */
    cr_assert_eq(queue("other", "1", "1.0.0", &p, &err), PACKAGES_TAG_EXISTS);
    cr_assert(strstr(err.message, "will put the tag '1.0.0.1'"), "%s", err.message);
    /* a tag that exists in the repository */
    char *bare = layout_repo_path("app1");
    sh("git -C %s tag 3.0.0.1 main && git -C %s push -q %s 3.0.0.1 2>/dev/null", work, work, bare);
    free(bare);
    cr_assert_eq(queue("other", "1", "3.0.0", &p, &err), PACKAGES_TAG_EXISTS);
    cr_assert(strstr(err.message, "the tag '3.0.0.1' exists on commit"), "%s", err.message);
    cr_assert_eq(queue("main", "1", "3.0.0", &p, &err), PACKAGES_OK, "%s", err.message);
}

/* ---- finding, cancelling, deleting ---- */

static void files_of(const struct store_package *p)
{
    char *path = packages_file_path(p), *log = packages_log_path(p);
    char *dir = layout_package_dir(p->app_id);
    sh("mkdir -p '%s' '%s' && echo pkg > '%s' && echo log > '%s'", dir, layout_build_logs_dir(),
       path, log);
    free(path);
    free(log);
    free(dir);
}

static bool exists(char *path)
{
    bool e = access(path, F_OK) == 0;
    free(path);
    return e;
}

static void built(struct store_package *p)
{
    cr_assert_eq(store_package_finish(p->id, PKG_SUCCEEDED, "", 4, "ab"), 0);
    cr_assert_eq(store_package_get(p->package_id, p), 0);
}

Test(packages, find_only_the_apps_own_package)
{
    struct store_package p, got;
    struct packages_error err;
    cr_assert_eq(queue("main", "1", "1.0.0", &p, &err), PACKAGES_OK);
    cr_assert_eq(packages_find(&app, p.package_id, &got, &err), PACKAGES_OK);
    cr_assert_eq(got.id, p.id);
    cr_assert_str_eq(got.app_id, "app1");
    char *want = str("%s/packages/app1/%s.tar.zst", layout_dir(), p.package_id);
    char *path = packages_file_path(&got);
    cr_assert_str_eq(path, want);
    free(want);
    free(path);
    cr_assert_eq(packages_find(&other, p.package_id, &got, &err), PACKAGES_NOT_FOUND);
    cr_assert_str_eq(err.message, "Package or build job not found");
    cr_assert_eq(packages_find(&app, "nope", &got, &err), PACKAGES_NOT_FOUND);
    cr_assert_eq(packages_find(&app, "00000000-0000-4000-8000-000000000000", &got, &err),
                 PACKAGES_NOT_FOUND);
}

Test(packages, cancel)
{
    struct store_package p;
    struct packages_error err;
    cr_assert_eq(queue("main", "1", "1.0.0", &p, &err), PACKAGES_OK);
    cr_assert_eq(packages_cancel(&p, &err), PACKAGES_OK);
    cr_assert_eq(wakes, 2);
    cr_assert(store_package_cancelled(p.id));
    built(&p);
    cr_assert_eq(packages_cancel(&p, &err), PACKAGES_ENDED);
    cr_assert_str_eq(err.message, "the build has ended already (Succeeded)");
}

Test(packages, delete_takes_the_files_with_the_package)
{
    struct store_package p;
    struct packages_error err;
    cr_assert_eq(queue("main", "1", "1.0.0", &p, &err), PACKAGES_OK);
    files_of(&p);
    cr_assert_eq(packages_delete(&p, &err), PACKAGES_BUILDING);
    cr_assert_str_eq(err.message, "the package is still building: cancel it first");
    built(&p);

    /* held by an environment: kept, files too */
    struct store_env env;
    cr_assert_eq(store_env_by_mode(app.id, "Test", &env), 0);
    cr_assert_eq(store_env_set_package(env.id, p.package_id), 0);
    cr_assert_eq(packages_delete(&p, &err), PACKAGES_IN_USE);
    cr_assert_str_eq(err.message, "an environment holds this package");
    cr_assert(exists(packages_file_path(&p)));
    cr_assert_eq(store_env_set_package(env.id, NULL), 0);

    cr_assert_eq(packages_delete(&p, &err), PACKAGES_OK, "%s", err.message);
    cr_assert_not(exists(packages_file_path(&p)));
    cr_assert_not(exists(packages_log_path(&p)));
    struct store_package gone;
    cr_assert_eq(store_package_get(p.package_id, &gone), -ENOENT);
    cr_assert_eq(packages_delete(&p, &err), PACKAGES_NOT_FOUND);
}

Test(packages, retention_keeps_the_newest_and_the_held)
{
    struct store_package p[5];
    struct packages_error err;
    for (int i = 0; i < 5; i++) {
        char version[16];
        snprintf(version, sizeof(version), "1.0.%d", i);
        cr_assert_eq(queue("main", "1", version, &p[i], &err), PACKAGES_OK, "%s", err.message);
        files_of(&p[i]);
        built(&p[i]);
    }
    struct store_package building;
    cr_assert_eq(queue("main", "1", "2.0.0", &building, &err), PACKAGES_OK);
    struct store_env env;
    cr_assert_eq(store_env_by_mode(app.id, "Test", &env), 0);
    cr_assert_eq(store_env_set_package(env.id, p[0].package_id), 0);

    cr_assert_eq(packages_prune(app.id, "app1", 0), 0); /* 0 keeps all */
    /* p[3] and p[4] are the newest 2; p[0] is held; p[1] and p[2] go */
    cr_assert_eq(packages_prune(app.id, "app1", 2), 2);
    struct store_package got;
    int want[5] = {0, -ENOENT, -ENOENT, 0, 0};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(store_package_get(p[i].package_id, &got), want[i], "package %d", i);
        cr_assert_eq(exists(packages_file_path(&p[i])), want[i] == 0, "package %d", i);
        cr_assert_eq(exists(packages_log_path(&p[i])), want[i] == 0, "package %d", i);
    }
    cr_assert_eq(store_package_get(building.package_id, &got), 0);
}

/* ---- importing ---- */

Test(packages, the_name_rule_of_an_upload)
{
    struct packages_error err;
    cr_assert_eq(packages_name_check("app.mda", &err), PACKAGES_OK);
    cr_assert_eq(packages_name_check("caf\xc3\xa9.mda", &err), PACKAGES_OK);
    const char *bad[] = {"", "a/b", "a\\b", "a\"b", "a\nb", "\xff.mda"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(packages_name_check(bad[i], &err), PACKAGES_INVALID, "%zu", i);
        cr_assert(strstr(err.message, "the name must be 1 to 200 bytes"), "%s", err.message);
    }
}

/* A package file in tmp: a valid one (a workspace with one file) or any bytes. */
static int package_fd(bool valid, char sha[65], uint64_t *size)
{
    char *ws = str("%s/ws", tmp), *dest = str("%s/up.tar.zst", layout_tmp_dir());
    if (valid) {
        sh("mkdir -p '%s' && echo hello > '%s/hello.txt'", ws, ws);
        const char *include[] = {"hello.txt"};
        json_t *manifest = json_pack("{s:s}", "version", "3.1.4");
        char err[256];
        cr_assert_eq(
            package_write(ws, include, 1, manifest, dest, NULL, sha, size, err, sizeof(err)), 0,
            "%s", err);
        json_decref(manifest);
    } else {
        sh("printf 'not a package' > '%s'", dest);
        snprintf(sha, 65, "%064d", 0);
        *size = 13;
    }
    int fd = open(dest, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    unlink(dest);
    free(ws);
    free(dest);
    return fd;
}

Test(packages, an_upload_is_stored_and_recorded)
{
    char sha[65];
    uint64_t size;
    int fd = package_fd(true, sha, &size);
    struct packages_upload up = {fd, size, sha, "app.mda", "Alice"};
    struct store_package pkg, got;
    struct store_job job, job_got;
    struct packages_error err;
    cr_assert_eq(packages_import(&app, &up, &pkg, &job, &err), PACKAGES_OK, "%s", err.message);
    close(fd);
    cr_assert_eq(store_package_get(pkg.package_id, &got), 0);
    cr_assert(got.upload);
    cr_assert_eq(got.status, PKG_SUCCEEDED);
    cr_assert_str_eq(got.version, "3.1.4");
    cr_assert_str_eq(got.name, "app.mda");
    cr_assert_str_eq(got.sha256, sha);
    cr_assert_eq(got.size, (int64_t)size);
    cr_assert_eq(store_job_get(job.job_id, &job_got), 0);
    cr_assert_eq(job_got.status, JOB_COMPLETED);
    cr_assert_str_eq(job_got.package_id, pkg.package_id);
    char *path = packages_file_path(&got);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, size);
    free(path);
}

Test(packages, an_invalid_upload_is_not_kept_but_its_job_says_why)
{
    char sha[65];
    uint64_t size;
    int fd = package_fd(false, sha, &size);
    struct packages_upload up = {fd, size, sha, "app.mda", "Alice"};
    struct store_package pkg, got;
    struct store_job job, job_got;
    struct packages_error err;
    cr_assert_eq(packages_import(&app, &up, &pkg, &job, &err), PACKAGES_INVALID_PACKAGE);
    close(fd);
    cr_assert(err.message[0]);
    cr_assert_eq(store_package_get(pkg.package_id, &got), -ENOENT);
    cr_assert_eq(store_job_get(job.job_id, &job_got), 0);
    cr_assert_eq(job_got.status, JOB_FAILED);
    cr_assert_str_eq(job_got.reason, err.message);
    cr_assert_not(exists(layout_package_path("app1", pkg.package_id)));

    up.name = "a/b";
    cr_assert_eq(packages_import(&app, &up, &pkg, &job, &err), PACKAGES_INVALID);
}
