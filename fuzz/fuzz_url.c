/* libFuzzer driver for base/url and the answers built on it.
 *
 * 1. url_path_parse on the input as a C string, url_decode on the raw bytes in both '+' modes,
 *    and url_query_get. Each result is checked against an independent oracle (split on '/',
 *    drop empty segments, decode each); any disagreement abort()s.
 * 2. The input as a request target, sent to a real server in this process (http + api over a
 *    temp data dir holding an admin with an API key and a token, and an app "app1" with its
 *    repository), so that routing, authentication, lookups and error bodies all run: no path may
 *    be answered 500, and every JSON body must parse (jansson refuses bytes that are not UTF-8).
 *    An input starting with a byte below 0x20 uses it to choose the method (bits 0-1: GET,
 *    POST, DELETE, PUT) and the credentials (bits 2-3: API key, MxToken, Basic, none); others
 *    are GETs with the API key. Bytes the request line cannot carry (controls, space, DEL) are
 *    sent percent-encoded, and a target that does not start with '/' gets one.
 */
#include "admin/admin.h"
#include "api/api.h"
#include "auth/auth.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "base/strbuf.h"
#include "base/url.h"
#include "base/util.h"
#include "http/http.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_INPUT 4096

/* What url_path_parse must return for s, computed with url_decode alone. */
static int oracle_path(const char *s, size_t *nr_seg)
{
    *nr_seg = 0;
    if (s[0] != '/')
        return -EINVAL;
    char out[MAX_INPUT + 1];
    for (const char *p = s; *p;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *end = strchrnul(p, '/');
        if (*nr_seg == URL_MAX_SEGMENTS)
            return -E2BIG;
        if (url_decode(p, (size_t)(end - p), out, 0) < 0)
            return -EINVAL;
        (*nr_seg)++;
        p = end;
    }
    return 0;
}

static void check_path(const char *s)
{
    size_t in_len = strlen(s), want_nr;
    int want = oracle_path(s, &want_nr);
    struct url_path p;
    p.nr_seg = 12345;
    int r = url_path_parse(s, &p);
    if (r == -ENOMEM)
        return;
    if (r != want)
        abort();
    if (r) {
        if (p.nr_seg != 0) /* "on error nothing needs releasing" */
            abort();
        return;
    }
    if (p.nr_seg != want_nr || p.nr_seg > URL_MAX_SEGMENTS)
        abort();
    /* Re-split and compare each segment with its own decoding: equal bytes, no NUL inside
     * (the decoded length equals strlen), never empty, never longer than the input. */
    char out[MAX_INPUT + 1];
    const char *q = s;
    size_t total = 0;
    for (size_t i = 0; i < p.nr_seg; i++) {
        while (*q == '/')
            q++;
        const char *end = strchrnul(q, '/');
        long n = url_decode(q, (size_t)(end - q), out, 0);
        size_t seg_len = strlen(p.seg[i]);
        if (n <= 0 || (size_t)n != seg_len || memcmp(out, p.seg[i], seg_len) != 0)
            abort();
        if (seg_len > (size_t)(end - q))
            abort();
        total += seg_len;
        q = end;
    }
    if (total > in_len)
        abort();
    url_path_release(&p);
    if (p.nr_seg != 0)
        abort();
}

static void check_decode(const uint8_t *data, size_t size)
{
    /* Exact-size copies: ASan flags any read past `size` or write past size + 1. */
    char *in = malloc(size ? size : 1), *out0 = malloc(size + 1), *out1 = malloc(size + 1);
    if (!in || !out0 || !out1)
        goto out;
    memcpy(in, data, size);
    long n0 = url_decode(in, size, out0, 0);
    long n1 = url_decode(in, size, out1, 1);
    if ((n0 < 0) != (n1 < 0)) /* '+' handling never changes validity */
        abort();
    if (n0 < 0) {
        if (n0 != -EINVAL || n1 != -EINVAL)
            abort();
        goto out;
    }
    size_t percents = 0;
    for (size_t i = 0; i < size; i++)
        percents += in[i] == '%';
    /* Every '%' starts a valid 3-byte escape, everything else is one byte. */
    if (n0 != n1 || (size_t)n0 != size - 2 * percents)
        abort();
    if (out0[n0] != '\0' || out1[n1] != '\0' || memchr(out0, '\0', (size_t)n0))
        abort();
    for (long i = 0; i < n0; i++)
        if (out0[i] != out1[i] && !(out0[i] == '+' && out1[i] == ' '))
            abort();
out:
    free(in);
    free(out0);
    free(out1);
}

static void check_query(const char *s)
{
    static const char *const names[] = {"limit", "service", "cursor", "q", "a", ""};
    size_t in_len = strlen(s);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *v = url_query_get(s, names[i]);
        if (v && strlen(v) > in_len)
            abort();
        free(v);
    }
}

/* ---- the server ------------------------------------------------------------------------ */

static char data_dir[64];
static struct http_server *server;
static unsigned port;
static char *api_key, *token, *basic;

static void cleanup(void)
{
    api_stop_streams();
    http_server_stop(server);
    api_shutdown();
    store_thread_release();
    free(api_key);
    free(token);
    free(basic);
    if (data_dir[0])
        fs_remove_tree(data_dir);
}

static void start_server(void)
{
    static const char admin_email[] = "admin@localhost";
    struct admin_actor a = {"fuzz", "local"};
    struct admin_error err;
    struct store_user u;
    struct store_app app;
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_ERROR); /* no line per request */
    snprintf(data_dir, sizeof(data_dir), "/tmp/slipway-fuzz-url-XXXXXX");
    if (!mkdtemp(data_dir) || crypto_init())
        abort();
    atexit(cleanup);
    if (layout_init(data_dir) || layout_prepare(NULL) || layout_secret_load() ||
        store_init(layout_db_path()))
        abort();
    if (admin_user_add(&a, admin_email, "Admin", true, &u, &err) ||
        admin_apikey_add(&a, admin_email, &api_key, &err) ||
        admin_token_add(&a, admin_email, AUTH_SCOPE_REPO_READ, &token, &err) ||
        admin_app_add(&a, "app1", "App 1", &app, &err))
        abort();
    /* Basic: standard base64 of "email:key" (base64url with its two letters swapped back) */
    char plain[256];
    int n = snprintf(plain, sizeof(plain), "%s:%s", admin_email, api_key);
    basic = malloc(4 * ((size_t)n + 2) / 3 + 1);
    if (n <= 0 || (size_t)n >= sizeof(plain) || !basic)
        abort();
    crypto_base64url((const unsigned char *)plain, (size_t)n, basic);
    for (char *c = basic; *c; c++)
        *c = *c == '-' ? '+' : *c == '_' ? '/' : *c;

    struct api_config ac = {.public_url = "http://127.0.0.1", .threads = 2};
    if (api_init(&ac))
        abort();
    size_t nr_routes;
    const struct http_route *routes = api_routes(&nr_routes);
    struct http_config hc = {.host = "127.0.0.1",
                             .port = 0,
                             .threads = 2,
                             .max_body = 1 << 20,
                             .max_spool = 1 << 20,
                             .max_upload = 1 << 20,
                             .spool_dir = layout_tmp_dir(),
                             .error = api_error_body,
                             .completed = api_request_completed,
                             .routes = routes,
                             .nr_routes = nr_routes};
    if (http_server_start(&hc, &server))
        abort();
    port = http_server_port(server);
}

static void fail(const char *why, const struct strbuf *request, const char *answer)
{
    fprintf(stderr, "fuzz_url: %s\n--- request\n%s--- answer\n%.2000s\n", why, request->buf,
            answer);
    abort();
}

/* Sends the request and reads the answer until the server closes; NULL when the connection
 * itself failed (the caller skips the input). */
static char *exchange(const struct strbuf *request, size_t *len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct strbuf answer = STRBUF_INIT;
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        fd_write_all(fd, request->buf, request->len) < 0) {
        close(fd);
        return NULL;
    }
    char buf[16384];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        strbuf_add(&answer, buf, (size_t)n);
    close(fd);
    return strbuf_detach(&answer, len);
}

static void check_answer(const char *target, size_t target_len, uint8_t selector)
{
    static const char *const methods[] = {"GET", "POST", "DELETE", "PUT"};
    static const char hex[] = "0123456789ABCDEF";
    struct strbuf req = STRBUF_INIT;
    strbuf_addf(&req, "%s ", methods[selector & 3]);
    if (target_len == 0 || target[0] != '/')
        strbuf_addch(&req, '/');
    for (size_t i = 0; i < target_len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c <= 0x20 || c == 0x7f) {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            strbuf_add(&req, esc, 3);
        } else {
            strbuf_addch(&req, (char)c);
        }
    }
    strbuf_adds(&req, " HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\nContent-Length: 0\r\n");
    switch ((selector >> 2) & 3) {
    case 0:
        strbuf_addf(&req, "Mendix-Username: admin@localhost\r\nMendix-ApiKey: %s\r\n", api_key);
        break;
    case 1:
        strbuf_addf(&req, "Authorization: MxToken %s\r\n", token);
        break;
    case 2:
        strbuf_addf(&req, "Authorization: Basic %s\r\n", basic);
        break;
    default:
        break;
    }
    strbuf_adds(&req, "\r\n");
    if (!strbuf_ok(&req))
        abort();
    size_t len = 0;
    char *answer = exchange(&req, &len);
    if (!answer) {
        strbuf_release(&req);
        return;
    }
    int status = 0;
    if (sscanf(answer, "HTTP/1.%*c %3d", &status) != 1)
        fail("no status line", &req, answer);
    if (status == 500)
        fail("answered 500", &req, answer);
    char *body = strstr(answer, "\r\n\r\n");
    if (status >= 400 && body && strcasestr(answer, "\r\nContent-Type: application/json")) {
        body += 4;
        json_error_t e;
        json_t *j = json_loadb(body, len - (size_t)(body - answer), 0, &e);
        if (!j)
            fail("the JSON error body does not parse", &req, answer);
        json_decref(j);
    }
    free(answer);
    strbuf_release(&req);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    start_server();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_path(s);
    check_decode(data, size);
    /* A request target: the path before '?', the query after it, as the HTTP layer splits it. */
    char *qmark = strchr(s, '?');
    if (qmark) {
        *qmark = '\0';
        check_path(s);
        check_query(qmark + 1);
    } else {
        check_query(s);
    }
    free(s);
    /* the same input as a request target; a leading control byte chooses method and credentials */
    if (size && data[0] < 0x20)
        check_answer((const char *)data + 1, size - 1, data[0]);
    else
        check_answer((const char *)data, size, 0);
    return 0;
}
