/* store: packages, built or uploaded. A build is a row: Queued -> Building -> Succeeded | Failed;
 * the engine claims Queued rows oldest first, so the table is the build queue. */
#include <errno.h>
#include <string.h>

#include "base/util.h"
#include "store/store_int.h"
#include "base/banned.h"

static const char *const status_names[] = {"Queued", "Building", "Succeeded", "Failed"};

const char *store_pkg_status_name(enum store_pkg_status s)
{
    return (unsigned)s < 4 ? status_names[s] : "Failed";
}

static enum store_pkg_status status_parse(const unsigned char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp((const char *)s, status_names[i]) == 0)
            return (enum store_pkg_status)i;
    return PKG_FAILED;
}

#define PKG_COLS                                                                                   \
    "p.id, p.package_id, p.app, a.app_id, p.source, p.name, p.description, p.version, p.branch, "  \
    "p.revision, p.revision_number, p.creator, p.created_ms, p.status, p.reason, p.size, "         \
    "p.sha256, p.cancel"
#define PKG_FROM " FROM packages p JOIN apps a ON a.id = p.app "

static void pkg_read(sqlite3_stmt *st, struct store_package *p)
{
    p->id = sqlite3_column_int64(st, 0);
    store_col_text(st, 1, p->package_id, sizeof(p->package_id));
    p->app = sqlite3_column_int64(st, 2);
    store_col_text(st, 3, p->app_id, sizeof(p->app_id));
    const unsigned char *src = sqlite3_column_text(st, 4);
    p->upload = src && strcmp((const char *)src, "upload") == 0;
    store_col_text(st, 5, p->name, sizeof(p->name));
    store_col_text(st, 6, p->description, sizeof(p->description));
    store_col_text(st, 7, p->version, sizeof(p->version));
    store_col_text(st, 8, p->branch, sizeof(p->branch));
    store_col_text(st, 9, p->revision, sizeof(p->revision));
    p->revision_number = sqlite3_column_int64(st, 10);
    store_col_text(st, 11, p->creator, sizeof(p->creator));
    p->created_ms = sqlite3_column_int64(st, 12);
    p->status = status_parse(sqlite3_column_text(st, 13));
    store_col_text(st, 14, p->reason, sizeof(p->reason));
    p->size = sqlite3_column_int64(st, 15);
    store_col_text(st, 16, p->sha256, sizeof(p->sha256));
    p->cancel = sqlite3_column_int(st, 17) != 0;
}

int store_package_insert(struct store_package *p)
{
    sqlite3_stmt *st = store_stmt(
        "INSERT INTO packages(package_id, app, source, name, description, version, branch, "
        "revision, revision_number, creator, created_ms, status, reason, size, sha256) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st)
        return -EIO;
    p->created_ms = time_now_ms();
    sqlite3_bind_text(st, 1, p->package_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, p->app);
    sqlite3_bind_text(st, 3, p->upload ? "upload" : "build", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, p->description, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, p->version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, p->branch, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, p->revision, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, p->revision_number);
    sqlite3_bind_text(st, 10, p->creator, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, p->created_ms);
    sqlite3_bind_text(st, 12, store_pkg_status_name(p->status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 13, p->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 14, p->size);
    sqlite3_bind_text(st, 15, p->sha256, -1, SQLITE_STATIC);
    int r = store_exec_stmt(st);
    if (!r)
        p->id = sqlite3_last_insert_rowid(store_conn());
    return r;
}

int store_package_get(const char *package_id, struct store_package *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " PKG_COLS PKG_FROM "WHERE p.package_id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, package_id, -1, SQLITE_STATIC);
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        pkg_read(st, out);
    sqlite3_reset(st);
    return r;
}

int store_package_find_pending(int64_t app, const char *version, const char *revision,
                               struct store_package *out)
{
    /* through packages_status: only the queued and running builds are read */
    sqlite3_stmt *st = store_stmt("SELECT " PKG_COLS PKG_FROM
                                  "WHERE p.status IN ('Queued', 'Building') AND p.app = ? AND "
                                  "p.source = 'build' AND p.version = ? AND p.revision <> ? "
                                  "ORDER BY p.id LIMIT 1");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, app);
    sqlite3_bind_text(st, 2, version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, revision, -1, SQLITE_STATIC);
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        pkg_read(st, out);
    sqlite3_reset(st);
    return r;
}

/* Calls fn with each row of a bound statement of PKG_COLS until it returns non-zero (returned);
 * 0, or -EIO. */
static int each_row(sqlite3_stmt *st, int (*fn)(const struct store_package *, void *), void *arg)
{
    int rc = SQLITE_DONE, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_package p;
        pkg_read(st, &p);
        r = fn(&p, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}

int store_package_each(int64_t app, int (*fn)(const struct store_package *, void *), void *arg)
{
    sqlite3_stmt *st = store_stmt("SELECT " PKG_COLS PKG_FROM "WHERE p.app = ? ORDER BY p.id DESC");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, app);
    return each_row(st, fn, arg);
}

int store_package_claim(struct store_package *out)
{
    int r = store_begin();
    if (r)
        return r;
    sqlite3_stmt *st =
        store_stmt("SELECT " PKG_COLS PKG_FROM "WHERE p.status = 'Queued' ORDER BY p.id LIMIT 1");
    r = -EIO;
    if (!st)
        goto fail;
    r = store_row(st, sqlite3_step(st));
    if (!r)
        pkg_read(st, out);
    sqlite3_reset(st);
    if (r)
        goto fail;
    st = store_stmt("UPDATE packages SET status = 'Building', started_ms = ? WHERE id = ?");
    r = -EIO;
    if (!st)
        goto fail;
    sqlite3_bind_int64(st, 1, time_now_ms());
    sqlite3_bind_int64(st, 2, out->id);
    if ((r = store_exec_stmt(st)))
        goto fail;
    out->status = PKG_BUILDING;
    return store_commit();
fail:
    store_rollback();
    return r;
}

int store_package_finish(int64_t id, enum store_pkg_status status, const char *reason, int64_t size,
                         const char *sha256)
{
    sqlite3_stmt *st = store_stmt("UPDATE packages SET status = ?, reason = ?, size = ?, "
                                  "sha256 = ?, finished_ms = ? WHERE id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, store_pkg_status_name(status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, reason ? reason : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, size);
    sqlite3_bind_text(st, 4, sha256 ? sha256 : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, time_now_ms());
    sqlite3_bind_int64(st, 6, id);
    return store_exec_stmt(st);
}

int store_package_cancel(const char *package_id)
{
    struct store_package p;
    int r = store_package_get(package_id, &p);
    if (r)
        return r;
    if (p.status == PKG_SUCCEEDED || p.status == PKG_FAILED)
        return -EALREADY;
    sqlite3_stmt *st = store_stmt("UPDATE packages SET cancel = 1 WHERE id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, p.id);
    return store_exec_stmt(st);
}

bool store_package_cancelled(int64_t id)
{
    sqlite3_stmt *st = store_stmt("SELECT cancel FROM packages WHERE id = ?");
    if (!st)
        return false;
    sqlite3_bind_int64(st, 1, id);
    bool c = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) != 0;
    sqlite3_reset(st);
    return c;
}

int store_package_fail_unfinished(const char *reason, void (*fn)(const char *package_id, void *),
                                  void *arg)
{
    sqlite3_stmt *st = store_stmt("UPDATE packages SET status = 'Failed', reason = ?, "
                                  "finished_ms = ? WHERE status = 'Building' RETURNING package_id");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, time_now_ms());
    int rc, n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        n++;
        if (fn)
            fn((const char *)sqlite3_column_text(st, 0), arg);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? n : -EIO;
}

bool store_package_in_use(const char *package_id)
{
    sqlite3_stmt *st =
        store_stmt("SELECT 1 FROM environments WHERE package = ?1 OR running_package = ?1 LIMIT 1");
    if (!st)
        return true; /* when in doubt, keep it */
    sqlite3_bind_text(st, 1, package_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc != SQLITE_DONE;
}

int store_package_each_prunable(int64_t app, unsigned keep,
                                int (*fn)(const struct store_package *, void *), void *arg)
{
    sqlite3_stmt *st = store_stmt(
        "SELECT " PKG_COLS PKG_FROM
        "WHERE p.id IN (SELECT id FROM packages WHERE app = ?1 AND status IN ('Succeeded', "
        "'Failed') ORDER BY id DESC LIMIT -1 OFFSET ?2) "
        "AND NOT EXISTS (SELECT 1 FROM environments e WHERE (e.package = p.package_id OR "
        "e.running_package = p.package_id)) "
        "ORDER BY p.id");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, app);
    sqlite3_bind_int64(st, 2, keep);
    return each_row(st, fn, arg);
}

int store_package_delete_unused(int64_t id)
{
    sqlite3_stmt *st = store_stmt(
        "DELETE FROM packages WHERE id = ? AND status IN ('Succeeded', 'Failed') AND NOT EXISTS "
        "(SELECT 1 FROM environments e WHERE e.package = packages.package_id OR e.running_package "
        "= packages.package_id)");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, id);
    int r = store_exec_stmt(st);
    if (r || sqlite3_changes(store_conn()) == 1)
        return r;
    st = store_stmt("SELECT 1 FROM packages WHERE id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, id);
    r = store_row(st, sqlite3_step(st));
    sqlite3_reset(st);
    return r ? r : -EBUSY;
}

int store_env_set_package(int64_t env, const char *package_id)
{
    sqlite3_stmt *st = store_stmt("UPDATE environments SET package = ? WHERE id = ?");
    if (!st)
        return -EIO;
    if (package_id)
        sqlite3_bind_text(st, 1, package_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 1);
    sqlite3_bind_int64(st, 2, env);
    return store_exec_stmt(st);
}
