/* libFuzzer driver for http/multipart: http_multipart_read on a request spooled by a real server
 * in this process (the parser needs libmicrohttpd's connection), whose one route reads the part
 * `file` into memory with a sink that may stop after a fuzzer-chosen number of bytes.
 *
 * The first input byte chooses the form of the rest:
 * - even: raw. The rest is a Content-Type value (up to the first '\n'; control bytes become '?',
 *   white space around it goes) and the body after it. Whatever the result, it must be one the
 * header documents, with a message on error; -EINVAL when http_multipart_content_type_ok refuses
 * the Content-Type; on success the sink's bytes are the reported size and appear as they are in the
 * body (a part is a slice of it), and the sink was never called after it stopped.
 * - odd: built. The rest describes a well-formed multipart/form-data body (a boundary, then parts
 *   with a name, a Content-Transfer-Encoding, an optional file name and Content-Type, and bytes),
 *   which the driver writes; the result must be the one the header promises for that body: the
 *   exact bytes of the one part `file`, -ENOENT without one, -EINVAL for two, for an encoding
 *   other than binary/7bit/8bit or for a body cut before its closing boundary, -ECANCELED when
 *   the sink stops (an empty body, cut or not, has no part 'file'). Bodies whose part bytes hold a
 *   delimiter are skipped (they are ambiguous).
 */
#include "base/log.h"
#include "base/strbuf.h"
#include "base/util.h"
#include "http/http.h"
#include "http/multipart.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_INPUT  (64 * 1024)
#define MAX_PARTS  6
#define NO_LIMIT   UINT64_MAX
#define BCHARS     "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"
#define BCHARS_LEN (sizeof(BCHARS) - 1)

/* ---- the server and its one route --------------------------------------------------------- */

static char spool_dir[64];
static struct http_server *server;
static unsigned port;

/* What the route saw, for the fuzzer's thread (the handler runs on a server thread). */
static pthread_mutex_t result_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool called;
    int r;
    char err[256];
    uint64_t size;
    struct strbuf part; /* the bytes the sink was given */
    uint64_t limit;     /* the sink stops when it would hold more */
    bool stopped;       /* the sink said stop */
    bool misused;       /* the sink was called after it stopped, or with no bytes */
} result;

static int sink(void *arg, const void *data, size_t len)
{
    (void)arg;
    if (result.stopped || len == 0)
        result.misused = true;
    if (result.part.len + len > result.limit) {
        result.stopped = true;
        return -1;
    }
    strbuf_add(&result.part, data, len);
    return 0;
}

static void upload(struct http_request *req, struct http_response *res)
{
    pthread_mutex_lock(&result_lock);
    result.called = true;
    result.size = UINT64_MAX;
    result.err[0] = '\0';
    result.r =
        http_multipart_read(req, "file", sink, NULL, &result.size, result.err, sizeof(result.err));
    pthread_mutex_unlock(&result_lock);
    http_res_json_text(res, 200, "{}", 2);
}

static void error_body(const struct http_request *req, struct http_response *res, int status,
                       const char *code, const char *message)
{
    (void)req;
    (void)code;
    (void)message;
    http_res_json_text(res, status, "{}", 2);
}

static const struct http_route routes[] = {
    {"POST", "/upload", upload, HTTP_ROUTE_SPOOL, NULL},
};

static void cleanup(void)
{
    http_server_stop(server);
    strbuf_release(&result.part);
    if (spool_dir[0])
        fs_remove_tree(spool_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_ERROR); /* no line per request */
    snprintf(spool_dir, sizeof(spool_dir), "/tmp/slipway-fuzz-multipart-XXXXXX");
    if (!mkdtemp(spool_dir))
        abort();
    atexit(cleanup);
    struct http_config hc = {.host = "127.0.0.1",
                             .threads = 1,
                             .max_body = 4096,
                             .max_spool = 4 * MAX_INPUT,
                             .spool_dir = spool_dir,
                             .error = error_body,
                             .routes = routes,
                             .nr_routes = 1};
    if (http_server_start(&hc, &server))
        abort();
    port = http_server_port(server);
    strbuf_init(&result.part, 0);
    return 0;
}

/* POSTs body with the Content-Type and reads the answer. False when the route did not run (the
 * connection failed, or the server refused the request before routing it). */
static bool post(const char *content_type, const char *body, size_t len, uint64_t limit)
{
    pthread_mutex_lock(&result_lock);
    result.called = false;
    result.stopped = false;
    result.misused = false;
    result.limit = limit;
    strbuf_reset(&result.part);
    pthread_mutex_unlock(&result_lock);

    struct strbuf req = STRBUF_INIT;
    strbuf_addf(&req,
                "POST /upload HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
                "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                content_type, len);
    strbuf_add(&req, body, len);
    if (!strbuf_ok(&req))
        abort();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        abort();
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool sent = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
                fd_write_all(fd, req.buf, req.len) == 0;
    char buf[4096];
    while (sent && read(fd, buf, sizeof(buf)) > 0)
        ;
    close(fd);
    strbuf_release(&req);
    pthread_mutex_lock(&result_lock);
    bool called = result.called;
    pthread_mutex_unlock(&result_lock);
    return called;
}

static void fail(const char *why, const char *content_type, const char *body, size_t len)
{
    fprintf(stderr,
            "fuzz_multipart: %s\nresult %d (%s), size %llu, sink got %zu bytes%s\n"
            "--- Content-Type: %s\n--- body (%zu bytes)\n%.*s\n",
            why, result.r, result.err, (unsigned long long)result.size, result.part.len,
            result.stopped ? " and stopped" : "", content_type, len, (int)(len < 4000 ? len : 4000),
            body);
    abort();
}

/* What holds for any body. */
static void check_any(const char *ct, const char *body, size_t len)
{
    int r = result.r;
    char err[256];
    if (r != 0 && r != -EINVAL && r != -ENOENT && r != -ECANCELED && r != -EIO && r != -ENOMEM)
        fail("an undocumented result", ct, body, len);
    if (r && !result.err[0])
        fail("an error without a message", ct, body, len);
    if (!memchr(result.err, '\0', sizeof(result.err)))
        fail("the message is not terminated", ct, body, len);
    if (!http_multipart_content_type_ok(ct, err, sizeof(err)) && r != -EINVAL)
        fail("a refused Content-Type was read", ct, body, len);
    if (r == -ECANCELED && !result.stopped)
        fail("-ECANCELED but the sink never stopped", ct, body, len);
    if (result.stopped && r != -ECANCELED)
        fail("the sink stopped but the result is not -ECANCELED", ct, body, len);
    if (result.misused)
        fail("the sink was called after it stopped, or with no bytes", ct, body, len);
    if (!strbuf_ok(&result.part) || result.part.len > len)
        fail("the sink got more bytes than the body has", ct, body, len);
    if (r == 0) {
        if (result.size != result.part.len)
            fail("the size is not what the sink got", ct, body, len);
        if (result.part.len && !memmem(body, len, result.part.buf, result.part.len))
            fail("the part is not a slice of the body", ct, body, len);
    } else if (result.size != UINT64_MAX) {
        fail("the size was written on error", ct, body, len);
    }
}

/* ---- raw ------------------------------------------------------------------------------------ */

static void run_raw(const uint8_t *data, size_t size, uint64_t limit)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t ct_len = nl ? (size_t)(nl - data) : size;
    char *ct = malloc(ct_len + 1);
    if (!ct)
        abort();
    for (size_t i = 0; i < ct_len; i++)
        ct[i] = (data[i] < 0x20 && data[i] != '\t') || data[i] == 0x7f ? '?' : (char)data[i];
    /* the server sees the value without the white space around it */
    while (ct_len && (ct[ct_len - 1] == ' ' || ct[ct_len - 1] == '\t'))
        ct_len--;
    ct[ct_len] = '\0';
    size_t lead = strspn(ct, " \t");
    memmove(ct, ct + lead, ct_len - lead + 1);
    const char *body = nl ? (const char *)nl + 1 : "";
    size_t body_len = nl ? size - (size_t)(nl - data) - 1 : 0;
    if (post(ct, body, body_len, limit))
        check_any(ct, body, body_len);
    free(ct);
}

/* ---- built ---------------------------------------------------------------------------------- */

static const char *const names[] = {"file", "other", "fil", "File"};
static const char *const encodings[] = {NULL,     "binary",           "8bit",  "7bit", "BINARY",
                                        "base64", "quoted-printable", "x-gzip"};

struct part {
    const char *name;
    const char *encoding;
    bool filename, content_type;
    const char *data;
    size_t len;
};

static bool encoding_ok(const char *enc)
{
    return !enc || !strcasecmp(enc, "binary") || !strcasecmp(enc, "8bit") ||
           !strcasecmp(enc, "7bit");
}

/* Whether the delimiter shows in the part's bytes, or in the CRLF that ends its headers and the
 * bytes: the body would then not say what the part holds. */
static bool holds_delimiter(const struct part *p, const char *delim, size_t dlen)
{
    char head[HTTP_BOUNDARY_MAX + 6] = "\r\n";
    size_t n = p->len < dlen ? p->len : dlen;
    memcpy(head + 2, p->data, n);
    return memmem(p->data, p->len, delim, dlen) || memmem(head, n + 2, delim, dlen);
}

/* Input (after the first byte): [boundary length] [as many bytes, mapped to the characters a
 * boundary allows] [flags: bit 0 a quoted boundary with a space inside, bit 1 no closing
 * boundary], then parts of [header: bits 0-1 the name, 2-4 the Content-Transfer-Encoding, 5 a
 * file name, 6 a Content-Type] [length: 2 bytes little-endian, cut to what is left] [bytes]. */
static void run_built(const uint8_t *data, size_t size, uint64_t limit)
{
    if (size < 1)
        return;
    size_t blen = (size_t)data[0] % HTTP_BOUNDARY_MAX + 1, pos = 1;
    if (size < pos + blen + 1)
        return;
    bool quoted = data[pos + blen] & 1, cut = data[pos + blen] & 2;
    char boundary[HTTP_BOUNDARY_MAX + 1];
    for (size_t i = 0; i < blen; i++)
        boundary[i] = BCHARS[data[pos + i] % BCHARS_LEN];
    boundary[blen] = '\0';
    if (quoted && blen > 2)
        boundary[blen / 2] = ' ';
    pos += blen + 1;

    struct part parts[MAX_PARTS];
    size_t nr_parts = 0;
    while (nr_parts < MAX_PARTS && pos + 3 <= size) {
        uint8_t h = data[pos];
        size_t len = (size_t)data[pos + 1] | (size_t)data[pos + 2] << 8;
        pos += 3;
        if (len > size - pos)
            len = size - pos;
        parts[nr_parts++] = (struct part){.name = names[h & 3],
                                          .encoding = encodings[(h >> 2) & 7],
                                          .filename = h & 0x20,
                                          .content_type = h & 0x40,
                                          .data = (const char *)data + pos,
                                          .len = len};
        pos += len;
    }

    char delim[HTTP_BOUNDARY_MAX + 5];
    int dlen = snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
    struct strbuf body = STRBUF_INIT;
    for (size_t i = 0; i < nr_parts; i++) {
        const struct part *p = &parts[i];
        if (holds_delimiter(p, delim, (size_t)dlen)) {
            strbuf_release(&body); /* ambiguous */
            return;
        }
        strbuf_addf(&body, "%s--%s\r\nContent-Disposition: form-data; name=\"%s\"%s\r\n",
                    i ? "\r\n" : "", boundary, p->name,
                    p->filename ? "; filename=\"package.mda\"" : "");
        if (p->content_type)
            strbuf_adds(&body, "Content-Type: application/octet-stream\r\n");
        if (p->encoding)
            strbuf_addf(&body, "Content-Transfer-Encoding: %s\r\n", p->encoding);
        strbuf_adds(&body, "\r\n");
        strbuf_add(&body, p->data, p->len);
    }
    if (!cut)
        strbuf_addf(&body, "%s--%s--\r\n", nr_parts ? "\r\n" : "", boundary);
    if (!strbuf_ok(&body))
        abort();
    char ct[128];
    snprintf(ct, sizeof(ct),
             quoted ? "multipart/form-data; boundary=\"%s\"" : "multipart/form-data; boundary=%s",
             boundary);
    if (!post(ct, body.buf, body.len, limit)) {
        strbuf_release(&body);
        return;
    }
    check_any(ct, body.buf, body.len);
    char err[256];
    if (!http_multipart_content_type_ok(ct, err, sizeof(err))) {
        strbuf_release(&body); /* a boundary of one character: -EINVAL, checked above */
        return;
    }

    /* What the header promises for this body, in the order the reader finds things out. */
    const struct part *first = NULL, *second = NULL;
    for (size_t i = 0; i < nr_parts; i++) {
        if (strcmp(parts[i].name, "file"))
            continue;
        if (!first)
            first = &parts[i];
        else if (!second)
            second = &parts[i];
    }
    int r = result.r;
    const char *why = NULL;
    if (first && first->len && !encoding_ok(first->encoding)) {
        if (r != -EINVAL)
            why = "a part 'file' in another encoding was read";
    } else if (first && first->len > limit) {
        /* a body cut short may end before the sink had too much */
        if (r != -ECANCELED && !(cut && r == -EINVAL))
            why = "the sink did not stop the read";
    } else if (first && first->len && second && second->len) {
        if (r != -EINVAL)
            why = "a second part 'file' was not refused";
    } else if (cut && nr_parts) { /* an empty body has no part 'file': -ENOENT below */
        if (r != -EINVAL && !(r == -ECANCELED && limit != NO_LIMIT))
            why = "a body without its closing boundary was read";
    } else if (!first) {
        if (r != -ENOENT)
            why = "a body without a part 'file' was not -ENOENT";
    } else if (!second && encoding_ok(first->encoding)) {
        if (r != 0 || result.part.len != first->len ||
            memcmp(result.part.buf, first->data, first->len))
            why = "the part 'file' was not read as it was written";
    }
    if (why)
        fail(why, ct, body.buf, body.len);
    strbuf_release(&body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > MAX_INPUT)
        return 0;
    /* bits 1-7 of the first byte: 0-63 no limit, else the sink takes at most (that - 64) * 4 */
    uint64_t limit = data[0] >> 1 < 64 ? NO_LIMIT : (uint64_t)((data[0] >> 1) - 64) * 4;
    if (data[0] & 1)
        run_built(data + 1, size - 1, limit);
    else
        run_raw(data + 1, size - 1, limit);
    return 0;
}
