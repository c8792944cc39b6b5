/* libFuzzer driver for builder/pipeline: pipeline_parse on the raw bytes (an exact-size copy, so
 * ASan sees any read past the end), then pipeline_manifest_json and pipeline_release. A parsed
 * file is checked against what pipeline.h promises (counts, ranges, names, exactly one kind per
 * test, JSON that jansson reads back with the same counts); an error must be -EINVAL or -ENOMEM
 * with a position, and a key and message that are NUL-terminated, printable, valid UTF-8.
 * Any broken promise abort()s.
 */
#include "builder/pipeline.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* Printable UTF-8: no control characters (C0, DEL, C1), no broken or overlong sequences. */
static bool printable_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        size_t n = c < 0x80                 ? 0
                   : c >= 0xC2 && c <= 0xDF ? 1
                   : c >= 0xE0 && c <= 0xEF ? 2
                   : c >= 0xF0 && c <= 0xF4 ? 3
                                            : 9;
        if (c < 0x20 || c == 0x7f || n == 9 || (c == 0xC2 && p[1] < 0xA0))
            return false;
        for (size_t i = 1; i <= n; i++)
            if ((p[i] & 0xC0) != 0x80)
                return false;
        p += n + 1;
    }
    return true;
}

static bool blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

static bool is_ident_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_ident(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '_';
}

static bool module_name(const char *s)
{
    if (!s || strlen(s) > PIPELINE_MAX_NAME || !is_ident_start(*s))
        return false;
    const char *dot = strchr(s, '.');
    if (!dot || !is_ident_start(dot[1]) || strchr(dot + 1, '.'))
        return false;
    for (const char *p = s; *p; p++)
        if (p != dot && !is_ident(*p))
            return false;
    return true;
}

static bool workspace_path(const char *s)
{
    if (!s || blank(s) || s[0] == '/' || strlen(s) > PIPELINE_MAX_PATH)
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    size_t n = strlen(s);
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '.' && s[i + 1] == '.' && (i == 0 || s[i - 1] == '/') &&
            (i + 2 == n || s[i + 2] == '/'))
            return false;
    return true;
}

static bool duration_ok(int64_t s)
{
    return s >= PIPELINE_MIN_DURATION_S && s <= PIPELINE_MAX_DURATION_S;
}

static void check_parsed(const struct pipeline *p)
{
    check(p->version == PIPELINE_VERSION);
    check(p->nr_build_steps >= 1 && p->nr_build_steps <= PIPELINE_MAX_ITEMS);
    for (size_t i = 0; i < p->nr_build_steps; i++)
        check(p->build_steps[i] && !blank(p->build_steps[i]));
    check(duration_ok(p->build_timeout_s));
    check(p->nr_build_env <= PIPELINE_MAX_ITEMS);
    for (size_t i = 0; i < p->nr_build_env; i++) {
        check(p->build_env[i].name && p->build_env[i].value);
        for (size_t j = 0; j < i; j++)
            check(strcmp(p->build_env[i].name, p->build_env[j].name) != 0);
    }
    check(p->nr_package_include >= 1 && p->nr_package_include <= PIPELINE_MAX_ITEMS);
    for (size_t i = 0; i < p->nr_package_include; i++)
        check(workspace_path(p->package_include[i]));
    check(duration_ok(p->run.start_timeout_s) && duration_ok(p->run.stop_timeout_s));
    check(p->run.present ? p->run.command && !blank(p->run.command)
                         : !p->run.command && !p->run.health);
    check(!p->run.health || p->run.health[0] == '/');
    check(p->nr_constants <= PIPELINE_MAX_ITEMS);
    for (size_t i = 0; i < p->nr_constants; i++) {
        const struct pipeline_constant *k = &p->constants[i];
        check(module_name(k->name));
        check(pipeline_constant_find(p, k->name) == k);
        const char *d = k->default_value;
        if (d && k->type == PIPELINE_BOOLEAN)
            check(!strcmp(d, "true") || !strcmp(d, "false"));
        if (d && k->type == PIPELINE_INTEGER) {
            char *end;
            errno = 0;
            strtoll(d, &end, 10);
            check(*d && !*end && errno == 0);
        }
    }
    check(p->nr_events <= PIPELINE_MAX_ITEMS);
    for (size_t i = 0; i < p->nr_events; i++) {
        check(module_name(p->events[i].name));
        check(p->events[i].cron && p->events[i].command && !blank(p->events[i].command));
        for (size_t j = 0; j < i; j++)
            check(strcmp(p->events[i].name, p->events[j].name) != 0);
    }
    check(p->nr_tests <= PIPELINE_MAX_ITEMS);
    for (size_t i = 0; i < p->nr_tests; i++) {
        const struct pipeline_test *t = &p->tests[i];
        check(t->name && *t->name && strlen(t->name) <= PIPELINE_MAX_NAME);
        check(!t->command != !t->unittesting_password_constant);
        check(!t->junit || (t->command && workspace_path(t->junit)));
        check(!t->unittesting_password_constant ||
              pipeline_constant_find(p, t->unittesting_password_constant));
        for (size_t j = 0; j < i; j++)
            check(strcmp(t->name, p->tests[j].name) != 0);
    }
}

static void check_manifest(const struct pipeline *p)
{
    char *text = pipeline_manifest_json(p);
    if (!text)
        return; /* out of memory (libFuzzer's -malloc_limit_mb) */
    json_t *j = json_loads(text, 0, NULL);
    check(j && json_object_size(j) == 5);
    check(json_array_size(json_object_get(j, "constants")) == p->nr_constants);
    check(json_array_size(json_object_get(j, "scheduled_events")) == p->nr_events);
    check(json_array_size(json_object_get(j, "tests")) == p->nr_tests);
    check(json_is_null(json_object_get(j, "run")) == !p->run.present);
    json_decref(j);
    free(text);
}

static void check_error(int r, const struct pipeline_error *e)
{
    check(r == -EINVAL || r == -ENOMEM);
    check(memchr(e->key, '\0', sizeof(e->key)) && memchr(e->message, '\0', sizeof(e->message)));
    check(e->message[0] != '\0');
    check(printable_utf8(e->key) && printable_utf8(e->message));
    check(e->line >= 0 && e->column >= 0 && (e->line > 0) == (e->column > 0));
    char small[24], big[512];
    pipeline_error_format(e, "slipway.yml", small, sizeof(small));
    pipeline_error_format(e, NULL, big, sizeof(big));
    check(strlen(small) < sizeof(small) && printable_utf8(small) && printable_utf8(big));
    check(strstr(big, e->message));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    struct pipeline p;
    memset(&p, 0xA5, sizeof(p));
    struct pipeline_error e;
    memset(&e, 'x', sizeof(e));
    int r = pipeline_parse(text, size, &p, &e);
    if (r == 0) {
        check_parsed(&p);
        check_manifest(&p);
        pipeline_release(&p);
        check(p.nr_build_steps == 0 && p.build_steps == NULL);
    } else {
        unsigned char untouched[sizeof(p)];
        memset(untouched, 0xA5, sizeof(untouched));
        check(memcmp(&p, untouched, sizeof(p)) == 0);
        check_error(r, &e);
    }
    free(text);
    return 0;
}
