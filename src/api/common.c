/* api — shared helpers: error bodies per surface, JSON answers, authentication, lenient bodies,
 * audit. */
#include "api/api_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "base/util.h"
#include "base/banned.h"

struct api_config api_cfg;

static bool is_v4(const struct http_request *req)
{
    return str_has_prefix(req->raw_path, "/api/v4/") || strcmp(req->raw_path, "/api/v4") == 0;
}

static bool is_repository(const struct http_request *req)
{
    return str_has_prefix(req->raw_path, "/v1/");
}

/* The error body of the request's surface; invalid (taken, may be NULL) is the v4 body's
 * "invalid-params" (other surfaces have no place for it). */
static void error_body(const struct http_request *req, struct http_response *res, int status,
                       const char *code, const char *message, json_t *invalid)
{
    json_t *j;
    char rs[16];
    /* Messages quote what the client sent (path segments, names), cut to a length that may
     * split a character: lossy, so that jansson never refuses the body (which answered 500). */
    json_t *msg = api_text(message);
    if (is_v4(req)) {
        if (!invalid && status == 401) /* as Mendix's v4 names what is missing */
            invalid =
                json_pack("[{s:s,s:o}]", "name", "Authentication", "reason", api_text(message));
        j = json_pack("{s:{s:i,s:o,s:o}}", "error", "code", status, "message", msg,
                      "invalid-params", invalid ? invalid : json_array());
    } else {
        json_decref(invalid);
        if (is_repository(req)) { /* the App Repository API's codes are RS<status> */
            snprintf(rs, sizeof(rs), "RS%d", status);
            code = rs;
        }
        j = json_pack("{s:s,s:o}", "errorCode", code, "errorMessage", msg);
    }
    api_json(res, status, j);
}

void api_error_body(const struct http_request *req, struct http_response *res, int status,
                    const char *code, const char *message)
{
    error_body(req, res, status, code, message, NULL);
}

int api_fail(const struct http_request *req, struct http_response *res, int status,
             const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    error_body(req, res, status, code, msg, NULL);
    return -1;
}

int api_fail_params(const struct http_request *req, struct http_response *res, int status,
                    json_t *invalid, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    error_body(req, res, status, "INVALID_PARAMETERS", msg, invalid);
    return -1;
}

static int dump_to_strbuf(const char *buf, size_t len, void *data)
{
    strbuf_add(data, buf, len);
    return 0;
}

void api_json(struct http_response *res, int status, json_t *json)
{
    res->status = status;
    strbuf_reset(&res->body);
    if (!json || json_dump_callback(json, dump_to_strbuf, &res->body, JSON_COMPACT) != 0)
        res->body.failed = true;
    json_decref(json);
}

int api_authenticate(struct http_request *req, struct http_response *res, unsigned kinds,
                     struct auth_principal *p)
{
    const char *user = http_header(req, "Mendix-Username");
    const char *key = http_header(req, "Mendix-ApiKey");
    const char *authz = http_header(req, "Authorization");
    int r = -EACCES;
    bool presented = false;

    if ((kinds & API_AUTH_APIKEY) && (user || key)) {
        presented = true;
        r = auth_check_apikey(user, key, p);
    } else if ((kinds & API_AUTH_TOKEN) && authz && strncasecmp(authz, "MxToken ", 8) == 0) {
        presented = true;
        const char *t = authz + 8;
        while (*t == ' ')
            t++;
        r = auth_check_token(t, p);
    }
    if (r == 0) {
        snprintf(req->user, sizeof(req->user), "%s", p->user.email);
        return 0;
    }
    if (!presented)
        return api_fail(req, res, 401, "UNAUTHORIZED",
                        (kinds & API_AUTH_APIKEY)
                            ? "authentication needed: send Mendix-Username and Mendix-ApiKey, "
                              "or Authorization: MxToken <token>"
                            : "authentication needed: send Authorization: MxToken <token>");
    return api_fail(req, res, 401, "UNAUTHORIZED", "invalid credentials");
}

json_t *api_parse_body(const char *body, size_t len, char *err, size_t err_len)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i == len)
        return json_object();
    json_error_t e;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        snprintf(err, err_len, "the request body is not valid JSON: %s", e.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, err_len, "the request body must be a JSON object");
        return NULL;
    }
    return j;
}

json_t *api_body_object(const struct http_request *req, struct http_response *res)
{
    char err[256];
    json_t *j = api_parse_body(req->body, req->body_len, err, sizeof(err));
    if (!j)
        api_fail(req, res, 400, "INVALID_PARAMETERS", "%s", err);
    return j;
}

json_t *api_text(const char *s)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_add_utf8_lossy(&sb, s);
    json_t *j = strbuf_ok(&sb) ? json_stringn(sb.buf, sb.len) : NULL;
    strbuf_release(&sb);
    return j;
}

json_t *api_commit_message(const char *msg)
{
    struct strbuf sb = STRBUF_INIT;
    strbuf_add_utf8_lossy(&sb, msg);
    while (sb.len && (sb.buf[sb.len - 1] == '\n' || sb.buf[sb.len - 1] == '\r'))
        sb.buf[--sb.len] = '\0';
    json_t *j = strbuf_ok(&sb) ? json_stringn(sb.buf, sb.len) : NULL;
    strbuf_release(&sb);
    return j;
}

const char *api_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* Whether the request carried credentials of any kind (API key headers, MxToken, Basic). */
static bool credentials_presented(const struct http_request *req)
{
    return http_header(req, "Mendix-Username") || http_header(req, "Mendix-ApiKey") ||
           http_header(req, "Authorization");
}

/* Which refused requests may have an audit entry: no client may grow the log by sending
 * requests. Nothing ran for one that matched no route, nor for one without credentials:
 * those are counted (GET /metrics). Refused credentials are itemized within a budget. */
static bool itemize_unauthenticated(const struct http_request *req)
{
    if (!http_request_routed(req)) {
        api_metrics_unaudited(API_UNAUDITED_UNROUTED);
        return false;
    }
    if (!credentials_presented(req)) {
        api_metrics_unaudited(API_UNAUDITED_ANONYMOUS);
        return false;
    }
    uint64_t counted = 0;
    int64_t since_ms = 0;
    bool itemize = api_failed_login_budget(&counted, &since_ms);
    if (counted) {
        char when[21], detail[160];
        time_rfc3339(since_ms / 1000, when);
        snprintf(detail, sizeof(detail),
                 "%llu more in the minute from %s were counted, not itemized (the budget is %d)",
                 (unsigned long long)counted, when, API_FAILED_LOGINS_PER_MINUTE);
        if (store_audit_append("anonymous", "unauthenticated requests", "", "", "", "error",
                               detail))
            log_error("cannot write the audit log entry for unauthenticated requests");
    }
    return itemize;
}

void api_request_completed(const struct http_request *req, int status)
{
    api_metrics_request(status, http_request_routed(req));
    if (req->recorded || !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD") ||
        !strcmp(req->method, "OPTIONS"))
        return;
    if (!req->user[0] && !itemize_unauthenticated(req))
        return;
    char action[300];
    snprintf(action, sizeof(action), "%s %.256s", req->method, req->raw_path);
    char result[32];
    snprintf(result, sizeof(result), "%s %d", status < 400 ? "ok" : "error", status);
    if (store_audit_append(req->user[0] ? req->user : "anonymous", action, "", "", req->remote_addr,
                           result, ""))
        log_error("cannot write the audit log entry for '%s'", action);
}

void api_audit(struct http_request *req, const char *actor, const char *action, const char *app,
               const char *env, int status, const char *detail)
{
    char result[32];
    snprintf(result, sizeof(result), "%s %d", status < 400 ? "ok" : "error", status);
    if (store_audit_append(actor, action, app, env, req->remote_addr, result, detail))
        log_error("cannot write the audit log entry for '%s'", action);
    req->recorded = true;
}

/* The base URL: set once, never changed nor freed while the process runs (requests read it
 * without a lock). */
static char public_url[API_PUBLIC_URL_MAX];

int api_init(const struct api_config *cfg)
{
    api_cfg.threads = cfg->threads;
    api_cfg.public_url = public_url;
    api_metrics_init();
    if (cfg->public_url) {
        int r = api_set_public_url(cfg->public_url);
        if (r && r != -EALREADY) {
            log_error("the public URL must be 1 to %d bytes", API_PUBLIC_URL_MAX - 1);
            return r;
        }
    }
    int r = api_routes_init();
    return r ? r : api_git_init();
}

void api_shutdown(void)
{
    api_git_shutdown();
    api_routes_release();
    api_cfg.threads = 0;
}

int api_set_public_url(const char *url)
{
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    if (public_url[0])
        return -EALREADY;
    if (!n || n >= sizeof(public_url))
        return -EINVAL;
    memcpy(public_url, url, n);
    public_url[n] = '\0';
    return 0;
}

const char *api_public_url(void)
{
    return public_url;
}
