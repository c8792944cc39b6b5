/* Tests for proc: spawning (exit status, exec errors, stdio, working directory) and the orphan
 * reaper, which reaps what was re-parented to this process and never a child proc_spawn
 * started (its owner's proc_wait must still get its status). The test process makes itself a
 * child subreaper, as the server is when it runs as pid 1.
 */
#include "base/proc.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static char *env[] = {"PATH=/usr/bin:/bin", NULL};

static bool zombie(pid_t pid)
{
    return proc_state(pid) == 'Z';
}

Test(proc, spawn_status_errors_stdio_and_cwd)
{
    pid_t pid;
    char *exit3[] = {"sh", "-c", "exit 3", NULL};
    cr_assert_eq(proc_spawn("/bin/sh", exit3, env, -1, -1, -1, &pid), 0);
    cr_assert_eq(proc_wait(pid), 3);
    char *none[] = {"none", NULL};
    cr_assert_eq(proc_spawn("/nonexistent", none, env, -1, -1, -1, &pid), -ENOENT);

    int out[2];
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    char *pwd[] = {"sh", "-c", "pwd; read x || echo eof", NULL};
    cr_assert_eq(proc_spawn_at("/usr", "/bin/sh", pwd, env, -1, out[1], -1, &pid), 0);
    close(out[1]);
    char buf[64] = "";
    size_t n = 0;
    ssize_t r;
    while ((r = read(out[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    close(out[0]);
    cr_assert_str_eq(buf, "/usr\neof\n"); /* stdin -1: /dev/null */
    cr_assert_eq(proc_wait(pid), 0);
}

Test(proc, the_reaper_takes_orphans_and_leaves_our_children)
{
    cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    pid_t ours, parent;
    char *exits[] = {"true", NULL};
    cr_assert_eq(proc_spawn("/bin/true", exits, env, -1, -1, -1, &ours), 0);
    /* a shell that starts a background job and exits: the job is re-parented to us */
    int out[2];
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    char *orphaner[] = {"sh", "-c", "sleep 0.05 & echo $!", NULL}; /* outlives the shell */
    cr_assert_eq(proc_spawn("/bin/sh", orphaner, env, -1, out[1], -1, &parent), 0);
    close(out[1]);
    char buf[32] = "";
    cr_assert_gt(read(out[0], buf, sizeof(buf) - 1), 0);
    close(out[0]);
    pid_t orphan = (pid_t)atoi(buf);
    cr_assert_eq(proc_wait(parent), 0);
    for (int i = 0; i < 200 && !zombie(ours); i++) /* ours has exited, not been waited for */
        usleep(5000);
    cr_assert(zombie(ours));

    int reaped = 0;
    for (int i = 0; i < 200 && !reaped; i++) { /* until the orphan has exited */
        reaped = proc_reap_orphans();
        if (!reaped)
            usleep(5000);
    }
    cr_assert_eq(reaped, 1);
    cr_assert_eq(kill(orphan, 0), -1, "the orphan is still there (a zombie)");
    cr_assert_eq(proc_reap_orphans(), 0);
    cr_assert_eq(proc_wait(ours), 0, "the reaper took a child proc_spawn started");
}

/* Reads the pipe to its end into buf (NUL-terminated). */
static void read_all(int fd, char *buf, size_t size)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < size && (r = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
}

/* A server that raised its own descriptor limit gives children the usual one back. */
Test(proc, children_get_the_soft_descriptor_limit_set_for_them)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_assert_gt(rl.rlim_cur, 100, "this test needs a descriptor limit above 100");
    proc_set_child_nofile(100);
    int out[2];
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    pid_t pid;
    char *limits[] = {"sh", "-c", "ulimit -Sn; ulimit -Hn", NULL};
    cr_assert_eq(proc_spawn("/bin/sh", limits, env, -1, out[1], -1, &pid), 0);
    close(out[1]);
    char buf[64], want[64];
    read_all(out[0], buf, sizeof(buf));
    cr_assert_eq(proc_wait(pid), 0);
    if (rl.rlim_max == RLIM_INFINITY)
        snprintf(want, sizeof(want), "100\nunlimited\n");
    else
        snprintf(want, sizeof(want), "100\n%llu\n", (unsigned long long)rl.rlim_max);
    cr_assert_str_eq(buf, want); /* the hard limit is left as it was */
    struct rlimit after;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &after), 0);
    cr_assert_eq(after.rlim_cur, rl.rlim_cur); /* and ours too */
    proc_set_child_nofile(0);
}

/* A user's code: an ordinary user with no capabilities, no_new_privs, and a file size limit. */
Test(proc, opts_drop_to_an_unprivileged_user)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    struct proc_opts o = PROC_OPTS_INIT;
    o.set_ids = true;
    o.uid = 65534;
    o.gid = 65534;
    o.max_file_size = 4096;
    o.cwd = "/";
    int out[2];
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    char *argv[] = {"sh", "-c",
                    "id -u; id -G; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; ulimit -f",
                    NULL};
    pid_t pid;
    cr_assert_eq(proc_spawn_opts(&o, "/bin/sh", argv, env, -1, out[1], -1, &pid, NULL), 0);
    close(out[1]);
    char buf[256];
    read_all(out[0], buf, sizeof(buf));
    cr_assert_eq(proc_wait(pid), 0);
    cr_assert_str_eq(buf, "65534\n65534\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n8\n");
}

/* A mount namespace made once: a child that joins it sees the directory bound there (and,
 * joining by setns, starts at its root: the working directory is set after), the host does not. */
Test(proc, children_join_a_mount_namespace_made_once)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    char dir[] = "/tmp/slipway-test-ns-XXXXXX", file[64], host[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/marker", dir);
    int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "seen\n", 5), 5);
    close(fd);
    int ns;
    cr_assert_eq(proc_mount_ns_new(dir, "/mnt", &ns), 0);
    cr_assert_gt(ns, 2);
    cr_assert_eq(fcntl(ns, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    snprintf(host, sizeof(host), "/mnt/marker");
    cr_assert_neq(access(host, F_OK), 0, "the bind is seen on the host");
    for (int i = 0; i < 2; i++) {
        struct proc_opts o = PROC_OPTS_INIT;
        o.mount_ns = ns;
        o.cwd = "/mnt";
        int out[2];
        cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
        char script[128];
        snprintf(script, sizeof(script), "cat marker; test -e /proc/self/fd/%d || echo closed", ns);
        char *argv[] = {"sh", "-c", script, NULL};
        pid_t pid;
        cr_assert_eq(proc_spawn_opts(&o, "/bin/sh", argv, env, -1, out[1], -1, &pid, NULL), 0);
        close(out[1]);
        char buf[64];
        read_all(out[0], buf, sizeof(buf));
        cr_assert_eq(proc_wait(pid), 0);
        cr_assert_str_eq(buf, "seen\nclosed\n");
    }
    close(ns);
    unlink(file);
    rmdir(dir);
}

struct tied {
    pid_t pid;
    int r;
};

static void *spawn_tied_and_exit(void *arg)
{
    struct tied *t = arg;
    char *argv[] = {"sleep", "304", NULL};
    t->r = proc_spawn_tied(SIGTERM, -1, NULL, "/bin/sleep", argv, env, -1, -1, -1, &t->pid, NULL);
    return NULL;
}

Test(proc, a_tied_child_gets_its_signal_when_the_spawning_thread_ends)
{
    struct tied t = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, spawn_tied_and_exit, &t), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(t.r, 0);
    /* PR_SET_PDEATHSIG: the parent is the thread, not the process */
    cr_assert_eq(proc_wait(t.pid), 128 + SIGTERM);

    /* from this (the main) thread, which lives on: it runs until killed */
    cr_assert_eq(spawn_tied_and_exit(&t), NULL);
    cr_assert_eq(t.r, 0);
    cr_assert_eq(proc_state(t.pid) != '\0' && !zombie(t.pid), true);
    cr_assert_eq(proc_kill_wait(t.pid), 128 + SIGKILL);
}
