/* url — percent-decoding, path splitting, query lookup; see url.h. */
#include "base/url.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long url_decode(const char *s, size_t len, char *out, int plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -EINVAL;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return -EINVAL;
            c = (char)(h << 4 | l);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == '\0')
            return -EINVAL;
        out[o++] = c;
    }
    out[o] = '\0';
    return (long)o;
}

void url_path_release(struct url_path *p)
{
    for (size_t i = 0; i < p->nr_seg; i++)
        free(p->seg[i]);
    p->nr_seg = 0;
}

int url_path_parse(const char *raw, struct url_path *out)
{
    out->nr_seg = 0;
    if (raw[0] != '/')
        return -EINVAL;
    const char *p = raw;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *end = strchrnul(p, '/');
        size_t len = (size_t)(end - p);
        if (out->nr_seg == URL_MAX_SEGMENTS) {
            url_path_release(out);
            return -E2BIG;
        }
        char *seg = malloc(len + 1);
        if (!seg) {
            url_path_release(out);
            return -ENOMEM;
        }
        if (url_decode(p, len, seg, 0) < 0) {
            free(seg);
            url_path_release(out);
            return -EINVAL;
        }
        out->seg[out->nr_seg++] = seg;
        p = end;
    }
    return 0;
}

char *url_query_get(const char *query, const char *name)
{
    if (!query)
        return NULL;
    size_t nlen = strlen(name);
    const char *p = query;
    while (*p) {
        const char *end = strchrnul(p, '&');
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq ? eq : end;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : end;
            size_t vlen = (size_t)(end - v);
            char *out = malloc(vlen + 1);
            if (out && url_decode(v, vlen, out, 1) < 0) {
                free(out);
                out = NULL;
            }
            return out;
        }
        p = *end ? end + 1 : end;
    }
    return NULL;
}
