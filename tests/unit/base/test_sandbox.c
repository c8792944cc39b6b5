/* Tests for sandbox_etc_stamp and sandbox_etc_same: an executor's steps see the host's /etc files
 * as bound when it started, so the runner replaces it once a stamp taken now differs. A file
 * replaced by a rename (as dpkg, ldconfig and useradd do) or appearing, or going, changes the
 * stamp; a file written in place, or a directory's entries, do not (a bind shows those). Run on a
 * copy of the files in a temporary directory, never on the host's /etc.
 */
#include "base/sandbox.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(sandbox_etc, .timeout = 10);

static char root[64];

static void put(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/etc/%s", root, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* A fake root: etc/ with every file and directory a sandbox binds. */
static void make_root(void)
{
    char path[256];
    snprintf(root, sizeof(root), "/tmp/slipway-etc-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    snprintf(path, sizeof(path), "%s/etc", root);
    cr_assert_eq(mkdir(path, 0755), 0);
    static const char *const dirs[] = {"alternatives", "ssl", "ca-certificates"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/etc/%s", root, dirs[i]);
        cr_assert_eq(mkdir(path, 0755), 0);
    }
    put("ld.so.cache", "cache 1");
    put("passwd", "root:x:0:0::/root:/bin/sh\n");
    put("group", "root:x:0:\n");
}

static void remove_root(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

Test(sandbox_etc, a_file_replaced_by_a_rename_changes_the_stamp, .init = make_root,
     .fini = remove_root)
{
    struct sandbox_etc_stamp then, now;
    char from[256], to[256];
    sandbox_etc_stamp(root, &then);
    sandbox_etc_stamp(root, &now);
    cr_assert(sandbox_etc_same(&then, &now));
    put("ld.so.cache.new", "cache 2");
    snprintf(from, sizeof(from), "%s/etc/ld.so.cache.new", root);
    snprintf(to, sizeof(to), "%s/etc/ld.so.cache", root);
    cr_assert_eq(rename(from, to), 0);
    sandbox_etc_stamp(root, &now);
    cr_assert_not(sandbox_etc_same(&then, &now), "a renamed ld.so.cache went unnoticed");
}

Test(sandbox_etc, a_file_changed_in_place_or_a_new_entry_in_a_directory_does_not, .init = make_root,
     .fini = remove_root)
{
    struct sandbox_etc_stamp then, now;
    sandbox_etc_stamp(root, &then);
    put("passwd", "root:x:0:0::/root:/bin/sh\nslipway:x:1:1::/:/bin/sh\n");
    put("ssl/new.pem", "x");
    sandbox_etc_stamp(root, &now);
    cr_assert(sandbox_etc_same(&then, &now));
}

Test(sandbox_etc, a_file_appearing_or_going_changes_the_stamp, .init = make_root,
     .fini = remove_root)
{
    struct sandbox_etc_stamp then, now;
    char path[256];
    snprintf(path, sizeof(path), "%s/etc/group", root);
    cr_assert_eq(unlink(path), 0);
    sandbox_etc_stamp(root, &then);
    put("group", "root:x:0:\n");
    sandbox_etc_stamp(root, &now);
    cr_assert_not(sandbox_etc_same(&then, &now), "a new /etc/group went unnoticed");
    cr_assert_eq(unlink(path), 0);
    sandbox_etc_stamp(root, &now);
    cr_assert(sandbox_etc_same(&then, &now));
    snprintf(path, sizeof(path), "%s/etc/ssl", root);
    cr_assert_eq(rmdir(path), 0);
    sandbox_etc_stamp(root, &now);
    cr_assert_not(sandbox_etc_same(&then, &now), "a removed /etc/ssl went unnoticed");
}
