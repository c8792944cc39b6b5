/* Tests for http_answer_follow, on its own terms: a real server on 127.0.0.1:0 whose one route
 * follows a temp file with a "writer finished" flag the test sets, and a client that reads the
 * chunked answer over a socket. The build-log endpoint, its first user, is tested end to end in
 * tests/e2e/test_build_log.py.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "../helpers.h"

#define WAIT_MS 5000

static char dir[PATH_MAX];
static char *path;
static struct http_server *server;
static unsigned port;
static atomic_int writer; /* what the done callback answers: 0 writing, 1 finished, < 0 stop */
static atomic_int nr_asked, nr_freed;
static int marker; /* the callbacks' argument */

static int test_done(void *arg, struct strbuf *end)
{
    atomic_fetch_add(&nr_asked, 1);
    int state = arg == &marker ? atomic_load(&writer) : -EFAULT;
    if (state > 0)
        strbuf_adds(end, "finished\nfor good");
    return state;
}

static int always_done(void *arg, struct strbuf *end)
{
    (void)arg;
    (void)end;
    return 1;
}

static void test_free(void *arg)
{
    if (arg == &marker)
        atomic_fetch_add(&nr_freed, 1);
}

/* GET /f follows `path`. Query: fd=1 hands it over as an open file, from=N starts at N,
 * poll=MS sets poll_ms, ended=1 uses a callback that says "finished" at once. */
static void follow_handler(struct http_request *req, struct http_response *res)
{
    const char *accept = http_header(req, "Accept");
    struct http_follow o = {.path = path,
                            .fd = -1,
                            .sse = accept && strstr(accept, "text/event-stream"),
                            .done = http_query_bool(req, "ended") ? always_done : test_done,
                            .free = test_free,
                            .arg = &marker};
    char *from = http_query(req, "from"), *poll_ms = http_query(req, "poll");
    int64_t n;
    if (from && !parse_i64(from, 0, INT64_MAX, &n))
        o.offset = (uint64_t)n;
    if (poll_ms && !parse_i64(poll_ms, 1, 60000, &n))
        o.poll_ms = (unsigned)n;
    free(from);
    free(poll_ms);
    if (http_query_bool(req, "fd")) {
        o.fd = open(path, O_RDONLY | O_CLOEXEC);
        o.path = NULL;
    }
    int r = http_answer_follow(req, res, &o);
    if (r == -EBUSY)
        http_res_json_text(res, 503, "{\"busy\":true}", 13);
    else if (r)
        http_res_json_text(res, 500, "{\"failed\":true}", 15);
}

static void error_body(const struct http_request *req, struct http_response *res, int status,
                       const char *code, const char *message)
{
    (void)req;
    (void)message;
    res->status = status;
    strbuf_addf(&res->body, "{\"code\":\"%s\"}", code);
}

static const struct http_route routes[] = {{"GET", "/f", follow_handler, 0, NULL}};

static void start_server(unsigned threads)
{
    struct http_config cfg = {.host = "127.0.0.1",
                              .threads = threads,
                              .max_body = 4096,
                              .max_spool = 4096,
                              .spool_dir = dir,
                              .error = error_body,
                              .routes = routes,
                              .nr_routes = 1};
    cr_assert_eq(http_server_start(&cfg, &server), 0);
    port = http_server_port(server);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_ERROR); /* no line per request */
    temp_dir(dir, "follow");
    path = str("%s/log", dir);
    start_server(3);
}

static void teardown(void)
{
    http_server_stop(server);
    sh("rm -rf '%s'", dir);
    free(path);
}

TestSuite(follow, .init = setup, .fini = teardown, .timeout = 30);

static void append(const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(fd_write_all(fd, text, strlen(text)), 0);
    close(fd);
}

/* Waits until *counter reaches at least want (a callback ran on a server thread). */
static void wait_count(atomic_int *counter, int want, const char *what)
{
    int64_t deadline = time_mono_ns() + WAIT_MS * 1000000LL;
    while (atomic_load(counter) < want) {
        cr_assert(time_mono_ns() < deadline, "timed out waiting for %s", what);
        poll(NULL, 0, 5);
    }
}

/* ---- a client that reads one chunked answer ---- */

struct client {
    int fd;
    struct strbuf raw; /* as received */
    size_t pos;        /* raw bytes decoded */
    bool head;         /* the status line and headers are in */
    int status;
    char headers[2048];
    struct strbuf body; /* the decoded body */
    bool complete;      /* the last (empty) chunk came */
    bool closed;        /* the server closed the connection */
};

static void client_open(struct client *c, const char *target, const char *headers)
{
    memset(c, 0, sizeof(*c));
    c->raw = (struct strbuf)STRBUF_INIT;
    c->body = (struct strbuf)STRBUF_INIT;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(c->fd, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    char *req = str("GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n%s\r\n", target,
                    headers ? headers : "");
    cr_assert_eq(fd_write_all(c->fd, req, strlen(req)), 0);
    free(req);
}

static void client_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    strbuf_release(&c->raw);
    strbuf_release(&c->body);
}

/* Decodes what can be decoded of raw. */
static void client_decode(struct client *c)
{
    if (!c->head) {
        char *end = strstr(c->raw.buf, "\r\n\r\n");
        if (!end)
            return;
        c->head = true;
        cr_assert_eq(sscanf(c->raw.buf, "HTTP/1.1 %d", &c->status), 1, "%s", c->raw.buf);
        snprintf(c->headers, sizeof(c->headers), "%.*s", (int)(end - c->raw.buf), c->raw.buf);
        c->pos = (size_t)(end + 4 - c->raw.buf);
    }
    if (!strcasestr(c->headers, "\r\nTransfer-Encoding: chunked")) {
        strbuf_add(&c->body, c->raw.buf + c->pos, c->raw.len - c->pos);
        c->pos = c->raw.len;
        return;
    }
    while (!c->complete) {
        const char *line = c->raw.buf + c->pos;
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            return;
        unsigned long size = strtoul(line, NULL, 16);
        size_t need = (size_t)(eol + 2 - line) + size + 2;
        if (c->raw.len - c->pos < need)
            return;
        strbuf_add(&c->body, eol + 2, size);
        c->pos += need;
        c->complete = size == 0;
    }
}

/* Reads what arrives within timeout_ms. False when nothing did. */
static bool client_pump(struct client *c, int timeout_ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    if (c->closed || poll(&pfd, 1, timeout_ms) <= 0)
        return false;
    char buf[4096];
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n <= 0) {
        c->closed = true;
        return true;
    }
    strbuf_add(&c->raw, buf, (size_t)n);
    client_decode(c);
    return true;
}

/* Reads until the body holds `text`. */
static void client_wait(struct client *c, const char *text)
{
    int64_t deadline = time_mono_ns() + WAIT_MS * 1000000LL;
    while (!c->head || !strstr(c->body.buf, text)) {
        cr_assert(!c->closed, "closed before '%s' came; got '%s'", text, c->body.buf);
        cr_assert(time_mono_ns() < deadline, "'%s' did not come; got '%s'", text, c->body.buf);
        client_pump(c, 100);
    }
}

/* Reads until the server closes the connection. */
static void client_wait_closed(struct client *c)
{
    int64_t deadline = time_mono_ns() + WAIT_MS * 1000000LL;
    while (!c->closed) {
        cr_assert(time_mono_ns() < deadline, "the answer did not end; got '%s'", c->body.buf);
        client_pump(c, 100);
    }
}

/* ---- the tests ---- */

Test(follow, raw_sends_what_is_there_then_what_is_appended_until_done)
{
    append("one\n");
    struct client c;
    client_open(&c, "/f", NULL);
    client_wait(&c, "one\n");
    cr_assert_eq(c.status, 200);
    cr_assert(strcasestr(c.headers, "\r\nContent-Type: text/plain; charset=utf-8"), "%s",
              c.headers);
    cr_assert(strcasestr(c.headers, "\r\nCache-Control: no-cache"), "%s", c.headers);
    cr_assert(strcasestr(c.headers, "\r\nX-Accel-Buffering: no"), "%s", c.headers);
    cr_assert(strcasestr(c.headers, "\r\nTransfer-Encoding: chunked"), "%s", c.headers);
    append("two"); /* no line end: raw sends bytes as they are */
    client_wait(&c, "one\ntwo");
    append("\nthree\n");
    atomic_store(&writer, 1); /* everything is in the file: the stream reads it all and ends */
    client_wait_closed(&c);
    cr_assert(c.complete, "the stream was cut off: '%s'", c.body.buf);
    cr_assert_str_eq(c.body.buf, "one\ntwo\nthree\n");
    wait_count(&nr_freed, 1, "the callbacks' argument freed");
    client_close(&c);
}

Test(follow, waits_for_a_file_that_does_not_exist_yet)
{
    struct client c;
    client_open(&c, "/f", NULL);
    wait_count(&nr_asked, 3, "the stream to wait"); /* once at the start, then per wake-up */
    cr_assert(!client_pump(&c, 0) || c.body.len == 0, "sent something: '%s'", c.body.buf);
    append("late\n");
    atomic_store(&writer, 1);
    client_wait_closed(&c);
    cr_assert(c.complete);
    cr_assert_str_eq(c.body.buf, "late\n");
    client_close(&c);
}

Test(follow, an_open_file_from_an_offset_is_woken_by_inotify)
{
    append("skipped|kept\n");
    struct client c;
    /* a poll interval longer than the test's patience: only inotify can bring the append */
    client_open(&c, "/f?fd=1&from=8&poll=60000", NULL);
    client_wait(&c, "kept\n");
    append("appended\n");
    client_wait(&c, "kept\nappended\n");
    cr_assert_str_eq(c.body.buf, "kept\nappended\n");
    close(c.fd); /* the client goes away: the wait notices at once */
    c.fd = -1;
    wait_count(&nr_freed, 1, "the follow to end with its client");
    client_close(&c);
}

Test(follow, sse_sends_whole_lines_with_offsets_and_an_end_event)
{
    append("a\nhalf");
    struct client c;
    client_open(&c, "/f", "Accept: text/event-stream\r\n");
    client_wait(&c, "id: 2\ndata: a\n\n");
    cr_assert(strcasestr(c.headers, "\r\nContent-Type: text/event-stream"), "%s", c.headers);
    int asked = atomic_load(&nr_asked);
    wait_count(&nr_asked, asked + 2, "two more looks at the file");
    client_pump(&c, 0);
    cr_assert(!strstr(c.body.buf, "half"), "half a line was sent: '%s'", c.body.buf);
    append("-line\r\ncr\rlast"); /* CRLF and CR end lines too; "last" ends with the writer */
    client_wait(&c, "data: cr\n");
    append("-words");
    atomic_store(&writer, 1);
    client_wait_closed(&c);
    cr_assert(c.complete);
    cr_assert_str_eq(c.body.buf, "id: 2\ndata: a\n\n"
                                 "id: 16\ndata: half-line\ndata: cr\n\n"
                                 "id: 26\ndata: last-words\n\n"
                                 "event: end\ndata: finished\ndata: for good\n\n");
    client_close(&c);

    /* EventSource's reconnect after the event of id 2: the rest; the writer has finished, so
     * the stream ends at once */
    client_open(&c, "/f", "Accept: text/event-stream\r\nLast-Event-ID: 2\r\n");
    client_wait_closed(&c);
    cr_assert(c.complete);
    cr_assert_str_eq(c.body.buf, "id: 16\ndata: half-line\ndata: cr\n\n"
                                 "id: 26\ndata: last-words\n\n"
                                 "event: end\ndata: finished\ndata: for good\n\n");
    client_close(&c);
}

Test(follow, live_follows_are_limited_and_a_leaving_client_frees_its_place)
{
    http_server_stop(server);
    start_server(2); /* one live follow at most */
    append("x\n");
    struct client a, b;
    client_open(&a, "/f", NULL);
    client_wait(&a, "x\n");
    client_open(&b, "/f", NULL);
    client_wait_closed(&b);
    cr_assert_eq(b.status, 503, "%s", b.raw.buf);
    cr_assert_str_eq(b.body.buf, "{\"busy\":true}");
    client_close(&b);
    /* a file whose writer has finished does not count */
    client_open(&b, "/f?ended=1", NULL);
    client_wait_closed(&b);
    cr_assert_eq(b.status, 200);
    cr_assert(b.complete);
    cr_assert_str_eq(b.body.buf, "x\n");
    client_close(&b);
    int freed = atomic_load(&nr_freed);
    client_close(&a);
    wait_count(&nr_freed, freed + 1, "the follow to end with its client");
    client_open(&b, "/f", NULL);
    client_wait(&b, "x\n");
    cr_assert_eq(b.status, 200);
    client_close(&b);
}

Test(follow, a_negative_answer_breaks_the_stream_off)
{
    append("before\n");
    struct client c;
    client_open(&c, "/f", NULL);
    client_wait(&c, "before\n");
    atomic_store(&writer, -ENOENT);
    client_wait_closed(&c);
    cr_assert(!c.complete, "a stream broken off must not look ended");
    cr_assert_str_eq(c.body.buf, "before\n");
    wait_count(&nr_freed, 1, "the callbacks' argument freed");
    client_close(&c);
}

Test(follow, the_server_stops_while_a_client_follows)
{
    append("running\n");
    struct client c;
    /* a poll interval longer than the test: the stop itself must wake the follow */
    client_open(&c, "/f?poll=60000", "Accept: text/event-stream\r\n");
    client_wait(&c, "data: running\n");
    int64_t t0 = time_mono_ns();
    http_server_stop(server);
    server = NULL;
    cr_assert_lt(time_mono_ns() - t0, 2000000000LL, "the stop waited for the follow");
    client_wait_closed(&c);
    cr_assert(!c.complete);
    cr_assert(!strstr(c.body.buf, "event: end"), "%s", c.body.buf);
    cr_assert_eq(atomic_load(&nr_freed), 1);
    client_close(&c);
}

Test(follow, a_first_negative_answer_is_returned_and_frees_the_argument)
{
    atomic_store(&writer, -ENOENT);
    struct client c;
    client_open(&c, "/f", NULL);
    client_wait_closed(&c);
    cr_assert_eq(c.status, 500);
    cr_assert_eq(atomic_load(&nr_freed), 1);
    client_close(&c);
}
