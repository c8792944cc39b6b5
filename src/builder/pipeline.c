/* pipeline — slipway.yml in two passes: libyaml's events become a small tree of nodes (where the
 * size limits are enforced and aliases refused), then the tree is checked against the format and
 * copied into a struct pipeline. The tree lets a check see a whole mapping (required keys,
 * "command" or "unittesting") before deciding. Nothing here logs; errors go back in a struct.
 */
#include "builder/pipeline.h"

#include "base/cron.h"
#include "base/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "base/banned.h"

#define KEY_MAX PIPELINE_ERROR_KEY_MAX
/* How much of a file's text a message quotes (bytes), and of a key in a path. */
#define SHOW_MAX 40
#define SEG_MAX  48

enum node_kind { NODE_SCALAR, NODE_LIST, NODE_MAP };

struct node {
    enum node_kind kind;
    bool plain;       /* a plain scalar (no quotes, no tag): may be null */
    int line, column; /* 1-based */
    /* a scalar whose text is the file's text on one line (plain or quoted, no escape, no
     * anchor or tag): the column of its first character; 0 for any other node */
    int text_column;
    char *value; /* scalar: NUL-terminated, no NUL inside; NULL once taken */
    size_t len;
    struct node **items; /* list: the items; mapping: key, value, key, value, ... */
    size_t nr_items, alloc_items;
};

struct ctx {
    struct node **nodes; /* every node, so they are freed without recursion */
    size_t nr_nodes, alloc_nodes;
    struct pipeline_error err;
    char shown[3][SHOW_MAX + 8]; /* show()'s results, used in turn */
    unsigned next_shown;
};

/* ---- messages ---- */

/* Copies at most `max` bytes of src into dst (which holds max + 1), cut at a character boundary
 * with "..." when longer, control characters (C0, DEL and C1) replaced by '?'. The text is UTF-8
 * (libyaml checked it), so cutting before a continuation byte keeps it valid. */
static void copy_text(char *dst, const char *src, size_t max)
{
    size_t len = strlen(src), n = len, out = 0;
    if (len > max) {
        n = max - 3;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch == 0xC2 && i + 1 < n && (unsigned char)src[i + 1] <= 0x9F) {
            dst[out++] = '?'; /* U+0080..U+009F, e.g. the one-byte CSI */
            i++;
            continue;
        }
        dst[out++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    if (n < len) {
        memcpy(dst + out, "...", 3);
        out += 3;
    }
    dst[out] = '\0';
}

/* Drops a character cut in half at the end of s (after snprintf truncated it). */
static void trim_utf8(char *s)
{
    size_t n = strlen(s), i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (n - (i - 1) < want)
        s[i - 1] = '\0';
}

/* The file's text quoted for a message. Three buffers in turn: one message may show three. */
static const char *show(struct ctx *c, const char *s)
{
    char *buf = c->shown[c->next_shown++ % 3];
    buf[0] = '\'';
    copy_text(buf + 1, s, SHOW_MAX);
    size_t n = strlen(buf);
    buf[n] = '\'';
    buf[n + 1] = '\0';
    return buf;
}

/* A plain empty scalar, ~ or null: YAML's "nothing". */
static bool is_null(const struct node *n)
{
    if (n->kind != NODE_SCALAR || !n->plain)
        return false;
    const char *v = n->value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

/* What a node is, for "expected X, found Y". */
static const char *describe(struct ctx *c, const struct node *n)
{
    if (n->kind == NODE_LIST)
        return "a list";
    if (n->kind == NODE_MAP)
        return "a mapping";
    if (is_null(n))
        return "nothing";
    return show(c, n->value);
}

/* parent.key, with the key cut short and made printable. */
static const char *sub(char out[KEY_MAX], const char *parent, const char *key)
{
    char seg[SEG_MAX + 1], tmp[KEY_MAX];
    copy_text(seg, key, SEG_MAX);
    snprintf(tmp, sizeof(tmp), "%s%s%s", parent, *parent ? "." : "", seg);
    trim_utf8(tmp);
    memcpy(out, tmp, sizeof(tmp));
    return out;
}

/* parent[i] */
static const char *idx(char out[KEY_MAX], const char *parent, size_t i)
{
    char tmp[KEY_MAX];
    snprintf(tmp, sizeof(tmp), "%s[%zu]", parent, i);
    trim_utf8(tmp);
    memcpy(out, tmp, sizeof(tmp));
    return out;
}

/* Records the error and returns -EINVAL. Callers return at once, so the first error is kept. */
__attribute__((format(printf, 5, 6))) static int fail_at(struct ctx *c, int line, int column,
                                                         const char *key, const char *fmt, ...)
{
    c->err.line = line;
    c->err.column = column;
    snprintf(c->err.key, sizeof(c->err.key), "%s", key);
    trim_utf8(c->err.key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err.message, sizeof(c->err.message), fmt, ap);
    va_end(ap);
    trim_utf8(c->err.message);
    return -EINVAL;
}

#define fail(c, node, key, ...) fail_at(c, (node)->line, (node)->column, key, __VA_ARGS__)

static int oom(struct ctx *c)
{
    fail_at(c, 0, 0, "", "out of memory");
    return -ENOMEM;
}

/* ---- pass 1: YAML events to a tree ---- */

/* The characters (not bytes) in s[0..n). */
static int utf8_chars(const char *s, size_t n)
{
    int chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    return chars;
}

static struct node *node_new(struct ctx *c, enum node_kind kind, yaml_mark_t mark)
{
    if (c->nr_nodes == c->alloc_nodes) {
        size_t n = c->alloc_nodes ? 2 * c->alloc_nodes : 64;
        struct node **nodes = realloc(c->nodes, n * sizeof(*nodes));
        if (!nodes)
            return NULL;
        c->nodes = nodes;
        c->alloc_nodes = n;
    }
    struct node *node = calloc(1, sizeof(*node));
    if (!node)
        return NULL;
    node->kind = kind;
    node->line = (int)mark.line + 1;
    node->column = (int)mark.column + 1;
    c->nodes[c->nr_nodes++] = node;
    return node;
}

static int node_add(struct node *parent, struct node *child)
{
    if (parent->nr_items == parent->alloc_items) {
        size_t n = parent->alloc_items ? 2 * parent->alloc_items : 8;
        struct node **items = realloc(parent->items, n * sizeof(*items));
        if (!items)
            return -ENOMEM;
        parent->items = items;
        parent->alloc_items = n;
    }
    parent->items[parent->nr_items++] = child;
    return 0;
}

static void tree_free(struct ctx *c)
{
    for (size_t i = 0; i < c->nr_nodes; i++) {
        free(c->nodes[i]->value);
        free(c->nodes[i]->items);
        free(c->nodes[i]);
    }
    free(c->nodes);
    c->nodes = NULL;
    c->nr_nodes = c->alloc_nodes = 0;
}

/* The path of the value about to be added below stack[depth - 1], for errors found while
 * reading (depth, size, aliases, tags). Stops at a position that is a key. */
static void stack_path(char out[KEY_MAX], struct node **stack, size_t depth)
{
    out[0] = '\0';
    for (size_t i = 0; i < depth; i++) {
        const struct node *n = stack[i];
        /* the index of the child on the path: the last item, or the next one at the top */
        size_t k = i + 1 == depth ? n->nr_items : n->nr_items - 1;
        if (n->kind == NODE_LIST) {
            idx(out, out, k);
        } else {
            const struct node *key = k % 2 ? n->items[k - 1] : NULL;
            if (!key || key->kind != NODE_SCALAR)
                return;
            sub(out, out, key->value);
        }
    }
}

/* A tag is allowed only when it says what the node is anyway ("!" or !!str, !!seq, !!map). */
static bool tag_ok(const yaml_char_t *tag, const char *kind)
{
    const char *t = (const char *)tag;
    return !t || strcmp(t, "!") == 0 ||
           (str_has_prefix(t, "tag:yaml.org,2002:") && strcmp(t + 18, kind) == 0);
}

/* A libyaml error as ours. A reader error (bad UTF-8, control character) has only a byte offset:
 * the line and column are counted here. */
static int syntax_error(struct ctx *c, const yaml_parser_t *y, const char *text, size_t len)
{
    if (y->error == YAML_MEMORY_ERROR)
        return oom(c);
    const char *problem = y->problem ? y->problem : "cannot be read";
    if (y->error == YAML_READER_ERROR) {
        int line = 1, column = 1;
        for (size_t i = 0; i < y->problem_offset && i < len; i++) {
            if (text[i] == '\n')
                line++, column = 1;
            else if (((unsigned char)text[i] & 0xC0) != 0x80)
                column++;
        }
        if (y->problem_value >= 0)
            return fail_at(c, line, column, "", "invalid YAML: %s (byte 0x%02x)", problem,
                           (unsigned)y->problem_value);
        return fail_at(c, line, column, "", "invalid YAML: %s", problem);
    }
    int line = (int)y->problem_mark.line + 1, column = (int)y->problem_mark.column + 1;
    if (y->context)
        return fail_at(c, line, column, "", "invalid YAML: %s (%s at line %d)", problem, y->context,
                       (int)y->context_mark.line + 1);
    return fail_at(c, line, column, "", "invalid YAML: %s", problem);
}

/* One node from a scalar or collection-start event, checked against the limits. */
static int read_node(struct ctx *c, const yaml_event_t *ev, struct node **stack, size_t depth,
                     struct node **out)
{
    char path[KEY_MAX];
    int line = (int)ev->start_mark.line + 1, column = (int)ev->start_mark.column + 1;
    const yaml_char_t *tag = NULL;
    const char *kind = "str";
    enum node_kind nk = NODE_SCALAR;
    if (ev->type == YAML_SCALAR_EVENT) {
        tag = ev->data.scalar.tag;
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        tag = ev->data.sequence_start.tag, kind = "seq", nk = NODE_LIST;
    } else {
        tag = ev->data.mapping_start.tag, kind = "map", nk = NODE_MAP;
    }
    if (!tag_ok(tag, kind)) {
        const char *t = (const char *)tag;
        char shorthand[SHOW_MAX + 1] = "!!";
        stack_path(path, stack, depth);
        if (str_has_prefix(t, "tag:yaml.org,2002:"))
            copy_text(shorthand + 2, t + 18, SHOW_MAX - 2);
        else
            copy_text(shorthand, t, SHOW_MAX);
        return fail_at(c, line, column, path, "YAML tags are not supported (%s)", shorthand);
    }
    if (nk != NODE_SCALAR && depth == PIPELINE_MAX_DEPTH) {
        stack_path(path, stack, depth);
        return fail_at(c, line, column, path, "nested deeper than %d levels", PIPELINE_MAX_DEPTH);
    }
    if (c->nr_nodes == PIPELINE_MAX_NODES) {
        stack_path(path, stack, depth);
        return fail_at(c, line, column, path, "the file has more than %d values",
                       PIPELINE_MAX_NODES);
    }
    size_t len = nk == NODE_SCALAR ? ev->data.scalar.length : 0;
    if (len > PIPELINE_MAX_SCALAR) {
        stack_path(path, stack, depth);
        return fail_at(c, line, column, path, "the value is longer than %d KiB",
                       PIPELINE_MAX_SCALAR / 1024);
    }
    if (nk == NODE_SCALAR && memchr(ev->data.scalar.value, '\0', len)) {
        stack_path(path, stack, depth);
        return fail_at(c, line, column, path, "the value contains a NUL character");
    }
    struct node *n = node_new(c, nk, ev->start_mark);
    if (!n)
        return oom(c);
    if (nk == NODE_SCALAR) {
        yaml_scalar_style_t style = ev->data.scalar.style;
        int quotes =
            style == YAML_SINGLE_QUOTED_SCALAR_STYLE || style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        n->plain = style == YAML_PLAIN_SCALAR_STYLE && !tag;
        /* an escape, a fold, an anchor or a tag makes the file's text longer than the value */
        if ((quotes || style == YAML_PLAIN_SCALAR_STYLE) &&
            ev->end_mark.line == ev->start_mark.line &&
            ev->end_mark.column - ev->start_mark.column ==
                (size_t)utf8_chars((const char *)ev->data.scalar.value, len) + 2 * quotes)
            n->text_column = column + quotes;
        n->value = malloc(len + 1);
        if (!n->value)
            return oom(c);
        memcpy(n->value, ev->data.scalar.value, len);
        n->value[len] = '\0';
        n->len = len;
    }
    if (depth > 0 && node_add(stack[depth - 1], n))
        return oom(c);
    *out = n;
    return 0;
}

/* Reads the whole stream into a tree. *root is NULL for a stream without a document. */
static int read_tree(struct ctx *c, const char *text, size_t len, struct node **root)
{
    yaml_parser_t y;
    yaml_event_t ev;
    struct node *stack[PIPELINE_MAX_DEPTH];
    size_t depth = 0;
    int documents = 0, r = -EINVAL;
    *root = NULL;
    /* libyaml skips a BOM itself only when it detects the encoding, which would let UTF-16 in;
     * with UTF-8 forced, a BOM before a %YAML directive would be a syntax error */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        text += 3, len -= 3;
    if (!yaml_parser_initialize(&y))
        return oom(c);
    yaml_parser_set_input_string(&y, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&y, YAML_UTF8_ENCODING);
    for (;;) {
        if (!yaml_parser_parse(&y, &ev)) {
            r = syntax_error(c, &y, text, len);
            goto out;
        }
        struct node *n = NULL;
        r = 0;
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++documents > 1)
                r = fail_at(c, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1, "",
                            "the file has more than one YAML document (a second '---')");
            break;
        case YAML_ALIAS_EVENT: {
            char path[KEY_MAX], anchor[SHOW_MAX + 1];
            stack_path(path, stack, depth);
            copy_text(anchor, (const char *)ev.data.alias.anchor, SHOW_MAX);
            r = fail_at(c, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1, path,
                        "aliases are not supported (*%s): write the value out", anchor);
            break;
        }
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            r = read_node(c, &ev, stack, depth, &n);
            if (r)
                break;
            if (depth == 0)
                *root = n;
            if (ev.type != YAML_SCALAR_EVENT)
                stack[depth++] = n;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        default:
            break;
        }
        bool end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (r || end)
            goto out;
    }
out:
    yaml_parser_delete(&y);
    return r;
}

/* ---- pass 2: the tree checked and copied ---- */

static bool is_blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

/* The scalar's text, now owned by the caller. */
static char *take(struct node *n)
{
    char *v = n->value;
    n->value = NULL;
    return v;
}

static struct node *map_get(const struct node *map, const char *key)
{
    for (size_t i = 0; i + 1 < map->nr_items; i += 2)
        if (map->items[i]->kind == NODE_SCALAR && strcmp(map->items[i]->value, key) == 0)
            return map->items[i + 1];
    return NULL;
}

/* n must be a mapping (`what` describes it) of string keys, each once, each in `known`
 * (NULL-terminated; NULL allows any key), at most `max` of them (0: no limit). */
static int check_map(struct ctx *c, const struct node *n, const char *path, const char *what,
                     const char *const *known, size_t max, const char *noun)
{
    char kp[KEY_MAX];
    if (n->kind != NODE_MAP)
        return fail(c, n, path, "expected %s, found %s", what, describe(c, n));
    if (max && n->nr_items / 2 > max)
        return fail(c, n->items[2 * max], path, "more than %zu %s", max, noun);
    for (size_t i = 0; i < n->nr_items; i += 2) {
        const struct node *k = n->items[i];
        if (k->kind != NODE_SCALAR)
            return fail(c, k, path, "a key must be text, found %s", describe(c, k));
        sub(kp, path, k->value);
        if (known) {
            size_t j = 0;
            while (known[j] && strcmp(known[j], k->value) != 0)
                j++;
            if (!known[j]) {
                char list[160] = "";
                for (j = 0; known[j]; j++)
                    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                             j ? ", " : "", known[j]);
                return fail(c, k, kp, "unknown key %s (known keys: %s)", show(c, k->value), list);
            }
        }
        for (size_t j = 0; j < i; j += 2)
            if (strcmp(n->items[j]->value, k->value) == 0)
                return fail(c, k, kp, "the key appears twice (first at line %d)",
                            n->items[j]->line);
    }
    return 0;
}

/* n must be a list (`what` describes it) of at most PIPELINE_MAX_ITEMS `noun`, and not empty
 * when `nonempty`. */
static int check_list(struct ctx *c, const struct node *n, const char *path, const char *what,
                      const char *noun, bool nonempty)
{
    if (n->kind != NODE_LIST)
        return fail(c, n, path, "expected %s, found %s", what, describe(c, n));
    if (n->nr_items > PIPELINE_MAX_ITEMS)
        return fail(c, n->items[PIPELINE_MAX_ITEMS], path, "more than %d %s", PIPELINE_MAX_ITEMS,
                    noun);
    if (nonempty && n->nr_items == 0)
        return fail(c, n, path, "the list is empty: it needs at least one of the %s", noun);
    return 0;
}

static int check_scalar(struct ctx *c, const struct node *n, const char *path, const char *what)
{
    if (n->kind != NODE_SCALAR || is_null(n))
        return fail(c, n, path, "expected %s, found %s", what, describe(c, n));
    return 0;
}

/* A string value that may not be blank; taken into *out. */
static int get_text(struct ctx *c, struct node *n, const char *path, const char *what, char **out)
{
    int r = check_scalar(c, n, path, what);
    if (r)
        return r;
    if (is_blank(n->value))
        return fail(c, n, path, "must not be empty");
    *out = take(n);
    return 0;
}

/* Required key: the node, or an error at the mapping. */
static int require(struct ctx *c, const struct node *map, const char *path, const char *key,
                   const char *what, struct node **out)
{
    char kp[KEY_MAX];
    *out = map_get(map, key);
    if (!*out)
        return fail(c, map, sub(kp, path, key), "is missing (%s)", what);
    return 0;
}

static int parse_bool_text(const char *s, bool *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        *out = true;
    else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        *out = false;
    else
        return -EINVAL;
    return 0;
}

static int get_bool(struct ctx *c, const struct node *n, const char *path, bool *out)
{
    int r = check_scalar(c, n, path, "true or false");
    if (r)
        return r;
    if (parse_bool_text(n->value, out))
        return fail(c, n, path, "expected true or false, found %s", describe(c, n));
    return 0;
}

/* "90", "90s", "10m", "1h": 0, -EINVAL (not a duration) or -ERANGE. */
static int parse_duration(const char *s, int64_t *out)
{
    size_t digits = strspn(s, "0123456789");
    int64_t unit = 1, v;
    if (digits == 0)
        return -EINVAL;
    switch (s[digits]) {
    case '\0':
    case 's':
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    default:
        return -EINVAL;
    }
    if (s[digits] && s[digits + 1])
        return -EINVAL;
    if (digits > 9)
        return -ERANGE;
    char number[10];
    memcpy(number, s, digits);
    number[digits] = '\0';
    if (parse_i64(number, 0, 999999999, &v))
        return -EINVAL;
    v *= unit;
    if (v < PIPELINE_MIN_DURATION_S || v > PIPELINE_MAX_DURATION_S)
        return -ERANGE;
    *out = v;
    return 0;
}

static int get_duration(struct ctx *c, const struct node *n, const char *path, int64_t *out)
{
    int r = check_scalar(c, n, path, "a duration (e.g. 90s, 10m, 1h)");
    if (r)
        return r;
    r = parse_duration(n->value, out);
    if (r == -ERANGE)
        return fail(c, n, path, "%s is out of range (1s to 24h)", show(c, n->value));
    if (r)
        return fail(c, n, path, "%s is not a duration (use s, m or h, e.g. 10m)",
                    show(c, n->value));
    return 0;
}

/* A size ("500MB", "2GB") within [min, max] bytes. */
static int get_size(struct ctx *c, const struct node *n, const char *path, int64_t min, int64_t max,
                    int64_t *out)
{
    char lo[24], hi[24];
    int r = check_scalar(c, n, path, "a size (e.g. 500MB, 2GB)");
    if (r)
        return r;
    r = parse_size(n->value, min, max, out);
    format_size(min, lo);
    format_size(max, hi);
    if (r == -ERANGE)
        return fail(c, n, path, "%s is out of range (%s to %s)", show(c, n->value), lo, hi);
    if (r)
        return fail(c, n, path, "%s is not a size (a number with B, KB, MB, GB or TB, e.g. 2GB)",
                    show(c, n->value));
    return 0;
}

/* A whole number within [min, max]. */
static int get_count(struct ctx *c, const struct node *n, const char *path, int64_t min,
                     int64_t max, int64_t *out)
{
    int r = check_scalar(c, n, path, "a number");
    if (r)
        return r;
    r = parse_i64(n->value, min, max, out);
    if (r == -ERANGE)
        return fail(c, n, path, "%s is out of range (%lld to %lld)", show(c, n->value),
                    (long long)min, (long long)max);
    if (r)
        return fail(c, n, path, "%s is not a whole number", show(c, n->value));
    return 0;
}

/* A path inside the workspace: relative, no "..", no control characters. */
static int get_path(struct ctx *c, struct node *n, const char *path, char **out)
{
    int r = check_scalar(c, n, path, "a path");
    if (r)
        return r;
    const char *v = n->value;
    if (is_blank(v))
        return fail(c, n, path, "must not be empty");
    if (n->len > PIPELINE_MAX_PATH)
        return fail(c, n, path, "the path is longer than %d bytes", PIPELINE_MAX_PATH);
    for (const char *s = v; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return fail(c, n, path, "%s contains a control character", show(c, v));
    if (v[0] == '/')
        return fail(c, n, path, "%s is absolute: paths are relative to the workspace", show(c, v));
    for (const char *s = v; *s;) {
        size_t seg = strcspn(s, "/");
        if (seg == 2 && s[0] == '.' && s[1] == '.')
            return fail(c, n, path, "%s leaves the workspace ('..' is not allowed)", show(c, v));
        s += seg;
        s += *s == '/';
    }
    *out = take(n);
    return 0;
}

static bool is_ident_start(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

static bool is_ident(char ch)
{
    return is_ident_start(ch) || (ch >= '0' && ch <= '9') || ch == '_';
}

/* Module.Name: [A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]* */
static bool is_module_name(const char *s)
{
    for (int part = 0; part < 2; part++) {
        if (!is_ident_start(*s))
            return false;
        while (is_ident(*s))
            s++;
        if (part == 0 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

static int get_module_name(struct ctx *c, const struct node *n, const char *path)
{
    int r = check_scalar(c, n, path, "a name like Module.Name");
    if (r)
        return r;
    if (n->len > PIPELINE_MAX_NAME)
        return fail(c, n, path, "the name is longer than %d bytes", PIPELINE_MAX_NAME);
    if (!is_module_name(n->value))
        return fail(c, n, path,
                    "%s is not a Module.Name (two names of letters, digits and _ joined by a "
                    "dot, e.g. Main.Greeting)",
                    show(c, n->value));
    return 0;
}

/* ---- cron ---- */

/* A cron expression (base/cron.h), kept as written. An error points at the character at fault
 * when the scalar's text is exactly what the file holds on its line; otherwise at the value. */
static int get_cron(struct ctx *c, struct node *n, const char *path, char **out)
{
    struct cron parsed;
    struct cron_error ce;
    int r = check_scalar(c, n, path, "a cron expression (e.g. \"*/5 * * * *\")");
    if (r)
        return r;
    if (cron_parse(n->value, &parsed, &ce)) {
        int column = n->column;
        if (n->text_column && ce.column >= 1 && (size_t)ce.column <= n->len + 1)
            column = n->text_column + utf8_chars(n->value, (size_t)ce.column - 1);
        return fail_at(c, n->line, column, path, "%s", ce.message);
    }
    *out = take(n);
    return 0;
}

/* ---- sections ---- */

static int parse_version(struct ctx *c, const struct node *root, struct pipeline *p)
{
    struct node *n;
    int64_t v;
    int r = require(c, root, "", "version", "write version: 1 at the top", &n);
    if (r)
        return r;
    if (n->kind != NODE_SCALAR || is_null(n) || parse_i64(n->value, INT64_MIN, INT64_MAX, &v))
        return fail(c, n, "version", "expected the number 1, found %s", describe(c, n));
    if (v != PIPELINE_VERSION)
        return fail(c, n, "version", "%s is not supported (this Slipway reads version %d)",
                    show(c, n->value), PIPELINE_VERSION);
    p->version = PIPELINE_VERSION;
    return 0;
}

static bool is_env_name(const char *s)
{
    if (!is_ident_start(*s) && *s != '_')
        return false;
    while (is_ident(*s))
        s++;
    return *s == '\0';
}

static int parse_build(struct ctx *c, const struct node *n, struct pipeline *p)
{
    static const char *const keys[] = {"steps",  "timeout", "network", "env",
                                       "memory", "pids",    "disk",    NULL};
    char path[KEY_MAX];
    struct node *v;
    int r = check_map(c, n, "build", "a mapping (steps, timeout, network, env, memory, pids, disk)",
                      keys, 0, NULL);
    if (r || (r = require(c, n, "build", "steps", "a list of commands that build the app", &v)))
        return r;
    if ((r = check_list(c, v, "build.steps", "a list of commands", "steps", true)))
        return r;
    if (!(p->build_steps = calloc(v->nr_items, sizeof(*p->build_steps))))
        return oom(c);
    p->nr_build_steps = v->nr_items;
    for (size_t i = 0; i < v->nr_items; i++)
        if ((r = get_text(c, v->items[i], idx(path, "build.steps", i), "a command",
                          &p->build_steps[i])))
            return r;
    if ((v = map_get(n, "timeout")) &&
        (r = get_duration(c, v, "build.timeout", &p->build_timeout_s)))
        return r;
    if ((v = map_get(n, "network")) && (r = get_bool(c, v, "build.network", &p->build_network)))
        return r;
    if ((v = map_get(n, "memory")) && (r = get_size(c, v, "build.memory", PIPELINE_MIN_MEMORY,
                                                    PIPELINE_MAX_SIZE, &p->build_memory)))
        return r;
    if ((v = map_get(n, "pids")) &&
        (r = get_count(c, v, "build.pids", PIPELINE_MIN_PIDS, PIPELINE_MAX_PIDS, &p->build_pids)))
        return r;
    if ((v = map_get(n, "disk")) &&
        (r = get_size(c, v, "build.disk", PIPELINE_MIN_DISK, PIPELINE_MAX_SIZE, &p->build_disk)))
        return r;
    if (!(v = map_get(n, "env")))
        return 0;
    r = check_map(c, v, "build.env", "a mapping of variable names to values", NULL,
                  PIPELINE_MAX_ITEMS, "variables");
    if (r || v->nr_items == 0)
        return r;
    if (!(p->build_env = calloc(v->nr_items / 2, sizeof(*p->build_env))))
        return oom(c);
    p->nr_build_env = v->nr_items / 2;
    for (size_t i = 0; i < v->nr_items; i += 2) {
        struct node *name = v->items[i], *value = v->items[i + 1];
        sub(path, "build.env", name->value);
        if (!is_env_name(name->value))
            return fail(c, name, path,
                        "%s is not a variable name (letters, digits and _, not starting with a "
                        "digit)",
                        show(c, name->value));
        if ((r = check_scalar(c, value, path, "a value (write \"\" for an empty one)")))
            return r;
        p->build_env[i / 2].name = take(name);
        p->build_env[i / 2].value = take(value);
    }
    return 0;
}

static int parse_package(struct ctx *c, const struct node *n, struct pipeline *p)
{
    static const char *const keys[] = {"include", NULL};
    char path[KEY_MAX];
    struct node *v;
    int r = check_map(c, n, "package", "a mapping (include)", keys, 0, NULL);
    if (r || (r = require(c, n, "package", "include",
                          "a list of the files and folders that make the package", &v)))
        return r;
    if ((r = check_list(c, v, "package.include", "a list of paths", "paths", true)))
        return r;
    if (!(p->package_include = calloc(v->nr_items, sizeof(*p->package_include))))
        return oom(c);
    p->nr_package_include = v->nr_items;
    for (size_t i = 0; i < v->nr_items; i++)
        if ((r = get_path(c, v->items[i], idx(path, "package.include", i), &p->package_include[i])))
            return r;
    return 0;
}

static int parse_run(struct ctx *c, const struct node *n, struct pipeline *p)
{
    static const char *const keys[] = {"command",      "health",   "start_timeout",
                                       "stop_timeout", "database", NULL};
    struct node *v;
    int r =
        check_map(c, n, "run", "a mapping (command, health, start_timeout, stop_timeout, database)",
                  keys, 0, NULL);
    if (r || (r = require(c, n, "run", "command", "what starts the app", &v)) ||
        (r = get_text(c, v, "run.command", "a command", &p->run.command)))
        return r;
    if ((v = map_get(n, "health"))) {
        if ((r = check_scalar(c, v, "run.health", "an HTTP path like /healthz")))
            return r;
        if (v->value[0] != '/' || strpbrk(v->value, " \t\r\n\v\f") || v->len > PIPELINE_MAX_PATH)
            return fail(c, v, "run.health",
                        "%s is not an HTTP path (it starts with '/', without blanks)",
                        show(c, v->value));
        for (const char *s = v->value; *s; s++)
            if ((unsigned char)*s < 0x20 || *s == 0x7f)
                return fail(c, v, "run.health", "%s contains a control character",
                            show(c, v->value));
        p->run.health = take(v);
    }
    if ((v = map_get(n, "start_timeout")) &&
        (r = get_duration(c, v, "run.start_timeout", &p->run.start_timeout_s)))
        return r;
    if ((v = map_get(n, "stop_timeout")) &&
        (r = get_duration(c, v, "run.stop_timeout", &p->run.stop_timeout_s)))
        return r;
    if ((v = map_get(n, "database"))) {
        if ((r = check_scalar(c, v, "run.database", "a database (postgres)")))
            return r;
        if (strcmp(v->value, "postgres") != 0)
            return fail(c, v, "run.database", "%s is not a database Slipway provides (postgres)",
                        show(c, v->value));
        p->run.database = true;
    }
    p->run.present = true;
    return 0;
}

static const char *const type_names[] = {
    [PIPELINE_STRING] = "String",
    [PIPELINE_INTEGER] = "Integer",
    [PIPELINE_DECIMAL] = "Decimal",
    [PIPELINE_BOOLEAN] = "Boolean",
};

/* [+-]digits[.digits] */
static bool is_decimal(const char *s)
{
    s += *s == '+' || *s == '-';
    size_t digits = strspn(s, "0123456789");
    if (digits == 0)
        return false;
    s += digits;
    if (*s == '.') {
        digits = strspn(++s, "0123456789");
        if (digits == 0)
            return false;
        s += digits;
    }
    return *s == '\0';
}

/* The default, checked against the type. A secret's value is not quoted in messages. */
static int parse_default(struct ctx *c, struct node *v, const char *path,
                         struct pipeline_constant *k)
{
    int64_t i;
    bool b;
    int r = check_scalar(c, v, path, "a value (write \"\" for an empty String)");
    if (r)
        return r;
    const char *shown = k->secret ? "the secret default" : show(c, v->value);
    switch (k->type) {
    case PIPELINE_STRING:
        break;
    case PIPELINE_INTEGER:
        if (parse_i64(v->value, INT64_MIN, INT64_MAX, &i))
            return fail(c, v, path, "%s is not an Integer (a whole number)", shown);
        break;
    case PIPELINE_DECIMAL:
        if (!is_decimal(v->value))
            return fail(c, v, path,
                        "%s is not a Decimal (digits with an optional fraction, e.g. 2.50)", shown);
        break;
    case PIPELINE_BOOLEAN:
        if (parse_bool_text(v->value, &b))
            return fail(c, v, path, "%s is not a Boolean (true or false)", shown);
        if (!(k->default_value = strdup(b ? "true" : "false")))
            return oom(c);
        return 0;
    }
    k->default_value = take(v);
    return 0;
}

/* Module.Name and Module_Name must not meet in MX_Module_Name: '.' and '_' compare equal. */
static bool same_variable(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (*a != *b && !((*a == '.' || *a == '_') && (*b == '.' || *b == '_')))
            return false;
    return *a == *b;
}

static int parse_constants(struct ctx *c, const struct node *n, struct pipeline *p)
{
    static const char *const keys[] = {"name", "type", "default", "secret", NULL};
    char path[KEY_MAX], kp[KEY_MAX];
    int r = check_list(c, n, "constants", "a list of constants", "constants", false);
    if (r || n->nr_items == 0)
        return r;
    if (!(p->constants = calloc(n->nr_items, sizeof(*p->constants))))
        return oom(c);
    p->nr_constants = n->nr_items;
    for (size_t i = 0; i < n->nr_items; i++) {
        struct node *item = n->items[i], *name, *type, *v;
        struct pipeline_constant *k = &p->constants[i];
        idx(path, "constants", i);
        if ((r = check_map(c, item, path, "a constant (name, type, default, secret)", keys, 0,
                           NULL)) ||
            (r = require(c, item, path, "name", "Module.Name", &name)) ||
            (r = get_module_name(c, name, sub(kp, path, "name"))))
            return r;
        for (size_t j = 0; j < i; j++) {
            const struct node *other = map_get(n->items[j], "name");
            if (strcmp(p->constants[j].name, name->value) == 0)
                return fail(c, name, kp, "the constant %s is declared twice (first at line %d)",
                            show(c, name->value), other->line);
            if (same_variable(p->constants[j].name, name->value)) {
                char var[PIPELINE_MAX_NAME + 1];
                snprintf(var, sizeof(var), "%s", name->value);
                *strchr(var, '.') = '_';
                return fail(c, name, kp, "%s and %s would both be the variable MX_%s",
                            show(c, p->constants[j].name), show(c, name->value), var);
            }
        }
        if ((r = require(c, item, path, "type", "String, Integer, Decimal or Boolean", &type)) ||
            (r = check_scalar(c, type, sub(kp, path, "type"), "a type")))
            return r;
        size_t t = 0;
        while (t < 4 && strcmp(type_names[t], type->value) != 0)
            t++;
        if (t == 4)
            return fail(c, type, kp, "%s is not a type (String, Integer, Decimal or Boolean)",
                        show(c, type->value));
        k->type = (enum pipeline_type)t;
        k->name = take(name);
        /* secret first: a secret's default is then not quoted in errors */
        if ((v = map_get(item, "secret")) &&
            (r = get_bool(c, v, sub(kp, path, "secret"), &k->secret)))
            return r;
        if ((v = map_get(item, "default")) &&
            (r = parse_default(c, v, sub(kp, path, "default"), k)))
            return r;
    }
    return 0;
}

static int parse_events(struct ctx *c, const struct node *n, struct pipeline *p)
{
    static const char *const keys[] = {"name", "cron", "command", NULL};
    char path[KEY_MAX], kp[KEY_MAX];
    int r = check_list(c, n, "scheduled_events", "a list of scheduled events", "events", false);
    if (r || n->nr_items == 0)
        return r;
    if (!(p->events = calloc(n->nr_items, sizeof(*p->events))))
        return oom(c);
    p->nr_events = n->nr_items;
    for (size_t i = 0; i < n->nr_items; i++) {
        struct node *item = n->items[i], *name, *v;
        struct pipeline_event *e = &p->events[i];
        idx(path, "scheduled_events", i);
        if ((r = check_map(c, item, path, "an event (name, cron, command)", keys, 0, NULL)) ||
            (r = require(c, item, path, "name", "Module.Name", &name)) ||
            (r = get_module_name(c, name, sub(kp, path, "name"))))
            return r;
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->events[j].name, name->value) == 0)
                return fail(c, name, kp, "the event %s is declared twice (first at line %d)",
                            show(c, name->value), map_get(n->items[j], "name")->line);
        e->name = take(name);
        if ((r = require(c, item, path, "cron", "when it runs, e.g. \"0 3 * * *\"", &v)) ||
            (r = get_cron(c, v, sub(kp, path, "cron"), &e->cron)) ||
            (r = require(c, item, path, "command", "what it runs", &v)) ||
            (r = get_text(c, v, sub(kp, path, "command"), "a command", &e->command)))
            return r;
    }
    return 0;
}

/* [A-Za-z0-9][A-Za-z0-9_.-]* */
static bool is_test_name(const char *s)
{
    if (!is_ident(*s) || *s == '_')
        return false;
    while (is_ident(*s) || *s == '.' || *s == '-')
        s++;
    return *s == '\0';
}

static int parse_unittesting(struct ctx *c, const struct node *n, const char *path,
                             const struct pipeline *p, struct pipeline_test *t)
{
    static const char *const keys[] = {"password_constant", NULL};
    char kp[KEY_MAX];
    struct node *v;
    int r = check_map(c, n, path, "a mapping (password_constant)", keys, 0, NULL);
    if (r ||
        (r = require(c, n, path, "password_constant",
                     "the constant holding the UnitTesting module's remote API password", &v)) ||
        (r = get_module_name(c, v, sub(kp, path, "password_constant"))))
        return r;
    if (!pipeline_constant_find(p, v->value))
        return fail(c, v, kp, "%s is not a declared constant (add it under constants)",
                    show(c, v->value));
    t->unittesting_password_constant = take(v);
    return 0;
}

static int parse_tests(struct ctx *c, const struct node *n, struct pipeline *p)
{
    static const char *const keys[] = {"name", "command", "junit", "unittesting", NULL};
    char path[KEY_MAX], kp[KEY_MAX];
    int r = check_list(c, n, "tests", "a list of tests", "tests", false);
    if (r || n->nr_items == 0)
        return r;
    if (!(p->tests = calloc(n->nr_items, sizeof(*p->tests))))
        return oom(c);
    p->nr_tests = n->nr_items;
    for (size_t i = 0; i < n->nr_items; i++) {
        struct node *item = n->items[i], *name, *command, *unit, *junit;
        struct pipeline_test *t = &p->tests[i];
        idx(path, "tests", i);
        if ((r = check_map(c, item, path, "a test (name, command or unittesting, junit)", keys, 0,
                           NULL)) ||
            (r = require(c, item, path, "name", "a short name like api", &name)) ||
            (r = check_scalar(c, name, sub(kp, path, "name"), "a name")))
            return r;
        if (name->len > PIPELINE_MAX_NAME)
            return fail(c, name, kp, "the name is longer than %d bytes", PIPELINE_MAX_NAME);
        if (!is_test_name(name->value))
            return fail(c, name, kp,
                        "%s is not a test name (letters, digits, _, . and -, starting with a "
                        "letter or digit)",
                        show(c, name->value));
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->tests[j].name, name->value) == 0)
                return fail(c, name, kp, "the test %s is declared twice (first at line %d)",
                            show(c, name->value), map_get(n->items[j], "name")->line);
        t->name = take(name);
        command = map_get(item, "command");
        unit = map_get(item, "unittesting");
        junit = map_get(item, "junit");
        if (command && unit) {
            const struct node *second = command->line > unit->line ? command : unit;
            return fail(c, second, path, "a test has either 'command' or 'unittesting', not both");
        }
        if (!command && !unit)
            return fail(c, item, path, "a test needs 'command' or 'unittesting'");
        if (command &&
            (r = get_text(c, command, sub(kp, path, "command"), "a command", &t->command)))
            return r;
        if (unit && (r = parse_unittesting(c, unit, sub(kp, path, "unittesting"), p, t)))
            return r;
        if (junit && unit)
            return fail(c, junit, sub(kp, path, "junit"),
                        "only a test with a 'command' has a junit report");
        if (junit && (r = get_path(c, junit, sub(kp, path, "junit"), &t->junit)))
            return r;
    }
    return 0;
}

static int parse_root(struct ctx *c, struct node *root, struct pipeline *p)
{
    static const char *const keys[] = {"version",   "runtime",          "build", "package", "run",
                                       "constants", "scheduled_events", "tests", NULL};
    struct node *v;
    int r;
    if (!root || is_null(root))
        return fail_at(c, 0, 0, "",
                       "the file is empty: it needs at least version, build.steps and "
                       "package.include");
    if (root->kind != NODE_MAP)
        return fail(c, root, "",
                    "the top level must be a mapping of keys (version, build, package, ...), "
                    "found %s",
                    describe(c, root));
    /* the version first: a file of another version gets that answer, not "unknown key" */
    if ((r = parse_version(c, root, p)) || (r = check_map(c, root, "", "a mapping", keys, 0, NULL)))
        return r;
    if ((v = map_get(root, "runtime"))) {
        if ((r = check_scalar(c, v, "runtime", "a line of text")))
            return r;
        for (const char *s = v->value; *s; s++)
            if ((unsigned char)*s < 0x20 || *s == 0x7f)
                return fail(c, v, "runtime",
                            "must be one line of text, without control characters");
        if ((r = get_text(c, v, "runtime", "a line of text", &p->runtime)))
            return r;
    }
    if ((r = require(c, root, "", "build", "build.steps lists the commands", &v)) ||
        (r = parse_build(c, v, p)) ||
        (r = require(c, root, "", "package", "package.include lists what goes in", &v)) ||
        (r = parse_package(c, v, p)))
        return r;
    if ((v = map_get(root, "run")) && (r = parse_run(c, v, p)))
        return r;
    /* constants before tests, whatever the file's order: tests refer to them */
    if ((v = map_get(root, "constants")) && (r = parse_constants(c, v, p)))
        return r;
    if ((v = map_get(root, "scheduled_events")) && (r = parse_events(c, v, p)))
        return r;
    if ((v = map_get(root, "tests")) && (r = parse_tests(c, v, p)))
        return r;
    return 0;
}

int pipeline_parse(const char *text, size_t len, struct pipeline *out, struct pipeline_error *err)
{
    struct ctx c = {0};
    struct pipeline p = {
        .build_timeout_s = PIPELINE_DEFAULT_BUILD_TIMEOUT_S,
        .build_memory = PIPELINE_DEFAULT_MEMORY,
        .build_pids = PIPELINE_DEFAULT_PIDS,
        .build_disk = PIPELINE_DEFAULT_DISK,
        .run = {.start_timeout_s = PIPELINE_DEFAULT_START_TIMEOUT_S,
                .stop_timeout_s = PIPELINE_DEFAULT_STOP_TIMEOUT_S},
    };
    struct node *root;
    int r;
    if (!text)
        text = "", len = 0;
    if (len > PIPELINE_MAX_FILE)
        r = fail_at(&c, 0, 0, "", "the file is larger than %d KiB", PIPELINE_MAX_FILE / 1024);
    else if (!(r = read_tree(&c, text, len, &root)))
        r = parse_root(&c, root, &p);
    tree_free(&c);
    if (r) {
        pipeline_release(&p);
        if (err)
            *err = c.err;
        return r;
    }
    *out = p;
    return 0;
}

void pipeline_release(struct pipeline *p)
{
    free(p->runtime);
    for (size_t i = 0; i < p->nr_build_steps; i++)
        free(p->build_steps[i]);
    free(p->build_steps);
    for (size_t i = 0; i < p->nr_build_env; i++) {
        free(p->build_env[i].name);
        free(p->build_env[i].value);
    }
    free(p->build_env);
    for (size_t i = 0; i < p->nr_package_include; i++)
        free(p->package_include[i]);
    free(p->package_include);
    free(p->run.command);
    free(p->run.health);
    for (size_t i = 0; i < p->nr_constants; i++) {
        free(p->constants[i].name);
        free(p->constants[i].default_value);
    }
    free(p->constants);
    for (size_t i = 0; i < p->nr_events; i++) {
        free(p->events[i].name);
        free(p->events[i].cron);
        free(p->events[i].command);
    }
    free(p->events);
    for (size_t i = 0; i < p->nr_tests; i++) {
        free(p->tests[i].name);
        free(p->tests[i].command);
        free(p->tests[i].junit);
        free(p->tests[i].unittesting_password_constant);
    }
    free(p->tests);
    memset(p, 0, sizeof(*p));
}

const struct pipeline_constant *pipeline_constant_find(const struct pipeline *p, const char *name)
{
    for (size_t i = 0; i < p->nr_constants; i++)
        if (p->constants[i].name && strcmp(p->constants[i].name, name) == 0)
            return &p->constants[i];
    return NULL;
}

const char *pipeline_type_name(enum pipeline_type type)
{
    return (unsigned)type < 4 ? type_names[type] : "String";
}

void pipeline_error_format(const struct pipeline_error *err, const char *filename, char *buf,
                           size_t cap)
{
    char where[32] = "";
    if (!cap)
        return;
    if (err->line > 0)
        snprintf(where, sizeof(where), ":%d:%d", err->line, err->column);
    snprintf(buf, cap, "%s%s: %s%s%s", filename ? filename : PIPELINE_FILE, where, err->key,
             err->key[0] ? ": " : "", err->message);
    trim_utf8(buf);
}

/* ---- manifest ---- */

static json_t *jstr(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* The json_*_new calls take their value even when they fail, so failures only need counting. */
static int set(json_t *o, const char *key, json_t *v)
{
    return json_object_set_new(o, key, v) ? 1 : 0;
}

static int add(json_t *a, json_t *v)
{
    return json_array_append_new(a, v) ? 1 : 0;
}

char *pipeline_manifest_json(const struct pipeline *p)
{
    json_t *root = json_object(), *run = json_null(), *list, *o;
    int bad = 0;
    bad += set(root, "runtime", jstr(p->runtime));
    if (p->run.present) {
        run = json_object();
        bad += set(run, "command", jstr(p->run.command));
        bad += set(run, "health", jstr(p->run.health));
        bad += set(run, "start_timeout_s", json_integer(p->run.start_timeout_s));
        bad += set(run, "stop_timeout_s", json_integer(p->run.stop_timeout_s));
        bad += set(run, "database", p->run.database ? json_string("postgres") : json_null());
    }
    bad += set(root, "run", run);

    list = json_array();
    for (size_t i = 0; i < p->nr_constants; i++) {
        const struct pipeline_constant *k = &p->constants[i];
        o = json_object();
        bad += set(o, "name", jstr(k->name));
        bad += set(o, "type", json_string(pipeline_type_name(k->type)));
        bad += set(o, "default", jstr(k->default_value));
        bad += set(o, "secret", json_boolean(k->secret));
        bad += add(list, o);
    }
    bad += set(root, "constants", list);

    list = json_array();
    for (size_t i = 0; i < p->nr_events; i++) {
        o = json_object();
        bad += set(o, "name", jstr(p->events[i].name));
        bad += set(o, "cron", jstr(p->events[i].cron));
        bad += set(o, "command", jstr(p->events[i].command));
        bad += add(list, o);
    }
    bad += set(root, "scheduled_events", list);

    list = json_array();
    for (size_t i = 0; i < p->nr_tests; i++) {
        const struct pipeline_test *t = &p->tests[i];
        json_t *unit = json_null();
        o = json_object();
        bad += set(o, "name", jstr(t->name));
        bad += set(o, "command", jstr(t->command));
        bad += set(o, "junit", jstr(t->junit));
        if (t->unittesting_password_constant) {
            unit = json_object();
            bad += set(unit, "password_constant", jstr(t->unittesting_password_constant));
        }
        bad += set(o, "unittesting", unit);
        bad += add(list, o);
    }
    bad += set(root, "tests", list);

    char *text = bad ? NULL : json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}
