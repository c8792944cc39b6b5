/* api — git smart HTTP at /git/<AppId>.git/..., bridged to `git http-backend` (CGI).
 *
 * HTTP basic authentication (email + API key or token); without it, 401 with the Basic challenge
 * git expects. Reading (upload-pack) needs membership; pushing (receive-pack) needs the
 * developer or admin role. Request bodies are spooled to an unnamed temp file by the http layer
 * (never held in memory) and become the CGI's stdin; its stdout is parsed for CGI headers and
 * streamed back. Each push is audited.
 *
 * A deliberate exception to "only the engine starts processes": http-backend is started from the
 * request thread with posix_spawn (base/proc), since it is the request's own answer; it gets a
 * minimal environment and its own process group, and is killed if the client goes away.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "admin/admin.h"
#include "api/api_int.h"
#include "base/log.h"
#include "base/proc.h"
#include "base/strbuf.h"
#include "base/util.h"

#define CGI_HEADER_MAX (16 * 1024)

static char *git_path;

int api_git_init(void)
{
    git_path = proc_find_program("git", getenv("PATH"));
    if (!git_path) {
        log_error("'git' is not installed (not found in PATH): git hosting needs it");
        return -ENOENT;
    }
    return 0;
}

void api_git_shutdown(void)
{
    free(git_path);
    git_path = NULL;
}

struct cgi {
    pid_t pid;
    int out_fd;
    bool eof;
    bool push;
    char actor[STORE_EMAIL_MAX + 1];
    char app[STORE_APPID_MAX + 1];
    char source[64];
};

static ssize_t cgi_read(void *arg, char *buf, size_t max)
{
    struct cgi *c = arg;
    for (;;) {
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
    int status = c->eof ? proc_wait(c->pid) : proc_kill_wait(c->pid);
    if (c->push) {
        char result[64];
        snprintf(result, sizeof(result), "%s (http-backend exit %d)",
                 status == 0 && c->eof ? "ok" : "error", status);
        store_audit_append(c->actor, "git push", c->app, "", c->source, result, "");
    }
    free(c);
}

static int add_env(char **env, size_t *n, size_t cap, const char *name, const char *value)
{
    if (*n + 1 >= cap || !value)
        return 0;
    if (asprintf(&env[*n], "%s=%s", name, value) < 0)
        return -ENOMEM;
    (*n)++;
    return 0;
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
    char *service = http_query(req, "service");
    bool push = strcmp(req->path.seg[req->path.nr_seg - 1], "git-receive-pack") == 0 ||
                (service && strcmp(service, "git-receive-pack") == 0);
    free(service);
    /* reads are not audited; a push is, by cgi_free or below (or by api_request_completed) */
    bool post_push = push && strcmp(req->method, "POST") == 0;
    /* git first probes a large push with a 4-byte "0000" POST: not a push of its own */
    bool probe = post_push && req->body_size <= 4;
    req->recorded = !post_push;

    /* the CGI environment: an allowlist, nothing inherited from the server */
    char *env[24] = {0};
    size_t n = 0;
    char *root = NULL, *path_info = NULL, *clen = NULL;
    struct strbuf query = STRBUF_INIT;
    http_raw_query(req, &query);
    int r = strbuf_ok(&query) ? 0 : -ENOMEM;
    if (r || asprintf(&root, "%s/repos", api_cfg.data_dir) < 0 ||
        asprintf(&path_info, "/%s.git%s", app.app_id, tail.buf) < 0 ||
        asprintf(&clen, "%" PRIu64, req->body_size) < 0)
        r = -ENOMEM;
    if (!r)
        r = add_env(env, &n, 24, "GIT_PROJECT_ROOT", root) ||
            add_env(env, &n, 24, "GIT_HTTP_EXPORT_ALL", "1") ||
            add_env(env, &n, 24, "PATH_INFO", path_info) ||
            add_env(env, &n, 24, "REQUEST_METHOD", req->method) ||
            add_env(env, &n, 24, "QUERY_STRING", query.buf) ||
            add_env(env, &n, 24, "REMOTE_USER", p->user.email) ||
            add_env(env, &n, 24, "REMOTE_ADDR", req->remote_addr) ||
            add_env(env, &n, 24, "CONTENT_TYPE", http_header(req, "Content-Type")) ||
            add_env(env, &n, 24, "HTTP_CONTENT_ENCODING", http_header(req, "Content-Encoding")) ||
            add_env(env, &n, 24, "GIT_PROTOCOL", http_header(req, "Git-Protocol")) ||
            add_env(env, &n, 24, "PATH", "/usr/local/bin:/usr/bin:/bin") ||
            add_env(env, &n, 24, "GIT_CONFIG_NOSYSTEM", "1") ||
            add_env(env, &n, 24, "HOME", root) ||
            (strcmp(req->method, "POST") == 0 ? add_env(env, &n, 24, "CONTENT_LENGTH", clen) : 0);
    free(root);
    strbuf_release(&query);
    free(path_info);
    free(clen);

    int pipefd[2] = {-1, -1};
    pid_t pid = 0;
    if (!r && pipe2(pipefd, O_CLOEXEC) < 0)
        r = -errno;
    /* A push is audited before it starts too: receive-pack finishes a push on its own even if
     * the server dies meanwhile, and cgi_free() would then never write the result. */
    if (!r && post_push && !probe &&
        store_audit_append(p->user.email, "git push", app.app_id, "", req->remote_addr, "started",
                           ""))
        log_error("cannot write the audit log entry for a push");
    if (!r) {
        char *argv[] = {"git", "http-backend", NULL};
        r = proc_spawn(git_path, argv, env, req->body_fd, pipefd[1], STDERR_FILENO, &pid);
        close(pipefd[1]);
    }
    for (size_t i = 0; i < n; i++)
        free(env[i]);
    if (r) {
        if (pipefd[0] >= 0)
            close(pipefd[0]);
        log_error("cannot start 'git http-backend': %s", strerror(-r));
        api_fail(req, res, 500, "INTERNAL_ERROR", "cannot start the git service");
        goto out;
    }

    struct cgi *c = calloc(1, sizeof(*c));
    struct cgi_stream *s = calloc(1, sizeof(*s));
    struct strbuf hdr = STRBUF_INIT;
    size_t header_len = 0;
    strbuf_init(&hdr, CGI_HEADER_MAX);
    if (!c || !s) {
        free(c);
        free(s);
        close(pipefd[0]);
        proc_kill_wait(pid);
        api_fail(req, res, 500, "INTERNAL_ERROR", "out of memory");
        goto out;
    }
    *c = (struct cgi){.pid = pid, .out_fd = pipefd[0], .push = post_push && !probe};
    req->recorded = true;
    snprintf(c->actor, sizeof(c->actor), "%s", p->user.email);
    snprintf(c->app, sizeof(c->app), "%s", app.app_id);
    snprintf(c->source, sizeof(c->source), "%s", req->remote_addr);
    s->cgi = c;
    if (read_cgi_headers(c->out_fd, &hdr, &header_len)) {
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
