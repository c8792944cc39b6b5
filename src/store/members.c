/* store: app membership and per-environment rights. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "store/store_int.h"
#include "base/banned.h"

/* Role names as stored, indexed by enum store_role. */
static const char *const role_names[] = {"none", "viewer", "developer", "admin"};

const char *store_role_name(enum store_role role)
{
    return (unsigned)role < sizeof(role_names) / sizeof(role_names[0]) ? role_names[role] : "none";
}

enum store_role store_role_parse(const char *name)
{
    for (int i = STORE_ROLE_VIEWER; i <= STORE_ROLE_ADMIN; i++)
        if (name && strcasecmp(name, role_names[i]) == 0)
            return (enum store_role)i;
    return STORE_ROLE_NONE;
}

static enum store_role role_parse(const unsigned char *s)
{
    return store_role_parse((const char *)s);
}

int store_member_set(int64_t app, int64_t user, enum store_role role)
{
    if (role < STORE_ROLE_VIEWER || role > STORE_ROLE_ADMIN)
        return -EINVAL;
    const char *name = store_role_name(role);
    int r = store_begin();
    if (r)
        return r;
    sqlite3_stmt *st = store_stmt("INSERT INTO members(app, user, role) VALUES (?, ?, ?) "
                                  "ON CONFLICT (app, user) DO UPDATE SET role = excluded.role");
    r = -EIO;
    if (!st)
        goto fail;
    sqlite3_bind_int64(st, 1, app);
    sqlite3_bind_int64(st, 2, user);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    if ((r = store_exec_stmt(st)))
        goto fail;
    /* Default rights for a new member: API Rights on every non-production environment. */
    st = store_stmt("INSERT OR IGNORE INTO env_rights(env, user, rights) "
                    "SELECT id, ?, CASE WHEN production THEN 0 ELSE ? END "
                    "FROM environments WHERE app = ?");
    r = -EIO;
    if (!st)
        goto fail;
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_int(st, 2, RIGHT_API);
    sqlite3_bind_int64(st, 3, app);
    if ((r = store_exec_stmt(st)))
        goto fail;
    return store_commit();
fail:
    store_rollback();
    return r;
}

int store_member_role(int64_t app, int64_t user, enum store_role *out)
{
    unsigned rights;
    return store_member_access(app, user, out, &rights);
}

static int rights_query(sqlite3_stmt *st, unsigned *out)
{
    int rc = sqlite3_step(st);
    int r = 0;
    *out = 0;
    if (rc == SQLITE_ROW)
        *out = (unsigned)sqlite3_column_int(st, 0);
    else if (rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}

int store_rights_get(int64_t env, int64_t user, unsigned *out)
{
    sqlite3_stmt *st = store_stmt("SELECT rights FROM env_rights WHERE env = ? AND user = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    sqlite3_bind_int64(st, 2, user);
    return rights_query(st, out);
}

/* Bitwise OR over a member's rights rows: SQLite has no such aggregate; MAX per bit does it. */
#define RIGHTS_OR                                                                                  \
    "(MAX(rights & 1) | MAX(rights & 2) | MAX(rights & 4) | MAX(rights & 8) | "                    \
    "MAX(rights & 16) | MAX(rights & 32))"

int store_rights_any(int64_t app, int64_t user, unsigned *out)
{
    sqlite3_stmt *st = store_stmt("SELECT " RIGHTS_OR " FROM env_rights r JOIN environments e "
                                  "ON e.id = r.env WHERE e.app = ? AND r.user = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, app);
    sqlite3_bind_int64(st, 2, user);
    return rights_query(st, out);
}

int store_rights_update(int64_t app, int64_t env, int64_t user, unsigned set, unsigned clear)
{
    enum store_role role;
    int r = store_member_role(app, user, &role);
    if (r)
        return r;
    if (role == STORE_ROLE_NONE)
        return -ENOENT;
    sqlite3_stmt *st = store_stmt("SELECT 1 FROM environments WHERE id = ? AND app = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    sqlite3_bind_int64(st, 2, app);
    r = store_row(st, sqlite3_step(st));
    sqlite3_reset(st);
    if (r)
        return r == -ENOENT ? -EINVAL : r;
    st = store_stmt("INSERT INTO env_rights(env, user, rights) VALUES (?, ?, ?) "
                    "ON CONFLICT (env, user) DO UPDATE SET "
                    "rights = (rights | ?3) & ~?4");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, env);
    sqlite3_bind_int64(st, 2, user);
    sqlite3_bind_int(st, 3, (int)set);
    sqlite3_bind_int(st, 4, (int)clear);
    return store_exec_stmt(st);
}

int store_member_each(int64_t app, int (*fn)(const struct store_member *, void *), void *arg)
{
    sqlite3_stmt *st = store_stmt("SELECT u.id, u.email, m.role FROM members m "
                                  "JOIN users u ON u.id = m.user WHERE m.app = ? ORDER BY u.email");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, app);
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_member m;
        m.user_id = sqlite3_column_int64(st, 0);
        store_col_text(st, 1, m.email, sizeof(m.email));
        m.role = role_parse(sqlite3_column_text(st, 2));
        r = fn(&m, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}

int store_member_access(int64_t app, int64_t user, enum store_role *role, unsigned *rights)
{
    sqlite3_stmt *st =
        store_stmt("SELECT m.role, (SELECT " RIGHTS_OR " FROM env_rights r JOIN environments e "
                   "ON e.id = r.env WHERE e.app = m.app AND r.user = m.user) "
                   "FROM members m WHERE m.app = ? AND m.user = ?");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, app);
    sqlite3_bind_int64(st, 2, user);
    int r = store_row(st, sqlite3_step(st));
    *role = r ? STORE_ROLE_NONE : role_parse(sqlite3_column_text(st, 0));
    *rights = r ? 0 : (unsigned)sqlite3_column_int(st, 1);
    sqlite3_reset(st);
    return r == -ENOENT ? 0 : r;
}
