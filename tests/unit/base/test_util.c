/* Tests for util: checked integer parsing, RFC 3339 formatting, clocks, string predicates, and
 * the file helpers (atomic write, mkdir -p, rm -rf), each check in an empty directory of its own.
 * Checks are plain functions, run in a few Test cases at the end: Criterion starts a process
 * per test (~50 ms each here) and the unit tests must stay fast.
 */
#include "base/util.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char tmp[PATH_MAX]; /* the test's temp dir */
static char dir[PATH_MAX]; /* the current check's own empty directory inside it */

/* Gives the next check an empty directory of its own. */
static void fresh_dir(void)
{
    int n = snprintf(dir, sizeof(dir), "%s/check-XXXXXX", tmp);
    cr_assert(n > 0 && (size_t)n < sizeof(dir));
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static void setup(void)
{
    temp_dir(tmp, "util");
    fresh_dir();
}

static void teardown(void)
{
    fs_remove_tree(tmp);
}

TestSuite(util, .init = setup, .fini = teardown, .timeout = 10);

/* dir/rel, in one of two alternating static buffers: at most two results are live at once. */
static const char *at(const char *rel)
{
    static char path[2][PATH_MAX];
    static int which;
    which ^= 1;
    int n = snprintf(path[which], sizeof(path[which]), "%s/%s", dir, rel);
    cr_assert(n > 0 && (size_t)n < sizeof(path[which]));
    return path[which];
}

static bool is_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void touch(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    fputs(content, f);
    fclose(f);
}

/* Reads a whole small file; returns its length, or -1. */
static long slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return (long)n;
}

static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* ---- parse_i64 ---- */

static void assert_parses(const char *s, int64_t min, int64_t max, int64_t want)
{
    int64_t v = -7;
    int r = parse_i64(s, min, max, &v);
    cr_assert_eq(r, 0, "parse_i64(\"%s\") = %d", s, r);
    cr_assert_eq(v, want, "parse_i64(\"%s\") = %lld", s, (long long)v);
}

static void assert_parse_fails(const char *s, int64_t min, int64_t max, int err)
{
    int64_t v = 1234;
    int r = parse_i64(s, min, max, &v);
    cr_assert_eq(r, err, "parse_i64(\"%s\", %lld, %lld) = %d, want %d", s ? s : "(null)",
                 (long long)min, (long long)max, r, err);
    cr_assert_eq(v, 1234, "parse_i64(\"%s\") wrote its out-parameter on error", s ? s : "(null)");
}

static void parse_i64_valid(void)
{
    assert_parses("0", 0, 10, 0);
    assert_parses("42", 0, 100, 42);
    assert_parses("-42", -100, 100, -42);
    assert_parses("007", 0, 10, 7); /* decimal, not octal */
    assert_parses("-0", 0, 0, 0);
}

static void parse_i64_bounds_are_inclusive(void)
{
    assert_parses("1", 1, 5, 1);
    assert_parses("5", 1, 5, 5);
    assert_parse_fails("0", 1, 5, -ERANGE);
    assert_parse_fails("6", 1, 5, -ERANGE);
    assert_parse_fails("-1", 0, INT64_MAX, -ERANGE);
    assert_parse_fails("65536", 0, 65535, -ERANGE);
}

static void parse_i64_extremes(void)
{
    assert_parses("9223372036854775807", INT64_MIN, INT64_MAX, INT64_MAX);
    assert_parses("-9223372036854775808", INT64_MIN, INT64_MAX, INT64_MIN);
    assert_parse_fails("9223372036854775808", INT64_MIN, INT64_MAX, -ERANGE);
    assert_parse_fails("-9223372036854775809", INT64_MIN, INT64_MAX, -ERANGE);
    assert_parse_fails("99999999999999999999999999", 0, INT64_MAX, -ERANGE);
}

static void parse_i64_garbage(void)
{
    const char *bad[] = {"",    " ", "a", "1a",  "a1", "0x10",  "1.0",
                         "1e3", "-", "+", "--1", "1-", "1,000", "\xef\xbc\x91"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_parse_fails(bad[i], INT64_MIN, INT64_MAX, -EINVAL);
    assert_parse_fails(NULL, INT64_MIN, INT64_MAX, -EINVAL);
}

static void parse_i64_whitespace_is_garbage(void)
{
    const char *bad[] = {" 1", "1 ", "\t1", "1\n", "\n1", " -1", "- 1", "1 2", "\v1", "1\r"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_parse_fails(bad[i], INT64_MIN, INT64_MAX, -EINVAL);
}

/* ---- time ---- */

static void assert_rfc3339(int64_t t, const char *want)
{
    char out[21];
    memset(out, 'X', sizeof(out));
    time_rfc3339(t, out);
    cr_assert(memchr(out, '\0', sizeof(out)), "time_rfc3339(%lld): not NUL-terminated",
              (long long)t);
    cr_assert_str_eq(out, want, "time_rfc3339(%lld)", (long long)t);
}

static void rfc3339(void)
{
    assert_rfc3339(0, "1970-01-01T00:00:00Z");
    assert_rfc3339(1714564800, "2024-05-01T12:00:00Z");
    assert_rfc3339(951782400, "2000-02-29T00:00:00Z");
    assert_rfc3339(1700000000, "2023-11-14T22:13:20Z");
    assert_rfc3339(-1, "1969-12-31T23:59:59Z");
    assert_rfc3339(253402300799, "9999-12-31T23:59:59Z"); /* the last representable second */
}

/* BUG (reported, not fixed here): for years past 9999 strftime does not fit in 21 bytes and
 * returns 0, leaving `out` unterminated; for INT64_MAX gmtime_r fails and strftime reads an
 * uninitialised struct tm. Reachable through commit timestamps (api/repository.c commit_json).
 * Enable when time_rfc3339 always writes a terminated string. */
Test(util, rfc3339_out_of_range_is_still_a_string)
{
    int64_t bad[] = {253402300800, INT64_MAX, INT64_MIN, 67768036191676800};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[21];
        memset(out, 'X', sizeof(out));
        time_rfc3339(bad[i], out);
        cr_assert(memchr(out, '\0', sizeof(out)), "time_rfc3339(%lld): not NUL-terminated",
                  (long long)bad[i]);
    }
}

static void clocks(void)
{
    int64_t now = time_now_ms();
    int64_t wall = (int64_t)time(NULL) * 1000;
    cr_assert(now >= wall - 2000 && now <= wall + 2000, "time_now_ms %lld vs time() %lld",
              (long long)now, (long long)wall);
    int64_t a = time_mono_ns(), b = time_mono_ns();
    cr_assert_gt(a, 0);
    cr_assert_geq(b, a);
}

/* ---- strings ---- */

static void str_has_prefix_cases(void)
{
    cr_assert(str_has_prefix("abc", "ab"));
    cr_assert(str_has_prefix("abc", "abc"));
    cr_assert(str_has_prefix("abc", ""));
    cr_assert(str_has_prefix("", ""));
    cr_assert_not(str_has_prefix("ab", "abc"));
    cr_assert_not(str_has_prefix("abc", "b"));
    cr_assert_not(str_has_prefix("Abc", "ab"));
}

static void str_ieq_cases(void)
{
    cr_assert(str_ieq("ABC", "abc"));
    cr_assert(str_ieq("Test", "tEST"));
    cr_assert(str_ieq("", ""));
    cr_assert_not(str_ieq("abc", "abd"));
    cr_assert_not(str_ieq("abc", "abcd"));
    cr_assert_not(str_ieq("abc", ""));
}

/* ---- fs_write_atomic ---- */

static void write_atomic_creates_with_mode(void)
{
    fresh_dir();
    const char *path = at("f");
    cr_assert_eq(fs_write_atomic(path, "hello", 5, 0600), 0);
    char buf[16];
    cr_assert_eq(slurp(path, buf, sizeof(buf)), 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(count_entries(dir), 1, "a temp file was left behind");
}

static void write_atomic_replaces_longer_content(void)
{
    fresh_dir();
    const char *path = at("f");
    touch(path, "a much longer previous content");
    cr_assert_eq(fs_write_atomic(path, "new", 3, 0644), 0);
    char buf[64];
    cr_assert_eq(slurp(path, buf, sizeof(buf)), 3);
    cr_assert_eq(memcmp(buf, "new", 3), 0);
    cr_assert_eq(count_entries(dir), 1);
}

static void write_atomic_empty_and_binary(void)
{
    fresh_dir();
    const char *path = at("empty");
    char buf[8];
    cr_assert_eq(fs_write_atomic(path, "", 0, 0600), 0);
    cr_assert_eq(slurp(path, buf, sizeof(buf)), 0);
    path = at("bin");
    cr_assert_eq(fs_write_atomic(path, "a\0b\xff", 4, 0600), 0);
    cr_assert_eq(slurp(path, buf, sizeof(buf)), 4);
    cr_assert_eq(memcmp(buf, "a\0b\xff", 4), 0);
}

static void write_atomic_large(void)
{
    fresh_dir();
    size_t n = 1 << 20;
    char *data = malloc(n), *back = malloc(n + 1);
    cr_assert(data && back);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 131 + 7);
    const char *path = at("big");
    cr_assert_eq(fs_write_atomic(path, data, n, 0600), 0);
    cr_assert_eq(slurp(path, back, n + 1), (long)n);
    cr_assert_eq(memcmp(data, back, n), 0);
    free(data);
    free(back);
}

static void write_atomic_errors_leave_nothing_behind(void)
{
    fresh_dir();
    cr_assert_eq(fs_write_atomic(at("missing/f"), "x", 1, 0600), -ENOENT);
    cr_assert_eq(count_entries(dir), 0);
    cr_assert_eq(mkdir(at("dir"), 0700), 0);
    int r = fs_write_atomic(at("dir"), "x", 1, 0600);
    cr_assert_eq(r, -EISDIR, "writing over a directory: %d", r);
    cr_assert(is_dir(at("dir")));
    cr_assert_eq(count_entries(dir), 1, "a temp file was left behind");
}

/* ---- fs_mkdirs ---- */

static void mkdirs_creates_all_levels_and_is_idempotent(void)
{
    fresh_dir();
    const char *path = at("a/b/c/d");
    cr_assert_eq(fs_mkdirs(path, 0750), 0);
    cr_assert(is_dir(at("a")));
    cr_assert(is_dir(at("a/b/c/d")));
    cr_assert_eq(fs_mkdirs(path, 0750), 0);
    cr_assert_eq(fs_mkdirs(at("a/b"), 0750), 0);
}

static void mkdirs_applies_mode(void)
{
    fresh_dir();
    mode_t old = umask(0);
    int r = fs_mkdirs(at("m/n"), 0710);
    umask(old);
    cr_assert_eq(r, 0);
    struct stat st;
    cr_assert_eq(stat(at("m"), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0710);
    cr_assert_eq(stat(at("m/n"), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0710);
}

static void mkdirs_trailing_and_double_slashes(void)
{
    fresh_dir();
    cr_assert_eq(fs_mkdirs(at("x/y/"), 0700), 0);
    cr_assert(is_dir(at("x/y")));
    cr_assert_eq(fs_mkdirs(at("p//q"), 0700), 0);
    cr_assert(is_dir(at("p/q")));
}

static void mkdirs_through_a_file_fails(void)
{
    fresh_dir();
    touch(at("file"), "x");
    cr_assert_eq(fs_mkdirs(at("file/sub"), 0700), -ENOTDIR);
    cr_assert_eq(fs_mkdirs(at("file/sub/deeper"), 0700), -ENOTDIR);
}

/* BUG (reported, not fixed here): like `mkdir -p`, an existing non-directory at the path itself
 * must be an error, but mkdir's EEXIST is taken as success and 0 is returned.
 * Enable when fs_mkdirs checks that an existing path is a directory. */
Test(util, mkdirs_on_an_existing_file_fails)
{
    touch(at("file"), "x");
    int r = fs_mkdirs(at("file"), 0700);
    cr_assert(r == -EEXIST || r == -ENOTDIR, "fs_mkdirs on a regular file = %d", r);
}

static void mkdirs_name_too_long(void)
{
    size_t n = 5000;
    char *path = malloc(n + 1);
    cr_assert_not_null(path);
    memset(path, 'a', n);
    path[0] = '/';
    path[n] = '\0';
    cr_assert_eq(fs_mkdirs(path, 0700), -ENAMETOOLONG);
    free(path);
}

/* ---- fs_remove_tree ---- */

static void remove_tree_removes_everything(void)
{
    fresh_dir();
    cr_assert_eq(fs_mkdirs(at("t/a/b/c"), 0700), 0);
    cr_assert_eq(fs_mkdirs(at("t/d"), 0700), 0);
    touch(at("t/f"), "1");
    touch(at("t/a/g"), "2");
    touch(at("t/a/b/c/h"), "3");
    cr_assert_eq(symlink("nowhere", at("t/a/dangling")), 0);
    cr_assert_eq(fs_remove_tree(at("t")), 0);
    cr_assert_not(exists(at("t")));
    cr_assert_eq(count_entries(dir), 0);
}

static void remove_tree_missing_is_fine(void)
{
    fresh_dir();
    cr_assert_eq(fs_remove_tree(at("never-there")), 0);
}

static void remove_tree_of_a_file(void)
{
    fresh_dir();
    touch(at("f"), "x");
    cr_assert_eq(fs_remove_tree(at("f")), 0);
    cr_assert_not(exists(at("f")));
}

static void remove_tree_does_not_follow_symlinks(void)
{
    fresh_dir();
    cr_assert_eq(fs_mkdirs(at("keep/inner"), 0700), 0);
    touch(at("keep/inner/precious"), "x");
    cr_assert_eq(fs_mkdirs(at("t"), 0700), 0);
    cr_assert_eq(symlink(at("keep"), at("t/link")), 0);
    cr_assert_eq(fs_remove_tree(at("t")), 0);
    cr_assert_not(exists(at("t")));
    cr_assert(exists(at("keep/inner/precious")));

    /* the top path itself a symlink to a directory: the link goes, the target stays */
    cr_assert_eq(symlink(at("keep"), at("top")), 0);
    cr_assert_eq(fs_remove_tree(at("top")), 0);
    cr_assert_not(exists(at("top")));
    cr_assert(exists(at("keep/inner/precious")));
}

Test(util, parse_i64)
{
    parse_i64_valid();
    parse_i64_bounds_are_inclusive();
    parse_i64_extremes();
    parse_i64_garbage();
    parse_i64_whitespace_is_garbage();
}

static void hex_encode_cases(void)
{
    char out[2 * 5 + 1];
    memset(out, 'x', sizeof(out));
    hex_encode("", 0, out);
    cr_assert_str_eq(out, "");
    hex_encode("\x00\x0f\xa5\xff\x10", 5, out);
    cr_assert_str_eq(out, "000fa5ff10"); /* lowercase, two digits a byte, NUL-terminated */
}

Test(util, time_and_strings)
{
    rfc3339();
    clocks();
    str_has_prefix_cases();
    str_ieq_cases();
    hex_encode_cases();
}

Test(util, write_atomic)
{
    write_atomic_creates_with_mode();
    write_atomic_replaces_longer_content();
    write_atomic_empty_and_binary();
    write_atomic_large();
    write_atomic_errors_leave_nothing_behind();
}

Test(util, mkdirs)
{
    mkdirs_creates_all_levels_and_is_idempotent();
    mkdirs_applies_mode();
    mkdirs_trailing_and_double_slashes();
    mkdirs_through_a_file_fails();
    mkdirs_name_too_long();
}

Test(util, remove_tree)
{
    remove_tree_removes_everything();
    remove_tree_missing_is_fine();
    remove_tree_of_a_file();
    remove_tree_does_not_follow_symlinks();
}

Test(util, parse_and_format_sizes)
{
    int64_t v;
    cr_assert_eq(parse_size("500MB", 0, INT64_MAX, &v), 0);
    cr_assert_eq(v, 500LL << 20);
    cr_assert_eq(parse_size("2GB", 0, INT64_MAX, &v), 0);
    cr_assert_eq(v, 2LL << 30);
    cr_assert_eq(parse_size("3GiB", 0, INT64_MAX, &v), 0);
    cr_assert_eq(v, 3LL << 30);
    cr_assert_eq(parse_size("4096", 0, INT64_MAX, &v), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(parse_size("1TB", 0, INT64_MAX, &v), 0);
    cr_assert_eq(v, 1LL << 40);
    const char *bad[] = {"", "MB", "2 GB", "2gb", "-1MB", "1.5GB", "2GBs", " 2GB", "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse_size(bad[i], 0, INT64_MAX, &v), -EINVAL, "%s", bad[i]);
    cr_assert_eq(parse_size("9999999999TB", 0, INT64_MAX, &v), -ERANGE);
    cr_assert_eq(parse_size("1MB", 2 << 20, INT64_MAX, &v), -ERANGE);
    cr_assert_eq(parse_size("9999999999999999999", 0, INT64_MAX, &v), -ERANGE);
    char out[24];
    format_size(2LL << 30, out);
    cr_assert_str_eq(out, "2GB");
    format_size(1536LL << 20, out);
    cr_assert_str_eq(out, "1536MB");
    format_size(1000, out);
    cr_assert_str_eq(out, "1000B");
}

Test(util, disk_usage_and_chown_tree)
{
    char path[PATH_MAX + 64], deep[PATH_MAX];
    uint64_t used = 0;
    fresh_dir();
    snprintf(path, sizeof(path), "%s/a/b", dir);
    cr_assert_eq(fs_mkdirs(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/a/b/f", dir);
    char block[4096];
    memset(block, 'x', sizeof(block));
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    cr_assert(fd >= 0);
    for (int i = 0; i < 256; i++) /* 1 MB */
        cr_assert_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
    fsync(fd);
    close(fd);
    snprintf(path, sizeof(path), "%s/link", dir);
    cr_assert_eq(symlink("/usr", path), 0); /* not followed */
    cr_assert_eq(fs_disk_usage(dir, UINT64_MAX, &used), 0);
    cr_assert(used >= (1u << 20) && used < (1u << 20) + 64 * 1024, "%llu",
              (unsigned long long)used);
    cr_assert_eq(fs_disk_usage(dir, 4096, &used), 0); /* stops early: "more than" is enough */
    cr_assert(used > 4096);
    /* too deep to measure */
    snprintf(deep, sizeof(deep), "%s", dir);
    for (int i = 0; i < 300 && strlen(deep) + 3 < sizeof(deep); i++) {
        strcat(deep, "/d");
        cr_assert_eq(mkdir(deep, 0700), 0);
    }
    cr_assert_eq(fs_disk_usage(dir, UINT64_MAX, &used), -ELOOP);
    if (geteuid() == 0) {
        snprintf(path, sizeof(path), "%s/a", dir);
        cr_assert_eq(fs_chown_tree(path, 12345, 23456), 0);
        struct stat st;
        snprintf(path, sizeof(path), "%s/a/b/f", dir);
        cr_assert_eq(stat(path, &st), 0);
        cr_assert(st.st_uid == 12345 && st.st_gid == 23456);
    }
}
