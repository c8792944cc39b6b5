/* libFuzzer driver for base/url: url_path_parse on the input as a C string, url_decode on the raw
 * bytes in both '+' modes, and url_query_get. Each result is checked against an independent
 * oracle (split on '/', drop empty segments, decode each); any disagreement abort()s.
 */
#include "base/url.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT 4096

/* What url_path_parse must return for s, computed with url_decode alone. */
static int oracle_path(const char *s, size_t *nr_seg)
{
    *nr_seg = 0;
    if (s[0] != '/')
        return -EINVAL;
    char out[MAX_INPUT + 1];
    for (const char *p = s; *p;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *end = strchrnul(p, '/');
        if (*nr_seg == URL_MAX_SEGMENTS)
            return -E2BIG;
        if (url_decode(p, (size_t)(end - p), out, 0) < 0)
            return -EINVAL;
        (*nr_seg)++;
        p = end;
    }
    return 0;
}

static void check_path(const char *s)
{
    size_t in_len = strlen(s), want_nr;
    int want = oracle_path(s, &want_nr);
    struct url_path p;
    p.nr_seg = 12345;
    int r = url_path_parse(s, &p);
    if (r == -ENOMEM)
        return;
    if (r != want)
        abort();
    if (r) {
        if (p.nr_seg != 0) /* "on error nothing needs releasing" */
            abort();
        return;
    }
    if (p.nr_seg != want_nr || p.nr_seg > URL_MAX_SEGMENTS)
        abort();
    /* Re-split and compare each segment with its own decoding: equal bytes, no NUL inside
     * (the decoded length equals strlen), never empty, never longer than the input. */
    char out[MAX_INPUT + 1];
    const char *q = s;
    size_t total = 0;
    for (size_t i = 0; i < p.nr_seg; i++) {
        while (*q == '/')
            q++;
        const char *end = strchrnul(q, '/');
        long n = url_decode(q, (size_t)(end - q), out, 0);
        size_t seg_len = strlen(p.seg[i]);
        if (n <= 0 || (size_t)n != seg_len || memcmp(out, p.seg[i], seg_len) != 0)
            abort();
        if (seg_len > (size_t)(end - q))
            abort();
        total += seg_len;
        q = end;
    }
    if (total > in_len)
        abort();
    url_path_release(&p);
    if (p.nr_seg != 0)
        abort();
}

static void check_decode(const uint8_t *data, size_t size)
{
    /* Exact-size copies: ASan flags any read past `size` or write past size + 1. */
    char *in = malloc(size ? size : 1), *out0 = malloc(size + 1), *out1 = malloc(size + 1);
    if (!in || !out0 || !out1)
        goto out;
    memcpy(in, data, size);
    long n0 = url_decode(in, size, out0, 0);
    long n1 = url_decode(in, size, out1, 1);
    if ((n0 < 0) != (n1 < 0)) /* '+' handling never changes validity */
        abort();
    if (n0 < 0) {
        if (n0 != -EINVAL || n1 != -EINVAL)
            abort();
        goto out;
    }
    size_t percents = 0;
    for (size_t i = 0; i < size; i++)
        percents += in[i] == '%';
    /* Every '%' starts a valid 3-byte escape, everything else is one byte. */
    if (n0 != n1 || (size_t)n0 != size - 2 * percents)
        abort();
    if (out0[n0] != '\0' || out1[n1] != '\0' || memchr(out0, '\0', (size_t)n0))
        abort();
    for (long i = 0; i < n0; i++)
        if (out0[i] != out1[i] && !(out0[i] == '+' && out1[i] == ' '))
            abort();
out:
    free(in);
    free(out0);
    free(out1);
}

static void check_query(const char *s)
{
    static const char *const names[] = {"limit", "service", "cursor", "q", "a", ""};
    size_t in_len = strlen(s);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *v = url_query_get(s, names[i]);
        if (v && strlen(v) > in_len)
            abort();
        free(v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_path(s);
    check_decode(data, size);
    /* A request target: the path before '?', the query after it, as the HTTP layer splits it. */
    char *qmark = strchr(s, '?');
    if (qmark) {
        *qmark = '\0';
        check_path(s);
        check_query(qmark + 1);
    } else {
        check_query(s);
    }
    free(s);
    return 0;
}
