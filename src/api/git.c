/* api — git smart HTTP at /git/<AppId>.git/..., bridged to `git http-backend` (CGI).
 *
 * HTTP basic authentication (email + API key or token); without it, 401 with the Basic challenge
 * git expects. Reading (upload-pack) needs membership; pushing (receive-pack) needs the
 * developer or admin role. Request bodies are spooled to an unnamed temp file by the http layer
 * (never held in memory) and become the CGI's stdin; its stdout is parsed for CGI headers and
 * streamed back. Each push is audited as it starts and as it ends (git_push.c).
 *
 * A deliberate exception to "only the engine starts processes": http-backend is started from the
 * request thread with base/proc, since it is the request's own answer; it gets a minimal
 * environment and its own process group. Its processes die with the request and the server: each
 * request's run in a cgroup of their own, git/<kind>-<n> beside the builds' groups under the
 * server's parent group (killed when the client goes away or the server stops, and what a crashed
 * server left is killed at the next start, before the audit is reconciled); and http-backend gets
 * SIGTERM when the server dies (a death signal, passed on by git to the commands it runs), so that
 * a push does not land after its server is gone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "admin/admin.h"
#include "api/api_int.h"
#include "base/cgroup.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/proc.h"
#include "base/strbuf.h"
#include "base/strv.h"
#include "base/util.h"
#include "base/banned.h"

#define CGI_HEADER_MAX (16 * 1024)
#define MAX_LINGERING  16
#define GRACE_MS       2000 /* for git to end on SIGTERM before SIGKILL */

static char *git_path;

struct cgi;

/* The git processes of the requests in progress, and where they run. */
static struct {
    pthread_mutex_t lock;
    int tree_fd; /* the git sub-tree of the server's cgroup; -1: none on this host */
    bool stopping;
    struct cgi *live; /* requests whose http-backend has not been waited for */
    uint64_t seq;     /* names the requests' groups */
    /* groups left to what a push started in the background (`git gc --auto` detaches): removed
     * once empty, killed at the stop */
    char lingering[MAX_LINGERING][32];
    size_t nr_lingering;
} G = {.lock = PTHREAD_MUTEX_INITIALIZER, .tree_fd = -1};

struct cgi {
    pid_t pid;
    int out_fd;
    int conn_fd; /* the client's socket, polled for POLLRDHUP; -1 if unknown */
    int cg_fd;   /* the request's cgroup, -1: none */
    char cg_name[32];
    bool eof;
    bool push;
    bool gone;    /* the client went away */
    bool stopped; /* killed by api_git_stop() */
    bool broken;  /* its answer was unusable: it failed before the push could start */
    struct cgi *next;
    char actor[STORE_EMAIL_MAX + 1];
    char app[STORE_APPID_MAX + 1];
    char source[64];
    char push_id[CRYPTO_UUID_LEN];
    struct api_git_push cmds;
};

/* Kills the processes of a CGI whose http-backend has not been waited for yet: its cgroup, and
 * its process group (everything, where there is no cgroup, but a daemon). */
static void cgi_kill(struct cgi *c)
{
    if (c->cg_fd >= 0)
        cgroup_kill(c->cg_fd);
    kill(-c->pid, SIGKILL);
    kill(c->pid, SIGKILL);
}

/* Ends a CGI that is cut off: SIGTERM to its process group first, so that receive-pack removes
 * its quarantine directory, at most GRACE_MS for http-backend to end, then cgi_kill(). */
static void cgi_end(struct cgi *c)
{
    kill(-c->pid, SIGTERM);
    int pidfd = proc_pidfd(c->pid); /* not waited for yet: the pid is still ours */
    if (pidfd >= 0) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        poll(&p, 1, GRACE_MS);
        close(pidfd);
    }
    cgi_kill(c);
}

/* Removes the lingering groups that have emptied. Under G.lock. */
static void prune_lingering(void)
{
    for (size_t i = 0; i < G.nr_lingering;) {
        if (unlinkat(G.tree_fd, G.lingering[i], AT_REMOVEDIR) == 0 || errno == ENOENT)
            memcpy(G.lingering[i], G.lingering[--G.nr_lingering], sizeof(G.lingering[i]));
        else
            i++;
    }
}

/* Creates the request's cgroup (where there are cgroups) and starts http-backend in it, unless
 * the server stops. 0, or -errno. */
static int cgi_start(struct cgi *c, char *const env[], int in_fd, int out_fd)
{
    char *argv[] = {"git", "http-backend", NULL};
    pthread_mutex_lock(&G.lock);
    int r = G.stopping ? -ESHUTDOWN : 0;
    if (!r && G.tree_fd >= 0) {
        prune_lingering();
        snprintf(c->cg_name, sizeof(c->cg_name), "%s-%" PRIu64, c->push ? "push" : "read", ++G.seq);
        int e = cgroup_create(G.tree_fd, c->cg_name, &c->cg_fd);
        if (e) {
            log_warn("cannot create cgroup git/%s: %s", c->cg_name, strerror(-e));
            c->cg_fd = -1;
        }
    }
    /* The death signal is tied to this thread, an HTTP pool thread that lives until the server
     * stops, and outlives the request: cgi_free() waits for the child on it. SIGTERM, not
     * SIGKILL: git passes it on to http-backend, and http-backend to receive-pack. */
    if (!r)
        r = proc_spawn_tied(SIGTERM, c->cg_fd, NULL, git_path, argv, env, in_fd, out_fd,
                            STDERR_FILENO, &c->pid, NULL);
    if (!r) {
        c->next = G.live;
        G.live = c;
    } else if (c->cg_fd >= 0) {
        cgroup_destroy(G.tree_fd, c->cg_name, c->cg_fd, 2000);
        c->cg_fd = -1;
    }
    pthread_mutex_unlock(&G.lock);
    return r;
}

/* Removes the request's cgroup, killing what is left in it; unless keep and a push's background
 * maintenance still runs there: that may finish (removed later, killed at the stop). */
static void cgi_group_end(struct cgi *c, bool keep)
{
    if (c->cg_fd < 0)
        return;
    pthread_mutex_lock(&G.lock);
    if (keep && !G.stopping && cgroup_populated(c->cg_fd) == 1) {
        prune_lingering();
        if (G.nr_lingering < MAX_LINGERING) {
            memcpy(G.lingering[G.nr_lingering++], c->cg_name, sizeof(c->cg_name));
            close(c->cg_fd);
            c->cg_fd = -1;
        }
    }
    pthread_mutex_unlock(&G.lock);
    if (c->cg_fd >= 0 && cgroup_destroy(G.tree_fd, c->cg_name, c->cg_fd, 2000))
        log_warn("cannot remove cgroup git/%s (processes left in it)", c->cg_name);
    c->cg_fd = -1;
}

/* Kills the git processes a crashed server left, on hosts without cgroups for us: those whose
 * environment holds our GIT_PROJECT_ROOT (git passes it on to all it starts). The death signal
 * ends them as the server dies; this is for what escaped it. */
static bool lost_git(pid_t pid, const char *env, size_t len, void *arg)
{
    const char *marker = arg;
    for (const char *e = env; e < env + len; e += strlen(e) + 1)
        if (strcmp(e, marker) == 0) {
            log_warn("killing git process %lld of a request the server lost", (long long)pid);
            return true;
        }
    return false;
}

static void kill_lost_git(void)
{
    char marker[PATH_MAX + 32];
    snprintf(marker, sizeof(marker), "GIT_PROJECT_ROOT=%s", layout_repos_dir());
    proc_kill_matching("environ", lost_git, marker, 5000);
}

/* Removes the quarantine directories (objects/tmp_objdir-incoming-*) that receive-packs killed
 * with the server before they could clean up left in the repositories: at start, once no git
 * process of the previous run is left (nothing else writes into DIR/repos). */
static void remove_quarantines(void)
{
    DIR *repos = opendir(layout_repos_dir()), *objects;
    struct dirent *repo, *de;
    while (repos && (repo = readdir(repos))) {
        if (repo->d_name[0] == '.')
            continue;
        char *dir = NULL;
        if (asprintf(&dir, "%s/%s/objects", layout_repos_dir(), repo->d_name) < 0)
            break;
        objects = opendir(dir);
        while (objects && (de = readdir(objects))) {
            char *path = NULL;
            if (!str_has_prefix(de->d_name, "tmp_objdir-") ||
                asprintf(&path, "%s/%s", dir, de->d_name) < 0)
                continue;
            log_warn("removing '%s': left by a push the server's stop cut off", path);
            fs_remove_tree(path);
            free(path);
        }
        if (objects)
            closedir(objects);
        free(dir);
    }
    if (repos)
        closedir(repos);
}

int api_git_init(void)
{
    git_path = proc_find_program("git", getenv("PATH"));
    if (!git_path) {
        log_error("'git' is not installed (not found in PATH): git hosting needs it");
        return -ENOENT;
    }
    /* what a crashed server left dies before the audit tells where its pushes left the refs */
    char tree[64], why[512];
    cgroup_tree_name(layout_dir(), tree, sizeof(tree));
    int r = cgroup_subtree_open(tree, "git", &G.tree_fd, why, sizeof(why));
    if (r) {
        G.tree_fd = -1;
        log_warn("cgroups: %s; git processes die with the server through a death signal and "
                 "are killed through their process group only",
                 why);
        kill_lost_git();
    } else {
        log_info("cgroups: each git request runs in a cgroup v2 group under '%s/git'", tree);
    }
    remove_quarantines();
    api_git_push_reconcile();
    G.stopping = false;
    return 0;
}

void api_git_stop(void)
{
    /* SIGTERM now (their workers then see the answers end and finish them), SIGKILL to what is
     * still running after the grace period */
    pthread_mutex_lock(&G.lock);
    G.stopping = true;
    for (struct cgi *c = G.live; c; c = c->next) {
        c->stopped = true;
        kill(-c->pid, SIGTERM);
    }
    for (int waited = 0; G.live && waited < GRACE_MS; waited += 10) {
        pthread_mutex_unlock(&G.lock);
        usleep(10000);
        pthread_mutex_lock(&G.lock);
    }
    for (struct cgi *c = G.live; c; c = c->next)
        cgi_kill(c);
    pthread_mutex_unlock(&G.lock);
}

void api_git_shutdown(void)
{
    pthread_mutex_lock(&G.lock);
    for (size_t i = 0; i < G.nr_lingering; i++) {
        int fd = openat(G.tree_fd, G.lingering[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
            cgroup_destroy(G.tree_fd, G.lingering[i], fd, 2000);
    }
    G.nr_lingering = 0;
    if (G.tree_fd >= 0)
        cgroup_subtree_close(G.tree_fd);
    G.tree_fd = -1;
    pthread_mutex_unlock(&G.lock);
    free(git_path);
    git_path = NULL;
}

static ssize_t cgi_read(void *arg, char *buf, size_t max)
{
    struct cgi *c = arg;
    for (;;) {
        /* receive-pack may work long before it answers: meanwhile, watch the client too (clients
         * do not half-close while they wait for an answer: RDHUP means this one has gone) */
        if (c->conn_fd >= 0) {
            struct pollfd pfd[2] = {{.fd = c->out_fd, .events = POLLIN},
                                    {.fd = c->conn_fd, .events = POLLRDHUP}};
            if (poll(pfd, 2, -1) < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            if (!pfd[0].revents && (pfd[1].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
                c->gone = true;
                return -1;
            }
        }
        ssize_t n = read(c->out_fd, buf, max);
        if (n >= 0) {
            c->eof = n == 0;
            return n;
        }
        if (errno != EINTR)
            return -1;
    }
}

static void cgi_free(void *arg)
{
    struct cgi *c = arg;
    close(c->out_fd);
    pthread_mutex_lock(&G.lock);
    for (struct cgi **p = &G.live; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    pthread_mutex_unlock(&G.lock);
    if (!c->eof || c->gone || c->broken || c->stopped) /* nobody waits for the rest */
        cgi_end(c);
    int status = proc_wait(c->pid);
    bool cut = !c->broken && (!c->eof || c->gone || (c->stopped && status != 0));
    cgi_group_end(c, !cut && status == 0);
    if (c->push) {
        char result[96];
        struct strbuf detail = STRBUF_INIT;
        strbuf_init(&detail, 16 * 1024);
        if (cut) {
            /* git never said how it ended: say where the refs stand */
            snprintf(result, sizeof(result), "interrupted (%s; http-backend exit %d)",
                     c->stopped ? "the server stopped" : "the client went away", status);
            api_git_push_outcome(c->app, c->push_id, &c->cmds, &detail);
        } else {
            snprintf(result, sizeof(result), "%s (http-backend exit %d)",
                     status == 0 && !c->broken ? "ok" : "error", status);
        }
        if (!cut || !strbuf_ok(&detail)) {
            strbuf_reset(&detail);
            strbuf_addf(&detail, "push=%s", c->push_id);
        }
        if (store_audit_append(c->actor, "git push", c->app, "", c->source, result, detail.buf))
            log_error("cannot write the audit log entry for a push");
        strbuf_release(&detail);
    }
    api_git_push_release(&c->cmds);
    free(c);
}

/* Reads the CGI header block from fd into hdr (up to and including the blank line); any body
 * bytes read past it stay in hdr after *header_len. 0, or -1 on EOF/error/oversize. */
static int read_cgi_headers(int fd, struct strbuf *hdr, size_t *header_len)
{
    char buf[4096];
    for (;;) {
        char *end = strstr(hdr->buf, "\r\n\r\n");
        size_t skip = 4;
        char *lf = strstr(hdr->buf, "\n\n");
        if (lf && (!end || lf < end)) {
            end = lf;
            skip = 2;
        }
        if (end) {
            *header_len = (size_t)(end - hdr->buf) + skip;
            return 0;
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        strbuf_add(hdr, buf, (size_t)n);
        if (!strbuf_ok(hdr))
            return -1;
    }
}

/* Streams first the already-read body bytes, then the pipe. */
struct cgi_stream {
    struct cgi *cgi;
    char *pending;
    size_t pending_len, pending_off;
};

static ssize_t stream_read(void *arg, char *buf, size_t max)
{
    struct cgi_stream *s = arg;
    if (s->pending_off < s->pending_len) {
        size_t n = s->pending_len - s->pending_off;
        if (n > max)
            n = max;
        memcpy(buf, s->pending + s->pending_off, n);
        s->pending_off += n;
        return (ssize_t)n;
    }
    return cgi_read(s->cgi, buf, max);
}

static void stream_free(void *arg)
{
    struct cgi_stream *s = arg;
    cgi_free(s->cgi);
    free(s->pending);
    free(s);
}

/* Dumb-protocol paths (and info/refs without a smart service): not served. */
void api_git_dumb(struct http_request *req, struct http_response *res,
                  const struct api_caller *caller)
{
    (void)caller;
    api_fail(req, res, 404, "NOT_FOUND",
             "only the smart HTTP protocol is served: clone with 'git clone'");
}

/* info/refs?service=git-upload-pack|git-receive-pack, git-upload-pack, git-receive-pack: the
 * route table lets only those through, with the role each needs. */
void api_git_serve(struct http_request *req, struct http_response *res,
                   const struct api_caller *caller)
{
    const struct auth_principal *p = &caller->who;
    const struct store_app app = caller->app;
    struct strbuf tail = STRBUF_INIT; /* "/info/refs", "/git-upload-pack", ... */
    for (size_t i = 2; i < req->path.nr_seg; i++) {
        strbuf_addch(&tail, '/');
        strbuf_adds(&tail, req->path.seg[i]);
    }
    /* What git is asked to do comes from the route table's row alone, never from the query as
     * sent: git reads the last "service" parameter (and decodes names), the row the first. */
    const char *query = caller->row->query ? caller->row->query : "";
    bool push = strcmp(query, "service=git-receive-pack") == 0 ||
                strcmp(req->path.seg[req->path.nr_seg - 1], "git-receive-pack") == 0;
    /* reads are not audited; a push is, by cgi_free or below (or by api_request_completed) */
    bool post_push = push && strcmp(req->method, "POST") == 0;
    /* git first probes a large push with a 4-byte "0000" POST: not a push of its own */
    bool probe = post_push && req->body_size <= 4;
    req->recorded = !post_push;

    /* the CGI environment: an allowlist, nothing inherited from the server */
    char **env = NULL;
    size_t n = 0;
    char *root = NULL, *path_info = NULL, *clen = NULL;
    int r = 0;
    if (!(root = strdup(layout_repos_dir())) ||
        asprintf(&path_info, "/%s.git%s", app.app_id, tail.buf) < 0 ||
        asprintf(&clen, "%" PRIu64, req->body_size) < 0)
        r = -ENOMEM;
    if (!r &&
        (strv_add_env(&env, &n, "GIT_PROJECT_ROOT", root) ||
         strv_add_env(&env, &n, "GIT_HTTP_EXPORT_ALL", "1") ||
         strv_add_env(&env, &n, "PATH_INFO", path_info) ||
         strv_add_env(&env, &n, "REQUEST_METHOD", req->method) ||
         strv_add_env(&env, &n, "QUERY_STRING", query) ||
         strv_add_env(&env, &n, "REMOTE_USER", p->user.email) ||
         strv_add_env(&env, &n, "REMOTE_ADDR", req->remote_addr) ||
         strv_add_env(&env, &n, "CONTENT_TYPE", http_header(req, "Content-Type")) ||
         strv_add_env(&env, &n, "HTTP_CONTENT_ENCODING", http_header(req, "Content-Encoding")) ||
         strv_add_env(&env, &n, "GIT_PROTOCOL", http_header(req, "Git-Protocol")) ||
         strv_add_env(&env, &n, "PATH", "/usr/local/bin:/usr/bin:/bin") ||
         strv_add_env(&env, &n, "GIT_CONFIG_NOSYSTEM", "1") ||
         strv_add_env(&env, &n, "HOME", root) ||
         (strcmp(req->method, "POST") == 0 && strv_add_env(&env, &n, "CONTENT_LENGTH", clen))))
        r = -ENOMEM;
    free(root);
    free(path_info);
    free(clen);

    int pipefd[2] = {-1, -1};
    struct cgi *c = calloc(1, sizeof(*c));
    struct cgi_stream *s = calloc(1, sizeof(*s));
    if (!r && (!c || !s))
        r = -ENOMEM;
    if (!r && pipe2(pipefd, O_CLOEXEC) < 0)
        r = -errno;
    if (!r) {
        c->out_fd = pipefd[0];
        c->conn_fd = http_conn_socket(req);
        c->cg_fd = -1;
        c->push = post_push && !probe;
        snprintf(c->actor, sizeof(c->actor), "%s", p->user.email);
        snprintf(c->app, sizeof(c->app), "%s", app.app_id);
        snprintf(c->source, sizeof(c->source), "%s", req->remote_addr);
    }
    /* A push is audited before it starts too, with the ref updates it asks for: should the
     * server die before it ends, the next start says where those refs stand. */
    bool started = false;
    if (!r && c->push) {
        const char *enc = http_header(req, "Content-Encoding");
        bool gzipped = enc && (strcasecmp(enc, "gzip") == 0 || strcasecmp(enc, "x-gzip") == 0);
        api_git_push_read(req->body_fd, gzipped, &c->cmds); /* none found: none named */
        struct strbuf detail = STRBUF_INIT;
        strbuf_init(&detail, 16 * 1024);
        if (crypto_uuid(c->push_id))
            r = -EIO;
        else
            api_git_push_describe(c->push_id, &c->cmds, &detail);
        if (!strbuf_ok(&detail)) { /* the push id is what matters */
            strbuf_reset(&detail);
            strbuf_addf(&detail, "push=%s (%zu refs, too long to name)", c->push_id,
                        c->cmds.nr + c->cmds.nr_more);
        }
        if (!r && store_audit_append(p->user.email, "git push", app.app_id, "", req->remote_addr,
                                     "started", detail.buf))
            log_error("cannot write the audit log entry for a push");
        started = !r;
        strbuf_release(&detail);
    }
    if (!r)
        r = cgi_start(c, env, req->body_fd, pipefd[1]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    strv_free(env);
    if (r) {
        if (pipefd[0] >= 0)
            close(pipefd[0]);
        if (started) {
            char detail[64];
            snprintf(detail, sizeof(detail), "push=%s", c->push_id);
            store_audit_append(p->user.email, "git push", app.app_id, "", req->remote_addr,
                               "error (git http-backend did not start)", detail);
            req->recorded = true;
        }
        if (c)
            api_git_push_release(&c->cmds);
        free(c);
        free(s);
        if (r == -ESHUTDOWN) {
            api_fail(req, res, 503, "STOPPING", "the server is stopping");
            goto out;
        }
        log_error("cannot start 'git http-backend': %s", strerror(-r));
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot start the git service");
        goto out;
    }

    struct strbuf hdr = STRBUF_INIT;
    size_t header_len = 0;
    strbuf_init(&hdr, CGI_HEADER_MAX);
    req->recorded = true;
    s->cgi = c;
    if (read_cgi_headers(c->out_fd, &hdr, &header_len)) {
        c->broken = true;
        stream_free(s);
        strbuf_release(&hdr);
        api_fail(req, res, 500, "INTERNAL_ERROR", "the git service failed");
        goto out;
    }

    /* CGI headers: Status, Content-Type and the rest passed through */
    res->status = 200;
    hdr.buf[header_len - 1] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(hdr.buf, "\r\n", &save); line;
         line = strtok_r(NULL, "\r\n", &save)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ')
            value++;
        if (strcasecmp(line, "Status") == 0) {
            int64_t st;
            char code[4] = {0};
            memcpy(code, value, strnlen(value, 3));
            if (parse_i64(code, 100, 599, &st) == 0)
                res->status = (int)st;
        } else if (strcasecmp(line, "Content-Type") == 0) {
            snprintf(res->content_type, sizeof(res->content_type), "%s", value);
        } else if (strcasecmp(line, "Content-Length") != 0) {
            http_res_header(res, line, value);
        }
    }
    s->pending_len = hdr.len - header_len;
    if (s->pending_len) {
        s->pending = malloc(s->pending_len);
        if (s->pending)
            memcpy(s->pending, hdr.buf + header_len, s->pending_len);
        else
            s->pending_len = 0;
    }
    strbuf_release(&hdr);
    res->stream_read = stream_read;
    res->stream_free = stream_free;
    res->stream_arg = s;
out:
    strbuf_release(&tail);
}
