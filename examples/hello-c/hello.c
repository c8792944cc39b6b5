/* hello — Slipway's example app: a tiny HTTP/1.1 server on 127.0.0.1:$PORT, C17 and libc only.
 * GET /healthz answers "ok", GET / a JSON greeting built from the environment, anything else 404.
 * One thread, one poll() loop, one request per connection (Connection: close). Every connection has
 * a deadline and a size limit, and when all slots are taken the oldest unfinished request makes
 * room, so slow clients block no one. It does not keep connections alive, read bodies, or serve
 * files. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS        256   /* open client connections; more wait in the listen backlog */
#define HEAD_MAX         8192  /* request line + headers, bytes */
#define REQUEST_LINE_MAX 2048  /* the request line alone, bytes */
#define CONN_TIMEOUT_MS  10000 /* from accept to the end of the request head */
#define WRITE_TIMEOUT_MS 5000  /* to write the answer */
#define LINGER_MS        1000  /* to drain what the client still sends after the answer */
#define ACCEPT_PAUSE_MS  100   /* after running out of file descriptors */

/* ---- answers, built once at start ------------------------------------------------------------ */

struct response {
    int status;
    char *bytes; /* the whole answer: status line, headers, body; owned */
    size_t len;
};

enum response_id {
    R_HEALTH,
    R_ROOT,
    R_NOT_FOUND,
    R_BAD_REQUEST,
    R_TIMEOUT,
    R_URI_TOO_LONG,
    R_HEAD_TOO_LARGE,
    NR_RESPONSES
};

static struct response responses[NR_RESPONSES];

/* Fills *r with a complete answer; returns 0 or -ENOMEM. */
static int response_init(struct response *r, int status, const char *reason,
                         const char *content_type, const char *body)
{
    static const char fmt[] = "HTTP/1.1 %d %s\r\n"
                              "Content-Type: %s\r\n"
                              "Content-Length: %zu\r\n"
                              "Connection: close\r\n"
                              "Cache-Control: no-store\r\n"
                              "\r\n"
                              "%s";
    size_t body_len = strlen(body);
    int n = snprintf(NULL, 0, fmt, status, reason, content_type, body_len, body);
    if (n < 0)
        return -ENOMEM;
    r->bytes = malloc((size_t)n + 1);
    if (!r->bytes)
        return -ENOMEM;
    snprintf(r->bytes, (size_t)n + 1, fmt, status, reason, content_type, body_len, body);
    r->status = status;
    r->len = (size_t)n;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one. */
static size_t utf8_sequence_len(const unsigned char *s, size_t avail)
{
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (avail < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* overlong forms, UTF-16 surrogates, beyond U+10FFFF */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
        cp > 0x10ffff)
        return 0;
    return len;
}

static char *put(char *dst, const char *s)
{
    size_t len = strlen(s);
    memcpy(dst, s, len);
    return dst + len;
}

/* Writes src as the inside of a JSON string to dst, which holds at least 6 * strlen(src) + 1 bytes.
 * Bytes that are not valid UTF-8 become U+FFFD, so the answer is always valid JSON. */
static void json_escape(char *dst, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)src;
    size_t left = strlen(src);
    while (left > 0) {
        size_t len = utf8_sequence_len(s, left);
        if (len == 0) {
            dst = put(dst, "\\ufffd");
            len = 1;
        } else if (*s == '"' || *s == '\\') {
            *dst++ = '\\';
            *dst++ = (char)*s;
        } else if (*s == '\n') {
            dst = put(dst, "\\n");
        } else if (*s == '\t') {
            dst = put(dst, "\\t");
        } else if (*s < 0x20) {
            dst = put(dst, "\\u00");
            *dst++ = hex[*s >> 4];
            *dst++ = hex[*s & 0xf];
        } else {
            memcpy(dst, s, len);
            dst += len;
        }
        s += len;
        left -= len;
    }
    *dst = '\0';
}

/* The value of the environment variable name, or fallback when it is not set. */
static const char *env_or(const char *name, const char *fallback)
{
    const char *value = getenv(name);
    return value ? value : fallback;
}

/* Builds the body of GET /; returns it (the caller frees) or NULL when out of memory. */
static char *root_body_new(void)
{
    const char *names[3] = {"MX_Main_Greeting", "SLIPWAY_VERSION", "SLIPWAY_INSTANCE"};
    const char *fallbacks[3] = {"hello", "dev", "0"};
    char *escaped[3] = {NULL, NULL, NULL};
    char *body = NULL;
    for (int i = 0; i < 3; i++) {
        const char *value = env_or(names[i], fallbacks[i]);
        escaped[i] = malloc(6 * strlen(value) + 1);
        if (!escaped[i])
            goto out;
        json_escape(escaped[i], value);
    }
    static const char fmt[] = "{\"greeting\": \"%s\", \"version\": \"%s\", \"instance\": \"%s\"}";
    int n = snprintf(NULL, 0, fmt, escaped[0], escaped[1], escaped[2]);
    if (n < 0)
        goto out;
    body = malloc((size_t)n + 1);
    if (body)
        snprintf(body, (size_t)n + 1, fmt, escaped[0], escaped[1], escaped[2]);
out:
    for (int i = 0; i < 3; i++)
        free(escaped[i]);
    return body;
}

static int responses_init(void)
{
    static const struct {
        enum response_id id;
        int status;
        const char *reason, *body;
    } plain[] = {
        {R_NOT_FOUND, 404, "Not Found", "not found\n"},
        {R_BAD_REQUEST, 400, "Bad Request", "bad request\n"},
        {R_TIMEOUT, 408, "Request Timeout", "request timeout\n"},
        {R_URI_TOO_LONG, 414, "URI Too Long", "request line too long\n"},
        {R_HEAD_TOO_LARGE, 431, "Request Header Fields Too Large", "request head too large\n"},
    };
    int r = -ENOMEM;
    char *root = root_body_new();
    if (!root)
        goto out;
    if (response_init(&responses[R_HEALTH], 200, "OK", "text/plain", "ok") < 0 ||
        response_init(&responses[R_ROOT], 200, "OK", "application/json", root) < 0)
        goto out;
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        if (response_init(&responses[plain[i].id], plain[i].status, plain[i].reason, "text/plain",
                          plain[i].body) < 0)
            goto out;
    r = 0;
out:
    free(root);
    return r;
}

static void responses_release(void)
{
    for (int i = 0; i < NR_RESPONSES; i++)
        free(responses[i].bytes);
}

/* ---- time and the request log ---------------------------------------------------------------- */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void)
{
    return now_us() / 1000;
}

/* Writes one line to stdout in a single write(), so lines never interleave or sit in a buffer. */
static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
    char line[512];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m > 0)
        n += (size_t)m;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* truncated: keep the newline */
    line[n++] = '\n';
    ssize_t w = write(STDOUT_FILENO, line, n);
    (void)w; /* nowhere to report a failing log */
}

/* ---- connections ----------------------------------------------------------------------------- */

enum conn_state {
    CONN_FREE,   /* slot unused */
    CONN_READ,   /* reading the request head */
    CONN_WRITE,  /* writing the answer */
    CONN_LINGER, /* answer sent and write side shut: discarding input until EOF */
};

struct conn {
    enum conn_state state;
    int fd;
    int64_t started_us;  /* accept time, for the log */
    int64_t deadline_ms; /* monotonic; the connection closes when it passes */
    const struct response *response;
    size_t sent;
    const char *method; /* into head, NUL-terminated once parsed; "-" until then */
    const char *target;
    size_t head_len;
    char head[HEAD_MAX + 1];
};

static struct conn conns[MAX_CONNS];
static size_t nr_conns;

static void conn_close(struct conn *c)
{
    close(c->fd);
    c->state = CONN_FREE;
    c->fd = -1;
    nr_conns--;
}

static void conn_log(const struct conn *c, const char *note)
{
    double ms = (double)(now_us() - c->started_us) / 1000.0;
    log_line("%s %s %d %.2fms%s", c->method, c->target, c->response->status, ms, note);
}

/* Sends what is left of the answer; on the end (or a failure) logs the request and moves on. */
static void conn_write(struct conn *c)
{
    while (c->sent < c->response->len) {
        ssize_t n =
            send(c->fd, c->response->bytes + c->sent, c->response->len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* poll for POLLOUT */
        if (n < 0) {
            conn_log(c, " (client gone)");
            conn_close(c);
            return;
        }
        c->sent += (size_t)n;
    }
    conn_log(c, "");
    /* Closing with unread input would reset the connection and could destroy the answer in
     * flight, so shut the write side and drain what the client still sends for a moment. */
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    c->deadline_ms = now_ms() + LINGER_MS;
}

static void conn_respond(struct conn *c, enum response_id id)
{
    c->response = &responses[id];
    c->sent = 0;
    c->state = CONN_WRITE;
    c->deadline_ms = now_ms() + WRITE_TIMEOUT_MS;
    conn_write(c);
}

/* A method is an HTTP token: letters, digits and !#$%&'*+-.^_`|~ */
static bool is_token_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Parses the request line (NUL-terminated, no line end) in place and answers it. */
static void conn_handle_request_line(struct conn *c, char *line)
{
    char *method = line;
    char *sp1 = strchr(method, ' ');
    if (!sp1 || sp1 == method || sp1 - method > 16)
        goto bad;
    *sp1 = '\0';
    for (const char *p = method; *p; p++)
        if (!is_token_char(*p))
            goto bad;
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (!sp2 || sp2 == target)
        goto bad;
    *sp2 = '\0';
    for (const char *p = target; *p; p++)
        if (*p <= ' ' || *p > '~')
            goto bad;
    const char *version = sp2 + 1;
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)
        goto bad;
    c->method = method;
    c->target = target;

    size_t path_len = strcspn(target, "?#");
    bool get = strcmp(method, "GET") == 0;
    if (get && path_len == 8 && memcmp(target, "/healthz", 8) == 0)
        conn_respond(c, R_HEALTH);
    else if (get && path_len == 1 && target[0] == '/')
        conn_respond(c, R_ROOT);
    else
        conn_respond(c, R_NOT_FOUND);
    return;
bad:
    conn_respond(c, R_BAD_REQUEST);
}

/* Looks at the head read so far: answers once it is complete or breaks a limit. */
static void conn_check_head(struct conn *c, size_t old_len)
{
    char *line_end = memchr(c->head, '\n', c->head_len);
    if (!line_end || line_end - c->head > REQUEST_LINE_MAX) {
        if (c->head_len > REQUEST_LINE_MAX)
            conn_respond(c, R_URI_TOO_LONG);
        return;
    }
    /* the head ends with an empty line: CRLF CRLF, or bare LFs from lenient clients */
    size_t from = old_len > 3 ? old_len - 3 : 0;
    char *end = memmem(c->head + from, c->head_len - from, "\r\n\r\n", 4);
    if (!end)
        end = memmem(c->head + from, c->head_len - from, "\n\n", 2);
    if (!end) {
        if (c->head_len >= HEAD_MAX)
            conn_respond(c, R_HEAD_TOO_LARGE);
        return;
    }
    *line_end = '\0';
    if (line_end > c->head && line_end[-1] == '\r')
        line_end[-1] = '\0';
    conn_handle_request_line(c, c->head);
}

static void conn_read(struct conn *c)
{
    while (c->state == CONN_READ) {
        size_t old_len = c->head_len;
        ssize_t n = recv(c->fd, c->head + old_len, HEAD_MAX - old_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) { /* the client left before finishing a request: nothing to answer */
            conn_close(c);
            return;
        }
        c->head_len += (size_t)n;
        c->head[c->head_len] = '\0';
        conn_check_head(c, old_len);
    }
}

/* Discards input after the answer until EOF; a bounded amount per call, the rest on later rounds.
 */
static void conn_drain(struct conn *c)
{
    char sink[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
        if (n > 0 || (n < 0 && errno == EINTR))
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(c); /* EOF or error */
        return;
    }
}

static void conn_on_ready(struct conn *c, short revents)
{
    if (c->state == CONN_READ && (revents & (POLLIN | POLLHUP | POLLERR)))
        conn_read(c);
    else if (c->state == CONN_WRITE && (revents & (POLLOUT | POLLHUP | POLLERR)))
        conn_write(c);
    else if (c->state == CONN_LINGER && (revents & (POLLIN | POLLHUP | POLLERR)))
        conn_drain(c);
}

static void conn_on_timeout(struct conn *c)
{
    if (c->state == CONN_READ && c->head_len > 0) {
        conn_respond(c, R_TIMEOUT);
        return;
    }
    if (c->state == CONN_WRITE)
        conn_log(c, " (write timed out)");
    conn_close(c); /* idle without a byte, or lingering: close quietly */
}

/* ---- listening and the loop ------------------------------------------------------------------ */

static volatile sig_atomic_t stop_signal;
static int wake_pipe[2] = {-1, -1};

static void on_stop_signal(int sig)
{
    int saved = errno;
    stop_signal = sig;
    ssize_t w = write(wake_pipe[1], "", 1);
    (void)w; /* the pipe full means a wake-up is already pending */
    errno = saved;
}

static void on_alarm(int sig)
{
    (void)sig; /* only there to interrupt a blocked write(); see main() */
}

static int signals_init(void)
{
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    /* no SA_RESTART: a write() blocked on a full stdout returns EINTR on SIGTERM */
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
        return -errno;
    sa.sa_handler = on_alarm;
    if (sigaction(SIGALRM, &sa, NULL) < 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Parses PORT: decimal 0..65535, 0 meaning any free port; returns 0 or -EINVAL. */
static int port_parse(const char *text, unsigned *port)
{
    if (!text || !*text || strlen(text) > 5)
        return -EINVAL;
    unsigned value = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        value = value * 10 + (unsigned)(*p - '0');
    }
    if (value > 65535)
        return -EINVAL;
    *port = value;
    return 0;
}

/* Listens on 127.0.0.1:port; returns the socket and sets *bound to the port really bound
 * (differs from port only for 0), or returns -errno. */
static int listener_open(unsigned port, unsigned *bound)
{
    int r;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 128) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    *bound = ntohs(addr.sin_port);
    return fd;
}

/* The connection still reading its request that came first, or NULL when there is none. */
static struct conn *conn_oldest_reader(void)
{
    struct conn *oldest = NULL;
    for (size_t i = 0; i < MAX_CONNS; i++)
        if (conns[i].state == CONN_READ && (!oldest || conns[i].started_us < oldest->started_us))
            oldest = &conns[i];
    return oldest;
}

/* Accepts every pending connection. When all slots are taken, the oldest connection that has
 * not finished its request makes room, so clients that trickle bytes cannot lock others out.
 * Returns the time until which accepting pauses (0: no pause) after running out of descriptors. */
static int64_t listener_accept(int listen_fd)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                fprintf(stderr, "hello: cannot accept a connection: %s\n", strerror(errno));
                return now_ms() + ACCEPT_PAUSE_MS;
            }
            if (errno == EINTR)
                continue;
            return 0; /* ECONNABORTED and the like: poll() says when there is more */
        }
        if (nr_conns == MAX_CONNS) {
            struct conn *oldest = conn_oldest_reader();
            if (!oldest) { /* every slot is answering: let this one wait for the next round */
                close(fd);
                return 0;
            }
            conn_close(oldest);
        }
        struct conn *c = conns;
        while (c->state != CONN_FREE)
            c++; /* a free slot exists: nr_conns < MAX_CONNS */
        c->state = CONN_READ;
        c->fd = fd;
        c->started_us = now_us();
        c->deadline_ms = now_ms() + CONN_TIMEOUT_MS;
        c->method = "-";
        c->target = "-";
        c->head_len = 0;
        c->response = NULL;
        nr_conns++;
    }
}

/* Serves until SIGTERM or SIGINT; returns 0, or -errno when poll() fails. */
static int serve(int listen_fd)
{
    static struct pollfd pfds[MAX_CONNS + 2];
    static struct conn *polled[MAX_CONNS + 2];
    int64_t accept_paused_until = 0;

    while (!stop_signal) {
        int64_t now = now_ms();
        int64_t next = accept_paused_until > now ? accept_paused_until : -1; /* next deadline */
        bool any_reader = false;
        nfds_t nfds = 0;
        pfds[nfds++] = (struct pollfd){.fd = wake_pipe[0], .events = POLLIN};
        for (size_t i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &conns[i];
            if (c->state == CONN_FREE)
                continue;
            any_reader |= c->state == CONN_READ;
            polled[nfds] = c;
            short events = c->state == CONN_WRITE ? POLLOUT : POLLIN;
            pfds[nfds++] = (struct pollfd){.fd = c->fd, .events = events};
            if (next < 0 || c->deadline_ms < next)
                next = c->deadline_ms;
        }
        /* the listener goes last, so accepting (which may close a reader) follows the others */
        nfds_t listen_idx = nfds;
        if (accept_paused_until <= now && (nr_conns < MAX_CONNS || any_reader))
            pfds[nfds++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        int timeout = next < 0 ? -1 : next <= now ? 0 : (int)(next - now);

        int n = poll(pfds, nfds, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (pfds[0].revents)
            break; /* a stop signal */
        /* stop_signal is checked between connections, as each one may log and so block on
         * stdout: once SIGTERM interrupted one such write, no other may hold up the exit */
        for (nfds_t i = 1; i < listen_idx && !stop_signal; i++)
            if (pfds[i].revents && polled[i]->state != CONN_FREE)
                conn_on_ready(polled[i], pfds[i].revents);
        if (listen_idx < nfds && pfds[listen_idx].revents && !stop_signal)
            accept_paused_until = listener_accept(listen_fd);
        now = now_ms();
        for (size_t i = 0; i < MAX_CONNS && !stop_signal; i++)
            if (conns[i].state != CONN_FREE && conns[i].deadline_ms <= now)
                conn_on_timeout(&conns[i]);
    }
    return 0;
}

int main(void)
{
    int r;
    int listen_fd = -1;
    unsigned port = 0, bound = 0;
    const char *port_text = getenv("PORT");
    if (!port_text) {
        fprintf(stderr, "hello: PORT is not set; run it as PORT=8080 ./bin/hello\n");
        return 2;
    }
    if (port_parse(port_text, &port) < 0) {
        fprintf(stderr, "hello: invalid PORT '%s': expected 1 to 65535, or 0 for any free port\n",
                port_text);
        return 2;
    }
    for (size_t i = 0; i < MAX_CONNS; i++)
        conns[i].fd = -1;
    if (responses_init() < 0) {
        fprintf(stderr, "hello: out of memory\n");
        r = 1;
        goto out;
    }
    if ((r = signals_init()) < 0) {
        fprintf(stderr, "hello: cannot set up signal handling: %s\n", strerror(-r));
        r = 1;
        goto out;
    }
    listen_fd = listener_open(port, &bound);
    if (listen_fd < 0) {
        fprintf(stderr, "hello: cannot listen on 127.0.0.1:%u: %s\n", port, strerror(-listen_fd));
        r = 1;
        goto out;
    }
    log_line("hello: listening on http://127.0.0.1:%u", bound);

    if ((r = serve(listen_fd)) < 0) {
        fprintf(stderr, "hello: poll failed: %s\n", strerror(-r));
        r = 1;
        goto out;
    }
    alarm(1); /* a stdout nobody reads must not hold up the exit: the alarm interrupts it */
    log_line("hello: stopping on %s", stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    r = 0;
out:
    for (size_t i = 0; i < MAX_CONNS; i++)
        if (conns[i].state != CONN_FREE)
            conn_close(&conns[i]);
    if (listen_fd >= 0)
        close(listen_fd);
    responses_release();
    return r;
}
