/* database — the PostgreSQL cluster of the environments; see database.h. Every program runs
 * through run() below: argv built here, a clean environment, stdin from a descriptor (a memfd
 * holding the psql script, or the caller's), stdout to the caller's descriptor or a memfd, stderr
 * to a memfd whose end becomes `why` when the program fails.
 */
#include "deploy/database.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/crypto.h"
#include "base/proc.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "base/banned.h"

#define ADMIN_ROLE      "slipway_admin"
#define RESTORE_DB      "slipway_restore"
#define SCRAM_ITER      4096
#define SCRAM_SALT_LEN  16
#define PASSWORD_HEX    CRYPTO_SHA256_HEX
#define START_TIMEOUT_S "60"
#define STOP_TIMEOUT_S  "30"
#define OUTPUT_MAX      (64 * 1024) /* what is read back of a program's stdout or stderr */
#define NR_ENV          12

static const char *const programs[] = {"initdb", "pg_ctl", "psql", "pg_dump", "pg_restore"};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool open;
    char dir[PATH_MAX - 16], bin_dir[PATH_MAX];
    char data[PATH_MAX], run[PATH_MAX], log[PATH_MAX];
    bool set_ids;
    uid_t uid;
    gid_t gid;
    int port;
    unsigned char *secret;
    size_t secret_len;
    char *env[NR_ENV]; /* NULL-terminated, each allocated */
    char os_user[256]; /* the cluster's OS user, for the ident map */
} db;

/* ---- names and secrets ---- */

bool database_name_valid(const char *name)
{
    static const char *const reserved[] = {
        "postgres",     "template0",    "template1",    "public",   "none",
        "current_user", "session_user", "current_role", ADMIN_ROLE, RESTORE_DB,
    };
    if (!name)
        return false;
    size_t len = strlen(name);
    if (len < 1 || len > DATABASE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    if (str_has_prefix(name, "pg_"))
        return false;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (!strcmp(name, reserved[i]))
            return false;
    return true;
}

static void derive(const char *label, const char *name, unsigned char out[CRYPTO_SHA256_LEN])
{
    char msg[128];
    int n = snprintf(msg, sizeof(msg), "%s:%s", label, name);
    crypto_hmac_sha256(db.secret, db.secret_len, msg, (size_t)n, out);
}

static void password_of(const char *name, char out[PASSWORD_HEX])
{
    unsigned char mac[CRYPTO_SHA256_LEN];
    derive("database", name, mac);
    hex_encode(mac, sizeof(mac), out);
}

/* Standard base64 with padding (what a SCRAM verifier holds), from base/crypto's base64url. */
static void base64_std(const unsigned char *in, size_t n, char *out, size_t out_len)
{
    char tmp[64];
    if (4 * ((n + 2) / 3) + 1 > sizeof(tmp) || 4 * ((n + 2) / 3) + 1 > out_len) {
        out[0] = '\0';
        return;
    }
    crypto_base64url(in, n, tmp);
    size_t len = strlen(tmp);
    for (size_t i = 0; i < len; i++)
        out[i] = tmp[i] == '-' ? '+' : tmp[i] == '_' ? '/' : tmp[i];
    while (len % 4)
        out[len++] = '=';
    out[len] = '\0';
}

/* The SCRAM-SHA-256 verifier of password (RFC 5802/7677, as PostgreSQL stores it):
 * SaltedPassword = PBKDF2-HMAC-SHA256(password, salt, 4096), StoredKey = SHA256(HMAC(Salted,
 * "Client Key")), ServerKey = HMAC(Salted, "Server Key"). The password is ASCII hex: SASLprep
 * leaves it as it is. */
static void scram_verifier(const char *name, const char *password, char *out, size_t out_len)
{
    unsigned char salt_mac[CRYPTO_SHA256_LEN], salt[SCRAM_SALT_LEN + 4];
    derive("database-salt", name, salt_mac);
    memcpy(salt, salt_mac, SCRAM_SALT_LEN);
    memcpy(salt + SCRAM_SALT_LEN, "\0\0\0\1", 4); /* INT(1): the first (only) block */
    size_t pw_len = strlen(password);
    unsigned char u[CRYPTO_SHA256_LEN], salted[CRYPTO_SHA256_LEN];
    crypto_hmac_sha256(password, pw_len, salt, sizeof(salt), u);
    memcpy(salted, u, sizeof(u));
    for (int i = 1; i < SCRAM_ITER; i++) {
        crypto_hmac_sha256(password, pw_len, u, sizeof(u), u);
        for (size_t j = 0; j < sizeof(u); j++)
            salted[j] ^= u[j];
    }
    unsigned char client_key[CRYPTO_SHA256_LEN], stored_key[CRYPTO_SHA256_LEN],
        server_key[CRYPTO_SHA256_LEN];
    crypto_hmac_sha256(salted, sizeof(salted), "Client Key", 10, client_key);
    crypto_sha256(client_key, sizeof(client_key), stored_key);
    crypto_hmac_sha256(salted, sizeof(salted), "Server Key", 10, server_key);
    char salt_b64[32], stored_b64[48], server_b64[48];
    base64_std(salt, SCRAM_SALT_LEN, salt_b64, sizeof(salt_b64));
    base64_std(stored_key, sizeof(stored_key), stored_b64, sizeof(stored_b64));
    base64_std(server_key, sizeof(server_key), server_b64, sizeof(server_b64));
    snprintf(out, out_len, "SCRAM-SHA-256$%d:%s$%s:%s", SCRAM_ITER, salt_b64, stored_b64,
             server_b64);
    memset(salted, 0, sizeof(salted));
    memset(u, 0, sizeof(u));
    memset(client_key, 0, sizeof(client_key));
}

/* ---- running programs ---- */

/* Reads what the memfd holds (at most OUTPUT_MAX bytes, its end) into sb. */
static void memfd_read(int fd, struct strbuf *sb)
{
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0)
        return;
    off_t from = size > OUTPUT_MAX ? size - OUTPUT_MAX : 0;
    char buf[4096];
    ssize_t n;
    while ((n = pread(fd, buf, sizeof(buf), from)) > 0) {
        strbuf_add(sb, buf, (size_t)n);
        from += n;
    }
}

/* `what`, then the end of msg that fits, on one line. */
static void set_why(char *why, size_t why_len, const char *what, const char *msg)
{
    if (!why || !why_len)
        return;
    struct strbuf line = STRBUF_INIT;
    for (const char *p = msg; p && *p; p++)
        strbuf_addch(&line, *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p);
    while (line.len && line.buf[line.len - 1] == ' ')
        line.buf[--line.len] = '\0';
    size_t what_len = strlen(what);
    const char *tail = line.buf;
    if (line.len && what_len + 2 + line.len + 1 > why_len && why_len > what_len + 6)
        tail = line.buf + line.len - (why_len - what_len - 6);
    snprintf(why, why_len, "%s%s%s%s", what, line.len ? ": " : "", tail != line.buf ? "..." : "",
             tail);
    str_utf8_fix(why);
    strbuf_release(&line);
}

/* Runs bin_dir/prog with argv (argv[0] included) as the cluster's user, in dir. in_fd/out_fd:
 * -1 for /dev/null; out: when not NULL (and out_fd is -1), receives stdout. The exit status
 * (0-255, 128+signal) with stderr in err when err is not NULL, or -errno when it could not run. */
static int run(const char *prog, char *const argv[], int in_fd, int out_fd, struct strbuf *out,
               struct strbuf *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", db.bin_dir, prog) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int err_fd = memfd_create("database-stderr", MFD_CLOEXEC);
    if (err_fd < 0)
        return -errno;
    int out_mem = -1, r;
    if (out && out_fd < 0) {
        out_mem = memfd_create("database-stdout", MFD_CLOEXEC);
        if (out_mem < 0) {
            r = -errno;
            goto out;
        }
        out_fd = out_mem;
    }
    struct proc_opts opts = PROC_OPTS_INIT;
    opts.cwd = db.dir;
    opts.set_ids = db.set_ids;
    opts.uid = db.uid;
    opts.gid = db.gid;
    opts.no_new_privs = true;
    pid_t pid;
    r = proc_spawn_opts(&opts, path, argv, db.env, in_fd, out_fd, err_fd, &pid, NULL);
    if (r < 0)
        goto out;
    r = proc_wait(pid);
    if (out_mem >= 0)
        memfd_read(out_mem, out);
    if (err)
        memfd_read(err_fd, err);
out:
    if (out_mem >= 0)
        close(out_mem);
    close(err_fd);
    return r;
}

/* Runs prog; 0, or -EIO (it failed) / -errno (it could not run) with why. */
static int run_checked(const char *prog, char *const argv[], int in_fd, int out_fd,
                       struct strbuf *out, char *why, size_t why_len)
{
    struct strbuf err = STRBUF_INIT;
    int r = run(prog, argv, in_fd, out_fd, out, &err);
    char what[128];
    if (r < 0) {
        snprintf(why, why_len, "cannot run '%s/%s': %s", db.bin_dir, prog, strerror(-r));
    } else if (r > 0) {
        snprintf(what, sizeof(what), "%s failed (exit status %d)", prog, r);
        set_why(why, why_len, what, err.buf);
        r = -EIO;
    }
    strbuf_release(&err);
    return r;
}

/* Runs the psql script (admin, over the unix socket, to database `dbname`, stopping at the first
 * error) with `name` as the psql variable :name; stdout into out when not NULL. */
static int psql(const char *dbname, const char *name, const char *script, struct strbuf *out,
                char *why, size_t why_len)
{
    int in_fd = memfd_create("database-sql", MFD_CLOEXEC);
    if (in_fd < 0) {
        int r = -errno;
        snprintf(why, why_len, "memfd_create: %s", strerror(-r));
        return r;
    }
    int r = fd_write_all(in_fd, script, strlen(script));
    if (!r && lseek(in_fd, 0, SEEK_SET) < 0)
        r = -errno;
    if (r) {
        snprintf(why, why_len, "cannot write the SQL script: %s", strerror(-r));
        close(in_fd);
        return r;
    }
    char var[96];
    snprintf(var, sizeof(var), "name=%s", name ? name : "");
    char dbarg[96];
    snprintf(dbarg, sizeof(dbarg), "--dbname=%s", dbname);
    char *argv[] = {"psql", "-X", "-q",  "-A", "-t", "--no-password", "-v", "ON_ERROR_STOP=1",
                    "-v",   var,  dbarg, NULL};
    r = run_checked("psql", argv, in_fd, -1, out, why, why_len);
    close(in_fd);
    return r;
}

/* ---- the cluster ---- */

static int chown_to_user(const char *path)
{
    if (db.set_ids && chown(path, db.uid, db.gid) < 0)
        return -errno;
    return 0;
}

/* Makes dir (0700, the cluster user's) when missing; a directory that exists is given to the
 * user and made 0700 too. */
static int make_dir(const char *path, char *why, size_t why_len)
{
    int r = fs_mkdirs(path, 0700);
    if (!r)
        r = chown_to_user(path);
    if (!r && chmod(path, 0700) < 0)
        r = -errno;
    if (r)
        snprintf(why, why_len, "cannot make '%s': %s", path, strerror(-r));
    return r;
}

static int write_user_file(const char *path, const char *content, char *why, size_t why_len)
{
    int r = fs_write(path, content, strlen(content), 0600);
    if (!r)
        r = chown_to_user(path);
    if (r)
        snprintf(why, why_len, "cannot write '%s': %s", path, strerror(-r));
    return r;
}

static bool cluster_made(void)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/PG_VERSION", db.data);
    return access(path, F_OK) == 0;
}

/* Line `nr` (1-based) of data/postmaster.pid, as a number in [0, max]; -1 when there is none. */
static long postmaster_pid_line(int nr, long max)
{
    char path[PATH_MAX + 32], buf[1024];
    snprintf(path, sizeof(path), "%s/postmaster.pid", db.data);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *line = buf;
    for (int i = 1; i < nr && line; i++) {
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    if (!line)
        return -1;
    char *end = strchr(line, '\n');
    if (end)
        *end = '\0';
    int64_t v;
    return parse_i64(line, 0, max, &v) ? -1 : (long)v;
}

/* Whether process pid is a zombie: dead, not yet reaped by its parent (init, or the server when
 * it is pid 1), which kill(pid, 0) and so pg_ctl status take for alive. */
static bool zombie(long pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, stat, sizeof(stat) - 1);
    close(fd);
    if (n <= 0)
        return false;
    stat[n] = '\0';
    const char *end = strrchr(stat, ')'); /* the command name may hold anything */
    return end && end[1] == ' ' && end[2] == 'Z';
}

/* pg_ctl status: 1 running, 0 not, -errno with why. */
static int cluster_running(char *why, size_t why_len)
{
    char *argv[] = {"pg_ctl", "status", "-D", db.data, NULL};
    int r = run("pg_ctl", argv, -1, -1, NULL, NULL);
    if (r == 0) {
        long pid = postmaster_pid_line(1, INT_MAX);
        return pid > 0 && zombie(pid) ? 0 : 1;
    }
    if (r == 3 || r == 4) /* no server running / no accessible data directory */
        return 0;
    snprintf(why, why_len, "pg_ctl status failed (%d)", r);
    return r < 0 ? r : -EIO;
}

/* The settings Slipway owns: rewritten before each start (the port may have changed). */
static int write_settings(char *why, size_t why_len)
{
    struct strbuf conf = STRBUF_INIT, hba = STRBUF_INIT, ident = STRBUF_INIT;
    strbuf_adds(&conf, "# Written by Slipway at each start: changes here are lost.\n"
                       "listen_addresses = '127.0.0.1'\n");
    strbuf_addf(&conf, "port = %d\n", db.port);
    strbuf_adds(&conf, "unix_socket_directories = '");
    for (const char *p = db.run; *p; p++) {
        if (*p == '\'' || *p == '\\')
            strbuf_addch(&conf, *p); /* doubled: a quote or backslash inside the string */
        strbuf_addch(&conf, *p);
    }
    strbuf_adds(&conf, "'\nunix_socket_permissions = 0700\n"
                       "password_encryption = 'scram-sha-256'\n");
    strbuf_adds(&hba, "# Written by Slipway at each start: changes here are lost.\n"
                      "local all " ADMIN_ROLE " peer map=slipway\n"
                      "host sameuser all 127.0.0.1/32 scram-sha-256\n");
    strbuf_addf(&ident, "slipway %s " ADMIN_ROLE "\n", db.os_user);
    int r = -ENOMEM;
    if (!strbuf_ok(&conf) || !strbuf_ok(&hba) || !strbuf_ok(&ident)) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/slipway.conf", db.data);
    r = write_user_file(path, conf.buf, why, why_len);
    snprintf(path, sizeof(path), "%s/pg_hba.conf", db.data);
    if (!r)
        r = write_user_file(path, hba.buf, why, why_len);
    snprintf(path, sizeof(path), "%s/pg_ident.conf", db.data);
    if (!r)
        r = write_user_file(path, ident.buf, why, why_len);
out:
    strbuf_release(&conf);
    strbuf_release(&hba);
    strbuf_release(&ident);
    return r;
}

/* initdb into data.new, then renamed to data: a cluster half made by a crash is made again. */
static int cluster_make(char *why, size_t why_len)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", db.data);
    int r = fs_remove_tree(tmp);
    if (r && r != -ENOENT) {
        snprintf(why, why_len, "cannot remove '%s': %s", tmp, strerror(-r));
        return r;
    }
    char *argv[] = {"initdb",
                    "-D",
                    tmp,
                    "--username=" ADMIN_ROLE,
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                    NULL};
    r = run_checked("initdb", argv, -1, -1, NULL, why, why_len);
    if (r)
        return r;
    char conf[PATH_MAX + 32];
    snprintf(conf, sizeof(conf), "%s/postgresql.conf", tmp);
    int fd = open(conf, O_WRONLY | O_APPEND | O_CLOEXEC);
    static const char include[] = "\n# Slipway's settings\ninclude_if_exists = 'slipway.conf'\n";
    r = fd < 0 ? -errno : fd_write_all(fd, include, sizeof(include) - 1);
    if (fd >= 0 && close(fd) < 0 && !r)
        r = -errno;
    if (!r && rename(tmp, db.data) < 0)
        r = -errno;
    if (r)
        snprintf(why, why_len, "cannot set up '%s': %s", tmp, strerror(-r));
    return r;
}

/* The end of the postmaster's log, for a start that failed. */
static void log_tail(struct strbuf *sb)
{
    int fd = open(db.log, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > 600 ? size - 600 : 0;
    char buf[601];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
    close(fd);
    if (n > 0) {
        buf[n] = '\0';
        strbuf_adds(sb, " | log: ");
        strbuf_adds(sb, buf);
    }
}

static int cluster_start(char *why, size_t why_len)
{
    int r = make_dir(db.run, why, why_len);
    if (!r)
        r = write_settings(why, why_len);
    if (r)
        return r;
    char *argv[] = {"pg_ctl", "start",         "-D", db.data, "-l", db.log, "-w",
                    "-t",     START_TIMEOUT_S, "-s", NULL};
    /* A postmaster killed a moment ago may leave backends that still hold its shared memory
     * ("pre-existing shared memory block is still in use"), or be a zombie that its parent has
     * not reaped yet (its pid file then names a live process): both are gone within a second or
     * two; try again meanwhile (for about 5 s in all). */
    struct strbuf err = STRBUF_INIT;
    for (int attempt = 0; attempt < 7; attempt++) {
        strbuf_reset(&err);
        r = run("pg_ctl", argv, -1, -1, NULL, &err);
        if (r == 0 || attempt == 6)
            break;
        struct timespec ts = {0, 200 * 1000 * 1000L * (attempt + 1)};
        nanosleep(&ts, NULL);
    }
    if (r) {
        char what[64];
        snprintf(what, sizeof(what), "pg_ctl start failed (%d)", r);
        log_tail(&err);
        set_why(why, why_len, what, err.buf);
        r = r < 0 ? r : -EIO;
    }
    strbuf_release(&err);
    return r;
}

static int cluster_stop(const char *mode)
{
    char *argv[] = {"pg_ctl", "stop", "-D",           db.data, "-m", (char *)mode,
                    "-w",     "-t",   STOP_TIMEOUT_S, "-s",    NULL};
    return run("pg_ctl", argv, -1, -1, NULL, NULL);
}

/* Makes the cluster when it is not, starts it when it does not run (on the configured port: one
 * running on another is restarted). 0, 1 when it was (re)started, or -errno with why. */
static int cluster_up(char *why, size_t why_len)
{
    int r = make_dir(db.dir, why, why_len);
    if (r)
        return r;
    if (!cluster_made()) {
        r = cluster_make(why, why_len);
        if (r)
            return r;
    }
    r = cluster_running(why, why_len);
    if (r < 0)
        return r;
    if (r == 1) {
        if (postmaster_pid_line(4, 65535) == db.port)
            return 0;
        cluster_stop("fast");
    }
    r = cluster_start(why, why_len);
    return r ? r : 1;
}

/* ---- the API ---- */

static int check_call(const char *name, char *why, size_t why_len)
{
    if (!db.open) {
        snprintf(why, why_len, "the database module is not open");
        return -EBADF;
    }
    if (name && !database_name_valid(name)) {
        snprintf(why, why_len,
                 "'%.*s' is not a database name: 1 to 63 of a-z, 0-9 and '_', not reserved",
                 DATABASE_NAME_MAX, name);
        str_utf8_fix(why);
        return -EINVAL;
    }
    return 0;
}

static void env_release(void)
{
    for (int i = 0; i < NR_ENV; i++) {
        free(db.env[i]);
        db.env[i] = NULL;
    }
}

static void forget(void)
{
    env_release();
    if (db.secret) {
        memset(db.secret, 0, db.secret_len);
        free(db.secret);
    }
    memset(&db, 0, sizeof(db));
}

/* The highest /usr/lib/postgresql/<major>/bin with a pg_ctl in it. */
static int find_bin_dir(char *out, size_t out_len)
{
    DIR *d = opendir("/usr/lib/postgresql");
    if (!d)
        return -ENOENT;
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t major;
        if (parse_i64(e->d_name, 1, 10000, &major) || major <= best)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "/usr/lib/postgresql/%s/bin/pg_ctl", e->d_name);
        if (access(path, X_OK) == 0) {
            best = major;
            snprintf(out, out_len, "/usr/lib/postgresql/%s/bin", e->d_name);
        }
    }
    closedir(d);
    return best < 0 ? -ENOENT : 0;
}

static int set_paths(const struct database_config *cfg)
{
    size_t n = strlen(cfg->dir);
    while (n > 1 && cfg->dir[n - 1] == '/')
        n--;
    if (n >= sizeof(db.dir) - 16)
        return -ENAMETOOLONG;
    memcpy(db.dir, cfg->dir, n);
    db.dir[n] = '\0';
    snprintf(db.data, sizeof(db.data), "%s/data", db.dir);
    snprintf(db.run, sizeof(db.run), "%s/run", db.dir);
    snprintf(db.log, sizeof(db.log), "%s/log", db.dir);
    /* The socket's path (sun_path holds 108 bytes). */
    if (strlen(db.run) + sizeof("/.s.PGSQL.65535") > 108)
        return -ENAMETOOLONG;
    return 0;
}

static int build_env(void)
{
    char *env[NR_ENV] = {NULL};
    int i = 0;
    if (asprintf(&env[i++], "PATH=%s:/usr/bin:/bin", db.bin_dir) < 0 ||
        asprintf(&env[i++], "PGHOST=%s", db.run) < 0 ||
        asprintf(&env[i++], "PGPORT=%d", db.port) < 0 ||
        asprintf(&env[i++], "PGDATA=%s", db.data) < 0 ||
        asprintf(&env[i++], "HOME=%s", db.dir) < 0) {
        env[i - 1] = NULL;
        for (int j = 0; j < NR_ENV; j++)
            free(env[j]);
        return -ENOMEM;
    }
    static const char *const fixed[] = {"LANG=C.UTF-8", "PGUSER=" ADMIN_ROLE,
                                        "PGPASSFILE=/dev/null", "PGCONNECT_TIMEOUT=10", "TZ=UTC"};
    for (size_t j = 0; j < sizeof(fixed) / sizeof(fixed[0]); j++) {
        env[i] = strdup(fixed[j]);
        if (!env[i]) {
            for (int k = 0; k < NR_ENV; k++)
                free(env[k]);
            return -ENOMEM;
        }
        i++;
    }
    memcpy(db.env, env, sizeof(env));
    return 0;
}

int database_open(const struct database_config *cfg, char *why, size_t why_len)
{
    pthread_mutex_lock(&lock);
    int r = -EALREADY;
    if (db.open) {
        snprintf(why, why_len, "the database module is already open");
        goto out;
    }
    r = -EINVAL;
    if (!cfg || !cfg->dir || cfg->dir[0] != '/' || cfg->port < 1 || cfg->port > 65535 ||
        !cfg->secret || cfg->secret_len < 16) {
        snprintf(why, why_len,
                 "bad database configuration (an absolute dir, a port and a secret of at least "
                 "16 bytes are needed)");
        goto out;
    }
    r = set_paths(cfg);
    if (r) {
        snprintf(why, why_len, "the directory '%s' is too long for a unix socket below it",
                 cfg->dir);
        goto out;
    }
    if (cfg->bin_dir) {
        if (snprintf(db.bin_dir, sizeof(db.bin_dir), "%s", cfg->bin_dir) >=
            (int)sizeof(db.bin_dir)) {
            r = -ENAMETOOLONG;
            snprintf(why, why_len, "the PostgreSQL directory is too long");
            goto out;
        }
    } else if (find_bin_dir(db.bin_dir, sizeof(db.bin_dir))) {
        r = -ENOENT;
        snprintf(why, why_len,
                 "PostgreSQL is not installed (no /usr/lib/postgresql/<version>/bin/pg_ctl): "
                 "install it (apt-get install postgresql) to give apps a database");
        goto out;
    }
    for (size_t i = 0; i < sizeof(programs) / sizeof(programs[0]); i++) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof(path), "%s/%s", db.bin_dir, programs[i]);
        if (access(path, X_OK) < 0) {
            r = -ENOENT;
            snprintf(why, why_len, "PostgreSQL is not installed: cannot run '%s' (%s)", path,
                     strerror(errno));
            goto out;
        }
    }
    db.set_ids = cfg->set_ids;
    db.uid = cfg->set_ids ? cfg->uid : geteuid();
    db.gid = cfg->set_ids ? cfg->gid : getegid();
    if (db.uid == 0) {
        r = -EINVAL;
        snprintf(why, why_len, "PostgreSQL does not run as root: name an unprivileged user");
        goto out;
    }
    struct passwd pw, *found = NULL;
    char pwbuf[4096];
    if (getpwuid_r(db.uid, &pw, pwbuf, sizeof(pwbuf), &found) || !found ||
        snprintf(db.os_user, sizeof(db.os_user), "%s", pw.pw_name) >= (int)sizeof(db.os_user) ||
        strpbrk(db.os_user, " \t\n\"#'")) {
        r = -ENOENT;
        snprintf(why, why_len, "the user %u has no usable name (PostgreSQL needs one)",
                 (unsigned)db.uid);
        goto out;
    }
    db.port = cfg->port;
    r = -ENOMEM;
    db.secret = malloc(cfg->secret_len);
    if (!db.secret || build_env()) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    memcpy(db.secret, cfg->secret, cfg->secret_len);
    db.secret_len = cfg->secret_len;
    db.open = true;
    r = 0;
out:
    if (r)
        forget();
    pthread_mutex_unlock(&lock);
    return r;
}

int database_ensure(const char *name, char *url, size_t url_len, char *why, size_t why_len)
{
    pthread_mutex_lock(&lock);
    int r = check_call(name, why, why_len);
    if (r)
        goto out;
    char password[PASSWORD_HEX], verifier[160];
    password_of(name, password);
    int n =
        snprintf(url, url_len, "postgresql://%s:%s@127.0.0.1:%d/%s", name, password, db.port, name);
    if (n < 0 || (size_t)n >= url_len) {
        if (url_len)
            url[0] = '\0';
        r = -ENOSPC;
        snprintf(why, why_len, "the URL does not fit in %zu bytes", url_len);
        goto wipe;
    }
    r = cluster_up(why, why_len);
    if (r < 0)
        goto fail;
    scram_verifier(name, password, verifier, sizeof(verifier));
    struct strbuf sql = STRBUF_INIT;
    strbuf_addf(&sql, "\\set verifier '%s'\n", verifier);
    strbuf_adds(&sql,
                "SELECT format('CREATE ROLE %I', :'name') WHERE NOT EXISTS "
                "(SELECT FROM pg_roles WHERE rolname = :'name') \\gexec\n"
                "ALTER ROLE :\"name\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                "NOREPLICATION NOBYPASSRLS PASSWORD :'verifier';\n"
                "SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name') WHERE NOT EXISTS "
                "(SELECT FROM pg_database WHERE datname = :'name') \\gexec\n"
                "ALTER DATABASE :\"name\" OWNER TO :\"name\";\n"
                "REVOKE ALL ON DATABASE :\"name\" FROM PUBLIC;\n");
    r = strbuf_ok(&sql) ? psql("postgres", name, sql.buf, NULL, why, why_len) : -ENOMEM;
    strbuf_release(&sql);
    memset(verifier, 0, sizeof(verifier));
    if (!r)
        goto wipe;
fail:
    memset(url, 0, url_len);
wipe:
    memset(password, 0, sizeof(password));
out:
    pthread_mutex_unlock(&lock);
    return r < 0 ? r : 0;
}

int database_dump(const char *name, int out_fd, char *why, size_t why_len)
{
    pthread_mutex_lock(&lock);
    int r = check_call(name, why, why_len);
    if (!r && out_fd < 0) {
        r = -EBADF;
        snprintf(why, why_len, "no descriptor to dump to");
    }
    if (!r)
        r = cluster_up(why, why_len);
    if (r >= 0) {
        char dbarg[96];
        snprintf(dbarg, sizeof(dbarg), "--dbname=%s", name);
        char *argv[] = {"pg_dump", "--format=custom", "--no-password", dbarg, NULL};
        r = run_checked("pg_dump", argv, -1, out_fd, NULL, why, why_len);
    }
    pthread_mutex_unlock(&lock);
    return r;
}

int database_restore(const char *name, int in_fd, char *why, size_t why_len)
{
    pthread_mutex_lock(&lock);
    int r = check_call(name, why, why_len);
    if (!r && in_fd < 0) {
        r = -EBADF;
        snprintf(why, why_len, "no descriptor to restore from");
    }
    if (!r)
        r = cluster_up(why, why_len);
    if (r < 0)
        goto out;
    /* CREATE DATABASE ... OWNER fails when the role does not exist: ensure first. */
    r = psql("postgres", name,
             "DROP DATABASE IF EXISTS " RESTORE_DB " WITH (FORCE);\n"
             "CREATE DATABASE " RESTORE_DB " OWNER :\"name\";\n"
             "REVOKE ALL ON DATABASE " RESTORE_DB " FROM PUBLIC;\n",
             NULL, why, why_len);
    if (r)
        goto out;
    char rolearg[96];
    snprintf(rolearg, sizeof(rolearg), "--role=%s", name);
    char *argv[] = {"pg_restore",    "--no-owner",           "--no-privileges",
                    rolearg,         "--single-transaction", "--exit-on-error",
                    "--no-password", "--dbname=" RESTORE_DB, NULL};
    r = run_checked("pg_restore", argv, in_fd, -1, NULL, why, why_len);
    if (r) {
        char ignored[256];
        psql("postgres", NULL, "DROP DATABASE IF EXISTS " RESTORE_DB " WITH (FORCE);\n", NULL,
             ignored, sizeof(ignored));
        goto out;
    }
    r = psql("postgres", name,
             "DROP DATABASE IF EXISTS :\"name\" WITH (FORCE);\n"
             "ALTER DATABASE " RESTORE_DB " RENAME TO :\"name\";\n",
             NULL, why, why_len);
out:
    pthread_mutex_unlock(&lock);
    return r < 0 ? r : 0;
}

int database_drop(const char *name, char *why, size_t why_len)
{
    pthread_mutex_lock(&lock);
    int r = check_call(name, why, why_len);
    if (r || !cluster_made())
        goto out;
    r = cluster_up(why, why_len);
    if (r >= 0)
        r = psql("postgres", name,
                 "DROP DATABASE IF EXISTS :\"name\" WITH (FORCE);\n"
                 "DROP ROLE IF EXISTS :\"name\";\n",
                 NULL, why, why_len);
out:
    pthread_mutex_unlock(&lock);
    return r < 0 ? r : 0;
}

int database_check(char *why, size_t why_len)
{
    pthread_mutex_lock(&lock);
    int r = check_call(NULL, why, why_len);
    if (!r && cluster_made())
        r = cluster_up(why, why_len);
    pthread_mutex_unlock(&lock);
    return r;
}

pid_t database_pid(void)
{
    pthread_mutex_lock(&lock);
    long pid = db.open ? postmaster_pid_line(1, INT_MAX) : -1;
    if (pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH)
        pid = 0;
    pthread_mutex_unlock(&lock);
    return pid > 0 ? (pid_t)pid : 0;
}

void database_close(bool stop)
{
    pthread_mutex_lock(&lock);
    if (db.open) {
        if (stop && cluster_made() && cluster_stop("fast") != 0)
            cluster_stop("immediate");
        forget();
    }
    pthread_mutex_unlock(&lock);
}
