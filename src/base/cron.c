/* cron — the parser is a single pass over the expression that sets bits per field and remembers
 * the byte at fault for errors. cron_next() walks the local wall clock (a struct tm handled as
 * if it were UTC, so timegm/gmtime_r do the calendar) skipping months, days and hours that cannot
 * match, and only then maps a matching wall-clock minute to epoch seconds.
 */
#include "base/cron.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "base/banned.h"

#define QUOTE_MAX 16

enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, NR_FIELDS };

static const struct field {
    const char *name;
    int min, max;
    const char *const *names; /* names[i] is value min + i; NULL when the field has none */
    const char *kind;         /* for "'x' is not a <kind>" */
} fields[NR_FIELDS] = {
    [F_MINUTE] = {"minute", 0, 59, NULL, "number"},
    [F_HOUR] = {"hour", 0, 23, NULL, "number"},
    [F_DOM] = {"day-of-month", 1, 31, NULL, "number"},
    [F_MONTH] = {"month", 1, 12,
                 (const char *const[]){"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                       "sep", "oct", "nov", "dec", NULL},
                 "month (1-12 or jan-dec)"},
    [F_DOW] = {"day-of-week", 0, 7,
               (const char *const[]){"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL},
               "day (0-7 or sun-sat)"},
};

static const struct {
    const char *name, *expr;
} shortcuts[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

struct parser {
    const char *expr;
    struct cron_error *err;
};

__attribute__((format(printf, 3, 4))) static int fail(struct parser *p, const char *at,
                                                      const char *fmt, ...)
{
    if (p->err) {
        va_list ap;
        p->err->column = (int)(at - p->expr) + 1;
        va_start(ap, fmt);
        vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* s[0..len) for a message, in quotes when `marks`: at most QUOTE_MAX bytes, printable ASCII
 * only. */
static const char *show(char out[QUOTE_MAX + 6], const char *s, size_t len, bool marks)
{
    size_t n = len > QUOTE_MAX ? QUOTE_MAX - 3 : len, o = 0;
    if (marks)
        out[o++] = '\'';
    for (size_t i = 0; i < n; i++)
        out[o++] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (n < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    if (marks)
        out[o++] = '\'';
    out[o] = '\0';
    return out;
}

#define quote(out, s, len)  show(out, s, len, true)
#define digits(out, s, len) show(out, s, len, false)

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* The end of a field: a blank or the end of the string. */
static bool at_end(char ch)
{
    return ch == '\0' || is_blank(ch);
}

/* A number or (for months and days) a name at *s, checked against the field's range. */
static int parse_value(struct parser *p, const struct field *f, const char **s, int *out)
{
    const char *start = *s, *e = start;
    char q[QUOTE_MAX + 6];
    if (is_digit(*e)) {
        long v = 0;
        for (; is_digit(*e); e++)
            v = v > 100000 ? v : v * 10 + (*e - '0');
        *s = e;
        if (v < f->min || v > f->max)
            return fail(p, start, "%s: %s is out of range %d-%d", f->name,
                        digits(q, start, (size_t)(e - start)), f->min, f->max);
        *out = (int)v;
        return 0;
    }
    if (!is_alpha(*e))
        return fail(p, start, "%s: expected a number, found %s", f->name,
                    *e ? quote(q, start, 1) : "the end");
    while (is_alpha(*e))
        e++;
    *s = e;
    for (int i = 0; f->names && f->names[i]; i++)
        if (e - start == 3 && strncasecmp(start, f->names[i], 3) == 0) {
            *out = f->min + i;
            return 0;
        }
    return fail(p, start, "%s: %s is not a %s", f->name, quote(q, start, (size_t)(e - start)),
                f->kind);
}

/* One field at *s (up to a blank or the end) into *bits. */
static int parse_field(struct parser *p, const struct field *f, const char **s, uint64_t *bits)
{
    const char *at = *s;
    char q[QUOTE_MAX + 6];
    int r;
    *bits = 0;
    for (;;) {
        const char *item = at;
        int lo = f->min, hi = f->max, step = 1;
        bool range = true;
        if (*at == '*') {
            at++;
        } else if (*at == ',' || at_end(*at)) {
            return fail(p, at, "%s: an empty item in the list", f->name);
        } else {
            if ((r = parse_value(p, f, &at, &lo)))
                return r;
            hi = lo;
            range = false;
            if (*at == '-') {
                at++;
                if ((r = parse_value(p, f, &at, &hi)))
                    return r;
                range = true;
                if (lo > hi)
                    return fail(p, item, "%s: %s runs backwards", f->name,
                                digits(q, item, (size_t)(at - item)));
            }
        }
        if (*at == '/') {
            const char *slash = at++;
            if (!range)
                return fail(p, slash, "%s: a step goes after * or a range (*/10 or 1-30/5)",
                            f->name);
            if (!is_digit(*at))
                return fail(p, at, "%s: expected the step (a number) after '/'", f->name);
            const char *num = at;
            long v = 0;
            for (; is_digit(*at); at++)
                v = v > 100000 ? v : v * 10 + (*at - '0');
            if (v < 1 || v > f->max)
                return fail(p, num, "%s: step %s is out of range 1-%d", f->name,
                            digits(q, num, (size_t)(at - num)), f->max);
            step = (int)v;
        }
        for (int v = lo; v <= hi; v += step)
            *bits |= (uint64_t)1 << v;
        if (at_end(*at))
            break;
        if (*at != ',')
            return fail(p, at,
                        "%s: unexpected %s (use *, numbers, ranges 1-5, lists 1,15 and "
                        "steps */10 or 1-30/5)",
                        f->name, quote(q, at, 1));
        at++;
    }
    *s = at;
    return 0;
}

static int parse_fields(struct parser *p, const char *s, struct cron *c)
{
    const char *starts[NR_FIELDS + 1];
    size_t nr = 0;
    uint64_t bits[NR_FIELDS];
    int r;
    /* count first: a wrong number of fields is the clearer message */
    for (const char *at = s;;) {
        while (is_blank(*at))
            at++;
        if (!*at)
            break;
        if (nr <= NR_FIELDS)
            starts[nr] = at;
        nr++;
        while (!at_end(*at))
            at++;
    }
    if (nr == 0)
        return fail(p, s,
                    "the expression is empty; cron needs 5 fields: minute hour "
                    "day-of-month month day-of-week");
    if (nr > NR_FIELDS)
        return fail(p, starts[NR_FIELDS],
                    "found %zu fields; cron needs 5: minute hour day-of-month month day-of-week",
                    nr);
    if (nr < NR_FIELDS)
        return fail(p, starts[0],
                    "found %zu field%s; cron needs 5: minute hour day-of-month month day-of-week",
                    nr, nr == 1 ? "" : "s");
    for (size_t i = 0; i < NR_FIELDS; i++) {
        const char *at = starts[i];
        if ((r = parse_field(p, &fields[i], &at, &bits[i])))
            return r;
    }
    c->minutes = bits[F_MINUTE];
    c->hours = (uint32_t)bits[F_HOUR];
    c->days = (uint32_t)bits[F_DOM];
    c->months = (uint16_t)bits[F_MONTH];
    c->weekdays = (uint8_t)((bits[F_DOW] | bits[F_DOW] >> 7) & 0x7f); /* 7 is Sunday too */
    c->dom_any = *starts[F_DOM] == '*';
    c->dow_any = *starts[F_DOW] == '*';
    return 0;
}

int cron_parse(const char *expr, struct cron *out, struct cron_error *err)
{
    struct parser p = {expr, err};
    struct cron c = {0};
    char q[QUOTE_MAX + 6];
    size_t len = strnlen(expr, CRON_MAX_EXPR + 1);
    int r;
    if (len > CRON_MAX_EXPR)
        return fail(&p, expr + CRON_MAX_EXPR, "the expression is longer than %d bytes",
                    CRON_MAX_EXPR);
    const char *s = expr;
    while (is_blank(*s))
        s++;
    if (*s == '@') {
        size_t n = 0;
        while (!at_end(s[n]))
            n++;
        const char *rest = s + n;
        while (is_blank(*rest))
            rest++;
        size_t i = 0, nr = sizeof(shortcuts) / sizeof(shortcuts[0]);
        while (i < nr && !(strlen(shortcuts[i].name) == n && !strncasecmp(s, shortcuts[i].name, n)))
            i++;
        if (i == nr)
            return fail(&p, s,
                        "%s is not a shortcut (use @hourly, @daily, @weekly, @monthly or "
                        "@yearly, or 5 fields)",
                        quote(q, s, n));
        if (*rest)
            return fail(&p, rest, "a shortcut like %s stands alone", shortcuts[i].name);
        /* the shortcut's own text; errors cannot happen in it */
        struct parser inner = {shortcuts[i].expr, NULL};
        r = parse_fields(&inner, shortcuts[i].expr, &c);
    } else {
        r = parse_fields(&p, expr, &c);
    }
    if (r)
        return r;
    *out = c;
    return 0;
}

static bool day_matches(const struct cron *c, int mday, int wday)
{
    bool dom = c->days >> mday & 1, dow = c->weekdays >> wday & 1;
    return c->dom_any || c->dow_any ? dom && dow : dom || dow;
}

bool cron_matches(const struct cron *c, const struct tm *tm)
{
    return (c->months >> (tm->tm_mon + 1) & 1) && day_matches(c, tm->tm_mday, tm->tm_wday) &&
           (c->hours >> tm->tm_hour & 1) && (c->minutes >> tm->tm_min & 1);
}

/* Wall-clock seconds: a local time read as if it were UTC. */
static int64_t wall_of(const struct tm *tm)
{
    struct tm t = *tm;
    return (int64_t)timegm(&t);
}

/* The earliest epoch second whose local time is the wall-clock minute w, or -1 when that local
 * time does not exist (skipped by a DST change). The UTC offsets in force a day before and a day
 * after cover both sides of any one change. */
static int64_t epoch_of(int64_t w)
{
    int64_t best = -1;
    time_t probes[3] = {(time_t)(w - 86400), (time_t)w, (time_t)(w + 86400)};
    for (int i = 0; i < 3; i++) {
        struct tm tm, back;
        if (!localtime_r(&probes[i], &tm))
            continue;
        time_t t = (time_t)(w - tm.tm_gmtoff);
        if (!localtime_r(&t, &back) || wall_of(&back) != w)
            continue;
        if (best < 0 || t < best)
            best = t;
    }
    return best;
}

/* floor(a / b) * b for b > 0 */
static int64_t floor_to(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (q - (a % b < 0)) * b;
}

int64_t cron_next(const struct cron *c, int64_t after)
{
    struct tm tm;
    time_t t0 = (time_t)after;
    if (!localtime_r(&t0, &tm))
        return -1;
    int64_t w = floor_to(wall_of(&tm), 60) + 60, end = w + (int64_t)(5 * 365 + 2) * 86400;
    while (w <= end) {
        time_t wt = (time_t)w;
        if (!gmtime_r(&wt, &tm))
            return -1;
        int64_t day = floor_to(w, 86400), hour = floor_to(w, 3600);
        if (!(c->months >> (tm.tm_mon + 1) & 1)) {
            /* the first of next month */
            tm.tm_mday = 1, tm.tm_mon++, tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            w = wall_of(&tm);
            continue;
        }
        if (!day_matches(c, tm.tm_mday, tm.tm_wday)) {
            w = day + 86400;
            continue;
        }
        if (!(c->hours >> tm.tm_hour & 1)) {
            w = hour + 3600;
            continue;
        }
        uint64_t later = c->minutes >> tm.tm_min;
        if (!later) {
            w = hour + 3600;
            continue;
        }
        w += 60 * (int64_t)__builtin_ctzll(later);
        int64_t t = epoch_of(w);
        if (t > after)
            return t;
        w += 60; /* skipped by a DST change, or its first occurrence is past */
    }
    return -1;
}
