/* Tests for base/layout: the paths under the data directory, the names it refuses, the lock and
 * the server secret (made once, read once, then handed out from memory). */
#include "base/layout.h"

#include "base/crypto.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[PATH_MAX];

static void setup(void)
{
    temp_dir(tmp, "layout");
    cr_assert_eq(layout_init(tmp), 0);
}

static void teardown(void)
{
    layout_release();
    sh("rm -rf '%s'", tmp);
}

TestSuite(layout, .init = setup, .fini = teardown, .timeout = 30);

/* got is want; frees both */
static void assert_path(char *got, char *want)
{
    cr_assert_not_null(got, "no path for '%s'", want);
    cr_assert_str_eq(got, want);
    free(want);
    free(got);
}

Test(layout, fixed_paths_are_under_the_data_directory)
{
    cr_assert_str_eq(layout_dir(), tmp);
    const char *want[][2] = {
        {layout_db_path(), "slipway.db"},    {layout_secret_path(), "secret"},
        {layout_tmp_dir(), "tmp"},           {layout_repos_dir(), "repos"},
        {layout_packages_dir(), "packages"}, {layout_build_logs_dir(), "logs/builds"},
        {layout_builds_dir(), "builds"},     {layout_builds_run_dir(), "builds/run"}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char *p = str("%s/%s", tmp, want[i][1]);
        cr_assert_str_eq(want[i][0], p);
        free(p);
    }
}

Test(layout, paths_of_one_thing)
{
    const char *pkg = "0b7c2d2e-8a3c-4f7e-9c1a-0123456789ab";
    assert_path(layout_repo_path("app1"), str("%s/repos/app1.git", tmp));
    assert_path(layout_package_dir("app1"), str("%s/packages/app1", tmp));
    assert_path(layout_package_path("app1", pkg), str("%s/packages/app1/%s.tar.zst", tmp, pkg));
    assert_path(layout_build_log_path(pkg), str("%s/logs/builds/%s.log", tmp, pkg));
    assert_path(layout_build_root("warm-12-3"), str("%s/builds/run/warm-12-3", tmp));
}

Test(layout, a_relative_data_directory_becomes_absolute)
{
    char *parent = strdup(tmp), *cwd = getcwd(NULL, 0);
    *strrchr(parent, '/') = '\0';
    cr_assert_eq(chdir(parent), 0);
    cr_assert_eq(layout_init(strrchr(tmp, '/') + 1), 0);
    cr_assert_eq(chdir(cwd), 0);
    char real[PATH_MAX];
    cr_assert_not_null(realpath(tmp, real));
    cr_assert_str_eq(layout_dir(), real);
    assert_path(layout_repo_path("app1"), str("%s/repos/app1.git", real));
    free(parent);
    free(cwd);
}

Test(layout, names_that_are_not_one_path_component_are_refused)
{
    const char *bad[] = {"", ".", "..", "../x", "a/b", "/abs", ".hidden"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        cr_assert_null(layout_repo_path(bad[i]), "'%s'", bad[i]);
        cr_assert_eq(errno, EINVAL);
        cr_assert_null(layout_package_dir(bad[i]));
        cr_assert_null(layout_package_path("app1", bad[i]));
        cr_assert_null(layout_package_path(bad[i], "id"));
        cr_assert_null(layout_build_log_path(bad[i]));
        cr_assert_null(layout_build_root(bad[i]));
    }
    cr_assert_null(layout_repo_path(NULL));
    char *long_name = malloc(NAME_MAX + 1);
    memset(long_name, 'a', NAME_MAX);
    long_name[NAME_MAX] = '\0';
    cr_assert_null(layout_repo_path(long_name));
    free(long_name);
}

Test(layout, nothing_before_init)
{
    layout_release();
    cr_assert_null(layout_dir());
    cr_assert_null(layout_db_path());
    errno = 0;
    cr_assert_null(layout_repo_path("app1"));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(layout_prepare(NULL), -EINVAL);
    cr_assert_eq(layout_secret_load(), -EINVAL);
    cr_assert_null(layout_secret());
}

Test(layout, init_wants_an_existing_directory)
{
    char *missing = str("%s/missing", tmp), *file = str("%s/file", tmp);
    sh("touch '%s'", file);
    cr_assert_eq(layout_init(missing), -ENOENT);
    cr_assert_null(layout_dir());
    cr_assert_eq(layout_init(file), -ENOTDIR);
    cr_assert_eq(layout_init(""), -EINVAL);
    free(missing);
    free(file);
}

Test(layout, prepare_makes_the_directories_a_server_needs)
{
    cr_assert_eq(layout_prepare(NULL), 0);
    struct stat st;
    cr_assert_eq(stat(layout_repos_dir(), &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0700);
    cr_assert_eq(stat(layout_tmp_dir(), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    /* a file where a directory should be: the failing path is named */
    sh("rm -rf '%s/tmp' && touch '%s/tmp'", tmp, tmp);
    const char *failed = NULL;
    cr_assert_lt(layout_prepare(&failed), 0);
    cr_assert_str_eq(failed, layout_tmp_dir());
}

Test(layout, package_file_names)
{
    char id[LAYOUT_ID_LEN];
    cr_assert(layout_package_file_id("0b7c2d2e-8a3c-4f7e-9c1a-0123456789ab.tar.zst", id));
    cr_assert_str_eq(id, "0b7c2d2e-8a3c-4f7e-9c1a-0123456789ab");
    cr_assert_not(
        layout_package_file_id("0b7c2d2e-8a3c-4f7e-9c1a-0123456789ab.tar.zst.tmp.x1", id));
    cr_assert_not(layout_package_file_id("short.tar.zst", id));
    cr_assert_not(layout_package_file_id("0b7c2d2e-8a3c-4f7e-9c1a-0123456789ab.tar.gz", id));
    cr_assert_not(layout_package_file_id(".b7c2d2e-8a3c-4f7e-9c1a-0123456789ab.tar.zst", id));
}

static void read_file(const char *path, unsigned char *buf, size_t len, size_t *got)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    ssize_t n = read(fd, buf, len);
    cr_assert_geq(n, 0);
    *got = (size_t)n;
    close(fd);
}

Test(layout, the_secret_is_made_once_read_once_and_kept_in_memory)
{
    cr_assert_null(layout_secret());
    cr_assert_eq(layout_secret_load(), 0);
    const unsigned char *key = layout_secret();
    cr_assert_not_null(key);
    unsigned char file[64];
    size_t n;
    read_file(layout_secret_path(), file, sizeof(file), &n);
    cr_assert_eq(n, LAYOUT_SECRET_LEN);
    cr_assert_eq(memcmp(file, key, LAYOUT_SECRET_LEN), 0);
    struct stat st;
    cr_assert_eq(stat(layout_secret_path(), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);

    /* handed out from memory: the file is not read again */
    cr_assert_eq(unlink(layout_secret_path()), 0);
    cr_assert_eq(memcmp(layout_secret(), file, LAYOUT_SECRET_LEN), 0);

    /* a restarted server reads the same secret; it does not make a new one */
    sh("printf '%%s' 0123456789abcdef0123456789abcdef > '%s/secret'", tmp);
    cr_assert_eq(layout_init(tmp), 0);
    cr_assert_eq(layout_secret_load(), 0);
    cr_assert_eq(memcmp(layout_secret(), "0123456789abcdef0123456789abcdef", LAYOUT_SECRET_LEN), 0);
}

Test(layout, a_secret_of_the_wrong_length_is_refused)
{
    sh("printf short > '%s/secret'", tmp);
    cr_assert_eq(layout_secret_load(), -EBADMSG);
    cr_assert_null(layout_secret());
    sh("head -c 33 /dev/zero > '%s/secret'", tmp);
    cr_assert_eq(layout_secret_load(), -EBADMSG);
    cr_assert_null(layout_secret());
}

Test(layout, one_lock_per_data_directory)
{
    cr_assert_eq(layout_lock(), 0);
    /* flock belongs to the open file: a second open, even in this process, is refused (after
     * the 2 s a just-killed server's lock is given) */
    cr_assert_eq(layout_lock(), -EBUSY);
}
