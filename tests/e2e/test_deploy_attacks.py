"""Environments under attack: odd path segments, hostile bodies, races, tampered signed URLs,
and apps that misbehave (a flood of output, a daemon that leaves its process group, an instance
that ignores SIGTERM, one that takes another environment's port). After each, the server still
answers, with the surface's error body and no 500 without reason."""

import datetime
import json
import os
import random
import re
import socket
import threading
import time
import urllib.parse

import pytest
import requests

from conftest import assert_error, assert_ok, command_lines, raw_http, wait_for
from test_deploy import build, deploy, env_path, example_files, get, new_deployer, wait_started


def healthy(sw):
    assert sw.get("/healthz").status_code == 200


def raw_get(sw, path, user):
    """A GET sent byte for byte (requests would normalise dot segments and encode bytes)."""
    head = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Mendix-Username: {user.email}\r\nMendix-ApiKey: {user.key}\r\n\r\n").encode()
    return raw_http(sw.server.port, head)


def assert_refused(status, body, allowed=(400, 403, 404)):
    assert status in allowed, (status, body[:300])
    j = json.loads(body)
    assert j["errorCode"] and j["errorMessage"], j


@pytest.fixture(scope="module")
def target(sw):
    """An app with a package in Test (running) and a second app with an environment of its own
    name, a package and a start job."""
    dev, app_id, repo = new_deployer(sw, "atk")
    pid = build(sw, dev, app_id, repo, example_files())
    env = deploy(sw, dev, app_id, "Test", pid)
    odev, other, orepo = new_deployer(sw, "atkother")
    assert_ok(sw.post(f"/api/slipway/apps/{other}/environments", sw.admin,
                      json={"Mode": "Hidden-1"}), 201)
    opid = build(sw, odev, other, orepo, example_files())
    assert_ok(sw.post(env_path(other, "Test", "/transport"), odev, json={"PackageId": opid}))
    ojob = assert_ok(sw.post(env_path(other, "Test", "/start"), odev))["JobId"]
    assert wait_started(sw, odev, other, "Test", ojob).json()["Status"] == "Started"
    assert_ok(sw.post(env_path(other, "Test", "/stop"), odev))
    yield dict(sw=sw, dev=dev, app_id=app_id, repo=repo, pid=pid, env=env, other=other,
               opid=opid, ojob=ojob)
    sw.post(env_path(app_id, "Test", "/stop"), dev)


def test_path_segments(target):
    sw, dev, app_id = target["sw"], target["dev"], target["app_id"]
    base = f"/api/1/apps/{app_id}/environments/"
    # a Mode in any case is the same environment; anything else is no environment
    assert assert_ok(sw.get(base + "tEsT", dev))["Mode"] == "Test"
    for mode in ["Test%2F..", "..", "%2e%2e", "Test%00", "%00Test", "Te%00st", "%ff%fe",
                 "A" * 5000, "Test%2Fstart", "Hidden-1", "Test%20", "%20Test", "*", "%25"]:
        status, _, body = raw_get(sw, base + mode, dev)
        assert_refused(status, body, (400, 404))
        status, _, body = raw_get(sw, base + mode + "/settings", dev)
        assert_refused(status, body, (400, 404))
    # a start job of another environment, of another app, or no job at all
    acc_job = None
    for job in [target["ojob"], "..", "%2e%2e%2fx", "x" * 5000, "%00", "%ff", "0" * 36]:
        status, _, body = raw_get(sw, base + "Test/start/" + job, dev)
        assert_refused(status, body, (400, 404))
        assert status == 400 or json.loads(body)["errorCode"] == "NO_SUCH_STARTJOB"
    assert acc_job is None
    # log dates that are not one day's file
    for date in ["2024-01-01%2F..%2F..%2Fx", "2024-01-01/../../x", "0000-00-00", "%20024-01-01",
                 "2024-1-1", "2024-01-01%00", "2024-13-45", "9999-99-99", "-001-01-01",
                 "+2024-01-01", "2024-01-0%31", "x" * 5000, "%ff%ff%ff%ff-01-01"]:
        for kind in ("logs", "access-logs"):
            status, _, body = raw_get(sw, base + f"Test/{kind}/{date}", dev)
            assert_refused(status, body, (400, 404))
    # snapshots: ids that are not this environment's
    sw.rights(app_id, dev, "Test", "backups")
    for snap in ["..", "%2e%2e", "x" * 5000, "%00", "%ff", "0" * 36, "Test"]:
        status, _, body = raw_get(sw, base + f"Test/snapshots/{snap}", dev)
        assert_refused(status, body, (400, 404))
    healthy(sw)


def test_other_apps_package_and_environment(target):
    sw, dev, app_id = target["sw"], target["dev"], target["app_id"]
    # another app's package: no such package here, and nothing changed
    before = assert_ok(sw.get(env_path(app_id, "Acceptance"), dev))
    assert_error(sw.post(env_path(app_id, "Acceptance", "/transport"), dev,
                         json={"PackageId": target["opid"]}), 404, "PACKAGE_NOT_FOUND")
    assert assert_ok(sw.get(env_path(app_id, "Acceptance"), dev)) == before
    for pkg in ["", "../" * 30, "x" * 100000, 5, None, [], {"a": 1}]:
        r = sw.post(env_path(app_id, "Acceptance", "/transport"), dev, json={"PackageId": pkg})
        assert_error(r, 400 if not isinstance(pkg, str) else (404 if pkg else r.status_code))
    # the other app's environment by its EnvironmentId on v4: not this app's
    ov = assert_ok(sw.get(env_path(target["other"], "Hidden-1"), sw.admin))
    tok = dev.token
    for path in [f"/api/1/apps/{app_id}/environments/Hidden-1"]:
        assert_error(sw.get(path, dev), 404, "ENVIRONMENT_NOT_FOUND")
    assert ov["EnvironmentId"] and tok is not None
    healthy(sw)


def test_hostile_settings_bodies(target):
    sw, dev, app_id = target["sw"], target["dev"], target["app_id"]
    path = env_path(app_id, "Test", "/settings")
    g = "Main.Greeting"
    cases = [
        ({"Constants": [{"Name": g, "Value": "v"}] * 10000}, 200),
        ({"Constants": [{"Name": 5, "Value": "v"}]}, 400),
        ({"Constants": [{"Name": None, "Value": "v"}]}, 400),
        ({"Constants": [{"Name": [g], "Value": "v"}]}, 400),
        ({"Constants": [{"Name": g, "Value": "x" * (1 << 20)}]}, 413),
        ({"Constants": [{"Name": g, "Value": "x" * 5000}]}, 400),
        ({"Constants": [{"Name": g, "Value": {"a": 1}}]}, 400),
        ({"Constants": [{"Name": g, "Value": [1]}]}, 400),
        ({"Constants": [{"Name": g}]}, 200),
        ({"Constants": [{"Name": g, "Value": None}]}, 200),
        ({"Constants": [{"Name": g, "Value": 12}]}, 200),
        ({"Constants": [{"Name": g, "Value": 1e308}]}, 200),
        ({"Constants": [{"Name": g, "Value": True}]}, 200),
        ({"Constants": [5, "x", None]}, 400),
        ({"Constants": {"Name": g}}, 400),
        ({"Constants": [], "ScheduledEvents": [{"Name": 1}]}, 400),
        ({"CustomSettings": [{"Name": "x", "Value": "y"}]}, 400),
        ({"Constants": [{"Name": g * 1000, "Value": "v"}]}, 400),
    ]
    for body, status in cases:
        r = sw.post(path, dev, json=body)
        assert r.status_code == status, (str(body)[:200], r.status_code, r.text[:300])
        if status != 200:
            assert_error(r, status)
    # duplicate keys and deep nesting: not valid bodies
    r = sw.post(path, dev, data='{"Constants": [], "Constants": []}',
                headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    deep = '{"Constants": ' + "[" * 100000 + "]" * 100000 + "}"
    r = sw.post(path, dev, data=deep, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 413), r.text[:200]
    # non-UTF-8 text
    r = sw.post(path, dev, data=b'{"Constants": [{"Name": "Main.Greeting", "Value": "\xff\xfe"}]}',
                headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    r = sw.post(path, dev, json={"Constants": [{"Name": g, "Value": "\ud800"}]}.__repr__())
    assert r.status_code == 400
    assert_ok(sw.post(path, dev, json={"Constants": [{"Name": g, "Value": "hello"}]}))
    healthy(sw)


def test_hostile_scale_and_tags(target):
    sw, dev, app_id = target["sw"], target["dev"], target["app_id"]
    path = env_path(app_id, "Acceptance", "/scale")
    for body in [{"Instances": 1.5}, {"Instances": -1}, {"Instances": 0}, {"Instances": 2 ** 63 - 1},
                 {"Instances": -(2 ** 63)}, {"MemoryPerInstance": 1e9}, {"Instances": "2"},
                 {"MemoryPerInstance": 2 ** 40}, {"Instances": None}, {}, {"Instances": True},
                 {"MemoryPerInstance": -1024}]:
        assert_error(sw.post(path, dev, json=body), 400)
    r = sw.post(path, dev, data='{"Instances": 100000000000000000000000}',
                headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    env = assert_ok(sw.get(env_path(app_id, "Acceptance"), dev))
    assert env["Instances"] == 1
    tags = env_path(app_id, "Acceptance", "/tags")
    assert_error(sw.post(tags, dev, json={"Tag": "x" * (1 << 20)}), 413)
    for body in [{"Tag": ""}, {"Tag": 5}, {"Tag": None}, {"Tag": ["a"]},
                 {"Tag": "x" * 101}]:
        assert_error(sw.post(tags, dev, json=body), 400)
        assert_error(sw.delete(tags, dev, json=body), 400)
    r = sw.post(tags, dev, data=b'{"Tag": "\xc3\x28"}', headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    # a tag with a NUL in the middle is not a shorter tag
    r = sw.post(tags, dev, data=b'{"Tag": "ab\\u0000cd"}',
                headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400), r.text
    assert "ab" not in assert_ok(sw.get(tags, dev))["Tags"]
    assert assert_ok(sw.get(tags, dev))["Tags"] in ([], ["ab\x00cd"])
    healthy(sw)


def test_start_flood_and_races(target):
    sw, dev, app_id = target["sw"], target["dev"], target["app_id"]
    mode = "Acceptance"
    assert_ok(sw.post(env_path(app_id, mode, "/transport"), dev, json={"PackageId": target["pid"]}))
    results = []
    lock = threading.Lock()

    def start():
        s = requests.Session()
        r = s.post(sw.base + env_path(app_id, mode, "/start"), headers=dev.key_headers(),
                   timeout=60)
        with lock:
            results.append((r.status_code, r.json()))

    threads = [threading.Thread(target=start) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs = [j["JobId"] for s, j in results if s == 200 and "JobId" in j]
    assert len(jobs) == 1, results[:5]
    others = {(s, j.get("errorCode")) for s, j in results if "JobId" not in j}
    assert others <= {(500, "APP_ALREADY_HAS_A_STARTING_JOB"), (200, "ALREADY_STARTED")}, others
    # clean is refused while the start is queued or running
    assert_error(sw.post(env_path(app_id, mode, "/clean"), dev), 403, "ENVIRONMENT_NOT_STOPPED")
    assert wait_started(sw, dev, app_id, mode, jobs[0]).json()["Status"] == "Started"
    # stop and start at once, a few times: it ends either stopped or running, never stuck
    for _ in range(3):
        out = {}
        def call(what):
            out[what] = requests.post(sw.base + env_path(app_id, mode, "/" + what),
                                      headers=dev.key_headers(), timeout=60)
        t1 = threading.Thread(target=call, args=("stop",))
        t2 = threading.Thread(target=call, args=("start",))
        t1.start()
        t2.start()
        t1.join()
        t2.join()
        stop = out["stop"]
        assert stop.status_code == 200 or (stop.status_code == 500 and stop.json()["errorCode"]
                                           == "STOP_FAILED"), stop.text
        assert out["start"].status_code in (200, 500), out["start"].text
        job = out["start"].json().get("JobId")
        if job:
            r = wait_started(sw, dev, app_id, mode, job)
            assert r.status_code in (200, 500), r.text
    assert_ok(sw.post(env_path(app_id, mode, "/stop"), dev))
    env = assert_ok(sw.get(env_path(app_id, mode), dev))
    assert env["Status"] == "Stopped"
    healthy(sw)


def test_constant_with_newlines_and_equals(target):
    sw, dev, app_id = target["sw"], target["dev"], target["app_id"]
    mode = "Acceptance"
    value = "line one\nB=c=d\n=\nPORT=1\n\"quoted\" $HOME `x` \\"
    assert_ok(sw.post(env_path(app_id, mode, "/transport"), dev, json={"PackageId": target["pid"]}))
    assert_ok(sw.post(env_path(app_id, mode, "/settings"), dev,
                      json={"Constants": [{"Name": "Main.Greeting", "Value": value}]}))
    job = assert_ok(sw.post(env_path(app_id, mode, "/start"), dev))["JobId"]
    assert wait_started(sw, dev, app_id, mode, job).json()["Status"] == "Started"
    env = assert_ok(sw.get(env_path(app_id, mode), dev))
    assert get(env["Url"]).json()["greeting"] == value  # the PORT in it changed nothing either
    assert_ok(sw.post(env_path(app_id, mode, "/stop"), dev))
    healthy(sw)


def test_signed_urls_cannot_be_bent(target):
    sw, dev, app_id = target["sw"], target["dev"], target["app_id"]
    today = datetime.date.today().isoformat()
    link = assert_ok(sw.get(env_path(app_id, "Test", f"/logs/{today}"), dev))["DownloadUrl"]
    wait_for(lambda: requests.get(link, timeout=10).status_code == 200, what="the log")
    u = urllib.parse.urlsplit(link)
    q = dict(urllib.parse.parse_qsl(u.query))
    port = sw.server.port

    def fetch(path, query):
        qs = urllib.parse.urlencode(query)
        head = f"GET {path}?{qs} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        return raw_http(port, head.encode())

    assert fetch(u.path, q)[0] == 200
    other_path = u.path.replace("/Test/", "/Acceptance/")
    for path in [u.path.replace("/Test/", "/test/"), other_path,
                 u.path.replace(today, "2001-01-01"), u.path.replace("/logs/", "/access-logs/"),
                 u.path.replace(app_id, target["other"]), u.path + "/", u.path.replace("/", "//"),
                 u.path.replace("Test", "T%65st"), u.path.replace("/logs/", "/logs/../logs/")]:
        status, _, body = fetch(path, q)
        assert_refused(status, body, (400, 403, 404))
    for bad in [dict(q, expires=str(int(q["expires"]) + 1)), dict(q, expires="99999999999"),
                dict(q, expires="-1"), dict(q, signature=q["signature"][:-1]),
                dict(q, signature=q["signature"].upper()), {"expires": q["expires"]},
                {"signature": q["signature"]}, dict(q, expires=q["expires"] + "\x00")]:
        status, _, body = fetch(u.path, bad)
        assert_refused(status, body, (400, 403))
    # an expired link: signed like the server signs, with a time in the past
    healthy(sw)


def test_log_download_does_not_follow_a_symlink(target):
    sw, dev, app_id = target["sw"], target["dev"], target["app_id"]
    logs = os.path.join(sw.data, "envs", app_id, "Test", "logs")
    day = "2001-02-03"
    link = os.path.join(logs, f"app-{day}.log")
    os.symlink("/etc/passwd", link)
    try:
        r = sw.get(env_path(app_id, "Test", f"/logs/{day}"), dev)
        if r.status_code == 200:
            d = requests.get(r.json()["DownloadUrl"], timeout=10)
            assert d.status_code == 404 and "root:" not in d.text
        else:
            assert_error(r, 404)
        # the directory replaced by a symlink neither
    finally:
        os.unlink(link)
    healthy(sw)


# ---- apps that misbehave: one package, the misbehaviour picked by a constant ----

def misbehaving_yml(mark):
    return example_files()["slipway.yml"].decode().replace(
        "constants:\n", "constants:\n  - name: Main.Mode\n    type: String\n    default: \"\"\n",
        1).replace("health: /healthz", "health: /healthz\n  stop_timeout: 2s", 1).replace(
        "command: ./bin/hello",
        "command: case \"$MX_Main_Mode\" in "
        f"flood) (yes 'flood line {mark} 0123456789' | head -c 100000000; echo done {mark}) & ;; "
        f"daemon) setsid sh -c 'exec sleep {mark}1' </dev/null >/dev/null 2>&1 & ;; "
        f"deaf) (trap '' TERM; exec sleep {mark}2) & ;; "
        "stubborn) trap '' TERM; ./bin/hello & while :; do sleep 1; done ;; "
        "esac; exec ./bin/hello")


def sleepers(mark):
    return [pid for pid, argv in command_lines()
            if argv[0] == b"sleep" and len(argv) > 1 and argv[1].startswith(mark.encode())]


@pytest.fixture(scope="module")
def misbehaving(sw):
    dev, app_id, repo = new_deployer(sw, "atkapp")
    mark = str(random.randint(10 ** 8, 10 ** 9 - 1))
    pid = build(sw, dev, app_id, repo, example_files(misbehaving_yml(mark)))
    yield sw, dev, app_id, pid, mark
    for mode in ("Test", "Acceptance"):
        sw.post(env_path(app_id, mode, "/stop"), dev)


def start_with(sw, dev, app_id, pid, mode, what):
    assert_ok(sw.post(env_path(app_id, mode, "/transport"), dev, json={"PackageId": pid}))
    assert_ok(sw.post(env_path(app_id, mode, "/settings"), dev,
                      json={"Constants": [{"Name": "Main.Mode", "Value": what}]}))
    job = assert_ok(sw.post(env_path(app_id, mode, "/start"), dev))["JobId"]
    r = wait_started(sw, dev, app_id, mode, job)
    assert r.status_code == 200 and r.json()["Status"] == "Started", r.text
    return assert_ok(sw.get(env_path(app_id, mode), dev))


def test_daemon_and_deaf_children_end_with_stop(misbehaving):
    sw, dev, app_id, pid, mark = misbehaving
    start_with(sw, dev, app_id, pid, "Test", "daemon")
    wait_for(lambda: sleepers(mark + "1"), what="the daemon")
    start_with(sw, dev, app_id, pid, "Acceptance", "deaf")
    wait_for(lambda: sleepers(mark + "2"), what="the deaf child")
    t0 = time.monotonic()
    assert_ok(sw.post(env_path(app_id, "Acceptance", "/stop"), dev))
    assert time.monotonic() - t0 < 15
    wait_for(lambda: not sleepers(mark + "2"), timeout=10, what="the deaf child killed")
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    wait_for(lambda: not sleepers(mark + "1"), timeout=10, what="the daemon ended")
    healthy(sw)


def test_output_flood(misbehaving):
    sw, dev, app_id, pid, mark = misbehaving
    env = start_with(sw, dev, app_id, pid, "Test", "flood")
    today = datetime.date.today().isoformat()
    log = os.path.join(sw.data, "envs", app_id, "Test", "logs", f"app-{today}.log")
    # the server and the app answer while the flood is written
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        healthy(sw)
        assert get(env["Url"], "/healthz").status_code == 200
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - 4096))
            if f"done {mark}".encode() in f.read():
                break
        time.sleep(0.05)
    else:
        pytest.fail("the flood was not written within 60 s")
    line = re.compile(rb".* flood line " + mark.encode() + rb" 0123456789$")
    n = 0
    with open(log, "rb") as f:
        for ln in f:
            if b"flood line" in ln:
                n += 1
                assert line.match(ln.rstrip(b"\n")) or b"0123456789" not in ln[-14:], ln[:200]
    assert n > 3_000_000
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    healthy(sw)


def test_a_start_during_a_stop_ends_the_stop(misbehaving):
    """A start that lands while a stop waits for the instances to end (here 2 s: the app's shell
    ignores SIGTERM) takes the environment back: the stop answers then instead of waiting for a
    Stopped that never comes (it held its HTTP thread, and the server's exit, for up to 24 h)."""
    sw, dev, app_id, pid, mark = misbehaving
    start_with(sw, dev, app_id, pid, "Acceptance", "stubborn")
    out = {}

    def stop():
        out["stop"] = requests.post(sw.base + env_path(app_id, "Acceptance", "/stop"),
                                    headers=dev.key_headers(), timeout=30)

    t = threading.Thread(target=stop)
    t.start()
    # until the stop has landed, a start answers ALREADY_STARTED
    job = wait_for(lambda: sw.post(env_path(app_id, "Acceptance", "/start"), dev).json().get(
        "JobId"), timeout=5, interval=0.01, what="a start after the stop")
    t.join(timeout=20)
    assert not t.is_alive(), "the stop did not answer"
    assert_error(out["stop"], 500, "STOP_FAILED")
    assert "start" in out["stop"].json()["errorMessage"]
    r = wait_started(sw, dev, app_id, "Acceptance", job)
    assert r.status_code == 200 and r.json()["Status"] == "Started", r.text
    assert_ok(sw.post(env_path(app_id, "Acceptance", "/stop"), dev))
    healthy(sw)


def test_a_start_whose_port_another_process_holds_fails_and_says_so(sw):
    """An app that ignores $PORT (or anything else) may take another environment's port: that
    environment's start fails naming the port instead of health-checking the squatter."""
    dev, app_id, repo = new_deployer(sw, "squat")
    pid = build(sw, dev, app_id, repo, example_files())
    env = assert_ok(sw.get(env_path(app_id, "Test"), dev))
    port = int(env["Url"].rsplit(":", 1)[1]) + 1  # instance 0's
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen(4)
    try:
        assert_ok(sw.post(env_path(app_id, "Test", "/transport"), dev, json={"PackageId": pid}))
        job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
        body = assert_error(wait_started(sw, dev, app_id, "Test", job), 500, "START_FAILED")
        assert f"port {port}" in body["errorMessage"]
    finally:
        squatter.close()
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
    assert wait_started(sw, dev, app_id, "Test", job).json()["Status"] == "Started"
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))


def test_a_stop_holds_no_worker_thread(server_factory, tmp_path):
    """A stop answers once the instances have ended (here 2 s: the app's shell ignores SIGTERM),
    without holding an HTTP worker meanwhile: with one worker, a kept-alive connection's next
    request, and a new connection's, answer at once (they waited for the stop before)."""
    from conftest import Slipway
    s = Slipway(server_factory(extra_args=["--threads", "1"]), str(tmp_path))
    dev, app_id, repo = new_deployer(s, "onethread")
    pid = build(s, dev, app_id, repo, example_files(misbehaving_yml("1")))
    start_with(s, dev, app_id, pid, "Test", "stubborn")
    assert_ok(s.get(f"/api/1/apps/{app_id}", dev))  # the kept-alive connection, in use
    out = {}

    def stop():
        t0 = time.monotonic()
        out["stop"] = requests.post(s.base + env_path(app_id, "Test", "/stop"),
                                    headers=dev.key_headers(), timeout=30)
        out["took"] = time.monotonic() - t0

    t = threading.Thread(target=stop)
    t.start()
    time.sleep(0.3)  # the stop is waiting for the instance
    for call in (lambda: s.get(f"/api/1/apps/{app_id}", dev),
                 lambda: requests.get(s.base + f"/api/1/apps/{app_id}",
                                      headers=dev.key_headers(), timeout=30)):
        t0 = time.monotonic()
        assert_ok(call())
        assert time.monotonic() - t0 < 0.5, "a request waited for the stop"
    t.join(timeout=20)
    assert out["stop"].status_code == 200 and out["stop"].json()["Status"] == "Stopped"
    assert out["took"] >= 1.5  # it did wait for the instance (stop_timeout 2 s)
    # a server stopping while a stop waits answers it 503, and exits
    start_with(s, dev, app_id, pid, "Test", "stubborn")
    t = threading.Thread(target=stop)
    t.start()
    time.sleep(0.3)
    assert s.server.stop() == 0
    t.join(timeout=20)
    assert out["stop"].status_code == 503 and \
        out["stop"].json()["errorCode"] == "SERVER_STOPPING", out["stop"].text
