/* store: users. */
#include <errno.h>

#include "base/util.h"
#include "store/store_int.h"
#include "base/banned.h"

#define USER_COLS "id, email, name, is_admin, active, created_ms"

void store_user_read(sqlite3_stmt *st, int col, struct store_user *u)
{
    u->id = sqlite3_column_int64(st, col);
    store_col_text(st, col + 1, u->email, sizeof(u->email));
    store_col_text(st, col + 2, u->name, sizeof(u->name));
    u->admin = sqlite3_column_int(st, col + 3) != 0;
    u->active = sqlite3_column_int(st, col + 4) != 0;
    u->created_ms = sqlite3_column_int64(st, col + 5);
}

static void user_read(sqlite3_stmt *st, struct store_user *u)
{
    store_user_read(st, 0, u);
}

int store_user_insert(const char *email, const char *name, bool admin, int64_t *id)
{
    sqlite3_stmt *st = store_stmt("INSERT INTO users(email, name, is_admin, created_ms) "
                                  "VALUES (?, ?, ?, ?)");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, email, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, admin);
    sqlite3_bind_int64(st, 4, time_now_ms());
    int r = store_exec_stmt(st);
    if (!r && id)
        *id = sqlite3_last_insert_rowid(store_conn());
    return r;
}

static int user_one(sqlite3_stmt *st, struct store_user *out)
{
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        user_read(st, out);
    sqlite3_reset(st);
    return r;
}

int store_user_by_email(const char *email, struct store_user *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " USER_COLS " FROM users WHERE email = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, email, -1, SQLITE_STATIC);
    return user_one(st, out);
}

int store_user_by_id(int64_t id, struct store_user *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " USER_COLS " FROM users WHERE id = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, id);
    return user_one(st, out);
}

int store_user_each(int (*fn)(const struct store_user *, void *), void *arg)
{
    sqlite3_stmt *st = store_stmt("SELECT " USER_COLS " FROM users ORDER BY email");
    if (!st)
        return -EIO;
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_user u;
        user_read(st, &u);
        r = fn(&u, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}
