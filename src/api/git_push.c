/* api — what the audit log says of a git push: the ref updates its request asks for, read from
 * the spooled receive-pack request (gzip included), the refs a push left when it did not end
 * normally, and the start-up reconciliation of pushes a crashed server never recorded an end of.
 *
 * A push is audited as `started` with `push=<id>` and its ref updates as detail, and ends with
 * a row of the same `push=<id>`: `ok (...)`/`error (...)` from git, or `interrupted (...)` with
 * where each ref stands. It does not start or kill processes (git.c does).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "admin/admin.h"
#include "api/api_int.h"
#include "base/layout.h"
#include "base/crypto.h"
#include "base/log.h"
#include "base/util.h"
#include "base/banned.h"

#define PUSH_READ_MAX    (64 * 1024)       /* of the (inflated) request: the command list */
#define PUSH_GZIP_IN_MAX (4 * 1024 * 1024) /* compressed bytes read to fill PUSH_READ_MAX */

static bool is_hex_oid(const char *s, size_t len)
{
    if (len != VCS_OID_HEX - 1)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool is_zero_oid(const char *s)
{
    return strspn(s, "0") == VCS_OID_HEX - 1;
}

static void add_cmd(struct api_git_push *p, const char *old, const char *new_oid, const char *ref,
                    size_t ref_len)
{
    if (p->nr == API_GIT_PUSH_MAX_REFS || ref_len == 0 || ref_len > 1024) {
        p->nr_more++;
        return;
    }
    struct api_git_push_cmd *c = &p->cmd[p->nr];
    c->ref = strndup(ref, ref_len);
    if (!c->ref) {
        p->nr_more++;
        return;
    }
    memcpy(c->old_oid, old, VCS_OID_HEX - 1);
    c->old_oid[VCS_OID_HEX - 1] = '\0';
    memcpy(c->new_oid, new_oid, VCS_OID_HEX - 1);
    c->new_oid[VCS_OID_HEX - 1] = '\0';
    p->nr++;
}

int api_git_push_parse(const char *buf, size_t len, struct api_git_push *out)
{
    size_t pos = 0;
    bool any = false;
    while (pos + 4 <= len) {
        char hex[5] = {buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3], 0};
        char *end;
        unsigned long n = strtoul(hex, &end, 16);
        if (*end || !isxdigit((unsigned char)hex[0]))
            return any ? 0 : -EINVAL;
        if (n == 0) /* flush: the end of the command list (the pack follows) */
            return any ? 0 : -EINVAL;
        if (n < 4 || pos + n > len) { /* cut off by the read limit */
            if (pos + n > len && n >= 4)
                out->nr_more++;
            return any ? 0 : -EINVAL;
        }
        const char *line = buf + pos + 4;
        size_t line_len = n - 4;
        const char *nul = memchr(line, '\0', line_len); /* capabilities follow the first */
        if (nul)
            line_len = (size_t)(nul - line);
        if (line_len && line[line_len - 1] == '\n')
            line_len--;
        /* "<old> <new> <ref>"; "shallow <oid>" and push-certificate lines are not updates */
        const size_t h = VCS_OID_HEX - 1;
        if (line_len > 2 * h + 2 && is_hex_oid(line, h) && line[h] == ' ' &&
            is_hex_oid(line + h + 1, h) && line[2 * h + 1] == ' ') {
            add_cmd(out, line, line + h + 1, line + 2 * h + 2, line_len - 2 * h - 2);
            any = true;
        }
        pos += n;
    }
    return any ? 0 : -EINVAL;
}

void api_git_push_release(struct api_git_push *p)
{
    for (size_t i = 0; i < p->nr; i++)
        free(p->cmd[i].ref);
    p->nr = p->nr_more = 0;
}

/* Up to PUSH_READ_MAX bytes of the request body at fd (from offset 0, leaving the offset where it
 * is), inflated when gzipped. Bytes in buf, or -errno. */
static ssize_t read_request_start(int fd, bool gzipped, char *buf)
{
    if (!gzipped) {
        ssize_t n = pread(fd, buf, PUSH_READ_MAX, 0);
        return n < 0 ? -errno : n;
    }
    z_stream z = {0};
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return -ENOMEM;
    char in[16384];
    off_t off = 0;
    int zr = Z_OK;
    z.next_out = (Bytef *)buf;
    z.avail_out = PUSH_READ_MAX;
    while (zr == Z_OK && z.avail_out && off < PUSH_GZIP_IN_MAX) {
        ssize_t n = pread(fd, in, sizeof(in), off);
        if (n <= 0)
            break;
        off += n;
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)n;
        while (zr == Z_OK && z.avail_in && z.avail_out)
            zr = inflate(&z, Z_NO_FLUSH);
    }
    ssize_t r = zr == Z_OK || zr == Z_STREAM_END || zr == Z_BUF_ERROR
                    ? (ssize_t)(PUSH_READ_MAX - z.avail_out)
                    : -EINVAL;
    inflateEnd(&z);
    return r;
}

int api_git_push_read(int fd, bool gzipped, struct api_git_push *out)
{
    char *buf = malloc(PUSH_READ_MAX);
    if (!buf)
        return -ENOMEM;
    ssize_t n = read_request_start(fd, gzipped, buf);
    int r = n < 0 ? (int)n : api_git_push_parse(buf, (size_t)n, out);
    free(buf);
    return r;
}

/* A ref name as the audit shows it: bytes outside printable ASCII, and '\', as \xNN. */
static void add_ref(struct strbuf *sb, const char *ref)
{
    for (const unsigned char *p = (const unsigned char *)ref; *p; p++) {
        if (*p <= ' ' || *p >= 0x7f || *p == '\\')
            strbuf_addf(sb, "\\x%02x", *p);
        else
            strbuf_addch(sb, (char)*p);
    }
}

/* The reverse of add_ref; NULL when out of memory. */
static char *unescape_ref(const char *s, size_t len)
{
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\' && i + 3 < len && s[i + 1] == 'x' && isxdigit((unsigned char)s[i + 2]) &&
            isxdigit((unsigned char)s[i + 3])) {
            char hex[3] = {s[i + 2], s[i + 3], 0};
            *o++ = (char)strtoul(hex, NULL, 16);
            i += 3;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

void api_git_push_describe(const char *push_id, const struct api_git_push *p, struct strbuf *out)
{
    strbuf_addf(out, "push=%s", push_id);
    for (size_t i = 0; i < p->nr; i++) {
        strbuf_addf(out, " %s..%s ", p->cmd[i].old_oid, p->cmd[i].new_oid);
        add_ref(out, p->cmd[i].ref);
    }
    if (p->nr_more)
        strbuf_addf(out, " (+%zu more)", p->nr_more);
}

/* Reads back what api_git_push_describe wrote: the push id (into push_id) and the updates. */
static int parse_detail(const char *detail, char push_id[CRYPTO_UUID_LEN], struct api_git_push *p)
{
    if (!str_has_prefix(detail, "push="))
        return -EINVAL;
    const char *s = detail + 5;
    size_t id_len = strcspn(s, " ");
    if (id_len == 0 || id_len >= CRYPTO_UUID_LEN)
        return -EINVAL;
    memcpy(push_id, s, id_len);
    push_id[id_len] = '\0';
    s += id_len;
    const size_t h = VCS_OID_HEX - 1;
    while (*s == ' ') {
        s++;
        size_t tok = strcspn(s, " ");
        if (tok == 2 * h + 2 && is_hex_oid(s, h) && s[h] == '.' && s[h + 1] == '.' &&
            is_hex_oid(s + h + 2, h) && s[tok] == ' ') {
            const char *ref = s + tok + 1;
            size_t ref_len = strcspn(ref, " ");
            char *name = unescape_ref(ref, ref_len);
            if (name)
                add_cmd(p, s, s + h + 2, name, strlen(name));
            free(name);
            s = ref + ref_len;
        } else {
            if (str_has_prefix(s, "(+"))
                p->nr_more += (size_t)strtoul(s + 2, NULL, 10);
            s += tok;
        }
    }
    return 0;
}

void api_git_push_outcome(const char *app_id, const char *push_id, const struct api_git_push *p,
                          struct strbuf *out)
{
    char *path = layout_repo_path(app_id);
    struct vcs_repo *repo = NULL;
    int r = path ? vcs_open(path, &repo) : -ENOMEM;
    free(path);
    strbuf_addf(out, "push=%s", push_id);
    if (r) {
        strbuf_addf(out, " (cannot read the repository: %s)", strerror(-r));
        return;
    }
    for (size_t i = 0; i < p->nr; i++) {
        const struct api_git_push_cmd *c = &p->cmd[i];
        char now[VCS_OID_HEX];
        int e = vcs_ref_get(repo, c->ref, now);
        strbuf_addch(out, ' ');
        add_ref(out, c->ref);
        if (e && e != -ENOENT) {
            strbuf_addf(out, " unreadable (%s)", strerror(-e));
            continue;
        }
        const char *is = e ? "absent" : now;
        bool landed = e ? is_zero_oid(c->new_oid) : strcmp(now, c->new_oid) == 0;
        bool not_landed = e ? is_zero_oid(c->old_oid) : strcmp(now, c->old_oid) == 0;
        strbuf_addf(out, " %s (%s)", is,
                    landed       ? "landed"
                    : not_landed ? "not landed"
                                 : "changed since");
    }
    if (p->nr_more)
        strbuf_addf(out, " (+%zu more not shown)", p->nr_more);
}

/* ---- start-up: pushes with a `started` row and no end ---------------------------------- */

struct open_push {
    int64_t id; /* of the started row */
    char push_id[CRYPTO_UUID_LEN];
    char *actor, *app, *source, *detail;
};

struct scan {
    struct open_push *open;
    size_t nr, alloc;
    bool failed;
};

static void open_push_free(struct open_push *o)
{
    free(o->actor);
    free(o->app);
    free(o->source);
    free(o->detail);
}

static void scan_remove(struct scan *s, size_t i)
{
    open_push_free(&s->open[i]);
    memmove(&s->open[i], &s->open[i + 1], (s->nr - i - 1) * sizeof(*s->open));
    s->nr--;
}

static int scan_row(const struct store_audit *a, void *arg)
{
    struct scan *s = arg;
    if (strcmp(a->action, "git push") != 0)
        return 0;
    char push_id[CRYPTO_UUID_LEN] = "";
    struct api_git_push none = {0};
    bool has_id = parse_detail(a->detail, push_id, &none) == 0;
    api_git_push_release(&none);
    if (strcmp(a->result, "started") == 0) {
        if (s->nr == s->alloc) {
            size_t n = s->alloc ? 2 * s->alloc : 16;
            struct open_push *grown = realloc(s->open, n * sizeof(*grown));
            if (!grown) {
                s->failed = true;
                return -ENOMEM;
            }
            s->open = grown;
            s->alloc = n;
        }
        struct open_push *o = &s->open[s->nr];
        *o = (struct open_push){.id = a->id};
        memcpy(o->push_id, push_id, sizeof(push_id));
        o->actor = strdup(a->actor);
        o->app = strdup(a->app);
        o->source = strdup(a->source);
        o->detail = strdup(a->detail);
        s->nr++;
        if (!o->actor || !o->app || !o->source || !o->detail) {
            s->failed = true;
            return -ENOMEM;
        }
        return 0;
    }
    /* An end. Before push ids, a start and its end were paired only by who, where and from
     * where: the oldest open one of those ends, if git's exit was recorded (a push refused
     * before git ran has no start). */
    for (size_t i = 0; i < s->nr; i++) {
        struct open_push *o = &s->open[i];
        bool same = has_id ? strcmp(o->push_id, push_id) == 0
                           : !o->push_id[0] && strstr(a->result, "http-backend exit") &&
                                 strcmp(o->actor, a->actor) == 0 && strcmp(o->app, a->app) == 0 &&
                                 strcmp(o->source, a->source) == 0;
        if (same) {
            scan_remove(s, i);
            break;
        }
    }
    return 0;
}

struct heads {
    struct strbuf *out;
    size_t nr;
};

static int add_head(const struct vcs_branch *b, void *arg)
{
    struct heads *h = arg;
    if (h->nr++ < API_GIT_PUSH_MAX_REFS) {
        strbuf_addch(h->out, ' ');
        add_ref(h->out, b->name);
        strbuf_addf(h->out, "=%s", b->head.id);
    }
    return 0;
}

/* For a start written before push ids: which push it was is unknown, so the branch heads. */
static void describe_heads(const struct open_push *o, struct strbuf *out)
{
    strbuf_addf(out, "started=%lld; its refs are unknown; branches now:", (long long)o->id);
    char *path = layout_repo_path(o->app);
    struct vcs_repo *repo = NULL;
    struct heads h = {out, 0};
    if (!path || vcs_open(path, &repo) || vcs_branch_each(repo, add_head, &h))
        strbuf_adds(out, " (cannot read the repository)");
    else if (h.nr > API_GIT_PUSH_MAX_REFS)
        strbuf_addf(out, " (+%zu more)", h.nr - API_GIT_PUSH_MAX_REFS);
    free(path);
}

int api_git_push_reconcile(void)
{
    struct scan s = {0};
    int r = store_audit_each(0, -1, scan_row, &s);
    int nr = 0;
    for (size_t i = 0; !r && i < s.nr; i++) {
        struct open_push *o = &s.open[i];
        struct strbuf detail = STRBUF_INIT;
        strbuf_init(&detail, 16 * 1024);
        if (o->push_id[0]) {
            struct api_git_push p = {0};
            char id[CRYPTO_UUID_LEN];
            parse_detail(o->detail, id, &p);
            api_git_push_outcome(o->app, o->push_id, &p, &detail);
            api_git_push_release(&p);
        } else {
            describe_heads(o, &detail);
        }
        if (!strbuf_ok(&detail)) {
            strbuf_reset(&detail);
            strbuf_addf(&detail, "push=%s", o->push_id[0] ? o->push_id : "?");
        }
        r = store_audit_append(o->actor, "git push", o->app, "", o->source,
                               "interrupted (the server stopped during the push; found at the "
                               "next start)",
                               detail.buf);
        if (!r) {
            log_warn("git push %s to '%s' by '%s' was cut off by the server's stop: audited as "
                     "interrupted (%s)",
                     o->push_id[0] ? o->push_id : "(no id)", o->app, o->actor, detail.buf);
            nr++;
        }
        strbuf_release(&detail);
    }
    for (size_t i = 0; i < s.nr; i++)
        open_push_free(&s.open[i]);
    free(s.open);
    if (r)
        log_error("cannot reconcile the audit log's unfinished git pushes: %s", strerror(-r));
    return r ? r : nr;
}
