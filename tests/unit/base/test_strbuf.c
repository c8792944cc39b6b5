/* Tests for strbuf: growth, the size cap and its sticky failure, detach/reset/release, and the
 * JSON string encoder (checked against jansson's parser). No files, no processes.
 * Checks are plain functions, run in a few Test cases at the end: Criterion starts a process
 * per test (~50 ms each here) and the unit tests must stay fast.
 */
#include "base/strbuf.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

TestSuite(strbuf, .timeout = 10);

/* Appends s as JSON to a fresh strbuf and returns the result (caller frees). */
static char *json_of(const char *s)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_add_json_str(&sb, s);
    cr_assert(strbuf_ok(&sb));
    char *out = strbuf_detach(&sb, NULL);
    cr_assert_not_null(out);
    return out;
}

/* Parses a JSON string literal with jansson; returns its value (caller frees). */
static char *json_parse_str(const char *lit)
{
    json_error_t e;
    json_t *j = json_loads(lit, JSON_DECODE_ANY, &e);
    cr_assert_not_null(j, "not valid JSON: %s (%s)", lit, e.text);
    cr_assert(json_is_string(j));
    char *s = strdup(json_string_value(j));
    json_decref(j);
    return s;
}

static void init_is_empty_and_never_null(void)
{
    struct strbuf a = STRBUF_INIT, b;
    strbuf_init(&b, 10);
    cr_assert_not_null(a.buf);
    cr_assert_str_eq(a.buf, "");
    cr_assert_eq(a.len, 0);
    cr_assert_eq(a.alloc, 0);
    cr_assert(strbuf_ok(&a));
    cr_assert_str_eq(b.buf, "");
    cr_assert_eq(b.cap, 10);
    strbuf_release(&a);
    strbuf_release(&b);
    cr_assert_str_eq(a.buf, "");
}

static void appends_and_stays_nul_terminated(void)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_adds(&sb, "ab");
    strbuf_addch(&sb, 'c');
    strbuf_add(&sb, "defXX", 3);
    strbuf_addf(&sb, "-%d-%s", 42, "x");
    cr_assert(strbuf_ok(&sb));
    cr_assert_str_eq(sb.buf, "abcdef-42-x");
    cr_assert_eq(sb.len, strlen("abcdef-42-x"));
    strbuf_release(&sb);
}

static void empty_appends_are_fine(void)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_adds(&sb, "");
    strbuf_add(&sb, "x", 0);
    strbuf_addf(&sb, "%s", "");
    cr_assert(strbuf_ok(&sb));
    cr_assert_eq(sb.len, 0);
    cr_assert_str_eq(sb.buf, "");
    strbuf_release(&sb);
}

static void binary_data_with_nul_bytes(void)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_add(&sb, "a\0b", 3);
    cr_assert_eq(sb.len, 3);
    cr_assert_eq(memcmp(sb.buf, "a\0b", 4), 0); /* and the terminating NUL */
    strbuf_release(&sb);
}

static void grows_past_many_doublings(void)
{
    struct strbuf sb = STRBUF_INIT;
    for (int i = 0; i < 10000; i++)
        strbuf_addch(&sb, (char)('a' + i % 26));
    cr_assert(strbuf_ok(&sb));
    cr_assert_eq(sb.len, 10000);
    cr_assert_eq(strlen(sb.buf), 10000);
    cr_assert_geq(sb.alloc, 10001);
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(sb.buf[i], 'a' + i % 26);
    strbuf_release(&sb);
}

static void addf_longer_than_its_stack_buffer(void)
{
    char big[1000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct strbuf sb = STRBUF_INIT;
    strbuf_adds(&sb, "<");
    strbuf_addf(&sb, "%s|%s", big, big);
    strbuf_adds(&sb, ">");
    cr_assert(strbuf_ok(&sb));
    cr_assert_eq(sb.len, 1 + 999 + 1 + 999 + 1);
    cr_assert_eq(strlen(sb.buf), sb.len);
    cr_assert_eq(sb.buf[0], '<');
    cr_assert_eq(sb.buf[1000], '|');
    cr_assert_eq(sb.buf[sb.len - 1], '>');
    strbuf_release(&sb);
}

static void absurd_length_fails_without_reading_data(void)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_adds(&sb, "x");
    strbuf_add(&sb, "y", SIZE_MAX); /* must fail before touching the 1-byte source */
    cr_assert_not(strbuf_ok(&sb));
    cr_assert_str_eq(sb.buf, "x");
    strbuf_release(&sb);
}

static void cap_allows_exactly_cap_bytes(void)
{
    struct strbuf sb;
    strbuf_init(&sb, 5);
    strbuf_adds(&sb, "hel");
    strbuf_addf(&sb, "%s", "lo");
    cr_assert(strbuf_ok(&sb));
    cr_assert_str_eq(sb.buf, "hello");
    cr_assert_eq(sb.len, 5);
    strbuf_release(&sb);
}

static void going_past_cap_fails_and_keeps_contents(void)
{
    struct strbuf sb;
    strbuf_init(&sb, 5);
    strbuf_adds(&sb, "hello");
    strbuf_addch(&sb, '!');
    cr_assert_not(strbuf_ok(&sb));
    cr_assert_str_eq(sb.buf, "hello");
    cr_assert_eq(sb.len, 5);
    strbuf_release(&sb);
}

static void failure_is_sticky(void)
{
    struct strbuf sb;
    strbuf_init(&sb, 4);
    strbuf_adds(&sb, "ab");
    strbuf_adds(&sb, "cde"); /* 5 > 4: fails, appends nothing */
    cr_assert_not(strbuf_ok(&sb));
    cr_assert_str_eq(sb.buf, "ab");
    /* Appends that would fit now still do nothing. */
    strbuf_adds(&sb, "c");
    strbuf_addch(&sb, 'c');
    strbuf_add(&sb, "c", 1);
    strbuf_addf(&sb, "%c", 'c');
    strbuf_add_json_str(&sb, "");
    cr_assert_not(strbuf_ok(&sb));
    cr_assert_str_eq(sb.buf, "ab");
    cr_assert_eq(sb.len, 2);
    strbuf_release(&sb);
}

static void addf_past_cap_fails_on_both_paths(void)
{
    struct strbuf small, large;
    strbuf_init(&small, 3);
    strbuf_addf(&small, "%d", 1234); /* fits the stack buffer */
    cr_assert_not(strbuf_ok(&small));
    cr_assert_str_eq(small.buf, "");

    char big[400];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    strbuf_init(&large, 300);
    strbuf_addf(&large, "%s", big); /* goes through the heap path */
    cr_assert_not(strbuf_ok(&large));
    cr_assert_eq(large.len, 0);
    cr_assert_str_eq(large.buf, "");
    strbuf_release(&small);
    strbuf_release(&large);
}

static void reset_empties_and_clears_failure_keeping_cap(void)
{
    struct strbuf sb;
    strbuf_init(&sb, 4);
    strbuf_adds(&sb, "abcdef");
    cr_assert_not(strbuf_ok(&sb));
    strbuf_reset(&sb);
    cr_assert(strbuf_ok(&sb));
    cr_assert_eq(sb.len, 0);
    cr_assert_str_eq(sb.buf, "");
    cr_assert_eq(sb.cap, 4);
    strbuf_adds(&sb, "abcd");
    cr_assert(strbuf_ok(&sb));
    cr_assert_str_eq(sb.buf, "abcd");
    strbuf_reset(&sb);
    cr_assert_str_eq(sb.buf, "");
    strbuf_release(&sb);
}

static void release_keeps_cap_and_is_reusable(void)
{
    struct strbuf sb;
    strbuf_init(&sb, 8);
    strbuf_adds(&sb, "12345678");
    strbuf_release(&sb);
    cr_assert_eq(sb.buf, strbuf_empty);
    cr_assert_eq(sb.len, 0);
    cr_assert_eq(sb.cap, 8);
    cr_assert(strbuf_ok(&sb));
    strbuf_adds(&sb, "123456789");
    cr_assert_not(strbuf_ok(&sb));
    strbuf_release(&sb);
    strbuf_release(&sb); /* twice is harmless */
    cr_assert(strbuf_ok(&sb));
}

static void detach_hands_over_the_buffer(void)
{
    struct strbuf sb;
    strbuf_init(&sb, 100);
    strbuf_adds(&sb, "payload");
    size_t len = 0;
    char *s = strbuf_detach(&sb, &len);
    cr_assert_str_eq(s, "payload");
    cr_assert_eq(len, 7);
    cr_assert_eq(sb.buf, strbuf_empty);
    cr_assert_eq(sb.len, 0);
    cr_assert_eq(sb.alloc, 0);
    cr_assert_eq(sb.cap, 100);
    strbuf_adds(&sb, "again");
    cr_assert_str_eq(sb.buf, "again");
    cr_assert_str_eq(s, "payload"); /* independent of the strbuf */
    free(s);
    strbuf_release(&sb);
}

static void detach_of_empty_is_a_freeable_empty_string(void)
{
    struct strbuf sb = STRBUF_INIT;
    size_t len = 99;
    char *s = strbuf_detach(&sb, &len);
    cr_assert_not_null(s);
    cr_assert_str_eq(s, "");
    cr_assert_eq(len, 0);
    cr_assert_neq(s, strbuf_empty);
    free(s);
    s = strbuf_detach(&sb, NULL); /* len is optional */
    cr_assert_str_eq(s, "");
    free(s);
}

static void detach_of_failed_is_null(void)
{
    struct strbuf sb;
    strbuf_init(&sb, 2);
    strbuf_adds(&sb, "ab");
    strbuf_adds(&sb, "c");
    size_t len = 99;
    cr_assert_null(strbuf_detach(&sb, &len));
    cr_assert_eq(len, 0);
    /* left empty, usable, not failed, cap kept */
    cr_assert(strbuf_ok(&sb));
    cr_assert_eq(sb.cap, 2);
    strbuf_adds(&sb, "ok");
    cr_assert_str_eq(sb.buf, "ok");
    strbuf_release(&sb);
}

static void json_plain_and_empty(void)
{
    char *s = json_of("");
    cr_assert_str_eq(s, "\"\"");
    free(s);
    s = json_of("hello world / 123");
    cr_assert_str_eq(s, "\"hello world / 123\"");
    free(s);
}

static void json_quotes_and_backslashes(void)
{
    char *s = json_of("a\"b\\c\"\\");
    cr_assert_str_eq(s, "\"a\\\"b\\\\c\\\"\\\\\"");
    free(s);
}

static void json_named_control_escapes(void)
{
    char *s = json_of("\n\r\t");
    cr_assert_str_eq(s, "\"\\n\\r\\t\"");
    free(s);
}

static void json_other_controls_as_u_escapes(void)
{
    char *s = json_of("\x01\x08\x0c\x1f\x7f|\x10");
    cr_assert_str_eq(s, "\"\\u0001\\u0008\\u000c\\u001f\\u007f|\\u0010\"");
    free(s);
}

static void json_appends_after_existing_content(void)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_adds(&sb, "{\"k\":");
    strbuf_add_json_str(&sb, "v\"");
    strbuf_addch(&sb, '}');
    cr_assert_str_eq(sb.buf, "{\"k\":\"v\\\"\"}");
    strbuf_release(&sb);
}

static void json_utf8_passes_through(void)
{
    const char *in = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac";
    char *s = json_of(in);
    size_t n = strlen(in);
    cr_assert_eq(strlen(s), n + 2);
    cr_assert_eq(s[0], '"');
    cr_assert_eq(memcmp(s + 1, in, n), 0);
    cr_assert_eq(s[n + 1], '"');
    free(s);
}

static void json_every_byte_round_trips_through_jansson(void)
{
    /* Every byte 0x01..0x7f, plus valid UTF-8, must come back unchanged from a real parser. */
    char in[256];
    size_t n = 0;
    for (int c = 1; c < 0x80; c++)
        in[n++] = (char)c;
    memcpy(in + n, "\xc3\xa9\xf0\x9f\x98\x80", 6);
    n += 6;
    in[n] = '\0';
    char *lit = json_of(in);
    for (const char *p = lit; *p; p++)
        cr_assert((unsigned char)*p >= 0x20 && *p != 0x7f, "raw control byte 0x%02x in output",
                  (unsigned char)*p);
    char *back = json_parse_str(lit);
    cr_assert_str_eq(back, in);
    free(back);
    free(lit);
}

static void json_respects_cap(void)
{
    struct strbuf sb;
    strbuf_init(&sb, 8);
    strbuf_add_json_str(&sb, "abcdef"); /* 8 bytes with quotes: fits */
    cr_assert(strbuf_ok(&sb));
    cr_assert_str_eq(sb.buf, "\"abcdef\"");
    strbuf_reset(&sb);
    strbuf_add_json_str(&sb, "abc\n\""); /* escapes make it 9 bytes */
    cr_assert_not(strbuf_ok(&sb));
    cr_assert_leq(sb.len, 8);
    strbuf_release(&sb);
}

Test(strbuf, basics)
{
    init_is_empty_and_never_null();
    appends_and_stays_nul_terminated();
    empty_appends_are_fine();
    binary_data_with_nul_bytes();
}

Test(strbuf, growth)
{
    grows_past_many_doublings();
    addf_longer_than_its_stack_buffer();
    absurd_length_fails_without_reading_data();
}

Test(strbuf, cap_and_sticky_failure)
{
    cap_allows_exactly_cap_bytes();
    going_past_cap_fails_and_keeps_contents();
    failure_is_sticky();
    addf_past_cap_fails_on_both_paths();
}

Test(strbuf, reset_and_release)
{
    reset_empties_and_clears_failure_keeping_cap();
    release_keeps_cap_and_is_reusable();
}

Test(strbuf, detach)
{
    detach_hands_over_the_buffer();
    detach_of_empty_is_a_freeable_empty_string();
    detach_of_failed_is_null();
}

Test(strbuf, json_escapes)
{
    json_plain_and_empty();
    json_quotes_and_backslashes();
    json_named_control_escapes();
    json_other_controls_as_u_escapes();
    json_appends_after_existing_content();
}

Test(strbuf, json_utf8_and_round_trip)
{
    json_utf8_passes_through();
    json_every_byte_round_trips_through_jansson();
}

Test(strbuf, json_cap)
{
    json_respects_cap();
}

/* ---- UTF-8 validity and the lossy copy (what the audit log and error bodies rely on) ---- */

static void utf8_valid_accepts_utf8_only(void)
{
    cr_assert(str_utf8_valid(""));
    cr_assert(str_utf8_valid("plain ascii /x"));
    cr_assert(str_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbd"));
    /* lone bytes, truncated and overlong sequences, a surrogate, above U+10FFFF */
    static const char *const bad[] = {
        "\xff",         "/x\xff\xfe",       "\xc3",     "a\xc3(", "\xc0\xaf", "\xe0\x80\xaf",
        "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "ok\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(str_utf8_valid(bad[i]), "accepted bad[%zu]", i);
}

/* An exact-size copy (no NUL after it), so that a read past len is an error under ASan. */
static char *exact(const char *s, size_t len)
{
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, s, len);
    return copy;
}

static void utf8_validn_reads_len_bytes_only(void)
{
    char *euro = exact("\xe2\x82\xac", 3);
    cr_assert(str_utf8_validn(euro, 3));
    cr_assert_not(str_utf8_validn(euro, 2), "a sequence cut by len");
    cr_assert_not(str_utf8_validn(euro, 1));
    cr_assert(str_utf8_validn(euro, 0));
    free(euro);
    char *nul = exact("a\0b", 3);
    cr_assert_not(str_utf8_validn(nul, 3), "a NUL inside");
    cr_assert(str_utf8_validn(nul, 1));
    free(nul);
    /* the JSON writer too stops at len, mid-sequence */
    char *cut = exact("x\xf0\x9f\x98", 4);
    struct strbuf sb = STRBUF_INIT;
    strbuf_add_json_strn(&sb, cut, 4);
    cr_assert_str_eq(sb.buf, "\"x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    strbuf_release(&sb);
    free(cut);
    /* the same verdict as the NUL-terminated form on every pair of non-NUL bytes */
    char in[3] = {0};
    for (int a = 1; a < 256; a++) {
        for (int b = 1; b < 256; b++) {
            in[0] = (char)a;
            in[1] = (char)b;
            cr_assert_eq(str_utf8_validn(in, 2), str_utf8_valid(in), "0x%02x 0x%02x", a, b);
        }
    }
}

static void lossy_replaces_each_bad_byte_and_result_is_valid(void)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_add_utf8_lossy(&sb, "POST /x\xff\xfe");
    cr_assert_str_eq(sb.buf, "POST /x\xef\xbf\xbd\xef\xbf\xbd");
    cr_assert(str_utf8_valid(sb.buf));
    strbuf_reset(&sb);
    strbuf_add_utf8_lossy(&sb, "caf\xc3\xa9 \xc3");
    cr_assert_str_eq(sb.buf, "caf\xc3\xa9 \xef\xbf\xbd");
    strbuf_release(&sb);
    /* every single byte, and every pair: the copy is always valid */
    char in[3] = {0};
    for (int a = 1; a < 256; a++) {
        for (int b = 0; b < 256; b++) {
            in[0] = (char)a;
            in[1] = (char)b;
            strbuf_add_utf8_lossy(&sb, in);
            cr_assert(str_utf8_valid(sb.buf), "0x%02x 0x%02x", a, b);
            strbuf_reset(&sb);
        }
    }
    strbuf_release(&sb);
}

Test(strbuf, utf8_valid_and_lossy)
{
    utf8_valid_accepts_utf8_only();
    utf8_validn_reads_len_bytes_only();
    lossy_replaces_each_bad_byte_and_result_is_valid();
}
