/* instance — `slipway instance`, the launcher of one app instance or scheduled event: runs the
 * app, writes its output to the daily log, passes its exit status on; see instance.h.
 *
 * It forks the app itself rather than through base/proc: proc gives every child a process group
 * of its own, and the app must stay in the launcher's, which the engine signals as a whole. The
 * launcher is single-threaded, so a plain fork() is safe here.
 */
#include "deploy/instance.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "base/banned.h"

#define MAX_LINE_MIN  64
#define MAX_LINE_MAX  (1 << 20)
#define READ_CHUNK    65536
#define PIPE_SIZE     (256 * 1024) /* asked for, so a slow disk holds the app back later */
#define REOPEN_MS     10000        /* a log file that could not be opened: next try */
#define DRAIN_MAX     (16 << 20)   /* read after the app's exit, at most */
#define EXIT_LAUNCHER 125
#define EXIT_NOEXEC   126
#define EXIT_NOTFOUND 127
#define STAMP_SIZE    80 /* what snprintf may write for any int, not just real dates */
#define ELLIPSIS      "\xe2\x80\xa6"

extern char **environ;

struct launcher {
    const char *log_dir, *label, *cwd;
    bool set_ids;
    uid_t uid;
    gid_t gid;
    size_t max_line;
    char **argv; /* the app's, NULL-terminated */

    int log_fd;         /* the current day's file, or -1 */
    long log_date;      /* its local date as YYYYMMDD (0: none yet) */
    int64_t log_try_ms; /* monotonic time of the last failed open */
    struct strbuf out;  /* lines stamped and not yet written */
    char *buf;          /* output read and not yet a line: buf[0..len), room for cap + 1 */
    size_t len, cap;
};

/* What the app's child reports through its close-on-exec pipe when it fails before execve. */
struct child_err {
    int step; /* enum child_step */
    int err;  /* errno */
};
enum child_step { STEP_STDIO, STEP_CWD, STEP_IDS, STEP_CAPS, STEP_NNP, STEP_EXEC };

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("slipway instance: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nusage: slipway instance --log-dir DIR --label L --cwd DIR [--uid N --gid N]\n"
          "                        [--max-line N] -- PROGRAM [ARG...]\n"
          "(internal: the server starts it for each app instance)\n",
          stderr);
    return -1;
}

static bool label_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > INSTANCE_MAX_LABEL)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("_.:-", *s)))
            return false;
    return true;
}

/* 0, or -1 after a message on stderr. */
static int parse_args(struct launcher *l, int argc, char **argv)
{
    const char *uid = NULL, *gid = NULL, *max_line = NULL;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--"); i += 2) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        const char **slot = !strcmp(opt, "--log-dir")    ? &l->log_dir
                            : !strcmp(opt, "--label")    ? &l->label
                            : !strcmp(opt, "--cwd")      ? &l->cwd
                            : !strcmp(opt, "--uid")      ? &uid
                            : !strcmp(opt, "--gid")      ? &gid
                            : !strcmp(opt, "--max-line") ? &max_line
                                                         : NULL;
        if (!slot)
            return usage_error("unknown option '%s'", opt);
        if (!val || !strcmp(val, "--"))
            return usage_error("option '%s' needs a value", opt);
        if (*slot)
            return usage_error("option '%s' given twice", opt);
        *slot = val;
    }
    if (i >= argc || i + 1 >= argc)
        return usage_error("%s", "no program given after '--'");
    l->argv = argv + i + 1;
    if (!l->log_dir || !l->label || !l->cwd)
        return usage_error("%s", "--log-dir, --label and --cwd are required");
    if (l->log_dir[0] != '/' || strlen(l->log_dir) > PATH_MAX - 32)
        return usage_error("--log-dir '%s' must be an absolute path", l->log_dir);
    if (!label_valid(l->label))
        return usage_error("--label '%s' must be 1-100 of A-Z a-z 0-9 _ . : -", l->label);
    if (!l->cwd[0] || strlen(l->cwd) >= PATH_MAX)
        return usage_error("--cwd '%s' is not a directory path", l->cwd);
    if (!uid != !gid)
        return usage_error("%s", "--uid and --gid go together");
    int64_t v;
    if (uid) {
        if (parse_i64(uid, 1, (int64_t)UINT32_MAX - 1, &v) < 0)
            return usage_error("--uid '%s' must be a number other than 0", uid);
        l->uid = (uid_t)v;
        if (parse_i64(gid, 1, (int64_t)UINT32_MAX - 1, &v) < 0)
            return usage_error("--gid '%s' must be a number other than 0", gid);
        l->gid = (gid_t)v;
        l->set_ids = true;
    }
    l->max_line = INSTANCE_MAX_LINE_DEFAULT;
    if (max_line) {
        if (parse_i64(max_line, MAX_LINE_MIN, MAX_LINE_MAX, &v) < 0)
            return usage_error("--max-line '%s' must be a number from 64 to 1048576", max_line);
        l->max_line = (size_t)v;
    }
    return 0;
}

/* ---- the log ------------------------------------------------------------------------------ */

/* The local time now as "2026-12-06T01:45:00.123+01:00" (ts holds STAMP_SIZE bytes) and its date as
 * YYYYMMDD. */
static long stamp(char ts[STAMP_SIZE])
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    if (!localtime_r(&now.tv_sec, &tm))
        memset(&tm, 0, sizeof(tm));
    int off = (int)(tm.tm_gmtoff / 60 % (24 * 60)), abs_off = off < 0 ? -off : off;
    snprintf(ts, STAMP_SIZE, "%04d-%02d-%02dT%02d:%02d:%02d.%03d%c%02d:%02d", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(now.tv_nsec / 1000000), off < 0 ? '-' : '+', abs_off / 60, abs_off % 60);
    return (long)(tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

/* Writes the stamped lines to the file of `date`, opened when the date changed (or again, some
 * time after a failed open); drops them when there is none. */
static void log_flush(struct launcher *l, long date)
{
    if (!l->out.len)
        return;
    int64_t now_ms = time_mono_ns() / 1000000;
    if (date != l->log_date || (l->log_fd < 0 && now_ms - l->log_try_ms >= REOPEN_MS)) {
        if (l->log_fd >= 0)
            close(l->log_fd);
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/app-%04ld-%02ld-%02ld.log", l->log_dir, date / 10000,
                 date / 100 % 100, date % 100);
        l->log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
        l->log_date = date;
        l->log_try_ms = now_ms;
    }
    /* one write for whole lines: other launchers append to the same file */
    if (l->log_fd >= 0 && strbuf_ok(&l->out))
        fd_write_all(l->log_fd, l->out.buf, l->out.len);
    strbuf_reset(&l->out);
}

/* Where to cut p[0..n) so that no UTF-8 character is split: n, or before a lead byte whose
 * sequence would go past n. */
static size_t utf8_cut(const char *p, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)p[n - k];
        if (c < 0x80)
            return n;
        if (c >= 0xc0) {
            size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            return need > k ? n - k : n;
        }
    }
    return n;
}

/* Adds one stamped line of text p[0..n) to l->out. p[n] must be addressable: it is set to NUL
 * for the copy and restored. Control bytes in p are replaced in place. */
static void line_add(struct launcher *l, const char *ts, char *p, size_t n, bool cont)
{
    if (!cont && n && p[n - 1] == '\r')
        n--;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            p[i] = '?'; /* NUL included: the text is a C string below */
    }
    strbuf_addf(&l->out, "%s [%s] ", ts, l->label);
    size_t from = l->out.len;
    char saved = p[n];
    p[n] = '\0';
    strbuf_add_utf8_lossy(&l->out, p);
    p[n] = saved;
    /* C1 controls (U+0080-U+009F, "\xc2\x80".."\xc2\x9f" in the valid UTF-8 above) */
    if (strbuf_ok(&l->out) && memchr(l->out.buf + from, 0xc2, l->out.len - from)) {
        char *s = l->out.buf;
        size_t j = from;
        for (size_t i = from; i < l->out.len; i++) {
            if ((unsigned char)s[i] == 0xc2 && i + 1 < l->out.len &&
                (unsigned char)s[i + 1] <= 0x9f) {
                s[j++] = '?';
                i++;
            } else {
                s[j++] = s[i];
            }
        }
        l->out.len = j;
        s[j] = '\0';
    }
    if (cont)
        strbuf_adds(&l->out, ELLIPSIS);
    strbuf_addch(&l->out, '\n');
}

/* One line of the launcher's own, written at once. */
static void say(struct launcher *l, struct strbuf *msg)
{
    char ts[STAMP_SIZE];
    long date = stamp(ts);
    if (strbuf_ok(msg)) {
        line_add(l, ts, msg->buf, msg->len, false);
        log_flush(l, date);
    }
    strbuf_reset(msg);
}

/* Turns the complete lines of l->buf (with at_end, all of it) into log lines and writes them;
 * what remains is a partial line shorter than max_line + 1 bytes. */
static void consume(struct launcher *l, bool at_end)
{
    char ts[STAMP_SIZE];
    long date = stamp(ts); /* what one read brought arrived at once */
    size_t start = 0;
    while (start < l->len) {
        char *p = l->buf + start;
        size_t avail = l->len - start;
        char *nl = memchr(p, '\n', avail < l->max_line + 1 ? avail : l->max_line + 1);
        if (nl) {
            line_add(l, ts, p, (size_t)(nl - p), false);
            start += (size_t)(nl - p) + 1;
        } else if (avail > l->max_line) {
            size_t n = utf8_cut(p, l->max_line);
            line_add(l, ts, p, n, true);
            start += n;
        } else {
            if (at_end) {
                line_add(l, ts, p, avail, false);
                start += avail;
            }
            break;
        }
    }
    memmove(l->buf, l->buf + start, l->len - start);
    l->len -= start;
    log_flush(l, date);
}

/* Reads what the pipe holds into l->buf and consumes it. >0 read, 0 at EOF, -errno. */
static ssize_t read_some(struct launcher *l, int fd)
{
    ssize_t n = read(fd, l->buf + l->len, l->cap - l->len);
    if (n < 0)
        return -errno;
    l->len += (size_t)n;
    if (n > 0)
        consume(l, false);
    return n;
}

/* ---- the app's process -------------------------------------------------------------------- */

/* Only the permitted, effective and inheritable sets: the ambient one is a subset of them. */
static bool caps_none(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) < 0)
        return false;
    for (int i = 0; i < 2; i++)
        if (data[i].effective || data[i].permitted || data[i].inheritable)
            return false;
    return true;
}

/* The launcher's own: every capability gone, for good (bounding and ambient sets too; dropping
 * from the bounding set needs CAP_SETPCAP, which only a root launcher has, and only matters for
 * one), and no_new_privs. 0 or -errno. */
static int drop_capabilities(void)
{
    for (int cap = 0; cap < 64; cap++) {
        int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (r < 0)
            break; /* EINVAL: past the kernel's last capability */
        if (r == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EPERM)
            return -errno;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -errno;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    return caps_none() ? 0 : -EPERM;
}

/* The forked child, until execve: reports the failed step on err_fd and exits. */
static void child_run(const struct launcher *l, int out_fd, int err_fd)
{
    struct child_err ce = {STEP_STDIO, 0};
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL); /* fails harmlessly for SIGKILL and SIGSTOP */
    /* stdin is the launcher's /dev/null; every other descriptor of the launcher is CLOEXEC */
    if (dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        goto fail;
    ce.step = STEP_CWD;
    if (chdir(l->cwd) < 0)
        goto fail;
    if (l->set_ids) {
        ce.step = STEP_IDS;
        if (setgroups(0, NULL) < 0 || setresgid(l->gid, l->gid, l->gid) < 0 ||
            setresuid(l->uid, l->uid, l->uid) < 0)
            goto fail;
        ce.step = STEP_CAPS;
        if (!caps_none()) {
            errno = EPERM;
            goto fail;
        }
        ce.step = STEP_NNP;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            goto fail;
    }
    ce.step = STEP_EXEC;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(l->argv[0], l->argv, environ);
fail:
    ce.err = errno;
    if (write(err_fd, &ce, sizeof(ce)) < 0) {
        /* nothing to do: the launcher then sees an app that exited 127 */
    }
    _exit(EXIT_NOTFOUND);
}

static void describe_child_err(const struct launcher *l, const struct child_err *ce,
                               struct strbuf *msg)
{
    strbuf_adds(msg, "cannot start: ");
    switch (ce->step) {
    case STEP_STDIO:
        strbuf_adds(msg, "cannot redirect its output");
        break;
    case STEP_CWD:
        strbuf_addf(msg, "cannot enter '%s'", l->cwd);
        break;
    case STEP_IDS:
        strbuf_addf(msg, "cannot become uid %u gid %u", (unsigned)l->uid, (unsigned)l->gid);
        break;
    case STEP_CAPS:
        strbuf_addf(msg, "uid %u would keep capabilities", (unsigned)l->uid);
        break;
    case STEP_NNP:
        strbuf_adds(msg, "cannot set no_new_privs");
        break;
    default:
        strbuf_addf(msg, "cannot execute '%s'", l->argv[0]);
    }
    strbuf_addf(msg, ": %s", strerror(ce->err));
}

/* The launcher's own descriptors: stdio /dev/null, nothing inherited above (a listening socket
 * kept here would stop a restarted server from binding its port). 0 or -errno. */
static int detach_stdio(void)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        return -errno;
    for (int fd = 0; fd < 3; fd++)
        if (null != fd && dup2(null, fd) < 0)
            return -errno;
    if (syscall(SYS_close_range, 3, ~0U, 0) < 0) {
        struct rlimit lim;
        if (getrlimit(RLIMIT_NOFILE, &lim) < 0)
            return -errno;
        for (rlim_t fd = 3; fd < lim.rlim_max && fd < (1u << 20); fd++)
            close((int)fd);
    }
    return 0;
}

static int launcher_run(struct launcher *l)
{
    struct strbuf msg = STRBUF_INIT;
    int out[2] = {-1, -1}, err[2] = {-1, -1}, pidfd = -1, r = EXIT_LAUNCHER;
    pid_t pid = -1;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        strbuf_addf(&msg, "cannot start: cannot make a pipe: %s", strerror(errno));
        say(l, &msg);
        goto out;
    }
    fcntl(out[0], F_SETPIPE_SZ, PIPE_SIZE); /* a smaller pipe does as well */
    pid = fork();
    if (pid < 0) {
        strbuf_addf(&msg, "cannot start: cannot fork: %s", strerror(errno));
        say(l, &msg);
        goto out;
    }
    if (pid == 0)
        child_run(l, out[1], err[1]);
    close(out[1]);
    close(err[1]);
    out[1] = err[1] = -1;

    struct child_err ce;
    ssize_t n;
    while ((n = read(err[0], &ce, sizeof(ce))) < 0 && errno == EINTR)
        ;
    if (n == (ssize_t)sizeof(ce)) { /* it never ran */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        describe_child_err(l, &ce, &msg);
        say(l, &msg);
        r = ce.step != STEP_EXEC                    ? EXIT_LAUNCHER
            : ce.err == ENOENT || ce.err == ENOTDIR ? EXIT_NOTFOUND
                                                    : EXIT_NOEXEC;
        goto out;
    }

    int drop = drop_capabilities();
    strbuf_addf(&msg, "started (pid %ld)", (long)pid);
    say(l, &msg);
    if (drop < 0) {
        strbuf_addf(&msg, "warning: the launcher cannot drop its capabilities: %s",
                    strerror(-drop));
        say(l, &msg);
    }

    /* Read until the app has exited (its pidfd is readable) or, without a pidfd, until EOF. */
    pidfd = proc_pidfd(pid);
    bool eof = false, exited = false;
    while (!exited && !(eof && pidfd < 0)) {
        struct pollfd fds[2] = {{eof ? -1 : out[0], POLLIN, 0}, {pidfd, POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[0].revents) {
            ssize_t got = read_some(l, out[0]);
            if (got == 0 || (got < 0 && got != -EINTR && got != -EAGAIN))
                eof = true;
        }
        if (fds[1].revents)
            exited = true;
    }
    /* A stop (SIGTERM to the process group) ends a shell that runs the app as its child (dash
     * does not exec the last command of `sh -c`) at once, while the app takes its time to shut
     * down: then the instance lasts until the app has closed its output too (the engine kills
     * what is left after run.stop_timeout). */
    siginfo_t how = {0};
    if (!eof && waitid(P_PID, (id_t)pid, &how, WEXITED | WNOWAIT) == 0 &&
        how.si_code == CLD_KILLED &&
        (how.si_status == SIGTERM || how.si_status == SIGINT || how.si_status == SIGHUP)) {
        while (!eof) {
            ssize_t got = read_some(l, out[0]);
            if (got == 0 || (got < 0 && got != -EINTR && got != -EAGAIN))
                eof = true;
        }
    }
    /* What the app wrote before its exit is in the pipe; what it left running may write on. */
    if (!eof && fcntl(out[0], F_SETFL, O_NONBLOCK) == 0) {
        size_t drained = 0;
        ssize_t got;
        while (drained < DRAIN_MAX && ((got = read_some(l, out[0])) > 0 || got == -EINTR))
            drained += got > 0 ? (size_t)got : 0;
    }
    consume(l, true);

    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            strbuf_addf(&msg, "cannot wait for the app: %s", strerror(errno));
            say(l, &msg);
            goto out;
        }
    }
    if (WIFSIGNALED(status)) {
        strbuf_addf(&msg, "killed by signal %d", WTERMSIG(status));
        r = 128 + WTERMSIG(status);
    } else {
        strbuf_addf(&msg, "exited with status %d", WEXITSTATUS(status));
        r = WEXITSTATUS(status);
    }
    say(l, &msg);
out:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    if (pidfd >= 0)
        close(pidfd);
    strbuf_release(&msg);
    return r;
}

int instance_main(int argc, char **argv)
{
    struct launcher l = {.log_fd = -1};
    if (parse_args(&l, argc, argv) < 0)
        return EXIT_LAUNCHER;
    int r = detach_stdio();
    if (r < 0) {
        fprintf(stderr, "slipway instance: cannot detach from its caller: %s\n", strerror(-r));
        return EXIT_LAUNCHER;
    }
    /* A SIGTERM to the process group is for the app; the launcher logs until it has exited. */
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigaction(SIGPIPE, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGTERM, &ign, NULL);
    tzset();

    strbuf_init(&l.out, 0);
    l.cap = l.max_line + READ_CHUNK;
    l.buf = malloc(l.cap + 1);
    if (!l.buf)
        return EXIT_LAUNCHER;
    r = launcher_run(&l);
    if (l.log_fd >= 0)
        close(l.log_fd);
    strbuf_release(&l.out);
    free(l.buf);
    return r;
}
