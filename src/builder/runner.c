/* runner — the build engine thread; see runner.h. */
#include "builder/runner.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "base/cgroup.h"
#include "base/crypto.h"
#include "base/log.h"
#include "base/proc.h"
#include "base/sandbox.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "builder/package.h"
#include "builder/pipeline.h"
#include "store/store.h"
#include "vcs/vcs.h"
#include "base/banned.h"

#define PIPELINE_FILE "slipway.yml"
#define PIPELINE_MAX  (256 * 1024)
#define MAX_EXECUTORS 64
#define MAX_WORKERS   4
#define STOPPED       "the server stopped during the build"

enum watch_kind { WATCH_WAKE, WATCH_OUTPUT, WATCH_EXIT, WATCH_WARM };
struct warm;
struct watch {
    enum watch_kind kind;
    struct build *build;
    struct warm *warm; /* WATCH_WARM */
};

/* A sandbox set up ahead of the next build (bubblewrap's set-up is most of a trivial build's
 * time): it waits on its stdin before it runs /slipway/run, which the build writes. Only the
 * first step of a build without build.network takes one; the others start cold. */
struct warm {
    pid_t pid;
    int pidfd, out_fd, go_fd, cg_fd;
    int cg_v1[CGROUP_NR_CONTROLLERS]; /* its groups in v1 hierarchies (limits), or -1 */
    char cg_v1_name[24];
    struct cgroup_limits_count cg_since; /* the v1 groups' counters when it took them */
    char root[PATH_MAX]; /* DIR/builds/run/warm-<server pid>-<n>: the build's root once taken */
    char cg_name[48];
    struct watch exit_watch;
};

struct build {
    struct store_package pkg;
    struct pipeline pl;
    bool have_pl;
    char *root; /* DIR/builds/run/<PackageId>: the workspace and the step scripts */
    char *ws;   /* root/ws */
    char *tmp;  /* root/tmp: /tmp in the sandbox */
    int log_fd;
    uint64_t log_bytes;
    bool log_capped;
    size_t step;
    /* The running step's cgroup (-1: none), <PackageId>.<step>: every process of the step.
     * One per step: a group cgroup.kill was written to kills what is started in it later. */
    int cg_fd;
    int cg_v1[CGROUP_NR_CONTROLLERS];    /* the step's groups in v1 hierarchies (limits), or -1 */
    char cg_v1_name[24];                 /* limits-<n>: see limits_take() */
    struct cgroup_limits_count cg_since; /* their counters when the step took them */
    char cg_name[48];
    struct cgroup_limits limits; /* build.pids and build.memory, as far as the server allows */
    int64_t disk_max;            /* build.disk, as far as the server allows */
    int64_t disk_next_ns;        /* when the running step's build directory is measured next */
    int64_t disk_every_ns;
    struct warm *warm; /* the warm sandbox its first step takes, if any */
    pid_t pid;
    int pidfd, out_fd;
    struct watch out_watch, exit_watch;
    int64_t deadline_ns;
    int64_t step_started_ns;
    bool killed;
    /* Work a worker thread does for it (export, package), and what came of it. */
    enum work { WORK_NONE, WORK_EXPORT, WORK_PACKAGE } work;
    struct build *work_next; /* in the workers' queue or done list */
    int work_r;
    char work_err[512];
    uint64_t size;
    char sha256[65];
    bool tag_failed;
    bool tag_taken; /* the version tag names another commit: the build fails (work_err) */
    /* when each phase ended (monotonic ns): for the server's log line at the end */
    int64_t t_claimed, t_exported, t_steps, t_packaged;
    char reason[STORE_REASON_MAX + 1]; /* why it failed, once known */
};

static struct {
    struct runner_config cfg;
    char *bwrap;
    int cgroup_fd;     /* the parent of the builds' cgroups, -1 when the host has none for us */
    char *cgroup_name; /* its name: slipway-<hash of the data directory> */
    struct cgroup_limiter limiter; /* where the pids and memory limits go */
    unsigned limited;              /* the controllers found: 1 << CGROUP_PIDS ... */
    struct sandbox_user user;      /* who runs the steps */
    char user_why[512];            /* why builds are refused when the user is unusable */
    pthread_t thread;
    bool started;
    atomic_bool stopping;
    int wake_fd, epoll_fd;
    struct watch wake_watch;
    struct build *running[MAX_EXECUTORS];
    size_t nr_running;
    struct warm *warm[MAX_EXECUTORS];
    size_t nr_warm;
    struct spare_limits { /* empty v1 limit groups, for the next step: limits_take() */
        int fd[CGROUP_NR_CONTROLLERS];
        char name[24];
    } spare[MAX_EXECUTORS];
    size_t nr_spare;
    unsigned long long limits_seq;
    unsigned long long warm_seq;
    int64_t warm_after_ns; /* no warm sandbox before this (one died before use) */
} E = {.wake_fd = -1, .epoll_fd = -1, .cgroup_fd = -1, .limiter = {.v2_fd = -1, .v1_fd = {-1, -1}}};

char *runner_package_path(const char *data_dir, const char *app_id, const char *package_id)
{
    char *p = NULL;
    return asprintf(&p, "%s/packages/%s/%s.tar.zst", data_dir, app_id, package_id) < 0 ? NULL : p;
}

char *runner_log_path(const char *data_dir, const char *package_id)
{
    char *p = NULL;
    return asprintf(&p, "%s/logs/builds/%s.log", data_dir, package_id) < 0 ? NULL : p;
}

bool runner_can_build(const char **why)
{
    if (E.user_why[0]) {
        if (why)
            *why = E.user_why;
        return false;
    }
    if (E.bwrap || E.cfg.unsafe_no_sandbox)
        return true;
    if (why)
        *why = "builds are refused: bubblewrap (bwrap) is not installed; install it, or start "
               "the server with --unsafe-no-sandbox to build without a sandbox";
    return false;
}

void runner_wake(void)
{
    uint64_t one = 1;
    if (E.wake_fd >= 0) {
        ssize_t w = write(E.wake_fd, &one, sizeof(one));
        (void)w;
    }
}

/* ---- the build log ------------------------------------------------------------------------- */

static void log_write(struct build *b, const char *data, size_t len)
{
    if (b->log_fd < 0 || b->log_capped)
        return;
    if (b->log_bytes + len > E.cfg.max_log) {
        len = (size_t)(E.cfg.max_log - b->log_bytes);
        b->log_capped = true;
    }
    while (len) {
        ssize_t w = write(b->log_fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        data += w;
        len -= (size_t)w;
        b->log_bytes += (uint64_t)w;
    }
    if (b->log_capped) {
        char note[128];
        int n = snprintf(note, sizeof(note),
                         "\n==> the build log is capped at %zu bytes: further output is dropped\n",
                         E.cfg.max_log);
        ssize_t w = write(b->log_fd, note, (size_t)n);
        (void)w;
    }
}

__attribute__((format(printf, 2, 3))) static void log_line(struct build *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* engine lines are written even past the cap, so the end of a build is always told */
    bool capped = b->log_capped;
    b->log_capped = false;
    uint64_t cap = E.cfg.max_log;
    E.cfg.max_log = SIZE_MAX;
    log_write(b, line, (size_t)n);
    E.cfg.max_log = cap;
    b->log_capped = capped;
}

/* ---- ending a build ------------------------------------------------------------------------ */

/* ---- cgroups ------------------------------------------------------------------------------ */

/* The v1 groups of the limits on a hybrid host (pids and memory hierarchies), limits-<n> under
 * the builds' parent in each: unlike the v2 group (one per step: cgroup.kill, once written, kills
 * what joins later), they are used again once empty, for the next step or warm sandbox, as making
 * and removing a memory cgroup costs more than all the rest of a step's cgroup work. Its limits
 * are set again by whoever takes it, and its counters read (cgroup_limits_hit since then). At
 * most one set per executor is kept; the others are removed. */
static void limits_take(int v1[CGROUP_NR_CONTROLLERS], char name[24],
                        struct cgroup_limits_count *since)
{
    bool any = false;
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++) {
        v1[c] = -1;
        any |= E.limiter.v1_fd[c] >= 0;
    }
    name[0] = '\0';
    *since = (struct cgroup_limits_count){0, 0};
    if (!any)
        return;
    if (E.nr_spare) {
        struct spare_limits *g = &E.spare[--E.nr_spare];
        memcpy(v1, g->fd, sizeof(g->fd));
        memcpy(name, g->name, sizeof(g->name));
        cgroup_limits_count(&E.limiter, -1, v1, since);
        return;
    }
    snprintf(name, 24, "limits-%llu", ++E.limits_seq);
    int r = cgroup_limits_create(&E.limiter, name, v1);
    if (r)
        log_warn("cannot create the v1 cgroups %s: %s", name, strerror(-r));
}

/* Takes back the v1 groups of a step or warm sandbox whose processes were killed and waited for
 * (its v2 group is empty): kept when nothing is left in them, else removed (what is still there
 * gets SIGKILL). */
static void limits_give(int v1[CGROUP_NR_CONTROLLERS], char name[24])
{
    bool any = false;
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++)
        any |= v1[c] >= 0;
    if (!any)
        return;
    if (E.nr_spare < E.cfg.executors && E.nr_spare < MAX_EXECUTORS &&
        cgroup_limits_empty(v1) == 1) {
        struct spare_limits *g = &E.spare[E.nr_spare++];
        memcpy(g->fd, v1, sizeof(g->fd));
        memcpy(g->name, name, sizeof(g->name));
    } else if (cgroup_limits_destroy(&E.limiter, name, v1, 2000)) {
        log_warn("cannot remove the v1 cgroups %s (processes left in them)", name);
    }
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++)
        v1[c] = -1;
    name[0] = '\0';
}

/* At the stop: the spare v1 groups go. */
static void limits_drain(void)
{
    while (E.nr_spare) {
        struct spare_limits *g = &E.spare[--E.nr_spare];
        cgroup_limits_destroy(&E.limiter, g->name, g->fd, 2000);
    }
}

/* Kills what is left in the step's cgroup, waits for it to empty and removes it. */
static void step_group_end(struct build *b)
{
    if (b->cg_fd >= 0 && cgroup_destroy(E.cgroup_fd, b->cg_name, b->cg_fd, 2000))
        log_warn("build %s: cannot remove cgroup %s (processes left in it)", b->pkg.package_id,
                 b->cg_name);
    b->cg_fd = -1;
    limits_give(b->cg_v1, b->cg_v1_name);
}

static void warm_discard(struct warm *w);

static void build_free(struct build *b)
{
    if (b->out_fd >= 0)
        close(b->out_fd);
    if (b->pidfd >= 0)
        close(b->pidfd);
    if (b->log_fd >= 0)
        close(b->log_fd);
    step_group_end(b);
    if (b->warm) { /* taken, never started: its directory is the build's */
        b->warm->root[0] = '\0';
        warm_discard(b->warm);
    }
    if (b->root)
        fs_remove_tree(b->root);
    if (b->have_pl)
        pipeline_release(&b->pl);
    free(b->root);
    free(b->ws);
    free(b->tmp);
    free(b);
}

/* ---- retention ----------------------------------------------------------------------------- */

struct prune_item {
    int64_t id;
    char package_id[37];
};
struct prune_list {
    struct prune_item *item;
    size_t nr, alloc;
};

static int prune_collect(const struct store_package *p, void *arg)
{
    struct prune_list *l = arg;
    if (l->nr == l->alloc) {
        size_t n = l->alloc ? 2 * l->alloc : 16;
        struct prune_item *grown = realloc(l->item, n * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        l->item = grown;
        l->alloc = n;
    }
    l->item[l->nr].id = p->id;
    memcpy(l->item[l->nr].package_id, p->package_id, sizeof(l->item[l->nr].package_id));
    l->nr++;
    return 0;
}

/* After a Succeeded build: the app's ended packages beyond the newest --keep-packages go, with
 * their package files and build logs; those an environment holds stay. The rows are listed
 * first and deleted after, each with a statement that checks again that nothing holds it. */
static void packages_prune(int64_t app, const char *app_id)
{
    struct prune_list l = {0};
    if (!E.cfg.keep_packages)
        return;
    if (store_package_each_prunable(app, E.cfg.keep_packages, prune_collect, &l))
        log_error("retention: cannot list the old packages of app '%s'", app_id);
    for (size_t i = 0; i < l.nr; i++) {
        int r = store_package_delete_unused(l.item[i].id);
        if (r == -EBUSY || r == -ENOENT) /* held or deleted since it was listed */
            continue;
        if (r) {
            log_error("retention: cannot delete package %s of app '%s'", l.item[i].package_id,
                      app_id);
            continue;
        }
        char *path = runner_package_path(E.cfg.data_dir, app_id, l.item[i].package_id);
        char *log = runner_log_path(E.cfg.data_dir, l.item[i].package_id);
        if (path)
            unlink(path);
        if (log)
            unlink(log);
        free(path);
        free(log);
        log_info("retention: deleted package %s of app '%s' (--keep-packages %u)",
                 l.item[i].package_id, app_id, E.cfg.keep_packages);
    }
    free(l.item);
}

static void build_end(struct build *b, bool ok, int64_t size, const char *sha256)
{
    if (ok) {
        log_line(b, "==> package %s built: %lld bytes, sha256 %s", b->pkg.version, (long long)size,
                 sha256);
    } else {
        log_line(b, "==> build failed: %s", b->reason);
    }
    bool recorded = store_package_finish(b->pkg.id, ok ? PKG_SUCCEEDED : PKG_FAILED,
                                         ok ? "" : b->reason, size, sha256) == 0;
    if (!recorded)
        log_error("build %s: cannot record its end", b->pkg.package_id);
    if (ok) {
        int64_t now = time_mono_ns();
        log_info("build %s of app '%s' succeeded in %.1f ms (export %.1f, steps %.1f, package "
                 "%.1f, tag and record %.1f)",
                 b->pkg.package_id, b->pkg.app_id, (double)(now - b->t_claimed) / 1e6,
                 (double)(b->t_exported - b->t_claimed) / 1e6,
                 (double)(b->t_steps - b->t_exported) / 1e6,
                 (double)(b->t_packaged - b->t_steps) / 1e6, (double)(now - b->t_packaged) / 1e6);
    } else {
        log_info("build %s of app '%s' failed: %s", b->pkg.package_id, b->pkg.app_id, b->reason);
    }
    if (ok && recorded)
        packages_prune(b->pkg.app, b->pkg.app_id);
    for (size_t i = 0; i < E.nr_running; i++) {
        if (E.running[i] == b) {
            E.running[i] = E.running[--E.nr_running];
            break;
        }
    }
    build_free(b);
}

__attribute__((format(printf, 2, 3))) static void build_fail(struct build *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->reason, sizeof(b->reason), fmt, ap);
    va_end(ap);
    build_end(b, false, 0, NULL);
}

/* Kills the running step's whole process tree: its cgroup where the host has cgroup v2 for us;
 * else the sandbox's pid namespace, which dies with bwrap, or without the sandbox the step's
 * process group (a daemon that left the group survives only there: the log said so). */
static void step_kill(struct build *b)
{
    if (b->pid > 0 && !b->killed) {
        if (b->cg_fd >= 0)
            cgroup_kill(b->cg_fd);
        kill(-b->pid, SIGKILL);
        kill(b->pid, SIGKILL);
        b->killed = true;
    }
}

/* ---- steps --------------------------------------------------------------------------------- */

static int add_env(char ***env, size_t *n, const char *name, const char *value)
{
    char **grown = realloc(*env, (*n + 2) * sizeof(char *));
    if (!grown)
        return -ENOMEM;
    *env = grown;
    if (asprintf(&grown[*n], "%s=%s", name, value) < 0)
        return -ENOMEM;
    grown[++*n] = NULL;
    return 0;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* The step's environment: an allowlist, never the server's own. */
static char **step_env(const struct build *b, const char *home)
{
    char **env = NULL;
    size_t n = 0;
    char number[32];
    snprintf(number, sizeof(number), "%lld", (long long)b->pkg.revision_number);
    int r = add_env(&env, &n, "PATH", "/usr/local/bin:/usr/bin:/bin") ||
            add_env(&env, &n, "HOME", home) || add_env(&env, &n, "LANG", "C.UTF-8") ||
            add_env(&env, &n, "SLIPWAY_APP", b->pkg.app_id) ||
            add_env(&env, &n, "SLIPWAY_BRANCH", b->pkg.branch) ||
            add_env(&env, &n, "SLIPWAY_REVISION", b->pkg.revision) ||
            add_env(&env, &n, "SLIPWAY_REVISION_NUMBER", number) ||
            add_env(&env, &n, "SLIPWAY_VERSION", b->pkg.version);
    for (size_t i = 0; !r && i < b->pl.nr_build_env; i++)
        r = add_env(&env, &n, b->pl.build_env[i].name, b->pl.build_env[i].value);
    if (r) {
        strv_free(env);
        return NULL;
    }
    return env;
}

/* The groups of a step or warm sandbox: a new cgroup v2 group under the builds' parent (*fd, or
 * -1: no cgroups here, or it failed, which is said: the process then runs without one) and its
 * groups in v1 hierarchies for the limits cgroup v2 cannot set here (v1[c], or -1; limits_take).
 */
static void group_new(const char *name, int *fd, int v1[CGROUP_NR_CONTROLLERS], char v1_name[24],
                      struct cgroup_limits_count *since)
{
    int r;
    *fd = -1;
    if (E.cgroup_fd >= 0 && (r = cgroup_create(E.cgroup_fd, name, fd))) {
        log_warn("cannot create cgroup %s: %s", name, strerror(-r));
        *fd = -1;
    }
    limits_take(v1, v1_name, since);
}

/* The groups proc_spawn_opts() makes the child join. */
static void join_groups(struct proc_opts *o, int fd, const int v1[CGROUP_NR_CONTROLLERS])
{
    if (fd >= 0)
        o->cgroup_fd[o->nr_cgroups++] = fd;
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++)
        if (v1[c] >= 0)
            o->cgroup_fd[o->nr_cgroups++] = v1[c];
}

/* Starts a step's process, in new cgroups of its own (where there are cgroups) with the build's
 * limits. opts: the identity and mounts; the groups and the file size limit are added here. */
static int spawn(struct build *b, struct proc_opts *opts, const char *path, char *const argv[],
                 char *const env[], int out_fd)
{
    step_group_end(b); /* the previous step's */
    snprintf(b->cg_name, sizeof(b->cg_name), "%s.%zu", b->pkg.package_id, b->step + 1);
    group_new(b->cg_name, &b->cg_fd, b->cg_v1, b->cg_v1_name, &b->cg_since);
    int r = cgroup_limits_set(&E.limiter, b->cg_fd, b->cg_v1, &b->limits);
    if (r)
        log_warn("build %s: cannot set the limits of cgroup %s: %s", b->pkg.package_id, b->cg_name,
                 strerror(-r));
    join_groups(opts, b->cg_fd, b->cg_v1);
    opts->max_file_size = (uint64_t)b->disk_max;
    r = proc_spawn_opts(opts, path, argv, env, -1, out_fd, out_fd, &b->pid, &b->pidfd);
    if (r)
        step_group_end(b);
    return r;
}

/* The sandbox of a step, in the build's directory `root`: read-only /usr and a few /etc files
 * (base/sandbox.c), the workspace at /workspace, the build's private /tmp, the step scripts
 * read-only at /slipway, no network unless asked for, its own pid namespace (whose pid 1 is the
 * step's shell: when it ends, every process left in the namespace is killed). `block`: bwrap
 * sets the sandbox up, then waits for a byte on its stdin before it starts the command (a warm
 * sandbox). Release c either way. */
static int step_sandbox(struct sandbox_cmd *c, const char *root, bool network, bool block,
                        const char *script)
{
    static const struct sandbox_bind binds[] = {
        {"ws", "/workspace", true}, {"tmp", "/tmp", true}, {"slipway", "/slipway", false}};
    char *const command[] = {"/bin/sh", "-e", (char *)script, NULL};
    struct sandbox_spec spec = {.dir = root,
                                .binds = binds,
                                .nr_binds = 3,
                                .chdir = "/workspace",
                                .network = network,
                                .block = block,
                                .command = command};
    return sandbox_cmd_init(c, &E.user, &spec);
}

/* The directories of a build: root (reachable, not readable, by the sandbox user), root/ws (the
 * workspace) and root/tmp, both the sandbox user's, and root/slipway (step scripts, root's). */
static int build_dirs(const char *root)
{
    char path[PATH_MAX];
    static const struct {
        const char *name;
        bool user;
    } sub[] = {{"ws", true}, {"tmp", true}, {"slipway", false}};
    int r = fs_mkdirs(root, 0700);
    if (!r && chmod(root, 0711) < 0)
        r = -errno;
    for (size_t i = 0; i < 3 && !r; i++) {
        snprintf(path, sizeof(path), "%s/%s", root, sub[i].name);
        if (mkdir(path, sub[i].user ? 0700 : 0711) < 0 && errno != EEXIST)
            r = -errno;
        else if (sub[i].user)
            r = sandbox_chown(&E.user, path, false);
    }
    return r;
}

/* ---- warm sandboxes ------------------------------------------------------------------------ */

/* Kills a warm sandbox (if it was started) and frees what it holds. */
static void warm_discard(struct warm *w)
{
    if (w->pid > 0) {
        epoll_ctl(E.epoll_fd, EPOLL_CTL_DEL, w->pidfd, NULL);
        if (w->cg_fd >= 0)
            cgroup_kill(w->cg_fd);
        proc_kill_wait(w->pid);
    }
    if (w->cg_fd >= 0)
        cgroup_destroy(E.cgroup_fd, w->cg_name, w->cg_fd, 2000);
    limits_give(w->cg_v1, w->cg_v1_name);
    const int fds[] = {w->pidfd, w->out_fd, w->go_fd};
    for (size_t i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (w->root[0]) /* empty once the directory is a build's */
        fs_remove_tree(w->root);
    free(w);
}

static void warm_remove(struct warm *w)
{
    for (size_t i = 0; i < E.nr_warm; i++) {
        if (E.warm[i] == w) {
            E.warm[i] = E.warm[--E.nr_warm];
            break;
        }
    }
}

/* Keeps one warm sandbox per free executor. */
static void warm_fill(void)
{
    while (E.bwrap && !E.cfg.unsafe_no_sandbox && !E.user_why[0] &&
           E.nr_warm + E.nr_running < E.cfg.executors && time_mono_ns() >= E.warm_after_ns &&
           !atomic_load(&E.stopping)) {
        struct warm *w = calloc(1, sizeof(*w));
        int go[2] = {-1, -1}, out[2] = {-1, -1};
        if (!w)
            return;
        w->pidfd = w->out_fd = w->go_fd = -1;
        snprintf(w->root, sizeof(w->root), "%s/builds/run/warm-%ld-%llu", E.cfg.data_dir,
                 (long)getpid(), (unsigned long long)++E.warm_seq);
        snprintf(w->cg_name, sizeof(w->cg_name), "warm-%llu", (unsigned long long)E.warm_seq);
        struct sandbox_cmd cmd;
        char *env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/workspace", "LANG=C.UTF-8",
                       NULL};
        /* the build's own limits are set when a build takes it (the server's until then; the
         * run script lowers the file size limit to build.disk) */
        struct cgroup_limits lim = {E.cfg.max_pids, E.cfg.max_memory};
        group_new(w->cg_name, &w->cg_fd, w->cg_v1, w->cg_v1_name, &w->cg_since);
        int r = step_sandbox(&cmd, w->root, false, true, "/slipway/run");
        if (!r)
            r = build_dirs(w->root);
        if (!r)
            cgroup_limits_set(&E.limiter, w->cg_fd, w->cg_v1, &lim);
        if (!r && (pipe2(go, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0))
            r = -errno;
        w->go_fd = go[1];
        w->out_fd = out[0];
        if (!r) {
            join_groups(&cmd.opts, w->cg_fd, w->cg_v1);
            cmd.opts.max_file_size = (uint64_t)E.cfg.max_disk;
            r = proc_spawn_opts(&cmd.opts, E.bwrap, cmd.argv, env, go[0], out[1], out[1], &w->pid,
                                &w->pidfd);
        }
        sandbox_cmd_release(&cmd);
        if (go[0] >= 0)
            close(go[0]);
        if (out[1] >= 0)
            close(out[1]);
        if (r) {
            log_warn("cannot start a warm sandbox: %s", strerror(-r));
            warm_discard(w);
            return;
        }
        w->exit_watch = (struct watch){.kind = WATCH_WARM, .warm = w};
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->exit_watch};
        epoll_ctl(E.epoll_fd, EPOLL_CTL_ADD, w->pidfd, &ev);
        E.warm[E.nr_warm++] = w;
    }
}

/* A warm sandbox ended while it waited (it should not): it goes. */
static void warm_died(struct warm *w)
{
    log_warn("a warm sandbox exited before use; discarding it (no new one for 10 s)");
    E.warm_after_ns = time_mono_ns() + 10000000000LL; /* bwrap may fail at once, every time */
    warm_remove(w);
    warm_discard(w);
}

/* Gives a warm sandbox to the build (before its export): its directory becomes the build's
 * root (not renamed: bwrap may still be binding it). */
static bool warm_take(struct build *b)
{
    if (!E.nr_warm)
        return false;
    struct warm *w = E.warm[0]; /* the oldest: the most likely to be set up by now */
    char *root = NULL, *ws = NULL, *tmp = NULL;
    if (asprintf(&root, "%s", w->root) < 0 || asprintf(&ws, "%s/ws", w->root) < 0 ||
        asprintf(&tmp, "%s/tmp", w->root) < 0) {
        free(root);
        free(ws);
        return false;
    }
    memmove(&E.warm[0], &E.warm[1], --E.nr_warm * sizeof(E.warm[0]));
    free(b->root);
    free(b->ws);
    free(b->tmp);
    b->root = root;
    b->ws = ws;
    b->tmp = tmp;
    epoll_ctl(E.epoll_fd, EPOLL_CTL_DEL, w->pidfd, NULL);
    b->warm = w;
    return true;
}

/* Appends `export NAME='value'` lines for the step's environment (the warm sandbox started with
 * the fixed part only). */
static void add_exports(struct strbuf *sb, char *const env[])
{
    for (size_t i = 0; env[i]; i++) {
        const char *eq = strchr(env[i], '=');
        strbuf_addf(sb, "export %.*s='", (int)(eq - env[i]), env[i]);
        for (const char *c = eq + 1; *c; c++) {
            if (*c == '\'')
                strbuf_adds(sb, "'\\''");
            else
                strbuf_addch(sb, *c);
        }
        strbuf_adds(sb, "'\n");
    }
}

/* ---- steps (continued) --------------------------------------------------------------------- */

static int step_start(struct build *b)
{
    char script[PATH_MAX];
    char **env = NULL;
    int pipefd[2] = {-1, -1};
    int r = -ENOMEM;
    const char *text = b->pl.build_steps[b->step];
    bool sandboxed = !E.cfg.unsafe_no_sandbox;
    struct warm *w = b->step == 0 ? b->warm : NULL;
    struct proc_opts opts = PROC_OPTS_INIT;
    const char *seen = sandboxed ? NULL : sandbox_host_opts(&E.user, b->root, &opts);
    char home[PATH_MAX];

    b->warm = NULL;
    log_line(b, "==> step %zu/%zu: %s", b->step + 1, b->pl.nr_build_steps, text);
    /* The step's text goes into a script file: never into a command line. No fsync: the
     * workspace does not outlive a crash. */
    snprintf(script, sizeof(script), "%s/slipway/step-%zu.sh", b->root, b->step + 1);
    if ((r = fs_write(script, text, strlen(text), 0644)))
        goto out;
    r = -ENOMEM;
    snprintf(home, sizeof(home), "%s/ws", seen ? seen : "");
    if (!(env = step_env(b, sandboxed ? "/workspace" : home)))
        goto out;
    if (w) {
        struct strbuf run = STRBUF_INIT;
        char path[PATH_MAX];
        /* the sandbox started with the server's file size limit; ulimit counts 512-byte blocks */
        strbuf_addf(&run, "exec </dev/null\nulimit -f %lld\n", (long long)(b->disk_max / 512));
        add_exports(&run, env);
        strbuf_adds(&run, ". /slipway/step-1.sh\n");
        snprintf(path, sizeof(path), "%s/slipway/run", b->root);
        r = !strbuf_ok(&run) ? -ENOMEM : fs_write(path, run.buf, run.len, 0644);
        strbuf_release(&run);
        if (r)
            goto out;
        step_group_end(b);
        b->pid = w->pid;
        b->pidfd = w->pidfd;
        b->cg_fd = w->cg_fd;
        memcpy(b->cg_v1, w->cg_v1, sizeof(b->cg_v1));
        memcpy(b->cg_v1_name, w->cg_v1_name, sizeof(b->cg_v1_name));
        b->cg_since = w->cg_since;
        w->cg_fd = w->pidfd = -1;
        memset(w->cg_v1, -1, sizeof(w->cg_v1));
        /* its v2 group takes the build's name (the v1 groups are limits-<n>: limits_take) */
        char name[sizeof(b->cg_name)];
        snprintf(name, sizeof(name), "%s.1", b->pkg.package_id);
        bool renamed = b->cg_fd < 0 || renameat(E.cgroup_fd, w->cg_name, E.cgroup_fd, name) == 0;
        snprintf(b->cg_name, sizeof(b->cg_name), "%s", renamed ? name : w->cg_name);
        if ((r = cgroup_limits_set(&E.limiter, b->cg_fd, b->cg_v1, &b->limits)))
            log_warn("build %s: cannot set the limits of cgroup %s: %s", b->pkg.package_id,
                     b->cg_name, strerror(-r));
        pipefd[0] = w->out_fd;
        w->out_fd = -1;
        r = write(w->go_fd, "", 1) == 1 ? 0 : -errno; /* go */
        if (r) {
            proc_kill_wait(b->pid);
            b->pid = 0;
        }
    } else if (pipe2(pipefd, O_CLOEXEC) < 0) {
        r = -errno;
        goto out;
    } else if (sandboxed) {
        struct sandbox_cmd cmd;
        char command[64];
        snprintf(command, sizeof(command), "/slipway/step-%zu.sh", b->step + 1);
        r = step_sandbox(&cmd, b->root, b->pl.build_network, false, command);
        if (!r)
            r = spawn(b, &cmd.opts, E.bwrap, cmd.argv, env, pipefd[1]);
        sandbox_cmd_release(&cmd);
    } else { /* as the sandbox user, b->root seen at `seen` */
        char seen_script[PATH_MAX];
        snprintf(seen_script, sizeof(seen_script), "%s/slipway/step-%zu.sh", seen, b->step + 1);
        char *argv[] = {"sh", "-e", seen_script, NULL};
        opts.cwd = home;
        r = spawn(b, &opts, "/bin/sh", argv, env, pipefd[1]);
    }
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    pipefd[1] = -1;
    if (r) {
        log_line(b, "==> cannot start the step: %s", strerror(-r));
        goto out;
    }
    b->killed = false;
    b->step_started_ns = time_mono_ns();
    b->disk_next_ns = b->step_started_ns + (b->disk_every_ns ? b->disk_every_ns : 1000000000LL);
    b->out_fd = pipefd[0];
    pipefd[0] = -1;
    fcntl(b->out_fd, F_SETFL, O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &b->out_watch};
    epoll_ctl(E.epoll_fd, EPOLL_CTL_ADD, b->out_fd, &ev);
    if (b->pidfd >= 0) {
        ev.data.ptr = &b->exit_watch;
        epoll_ctl(E.epoll_fd, EPOLL_CTL_ADD, b->pidfd, &ev);
    }
    r = 0;
out:
    if (w) {
        w->root[0] = '\0';   /* the build's directory now */
        if (w->pidfd >= 0) { /* a failure before it was handed over */
            warm_discard(w);
        } else {
            close(w->go_fd);
            free(w);
        }
    }
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    strv_free(env);
    return r;
}

static void output_drain(struct build *b)
{
    char buf[16384];
    for (;;) {
        ssize_t n = read(b->out_fd, buf, sizeof(buf));
        if (n > 0) {
            log_write(b, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return; /* EOF, or nothing more for now */
    }
}

static void work_submit(struct build *b, enum work what);

/* Measures the build's directory (workspace, /tmp, scripts) against build.disk: false, with
 * the reason set, when it is over (or cannot be measured). Measuring costs about a microsecond
 * per file, so while a step runs it is done again after at least a second and 50 times what the
 * last one took. */
static bool disk_within(struct build *b)
{
    uint64_t used = 0;
    char cap[24];
    int64_t t0 = time_mono_ns();
    int r = fs_disk_usage(b->root, (uint64_t)b->disk_max, &used);
    int64_t took = time_mono_ns() - t0;
    b->disk_every_ns = took * 50 > 1000000000LL ? took * 50 : 1000000000LL;
    b->disk_next_ns = time_mono_ns() + b->disk_every_ns;
    format_size(b->disk_max, cap);
    if (r == -ELOOP) {
        snprintf(b->reason, sizeof(b->reason),
                 "the workspace is nested more than 256 directories deep: its size (build.disk "
                 "%s) cannot be checked",
                 cap);
        return false;
    }
    if (r) { /* a step cannot make it unreadable to root: say so, go on */
        log_warn("build %s: cannot measure its directory: %s", b->pkg.package_id, strerror(-r));
        return true;
    }
    if (used <= (uint64_t)b->disk_max)
        return true;
    snprintf(b->reason, sizeof(b->reason), "the workspace and /tmp take more than build.disk (%s)",
             cap);
    return false;
}

/* Why a step that failed may have: a limit it ran into (written to the log and kept in reason
 * when it killed the step). */
static void step_limits_hit(struct build *b, int status)
{
    char v[24];
    unsigned hit = cgroup_limits_hit(&E.limiter, b->cg_fd, b->cg_v1, &b->cg_since);
    if (hit & (1u << CGROUP_PIDS))
        log_line(b, "==> the step reached build.pids (%lld processes and threads): a fork failed",
                 (long long)b->limits.pids);
    if (hit & (1u << CGROUP_MEMORY)) {
        format_size(b->limits.memory_bytes, v);
        snprintf(b->reason, sizeof(b->reason),
                 "step %zu ran out of memory: a process was killed at build.memory (%s)",
                 b->step + 1, v);
    } else if (status == 128 + SIGXFSZ) {
        format_size(b->disk_max, v);
        snprintf(b->reason, sizeof(b->reason),
                 "step %zu wrote a file larger than build.disk (%s) and was killed", b->step + 1,
                 v);
    } else if (hit & (1u << CGROUP_PIDS)) {
        snprintf(b->reason, sizeof(b->reason),
                 "step %zu ('%.200s') exited with status %d after reaching build.pids (%lld)",
                 b->step + 1, b->pl.build_steps[b->step], status, (long long)b->limits.pids);
    }
}

/* The step's process exited: record it and go on. */
static void step_done(struct build *b)
{
    output_drain(b);
    epoll_ctl(E.epoll_fd, EPOLL_CTL_DEL, b->out_fd, NULL);
    close(b->out_fd);
    b->out_fd = -1;
    if (b->pidfd >= 0) {
        epoll_ctl(E.epoll_fd, EPOLL_CTL_DEL, b->pidfd, NULL);
        close(b->pidfd);
        b->pidfd = -1;
    }
    /* anything the step left behind: in its cgroup, or at least in its process group */
    kill(-b->pid, SIGKILL);
    if (b->cg_fd >= 0 && cgroup_populated(b->cg_fd) == 1)
        cgroup_kill(b->cg_fd); /* removed later, off the build's path: step_group_end() */
    int status = proc_wait(b->pid);
    b->pid = 0;
    double secs = (double)(time_mono_ns() - b->step_started_ns) / 1e9;
    if (b->reason[0]) { /* killed: timeout or cancel; the reason is set */
        build_end(b, false, 0, NULL);
        return;
    }
    log_line(b, "==> step %zu exited with status %d (%.2f s)", b->step + 1, status, secs);
    if (status != 0) {
        step_limits_hit(b, status);
        if (b->reason[0])
            build_end(b, false, 0, NULL);
        else
            build_fail(b, "step %zu ('%.200s') exited with status %d", b->step + 1,
                       b->pl.build_steps[b->step], status);
        return;
    }
    if (!disk_within(b)) {
        build_end(b, false, 0, NULL);
        return;
    }
    if (++b->step < b->pl.nr_build_steps) {
        if (step_start(b))
            build_fail(b, "cannot start step %zu", b->step + 1);
        return;
    }
    b->t_steps = time_mono_ns();
    log_line(b, "==> packaging %zu path(s)", b->pl.nr_package_include);
    work_submit(b, WORK_PACKAGE);
}

/* ---- starting and finishing a build -------------------------------------------------------- */

/* ---- work off the engine thread ------------------------------------------------------------ */

/* Exporting a revision and writing a package take as long as the app is large: worker threads do
 * them, so that the engine goes on draining logs, starting steps and noticing cancels meanwhile.
 * A build being worked on stays in E.running, with no process; the engine hands it over with
 * work_submit() and takes it back in work_finished() after the worker's wake-up. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct build *todo, **todo_tail, *done;
    bool stop;
    pthread_t thread[MAX_WORKERS];
    size_t nr_threads;
} W = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .todo_tail = &W.todo};

static void work_submit(struct build *b, enum work what)
{
    b->work = what;
    b->work_next = NULL;
    pthread_mutex_lock(&W.lock);
    *W.todo_tail = b;
    W.todo_tail = &b->work_next;
    pthread_cond_signal(&W.cond);
    pthread_mutex_unlock(&W.lock);
}

static int open_repo(const struct build *b, struct vcs_repo **repo)
{
    char *path = NULL;
    int r = asprintf(&path, "%s/repos/%s.git", E.cfg.data_dir, b->pkg.app_id) < 0
                ? -ENOMEM
                : vcs_open(path, repo);
    free(path);
    return r;
}

/* The package: the package.include paths and manifest.json, then the version tag. */
static int write_package(struct build *b)
{
    char *dest = runner_package_path(E.cfg.data_dir, b->pkg.app_id, b->pkg.package_id);
    char *dir = dest ? strndup(dest, (size_t)(strrchr(dest, '/') - dest)) : NULL;
    char *sections = NULL;
    json_t *manifest = NULL;
    int r = -ENOMEM;
    if (!dest || !dir || (r = fs_mkdirs(dir, 0700)))
        goto out;
    sections = pipeline_manifest_json(&b->pl);
    manifest = sections ? json_loads(sections, 0, NULL) : NULL;
    if (!manifest) {
        r = -ENOMEM;
        goto out;
    }
    json_object_set_new(manifest, "app", json_string(b->pkg.app_id));
    json_object_set_new(manifest, "branch", json_string(b->pkg.branch));
    json_object_set_new(manifest, "revision", json_string(b->pkg.revision));
    json_object_set_new(manifest, "revision_number", json_integer(b->pkg.revision_number));
    json_object_set_new(manifest, "version", json_string(b->pkg.version));
    json_object_set_new(manifest, "built_ms", json_integer(time_now_ms()));
    json_object_set_new(manifest, "creator", json_string(b->pkg.creator));
    struct package_limits lim = PACKAGE_LIMITS_DEFAULT;
    r = package_write(b->ws, (const char *const *)b->pl.package_include, b->pl.nr_package_include,
                      manifest, dest, &lim, b->sha256, &b->size, b->work_err, sizeof(b->work_err));
    if (r)
        goto out;
    b->t_packaged = time_mono_ns();
    struct vcs_repo *repo;
    int t = open_repo(b, &repo);
    if (!t)
        t = vcs_tag(repo, b->pkg.revision, b->pkg.version);
    char named[VCS_OID_HEX];
    if (t == -EEXIST && !(t = vcs_tag_lookup(repo, b->pkg.version, named)) &&
        strcmp(named, b->pkg.revision)) {
        /* checked when the build was asked for; since then the tag was pushed. A package whose
         * Version names another commit's tag would be taken for that commit's. */
        snprintf(b->work_err, sizeof(b->work_err),
                 "the tag '%s' was put on %s%s while the build ran; a tag names one commit, so "
                 "the package is not kept: build again with another Version",
                 b->pkg.version, named[0] ? "commit " : "something that is not a commit", named);
        unlink(dest);
        b->tag_taken = true;
        r = -EEXIST;
        goto out;
    }
    b->tag_failed = t != 0;
out:
    json_decref(manifest);
    free(sections);
    free(dir);
    free(dest);
    return r;
}

static void *worker(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&W.lock);
    for (;;) {
        while (!W.todo && !W.stop)
            pthread_cond_wait(&W.cond, &W.lock);
        if (W.stop)
            break;
        struct build *b = W.todo;
        if (!(W.todo = b->work_next))
            W.todo_tail = &W.todo;
        pthread_mutex_unlock(&W.lock);
        b->work_err[0] = '\0';
        if (b->work == WORK_EXPORT) {
            struct vcs_repo *repo;
            b->work_r = open_repo(b, &repo);
            if (!b->work_r)
                b->work_r = vcs_export(repo, b->pkg.revision, b->ws);
            if (!b->work_r) /* before any step runs: the files are the sandbox user's */
                b->work_r = sandbox_chown(&E.user, b->ws, true);
        } else {
            b->work_r = write_package(b);
        }
        pthread_mutex_lock(&W.lock);
        b->work_next = W.done;
        W.done = b;
        runner_wake();
    }
    pthread_mutex_unlock(&W.lock);
    vcs_thread_release();
    return NULL;
}

/* The engine takes back the builds whose work is done and goes on with them. */
static void work_finished(void)
{
    pthread_mutex_lock(&W.lock);
    struct build *b = W.done, *next;
    W.done = NULL;
    pthread_mutex_unlock(&W.lock);
    for (; b; b = next) {
        next = b->work_next;
        enum work what = b->work;
        b->work = WORK_NONE;
        if (what == WORK_EXPORT && b->work_r) {
            build_fail(b, "cannot export revision %s into the workspace", b->pkg.revision);
        } else if (what == WORK_EXPORT) {
            b->t_exported = time_mono_ns();
            b->deadline_ns = b->t_exported + b->pl.build_timeout_s * 1000000000LL;
            b->step = 0;
            if (atomic_load(&E.stopping)) /* failed with the others at the engine's end */
                continue;
            if (step_start(b))
                build_fail(b, "cannot start step 1");
        } else if (b->tag_taken) {
            build_fail(b, "%s", b->work_err);
        } else if (b->work_r) {
            build_fail(b, "cannot write the package: %s",
                       b->work_err[0] ? b->work_err : strerror(-b->work_r));
        } else {
            if (b->tag_failed)
                log_line(b, "==> warning: cannot tag the commit with %s", b->pkg.version);
            build_end(b, true, (int64_t)b->size, b->sha256);
        }
    }
}

static int work_start(void)
{
    size_t n = E.cfg.executors < MAX_WORKERS ? E.cfg.executors : MAX_WORKERS;
    W.stop = false;
    for (W.nr_threads = 0; W.nr_threads < n; W.nr_threads++) {
        int r = pthread_create(&W.thread[W.nr_threads], NULL, worker, NULL);
        if (r)
            return -r;
    }
    return 0;
}

/* Stops the workers once their current work is done; builds still queued stay with the engine. */
static void work_stop(void)
{
    pthread_mutex_lock(&W.lock);
    W.stop = true;
    pthread_cond_broadcast(&W.cond);
    pthread_mutex_unlock(&W.lock);
    for (size_t i = 0; i < W.nr_threads; i++)
        pthread_join(W.thread[i], NULL);
    W.nr_threads = 0;
    W.todo = NULL;
    W.todo_tail = &W.todo;
}

/* The build's limits: what its slipway.yml asks, as far as the server allows; told in its log
 * with those this host cannot set. */
static void build_limits(struct build *b)
{
    static const struct {
        const char *key, *what;
        int controller;
    } keys[] = {{"build.memory", "memory", CGROUP_MEMORY},
                {"build.pids", "pids", CGROUP_PIDS},
                {"build.disk", NULL, -1}};
    int64_t asked[] = {b->pl.build_memory, b->pl.build_pids, b->pl.build_disk};
    int64_t most[] = {E.cfg.max_memory, E.cfg.max_pids, E.cfg.max_disk};
    int64_t v[3];
    char text[3][24];
    for (int i = 0; i < 3; i++) {
        v[i] = asked[i] < most[i] ? asked[i] : most[i];
        if (i == 1)
            snprintf(text[i], sizeof(text[i]), "%lld", (long long)v[i]);
        else
            format_size(v[i], text[i]);
        if (asked[i] > most[i])
            log_line(b, "==> %s is lowered to %s: the most this server allows", keys[i].key,
                     text[i]);
    }
    b->limits = (struct cgroup_limits){.pids = v[1], .memory_bytes = v[0]};
    b->disk_max = v[2];
    log_line(b, "==> limits: memory %s, %s processes and threads, disk %s", text[0], text[1],
             text[2]);
    for (int i = 0; i < 2; i++)
        if (!(E.limited & (1u << keys[i].controller)))
            log_line(b,
                     "==> warning: %s is not enforced: this host gives the server no '%s' "
                     "cgroup controller (see the server's log)",
                     keys[i].key, keys[i].what);
}

static void build_start(struct build *b)
{
    struct strbuf yml = STRBUF_INIT;
    struct vcs_repo *repo;
    char *repo_path = NULL, *log_path = NULL, *log_dir = NULL;
    int r;

    b->log_fd = -1;
    b->cg_fd = -1;
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++)
        b->cg_v1[c] = -1;
    b->out_fd = -1;
    b->pidfd = -1;
    b->out_watch = (struct watch){.kind = WATCH_OUTPUT, .build = b};
    b->exit_watch = (struct watch){.kind = WATCH_EXIT, .build = b};
    E.running[E.nr_running++] = b;
    b->t_claimed = time_mono_ns();

    if (!(log_path = runner_log_path(E.cfg.data_dir, b->pkg.package_id)) ||
        !(log_dir = strndup(log_path, (size_t)(strrchr(log_path, '/') - log_path))) ||
        fs_mkdirs(log_dir, 0700) ||
        (b->log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600)) <
            0) {
        build_fail(b, "cannot create the build log");
        goto out;
    }
    log_line(b, "==> build %s of app '%s': branch '%s', revision %lld (%s), version %s",
             b->pkg.package_id, b->pkg.app_id, b->pkg.branch, (long long)b->pkg.revision_number,
             b->pkg.revision, b->pkg.version);
    const char *why;
    if (b->pkg.cancel) {
        build_fail(b, "cancelled before it started");
        goto out;
    }
    if (!runner_can_build(&why)) {
        build_fail(b, "%s", why);
        goto out;
    }
    if (!E.bwrap)
        log_line(b, "==> warning: running without a sandbox (--unsafe-no-sandbox)");

    if (asprintf(&repo_path, "%s/repos/%s.git", E.cfg.data_dir, b->pkg.app_id) < 0 ||
        vcs_open(repo_path, &repo)) {
        build_fail(b, "cannot open the app's repository");
        goto out;
    }
    r = vcs_file_read(repo, b->pkg.revision, PIPELINE_FILE, PIPELINE_MAX, &yml);
    if (r == -ENOENT) {
        build_fail(b,
                   "revision %.12s has no %s at the root of the repository: add one (see "
                   "docs/slipway-yml.md), commit and push",
                   b->pkg.revision, PIPELINE_FILE);
        goto out;
    }
    if (r) {
        build_fail(b, "cannot read %s: %s", PIPELINE_FILE,
                   r == -EFBIG ? "larger than 256 KiB" : strerror(-r));
        goto out;
    }
    struct pipeline_error perr;
    if (pipeline_parse(yml.buf, yml.len, &b->pl, &perr)) {
        char msg[512];
        pipeline_error_format(&perr, PIPELINE_FILE, msg, sizeof(msg));
        build_fail(b, "%s", msg);
        goto out;
    }
    b->have_pl = true;
    build_limits(b);

    if (asprintf(&b->root, "%s/builds/run/%s", E.cfg.data_dir, b->pkg.package_id) < 0 ||
        asprintf(&b->ws, "%s/ws", b->root) < 0 || asprintf(&b->tmp, "%s/tmp", b->root) < 0) {
        build_fail(b, "out of memory");
        goto out;
    }
    bool warm = E.bwrap && !E.cfg.unsafe_no_sandbox && !b->pl.build_network && warm_take(b);
    if (!warm)
        fs_remove_tree(b->root);
    if (!warm && build_dirs(b->root)) {
        build_fail(b, "cannot create the workspace");
        goto out;
    }
    work_submit(b, WORK_EXPORT); /* then work_finished() starts step 1 */
out:
    strbuf_release(&yml);
    free(repo_path);
    free(log_path);
    free(log_dir);
}

/* Claims Queued builds while executors are free. */
static void fill_slots(void)
{
    while (E.nr_running < E.cfg.executors && !atomic_load(&E.stopping)) {
        struct build *b = calloc(1, sizeof(*b));
        if (!b)
            return;
        int r = store_package_claim(&b->pkg);
        if (r) {
            free(b);
            if (r != -ENOENT)
                log_error("cannot take a build from the queue");
            return;
        }
        build_start(b);
    }
}

/* Cancels and timeouts: kill the step; step_done() then fails the build with the reason. */
static int64_t check_running(void)
{
    int64_t now = time_mono_ns(), next = INT64_MAX;
    for (size_t i = 0; i < E.nr_running; i++) {
        struct build *b = E.running[i];
        if (b->killed || !b->pid)
            continue;
        if (store_package_cancelled(b->pkg.id)) {
            snprintf(b->reason, sizeof(b->reason), "cancelled");
            log_line(b, "==> cancelled: stopping the build");
            step_kill(b);
        } else if (now >= b->deadline_ns) {
            snprintf(b->reason, sizeof(b->reason), "timed out after %llds (build.timeout)",
                     (long long)b->pl.build_timeout_s);
            log_line(b, "==> %s: stopping the build", b->reason);
            step_kill(b);
        } else if (now >= b->disk_next_ns && !disk_within(b)) {
            log_line(b, "==> %s: stopping the build", b->reason);
            step_kill(b);
        } else {
            if (b->deadline_ns < next)
                next = b->deadline_ns;
            if (b->disk_next_ns < next)
                next = b->disk_next_ns;
        }
    }
    return next;
}

static void *engine(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    while (!atomic_load(&E.stopping)) {
        fill_slots();
        warm_fill();
        int64_t next = check_running();
        int timeout = -1;
        if (next != INT64_MAX) {
            int64_t ms = (next - time_mono_ns()) / 1000000 + 1;
            timeout = ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
        }
        struct epoll_event ev[16];
        int n = epoll_wait(E.epoll_fd, ev, 16, timeout);
        for (int i = 0; i < n; i++) {
            struct watch *w = ev[i].data.ptr;
            if (w->kind == WATCH_WAKE) {
                uint64_t v;
                ssize_t rd = read(E.wake_fd, &v, sizeof(v));
                (void)rd;
                work_finished();
            } else if (w->kind == WATCH_WARM) {
                warm_died(w->warm);
            } else if (w->kind == WATCH_OUTPUT) {
                output_drain(w->build);
                if (ev[i].events & (EPOLLHUP | EPOLLERR)) /* the step closed its output */
                    epoll_ctl(E.epoll_fd, EPOLL_CTL_DEL, w->build->out_fd, NULL);
            } else {
                /* the build may be freed by step_done, and its watches with it: skip its other
                 * events of this round by address, without reading them */
                const void *out_w = &w->build->out_watch, *exit_w = &w->build->exit_watch;
                step_done(w->build);
                for (int j = i + 1; j < n; j++)
                    if (ev[j].data.ptr == out_w || ev[j].data.ptr == exit_w)
                        ev[j].data.ptr = &E.wake_watch;
            }
        }
    }
    work_stop();
    work_finished(); /* packages written by now are kept */
    while (E.nr_running) {
        struct build *b = E.running[0];
        snprintf(b->reason, sizeof(b->reason), STOPPED);
        step_kill(b);
        if (b->pid)
            step_done(b);
        else
            build_end(b, false, 0, NULL);
    }
    while (E.nr_warm)
        warm_discard(E.warm[--E.nr_warm]);
    limits_drain();
    vcs_thread_release();
    store_thread_release();
    return NULL;
}

/* Kills the sandboxes a crashed server left, on hosts where builds have no cgroup: bwrap's
 * --die-with-parent arms itself only after bwrap's own set-up, so a server killed in a step's
 * first milliseconds can leave that step running. They are found by their command line, which
 * binds a workspace under builds_dir, and waited for (bounded) before their workspaces go. */
static bool orphan_sandbox(pid_t pid, const char *cmd, size_t len, void *arg)
{
    const char *builds_dir = arg;
    size_t prefix_len = strlen(builds_dir);
    const char *argv0 = strrchr(cmd, '/') ? strrchr(cmd, '/') + 1 : cmd;
    if (strcmp(argv0, "bwrap") != 0)
        return false;
    for (const char *a = cmd; a < cmd + len; a += strlen(a) + 1)
        if (strncmp(a, builds_dir, prefix_len) == 0 && a[prefix_len] == '/') {
            log_warn("killing sandbox %lld of a build the server lost", (long long)pid);
            return true; /* its pid namespace goes with it */
        }
    return false;
}

static void kill_orphan_sandboxes(const char *builds_dir)
{
    proc_kill_matching("cmdline", orphan_sandbox, (void *)builds_dir, 5000);
}

/* The parent of the builds' cgroups, named after the data directory (one server per data
 * directory): opening it kills and removes the groups of builds a crashed server left. */
static void cgroups_open(const char *data_dir)
{
    char tree[64], why[512];
    cgroup_tree_name(data_dir, tree, sizeof(tree));
    if (!(E.cgroup_name = strdup(tree)))
        return;
    int r = cgroup_parent_open(E.cgroup_name, &E.cgroup_fd, why, sizeof(why));
    if (r) {
        E.cgroup_fd = -1;
        log_warn("cgroups: %s; a cancelled or timed-out build is killed through its sandbox's pid "
                 "namespace%s",
                 why, E.cfg.unsafe_no_sandbox ? " or, without one, its process group only" : "");
    } else {
        log_info("cgroups: each build runs in a cgroup v2 group under '%s'", E.cgroup_name);
    }
}

/* Where the builds' pids and memory limits go (after cgroups_open); one line for what is missing.
 */
static void limits_open(void)
{
    char why[1024];
    if (!E.cgroup_name)
        return;
    E.limited = cgroup_limiter_open(E.cgroup_name, E.cgroup_fd, &E.limiter, why, sizeof(why));
    if (why[0])
        log_warn("cgroups: build.pids or build.memory cannot be enforced on this host: %s", why);
    for (int c = 0; c < CGROUP_NR_CONTROLLERS; c++)
        if (E.limited & (1u << c))
            log_info("cgroups: the builds' %s limit is set through cgroup %s",
                     c == CGROUP_PIDS ? "pids" : "memory", E.limiter.v2[c] ? "v2" : "v1");
}

/* DIR/builds (0700: the host's gate) holds run/ (0711), the builds' directories. For a root
 * server, run/ is bound at /mnt in one mount namespace that the child starting each bubblewrap
 * joins (sandbox_user_share), instead of a namespace made and torn down per step. */
static void sandboxes_share(const char *builds)
{
    char *run = NULL;
    if (asprintf(&run, "%s/run", builds) < 0)
        return;
    int r = mkdir(run, 0711) < 0 ? -errno : chmod(run, 0711) < 0 ? -errno : 0;
    if (!r && E.bwrap && !E.cfg.unsafe_no_sandbox && !E.user_why[0] &&
        (r = sandbox_user_share(&E.user, run)))
        log_warn("sandboxes: cannot make the mount namespace of '%s': %s; each step gets one of "
                 "its own",
                 run, strerror(-r));
    else if (r)
        log_error("cannot create the directory '%s': %s", run, strerror(-r));
    free(run);
}

/* Removes package files no Succeeded package owns: temp files of an interrupted write, and the
 * file of a build killed between the rename and the database's Succeeded. */
static void remove_stray_packages(const char *packages_dir)
{
    DIR *apps = opendir(packages_dir), *files;
    struct dirent *app, *f;
    while (apps && (app = readdir(apps))) {
        if (app->d_name[0] == '.')
            continue;
        char *dir = NULL;
        if (asprintf(&dir, "%s/%s", packages_dir, app->d_name) < 0)
            break;
        files = opendir(dir);
        while (files && (f = readdir(files))) {
            if (f->d_name[0] == '.')
                continue;
            char id[64];
            size_t len = strlen(f->d_name);
            bool keep = false;
            if (len == 36 + 8 && strcmp(f->d_name + 36, ".tar.zst") == 0) {
                struct store_package p;
                memcpy(id, f->d_name, 36);
                id[36] = '\0';
                keep = store_package_get(id, &p) == 0 && p.status == PKG_SUCCEEDED;
            }
            if (!keep) {
                log_warn("removing '%s/%s': no package owns it", dir, f->d_name);
                unlinkat(dirfd(files), f->d_name, 0);
            }
        }
        if (files)
            closedir(files);
        free(dir);
    }
    if (apps)
        closedir(apps);
}

/* The end of the log of a build a crashed server left: why it ended. */
static void log_stopped(const char *package_id, void *arg)
{
    (void)arg;
    char *path = runner_log_path(E.cfg.data_dir, package_id);
    int fd = path ? open(path, O_WRONLY | O_APPEND | O_CLOEXEC) : -1;
    if (fd >= 0) {
        static const char line[] = "\n==> build failed: " STOPPED " (found at the next start)\n";
        ssize_t w = write(fd, line, sizeof(line) - 1);
        (void)w;
        close(fd);
    }
    free(path);
}

int runner_start(const struct runner_config *cfg)
{
    E.cfg = *cfg;
    if (E.cfg.executors < 1)
        E.cfg.executors = 1;
    if (E.cfg.executors > MAX_EXECUTORS)
        E.cfg.executors = MAX_EXECUTORS;
    if (E.cfg.max_memory <= 0)
        E.cfg.max_memory = RUNNER_MAX_MEMORY;
    if (E.cfg.max_pids <= 0)
        E.cfg.max_pids = RUNNER_MAX_PIDS;
    if (E.cfg.max_disk <= 0)
        E.cfg.max_disk = RUNNER_MAX_DISK;
    E.bwrap = proc_find_program("bwrap", "/usr/local/bin:/usr/bin:/bin");
    E.user_why[0] = '\0';
    const char *user = E.cfg.sandbox_user ? E.cfg.sandbox_user : SANDBOX_DEFAULT_USER;
    char user_why[sizeof(E.user_why) - 64];
    if (sandbox_user_init(user, !E.cfg.sandbox_user, &E.user, user_why, sizeof(user_why)))
        snprintf(E.user_why, sizeof(E.user_why), "builds are refused: %s", user_why);
    else if (E.user.drop)
        log_info("build steps run as the user '%s' (uid %u, gid %u), with no capabilities",
                 E.user.name, (unsigned)E.user.uid, (unsigned)E.user.gid);
    else
        log_info("build steps run as this server's user (uid %u), with no capabilities",
                 (unsigned)E.user.uid);
    const char *why;
    if (!runner_can_build(&why))
        log_warn("%s", why);
    else if (!E.bwrap)
        log_warn("builds run WITHOUT a sandbox (--unsafe-no-sandbox)");
    int n = store_package_fail_unfinished(STOPPED, log_stopped, NULL);
    if (n > 0)
        log_warn("marked %d build(s) Failed: the server stopped while they ran", n);
    char *builds = NULL, *packages = NULL;
    cgroups_open(cfg->data_dir);
    limits_open();
    if (asprintf(&builds, "%s/builds", cfg->data_dir) >= 0) {
        kill_orphan_sandboxes(builds);
        fs_remove_tree(builds); /* workspaces of builds that will never finish */
        fs_mkdirs(builds, 0700);
        sandboxes_share(builds);
    }
    if (asprintf(&packages, "%s/packages", cfg->data_dir) >= 0)
        remove_stray_packages(packages);
    free(builds);
    free(packages);
    E.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    E.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (E.wake_fd < 0 || E.epoll_fd < 0)
        return -errno;
    E.wake_watch = (struct watch){.kind = WATCH_WAKE};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &E.wake_watch};
    epoll_ctl(E.epoll_fd, EPOLL_CTL_ADD, E.wake_fd, &ev);
    atomic_store(&E.stopping, false);
    int r = work_start();
    if (!r)
        r = pthread_create(&E.thread, NULL, engine, NULL);
    if (r) {
        work_stop();
        return -r;
    }
    E.started = true;
    return 0;
}

void runner_stop(void)
{
    if (E.started) {
        atomic_store(&E.stopping, true);
        runner_wake();
        pthread_join(E.thread, NULL);
        E.started = false;
    }
    if (E.wake_fd >= 0)
        close(E.wake_fd);
    if (E.epoll_fd >= 0)
        close(E.epoll_fd);
    E.wake_fd = E.epoll_fd = -1;
    cgroup_limiter_close(&E.limiter);
    if (E.cgroup_fd >= 0) {
        cgroup_parent_close(E.cgroup_fd);
        E.cgroup_fd = -1;
    }
    free(E.cgroup_name);
    E.cgroup_name = NULL;
    free(E.bwrap);
    E.bwrap = NULL;
    sandbox_user_release(&E.user);
}
