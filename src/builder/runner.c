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
#include <sys/xattr.h>
#include <unistd.h>

#include <jansson.h>

#include "base/cgroup.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/proc.h"
#include "base/sandbox.h"
#include "base/strbuf.h"
#include "base/strv.h"
#include "base/util.h"
#include "builder/package.h"
#include "builder/packages.h"
#include "builder/pipeline.h"
#include "engine/engine.h"
#include "store/store.h"
#include "vcs/vcs.h"
#include "base/banned.h"

#define MAX_EXECUTORS 64
#define STOPPED       "the server stopped during the build"

/* An executor: a long-lived sandbox (base/sandbox.h: sandbox_executor_init) holding the user,
 * network, IPC and UTS namespaces whose set-up is most of a trivial build's time, one per
 * executor slot. Its agent runs each step of the build that holds it in a sandbox of its own
 * (fresh mount, pid and IPC namespaces; the step is pid 1 there, so nothing it started outlives
 * it) and reports the step's exit status on a pipe of its own. That sandbox is set up ahead, as
 * soon as the step before it ended, and waits in bubblewrap (--block-fd) for the byte of the
 * request: a step then costs about an exec. Its directories (ws, tmp, slipway under root) are
 * bound once, into the steps' root the executor prepares at its start (with /usr, /etc and /dev,
 * read-only: sandbox_executor_init), which each step binds whole; so they stay the same
 * directories for the executor's life: between builds they are emptied, never made again. An
 * idle executor whose bound /etc files the host replaced goes before a build takes it. A build
 * without build.network takes an idle executor before its export; its directory is the build's
 * root. Cancels and timeouts kill the executor (its cgroup), and a new one starts. */
struct executor {
    struct engine_child child;
    int req_fd;                 /* the agent's stdin: a byte per step */
    struct engine_watch status; /* its descriptor 3: "ready", then each step's exit status */
    char line[64];
    size_t line_len;
    bool ready;
    struct build *build; /* the build that holds it */
    char said[256];      /* what it wrote outside a build (bubblewrap's complaint, if it died) */
    size_t said_len;
    char root[PATH_MAX]; /* DIR/builds/run/exec-<server pid>-<n>: the holding build's root */
    struct sandbox_etc_stamp etc; /* the host's /etc files it bound for the steps, at its start */
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
    /* The running step: its own child, or the executor's. A step of its own runs in a cgroup of
     * its own, <PackageId>.<step> (a group cgroup.kill was written to kills what is started in it
     * later), with the build's limits; an executor's group gets the build's limits before each
     * step. */
    struct engine_child own;
    struct engine_child *child;  /* NULL: no step runs */
    struct cgroup_limits limits; /* build.pids and build.memory, as far as the server allows */
    int64_t disk_max;            /* build.disk, as far as the server allows */
    int64_t disk_next_ns;        /* when the running step's build directory is measured next */
    int64_t disk_every_ns;
    struct executor *exec; /* the executor it holds, if any (released with the build) */
    int64_t deadline_ns;
    int64_t step_started_ns;
    /* Work a worker thread does for it (export, package), and what came of it. */
    enum work { WORK_NONE, WORK_EXPORT, WORK_PACKAGE } what;
    struct engine_work work;
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
    struct engine *engine;
    struct engine_owner owner;
    char *bwrap;
    int cgroup_fd;     /* the parent of the builds' cgroups, -1 when the host has none for us */
    char *cgroup_name; /* its name: slipway-<hash of the data directory> */
    struct cgroup_limiter limiter; /* where the pids and memory limits go */
    unsigned limited;              /* the controllers found: 1 << CGROUP_PIDS ... */
    struct sandbox_user user;      /* who runs the steps */
    char user_why[512];            /* why builds are refused when the user is unusable */
    /* Why bubblewrap cannot make sandboxes here ("": it can, or not known yet): found by a probe
     * at the start and again, with back-off, after an executor dies while idle. Written by
     * the engine thread, read by the API's (runner_can_build). */
    pthread_mutex_t why_lock;
    char sandbox_why[640];
    struct engine_child probe;
    char probe_said[512];
    size_t probe_said_len;
    struct engine_backoff probe_backoff;
    struct engine_timer probe_timer;
    struct engine_timer check_timer; /* the next timeout or disk check (check_running) */
    struct build *running[MAX_EXECUTORS];
    size_t nr_running;
    struct executor *exec[MAX_EXECUTORS];
    size_t nr_exec;
    unsigned long long exec_seq;
    struct engine_backoff exec_backoff; /* executors that die while idle start again later */
    struct engine_timer exec_timer;
    bool seccomp_ok; /* DIR/builds/run/steps.seccomp is written */
} E = {.cgroup_fd = -1,
       .limiter = {.v2_fd = -1, .v1_fd = {-1, -1}},
       .why_lock = PTHREAD_MUTEX_INITIALIZER};

bool runner_can_build(const char **why)
{
    static _Thread_local char copy[sizeof(E.sandbox_why)];
    if (E.user_why[0]) {
        if (why)
            *why = E.user_why;
        return false;
    }
    if (E.cfg.unsafe_no_sandbox)
        return true;
    if (!E.bwrap) {
        if (why)
            *why = "builds are refused: bubblewrap (bwrap) is not installed; install it, or "
                   "start the server with --unsafe-no-sandbox to build without a sandbox";
        return false;
    }
    pthread_mutex_lock(&E.why_lock);
    snprintf(copy, sizeof(copy), "%s", E.sandbox_why);
    pthread_mutex_unlock(&E.why_lock);
    if (why)
        *why = copy;
    return !copy[0];
}

void runner_wake(void)
{
    engine_wake(E.engine);
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

static void executor_release(struct executor *x);

static void build_free(struct build *b)
{
    if (b->log_fd >= 0)
        close(b->log_fd);
    if (b->exec) /* its directory was the build's: emptied there */
        executor_release(b->exec);
    else if (b->root)
        fs_remove_tree(b->root);
    if (b->have_pl)
        pipeline_release(&b->pl);
    free(b->root);
    free(b->ws);
    free(b->tmp);
    free(b);
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
        packages_prune(b->pkg.app, b->pkg.app_id, E.cfg.keep_packages);
    for (size_t i = 0; i < E.nr_running; i++) {
        if (E.running[i] == b) {
            E.running[i] = E.running[--E.nr_running];
            break;
        }
    }
    build_free(b);
    runner_wake(); /* an executor is free */
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
    if (b->child)
        engine_child_kill(b->child);
}

/* ---- steps --------------------------------------------------------------------------------- */

/* The step's environment: an allowlist, never the server's own. */
static char **step_env(const struct build *b, const char *home)
{
    char **env = NULL;
    size_t n = 0;
    char number[32];
    snprintf(number, sizeof(number), "%lld", (long long)b->pkg.revision_number);
    int r = strv_add_env(&env, &n, "PATH", "/usr/local/bin:/usr/bin:/bin") ||
            strv_add_env(&env, &n, "HOME", home) || strv_add_env(&env, &n, "LANG", "C.UTF-8") ||
            strv_add_env(&env, &n, "SLIPWAY_APP", b->pkg.app_id) ||
            strv_add_env(&env, &n, "SLIPWAY_BRANCH", b->pkg.branch) ||
            strv_add_env(&env, &n, "SLIPWAY_REVISION", b->pkg.revision) ||
            strv_add_env(&env, &n, "SLIPWAY_REVISION_NUMBER", number) ||
            strv_add_env(&env, &n, "SLIPWAY_VERSION", b->pkg.version);
    for (size_t i = 0; !r && i < b->pl.nr_build_env; i++)
        r = strv_add_env(&env, &n, b->pl.build_env[i].name, b->pl.build_env[i].value);
    if (r) {
        strv_free(env);
        return NULL;
    }
    return env;
}

static void step_output(struct engine_child *c, const char *data, size_t len)
{
    log_write(c->arg, data, len);
}

static void step_exited(struct engine_child *c, int status);

/* Starts a step's process (an engine child: its own cgroups, the build's limits). opts: the
 * identity and mounts; the file size limit is added here. */
static int spawn(struct build *b, struct proc_opts *opts, const char *path, char *const argv[],
                 char *const env[])
{
    char group[48];
    snprintf(group, sizeof(group), "%s.%zu", b->pkg.package_id, b->step + 1);
    opts->max_file_size = (uint64_t)b->disk_max;
    struct engine_spawn s = {.path = path,
                             .argv = argv,
                             .envp = env,
                             .opts = *opts,
                             .in_fd = -1,
                             .group = group,
                             .limits = &b->limits};
    b->own.output = step_output;
    b->own.exited = step_exited;
    b->own.arg = b;
    int r = engine_child_start(&E.owner, &b->own, &s);
    if (!r)
        b->child = &b->own;
    return r;
}

/* The sandbox of a step, in the build's directory `root`: read-only /usr and a few /etc files
 * (base/sandbox.c), the workspace at /workspace, the build's private /tmp, the step scripts
 * read-only at /slipway, no network unless asked for, its own pid namespace (whose pid 1 is the
 * step's shell: when it ends, every process left in the namespace is killed). `inner`: run by
 * an executor's agent, which sees root there (the key calls denied by the seccomp program it
 * gives on descriptor 9), set up ahead and waiting for a byte on descriptor 4 (which bubblewrap
 * closes before the step). Release c either way. */
static const struct sandbox_bind step_binds[] = {
    {"ws", "/workspace", true}, {"tmp", "/tmp", true}, {"slipway", "/slipway", false}};

static int step_sandbox(struct sandbox_cmd *c, const char *root, bool network, bool inner,
                        const char *script)
{
    char *const command[] = {"/bin/sh", "-e", (char *)script, NULL};
    struct sandbox_spec spec = {.dir = root,
                                .binds = step_binds,
                                .nr_binds = 3,
                                .chdir = "/workspace",
                                .network = network,
                                .command = command,
                                .inner = inner,
                                .seccomp_fd = inner ? "9" : NULL,
                                .block_fd = inner ? "4" : NULL};
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

/* ---- executors ----------------------------------------------------------------------------- */

/* Pids an executor's own processes take from a build's build.pids: bubblewrap's monitor and the
 * agent outside, the step's bubblewrap. */
#define EXECUTOR_PIDS 4

static void executor_remove(struct executor *x)
{
    for (size_t i = 0; i < E.nr_exec; i++) {
        if (E.exec[i] == x) {
            E.exec[i] = E.exec[--E.nr_exec];
            break;
        }
    }
}

/* Kills an executor (if it runs) and frees what it holds (after executor_remove). */
static void executor_discard(struct executor *x)
{
    x->child.exited = NULL;
    engine_child_kill(&x->child);
    engine_child_wait(&x->child, -1);
    engine_watch_del(E.engine, &x->status);
    if (x->status.fd >= 0)
        close(x->status.fd);
    if (x->req_fd >= 0)
        close(x->req_fd);
    if (x->root[0])
        fs_remove_tree(x->root);
    free(x);
}

/* Keeps the first bytes a sandbox wrote outside a build (what it complained of, if it died):
 * appends to buf (size bytes with its NUL, *len used), dropping what does not fit. */
static void said_add(char *buf, size_t size, size_t *len, const char *data, size_t n)
{
    size_t room = size - 1 - *len;
    if (n > room)
        n = room;
    memcpy(buf + *len, data, n);
    *len += n;
    buf[*len] = '\0';
}

/* What an executor writes: a step's output into its build's log; outside a build, what its agent
 * or bubblewrap said (a complaint, if it died). */
static void executor_output(struct engine_child *c, const char *data, size_t len)
{
    struct executor *x = c->arg;
    if (x->build) {
        log_write(x->build, data, len);
        return;
    }
    said_add(x->said, sizeof(x->said), &x->said_len, data, len);
}

static void probe_start(void);
static void step_done(struct build *b, const struct engine_child *c, int status);
static void step_limits_hit(struct build *b, const struct engine_child *c, int status);

/* The executor ended. Holding a build whose step ran: killed for a cancel, a timeout or build.disk
 * (the reason is set), or it died (a limit, most likely): the build fails. Holding a build not
 * in a step: that build's next step starts a sandbox of its own. Idle: it should not have; it
 * goes, the probe looks at whether sandboxes can be made at all, and the next one starts after
 * a back-off. */
static void executor_exited(struct engine_child *c, int status)
{
    struct executor *x = c->arg;
    int64_t ran = time_mono_ns() - c->started_ns;
    engine_watch_del(E.engine, &x->status);
    struct build *b = x->build;
    if (b) {
        if (b->child == &x->child) {
            b->child = NULL;
            if (!b->reason[0]) {
                step_limits_hit(b, c, status);
                if (!b->reason[0])
                    snprintf(b->reason, sizeof(b->reason),
                             "step %zu ended with its sandbox (status %d)", b->step + 1, status);
            }
            build_end(b, false, 0, NULL);
        }
        return; /* the build frees it */
    }
    log_warn("an executor exited while idle (status %d)%s%.*s", status, x->said_len ? ": " : "",
             (int)strcspn(x->said, "\n"), x->said);
    executor_remove(x);
    executor_discard(x);
    int64_t delay = engine_backoff_next(&E.exec_backoff, ran);
    if (!engine_stopping(E.engine))
        engine_timer_arm(E.engine, &E.exec_timer, time_mono_ns() + delay);
    if (!E.probe.pid && !E.probe_timer.armed)
        probe_start();
}

/* A line on the executor's status pipe: "ready" once set up, then the exit status of each step
 * (after its output, which is drained first). */
static void executor_status(struct engine_watch *wt, uint32_t events)
{
    struct executor *x = wt->arg;
    ssize_t n = read(wt->fd, x->line + x->line_len, sizeof(x->line) - 1 - x->line_len);
    if (n <= 0) {
        if (n == 0 || (errno != EINTR && errno != EAGAIN) || (events & (EPOLLHUP | EPOLLERR)))
            engine_watch_del(E.engine, wt); /* the agent is going: its exit says the rest */
        return;
    }
    x->line_len += (size_t)n;
    x->line[x->line_len] = '\0';
    char *nl;
    while ((nl = strchr(x->line, '\n'))) {
        *nl = '\0';
        int64_t status = -1;
        bool ready = strcmp(x->line, "ready") == 0;
        if (!ready && parse_i64(x->line, 0, 255, &status))
            status = -1;
        size_t used = (size_t)(nl + 1 - x->line);
        memmove(x->line, nl + 1, x->line_len - used + 1);
        x->line_len -= used;
        struct build *b = x->build;
        if (ready) {
            x->ready = true;
        } else if (b && b->child == &x->child && status >= 0) {
            char run[PATH_MAX];
            /* the sandbox set up next runs nothing without a new one */
            if (snprintf(run, sizeof(run), "%s/slipway/run", x->root) < (int)sizeof(run))
                unlink(run);
            engine_child_drain(&x->child);
            b->child = NULL;
            step_done(b, &x->child, (int)status); /* may free b, never x */
        } else {
            log_warn("executor %s said '%.40s' out of turn: it is stopped", x->child.group,
                     x->line);
            engine_child_kill(&x->child);
            return;
        }
    }
    if (x->line_len >= sizeof(x->line) - 1) {
        log_warn("executor %s: an overlong status line: it is stopped", x->child.group);
        engine_child_kill(&x->child);
    }
}

/* Appends arg to sb as one shell word. */
static void sh_quote(struct strbuf *sb, const char *arg)
{
    strbuf_addch(sb, '\'');
    for (const char *c = arg; *c; c++) {
        if (*c == '\'')
            strbuf_adds(sb, "'\\''");
        else
            strbuf_addch(sb, *c);
    }
    strbuf_addch(sb, '\'');
}

static int step_sandbox(struct sandbox_cmd *c, const char *root, bool network, bool inner,
                        const char *script);

/* The agent, a shell loop run as root of the executor's user namespace: it forbids user
 * namespaces inside first (no step gets the capabilities of a namespace of its own), says
 * "ready" on descriptor 3, then over and over sets up a step sandbox that waits for a byte of
 * the requests (its stdin, given to bubblewrap as descriptor 4, closed before the step runs
 * /slipway/run with /dev/null as its stdin and without the status pipe), and writes the step's
 * exit status on descriptor 3. The runner removes /slipway/run once it has the status: a
 * sandbox that went on without a request (the requests' end: the server is gone) finds none,
 * and the agent ends. seen: where the executor sees its directory. */
static int executor_agent(struct strbuf *sb, const char *seen)
{
    struct sandbox_cmd cmd;
    static const char *const filter = "steps.seccomp";
    int r = step_sandbox(&cmd, seen, false, true, "/slipway/run");
    if (r) {
        sandbox_cmd_release(&cmd);
        return r;
    }
    strbuf_adds(sb, "echo 0 >/proc/sys/user/max_user_namespaces || exit 120\n"
                    "echo ready >&3\n"
                    "while :; do\n");
    for (size_t i = 0; cmd.argv[i]; i++) {
        if (i)
            strbuf_addch(sb, ' ');
        sh_quote(sb, cmd.argv[i]);
    }
    strbuf_adds(sb, " 4<&0 </dev/null 3>&- 9<");
    strbuf_addf(sb, "%.*s/%s", (int)(strrchr(seen, '/') - seen), seen, filter);
    strbuf_adds(sb, "\ns=$?\n[ -e ");
    sh_quote(sb, seen);
    strbuf_adds(sb, "/slipway/run ] || exit 0\necho \"$s\" >&3\ndone\n");
    sandbox_cmd_release(&cmd);
    return strbuf_ok(sb) ? 0 : -ENOMEM;
}

/* Whether executors can run here: bubblewrap, a sandbox user it can be, the seccomp program
 * written, and for a root server the shared mount namespace. */
static bool executors_possible(void)
{
    return E.bwrap && !E.cfg.unsafe_no_sandbox && !E.user_why[0] && E.seccomp_ok &&
           (!E.user.drop || E.user.mount_ns > 0);
}

/* Starts one executor. 0, or -errno. */
static int executor_start(void)
{
    struct executor *x = calloc(1, sizeof(*x));
    int req[2] = {-1, -1}, st[2] = {-1, -1}, r;
    struct sandbox_cmd cmd;
    struct strbuf agent = STRBUF_INIT;
    const char *seen = NULL;
    if (!x)
        return -ENOMEM;
    x->req_fd = -1;
    x->status = (struct engine_watch){.fd = -1, .ready = executor_status, .arg = x};
    char name[64], *root;
    snprintf(name, sizeof(name), "exec-%ld-%llu", (long)getpid(), (unsigned long long)++E.exec_seq);
    root = layout_build_root(name);
    snprintf(x->root, sizeof(x->root), "%s", root ? root : "");
    free(root);
    char group[48];
    snprintf(group, sizeof(group), "exec-%llu", (unsigned long long)E.exec_seq);
    /* The agent keeps its capabilities (ambient ones, which bubblewrap uses), but with an
     * empty bounding set and SECBIT_NOROOT locked, nothing a step runs as root of the namespace
     * can get one back, even without bubblewrap's no_new_privs. */
    char *command[] = {"setpriv",
                       "--securebits",
                       "+noroot,+noroot_locked",
                       "--bounding-set",
                       "-all",
                       "--",
                       "/bin/sh",
                       "-c",
                       "",
                       NULL};
    char *const env[] = {"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8", NULL};
    /* a build's own limits are set before each of its steps (the server's until then; the run
     * script lowers the file size limit to build.disk) */
    struct cgroup_limits lim = {E.cfg.max_pids + EXECUTOR_PIDS, E.cfg.max_memory};
    /* once to learn where it sees its directory, which the agent names */
    r = sandbox_executor_init(&cmd, &E.user, x->root, step_binds, 3, command, &seen);
    if (!r)
        r = executor_agent(&agent, seen);
    sandbox_cmd_release(&cmd);
    command[8] = agent.buf;
    if (!r)
        r = sandbox_executor_init(&cmd, &E.user, x->root, step_binds, 3, command, &seen);
    if (!r)
        r = build_dirs(x->root);
    if (!r) { /* where it mounts the steps' root (sandbox_executor_init) */
        char prep[PATH_MAX];
        if (snprintf(prep, sizeof(prep), "%s/" SANDBOX_PREPARED, x->root) >= (int)sizeof(prep))
            r = -ENAMETOOLONG;
        else if (mkdir(prep, 0755) < 0 && errno != EEXIST)
            r = -errno;
    }
    sandbox_etc_stamp(NULL, &x->etc); /* before it binds them: a change in between replaces it */
    if (!r && (pipe2(req, O_CLOEXEC) < 0 || pipe2(st, O_CLOEXEC) < 0))
        r = -errno;
    x->req_fd = req[1];
    x->status.fd = st[0];
    if (!r) {
        cmd.opts.max_file_size = (uint64_t)E.cfg.max_disk;
        cmd.opts.fd3 = st[1];
        struct engine_spawn s = {.path = E.bwrap,
                                 .argv = cmd.argv,
                                 .envp = env,
                                 .opts = cmd.opts,
                                 .in_fd = req[0],
                                 .group = group,
                                 .limits = &lim};
        x->child.output = executor_output;
        x->child.exited = executor_exited;
        x->child.arg = x;
        r = engine_child_start(&E.owner, &x->child, &s);
    }
    if (!r) {
        fcntl(x->status.fd, F_SETFL, O_NONBLOCK);
        if ((r = engine_watch_add(E.engine, &x->status, EPOLLIN))) {
            x->child.exited = NULL;
            engine_child_kill(&x->child);
            engine_child_wait(&x->child, -1);
        }
    }
    sandbox_cmd_release(&cmd);
    strbuf_release(&agent);
    if (req[0] >= 0)
        close(req[0]);
    if (st[1] >= 0)
        close(st[1]);
    if (r) {
        executor_discard(x);
        return r;
    }
    E.exec[E.nr_exec++] = x;
    return 0;
}

/* Keeps one executor per executor slot, while sandboxes can be made. */
static void executors_fill(void)
{
    while (executors_possible() && !E.sandbox_why[0] && !E.probe.pid && !E.probe_timer.armed &&
           !E.exec_timer.armed && E.nr_exec < E.cfg.executors && !engine_stopping(E.engine)) {
        int r = executor_start();
        if (r) {
            log_warn("cannot start an executor: %s", strerror(-r));
            engine_timer_arm(E.engine, &E.exec_timer,
                             time_mono_ns() + engine_backoff_next(&E.exec_backoff, 0));
            return;
        }
    }
}

static void executor_due(struct engine_timer *t)
{
    (void)t;
    executors_fill();
}

/* Gives an idle executor to the build (before its export): the executor's directory becomes the
 * build's root. */
static bool executor_take(struct build *b)
{
    struct executor *x = NULL;
    struct sandbox_etc_stamp etc;
    bool stale = false;
    /* an idle executor whose steps' /etc is no longer the host's (an upgrade replaced a file)
     * goes, and a new one binds the new files */
    sandbox_etc_stamp(NULL, &etc);
    for (size_t i = 0; i < E.nr_exec;) {
        struct executor *y = E.exec[i];
        if (y->build || sandbox_etc_same(&y->etc, &etc)) {
            i++;
            continue;
        }
        log_info("executor %s: the host's /etc changed: it is replaced", y->child.group);
        executor_remove(y); /* E.exec[i] is the next one now */
        executor_discard(y);
        stale = true;
    }
    if (stale)
        executors_fill();
    for (size_t i = 0; i < E.nr_exec && !x; i++)
        if (!E.exec[i]->build && E.exec[i]->child.pid)
            x = E.exec[i];
    if (!x)
        return false;
    char *root = NULL, *ws = NULL, *tmp = NULL;
    if (asprintf(&root, "%s", x->root) < 0 || asprintf(&ws, "%s/ws", x->root) < 0 ||
        asprintf(&tmp, "%s/tmp", x->root) < 0) {
        free(root);
        free(ws);
        return false;
    }
    free(b->root);
    free(b->ws);
    free(b->tmp);
    b->root = root;
    b->ws = ws;
    b->tmp = tmp;
    x->build = b;
    b->exec = x;
    return true;
}

/* Empties root/name, keeping the directory itself (an executor's next step sandbox binds it
 * already), and gives it back what build_dirs gave it: for the sandbox user's (user) its owner
 * and mode 0700, which a step may have changed, like its extended attributes (ACLs: a default
 * one would open the next build's files to others), which go, and times, set to now.
 * 0, or -errno. */
static int dir_reset(const char *root, const char *name, bool user)
{
    char path[PATH_MAX], sub[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", root, name);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    int r = 0;
    bool removed = true;
    while (!r && removed) { /* entries removed while reading may hide others: read again */
        struct dirent *de;
        removed = false;
        rewinddir(d);
        while (!r && (de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= sizeof(sub))
                r = -ENAMETOOLONG;
            else
                r = fs_remove_tree(sub);
            removed = true;
        }
    }
    if (!r && user) {
        static char names[XATTR_LIST_MAX];
        ssize_t n = flistxattr(fd, names, sizeof(names));
        for (ssize_t i = 0; n > 0 && i < n && !r; i += (ssize_t)strlen(names + i) + 1)
            if (fremovexattr(fd, names + i) < 0 && errno != ENODATA)
                r = -errno;
        if (!r && n < 0 && errno != ENOTSUP)
            r = -errno;
        if (!r && (fchmod(fd, 0700) < 0 || futimens(fd, NULL) < 0))
            r = -errno;
        if (!r)
            r = sandbox_chown(&E.user, path, false);
    }
    closedir(d);
    return r;
}

/* The build that held x is over (no step running): x's directories are emptied for the next
 * build, or x goes if it ended (or they cannot be). */
static void executor_release(struct executor *x)
{
    x->build = NULL;
    if (x->child.pid && !x->child.killed && !dir_reset(x->root, "ws", true) &&
        !dir_reset(x->root, "tmp", true) && !dir_reset(x->root, "slipway", false))
        return;
    executor_remove(x);
    executor_discard(x);
}

/* Runs the build's step (its run script written) in its executor. 0, or -errno. */
static int executor_step(struct build *b)
{
    struct executor *x = b->exec;
    struct cgroup_limits lim = b->limits;
    int r;
    lim.pids += EXECUTOR_PIDS;
    if ((r = engine_child_set_limits(&x->child, &lim)))
        log_warn("build %s: cannot set the limits of cgroup %s: %s", b->pkg.package_id,
                 x->child.group, strerror(-r));
    engine_child_limits_mark(&x->child);
    b->child = &x->child;
    if (write(x->req_fd, "s", 1) != 1) { /* the sandbox set up ahead reads it and goes on */
        r = -errno;
        b->child = NULL;
        return r ? r : -EIO;
    }
    return 0;
}

/* ---- the sandbox probe --------------------------------------------------------------------- */

/* Whether bubblewrap can make a sandbox on this host (a chroot, or a container without user
 * namespaces, cannot): `bwrap ... true` as a step would run, at the start and, after an
 * executor died while idle, again with back-off. While it fails, builds are refused with its
 * reason, which the server's log says once. */
static void probe_output(struct engine_child *c, const char *data, size_t len)
{
    (void)c;
    said_add(E.probe_said, sizeof(E.probe_said), &E.probe_said_len, data, len);
}

static void probe_exited(struct engine_child *c, int status)
{
    bool was_broken = E.sandbox_why[0] != '\0';
    int64_t ran = time_mono_ns() - c->started_ns;
    pthread_mutex_lock(&E.why_lock);
    if (status == 0)
        E.sandbox_why[0] = '\0';
    else
        snprintf(E.sandbox_why, sizeof(E.sandbox_why),
                 "builds are refused: bubblewrap cannot make a sandbox on this host (exit status "
                 "%d%s%.*s); the server tries again, less and less often",
                 status, E.probe_said_len ? ": " : "", (int)strcspn(E.probe_said, "\n"),
                 E.probe_said);
    pthread_mutex_unlock(&E.why_lock);
    if (status == 0) {
        E.probe_backoff.delay_ns = 0;
        if (was_broken)
            log_info("sandboxes: bubblewrap works again; builds are accepted");
        runner_wake(); /* executors again */
        return;
    }
    int64_t delay = engine_backoff_next(&E.probe_backoff, ran);
    if (!was_broken)
        log_error("%s", E.sandbox_why);
    if (!engine_stopping(E.engine))
        engine_timer_arm(E.engine, &E.probe_timer, time_mono_ns() + delay);
}

static void probe_start(void)
{
    struct sandbox_cmd cmd;
    char *const env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", NULL};
    char root[PATH_MAX], *probe_root = layout_build_root("probe");
    snprintf(root, sizeof(root), "%s", probe_root ? probe_root : "");
    free(probe_root);
    E.probe_said_len = 0;
    E.probe_said[0] = '\0';
    int r = step_sandbox(&cmd, root, false, false, "/dev/null");
    if (!r)
        r = build_dirs(root);
    if (!r) {
        struct engine_spawn s = {
            .path = E.bwrap, .argv = cmd.argv, .envp = env, .opts = cmd.opts, .in_fd = -1};
        E.probe.output = probe_output;
        E.probe.exited = probe_exited;
        r = engine_child_start(&E.owner, &E.probe, &s);
    }
    sandbox_cmd_release(&cmd);
    if (r) {
        log_warn("sandboxes: cannot start the probe: %s", strerror(-r));
        engine_timer_arm(E.engine, &E.probe_timer,
                         time_mono_ns() + engine_backoff_next(&E.probe_backoff, 0));
    }
}

static void probe_due(struct engine_timer *t)
{
    (void)t;
    probe_start();
}

/* Appends `export NAME='value'` lines for the step's environment (an executor's step starts with
 * none). */
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

static void check_arm(int64_t due_ns);

static int step_start(struct build *b)
{
    char script[PATH_MAX];
    char **env = NULL;
    int r = -ENOMEM;
    const char *text = b->pl.build_steps[b->step];
    bool sandboxed = !E.cfg.unsafe_no_sandbox;
    /* an executor that died while the build was exported is not used: the step starts cold */
    bool in_exec = b->exec && b->exec->child.pid && !b->exec->child.killed;
    struct proc_opts opts = PROC_OPTS_INIT;
    const char *seen = sandboxed ? NULL : sandbox_host_opts(&E.user, b->root, &opts);
    char home[PATH_MAX];

    b->child = NULL;
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
    if (in_exec) {
        struct strbuf run = STRBUF_INIT;
        char path[PATH_MAX];
        /* the executor started with the server's file size limit, and its agent's environment:
         * the run script sets the build's (ulimit counts 512-byte blocks) */
        strbuf_addf(&run, "ulimit -f %lld\n", (long long)(b->disk_max / 512));
        add_exports(&run, env);
        strbuf_addf(&run, ". /slipway/step-%zu.sh\n", b->step + 1);
        snprintf(path, sizeof(path), "%s/slipway/run", b->root);
        r = !strbuf_ok(&run) ? -ENOMEM : fs_write(path, run.buf, run.len, 0644);
        strbuf_release(&run);
        if (!r)
            r = executor_step(b);
    } else if (sandboxed) {
        struct sandbox_cmd cmd;
        char command[64];
        snprintf(command, sizeof(command), "/slipway/step-%zu.sh", b->step + 1);
        r = step_sandbox(&cmd, b->root, b->pl.build_network, false, command);
        if (!r)
            r = spawn(b, &cmd.opts, E.bwrap, cmd.argv, env);
        sandbox_cmd_release(&cmd);
    } else { /* as the sandbox user, b->root seen at `seen` */
        char seen_script[PATH_MAX];
        snprintf(seen_script, sizeof(seen_script), "%s/slipway/step-%zu.sh", seen, b->step + 1);
        char *argv[] = {"sh", "-e", seen_script, NULL};
        opts.cwd = home;
        r = spawn(b, &opts, "/bin/sh", argv, env);
    }
    if (r) {
        log_line(b, "==> cannot start the step: %s", strerror(-r));
        goto out;
    }
    b->step_started_ns = time_mono_ns();
    b->disk_next_ns = b->step_started_ns + (b->disk_every_ns ? b->disk_every_ns : 1000000000LL);
    check_arm(b->disk_next_ns < b->deadline_ns ? b->disk_next_ns : b->deadline_ns);
    r = 0;
out:
    strv_free(env);
    return r;
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
static void step_limits_hit(struct build *b, const struct engine_child *c, int status)
{
    char v[24];
    unsigned hit = engine_child_limits_hit(c);
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

/* The step's process exited (its output drained, its tree killed): record it and go on. */
static void step_exited(struct engine_child *c, int status)
{
    struct build *b = c->arg;
    b->child = NULL;
    step_done(b, c, status);
}

/* The step ended with status (c: whose limits it ran under): record it and go on. */
static void step_done(struct build *b, const struct engine_child *c, int status)
{
    double secs = (double)(time_mono_ns() - b->step_started_ns) / 1e9;
    if (b->reason[0]) { /* killed: timeout or cancel; the reason is set */
        build_end(b, false, 0, NULL);
        return;
    }
    log_line(b, "==> step %zu exited with status %d (%.2f s)", b->step + 1, status, secs);
    if (status != 0) {
        step_limits_hit(b, c, status);
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

/* ---- work off the engine thread ------------------------------------------------------------ */

/* Exporting a revision and writing a package take as long as the app is large: the engine's
 * workers do them, so that the engine goes on draining logs, starting steps and noticing cancels
 * meanwhile. A build being worked on stays in E.running, with no process. */
static void work_run(struct engine_work *w);
static void work_done(struct engine_work *w);

static void work_submit(struct build *b, enum work what)
{
    b->what = what;
    b->work = (struct engine_work){.run = work_run, .done = work_done, .arg = b};
    engine_submit(E.engine, &b->work);
}

static int open_repo(const struct build *b, struct vcs_repo **repo)
{
    char *path = NULL;
    int r = !(path = layout_repo_path(b->pkg.app_id)) ? -ENOMEM : vcs_open(path, repo);
    free(path);
    return r;
}

/* The package: the package.include paths and manifest.json, then the version tag. */
static int write_package(struct build *b)
{
    char *dest = layout_package_path(b->pkg.app_id, b->pkg.package_id);
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

/* On a worker thread. */
static void work_run(struct engine_work *w)
{
    struct build *b = w->arg;
    b->work_err[0] = '\0';
    if (b->what == WORK_EXPORT) {
        struct vcs_repo *repo;
        b->work_r = open_repo(b, &repo);
        if (!b->work_r)
            b->work_r = vcs_export(repo, b->pkg.revision, b->ws);
        if (!b->work_r) /* before any step runs: the files are the sandbox user's */
            b->work_r = sandbox_chown(&E.user, b->ws, true);
    } else {
        b->work_r = write_package(b);
    }
}

/* Back on the engine thread: the build goes on. */
static void work_done(struct engine_work *w)
{
    struct build *b = w->arg;
    enum work what = b->what;
    b->what = WORK_NONE;
    if (what == WORK_EXPORT && b->work_r) {
        build_fail(b, "cannot export revision %s into the workspace", b->pkg.revision);
    } else if (what == WORK_EXPORT) {
        b->t_exported = time_mono_ns();
        b->deadline_ns = b->t_exported + b->pl.build_timeout_s * 1000000000LL;
        b->step = 0;
        if (engine_stopping(E.engine)) /* failed with the others at the engine's end */
            return;
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
    E.running[E.nr_running++] = b;
    b->t_claimed = time_mono_ns();

    if (!(log_path = layout_build_log_path(b->pkg.package_id)) ||
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

    if (!(repo_path = layout_repo_path(b->pkg.app_id)) || vcs_open(repo_path, &repo)) {
        build_fail(b, "cannot open the app's repository");
        goto out;
    }
    r = vcs_file_read(repo, b->pkg.revision, PIPELINE_FILE, PIPELINE_MAX_FILE, &yml);
    if (r == -ENOENT) {
        build_fail(b,
                   "revision %.12s has no %s at the root of the repository: add one (see "
                   "docs/slipway-yml.md), commit and push",
                   b->pkg.revision, PIPELINE_FILE);
        goto out;
    }
    if (r) {
        if (r == -EFBIG)
            build_fail(b, "cannot read %s: larger than %d KiB", PIPELINE_FILE,
                       PIPELINE_MAX_FILE / 1024);
        else
            build_fail(b, "cannot read %s: %s", PIPELINE_FILE, strerror(-r));
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

    if (!(b->root = layout_build_root(b->pkg.package_id)) ||
        asprintf(&b->ws, "%s/ws", b->root) < 0 || asprintf(&b->tmp, "%s/tmp", b->root) < 0) {
        build_fail(b, "out of memory");
        goto out;
    }
    bool taken = E.bwrap && !E.cfg.unsafe_no_sandbox && !b->pl.build_network && executor_take(b);
    if (!taken)
        fs_remove_tree(b->root);
    if (!taken && build_dirs(b->root)) {
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
    while (E.nr_running < E.cfg.executors && !engine_stopping(E.engine)) {
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

/* Cancels and timeouts: kill the step; step_exited() then fails the build with the reason. The
 * next due time, or INT64_MAX. */
static int64_t check_running(void)
{
    int64_t now = time_mono_ns(), next = INT64_MAX;
    for (size_t i = 0; i < E.nr_running; i++) {
        struct build *b = E.running[i];
        if (!b->child || b->child->killed)
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

/* The check timer fires at the earliest due time it was asked for. */
static void check_arm(int64_t due_ns)
{
    if (!E.check_timer.armed || due_ns < E.check_timer.due_ns)
        engine_timer_arm(E.engine, &E.check_timer, due_ns);
}

static void check_due(struct engine_timer *t)
{
    (void)t;
    int64_t next = check_running();
    if (next != INT64_MAX)
        check_arm(next);
}

/* ---- the engine's callbacks ---------------------------------------------------------------- */

static void owner_wake(struct engine_owner *o)
{
    (void)o;
    fill_slots();
    check_due(&E.check_timer);
    executors_fill();
}

/* Before the server answers: whether sandboxes can be made here (the probe, waited for). */
static void owner_start(struct engine_owner *o)
{
    if (E.bwrap && !E.cfg.unsafe_no_sandbox && !E.user_why[0]) {
        probe_start();
        engine_child_wait(&E.probe, 10000); /* a bwrap that hangs is killed */
    }
    owner_wake(o);
}

/* The engine stops: running builds are killed and marked Failed, executors go. */
static void owner_stop(struct engine_owner *o)
{
    (void)o;
    engine_timer_disarm(E.engine, &E.check_timer);
    engine_timer_disarm(E.engine, &E.probe_timer);
    engine_timer_disarm(E.engine, &E.exec_timer);
    while (E.nr_running) {
        struct build *b = E.running[0];
        snprintf(b->reason, sizeof(b->reason), STOPPED);
        if (b->child) {
            step_kill(b);
            engine_child_wait(b->child, -1); /* step_exited: build_end */
        } else {
            build_end(b, false, 0, NULL);
        }
    }
    while (E.nr_exec) {
        struct executor *x = E.exec[--E.nr_exec];
        executor_discard(x);
    }
    E.probe.exited = NULL;
    engine_child_kill(&E.probe);
    engine_child_wait(&E.probe, -1);
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
static void sandboxes_share(void)
{
    const char *run = layout_builds_run_dir();
    int r = mkdir(run, 0711) < 0 ? -errno : chmod(run, 0711) < 0 ? -errno : 0;
    if (!r && E.bwrap && !E.cfg.unsafe_no_sandbox && !E.user_why[0] &&
        (r = sandbox_user_share(&E.user, run)))
        log_warn("sandboxes: cannot make the mount namespace of '%s': %s; each step gets one of "
                 "its own",
                 run, strerror(-r));
    else if (r)
        log_error("cannot create the directory '%s': %s", run, strerror(-r));
    /* the seccomp program of the steps executors run, which their agents read */
    char *path = layout_build_root("steps.seccomp");
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    r = fd < 0 ? -errno : sandbox_seccomp_write(fd);
    if (fd >= 0 && (fchmod(fd, 0644) < 0 || close(fd) < 0) && !r)
        r = -errno;
    E.seccomp_ok = r == 0;
    if (r && E.bwrap && !E.cfg.unsafe_no_sandbox)
        log_warn("sandboxes: cannot write the steps' seccomp program '%s': %s; each step gets a "
                 "sandbox of its own",
                 path ? path : "", strerror(-r));
    free(path);
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
        char *dir = layout_package_dir(app->d_name);
        if (!dir)
            continue;
        files = opendir(dir);
        while (files && (f = readdir(files))) {
            if (f->d_name[0] == '.')
                continue;
            char id[LAYOUT_ID_LEN];
            struct store_package p;
            bool keep = layout_package_file_id(f->d_name, id) && store_package_get(id, &p) == 0 &&
                        p.status == PKG_SUCCEEDED;
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
    char *path = layout_build_log_path(package_id);
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
    const char *builds = layout_builds_dir();
    cgroups_open(layout_dir());
    limits_open();
    kill_orphan_sandboxes(builds);
    fs_remove_tree(builds); /* workspaces of builds that will never finish */
    fs_mkdirs(builds, 0700);
    sandboxes_share();
    remove_stray_packages(layout_packages_dir());
    E.owner = (struct engine_owner){.name = "builds",
                                    .cgroup_fd = E.cgroup_fd,
                                    .limiter = &E.limiter,
                                    .spare_limit_groups = E.cfg.executors,
                                    .start = owner_start,
                                    .wake = owner_wake,
                                    .stop = owner_stop};
    E.check_timer = (struct engine_timer){.fire = check_due};
    E.probe_timer = (struct engine_timer){.fire = probe_due};
    E.exec_timer = (struct engine_timer){.fire = executor_due};
    E.exec_backoff = (struct engine_backoff){
        .first_ns = 100000000LL, .max_ns = 60000000000LL, .stable_ns = 10000000000LL};
    E.probe_backoff = (struct engine_backoff){
        .first_ns = 100000000LL, .max_ns = 60000000000LL, .stable_ns = INT64_MAX};
    E.engine = cfg->engine;
    engine_add_owner(E.engine, &E.owner);
    return 0;
}

void runner_stop(void)
{
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
    E.engine = NULL;
}
