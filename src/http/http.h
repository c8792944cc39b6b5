/* http — a small HTTP server layer over libmicrohttpd: a routing table, request bodies with size
 * limits (buffered in memory, or spooled to an unnamed temp file for large uploads), JSON and
 * streamed responses, answers that follow a growing file (chunked or Server-Sent Events), one log
 * line per request, and JSON bodies for every error it answers itself.
 *
 * It knows nothing of apps, users or packages: the api/ module registers routes and supplies the
 * error-body format. Handlers run on the server's worker threads, several at once. No type of
 * libmicrohttpd's shows here: only http/ includes <microhttpd.h>.
 */
#ifndef SLIPWAY_HTTP_H
#define SLIPWAY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/strbuf.h"
#include "base/url.h"

struct http_server;
struct http_follows;
struct http_wait;

enum http_route_flags {
    HTTP_ROUTE_SPOOL = 1 << 0,  /* stream the body into req->body_fd instead of memory */
    HTTP_ROUTE_TAIL = 1 << 1,   /* the pattern's last segment "*" matches one or more segments */
    HTTP_ROUTE_UPLOAD = 1 << 2, /* with SPOOL: the body limit is max_upload, not max_spool */
};

struct http_request {
    const char *method;                   /* "GET", "POST", ... ("HEAD" is routed as "GET") */
    const char *raw_path;                 /* as sent, without the query string */
    struct url_path path;                 /* decoded segments */
    const char *params[URL_MAX_SEGMENTS]; /* values of the route's ":name" segments, in order */
    size_t tail_index; /* HTTP_ROUTE_TAIL: index in path.seg of the first tail segment */
    const char *body;  /* buffered body, NUL-terminated ("" when none) */
    size_t body_len;
    int body_fd;        /* HTTP_ROUTE_SPOOL: the body in a temp file at offset 0; else -1 */
    uint64_t body_size; /* HTTP_ROUTE_SPOOL: bytes in body_fd */
    char remote_addr[64];
    char user[256]; /* who made the request, for the log line; set by the handler */
    bool recorded;  /* set by a handler that recorded the request (e.g. audited it) */
    void *route_ctx;
    /* private */
    void *conn;                   /* libmicrohttpd's connection */
    struct http_follows *follows; /* the server's followed files (see http_answer_follow) */
    struct strbuf body_buf;
    const struct http_route *route;
    int64_t started_ns;
    int status;
    uint64_t limit; /* the body limit of the route */
    bool too_large;
    bool answered;
    struct http_wait *wait; /* an answer given later (http_answer_wait) */
};

#define HTTP_MAX_HEADERS 8
struct http_response {
    int status;
    struct strbuf body;
    char content_type[128]; /* "" means "application/json" */
    size_t nr_headers;
    char *header_name[HTTP_MAX_HEADERS];
    char *header_value[HTTP_MAX_HEADERS];
    /* A file body: the answer owns file_fd (> 0) and sends file_size bytes from offset 0. */
    int file_fd;
    uint64_t file_size;
    /* A streamed body (chunked): read() returns bytes, 0 at the end, -1 on error, or -EAGAIN:
     * nothing yet, ask again (after at most a short wait in read(): the worker thread serves
     * its other connections in between, so a read() never blocks for long). free() is called
     * exactly once when the response is done or abandoned. */
    ssize_t (*stream_read)(void *arg, char *buf, size_t max);
    void (*stream_free)(void *arg);
    void *stream_arg;
};

typedef void (*http_handler_fn)(struct http_request *req, struct http_response *res);

struct http_route {
    const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char
        *pattern; /* "/api/1/apps/:app/branches/:branch"; a trailing "*" with HTTP_ROUTE_TAIL */
    http_handler_fn fn;
    unsigned flags;
    void *ctx;
};

/* Fills `res` with the error body of the API surface that `req` belongs to. The server calls it
 * for the errors it answers itself (404, 405, 413, 400, 500); code is e.g. "NOT_FOUND". */
typedef void (*http_error_fn)(const struct http_request *req, struct http_response *res, int status,
                              const char *code, const char *message);

struct http_config {
    const char *host;      /* numeric IPv4 or IPv6 address, or "localhost" */
    unsigned port;         /* 0: any free port */
    unsigned threads;      /* worker threads */
    size_t max_body;       /* limit for buffered bodies */
    uint64_t max_spool;    /* limit for spooled bodies */
    uint64_t max_upload;   /* limit for HTTP_ROUTE_UPLOAD bodies (0: max_spool) */
    const char *spool_dir; /* where spooled bodies live (unnamed O_TMPFILE files) */
    /* Connection limits (see "Connections" below). */
    unsigned max_connections;        /* open connections at once (0: 1000) */
    unsigned max_connections_per_ip; /* open connections at once from one address (0: no limit) */
    unsigned header_timeout_ms;      /* a request's headers must be complete within this (0: no
                                        such deadline) */
    http_error_fn error;
    /* Called once per request after its answer, with the final status (optional). */
    void (*completed)(const struct http_request *req, int status);
    /* Called for a HTTP_ROUTE_SPOOL route once the request's headers are in, before any of its
     * body is read (optional): returning -1 with an answer in res refuses the request, and the
     * body is never read (the connection is closed). An upload or a push is thus refused before
     * the server spools what may be gigabytes. The route's handler still runs after the body
     * when it returns 0. */
    int (*admit)(struct http_request *req, struct http_response *res);
    /* Called once the listening socket is bound, with its port, before any connection is
     * accepted (optional): what depends on the port (a public URL) is set there, so that no
     * request ever sees it change. */
    void (*bound)(unsigned port, void *arg);
    void *bound_arg;
    const struct http_route *routes;
    size_t nr_routes;
};

/* Connections. One client must not be able to lock the others out, so:
 * - at most max_connections_per_ip connections are open from one address (IPv4, or a whole IPv6
 *   address); more are accepted and closed at once, without an answer;
 * - at most max_connections are open in all; beyond that new connections wait in the kernel's
 *   listen queue. The caller derives it from its file descriptor limit: a connection holds its
 *   socket and at most one more descriptor (a spooled body or a file answer);
 * - a request's headers must be complete within header_timeout_ms of the connection's accept,
 *   or, on a kept-alive connection, of the end of the previous answer. Bytes that trickle in do
 *   not extend the deadline; an overdue connection is closed without an answer. Once the headers
 *   are in, the body and the answer have the idle timeout (300 s without any byte moving, off with
 *   http_conn_no_timeout()), so slow uploads and pushes are fine.
 * A request whose framing is ambiguous (RFC 9112 section 6: Content-Length values that differ or
 * are not a number, Content-Length with Transfer-Encoding, more than one Transfer-Encoding, white
 * space in a header name) gets 400, and a coding other than "chunked" 501; in both cases the
 * connection is closed, so nothing after the headers is read as another request. Equal repeated
 * Content-Length values are accepted (RFC 9112 section 6.3). */

/* Starts listening and serving. The route table must outlive the server. 0, or -errno. */
int http_server_start(const struct http_config *cfg, struct http_server **out);
/* The port actually bound (useful with port 0). */
unsigned http_server_port(const struct http_server *s);
/* Ends the answers that follow a file (http_answer_follow; they are cut off, without their end),
 * stops accepting, waits for the workers and frees the server. NULL is a no-op. Other
 * long-lived streams must be ended by their owners first: the workers they block are joined. */
void http_server_stop(struct http_server *s);

/* Whether the request matched a route (false for the 404, 405 and 400 the server answers
 * before routing); valid in `completed` too. */
bool http_request_routed(const struct http_request *req);
/* A request header, matched case-insensitively; NULL if absent. */
const char *http_header(const struct http_request *req, const char *name);
/* A query parameter, percent-decoded; caller frees. NULL if absent. */
char *http_query(const struct http_request *req, const char *name);
/* True when the query parameter is "true" or "1" (case-insensitive). */
bool http_query_bool(const struct http_request *req, const char *name);

/* Adds a response header (copied). Silently ignores more than HTTP_MAX_HEADERS. */
void http_res_header(struct http_response *res, const char *name, const char *value);
/* Sets status and a body of already serialized JSON text. */
void http_res_json_text(struct http_response *res, int status, const char *json, size_t len);

/* For a long-lived streamed answer, which may stay silent longer than the server's idle timeout
 * (300 s): turns that timeout off for the request's connection. The stream must then bound its
 * own time and notice a client that went away (see http_conn_socket). */
void http_conn_no_timeout(struct http_request *req);
/* The connection's socket, to poll for POLLRDHUP (the client went away) while a stream waits;
 * -1 if unknown. The server owns it: never read, write or close it. */
int http_conn_socket(const struct http_request *req);

/* ---- following a file ----------------------------------------------------------------------
 * An answer that sends a file as it grows: what it holds, then what its writer appends, until the
 * writer has finished and every byte is sent. A build log is followed while the build runs; an
 * app's log while the app runs. The caller gives the file and a callback that says whether the
 * writer has finished; the rest is here.
 *
 * Two forms:
 * - raw: chunked text/plain, the file's bytes as they are;
 * - Server-Sent Events (text/event-stream): whole lines as `data:` fields of events whose `id`
 *   is the byte offset in the file after them (CR, LF and CRLF all end lines, as for an SSE
 *   parser; a line that grows past 16 KiB is sent in pieces, a last line without its end once
 *   the writer has finished). A reconnecting EventSource sends the last id as Last-Event-ID:
 *   the stream resumes there. The stream ends with an `end` event, whose data the callback
 *   gives. A comment (": keep-alive") goes out after 15 s of silence.
 * Either way the answer has "Cache-Control: no-cache" and "X-Accel-Buffering: no" (a proxy in
 * front must not hold it back), and no idle timeout (see http_conn_no_timeout).
 *
 * The stream blocks its worker thread while it waits: in poll() on inotify (or, without inotify,
 * ticks of poll_ms) and on the client's socket. It ends without its end (the client sees a
 * chunked answer cut off, and asks again to go on) when the client goes away, after max_s, when
 * the callback says so, or when the server stops (http_server_stop). So that one worker always
 * stays free for every other request, at most `threads` - 1 live follows (the writer had not
 * finished when asked) run at once in a server; following a finished file does not count. */

/* Whether the file's writer has finished. Called on the answering thread: first from
 * http_answer_follow, then each time the file had nothing new (at most once per wake-up).
 * Returns 0 while the writer may still append; 1 once it has finished, with every byte it wrote
 * already in the file (the stream then reads to the end of the file and ends); or a negative
 * code to break the stream off without its end (what was followed was deleted, say). With
 * 1 and SSE it may put the data of the `end` event into `end` (text, empty when called; each
 * line becomes a `data:` field). */
typedef int (*http_follow_done_fn)(void *arg, struct strbuf *end);

struct http_follow {
    const char *path; /* the file, opened once it exists (it may not yet); or NULL with fd */
    int fd;           /* an open file to follow instead of path (taken over), or -1 */
    bool sse;         /* Server-Sent Events, else raw chunked text */
    uint64_t offset;  /* where in the file to start (with SSE a numeric Last-Event-ID wins) */
    unsigned poll_ms; /* the longest wait between two looks at the file (0: 100 ms) */
    unsigned max_s;   /* the longest the stream lasts (0: 24 hours) */
    http_follow_done_fn done;
    void (*free)(void *arg); /* releases arg once the stream is over (NULL: nothing to free) */
    void *arg;
};

/* Answers req with the file followed as `opts` says (copied; path too). Returns 0 with res the
 * stream; -EBUSY when the server runs its most live follows (http_follow_limit) already: res is
 * untouched, for the caller to answer (503 with Retry-After); the callback's negative code when
 * its first call gave one; -ENOMEM; -EBADF when there is neither path nor fd. It takes arg in
 * every case: opts->free(arg) is called exactly once, when the stream is over or before an
 * error returns. */
int http_answer_follow(struct http_request *req, struct http_response *res,
                       const struct http_follow *opts);
/* The most live follows the request's server runs at once: its threads minus one. */
unsigned http_follow_limit(const struct http_request *req);

/* ---- answering later -----------------------------------------------------------------------
 * An answer that waits for something else to happen (a stop waits for the instances to end),
 * without holding its worker thread: every worker serves many connections, and a handler that
 * blocked would stall the others it holds (a client's kept-alive connection among them). The
 * handler calls http_answer_wait and returns; the connection is set aside, and `check` runs on
 * the server's waiting thread every `every_ms` (0: 10) until it returns non-zero having filled
 * res (status, body, as a handler does); the answer then goes out. `check` may use req (it
 * stays until the answer is sent) but no other request. When the server stops first, `check`
 * is not called again and the answer is 503 SERVER_STOPPING. free_fn(arg) (when not NULL) is
 * called exactly once, after the last call of `check`. Returns 0, or -ENOMEM (free_fn(arg)
 * called; res untouched, for the handler to answer). */
typedef int (*http_wait_fn)(void *arg, struct http_request *req, struct http_response *res);
int http_answer_wait(struct http_request *req, http_wait_fn check, void (*free_fn)(void *arg),
                     void *arg, unsigned every_ms);

#endif
