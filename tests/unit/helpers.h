/* helpers.h — what the unit tests share to build their fixtures: a temp directory, formatted
 * strings, and shell commands that must succeed (test data only: temp paths and fixed names).
 * Header-only: each test is one source file.
 */
#ifndef SLIPWAY_TESTS_HELPERS_H
#define SLIPWAY_TESTS_HELPERS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Makes a new directory $TMPDIR/slipway-<name>-XXXXXX (TMPDIR unset: /tmp) into dir. */
static inline void temp_dir(char dir[PATH_MAX], const char *name)
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(dir, PATH_MAX, "%s/slipway-%s-XXXXXX", base && *base ? base : "/tmp", name);
    cr_assert(n > 0 && n < PATH_MAX);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

/* The state letter of process pid in /proc/<pid>/stat ('R', 'S', 'Z' for a zombie, ...), or
 * '\0' when there is no such process. */
static inline char proc_state(int pid)
{
    char path[64], stat[512] = "";
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '\0';
    bool ok = fgets(stat, sizeof(stat), f) != NULL;
    fclose(f);
    const char *end = strrchr(stat, ')'); /* the command name may hold anything */
    return ok && end && end[1] == ' ' ? end[2] : '\0';
}

__attribute__((format(printf, 1, 0))) static inline char *fmt_alloc(const char *fmt, va_list ap)
{
    char *s = NULL;
    cr_assert_geq(vasprintf(&s, fmt, ap), 0);
    return s;
}

/* A formatted string (caller frees). */
__attribute__((format(printf, 1, 2))) static inline char *str(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = fmt_alloc(fmt, ap);
    va_end(ap);
    return s;
}

/* Runs a shell command; asserts it succeeds. */
__attribute__((format(printf, 1, 2))) static inline void sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = fmt_alloc(fmt, ap);
    va_end(ap);
    int status = system(cmd);
    cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "failed: %s", cmd);
    free(cmd);
}

/* Runs a shell command that must succeed and returns its whole output (caller frees). */
__attribute__((format(printf, 1, 2))) static inline char *sh_out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = fmt_alloc(fmt, ap);
    va_end(ap);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f, "popen: %s", cmd);
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, m);
    fclose(m);
    cr_assert_eq(pclose(f), 0, "failed: %s", cmd);
    free(cmd);
    return out;
}

#endif
