"""The Build API and the build runner, through the real binary: builds of real revisions in the
sandbox, polled and downloaded as Mendix's Build API documentation shows."""
import errno
import hashlib
import hmac
import json
import os
import signal
import sqlite3
import time

import pytest

from builds import (TRIVIAL, build_log, commit, details, head_number, package,
                    processes_matching, start, untar, wait_done, yml)
from conftest import assert_error, assert_ok, children, wait_for
from test_deploy import EXAMPLE, source_files

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def app(sw):
    dev, app_id, repo = sw.new_dev_clone("build", user_prefix="builder")
    return sw, dev, app_id, repo


def test_trivial_build_tags_and_downloads(app):
    sw, dev, app_id, repo = app
    head = commit(repo, {"slipway.yml": TRIVIAL})
    number = head_number(sw, dev, app_id)
    pid = start(sw, dev, app_id, number, "2.5.4")
    p = wait_done(sw, dev, app_id, pid)
    assert p["Status"] == "Succeeded", build_log(sw, dev, app_id, pid)
    assert p["Version"] == f"2.5.4.{number}"
    assert p["Description"] == "e2e" and p["Creator"]
    assert isinstance(p["CreationDate"], int) and p["Size"] > 0
    d = details(sw, dev, app_id, pid)
    assert d["Revision"] == head and d["RevisionNumber"] == number
    # the commit carries the version tag, and the branch shows it
    branch = assert_ok(sw.get(f"/api/1/apps/{app_id}/branches/main", dev))
    assert branch["LatestTaggedVersion"] == p["Version"]
    # the signed URL downloads without credentials; the bytes are the recorded sha256
    p = package(sw, dev, app_id, pid, "?url=true")
    assert p["Url"]["TTL"] > 0 and p["Url"]["Location"].startswith(sw.base)
    r = sw.http.get(p["Url"]["Location"], timeout=30)
    assert r.status_code == 200
    assert len(r.content) == p["Size"]
    assert hashlib.sha256(r.content).hexdigest() == d["Sha256"]
    tar = untar(r.content)
    names = tar.getnames()
    assert names[0] == "manifest.json"
    assert "out/hello.txt" in names
    manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["version"] == p["Version"] and manifest["revision"] == head
    assert manifest["app"] == app_id and manifest["runtime"] == "shell"
    files = {f["path"]: f for f in manifest["files"]}
    data = tar.extractfile("out/hello.txt").read()
    assert data == b"hello\n"
    assert files["out/hello.txt"]["sha256"] == hashlib.sha256(data).hexdigest()
    # the authenticated download gives the same bytes; the list has the package
    r2 = sw.get(f"/api/1/apps/{app_id}/packages/{pid}/download", dev)
    assert r2.status_code == 200 and r2.content == r.content
    listed = assert_ok(sw.get(f"/api/1/apps/{app_id}/packages/", dev))
    assert pid in [x["PackageId"] for x in listed]
    # the manifest endpoint gives the package's manifest.json
    m = assert_ok(sw.get(f"/api/slipway/apps/{app_id}/packages/{pid}/manifest", dev))
    assert m == manifest
    assert m["revision_number"] == number and m["branch"] == "main" and m["creator"]
    assert isinstance(m["built_ms"], int)
    # the log tells each step
    log = build_log(sw, dev, app_id, pid)
    assert "step 1/2" in log and "step 2/2" in log and "exited with status 0" in log


def test_build_by_short_hash_and_example_app(app):
    sw, dev, app_id, repo = app
    head = commit(repo, source_files(EXAMPLE))
    pid = start(sw, dev, app_id, head[:8], "1.0.0")
    p = wait_done(sw, dev, app_id, pid)
    assert p["Status"] == "Succeeded", build_log(sw, dev, app_id, pid)
    r = sw.get(f"/api/1/apps/{app_id}/packages/{pid}/download", dev)
    tar = untar(r.content)
    assert "bin/hello" in tar.getnames()
    assert tar.getmember("bin/hello").mode & 0o111


def test_failing_step(app):
    sw, dev, app_id, repo = app
    commit(repo, {"slipway.yml": yml(["true", "echo about to fail; exit 3", "echo never"])})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    p = wait_done(sw, dev, app_id, pid)
    assert p["Status"] == "Failed"
    # the Build API's package object says why, in a field of its own (clients ignore it)
    assert "step 2" in p["Reason"], p
    log = build_log(sw, dev, app_id, pid)
    assert "step 2/3" in log and "about to fail" in log and "exited with status 3" in log
    assert "never" not in log.split("step 2/3")[1].split("build failed")[0].replace("echo never", "")
    assert "step 2" in details(sw, dev, app_id, pid)["Reason"]
    # a failed build has nothing to download
    assert_error(sw.get(f"/api/1/apps/{app_id}/packages/{pid}/download", dev), 500,
                 "BUILD_NOT_SUCCEEDED")


def test_timeout_kills_the_whole_tree(app):
    sw, dev, app_id, repo = app
    marker = f"sleep 3{int(time.time() * 1000) % 100000}"
    commit(repo, {"slipway.yml": yml([f"{marker} & {marker}"], timeout="1s")})
    t0 = time.time()
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    p = wait_done(sw, dev, app_id, pid)
    assert p["Status"] == "Failed"
    assert time.time() - t0 < 20
    assert "timed out" in details(sw, dev, app_id, pid)["Reason"]
    assert "timed out" in build_log(sw, dev, app_id, pid)
    wait_for(lambda: not processes_matching(marker), timeout=5, what="no process left")


def test_cancel_and_daemons_do_not_survive(app):
    sw, dev, app_id, repo = app
    marker = f"sleep 4{int(time.time() * 1000) % 100000}"
    commit(repo, {"slipway.yml": yml([f"({marker} &) ; {marker}"])})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    wait_for(lambda: package(sw, dev, app_id, pid)["Status"] == "Building", timeout=30,
             what="building")
    wait_for(lambda: processes_matching(marker), timeout=10, what="the step runs")
    r = sw.post(f"/api/slipway/apps/{app_id}/packages/{pid}/cancel", dev)
    assert r.status_code == 202, r.text
    p = wait_done(sw, dev, app_id, pid, timeout=20)
    assert p["Status"] == "Failed"
    assert "cancelled" in details(sw, dev, app_id, pid)["Reason"]
    wait_for(lambda: not processes_matching(marker), timeout=5, what="no process left")
    assert_error(sw.post(f"/api/slipway/apps/{app_id}/packages/{pid}/cancel", dev), 409)


def test_invalid_and_missing_pipeline_file(app):
    sw, dev, app_id, repo = app
    commit(repo, {"README": b"no pipeline here\n"})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    assert wait_done(sw, dev, app_id, pid)["Status"] == "Failed"
    reason = details(sw, dev, app_id, pid)["Reason"]
    assert "slipway.yml" in reason and "add one" in reason
    commit(repo, {"slipway.yml": b"version: 1\nbuild:\n  steps: [true]\n  timeot: 5m\n"
                                b"package:\n  include: [out/]\n"})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    assert wait_done(sw, dev, app_id, pid)["Status"] == "Failed"
    reason = details(sw, dev, app_id, pid)["Reason"]
    assert "slipway.yml:4:3" in reason and "timeot" in reason, reason
    assert "slipway.yml:4:3" in build_log(sw, dev, app_id, pid)


def test_bad_cron_fails_the_build_at_its_character(app):
    sw, dev, app_id, repo = app
    commit(repo, {"slipway.yml": b"version: 1\nbuild:\n  steps: [true]\npackage:\n  include: [out/]\n"
                                b"scheduled_events:\n  - name: Main.Tick\n"
                                b"    cron: \"*/5 25 * * *\"\n    command: ./tick\n"})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    assert wait_done(sw, dev, app_id, pid)["Status"] == "Failed"
    want = "slipway.yml:8:16: scheduled_events[0].cron: hour: 25 is out of range 0-23"
    assert want in details(sw, dev, app_id, pid)["Reason"]
    assert want in build_log(sw, dev, app_id, pid)


def test_bad_requests(app):
    sw, dev, app_id, repo = app
    commit(repo, {"slipway.yml": TRIVIAL})
    url = f"/api/1/apps/{app_id}/packages"
    n = head_number(sw, dev, app_id)
    assert_error(sw.post(url, dev, json={"Branch": "main", "Revision": str(n), "Version": "1.0"}),
                 400, "INVALID_VERSION")
    assert_error(sw.post(url, dev, json={"Branch": "main", "Version": "1.0.0"}), 400,
                 "INVALID_PARAMETERS")
    assert_error(sw.post(url, dev, data=b""), 400, "INVALID_PARAMETERS")
    assert_error(sw.post(url, dev, json={"Branch": "nope", "Revision": "1", "Version": "1.0.0"}),
                 404, "BRANCH_NOT_FOUND")
    assert_error(sw.post(url, dev, json={"Branch": "main", "Revision": str(n + 5),
                                         "Version": "1.0.0"}), 404)
    assert_error(sw.post(url, dev, json={"Branch": "main", "Revision": "deadbeef",
                                         "Version": "1.0.0"}), 404)
    assert_error(sw.post("/api/1/apps/no-such-app/packages", dev,
                         json={"Branch": "main", "Revision": "1", "Version": "1.0.0"}), 404,
                 "APP_NOT_FOUND")
    assert_error(sw.get(f"{url}/00000000-0000-4000-8000-000000000000", dev), 404,
                 "PACKAGE_NOT_FOUND")
    # trunk and an integer Revision, as some clients send them
    r = sw.post(url, dev, json={"Branch": "trunk", "Revision": n, "Version": "3.0.0"})
    pid = assert_ok(r, 201)["PackageId"]
    assert wait_done(sw, dev, app_id, pid)["Status"] == "Succeeded"


def test_delete_refused_while_an_environment_holds_it(app):
    sw, dev, app_id, repo = app
    commit(repo, {"slipway.yml": TRIVIAL})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    assert wait_done(sw, dev, app_id, pid)["Status"] == "Succeeded"
    path = os.path.join(sw.data, "packages", app_id, f"{pid}.tar.zst")
    assert os.path.exists(path)
    # until deployment exists, an environment holds the package through the store directly
    db = sqlite3.connect(os.path.join(sw.data, "slipway.db"), timeout=10)
    db.execute("UPDATE environments SET package = ? WHERE mode = 'Test' AND app = "
               "(SELECT id FROM apps WHERE app_id = ?)", (pid, app_id))
    db.commit()
    assert_error(sw.delete(f"/api/1/apps/{app_id}/packages/{pid}", dev), 409, "PACKAGE_IN_USE")
    db.execute("UPDATE environments SET package = NULL WHERE package = ?", (pid,))
    db.commit()
    db.close()
    assert_ok(sw.delete(f"/api/1/apps/{app_id}/packages/{pid}", dev))
    assert not os.path.exists(path)
    assert_error(sw.get(f"/api/1/apps/{app_id}/packages/{pid}", dev), 404, "PACKAGE_NOT_FOUND")


def test_expired_or_forged_url_refused(app):
    sw, dev, app_id, repo = app
    commit(repo, {"slipway.yml": TRIVIAL})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    assert wait_done(sw, dev, app_id, pid)["Status"] == "Succeeded"
    with open(os.path.join(sw.data, "secret"), "rb") as f:
        secret = f.read()
    past = int(time.time()) - 10
    path = f"/api/1/apps/{app_id}/packages/{pid}/download"
    sig = hmac.new(secret, f"GET\n{path}\n{past}".encode(), hashlib.sha256).hexdigest()
    base = f"{sw.base}{path}"
    r = sw.http.get(f"{base}?expires={past}&signature={sig}", timeout=10)
    assert r.status_code == 403 and r.json()["errorCode"] == "URL_EXPIRED"
    future = int(time.time()) + 600
    r = sw.http.get(f"{base}?expires={future}&signature={sig}", timeout=10)
    assert r.status_code == 403 and r.json()["errorCode"] == "INVALID_SIGNATURE"
    good = hmac.new(secret, f"GET\n{path}\n{future}".encode(), hashlib.sha256).hexdigest()
    assert sw.http.get(f"{base}?expires={future}&signature={good}", timeout=10).status_code == 200


def test_executors_limit_parallel_builds(server_factory, tmp_path):
    from conftest import Slipway
    srv = server_factory(extra_args=["--executors", "1"])
    s = Slipway(srv, str(tmp_path))
    dev, a = s.new_dev_app("exec")
    repo = s.clone(a["AppId"], dev)
    commit(repo, {"slipway.yml": yml(["date +%s.%N > /tmp/t0", "sleep 1",
                                      "mkdir -p out && cp /tmp/t0 out/t0 && date +%s.%N > out/t1"])})
    n = head_number(s, dev, a["AppId"])
    pids = [start(s, dev, a["AppId"], n, f"1.0.{i}") for i in range(3)]
    spans = []
    for pid in pids:
        assert wait_done(s, dev, a["AppId"], pid)["Status"] == "Succeeded"
        tar = untar(s.get(f"/api/1/apps/{a['AppId']}/packages/{pid}/download", dev).content)
        t0 = float(tar.extractfile("out/t0").read())
        t1 = float(tar.extractfile("out/t1").read())
        spans.append((t0, t1))
    spans.sort()
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        assert b0 >= a1, f"builds overlapped with --executors 1: {spans}"
    assert srv.stop() == 0


def cgroup_dir(path):
    """The directory of a cgroup v2 group ("/slipway-.../<id>") on this host, if it exists."""
    for mount in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        d = mount + path
        if os.path.isfile(os.path.join(d, "cgroup.procs")):
            return d
    return None


def test_daemons_die_without_the_sandbox_too(server_factory, tmp_path):
    """Without bubblewrap (--unsafe-no-sandbox) a daemon that leaves the step's process group
    and session (setsid) still dies: every build step runs in a cgroup v2 group of its own,
    killed with cgroup.kill when the step ends, on cancel and on timeout, then removed."""
    from conftest import Slipway
    srv = server_factory(extra_args=["--unsafe-no-sandbox"])
    s = Slipway(srv, str(tmp_path))
    assert "cgroups: each build runs in a cgroup v2 group" in srv.stderr(), srv.stderr()
    dev, app_id, repo = s.new_dev_clone("cg")
    tag = int(time.time() * 1000) % 100000
    left, waits = f"sleep 5{tag}", f"sleep 6{tag}"
    daemon = f"setsid {left} </dev/null >/dev/null 2>&1 &"

    # a daemon left running by a step that succeeds
    commit(repo, {"slipway.yml": yml([daemon, "mkdir -p out && cat /proc/self/cgroup > out/cg"])})
    pid = start(s, dev, app_id, head_number(s, dev, app_id))
    assert wait_done(s, dev, app_id, pid)["Status"] == "Succeeded", build_log(s, dev, app_id, pid)
    tar = untar(s.get(f"/api/1/apps/{app_id}/packages/{pid}/download", dev).content)
    group = next(line[3:] for line in tar.extractfile("out/cg").read().decode().splitlines()
                 if line.startswith("0::"))
    assert group.startswith("/slipway-") and group.endswith(f"/{pid}.2"), group  # step 2
    wait_for(lambda: not processes_matching(left), timeout=5, what="the daemon killed")
    wait_for(lambda: cgroup_dir(group) is None, timeout=5, what="the build's cgroup removed")

    # a daemon and a long step, cancelled
    commit(repo, {"slipway.yml": yml([f"{daemon} {waits}"])})
    pid = start(s, dev, app_id, head_number(s, dev, app_id), "1.0.1")
    wait_for(lambda: processes_matching(left) and processes_matching(waits), timeout=30,
             what="the step and its daemon run")
    assert sw_cancel(s, dev, app_id, pid).status_code == 202
    p = wait_done(s, dev, app_id, pid, timeout=20)
    assert p["Status"] == "Failed" and "cancelled" in details(s, dev, app_id, pid)["Reason"]
    wait_for(lambda: not processes_matching(left) and not processes_matching(waits), timeout=5,
             what="no process left")
    assert srv.stop() == 0


def sw_cancel(s, dev, app_id, pid):
    return s.post(f"/api/slipway/apps/{app_id}/packages/{pid}/cancel", dev)


def test_first_step_environment_in_a_warm_sandbox(app):
    """The first step runs in a sandbox set up before the build (its environment comes from the
    step's wrapper script): the variables, quotes and all, the workspace, stdin from /dev/null,
    and the later steps (cold sandboxes) see the same."""
    sw, dev, app_id, repo = app
    text = ("version: 1\nruntime: shell\nbuild:\n  env:\n    GREETING: \"it's \\\"$HOME\\\" `x`\"\n"
            "  steps:\n"
            "    - 'mkdir -p out && printf \"%s|%s|%s|%s\" \"$GREETING\" \"$SLIPWAY_VERSION\" "
            "\"$PWD\" \"$(readlink /proc/self/fd/0)\" > out/one'\n"
            "    - 'printf \"%s|%s|%s\" \"$GREETING\" \"$SLIPWAY_VERSION\" $$ > out/two'\n"
            "package:\n  include:\n    - out/\n")
    commit(repo, {"slipway.yml": text.encode()})
    n = head_number(sw, dev, app_id)
    for i in range(3):  # the first takes the sandbox set up at start, the next ones fresh ones
        pid = start(sw, dev, app_id, n, f"2.0.{i}")
        assert wait_done(sw, dev, app_id, pid)["Status"] == "Succeeded", \
            build_log(sw, dev, app_id, pid)
        tar = untar(sw.get(f"/api/1/apps/{app_id}/packages/{pid}/download", dev).content)
        version = f"2.0.{i}.{n}"
        assert tar.extractfile("out/one").read().decode() == \
            f"it's \"$HOME\" `x`|{version}|/workspace|/dev/null"
        # the step's shell is pid 1 of the sandbox's pid namespace
        assert tar.extractfile("out/two").read().decode() == f"it's \"$HOME\" `x`|{version}|1"


def zombie_children(pid):
    """Children of pid that have exited and that nobody reaped."""
    return [c for c, _, state in children(pid) if state == "Z"]


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "unsafe"])
def test_server_as_pid_1_reaps_orphans(server_factory, tmp_path, sandbox):
    """In a container without an init the server is pid 1: every process that loses its parent
    is re-parented to it. It reaps those (the sandboxes' inner processes, a step's background
    job killed with its cgroup), so no zombie piles up build after build."""
    from conftest import Slipway
    args = [] if sandbox else ["--unsafe-no-sandbox"]
    srv = server_factory(extra_args=args,
                         prefix=["unshare", "--pid", "--fork", "--mount-proc",
                                 "--kill-child=SIGTERM"])
    s = Slipway(srv, str(tmp_path))
    dev, app_id, repo = s.new_dev_clone("pid1")
    commit(repo, {"slipway.yml": yml(["sleep 30 & mkdir -p out && echo x > out/x", "true"])})
    n = head_number(s, dev, app_id)
    server = next(int(p) for p in open(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children")
                  .read().split())
    with open(f"/proc/{server}/status") as f:
        assert "NSpid:" in f.read()
    for i in range(5):
        pid = start(s, dev, app_id, n, f"1.0.{i}")
        assert wait_done(s, dev, app_id, pid)["Status"] == "Succeeded", \
            build_log(s, dev, app_id, pid)
    wait_for(lambda: not zombie_children(server), timeout=5,
             what=f"no zombie children of the server (pid 1 of its namespace): "
                  f"{zombie_children(server)}")
    os.kill(server, signal.SIGTERM)  # unshare itself ignores SIGTERM while it waits
    assert srv.proc.wait(timeout=20) == 0


def test_a_large_package_does_not_hold_up_other_builds(server_factory, tmp_path):
    """Writing a package runs beside the engine: while one build's packaging is held, another
    build starts, runs its steps and succeeds, and the first one is still Building. The hold is
    the tests' packaging gate (src/builder/package.h), on a server of this test's own: however
    fast the packaging, it cannot end before the test lets it go, so no timing decides."""
    from conftest import Slipway
    gate = str(tmp_path / "package-gate")
    os.mkfifo(gate, 0o600)
    srv = server_factory(prefix=["env", f"SLIPWAY_TEST_PACKAGE_GATE={gate}"])
    sw = Slipway(srv, str(tmp_path))
    dev, app_id, repo = sw.new_dev_clone("gate")
    commit(repo, {"slipway.yml": yml(["mkdir -p out && head -c 50000000 /dev/urandom > out/big"]),
                  "quick/slipway.yml": TRIVIAL})
    big_rev = head_number(sw, dev, app_id)
    commit(repo, {"slipway.yml": TRIVIAL}, branch="quick")
    big = start(sw, dev, app_id, big_rev, "5.0.0")

    def held():  # a non-blocking open for writing fails with ENXIO until the packager reads
        try:
            return [os.open(gate, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)]
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            return None
    writer = wait_for(held, timeout=60, interval=0.01, what="the large build's packaging")[0]
    try:
        os.unlink(gate)  # the quick build's packaging is not held
        assert "==> packaging" in build_log(sw, dev, app_id, big)
        quick = start(sw, dev, app_id, head_number(sw, dev, app_id, "quick"), "5.0.1", "quick")
        q = wait_done(sw, dev, app_id, quick, timeout=60)
        assert q["Status"] == "Succeeded", build_log(sw, dev, app_id, quick)
        assert package(sw, dev, app_id, big)["Status"] == "Building"
    finally:
        os.close(writer)  # the packaging goes on
    p = wait_done(sw, dev, app_id, big, timeout=120)
    assert p["Status"] == "Succeeded" and p["Size"] > 50000000, build_log(sw, dev, app_id, big)
    # the server's own records agree: the quick build ran within the large one
    db = sqlite3.connect(os.path.join(sw.data, "slipway.db"), timeout=10)
    times = {pid: (started, finished) for pid, started, finished in db.execute(
        "SELECT package_id, started_ms, finished_ms FROM packages WHERE package_id IN (?, ?)",
        (big, quick))}
    db.close()
    assert times[big][0] <= times[quick][0] <= times[quick][1] <= times[big][1], times
