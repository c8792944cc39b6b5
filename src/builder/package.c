/* package — writes, validates and extracts deployment packages; see package.h.
 *
 * The rules live once (check_path, check_target, entries_check) and serve both the writer and
 * the reader, so a package written is a package accepted. Extraction is done with *at() calls
 * under a directory fd instead of archive_write_disk (package.h says why). Files and packages are
 * hashed as they stream (base/crypto's streamed SHA-256).
 */
#include "builder/package.h"

#include "base/crypto.h"
#include "base/strbuf.h"
#include "base/util.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "base/banned.h"

#define IO_BUF     (256 * 1024) /* reads of files and of the package */
#define QUOTE_MAX  200          /* bytes of a path shown in a message */
#define MODE_UNSET 0xffffffffu

static const struct package_limits default_limits = PACKAGE_LIMITS_DEFAULT;

/* --- errors --- */

struct errbuf {
    char *msg;
    size_t cap;
};

__attribute__((format(printf, 3, 4))) static int fail(struct errbuf *e, int code, const char *fmt,
                                                      ...)
{
    if (e->msg && e->cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, e->cap, fmt, ap);
        va_end(ap);
    }
    return code;
}

struct quoted {
    char s[QUOTE_MAX + 4];
};

/* s made fit for a message: control characters shown as '?', cut to QUOTE_MAX bytes (never in
 * the middle of a UTF-8 sequence) with "..." appended. */
static const char *quote(struct quoted *q, const char *s)
{
    size_t n = 0;
    if (!s)
        s = "";
    for (; s[n] && n < QUOTE_MAX; n++) {
        unsigned char c = (unsigned char)s[n];
        q->s[n] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (s[n]) {
        while (n && ((unsigned char)q->s[n - 1] & 0xc0) == 0x80)
            n--;
        if (n && ((unsigned char)q->s[n - 1] & 0xc0) == 0xc0)
            n--;
        memcpy(q->s + n, "...", 4);
    } else {
        q->s[n] = '\0';
    }
    return q->s;
}

static const char *file_kind(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFCHR:
        return "a character device";
    case S_IFBLK:
        return "a block device";
    case S_IFIFO:
        return "a FIFO";
    case S_IFSOCK:
        return "a socket";
    default:
        return "of an unknown type";
    }
}

/* --- paths, entries and the rules they follow --- */

enum entry_type { ENTRY_FILE, ENTRY_DIR, ENTRY_SYMLINK };
static const char *const type_names[] = {"file", "dir", "symlink"};
static const char *const type_words[] = {"a file", "a directory", "a symlink"};

struct entry {
    char *path;   /* canonical relative path, no trailing '/' (malloc'd) */
    char *target; /* symlink target (malloc'd), else NULL */
    uint64_t size;
    unsigned mode; /* permission bits, or MODE_UNSET (a manifest entry without "mode") */
    enum entry_type type;
    bool seen; /* reader: found in the archive */
    unsigned char sha256[CRYPTO_SHA256_LEN];
    /* writer: what lstat saw, to notice a file that changes while it is packaged;
     * reader: mtime is what to give an extracted directory at the end */
    dev_t dev;
    ino_t ino;
    struct timespec mtime, ctime;
    unsigned dir_mode; /* reader: the mode to give an extracted directory at the end */
};

struct entries {
    struct entry *v;
    size_t nr, alloc;
};

/* A zeroed new entry at the end, or NULL when out of memory. */
static struct entry *entries_add(struct entries *es)
{
    if (es->nr == es->alloc) {
        size_t alloc = es->alloc ? 2 * es->alloc : 64;
        struct entry *v = reallocarray(es->v, alloc, sizeof(*v));
        if (!v)
            return NULL;
        es->v = v;
        es->alloc = alloc;
    }
    struct entry *en = &es->v[es->nr++];
    memset(en, 0, sizeof(*en));
    en->mode = MODE_UNSET;
    return en;
}

static void entries_release(struct entries *es)
{
    for (size_t i = 0; i < es->nr; i++) {
        free(es->v[i].path);
        free(es->v[i].target);
    }
    free(es->v);
    memset(es, 0, sizeof(*es));
}

/* Orders paths component by component ('/' before any other byte), so that everything below a
 * path follows it directly: "a", "a/b", "a/c", "a-b". Sorted this way, entries are in tree
 * order (a directory before its contents) and lookups are a binary search: no hash table an
 * attacker could fill with collisions. */
static int path_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = *a == '/' ? 1 : *a ? (unsigned char)*a + 1 : 0;
        int cb = *b == '/' ? 1 : *b ? (unsigned char)*b + 1 : 0;
        if (ca != cb)
            return ca - cb;
        if (!ca)
            return 0;
    }
}

static int entry_cmp(const void *a, const void *b)
{
    return path_cmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static struct entry *entries_find(struct entries *es, const char *path)
{
    struct entry key = {.path = (char *)path};
    if (!es->nr) /* es->v is NULL then, which bsearch must not be given (found by the fuzzer) */
        return NULL;
    return bsearch(&key, es->v, es->nr, sizeof(*es->v), entry_cmp);
}

static bool is_below(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* Checks a path of len bytes as a package entry path: relative, UTF-8, no empty, '.' or '..'
 * component, at most max_path bytes. `what` names it in the message ("package entry"). */
static int check_path(struct errbuf *e, const char *what, const char *path, size_t len,
                      const struct package_limits *lim)
{
    struct quoted q;
    if (len > lim->max_path)
        return fail(e, -EFBIG, "%s '%s' has a path of %zu bytes, more than the limit of %zu", what,
                    quote(&q, path), len, lim->max_path);
    if (len == 0)
        return fail(e, -EINVAL, "%s has an empty path", what);
    if (path[0] == '/')
        return fail(e, -EINVAL, "%s '%s' is an absolute path", what, quote(&q, path));
    if (!str_utf8_validn(path, len))
        return fail(e, -EINVAL, "%s '%s' is not valid UTF-8", what, quote(&q, path));
    long depth = 0;
    bool dotdot = false, odd = false;
    for (const char *p = path, *end = path + len; p <= end;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        if (!slash)
            slash = end;
        size_t n = (size_t)(slash - p);
        if (n == 0 || (n == 1 && p[0] == '.')) {
            odd = true;
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            dotdot = true;
            if (--depth < 0)
                return fail(e, -EINVAL, "%s '%s' leaves the package", what, quote(&q, path));
        } else {
            depth++;
        }
        p = slash + 1;
    }
    if (dotdot)
        return fail(e, -EINVAL, "%s '%s' has a '..' component", what, quote(&q, path));
    if (odd)
        return fail(e, -EINVAL, "%s '%s' is not a plain relative path (empty or '.' component)",
                    what, quote(&q, path));
    return 0;
}

/* Checks the target of the symlink at `path`: relative, UTF-8, '..' only as leading components
 * and never above the root (`scope`: "package" or "workspace"). Because no entry lies inside a
 * symlink (entries_check), a link's directory is where its path says, so with this rule every
 * resolution, however links chain, stays inside: the leading '..'s stop at or below the root,
 * and what follows only descends or enters another link that obeys the same rule. */
static int check_target(struct errbuf *e, const char *what, const char *path, const char *target,
                        const struct package_limits *lim, const char *scope)
{
    struct quoted q, qt;
    size_t len = strlen(target);
    if (len > lim->max_path)
        return fail(e, -EFBIG,
                    "%s '%s' is a symlink whose target has %zu bytes, more than the limit of %zu",
                    what, quote(&q, path), len, lim->max_path);
    if (len == 0)
        return fail(e, -EINVAL, "%s '%s' is a symlink with an empty target", what, quote(&q, path));
    if (!str_utf8_validn(target, len))
        return fail(e, -EINVAL, "%s '%s' is a symlink whose target is not valid UTF-8", what,
                    quote(&q, path));
    if (target[0] == '/')
        return fail(e, -EINVAL, "%s '%s' is a symlink to '%s', outside the %s", what,
                    quote(&q, path), quote(&qt, target), scope);
    long depth = 0;
    for (const char *p = path; *p; p++)
        depth += *p == '/';
    bool named = false;
    for (const char *p = target, *end = target + len; p <= end;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        if (!slash)
            slash = end;
        size_t n = (size_t)(slash - p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (named)
                return fail(e, -EINVAL,
                            "%s '%s' is a symlink to '%s'; '..' may only start a symlink target",
                            what, quote(&q, path), quote(&qt, target));
            if (--depth < 0)
                return fail(e, -EINVAL, "%s '%s' is a symlink to '%s', outside the %s", what,
                            quote(&q, path), quote(&qt, target), scope);
        } else if (n && !(n == 1 && p[0] == '.')) {
            named = true;
        }
        p = slash + 1;
    }
    return 0;
}

/* Sorts the entries and checks that no path appears twice and nothing lies inside a file or a
 * symlink (with the order of path_cmp, what lies inside X directly follows X). */
static int entries_check(struct errbuf *e, struct entries *es, const char *what)
{
    struct quoted q, q2;
    if (es->nr > 1)
        qsort(es->v, es->nr, sizeof(*es->v), entry_cmp);
    for (size_t i = 0; i + 1 < es->nr; i++) {
        const struct entry *a = &es->v[i], *b = &es->v[i + 1];
        if (strcmp(a->path, b->path) == 0)
            return fail(e, -EINVAL, "%s '%s' is listed twice", what, quote(&q, a->path));
        if (a->type != ENTRY_DIR && is_below(b->path, a->path))
            return fail(e, -EINVAL, "%s '%s' lies inside %s '%s'", what, quote(&q, b->path),
                        a->type == ENTRY_FILE ? "file" : "symlink", quote(&q2, a->path));
    }
    return 0;
}

/* --- directories under a root fd, opened one component at a time --- */

/* Opens the parent directories of relative paths below root_fd, each component with
 * O_DIRECTORY | O_NOFOLLOW (a symlink or a file in the way is an error, never followed), and
 * with `create` makes the missing ones (0755). Caches the last directory: paths come in tree
 * order, so most share their parent with the one before, or descend from it. */
struct dir_cursor {
    int root_fd; /* not owned */
    int fd;      /* the cached directory (owned unless it is root_fd) */
    struct strbuf path, scratch;
    bool create;
};

static void cursor_init(struct dir_cursor *c, int root_fd, bool create)
{
    c->root_fd = c->fd = root_fd;
    strbuf_init(&c->path, 0);
    strbuf_init(&c->scratch, 0);
    c->create = create;
}

static void cursor_drop(struct dir_cursor *c)
{
    if (c->fd != c->root_fd)
        close(c->fd);
    c->fd = c->root_fd;
    strbuf_reset(&c->path);
}

static void cursor_release(struct dir_cursor *c)
{
    cursor_drop(c);
    strbuf_release(&c->path);
    strbuf_release(&c->scratch);
}

/* Returns an fd of the directory holding relpath (owned by the cursor, valid until the next
 * call) and points *name at relpath's last component; or -errno (-ENOENT, -ENOTDIR, -ELOOP ...). */
static int cursor_parent(struct dir_cursor *c, const char *relpath, const char **name)
{
    const char *slash = strrchr(relpath, '/');
    size_t plen = slash ? (size_t)(slash - relpath) : 0;
    *name = slash ? slash + 1 : relpath;
    if (plen == c->path.len && memcmp(c->path.buf, relpath, plen) == 0)
        return c->fd;
    size_t start = 0;
    if (c->path.len && c->path.len < plen && memcmp(relpath, c->path.buf, c->path.len) == 0 &&
        relpath[c->path.len] == '/')
        start = c->path.len + 1;
    else
        cursor_drop(c);
    strbuf_reset(&c->scratch);
    strbuf_add(&c->scratch, relpath, plen);
    if (!strbuf_ok(&c->scratch)) {
        cursor_drop(c);
        return -ENOMEM;
    }
    int fd = c->fd;
    for (char *p = c->scratch.buf + start; p < c->scratch.buf + plen;) {
        char *end = strchrnul(p, '/');
        *end = '\0';
        int next = openat(fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && c->create) {
            if (mkdirat(fd, p, 0755) == 0 || errno == EEXIST)
                next = openat(fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            int r = -errno;
            c->fd = fd;
            cursor_drop(c);
            return r;
        }
        if (fd != c->root_fd)
            close(fd);
        fd = next;
        p = end + 1;
    }
    c->fd = fd;
    strbuf_reset(&c->path);
    strbuf_add(&c->path, relpath, plen);
    if (!strbuf_ok(&c->path)) {
        cursor_drop(c);
        return -ENOMEM;
    }
    return fd;
}

/* --- libarchive under a UTF-8 locale --- */

/* libarchive converts names through the current locale; under "C" (the server's) it cannot
 * store a UTF-8 name (3.6 writes hdrcharset=BINARY, or crashes in
 * archive_entry_set_pathname_utf8) nor return one. Each call runs libarchive under a
 * thread-local C.UTF-8 locale, so names are UTF-8 bytes end to end. */
struct utf8_locale {
    locale_t loc, old;
};

static void utf8_locale_enter(struct utf8_locale *l)
{
    l->loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    l->old = l->loc ? uselocale(l->loc) : (locale_t)0;
}

static void utf8_locale_leave(struct utf8_locale *l)
{
    if (l->loc) {
        uselocale(l->old);
        freelocale(l->loc);
    }
}

/* Decodes exactly 2n lowercase hex digits; false on anything else. */
static bool hex_decode(const char *s, size_t len, unsigned char *out, size_t n)
{
    if (len != 2 * n)
        return false;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return false;
        if (i % 2)
            out[i / 2] |= (unsigned char)v;
        else
            out[i / 2] = (unsigned char)(v << 4);
    }
    return true;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* An upper bound on the number of values in the JSON text: the number of ',', '[' and '{'
 * outside strings, plus one. */
static uint64_t json_value_bound(const char *text, size_t len)
{
    uint64_t n = 1;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == ',' || c == '[' || c == '{') {
            n++;
        }
    }
    return n;
}

/* jansson spends some 50 bytes per value: a manifest of max_manifest_bytes that is all "[1,1,1"
 * would take a GB. A manifest may hold a few values per entry and some for the caller's fields;
 * checked on the text, before parsing. */
static uint64_t manifest_max_values(const struct package_limits *lim)
{
    return add_sat(mul_sat(lim->max_files, 16), 4096);
}

/* ===================================== writing ===================================== */

/* Bytes to package from which zstd compresses on two worker threads. */
#define PARALLEL_MIN (4u << 20)

struct writer {
    const struct package_limits *lim;
    struct errbuf *e;
    int ws_fd;
    struct entries es;
    struct strbuf path; /* the walk's current relative path */
    uint64_t total_bytes;
    unsigned char *buf; /* IO_BUF */
    /* output */
    const char *dest_path;
    int out_fd;
    int write_errno;
    struct crypto_sha256_ctx *file_sha; /* each file's, in hash_files */
    struct crypto_sha256_ctx *out_sha;  /* the package's, as it is written */
    uint64_t out_size;
};

static void path_truncate(struct strbuf *sb, size_t len)
{
    if (sb->alloc) {
        sb->len = len;
        sb->buf[len] = '\0';
    }
}

static int scan_entry(struct writer *w, int dir_fd, const char *name);

/* Adds everything inside the directory `name` of dir_fd (w->path is its relative path; "" for
 * the workspace itself). */
static int scan_dir(struct writer *w, int dir_fd, const char *name)
{
    struct quoted q;
    int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return fail(w->e, errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? -EAGAIN : -errno,
                    "cannot open workspace directory '%s': %s", quote(&q, w->path.buf),
                    strerror(errno));
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -ENOMEM;
    }
    size_t base = w->path.len;
    int r = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                r = fail(w->e, -errno, "cannot read workspace directory '%s': %s",
                         quote(&q, w->path.buf), strerror(errno));
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (base)
            strbuf_addch(&w->path, '/');
        strbuf_adds(&w->path, de->d_name);
        r = strbuf_ok(&w->path) ? scan_entry(w, dirfd(d), de->d_name) : -ENOMEM;
        path_truncate(&w->path, base);
        if (r)
            break;
    }
    closedir(d);
    return r;
}

/* Adds the workspace entry `name` of dir_fd, whose relative path is w->path, and what it holds. */
static int scan_entry(struct writer *w, int dir_fd, const char *name)
{
    struct quoted q;
    const struct package_limits *lim = w->lim;
    const char *path = w->path.buf;
    int r = check_path(w->e, "workspace file", path, w->path.len, lim);
    if (r)
        return r;
    if (!strcmp(path, PACKAGE_MANIFEST))
        return fail(w->e, -EINVAL,
                    "workspace file 'manifest.json' would clash with the package manifest; "
                    "rename it or leave it out of package.include");
    struct stat st;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return fail(w->e, errno == ENOENT ? -EAGAIN : -errno, "cannot read workspace file '%s': %s",
                    quote(&q, path), strerror(errno));
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
        return fail(w->e, -EINVAL,
                    "workspace file '%s' is %s; a package holds only files, directories and "
                    "symlinks",
                    quote(&q, path), file_kind(st.st_mode));
    if (w->es.nr >= lim->max_files)
        return fail(w->e, -EFBIG, "the package would hold more than %llu entries (the limit)",
                    (unsigned long long)lim->max_files);
    struct entry *en = entries_add(&w->es);
    if (!en || !(en->path = strdup(path)))
        return -ENOMEM;
    en->mode = st.st_mode & 0777;
    en->dev = st.st_dev;
    en->ino = st.st_ino;
    en->mtime = st.st_mtim;
    en->ctime = st.st_ctim;
    if (S_ISREG(st.st_mode)) {
        en->type = ENTRY_FILE;
        en->size = (uint64_t)st.st_size;
        if (en->size > lim->max_file_bytes)
            return fail(w->e, -EFBIG,
                        "workspace file '%s' is %llu bytes, more than the limit of %llu per file",
                        quote(&q, path), (unsigned long long)en->size,
                        (unsigned long long)lim->max_file_bytes);
        w->total_bytes = add_sat(w->total_bytes, en->size);
        if (w->total_bytes > lim->max_total_bytes)
            return fail(w->e, -EFBIG,
                        "the package's files add up to more than %llu bytes (the limit)",
                        (unsigned long long)lim->max_total_bytes);
        return 0;
    }
    if (S_ISLNK(st.st_mode)) {
        en->type = ENTRY_SYMLINK;
        en->mode = 0777;
        /* one byte more than allowed tells a target that is too long (Linux: < PATH_MAX) */
        size_t cap = lim->max_path < PATH_MAX ? lim->max_path + 1 : PATH_MAX;
        if (!(en->target = malloc(cap + 1)))
            return -ENOMEM;
        ssize_t n = readlinkat(dir_fd, name, en->target, cap);
        if (n < 0)
            return fail(w->e, errno == ENOENT || errno == EINVAL ? -EAGAIN : -errno,
                        "cannot read symlink '%s': %s", quote(&q, path), strerror(errno));
        en->target[n] = '\0';
        if (memchr(en->target, '\0', (size_t)n)) /* cannot happen; keeps strlen honest */
            return -EINVAL;
        return check_target(w->e, "workspace file", path, en->target, lim, "workspace");
    }
    en->type = ENTRY_DIR;
    return scan_dir(w, dir_fd, name);
}

/* Turns include `inc` into a canonical relative path in `out` ("" for the whole workspace). */
static int include_normalize(struct errbuf *e, const char *inc, struct strbuf *out)
{
    struct quoted q;
    if (!inc || !*inc)
        return fail(e, -EINVAL, "an include path is empty (use '.' for the whole workspace)");
    if (inc[0] == '/')
        return fail(e, -EINVAL,
                    "include '%s' is an absolute path; include paths are relative to the workspace",
                    quote(&q, inc));
    strbuf_reset(out);
    for (const char *p = inc; *p;) {
        const char *end = strchrnul(p, '/');
        size_t n = (size_t)(end - p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return fail(e, -EINVAL, "include '%s' leaves the workspace ('..' is not allowed)",
                        quote(&q, inc));
        if (n && !(n == 1 && p[0] == '.')) {
            if (out->len)
                strbuf_addch(out, '/');
            strbuf_add(out, p, n);
        }
        p = *end ? end + 1 : end;
    }
    return strbuf_ok(out) ? 0 : -ENOMEM;
}

/* Checks that include `inc` (canonical: `norm`) exists without going through a symlink; with
 * `walk`, adds it and what it holds. */
static int scan_include(struct writer *w, const char *inc, const char *norm, bool walk)
{
    struct quoted q, q2;
    if (!*norm) {
        strbuf_reset(&w->path);
        return walk ? scan_dir(w, w->ws_fd, ".") : 0;
    }
    int r = 0, fd = w->ws_fd;
    struct strbuf parts = STRBUF_INIT;
    strbuf_adds(&parts, norm);
    if (!strbuf_ok(&parts))
        return -ENOMEM;
    char *p = parts.buf;
    for (char *slash; (slash = strchr(p, '/')); p = slash + 1) {
        *slash = '\0';
        int next = openat(fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            int err = errno;
            struct stat st;
            if (err == ENOENT)
                r = fail(w->e, -ENOENT, "include '%s' does not exist in the workspace",
                         quote(&q, inc));
            else if (fstatat(fd, p, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                r = fail(w->e, -EINVAL, "include '%s' goes through symlink '%s'", quote(&q, inc),
                         quote(&q2, parts.buf));
            else
                r = fail(w->e, err == ENOTDIR ? -EINVAL : -err,
                         "include '%s': cannot open '%s': %s", quote(&q, inc),
                         quote(&q2, parts.buf), strerror(err));
            goto out;
        }
        if (fd != w->ws_fd)
            close(fd);
        fd = next;
        *slash = '/';
    }
    struct stat st;
    if (fstatat(fd, p, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        int err = errno;
        r = err == ENOENT ? fail(w->e, -ENOENT, "include '%s' does not exist in the workspace",
                                 quote(&q, inc))
                          : fail(w->e, -err, "include '%s': %s", quote(&q, inc), strerror(err));
        goto out;
    }
    if (walk) {
        strbuf_reset(&w->path);
        strbuf_adds(&w->path, norm);
        r = strbuf_ok(&w->path) ? scan_entry(w, fd, p) : -ENOMEM;
    }
out:
    if (fd != w->ws_fd)
        close(fd);
    strbuf_release(&parts);
    return r;
}

struct include {
    const char *orig;
    char *norm;
};

static int include_cmp(const void *a, const void *b)
{
    return path_cmp(((const struct include *)a)->norm, ((const struct include *)b)->norm);
}

/* Walks every include; one that lies inside another (or equals it) is only checked to exist,
 * so the walks are disjoint and every entry is counted once against the limits. */
static int scan_includes(struct writer *w, const char *const *include, size_t nr_include)
{
    struct include *incs = calloc(nr_include, sizeof(*incs));
    if (!incs)
        return -ENOMEM;
    struct strbuf norm = STRBUF_INIT;
    int r = 0;
    for (size_t i = 0; i < nr_include && !r; i++) {
        r = include_normalize(w->e, include[i], &norm);
        incs[i].orig = include[i];
        if (!r && !(incs[i].norm = strdup(norm.buf)))
            r = -ENOMEM;
    }
    if (!r)
        qsort(incs, nr_include, sizeof(*incs), include_cmp);
    /* sorted with path_cmp, what an include covers directly follows it ("" covers all) */
    const char *covering = NULL;
    for (size_t i = 0; i < nr_include && !r; i++) {
        const char *n = incs[i].norm;
        bool covered = covering && (!*covering || !strcmp(n, covering) || is_below(n, covering));
        r = scan_include(w, incs[i].orig, n, !covered);
        if (!covered)
            covering = n;
    }
    for (size_t i = 0; i < nr_include; i++)
        free(incs[i].norm);
    free(incs);
    strbuf_release(&norm);
    return r;
}

static int changed(struct writer *w, const struct entry *en)
{
    struct quoted q;
    return fail(w->e, -EAGAIN, "workspace file '%s' changed while the package was being written",
                quote(&q, en->path));
}

/* Opens the workspace file of `en` for reading, checking it is still what the walk saw. */
static int open_file(struct writer *w, struct dir_cursor *cur, const struct entry *en, int *out)
{
    struct quoted q;
    const char *name;
    int dir_fd = cursor_parent(cur, en->path, &name);
    if (dir_fd < 0)
        return dir_fd == -ENOMEM ? -ENOMEM : changed(w, en);
    int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ELOOP || errno == ENXIO
                   ? changed(w, en)
                   : fail(w->e, -errno, "cannot open workspace file '%s': %s", quote(&q, en->path),
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != en->dev ||
        st.st_ino != en->ino || (uint64_t)st.st_size != en->size ||
        st.st_mtim.tv_sec != en->mtime.tv_sec || st.st_mtim.tv_nsec != en->mtime.tv_nsec ||
        st.st_ctim.tv_sec != en->ctime.tv_sec || st.st_ctim.tv_nsec != en->ctime.tv_nsec) {
        close(fd);
        return changed(w, en);
    }
    *out = fd;
    return 0;
}

/* Reads the whole file; hashes it into `sha` when set, writes it to `a` when set. -EAGAIN when
 * it is not en->size bytes long. */
static int pump_file(struct writer *w, int fd, const struct entry *en, struct archive *a,
                     struct crypto_sha256_ctx *sha)
{
    struct quoted q;
    uint64_t done = 0;
    for (;;) {
        ssize_t n = read(fd, w->buf, IO_BUF);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(w->e, -errno, "cannot read workspace file '%s': %s", quote(&q, en->path),
                        strerror(errno));
        }
        if (n == 0)
            break;
        done += (uint64_t)n;
        if (done > en->size)
            return changed(w, en);
        if (sha)
            crypto_sha256_update(sha, w->buf, (size_t)n);
        if (a && archive_write_data(a, w->buf, (size_t)n) != n)
            return -EIO; /* the caller reports the archive's error */
    }
    return done == en->size ? 0 : changed(w, en);
}

static int hash_files(struct writer *w)
{
    struct quoted q;
    struct dir_cursor cur;
    cursor_init(&cur, w->ws_fd, false);
    int r = 0;
    for (size_t i = 0; i < w->es.nr && !r; i++) {
        struct entry *en = &w->es.v[i];
        if (en->type != ENTRY_FILE)
            continue;
        int fd;
        r = open_file(w, &cur, en, &fd);
        if (r)
            break;
        r = pump_file(w, fd, en, NULL, w->file_sha);
        close(fd);
        if (!r && crypto_sha256_final(w->file_sha, en->sha256))
            r = fail(w->e, -EIO, "cannot hash workspace file '%s'", quote(&q, en->path));
    }
    cursor_release(&cur);
    return r;
}

/* The manifest's "files" array (new reference), or NULL when out of memory. */
static json_t *manifest_files(const struct entries *es)
{
    json_t *files = json_array();
    bool ok = files != NULL;
    for (size_t i = 0; i < es->nr && ok; i++) {
        const struct entry *en = &es->v[i];
        json_t *o = json_object();
        ok = o && json_array_append_new(files, o) == 0;
        ok = ok && json_object_set_new(o, "path", json_string(en->path)) == 0;
        if (ok && en->type == ENTRY_FILE) {
            char hex[2 * CRYPTO_SHA256_LEN + 1];
            hex_encode(en->sha256, sizeof(en->sha256), hex);
            ok = json_object_set_new(o, "size", json_integer((json_int_t)en->size)) == 0 &&
                 json_object_set_new(o, "sha256", json_string(hex)) == 0;
        } else if (ok) {
            ok = json_object_set_new(o, "type", json_string(type_names[en->type])) == 0;
        }
        if (ok && en->type == ENTRY_SYMLINK)
            ok = json_object_set_new(o, "target", json_string(en->target)) == 0;
        else if (ok)
            ok = json_object_set_new(o, "mode", json_integer(en->mode)) == 0;
    }
    if (!ok) {
        json_decref(files);
        return NULL;
    }
    return files;
}

static la_ssize_t out_write(struct archive *a, void *arg, const void *buf, size_t len)
{
    struct writer *w = arg;
    int r = fd_write_all(w->out_fd, buf, len);
    if (r) {
        w->write_errno = -r;
        archive_set_error(a, -r, "write failed");
        return -1;
    }
    crypto_sha256_update(w->out_sha, buf, len);
    w->out_size += len;
    return (la_ssize_t)len;
}

static int write_error(struct writer *w, struct archive *a)
{
    struct quoted q;
    if (w->write_errno)
        return fail(w->e, -w->write_errno, "cannot write '%s': %s", quote(&q, w->dest_path),
                    strerror(w->write_errno));
    if (archive_errno(a) == ENOMEM)
        return fail(w->e, -ENOMEM, "out of memory writing the package");
    return fail(w->e, -EIO, "cannot write '%s': %s", quote(&q, w->dest_path),
                archive_error_string(a) ? archive_error_string(a) : "libarchive error");
}

static void entry_set_mtime(struct archive_entry *ae, const struct timespec *ts)
{
    archive_entry_set_mtime(ae, ts->tv_sec, ts->tv_nsec);
}

/* Writes manifest.json then every entry to w->out_fd as a zstd-compressed pax archive. */
static int write_archive(struct writer *w, const char *manifest, size_t manifest_len)
{
    struct archive *a = archive_write_new();
    struct archive_entry *ae = archive_entry_new();
    struct dir_cursor cur;
    cursor_init(&cur, w->ws_fd, false);
    int r = -ENOMEM;
    if (!a || !ae)
        goto out;
    /* level 3 as `zstd -3`; two workers let compression run beside the reading and hashing of
     * the main thread (the libzstd default is to compress on the calling thread). */
    if (archive_write_add_filter_zstd(a) != ARCHIVE_OK ||
        archive_write_set_filter_option(a, "zstd", "compression-level", "3") != ARCHIVE_OK ||
        archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(a, 64 * 1024) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK) {
        r = fail(w->e, -ENOSYS, "libarchive cannot write zstd-compressed tar: %s",
                 archive_error_string(a) ? archive_error_string(a) : "unknown error");
        goto out;
    }
    /* optional: an older libzstd without threads still writes the same format. Only for inputs
     * worth it: starting the workers costs more than compressing a small package. */
    uint64_t total = manifest_len;
    for (size_t i = 0; i < w->es.nr; i++)
        total += w->es.v[i].size;
    if (total >= PARALLEL_MIN)
        archive_write_set_filter_option(a, "zstd", "threads", "2");
    if (archive_write_open(a, w, NULL, out_write, NULL) != ARCHIVE_OK) {
        r = write_error(w, a);
        goto out;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    archive_entry_copy_pathname(ae, PACKAGE_MANIFEST);
    archive_entry_set_filetype(ae, AE_IFREG);
    archive_entry_set_perm(ae, 0644);
    archive_entry_set_size(ae, (la_int64_t)manifest_len);
    entry_set_mtime(ae, &now);
    if (archive_write_header(a, ae) != ARCHIVE_OK ||
        archive_write_data(a, manifest, manifest_len) != (la_ssize_t)manifest_len) {
        r = write_error(w, a);
        goto out;
    }
    for (size_t i = 0; i < w->es.nr; i++) {
        const struct entry *en = &w->es.v[i];
        int fd = -1;
        if (en->type == ENTRY_FILE && (r = open_file(w, &cur, en, &fd)))
            goto out;
        archive_entry_clear(ae);
        archive_entry_copy_pathname(ae, en->path);
        entry_set_mtime(ae, &en->mtime);
        archive_entry_set_perm(ae, en->mode);
        if (en->type == ENTRY_FILE) {
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_size(ae, (la_int64_t)en->size);
        } else if (en->type == ENTRY_DIR) {
            archive_entry_set_filetype(ae, AE_IFDIR);
        } else {
            archive_entry_set_filetype(ae, AE_IFLNK);
            archive_entry_copy_symlink(ae, en->target);
        }
        if (archive_write_header(a, ae) != ARCHIVE_OK) {
            if (fd >= 0)
                close(fd);
            r = write_error(w, a);
            goto out;
        }
        if (fd >= 0) {
            /* the manifest promised these exact bytes: hashing them again would cost as much as
             * the first pass, so the file's identity (inode, size, mtime, ctime) stands in */
            r = pump_file(w, fd, en, a, NULL);
            close(fd);
            if (r == -EIO)
                r = write_error(w, a);
            if (r)
                goto out;
        }
    }
    if (archive_write_close(a) != ARCHIVE_OK) {
        r = write_error(w, a);
        goto out;
    }
    r = 0;
out:
    cursor_release(&cur);
    archive_entry_free(ae);
    archive_write_free(a);
    return r;
}

/* Writes the archive to a temp file next to dest_path, fsyncs it, renames it over dest_path and
 * fsyncs the directory. */
static int write_file(struct writer *w, const char *manifest, size_t manifest_len)
{
    struct quoted q;
    struct strbuf tmp = STRBUF_INIT, dir = STRBUF_INIT;
    strbuf_addf(&tmp, "%s.tmp.XXXXXX", w->dest_path);
    if (!strbuf_ok(&tmp))
        return -ENOMEM;
    int r = 0, fd = mkostemp(tmp.buf, O_CLOEXEC);
    if (fd < 0) {
        r = fail(w->e, -errno, "cannot create a temp file next to '%s': %s",
                 quote(&q, w->dest_path), strerror(errno));
        goto out;
    }
    w->out_fd = fd;
    w->write_errno = 0;
    w->out_size = 0;
    r = write_archive(w, manifest, manifest_len);
    if (!r && fsync(fd) < 0)
        r = fail(w->e, -errno, "cannot write '%s': %s", quote(&q, w->dest_path), strerror(errno));
    if (close(fd) < 0 && !r)
        r = fail(w->e, -errno, "cannot write '%s': %s", quote(&q, w->dest_path), strerror(errno));
    if (!r && rename(tmp.buf, w->dest_path) < 0)
        r = fail(w->e, -errno, "cannot rename the package to '%s': %s", quote(&q, w->dest_path),
                 strerror(errno));
    if (r) {
        unlink(tmp.buf);
        goto out;
    }
    /* the rename is durable once the directory is: best effort, the package is in place */
    const char *slash = strrchr(w->dest_path, '/');
    if (slash == w->dest_path)
        strbuf_addch(&dir, '/');
    else if (slash)
        strbuf_add(&dir, w->dest_path, (size_t)(slash - w->dest_path));
    else
        strbuf_addch(&dir, '.');
    int dir_fd = strbuf_ok(&dir) ? open(dir.buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dir_fd >= 0) {
        fsync(dir_fd);
        close(dir_fd);
    }
out:
    strbuf_release(&tmp);
    strbuf_release(&dir);
    return r;
}

/* The tests' hold on packaging (see package.h): waits while SLIPWAY_TEST_PACKAGE_GATE names a
 * FIFO, until its writer closes it. */
static void test_gate(void)
{
    const char *path = getenv("SLIPWAY_TEST_PACKAGE_GATE");
    struct stat st;
    if (!path || !*path || stat(path, &st) < 0 || !S_ISFIFO(st.st_mode))
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC); /* blocks until the test opens it for writing */
    if (fd < 0)
        return;
    char buf[64];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
        ; /* until the writer closes it */
    close(fd);
}

int package_write(const char *workspace, const char *const *include, size_t nr_include,
                  json_t *manifest, const char *dest_path, const struct package_limits *lim,
                  char sha256_hex[PACKAGE_SHA256_HEX], uint64_t *size, char *err, size_t err_cap)
{
    test_gate();
    struct errbuf e = {err, err_cap};
    struct quoted q;
    if (!lim)
        lim = &default_limits;
    if (!json_is_object(manifest))
        return fail(&e, -EINVAL, "the manifest is not a JSON object");
    if (!nr_include)
        return fail(&e, -EINVAL, "nothing to package: package.include is empty");
    struct writer w = {.lim = lim, .e = &e, .ws_fd = -1, .dest_path = dest_path, .out_fd = -1};
    struct utf8_locale loc;
    utf8_locale_enter(&loc);
    strbuf_init(&w.path, 0);
    json_t *old_files = json_incref(json_object_get(manifest, "files"));
    char *text = NULL;
    int r = -ENOMEM;
    if (!(w.buf = malloc(IO_BUF)) || !(w.file_sha = crypto_sha256_new()) ||
        !(w.out_sha = crypto_sha256_new()))
        goto out;
    w.ws_fd = open(workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w.ws_fd < 0) {
        r = fail(&e, -errno, "cannot open the workspace '%s': %s", quote(&q, workspace),
                 strerror(errno));
        goto out;
    }
    if ((r = scan_includes(&w, include, nr_include)) ||
        (r = entries_check(&e, &w.es, "workspace file")) || (r = hash_files(&w)))
        goto out;
    json_t *files = manifest_files(&w.es);
    if (!files || json_object_set_new(manifest, "files", files) < 0) {
        r = -ENOMEM;
        goto out;
    }
    if (!(text = json_dumps(manifest, JSON_COMPACT))) {
        r = -ENOMEM;
        goto out;
    }
    size_t len = strlen(text);
    if (len > lim->max_manifest_bytes) {
        r = fail(&e, -EFBIG, "the manifest would be %zu bytes, more than the limit of %llu", len,
                 (unsigned long long)lim->max_manifest_bytes);
        goto out;
    }
    if (json_value_bound(text, len) > manifest_max_values(lim)) {
        r = fail(&e, -EFBIG, "the manifest would hold more than %llu JSON values (the limit)",
                 (unsigned long long)manifest_max_values(lim));
        goto out;
    }
    if ((r = write_file(&w, text, len)))
        goto out;
    unsigned char md[CRYPTO_SHA256_LEN];
    if (crypto_sha256_final(w.out_sha, md)) {
        r = fail(&e, -EIO, "cannot hash the package '%s'", quote(&q, dest_path));
        goto out;
    }
    hex_encode(md, sizeof(md), sha256_hex);
    *size = w.out_size;
out:
    if (r) {
        if (old_files)
            json_object_set(manifest, "files", old_files);
        else
            json_object_del(manifest, "files");
    }
    json_decref(old_files);
    free(text);
    if (w.ws_fd >= 0)
        close(w.ws_fd);
    entries_release(&w.es);
    strbuf_release(&w.path);
    crypto_sha256_free(w.file_sha);
    crypto_sha256_free(w.out_sha);
    free(w.buf);
    utf8_locale_leave(&loc);
    return r;
}

/* ============================= validating and extracting ============================= */

/* Two libarchive readers in a row: `raw` decompresses what is read from fd (zstd, gzip or
 * nothing; format "raw"), `a` parses the tar it hands over. In between, tar_read counts the
 * decompressed bytes against `budget`: libarchive reads runs of special headers (GNU long names,
 * pax) in one go without returning, so a few KB of zstd could otherwise make it churn through
 * terabytes before any entry reaches our checks. The budget is the limits' until the manifest
 * is read, then what the manifest's entries account for (manifest_budget).
 *
 * libarchive's tar reader stops at the end-of-archive blocks and never looks further, so a valid
 * small tar followed by gigabytes of zeros in the same zstd stream (or in a second frame) would
 * pass and expand to all of it on every download: check_tail reads on to the end of the stream
 * and refuses anything but a record's padding after the end-of-archive. */
struct reader {
    const struct package_limits *lim;
    struct errbuf *e;
    struct archive *raw, *a;
    int fd;
    int read_errno;            /* read(fd) failed */
    bool fd_eof;               /* read(fd) returned 0 */
    bool raw_failed;           /* decompression failed: raw's error says why */
    bool over_budget;          /* the tar stream grew past budget */
    bool budget_from_manifest; /* budget is manifest_budget's, not tar_budget's */
    uint64_t read_bytes, tar_bytes, budget;
    uint64_t nonzero_end; /* offset in the tar stream just past its last non-zero byte so far */
    unsigned char *inbuf, *data;   /* IO_BUF each */
    struct crypto_sha256_ctx *sha; /* each file's, in read_file */
    json_t *manifest;
    struct entries files; /* the manifest's "files", sorted by path_cmp */
    uint64_t nr_entries, total_bytes;
    struct strbuf path;
    int dest_fd; /* extraction: the destination directory, else -1 */
    struct dir_cursor cur;
};

/* raw's input: the package as read from fd. */
static la_ssize_t fd_read(struct archive *a, void *arg, const void **buf)
{
    struct reader *r = arg;
    for (;;) {
        ssize_t n = read(r->fd, r->inbuf, IO_BUF);
        if (n >= 0) {
            *buf = r->inbuf;
            r->read_bytes += (uint64_t)n;
            r->fd_eof = n == 0;
            return n;
        }
        if (errno != EINTR) {
            r->read_errno = errno;
            archive_set_error(a, errno, "read failed");
            return -1;
        }
    }
}

/* The next block of the decompressed stream into *buf and *size (0 at its end), counted in
 * tar_bytes, and nonzero_end moved past its last non-zero byte. Scanning from the block's end
 * stops at once for most data; only runs of zeros are read through. 0, or -1 when
 * decompression failed (raw_failed). */
static int next_block(struct reader *r, const void **buf, size_t *size)
{
    la_int64_t offset;
    int ar = archive_read_data_block(r->raw, buf, size, &offset);
    if (ar == ARCHIVE_EOF) {
        *size = 0;
        return 0;
    }
    if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
        r->raw_failed = true;
        return -1;
    }
    const unsigned char *p = *buf;
    size_t n = *size;
    while (n && !p[n - 1])
        n--;
    if (n)
        r->nonzero_end = r->tar_bytes + n;
    r->tar_bytes += *size;
    return 0;
}

/* The tar reader's input: raw's output, block by block (no copy), within the budget. */
static la_ssize_t tar_read(struct archive *a, void *arg, const void **buf)
{
    struct reader *r = arg;
    size_t size;
    if (next_block(r, buf, &size)) {
        archive_set_error(a, EIO, "decompression failed");
        return -1;
    }
    if (r->tar_bytes > r->budget) {
        r->over_budget = true;
        archive_set_error(a, EFBIG, "too big");
        return -1;
    }
    return (la_ssize_t)size;
}

/* The largest tar stream a package within the limits can be: the manifest and the files, and
 * per entry its headers (ustar, pax or GNU long names: a few blocks plus its path and target)
 * and padding, plus end blocks and a writer's blocking (2 MiB is ample). */
static uint64_t tar_budget(const struct package_limits *lim)
{
    uint64_t per_entry = add_sat(8192, mul_sat(4, lim->max_path));
    uint64_t b = add_sat(lim->max_manifest_bytes, lim->max_total_bytes);
    b = add_sat(b, mul_sat(add_sat(lim->max_files, 1), per_entry));
    return add_sat(b, 2 << 20);
}

/* After the end-of-archive blocks, a tar writer pads its last record with zeros: to 10240
 * bytes for GNU tar, bsdtar, libarchive and Python (a blocking factor of 20), to 64 KiB with a
 * blocking factor of 128. Nothing else may follow, and no more zeros than that. */
#define TAIL_MAX (64 * 1024)
/* Headers of one entry besides its path and target: a ustar block, a pax or GNU long-name
 * block, pax records (times, owner names, a few extended attributes), each rounded to 512. */
#define HEADER_ALLOWANCE 4096

static uint64_t round512(uint64_t n)
{
    return add_sat(n, 511) & ~(uint64_t)511;
}

/* Until the manifest is read: its header and data at most, and what libarchive reads ahead
 * of the tar reader (a decompressor's block of 64-128 KiB, our 256 KiB read for an
 * uncompressed tar, a header that straddles two blocks: 1 MiB is ample). */
static uint64_t first_budget(const struct package_limits *lim)
{
    uint64_t b = add_sat(lim->max_manifest_bytes, add_sat(8192, mul_sat(4, lim->max_path)));
    b = add_sat(b, 1 << 20);
    uint64_t all = tar_budget(lim);
    return b < all ? b : all;
}

/* Once the manifest is read (the stream is at most `seen` bytes long so far): the largest tar
 * stream its entries can make. Each entry's headers (HEADER_ALLOWANCE plus twice its path and
 * target, for a pax record or a GNU long name of each) and data rounded to 512, the
 * end-of-archive blocks and TAIL_MAX of padding. Since `seen` covers the manifest's data and
 * what was read ahead, no valid package reaches it; a bomb inside the tar (a run of special
 * headers) is stopped there, one after the end-of-archive by check_tail at TAIL_MAX. */
static uint64_t manifest_budget(const struct reader *r, uint64_t seen)
{
    uint64_t b = round512(seen);
    for (size_t i = 0; i < r->files.nr; i++) {
        const struct entry *en = &r->files.v[i];
        uint64_t names = strlen(en->path) + (en->target ? strlen(en->target) : 0);
        b = add_sat(b, add_sat(HEADER_ALLOWANCE, mul_sat(2, names)));
        b = add_sat(b, round512(en->size));
    }
    return add_sat(b, 1024 + TAIL_MAX);
}

/* The error of a failed libarchive call; `path` is the entry being read, or NULL. */
static int read_error(struct reader *r, const char *path)
{
    struct quoted q, qm;
    if (r->read_errno)
        return fail(r->e, -r->read_errno, "cannot read the package: %s", strerror(r->read_errno));
    if (r->over_budget && r->budget_from_manifest)
        return fail(r->e, -EFBIG,
                    "package expands to more than %llu bytes of tar, more than the entries of "
                    "its 'manifest.json' account for",
                    (unsigned long long)r->budget);
    if (r->over_budget)
        return fail(r->e, -EFBIG,
                    "package expands to more than %llu bytes of tar, more than its limits allow",
                    (unsigned long long)r->budget);
    struct archive *failed = r->raw_failed ? r->raw : r->a;
    /* libarchive's messages may quote bytes of the input */
    const char *msg =
        quote(&qm, archive_error_string(failed) ? archive_error_string(failed) : "unknown error");
    if (archive_errno(failed) == ENOMEM)
        return fail(r->e, -ENOMEM, "out of memory reading the package");
    if (r->read_bytes == 0)
        return fail(r->e, -EINVAL, "package is empty (0 bytes)");
    if (path)
        return fail(r->e, -EINVAL, "package entry '%s' is damaged: %s", quote(&q, path), msg);
    return fail(r->e, -EINVAL,
                "package is not a valid tar archive (zstd, gzip or uncompressed): %s", msg);
}

/* Reads the entry's data into a malloc'd, NUL-terminated buffer of exactly `size` bytes. */
static int read_all(struct reader *r, const char *path, size_t size, char **out)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return -ENOMEM;
    size_t done = 0;
    for (;;) {
        la_ssize_t n = archive_read_data(r->a, buf + done, size - done);
        if (n < 0) {
            free(buf);
            return read_error(r, path);
        }
        if (n == 0)
            break;
        done += (size_t)n;
        if (done == size)
            break;
    }
    if (done != size) {
        struct quoted q;
        free(buf);
        return fail(r->e, -EINVAL, "package entry '%s' is truncated", quote(&q, path));
    }
    buf[size] = '\0';
    *out = buf;
    return 0;
}

/* Parses item i of the manifest's "files" into en. */
static int manifest_entry(struct reader *r, size_t i, json_t *item, struct entry *en)
{
    struct quoted q, q2;
    struct errbuf *e = r->e;
    const struct package_limits *lim = r->lim;
    json_t *jpath = json_object_get(item, "path");
    if (!json_is_object(item) || !json_is_string(jpath))
        return fail(e, -EINVAL, "'manifest.json' files[%zu] has no \"path\" string", i);
    const char *path = json_string_value(jpath);
    int rc = check_path(e, "manifest entry", path, json_string_length(jpath), lim);
    if (rc)
        return rc;
    if (!(en->path = strdup(path)))
        return -ENOMEM;
    if (!strcmp(path, PACKAGE_MANIFEST))
        return fail(e, -EINVAL, "'manifest.json' lists itself");
    json_t *jtype = json_object_get(item, "type");
    const char *type = jtype ? json_string_value(jtype) : "file";
    if (!type || (strcmp(type, "file") && strcmp(type, "dir") && strcmp(type, "symlink")))
        return fail(e, -EINVAL,
                    "manifest entry '%s' has type '%s'; expected \"file\", \"dir\" or \"symlink\"",
                    quote(&q, path), quote(&q2, type ? type : "(not a string)"));
    en->type = !strcmp(type, "file")  ? ENTRY_FILE
               : !strcmp(type, "dir") ? ENTRY_DIR
                                      : ENTRY_SYMLINK;
    json_t *jmode = json_object_get(item, "mode");
    if (jmode) {
        if (!json_is_integer(jmode) || json_integer_value(jmode) < 0 ||
            json_integer_value(jmode) > 07777)
            return fail(e, -EINVAL, "manifest entry '%s' has a \"mode\" that is not 0 to 4095",
                        quote(&q, path));
        en->mode = (unsigned)json_integer_value(jmode);
    }
    if (en->type == ENTRY_FILE) {
        json_t *jsize = json_object_get(item, "size"), *jsha = json_object_get(item, "sha256");
        if (!json_is_integer(jsize) || json_integer_value(jsize) < 0)
            return fail(e, -EINVAL, "manifest entry '%s' has no valid \"size\"", quote(&q, path));
        en->size = (uint64_t)json_integer_value(jsize);
        if (en->size > lim->max_file_bytes)
            return fail(e, -EFBIG,
                        "manifest entry '%s' is %llu bytes, more than the limit of %llu per file",
                        quote(&q, path), (unsigned long long)en->size,
                        (unsigned long long)lim->max_file_bytes);
        r->total_bytes = add_sat(r->total_bytes, en->size);
        if (r->total_bytes > lim->max_total_bytes)
            return fail(e, -EFBIG,
                        "the files in 'manifest.json' add up to more than %llu bytes (the limit)",
                        (unsigned long long)lim->max_total_bytes);
        if (!json_is_string(jsha) || !hex_decode(json_string_value(jsha), json_string_length(jsha),
                                                 en->sha256, sizeof(en->sha256)))
            return fail(e, -EINVAL,
                        "manifest entry '%s' has no valid \"sha256\" (64 lowercase hex digits)",
                        quote(&q, path));
    } else if (en->type == ENTRY_SYMLINK) {
        json_t *jtarget = json_object_get(item, "target");
        if (!json_is_string(jtarget))
            return fail(e, -EINVAL, "manifest entry '%s' is a symlink without a \"target\"",
                        quote(&q, path));
        if (!(en->target = strdup(json_string_value(jtarget))))
            return -ENOMEM;
        if (strlen(en->target) != json_string_length(jtarget))
            return fail(e, -EINVAL, "manifest entry '%s' has a target with a NUL byte",
                        quote(&q, path));
        return check_target(e, "manifest entry", path, en->target, lim, "package");
    }
    return 0;
}

/* Reads and checks manifest.json, the archive's first entry. */
static int read_manifest(struct reader *r, struct archive_entry *ae)
{
    struct quoted q;
    struct errbuf *e = r->e;
    const char *path = archive_entry_pathname_utf8(ae);
    if (!path || strcmp(path, PACKAGE_MANIFEST))
        return fail(e, -EINVAL,
                    "package does not start with 'manifest.json' (its first entry is '%s')",
                    quote(&q, path ? path : "(not UTF-8)"));
    la_int64_t size = archive_entry_size(ae);
    if (archive_entry_hardlink(ae) || archive_entry_filetype(ae) != AE_IFREG ||
        !archive_entry_size_is_set(ae) || size < 0)
        return fail(e, -EINVAL, "package entry 'manifest.json' is not a regular file");
    if ((uint64_t)size > r->lim->max_manifest_bytes)
        return fail(e, -EFBIG, "'manifest.json' is %lld bytes, more than the limit of %llu",
                    (long long)size, (unsigned long long)r->lim->max_manifest_bytes);
    char *text = NULL;
    int rc = read_all(r, PACKAGE_MANIFEST, (size_t)size, &text);
    if (rc)
        return rc;
    if (json_value_bound(text, (size_t)size) > manifest_max_values(r->lim)) {
        free(text);
        return fail(e, -EFBIG, "'manifest.json' holds more than %llu JSON values (the limit)",
                    (unsigned long long)manifest_max_values(r->lim));
    }
    json_error_t je;
    r->manifest = json_loadb(text, (size_t)size, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!r->manifest)
        return fail(e, -EINVAL, "'manifest.json' is not valid JSON: %s (line %d, column %d)",
                    quote(&q, je.text), je.line, je.column);
    json_t *files = json_object_get(r->manifest, "files");
    if (!json_is_object(r->manifest) || !json_is_array(files))
        return fail(e, -EINVAL, "'manifest.json' is not a JSON object with a \"files\" array");
    size_t n = json_array_size(files);
    if (n > r->lim->max_files)
        return fail(e, -EFBIG, "'manifest.json' lists %zu entries, more than the limit of %llu", n,
                    (unsigned long long)r->lim->max_files);
    for (size_t i = 0; i < n; i++) {
        struct entry *en = entries_add(&r->files);
        if (!en)
            return -ENOMEM;
        if ((rc = manifest_entry(r, i, json_array_get(files, i), en)))
            return rc;
    }
    return entries_check(e, &r->files, "manifest entry");
}

/* After the tar reader's end of archive: reads the rest of the decompressed stream, which may
 * hold only zeros (a record's padding), at most TAIL_MAX of them after the end-of-archive
 * blocks, and stops at the first block past that; then checks that the decompressor used every
 * byte of the input (gzip ignores what follows its last member). */
static int check_tail(struct reader *r)
{
    /* what the tar reader consumed: the entries and the end-of-archive blocks */
    la_int64_t consumed = archive_filter_bytes(r->a, 0);
    uint64_t end = consumed > 0 ? (uint64_t)consumed : 0;
    for (;;) {
        if (r->nonzero_end > end)
            return fail(r->e, -EINVAL,
                        "package has data after the end of its tar archive (which ends at byte "
                        "%llu of the decompressed stream)",
                        (unsigned long long)end);
        if (r->tar_bytes > end + TAIL_MAX)
            return fail(r->e, -EFBIG,
                        "package goes on for more than %d bytes of zeros after the end of its "
                        "tar archive (at byte %llu of the decompressed stream); a tar's padding "
                        "is less",
                        TAIL_MAX, (unsigned long long)end);
        const void *buf;
        size_t size;
        if (next_block(r, &buf, &size)) {
            struct quoted q;
            const char *msg = archive_error_string(r->raw);
            if (r->read_errno || archive_errno(r->raw) == ENOMEM)
                return read_error(r, NULL);
            return fail(r->e, -EINVAL,
                        "package has damaged data after the end of its tar archive: %s",
                        quote(&q, msg ? msg : "unknown error"));
        }
        if (!size)
            break;
    }
    consumed = archive_filter_bytes(r->raw, -1);
    uint64_t used = consumed > 0 ? (uint64_t)consumed : 0;
    char byte;
    ssize_t n = 0;
    if (used == r->read_bytes && !r->fd_eof) {
        while ((n = read(r->fd, &byte, 1)) < 0 && errno == EINTR)
            ;
    }
    if (used < r->read_bytes || n > 0)
        return fail(r->e, -EINVAL,
                    "package has data after the end of its compressed stream (at byte %llu)",
                    (unsigned long long)used);
    return 0;
}

/* Creates the directory or symlink `en` below the destination (files: extract_file). */
static int extract_other(struct reader *r, struct entry *en, unsigned perm,
                         const struct timespec *mtime)
{
    struct quoted q;
    const char *name;
    int dir_fd = cursor_parent(&r->cur, en->path, &name), rc = 0;
    if (dir_fd < 0)
        return fail(r->e, dir_fd, "cannot extract '%s': %s", quote(&q, en->path),
                    strerror(-dir_fd));
    if (en->type == ENTRY_SYMLINK) {
        if (symlinkat(en->target, dir_fd, name) < 0)
            rc = -errno;
    } else {
        /* 0700 until the end, so a read-only directory can still be filled; a directory made
         * earlier as the parent of an entry is fine */
        struct stat st;
        if (mkdirat(dir_fd, name, 0700) < 0 &&
            (errno != EEXIST || fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
             !S_ISDIR(st.st_mode)))
            rc = -errno;
        en->dir_mode = perm & 0777;
        en->mtime = *mtime;
    }
    if (rc)
        return fail(r->e, rc, "cannot extract '%s': %s", quote(&q, en->path), strerror(-rc));
    return 0;
}

/* Reads the data of file entry `en`, hashing it and, when extracting, writing it. */
static int read_file(struct reader *r, const struct entry *en, unsigned perm,
                     const struct timespec *mtime)
{
    struct quoted q;
    int out = -1, rc = 0;
    if (r->dest_fd >= 0) {
        const char *name;
        int dir_fd = cursor_parent(&r->cur, en->path, &name);
        if (dir_fd < 0)
            return fail(r->e, dir_fd, "cannot extract '%s': %s", quote(&q, en->path),
                        strerror(-dir_fd));
        out = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
            return fail(r->e, -errno, "cannot extract '%s': %s", quote(&q, en->path),
                        strerror(errno));
    }
    uint64_t done = 0;
    for (;;) {
        la_ssize_t n = archive_read_data(r->a, r->data, IO_BUF);
        if (n < 0) {
            rc = read_error(r, en->path);
            goto out;
        }
        if (n == 0)
            break;
        done += (uint64_t)n;
        if (done > en->size)
            break;
        crypto_sha256_update(r->sha, r->data, (size_t)n);
        if (out >= 0 && (rc = fd_write_all(out, r->data, (size_t)n))) {
            rc = fail(r->e, rc, "cannot extract '%s': %s", quote(&q, en->path), strerror(-rc));
            goto out;
        }
    }
    if (done != en->size) {
        rc = fail(r->e, -EINVAL, "package entry '%s' is truncated", quote(&q, en->path));
        goto out;
    }
    unsigned char md[CRYPTO_SHA256_LEN];
    if (crypto_sha256_final(r->sha, md)) {
        rc = fail(r->e, -EIO, "cannot hash package entry '%s'", quote(&q, en->path));
        goto out;
    }
    if (memcmp(md, en->sha256, sizeof(md))) {
        rc = fail(r->e, -EINVAL, "package entry '%s' does not match its sha256 in the manifest",
                  quote(&q, en->path));
        goto out;
    }
    if (out >= 0) {
        struct timespec times[2] = {*mtime, *mtime};
        if (fchmod(out, perm & 0777) < 0 || futimens(out, times) < 0)
            rc =
                fail(r->e, -errno, "cannot extract '%s': %s", quote(&q, en->path), strerror(errno));
    }
out:
    if (out >= 0 && close(out) < 0 && !rc)
        rc = fail(r->e, -errno, "cannot extract '%s': %s", quote(&q, en->path), strerror(errno));
    return rc;
}

/* Checks one archive entry (after the manifest) and reads, hashes and extracts it. */
static int read_entry(struct reader *r, struct archive_entry *ae)
{
    struct quoted q, q2, q3;
    struct errbuf *e = r->e;
    const struct package_limits *lim = r->lim;
    const char *raw = archive_entry_pathname_utf8(ae);
    if (!raw)
        return fail(e, -EINVAL, "package has an entry whose name is not valid UTF-8");
    size_t len = strlen(raw);
    mode_t ft = archive_entry_filetype(ae);
    if (ft == AE_IFDIR && len > 1 && raw[len - 1] == '/')
        len--;
    strbuf_reset(&r->path);
    strbuf_add(&r->path, raw, len);
    if (!strbuf_ok(&r->path))
        return -ENOMEM;
    const char *path = r->path.buf;
    int rc = check_path(e, "package entry", path, len, lim);
    if (rc)
        return rc;
    if (archive_entry_hardlink(ae))
        return fail(e, -EINVAL,
                    "package entry '%s' is a hard link (to '%s'); hard links are not allowed",
                    quote(&q, path), quote(&q2, archive_entry_hardlink(ae)));
    enum entry_type type;
    if (ft == AE_IFREG)
        type = ENTRY_FILE;
    else if (ft == AE_IFDIR)
        type = ENTRY_DIR;
    else if (ft == AE_IFLNK)
        type = ENTRY_SYMLINK;
    else
        return fail(e, -EINVAL,
                    "package entry '%s' is %s; a package holds only files, directories and "
                    "symlinks",
                    quote(&q, path), file_kind(ft));
    if (++r->nr_entries > lim->max_files)
        return fail(e, -EFBIG, "package holds more than %llu entries (the limit)",
                    (unsigned long long)lim->max_files);
    la_int64_t size = archive_entry_size(ae);
    if (type != ENTRY_FILE && size != 0)
        return fail(e, -EINVAL, "package entry '%s' is %s that carries data", quote(&q, path),
                    type_words[type]);
    if (type == ENTRY_FILE) {
        if (!archive_entry_size_is_set(ae) || size < 0)
            return fail(e, -EINVAL, "package entry '%s' has no size", quote(&q, path));
        if ((uint64_t)size > lim->max_file_bytes)
            return fail(e, -EFBIG,
                        "package entry '%s' is %lld bytes, more than the limit of %llu per file",
                        quote(&q, path), (long long)size, (unsigned long long)lim->max_file_bytes);
    }
    const char *target = NULL;
    if (type == ENTRY_SYMLINK) {
        if (!(target = archive_entry_symlink_utf8(ae)))
            return fail(e, -EINVAL,
                        "package entry '%s' is a symlink whose target is not valid UTF-8",
                        quote(&q, path));
        if ((rc = check_target(e, "package entry", path, target, lim, "package")))
            return rc;
    }
    struct entry *en = entries_find(&r->files, path);
    if (!en)
        return fail(e, -EINVAL, "package entry '%s' is not listed in the manifest",
                    quote(&q, path));
    if (en->seen)
        return fail(e, -EINVAL, "package entry '%s' appears twice", quote(&q, path));
    en->seen = true;
    if (en->type != type)
        return fail(e, -EINVAL, "package entry '%s' is %s but the manifest lists %s",
                    quote(&q, path), type_words[type], type_words[en->type]);
    unsigned perm = archive_entry_perm(ae) & 07777;
    if (type != ENTRY_SYMLINK && en->mode != MODE_UNSET && en->mode != perm)
        return fail(e, -EINVAL, "package entry '%s' has mode %04o but the manifest says %04o",
                    quote(&q, path), perm, en->mode);
    if (type == ENTRY_FILE && (uint64_t)size != en->size)
        return fail(e, -EINVAL, "package entry '%s' is %lld bytes but the manifest says %llu",
                    quote(&q, path), (long long)size, (unsigned long long)en->size);
    if (type == ENTRY_SYMLINK && strcmp(target, en->target))
        return fail(e, -EINVAL, "package entry '%s' points to '%s' but the manifest says '%s'",
                    quote(&q, path), quote(&q2, target), quote(&q3, en->target));
    struct timespec mtime = {archive_entry_mtime(ae), archive_entry_mtime_nsec(ae)};
    if (mtime.tv_nsec < 0 || mtime.tv_nsec > 999999999)
        mtime.tv_nsec = 0;
    if (type == ENTRY_FILE)
        return read_file(r, en, perm, &mtime);
    return r->dest_fd >= 0 ? extract_other(r, en, perm, &mtime) : 0;
}

/* Gives the extracted directories their modes and mtimes, deepest first. */
static int fix_dirs(struct reader *r)
{
    struct quoted q;
    for (size_t i = r->files.nr; i-- > 0;) {
        const struct entry *en = &r->files.v[i];
        if (en->type != ENTRY_DIR)
            continue;
        const char *name;
        int dir_fd = cursor_parent(&r->cur, en->path, &name), fd = -1;
        if (dir_fd >= 0)
            fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct timespec times[2] = {en->mtime, en->mtime};
        int rc = dir_fd < 0                                                ? dir_fd
                 : fd < 0                                                  ? -errno
                 : fchmod(fd, en->dir_mode) < 0 || futimens(fd, times) < 0 ? -errno
                                                                           : 0;
        if (fd >= 0)
            close(fd);
        if (rc)
            return fail(r->e, rc, "cannot extract '%s': %s", quote(&q, en->path), strerror(-rc));
    }
    return 0;
}

/* Reads the package from fd: validates it (dest_fd < 0) or extracts it below dest_fd; with
 * manifest_only, stops after the manifest. */
static int read_package(int fd, const struct package_limits *lim, int dest_fd, bool manifest_only,
                        json_t **manifest, struct errbuf *e)
{
    struct quoted q;
    struct reader r = {.lim = lim ? lim : &default_limits, .e = e, .fd = fd, .dest_fd = dest_fd};
    struct utf8_locale loc;
    utf8_locale_enter(&loc);
    strbuf_init(&r.path, 0);
    cursor_init(&r.cur, dest_fd, true);
    int rc = -ENOMEM;
    r.budget = first_budget(r.lim);
    r.inbuf = malloc(IO_BUF);
    r.data = malloc(IO_BUF);
    r.sha = crypto_sha256_new();
    if (!r.inbuf || !r.data || !r.sha || !(r.raw = archive_read_new()) ||
        !(r.a = archive_read_new()))
        goto out;
    /* built-in decoders only (ARCHIVE_WARN would mean an external program) */
    if (archive_read_support_filter_zstd(r.raw) != ARCHIVE_OK ||
        archive_read_support_filter_gzip(r.raw) != ARCHIVE_OK ||
        archive_read_support_format_raw(r.raw) != ARCHIVE_OK ||
        archive_read_support_format_tar(r.a) != ARCHIVE_OK) {
        rc = fail(e, -ENOSYS, "libarchive cannot read zstd, gzip or tar");
        goto out;
    }
    struct archive_entry *ae;
    if (archive_read_open(r.raw, &r, NULL, fd_read, NULL) != ARCHIVE_OK ||
        archive_read_next_header(r.raw, &ae) != ARCHIVE_OK) {
        r.raw_failed = true;
        rc = read_error(&r, NULL);
        goto out;
    }
    if (archive_read_open(r.a, &r, NULL, tar_read, NULL) != ARCHIVE_OK) {
        rc = read_error(&r, NULL);
        goto out;
    }
    int ar = archive_read_next_header(r.a, &ae);
    if (ar == ARCHIVE_EOF) {
        rc = fail(e, -EINVAL, "package is an empty archive: it has no 'manifest.json'");
        goto out;
    }
    if (ar < ARCHIVE_WARN) {
        rc = read_error(&r, NULL);
        goto out;
    }
    if ((rc = read_manifest(&r, ae)))
        goto out;
    uint64_t budget = manifest_budget(&r, r.tar_bytes), all = tar_budget(r.lim);
    r.budget_from_manifest = budget < all;
    r.budget = r.budget_from_manifest ? budget : all;
    for (; !manifest_only;) {
        ar = archive_read_next_header(r.a, &ae);
        if (ar == ARCHIVE_EOF) {
            if ((rc = check_tail(&r)))
                goto out;
            break;
        }
        if (ar < ARCHIVE_WARN) {
            rc = read_error(&r, NULL);
            goto out;
        }
        if ((rc = read_entry(&r, ae)))
            goto out;
    }
    for (size_t i = 0; i < r.files.nr && !manifest_only; i++) {
        if (!r.files.v[i].seen) {
            rc = fail(e, -EINVAL, "'manifest.json' lists '%s' but the package does not contain it",
                      quote(&q, r.files.v[i].path));
            goto out;
        }
    }
    if (dest_fd >= 0 && (rc = fix_dirs(&r)))
        goto out;
    rc = 0;
    if (manifest) {
        *manifest = r.manifest;
        r.manifest = NULL;
    }
out:
    archive_read_free(r.a);
    archive_read_free(r.raw);
    json_decref(r.manifest);
    entries_release(&r.files);
    cursor_release(&r.cur);
    strbuf_release(&r.path);
    free(r.inbuf);
    free(r.data);
    crypto_sha256_free(r.sha);
    utf8_locale_leave(&loc);
    return rc;
}

int package_validate(int fd, const struct package_limits *lim, json_t **manifest, char *err,
                     size_t err_cap)
{
    struct errbuf e = {err, err_cap};
    return read_package(fd, lim, -1, false, manifest, &e);
}

int package_read_manifest(int fd, const struct package_limits *lim, json_t **manifest, char *err,
                          size_t err_cap)
{
    struct errbuf e = {err, err_cap};
    return read_package(fd, lim, -1, true, manifest, &e);
}

/* Removes everything inside dir_fd (best effort; never follows a symlink). */
static void remove_children(int dir_fd)
{
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0 || errno != EISDIR)
            continue;
        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 && errno == EACCES && fchmodat(dirfd(d), de->d_name, 0700, 0) == 0)
            sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0) {
            fchmod(sub, 0700);
            remove_children(sub);
            close(sub);
        }
        unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
    }
    closedir(d);
}

static int dir_is_empty(int dir_fd)
{
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int rc = -errno;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    int rc = 1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            rc = 0;
            break;
        }
    }
    closedir(d);
    return rc;
}

int package_extract(int fd, const char *dest_dir, const struct package_limits *lim, char *err,
                    size_t err_cap)
{
    struct errbuf e = {err, err_cap};
    struct quoted q;
    int dest_fd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dest_fd < 0)
        return fail(&e, -errno, "cannot open '%s': %s", quote(&q, dest_dir), strerror(errno));
    int rc = dir_is_empty(dest_fd);
    if (rc <= 0) {
        rc = rc < 0 ? fail(&e, rc, "cannot read '%s': %s", quote(&q, dest_dir), strerror(-rc))
                    : fail(&e, -ENOTEMPTY,
                           "'%s' is not empty; a package is extracted into an empty directory",
                           quote(&q, dest_dir));
        close(dest_fd);
        return rc;
    }
    rc = read_package(fd, lim, dest_fd, false, NULL, &e);
    if (rc)
        remove_children(dest_fd);
    close(dest_fd);
    return rc;
}
