/* follow — answers that send a file as it grows, raw (chunked) or as Server-Sent Events, until
 * its writer has finished; see "following a file" in http.h. It reads the file and formats the
 * stream; what "finished" means, and what the end event says, is the caller's. */
#include "http/http.h"
#include "http/http_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "base/util.h"
#include "base/banned.h"

#define FOLLOW_POLL_MS      100
#define FOLLOW_MAX_S        (24 * 3600)
#define FOLLOW_KEEPALIVE_NS (15 * 1000000000LL) /* SSE comment after this much silence */
#define FOLLOW_READ         (64 * 1024)         /* bytes of the file read at once */
#define FOLLOW_LINE_MAX     (16 * 1024)         /* SSE: a longer line is sent in pieces */
#define FOLLOW_OUT_MAX      (1024 * 1024)       /* one event: SSE adds 7 bytes to each line */
#define FOLLOW_END_MAX      (64 * 1024)         /* the data of the end event */

/* One followed file. Lives from http_answer_follow until the server calls follow_free. */
struct follow {
    struct http_follows *server;
    char *path;     /* NULL when given an fd */
    int fd;         /* -1 until the file exists */
    int inotify_fd; /* wakes the wait when the file changes; -1 without inotify (ticks) */
    int conn_fd;    /* the client's socket, polled for POLLRDHUP; -1 if unknown */
    bool sse;
    bool live; /* counted in server->nr_live */
    unsigned poll_ms;
    uint64_t offset;   /* bytes of the file read */
    struct strbuf out; /* formatted bytes not yet handed to the server, from out_off */
    size_t out_off;
    struct strbuf line; /* SSE: the start of a line whose end has not been read yet */
    struct strbuf end;  /* SSE: the data of the end event, from done() */
    bool final;         /* the writer has finished: read to the end of the file, then end */
    bool ended;         /* the end is in `out`: the stream ends once it is sent */
    int64_t deadline_ns, keepalive_ns;
    http_follow_done_fn done;
    void (*arg_free)(void *arg);
    void *arg;
};

static void follow_free(void *arg)
{
    struct follow *f = arg;
    if (f->fd >= 0)
        close(f->fd);
    if (f->inotify_fd >= 0)
        close(f->inotify_fd);
    if (f->live)
        atomic_fetch_sub(&f->server->nr_live, 1);
    if (f->arg_free)
        f->arg_free(f->arg);
    strbuf_release(&f->out);
    strbuf_release(&f->line);
    strbuf_release(&f->end);
    free(f->path);
    free(f);
}

/* SSE `data:` fields, one per line of text (the last terminator is not a line of its own; no
 * text is one empty field). CR, LF and CRLF all end lines, as for an SSE parser. */
static void sse_data(struct strbuf *out, const char *text, size_t len)
{
    size_t i = 0;
    do {
        size_t j = i;
        while (j < len && text[j] != '\n' && text[j] != '\r')
            j++;
        strbuf_adds(out, "data: ");
        strbuf_add(out, text + i, j - i);
        strbuf_addch(out, '\n');
        if (j + 1 < len && text[j] == '\r' && text[j + 1] == '\n')
            j++;
        i = j + 1;
    } while (i < len);
}

/* One SSE event of whole lines, with the offset after them as its id. */
static void sse_event(struct strbuf *out, uint64_t id, const char *text, size_t len)
{
    strbuf_addf(out, "id: %" PRIu64 "\n", id);
    sse_data(out, text, len);
    strbuf_addch(out, '\n');
}

/* Asks inotify to wake the wait when the open file changes; without it, the wait ticks. */
static void follow_watch(struct follow *f)
{
    char proc[64];
    const char *name = f->path;
    if (f->inotify_fd < 0)
        return;
    if (!name) {
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
        name = proc;
    }
    if (inotify_add_watch(f->inotify_fd, name, IN_MODIFY | IN_CLOSE_WRITE) < 0) {
        close(f->inotify_fd);
        f->inotify_fd = -1;
    }
}

/* New bytes of the file into `out`: raw, or for SSE as events of whole lines (a line waits for
 * its end, unless it grows past FOLLOW_LINE_MAX or the writer has finished). The number of
 * bytes read, or -1. */
static ssize_t follow_read(struct follow *f)
{
    char buf[FOLLOW_READ];
    if (f->fd < 0) {
        f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
        if (f->fd < 0)
            return 0; /* not created yet */
        follow_watch(f);
    }
    ssize_t n = pread(f->fd, buf, sizeof(buf), (off_t)f->offset);
    if (n < 0)
        return -1;
    f->offset += (uint64_t)n;
    if (!f->sse) {
        strbuf_add(&f->out, buf, (size_t)n);
        return n;
    }
    strbuf_add(&f->line, buf, (size_t)n);
    size_t cut = f->line.len;
    if (!(f->final && n == 0)) {
        /* up to the last line end; a CR at the very end may be the start of a CRLF */
        while (cut && f->line.buf[cut - 1] != '\n' &&
               (f->line.buf[cut - 1] != '\r' || cut == f->line.len))
            cut--;
        if (f->line.len - cut > FOLLOW_LINE_MAX)
            cut = f->line.len;
    }
    if (cut) {
        sse_event(&f->out, f->offset - (f->line.len - cut), f->line.buf, cut);
        memmove(f->line.buf, f->line.buf + cut, f->line.len - cut);
        f->line.len -= cut;
        f->line.buf[f->line.len] = '\0';
    }
    return n;
}

/* The end of the stream after the whole file: for SSE the `end` event. */
static void follow_end(struct follow *f)
{
    if (f->sse) {
        strbuf_adds(&f->out, "event: end\n");
        sse_data(&f->out, f->end.buf, f->end.len);
        strbuf_addch(&f->out, '\n');
    }
    f->ended = true;
}

/* Waits up to poll_ms for the file to change, or the server to stop. -1 when the client went
 * away. */
static int follow_wait(struct follow *f)
{
    struct pollfd pfd[3];
    nfds_t n = 0;
    if (f->conn_fd >= 0)
        pfd[n++] = (struct pollfd){.fd = f->conn_fd, .events = POLLRDHUP};
    if (f->server->stop_fd >= 0)
        pfd[n++] = (struct pollfd){.fd = f->server->stop_fd, .events = POLLIN};
    if (f->inotify_fd >= 0 && f->fd >= 0)
        pfd[n++] = (struct pollfd){.fd = f->inotify_fd, .events = POLLIN};
    if (poll(pfd, n, (int)f->poll_ms) <= 0)
        return 0;
    /* clients do not half-close while they read an answer: RDHUP means this one has gone */
    if (f->conn_fd >= 0 && (pfd[0].revents & (POLLRDHUP | POLLHUP | POLLERR)))
        return -1;
    char events[4096];
    while (f->inotify_fd >= 0 && read(f->inotify_fd, events, sizeof(events)) > 0)
        ;
    return 0;
}

/* Asks the caller whether the writer has finished. 0: not yet; 1: it has (final is set);
 * negative: break the stream off. */
static int follow_ask(struct follow *f)
{
    strbuf_reset(&f->end);
    int r = f->done(f->arg, &f->end);
    if (r > 0)
        f->final = true;
    return r < 0 ? r : r > 0;
}

/* Fills `out` with the next bytes of the stream, waiting for them at most about poll_ms (the
 * worker thread has other connections to serve: a request it accepted must not wait for this
 * stream's next line). 0 (out has bytes, or the stream has ended), 1 (nothing yet), or -1 to
 * break the stream off. */
static int follow_next(struct follow *f)
{
    bool waited = false;
    for (;;) {
        if (atomic_load(&f->server->stopping) || time_mono_ns() > f->deadline_ns)
            return -1; /* cut off without the end: the client asks again to go on */
        ssize_t n = follow_read(f);
        if (n < 0 || !strbuf_ok(&f->out) || !strbuf_ok(&f->line))
            return -1;
        if (f->final && n == 0 && !f->line.len) {
            follow_end(f);
            return strbuf_ok(&f->out) ? 0 : -1;
        }
        if (f->out.len) {
            f->keepalive_ns = time_mono_ns() + FOLLOW_KEEPALIVE_NS;
            return 0;
        }
        if (f->final || n > 0)
            continue;
        /* everything the writer wrote is in the file before it says it has finished */
        int r = follow_ask(f);
        if (r < 0)
            return -1;
        if (r > 0)
            continue;
        if (f->sse && time_mono_ns() > f->keepalive_ns) {
            strbuf_adds(&f->out, ": keep-alive\n\n");
            f->keepalive_ns = time_mono_ns() + FOLLOW_KEEPALIVE_NS;
            return 0;
        }
        if (waited)
            return 1;
        if (follow_wait(f))
            return -1;
        waited = true;
    }
}

static ssize_t follow_stream_read(void *arg, char *buf, size_t max)
{
    struct follow *f = arg;
    if (f->out_off == f->out.len) {
        strbuf_reset(&f->out);
        f->out_off = 0;
        if (f->ended)
            return 0;
        int r = follow_next(f);
        if (r > 0)
            return -EAGAIN;
        if (r)
            return -1;
        if (!f->out.len)
            return 0; /* ended with nothing more to send */
    }
    size_t n = f->out.len - f->out_off;
    if (n > max)
        n = max;
    memcpy(buf, f->out.buf + f->out_off, n);
    f->out_off += n;
    return (ssize_t)n;
}

unsigned http_follow_limit(const struct http_request *req)
{
    return req->follows->max_live;
}

int http_answer_follow(struct http_request *req, struct http_response *res,
                       const struct http_follow *opts)
{
    int r = -ENOMEM;
    struct follow *f = calloc(1, sizeof(*f));
    if (!f) {
        if (opts->free)
            opts->free(opts->arg);
        return -ENOMEM;
    }
    f->server = req->follows;
    f->fd = opts->fd;
    f->inotify_fd = -1;
    f->conn_fd = -1;
    f->done = opts->done;
    f->arg_free = opts->free;
    f->arg = opts->arg;
    strbuf_init(&f->out, FOLLOW_OUT_MAX);
    strbuf_init(&f->line, FOLLOW_LINE_MAX + FOLLOW_READ);
    strbuf_init(&f->end, FOLLOW_END_MAX);
    if (f->fd < 0 && !opts->path) {
        r = -EBADF;
        goto fail;
    }
    if (f->fd < 0 && !(f->path = strdup(opts->path)))
        goto fail;
    r = follow_ask(f);
    if (r < 0)
        goto fail;
    f->live = !f->final;
    if (f->live && atomic_fetch_add(&f->server->nr_live, 1) >= f->server->max_live) {
        atomic_fetch_sub(&f->server->nr_live, 1);
        f->live = false;
        r = -EBUSY;
        goto fail;
    }
    f->sse = opts->sse;
    f->poll_ms = opts->poll_ms ? opts->poll_ms : FOLLOW_POLL_MS;
    f->offset = opts->offset;
    const char *last_id = f->sse ? http_header(req, "Last-Event-ID") : NULL;
    int64_t resume;
    if (last_id && !parse_i64(last_id, 0, INT64_MAX, &resume)) /* EventSource reconnects */
        f->offset = (uint64_t)resume;
    f->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (f->fd >= 0)
        follow_watch(f);
    f->conn_fd = http_conn_socket(req);
    int64_t now = time_mono_ns();
    f->deadline_ns = now + (int64_t)(opts->max_s ? opts->max_s : FOLLOW_MAX_S) * 1000000000LL;
    f->keepalive_ns = now + FOLLOW_KEEPALIVE_NS;

    http_conn_no_timeout(req);
    res->status = 200;
    snprintf(res->content_type, sizeof(res->content_type), "%s",
             f->sse ? "text/event-stream" : "text/plain; charset=utf-8");
    http_res_header(res, "Cache-Control", "no-cache");
    http_res_header(res, "X-Accel-Buffering", "no"); /* nginx in front: do not hold it back */
    res->stream_read = follow_stream_read;
    res->stream_free = follow_free;
    res->stream_arg = f;
    return 0;
fail:
    follow_free(f);
    return r;
}
