/* notes — Slipway's example app with a database: a tiny HTTP/1.1 server on 127.0.0.1:$PORT that
 * keeps notes in the PostgreSQL database Slipway gives the environment ($DATABASE_URL, libpq).
 * POST /notes stores the body as a note, GET /notes lists the newest as JSON, GET /healthz answers
 * "ok" once the database is reachable. The same single poll() loop as hello: one request per
 * connection, deadlines and size limits on everything, the oldest unfinished request makes room.
 * Database calls block the loop (a local database answers in a millisecond; each call has a
 * timeout). It does not keep connections alive or serve files.
 */
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

#include <libpq-fe.h>

#define MAX_CONNS        128   /* open client connections; more wait in the listen backlog */
#define HEAD_MAX         8192  /* request line + headers, bytes */
#define REQUEST_LINE_MAX 2048  /* the request line alone, bytes */
#define BODY_MAX         4096  /* a note, bytes */
#define LIST_MAX         100   /* notes in GET /notes, the newest */
#define CONN_TIMEOUT_MS  10000 /* from accept to the end of the request */
#define WRITE_TIMEOUT_MS 5000  /* to write the answer */
#define LINGER_MS        1000  /* to drain what the client still sends after the answer */
#define ACCEPT_PAUSE_MS  100   /* after running out of file descriptors */
#define DB_RETRY_MS      1000  /* between attempts to reach the database */

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

/* ---- the database ---------------------------------------------------------------------------- */

static const char *database_url; /* holds the password: never logged */
static PGconn *db;
static bool db_ok;         /* connected, and the table exists */
static int64_t db_next_ms; /* no new attempt to connect before this */

static const char schema_sql[] = "CREATE TABLE IF NOT EXISTS notes ("
                                 " id bigserial PRIMARY KEY,"
                                 " text text NOT NULL,"
                                 " created_at timestamptz NOT NULL DEFAULT now())";

/* The first line of libpq's message (never the URL, which libpq does not repeat). */
static const char *db_error(void)
{
    static char msg[256];
    snprintf(msg, sizeof(msg), "%s", db ? PQerrorMessage(db) : "out of memory");
    msg[strcspn(msg, "\n")] = '\0';
    return msg;
}

/* Whether the database is reachable: (re)connects and makes the table when it is not, at most
 * once per DB_RETRY_MS. Each attempt takes at most connect_timeout (3 s). */
static bool db_ready(void)
{
    if (db_ok && PQstatus(db) == CONNECTION_OK)
        return true;
    db_ok = false;
    if (now_ms() < db_next_ms)
        return false;
    db_next_ms = now_ms() + DB_RETRY_MS;
    if (db) {
        PQreset(db);
    } else {
        /* the URL first, expanded; the keys after it win over what it says */
        const char *keys[] = {"dbname",  "connect_timeout",  "client_encoding",
                              "options", "application_name", NULL};
        const char *values[] = {
            database_url, "3", "UTF8", "-c statement_timeout=5000 -c client_min_messages=warning",
            "notes",      NULL};
        db = PQconnectdbParams(keys, values, 1);
    }
    if (!db || PQstatus(db) != CONNECTION_OK) {
        log_line("notes: database unreachable: %s", db_error());
        return false;
    }
    PGresult *res = PQexec(db, schema_sql);
    db_ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!db_ok)
        log_line("notes: cannot make the table: %s", db_error());
    else
        log_line("notes: database ready");
    PQclear(res);
    return db_ok;
}

/* Runs a query with text parameters; its result when it succeeded (caller PQclears), else NULL.
 * A connection that broke (the database restarted, or was restored) is made again once. */
static PGresult *db_query(const char *sql, int nr_params, const char *const *params)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!db_ready())
            return NULL;
        PGresult *res = PQexecParams(db, sql, nr_params, NULL, params, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
            return res;
        log_line("notes: query failed: %s", db_error());
        PQclear(res);
        if (PQstatus(db) == CONNECTION_OK)
            return NULL; /* the query's fault, not the connection's */
        db_ok = false;
        db_next_ms = 0;
    }
    return NULL;
}

/* ---- connections ----------------------------------------------------------------------------- */

enum conn_state {
    CONN_FREE,   /* slot unused */
    CONN_READ,   /* reading the request (head, then body) */
    CONN_WRITE,  /* writing the answer */
    CONN_LINGER, /* answer sent and write side shut: discarding input until EOF */
};

struct conn {
    enum conn_state state;
    int fd;
    int64_t started_us;  /* accept time, for the log */
    int64_t deadline_ms; /* monotonic; the connection closes when it passes */
    int status;
    char *answer; /* status line, headers and body; owned */
    size_t answer_len, sent;
    const char *method; /* into buf, NUL-terminated once parsed; "-" until then */
    const char *target;
    size_t len;      /* bytes in buf */
    size_t body_at;  /* where the body begins once the head is complete; 0 before */
    size_t body_len; /* Content-Length */
    char buf[HEAD_MAX + BODY_MAX + 1];
};

static struct conn conns[MAX_CONNS];
static size_t nr_conns;

static void conn_close(struct conn *c)
{
    close(c->fd);
    free(c->answer);
    c->answer = NULL;
    c->state = CONN_FREE;
    c->fd = -1;
    nr_conns--;
}

static void conn_log(const struct conn *c, const char *note)
{
    double ms = (double)(now_us() - c->started_us) / 1000.0;
    log_line("%s %s %d %.2fms%s", c->method, c->target, c->status, ms, note);
}

/* Sends what is left of the answer; on the end (or a failure) logs the request and moves on. */
static void conn_write(struct conn *c)
{
    while (c->sent < c->answer_len) {
        ssize_t n = send(c->fd, c->answer + c->sent, c->answer_len - c->sent, MSG_NOSIGNAL);
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

/* Answers with body[0..body_len); out of memory, with a bare 500. */
static void conn_respond(struct conn *c, int status, const char *reason, const char *content_type,
                         const char *body, size_t body_len)
{
    static const char fmt[] = "HTTP/1.1 %d %s\r\n"
                              "Content-Type: %s\r\n"
                              "Content-Length: %zu\r\n"
                              "Connection: close\r\n"
                              "Cache-Control: no-store\r\n"
                              "\r\n";
    static char oom[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                        "Connection: close\r\n\r\n";
    free(c->answer);
    c->answer = NULL;
    int n = snprintf(NULL, 0, fmt, status, reason, content_type, body_len);
    char *answer = n < 0 ? NULL : malloc((size_t)n + body_len + 1);
    if (answer) {
        snprintf(answer, (size_t)n + 1, fmt, status, reason, content_type, body_len);
        memcpy(answer + n, body, body_len);
        c->answer = answer;
        c->answer_len = (size_t)n + body_len;
        c->status = status;
    } else {
        c->answer = strdup(oom);
        c->answer_len = c->answer ? sizeof(oom) - 1 : 0;
        c->status = 500;
    }
    c->sent = 0;
    c->state = CONN_WRITE;
    c->deadline_ms = now_ms() + WRITE_TIMEOUT_MS;
    conn_write(c);
}

static void conn_text(struct conn *c, int status, const char *reason, const char *text)
{
    conn_respond(c, status, reason, "text/plain", text, strlen(text));
}

static void conn_unavailable(struct conn *c)
{
    conn_text(c, 503, "Service Unavailable", "database unavailable\n");
}

/* Whether s[0..len) is valid UTF-8 without NUL bytes (what a PostgreSQL text holds). */
static bool text_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = u[i] ? utf8_sequence_len(u + i, len - i) : 0;
        if (!n)
            return false;
        i += n;
    }
    return true;
}

/* POST /notes: the body is the note. 201 with {"id": N}. */
static void notes_add(struct conn *c)
{
    const char *text = c->buf + c->body_at;
    if (c->body_len == 0 || !text_valid(text, c->body_len)) {
        conn_text(c, 400, "Bad Request", "a note is 1 to 4096 bytes of UTF-8 text\n");
        return;
    }
    c->buf[c->body_at + c->body_len] = '\0'; /* buf has room for it */
    const char *params[] = {text};
    PGresult *res = db_query("INSERT INTO notes (text) VALUES ($1) RETURNING id", 1, params);
    if (!res || PQntuples(res) != 1) {
        PQclear(res);
        conn_unavailable(c);
        return;
    }
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"id\": %s}", PQgetvalue(res, 0, 0));
    PQclear(res);
    conn_respond(c, 201, "Created", "application/json", body, (size_t)n);
}

/* GET /notes: the newest LIST_MAX notes, newest first:
 * [{"id": 2, "text": "...", "created_at": "2025-01-31T12:00:00Z"}, ...] */
static void notes_list(struct conn *c)
{
    PGresult *res =
        db_query("SELECT id, text, to_char(created_at AT TIME ZONE 'UTC', "
                 "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM notes ORDER BY id DESC LIMIT 100",
                 0, NULL);
    if (!res) {
        conn_unavailable(c);
        return;
    }
    char *body = NULL, *escaped = NULL;
    size_t body_len = 0;
    FILE *f = open_memstream(&body, &body_len);
    bool ok = f != NULL;
    if (ok)
        fputc('[', f);
    for (int i = 0; ok && i < PQntuples(res); i++) {
        const char *text = PQgetvalue(res, i, 1);
        free(escaped);
        escaped = malloc(6 * strlen(text) + 1);
        if (!escaped) {
            ok = false;
            break;
        }
        json_escape(escaped, text);
        fprintf(f, "%s{\"id\": %s, \"text\": \"%s\", \"created_at\": \"%s\"}", i ? ", " : "",
                PQgetvalue(res, i, 0), escaped, PQgetvalue(res, i, 2));
    }
    if (f) {
        fputc(']', f);
        ok = !ferror(f) && ok;
        ok = fclose(f) == 0 && ok;
    }
    PQclear(res);
    free(escaped);
    if (ok)
        conn_respond(c, 200, "OK", "application/json", body, body_len);
    else
        conn_text(c, 500, "Internal Server Error", "out of memory\n");
    free(body);
}

/* A method is an HTTP token: letters, digits and !#$%&'*+-.^_`|~ */
static bool is_token_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Answers the complete request (its line NUL-terminated in buf, its body after body_at). */
static void conn_handle(struct conn *c)
{
    const char *target = c->target, *method = c->method;
    size_t path_len = strcspn(target, "?#");
    bool get = strcmp(method, "GET") == 0;
    if (path_len == 8 && memcmp(target, "/healthz", 8) == 0 && get) {
        PGresult *res = db_query("SELECT 1", 0, NULL); /* reachable now, not when last used */
        if (res)
            conn_text(c, 200, "OK", "ok");
        else
            conn_unavailable(c);
        PQclear(res);
    } else if (path_len == 6 && memcmp(target, "/notes", 6) == 0) {
        if (get)
            notes_list(c);
        else if (strcmp(method, "POST") == 0)
            notes_add(c);
        else
            conn_text(c, 405, "Method Not Allowed", "GET or POST\n");
    } else {
        conn_text(c, 404, "Not Found", "not found\n");
    }
}

/* Parses the request line (NUL-terminated, no line end) in place; false when it is malformed. */
static bool parse_request_line(struct conn *c, char *line)
{
    char *method = line;
    char *sp1 = strchr(method, ' ');
    if (!sp1 || sp1 == method || sp1 - method > 16)
        return false;
    *sp1 = '\0';
    for (const char *p = method; *p; p++)
        if (!is_token_char(*p))
            return false;
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (!sp2 || sp2 == target)
        return false;
    *sp2 = '\0';
    for (const char *p = target; *p; p++)
        if (*p <= ' ' || *p > '~')
            return false;
    const char *version = sp2 + 1;
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)
        return false;
    c->method = method;
    c->target = target;
    return true;
}

/* Case-insensitive: whether the header line starts with name and a colon; *value after it. */
static bool header_is(const char *line, const char *name, const char **value)
{
    size_t len = strlen(name);
    if (strncasecmp(line, name, len) != 0 || line[len] != ':')
        return false;
    *value = line + len + 1;
    while (**value == ' ' || **value == '\t')
        (*value)++;
    return true;
}

/* Reads the headers (lines from `from`, the head NUL-terminated at its end): Content-Length,
 * at most BODY_MAX; chunked bodies are not taken. 0, or the status to answer with. */
static int parse_headers(struct conn *c, char *from)
{
    bool have_length = false;
    for (char *line = from; *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r')
            line[n - 1] = '\0';
        const char *value;
        if (header_is(line, "Transfer-Encoding", &value))
            return 411;
        if (header_is(line, "Content-Length", &value)) {
            size_t length = 0, digits = 0;
            for (; *value >= '0' && *value <= '9' && digits < 10; value++, digits++)
                length = length * 10 + (size_t)(*value - '0');
            while (*value == ' ' || *value == '\t')
                value++;
            if (!digits || *value || (have_length && length != c->body_len))
                return 400;
            if (length > BODY_MAX)
                return 413;
            c->body_len = length;
            have_length = true;
        }
        if (!end)
            break;
        line = end + 1;
    }
    return 0;
}

/* Looks at what was read so far: answers once the request is complete or breaks a limit. */
static void conn_check(struct conn *c, size_t old_len)
{
    if (c->body_at) {
        if (c->len >= c->body_at + c->body_len)
            conn_handle(c);
        return;
    }
    char *line_end = memchr(c->buf, '\n', c->len);
    if (!line_end || line_end - c->buf > REQUEST_LINE_MAX) {
        if (c->len > REQUEST_LINE_MAX)
            conn_text(c, 414, "URI Too Long", "request line too long\n");
        return;
    }
    /* the head ends with an empty line: CRLF CRLF, or bare LFs from lenient clients */
    size_t from = old_len > 3 ? old_len - 3 : 0;
    char *end = memmem(c->buf + from, c->len - from, "\r\n\r\n", 4);
    size_t sep = 4;
    if (!end) {
        end = memmem(c->buf + from, c->len - from, "\n\n", 2);
        sep = 2;
    }
    if (!end || end - c->buf + sep > HEAD_MAX) {
        if (c->len >= HEAD_MAX)
            conn_text(c, 431, "Request Header Fields Too Large", "request head too large\n");
        return;
    }
    c->body_at = (size_t)(end - c->buf) + sep;
    *end = '\0'; /* the head, as a string */
    *line_end = '\0';
    if (line_end > c->buf && line_end[-1] == '\r')
        line_end[-1] = '\0';
    if (!parse_request_line(c, c->buf)) {
        conn_text(c, 400, "Bad Request", "bad request\n");
        return;
    }
    int status = line_end < end ? parse_headers(c, line_end + 1) : 0;
    if (status == 411)
        conn_text(c, 411, "Length Required", "send a Content-Length, not chunks\n");
    else if (status == 413)
        conn_text(c, 413, "Content Too Large", "a note is at most 4096 bytes\n");
    else if (status)
        conn_text(c, 400, "Bad Request", "bad request\n");
    else if (c->len >= c->body_at + c->body_len)
        conn_handle(c);
}

static void conn_read(struct conn *c)
{
    while (c->state == CONN_READ) {
        size_t old_len = c->len;
        /* the head, then exactly the body: nothing past it is read */
        size_t want = c->body_at ? c->body_at + c->body_len : sizeof(c->buf) - 1;
        if (want <= old_len) /* cannot happen: the request would have been answered */
            return;
        ssize_t n = recv(c->fd, c->buf + old_len, want - old_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) { /* the client left before finishing a request: nothing to answer */
            conn_close(c);
            return;
        }
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
        conn_check(c, old_len);
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
    if (c->state == CONN_READ && c->len > 0) {
        conn_text(c, 408, "Request Timeout", "request timeout\n");
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
                fprintf(stderr, "notes: cannot accept a connection: %s\n", strerror(errno));
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
        c->len = 0;
        c->body_at = 0;
        c->body_len = 0;
        c->status = 0;
        c->answer = NULL;
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
    database_url = getenv("DATABASE_URL");
    if (!port_text || !database_url || !*database_url) {
        fprintf(stderr, "notes: PORT or DATABASE_URL is not set; run it as PORT=8080 "
                        "DATABASE_URL=postgresql://user:password@127.0.0.1:5432/db ./bin/notes\n");
        return 2;
    }
    if (port_parse(port_text, &port) < 0) {
        fprintf(stderr, "notes: invalid PORT '%s': expected 1 to 65535, or 0 for any free port\n",
                port_text);
        return 2;
    }
    for (size_t i = 0; i < MAX_CONNS; i++)
        conns[i].fd = -1;
    if ((r = signals_init()) < 0) {
        fprintf(stderr, "notes: cannot set up signal handling: %s\n", strerror(-r));
        r = 1;
        goto out;
    }
    listen_fd = listener_open(port, &bound);
    if (listen_fd < 0) {
        fprintf(stderr, "notes: cannot listen on 127.0.0.1:%u: %s\n", port, strerror(-listen_fd));
        r = 1;
        goto out;
    }
    db_ready(); /* makes the table now when it can; /healthz says ok once it did */
    log_line("notes: listening on http://127.0.0.1:%u", bound);

    if ((r = serve(listen_fd)) < 0) {
        fprintf(stderr, "notes: poll failed: %s\n", strerror(-r));
        r = 1;
        goto out;
    }
    alarm(1); /* a stdout nobody reads must not hold up the exit: the alarm interrupts it */
    log_line("notes: stopping on %s", stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    r = 0;
out:
    for (size_t i = 0; i < MAX_CONNS; i++)
        if (conns[i].state != CONN_FREE)
            conn_close(&conns[i]);
    if (listen_fd >= 0)
        close(listen_fd);
    PQfinish(db);
    return r;
}
