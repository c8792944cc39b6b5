/* store: backups — snapshots of environments, their archives (downloads) and restores. The rows
 * are the queue the engine's owner "backups" (deploy/backups.c) works through. */
#include <errno.h>
#include <string.h>

#include "base/util.h"
#include "store/store_int.h"
#include "base/banned.h"

static const char *const state_names[] = {"queued", "running", "completed", "failed"};

const char *store_bk_state_name(enum store_bk_state s)
{
    return (unsigned)s < 4 ? state_names[s] : "failed";
}

static enum store_bk_state state_parse(const unsigned char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp((const char *)s, state_names[i]) == 0)
            return (enum store_bk_state)i;
    return BK_FAILED;
}

static int changed(int r)
{
    return r ? r : sqlite3_changes(store_conn()) ? 0 : -ENOENT;
}

/* ---- snapshots ---- */

#define SNAP_COLS                                                                                  \
    "s.id, s.snapshot_id, s.env, s.comment, s.state, s.status_message, s.model_version, "          \
    "s.created_ms, s.updated_ms, s.finished_ms, s.expires_ms, s.size, s.kind, e.app, e.mode, "     \
    "a.app_id"
#define SNAP_FROM                                                                                  \
    " FROM snapshots s JOIN environments e ON e.id = s.env JOIN apps a ON a.id = e.app "

static void snap_read(sqlite3_stmt *st, struct store_snapshot *s)
{
    s->id = sqlite3_column_int64(st, 0);
    store_col_text(st, 1, s->snapshot_id, sizeof(s->snapshot_id));
    s->env = sqlite3_column_int64(st, 2);
    store_col_text(st, 3, s->comment, sizeof(s->comment));
    s->state = state_parse(sqlite3_column_text(st, 4));
    store_col_text(st, 5, s->status_message, sizeof(s->status_message));
    store_col_text(st, 6, s->model_version, sizeof(s->model_version));
    s->created_ms = sqlite3_column_int64(st, 7);
    s->updated_ms = sqlite3_column_int64(st, 8);
    s->finished_ms = sqlite3_column_int64(st, 9);
    s->expires_ms = sqlite3_column_int64(st, 10);
    s->size = sqlite3_column_int64(st, 11);
    store_col_text(st, 12, s->kind, sizeof(s->kind));
    s->app = sqlite3_column_int64(st, 13);
    store_col_text(st, 14, s->mode, sizeof(s->mode));
    store_col_text(st, 15, s->app_id, sizeof(s->app_id));
}

static int snap_one(sqlite3_stmt *st, struct store_snapshot *out)
{
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        snap_read(st, out);
    sqlite3_reset(st);
    return r;
}

static int snap_each(sqlite3_stmt *st, int (*fn)(const struct store_snapshot *, void *), void *arg)
{
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_snapshot s;
        snap_read(st, &s);
        r = fn(&s, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}

int store_snapshot_insert(struct store_snapshot *s)
{
    sqlite3_stmt *st = store_stmt("INSERT INTO snapshots(snapshot_id, env, comment, state, "
                                  "model_version, created_ms, updated_ms, expires_ms) VALUES "
                                  "(?, ?, ?, 'queued', ?, ?, ?, ?)");
    if (!st)
        return -EIO;
    if (!s->created_ms)
        s->created_ms = time_now_ms();
    s->updated_ms = s->created_ms;
    s->state = BK_QUEUED;
    sqlite3_bind_text(st, 1, s->snapshot_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, s->env);
    sqlite3_bind_text(st, 3, s->comment, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, s->model_version, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, s->created_ms);
    sqlite3_bind_int64(st, 6, s->updated_ms);
    sqlite3_bind_int64(st, 7, s->expires_ms);
    int r = store_exec_stmt(st);
    if (!r)
        s->id = sqlite3_last_insert_rowid(store_conn());
    return r;
}

int store_snapshot_get(const char *snapshot_id, struct store_snapshot *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " SNAP_COLS SNAP_FROM "WHERE s.snapshot_id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, snapshot_id, -1, SQLITE_STATIC);
    return snap_one(st, out);
}

int store_snapshot_each(int64_t env, int64_t offset, int64_t limit,
                        int (*fn)(const struct store_snapshot *, void *), void *arg)
{
    sqlite3_stmt *st = store_stmt("SELECT " SNAP_COLS SNAP_FROM "WHERE s.env = ? ORDER BY "
                                  "s.id DESC LIMIT ? OFFSET ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    sqlite3_bind_int64(st, 2, limit);
    sqlite3_bind_int64(st, 3, offset);
    return snap_each(st, fn, arg);
}

int store_snapshot_count(int64_t env, int64_t *out)
{
    sqlite3_stmt *st = store_stmt("SELECT count(*) FROM snapshots WHERE env = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return r;
}

int store_snapshot_set_comment(int64_t id, const char *comment)
{
    sqlite3_stmt *st = store_stmt("UPDATE snapshots SET comment = ? WHERE id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, comment, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, id);
    return changed(store_exec_stmt(st));
}

int store_snapshot_claim(struct store_snapshot *out)
{
    sqlite3_stmt *st = store_stmt("UPDATE snapshots SET state = 'running', updated_ms = ? WHERE "
                                  "id = (SELECT id FROM snapshots WHERE state = 'queued' ORDER "
                                  "BY id LIMIT 1) RETURNING id");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, time_now_ms());
    int r = store_row(st, sqlite3_step(st));
    int64_t id = r ? 0 : sqlite3_column_int64(st, 0);
    if (!r)
        sqlite3_step(st); /* finishes the statement: the update is done */
    sqlite3_reset(st);
    if (r)
        return r;
    sqlite3_stmt *q = store_stmt("SELECT " SNAP_COLS SNAP_FROM "WHERE s.id = ?");
    if (!q)
        return -EIO;
    sqlite3_bind_int64(q, 1, id);
    return snap_one(q, out);
}

int store_snapshot_finish(int64_t id, enum store_bk_state state, const char *message, int64_t size,
                          const char *kind)
{
    sqlite3_stmt *st = store_stmt("UPDATE snapshots SET state = ?, status_message = ?, size = ?, "
                                  "kind = ?, updated_ms = ?, finished_ms = ? WHERE id = ?");
    if (!st)
        return -EIO;
    int64_t now = time_now_ms();
    sqlite3_bind_text(st, 1, store_bk_state_name(state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, message ? message : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, size);
    sqlite3_bind_text(st, 4, kind ? kind : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    sqlite3_bind_int64(st, 6, now);
    sqlite3_bind_int64(st, 7, id);
    return changed(store_exec_stmt(st));
}

int store_snapshot_delete_unused(int64_t id)
{
    sqlite3_stmt *st = store_stmt(
        "DELETE FROM snapshots WHERE id = ?1 AND state IN ('completed', 'failed') AND NOT EXISTS "
        "(SELECT 1 FROM restores WHERE snapshot = ?1 AND state IN ('queued', 'running'))");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, id);
    int r = store_exec_stmt(st);
    if (r || sqlite3_changes(store_conn()))
        return r;
    sqlite3_stmt *q = store_stmt("SELECT 1 FROM snapshots WHERE id = ?");
    if (!q)
        return -EIO;
    sqlite3_bind_int64(q, 1, id);
    r = store_row(q, sqlite3_step(q));
    sqlite3_reset(q);
    return r ? r : -EBUSY;
}

int store_snapshot_each_expired(int64_t now_ms, int (*fn)(const struct store_snapshot *, void *),
                                void *arg)
{
    sqlite3_stmt *st = store_stmt("SELECT " SNAP_COLS SNAP_FROM "WHERE s.expires_ms <= ? AND "
                                  "s.state IN ('completed', 'failed') ORDER BY s.expires_ms");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, now_ms);
    return snap_each(st, fn, arg);
}

int store_snapshot_next_expiry(int64_t *out)
{
    sqlite3_stmt *st = store_stmt("SELECT ifnull(min(expires_ms), 0) FROM snapshots WHERE state "
                                  "IN ('completed', 'failed')");
    if (!st)
        return -EIO;
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return r;
}

/* ---- archives ---- */

#define ARCH_COLS                                                                                  \
    "a.id, a.archive_id, a.snapshot, s.snapshot_id, a.data_type, a.state, a.status_message, "      \
    "a.created_ms, a.updated_ms, a.finished_ms"

static void arch_read(sqlite3_stmt *st, struct store_archive *a)
{
    a->id = sqlite3_column_int64(st, 0);
    store_col_text(st, 1, a->archive_id, sizeof(a->archive_id));
    a->snapshot = sqlite3_column_int64(st, 2);
    store_col_text(st, 3, a->snapshot_id, sizeof(a->snapshot_id));
    store_col_text(st, 4, a->data_type, sizeof(a->data_type));
    a->state = state_parse(sqlite3_column_text(st, 5));
    store_col_text(st, 6, a->status_message, sizeof(a->status_message));
    a->created_ms = sqlite3_column_int64(st, 7);
    a->updated_ms = sqlite3_column_int64(st, 8);
    a->finished_ms = sqlite3_column_int64(st, 9);
}

int store_archive_insert(struct store_archive *a)
{
    sqlite3_stmt *st =
        store_stmt("INSERT INTO snapshot_archives(archive_id, snapshot, data_type, "
                   "state, created_ms, updated_ms) VALUES (?, ?, ?, 'queued', ?, ?)");
    if (!st)
        return -EIO;
    a->created_ms = a->updated_ms = time_now_ms();
    a->state = BK_QUEUED;
    sqlite3_bind_text(st, 1, a->archive_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a->snapshot);
    sqlite3_bind_text(st, 3, a->data_type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, a->created_ms);
    sqlite3_bind_int64(st, 5, a->updated_ms);
    int r = store_exec_stmt(st);
    if (!r)
        a->id = sqlite3_last_insert_rowid(store_conn());
    return r;
}

int store_archive_get(const char *archive_id, struct store_archive *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " ARCH_COLS " FROM snapshot_archives a JOIN snapshots "
                                  "s ON s.id = a.snapshot WHERE a.archive_id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, archive_id, -1, SQLITE_STATIC);
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        arch_read(st, out);
    sqlite3_reset(st);
    return r;
}

int store_archive_claim(struct store_archive *out)
{
    sqlite3_stmt *st = store_stmt("UPDATE snapshot_archives SET state = 'running', updated_ms = ? "
                                  "WHERE id = (SELECT id FROM snapshot_archives WHERE state = "
                                  "'queued' ORDER BY id LIMIT 1) RETURNING id");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, time_now_ms());
    int r = store_row(st, sqlite3_step(st));
    int64_t id = r ? 0 : sqlite3_column_int64(st, 0);
    if (!r)
        sqlite3_step(st);
    sqlite3_reset(st);
    if (r)
        return r;
    sqlite3_stmt *q = store_stmt("SELECT " ARCH_COLS " FROM snapshot_archives a JOIN snapshots "
                                 "s ON s.id = a.snapshot WHERE a.id = ?");
    if (!q)
        return -EIO;
    sqlite3_bind_int64(q, 1, id);
    r = store_row(q, sqlite3_step(q));
    if (!r)
        arch_read(q, out);
    sqlite3_reset(q);
    return r;
}

static int finish(const char *sql, int64_t id, enum store_bk_state state, const char *message)
{
    sqlite3_stmt *st = store_stmt(sql);
    if (!st)
        return -EIO;
    int64_t now = time_now_ms();
    sqlite3_bind_text(st, 1, store_bk_state_name(state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, message ? message : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, id);
    return changed(store_exec_stmt(st));
}

int store_archive_finish(int64_t id, enum store_bk_state state, const char *message)
{
    return finish("UPDATE snapshot_archives SET state = ?, status_message = ?, updated_ms = ?, "
                  "finished_ms = ? WHERE id = ?",
                  id, state, message);
}

/* ---- restores ---- */

#define REST_COLS                                                                                  \
    "id, restore_id, snapshot, snapshot_id, source_env, target_env, db_only, state, "              \
    "status_message, created_ms, updated_ms, finished_ms"

static void rest_read(sqlite3_stmt *st, struct store_restore *r)
{
    r->id = sqlite3_column_int64(st, 0);
    store_col_text(st, 1, r->restore_id, sizeof(r->restore_id));
    r->snapshot = sqlite3_column_int64(st, 2);
    store_col_text(st, 3, r->snapshot_id, sizeof(r->snapshot_id));
    r->source_env = sqlite3_column_int64(st, 4);
    r->target_env = sqlite3_column_int64(st, 5);
    r->db_only = sqlite3_column_int(st, 6);
    r->state = state_parse(sqlite3_column_text(st, 7));
    store_col_text(st, 8, r->status_message, sizeof(r->status_message));
    r->created_ms = sqlite3_column_int64(st, 9);
    r->updated_ms = sqlite3_column_int64(st, 10);
    r->finished_ms = sqlite3_column_int64(st, 11);
}

static int rest_one(sqlite3_stmt *st, struct store_restore *out)
{
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        rest_read(st, out);
    sqlite3_step(st); /* a RETURNING statement ends its update here */
    sqlite3_reset(st);
    return r;
}

int store_restore_insert(struct store_restore *r)
{
    sqlite3_stmt *st = store_stmt(
        "INSERT INTO restores(restore_id, snapshot, snapshot_id, source_env, target_env, db_only, "
        "state, created_ms, updated_ms) SELECT ?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?7 WHERE "
        "NOT EXISTS (SELECT 1 FROM restores WHERE target_env = ?5 AND state IN ('queued', "
        "'running'))");
    if (!st)
        return -EIO;
    r->created_ms = r->updated_ms = time_now_ms();
    r->state = BK_QUEUED;
    sqlite3_bind_text(st, 1, r->restore_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->snapshot);
    sqlite3_bind_text(st, 3, r->snapshot_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, r->source_env);
    sqlite3_bind_int64(st, 5, r->target_env);
    sqlite3_bind_int(st, 6, r->db_only);
    sqlite3_bind_int64(st, 7, r->created_ms);
    int rc = store_exec_stmt(st);
    if (rc)
        return rc;
    if (!sqlite3_changes(store_conn()))
        return -EBUSY;
    r->id = sqlite3_last_insert_rowid(store_conn());
    return 0;
}

int store_restore_get(const char *restore_id, struct store_restore *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " REST_COLS " FROM restores WHERE restore_id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, restore_id, -1, SQLITE_STATIC);
    return rest_one(st, out);
}

int store_restore_claim(struct store_restore *out)
{
    sqlite3_stmt *st = store_stmt("UPDATE restores SET state = 'running', updated_ms = ? WHERE "
                                  "id = (SELECT id FROM restores WHERE state = 'queued' ORDER BY "
                                  "id LIMIT 1) RETURNING " REST_COLS);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, time_now_ms());
    return rest_one(st, out);
}

int store_restore_finish(int64_t id, enum store_bk_state state, const char *message)
{
    return finish("UPDATE restores SET state = ?, status_message = ?, updated_ms = ?, "
                  "finished_ms = ? WHERE id = ?",
                  id, state, message);
}

bool store_restore_active(int64_t target_env)
{
    sqlite3_stmt *st = store_stmt("SELECT 1 FROM restores WHERE target_env = ? AND state IN "
                                  "('queued', 'running')");
    if (!st)
        return true;
    sqlite3_bind_int64(st, 1, target_env);
    int r = store_row(st, sqlite3_step(st));
    sqlite3_reset(st);
    return r != -ENOENT;
}

int store_backups_fail_unfinished(const char *reason)
{
    static const char *const sql[] = {
        "UPDATE snapshots SET state = 'failed', status_message = ?, updated_ms = ?, "
        "finished_ms = ? WHERE state = 'running'",
        "UPDATE snapshot_archives SET state = 'failed', status_message = ?, updated_ms = ?, "
        "finished_ms = ? WHERE state = 'running'",
        "UPDATE restores SET state = 'failed', status_message = ?, updated_ms = ?, "
        "finished_ms = ? WHERE state = 'running'",
    };
    int n = 0;
    int64_t now = time_now_ms();
    for (size_t i = 0; i < 3; i++) {
        sqlite3_stmt *st = store_stmt(sql[i]);
        if (!st)
            return -EIO;
        sqlite3_bind_text(st, 1, reason, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int64(st, 3, now);
        int r = store_exec_stmt(st);
        if (r)
            return r;
        n += sqlite3_changes(store_conn());
    }
    return n;
}
