/* Tests for cgroup and proc_spawn_into: a process tree started in a group, with a daemon that
 * left its session, is killed whole by cgroup.kill; a group is removed once empty; a parent
 * group sweeps the groups a previous run left; exec failures are errors of the spawn.
 * These need a writable cgroup v2 hierarchy (root, as the tests run here and in CI).
 */
#include "base/cgroup.h"
#include "base/proc.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char name[64];
static int parent = -1;

static void setup(void)
{
    char why[256] = "";
    snprintf(name, sizeof(name), "slipway-unit-%d", (int)getpid());
    int r = cgroup_parent_open(name, &parent, why, sizeof(why));
    cr_assert_eq(r, 0, "cgroup_parent_open: %s (%s)", strerror(-r), why);
}

static void teardown(void)
{
    if (parent >= 0)
        cgroup_parent_close(parent);
}

/* Whether pid runs (a zombie waiting for its new parent to reap it does not). */
static bool alive(pid_t pid)
{
    char state = proc_state(pid);
    return state && state != 'Z' && state != 'X';
}

/* The pid a shell wrote into fd's pipe as one line. */
static pid_t read_pid(int fd)
{
    char buf[32] = "";
    size_t n = 0;
    while (n < sizeof(buf) - 1 && read(fd, buf + n, 1) == 1 && buf[n] != '\n')
        n++;
    buf[n] = '\0';
    return (pid_t)atoi(buf);
}

TestSuite(cgroup, .init = setup, .fini = teardown);

Test(cgroup, a_tree_with_a_daemon_dies_whole)
{
    int group;
    cr_assert_eq(cgroup_create(parent, "tree", &group), 0);
    cr_assert_eq(cgroup_populated(group), 0);
    int out[2];
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    char *argv[] = {"sh", "-c",
                    "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!; exec sleep 301", NULL};
    char *env[] = {"PATH=/usr/bin:/bin", NULL};
    pid_t pid;
    int pidfd;
    cr_assert_eq(proc_spawn_into(group, "/", "/bin/sh", argv, env, -1, out[1], -1, &pid, &pidfd),
                 0);
    close(out[1]);
    pid_t daemon = read_pid(out[0]);
    close(out[0]);
    cr_assert(daemon > 0 && alive(daemon));
    cr_assert_eq(cgroup_populated(group), 1);
    char path[64], line[256] = "";
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)daemon);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f) && strncmp(line, "0::", 3) != 0)
        ;
    fclose(f);
    cr_assert(strstr(line, name) && strstr(line, "/tree"), "the daemon is in %s", line);

    cr_assert_eq(cgroup_kill(group), 0);
    cr_assert_eq(proc_wait(pid), 128 + SIGKILL);
    close(pidfd);
    cr_assert_eq(cgroup_destroy(parent, "tree", group, 2000), 0); /* waits for the daemon */
    cr_assert(!alive(daemon), "the daemon outlived cgroup.kill");
    cr_assert_eq(faccessat(parent, "tree", F_OK, 0), -1, "the group was not removed");
}

Test(cgroup, a_new_group_replaces_a_leftover_and_the_parent_sweeps)
{
    int group, again;
    cr_assert_eq(cgroup_create(parent, "old", &group), 0);
    char *argv[] = {"sleep", "302", NULL};
    char *env[] = {NULL};
    pid_t pid;
    int pidfd;
    cr_assert_eq(proc_spawn_into(group, NULL, "/bin/sleep", argv, env, -1, -1, -1, &pid, &pidfd),
                 0);
    close(group);
    /* a group of that name still populated: killed, removed, made again empty */
    cr_assert_eq(cgroup_create(parent, "old", &again), 0);
    cr_assert_eq(cgroup_populated(again), 0);
    cr_assert_eq(proc_wait(pid), 128 + SIGKILL);
    close(pidfd);

    cr_assert_eq(proc_spawn_into(again, NULL, "/bin/sleep", argv, env, -1, -1, -1, &pid, &pidfd),
                 0);
    close(again);
    /* a parent opened again (a restarted server) sweeps what it holds */
    int reopened;
    char why[256];
    cr_assert_eq(cgroup_parent_open(name, &reopened, why, sizeof(why)), 0);
    cr_assert_eq(proc_wait(pid), 128 + SIGKILL);
    close(pidfd);
    cr_assert_eq(faccessat(reopened, "old", F_OK, 0), -1);
    close(reopened);
}

Test(cgroup, exec_failure_is_an_error_of_the_spawn)
{
    int group;
    cr_assert_eq(cgroup_create(parent, "noexec", &group), 0);
    char *argv[] = {"missing", NULL};
    char *env[] = {NULL};
    pid_t pid = 0;
    int pidfd = -1;
    cr_assert_eq(
        proc_spawn_into(group, NULL, "/nonexistent/program", argv, env, -1, -1, -1, &pid, &pidfd),
        -ENOENT);
    cr_assert_eq(proc_spawn_into(group, "/nonexistent-dir", "/bin/true", argv, env, -1, -1, -1,
                                 &pid, &pidfd),
                 -ENOENT);
    cr_assert_eq(cgroup_destroy(parent, "noexec", group, 2000), 0);
}

Test(cgroup, a_sub_tree_is_swept_alone_and_the_parent_sweep_leaves_it)
{
    int sub, group, build;
    char why[256];
    cr_assert(cgroup_is_subtree("git") && cgroup_is_subtree("apps"));
    cr_assert(!cgroup_is_subtree("push-1") && !cgroup_is_subtree("warm-2") &&
              !cgroup_is_subtree("old") && !cgroup_is_subtree(""));
    cr_assert_eq(cgroup_subtree_open(name, "git", &sub, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(cgroup_create(sub, "push-1", &group), 0);
    cr_assert_eq(cgroup_create(parent, "build.1", &build), 0);
    char *argv[] = {"sleep", "303", NULL};
    char *env[] = {NULL};
    pid_t in_sub, in_build;
    cr_assert_eq(proc_spawn_into(group, NULL, "/bin/sleep", argv, env, -1, -1, -1, &in_sub, NULL),
                 0);
    cr_assert_eq(proc_spawn_into(build, NULL, "/bin/sleep", argv, env, -1, -1, -1, &in_build, NULL),
                 0);
    close(group);
    close(build);

    /* the builds' parent opened again sweeps the build, not the sub-tree */
    int reopened;
    cr_assert_eq(cgroup_parent_open(name, &reopened, why, sizeof(why)), 0);
    cr_assert_eq(proc_wait(in_build), 128 + SIGKILL);
    cr_assert(alive(in_sub));
    cr_assert_eq(faccessat(reopened, "git/push-1", F_OK, 0), 0);
    close(reopened);

    /* the sub-tree opened again sweeps its own */
    int sub2;
    cr_assert_eq(cgroup_subtree_open(name, "git", &sub2, why, sizeof(why)), 0);
    cr_assert_eq(proc_wait(in_sub), 128 + SIGKILL);
    cr_assert_eq(faccessat(sub2, "push-1", F_OK, 0), -1);
    close(sub);
    cgroup_subtree_close(sub2); /* removes git/ (the parent stays: the fixture holds it) */
    cr_assert_eq(faccessat(parent, "git", F_OK, 0), -1);
}

Test(cgroup, the_tree_is_named_after_the_data_directory)
{
    char a[64], b[64], c[64];
    cgroup_tree_name("/tmp", a, sizeof(a));
    cgroup_tree_name("/tmp/../tmp", b, sizeof(b)); /* its real path */
    cgroup_tree_name("/var", c, sizeof(c));
    cr_assert_eq(strlen(a), strlen("slipway-") + 16);
    cr_assert(strncmp(a, "slipway-", 8) == 0);
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
}
