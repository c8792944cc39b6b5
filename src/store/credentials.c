/* store: API keys and personal access tokens (only their hashes). */
#include <errno.h>
#include <string.h>

#include "base/util.h"
#include "store/store_int.h"
#include "base/banned.h"

int store_cred_insert(int64_t user_id, enum store_cred_kind kind, const char *lookup,
                      const char *hash, const char *scopes)
{
    sqlite3_stmt *st = store_stmt("INSERT INTO credentials(user_id, kind, lookup, hash, scopes, "
                                  "created_ms) VALUES (?, ?, ?, ?, ?, ?)");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_text(st, 2, kind == STORE_CRED_TOKEN ? "token" : "apikey", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, lookup, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, scopes ? scopes : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, time_now_ms());
    return store_exec_stmt(st);
}

static void cred_read(sqlite3_stmt *st, struct store_cred *out)
{
    out->id = sqlite3_column_int64(st, 0);
    out->user_id = sqlite3_column_int64(st, 1);
    const unsigned char *kind = sqlite3_column_text(st, 2);
    out->kind =
        kind && strcmp((const char *)kind, "token") == 0 ? STORE_CRED_TOKEN : STORE_CRED_APIKEY;
    store_col_text(st, 3, out->lookup, sizeof(out->lookup));
    store_col_text(st, 4, out->hash, sizeof(out->hash));
    store_col_text(st, 5, out->scopes, sizeof(out->scopes));
    out->revoked = sqlite3_column_int(st, 6) != 0;
}

#define CRED_COLS "c.id, c.user_id, c.kind, c.lookup, c.hash, c.scopes, c.revoked_ms IS NOT NULL"

int store_cred_by_lookup(const char *lookup, struct store_cred *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " CRED_COLS " FROM credentials c WHERE lookup = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, lookup, -1, SQLITE_STATIC);
    int r = store_row(st, sqlite3_step(st));
    if (!r)
        cred_read(st, out);
    sqlite3_reset(st);
    return r;
}

int store_cred_user_by_lookup(const char *lookup, struct store_cred *cred, struct store_user *user)
{
    sqlite3_stmt *st = store_stmt("SELECT " CRED_COLS ", " STORE_USER_COLS_U " FROM credentials c "
                                  "JOIN users u ON u.id = c.user_id WHERE c.lookup = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, lookup, -1, SQLITE_STATIC);
    int r = store_row(st, sqlite3_step(st));
    if (!r) {
        cred_read(st, cred);
        store_user_read(st, 7, user);
    }
    sqlite3_reset(st);
    return r;
}

int store_cred_revoke(int64_t user_id, const char *lookup)
{
    sqlite3_stmt *st = store_stmt("UPDATE credentials SET revoked_ms = ? "
                                  "WHERE user_id = ? AND lookup = ? AND revoked_ms IS NULL");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, time_now_ms());
    sqlite3_bind_int64(st, 2, user_id);
    sqlite3_bind_text(st, 3, lookup, -1, SQLITE_STATIC);
    int r = store_exec_stmt(st);
    if (!r && sqlite3_changes(store_conn()) == 0)
        r = -ENOENT;
    return r;
}
