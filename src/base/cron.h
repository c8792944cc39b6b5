/* cron — 5-field cron expressions as Vixie cron and POSIX crontab read them, and the next time
 * one fires. A leaf: no allocation, no logging, no I/O; it does not run or store anything.
 *
 * An expression is five fields separated by spaces or tabs (blanks before the first and after
 * the last are ignored), at most CRON_MAX_EXPR bytes:
 *
 *     minute (0-59)  hour (0-23)  day-of-month (1-31)  month (1-12)  day-of-week (0-7)
 *
 * Each field is a comma-separated list of items; an item is
 *     *          every value of the field
 *     N          one value
 *     A-B        A to B inclusive (A <= B: a range does not wrap around)
 *     *\/S, A-B/S every S-th value of * or A-B, starting at its first
 * Months may be named jan..dec and days of the week sun..sat (three letters, any case), also in
 * ranges (mon-fri). Day of week 0 and 7 are both Sunday. A step goes from 1 to the field's
 * largest value; a number alone takes no step ("5/10" is refused, as Vixie cron does).
 *
 * Days: when day-of-month and day-of-week are both restricted (neither field starts with '*'),
 * a day matches when EITHER matches ("0 0 13 * fri" runs on every 13th and every Friday);
 * otherwise it must match both (so "0 0 *\/2 * mon" runs on Mondays with an odd day of month).
 *
 * Shortcuts, for the whole expression: @yearly (= @annually, "0 0 1 1 *"), @monthly
 * ("0 0 1 * *"), @weekly ("0 0 * * 0"), @daily (= @midnight, "0 0 * * *"), @hourly
 * ("0 * * * *"). @reboot is refused: nothing here knows when the server started.
 */
#ifndef SLIPWAY_BASE_CRON_H
#define SLIPWAY_BASE_CRON_H

#include <stdbool.h>
#include <stdint.h>

struct tm;

#define CRON_MAX_EXPR 256 /* bytes of an expression */

/* A parsed expression: bit n set when value n matches. Only bits in range are ever set; Sunday
 * is bit 0 of weekdays whether it was written 0, 7 or sun. */
struct cron {
    uint64_t minutes; /* bits 0..59 */
    uint32_t hours;   /* bits 0..23 */
    uint32_t days;    /* bits 1..31 (day of month) */
    uint16_t months;  /* bits 1..12 */
    uint8_t weekdays; /* bits 0..6, 0 = Sunday */
    bool dom_any;     /* the day-of-month field starts with '*' (see the day rule above) */
    bool dow_any;     /* the day-of-week field starts with '*' */
};

struct cron_error {
    /* 1-based byte offset in the expression of the character at fault (an unknown name or a
     * number: its first character); at most strlen(expr) + 1 */
    int column;
    /* lowercase, no trailing period; a field's problem starts with its name:
     *   "minute: 61 is out of range 0-59", "hour: step 0 is out of range 1-23",
     *   "day-of-week: 5-2 runs backwards", "month: 'foo' is not a month (1-12 or jan-dec)",
     *   "found 4 fields; cron needs 5: minute hour day-of-month month day-of-week".
     * Text from the expression is quoted at most 16 bytes long, with every byte that is not
     * printable ASCII shown as '?', so the message is safe to print. */
    char message[128];
};

/* Parses a NUL-terminated expression. Returns 0 and fills *out, or -EINVAL with *err filled
 * (when err is not NULL) and *out untouched. */
int cron_parse(const char *expr, struct cron *out, struct cron_error *err);

/* True when the local wall-clock minute of tm (tm_year, tm_mon, tm_mday, tm_hour, tm_min and
 * tm_wday as localtime_r fills them) matches; seconds are ignored. */
bool cron_matches(const struct cron *c, const struct tm *tm);

/* The first whole minute strictly after `after` (epoch seconds) at which c fires, in the local
 * time zone (TZ, as localtime_r reads it), as epoch seconds; -1 when none within 5 years (e.g.
 * "0 0 30 2 *") or the time cannot be represented.
 * Daylight saving time: a local time that does not exist (02:30 on the day clocks jump from 02:00
 * to 03:00) is skipped, not moved; a local time that happens twice (clocks go back from 03:00 to
 * 02:00) fires once, at its first occurrence. So "* * * * *" does not fire during the repeated
 * hour: each of its minutes fired the first time round.
 * Skips whole months, days and hours that cannot match: a few thousand steps at most. */
int64_t cron_next(const struct cron *c, int64_t after);

#endif
