/* Tests for url: percent-decoding (bad escapes, encoded NUL, '+'), path splitting before decoding,
 * the segment limit, and query lookup. Inputs are copied to exact-size heap buffers where the
 * length matters, so a sanitizer build catches reads past `len`.
 * Checks are plain functions, run in a few Test cases at the end: Criterion starts a process
 * per test (~50 ms each here) and the unit tests must stay fast.
 */
#include "base/url.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(url, .timeout = 10);

/* Decodes s[0..len) from an exact-size copy; returns the result, *out holds the text. */
static long decode(const char *s, size_t len, int plus, char **out)
{
    char *in = malloc(len ? len : 1);
    cr_assert_not_null(in);
    memcpy(in, s, len);
    *out = malloc(len + 1);
    cr_assert_not_null(*out);
    long n = url_decode(in, len, *out, plus);
    free(in);
    return n;
}

static void assert_decodes(const char *s, int plus, const char *want)
{
    char *out;
    long n = decode(s, strlen(s), plus, &out);
    cr_assert_eq(n, (long)strlen(want), "url_decode(\"%s\", %d) = %ld", s, plus, n);
    cr_assert_str_eq(out, want, "url_decode(\"%s\", %d)", s, plus);
    free(out);
}

static void assert_decode_fails(const char *s, size_t len)
{
    char *out;
    for (int plus = 0; plus <= 1; plus++) {
        long n = decode(s, len, plus, &out);
        cr_assert_eq(n, -EINVAL, "url_decode(\"%.*s\", %d) = %ld, want -EINVAL", (int)len, s, plus,
                     n);
        free(out);
    }
}

/* Parses raw and checks it splits into exactly the NULL-terminated list of segments. */
static void assert_path(const char *raw, const char *const *want)
{
    struct url_path p;
    int r = url_path_parse(raw, &p);
    cr_assert_eq(r, 0, "url_path_parse(\"%s\") = %d", raw, r);
    size_t n = 0;
    while (want[n])
        n++;
    cr_assert_eq(p.nr_seg, n, "url_path_parse(\"%s\"): %zu segments, want %zu", raw, p.nr_seg, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(p.seg[i], want[i], "url_path_parse(\"%s\") segment %zu", raw, i);
    url_path_release(&p);
    cr_assert_eq(p.nr_seg, 0);
}

static void assert_path_fails(const char *raw, int err)
{
    struct url_path p;
    p.nr_seg = 99;
    int r = url_path_parse(raw, &p);
    cr_assert_eq(r, err, "url_path_parse(\"%s\") = %d, want %d", raw, r, err);
    cr_assert_eq(p.nr_seg, 0, "url_path_parse(\"%s\") left %zu segments after an error", raw,
                 p.nr_seg);
}

/* ---- url_decode ---- */

static void decode_plain_text_unchanged(void)
{
    assert_decodes("", 0, "");
    assert_decodes("abc-._~/", 0, "abc-._~/");
}

static void decode_escapes_in_either_case(void)
{
    assert_decodes("%41%62", 0, "Ab");
    assert_decodes("%2f%2F", 0, "//");
    assert_decodes("a%20b", 0, "a b");
    assert_decodes("%25", 0, "%");
    assert_decodes("%2541", 0, "%41"); /* decoded once, not twice */
    assert_decodes("%C3%A9", 0, "\xc3\xa9");
    assert_decodes("%ff", 0, "\xff");
}

static void decode_bad_escapes(void)
{
    const char *bad[] = {"%", "%4", "%zz", "%g1", "%1g", "a%", "ab%4", "%%41", "%-1", "% 1", "%+1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_decode_fails(bad[i], strlen(bad[i]));
}

static void decode_rejects_encoded_and_raw_nul(void)
{
    assert_decode_fails("%00", 3);
    assert_decode_fails("a%00b", 5);
    assert_decode_fails("a\0b", 3);
}

static void decode_plus_handling(void)
{
    assert_decodes("a+b", 0, "a+b");
    assert_decodes("a+b", 1, "a b");
    assert_decodes("++", 1, "  ");
    assert_decodes("%2B", 1, "+"); /* an encoded plus stays a plus */
    assert_decodes("%2b+", 1, "+ ");
}

static void decode_stops_at_len(void)
{
    char *out;
    long n = decode("abc%41", 3, 0, &out);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(out, "abc");
    free(out);
    /* an escape cut short by len is bad, even if the bytes after it would complete it */
    assert_decode_fails("%41", 2);
    assert_decode_fails("x%4", 3);
}

static void decode_output_never_longer_than_input(void)
{
    const char *in = "%61%62%63def%20+";
    char *out;
    long n = decode(in, strlen(in), 1, &out);
    cr_assert_eq(n, 8);
    cr_assert_leq((size_t)n, strlen(in));
    cr_assert_str_eq(out, "abcdef  ");
    free(out);
}

/* ---- url_path_parse ---- */

static void path_root_has_no_segments(void)
{
    const char *none[] = {NULL};
    assert_path("/", none);
    assert_path("//", none);
    assert_path("///", none);
}

static void path_simple(void)
{
    const char *want[] = {"api", "1", "apps", NULL};
    assert_path("/api/1/apps", want);
    assert_path("/api/1/apps/", want);
    assert_path("//api///1//apps//", want);
}

static void path_splits_before_decoding(void)
{
    const char *want[] = {"a", "b/c", NULL};
    assert_path("/a/b%2Fc/", want);
    const char *branch[] = {"api",       "1", "apps", "calc", "branches", "branches/feature",
                            "revisions", NULL};
    assert_path("/api/1/apps/calc/branches/branches%2Ffeature/revisions", branch);
}

static void path_decodes_segments_but_not_plus(void)
{
    const char *want[] = {"a b", "c+d", "%", NULL};
    assert_path("/a%20b/c+d/%25", want);
}

static void path_must_be_absolute(void)
{
    assert_path_fails("", -EINVAL);
    assert_path_fails("a", -EINVAL);
    assert_path_fails("a/b", -EINVAL);
    assert_path_fails("%2Fa", -EINVAL);
    assert_path_fails(" /a", -EINVAL);
}

static void path_bad_escape_in_any_segment(void)
{
    assert_path_fails("/%", -EINVAL);
    assert_path_fails("/%zz", -EINVAL);
    assert_path_fails("/a/b/%4", -EINVAL);
    assert_path_fails("/a/%00/b", -EINVAL);
    assert_path_fails("/a/b/c%", -EINVAL);
}

static void path_sixteen_segments_fit(void)
{
    char raw[256] = "";
    size_t o = 0;
    for (int i = 0; i < URL_MAX_SEGMENTS; i++)
        o += (size_t)snprintf(raw + o, sizeof(raw) - o, "/s%d", i);
    struct url_path p;
    cr_assert_eq(url_path_parse(raw, &p), 0);
    cr_assert_eq(p.nr_seg, URL_MAX_SEGMENTS);
    cr_assert_str_eq(p.seg[0], "s0");
    cr_assert_str_eq(p.seg[URL_MAX_SEGMENTS - 1], "s15");
    url_path_release(&p);
}

static void path_too_many_segments(void)
{
    char raw[256] = "";
    size_t o = 0;
    for (int i = 0; i <= URL_MAX_SEGMENTS; i++)
        o += (size_t)snprintf(raw + o, sizeof(raw) - o, "/s%d", i);
    assert_path_fails(raw, -E2BIG);
    /* the limit counts segments, not slashes: empty ones are dropped first */
    char sparse[256] = "";
    o = 0;
    for (int i = 0; i < URL_MAX_SEGMENTS; i++)
        o += (size_t)snprintf(sparse + o, sizeof(sparse) - o, "//s%d//", i);
    struct url_path p;
    cr_assert_eq(url_path_parse(sparse, &p), 0);
    cr_assert_eq(p.nr_seg, URL_MAX_SEGMENTS);
    url_path_release(&p);
}

static void path_release_is_idempotent(void)
{
    struct url_path p;
    cr_assert_eq(url_path_parse("/a/b", &p), 0);
    url_path_release(&p);
    url_path_release(&p);
    cr_assert_eq(p.nr_seg, 0);
}

/* ---- url_query_get ---- */

static void assert_query(const char *query, const char *name, const char *want)
{
    char *v = url_query_get(query, name);
    if (!want) {
        cr_assert_null(v, "url_query_get(\"%s\", \"%s\") = \"%s\", want NULL", query, name, v);
        return;
    }
    cr_assert_not_null(v, "url_query_get(\"%s\", \"%s\") = NULL, want \"%s\"", query, name, want);
    cr_assert_str_eq(v, want, "url_query_get(\"%s\", \"%s\")", query, name);
    free(v);
}

static void query_finds_each_parameter(void)
{
    assert_query("a=1&b=2&c=3", "a", "1");
    assert_query("a=1&b=2&c=3", "b", "2");
    assert_query("a=1&b=2&c=3", "c", "3");
    assert_query("service=git-upload-pack", "service", "git-upload-pack");
    assert_query("limit=5", "limit", "5");
}

static void query_absent(void)
{
    cr_assert_null(url_query_get(NULL, "a"));
    assert_query("", "a", NULL);
    assert_query("a=1&b=2", "c", NULL);
    assert_query("ab=1", "a", NULL);  /* no prefix match */
    assert_query("a=1", "ab", NULL);  /* nor a longer name */
    assert_query("xa=1", "a", NULL);  /* nor a suffix */
    assert_query("b=a=1", "a", NULL); /* a name inside a value is not a name */
}

static void query_empty_and_valueless(void)
{
    assert_query("a", "a", "");
    assert_query("a=", "a", "");
    assert_query("a&b=2", "b", "2");
    assert_query("&&b=2&", "b", "2");
}

static void query_first_occurrence_wins(void)
{
    assert_query("a=1&a=2", "a", "1");
}

static void query_value_is_decoded_with_plus_as_space(void)
{
    assert_query("q=hello+world%21", "q", "hello world!");
    assert_query("q=a%2Bb", "q", "a+b");
    assert_query("q=a=b", "q", "a=b");
    assert_query("cursor=o%3A10", "cursor", "o:10");
}

static void query_malformed_value_is_null(void)
{
    assert_query("q=%zz", "q", NULL);
    assert_query("q=%00", "q", NULL);
    assert_query("q=%4", "q", NULL);
    assert_query("a=1&q=%", "q", NULL);
    assert_query("q=%zz&b=2", "b", "2"); /* other parameters are unaffected */
}

Test(url, decode_valid)
{
    decode_plain_text_unchanged();
    decode_escapes_in_either_case();
    decode_plus_handling();
    decode_stops_at_len();
    decode_output_never_longer_than_input();
}

Test(url, decode_invalid)
{
    decode_bad_escapes();
    decode_rejects_encoded_and_raw_nul();
}

Test(url, path_splitting)
{
    path_root_has_no_segments();
    path_simple();
    path_splits_before_decoding();
    path_decodes_segments_but_not_plus();
    path_release_is_idempotent();
}

Test(url, path_errors)
{
    path_must_be_absolute();
    path_bad_escape_in_any_segment();
}

Test(url, path_segment_limit)
{
    path_sixteen_segments_fit();
    path_too_many_segments();
}

Test(url, query_found)
{
    query_finds_each_parameter();
    query_empty_and_valueless();
    query_first_occurrence_wins();
    query_value_is_decoded_with_plus_as_space();
}

Test(url, query_absent_or_malformed)
{
    query_absent();
    query_malformed_value_is_null();
}
