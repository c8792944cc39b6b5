/* multipart — reads one named part of a spooled multipart/form-data request body (RFC 7578),
 * streaming it to the caller in chunks: neither the body nor the part is ever held in memory.
 *
 * The parsing is libmicrohttpd's post processor, fed from the request's spool file
 * (req->body_fd); this file adds what it leaves out: the Content-Type and its boundary are
 * checked first (libmicrohttpd 0.9.75 reads out of bounds on a boundary of a lone '"',
 * CVE-2023-27371), a body that does not end with the closing boundary is an error, and so are a
 * second part of the same name and a Content-Transfer-Encoding other than binary, 7bit or 8bit.
 * Memory is bounded by the post processor's buffer (HTTP_MULTIPART_BUFFER): a part header line
 * longer than that is an error. Parts of other names are read and dropped.
 * It knows nothing of packages; only http/ and api/ use it.
 */
#ifndef SLIPWAY_HTTP_MULTIPART_H
#define SLIPWAY_HTTP_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

#define HTTP_MULTIPART_BUFFER (64 * 1024)
#define HTTP_BOUNDARY_MAX     70 /* RFC 2046 */

/* Receives the next len (> 0) bytes of the part. 0 to go on, or a negative code to stop (the
 * caller keeps its own reason; http_multipart_read then returns -ECANCELED). */
typedef int (*http_part_sink_fn)(void *arg, const void *data, size_t len);

/* Whether a Content-Type header value is multipart/form-data with a boundary that
 * libmicrohttpd will read as it is meant: the boundary is the last parameter, 1 to 70 of the
 * characters RFC 2046 allows (not ending in a space), quoted or not, but at least 2 unquoted
 * (libmicrohttpd refuses one). On false, err says why. */
bool http_multipart_content_type_ok(const char *content_type, char *err, size_t err_cap);

/* Reads the spooled body of req (HTTP_ROUTE_SPOOL; from offset 0) as multipart/form-data and
 * gives the bytes of the part called `name` to sink, in order. *size (when not NULL) receives
 * the part's size on success.
 * Returns 0; -EINVAL when the body is not multipart/form-data or is malformed (err says why,
 * naming nothing secret); -ENOENT when there is no part called `name`; -ECANCELED when the sink
 * stopped; -EIO when the spool file cannot be read; -ENOMEM. */
int http_multipart_read(struct http_request *req, const char *name, http_part_sink_fn sink,
                        void *arg, uint64_t *size, char *err, size_t err_cap);

#endif
