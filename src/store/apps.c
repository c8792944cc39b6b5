/* store: apps and their environments. */
#include <errno.h>

#include "base/crypto.h"
#include "base/util.h"
#include "store/store_int.h"
#include "base/banned.h"

#define APP_COLS "id, app_id, name, project_id, url, default_branch, created_ms"

static void app_read(sqlite3_stmt *st, struct store_app *a)
{
    a->id = sqlite3_column_int64(st, 0);
    store_col_text(st, 1, a->app_id, sizeof(a->app_id));
    store_col_text(st, 2, a->name, sizeof(a->name));
    store_col_text(st, 3, a->project_id, sizeof(a->project_id));
    store_col_text(st, 4, a->url, sizeof(a->url));
    store_col_text(st, 5, a->default_branch, sizeof(a->default_branch));
    a->created_ms = sqlite3_column_int64(st, 6);
}

static int env_insert(int64_t app, const char *mode, bool production, int position)
{
    char uuid[CRYPTO_UUID_LEN];
    if (crypto_uuid(uuid))
        return -EIO;
    /* the lowest free slot (the slots of removed environments are taken again) */
    sqlite3_stmt *st = store_stmt(
        "INSERT INTO environments(app, mode, environment_id, production, position, slot) "
        "VALUES (?, ?, ?, ?, ?, (SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM environments "
        "WHERE slot = 0) THEN 0 ELSE (SELECT MIN(e.slot) + 1 FROM environments e WHERE NOT "
        "EXISTS (SELECT 1 FROM environments f WHERE f.slot = e.slot + 1)) END))");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, app);
    sqlite3_bind_text(st, 2, mode, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 4, production);
    sqlite3_bind_int(st, 5, position);
    return store_exec_stmt(st);
}

int store_app_insert(struct store_app *app)
{
    int r = store_begin();
    if (r)
        return r;
    sqlite3_stmt *st = store_stmt("INSERT INTO apps(app_id, name, project_id, url, "
                                  "default_branch, created_ms) VALUES (?, ?, ?, ?, ?, ?)");
    r = -EIO;
    if (!st)
        goto fail;
    app->created_ms = time_now_ms();
    sqlite3_bind_text(st, 1, app->app_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, app->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, app->project_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, app->url, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, app->default_branch, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, app->created_ms);
    if ((r = store_exec_stmt(st)))
        goto fail;
    app->id = sqlite3_last_insert_rowid(store_conn());
    if ((r = env_insert(app->id, "Test", false, 1)) ||
        (r = env_insert(app->id, "Acceptance", false, 2)) ||
        (r = env_insert(app->id, "Production", true, 3)))
        goto fail;
    return store_commit();
fail:
    store_rollback();
    return r;
}

int store_env_insert(int64_t app, const char *mode, bool production)
{
    sqlite3_stmt *st = store_stmt("SELECT COALESCE(MAX(position), 0) + 1 FROM environments WHERE "
                                  "app = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, app);
    int r = store_row(st, sqlite3_step(st));
    int position = r ? 0 : sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    if (r)
        return r == -ENOENT ? -EIO : r;
    return env_insert(app, mode, production, position);
}

static int app_one(sqlite3_stmt *st, struct store_app *out)
{
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        app_read(st, out);
    sqlite3_reset(st);
    return r;
}

int store_app_by_appid(const char *app_id, struct store_app *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " APP_COLS " FROM apps WHERE app_id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, app_id, -1, SQLITE_STATIC);
    return app_one(st, out);
}

int store_app_by_id(int64_t id, struct store_app *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " APP_COLS " FROM apps WHERE id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, id);
    return app_one(st, out);
}

int store_app_by_project_id(const char *project_id, struct store_app *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " APP_COLS " FROM apps WHERE project_id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, project_id, -1, SQLITE_STATIC);
    return app_one(st, out);
}

int store_app_each(int64_t user_id, int (*fn)(const struct store_app *, void *), void *arg)
{
    sqlite3_stmt *st = user_id
                           ? store_stmt("SELECT " APP_COLS " FROM apps WHERE id IN "
                                        "(SELECT app FROM members WHERE user = ?) ORDER BY app_id")
                           : store_stmt("SELECT " APP_COLS " FROM apps ORDER BY app_id");
    if (!st)
        return -EIO;
    if (user_id)
        sqlite3_bind_int64(st, 1, user_id);
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_app a;
        app_read(st, &a);
        r = fn(&a, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}

#define ENV_COLS                                                                                   \
    "id, app, mode, environment_id, production, status, url, slot, instances, memory_mb, "         \
    "COALESCE(package, ''), running_package, want_running, crash_looping"

static void env_read(sqlite3_stmt *st, struct store_env *e)
{
    e->id = sqlite3_column_int64(st, 0);
    e->app = sqlite3_column_int64(st, 1);
    store_col_text(st, 2, e->mode, sizeof(e->mode));
    store_col_text(st, 3, e->environment_id, sizeof(e->environment_id));
    e->production = sqlite3_column_int(st, 4) != 0;
    store_col_text(st, 5, e->status, sizeof(e->status));
    store_col_text(st, 6, e->url, sizeof(e->url));
    e->slot = sqlite3_column_int(st, 7);
    e->instances = sqlite3_column_int(st, 8);
    e->memory_mb = sqlite3_column_int(st, 9);
    store_col_text(st, 10, e->package_id, sizeof(e->package_id));
    store_col_text(st, 11, e->running_package, sizeof(e->running_package));
    e->want_running = sqlite3_column_int(st, 12) != 0;
    e->crash_looping = sqlite3_column_int(st, 13) != 0;
}

static int env_one(sqlite3_stmt *st, struct store_env *out)
{
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        env_read(st, out);
    sqlite3_reset(st);
    return r;
}

int store_env_get(int64_t id, struct store_env *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " ENV_COLS " FROM environments WHERE id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, id);
    return env_one(st, out);
}

int store_env_by_uuid(const char *environment_id, struct store_env *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " ENV_COLS " FROM environments WHERE environment_id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, environment_id, -1, SQLITE_STATIC);
    return env_one(st, out);
}

int store_env_slots(void)
{
    sqlite3_stmt *st = store_stmt("SELECT COALESCE(MAX(slot) + 1, 0) FROM environments");
    if (!st)
        return -EIO;
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        r = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return r;
}

int store_env_by_mode(int64_t app, const char *mode, struct store_env *out)
{
    sqlite3_stmt *st =
        store_stmt("SELECT " ENV_COLS " FROM environments WHERE app = ? AND mode = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, app);
    sqlite3_bind_text(st, 2, mode, -1, SQLITE_STATIC);
    return env_one(st, out);
}

int store_env_each(int64_t app, int (*fn)(const struct store_env *, void *), void *arg)
{
    sqlite3_stmt *st = app ? store_stmt("SELECT " ENV_COLS
                                        " FROM environments WHERE app = ? ORDER BY position, id")
                           : store_stmt("SELECT " ENV_COLS " FROM environments ORDER BY id");
    if (!st)
        return -EIO;
    if (app)
        sqlite3_bind_int64(st, 1, app);
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_env e;
        env_read(st, &e);
        r = fn(&e, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}
