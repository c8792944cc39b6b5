/* url — percent-decoding and path splitting for request targets.
 *
 * A path is split on '/' *before* decoding, so "branches%2Ffeature" stays one segment
 * ("branches/feature"). Empty segments (from "//" or a trailing slash) are dropped.
 */
#ifndef SLIPWAY_BASE_URL_H
#define SLIPWAY_BASE_URL_H

#include <stddef.h>

#define URL_MAX_SEGMENTS 16

struct url_path {
    char *seg[URL_MAX_SEGMENTS]; /* decoded, NUL-terminated; owned by the struct */
    size_t nr_seg;
};

/* Decodes %XX escapes of s[0..len) into out (at least len+1 bytes); '+' is kept as is unless
 * `plus_is_space`. Returns the decoded length, or -EINVAL for a bad escape or an encoded NUL. */
long url_decode(const char *s, size_t len, char *out, int plus_is_space);
/* Splits and decodes a raw path (no query). 0, -EINVAL (bad escape, not starting with '/'),
 * -E2BIG (more than URL_MAX_SEGMENTS segments) or -ENOMEM. On error nothing needs releasing. */
int url_path_parse(const char *raw, struct url_path *out);
void url_path_release(struct url_path *p);
/* Finds `name` in a raw query string ("a=1&b=2") and decodes its value into a new string
 * (caller frees). Returns NULL when absent or malformed. */
char *url_query_get(const char *query, const char *name);

#endif
