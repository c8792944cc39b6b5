"""GET /metrics: the server's counters in the Prometheus text format, for administrators only."""

import re

import requests

from conftest import assert_error, raw_http, wait_for

LINE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"\})? [0-9]+(\.[0-9]+)?$')


def test_metrics_needs_an_admin(sw):
    dev = sw.new_user("metnosy")
    assert_error(sw.get("/metrics"), 401)
    assert_error(sw.get("/metrics", dev), 403, "NO_ACCESS")
    assert_error(sw.get("/metrics", dev, via="token"), 403, "NO_ACCESS")
    # an admin's token with the scope slipway:admin works too (what a Prometheus scrape config
    # sends); without the scope it does not
    for scopes, status in (("slipway:admin", 200), ("mx:deployment:read", 403)):
        token = sw.new_token(sw.admin.email, scopes)
        r = requests.get(sw.base + "/metrics", headers={"Authorization": f"MxToken {token}"},
                         timeout=30)
        assert r.status_code == status, r.text[:300]


def test_metrics_format(sw):
    r = sw.get("/metrics", sw.admin)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = set()
    for ln in r.text.splitlines():
        if ln.startswith("# TYPE "):
            names.add(ln.split()[2])
            continue
        if ln.startswith("# HELP "):
            continue
        assert LINE.match(ln), ln
    assert {"slipway_http_responses_total", "slipway_http_unrouted_requests_total",
            "slipway_audit_unrecorded_requests_total", "process_start_time_seconds"} <= names
    m = sw.metrics()
    for reason in ("unrouted", "anonymous", "failed_login_rate"):
        assert f'slipway_audit_unrecorded_requests_total{{reason="{reason}"}}' in m
    assert m['slipway_http_responses_total{code="2xx"}'] >= 1


def test_unrouted_requests_of_any_method_are_counted(sw):
    before = sw.metrics()
    for method in ("GET", "POST", "DELETE"):
        assert_error(sw.request(method, "/no/such/endpoint"), 404)
    assert_error(sw.request("PUT", "/api/slipway/users"), 405)
    status, _, _ = raw_http(sw.server.port, b"POST /x\xff\xfe HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    assert status == 400
    key = "slipway_http_unrouted_requests_total"
    # (a request is counted once it completes, which can trail the answer slightly)
    after = wait_for(lambda: (lambda m: m if m[key] >= before[key] + 5 else None)(sw.metrics()),
                     10, what="the unrouted requests to be counted")
    assert after[key] == before[key] + 5
    unrecorded = 'slipway_audit_unrecorded_requests_total{reason="unrouted"}'
    assert after[unrecorded] == before[unrecorded] + 4  # the GET is not a mutating request
    assert after['slipway_http_responses_total{code="4xx"}'] >= \
        before['slipway_http_responses_total{code="4xx"}'] + 5
