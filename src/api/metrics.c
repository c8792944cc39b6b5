/* api — the server's counters, kept in memory (they start at zero with each process), in the
 * Prometheus text format for GET /metrics; and the budget of audit entries for refused
 * credentials. It holds no secrets and no per-client state, so no client can grow it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "api/api_int.h"
#include "base/util.h"
#include "base/banned.h"

#define FAILED_LOGIN_WINDOW_MS 60000

static atomic_uint_fast64_t responses[6]; /* by status class: 1xx..5xx, and anything else */
static atomic_uint_fast64_t unrouted;
static atomic_uint_fast64_t unaudited[API_UNAUDITED_NR];
static int64_t started_ms;

static pthread_mutex_t budget_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t window_start_ms;
static unsigned window_itemized;
static uint64_t window_counted;

void api_metrics_init(void)
{
    started_ms = time_now_ms();
}

void api_metrics_request(int status, bool routed)
{
    int class = status / 100;
    atomic_fetch_add(&responses[class >= 1 && class <= 5 ? class - 1 : 5], 1);
    if (!routed)
        atomic_fetch_add(&unrouted, 1);
}

void api_metrics_unaudited(enum api_unaudited why)
{
    atomic_fetch_add(&unaudited[why], 1);
}

bool api_failed_login_budget(uint64_t *counted_before, int64_t *since_ms)
{
    int64_t now = time_now_ms();
    pthread_mutex_lock(&budget_lock);
    *counted_before = 0;
    if (now - window_start_ms >= FAILED_LOGIN_WINDOW_MS || now < window_start_ms) {
        *counted_before = window_counted;
        *since_ms = window_start_ms;
        window_start_ms = now;
        window_itemized = 0;
        window_counted = 0;
    }
    bool itemize = window_itemized < API_FAILED_LOGINS_PER_MINUTE;
    if (itemize)
        window_itemized++;
    else
        window_counted++;
    pthread_mutex_unlock(&budget_lock);
    if (!itemize)
        api_metrics_unaudited(API_UNAUDITED_FAILED_LOGIN_RATE);
    return itemize;
}

static void counter(struct strbuf *out, const char *name, const char *help)
{
    strbuf_addf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
}

void api_metrics_text(struct strbuf *out)
{
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
    static const char *const reasons[] = {"unrouted", "anonymous", "failed_login_rate"};
    counter(out, "slipway_http_responses_total",
            "Requests answered, by status class (4xx includes 499: the client went away).");
    for (int i = 0; i < 6; i++)
        strbuf_addf(out, "slipway_http_responses_total{code=\"%s\"} %llu\n", classes[i],
                    (unsigned long long)atomic_load(&responses[i]));
    counter(out, "slipway_http_unrouted_requests_total",
            "Requests of any method that matched no route (answered 404, 405 or 400).");
    strbuf_addf(out, "slipway_http_unrouted_requests_total %llu\n",
                (unsigned long long)atomic_load(&unrouted));
    counter(out, "slipway_audit_unrecorded_requests_total",
            "Mutating requests counted here instead of written to the audit log, by reason.");
    for (int i = 0; i < API_UNAUDITED_NR; i++)
        strbuf_addf(out, "slipway_audit_unrecorded_requests_total{reason=\"%s\"} %llu\n",
                    reasons[i], (unsigned long long)atomic_load(&unaudited[i]));
    strbuf_addf(out,
                "# HELP process_start_time_seconds Start time of the process since the epoch.\n"
                "# TYPE process_start_time_seconds gauge\n"
                "process_start_time_seconds %lld.%03lld\n",
                (long long)(started_ms / 1000), (long long)(started_ms % 1000));
}
