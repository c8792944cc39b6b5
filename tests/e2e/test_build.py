"""The Build API and the build runner, through the real binary: builds of real revisions in the
sandbox, polled and downloaded as Mendix's Build API documentation shows."""
import hashlib
import hmac
import io
import json
import os
import sqlite3
import subprocess
import tarfile
import time

import pytest

from conftest import assert_error, assert_ok, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.normpath(os.path.join(HERE, "..", "..", "examples", "hello-c"))


def yml(steps, timeout=None, include=("out/",)):
    """A slipway.yml with these build steps (each a YAML single-quoted string)."""
    text = "version: 1\nruntime: shell\nbuild:\n  steps:\n"
    text += "".join("    - '" + s.replace("'", "''") + "'\n" for s in steps)
    if timeout:
        text += f"  timeout: {timeout}\n"
    text += "package:\n  include:\n" + "".join(f"    - {i}\n" for i in include)
    return text.encode()


TRIVIAL = yml(["mkdir -p out", "echo hello > out/hello.txt"])


@pytest.fixture
def app(sw):
    dev = sw.new_user("builder")
    a = sw.new_app("build", [(dev, "developer")])
    return sw, dev, a["AppId"], sw.clone(a["AppId"], dev)


def commit(repo, files, branch="main"):
    ids = repo.commits(1, branch, files=files)
    repo.push(branch)
    return ids[-1]


def start(sw, dev, app_id, revision, version="1.0.0", branch="main"):
    r = sw.post(f"/api/1/apps/{app_id}/packages", dev,
                json={"Branch": branch, "Revision": str(revision), "Version": version,
                      "Description": "e2e"})
    return assert_ok(r, 201)["PackageId"]


def package(sw, dev, app_id, pid, query=""):
    return assert_ok(sw.get(f"/api/1/apps/{app_id}/packages/{pid}{query}", dev))


def wait_done(sw, dev, app_id, pid, timeout=90):
    def done():
        p = package(sw, dev, app_id, pid)
        return p if p["Status"] in ("Succeeded", "Failed") else None
    return wait_for(done, timeout=timeout, interval=0.05, what=f"build {pid}")


def build_log(sw, dev, app_id, pid):
    r = sw.get(f"/api/slipway/apps/{app_id}/packages/{pid}/log", dev)
    assert r.status_code == 200, r.text
    return r.text


def details(sw, dev, app_id, pid):
    return assert_ok(sw.get(f"/api/slipway/apps/{app_id}/packages/{pid}", dev))


def head_number(sw, dev, app_id, branch="main"):
    return assert_ok(sw.get(f"/api/1/apps/{app_id}/branches/{branch}", dev))["LatestRevisionNumber"]


def untar(blob):
    p = subprocess.run(["zstd", "-dcq"], input=blob, capture_output=True, check=True)
    return tarfile.open(fileobj=io.BytesIO(p.stdout))


def processes_matching(text):
    p = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True)
    return [x for x in p.stdout.split() if x]


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
    files = {}
    for root, _, names in os.walk(EXAMPLE):
        for n in names:
            full = os.path.join(root, n)
            rel = os.path.relpath(full, EXAMPLE)
            if rel.startswith("bin/") or rel.startswith("out/") or rel.endswith(".o"):
                continue
            with open(full, "rb") as f:
                files[rel] = f.read()
    head = commit(repo, files)
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
    sig = hmac.new(secret, f"download\n{app_id}\n{pid}\n{past}".encode(), hashlib.sha256).hexdigest()
    base = f"{sw.base}/api/1/apps/{app_id}/packages/{pid}/download"
    r = sw.http.get(f"{base}?expires={past}&signature={sig}", timeout=10)
    assert r.status_code == 403 and r.json()["errorCode"] == "URL_EXPIRED"
    future = int(time.time()) + 600
    r = sw.http.get(f"{base}?expires={future}&signature={sig}", timeout=10)
    assert r.status_code == 403 and r.json()["errorCode"] == "INVALID_SIGNATURE"
    good = hmac.new(secret, f"download\n{app_id}\n{pid}\n{future}".encode(),
                    hashlib.sha256).hexdigest()
    assert sw.http.get(f"{base}?expires={future}&signature={good}", timeout=10).status_code == 200


def test_executors_limit_parallel_builds(server_factory, tmp_path):
    from conftest import Slipway
    srv = server_factory(extra_args=["--executors", "1"])
    s = Slipway(srv, str(tmp_path))
    dev = s.new_user("exec")
    a = s.new_app("exec", [(dev, "developer")])
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
