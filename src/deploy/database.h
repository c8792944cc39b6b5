/* database — the one PostgreSQL cluster the Slipway server runs for the environments of apps that
 * ask for a database (run.database: postgres): a database and a role of the same name for each
 * environment, reached by the app over TCP on 127.0.0.1 with a password.
 *
 * Layout below config.dir (made 0700, owned by the cluster's user): data/ (the cluster), run/
 * (its unix socket), log (what the postmaster writes; appended to, never rotated here).
 *
 * Who may connect (pg_hba.conf, rewritten at each start):
 *  - over the unix socket, only the module's own superuser "slipway_admin", as the cluster's OS
 *    user (peer authentication through an ident map); the socket directory is 0700 anyway;
 *  - over TCP on 127.0.0.1, a role to the database of its own name only (sameuser), with
 *    scram-sha-256. Nothing else.
 * Passwords are derived, never stored and never logged: HMAC-SHA256(secret, "database:" + name)
 * as 64 hex digits. The server gets only a SCRAM verifier computed here (with a salt derived the
 * same way, so that ensuring again changes nothing), so the password itself appears in no SQL
 * text, no server log and no command line.
 *
 * Programs: initdb, pg_ctl, psql, pg_dump and pg_restore of one PostgreSQL installation, started
 * with base/proc (as config.uid/gid when set_ids: PostgreSQL refuses to run as root), with an
 * environment built here (PATH, LANG=C.UTF-8, PGHOST/PGPORT/PGUSER..., never the server's). SQL
 * goes through psql over the unix socket; names are validated ([a-z0-9_]{1,63}, some reserved)
 * before any SQL, and psql quotes them as identifiers (:"name") and literals (:'name') anyway.
 * A failing program's stderr (its end, bounded by why_len) is what `why` says.
 *
 * The postmaster is detached (pg_ctl start: its own session, stdin /dev/null, output to log): it
 * outlives the Slipway server, whose next database_ensure/check adopts it (pg_ctl status and
 * data/postmaster.pid). The parents of config.dir must be searchable by the cluster's user.
 *
 * Every call blocks (initdb and the first start take seconds; a start of an existing cluster
 * about a second; an ensure of a running one tens of milliseconds): call from a worker thread,
 * never from the HTTP threads. Thread-safe: one mutex serializes every call. Does not log.
 */
#ifndef SLIPWAY_DEPLOY_DATABASE_H
#define SLIPWAY_DEPLOY_DATABASE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define DATABASE_NAME_MAX 63  /* PostgreSQL's identifier limit (NAMEDATALEN - 1) */
#define DATABASE_URL_MAX  256 /* what database_ensure's url needs at most, the NUL included */

struct database_config {
    const char *dir;     /* the module's directory (see above); made when missing */
    const char *bin_dir; /* NULL: the highest /usr/lib/postgresql/<major>/bin */
    bool set_ids;        /* run the programs as uid/gid (needed when the server is root; without,
                            they run as the server's own user, which must not be root) */
    uid_t uid;
    gid_t gid;
    int port; /* the TCP port on 127.0.0.1 the cluster listens on (the caller picks it; a
                 running cluster adopted on another port is restarted on this one) */
    const unsigned char *secret; /* the passwords derive from it (copied; >= 16 bytes) */
    size_t secret_len;
};

/* Checks the configuration and finds the programs; starts nothing and writes nothing. Copies
 * what cfg points to. 0; -ENOENT with why when PostgreSQL is not installed (or the user has no
 * passwd entry); -EINVAL for a bad config; -EALREADY when open. */
int database_open(const struct database_config *cfg, char *why, size_t why_len);

/* Whether name is one database_ensure accepts: [a-z0-9_]{1,63}, not "postgres", "template0",
 * "template1", "public", "none", "current_user", "session_user", "current_role" or one of the
 * module's own ("slipway_admin", "slipway_restore"), not beginning with "pg_". */
bool database_name_valid(const char *name);

/* Makes the cluster the first time (initdb into data.new, renamed to data/ once complete: a few
 * seconds), starts it when it does not run (pg_ctl start -w, detached, at most 60 s), then makes
 * role `name` (LOGIN, nothing more, its password as above) and database `name` owned by it, that
 * no other role may connect to; idempotent (the role's password and the database's owner are set
 * again each time). Fills url (url_len >= DATABASE_URL_MAX is enough) with
 * postgresql://<name>:<password>@127.0.0.1:<port>/<name>: it holds a secret, log it never.
 * 0, or -errno with why: -EINVAL (a bad name, before any SQL or start), -ENOSPC (url_len),
 * -EBADF (not open), -EIO (a program failed: its message). */
int database_ensure(const char *name, char *url, size_t url_len, char *why, size_t why_len);

/* Writes a consistent dump of database `name` (pg_dump -Fc: one snapshot, custom format) to
 * out_fd (borrowed, written from its current offset, not closed; a file or a pipe another thread
 * reads). Starts the cluster when needed. 0, or -errno with why (-EIO: pg_dump failed, e.g. no
 * such database; what was written to out_fd is then not a dump). */
int database_dump(const char *name, int out_fd, char *why, size_t why_len);

/* Replaces the content of database `name` with a dump made by database_dump, read from in_fd
 * (borrowed, from its current offset, not closed). The dump is restored first into a database of
 * its own (pg_restore --no-owner --role=<name> --single-transaction --exit-on-error), which then
 * takes the place of `name`: a dump that fails to restore leaves `name` as it was. Clients
 * connected to `name` are disconnected (DROP DATABASE ... WITH (FORCE)) and have to reconnect.
 * The role must exist (database_ensure first). 0, or -errno with why. */
int database_restore(const char *name, int in_fd, char *why, size_t why_len);

/* Drops database `name` (disconnecting its clients) and role `name`: the environment was cleaned
 * or removed. 0 when neither exists (nor the cluster), or -errno with why. */
int database_drop(const char *name, char *why, size_t why_len);

/* Whether the cluster runs: 0 when it does (or was never made: nothing to run), 1 when it did not
 * and was started again now, or -errno with why (not open, or it could not be started). */
int database_check(char *why, size_t why_len);

/* The pid of the running postmaster (from data/postmaster.pid, when a process has it), or 0. */
pid_t database_pid(void);

/* Forgets the configuration (database_open may be called again). With stop, the cluster is
 * stopped first (pg_ctl stop -m fast, at most 30 s, then -m immediate); without, it keeps running
 * for the apps and the next database_open + ensure/check adopts it. No-op when not open. */
void database_close(bool stop);

#endif
