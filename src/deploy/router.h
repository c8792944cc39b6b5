/* router — the nginx in front of the app environments: one site per environment, listening on a
 * stable port and passing requests round robin to its instances (ports on 127.0.0.1), or
 * answering 503 with a JSON body while the environment is not running.
 *
 * nginx runs detached (its own session, `daemon on`), so it survives a restart of the server and
 * apps keep answering; the next server adopts it through the pid file in the router's directory.
 * Everything nginx writes stays in that directory (config, pid file, error log, temp files),
 * except the sites' access logs; nothing of /etc/nginx is read. When the server is root, nginx
 * (master and workers) runs as an unprivileged user, without capabilities. Its environment is
 * built here (TZ is passed on, so access logs follow the server's local date), never the
 * server's.
 *
 * Depends on base/ only. Every call blocks (it may wait up to a few seconds for nginx) and is
 * thread-safe (one internal mutex): call it from a worker thread, not from an event loop.
 *
 * Files in cfg.dir: nginx.conf (the configuration last in effect), nginx.conf.new (the one being
 * checked), nginx.pid, error.log, tmp/ (nginx's temp files), empty/ (the sites' root: nothing is
 * served from it).
 */
#ifndef SLIPWAY_DEPLOY_ROUTER_H
#define SLIPWAY_DEPLOY_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Limits of router_apply's input. */
#define ROUTER_NAME_MAX     64   /* a site's name: [A-Za-z0-9_-]{1,64} */
#define ROUTER_SITES_MAX    4096 /* sites in one configuration */
#define ROUTER_BACKENDS_MAX 256  /* instances of one site */
#define ROUTER_PATH_MAX     1024 /* cfg.dir and access_log_dir */

struct router_config {
    const char *nginx;       /* the nginx binary; NULL: /usr/sbin/nginx, then nginx in PATH */
    const char *dir;         /* the router's own directory, absolute (made 0700 when missing; its
                                parents must let the router's user through) */
    const char *listen_host; /* the address sites listen on, an IPv4 or IPv6 literal; NULL:
                                127.0.0.1 */
    bool set_ids;            /* the server is root: nginx runs as uid/gid (not 0), which then */
    uid_t uid;               /*   owns dir */
    gid_t gid;
};

/* Opens the router: finds nginx, makes dir, and adopts the nginx master a previous server left
 * running there (pid file, and /proc/<pid>/cmdline and exe checked so that a reused pid is never
 * taken for it); when none runs, router_apply starts one. Every string of cfg is copied. 0;
 * -ENOENT when nginx is not installed, -EINVAL for a bad cfg, -EBUSY when already open, or
 * -errno; why (when not NULL) says what failed. */
int router_open(const struct router_config *cfg, char *why, size_t why_len);

struct router_site {
    const char *name;           /* [A-Za-z0-9_-]{1,64}, unique: e.g. "<AppId>-<mode>" */
    int port;                   /* the stable port it listens on (on cfg.listen_host), unique */
    const int *backends;        /* instance ports on 127.0.0.1: round robin, request by request */
    size_t nr_backends;         /*   (a request goes to the next one when one refuses or times
                                   out); none: every request answers as when none answers */
    bool running;               /* false: every request answers 503, ENVIRONMENT_NOT_RUNNING */
    const char *access_log_dir; /* absolute; nginx writes access-YYYY-MM-DD.log there, named
                                   by the local date of the router_apply (buffered: lines reach
                                   the file within a second), so the caller applies again when
                                   the local date changes: one file a day. The caller makes
                                   the directory, writable by the router's user */
};

/* Replaces the whole configuration with these sites (nr 0: none). The new configuration is
 * written to nginx.conf.new, fsynced and checked with `nginx -t` before it replaces nginx.conf;
 * then the master reloads it (or nginx starts, when none runs). Returns 0 once it is in effect:
 * the master's new workers run and its old ones no longer accept connections, so any request
 * made after the return gets the new configuration. -EINVAL for bad sites (nothing changes),
 * -errno from nginx (-EADDRINUSE: a port is taken; -EINVAL: `nginx -t` refused it), or
 * -ETIMEDOUT after 5 s; why holds nginx's own message. On failure the previous configuration
 * stays in effect and in nginx.conf.
 *
 * What every site does: requests are passed with X-Forwarded-For/-Proto/-Host and X-Real-IP, on
 * kept-alive HTTP/1.1 connections to the instances; bodies up to 100 MB; when no instance
 * answers (nginx's 502 or 504), the answer is 503 with {"errorCode":"ENVIRONMENT_UNAVAILABLE"}
 * (an instance's own 5xx answers pass unchanged). */
int router_apply(const struct router_site *sites, size_t nr, char *why, size_t why_len);

/* The nginx master's pid, or 0 when none runs: for supervision. */
pid_t router_pid(void);

/* Restarts the master when it died (with nginx.conf, the configuration last in effect): 1 when
 * it did, 0 when all is well (or no configuration was ever applied or adopted), -errno (why
 * says) when it could not. For a periodic check. */
int router_check(char *why, size_t why_len);

/* Forgets the router (router_open may be called again). With stop, the master is asked to quit
 * (SIGQUIT: connections finish, at most 5 s) and waited for, then killed if need be; without,
 * nginx keeps running so apps stay reachable while the server restarts. */
void router_close(bool stop);

#endif
