/* cli — `slipway serve`: prepare the data directory, start the HTTP server, print the readiness
 * line, and run until SIGTERM or SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/admin.h"
#include "api/api.h"
#include "auth/auth.h"
#include "builder/packages.h"
#include "builder/runner.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/proc.h"
#include "base/util.h"
#include "base/sandbox.h"
#include "cli/cli.h"
#include "deploy/deploy.h"
#include "engine/engine.h"
#include "http/http.h"
#include "store/store.h"
#include "vcs/vcs.h"
#include "base/banned.h"

static const char usage[] =
    "usage: slipway serve --data DIR [--listen HOST:PORT] [options]\n"
    "\n"
    "Runs the Slipway server on the data directory DIR (created if missing). Once it accepts\n"
    "connections it prints one line 'slipway: listening on http://HOST:PORT'. On the first\n"
    "start of an empty data directory it creates an administrator and prints an API key for\n"
    "it, once. SIGTERM or SIGINT stop it cleanly. One log line per request goes to stderr.\n"
    "\n"
    "options:\n"
    "  --data DIR          data directory (database, repositories, packages)\n"
    "  --listen HOST:PORT  address to listen on (default 127.0.0.1:8080; port 0 picks a free\n"
    "                      port; IPv6 as [::1]:8080)\n"
    "  --public-url URL    base URL that clients use to reach this server, for the URLs it\n"
    "                      hands out (default http://HOST:PORT)\n"
    "  --threads N         HTTP worker threads (default 4)\n"
    "  --max-body BYTES    largest JSON request body (default 1048576)\n"
    "  --max-push BYTES    largest git push (default 2147483648)\n"
    "  --max-upload BYTES  largest package upload (default 1073741824)\n"
    "  --executors N       builds that run at once (default 2)\n"
    "  --max-log BYTES     build log kept per build (default 10485760)\n"
    "  --max-connections N open HTTP connections at once (default: derived from the file\n"
    "                      descriptor limit, which the server raises to its hard limit;\n"
    "                      at most 16384)\n"
    "  --max-connections-per-ip N\n"
    "                      open HTTP connections at once from one client address; more are\n"
    "                      closed at once (default 64; 0: no limit, e.g. behind a proxy)\n"
    "  --header-timeout SECONDS\n"
    "                      a request's headers must be complete this long after the\n"
    "                      connection opened or the previous answer ended, or the\n"
    "                      connection is closed (default 15)\n"
    "  --keep-packages N   after each successful build, keep the app's newest N ended packages\n"
    "                      and delete older ones with their build logs, except those an\n"
    "                      environment holds (default 50; 0 keeps all)\n"
    "  --unsafe-no-sandbox run builds without bubblewrap when it is missing (builds then see\n"
    "                      the whole machine: only for trusted code)\n"
    "  --sandbox-user NAME when run as root: the user build steps run as (default\n"
    "                      slipway-build, made with useradd when missing; never root)\n"
    "  --build-max-memory SIZE, --build-max-pids N, --build-max-disk SIZE\n"
    "                      the most a slipway.yml may ask for as build.memory, build.pids and\n"
    "                      build.disk (defaults 8GB, 8192, 20GB)\n"
    "  --env-ports PORT    environments' ports start here: the one in slot k answers at\n"
    "                      PORT + 10k (the router), its instances at the 9 ports after it;\n"
    "                      PostgreSQL listens at PORT - 1 (default 20000)\n"
    "  --app-uid-base N    when run as root: the instances of the environment in slot k run\n"
    "                      as uid and gid N + k (default 200000)\n"
    "  --nginx PATH        the router's nginx (default /usr/sbin/nginx; '' for none: each\n"
    "                      environment's URL is then its first instance's)\n"
    "  --service-user NAME when run as root: the user nginx and PostgreSQL run as (default\n"
    "                      slipway-svc, made with useradd when missing)\n"
    "  --snapshot-retention-days DAYS\n"
    "                      snapshots of environments are deleted this long after they were\n"
    "                      asked for: a number of days, or a duration with its unit (30d,\n"
    "                      12h, 90m, 45s) (default 30)\n"
    "  --admin-email EMAIL email of the administrator created on first start\n"
    "                      (default admin@localhost)\n"
    "  -h, --help          show this help\n";

struct serve_opts {
    const char *data;
    char host[256];
    unsigned port;
    const char *public_url;
    unsigned threads;
    int64_t max_body;
    int64_t max_push;
    int64_t max_upload;
    const char *admin_email;
    unsigned executors;
    int64_t max_log;
    unsigned keep_packages;
    bool unsafe_no_sandbox;
    unsigned max_connections; /* 0: derived from the file descriptor limit */
    unsigned max_connections_per_ip;
    unsigned header_timeout_s;
    const char *sandbox_user;
    int64_t max_memory, max_pids, max_disk;
    int64_t env_ports, app_uid_base;
    const char *nginx, *service_user;
    int64_t snapshot_retention_ms;
};

/* Days ("30"), or a duration with its unit: "30d", "12h", "90m", "45s". At least a second, at
 * most 3650 days. */
static int parse_retention(const char *s, int64_t *ms)
{
    static const struct {
        char unit;
        int64_t ms;
    } units[] = {{'d', 86400000}, {'h', 3600000}, {'m', 60000}, {'s', 1000}};
    size_t len = strlen(s);
    int64_t unit = 86400000, v;
    char num[24];
    if (!len || len >= sizeof(num))
        return -EINVAL;
    memcpy(num, s, len + 1);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (num[len - 1] == units[i].unit) {
            unit = units[i].ms;
            num[len - 1] = '\0';
        }
    if (parse_i64(num, 1, 3650LL * 86400000 / unit, &v))
        return -EINVAL;
    *ms = v * unit;
    return 0;
}

static int parse_listen(const char *s, struct serve_opts *o)
{
    const char *colon;
    const char *host = s;
    size_t host_len;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        host = s + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        host_len = (size_t)(colon - s);
    }
    int64_t port;
    if (host_len == 0 || host_len >= sizeof(o->host) || parse_i64(colon + 1, 0, 65535, &port))
        return -EINVAL;
    memcpy(o->host, host, host_len);
    o->host[host_len] = '\0';
    o->port = (unsigned)port;
    return 0;
}

/* The host in environment URLs: the public URL's, else the listening address's (a wildcard
 * address is reached at 127.0.0.1). */
static void url_host(const struct serve_opts *o, char *out, size_t cap)
{
    const char *h = o->host;
    size_t n = strlen(h);
    if (o->public_url && strstr(o->public_url, "://")) {
        h = strstr(o->public_url, "://") + 3;
        n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
    }
    if ((n == 7 && !strncmp(h, "0.0.0.0", 7)) || (n == 2 && !strncmp(h, "::", 2)))
        h = "127.0.0.1", n = 9;
    if (h[0] == '[' && n >= 2)
        h++, n -= 2;
    snprintf(out, cap, "%.*s", (int)n, h);
}

/* Environments: their supervisor joins the engine (before it starts). */
static int deploy_begin(const struct serve_opts *o, struct engine *engine, struct sandbox_user *svc)
{
    static char launcher[4096], host[256];
    ssize_t n = readlink("/proc/self/exe", launcher, sizeof(launcher) - 1);
    if (n <= 0)
        return -errno;
    launcher[n] = '\0';
    /* the lean launcher beside this binary (libc only: a millisecond to start instead of ~7),
     * else this binary's `instance` command */
    char *slash = strrchr(launcher, '/');
    if (slash && (size_t)(slash - launcher) + sizeof("/slipway-instance") < sizeof(launcher)) {
        char lean[sizeof(launcher)];
        snprintf(lean, sizeof(lean), "%.*s/slipway-instance", (int)(slash - launcher), launcher);
        if (access(lean, X_OK) == 0)
            memcpy(launcher, lean, strlen(lean) + 1);
    }
    log_info("deploy: app instances start through %s", launcher);
    url_host(o, host, sizeof(host));
    char why[512];
    if (sandbox_user_init(o->service_user, true, svc, why, sizeof(why))) {
        log_error("the service user: %s", why);
        return -EINVAL;
    }
    struct deploy_config dc = {
        .engine = engine,
        .launcher = launcher,
        .port_base = (int)o->env_ports,
        .url_host = host,
        .url_scheme = "http",
        .set_ids = geteuid() == 0,
        .uid_base = (unsigned)o->app_uid_base,
        .svc_set_ids = svc->drop,
        .svc_uid = svc->uid,
        .svc_gid = svc->gid,
        .nginx = o->nginx,
        .snapshot_retention_ms = o->snapshot_retention_ms,
    };
    return deploy_init(&dc);
}

static int count_user(const struct store_user *u, void *arg)
{
    (void)u;
    (*(int *)arg)++;
    return 0;
}

/* First start: an administrator with an API key, printed once with a curl example. */
static int bootstrap_admin(const struct serve_opts *o, const char *base_url)
{
    int users = 0;
    if (store_user_each(count_user, &users))
        return -EIO;
    if (users)
        return 0;
    struct admin_actor a = {"slipway serve (first start)", "local"};
    struct admin_error err;
    struct store_user u;
    char *key = NULL;
    if (admin_user_add(&a, o->admin_email, "Administrator", true, &u, &err) ||
        admin_apikey_add(&a, o->admin_email, &key, &err)) {
        log_error("cannot create the first administrator: %s", err.message);
        return -EIO;
    }
    printf("slipway: first start: created the administrator '%s'.\n"
           "slipway: its API key (shown only now; make another with "
           "'slipway admin --data %s apikey add --email %s'):\n"
           "\n    %s\n\n"
           "slipway: try it:\n"
           "    curl -H 'Mendix-Username: %s' -H 'Mendix-ApiKey: %s' %s/api/1/apps\n",
           u.email, o->data, u.email, key, u.email, key, base_url);
    fflush(stdout);
    free(key);
    return 0;
}

/* The connections the file descriptor limit allows; *nofile is that limit. The soft limit is
 * raised to the hard one first (children get the old soft limit back: see
 * proc_set_child_nofile). A connection holds its socket and at most one more descriptor (a
 * spooled body, a file answer); the rest of the server keeps a reserve: SQLite (three per
 * thread's connection), git http-backend pipes, builds (pipes, pidfds, logs, packages),
 * libgit2's pack files, the log. */
static unsigned connection_budget(const struct serve_opts *o, rlim_t *nofile)
{
    enum { CAP = 16384, FLOOR = 16 };
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        *nofile = 0;
        return 1000;
    }
    proc_set_child_nofile(rl.rlim_cur);
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit raised = {rl.rlim_max, rl.rlim_max};
        if (raised.rlim_cur == RLIM_INFINITY || raised.rlim_cur > (1u << 20))
            raised.rlim_cur = 1u << 20; /* the kernel's default fs.nr_open */
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl.rlim_cur = raised.rlim_cur;
    }
    *nofile = rl.rlim_cur;
    rlim_t reserve = 256 + 16 * (rlim_t)o->threads + 32 * (rlim_t)o->executors;
    rlim_t budget = rl.rlim_cur > reserve + 2 * FLOOR ? (rl.rlim_cur - reserve) / 2 : FLOOR;
    return budget > CAP ? CAP : (unsigned)budget;
}

/* The server's base URL, known once its socket is bound (the port may have been 0). */
struct bound_url {
    const char *host;
    bool set_public; /* no --public-url: the base URL is the public one */
    char url[512];
};

/* http_config.bound: before the first connection is accepted, so the public URL never changes
 * while requests read it. */
/* Per-thread state the engine's threads leave behind: a store connection, libgit2 handles. */
static void thread_exit(void)
{
    vcs_thread_release();
    store_thread_release();
}

static void on_bound(unsigned port, void *arg)
{
    struct bound_url *b = arg;
    bool v6 = strchr(b->host, ':') != NULL;
    snprintf(b->url, sizeof(b->url), "http://%s%s%s:%u", v6 ? "[" : "", b->host, v6 ? "]" : "",
             port);
    if (b->set_public && api_set_public_url(b->url))
        log_error("cannot set the public URL to '%s'", b->url); /* the links then lack it */
}

int cli_serve(int argc, char **argv)
{
    struct serve_opts o = {.threads = 4,
                           .max_body = 1 << 20,
                           .max_push = 2LL << 30,
                           .max_upload = 1LL << 30,
                           .admin_email = "admin@localhost",
                           .keep_packages = 50,
                           .max_log = 10 << 20,
                           .executors = 2,
                           .max_connections_per_ip = 64,
                           .header_timeout_s = 15,
                           .env_ports = 20000,
                           .app_uid_base = 200000,
                           .service_user = "slipway-svc",
                           .snapshot_retention_ms = 30LL * 86400 * 1000,
                           .port = 8080};
    snprintf(o.host, sizeof(o.host), "127.0.0.1");
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"public-url", required_argument, NULL, 'u'},
        {"threads", required_argument, NULL, 't'},
        {"max-body", required_argument, NULL, 'b'},
        {"max-push", required_argument, NULL, 'p'},
        {"max-upload", required_argument, NULL, 'm'},
        {"admin-email", required_argument, NULL, 'a'},
        {"executors", required_argument, NULL, 'e'},
        {"max-log", required_argument, NULL, 'L'},
        {"keep-packages", required_argument, NULL, 'K'},
        {"unsafe-no-sandbox", no_argument, NULL, 'U'},
        {"max-connections", required_argument, NULL, 'C'},
        {"max-connections-per-ip", required_argument, NULL, 'I'},
        {"header-timeout", required_argument, NULL, 'H'},
        {"sandbox-user", required_argument, NULL, 'S'},
        {"build-max-memory", required_argument, NULL, 'M'},
        {"build-max-pids", required_argument, NULL, 'P'},
        {"build-max-disk", required_argument, NULL, 'D'},
        {"env-ports", required_argument, NULL, 'E'},
        {"app-uid-base", required_argument, NULL, 'A'},
        {"nginx", required_argument, NULL, 'N'},
        {"service-user", required_argument, NULL, 'V'},
        {"snapshot-retention-days", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    int64_t v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.data = optarg;
            break;
        case 'l':
            if (parse_listen(optarg, &o)) {
                fprintf(stderr, "slipway serve: --listen wants HOST:PORT, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'u':
            o.public_url = optarg;
            break;
        case 't':
            if (parse_i64(optarg, 1, 256, &v)) {
                fprintf(stderr, "slipway serve: --threads wants 1 to 256\n");
                return 2;
            }
            o.threads = (unsigned)v;
            break;
        case 'b':
        case 'p':
        case 'm':
            if (parse_i64(optarg, 1024, INT64_MAX, &v)) {
                fprintf(stderr, "slipway serve: --max-body, --max-push and --max-upload want a "
                                "byte count of at least 1024\n");
                return 2;
            }
            *(c == 'b' ? &o.max_body : c == 'p' ? &o.max_push : &o.max_upload) = v;
            break;
        case 'a':
            o.admin_email = optarg;
            break;
        case 'e':
            if (parse_i64(optarg, 1, 64, &v)) {
                fprintf(stderr, "slipway serve: --executors wants 1 to 64\n");
                return 2;
            }
            o.executors = (unsigned)v;
            break;
        case 'L':
            if (parse_i64(optarg, 4096, INT64_MAX, &v)) {
                fprintf(stderr, "slipway serve: --max-log wants a byte count of at least 4096\n");
                return 2;
            }
            o.max_log = v;
            break;
        case 'K':
            if (parse_i64(optarg, 0, 1000000, &v)) {
                fprintf(stderr, "slipway serve: --keep-packages wants 0 (keep all) to 1000000\n");
                return 2;
            }
            o.keep_packages = (unsigned)v;
            break;
        case 'U':
            o.unsafe_no_sandbox = true;
            break;
        case 'C':
            if (parse_i64(optarg, 1, 1000000, &v)) {
                fprintf(stderr, "slipway serve: --max-connections wants 1 to 1000000\n");
                return 2;
            }
            o.max_connections = (unsigned)v;
            break;
        case 'I':
            if (parse_i64(optarg, 0, 1000000, &v)) {
                fprintf(stderr,
                        "slipway serve: --max-connections-per-ip wants 0 (no limit) to 1000000\n");
                return 2;
            }
            o.max_connections_per_ip = (unsigned)v;
            break;
        case 'H':
            if (parse_i64(optarg, 1, 3600, &v)) {
                fprintf(stderr, "slipway serve: --header-timeout wants 1 to 3600 seconds\n");
                return 2;
            }
            o.header_timeout_s = (unsigned)v;
            break;
        case 'S':
            o.sandbox_user = optarg;
            break;
        case 'M':
        case 'D':
            if (parse_size(optarg, 1 << 20, INT64_MAX, c == 'M' ? &o.max_memory : &o.max_disk)) {
                fprintf(stderr, "slipway serve: --build-max-memory and --build-max-disk want a "
                                "size of at least 1MB, e.g. 4GB\n");
                return 2;
            }
            break;
        case 'P':
            if (parse_i64(optarg, 16, 1000000, &o.max_pids)) {
                fprintf(stderr, "slipway serve: --build-max-pids wants 16 to 1000000\n");
                return 2;
            }
            break;
        case 'E':
            if (parse_i64(optarg, 1025, 60000, &o.env_ports)) {
                fprintf(stderr, "slipway serve: --env-ports wants a port of 1025 to 60000\n");
                return 2;
            }
            break;
        case 'A':
            if (parse_i64(optarg, 1000, 2000000000, &o.app_uid_base)) {
                fprintf(stderr, "slipway serve: --app-uid-base wants 1000 to 2000000000\n");
                return 2;
            }
            break;
        case 'N':
            o.nginx = optarg;
            break;
        case 'V':
            o.service_user = optarg;
            break;
        case 'R':
            if (parse_retention(optarg, &o.snapshot_retention_ms)) {
                fprintf(stderr, "slipway serve: --snapshot-retention-days wants days (1 to "
                                "3650), or a duration such as 30d, 12h, 90m or 45s\n");
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!o.data || optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    if (!admin_email_valid(o.admin_email)) {
        fprintf(stderr, "slipway serve: '%s' is not a valid email address\n", o.admin_email);
        return 2;
    }

    /* Signals are taken by sigwait below; the HTTP threads inherit this mask. SIGCHLD too: as
     * pid 1 (a container without an init) the server reaps the orphans it inherits. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    struct http_server *server = NULL;
    struct engine *engine = NULL;
    struct sandbox_user svc = {0};
    const char *failed = NULL;
    int r = fs_mkdirs(o.data, 0700);
    if (r) {
        log_error("cannot create the directory '%s': %s", o.data, strerror(-r));
        return 1;
    }
    if ((r = layout_init(o.data)) || (r = layout_prepare(&failed))) {
        log_error("cannot prepare the data directory '%s': '%s': %s", o.data,
                  failed ? failed : o.data, strerror(-r));
        layout_release();
        return 1;
    }
    if ((r = layout_lock())) {
        if (r == -EBUSY)
            log_error("another 'slipway serve' runs on the data directory '%s'", o.data);
        else
            log_error("cannot lock the data directory '%s': %s", o.data, strerror(-r));
        layout_release();
        return 1;
    }
    char said[PATH_MAX + 300];
    if ((r = layout_reachable(said, sizeof(said))))
        log_warn("the data directory: a directory above it does not let other users pass, and "
                 "it cannot be bound where they can (%s): app instances, nginx and PostgreSQL "
                 "will not reach it; chmod o+x the directories above it",
                 strerror(-r));
    else if (said[0])
        log_info("the data directory: %s", said);
    if ((r = crypto_init() ? -EIO : layout_secret_load())) {
        log_error("cannot make or read the server secret '%s': %s", layout_secret_path(),
                  r == -EBADMSG ? "it is not 32 bytes long (remove it to make a new one; download "
                                  "URLs signed with the old one then stop working)"
                                : strerror(-r));
        layout_release();
        return 1;
    }
    if (store_init(layout_db_path())) {
        log_error("cannot prepare the data directory '%s'", o.data);
        layout_release();
        return 1;
    }

    /* Before any thread or child starts: the raised descriptor limit, and the one children get. */
    rlim_t nofile;
    unsigned budget = connection_budget(&o, &nofile);
    unsigned max_conns = o.max_connections ? o.max_connections : budget;
    if (max_conns > budget) {
        log_warn("--max-connections %u needs more file descriptors than the limit (%llu) "
                 "leaves: %u instead (raise 'ulimit -n', or LimitNOFILE= of a systemd unit)",
                 max_conns, (unsigned long long)nofile, budget);
        max_conns = budget;
    }
    if (max_conns < o.threads)
        max_conns = o.threads; /* libmicrohttpd shares the limit among its threads */
    log_info("http: at most %u connections (file descriptor limit %llu), %u%s from one address; "
             "request headers within %u s",
             max_conns, (unsigned long long)nofile, o.max_connections_per_ip,
             o.max_connections_per_ip ? "" : " (no limit)", o.header_timeout_s);

    /* The engine starts before the server answers: at start it cleans what a crash left (lost
     * sandboxes, package files no package owns), which must not race with new requests. */
    struct engine_config ec = {.workers = o.executors < 4 ? o.executors : 4,
                               .thread_exit = thread_exit};
    r = engine_new(&ec, &engine);
    if (r) {
        log_error("cannot make the engine: %s", strerror(-r));
        goto out;
    }
    struct runner_config rc_cfg = {.engine = engine,
                                   .executors = o.executors,
                                   .unsafe_no_sandbox = o.unsafe_no_sandbox,
                                   .max_log = (size_t)o.max_log,
                                   .keep_packages = o.keep_packages,
                                   .sandbox_user = o.sandbox_user,
                                   .max_memory = o.max_memory,
                                   .max_pids = o.max_pids,
                                   .max_disk = o.max_disk};
    if ((r = runner_start(&rc_cfg)) || (r = deploy_begin(&o, engine, &svc)) ||
        (r = engine_start(engine))) {
        log_error("cannot start the engine: %s", strerror(-r));
        goto out;
    }
    packages_set_builder(&(struct packages_builder){runner_can_build, runner_wake});
    struct api_config ac = {.public_url = o.public_url, .threads = o.threads};
    if (api_init(&ac))
        goto out;
    size_t nr_routes;
    const struct http_route *routes = api_routes(&nr_routes);
    struct http_config hc = {
        .host = o.host,
        .port = o.port,
        .threads = o.threads,
        .max_body = (size_t)o.max_body,
        .max_spool = (uint64_t)o.max_push,
        .max_upload = (uint64_t)o.max_upload,
        .spool_dir = layout_tmp_dir(),
        .max_connections = max_conns,
        .max_connections_per_ip = o.max_connections_per_ip,
        .header_timeout_ms = o.header_timeout_s * 1000,
        .error = api_error_body,
        .completed = api_request_completed,
        .admit = api_admit,
        .routes = routes,
        .nr_routes = nr_routes,
    };
    struct bound_url base = {.host = o.host, .set_public = !o.public_url};
    hc.bound = on_bound;
    hc.bound_arg = &base;
    r = http_server_start(&hc, &server);
    if (r) {
        log_error("cannot listen on %s:%u: %s", o.host, o.port, strerror(-r));
        goto out;
    }
    const char *base_url = base.url;
    if (bootstrap_admin(&o, base_url))
        goto out;

    printf("slipway: listening on %s\n", base_url);
    fflush(stdout);
    int sig = 0;
    while (sigwait(&stop, &sig) == 0 && sig == SIGCHLD)
        proc_reap_orphans();
    log_info("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    rc = 0;
out:
    api_stop_streams(); /* git processes end, so that the workers can stop */
    http_server_stop(server);
    engine_stop(engine); /* running builds are killed and marked Failed */
    runner_stop();
    engine_free(engine);
    /* instances, nginx and PostgreSQL go on running for the next start; without instances
     * the data directory's bind mount, if there is one, goes (the next start makes it again) */
    bool instances_run = deploy_shutdown() > 0;
    sandbox_user_release(&svc);
    api_shutdown();
    vcs_shutdown();
    store_thread_release();
    if (!instances_run)
        layout_reach_end();
    layout_release();
    return rc;
}
