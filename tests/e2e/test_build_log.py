"""Following a build log live (chunked text and Server-Sent Events), package retention
(--keep-packages) and the usage endpoint, through the real binary."""
import json
import os
import sqlite3
import subprocess
import threading
import time

import pytest
import requests

from builds import TRIVIAL, build_log, commit, head_number, package, start, wait_done, yml
from conftest import BIN, Slipway, assert_error, assert_ok, wait_for


# five lines 0.3 s apart: about 1.2 s from the first to the last
SLOW_LINES = yml(["for i in 1 2 3 4 5; do echo line-$i; sleep 0.3; done",
                  "mkdir -p out && echo done > out/done.txt"])


@pytest.fixture
def app(sw):
    dev, app_id, repo = sw.new_dev_clone("follow", user_prefix="follower")
    return sw, dev, app_id, repo


def log_url(sw, app_id, pid, query=""):
    return f"{sw.base}/api/slipway/apps/{app_id}/packages/{pid}/log{query}"


def open_stream(sw, dev, app_id, pid, sse, headers=None):
    """A request of its own connection (a following stream holds its HTTP worker)."""
    h = dict(dev.key_headers())
    if sse:
        h["Accept"] = "text/event-stream"
    h.update(headers or {})
    return requests.get(log_url(sw, app_id, pid, "" if sse else "?follow=true"), headers=h,
                        stream=True, timeout=60)


def sse_events(resp):
    """The stream's events as they arrive: {"t": arrival, "event", "data": [lines], "id"}.
    Comments (keep-alives) are skipped."""
    buf = b""
    for chunk in resp.iter_content(chunk_size=None):
        t = time.monotonic()
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            ev = {"t": t, "event": "message", "data": [], "id": None}
            fields = 0
            for line in block.split(b"\n"):
                if line.startswith(b":"):
                    continue
                fields += 1
                name, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if name == b"data":
                    ev["data"].append(value.decode("utf-8", "replace"))
                elif name == b"event":
                    ev["event"] = value.decode()
                elif name == b"id":
                    ev["id"] = int(value)
            if fields:
                yield ev
    assert buf == b"", f"the stream ended inside an event: {buf!r}"


def chunks(resp):
    """(arrival time, bytes) of each chunk as it arrives."""
    return [(time.monotonic(), c) for c in resp.iter_content(chunk_size=None)]


def arrival(timed_chunks, needle):
    """When the text first showed in the stream."""
    seen = b""
    for t, c in timed_chunks:
        seen += c
        if needle in seen:
            return t
    pytest.fail(f"{needle!r} never arrived; got {seen[-2000:]!r}")


# --- following a build log ---------------------------------------------------------------------


def test_sse_follow_sends_lines_while_the_build_runs(app):
    sw, dev, app_id, repo = app
    commit(repo, {"slipway.yml": SLOW_LINES})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    with open_stream(sw, dev, app_id, pid, sse=True) as r:
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers.get("Transfer-Encoding") == "chunked"
        assert r.headers.get("Cache-Control") == "no-cache"
        events = list(sse_events(r))
        closed = time.monotonic()
    assert events, "no event"
    end = events[-1]
    assert end["event"] == "end", events[-3:]
    assert [e for e in events if e["event"] == "end"] == [end], "one end event, the last"
    assert json.loads("\n".join(end["data"])) == {"Status": "Succeeded", "Reason": ""}
    data = events[:-1]
    assert all(e["event"] == "message" for e in data)
    lines = [ln for e in data for ln in e["data"]]
    for i in range(1, 6):
        assert f"line-{i}" in lines, lines
    # the lines came while the build ran: spread over its sleeps, well before the end event
    t = {i: next(e["t"] for e in data if f"line-{i}" in e["data"]) for i in (1, 5)}
    assert t[5] - t[1] >= 0.8, f"lines arrived together: {t}"
    assert end["t"] - t[1] >= 0.9, "the first line came only at the end of the build"
    assert closed - end["t"] < 5
    # by then the build has ended, and the events are the whole log, whole lines each
    assert package(sw, dev, app_id, pid)["Status"] == "Succeeded"
    log = build_log(sw, dev, app_id, pid)
    assert "\n".join(lines) + "\n" == log
    ids = [e["id"] for e in data]
    assert ids == sorted(ids) and ids[-1] == len(log.encode())
    # EventSource's reconnect: Last-Event-ID resumes after what it had
    middle = next(e for e in data if "line-3" in e["data"])
    with open_stream(sw, dev, app_id, pid, sse=True,
                     headers={"Last-Event-ID": str(middle["id"])}) as r2:
        again = list(sse_events(r2))
    rest = [ln for e in again[:-1] for ln in e["data"]]
    assert again[-1]["event"] == "end"
    assert "\n".join(rest) + "\n" == log.encode()[middle["id"]:].decode()


def test_sse_follow_of_a_failing_build_keeps_lines_whole(app):
    sw, dev, app_id, repo = app
    commit(repo, {"slipway.yml": yml([
        "printf 'half-'; sleep 0.4; echo line",
        "printf 'cr-1\\rcr-2\\n'",
        "echo about to fail; exit 3"])})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    with open_stream(sw, dev, app_id, pid, sse=True) as r:
        events = list(sse_events(r))
    end = json.loads("\n".join(events[-1]["data"]))
    assert events[-1]["event"] == "end" and end["Status"] == "Failed"
    assert "step 3" in end["Reason"] and "status 3" in end["Reason"], end
    lines = [ln for e in events[:-1] for ln in e["data"]]
    assert "half-line" in lines, lines  # a line is sent once it is whole
    assert "cr-1" in lines and "cr-2" in lines  # a CR ends an SSE line: sent as two
    assert "about to fail" in lines


def test_chunked_follow_streams_and_closes_at_the_end(app):
    sw, dev, app_id, repo = app
    commit(repo, {"slipway.yml": SLOW_LINES})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    with open_stream(sw, dev, app_id, pid, sse=False) as r:
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/plain")
        assert r.headers.get("Transfer-Encoding") == "chunked"
        got = chunks(r)
        closed = time.monotonic()
    body = b"".join(c for _, c in got)
    t1, t5 = arrival(got, b"line-1\n"), arrival(got, b"line-5\n")
    assert t5 - t1 >= 0.8, "lines arrived together"
    assert closed - t1 >= 0.9, "the first line came only at the end of the build"
    assert package(sw, dev, app_id, pid)["Status"] == "Succeeded"
    log = build_log(sw, dev, app_id, pid)
    assert body.decode() == log
    assert "package" in log.splitlines()[-1] and "built" in log.splitlines()[-1]


def test_follow_of_an_ended_build_answers_at_once(app):
    sw, dev, app_id, repo = app
    commit(repo, {"slipway.yml": TRIVIAL})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    assert wait_done(sw, dev, app_id, pid)["Status"] == "Succeeded"
    log = build_log(sw, dev, app_id, pid)
    t0 = time.monotonic()
    with open_stream(sw, dev, app_id, pid, sse=False) as r:
        assert r.status_code == 200
        assert r.headers.get("Content-Length") == str(len(log.encode()))  # the plain file
        assert r.text == log
    with open_stream(sw, dev, app_id, pid, sse=True) as r:
        events = list(sse_events(r))
    assert time.monotonic() - t0 < 5
    assert events[-1]["event"] == "end"
    assert "\n".join(ln for e in events[:-1] for ln in e["data"]) + "\n" == log
    # errors stay JSON errors
    assert_error(sw.get(f"/api/slipway/apps/{app_id}/packages/"
                        "00000000-0000-4000-8000-000000000000/log?follow=true", dev),
                 404, "PACKAGE_NOT_FOUND")
    outsider = sw.new_user("outsider")
    r = requests.get(log_url(sw, app_id, pid, "?follow=true"),
                     headers={**outsider.key_headers(), "Accept": "text/event-stream"}, timeout=10)
    assert r.status_code == 403 and r.json()["errorCode"], r.text


def test_followers_are_limited_freed_and_stopped_with_the_server(server_factory, tmp_path):
    srv = server_factory(extra_args=["--threads", "2"])
    s = Slipway(srv, str(tmp_path))
    s.http.headers["Connection"] = "close"  # a kept-alive connection may sit on the busy worker
    dev, app_id, repo = s.new_dev_clone("limit")
    commit(repo, {"slipway.yml": yml(["echo started; sleep 60"])})
    pid = start(s, dev, app_id, head_number(s, dev, app_id))
    first = open_stream(s, dev, app_id, pid, sse=True)
    assert first.status_code == 200
    it = first.iter_content(chunk_size=None)
    got = b""
    while b"started" not in got:
        got += next(it)
    # --threads 2: one follower at most, so that a worker stays free for everything else
    r = open_stream(s, dev, app_id, pid, sse=False)
    assert r.status_code == 503 and r.json()["errorCode"] == "TOO_MANY_FOLLOWERS", r.text
    assert r.headers.get("Retry-After")
    assert_ok(s.get("/healthz"))
    # a client that goes away frees its place
    first.close()

    def follow_again():
        r = open_stream(s, dev, app_id, pid, sse=True)
        if r.status_code == 503:
            r.close()
            return None
        return r
    second = wait_for(follow_again, timeout=5, interval=0.1, what="the follower's place freed")
    assert second.status_code == 200
    # the server stops promptly while a client follows, and exits 0 (no leak under ASan)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(c for c in _drain(second)), daemon=True)
    reader.start()
    t0 = time.monotonic()
    assert srv.stop() == 0, srv.stderr()[-3000:]
    assert time.monotonic() - t0 < 10
    reader.join(10)
    assert not reader.is_alive(), "the stream did not end with the server"
    assert b"event: end" not in b"".join(seen)  # cut off, not ended: the build still ran


def _drain(resp):
    try:
        yield from resp.iter_content(chunk_size=None)
    except requests.exceptions.RequestException:
        return  # cut off: the build has not ended


# --- retention and usage ---------------------------------------------------------------------


def paths(data, app_id, pid):
    return (os.path.join(data, "packages", app_id, f"{pid}.tar.zst"),
            os.path.join(data, "logs", "builds", f"{pid}.log"))


def listed(s, dev, app_id):
    return [p["PackageId"] for p in assert_ok(s.get(f"/api/1/apps/{app_id}/packages", dev))]


def usage(s, dev, app_id):
    return assert_ok(s.get(f"/api/slipway/apps/{app_id}/usage", dev))


def test_retention_keeps_the_newest_and_held_packages(server_factory, tmp_path):
    srv = server_factory(extra_args=["--keep-packages", "2"])
    s = Slipway(srv, str(tmp_path))
    dev, a = s.new_dev_app("keep")
    app_id = a["AppId"]
    assert usage(s, dev, app_id) == {"AppId": app_id, "Packages": 0, "PackageBytes": 0,
                                     "LogBytes": 0}
    repo = s.clone(app_id, dev)
    commit(repo, {"slipway.yml": TRIVIAL})
    n = head_number(s, dev, app_id)
    pids = []
    for i in range(4):
        pids.append(start(s, dev, app_id, n, f"1.0.{i}"))
        assert wait_done(s, dev, app_id, pids[-1])["Status"] == "Succeeded"
    # only the newest two remain, with their files; the older ones' files are gone
    assert listed(s, dev, app_id) == [pids[3], pids[2]]
    for pid in pids[2:]:
        assert all(os.path.exists(p) for p in paths(s.data, app_id, pid)), pid
    for pid in pids[:2]:
        assert not any(os.path.exists(p) for p in paths(s.data, app_id, pid)), pid
        assert_error(s.get(f"/api/1/apps/{app_id}/packages/{pid}", dev), 404, "PACKAGE_NOT_FOUND")
    s.wait_log(rf"retention: deleted package {pids[0]}")

    # a package that an environment holds survives retention
    db = sqlite3.connect(os.path.join(s.data, "slipway.db"), timeout=10)
    db.execute("UPDATE environments SET package = ? WHERE mode = 'Test' AND app = "
               "(SELECT id FROM apps WHERE app_id = ?)", (pids[2], app_id))
    db.commit()
    db.close()
    more = []
    for i in range(2):
        more.append(start(s, dev, app_id, n, f"2.0.{i}"))
        assert wait_done(s, dev, app_id, more[-1])["Status"] == "Succeeded"
    assert listed(s, dev, app_id) == [more[1], more[0], pids[2]]
    assert all(os.path.exists(p) for p in paths(s.data, app_id, pids[2]))
    assert not any(os.path.exists(p) for p in paths(s.data, app_id, pids[3]))

    # usage: the numbers of the files on disk
    kept = listed(s, dev, app_id)
    u = usage(s, dev, app_id)
    assert u["AppId"] == app_id and u["Packages"] == len(kept) == 3
    assert u["PackageBytes"] == sum(os.path.getsize(paths(s.data, app_id, p)[0]) for p in kept)
    assert u["LogBytes"] == sum(os.path.getsize(paths(s.data, app_id, p)[1]) for p in kept)
    assert u["PackageBytes"] > 0 and u["LogBytes"] > 0
    outsider = s.new_user("nosy")
    assert_error(s.get(f"/api/slipway/apps/{app_id}/usage", outsider), 403)
    assert_error(s.get("/api/slipway/apps/no-such-app/usage", dev), 404, "APP_NOT_FOUND")
    assert srv.stop() == 0


def test_failed_builds_count_and_running_ones_stay(server_factory, tmp_path):
    srv = server_factory(extra_args=["--keep-packages", "1"])
    s = Slipway(srv, str(tmp_path))
    dev, app_id, repo = s.new_dev_clone("keep1")
    commit(repo, {"slipway.yml": yml(["exit 1"])})
    failed = start(s, dev, app_id, head_number(s, dev, app_id))
    assert wait_done(s, dev, app_id, failed)["Status"] == "Failed"
    # a failed build deletes nothing
    assert listed(s, dev, app_id) == [failed]
    commit(repo, {"slipway.yml": TRIVIAL})
    good = start(s, dev, app_id, head_number(s, dev, app_id))
    assert wait_done(s, dev, app_id, good)["Status"] == "Succeeded"
    assert listed(s, dev, app_id) == [good]
    assert not os.path.exists(paths(s.data, app_id, failed)[1])
    assert srv.stop() == 0


def test_keep_packages_option_is_checked(tmp_path):
    p = subprocess.run([BIN, "serve", "--data", str(tmp_path / "d"), "--keep-packages", "-1"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 2 and "--keep-packages" in p.stderr
    p = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=20)
    assert "--keep-packages N" in p.stdout
