"""The server process: readiness, help texts, error answers, shutdown, the request log."""

import json
import os
import re
import signal
import socket
import subprocess

import pytest
import requests

from conftest import (BIN, Slipway, assert_error, assert_ok, raw_http, unique, unique_email)

READY = re.compile(r"^slipway: listening on http://127\.0\.0\.1:\d+$", re.M)


def test_readiness_line_exactly_once_on_piped_stdout(server_factory):
    srv = server_factory()
    assert srv.proc.poll() is None
    assert srv.stop() == 0
    # stdout was a pipe all along: the line must come once, flushed, never duplicated
    assert len(READY.findall(srv.stdout)) == 1, srv.stdout
    # the first-start banner comes before it and names the admin and its key
    assert "admin@localhost" in srv.stdout_before_ready
    assert srv.admin_key and len(srv.admin_key) >= 32
    assert "listening" not in srv.stdout_after


def test_healthz_without_auth(sw):
    r = sw.get("/healthz")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"status": "ok"}


@pytest.mark.parametrize("args, words", [
    ([], ["serve", "admin", "--help", "--version"]),
    (["serve"], ["--data", "--listen", "--public-url", "--threads", "--max-body", "--max-push",
                 "--admin-email", "--max-connections", "--max-connections-per-ip",
                 "--header-timeout", "--help"]),
    (["admin"], ["--data", "--help", "--email", "--name", "--admin", "--id", "--scopes",
                 "--app", "--role", "--env", "--rights", "user add", "user list", "apikey add",
                 "apikey revoke", "token add", "token revoke", "app add", "app list",
                 "member add", "member list", "grant", "revoke"]),
], ids=["slipway", "serve", "admin"])
def test_help_mentions_every_option(args, words):
    for flag in ("--help", "-h"):
        p = subprocess.run([BIN, *args, flag], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("usage: slipway"), p.stdout
        for w in words:
            assert w in p.stdout, f"'slipway {' '.join(args)} {flag}' does not mention {w}"


def test_unknown_command_exits_2():
    p = subprocess.run([BIN, "frobnicate"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert "unknown command" in p.stderr and "frobnicate" in p.stderr
    p = subprocess.run([BIN], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2


def test_version():
    p = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and re.match(r"^slipway \d+\.\d+\.\d+", p.stdout)


@pytest.mark.parametrize("path", ["/nope", "/api/1/nope", "/api/slipway/nope", "/v1/nope",
                                  "/api/1/apps/x/branches-nope"])
def test_unknown_path_is_404_json(sw, path):
    assert_error(sw.get(path, sw.admin), 404)


@pytest.mark.parametrize("method, path", [("DELETE", "/api/1/apps"), ("PUT", "/api/1/apps"),
                                          ("POST", "/healthz"), ("DELETE", "/api/slipway/users")])
def test_wrong_method_is_405_json(sw, method, path):
    assert_error(sw.request(method, path, sw.admin), 405, "METHOD_NOT_ALLOWED")


def test_405_names_the_allowed_methods(sw):
    """RFC 9110 15.5.6: a 405 answer MUST carry an Allow header with the path's methods."""
    for method, path, allowed in [("DELETE", "/api/1/apps", {"GET"}),
                                  ("PUT", "/api/slipway/users", {"GET", "POST"}),
                                  ("GET", "/api/slipway/users/a%40b.c/apikeys", {"POST"})]:
        r = sw.request(method, path, sw.admin)
        assert_error(r, 405, "METHOD_NOT_ALLOWED")
        assert "Allow" in r.headers, f"{method} {path}: no Allow header in the 405 answer"
        got = {m.strip().upper() for m in r.headers["Allow"].split(",") if m.strip()}
        assert allowed <= got and method not in got, (method, path, r.headers["Allow"])


def test_body_too_large_is_413_json(sw):
    # a real body of more than 1 MiB, with its Content-Length
    body = b'{"email":"' + b"x" * (1 << 20) + b'@example.com","name":"big"}'
    assert_error(sw.post("/api/slipway/users", sw.admin, data=body,
                         headers={"Content-Type": "application/json"}), 413)

    # the same without a Content-Length (chunked): the server must stop at its limit
    def chunks():
        for _ in range(12):
            yield b" " * 100_000
    assert_error(sw.post("/api/slipway/users", sw.admin, data=chunks(),
                         headers={"Content-Type": "application/json"}), 413)
    # nothing was created
    emails = [u["email"] for u in assert_ok(sw.get("/api/slipway/users", sw.admin))]
    assert not any("xxxxxxxx" in e for e in emails)


def test_huge_content_length_is_413_at_once(sw):
    """A Content-Length of 5 GB is refused before any body byte is sent."""
    head = (f"POST /api/slipway/users HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Mendix-Username: {sw.admin.email}\r\nMendix-ApiKey: {sw.admin.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 5000000000\r\n\r\n")
    status, headers, body = raw_http(sw.server.port, head.encode())
    assert status == 413
    assert headers["content-type"].startswith("application/json")
    j = json.loads(body)
    assert j["errorCode"] == "REQUEST_TOO_LARGE" and j["errorMessage"]


@pytest.mark.parametrize("path", ["/api/1/apps/%00", "/api/1/apps/%zz", "/api/1/apps/%4",
                                  "/a" * 40, "relative/path"])
def test_malformed_request_path_is_400_json(sw, path):
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nMendix-Username: {sw.admin.email}\r\n"
           f"Mendix-ApiKey: {sw.admin.key}\r\nConnection: close\r\n\r\n")
    status, headers, body = raw_http(sw.server.port, req.encode())
    assert status == 400, (status, body)
    assert headers["content-type"].startswith("application/json")
    j = json.loads(body)
    assert j["errorCode"] and j["errorMessage"]


def test_server_survives_malformed_requests(sw):
    """Requests the HTTP library refuses by itself (oversized headers or URL, a bad
    Content-Length or chunk, a garbage request line) get a 4xx or a closed connection, and the
    server keeps serving. (Their bodies come from libmicrohttpd and are not JSON: see the
    report.)"""
    bad = [  # (request, wait for the server's answer or close)
        (b"GET /api/1/apps HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", True),
        (b"GET /api/1/apps/" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"POST /api/slipway/users HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", True),
        (b"POST /api/slipway/users HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", True),
        (b"POST /api/slipway/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"zz\r\n", True),
        (b"HELLO\r\n\r\n", True),
        # no line end at all: the library may wait for the rest until its idle timeout
        (b"\x00\xff\x16\x03\x01" * 100, False),
    ]
    for req, wait in bad:
        data = b""
        with socket.create_connection(("127.0.0.1", sw.server.port), timeout=10) as s:
            try:  # the server may answer and close before it has read everything: fine
                s.sendall(req)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            try:
                while wait:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
        if data.startswith(b"HTTP/"):
            status = int(data.split(b" ", 2)[1])
            assert 400 <= status < 500, data[:200]
        assert sw.get("/healthz").status_code == 200
    assert sw.server.proc.poll() is None


def test_head_is_answered_like_get_without_a_body(sw):
    r = sw.request("HEAD", "/healthz")
    assert r.status_code == 200 and r.content == b""
    r = sw.request("HEAD", "/api/1/apps", sw.admin)
    assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize("body", [b"{bad", b"[1,2]", b'{"email": }', b"\xff\xfe", b'"str"'])
def test_malformed_json_is_400_json(sw, body):
    assert_error(sw.post("/api/slipway/users", sw.admin, data=body,
                         headers={"Content-Type": "application/json"}), 400)


def test_json_body_without_content_type_is_accepted(sw):
    email = f"{unique('noct')}@example.com"
    r = sw.post("/api/slipway/users", sw.admin,
                data=f'{{"email":"{email}","name":"No CT"}}'.encode())
    assert assert_ok(r, 201)["email"] == email


def test_trailing_slashes_accepted(sw):
    dev, app = sw.new_dev_app("slash")
    a = app["AppId"]
    assert_ok(sw.get("/api/1/apps/", dev)) == assert_ok(sw.get("/api/1/apps", dev))
    assert assert_ok(sw.get(f"/api/1/apps/{a}/", dev))["AppId"] == a
    assert assert_ok(sw.get(f"/api/1/apps/{a}/branches/", dev)) == []
    assert assert_ok(sw.get("/healthz/")) == {"status": "ok"}
    assert isinstance(assert_ok(sw.get("/api/slipway/users/", sw.admin)), list)


def test_sigterm_shuts_down_cleanly(server_factory):
    srv = server_factory()
    assert requests.get(srv.base + "/healthz", timeout=10).status_code == 200
    assert srv.stop(signal.SIGTERM) == 0
    assert "SIGTERM" in srv.stderr()


def test_sigterm_with_open_connections(server_factory):
    """Idle keep-alive connections and a half-sent request do not keep the server up."""
    srv = server_factory()
    keep = requests.Session()
    assert keep.get(srv.base + "/healthz", timeout=10).status_code == 200  # stays open, idle
    half = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    half.sendall(b"POST /api/slipway/users HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    try:
        assert srv.stop(signal.SIGTERM) == 0
    finally:
        half.close()
        keep.close()


def test_configured_limits(server_factory):
    """--max-body and --max-push are enforced with 413 and the server stays healthy."""
    srv = server_factory(extra_args=["--max-body", "4096", "--max-push", "65536"])
    s = Slipway(srv, os.path.dirname(srv.data))
    r = s.post("/api/slipway/users", s.admin, json={"email": unique_email("lim"), "name": "x" * 100})
    assert r.status_code == 201
    assert_error(s.post("/api/slipway/users", s.admin,
                        json={"email": unique_email("lim"), "name": "x" * 5000}), 413)
    dev, app = s.new_dev_app("limits")
    repo = s.clone(app["AppId"], dev)
    repo.commits(1, files={"big.bin": os.urandom(300_000)})
    p = repo.push("main", check=False)
    assert p.returncode != 0
    s.wait_log(rf"POST /git/{re.escape(app['AppId'])}\.git/git-receive-pack 413 ")
    assert_error(s.get(f"/api/1/apps/{app['AppId']}/branches/main", dev), 404, "BRANCH_NOT_FOUND")
    # a small push still works
    small = s.clone(app["AppId"], dev)
    ids = small.commits(2)
    small.push("main")
    assert assert_ok(s.get(f"/api/1/apps/{app['AppId']}/branches/main", dev))[
        "LatestRevisionHash"] == ids[-1]
    s.http.close()
    assert srv.stop() == 0


def test_sigint_shuts_down_cleanly(server_factory):
    srv = server_factory()
    assert srv.stop(signal.SIGINT) == 0


def test_one_log_line_per_request(sw):
    dev, app = sw.new_dev_app("logged", user_prefix="logger")
    path = f"/api/1/apps/{app['AppId']}"
    assert_ok(sw.get(path, dev))
    lines = sw.wait_log(re.escape(f" GET {path} "))
    assert len(lines) == 1, lines
    line = lines[0]
    assert re.search(rf"GET {re.escape(path)} 200 \d+(\.\d+)?ms user={re.escape(dev.email)}\b",
                     line), line
    # an anonymous failure is logged too, with its status
    missing = f"/api/1/apps/{unique('nolog')}"
    assert_error(sw.get(missing), 401)
    lines = sw.wait_log(re.escape(f" GET {missing} "))
    assert len(lines) == 1 and " 401 " in lines[0], lines


def test_log_never_holds_secrets(sw):
    dev, app = sw.new_dev_app("secret")
    a = app["AppId"]
    marker = unique("mark")
    # key, token, git basic auth, wrong keys and a secret in the query string
    assert_ok(sw.get(f"/api/1/apps/{a}", dev))
    assert_ok(sw.get(f"/api/1/apps/{a}?m={marker}", dev, via="token"))
    assert_ok(sw.get(f"/v1/repositories/{app['ProjectId']}/info", dev, via="token"))
    assert_error(sw.get(f"/api/1/apps/{a}", headers={"Mendix-Username": dev.email,
                                                     "Mendix-ApiKey": dev.key + "x"}), 401)
    sw.repo_with_commits(a, dev, 1)
    sw.clone(a, dev, secret=dev.token)
    sw.wait_log(re.escape(f"/git/{a}.git/git-receive-pack"))
    log = sw.log()
    for secret in (dev.key, dev.token, sw.admin.key):
        assert secret not in log, "a secret is in the server log"
        assert secret[:20] not in log


def test_a_port_in_use_is_named_as_the_cause(tmp_path):
    """With the port taken, serve exits 1 saying so once (it used to add libmicrohttpd's line and
    then blame 'Cannot assign requested address')."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run([BIN, "serve", "--data", str(tmp_path / "data"), "--listen",
                            f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert p.stderr.count("Address already in use") == 1, p.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in p.stderr, p.stderr
    assert "Cannot assign requested address" not in p.stderr, p.stderr
    assert p.stdout == "", p.stdout
