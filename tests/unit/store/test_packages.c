/* Tests for the store's retention queries: which packages are beyond the newest N ended ones
 * (Queued and Building ones neither count nor go, held ones count but never go), and the delete
 * that checks again that nothing holds the package. One Test case: Criterion starts a process
 * per test.
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
    temp_dir(tmp, "pkgs");
    char *db = str("%s/slipway.db", tmp);
    cr_assert_eq(store_init(db), 0);
    free(db);
}

static void teardown(void)
{
    store_thread_release();
    fs_remove_tree(tmp);
}

TestSuite(packages, .init = setup, .fini = teardown, .timeout = 10);

static struct store_package pkg(int64_t app, enum store_pkg_status status)
{
    struct store_package p;
    memset(&p, 0, sizeof(p));
    cr_assert_eq(crypto_uuid(p.package_id), 0);
    p.app = app;
    p.status = status;
    snprintf(p.version, sizeof(p.version), "1.0.0.1");
    cr_assert_eq(store_package_insert(&p), 0);
    return p;
}

struct listed {
    int64_t id[16];
    size_t nr;
};

static int collect(const struct store_package *p, void *arg)
{
    struct listed *l = arg;
    cr_assert_lt(l->nr, 16);
    l->id[l->nr++] = p->id;
    return 0;
}

static struct listed prunable(int64_t app, unsigned keep)
{
    struct listed l = {.nr = 0};
    cr_assert_eq(store_package_each_prunable(app, keep, collect, &l), 0);
    return l;
}

Test(packages, retention_candidates_and_guarded_delete)
{
    struct store_app a, other;
    memset(&a, 0, sizeof(a));
    snprintf(a.app_id, sizeof(a.app_id), "keep-app");
    snprintf(a.name, sizeof(a.name), "Keep");
    cr_assert_eq(crypto_uuid(a.project_id), 0);
    snprintf(a.default_branch, sizeof(a.default_branch), "main");
    cr_assert_eq(store_app_insert(&a), 0);
    other = a;
    snprintf(other.app_id, sizeof(other.app_id), "other-app");
    cr_assert_eq(crypto_uuid(other.project_id), 0);
    cr_assert_eq(store_app_insert(&other), 0);

    /* oldest first: s0 f1 s2 (held) B3 s4 Q5 s6; another app's packages never show */
    struct store_package s0 = pkg(a.id, PKG_SUCCEEDED), f1 = pkg(a.id, PKG_FAILED);
    struct store_package s2 = pkg(a.id, PKG_SUCCEEDED), b3 = pkg(a.id, PKG_BUILDING);
    struct store_package s4 = pkg(a.id, PKG_SUCCEEDED), q5 = pkg(a.id, PKG_QUEUED);
    struct store_package s6 = pkg(a.id, PKG_SUCCEEDED);
    pkg(other.id, PKG_SUCCEEDED);
    pkg(other.id, PKG_SUCCEEDED);
    struct store_env test;
    cr_assert_eq(store_env_by_mode(a.id, "Test", &test), 0);
    cr_assert_eq(store_env_set_package(test.id, s2.package_id), 0);

    /* 0 keeps nothing back: every ended, unheld one, oldest first */
    struct listed l = prunable(a.id, 0);
    cr_assert_eq(l.nr, 4);
    cr_assert_eq(l.id[0], s0.id);
    cr_assert_eq(l.id[1], f1.id);
    cr_assert_eq(l.id[2], s4.id);
    cr_assert_eq(l.id[3], s6.id);
    /* keep 2: s6 and s4 stay (B3 and Q5 do not count); s2 is beyond but held */
    l = prunable(a.id, 2);
    cr_assert_eq(l.nr, 2);
    cr_assert_eq(l.id[0], s0.id);
    cr_assert_eq(l.id[1], f1.id);
    /* keep 3: the held s2 counts as one of the three */
    l = prunable(a.id, 3);
    cr_assert_eq(l.nr, 2);
    l = prunable(a.id, 5);
    cr_assert_eq(l.nr, 0);

    /* the delete checks again */
    cr_assert_eq(store_package_delete_unused(s2.id), -EBUSY);
    cr_assert_eq(store_package_delete_unused(b3.id), -EBUSY);
    cr_assert_eq(store_package_delete_unused(q5.id), -EBUSY);
    cr_assert_eq(store_package_delete_unused(s0.id), 0);
    cr_assert_eq(store_package_delete_unused(s0.id), -ENOENT);
    struct store_package got;
    cr_assert_eq(store_package_get(s0.package_id, &got), -ENOENT);
    cr_assert_eq(store_package_get(s2.package_id, &got), 0);
    cr_assert_eq(store_package_get(b3.package_id, &got), 0);
    l = prunable(a.id, 2);
    cr_assert_eq(l.nr, 1);
    cr_assert_eq(l.id[0], f1.id);
    /* released, the old one goes like any other */
    cr_assert_eq(store_env_set_package(test.id, NULL), 0);
    cr_assert_eq(store_package_delete_unused(s2.id), 0);
    cr_assert_eq(prunable(other.id, 2).nr, 0);
}
