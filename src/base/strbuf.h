/* strbuf — a growable, always NUL-terminated byte string with an optional size cap.
 *
 * Lifecycle: `struct strbuf sb = STRBUF_INIT;` (or strbuf_init), append, use sb.buf, then
 * strbuf_release(). `buf` is never NULL. Errors are sticky: an allocation failure or going past
 * `cap` sets `failed`, and further appends do nothing; check once with strbuf_ok() at the end.
 * Not for secrets: released memory is not wiped.
 */
#ifndef SLIPWAY_BASE_STRBUF_H
#define SLIPWAY_BASE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *buf;
    size_t len;
    size_t alloc; /* 0 while buf points at the shared empty string */
    size_t cap;   /* 0: no limit; otherwise the largest len allowed */
    bool failed;
};

extern char strbuf_empty[];
#define STRBUF_INIT                                                                                \
    {                                                                                              \
        .buf = strbuf_empty                                                                        \
    }

void strbuf_init(struct strbuf *sb, size_t cap);
/* Frees the contents; the strbuf is empty and usable again (the cap is kept). */
void strbuf_release(struct strbuf *sb);
/* Takes the buffer out (caller frees with free()); the strbuf is left empty. NULL if failed. */
char *strbuf_detach(struct strbuf *sb, size_t *len);

void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_adds(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, char c);
__attribute__((format(printf, 2, 3))) void strbuf_addf(struct strbuf *sb, const char *fmt, ...);
/* Appends s as a JSON string, with its quotes; bytes that are not UTF-8 become U+FFFD, so the
 * result is always valid JSON. */
void strbuf_add_json_str(struct strbuf *sb, const char *s);
/* The same for s[0..len) (no byte past len is read). */
void strbuf_add_json_strn(struct strbuf *sb, const char *s, size_t len);
/* Appends s as UTF-8, each byte that is not part of a valid sequence replaced by U+FFFD. */
void strbuf_add_utf8_lossy(struct strbuf *sb, const char *s);
/* Whether s is valid UTF-8 (what strbuf_add_utf8_lossy copies unchanged): no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
bool str_utf8_valid(const char *s);
/* The same for s[0..len), which must hold no NUL byte either (so that it is a C string's
 * content); no byte past len is read. */
bool str_utf8_validn(const char *s, size_t len);
/* Makes s valid UTF-8 in place, at the same length: each byte that does not begin a valid
 * sequence becomes '?' (a message cut inside a character, names that may be anything). */
void str_utf8_fix(char *s);
void strbuf_reset(struct strbuf *sb);
static inline bool strbuf_ok(const struct strbuf *sb)
{
    return !sb->failed;
}

#endif
