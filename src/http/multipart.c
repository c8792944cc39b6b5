/* multipart — one part of a spooled multipart/form-data body, through libmicrohttpd's post
 * processor; see multipart.h. */
#include "http/multipart.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <microhttpd.h>
#include "base/banned.h"

#define FORM_DATA "multipart/form-data"
#define READ_BUF  (64 * 1024)

static bool bchar_nospace(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("'()+_,-./:=?", c));
}

bool http_multipart_content_type_ok(const char *ct, char *err, size_t err_cap)
{
    size_t n = strlen(FORM_DATA);
    if (!ct || strncasecmp(ct, FORM_DATA, n) != 0 || (ct[n] && ct[n] != ';' && ct[n] != ' ')) {
        snprintf(err, err_cap, "the request must be multipart/form-data (with a part 'file')");
        return false;
    }
    /* found as libmicrohttpd finds it, so that both read the same boundary */
    const char *b = strstr(ct + n, "boundary=");
    if (!b) {
        snprintf(err, err_cap, "the multipart/form-data Content-Type has no boundary");
        return false;
    }
    b += strlen("boundary=");
    size_t len = strlen(b);
    bool quoted = len >= 2 && b[0] == '"' && b[len - 1] == '"';
    if (quoted) {
        b++;
        len -= 2;
    }
    /* libmicrohttpd (0.9.76, and Debian's 0.9.75 with the fix of CVE-2023-27371) refuses a
     * value of fewer than 2 characters, quotes included: a lone unquoted character, which
     * RFC 2046 allows, must be quoted */
    bool ok = len >= (quoted ? 1 : 2) && len <= HTTP_BOUNDARY_MAX && b[len - 1] != ' ';
    for (size_t i = 0; ok && i < len; i++)
        ok = bchar_nospace(b[i]) || (quoted && b[i] == ' ');
    if (!ok)
        snprintf(err, err_cap,
                 "the multipart boundary must be the last parameter of the Content-Type and "
                 "2 to %d letters, digits or '()+_,-./:=? characters (1 in quotes)",
                 HTTP_BOUNDARY_MAX);
    return ok;
}

struct part_reader {
    const char *name;
    http_part_sink_fn sink;
    void *arg;
    uint64_t size;
    bool found;
    /* why the iterator stopped the post processor */
    enum { PART_OK, PART_TWICE, PART_ENCODING, PART_MALFORMED, PART_SINK } stop;
};

static bool encoding_ok(const char *enc)
{
    return !enc || !strcasecmp(enc, "binary") || !strcasecmp(enc, "8bit") ||
           !strcasecmp(enc, "7bit");
}

static enum MHD_Result on_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *filename, const char *content_type,
                                const char *transfer_encoding, const char *data, uint64_t off,
                                size_t size)
{
    (void)kind;
    (void)filename;
    (void)content_type;
    struct part_reader *pr = cls;
    if (!key || strcmp(key, pr->name) != 0)
        return MHD_YES;
    /* A part starts at offset 0; the first call may carry no bytes (then a second one at 0
     * follows), so a second part is only told apart once the first had bytes. */
    if (off == 0 && pr->size > 0) {
        pr->stop = PART_TWICE;
        return MHD_NO;
    }
    if (off != pr->size) {
        pr->stop = PART_MALFORMED;
        return MHD_NO;
    }
    if (!encoding_ok(transfer_encoding)) {
        pr->stop = PART_ENCODING;
        return MHD_NO;
    }
    pr->found = true;
    if (!size)
        return MHD_YES;
    if (pr->sink(pr->arg, data, size)) {
        pr->stop = PART_SINK;
        return MHD_NO;
    }
    pr->size += size;
    return MHD_YES;
}

int http_multipart_read(struct http_request *req, const char *name, http_part_sink_fn sink,
                        void *arg, uint64_t *size, char *err, size_t err_cap)
{
    struct part_reader pr = {.name = name, .sink = sink, .arg = arg};
    struct MHD_PostProcessor *pp = NULL;
    char *buf = NULL;
    int r = -EINVAL;
    if (!http_multipart_content_type_ok(http_header(req, "Content-Type"), err, err_cap))
        return -EINVAL;
    if (req->body_fd < 0) {
        snprintf(err, err_cap, "the request has no body");
        return -EINVAL;
    }
    r = -ENOMEM;
    if (!(buf = malloc(READ_BUF)) ||
        !(pp = MHD_create_post_processor(req->conn, HTTP_MULTIPART_BUFFER, on_value, &pr))) {
        snprintf(err, err_cap, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t n = read(req->body_fd, buf, READ_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -EIO;
            snprintf(err, err_cap, "cannot read the spooled request: %s", strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        if (MHD_post_process(pp, buf, (size_t)n) != MHD_YES) {
            r = pr.stop == PART_SINK ? -ECANCELED : -EINVAL;
            if (pr.stop == PART_SINK)
                snprintf(err, err_cap, "the part '%s' was not taken", name);
            else if (pr.stop == PART_TWICE)
                snprintf(err, err_cap, "the request has more than one part '%s'", name);
            else if (pr.stop == PART_ENCODING)
                snprintf(err, err_cap,
                         "the part '%s' has a Content-Transfer-Encoding other than binary", name);
            else
                snprintf(err, err_cap, "the multipart body is malformed");
            goto out;
        }
    }
    enum MHD_Result done = MHD_destroy_post_processor(pp);
    pp = NULL;
    if (done != MHD_YES) {
        r = -EINVAL;
        snprintf(err, err_cap,
                 "the multipart body is incomplete: it does not end with the "
                 "closing boundary");
        goto out;
    }
    if (!pr.found) {
        r = -ENOENT;
        snprintf(err, err_cap, "the request has no part '%s'", name);
        goto out;
    }
    if (size)
        *size = pr.size;
    r = 0;
out:
    if (pp)
        MHD_destroy_post_processor(pp);
    free(buf);
    return r;
}
