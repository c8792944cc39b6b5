/* Tests for deploy/database: a real PostgreSQL cluster in a temp directory (as root, run as the
 * user postgres, or nobody), reached the way an app reaches it (psql with the URL over TCP). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../helpers.h"
#include "deploy/database.h"

static const unsigned char secret[32] = "0123456789abcdef0123456789abcdef";
static char tmp[PATH_MAX], dir[PATH_MAX + 8], psql_bin[PATH_MAX];
static struct database_config cfg;
static char why[512];

/* A TCP port on 127.0.0.1 free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void setup(void)
{
    temp_dir(tmp, "database");
    cr_assert_eq(chmod(tmp, 0755), 0); /* the cluster's user goes through it */
    snprintf(dir, sizeof(dir), "%s/db", tmp);
    memset(&cfg, 0, sizeof(cfg));
    cfg.dir = dir;
    cfg.port = free_port();
    cfg.secret = secret;
    cfg.secret_len = sizeof(secret);
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw)
            pw = getpwnam("nobody");
        cr_assert_not_null(pw);
        cfg.set_ids = true;
        cfg.uid = pw->pw_uid;
        cfg.gid = pw->pw_gid;
    }
    char *bin = sh_out("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1");
    bin[strcspn(bin, "\n")] = '\0';
    snprintf(psql_bin, sizeof(psql_bin), "%s/psql", bin);
    free(bin);
}

/* The postmaster of the test's cluster, when its pid file names one. */
static pid_t postmaster_pid(void)
{
    char *path = str("%s/data/postmaster.pid", dir);
    FILE *f = fopen(path, "r");
    free(path);
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

static void teardown(void)
{
    database_close(true);
    pid_t pid = postmaster_pid(); /* a test that failed before close */
    if (pid > 0 && proc_state(pid) && proc_state(pid) != 'Z')
        kill(pid, SIGKILL);
    fs_remove_tree(tmp);
}

TestSuite(database, .init = setup, .fini = teardown, .timeout = 120);

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1e3 + (t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Runs sql as an app would (psql with the connection URL, over TCP); its exit status, and its
 * output in *out when out is not NULL (caller frees). */
static int app_sql(const char *url, const char *sql, char **out)
{
    char *cmd = str("env -i PATH=/usr/bin:/bin PGCONNECT_TIMEOUT=5 '%s' -X -q -A -t "
                    "-v ON_ERROR_STOP=1 -d '%s' -c \"%s\" 2>&1",
                    psql_bin, url, sql);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[1024];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(m);
    int status = pclose(f);
    free(cmd);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

static void open_ok(void)
{
    int r = database_open(&cfg, why, sizeof(why));
    cr_assert_eq(r, 0, "database_open = %d: %s", r, why);
}

static void ensure_ok(const char *name, char url[DATABASE_URL_MAX])
{
    int r = database_ensure(name, url, DATABASE_URL_MAX, why, sizeof(why));
    cr_assert_eq(r, 0, "database_ensure(%s) = %d: %s", name, r, why);
}

static int tmp_file(const char *name)
{
    char *path = str("%s/%s", tmp, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    free(path);
    return fd;
}

Test(database, names_are_checked_before_anything_runs)
{
    open_ok();
    static const char *const bad[] = {
        "a'b",
        "a b",
        "",
        "App",
        "a-b",
        "a\"b",
        "a;b",
        "postgres",
        "pg_x",
        "template1",
        "public",
        "slipway_admin",
        "slipway_restore",
        "a\nb",
        "0123456789012345678901234567890123456789012345678901234567890123"};
    char url[DATABASE_URL_MAX];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_not(database_name_valid(bad[i]), "'%s' passes", bad[i]);
        cr_assert_eq(database_ensure(bad[i], url, sizeof(url), why, sizeof(why)), -EINVAL, "%s",
                     bad[i]);
        cr_assert_eq(database_drop(bad[i], why, sizeof(why)), -EINVAL);
        cr_assert_eq(database_dump(bad[i], 1, why, sizeof(why)), -EINVAL);
        cr_assert_eq(database_restore(bad[i], 0, why, sizeof(why)), -EINVAL);
    }
    cr_assert(database_name_valid("app_1_production"));
    cr_assert(database_name_valid("0123456789012345678901234567890123456789012345678901234567890"
                                  "12"));
    /* Nothing was made, let alone started. */
    cr_assert_neq(access(dir, F_OK), 0);
    cr_assert_eq(database_check(why, sizeof(why)), 0);
}

Test(database, open_without_postgresql_says_so)
{
    cfg.bin_dir = tmp; /* holds no PostgreSQL */
    cr_assert_eq(database_open(&cfg, why, sizeof(why)), -ENOENT);
    cr_assert(strstr(why, "PostgreSQL is not installed"), "%s", why);
    cr_assert_eq(
        database_ensure("app", (char[DATABASE_URL_MAX]){0}, DATABASE_URL_MAX, why, sizeof(why)),
        -EBADF);
    cfg.bin_dir = NULL;
    cfg.secret_len = 4;
    cr_assert_eq(database_open(&cfg, why, sizeof(why)), -EINVAL);
    cfg.secret_len = sizeof(secret);
    open_ok();
    cr_assert_eq(database_open(&cfg, why, sizeof(why)), -EALREADY);
}

Test(database, ensure_connect_dump_restore_drop)
{
    open_ok();
    char url[DATABASE_URL_MAX], again[DATABASE_URL_MAX], other[DATABASE_URL_MAX];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ensure_ok("app_production", url);
    double first = ms_since(&t0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ensure_ok("app_production", again);
    double later = ms_since(&t0);
    cr_log_info("first ensure (initdb + start): %.0f ms, ensure again: %.0f ms", first, later);
    fprintf(stderr, "first ensure (initdb + start): %.0f ms, ensure again: %.0f ms\n", first,
            later);
    cr_assert_str_eq(url, again);
    char *expect = str("postgresql://app_production:");
    cr_assert(str_has_prefix(url, expect), "%s", url);
    free(expect);
    expect = str("@127.0.0.1:%d/app_production", cfg.port);
    cr_assert(strstr(url, expect), "%s", url);
    free(expect);
    struct stat st;
    cr_assert_eq(stat(dir, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0700);
    if (cfg.set_ids)
        cr_assert_eq(st.st_uid, cfg.uid);

    /* The app connects with its URL and owns its database. */
    char *out = NULL;
    int r = app_sql(url,
                    "CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL); "
                    "INSERT INTO notes (text) VALUES ('original'); SELECT current_user",
                    &out);
    cr_assert_eq(r, 0, "%s", out);
    cr_assert_str_eq(out, "app_production\n");
    free(out);

    /* A wrong password is refused; a second environment cannot reach the first's database. */
    char *wrong = strdup(url);
    char *at = strchr(wrong, '@');
    at[-1] = at[-1] == '0' ? '1' : '0';
    cr_assert_neq(app_sql(wrong, "SELECT 1", &out), 0);
    cr_assert(strstr(out, "password authentication failed"), "%s", out);
    free(out);
    free(wrong);
    ensure_ok("app_staging", other);
    cr_assert_neq(strcmp(url, other), 0);
    char *cross = str("%.*s/app_production", (int)(strrchr(other, '/') - other), other);
    cr_assert_neq(app_sql(cross, "SELECT 1", &out), 0);
    free(out);
    free(cross);

    /* dump, change, restore: the dump's content is back, the change gone. */
    int dump_fd = tmp_file("dump");
    r = database_dump("app_production", dump_fd, why, sizeof(why));
    cr_assert_eq(r, 0, "dump = %d: %s", r, why);
    cr_assert_gt(lseek(dump_fd, 0, SEEK_END), 5);
    cr_assert_eq(app_sql(url,
                         "UPDATE notes SET text = 'changed'; INSERT INTO notes (text) "
                         "VALUES ('new')",
                         NULL),
                 0);
    /* An app's client is connected meanwhile: the restore disconnects it. */
    sh("env -i PATH=/usr/bin:/bin '%s' -X -q -d '%s' -c 'SELECT pg_sleep(60)' >/dev/null 2>&1 &",
       psql_bin, url);
    bool connected = false;
    for (int i = 0; i < 500 && !connected; i++) {
        cr_assert_eq(app_sql(url,
                             "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                             "'%pg_sleep(60)%' AND pid <> pg_backend_pid()",
                             &out),
                     0, "%s", out);
        connected = !strcmp(out, "1\n");
        free(out);
        if (!connected)
            usleep(10 * 1000);
    }
    cr_assert(connected);
    cr_assert_eq(lseek(dump_fd, 0, SEEK_SET), 0);
    r = database_restore("app_production", dump_fd, why, sizeof(why));
    cr_assert_eq(r, 0, "restore = %d: %s", r, why);
    cr_assert_eq(app_sql(url, "SELECT string_agg(text, ',') FROM notes", &out), 0, "%s", out);
    cr_assert_str_eq(out, "original\n");
    free(out);
    /* What was restored is the app's own: it writes to it and its sequence goes on. */
    cr_assert_eq(app_sql(url,
                         "INSERT INTO notes (text) VALUES ('after'); SELECT tableowner FROM "
                         "pg_tables WHERE tablename = 'notes'",
                         &out),
                 0, "%s", out);
    cr_assert_str_eq(out, "app_production\n");
    free(out);

    /* A dump that does not restore leaves the database as it was. */
    int bad_fd = tmp_file("bad-dump");
    cr_assert_eq(fd_write_all(bad_fd, "PGDMP not really", 16), 0);
    cr_assert_eq(lseek(bad_fd, 0, SEEK_SET), 0);
    cr_assert_eq(database_restore("app_production", bad_fd, why, sizeof(why)), -EIO);
    cr_assert(strstr(why, "pg_restore"), "%s", why);
    cr_assert_eq(app_sql(url, "SELECT count(*) FROM notes", &out), 0, "%s", out);
    cr_assert_str_eq(out, "2\n");
    free(out);
    close(bad_fd);
    /* Nor is there a dump of a database that does not exist. */
    cr_assert_eq(database_dump("nothing_here", dump_fd, why, sizeof(why)), -EIO);
    cr_assert(strstr(why, "nothing_here"), "%s", why);
    close(dump_fd);

    /* drop: the app can no longer connect; dropping again is fine. */
    r = database_drop("app_production", why, sizeof(why));
    cr_assert_eq(r, 0, "drop = %d: %s", r, why);
    cr_assert_neq(app_sql(url, "SELECT 1", NULL), 0);
    cr_assert_eq(database_drop("app_production", why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(app_sql(other, "SELECT 1", NULL), 0);
}

Test(database, survives_the_server_and_restarts_when_killed)
{
    open_ok();
    char url[DATABASE_URL_MAX];
    ensure_ok("app_production", url);
    cr_assert_eq(app_sql(url, "CREATE TABLE t (v int); INSERT INTO t VALUES (42)", NULL), 0);
    pid_t pid = database_pid();
    cr_assert_gt(pid, 0);
    cr_assert_eq(pid, postmaster_pid());

    /* The server goes away (close without stop): the cluster keeps running and is adopted. */
    database_close(false);
    cr_assert(proc_state(pid) && proc_state(pid) != 'Z');
    cr_assert_eq(app_sql(url, "SELECT v FROM t", NULL), 0);
    open_ok();
    cr_assert_eq(database_check(why, sizeof(why)), 0, "%s", why);
    ensure_ok("app_production", url);
    cr_assert_eq(database_pid(), pid);

    /* The postmaster dies: check starts it again, and the data is there. */
    cr_assert_eq(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 500 && proc_state(pid) && proc_state(pid) != 'Z'; i++)
        usleep(10 * 1000);
    int r = database_check(why, sizeof(why));
    cr_assert_eq(r, 1, "database_check = %d: %s", r, why);
    pid_t restarted = database_pid();
    cr_assert_gt(restarted, 0);
    cr_assert_neq(restarted, pid);
    ensure_ok("app_production", url);
    char *out = NULL;
    cr_assert_eq(app_sql(url, "SELECT v FROM t", &out), 0, "%s", out);
    cr_assert_str_eq(out, "42\n");
    free(out);

    /* close(true) stops it. */
    database_close(true);
    for (int i = 0; i < 500 && proc_state(restarted) && proc_state(restarted) != 'Z'; i++)
        usleep(10 * 1000);
    cr_assert(!proc_state(restarted) || proc_state(restarted) == 'Z');
    cr_assert_neq(app_sql(url, "SELECT 1", NULL), 0);
}
