/* Tests for cron: what each field accepts (bits checked), every class of error with its column
 * and message, next() in UTC for ordinary cases, month ends, leap years, impossible dates, the
 * day-of-month / day-of-week OR rule and Sunday as 0 and 7, next() against a minute-by-minute
 * walk, and daylight saving changes in Europe/Amsterdam. Each Test runs in its own process, so
 * setting TZ in one does not reach another.
 */
#include "base/cron.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

TestSuite(cron, .timeout = 10);

static void use_tz(const char *tz)
{
    char path[128];
    snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tz);
    /* without the zone file glibc quietly uses UTC and the DST checks would mislead */
    cr_assert_eq(access(path, R_OK), 0, "%s is missing (install tzdata)", path);
    cr_assert_eq(setenv("TZ", tz, 1), 0);
    tzset();
}

static struct cron parse_ok(const char *expr)
{
    struct cron c;
    struct cron_error e = {0};
    int r = cron_parse(expr, &c, &e);
    cr_assert_eq(r, 0, "'%s': %d at %d: %s", expr, r, e.column, e.message);
    return c;
}

/* Seconds since the epoch of a UTC date and time. */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm);
}

static void show_utc(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t < 0 || !gmtime_r(&tt, &tm))
        snprintf(out, 32, "%lld", (long long)t);
    else
        strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC %a", &tm);
}

static void next_is(const char *expr, int64_t after, int64_t want)
{
    struct cron c = parse_ok(expr);
    int64_t got = cron_next(&c, after);
    char a[32], g[32], w[32];
    show_utc(after, a);
    show_utc(got, g);
    show_utc(want, w);
    cr_assert_eq(got, want, "'%s' after %s: got %s, want %s", expr, a, g, w);
}

/* ---- parsing ---- */

Test(cron, fields_set_the_right_bits)
{
    struct cron c = parse_ok("*/15 0-23/6 1,15,31 */5 1-5");
    cr_assert_eq(c.minutes, 1ULL << 0 | 1ULL << 15 | 1ULL << 30 | 1ULL << 45);
    cr_assert_eq(c.hours, 1u << 0 | 1u << 6 | 1u << 12 | 1u << 18);
    cr_assert_eq(c.days, 1u << 1 | 1u << 15 | 1u << 31);
    cr_assert_eq(c.months, 1u << 1 | 1u << 6 | 1u << 11);
    cr_assert_eq(c.weekdays, 0x3e);
    cr_assert(!c.dom_any && !c.dow_any);

    c = parse_ok("* * * * *");
    cr_assert_eq(c.minutes, (1ULL << 60) - 1);
    cr_assert_eq(c.hours, (1u << 24) - 1);
    cr_assert_eq(c.days, 0xfffffffeu);
    cr_assert_eq(c.months, 0x1ffe);
    cr_assert_eq(c.weekdays, 0x7f);
    cr_assert(c.dom_any && c.dow_any);

    c = parse_ok("1-30/5,59 0 */2 * *");
    cr_assert_eq(c.minutes, 1ULL << 1 | 1ULL << 6 | 1ULL << 11 | 1ULL << 16 | 1ULL << 21 |
                                1ULL << 26 | 1ULL << 59);
    cr_assert_eq(c.days, 0xaaaaaaaau); /* 1, 3, ..., 31 */
    cr_assert(c.dom_any, "*/2 starts with '*'");

    /* Sunday is 0, 7 or sun, and bit 0 only */
    cr_assert_eq(parse_ok("0 0 * * 0").weekdays, 1);
    cr_assert_eq(parse_ok("0 0 * * 7").weekdays, 1);
    cr_assert_eq(parse_ok("0 0 * * SUN").weekdays, 1);
    cr_assert_eq(parse_ok("0 0 * * 0,7").weekdays, 1);
    cr_assert_eq(parse_ok("0 0 * * 5-7").weekdays, 1 | 1 << 5 | 1 << 6);
    cr_assert_eq(parse_ok("0 0 * * */2").weekdays, 1 | 1 << 2 | 1 << 4 | 1 << 6);
    cr_assert_eq(parse_ok("0 0 * * */1").weekdays, 0x7f);

    /* names, any case, also in ranges and lists */
    cr_assert_eq(parse_ok("0 0 * jan,Jul,DEC *").months, 1u << 1 | 1u << 7 | 1u << 12);
    cr_assert_eq(parse_ok("0 0 * mar-may *").months, 1u << 3 | 1u << 4 | 1u << 5);
    cr_assert_eq(parse_ok("0 0 * * Mon-fri").weekdays, 0x3e);
    cr_assert_eq(parse_ok("0 0 * * sat,sun").weekdays, 1 | 1 << 6);
    cr_assert_eq(parse_ok("0 0 * * mon-fri/2").weekdays, 1 << 1 | 1 << 3 | 1 << 5);

    /* blanks: tabs, runs, before and after */
    c = parse_ok(" \t59\t23  31 12 7 \t");
    cr_assert_eq(c.minutes, 1ULL << 59);
    cr_assert_eq(c.hours, 1u << 23);
    cr_assert_eq(c.days, 1u << 31);
    cr_assert_eq(c.months, 1u << 12);
    cr_assert_eq(c.weekdays, 1);

    /* steps as large as the field */
    cr_assert_eq(parse_ok("*/59 * * * *").minutes, 1ULL | 1ULL << 59);
    cr_assert_eq(parse_ok("0 0 * */12 *").months, 1u << 1);
    cr_assert_eq(parse_ok("0 0 * * */7").weekdays, 1);

    /* leading zeros are numbers like any other */
    cr_assert_eq(parse_ok("05 007 * * *").hours, 1u << 7);
}

Test(cron, shortcuts)
{
    static const struct {
        const char *shortcut, *same;
    } cases[] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"}, {" @DAILY\t", "0 0 * * *"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cron a = parse_ok(cases[i].shortcut), b = parse_ok(cases[i].same);
        cr_assert(a.minutes == b.minutes && a.hours == b.hours && a.days == b.days &&
                      a.months == b.months && a.weekdays == b.weekdays && a.dom_any == b.dom_any &&
                      a.dow_any == b.dow_any,
                  "%s", cases[i].shortcut);
    }
}

Test(cron, errors_say_what_and_where)
{
    static const struct {
        const char *expr;
        int column;
        const char *message;
    } cases[] = {
        {"61 * * * *", 1, "minute: 61 is out of range 0-59"},
        {"0 24 * * *", 3, "hour: 24 is out of range 0-23"},
        {"0 0 0 * *", 5, "day-of-month: 0 is out of range 1-31"},
        {"0 0 32 * *", 5, "day-of-month: 32 is out of range 1-31"},
        {"0 0 * 13 *", 7, "month: 13 is out of range 1-12"},
        {"0 0 * 1-13 *", 9, "month: 13 is out of range 1-12"},
        {"0 0 * * 8", 9, "day-of-week: 8 is out of range 0-7"},
        {"99999999999999999999 * * * *", 1, "minute: 9999999999999... is out of range 0-59"},
        {"*/0 * * * *", 3, "minute: step 0 is out of range 1-59"},
        {"*/60 * * * *", 3, "minute: step 60 is out of range 1-59"},
        {"0 0-23/24 * * *", 8, "hour: step 24 is out of range 1-23"},
        {"5-2 * * * *", 1, "minute: 5-2 runs backwards"},
        {"0 0 * * fri-mon", 9, "day-of-week: fri-mon runs backwards"},
        {"0 0 * * mon-sun", 9, "day-of-week: mon-sun runs backwards"},
        {"5/10 * * * *", 2, "minute: a step goes after * or a range (*/10 or 1-30/5)"},
        {"*/ * * * *", 3, "minute: expected the step (a number) after '/'"},
        {"*/x * * * *", 3, "minute: expected the step (a number) after '/'"},
        {"1,,2 * * * *", 3, "minute: an empty item in the list"},
        {",1 * * * *", 1, "minute: an empty item in the list"},
        {"1, * * * *", 3, "minute: an empty item in the list"},
        {"0 0 * * 1-", 11, "day-of-week: expected a number, found the end"},
        {"0 0 * * -1", 9, "day-of-week: expected a number, found '-'"},
        {"0 0 1-* * *", 7, "day-of-month: expected a number, found '*'"},
        {"** * * * *", 2,
         "minute: unexpected '*' (use *, numbers, ranges 1-5, lists 1,15 and steps */10 or "
         "1-30/5)"},
        {"0 0 1.5 * *", 6,
         "day-of-month: unexpected '.' (use *, numbers, ranges 1-5, lists 1,15 "
         "and steps */10 or 1-30/5)"},
        {"0 0 * * *\n", 10,
         "day-of-week: unexpected '?' (use *, numbers, ranges 1-5, lists 1,15 "
         "and steps */10 or 1-30/5)"},
        {"0 0 * foo *", 7, "month: 'foo' is not a month (1-12 or jan-dec)"},
        {"0 0 * january *", 7, "month: 'january' is not a month (1-12 or jan-dec)"},
        {"0 0 * * monday", 9, "day-of-week: 'monday' is not a day (0-7 or sun-sat)"},
        {"0 0 * * 1-xyz", 11, "day-of-week: 'xyz' is not a day (0-7 or sun-sat)"},
        {"mon * * * *", 1, "minute: 'mon' is not a number"},
        {"0 0 jan * *", 5, "day-of-month: 'jan' is not a number"},
        {"0 0 * * \xc3\xa9", 9, "day-of-week: expected a number, found '?'"},
        {"0 0 * abcdefghijklmnopqrstuvwxyz *", 7,
         "month: 'abcdefghijklm...' is not a month "
         "(1-12 or jan-dec)"},
        {"", 1,
         "the expression is empty; cron needs 5 fields: minute hour day-of-month month "
         "day-of-week"},
        {" \t ", 1,
         "the expression is empty; cron needs 5 fields: minute hour day-of-month month "
         "day-of-week"},
        {"0 * * *", 1, "found 4 fields; cron needs 5: minute hour day-of-month month day-of-week"},
        {"  0", 3, "found 1 field; cron needs 5: minute hour day-of-month month day-of-week"},
        {"0 * * * * 2024", 11,
         "found 6 fields; cron needs 5: minute hour day-of-month month day-of-week"},
        {"0 * * * * * *", 11,
         "found 7 fields; cron needs 5: minute hour day-of-month month day-of-week"},
        {"@reboot", 1,
         "'@reboot' is not a shortcut (use @hourly, @daily, @weekly, @monthly or @yearly, or 5 "
         "fields)"},
        {"  @day", 3,
         "'@day' is not a shortcut (use @hourly, @daily, @weekly, @monthly or @yearly, or 5 "
         "fields)"},
        {"@daily 5", 8, "a shortcut like @daily stands alone"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cron c, before;
        memset(&c, 0x5a, sizeof(c));
        before = c;
        struct cron_error e = {0};
        int r = cron_parse(cases[i].expr, &c, &e);
        cr_assert_eq(r, -EINVAL, "'%s' parsed", cases[i].expr);
        cr_assert_str_eq(e.message, cases[i].message, "'%s'", cases[i].expr);
        cr_assert_eq(e.column, cases[i].column, "'%s': column %d, want %d", cases[i].expr, e.column,
                     cases[i].column);
        cr_assert_eq(memcmp(&c, &before, sizeof(c)), 0, "'%s': *out was written", cases[i].expr);
        /* err may be NULL */
        cr_assert_eq(cron_parse(cases[i].expr, &c, NULL), -EINVAL);
    }
}

Test(cron, length_limit)
{
    char expr[CRON_MAX_EXPR + 2];
    struct cron c;
    struct cron_error e;
    /* exactly the limit: "0 0 * * *" with blanks before it */
    memset(expr, ' ', CRON_MAX_EXPR);
    memcpy(expr + CRON_MAX_EXPR - 9, "0 0 * * *", 9);
    expr[CRON_MAX_EXPR] = '\0';
    cr_assert_eq(cron_parse(expr, &c, &e), 0, "%s", e.message);
    memmove(expr, expr + 1, CRON_MAX_EXPR);
    expr[CRON_MAX_EXPR - 1] = ' ';
    expr[CRON_MAX_EXPR] = ' ';
    expr[CRON_MAX_EXPR + 1] = '\0';
    cr_assert_eq(cron_parse(expr, &c, &e), -EINVAL);
    cr_assert_str_eq(e.message, "the expression is longer than 256 bytes");
    cr_assert_eq(e.column, CRON_MAX_EXPR + 1);
}

/* ---- next ---- */

Test(cron, next_ordinary)
{
    use_tz("UTC");
    /* strictly after, on whole minutes */
    next_is("*/15 * * * *", utc(2024, 1, 1, 10, 7) + 30, utc(2024, 1, 1, 10, 15));
    next_is("*/15 * * * *", utc(2024, 1, 1, 10, 15), utc(2024, 1, 1, 10, 30));
    next_is("*/15 * * * *", utc(2024, 1, 1, 10, 15) - 1, utc(2024, 1, 1, 10, 15));
    next_is("* * * * *", utc(2024, 1, 1, 10, 15) + 59, utc(2024, 1, 1, 10, 16));
    next_is("*/15 * * * *", utc(2024, 1, 1, 23, 50), utc(2024, 1, 2, 0, 0));
    /* hour, day and year roll over */
    next_is("0 3 * * *", utc(2024, 1, 1, 3, 0), utc(2024, 1, 2, 3, 0));
    next_is("30 0 1 * *", utc(2024, 1, 1, 0, 31), utc(2024, 2, 1, 0, 30));
    next_is("59 23 31 12 *", utc(2024, 12, 31, 23, 59), utc(2025, 12, 31, 23, 59));
    next_is("@yearly", utc(2024, 6, 1, 0, 0), utc(2025, 1, 1, 0, 0));
    /* weekdays: Friday 2024-10-04 after noon, then Monday the 7th */
    next_is("0 12 * * 1-5", utc(2024, 10, 4, 13, 0), utc(2024, 10, 7, 12, 0));
    next_is("0 12 * * mon-fri", utc(2024, 10, 4, 11, 0), utc(2024, 10, 4, 12, 0));
    /* months by name */
    next_is("0 0 1 jul *", utc(2024, 7, 1, 0, 0), utc(2025, 7, 1, 0, 0));
    /* a minute list within an hour, then the next matching hour */
    next_is("5,50 9-10 * * *", utc(2024, 3, 3, 9, 6), utc(2024, 3, 3, 9, 50));
    next_is("5,50 9-10 * * *", utc(2024, 3, 3, 10, 50), utc(2024, 3, 4, 9, 5));
    /* before 1970 works too */
    next_is("0 0 1 1 *", utc(1969, 6, 1, 0, 0), utc(1970, 1, 1, 0, 0));
}

Test(cron, next_month_ends_and_leap_years)
{
    use_tz("UTC");
    /* the 31st skips the months without one */
    next_is("0 0 31 * *", utc(2024, 3, 31, 0, 0), utc(2024, 5, 31, 0, 0));
    next_is("0 0 31 * *", utc(2024, 7, 31, 0, 0), utc(2024, 8, 31, 0, 0));
    next_is("0 0 30 * *", utc(2024, 1, 30, 0, 0), utc(2024, 3, 30, 0, 0));
    /* the 29th of February: 2024 is a leap year, 2025-2027 are not, 2100 is not */
    next_is("0 0 29 2 *", utc(2023, 3, 1, 0, 0), utc(2024, 2, 29, 0, 0));
    next_is("0 0 29 2 *", utc(2024, 2, 29, 0, 0), utc(2028, 2, 29, 0, 0));
    next_is("0 0 29 * *", utc(2023, 1, 29, 0, 0), utc(2023, 3, 29, 0, 0));
    next_is("0 0 29 * *", utc(2024, 1, 29, 0, 0), utc(2024, 2, 29, 0, 0));
    next_is("0 0 29 2 *", utc(2096, 3, 1, 0, 0), -1);                     /* 2104 is past 5 years */
    next_is("0 0 29 2 *", utc(2000, 1, 1, 0, 0), utc(2000, 2, 29, 0, 0)); /* 2000 was */
    /* the last day of February, either way */
    next_is("0 0 28,29 2 *", utc(2023, 2, 28, 0, 0), utc(2024, 2, 28, 0, 0));
    /* dates that never come: -1, and quickly */
    next_is("0 0 30 2 *", utc(2024, 1, 1, 0, 0), -1);
    next_is("0 0 31 2 *", utc(2024, 1, 1, 0, 0), -1);
    next_is("0 0 31 4,6,9,11 *", utc(2024, 1, 1, 0, 0), -1);
    next_is("* * 31 apr *", utc(2024, 1, 1, 0, 0), -1);
}

Test(cron, next_day_of_month_or_day_of_week)
{
    use_tz("UTC");
    /* both restricted: either. October 2024: Fridays are the 4th, 11th, 18th, 25th; the 13th is
     * a Sunday */
    next_is("0 0 13 * fri", utc(2024, 10, 11, 0, 0), utc(2024, 10, 13, 0, 0));
    next_is("0 0 13 * fri", utc(2024, 10, 13, 0, 0), utc(2024, 10, 18, 0, 0));
    next_is("0 0 13 * 5", utc(2024, 10, 1, 0, 0), utc(2024, 10, 4, 0, 0));
    /* Feb 30 never comes, but Mondays do */
    next_is("0 0 30 2 1", utc(2024, 1, 31, 0, 0), utc(2024, 2, 5, 0, 0));
    /* day of month '*' (even with a step): both must match. Odd-numbered Mondays: the 7th, 21st */
    next_is("0 0 */2 * mon", utc(2024, 10, 1, 0, 0), utc(2024, 10, 7, 0, 0));
    next_is("0 0 */2 * mon", utc(2024, 10, 7, 0, 0), utc(2024, 10, 21, 0, 0));
    /* day of week '*': day of month alone */
    next_is("0 0 13 * *", utc(2024, 10, 1, 0, 0), utc(2024, 10, 13, 0, 0));
    next_is("0 0 13 * */1", utc(2024, 10, 1, 0, 0), utc(2024, 10, 13, 0, 0));
    /* Sunday, written three ways: the 6th */
    next_is("0 0 * * 0", utc(2024, 10, 1, 0, 0), utc(2024, 10, 6, 0, 0));
    next_is("0 0 * * 7", utc(2024, 10, 1, 0, 0), utc(2024, 10, 6, 0, 0));
    next_is("0 0 * * sun", utc(2024, 10, 1, 0, 0), utc(2024, 10, 6, 0, 0));
    next_is("0 0 * * 6-7", utc(2024, 10, 1, 0, 0), utc(2024, 10, 5, 0, 0));
    next_is("0 0 * * 6-7", utc(2024, 10, 5, 0, 0), utc(2024, 10, 6, 0, 0));
}

/* next() against a walk of every minute, for a month of minutes from a few starts. */
Test(cron, next_agrees_with_a_minute_by_minute_walk)
{
    static const char *const exprs[] = {
        "* * * * *",   "*/7 */5 * * *",      "0 0 13 * fri",   "0 0 */2 * mon",
        "59 23 * * 0", "1-10/3 2,4 1-7 * 2", "0 12 29-31 * *", "15 * * feb,mar sat",
    };
    use_tz("UTC");
    for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
        struct cron c = parse_ok(exprs[i]);
        int64_t t = utc(2024, 2, 20, 0, 0) - 17;
        for (int fired = 0; fired < 40; fired++) {
            int64_t want = -1;
            for (int64_t m = (t / 60 + 1) * 60; m < t + 62 * 86400; m += 60) {
                time_t tt = (time_t)m;
                struct tm tm;
                gmtime_r(&tt, &tm);
                if (cron_matches(&c, &tm)) {
                    want = m;
                    break;
                }
            }
            cr_assert_neq(want, -1, "'%s' never fires in the walk", exprs[i]);
            char a[32], g[32], w[32];
            int64_t got = cron_next(&c, t);
            show_utc(t, a);
            show_utc(got, g);
            show_utc(want, w);
            cr_assert_eq(got, want, "'%s' after %s: got %s, want %s", exprs[i], a, g, w);
            t = got + (fired % 3 == 0 ? 0 : 1 + fired * 7); /* also from inside a minute */
        }
    }
}

/* Europe/Amsterdam, 2024: clocks go from 02:00 CET to 03:00 CEST on 31 March (01:00 UTC), and
 * from 03:00 CEST back to 02:00 CET on 27 October (01:00 UTC). */
Test(cron, next_across_daylight_saving_changes)
{
    use_tz("Europe/Amsterdam");
    /* 02:30 does not exist on 31 March: skipped, not moved */
    next_is("30 2 * * *", utc(2024, 3, 30, 11, 0), utc(2024, 4, 1, 0, 30));
    next_is("30 2 * * *", utc(2024, 3, 30, 1, 30), utc(2024, 4, 1, 0, 30));
    next_is("30 2 31 3 *", utc(2024, 3, 1, 0, 0), utc(2025, 3, 31, 0, 30));
    /* every half hour: 01:30 CET, then 03:00 CEST */
    next_is("*/30 * * * *", utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 0));
    next_is("* * * * *", utc(2024, 3, 31, 0, 59), utc(2024, 3, 31, 1, 0));
    /* 02:30 happens twice on 27 October: it fires at the first (CEST, 00:30 UTC) only */
    next_is("30 2 * * *", utc(2024, 10, 26, 11, 0), utc(2024, 10, 27, 0, 30));
    next_is("30 2 * * *", utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30));
    /* asked during the repeated hour (02:10 CET, after 02:30 CEST fired): tomorrow */
    next_is("30 2 * * *", utc(2024, 10, 27, 1, 10), utc(2024, 10, 28, 1, 30));
    /* asked between the two 02:30s (02:45 CEST) */
    next_is("30 2 * * *", utc(2024, 10, 27, 0, 45), utc(2024, 10, 28, 1, 30));
    /* hourly: 02:00 CEST (00:00 UTC) fired, 02:00 CET is its second time, 03:00 CET is next */
    next_is("0 * * * *", utc(2024, 10, 27, 0, 0), utc(2024, 10, 27, 2, 0));
    /* a time away from the change is in CET after it: 03:30 CET = 02:30 UTC */
    next_is("30 3 27 10 *", utc(2024, 10, 1, 0, 0), utc(2024, 10, 27, 2, 30));
    /* and CEST before it: 01:30 CEST = 23:30 UTC the day before */
    next_is("30 1 27 10 *", utc(2024, 10, 1, 0, 0), utc(2024, 10, 26, 23, 30));
}
