/* store: what environments run — their state, settings, tags and instances. */
#include <errno.h>
#include <string.h>

#include "store/store_int.h"
#include "base/banned.h"

static int env_update_text(const char *sql, int64_t env, const char *text)
{
    sqlite3_stmt *st = store_stmt(sql);
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, env);
    int r = store_exec_stmt(st);
    return r ? r : sqlite3_changes(store_conn()) ? 0 : -ENOENT;
}

static int env_update_int(const char *sql, int64_t env, int64_t v)
{
    sqlite3_stmt *st = store_stmt(sql);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, v);
    sqlite3_bind_int64(st, 2, env);
    int r = store_exec_stmt(st);
    return r ? r : sqlite3_changes(store_conn()) ? 0 : -ENOENT;
}

int store_env_set_status(int64_t env, const char *status)
{
    return env_update_text("UPDATE environments SET status = ? WHERE id = ?", env, status);
}

int store_env_set_want(int64_t env, bool running)
{
    return env_update_int("UPDATE environments SET want_running = ? WHERE id = ?", env, running);
}

int store_env_set_crash_looping(int64_t env, bool on)
{
    return env_update_int("UPDATE environments SET crash_looping = ? WHERE id = ?", env, on);
}

int store_env_set_scale(int64_t env, int instances, int memory_mb)
{
    sqlite3_stmt *st =
        store_stmt("UPDATE environments SET instances = ?, memory_mb = ? WHERE id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int(st, 1, instances);
    sqlite3_bind_int(st, 2, memory_mb);
    sqlite3_bind_int64(st, 3, env);
    return store_exec_stmt(st);
}

int store_env_transport(int64_t env, const char *package_id)
{
    return env_update_text("UPDATE environments SET package = ?, status = CASE status WHEN "
                           "'Empty' THEN 'Stopped' ELSE status END WHERE id = ?",
                           env, package_id);
}

int store_env_started(int64_t env, const char *package_id)
{
    int r = store_begin();
    if (r)
        return r;
    r = env_update_text("UPDATE environments SET status = 'Running', running_package = ?, "
                        "crash_looping = 0 WHERE id = ?",
                        env, package_id);
    sqlite3_stmt *st =
        r ? NULL : store_stmt("UPDATE env_settings SET deployed = value WHERE env = ?");
    if (!r && !st)
        r = -EIO;
    if (!r) {
        sqlite3_bind_int64(st, 1, env);
        r = store_exec_stmt(st);
    }
    if (r) {
        store_rollback();
        return r;
    }
    return store_commit();
}

int store_env_clean(int64_t env)
{
    int r = store_begin();
    if (r)
        return r;
    static const char *const sql[] = {
        "UPDATE environments SET package = NULL, running_package = '', status = 'Empty', "
        "want_running = 0, crash_looping = 0 WHERE id = ?",
        "DELETE FROM env_settings WHERE env = ?",
    };
    for (size_t i = 0; !r && i < sizeof(sql) / sizeof(sql[0]); i++) {
        sqlite3_stmt *st = store_stmt(sql[i]);
        if (!st) {
            r = -EIO;
            break;
        }
        sqlite3_bind_int64(st, 1, env);
        r = store_exec_stmt(st);
    }
    if (r) {
        store_rollback();
        return r;
    }
    return store_commit();
}

int store_setting_each(int64_t env, int (*fn)(const struct store_setting *, void *), void *arg)
{
    sqlite3_stmt *st = store_stmt("SELECT kind, name, value, deployed FROM env_settings WHERE "
                                  "env = ? ORDER BY kind, name");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_setting s;
        store_col_text(st, 0, s.kind, sizeof(s.kind));
        store_col_text(st, 1, s.name, sizeof(s.name));
        s.has_value = sqlite3_column_type(st, 2) != SQLITE_NULL;
        s.has_deployed = sqlite3_column_type(st, 3) != SQLITE_NULL;
        store_col_text(st, 2, s.value, sizeof(s.value));
        store_col_text(st, 3, s.deployed, sizeof(s.deployed));
        r = fn(&s, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}

int store_setting_set(int64_t env, const char *kind, const char *name, const char *value)
{
    sqlite3_stmt *st = store_stmt("INSERT INTO env_settings(env, kind, name, value) VALUES (?, ?, "
                                  "?, ?) ON CONFLICT (env, kind, name) DO UPDATE SET value = "
                                  "excluded.value");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    if (value)
        sqlite3_bind_text(st, 4, value, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    return store_exec_stmt(st);
}

int store_tag_add(int64_t env, const char *tag)
{
    sqlite3_stmt *st = store_stmt("INSERT OR IGNORE INTO env_tags(env, tag) VALUES (?, ?)");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    sqlite3_bind_text(st, 2, tag, -1, SQLITE_STATIC);
    return store_exec_stmt(st);
}

int store_tag_del(int64_t env, const char *tag)
{
    sqlite3_stmt *st = store_stmt("DELETE FROM env_tags WHERE env = ? AND tag = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    sqlite3_bind_text(st, 2, tag, -1, SQLITE_STATIC);
    int r = store_exec_stmt(st);
    return r ? r : sqlite3_changes(store_conn()) ? 0 : -ENOENT;
}

int store_tag_each(int64_t env, int (*fn)(const char *tag, void *), void *arg)
{
    sqlite3_stmt *st = store_stmt("SELECT tag FROM env_tags WHERE env = ? ORDER BY tag");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        char tag[STORE_TAG_MAX + 1];
        store_col_text(st, 0, tag, sizeof(tag));
        r = fn(tag, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}

int store_instance_put(const struct store_instance *in)
{
    sqlite3_stmt *st = store_stmt("INSERT OR REPLACE INTO instances(env, idx, pid, start_ticks, "
                                  "grp) VALUES (?, ?, ?, ?, ?)");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, in->env);
    sqlite3_bind_int(st, 2, in->idx);
    sqlite3_bind_int(st, 3, in->pid);
    sqlite3_bind_int64(st, 4, in->start_ticks);
    sqlite3_bind_text(st, 5, in->group, -1, SQLITE_STATIC);
    return store_exec_stmt(st);
}

int store_instance_del(int64_t env, int idx)
{
    sqlite3_stmt *st = store_stmt("DELETE FROM instances WHERE env = ? AND idx = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    sqlite3_bind_int(st, 2, idx);
    return store_exec_stmt(st);
}

int store_instance_each(int64_t env, int (*fn)(const struct store_instance *, void *), void *arg)
{
    sqlite3_stmt *st =
        env ? store_stmt("SELECT env, idx, pid, start_ticks, grp FROM instances WHERE env = ? "
                         "ORDER BY idx")
            : store_stmt("SELECT env, idx, pid, start_ticks, grp FROM instances ORDER BY env, idx");
    if (!st)
        return -EIO;
    if (env)
        sqlite3_bind_int64(st, 1, env);
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_instance in;
        in.env = sqlite3_column_int64(st, 0);
        in.idx = sqlite3_column_int(st, 1);
        in.pid = sqlite3_column_int(st, 2);
        in.start_ticks = sqlite3_column_int64(st, 3);
        store_col_text(st, 4, in.group, sizeof(in.group));
        r = fn(&in, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}
