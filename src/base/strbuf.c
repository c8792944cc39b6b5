/* strbuf — growable string with a sticky error flag; see strbuf.h. */
#include "base/strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

char strbuf_empty[1];

void strbuf_init(struct strbuf *sb, size_t cap)
{
    *sb = (struct strbuf){.buf = strbuf_empty, .cap = cap};
}

void strbuf_release(struct strbuf *sb)
{
    if (sb->alloc)
        free(sb->buf);
    size_t cap = sb->cap;
    strbuf_init(sb, cap);
}

void strbuf_reset(struct strbuf *sb)
{
    sb->len = 0;
    sb->failed = false;
    if (sb->alloc)
        sb->buf[0] = '\0';
}

char *strbuf_detach(struct strbuf *sb, size_t *len)
{
    char *r = NULL;
    if (!sb->failed)
        r = sb->alloc ? sb->buf : strdup("");
    else if (sb->alloc)
        free(sb->buf);
    if (len)
        *len = r ? sb->len : 0;
    size_t cap = sb->cap;
    strbuf_init(sb, cap);
    return r;
}

/* Makes room for `extra` more bytes plus the NUL; false (and failed) if it cannot. */
static bool grow(struct strbuf *sb, size_t extra)
{
    if (sb->failed)
        return false;
    if (extra > SIZE_MAX / 2 - sb->len || (sb->cap && sb->len + extra > sb->cap)) {
        sb->failed = true;
        return false;
    }
    size_t need = sb->len + extra + 1;
    if (need <= sb->alloc)
        return true;
    size_t n = sb->alloc ? sb->alloc : 64;
    while (n < need)
        n *= 2;
    char *p = realloc(sb->alloc ? sb->buf : NULL, n);
    if (!p) {
        sb->failed = true;
        return false;
    }
    if (!sb->alloc)
        p[0] = '\0';
    sb->buf = p;
    sb->alloc = n;
    return true;
}

void strbuf_add(struct strbuf *sb, const void *data, size_t len)
{
    if (!grow(sb, len))
        return;
    memcpy(sb->buf + sb->len, data, len);
    sb->len += len;
    sb->buf[sb->len] = '\0';
}

void strbuf_adds(struct strbuf *sb, const char *s)
{
    strbuf_add(sb, s, strlen(s));
}

void strbuf_addch(struct strbuf *sb, char c)
{
    strbuf_add(sb, &c, 1);
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->failed = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        strbuf_add(sb, small, (size_t)n);
        return;
    }
    if (!grow(sb, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if it is not one or needs more than the
 * `avail` bytes there (at least 1). A NUL stops a sequence: continuation checks fail on it. */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = p[0] >= 0xc2 && p[0] <= 0xdf   ? 2
               : p[0] >= 0xe0 && p[0] <= 0xef ? 3
               : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
                                              : 0;
    if (n == 0 || n > avail)
        return 0;
    if (n == 2)
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (n == 3) {
        unsigned lo = p[0] == 0xe0 ? 0xa0 : 0x80, hi = p[0] == 0xed ? 0x9f : 0xbf;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    unsigned lo = p[0] == 0xf0 ? 0x90 : 0x80, hi = p[0] == 0xf4 ? 0x8f : 0xbf;
    return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80 ? 4 : 0;
}

void strbuf_add_json_str(struct strbuf *sb, const char *s)
{
    strbuf_add_json_strn(sb, s, strlen(s));
}

void strbuf_add_json_strn(struct strbuf *sb, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    strbuf_addch(sb, '"');
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
            p++;
        strbuf_add(sb, run, (size_t)(p - run));
        if (p == end)
            break;
        if (*p >= 0x80) {
            size_t n = utf8_seq(p, (size_t)(end - p));
            if (n)
                strbuf_add(sb, p, n);
            else
                strbuf_adds(sb, "\xef\xbf\xbd"); /* not UTF-8: U+FFFD */
            p += n ? n : 1;
            continue;
        }
        switch (*p) {
        case '"':
            strbuf_adds(sb, "\\\"");
            break;
        case '\\':
            strbuf_adds(sb, "\\\\");
            break;
        case '\n':
            strbuf_adds(sb, "\\n");
            break;
        case '\r':
            strbuf_adds(sb, "\\r");
            break;
        case '\t':
            strbuf_adds(sb, "\\t");
            break;
        default: {
            char esc[7] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15], 0};
            strbuf_adds(sb, esc);
        }
        }
        p++;
    }
    strbuf_addch(sb, '"');
}

void strbuf_add_utf8_lossy(struct strbuf *sb, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        const unsigned char *run = p;
        size_t n;
        while (*p && (n = utf8_seq(p, SIZE_MAX)) > 0)
            p += n; /* utf8_seq stops at the NUL */
        strbuf_add(sb, run, (size_t)(p - run));
        if (*p) {
            strbuf_adds(sb, "\xef\xbf\xbd");
            p++;
        }
    }
}

void str_utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = utf8_seq(p, SIZE_MAX); /* stops at the NUL */
        if (n)
            p += n;
        else
            *p++ = '?';
    }
}

bool str_utf8_validn(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    size_t n;
    while (p < end && *p && (n = utf8_seq(p, (size_t)(end - p))) > 0)
        p += n;
    return p == end;
}

bool str_utf8_valid(const char *s)
{
    return str_utf8_validn(s, strlen(s));
}
