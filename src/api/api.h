/* api — every HTTP surface of Slipway: the Mendix-compatible Team Server API (/api/1), the App
 * Repository API (/v1/repositories), Slipway's own API (/api/slipway, /healthz) and git smart
 * HTTP (/git/<AppId>.git). This is the only module where HTTP meets the domain: it authenticates,
 * authorizes, validates and turns domain results and errors into answers.
 */
#ifndef SLIPWAY_API_H
#define SLIPWAY_API_H

#include <stddef.h>

#include "http/http.h"

/* Paths under the data directory come from base/layout (layout_init() before api_init()). */
struct api_config {
    const char *public_url; /* e.g. "http://127.0.0.1:8080"; NULL: set later, see below */
    unsigned threads;       /* the HTTP worker threads (named in the followers' limit) */
};

/* Prepares the API (copies the config, finds `git`). 0, or -errno with the reason logged. */
int api_init(const struct api_config *cfg);
void api_shutdown(void);
/* Kills the git processes of requests in progress (a push is then audited as interrupted), so
 * that http_server_stop can join the workers they block (followed build logs end in
 * http_server_stop itself). Call it before http_server_stop. */
void api_stop_streams(void);
#define API_PUBLIC_URL_MAX 512
/* Sets the base URL (trailing slashes dropped), once: from api_config.public_url, or when the
 * listening port is known, before the server accepts its first request (http_config.bound).
 * It never changes after, since requests read it without a lock. 0, -EALREADY (it is set: the
 * URL stays what it was), -EINVAL (empty, or API_PUBLIC_URL_MAX bytes or longer). */
int api_set_public_url(const char *url);
/* The base URL ("" until set). */
const char *api_public_url(void);
/* The route table to give to http_server_start. */
const struct http_route *api_routes(size_t *nr);
/* To give to http_server_start as `admit`: the route table's access check, before a spooled body
 * is read (dispatch checks again once it is in). */
int api_admit(struct http_request *req, struct http_response *res);
/* The route table with the access each route needs, as JSON text (an array of {method, pattern,
 * query, auth, scopes, target, role, rights, admin}); what `slipway routes` prints. Caller frees;
 * NULL when out of memory. Needs no api_init. */
char *api_routes_describe(void);
/* The error-body formatter to give to http_server_start. The message may hold any bytes (it
 * quotes what clients send): those that are not UTF-8 become U+FFFD. */
void api_error_body(const struct http_request *req, struct http_response *res, int status,
                    const char *code, const char *message);

/* To give to http_server_start as `completed`: counts every request (GET /metrics) and audits
 * every mutating request (POST, PUT, PATCH, DELETE) that its handler did not audit itself,
 * refused ones included, except what would let any client grow the log: a request that matched
 * no route, or presented no credentials, is counted instead; one whose credentials were refused
 * is audited up to API_FAILED_LOGINS_PER_MINUTE a minute, the rest counted and summed up. */
void api_request_completed(const struct http_request *req, int status);

#endif
