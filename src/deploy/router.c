/* router — the nginx in front of the app environments; see router.h. The configuration is text
 * made here from validated names, ports and paths; nginx is started and signalled through
 * base/proc and a pidfd, and its state is read from /proc (which processes are its workers) and
 * its error log (why a reload was refused). */
#include "deploy/router.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "base/banned.h"

enum {
    WAIT_MS = 5000,              /* for a reload, a start, the pid file */
    QUIT_MS = 6000,              /* for a master asked to quit (worker_shutdown_timeout 5s) */
    CONF_MAX = 64 * 1024 * 1024, /* the configuration's text */
    OUT_MAX = 64 * 1024,         /* what is read of nginx's messages */
    MAX_PROCS = 64,              /* workers looked at: 2 running, a few shutting down */
};

static struct {
    pthread_mutex_t lock;
    bool open;
    char *nginx, *dir, *listen_host;
    char *dir_real; /* dir without symlinks: nginx's processes run there */
    char *conf, *conf_new, *pid_path, *error_log;
    bool set_ids;
    uid_t uid;
    gid_t gid;
    pid_t master; /* 0: none known */
    int master_fd;
    bool expected; /* a master should run: one was adopted or started */
} R = {.lock = PTHREAD_MUTEX_INITIALIZER, .master_fd = -1};

__attribute__((format(printf, 3, 4))) static void say(char *why, size_t why_len, const char *fmt,
                                                      ...)
{
    if (!why || !why_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Reads at most size-1 bytes of a file into buf, NUL-terminated. Bytes read, or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    while (len + 1 < size) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/* --- validation ------------------------------------------------------------------------- */

static bool name_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len < 1 || len > ROUTER_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* An absolute path that may go in the configuration between double quotes: none of nginx's
 * quoting, variable or block characters, no control characters. */
static bool conf_path_ok(const char *path)
{
    size_t len = path ? strlen(path) : 0;
    if (len < 1 || len > ROUTER_PATH_MAX || path[0] != '/')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x20 || c == 0x7f || strchr("\"'\\$;{}#", c))
            return false;
    }
    return true;
}

static bool port_ok(int port)
{
    return port >= 1 && port <= 65535;
}

/* --- the nginx processes ------------------------------------------------------------------ */

static void master_forget(void)
{
    if (R.master_fd >= 0)
        close(R.master_fd);
    R.master_fd = -1;
    R.master = 0;
}

static bool master_alive(void)
{
    if (R.master_fd < 0)
        return false;
    struct pollfd p = {.fd = R.master_fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0; /* a pidfd is readable once its process has exited */
}

static int master_signal(int sig)
{
    if (R.master_fd < 0)
        return -ESRCH;
    return syscall(SYS_pidfd_send_signal, R.master_fd, sig, NULL, 0) < 0 ? -errno : 0;
}

/* Whether pid is the master of nginx with our configuration: its title (nginx rewrites its
 * command line as "nginx: master process <argv...>") names our nginx.conf and its executable is
 * an nginx. */
static bool is_our_master(pid_t pid)
{
    char path[64], cmdline[4096], exe[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    ssize_t len = read_small(path, cmdline, sizeof(cmdline));
    if (len <= 0)
        return false;
    for (ssize_t i = 0; i < len; i++)
        if (!cmdline[i])
            cmdline[i] = ' ';
    struct strbuf want = STRBUF_INIT;
    strbuf_addf(&want, " -c %s ", R.conf);
    bool ok = str_has_prefix(cmdline, "nginx: master process ") && strbuf_ok(&want) &&
              strstr(cmdline, want.buf);
    strbuf_release(&want);
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, exe, sizeof(exe) - 1);
    if (!ok || n <= 0)
        return false;
    exe[n] = '\0';
    const char *base = strrchr(exe, '/');
    return str_has_prefix(base ? base + 1 : exe, "nginx");
}

/* Takes pid as the master when it is ours: 0, or -ESRCH. */
static int master_take(pid_t pid)
{
    master_forget();
    if (pid <= 1 || !is_our_master(pid))
        return -ESRCH;
    int fd = proc_pidfd(pid);
    if (fd < 0)
        return fd;
    if (!is_our_master(pid)) { /* the pid was reused between the check and pidfd_open */
        close(fd);
        return -ESRCH;
    }
    R.master = pid;
    R.master_fd = fd;
    return 0;
}

static pid_t read_pid_file(void)
{
    char buf[32];
    int64_t pid;
    if (read_small(R.pid_path, buf, sizeof(buf)) <= 0)
        return 0;
    buf[strcspn(buf, "\n")] = '\0';
    return parse_i64(buf, 2, INT32_MAX, &pid) == 0 ? (pid_t)pid : 0;
}

/* The worker processes our configurations ask for: a proxy needs few. */
/* One worker per two CPUs, at most 4: the apps behind the router need the CPUs more (on a
 * 2-CPU host a second worker cost a fifth of the throughput to contention). */
static int workers_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus >= 8 ? 4 : cpus >= 4 ? (int)(cpus / 2) : 1;
}

struct worker {
    pid_t pid;
    bool shutting_down;
};

/* The master's worker processes, at most max: their number. */
static size_t list_workers(struct worker *out, size_t max)
{
    size_t nr = 0;
    DIR *proc = opendir("/proc");
    if (!proc)
        return 0;
    struct dirent *de;
    while (nr < max && (de = readdir(proc))) {
        int64_t pid;
        if (parse_i64(de->d_name, 1, INT32_MAX, &pid) < 0)
            continue;
        char path[64], stat[512], title[256];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        if (read_small(path, stat, sizeof(stat)) <= 0)
            continue;
        const char *end = strrchr(stat, ')'); /* the command name may hold anything */
        char state;
        int ppid;
        if (!end || sscanf(end + 1, " %c %d", &state, &ppid) != 2 || ppid != R.master ||
            state == 'Z')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        if (read_small(path, title, sizeof(title)) <= 0 ||
            !str_has_prefix(title, "nginx: worker process"))
            continue;
        out[nr].pid = (pid_t)pid;
        out[nr].shutting_down = strstr(title, "shutting down") != NULL;
        nr++;
    }
    closedir(proc);
    return nr;
}

/* The environment nginx gets: nothing of the server's but TZ (nginx itself keeps only TZ). */
static void nginx_env(char *env[3], char tz[256])
{
    const char *server_tz = getenv("TZ");
    size_t i = 0;
    env[i++] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    if (server_tz && strlen(server_tz) < 200) {
        snprintf(tz, 256, "TZ=%s", server_tz);
        env[i++] = tz;
    }
    env[i] = NULL;
}

/* Runs nginx with the given arguments after the binary (NULL-terminated), as the router's user;
 * its stderr (the start of it) in out. Its exit status (as proc_wait), or -errno. */
static int run_nginx(const char *const args[], struct strbuf *out)
{
    const char *argv[16];
    size_t argc = 0;
    argv[argc++] = "nginx";
    for (size_t i = 0; args[i] && argc < 15; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    char *env[3], tz[256];
    nginx_env(env, tz);
    int err_fd = memfd_create("nginx-stderr", MFD_CLOEXEC);
    if (err_fd < 0)
        return -errno;
    struct proc_opts opts = PROC_OPTS_INIT;
    opts.cwd = R.dir;
    opts.set_ids = R.set_ids;
    opts.uid = R.uid;
    opts.gid = R.gid;
    opts.no_new_privs = true;
    pid_t pid;
    int r =
        proc_spawn_opts(&opts, R.nginx, (char *const *)argv, env, -1, err_fd, err_fd, &pid, NULL);
    if (r == 0)
        r = proc_wait(pid); /* `nginx -t`, or the start: it returns once it is a daemon */
    char buf[4096];
    ssize_t n = pread(err_fd, buf, sizeof(buf) - 1, 0);
    if (n > 0)
        strbuf_add(out, buf, (size_t)n);
    close(err_fd);
    return r;
}

/* The message worth showing from nginx's output: its first [emerg] line (or the first line),
 * without the "nginx: " prefix and the newline. */
static void nginx_message(const char *text, char *why, size_t why_len, const char *what)
{
    const char *line = strstr(text, "[emerg]");
    if (line) {
        while (line > text && line[-1] != '\n')
            line--;
    } else {
        line = text;
    }
    if (str_has_prefix(line, "nginx: "))
        line += strlen("nginx: ");
    size_t len = strcspn(line, "\n");
    if (len == 0)
        say(why, why_len, "%s failed (nginx said nothing)", what);
    else
        say(why, why_len, "%s: %.*s", what, (int)len, line);
}

/* The errno nginx names in a message ("... failed (98: Address already in use)"), or dflt. */
static int message_errno(const char *msg, int dflt)
{
    const char *p = strstr(msg, "failed (");
    int64_t e;
    char num[8];
    if (!p)
        return dflt;
    p += strlen("failed (");
    size_t len = strspn(p, "0123456789");
    if (len == 0 || len >= sizeof(num) || p[len] != ':')
        return dflt;
    memcpy(num, p, len);
    num[len] = '\0';
    return parse_i64(num, 1, 4095, &e) == 0 ? -(int)e : dflt;
}

/* Waits until the master has all its workers of the configuration it loaded last running
 * (workers_count(): our configurations have that many) and none of the ones in old[] still
 * accepting: that configuration is in effect. */
static int wait_workers(const struct worker *old, size_t nr_old, int64_t deadline_ns,
                        const char *error_log_from, off_t log_offset, char *why, size_t why_len)
{
    int step_ms = 1;
    for (;;) {
        struct worker now[MAX_PROCS];
        size_t nr = list_workers(now, MAX_PROCS);
        size_t fresh = 0;
        bool stale = false;
        for (size_t i = 0; i < nr; i++) {
            bool was_old = false;
            for (size_t j = 0; j < nr_old; j++)
                was_old |= old[j].pid == now[i].pid;
            if (was_old && !now[i].shutting_down)
                stale = true;
            if (!was_old && !now[i].shutting_down)
                fresh++;
        }
        if (fresh >= (size_t)workers_count() && !stale)
            return 0;
        if (!master_alive()) {
            say(why, why_len, "nginx (pid %d) exited", (int)R.master);
            return -ESRCH;
        }
        if (error_log_from) { /* a reload nginx refused: it said why in its error log */
            char buf[OUT_MAX];
            int fd = open(error_log_from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
            ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, log_offset) : -1;
            if (fd >= 0)
                close(fd);
            if (n > 0) {
                buf[n] = '\0';
                if (strstr(buf, "[emerg]")) {
                    nginx_message(buf, why, why_len, "nginx refused the configuration");
                    return message_errno(buf, -EINVAL);
                }
            }
        }
        if (time_mono_ns() > deadline_ns) {
            say(why, why_len, "nginx did not take the configuration within %d s", WAIT_MS / 1000);
            return -ETIMEDOUT;
        }
        sleep_ms(step_ms);
        step_ms = step_ms < 20 ? step_ms * 2 : 20;
    }
}

/* proc_kill_matching's test for the processes a dead master left: its workers keep its ports,
 * so a new master could not bind them. Ours run in our directory (nginx does not chdir); one
 * forked just before the master died may not have its title yet ("nginx: master process"). */
static bool is_orphan_worker(pid_t pid, const char *cmdline, size_t len, void *arg)
{
    (void)arg;
    char path[64], cwd[PATH_MAX];
    if (len < 7 || !str_has_prefix(cmdline, "nginx: "))
        return false;
    snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
    ssize_t n = readlink(path, cwd, sizeof(cwd) - 1);
    if (n <= 0)
        return false;
    cwd[n] = '\0';
    return !strcmp(cwd, R.dir_real);
}

/* Starts nginx with nginx.conf and waits until its workers run. 0, or -errno (why says). */
static int master_start(char *why, size_t why_len)
{
    int64_t deadline = time_mono_ns() + (int64_t)WAIT_MS * 1000000;
    master_forget();
    unlink(R.pid_path); /* a dead master's: the new one's is awaited */
    proc_kill_matching("cmdline", is_orphan_worker, NULL, 2000);
    struct stat st;
    off_t log_offset = stat(R.error_log, &st) == 0 ? st.st_size : 0;
    struct strbuf out = STRBUF_INIT;
    char prefix[ROUTER_PATH_MAX + 2];
    snprintf(prefix, sizeof(prefix), "%s/", R.dir);
    const char *args[] = {"-c", R.conf, "-p", prefix, "-e", "stderr", NULL};
    int r = run_nginx(args, &out);
    if (r < 0) {
        say(why, why_len, "cannot start '%s': %s", R.nginx, strerror(-r));
        goto out;
    }
    if (r != 0) {
        nginx_message(out.buf, why, why_len, "nginx did not start");
        r = message_errno(out.buf, -EIO);
        goto out;
    }
    /* The process started returns once the master runs (after binding its ports); the master
     * writes its pid file right after. */
    int step_ms = 1;
    while ((r = master_take(read_pid_file())) < 0) {
        if (time_mono_ns() > deadline) {
            say(why, why_len, "nginx started but wrote no pid file in '%s'", R.dir);
            r = -ETIMEDOUT;
            goto out;
        }
        sleep_ms(step_ms);
        step_ms = step_ms < 20 ? step_ms * 2 : 20;
    }
    R.expected = true;
    r = wait_workers(NULL, 0, deadline, R.error_log, log_offset, why, why_len);
out:
    strbuf_release(&out);
    return r;
}

/* --- the configuration -------------------------------------------------------------------- */

static void add_json_answer(struct strbuf *sb, const char *code, const char *message)
{
    /* A single-quoted nginx string holding JSON: the message's single quotes are escaped for
     * nginx; names are validated, so nothing else needs it. */
    strbuf_addf(sb, "'{\"errorCode\":\"%s\",\"errorMessage\":\"", code);
    for (const char *p = message; *p; p++) {
        if (*p == '\'')
            strbuf_adds(sb, "\\'");
        else
            strbuf_addch(sb, *p);
    }
    strbuf_adds(sb, "\"}'");
}

static void build_conf(struct strbuf *sb, const struct router_site *sites, size_t nr)
{
    char date[16];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d", &tm);
    const char *d = R.dir;
    char msg[256];
    strbuf_adds(sb, "# Written by Slipway's router; each change of the sites replaces it whole.\n");
    strbuf_addf(sb, "daemon on;\nmaster_process on;\nworker_processes %d;\n", workers_count());
    strbuf_adds(sb, "worker_rlimit_nofile 8192;\nworker_shutdown_timeout 5s;\n");
    strbuf_addf(sb, "pid \"%s\";\nerror_log \"%s\" warn;\n", R.pid_path, R.error_log);
    strbuf_adds(sb, "events {\n    worker_connections 2048;\n}\nhttp {\n");
    strbuf_adds(sb, "    default_type application/octet-stream;\n"
                    "    server_tokens off;\n"
                    "    keepalive_timeout 65s;\n"
                    "    keepalive_requests 10000;\n"
                    "    client_max_body_size 100m;\n"
                    "    client_header_timeout 30s;\n"
                    "    client_body_timeout 60s;\n"
                    "    send_timeout 60s;\n");
    strbuf_addf(sb, "    root \"%s/empty\";\n", d);
    strbuf_addf(sb, "    client_body_temp_path \"%s/tmp/client_body\";\n", d);
    strbuf_addf(sb, "    proxy_temp_path \"%s/tmp/proxy\";\n", d);
    strbuf_addf(sb, "    fastcgi_temp_path \"%s/tmp/fastcgi\";\n", d);
    strbuf_addf(sb, "    uwsgi_temp_path \"%s/tmp/uwsgi\";\n", d);
    strbuf_addf(sb, "    scgi_temp_path \"%s/tmp/scgi\";\n", d);
    strbuf_adds(sb,
                "    log_format slipway '$remote_addr - $remote_user [$time_local] \"$request\" '\n"
                "        '$status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" '\n"
                "        '$request_time $upstream_addr';\n"
                "    open_log_file_cache max=256 inactive=60s;\n"
                "    map $http_host $slipway_host {\n"
                "        \"\" $host;\n"
                "        default $http_host;\n"
                "    }\n"
                "    proxy_http_version 1.1;\n"
                "    proxy_set_header Connection \"\";\n"
                "    proxy_set_header Host $slipway_host;\n"
                "    proxy_set_header X-Real-IP $remote_addr;\n"
                "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                "    proxy_set_header X-Forwarded-Proto $scheme;\n"
                "    proxy_set_header X-Forwarded-Host $host;\n"
                "    proxy_next_upstream error timeout;\n"
                "    proxy_connect_timeout 5s;\n"
                "    proxy_send_timeout 300s;\n"
                "    proxy_read_timeout 300s;\n");
    for (size_t i = 0; i < nr; i++) {
        const struct router_site *s = &sites[i];
        bool proxied = s->running && s->nr_backends > 0;
        if (proxied) {
            /* The zone shares the round robin (and which instance failed) between workers. */
            strbuf_addf(sb, "    upstream site_%zu {\n        zone site_%zu 64k;\n", i, i);
            for (size_t j = 0; j < s->nr_backends; j++)
                strbuf_addf(sb, "        server 127.0.0.1:%d max_fails=1 fail_timeout=5s;\n",
                            s->backends[j]);
            strbuf_adds(sb, "        keepalive 32;\n    }\n");
        }
        strbuf_adds(sb, "    server {\n");
        if (strchr(R.listen_host, ':'))
            strbuf_addf(sb, "        listen [%s]:%d;\n", R.listen_host, s->port);
        else
            strbuf_addf(sb, "        listen %s:%d;\n", R.listen_host, s->port);
        /* the day's name written out, not a variable: nginx then buffers the lines (a write
         * per 32 KB or second instead of one per request); the caller applies again when the
         * local date changes */
        strbuf_addf(sb, "        access_log \"%s/access-%s.log\" slipway buffer=32k flush=1s;\n",
                    s->access_log_dir, date);
        strbuf_adds(sb, "        location / {\n");
        if (proxied) {
            strbuf_addf(sb, "            proxy_pass http://site_%zu;\n        }\n", i);
            strbuf_adds(sb, "        error_page 502 504 =503 @unavailable;\n"
                            "        location @unavailable {\n"
                            "            default_type application/json;\n"
                            "            return 503 ");
            snprintf(msg, sizeof(msg), "no instance of the environment '%s' answers", s->name);
            add_json_answer(sb, "ENVIRONMENT_UNAVAILABLE", msg);
        } else if (s->running) {
            strbuf_adds(sb, "            default_type application/json;\n"
                            "            return 503 ");
            snprintf(msg, sizeof(msg), "the environment '%s' has no instance", s->name);
            add_json_answer(sb, "ENVIRONMENT_UNAVAILABLE", msg);
        } else {
            strbuf_adds(sb, "            default_type application/json;\n"
                            "            return 503 ");
            snprintf(msg, sizeof(msg), "the environment '%s' is not running", s->name);
            add_json_answer(sb, "ENVIRONMENT_NOT_RUNNING", msg);
        }
        strbuf_adds(sb, ";\n        }\n    }\n");
    }
    strbuf_adds(sb, "}\n");
}

static int validate_sites(const struct router_site *sites, size_t nr, char *why, size_t why_len)
{
    if (nr > ROUTER_SITES_MAX || (nr && !sites)) {
        say(why, why_len, "too many sites (%zu, at most %d)", nr, ROUTER_SITES_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < nr; i++) {
        const struct router_site *s = &sites[i];
        if (!name_ok(s->name)) {
            say(why, why_len, "site %zu: a name is 1 to %d of A-Z a-z 0-9 _ -", i, ROUTER_NAME_MAX);
            return -EINVAL;
        }
        if (!port_ok(s->port)) {
            say(why, why_len, "site '%s': port %d is not in 1-65535", s->name, s->port);
            return -EINVAL;
        }
        if (!conf_path_ok(s->access_log_dir)) {
            say(why, why_len,
                "site '%s': the access log directory must be an absolute path "
                "without quotes, '$', ';', '#', braces or control characters",
                s->name);
            return -EINVAL;
        }
        if (s->nr_backends > ROUTER_BACKENDS_MAX || (s->nr_backends && !s->backends)) {
            say(why, why_len, "site '%s': too many instances (%zu, at most %d)", s->name,
                s->nr_backends, ROUTER_BACKENDS_MAX);
            return -EINVAL;
        }
        for (size_t j = 0; j < s->nr_backends; j++) {
            if (!port_ok(s->backends[j])) {
                say(why, why_len, "site '%s': instance port %d is not in 1-65535", s->name,
                    s->backends[j]);
                return -EINVAL;
            }
        }
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(sites[j].name, s->name) || sites[j].port == s->port) {
                say(why, why_len, "sites '%s' and '%s' have the same %s", sites[j].name, s->name,
                    sites[j].port == s->port ? "port" : "name");
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* Writes text to path (0600, owned by the router's user), fsynced. 0 or -errno. */
static int write_conf(const char *path, const char *text, size_t len)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (R.set_ids && fchown(fd, R.uid, R.gid) < 0)
        r = -errno;
    if (!r)
        r = fd_write_all(fd, text, len);
    if (!r && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && !r)
        r = -errno;
    if (r)
        unlink(path);
    return r;
}

static int sync_dir(void)
{
    int fd = open(R.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* The live configuration's text (caller frees), NULL when there is none (or it is unreadable). */
static char *read_conf(size_t *len)
{
    int fd = open(R.conf, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return NULL;
    struct strbuf sb = STRBUF_INIT;
    strbuf_init(&sb, CONF_MAX);
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        strbuf_add(&sb, buf, (size_t)n);
    close(fd);
    if (n < 0)
        strbuf_release(&sb);
    return n < 0 ? NULL : strbuf_detach(&sb, len);
}

/* Puts the previous configuration back as nginx.conf (none: removes it). */
static void restore_conf(const char *old, size_t old_len)
{
    if (old && write_conf(R.conf_new, old, old_len) == 0 && rename(R.conf_new, R.conf) == 0)
        sync_dir();
    else if (!old)
        unlink(R.conf);
}

/* --- the public calls --------------------------------------------------------------------- */

static void state_release(void)
{
    master_forget();
    free(R.nginx);
    free(R.dir);
    free(R.dir_real);
    free(R.listen_host);
    free(R.conf);
    free(R.conf_new);
    free(R.pid_path);
    free(R.error_log);
    R.nginx = R.dir = R.dir_real = R.listen_host = R.conf = R.conf_new = R.pid_path = R.error_log =
        NULL;
    R.expected = false;
    R.open = false;
}

static char *path_in(const char *dir, const char *file)
{
    char *p = NULL;
    return asprintf(&p, "%s/%s", dir, file) < 0 ? NULL : p;
}

/* Makes the directory path (when missing): 0700, the router's user's. Through a descriptor
 * opened without following symlinks: the router's user may own what is there. 0 or -errno. */
static int make_dir(const char *path)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP ? -ENOTDIR : -errno;
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) < 0)
        r = -errno;
    else if (R.set_ids && (st.st_uid != R.uid || st.st_gid != R.gid) &&
             fchown(fd, R.uid, R.gid) < 0)
        r = -errno;
    else if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)
        r = -errno;
    close(fd);
    return r;
}

int router_open(const struct router_config *cfg, char *why, size_t why_len)
{
    int r = 0;
    pthread_mutex_lock(&R.lock);
    if (R.open) {
        say(why, why_len, "the router is already open");
        r = -EBUSY;
        goto unlock;
    }
    unsigned char addr[16];
    const char *host = cfg->listen_host ? cfg->listen_host : "127.0.0.1";
    if (!conf_path_ok(cfg->dir) || strlen(cfg->dir) > ROUTER_PATH_MAX - 64) {
        say(why, why_len,
            "the router's directory must be an absolute path of at most %d bytes "
            "without quotes, '$', ';', '#', braces or control characters",
            ROUTER_PATH_MAX - 64);
        r = -EINVAL;
        goto unlock;
    }
    if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1) {
        say(why, why_len, "'%s' is not an IP address", host);
        r = -EINVAL;
        goto unlock;
    }
    if (cfg->set_ids && cfg->uid == 0) {
        say(why, why_len, "nginx must not run as root");
        r = -EINVAL;
        goto unlock;
    }
    if (cfg->nginx)
        R.nginx = proc_find_program(cfg->nginx, NULL);
    else if (access("/usr/sbin/nginx", X_OK) == 0)
        R.nginx = strdup("/usr/sbin/nginx");
    else
        R.nginx = proc_find_program("nginx", getenv("PATH"));
    if (!R.nginx) {
        say(why, why_len, "nginx is not installed (no '%s'): install it (Debian: nginx-light)",
            cfg->nginx ? cfg->nginx : "/usr/sbin/nginx, nor nginx in PATH");
        r = -ENOENT;
        goto fail;
    }
    R.dir = strdup(cfg->dir);
    R.listen_host = strdup(host);
    R.set_ids = cfg->set_ids;
    R.uid = cfg->uid;
    R.gid = cfg->gid;
    if (!R.dir || !R.listen_host)
        goto nomem;
    size_t len = strlen(R.dir);
    while (len > 1 && R.dir[len - 1] == '/')
        R.dir[--len] = '\0';
    R.conf = path_in(R.dir, "nginx.conf");
    R.conf_new = path_in(R.dir, "nginx.conf.new");
    R.pid_path = path_in(R.dir, "nginx.pid");
    R.error_log = path_in(R.dir, "error.log");
    if (!R.conf || !R.conf_new || !R.pid_path || !R.error_log)
        goto nomem;
    char *sub[] = {R.dir, NULL, NULL, NULL};
    r = fs_mkdirs(R.dir, 0700);
    sub[1] = path_in(R.dir, "tmp");
    sub[2] = path_in(R.dir, "empty");
    for (size_t i = 0; !r && i < 3; i++)
        r = sub[i] ? make_dir(sub[i]) : -ENOMEM;
    free(sub[1]);
    free(sub[2]);
    if (r) {
        say(why, why_len, "cannot make the router's directory '%s': %s", R.dir, strerror(-r));
        goto fail;
    }
    if (!(R.dir_real = realpath(R.dir, NULL)))
        goto nomem;
    if (master_take(read_pid_file()) == 0)
        R.expected = true;
    R.open = true;
    goto unlock;
nomem:
    say(why, why_len, "out of memory");
    r = -ENOMEM;
fail:
    state_release();
unlock:
    pthread_mutex_unlock(&R.lock);
    return r;
}

int router_apply(const struct router_site *sites, size_t nr, char *why, size_t why_len)
{
    struct strbuf text = STRBUF_INIT, out = STRBUF_INIT;
    char *old = NULL;
    size_t old_len = 0;
    int r;
    pthread_mutex_lock(&R.lock);
    if (!R.open) {
        say(why, why_len, "the router is not open");
        r = -EBADF;
        goto out;
    }
    if ((r = validate_sites(sites, nr, why, why_len)) < 0)
        goto out;
    strbuf_init(&text, CONF_MAX);
    build_conf(&text, sites, nr);
    if (!strbuf_ok(&text)) {
        say(why, why_len, "the configuration is too large");
        r = -E2BIG;
        goto out;
    }
    if ((r = write_conf(R.conf_new, text.buf, text.len)) < 0) {
        say(why, why_len, "cannot write '%s': %s", R.conf_new, strerror(-r));
        goto out;
    }
    char prefix[ROUTER_PATH_MAX + 2];
    snprintf(prefix, sizeof(prefix), "%s/", R.dir);
    const char *test_args[] = {"-t", "-q", "-c", R.conf_new, "-p", prefix, "-e", "stderr", NULL};
    r = run_nginx(test_args, &out);
    if (r != 0) {
        if (r < 0)
            say(why, why_len, "cannot run '%s': %s", R.nginx, strerror(-r));
        else
            nginx_message(out.buf, why, why_len, "nginx -t");
        r = r < 0 ? r : -EINVAL;
        unlink(R.conf_new);
        goto out;
    }
    old = read_conf(&old_len);
    if (rename(R.conf_new, R.conf) < 0) {
        r = -errno;
        say(why, why_len, "cannot replace '%s': %s", R.conf, strerror(errno));
        unlink(R.conf_new);
        goto out;
    }
    sync_dir();
    if (!master_alive() && R.master && master_take(read_pid_file()) < 0)
        master_forget(); /* it died: start one below */
    if (!master_alive()) {
        r = master_start(why, why_len);
    } else {
        struct worker workers[MAX_PROCS];
        size_t nr_workers = list_workers(workers, MAX_PROCS);
        struct stat st;
        off_t log_offset = stat(R.error_log, &st) == 0 ? st.st_size : 0;
        int64_t deadline = time_mono_ns() + (int64_t)WAIT_MS * 1000000;
        r = master_signal(SIGHUP);
        if (r < 0)
            say(why, why_len, "cannot signal nginx (pid %d): %s", (int)R.master, strerror(-r));
        else
            r = wait_workers(workers, nr_workers, deadline, R.error_log, log_offset, why, why_len);
        if (r == -ESRCH) /* the master died meanwhile: start one with the new configuration */
            r = master_start(why, why_len);
    }
    if (r < 0)
        restore_conf(old, old_len);
out:
    strbuf_release(&text);
    strbuf_release(&out);
    free(old);
    pthread_mutex_unlock(&R.lock);
    return r;
}

pid_t router_pid(void)
{
    pthread_mutex_lock(&R.lock);
    pid_t pid = master_alive() ? R.master : 0;
    pthread_mutex_unlock(&R.lock);
    return pid;
}

int router_check(char *why, size_t why_len)
{
    int r = 0;
    pthread_mutex_lock(&R.lock);
    if (!R.open) {
        say(why, why_len, "the router is not open");
        r = -EBADF;
    } else if (R.expected && !master_alive()) {
        /* A master another server started (router_close without stop, then open) is adopted
         * again rather than doubled. */
        if (master_take(read_pid_file()) == 0)
            r = 0;
        else if (access(R.conf, R_OK) < 0)
            r = 0; /* nothing was ever in effect here */
        else
            r = (r = master_start(why, why_len)) < 0 ? r : 1;
    }
    pthread_mutex_unlock(&R.lock);
    return r;
}

void router_close(bool stop)
{
    pthread_mutex_lock(&R.lock);
    if (!R.open)
        goto unlock;
    if (stop && master_alive()) {
        static const int sigs[] = {SIGQUIT, SIGTERM, SIGKILL};
        static const int wait_ms[] = {QUIT_MS, 2000, 2000};
        struct worker workers[MAX_PROCS];
        size_t nr_workers = 0;
        for (size_t i = 0; i < 3 && master_alive(); i++) {
            if (sigs[i] == SIGKILL) /* its workers would outlive it: they go too */
                nr_workers = list_workers(workers, MAX_PROCS);
            if (master_signal(sigs[i]) < 0)
                break;
            struct pollfd p = {.fd = R.master_fd, .events = POLLIN};
            while (poll(&p, 1, wait_ms[i]) < 0 && errno == EINTR)
                ;
        }
        for (size_t i = 0; i < nr_workers; i++)
            kill(workers[i].pid, SIGKILL);
    }
    if (stop) /* and what a master that died before left */
        proc_kill_matching("cmdline", is_orphan_worker, NULL, 2000);
    state_release();
unlock:
    pthread_mutex_unlock(&R.lock);
}
