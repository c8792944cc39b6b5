/* http — libmicrohttpd glue: routing, bodies, responses, request log, connection limits and the
 * header deadline; see http.h. */
#include "http/http.h"
#include "http/http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "base/log.h"
#include "base/util.h"
#include "base/banned.h"

struct compiled_route {
    const struct http_route *route;
    size_t nr_seg;
    char *seg[URL_MAX_SEGMENTS];
};

/* A connection waiting for a request's headers (from its accept, or from the end of the previous
 * answer). Made and freed by libmicrohttpd's connection notifications on the connection's worker
 * thread; the list links and flags are shared with the reaper thread, under header_lock. */
struct conn_watch {
    struct conn_watch *prev, *next;
    int fd;                    /* the connection's socket, open until the watch is freed */
    int64_t deadline_ns;       /* monotonic */
    struct watch_queue *queue; /* the queue it waits in, NULL when none */
    bool expired;              /* the reaper shut its socket down */
    char addr[INET6_ADDRSTRLEN];
};

/* Connections waiting for something with the same timeout, in the order of their deadlines. */
struct watch_queue {
    struct conn_watch *head, *tail;
    int64_t timeout_ns;
};

/* A request whose answer waits (http_answer_wait): in the server's list until `check` says done
 * (or the server stops), then resumed, and answered with res on its worker thread. */
struct http_wait {
    struct http_wait *next;
    struct http_request *req;
    struct http_response *res;
    http_wait_fn check;
    void (*free_fn)(void *arg);
    void *arg;
    int64_t every_ns, due_ns;
    bool done; /* res holds the answer */
};

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_config cfg;
    struct compiled_route *routes;
    size_t nr_routes;
    unsigned port;
    /* The header deadline: connections waiting for headers, oldest deadline first (every
     * deadline is now + the same timeout, so appending keeps the order), and the reaper thread
     * that shuts down the overdue ones. */
    pthread_mutex_t header_lock;
    pthread_cond_t header_cond;
    struct watch_queue headers; /* waiting for a request's headers */
    struct watch_queue bodies;  /* waiting for the rest of a buffered (non-spooled) body */
    pthread_t reaper;
    bool header_init, reaper_started, stopping;
    /* libmicrohttpd's messages, one line a second for the same text (see on_mhd_log) */
    pthread_mutex_t log_lock;
    bool log_init;
    char log_last[512];
    int64_t log_last_ns;
    unsigned log_repeats;
    struct http_follows follows; /* answers that follow a file (follow.c) */
    /* answers given later: the waiting requests, and the thread that checks them */
    pthread_mutex_t wait_lock;
    pthread_cond_t wait_cond;
    struct http_wait *waits;
    pthread_t waiter;
    bool wait_init, waiter_started, wait_stopping;
};

/* ---- requests ---------------------------------------------------------------------------- */

bool http_request_routed(const struct http_request *req)
{
    return req->route != NULL;
}

const char *http_header(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

char *http_query(const struct http_request *req, const char *name)
{
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!raw)
        return NULL;
    size_t len = strlen(raw);
    char *out = malloc(len + 1);
    if (out && url_decode(raw, len, out, 1) < 0) {
        free(out);
        return NULL;
    }
    return out;
}

bool http_query_bool(const struct http_request *req, const char *name)
{
    char *v = http_query(req, name);
    bool r = v && (str_ieq(v, "true") || strcmp(v, "1") == 0);
    free(v);
    return r;
}

void http_res_header(struct http_response *res, const char *name, const char *value)
{
    if (res->nr_headers == HTTP_MAX_HEADERS)
        return;
    res->header_name[res->nr_headers] = strdup(name);
    res->header_value[res->nr_headers] = strdup(value);
    res->nr_headers++;
}

void http_res_json_text(struct http_response *res, int status, const char *json, size_t len)
{
    res->status = status;
    strbuf_reset(&res->body);
    strbuf_add(&res->body, json, len);
}

static void response_release(struct http_response *res)
{
    strbuf_release(&res->body);
    for (size_t i = 0; i < res->nr_headers; i++) {
        free(res->header_name[i]);
        free(res->header_value[i]);
    }
    res->nr_headers = 0;
    if (res->stream_free)
        res->stream_free(res->stream_arg);
    res->stream_free = NULL;
    if (res->file_fd > 0)
        close(res->file_fd);
    res->file_fd = 0;
}

void http_conn_no_timeout(struct http_request *req)
{
    MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
}

int http_conn_socket(const struct http_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* ---- routing ----------------------------------------------------------------------------- */

static int compile_routes(struct http_server *s)
{
    s->routes = calloc(s->cfg.nr_routes, sizeof(*s->routes));
    if (!s->routes)
        return -ENOMEM;
    for (size_t i = 0; i < s->cfg.nr_routes; i++) {
        struct url_path p;
        if (url_path_parse(s->cfg.routes[i].pattern, &p) < 0)
            return -EINVAL;
        s->routes[i].route = &s->cfg.routes[i];
        s->routes[i].nr_seg = p.nr_seg;
        memcpy(s->routes[i].seg, p.seg, sizeof(p.seg));
        s->nr_routes++;
    }
    return 0;
}

static bool route_matches_path(const struct compiled_route *cr, struct http_request *req)
{
    const struct url_path *p = &req->path;
    bool tail = cr->route->flags & HTTP_ROUTE_TAIL;
    size_t fixed = tail ? cr->nr_seg - 1 : cr->nr_seg;
    if (tail ? p->nr_seg <= fixed : p->nr_seg != fixed)
        return false;
    size_t np = 0;
    for (size_t i = 0; i < fixed; i++) {
        if (cr->seg[i][0] == ':') {
            req->params[np++] = p->seg[i];
        } else if (strcmp(cr->seg[i], p->seg[i]) != 0) {
            return false;
        }
    }
    req->tail_index = fixed;
    return true;
}

/* Finds the route. When none matches, `allow` lists the methods the path has (empty: 404). */
static const struct http_route *route_find(struct http_server *s, struct http_request *req,
                                           struct strbuf *allow)
{
    const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
    for (size_t i = 0; i < s->nr_routes; i++) {
        if (!route_matches_path(&s->routes[i], req))
            continue;
        if (strcmp(s->routes[i].route->method, method) == 0)
            return s->routes[i].route;
        if (allow->len)
            strbuf_adds(allow, ", ");
        strbuf_adds(allow, s->routes[i].route->method);
        if (strcmp(s->routes[i].route->method, "GET") == 0)
            strbuf_adds(allow, ", HEAD");
    }
    memset(req->params, 0, sizeof(req->params));
    return NULL;
}

/* ---- answering --------------------------------------------------------------------------- */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct http_response *res = cls;
    ssize_t n = res->stream_read(res->stream_arg, buf, max);
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n == -EAGAIN)
        return 0; /* nothing yet: libmicrohttpd asks again on this thread's next round */
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return n;
}

static void stream_done(void *cls)
{
    struct http_response *res = cls;
    response_release(res);
    free(res);
}

/* Queues `res` on the connection; takes ownership of res (heap-allocated). */
static enum MHD_Result send_response(struct http_request *req, struct http_response *res)
{
    struct MHD_Response *r;
    if (res->file_fd > 0) {
        r = MHD_create_response_from_fd64(res->file_size, res->file_fd);
        if (!r)
            close(res->file_fd);
        res->file_fd = 0; /* libmicrohttpd closes it */
    } else if (res->stream_read) {
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_reader, res,
                                              stream_done);
        if (!r) {
            stream_done(res);
            return MHD_NO;
        }
    } else {
        if (res->body.failed)
            strbuf_reset(&res->body);
        r = MHD_create_response_from_buffer(res->body.len, res->body.buf, MHD_RESPMEM_MUST_COPY);
    }
    if (!r) {
        stream_done(res);
        return MHD_NO;
    }
    const char *ct = res->content_type[0] ? res->content_type : "application/json";
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
    for (size_t i = 0; i < res->nr_headers; i++)
        MHD_add_response_header(r, res->header_name[i], res->header_value[i]);
    req->status = res->status;
    req->answered = true;
    enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned)res->status, r);
    MHD_destroy_response(r);
    if (!res->stream_read)
        stream_done(res);
    return ret;
}

static enum MHD_Result send_error_allow(struct http_server *s, struct http_request *req, int status,
                                        const char *code, const char *message, const char *allow)
{
    struct http_response *res = calloc(1, sizeof(*res));
    if (!res)
        return MHD_NO;
    strbuf_init(&res->body, 0);
    s->cfg.error(req, res, status, code, message);
    if (allow)
        http_res_header(res, "Allow", allow);
    res->status = status;
    return send_response(req, res);
}

static enum MHD_Result send_error(struct http_server *s, struct http_request *req, int status,
                                  const char *code, const char *message)
{
    return send_error_allow(s, req, status, code, message, NULL);
}

/* A decoded path segment that is not UTF-8 names nothing handlers could serve (every name
 * Slipway shows is UTF-8) and would reach lookups and error messages: 400, naming the segment
 * with U+FFFD for each bad byte. */
static enum MHD_Result send_bad_segment(struct http_server *s, struct http_request *req,
                                        const char *seg)
{
    char cut[201];
    snprintf(cut, sizeof(cut), "%s", seg);
    struct strbuf msg = STRBUF_INIT;
    strbuf_adds(&msg, "the path segment '");
    strbuf_add_utf8_lossy(&msg, cut);
    strbuf_adds(&msg,
                strlen(seg) >= sizeof(cut) ? "...' is not valid UTF-8" : "' is not valid UTF-8");
    enum MHD_Result ret = send_error(s, req, 400, "INVALID_PARAMETERS",
                                     strbuf_ok(&msg) ? msg.buf : "the request path is not UTF-8");
    strbuf_release(&msg);
    return ret;
}

/* An error after which nothing more is read from the connection. (libmicrohttpd 0.9.75 closes a
 * connection answered before its body anyway; the header says so and does not depend on it.) */
static enum MHD_Result send_error_close(struct http_server *s, struct http_request *req, int status,
                                        const char *code, const char *message)
{
    struct http_response *res = calloc(1, sizeof(*res));
    if (!res)
        return MHD_NO;
    strbuf_init(&res->body, 0);
    s->cfg.error(req, res, status, code, message);
    http_res_header(res, MHD_HTTP_HEADER_CONNECTION, "close");
    res->status = status;
    return send_response(req, res);
}

/* The config's admit check of a spooled route. True when it answered (or failed): *ret is then
 * what to return, the answer queued and the connection closed after it. */
static bool admit(struct http_server *s, struct http_request *req, enum MHD_Result *ret)
{
    struct http_response *res = calloc(1, sizeof(*res));
    *ret = MHD_NO;
    if (!res)
        return true;
    strbuf_init(&res->body, 0);
    res->status = 500;
    if (s->cfg.admit(req, res) == 0) {
        response_release(res);
        free(res);
        return false;
    }
    http_res_header(res, MHD_HTTP_HEADER_CONNECTION, "close");
    *ret = send_response(req, res);
    return true;
}

/* ---- the header deadline ----------------------------------------------------------------- */

#define NS_PER_MS INT64_C(1000000)
/* A buffered body (at most --max-body) must be in within this many header timeouts of its
 * headers: a client cannot hold a connection by trickling one (spooled bodies, uploads and
 * pushes, are authorized before they are read, and may take longer). */
#define BODY_TIMEOUT_FACTOR 4
#define NS_PER_S            INT64_C(1000000000)

static void format_addr(const struct sockaddr *sa, char *out, size_t size)
{
    out[0] = '\0';
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)size);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)size);
}

/* Under header_lock. */
static void watch_unlink(struct conn_watch *w)
{
    struct watch_queue *q = w->queue;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->prev = w->next = NULL;
    w->queue = NULL;
}

/* The connection now waits in q (for a request's headers, or for a body): what it waits for
 * must be complete before the queue's timeout. A wait it was in before ends. */
static void watch_arm(struct http_server *s, struct conn_watch *w, struct watch_queue *q)
{
    pthread_mutex_lock(&s->header_lock);
    if (w->queue)
        watch_unlink(w);
    if (!w->expired) {
        w->deadline_ns = time_mono_ns() + q->timeout_ns;
        w->prev = q->tail;
        if (q->tail) {
            q->tail->next = w;
        } else {
            q->head = w;
            pthread_cond_signal(&s->header_cond); /* the reaper may sleep without a deadline */
        }
        q->tail = w;
        w->queue = q;
    }
    pthread_mutex_unlock(&s->header_lock);
}

/* What the connection waited for is in. False when it came too late: the reaper has shut the
 * socket down. */
static bool watch_disarm(struct http_server *s, struct conn_watch *w)
{
    pthread_mutex_lock(&s->header_lock);
    if (w->queue)
        watch_unlink(w);
    bool in_time = !w->expired;
    pthread_mutex_unlock(&s->header_lock);
    return in_time;
}

static struct conn_watch *watch_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Accepted and closed connections (on the connection's worker thread). The watch is freed here,
 * under the lock, before libmicrohttpd closes the socket: the reaper never shuts down a
 * descriptor that was closed and reused. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    struct conn_watch *w = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        if (!s->cfg.header_timeout_ms)
            return;
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *addr =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        w = fd ? calloc(1, sizeof(*w)) : NULL;
        if (!w) { /* a connection without a deadline would be a way around it: refuse it */
            if (fd)
                shutdown(fd->connect_fd, SHUT_RDWR);
            return;
        }
        w->fd = fd->connect_fd;
        format_addr(addr ? addr->client_addr : NULL, w->addr, sizeof(w->addr));
        *socket_context = w;
        watch_arm(s, w, &s->headers);
        return;
    }
    if (!w)
        return;
    watch_disarm(s, w);
    free(w);
    *socket_context = NULL;
}

/* Shuts down the sockets of the connections whose deadline passed: libmicrohttpd then reads the
 * end of the stream and closes the connection. Logs at most one line a second. */
static void *reaper_main(void *arg)
{
    struct http_server *s = arg;
    unsigned closed = 0;
    char sample[INET6_ADDRSTRLEN] = "";
    int64_t last_log_ns = 0;
    pthread_mutex_lock(&s->header_lock);
    while (!s->stopping) {
        int64_t now = time_mono_ns();
        for (struct watch_queue *q = &s->headers; q; q = q == &s->headers ? &s->bodies : NULL) {
            while (q->head && q->head->deadline_ns <= now) {
                struct conn_watch *w = q->head;
                watch_unlink(w);
                w->expired = true;
                shutdown(w->fd, SHUT_RDWR);
                if (!closed++)
                    memcpy(sample, w->addr, sizeof(sample));
            }
        }
        if (closed && now - last_log_ns >= NS_PER_S) {
            unsigned n = closed;
            char who[INET6_ADDRSTRLEN];
            memcpy(who, sample, sizeof(who));
            closed = 0;
            last_log_ns = now;
            pthread_mutex_unlock(&s->header_lock);
            log_warn("http: closed %u connection%s that did not complete a request's headers "
                     "within %u ms, or its body within %u ms (%s%s)",
                     n, n == 1 ? "" : "s", s->cfg.header_timeout_ms,
                     s->cfg.header_timeout_ms * BODY_TIMEOUT_FACTOR, n == 1 ? "from " : "one from ",
                     who[0] ? who : "?");
            pthread_mutex_lock(&s->header_lock);
            continue;
        }
        int64_t wake = s->headers.head ? s->headers.head->deadline_ns : INT64_MAX;
        if (s->bodies.head && s->bodies.head->deadline_ns < wake)
            wake = s->bodies.head->deadline_ns;
        if (closed && last_log_ns + NS_PER_S < wake)
            wake = last_log_ns + NS_PER_S;
        if (wake == INT64_MAX) {
            pthread_cond_wait(&s->header_cond, &s->header_lock);
        } else {
            struct timespec ts = {.tv_sec = (time_t)(wake / NS_PER_S),
                                  .tv_nsec = (long)(wake % NS_PER_S)};
            pthread_cond_timedwait(&s->header_cond, &s->header_lock, &ts);
        }
    }
    pthread_mutex_unlock(&s->header_lock);
    return NULL;
}

/* ---- answering later --------------------------------------------------------------------- */

int http_answer_wait(struct http_request *req, http_wait_fn check, void (*free_fn)(void *arg),
                     void *arg, unsigned every_ms)
{
    struct http_wait *w = calloc(1, sizeof(*w));
    if (!w) {
        if (free_fn)
            free_fn(arg);
        return -ENOMEM;
    }
    w->req = req;
    w->check = check;
    w->free_fn = free_fn;
    w->arg = arg;
    w->every_ns = (int64_t)(every_ms ? every_ms : 10) * NS_PER_MS;
    req->wait = w; /* on_request sets the connection aside when the handler returns */
    return 0;
}

static void wait_finish(struct http_wait *w)
{
    if (w->free_fn)
        w->free_fn(w->arg);
    w->done = true;
    MHD_resume_connection(w->req->conn);
}

/* The waiting thread: runs the due checks (outside the lock: a check may take a while), resumes
 * the connections whose answer is in; at the stop, answers the rest 503. */
static void *waiter_main(void *arg)
{
    static const char stopping[] =
        "{\"errorCode\":\"SERVER_STOPPING\",\"errorMessage\":\"the server is stopping\"}";
    struct http_server *s = arg;
    pthread_mutex_lock(&s->wait_lock);
    while (!s->wait_stopping) {
        int64_t now = time_mono_ns(), wake = INT64_MAX;
        struct http_wait *due = NULL, **p = &s->waits;
        while (*p) {
            struct http_wait *w = *p;
            if (w->due_ns <= now) {
                *p = w->next;
                w->next = due;
                due = w;
            } else {
                wake = w->due_ns < wake ? w->due_ns : wake;
                p = &w->next;
            }
        }
        if (due) {
            pthread_mutex_unlock(&s->wait_lock);
            struct http_wait *again = NULL;
            while (due) {
                struct http_wait *w = due;
                due = w->next;
                if (w->check(w->arg, w->req, w->res)) {
                    wait_finish(w);
                } else {
                    w->due_ns = time_mono_ns() + w->every_ns;
                    w->next = again;
                    again = w;
                }
            }
            pthread_mutex_lock(&s->wait_lock);
            while (again) {
                struct http_wait *w = again;
                again = w->next;
                w->next = s->waits;
                s->waits = w;
            }
            continue;
        }
        if (wake == INT64_MAX) {
            pthread_cond_wait(&s->wait_cond, &s->wait_lock);
        } else {
            struct timespec ts = {.tv_sec = (time_t)(wake / NS_PER_S),
                                  .tv_nsec = (long)(wake % NS_PER_S)};
            pthread_cond_timedwait(&s->wait_cond, &s->wait_lock, &ts);
        }
    }
    while (s->waits) {
        struct http_wait *w = s->waits;
        s->waits = w->next;
        response_release(w->res);
        strbuf_init(&w->res->body, 0);
        w->res->stream_read = NULL;
        w->res->content_type[0] = '\0';
        http_res_json_text(w->res, 503, stopping, sizeof(stopping) - 1);
        wait_finish(w);
    }
    pthread_mutex_unlock(&s->wait_lock);
    return NULL;
}

/* ---- framing (RFC 9112 section 6) -------------------------------------------------------- */

struct framing {
    const char *content_length; /* the first value */
    bool cl_differ, cl_invalid, name_invalid, folded;
    unsigned nr_te;
    const char *te;
};

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    struct framing *f = cls;
    if (!value)
        value = "";
    size_t cl_len = strlen(MHD_HTTP_HEADER_CONTENT_LENGTH);
    size_t te_len = strlen(MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (!key[0] || key[strcspn(key, " \t")]) {
        f->name_invalid = true;
    } else if ((strlen(key) > cl_len &&
                !strncasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH, cl_len)) ||
               (strlen(key) > te_len &&
                !strncasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING, te_len))) {
        /* libmicrohttpd 0.9.75 appends a folded line (obs-fold: a line that starts with white
         * space) to the header's name, so "Transfer-Encoding:\r\n chunked" arrives as the
         * header "Transfer-Encodingchunked" while a proxy in front may unfold it */
        f->folded = true;
    } else if (str_ieq(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        if (!value[0] || value[strspn(value, "0123456789")])
            f->cl_invalid = true;
        else if (!f->content_length)
            f->content_length = value;
        else if (strcmp(f->content_length, value) != 0)
            f->cl_differ = true;
    } else if (str_ieq(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        f->nr_te++;
        f->te = value;
    }
    return MHD_YES;
}

/* 0 when the request's body is framed without ambiguity; else the status to answer (the
 * connection is then closed) and *why. libmicrohttpd uses the first Content-Length, and
 * Transfer-Encoding over Content-Length: a proxy in front may choose otherwise and see a second
 * request where we see a body, or the reverse. */
static int framing_check(struct MHD_Connection *conn, const char **why)
{
    struct framing f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, framing_header, &f);
    int status = 400;
    if (f.name_invalid) {
        *why = "a header name is empty or contains white space";
    } else if (f.folded) {
        *why = "a framing header is folded over several lines";
    } else if (f.cl_invalid) {
        *why = "the Content-Length header is not a number";
    } else if (f.cl_differ) {
        *why = "the request has Content-Length headers that differ";
    } else if (f.nr_te && f.content_length) {
        *why = "the request has both Content-Length and Transfer-Encoding";
    } else if (f.nr_te > 1) {
        *why = "the request has more than one Transfer-Encoding header";
    } else if (f.nr_te && !str_ieq(f.te, "chunked")) {
        *why = "only the chunked transfer coding is supported";
        status = 501;
    } else {
        status = 0;
    }
    return status;
}

/* ---- libmicrohttpd callbacks ------------------------------------------------------------- */

static void request_free(struct http_request *req)
{
    if (req->wait) { /* set aside, and the connection ended before its answer went out */
        response_release(req->wait->res);
        free(req->wait->res);
        free(req->wait);
    }
    url_path_release(&req->path);
    strbuf_release(&req->body_buf);
    if (req->body_fd >= 0)
        close(req->body_fd);
    free(req);
}

static struct http_request *request_new(struct http_server *s, struct MHD_Connection *conn,
                                        const char *url, const char *method)
{
    struct http_request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->conn = conn;
    req->follows = &s->follows;
    req->method = method;
    req->raw_path = url;
    req->body = "";
    req->body_fd = -1;
    req->started_ns = time_mono_ns();
    strbuf_init(&req->body_buf, 0);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    format_addr(ci ? ci->client_addr : NULL, req->remote_addr, sizeof(req->remote_addr));
    return req;
}

static int spool_open(struct http_server *s)
{
    return open(s->cfg.spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct http_server *s = cls;
    struct http_request *req = *con_cls;

    if (!req) { /* the headers are in */
        struct conn_watch *w = watch_of(conn);
        if (w && !watch_disarm(s, w))
            return MHD_NO; /* too late: the connection is being closed */
        req = request_new(s, conn, url, method);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        const char *why;
        int bad = framing_check(conn, &why);
        if (bad)
            return send_error_close(s, req, bad, bad == 501 ? "NOT_IMPLEMENTED" : "BAD_REQUEST",
                                    why);
        if (url_path_parse(url, &req->path) < 0)
            return send_error(s, req, 400, "INVALID_PARAMETERS", "the request path is malformed");
        for (size_t i = 0; i < req->path.nr_seg; i++)
            if (!str_utf8_valid(req->path.seg[i]))
                return send_bad_segment(s, req, req->path.seg[i]);
        struct strbuf allow = STRBUF_INIT;
        req->route = route_find(s, req, &allow);
        if (!req->route) {
            enum MHD_Result ret =
                allow.len ? send_error_allow(s, req, 405, "METHOD_NOT_ALLOWED",
                                             "this method is not allowed on this path", allow.buf)
                          : send_error(s, req, 404, "NOT_FOUND", "no such endpoint");
            strbuf_release(&allow);
            return ret;
        }
        strbuf_release(&allow); /* other methods of the path were listed before this one */
        req->route_ctx = req->route->ctx;
        bool spool = req->route->flags & HTTP_ROUTE_SPOOL;
        bool upload = spool && (req->route->flags & HTTP_ROUTE_UPLOAD) && s->cfg.max_upload;
        req->limit = !spool ? s->cfg.max_body : upload ? s->cfg.max_upload : s->cfg.max_spool;
        const char *cl = http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
        int64_t clen;
        if (cl && parse_i64(cl, 0, INT64_MAX, &clen) == 0 && (uint64_t)clen > req->limit)
            return send_error(s, req, 413, "REQUEST_TOO_LARGE", "the request body is too large");
        enum MHD_Result ret;
        if (spool && s->cfg.admit && admit(s, req, &ret))
            return ret;
        if (spool) {
            req->body_fd = spool_open(s);
            if (req->body_fd < 0) {
                log_error("cannot create a spool file in '%s': %s", s->cfg.spool_dir,
                          strerror(errno));
                return send_error(s, req, 500, "INTERNAL_ERROR", "cannot store the request");
            }
        } else {
            strbuf_init(&req->body_buf, s->cfg.max_body);
            if (w)
                watch_arm(s, w, &s->bodies);
        }
        return MHD_YES;
    }

    if (req->wait && req->wait->done) { /* resumed: the answer is in */
        struct http_response *res = req->wait->res;
        free(req->wait);
        req->wait = NULL;
        return send_response(req, res);
    }

    if (req->answered) { /* an early answer: discard the rest of the body */
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->too_large)
            return MHD_YES;
        if (req->body_fd >= 0) {
            if (req->body_size + n > req->limit) {
                req->too_large = true;
            } else if (fd_write_all(req->body_fd, upload_data, n) < 0) {
                log_error("cannot spool a request body: %s", strerror(errno));
                return MHD_NO;
            } else {
                req->body_size += n;
            }
        } else {
            strbuf_add(&req->body_buf, upload_data, n);
            if (req->body_buf.failed)
                req->too_large = true;
        }
        return MHD_YES;
    }

    /* the whole body is in */
    struct conn_watch *w = req->body_fd < 0 ? watch_of(conn) : NULL;
    if (w && !watch_disarm(s, w))
        return MHD_NO; /* too late: the connection is being closed */
    if (req->too_large)
        return send_error(s, req, 413, "REQUEST_TOO_LARGE", "the request body is too large");
    req->body = req->body_buf.buf;
    req->body_len = req->body_buf.len;
    if (req->body_fd >= 0 && lseek(req->body_fd, 0, SEEK_SET) < 0)
        return send_error(s, req, 500, "INTERNAL_ERROR", "cannot read the request");

    struct http_response *res = calloc(1, sizeof(*res));
    if (!res)
        return MHD_NO;
    strbuf_init(&res->body, 0);
    res->status = 500;
    req->route->fn(req, res);
    if (req->wait) { /* answered later: the connection is set aside meanwhile */
        struct http_wait *later = req->wait;
        later->res = res;
        MHD_suspend_connection(conn);
        pthread_mutex_lock(&s->wait_lock);
        later->due_ns = time_mono_ns() + later->every_ns;
        later->next = s->waits;
        s->waits = later;
        pthread_cond_signal(&s->wait_cond);
        pthread_mutex_unlock(&s->wait_lock);
        return MHD_YES;
    }
    if (res->body.failed) {
        response_release(res);
        free(res);
        return send_error(s, req, 500, "INTERNAL_ERROR", "out of memory");
    }
    return send_response(req, res);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct http_request *req = *con_cls;
    struct conn_watch *w = watch_of(conn);
    if (w && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        watch_arm(s, w, &s->headers); /* a kept-alive connection waits for the next request */
    if (!req)
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !req->answered)
        req->status = 499; /* the client went away before an answer */
    if (s->cfg.completed)
        s->cfg.completed(req, req->status);
    double ms = (double)(time_mono_ns() - req->started_ns) / 1e6;
    log_info("%s %s %d %.2fms user=%s%s", req->method, req->raw_path, req->status, ms,
             req->user[0] ? req->user : "-",
             toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
    request_free(req);
    *con_cls = NULL;
}

/* Keep the request target undecoded: paths are split before decoding (see base/url.h), and
 * query values are decoded by http_query(). */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

/* libmicrohttpd's messages. The same text within a second is counted, not written: a client
 * that opens connections beyond its limit would otherwise write a line per connection. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct http_server *s = cls;
    char msg[512], prev[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    int64_t now = time_mono_ns();
    pthread_mutex_lock(&s->log_lock);
    if (strcmp(msg, s->log_last) == 0 && now - s->log_last_ns < NS_PER_S) {
        s->log_repeats++;
        pthread_mutex_unlock(&s->log_lock);
        return;
    }
    unsigned repeats = s->log_repeats;
    memcpy(prev, s->log_last, sizeof(prev));
    memcpy(s->log_last, msg, sizeof(msg));
    s->log_last_ns = now;
    s->log_repeats = 0;
    pthread_mutex_unlock(&s->log_lock);
    if (repeats)
        log_warn("http: %s (%u more times)", prev, repeats);
    log_warn("http: %s", msg);
}

/* ---- server ------------------------------------------------------------------------------ */

int http_server_start(const struct http_config *cfg, struct http_server **out)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    s->follows.max_live = cfg->threads > 1 ? cfg->threads - 1 : 0;
    s->follows.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); /* -1: follows see it later */
    int r = compile_routes(s);
    if (r < 0)
        goto fail;
    pthread_condattr_t ca;
    if (pthread_mutex_init(&s->log_lock, NULL) != 0) {
        r = -ENOMEM;
        goto fail;
    }
    s->log_init = true;
    if (pthread_condattr_init(&ca) != 0) {
        r = -ENOMEM;
        goto fail;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the deadlines are time_mono_ns() */
    if (pthread_mutex_init(&s->header_lock, NULL) != 0 ||
        pthread_cond_init(&s->header_cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        r = -ENOMEM;
        goto fail;
    }
    if (pthread_mutex_init(&s->wait_lock, NULL) != 0 ||
        pthread_cond_init(&s->wait_cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        r = -ENOMEM;
        goto fail;
    }
    s->wait_init = true;
    pthread_condattr_destroy(&ca);
    s->header_init = true;
    s->headers.timeout_ns = (int64_t)cfg->header_timeout_ms * NS_PER_MS;
    s->bodies.timeout_ns = s->headers.timeout_ns * BODY_TIMEOUT_FACTOR;
    r = -pthread_create(&s->waiter, NULL, waiter_main, s);
    if (r < 0)
        goto fail;
    s->waiter_started = true;
    if (cfg->header_timeout_ms) {
        r = -pthread_create(&s->reaper, NULL, reaper_main, s);
        if (r < 0)
            goto fail;
        s->reaper_started = true;
    }

    struct sockaddr_storage ss = {0};
    socklen_t sslen;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_SUSPEND_RESUME;
    const char *host = strcmp(cfg->host, "localhost") == 0 ? "127.0.0.1" : cfg->host;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)cfg->port);
        sslen = sizeof(*sin);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)cfg->port);
        sslen = sizeof(*sin6);
        flags |= MHD_USE_IPv6;
    } else {
        r = -EINVAL;
        goto fail;
    }
    /* The listening socket is ours, so that a failure names its real cause (libmicrohttpd's
     * only says that it failed, after logging one line of its own). */
    int one = 1;
    int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (ss.ss_family == AF_INET6 &&
         setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        bind(lfd, (struct sockaddr *)&ss, sslen) < 0 || listen(lfd, SOMAXCONN) < 0 ||
        getsockname(lfd, (struct sockaddr *)&ss, &sslen) < 0) {
        r = -errno;
        if (lfd >= 0)
            close(lfd);
        goto fail;
    }
    s->port = ntohs(ss.ss_family == AF_INET ? sin->sin_port : sin6->sin6_port);
    if (cfg->bound)
        cfg->bound(s->port, cfg->bound_arg);

    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_LISTEN_SOCKET, lfd, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(cfg->threads ? cfg->threads : 1), MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections ? cfg->max_connections : 1000u,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        s, MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, s, MHD_OPTION_END);
    if (!s->daemon) { /* it logged why, and closed lfd on its way out (not on every path) */
        r = -EIO;
        goto fail;
    }
    *out = s;
    return 0;
fail:
    http_server_stop(s);
    return r;
}

unsigned http_server_port(const struct http_server *s)
{
    return s->port;
}

void http_server_stop(struct http_server *s)
{
    if (!s)
        return;
    /* follows block workers that are about to be joined */
    atomic_store(&s->follows.stopping, true);
    if (s->follows.stop_fd >= 0 && eventfd_write(s->follows.stop_fd, 1) < 0)
        log_warn("cannot wake the followed files: %s", strerror(errno));
    if (s->waiter_started) { /* the answers set aside go out (503) before the workers end */
        pthread_mutex_lock(&s->wait_lock);
        s->wait_stopping = true;
        pthread_cond_signal(&s->wait_cond);
        pthread_mutex_unlock(&s->wait_lock);
        pthread_join(s->waiter, NULL);
    }
    if (s->reaper_started) {
        pthread_mutex_lock(&s->header_lock);
        s->stopping = true;
        pthread_cond_signal(&s->header_cond);
        pthread_mutex_unlock(&s->header_lock);
        pthread_join(s->reaper, NULL);
    }
    if (s->daemon)
        MHD_stop_daemon(s->daemon); /* its closing notifications still take header_lock */
    if (s->header_init) {
        pthread_cond_destroy(&s->header_cond);
        pthread_mutex_destroy(&s->header_lock);
    }
    if (s->wait_init) {
        pthread_cond_destroy(&s->wait_cond);
        pthread_mutex_destroy(&s->wait_lock);
    }
    if (s->log_init)
        pthread_mutex_destroy(&s->log_lock);
    if (s->follows.stop_fd >= 0)
        close(s->follows.stop_fd);
    for (size_t i = 0; i < s->nr_routes; i++)
        for (size_t j = 0; j < s->routes[i].nr_seg; j++)
            free(s->routes[i].seg[j]);
    free(s->routes);
    free(s);
}
