/* store: the audit log, append-only (triggers forbid UPDATE and DELETE) and hash-chained: each
 * entry's hash covers the previous entry's hash and all of its own fields.
 *
 * Every field is stored as valid UTF-8 (each byte that is not part of a valid sequence becomes
 * U+FFFD) and hashed as stored. Rows written by older versions may hold other bytes: they are
 * read the same lossy way, but verified over the bytes they hold. */
#include <errno.h>
#include <string.h>

#include "base/crypto.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "store/store_int.h"
#include "base/banned.h"

static void entry_hash(const char *prev, int64_t at_ms, const char *const fields[7],
                       char out[CRYPTO_SHA256_HEX])
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_addf(&sb, "%s\x1f%lld", prev, (long long)at_ms);
    for (int i = 0; i < 7; i++) {
        strbuf_addch(&sb, '\x1f');
        strbuf_adds(&sb, fields[i]);
    }
    crypto_sha256_hex(sb.buf, sb.len, out);
    strbuf_release(&sb);
}

int store_audit_append(const char *actor, const char *action, const char *app, const char *env,
                       const char *source, const char *result, const char *detail)
{
    const char *in[7] = {actor, action, app, env, source, result, detail}; /* NULL: "" */
    const char *fields[7];
    struct strbuf text[7];
    for (int i = 0; i < 7; i++) {
        strbuf_init(&text[i], 0);
        strbuf_add_utf8_lossy(&text[i], in[i] ? in[i] : "");
        fields[i] = text[i].buf;
    }
    int r = -ENOMEM;
    for (int i = 0; i < 7; i++)
        if (!strbuf_ok(&text[i]))
            goto out;
    r = store_begin();
    if (r)
        goto out;
    char prev[CRYPTO_SHA256_HEX] = "";
    sqlite3_stmt *st = store_stmt("SELECT hash FROM audit ORDER BY id DESC LIMIT 1");
    r = -EIO;
    if (!st)
        goto fail;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        store_col_text(st, 0, prev, sizeof(prev));
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        goto fail;
    int64_t at = time_now_ms();
    char hash[CRYPTO_SHA256_HEX];
    entry_hash(prev, at, fields, hash);
    st = store_stmt("INSERT INTO audit(at_ms, actor, action, app, env, source, result, detail, "
                    "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st)
        goto fail;
    sqlite3_bind_int64(st, 1, at);
    for (int i = 0; i < 7; i++)
        sqlite3_bind_text(st, 2 + i, fields[i], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, prev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, hash, -1, SQLITE_STATIC);
    if ((r = store_exec_stmt(st)))
        goto fail;
    r = store_commit();
    goto out;
fail:
    store_rollback();
out:
    for (int i = 0; i < 7; i++)
        strbuf_release(&text[i]);
    return r;
}

#define AUDIT_SELECT                                                                               \
    "SELECT id, at_ms, actor, action, app, env, source, result, detail, hash, prev_hash "          \
    "FROM audit WHERE id > ? ORDER BY id LIMIT ?"

static void audit_read(sqlite3_stmt *st, struct store_audit *a)
{
    a->id = sqlite3_column_int64(st, 0);
    a->at_ms = sqlite3_column_int64(st, 1);
    const char **f[] = {&a->actor,  &a->action, &a->app,    &a->env,
                        &a->source, &a->result, &a->detail, &a->hash};
    for (int i = 0; i < 8; i++) {
        const unsigned char *t = sqlite3_column_text(st, 2 + i);
        *f[i] = t ? (const char *)t : "";
    }
}

/* Points a's text fields at valid UTF-8: themselves, or lossy copies in text[] (reused). */
static int audit_utf8(struct store_audit *a, struct strbuf text[8])
{
    const char **f[] = {&a->actor,  &a->action, &a->app,    &a->env,
                        &a->source, &a->result, &a->detail, &a->hash};
    for (int i = 0; i < 8; i++) {
        if (str_utf8_valid(*f[i]))
            continue;
        strbuf_reset(&text[i]);
        strbuf_add_utf8_lossy(&text[i], *f[i]);
        if (!strbuf_ok(&text[i]))
            return -ENOMEM;
        *f[i] = text[i].buf;
    }
    return 0;
}

int store_audit_each(int64_t after_id, int limit, int (*fn)(const struct store_audit *, void *),
                     void *arg)
{
    sqlite3_stmt *st = store_stmt(AUDIT_SELECT);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, after_id);
    sqlite3_bind_int(st, 2, limit);
    struct strbuf text[8];
    for (int i = 0; i < 8; i++)
        strbuf_init(&text[i], 0);
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_audit a;
        audit_read(st, &a);
        r = audit_utf8(&a, text);
        if (!r)
            r = fn(&a, arg);
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    for (int i = 0; i < 8; i++)
        strbuf_release(&text[i]);
    return r;
}

int store_audit_verify(int64_t *bad_id)
{
    sqlite3_stmt *st = store_stmt(AUDIT_SELECT);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, 0);
    sqlite3_bind_int(st, 2, -1);
    char prev[CRYPTO_SHA256_HEX] = "";
    int rc, r = 0;
    while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_audit a;
        audit_read(st, &a);
        const unsigned char *stored_prev = sqlite3_column_text(st, 10);
        const char *fields[7] = {a.actor, a.action, a.app, a.env, a.source, a.result, a.detail};
        char hash[CRYPTO_SHA256_HEX];
        entry_hash(prev, a.at_ms, fields, hash);
        if (!stored_prev || strcmp((const char *)stored_prev, prev) != 0 ||
            strcmp(hash, a.hash) != 0) {
            if (bad_id)
                *bad_id = a.id;
            r = -EBADMSG;
            break;
        }
        memcpy(prev, hash, sizeof(prev));
    }
    if (!r && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_reset(st);
    return r;
}
