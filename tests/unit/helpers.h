/* helpers.h — what the unit tests share to build their fixtures: a temp directory, formatted
 * strings, shell commands that must succeed (test data only: temp paths and fixed names), and a
 * fresh store in a temp directory with users and apps in it. Header-only: each test is one
 * source file.
 */
#ifndef SLIPWAY_TESTS_HELPERS_H
#define SLIPWAY_TESTS_HELPERS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "base/crypto.h"
#include "base/util.h"
#include "store/store.h"

/* Makes a new directory $TMPDIR/slipway-<name>-XXXXXX (TMPDIR unset: /tmp) into dir. */
static inline void temp_dir(char dir[PATH_MAX], const char *name)
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(dir, PATH_MAX, "%s/slipway-%s-XXXXXX", base && *base ? base : "/tmp", name);
    cr_assert(n > 0 && n < PATH_MAX);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

/* The state letter of process pid in /proc/<pid>/stat ('R', 'S', 'Z' for a zombie, ...), or
 * '\0' when there is no such process. */
static inline char proc_state(int pid)
{
    char path[64], stat[512] = "";
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '\0';
    bool ok = fgets(stat, sizeof(stat), f) != NULL;
    fclose(f);
    const char *end = strrchr(stat, ')'); /* the command name may hold anything */
    return ok && end && end[1] == ' ' ? end[2] : '\0';
}

__attribute__((format(printf, 1, 0))) static inline char *fmt_alloc(const char *fmt, va_list ap)
{
    char *s = NULL;
    cr_assert_geq(vasprintf(&s, fmt, ap), 0);
    return s;
}

/* A formatted string (caller frees). */
__attribute__((format(printf, 1, 2))) static inline char *str(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = fmt_alloc(fmt, ap);
    va_end(ap);
    return s;
}

/* Runs a shell command; asserts it succeeds. */
__attribute__((format(printf, 1, 2))) static inline void sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = fmt_alloc(fmt, ap);
    va_end(ap);
    int status = system(cmd);
    cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "failed: %s", cmd);
    free(cmd);
}

/* Runs a shell command that must succeed and returns its whole output (caller frees). */
__attribute__((format(printf, 1, 2))) static inline char *sh_out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = fmt_alloc(fmt, ap);
    va_end(ap);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f, "popen: %s", cmd);
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, m);
    fclose(m);
    cr_assert_eq(pclose(f), 0, "failed: %s", cmd);
    free(cmd);
    return out;
}

/* ---- a store on disk ---- */

/* The store of a test that uses test_store_setup: `dir` is its data directory (a new one for each
 * test_store_fresh) and `db_file` its database, both below `tmp`, the test's temp directory. */
static struct {
    char tmp[PATH_MAX], dir[PATH_MAX], db_file[PATH_MAX];
} test_store __attribute__((unused));

/* Opens an empty store in a new data directory below test_store.tmp (and gives this thread a new
 * connection). */
static inline void test_store_fresh(void)
{
    store_thread_release();
    int n = snprintf(test_store.dir, PATH_MAX, "%s/data-XXXXXX", test_store.tmp);
    cr_assert(n > 0 && n < PATH_MAX);
    cr_assert_not_null(mkdtemp(test_store.dir), "mkdtemp: %s", strerror(errno));
    n = snprintf(test_store.db_file, PATH_MAX, "%s/slipway.db", test_store.dir);
    cr_assert(n > 0 && n < PATH_MAX);
    cr_assert_eq(store_init(test_store.db_file), 0);
}

/* A suite's .init and .fini: each test gets a temp directory with an empty store. */
static inline void test_store_setup(void)
{
    temp_dir(test_store.tmp, "store");
    test_store_fresh();
}

static inline void test_store_teardown(void)
{
    store_thread_release();
    fs_remove_tree(test_store.tmp);
}

/* Inserts a user named "Some Name"; its row id. */
static inline int64_t test_store_user(const char *email, bool admin)
{
    int64_t id = 0;
    int r = store_user_insert(email, "Some Name", admin, &id);
    cr_assert_eq(r, 0, "store_user_insert(%s) = %d", email, r);
    cr_assert_gt(id, 0);
    return id;
}

/* Inserts an app (with the environments every app gets) named "App <app_id>", branch main. */
static inline struct store_app test_store_app(const char *app_id)
{
    struct store_app a;
    memset(&a, 0, sizeof(a));
    snprintf(a.app_id, sizeof(a.app_id), "%s", app_id);
    snprintf(a.name, sizeof(a.name), "App %s", app_id);
    cr_assert_eq(crypto_uuid(a.project_id), 0);
    snprintf(a.url, sizeof(a.url), "http://127.0.0.1/git/%s.git", app_id);
    snprintf(a.default_branch, sizeof(a.default_branch), "main");
    int r = store_app_insert(&a);
    cr_assert_eq(r, 0, "store_app_insert(%s) = %d", app_id, r);
    cr_assert_gt(a.id, 0);
    return a;
}

#endif
