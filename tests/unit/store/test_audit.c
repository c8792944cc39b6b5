/* Tests for the audit log's text: whatever bytes a field is given (request paths and names come
 * from clients), it is stored as valid UTF-8 and the hash chain covers what is stored; rows that
 * older versions stored with other bytes are read lossily, never refused, and still verify.
 */
#include "store/store.h"

#include "base/crypto.h"
#include "base/strbuf.h"
#include "base/util.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmp[PATH_MAX];
static char db_file[PATH_MAX];

static void setup(void)
{
    temp_dir(tmp, "audit");
    int n = snprintf(db_file, sizeof(db_file), "%s/slipway.db", tmp);
    cr_assert(n > 0 && (size_t)n < sizeof(db_file));
    cr_assert_eq(store_init(db_file), 0);
}

static void teardown(void)
{
    store_thread_release();
    fs_remove_tree(tmp);
}

TestSuite(audit, .init = setup, .fini = teardown, .timeout = 10);

#define FFFD "\xef\xbf\xbd"

struct rows {
    int n;
    char field[8][8][256]; /* actor, action, app, env, source, result, detail, hash */
};

static int collect(const struct store_audit *a, void *arg)
{
    struct rows *c = arg;
    cr_assert_lt(c->n, 8);
    const char *f[8] = {a->actor,  a->action, a->app,    a->env,
                        a->source, a->result, a->detail, a->hash};
    for (int i = 0; i < 8; i++) {
        cr_assert(str_utf8_valid(f[i]), "row %d field %d is not UTF-8", c->n, i);
        snprintf(c->field[c->n][i], sizeof(c->field[0][0]), "%s", f[i]);
    }
    c->n++;
    return 0;
}

static sqlite3 *raw_open(void)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(db_file, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* Every text column of every row, as stored, is valid UTF-8. */
static void assert_stored_utf8(void)
{
    sqlite3 *db = raw_open();
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT actor, action, app, env, source, result, detail, "
                                    "prev_hash, hash FROM audit",
                                    -1, &st, NULL),
                 SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        for (int i = 0; i < 9; i++)
            cr_assert(str_utf8_valid((const char *)sqlite3_column_text(st, i)),
                      "stored column %d is not UTF-8", i);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

Test(audit, append_stores_invalid_bytes_as_replacement_characters)
{
    cr_assert_eq(store_audit_append("anonymous", "POST /x\xff\xfe", "a\xc3", "\xed\xa0\x80",
                                    "127.0.0.1", "error 404", "email=\xff@x caf\xc3\xa9"),
                 0);
    cr_assert_eq(store_audit_append("admin@localhost", "apikey add", "", "", "127.0.0.1",
                                    "error 404 USER_NOT_FOUND", "email=\xff"),
                 0);
    struct rows c = {0};
    cr_assert_eq(store_audit_each(0, 10, collect, &c), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.field[0][1], "POST /x" FFFD FFFD);
    cr_assert_str_eq(c.field[0][2], "a" FFFD);
    cr_assert_str_eq(c.field[0][3], FFFD FFFD FFFD); /* a surrogate: three bad bytes */
    cr_assert_str_eq(c.field[0][6], "email=" FFFD "@x caf\xc3\xa9");
    cr_assert_str_eq(c.field[1][6], "email=" FFFD);
    assert_stored_utf8();
    /* the chain is computed over what is stored, so it verifies */
    int64_t bad = -5;
    cr_assert_eq(store_audit_verify(&bad), 0);
    cr_assert_eq(bad, -5);
}

/* Inserts a row as an older version did: raw bytes, hashed as they are. */
static void insert_old_row(sqlite3 *db, const char *prev, const char *const fields[7],
                           char hash[CRYPTO_SHA256_HEX])
{
    int64_t at = time_now_ms();
    struct strbuf sb = STRBUF_INIT;
    strbuf_addf(&sb, "%s\x1f%lld", prev, (long long)at);
    for (int i = 0; i < 7; i++) {
        strbuf_addch(&sb, '\x1f');
        strbuf_adds(&sb, fields[i]);
    }
    crypto_sha256_hex(sb.buf, sb.len, hash);
    strbuf_release(&sb);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "INSERT INTO audit(at_ms, actor, action, app, env, source, "
                                    "result, detail, prev_hash, hash) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                    -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, at);
    for (int i = 0; i < 7; i++)
        sqlite3_bind_text(st, 2 + i, fields[i], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, prev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, hash, -1, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
}

Test(audit, rows_stored_by_older_versions_are_read_lossily_and_still_verify)
{
    cr_assert_eq(store_audit_append("cli", "user add", "", "", "cli", "ok", "email=a@b.c"), 0);
    char first[CRYPTO_SHA256_HEX], old[CRYPTO_SHA256_HEX];
    struct rows c = {0};
    cr_assert_eq(store_audit_each(0, 10, collect, &c), 0);
    cr_assert_eq(strlen(c.field[0][7]), CRYPTO_SHA256_HEX - 1);
    memcpy(first, c.field[0][7], CRYPTO_SHA256_HEX);

    sqlite3 *db = raw_open();
    const char *const fields[7] = {"anonymous", "POST /x\xff\xfe", "",    "",
                                   "127.0.0.1", "error 404",       "\xc3"};
    insert_old_row(db, first, fields, old);
    sqlite3_close(db);

    /* read, never refused: the bad bytes come back as U+FFFD */
    memset(&c, 0, sizeof(c));
    cr_assert_eq(store_audit_each(0, 10, collect, &c), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.field[1][1], "POST /x" FFFD FFFD);
    cr_assert_str_eq(c.field[1][6], FFFD);
    cr_assert_str_eq(c.field[1][7], old);
    /* paging from it works too */
    memset(&c, 0, sizeof(c));
    cr_assert_eq(store_audit_each(1, 1, collect, &c), 0);
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.field[0][1], "POST /x" FFFD FFFD);

    /* the chain is verified over the bytes the row holds, and new entries extend it */
    cr_assert_eq(store_audit_verify(NULL), 0);
    cr_assert_eq(store_audit_append("cli", "app add", "calc", "", "cli", "ok", ""), 0);
    int64_t bad = -5;
    cr_assert_eq(store_audit_verify(&bad), 0);
    cr_assert_eq(bad, -5);
    memset(&c, 0, sizeof(c));
    cr_assert_eq(store_audit_each(0, 10, collect, &c), 0);
    cr_assert_eq(c.n, 3);
}
