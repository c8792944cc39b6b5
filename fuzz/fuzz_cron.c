/* libFuzzer driver for base/cron: the input is a time zone choice (byte 0: odd Europe/Amsterdam,
 * even UTC), a starting time (bytes 1-4, within 1970-2106) and an expression (the rest, up to a
 * NUL). cron_parse must answer 0 or -EINVAL; an error has a column within the expression and a
 * printable ASCII message; a parsed expression has bits only in range and none of its fields
 * empty. cron_next must answer -1 or a later whole minute that matches; in UTC, when that is
 * less than two days on, no minute in between may match (a walk of every minute).
 * Any broken promise abort()s.
 */
#include "base/cron.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool matches_at(const struct cron *c, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    check(localtime_r(&tt, &tm));
    return cron_matches(c, &tm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int zone = -1;
    char expr[CRON_MAX_EXPR + 64];
    if (size < 5)
        return 0;
    int want_zone = data[0] & 1;
    if (want_zone != zone) {
        setenv("TZ", want_zone ? "Europe/Amsterdam" : "UTC", 1);
        tzset();
        zone = want_zone;
    }
    int64_t after = (int64_t)((uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 |
                              (uint32_t)data[3] << 8 | data[4]);
    size_t len = size - 5 < sizeof(expr) - 1 ? size - 5 : sizeof(expr) - 1;
    memcpy(expr, data + 5, len);
    expr[len] = '\0';
    len = strlen(expr);

    struct cron c;
    struct cron_error err;
    memset(&err, 0, sizeof(err));
    int r = cron_parse(expr, &c, &err);
    if (r) {
        check(r == -EINVAL);
        check(err.column >= 1 && (size_t)err.column <= len + 1);
        check(err.message[0]);
        for (const char *s = err.message; *s; s++)
            check(*s >= 0x20 && *s < 0x7f);
        return 0;
    }
    check(c.minutes && c.minutes >> 60 == 0);
    check(c.hours && c.hours >> 24 == 0);
    check(c.days && (c.days & 1) == 0);
    check(c.months && (c.months & ~0x1ffeu) == 0);
    check(c.weekdays && c.weekdays >> 7 == 0);

    int64_t next = cron_next(&c, after);
    if (next == -1)
        return 0;
    check(next > after && next % 60 == 0 && next - after <= (int64_t)(5 * 366 + 2) * 86400);
    check(matches_at(&c, next));
    if (!want_zone && next - after < 2 * 86400)
        for (int64_t m = (after / 60 + 1) * 60; m < next; m += 60)
            check(!matches_at(&c, m));
    return 0;
}
