/* test_router — the router with the real nginx in a temp directory, in front of small HTTP
 * responders forked here (each answers its own port number). When run as root, nginx runs as
 * nobody, as a root server would have it. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../helpers.h"
#include "base/util.h"
#include "deploy/router.h"

static char tmp[PATH_MAX], rdir[PATH_MAX + 16], logs[PATH_MAX + 16];
static struct router_config cfg;
static pid_t backend_pids[8];
static size_t nr_backend_pids;
static char why[512];

static void setup(void)
{
    temp_dir(tmp, "router");
    cr_assert_eq(chmod(tmp, 0711), 0); /* nobody reaches the router's directory inside */
    snprintf(rdir, sizeof(rdir), "%s/router", tmp);
    snprintf(logs, sizeof(logs), "%s/logs", tmp);
    cr_assert_eq(mkdir(logs, 0755), 0);
    cfg = (struct router_config){.dir = rdir};
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("nobody");
        cr_assert_not_null(pw, "no user 'nobody'");
        cfg.set_ids = true;
        cfg.uid = pw->pw_uid;
        cfg.gid = pw->pw_gid;
        cr_assert_eq(chown(logs, pw->pw_uid, pw->pw_gid), 0);
    }
}

static void teardown(void)
{
    /* Whatever the test left: the router open or closed, nginx running or not. */
    router_open(&cfg, NULL, 0);
    router_close(true);
    for (size_t i = 0; i < nr_backend_pids; i++) {
        kill(backend_pids[i], SIGKILL);
        waitpid(backend_pids[i], NULL, 0);
    }
    nr_backend_pids = 0;
    fs_remove_tree(tmp);
}

TestSuite(router, .init = setup, .fini = teardown, .timeout = 60);

/* A listening socket on 127.0.0.1 (port 0: any); its port in *port. */
static int listen_on(int port_wanted, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_wanted)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(fd, 64), 0);
    socklen_t len = sizeof(sa);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A port nothing listens on now (for the router's sites). */
static int free_port(void)
{
    int port;
    close(listen_on(0, &port));
    return port;
}

/* Forks a responder that answers every request with its port number; its port. */
static int backend_start(void)
{
    int port, fd = listen_on(0, &port);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) {
            int c = accept(fd, NULL, NULL);
            if (c < 0)
                continue;
            char req[8192];
            size_t len = 0;
            while (len < sizeof(req) - 1) {
                ssize_t n = read(c, req + len, sizeof(req) - 1 - len);
                if (n <= 0)
                    break;
                len += (size_t)n;
                req[len] = '\0';
                if (strstr(req, "\r\n\r\n"))
                    break;
            }
            char body[16], answer[256];
            int body_len = snprintf(body, sizeof(body), "%d", port);
            int n = snprintf(answer, sizeof(answer),
                             "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                             "%d\r\nConnection: close\r\n\r\n%s",
                             body_len, body);
            if (write(c, answer, (size_t)n) < 0)
                _exit(1);
            close(c);
        }
    }
    close(fd);
    backend_pids[nr_backend_pids++] = pid;
    return port;
}

static void backend_kill(int port)
{
    (void)port;
    cr_assert_gt(nr_backend_pids, 0);
    pid_t pid = backend_pids[--nr_backend_pids];
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

struct answer {
    int status;
    char content_type[128];
    char body[4096];
};

/* GET / on 127.0.0.1:port (HTTP/1.0, one connection); false when the connection failed. */
static bool http_get(int port, struct answer *a)
{
    memset(a, 0, sizeof(*a));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return false;
    }
    const char req[] = "GET / HTTP/1.0\r\nHost: app.test\r\n\r\n";
    cr_assert_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    char buf[8192];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &a->status) != 1)
        return false;
    const char *ct = strcasestr(buf, "\r\nContent-Type: ");
    if (ct)
        snprintf(a->content_type, sizeof(a->content_type), "%.*s", (int)strcspn(ct + 16, "\r\n"),
                 ct + 16);
    const char *body = strstr(buf, "\r\n\r\n");
    if (body)
        snprintf(a->body, sizeof(a->body), "%s", body + 4);
    return true;
}

static struct router_site site(const char *name, int port, const int *backends, size_t nr,
                               bool running)
{
    return (struct router_site){.name = name,
                                .port = port,
                                .backends = backends,
                                .nr_backends = nr,
                                .running = running,
                                .access_log_dir = logs};
}

static void open_router(void)
{
    int r = router_open(&cfg, why, sizeof(why));
    cr_assert_eq(r, 0, "router_open: %d %s", r, why);
}

static void apply(const struct router_site *sites, size_t nr)
{
    int r = router_apply(sites, nr, why, sizeof(why));
    cr_assert_eq(r, 0, "router_apply: %d %s", r, why);
}

static int get_port_body(int port)
{
    struct answer a;
    cr_assert(http_get(port, &a), "no answer on port %d", port);
    cr_assert_eq(a.status, 200, "status %d: %s", a.status, a.body);
    return atoi(a.body);
}

/* The answer is a 503 with a JSON body of the given errorCode. */
static void assert_json_503(int port, const char *code)
{
    struct answer a;
    cr_assert(http_get(port, &a));
    cr_assert_eq(a.status, 503, "status %d: %s", a.status, a.body);
    cr_assert_str_eq(a.content_type, "application/json");
    json_error_t err;
    json_t *j = json_loads(a.body, 0, &err);
    cr_assert_not_null(j, "not JSON: %s (%s)", a.body, err.text);
    cr_assert_str_eq(json_string_value(json_object_get(j, "errorCode")), code);
    cr_assert_not_null(json_string_value(json_object_get(j, "errorMessage")));
    json_decref(j);
}

/* /proc/<pid>/status's line starting with key, value only ("" when none). */
static void status_field(pid_t pid, const char *key, char *out, size_t size)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    *out = '\0';
    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f))
        if (str_has_prefix(line, key))
            snprintf(out, size, "%s", line + strlen(key));
    fclose(f);
}

static void assert_unprivileged(pid_t pid)
{
    char uid[128], cap[128];
    status_field(pid, "Uid:", uid, sizeof(uid));
    status_field(pid, "CapEff:", cap, sizeof(cap));
    unsigned ruid, euid, suid;
    cr_assert_eq(sscanf(uid, "%u %u %u", &ruid, &euid, &suid), 3);
    cr_assert(ruid == cfg.uid && euid == cfg.uid && suid == cfg.uid, "pid %d: Uid %s", (int)pid,
              uid);
    cr_assert_eq(strtoull(cap, NULL, 16), 0, "pid %d: CapEff %s", (int)pid, cap);
}

/* The pids whose parent is ppid. */
static size_t children_of(pid_t ppid, pid_t *out, size_t max)
{
    size_t nr = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && nr < max && (de = readdir(d))) {
        int pid = atoi(de->d_name), parent = -1;
        char path[64], stat[512] = "";
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        FILE *f = pid > 0 ? fopen(path, "r") : NULL;
        if (!f)
            continue;
        bool ok = fgets(stat, sizeof(stat), f) != NULL;
        fclose(f);
        const char *end = strrchr(stat, ')');
        if (ok && end && sscanf(end + 1, " %*c %d", &parent) == 1 && parent == ppid)
            out[nr++] = pid;
    }
    if (d)
        closedir(d);
    return nr;
}

static bool gone(pid_t pid)
{
    char s = proc_state(pid);
    return s == '\0' || s == 'Z';
}

static void wait_gone(pid_t pid)
{
    int64_t deadline = time_mono_ns() + 5000000000LL;
    while (!gone(pid) && time_mono_ns() < deadline)
        usleep(2000);
    cr_assert(gone(pid), "pid %d still runs", (int)pid);
}

Test(router, round_robin_and_unprivileged)
{
    int a = backend_start(), b = backend_start(), port = free_port();
    int backends[] = {a, b};
    struct router_site s = site("app1-live", port, backends, 2, true);
    open_router();
    cr_assert_eq(router_pid(), 0);
    apply(&s, 1);
    pid_t master = router_pid();
    cr_assert_gt(master, 0);
    int prev = get_port_body(port);
    cr_assert(prev == a || prev == b, "answer %d", prev);
    for (int i = 0; i < 10; i++) {
        int got = get_port_body(port);
        cr_assert(got == a || got == b, "answer %d", got);
        cr_assert_neq(got, prev, "request %d went to %d again: no round robin", i, got);
        prev = got;
    }
    if (geteuid() == 0) {
        pid_t workers[16];
        size_t nr = children_of(master, workers, 16);
        cr_assert_gt(nr, 0, "no workers");
        assert_unprivileged(master);
        for (size_t i = 0; i < nr; i++)
            assert_unprivileged(workers[i]);
        struct stat st;
        cr_assert_eq(stat(rdir, &st), 0);
        cr_assert_eq(st.st_uid, cfg.uid);
        cr_assert_eq(st.st_mode & 0777, 0700);
    }
}

Test(router, not_running_answers_503_json)
{
    int a = backend_start(), port = free_port(), port2 = free_port();
    int backends[] = {a};
    struct router_site sites[] = {site("app1-live", port, backends, 1, false),
                                  site("app2-live", port2, backends, 1, true)};
    open_router();
    apply(sites, 2);
    assert_json_503(port, "ENVIRONMENT_NOT_RUNNING");
    cr_assert_eq(get_port_body(port2), a);
    /* Started: the same port now passes requests on, the other one stops. */
    sites[0].running = true;
    sites[1].running = false;
    apply(sites, 2);
    cr_assert_eq(get_port_body(port), a);
    assert_json_503(port2, "ENVIRONMENT_NOT_RUNNING");
}

Test(router, a_dead_instance_does_not_fail_requests)
{
    int a = backend_start(), b = backend_start(), port = free_port();
    int backends[] = {a, b};
    struct router_site s = site("app1-live", port, backends, 2, true);
    open_router();
    backend_kill(b); /* the last one started */
    apply(&s, 1);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(get_port_body(port), a);
    backend_kill(a);
    assert_json_503(port, "ENVIRONMENT_UNAVAILABLE");
    s.nr_backends = 0; /* running without instances */
    apply(&s, 1);
    assert_json_503(port, "ENVIRONMENT_UNAVAILABLE");
}

/* The config nginx reads, in one string (caller frees). */
static char *live_conf(void)
{
    char *path = str("%s/nginx.conf", rdir), *text = NULL;
    FILE *f = fopen(path, "r");
    free(path);
    cr_assert_not_null(f);
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, mem);
    fclose(f);
    fclose(mem);
    return text;
}

Test(router, refused_configurations_keep_the_old_one)
{
    int a = backend_start(), b = backend_start(), port = free_port(), port2 = free_port();
    int backends_a[] = {a}, backends_b[] = {b};
    /* An nginx whose -t fails when asked to, as it does for a configuration it refuses. */
    char *fake = str("%s/nginx", tmp), *marker = str("%s/fail-t", tmp);
    FILE *f = fopen(fake, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "#!/bin/sh\n"
            "env > '%s/nginx-env'\n"
            "if [ -e '%s' ]; then\n"
            "  for a; do [ \"$a\" = -t ] && { echo 'nginx: [emerg] refused on purpose' >&2; "
            "exit 1; }; done\n"
            "fi\n"
            "exec /usr/sbin/nginx \"$@\"\n",
            logs, marker);
    fclose(f);
    cr_assert_eq(chmod(fake, 0755), 0);
    cfg.nginx = fake;
    cr_assert_eq(setenv("SLIPWAY_ROUTER_TEST_SECRET", "x", 1), 0);
    open_router();
    struct router_site s = site("app1-live", port, backends_a, 1, true);
    apply(&s, 1);
    /* nginx gets an environment of its own, nothing of the server's */
    char *env_path = str("%s/nginx-env", logs), env[8192] = "";
    FILE *env_file = fopen(env_path, "r");
    cr_assert_not_null(env_file);
    size_t env_len = fread(env, 1, sizeof(env) - 1, env_file);
    fclose(env_file);
    env[env_len] = '\0';
    cr_assert(strstr(env, "PATH=") && !strstr(env, "SLIPWAY_ROUTER_TEST_SECRET"), "env: %s", env);
    free(env_path);
    cr_assert_eq(get_port_body(port), a);
    pid_t master = router_pid();
    char *before = live_conf();

    /* nginx -t fails */
    close(open(marker, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    s.backends = backends_b;
    cr_assert_eq(router_apply(&s, 1, why, sizeof(why)), -EINVAL);
    cr_assert(strstr(why, "refused on purpose"), "why: %s", why);
    cr_assert_eq(get_port_body(port), a);
    char *after = live_conf();
    cr_assert_str_eq(after, before);
    free(after);
    unlink(marker);

    /* names that would inject configuration, bad ports, duplicates: refused before nginx */
    const char *bad_names[] = {"",
                               "a b",
                               "x;}",
                               "a'b",
                               "a$b",
                               "a/b",
                               "0123456789012345678901234567890123456789012345678901234567890123X"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        struct router_site bad = site(bad_names[i], port, backends_b, 1, true);
        cr_assert_eq(router_apply(&bad, 1, why, sizeof(why)), -EINVAL, "name '%s'", bad_names[i]);
    }
    struct router_site bad = site("ok", 70000, backends_b, 1, true);
    cr_assert_eq(router_apply(&bad, 1, why, sizeof(why)), -EINVAL);
    bad = site("ok", port, (int[]){0}, 1, true);
    cr_assert_eq(router_apply(&bad, 1, why, sizeof(why)), -EINVAL);
    bad = site("ok", port, backends_b, 1, true);
    bad.access_log_dir = "/tmp/$host";
    cr_assert_eq(router_apply(&bad, 1, why, sizeof(why)), -EINVAL);
    struct router_site dup[] = {site("one", port, backends_b, 1, true),
                                site("two", port, backends_b, 1, true)};
    cr_assert_eq(router_apply(dup, 2, why, sizeof(why)), -EINVAL);
    dup[1].port = port2;
    dup[1].name = "one";
    cr_assert_eq(router_apply(dup, 2, why, sizeof(why)), -EINVAL);
    cr_assert_eq(get_port_body(port), a);

    /* a port another process holds: -t passes, the master's reload fails */
    int taken, held = listen_on(0, &taken);
    struct router_site two[] = {site("app1-live", port, backends_b, 1, true),
                                site("app2-live", taken, backends_b, 1, true)};
    cr_assert_eq(router_apply(two, 2, why, sizeof(why)), -EADDRINUSE, "why: %s", why);
    cr_assert(strstr(why, "bind"), "why: %s", why);
    cr_assert_eq(get_port_body(port), a);
    after = live_conf();
    cr_assert_str_eq(after, before);
    free(after);
    cr_assert_eq(router_pid(), master);
    close(held);

    /* and a good one still goes through */
    apply(two, 2);
    cr_assert_eq(get_port_body(port), b);
    cr_assert_eq(get_port_body(taken), b);
    free(before);
    free(fake);
    free(marker);
}

Test(router, access_log_of_the_day)
{
    int a = backend_start(), port = free_port();
    struct router_site s = site("app1-live", port, (int[]){a}, 1, true);
    open_router();
    apply(&s, 1);
    for (int i = 0; i < 5; i++)
        get_port_body(port);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char *path =
        str("%s/access-%04d-%02d-%02d.log", logs, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    int lines = 0;
    int64_t deadline = time_mono_ns() + 5000000000LL;
    while (lines < 5 && time_mono_ns() < deadline) { /* written after the answer */
        FILE *f = fopen(path, "r");
        lines = 0;
        char line[1024];
        while (f && fgets(line, sizeof(line), f))
            lines += strstr(line, "\"GET / HTTP/1.0\" 200") != NULL;
        if (f)
            fclose(f);
        if (lines < 5)
            usleep(2000);
    }
    cr_assert_eq(lines, 5, "%s: %d lines", path, lines);
    free(path);
}

Test(router, survives_the_server_and_is_adopted)
{
    int a = backend_start(), b = backend_start(), port = free_port();
    open_router();
    struct router_site s = site("app1-live", port, (int[]){a}, 1, true);
    apply(&s, 1);
    pid_t master = router_pid();
    router_close(false);
    cr_assert(!gone(master));
    cr_assert_eq(get_port_body(port), a);
    open_router();
    cr_assert_eq(router_pid(), master);
    cr_assert_eq(router_check(why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(get_port_body(port), a);
    s.backends = (int[]){b};
    apply(&s, 1); /* a reload of the adopted master */
    cr_assert_eq(router_pid(), master);
    cr_assert_eq(get_port_body(port), b);
    router_close(true);
    wait_gone(master);
    cr_assert(!http_get(port, &(struct answer){0}), "still answering after stop");
}

Test(router, a_pid_file_naming_another_process_is_not_adopted)
{
    open_router();
    router_close(false);
    char *pid_file = str("%s/nginx.pid", rdir);
    char *pid = str("%d\n", (int)getpid()); /* a live process, not nginx */
    cr_assert_eq(fs_write(pid_file, pid, strlen(pid), 0644), 0);
    open_router();
    cr_assert_eq(router_pid(), 0);
    free(pid_file);
    free(pid);
}

Test(router, check_restarts_a_dead_master)
{
    int a = backend_start(), port = free_port();
    open_router();
    cr_assert_eq(router_check(why, sizeof(why)), 0); /* nothing applied yet */
    struct router_site s = site("app1-live", port, (int[]){a}, 1, true);
    apply(&s, 1);
    pid_t master = router_pid();
    cr_assert_eq(kill(master, SIGKILL), 0);
    wait_gone(master);
    cr_assert_eq(router_pid(), 0);
    int r = router_check(why, sizeof(why));
    cr_assert_eq(r, 1, "router_check: %d %s", r, why);
    pid_t again = router_pid();
    cr_assert(again > 0 && again != master);
    cr_assert_eq(get_port_body(port), a);
    cr_assert_eq(router_check(why, sizeof(why)), 0);
}

Test(router, missing_nginx_and_bad_config)
{
    cfg.nginx = "/nonexistent/nginx";
    cr_assert_eq(router_open(&cfg, why, sizeof(why)), -ENOENT);
    cr_assert(strstr(why, "not installed"), "why: %s", why);
    cfg.nginx = NULL;
    cfg.dir = "relative/dir";
    cr_assert_eq(router_open(&cfg, why, sizeof(why)), -EINVAL);
    cfg.dir = rdir;
    cfg.listen_host = "localhost;";
    cr_assert_eq(router_open(&cfg, why, sizeof(why)), -EINVAL);
    cfg.listen_host = NULL;
    open_router();
    cr_assert_eq(router_open(&cfg, why, sizeof(why)), -EBUSY);
}

Test(router, apply_timing)
{
    int a = backend_start(), b = backend_start(), port = free_port();
    open_router();
    int64_t ns[20];
    for (int i = 0; i < 20; i++) {
        struct router_site s = site("app1-live", port, (int[]){i % 2 ? a : b}, 1, true);
        int64_t t0 = time_mono_ns();
        apply(&s, 1);
        ns[i] = time_mono_ns() - t0;
        cr_assert_eq(get_port_body(port), i % 2 ? a : b, "apply %d not in effect", i);
    }
    for (int i = 1; i < 20; i++) /* insertion sort */
        for (int j = i; j > 0 && ns[j - 1] > ns[j]; j--) {
            int64_t t = ns[j];
            ns[j] = ns[j - 1];
            ns[j - 1] = t;
        }
    cr_log_info("router_apply: median %.1f ms, max %.1f ms (20 applies, the first a start)",
                (double)ns[10] / 1e6, (double)ns[19] / 1e6);
    cr_assert_lt(ns[10], 2000000000LL);
}
