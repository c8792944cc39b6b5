/* Tests for store, each check on a fresh data dir: migrations and their idempotence, users, apps
 * and environments, membership and default rights, rights updates, transactions, and the
 * hash-chained audit log (tampering through a raw sqlite3 connection must be detected).
 * Checks are plain functions, run in a few Test cases at the end: Criterion starts a process
 * per test (~50 ms each here) and the unit tests must stay fast.
 */
#include "store/store.h"
#include "store/store_int.h"

#include "base/crypto.h"
#include "base/util.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

TestSuite(store, .init = test_store_setup, .fini = test_store_teardown, .timeout = 10);

/* A second, raw connection to the same database, as another process (or an attacker) has. */
static sqlite3 *raw_open(void)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(test_store.db_file, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : "?");
    sqlite3_free(err);
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sql);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static struct store_env env(int64_t app_row, const char *mode)
{
    struct store_env e;
    int r = store_env_by_mode(app_row, mode, &e);
    cr_assert_eq(r, 0, "store_env_by_mode(%s) = %d", mode, r);
    return e;
}

static unsigned rights(int64_t env_row, int64_t user_row)
{
    unsigned bits = 0xdead;
    cr_assert_eq(store_rights_get(env_row, user_row, &bits), 0);
    return bits;
}

/* ---- init and migrations ---- */

static void init_creates_db_with_schema_version(void)
{
    test_store_fresh();
    struct stat st;
    cr_assert_eq(stat(test_store.db_file, &st), 0);
    int v = store_schema_version();
    cr_assert_gt(v, 0);
    sqlite3 *db = raw_open();
    cr_assert_eq(raw_int(db, "PRAGMA user_version"), v);
    sqlite3_stmt *st_mode;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st_mode, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st_mode), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st_mode, 0), "wal");
    sqlite3_finalize(st_mode);
    sqlite3_close(db);
}

static void init_twice_is_idempotent_and_keeps_data(void)
{
    test_store_fresh();
    int v = store_schema_version();
    int64_t id = test_store_user("keep@example.com", false);
    cr_assert_eq(store_init(test_store.db_file), 0);
    cr_assert_eq(store_schema_version(), v);
    /* and with a fresh connection, as a restarted server has */
    store_thread_release();
    cr_assert_eq(store_init(test_store.db_file), 0);
    cr_assert_eq(store_schema_version(), v);
    struct store_user u;
    cr_assert_eq(store_user_by_email("keep@example.com", &u), 0);
    cr_assert_eq(u.id, id);
}

static void init_refuses_a_newer_schema(void)
{
    test_store_fresh();
    cr_redirect_stderr(); /* the store logs why it refuses */
    store_thread_release();
    sqlite3 *db = raw_open();
    raw_exec(db, "PRAGMA user_version = 999");
    sqlite3_close(db);
    cr_assert_eq(store_init(test_store.db_file), -EIO);
    db = raw_open();
    cr_assert_eq(raw_int(db, "PRAGMA user_version"), 999); /* left as it was */
    sqlite3_close(db);
}

static void init_on_missing_dir_fails(void)
{
    test_store_fresh();
    cr_redirect_stderr(); /* the store logs why it refuses */
    store_thread_release();
    char missing[PATH_MAX + 32];
    snprintf(missing, sizeof(missing), "%s/no/such/dir/slipway.db", test_store.dir);
    cr_assert_eq(store_init(missing), -EIO);
}

/* ---- users ---- */

static void user_insert_and_read(void)
{
    test_store_fresh();
    int64_t before = time_now_ms();
    int64_t id = 0;
    cr_assert_eq(store_user_insert("Ann@Example.com", "Ann Lee", true, &id), 0);
    struct store_user u;
    cr_assert_eq(store_user_by_id(id, &u), 0);
    cr_assert_eq(u.id, id);
    cr_assert_str_eq(u.email, "Ann@Example.com");
    cr_assert_str_eq(u.name, "Ann Lee");
    cr_assert(u.admin);
    cr_assert(u.active);
    cr_assert(u.created_ms >= before - 1000 && u.created_ms <= time_now_ms() + 1000);
    struct store_user v;
    cr_assert_eq(store_user_by_email("ann@example.COM", &v), 0); /* emails match in any case */
    cr_assert_eq(v.id, id);
    cr_assert_eq(store_user_insert("x@example.com", "X", false, NULL), 0); /* id optional */
}

static void user_email_unique_in_any_case(void)
{
    test_store_fresh();
    test_store_user("dup@example.com", false);
    cr_assert_eq(store_user_insert("dup@example.com", "Again", false, NULL), -EEXIST);
    cr_assert_eq(store_user_insert("DUP@example.com", "Again", false, NULL), -EEXIST);
}

static void user_missing(void)
{
    test_store_fresh();
    struct store_user u;
    cr_assert_eq(store_user_by_email("nobody@example.com", &u), -ENOENT);
    cr_assert_eq(store_user_by_id(12345, &u), -ENOENT);
}

struct collect {
    int n;
    int stop_at; /* return 7 from the callback at this count; 0: never */
    char seen[8][STORE_EMAIL_MAX + 16];
};

static int collect_user(const struct store_user *u, void *arg)
{
    struct collect *c = arg;
    snprintf(c->seen[c->n++], sizeof(c->seen[0]), "%s", u->email);
    return c->n == c->stop_at ? 7 : 0;
}

static void user_each_ordered_and_stoppable(void)
{
    test_store_fresh();
    test_store_user("c@example.com", false);
    test_store_user("a@example.com", false);
    test_store_user("b@example.com", false);
    struct collect c = {0};
    cr_assert_eq(store_user_each(collect_user, &c), 0);
    cr_assert_eq(c.n, 3);
    cr_assert_str_eq(c.seen[0], "a@example.com");
    cr_assert_str_eq(c.seen[1], "b@example.com");
    cr_assert_str_eq(c.seen[2], "c@example.com");
    struct collect s = {.stop_at = 2};
    cr_assert_eq(store_user_each(collect_user, &s), 7);
    cr_assert_eq(s.n, 2);
}

/* ---- apps and environments ---- */

struct envs {
    int n;
    struct store_env e[4];
};

static int collect_env(const struct store_env *e, void *arg)
{
    struct envs *c = arg;
    cr_assert_lt(c->n, 4);
    c->e[c->n++] = *e;
    return 0;
}

static void app_insert_and_lookups(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    struct store_app b;
    cr_assert_eq(store_app_by_appid("calc", &b), 0);
    cr_assert_eq(b.id, a.id);
    cr_assert_str_eq(b.name, "App calc");
    cr_assert_str_eq(b.project_id, a.project_id);
    cr_assert_str_eq(b.url, a.url);
    cr_assert_str_eq(b.default_branch, "main");
    cr_assert_eq(b.created_ms, a.created_ms);
    struct store_app c;
    cr_assert_eq(store_app_by_project_id(a.project_id, &c), 0);
    cr_assert_eq(c.id, a.id);
    cr_assert_eq(store_app_by_appid("nope", &c), -ENOENT);
    cr_assert_eq(store_app_by_project_id("00000000-0000-4000-8000-000000000000", &c), -ENOENT);
}

static void app_has_three_environments(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    struct envs c = {0};
    cr_assert_eq(store_env_each(a.id, collect_env, &c), 0);
    cr_assert_eq(c.n, 3);
    const char *modes[] = {"Test", "Acceptance", "Production"};
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(c.e[i].mode, modes[i]);
        cr_assert_eq(c.e[i].app, a.id);
        cr_assert_eq(c.e[i].production, i == 2);
        cr_assert_str_eq(c.e[i].status, "Empty");
        cr_assert_eq(strlen(c.e[i].environment_id), 36);
        cr_assert_eq(c.e[i].environment_id[14], '4');
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(c.e[i].environment_id, c.e[j].environment_id);
    }
}

static void env_by_mode_any_case(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    struct store_env e = env(a.id, "production");
    cr_assert_str_eq(e.mode, "Production");
    cr_assert(e.production);
    e = env(a.id, "TEST");
    cr_assert_str_eq(e.mode, "Test");
    cr_assert_not(e.production);
    cr_assert_eq(store_env_by_mode(a.id, "Staging", &e), -ENOENT);
    struct store_app b = test_store_app("other");
    struct store_env eb = env(b.id, "Test");
    cr_assert_neq(eb.id, env(a.id, "Test").id);
}

/* Slots are the environments' blocks of ports: the count reaches one past the highest taken. */
static void env_slots_count_the_blocks(void)
{
    test_store_fresh();
    cr_assert_eq(store_env_slots(), 0);
    struct store_app a = test_store_app("calc");
    cr_assert_eq(store_env_slots(), 3);
    test_store_app("other");
    cr_assert_eq(store_env_slots(), 6);
    cr_assert_eq(store_env_insert(a.id, "Staging", false), 0);
    cr_assert_eq(store_env_slots(), 7);
}

static void app_duplicate_rolls_back(void)
{
    test_store_fresh();
    test_store_app("calc");
    struct store_app d;
    memset(&d, 0, sizeof(d));
    snprintf(d.app_id, sizeof(d.app_id), "calc");
    snprintf(d.name, sizeof(d.name), "Dup");
    cr_assert_eq(crypto_uuid(d.project_id), 0);
    cr_assert_eq(store_app_insert(&d), -EEXIST);
    sqlite3 *db = raw_open();
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM apps"), 1);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM environments"), 3);
    sqlite3_close(db);
    /* the connection is usable afterwards, outside any transaction */
    test_store_app("calc2");
}

static void app_project_id_unique(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    struct store_app d;
    memset(&d, 0, sizeof(d));
    snprintf(d.app_id, sizeof(d.app_id), "other");
    memcpy(d.project_id, a.project_id, sizeof(d.project_id));
    cr_assert_eq(store_app_insert(&d), -EEXIST);
}

static int collect_app(const struct store_app *a, void *arg)
{
    struct collect *c = arg;
    snprintf(c->seen[c->n++], sizeof(c->seen[0]), "%s", a->app_id);
    return 0;
}

static void app_each_all_or_member(void)
{
    test_store_fresh();
    struct store_app z = test_store_app("zeta");
    test_store_app("alpha");
    struct store_app m = test_store_app("mid");
    int64_t u = test_store_user("u@example.com", false);
    struct collect all = {0};
    cr_assert_eq(store_app_each(0, collect_app, &all), 0);
    cr_assert_eq(all.n, 3);
    cr_assert_str_eq(all.seen[0], "alpha");
    cr_assert_str_eq(all.seen[1], "mid");
    cr_assert_str_eq(all.seen[2], "zeta");
    struct collect none = {0};
    cr_assert_eq(store_app_each(u, collect_app, &none), 0);
    cr_assert_eq(none.n, 0);
    cr_assert_eq(store_member_set(z.id, u, STORE_ROLE_VIEWER), 0);
    cr_assert_eq(store_member_set(m.id, u, STORE_ROLE_ADMIN), 0);
    struct collect mine = {0};
    cr_assert_eq(store_app_each(u, collect_app, &mine), 0);
    cr_assert_eq(mine.n, 2);
    cr_assert_str_eq(mine.seen[0], "mid");
    cr_assert_str_eq(mine.seen[1], "zeta");
}

/* ---- members and rights ---- */

static void member_default_rights_api_on_non_production(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    int64_t u = test_store_user("dev@example.com", false);
    cr_assert_eq(store_member_set(a.id, u, STORE_ROLE_DEVELOPER), 0);
    enum store_role role;
    cr_assert_eq(store_member_role(a.id, u, &role), 0);
    cr_assert_eq(role, STORE_ROLE_DEVELOPER);
    cr_assert_eq(rights(env(a.id, "Test").id, u), RIGHT_API);
    cr_assert_eq(rights(env(a.id, "Acceptance").id, u), RIGHT_API);
    cr_assert_eq(rights(env(a.id, "Production").id, u), 0);
    unsigned any = 0;
    cr_assert_eq(store_rights_any(a.id, u, &any), 0);
    cr_assert_eq(any, RIGHT_API);
}

static void non_member_has_nothing(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    int64_t u = test_store_user("out@example.com", false);
    enum store_role role = STORE_ROLE_ADMIN;
    cr_assert_eq(store_member_role(a.id, u, &role), 0);
    cr_assert_eq(role, STORE_ROLE_NONE);
    cr_assert_eq(rights(env(a.id, "Test").id, u), 0);
    unsigned any = 0xdead;
    cr_assert_eq(store_rights_any(a.id, u, &any), 0);
    cr_assert_eq(any, 0);
}

static void role_change_keeps_rights(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    int64_t u = test_store_user("dev@example.com", false);
    struct store_env prod = env(a.id, "Production");
    cr_assert_eq(store_member_set(a.id, u, STORE_ROLE_VIEWER), 0);
    cr_assert_eq(store_rights_update(a.id, prod.id, u, RIGHT_TRANSPORT, 0), 0);
    cr_assert_eq(store_member_set(a.id, u, STORE_ROLE_ADMIN), 0);
    enum store_role role;
    cr_assert_eq(store_member_role(a.id, u, &role), 0);
    cr_assert_eq(role, STORE_ROLE_ADMIN);
    cr_assert_eq(rights(prod.id, u), RIGHT_TRANSPORT);
    cr_assert_eq(rights(env(a.id, "Test").id, u), RIGHT_API);
}

static void member_set_rejects_bad_input(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    int64_t u = test_store_user("dev@example.com", false);
    cr_assert_neq(store_member_set(a.id, u, STORE_ROLE_NONE), 0);
    cr_assert_neq(store_member_set(a.id, 9999, STORE_ROLE_VIEWER), 0); /* no such user */
    cr_assert_neq(store_member_set(9999, u, STORE_ROLE_VIEWER), 0);    /* no such app */
    enum store_role role;
    cr_assert_eq(store_member_role(a.id, u, &role), 0);
    cr_assert_eq(role, STORE_ROLE_NONE);
    sqlite3 *db = raw_open();
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM members"), 0);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM env_rights"), 0);
    sqlite3_close(db);
}

static int collect_member(const struct store_member *m, void *arg)
{
    struct collect *c = arg;
    snprintf(c->seen[c->n++], sizeof(c->seen[0]), "%s=%d", m->email, (int)m->role);
    return 0;
}

static void member_each_by_email(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    int64_t z = test_store_user("zed@example.com", false),
            b = test_store_user("bea@example.com", false);
    test_store_user("not-a-member@example.com", false);
    cr_assert_eq(store_member_set(a.id, z, STORE_ROLE_ADMIN), 0);
    cr_assert_eq(store_member_set(a.id, b, STORE_ROLE_VIEWER), 0);
    struct collect c = {0};
    cr_assert_eq(store_member_each(a.id, collect_member, &c), 0);
    cr_assert_eq(c.n, 2);
    char want[64];
    snprintf(want, sizeof(want), "bea@example.com=%d", STORE_ROLE_VIEWER);
    cr_assert_str_eq(c.seen[0], want);
    snprintf(want, sizeof(want), "zed@example.com=%d", STORE_ROLE_ADMIN);
    cr_assert_str_eq(c.seen[1], want);
}

static void rights_update_set_and_clear(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    int64_t u = test_store_user("dev@example.com", false);
    cr_assert_eq(store_member_set(a.id, u, STORE_ROLE_DEVELOPER), 0);
    struct store_env test = env(a.id, "Test"), prod = env(a.id, "Production");

    cr_assert_eq(store_rights_update(a.id, prod.id, u, RIGHT_TRANSPORT | RIGHT_BACKUPS, 0), 0);
    cr_assert_eq(rights(prod.id, u), RIGHT_TRANSPORT | RIGHT_BACKUPS);
    cr_assert_eq(store_rights_update(a.id, prod.id, u, RIGHT_API, RIGHT_BACKUPS), 0);
    cr_assert_eq(rights(prod.id, u), RIGHT_API | RIGHT_TRANSPORT);
    cr_assert_eq(store_rights_update(a.id, test.id, u, 0, RIGHT_API), 0);
    cr_assert_eq(rights(test.id, u), 0);
    cr_assert_eq(store_rights_update(a.id, test.id, u, 0, RIGHT_API), 0); /* clearing twice */
    cr_assert_eq(rights(test.id, u), 0);
    cr_assert_eq(store_rights_update(a.id, test.id, u, RIGHT_ALL, 0), 0);
    cr_assert_eq(rights(test.id, u), RIGHT_ALL);
    /* clear wins over set in one call */
    cr_assert_eq(store_rights_update(a.id, test.id, u, RIGHT_ALERTS, RIGHT_ALERTS), 0);
    cr_assert_eq(rights(test.id, u), RIGHT_ALL & ~RIGHT_ALERTS);

    unsigned any;
    cr_assert_eq(store_rights_any(a.id, u, &any), 0);
    cr_assert_eq(any, RIGHT_ALL & ~RIGHT_ALERTS);
    cr_assert_eq(rights(env(a.id, "Acceptance").id, u), RIGHT_API); /* untouched */
}

static void rights_update_needs_membership(void)
{
    test_store_fresh();
    struct store_app a = test_store_app("calc");
    int64_t u = test_store_user("out@example.com", false);
    struct store_env test = env(a.id, "Test");
    cr_assert_eq(store_rights_update(a.id, test.id, u, RIGHT_API, 0), -ENOENT);
    cr_assert_eq(rights(test.id, u), 0);
}

/* BUG (reported, not fixed here): store_rights_update checks membership of `app` but not that
 * `env` belongs to it, so rights land on another app's environment, where the user is no member.
 * admin_rights_change passes a matching pair today. Enable when the function checks env.app. */
Test(store, rights_update_rejects_env_of_another_app)
{
    struct store_app a = test_store_app("calc"), b = test_store_app("other");
    int64_t u = test_store_user("dev@example.com", false);
    cr_assert_eq(store_member_set(a.id, u, STORE_ROLE_DEVELOPER), 0);
    struct store_env foreign = env(b.id, "Production");
    int r = store_rights_update(a.id, foreign.id, u, RIGHT_ALL, 0);
    cr_assert_neq(r, 0, "rights set on an environment of another app");
    cr_assert_eq(rights(foreign.id, u), 0);
}

/* ---- transactions ---- */

static void rollback_and_commit(void)
{
    test_store_fresh();
    cr_assert_eq(store_begin(), 0);
    test_store_user("gone@example.com", false);
    store_rollback();
    struct store_user u;
    cr_assert_eq(store_user_by_email("gone@example.com", &u), -ENOENT);
    cr_assert_eq(store_begin(), 0);
    test_store_user("kept@example.com", false);
    cr_assert_eq(store_commit(), 0);
    cr_assert_eq(store_user_by_email("kept@example.com", &u), 0);
    store_rollback(); /* outside a transaction: harmless */
}

/* ---- audit ---- */

struct audit_rows {
    int n;
    int64_t id[8];
    char line[8][256];
    char hash[8][65];
};

static int collect_audit(const struct store_audit *a, void *arg)
{
    struct audit_rows *c = arg;
    cr_assert_lt(c->n, 8);
    c->id[c->n] = a->id;
    snprintf(c->line[c->n], sizeof(c->line[0]), "%s|%s|%s|%s|%s|%s|%s", a->actor, a->action, a->app,
             a->env, a->source, a->result, a->detail);
    snprintf(c->hash[c->n], sizeof(c->hash[0]), "%s", a->hash);
    c->n++;
    return 0;
}

static void append3(void)
{
    cr_assert_eq(store_audit_append("cli", "user add", NULL, NULL, "cli", "ok", "email=a@b.c"), 0);
    cr_assert_eq(
        store_audit_append("a@b.c", "grant", "calc", "Production", "127.0.0.1", "ok", "rights=api"),
        0);
    cr_assert_eq(store_audit_append("a@b.c", "git push", "calc", "", "127.0.0.1", "denied", ""), 0);
}

static void audit_empty_verifies(void)
{
    test_store_fresh();
    int64_t bad = -5;
    cr_assert_eq(store_audit_verify(&bad), 0);
    cr_assert_eq(bad, -5);
    cr_assert_eq(store_audit_verify(NULL), 0);
}

static void audit_append_read_verify(void)
{
    test_store_fresh();
    int64_t before = time_now_ms();
    append3();
    struct audit_rows c = {0};
    cr_assert_eq(store_audit_each(0, 100, collect_audit, &c), 0);
    cr_assert_eq(c.n, 3);
    cr_assert_str_eq(c.line[0], "cli|user add|||cli|ok|email=a@b.c");
    cr_assert_str_eq(c.line[1], "a@b.c|grant|calc|Production|127.0.0.1|ok|rights=api");
    cr_assert_str_eq(c.line[2], "a@b.c|git push|calc||127.0.0.1|denied|");
    cr_assert(c.id[0] < c.id[1] && c.id[1] < c.id[2]);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(strlen(c.hash[i]), 64);
        cr_assert_eq(strspn(c.hash[i], "0123456789abcdef"), 64);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(c.hash[i], c.hash[j]);
    }
    sqlite3 *db = raw_open();
    int64_t at = raw_int(db, "SELECT min(at_ms) FROM audit");
    cr_assert(at >= before - 1000 && at <= time_now_ms() + 1000);
    sqlite3_close(db);
    int64_t bad = -5;
    cr_assert_eq(store_audit_verify(&bad), 0);
    cr_assert_eq(bad, -5);
}

static void audit_paging(void)
{
    test_store_fresh();
    append3();
    struct audit_rows all = {0};
    cr_assert_eq(store_audit_each(0, 100, collect_audit, &all), 0);
    struct audit_rows page = {0};
    cr_assert_eq(store_audit_each(0, 2, collect_audit, &page), 0);
    cr_assert_eq(page.n, 2);
    struct audit_rows rest = {0};
    cr_assert_eq(store_audit_each(page.id[1], 2, collect_audit, &rest), 0);
    cr_assert_eq(rest.n, 1);
    cr_assert_eq(rest.id[0], all.id[2]);
    struct audit_rows after = {0};
    cr_assert_eq(store_audit_each(all.id[2], 10, collect_audit, &after), 0);
    cr_assert_eq(after.n, 0);
}

static void audit_is_append_only(void)
{
    test_store_fresh();
    append3();
    sqlite3 *db = raw_open();
    cr_assert_neq(sqlite3_exec(db, "UPDATE audit SET detail = 'x' WHERE id = 2", NULL, NULL, NULL),
                  SQLITE_OK);
    cr_assert_neq(sqlite3_exec(db, "DELETE FROM audit WHERE id = 2", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM audit"), 3);
    sqlite3_close(db);
    cr_assert_eq(store_audit_verify(NULL), 0);
}

/* Tampers through a raw connection that first drops the append-only triggers, then checks the
 * chain breaks at `want_bad`. */
static void assert_tamper_detected(const char *sql, int64_t want_bad)
{
    append3();
    sqlite3 *db = raw_open();
    raw_exec(db, "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;");
    raw_exec(db, sql);
    sqlite3_close(db);
    int64_t bad = -5;
    int r = store_audit_verify(&bad);
    cr_assert_eq(r, -EBADMSG, "%s: verify = %d", sql, r);
    cr_assert_eq(bad, want_bad, "%s: bad id %lld, want %lld", sql, (long long)bad,
                 (long long)want_bad);
}

static void audit_tamper_detail(void)
{
    test_store_fresh();
    assert_tamper_detected("UPDATE audit SET detail = 'rights=api,transport' WHERE id = 2", 2);
}

static void audit_tamper_first_entry_actor(void)
{
    test_store_fresh();
    assert_tamper_detected("UPDATE audit SET actor = 'someone' WHERE id = 1", 1);
}

static void audit_tamper_time(void)
{
    test_store_fresh();
    assert_tamper_detected("UPDATE audit SET at_ms = at_ms + 1 WHERE id = 3", 3);
}

static void audit_tamper_hash(void)
{
    test_store_fresh();
    assert_tamper_detected("UPDATE audit SET hash = (SELECT hash FROM audit WHERE id = 1) "
                           "WHERE id = 2",
                           2);
}

static void audit_tamper_delete_middle(void)
{
    test_store_fresh();
    assert_tamper_detected("DELETE FROM audit WHERE id = 2", 3);
}

static void audit_tamper_prev_hash(void)
{
    test_store_fresh();
    assert_tamper_detected("UPDATE audit SET prev_hash = '' WHERE id = 3", 3);
}

Test(store, init)
{
    init_creates_db_with_schema_version();
    init_twice_is_idempotent_and_keeps_data();
    init_refuses_a_newer_schema();
    init_on_missing_dir_fails();
}

Test(store, users)
{
    user_insert_and_read();
    user_email_unique_in_any_case();
    user_missing();
    user_each_ordered_and_stoppable();
}

Test(store, apps)
{
    app_insert_and_lookups();
    app_has_three_environments();
    env_by_mode_any_case();
    env_slots_count_the_blocks();
    app_duplicate_rolls_back();
    app_project_id_unique();
    app_each_all_or_member();
}

Test(store, members)
{
    member_default_rights_api_on_non_production();
    non_member_has_nothing();
    role_change_keeps_rights();
    member_set_rejects_bad_input();
    member_each_by_email();
}

Test(store, rights)
{
    rights_update_set_and_clear();
    rights_update_needs_membership();
}

Test(store, transactions)
{
    rollback_and_commit();
}

Test(store, audit)
{
    audit_empty_verifies();
    audit_append_read_verify();
    audit_paging();
    audit_is_append_only();
}

Test(store, audit_tamper)
{
    audit_tamper_detail();
    audit_tamper_first_entry_actor();
    audit_tamper_time();
    audit_tamper_hash();
    audit_tamper_delete_middle();
    audit_tamper_prev_hash();
}

/* An outer loop steps a query while its callback runs more distinct statements than the cache
 * holds: the outer statement stays prepared (it used to be finalized under the loop's feet, as
 * the oldest of the cache). */
Test(store, statement_cache_keeps_a_statement_being_stepped)
{
    static char sql[STORE_STMT_CACHE + 16][48]; /* distinct addresses, as literals have */
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++)
        snprintf(sql[i], sizeof(sql[i]), "SELECT %zu", i);
    for (int i = 0; i < 3; i++) {
        char email[64];
        snprintf(email, sizeof(email), "cache%d@example.com", i);
        cr_assert_eq(store_user_insert(email, "Cache", false, NULL), 0);
    }
    sqlite3_stmt *outer =
        store_stmt("SELECT email FROM users WHERE email LIKE 'cache%' ORDER BY id");
    cr_assert_not_null(outer);
    int rows = 0;
    while (sqlite3_step(outer) == SQLITE_ROW) {
        char want[64];
        snprintf(want, sizeof(want), "cache%d@example.com", rows);
        cr_assert_str_eq((const char *)sqlite3_column_text(outer, 0), want);
        for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
            sqlite3_stmt *st = store_stmt(sql[i]);
            cr_assert_not_null(st);
            cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
            cr_assert_eq(sqlite3_column_int64(st, 0), (sqlite3_int64)i);
            sqlite3_reset(st);
        }
        rows++;
    }
    cr_assert_eq(rows, 3, "the outer query lost its rows after %d", rows);
}

/* ---- a lock another connection holds ---- */

static void *insert_while_locked(void *arg)
{
    int64_t *waited_us = arg, id;
    int64_t t0 = time_mono_ns();
    int r = store_user_insert("waiter@example.com", "Waiter", false, &id);
    *waited_us = (time_mono_ns() - t0) / 1000;
    store_thread_release();
    return (void *)(intptr_t)r;
}

/* A write waits for a transaction another connection holds, and goes on soon after it ends
 * (not a millisecond or more later, as SQLite's own busy handler sleeps). */
Test(store, a_write_waits_for_another_connections_transaction)
{
    cr_assert_eq(store_begin(), 0);
    int64_t waited_us = 0;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, insert_while_locked, &waited_us), 0);
    usleep(30000);
    cr_assert_eq(store_commit(), 0);
    void *r;
    pthread_join(t, &r);
    cr_expect_eq((intptr_t)r, 0, "the insert failed: %d", (int)(intptr_t)r);
    cr_expect_geq(waited_us, 25000, "it did not wait: %lld us", (long long)waited_us);
    cr_expect_lt(waited_us, 1000000, "it waited %lld us", (long long)waited_us);
    struct store_user u;
    cr_expect_eq(store_user_by_email("waiter@example.com", &u), 0);
}
