"""Backups: snapshots of an environment's data (and database) through Mendix's Backups API v1
and v2, their downloads, restores into a stopped environment, retention, and a server killed
during a snapshot."""

import glob
import io
import os
import re
import signal
import tarfile

import pytest
import requests

from conftest import Server, Slipway, assert_error, assert_ok, wait_for
from test_deploy import build, deploy, env_path, example_files, get, notes_files

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def new_backup_deployer(sw, prefix):
    dev, app_id, repo = sw.new_dev_clone(prefix, user_prefix="backups")
    for mode in ("Test", "Acceptance"):
        sw.rights(app_id, dev, mode, "api,transport,backups")
    return dev, app_id, repo


def data_dir(sw, app_id, mode):
    return os.path.join(sw.data, "envs", app_id, mode, "data")


def write_as_app(sw, app_id, mode, rel, content):
    """Writes a file into the environment's data directory as the app would: owned by the
    environment's user (the owner of its data directory)."""
    top = data_dir(sw, app_id, mode)
    st = os.stat(top)
    path = os.path.join(top, rel)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent)
        os.chown(parent, st.st_uid, st.st_gid)
    with open(path, "wb") as f:
        f.write(content)
    os.chown(path, st.st_uid, st.st_gid)
    return path


def read(sw, app_id, mode, rel):
    with open(os.path.join(data_dir(sw, app_id, mode), rel), "rb") as f:
        return f.read()


def v1_wait(sw, dev, app_id, mode, snap_id, timeout=60):
    """Polls the download call as v1 clients do: 500 while the snapshot is being made."""
    seen = []

    def done():
        r = sw.get(env_path(app_id, mode, f"/snapshots/{snap_id}"), dev)
        if r.status_code == 500:
            assert r.json()["errorCode"] == "INTERNAL_SERVER_ERROR", r.text
            seen.append(r.json()["errorMessage"])
            assert "failed" not in r.json()["errorMessage"], r.text
            return None
        assert r.status_code == 200, r.text
        return r.json()
    return wait_for(done, timeout=timeout, what="the snapshot"), seen


def v2_base(sw, dev, app_id, mode):
    app = assert_ok(sw.get(f"/api/1/apps/{app_id}", dev))
    env = assert_ok(sw.get(env_path(app_id, mode), dev))
    return f"/api/v2/apps/{app['ProjectId']}/environments/{env['EnvironmentId']}"


def v2_wait(sw, dev, path, timeout=60):
    states = []

    def done():
        j = assert_ok(sw.get(path, dev))
        states.append(j["state"])
        return j if j["state"] in ("completed", "failed") else None
    return wait_for(done, timeout=timeout, what=path), states


@pytest.fixture
def deployed(sw):
    dev, app_id, repo = new_backup_deployer(sw, "backups")
    pid = build(sw, dev, app_id, repo, example_files())
    env = deploy(sw, dev, app_id, "Test", pid)
    yield sw, dev, app_id, env
    sw.post(env_path(app_id, "Test", "/stop"), dev)
    sw.post(env_path(app_id, "Acceptance", "/stop"), dev)


def test_v1_snapshot_download_and_restore(deployed):
    sw, dev, app_id, env = deployed
    write_as_app(sw, app_id, "Test", "state.txt", b"original")
    write_as_app(sw, app_id, "Test", "sub/deeper.bin", bytes(range(256)) * 100)
    os.symlink("sub/deeper.bin", os.path.join(data_dir(sw, app_id, "Test"), "link"))
    uid = os.stat(data_dir(sw, app_id, "Test")).st_uid

    s = assert_ok(sw.post(env_path(app_id, "Test", "/snapshots"), dev,
                          json={"Comment": "before the change"}))
    assert s["State"] in ("Queued", "Running") and s["Comment"] == "before the change"
    assert s["ModelVersion"] == env["ModelVersion"]
    assert s["ExpiresOn"] - s["CreatedOn"] == 30 * 86400 * 1000
    links, _ = v1_wait(sw, dev, app_id, "Test", s["SnapshotID"])
    listed = assert_ok(sw.get(env_path(app_id, "Test", "/snapshots"), dev))
    assert [x["State"] for x in listed if x["SnapshotID"] == s["SnapshotID"]] == ["Completed"]
    # the instances were frozen for the copy (the host has cgroup v2), and the log says so
    sw.wait_log(r"snapshot " + s["SnapshotID"] + r" of .*: files copied with the instances "
                r"frozen for \d+ ms")
    # the links work without credentials
    assert links["DatabaseOnly"] is None  # the example app has no database
    r = requests.get(links["FilesOnly"], timeout=30)
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as t:
        assert t.extractfile("state.txt").read() == b"original"
        assert t.getmember("link").issym() and t.getmember("link").linkname == "sub/deeper.bin"
    r = requests.get(links["DatabaseAndFiles"], timeout=30)
    assert r.status_code == 200 and r.content.startswith(ZSTD_MAGIC)
    r = requests.get(links["FilesOnly"].replace("signature=", "signature=0"), timeout=30)
    assert r.status_code == 403

    # the app's data changes; a restore into the running environment is refused
    write_as_app(sw, app_id, "Test", "state.txt", b"changed")
    write_as_app(sw, app_id, "Test", "extra.txt", b"new")
    assert_error(sw.post(env_path(app_id, "Test", f"/restore/{s['SnapshotID']}"), dev), 400,
                 "ERROR_NOT_ALLOWED")
    assert read(sw, app_id, "Test", "state.txt") == b"changed"
    # stopped, the restore brings the original data back
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    r = assert_ok(sw.post(env_path(app_id, "Test", f"/restore/{s['SnapshotID']}"), dev))
    assert r["SnapshotID"] == s["SnapshotID"]
    assert read(sw, app_id, "Test", "state.txt") == b"original"
    assert read(sw, app_id, "Test", "sub/deeper.bin") == bytes(range(256)) * 100
    assert not os.path.exists(os.path.join(data_dir(sw, app_id, "Test"), "extra.txt"))
    assert os.readlink(os.path.join(data_dir(sw, app_id, "Test"), "link")) == "sub/deeper.bin"
    for p in ("", "state.txt", "sub", "sub/deeper.bin"):
        assert os.lstat(os.path.join(data_dir(sw, app_id, "Test"), p)).st_uid == uid, p
    assert not glob.glob(os.path.join(sw.data, "envs", app_id, "Test", "data.restore-*"))
    # a snapshot of another environment is not this one's; an unknown one neither
    assert_error(sw.post(env_path(app_id, "Test", "/restore/nope"), dev), 400, "NOT_FOUND")
    assert_error(sw.get(env_path(app_id, "Test", "/snapshots/" + "0" * 36), dev), 404,
                 "SNAPSHOT_NOT_FOUND")
    # the stopped environment is snapshotted as it is
    s2 = assert_ok(sw.post(env_path(app_id, "Test", "/snapshots"), dev, json={}))
    v1_wait(sw, dev, app_id, "Test", s2["SnapshotID"])
    sw.wait_log(r"snapshot " + s2["SnapshotID"] + r" of .*: environment stopped: files copied "
                r"as they are")
    entries, _ = sw.audit()
    actions = [(e["action"], e["detail"]) for e in entries if e["app"] == app_id]
    assert ("backup snapshot", s["SnapshotID"]) in actions, actions
    assert ("backup restore", s["SnapshotID"]) in actions, actions


def test_v2_snapshots_archives_and_restores(deployed):
    sw, dev, app_id, env = deployed
    base = v2_base(sw, dev, app_id, "Test")
    write_as_app(sw, app_id, "Test", "state.txt", b"v2 original")
    s = assert_ok(sw.post(base + "/snapshots", dev, json={"comment": "nightly"}), 201)
    assert s["state"] == "queued" and s["comment"] == "nightly" and s["finished_at"] is None
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", s["expires_at"])
    done, states = v2_wait(sw, dev, f"{base}/snapshots/{s['snapshot_id']}")
    assert done["state"] == "completed", done
    assert states[-1] == "completed" and done["finished_at"]
    # list, paged
    page = assert_ok(sw.get(base + "/snapshots?offset=0&limit=1", dev))
    assert page["limit"] == 1 and page["offset"] == 0 and page["total"] >= 1
    assert page["snapshots"][0]["snapshot_id"] == s["snapshot_id"]
    assert_error(sw.get(base + "/snapshots?limit=0", dev), 400, "INVALID_PARAMETERS")
    # the comment changes; updated_at does not
    r = assert_ok(sw.request("PUT", f"{base}/snapshots/{s['snapshot_id']}", dev,
                             json={"comment": "kept"}))
    assert r["comment"] == "kept" and r["updated_at"] == done["updated_at"]
    assert_error(sw.request("PUT", f"{base}/snapshots/{s['snapshot_id']}", dev,
                            json={"comment": "x" * 1001}), 400, "INVALID_PARAMETERS")
    assert_error(sw.post(base + "/snapshots", dev, json={"comment": 5}), 400,
                 "INVALID_PARAMETERS")
    # an archive: url null until completed, then a link that works without credentials
    a = assert_ok(sw.post(f"{base}/snapshots/{s['snapshot_id']}/archives?data_type="
                          "files_and_database", dev), 201)
    assert a["state"] == "queued" and a["url"] is None and a["data_type"] == "files_and_database"
    a, _ = v2_wait(sw, dev, f"{base}/snapshots/{s['snapshot_id']}/archives/{a['archive_id']}")
    assert a["state"] == "completed" and a["url"], a
    r = requests.get(a["url"], timeout=30)
    assert r.status_code == 200 and r.content.startswith(ZSTD_MAGIC)
    assert_error(sw.post(f"{base}/snapshots/{s['snapshot_id']}/archives?data_type=database_only",
                         dev), 400, "INVALID_STATE")
    assert_error(sw.post(f"{base}/snapshots/{s['snapshot_id']}/archives?data_type=nope", dev),
                 400, "INVALID_PARAMETERS")
    # a restore into the running environment is refused
    assert_error(sw.post(f"{base}/restores?source_snapshot_id={s['snapshot_id']}", dev), 400,
                 "INVALID_STATE")
    # into Acceptance (stopped, of the same app): the snapshot of Test's data
    acc = v2_base(sw, dev, app_id, "Acceptance")
    r = assert_ok(sw.post(f"{acc}/restores?source_snapshot_id={s['snapshot_id']}&db_only=false",
                          dev), 201)
    assert r["state"] == "queued" and r["source_snapshot_id"] == s["snapshot_id"]
    assert r["source_environment_id"] == env["EnvironmentId"]
    r, states = v2_wait(sw, dev, f"{acc}/restores/{r['restore_id']}")
    assert r["state"] == "completed", r
    assert read(sw, app_id, "Acceptance", "state.txt") == b"v2 original"
    acc_uid = os.stat(data_dir(sw, app_id, "Acceptance")).st_uid
    assert os.stat(os.path.join(data_dir(sw, app_id, "Acceptance"), "state.txt")).st_uid == acc_uid
    assert_error(sw.post(f"{acc}/restores?source_snapshot_id={s['snapshot_id']}&db_only=true",
                         dev), 400, "INVALID_STATE")
    assert_error(sw.post(f"{acc}/restores?source_snapshot_id=" + "0" * 36, dev), 404, "NOT_FOUND")
    # without Access to Backups: refused
    sw.rights(app_id, dev, "Test", "backups", revoke=True)
    assert_error(sw.get(base + "/snapshots", dev), 403, "NO_ACCESS")
    assert_error(sw.post(f"{acc}/restores?source_snapshot_id={s['snapshot_id']}", dev), 403,
                 "NO_ACCESS")
    sw.rights(app_id, dev, "Test", "backups")
    # delete: the row and the file
    path = os.path.join(sw.data, "snapshots", app_id, "Test", s["snapshot_id"] + ".tar.zst")
    assert os.path.exists(path)
    assert sw.delete(f"{base}/snapshots/{s['snapshot_id']}", dev).status_code == 204
    assert_error(sw.get(f"{base}/snapshots/{s['snapshot_id']}", dev), 404, "NOT_FOUND")
    assert not os.path.exists(path)
    actions = {e["action"] for e in sw.audit()[0] if e["app"] == app_id}
    assert {"backup snapshot", "backup snapshot update", "backup archive", "backup restore",
            "backup snapshot delete"} <= actions, actions


def own_server(server_factory, tmp_path, extra_args):
    srv = server_factory(extra_args=extra_args)
    return Slipway(srv, str(tmp_path)), srv


def test_retention_and_a_server_killed_during_a_snapshot(server_factory, tmp_path):
    args = ["--snapshot-retention-days", "3s"]
    sw, srv = own_server(server_factory, tmp_path, args)
    dev, app_id, repo = new_backup_deployer(sw, "retain")
    pid = build(sw, dev, app_id, repo, example_files())
    env = deploy(sw, dev, app_id, "Test", pid)
    # a snapshot expires 3 s after it was asked for, and is swept: row and file
    s = assert_ok(sw.post(env_path(app_id, "Test", "/snapshots"), dev, json={}))
    assert s["ExpiresOn"] - s["CreatedOn"] == 3000
    v1_wait(sw, dev, app_id, "Test", s["SnapshotID"])
    path = os.path.join(sw.data, "snapshots", app_id, "Test", s["SnapshotID"] + ".tar.zst")
    assert os.path.exists(path)
    wait_for(lambda: sw.get(env_path(app_id, "Test", f"/snapshots/{s['SnapshotID']}"),
                            dev).status_code == 404, timeout=20, what="the sweep")
    assert not os.path.exists(path)
    sw.wait_log(r"snapshot " + s["SnapshotID"] + r" .* expired: deleted")

    # a large data directory; the server is killed while the snapshot runs
    block = os.urandom(1 << 20)
    top = data_dir(sw, app_id, "Test")
    with open(os.path.join(top, "big.bin"), "wb") as f:
        for _ in range(1200):
            f.write(block[:(1 << 20) - 7] + os.urandom(7))
    base = v2_base(sw, dev, app_id, "Test")
    s = assert_ok(sw.post(base + "/snapshots", dev, json={"comment": "interrupted"}), 201)
    wait_for(lambda: sw.get(f"{base}/snapshots/{s['snapshot_id']}", dev).json()["state"]
             == "running", timeout=30, interval=0.005, what="the snapshot running")
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    srv._stderr_file.close()
    srv2 = Server(srv.data, str(tmp_path), args).start()
    try:
        sw.server = srv2
        j = assert_ok(sw.get(f"{base}/snapshots/{s['snapshot_id']}", dev))
        assert j["state"] == "failed" and "server stopped" in j["status_message"], j
        left = os.listdir(os.path.join(sw.data, "snapshots", app_id, "Test"))
        assert not [n for n in left if ".tmp-" in n], left
        assert not os.path.exists(os.path.join(sw.data, "snapshots", app_id, "Test",
                                               s["snapshot_id"] + ".tar.zst"))
        # the instances run on, thawed
        assert get(env["Url"], timeout=10).status_code == 200
        assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    finally:
        srv2.stop()


def notes(url):
    r = requests.get(url + "/notes", timeout=10)
    assert r.status_code == 200, r.text
    return [n["text"] for n in r.json()]


def test_a_snapshot_holds_the_database(sw):
    dev, app_id, repo = new_backup_deployer(sw, "bknotes")
    pid = build(sw, dev, app_id, repo, notes_files())
    env = deploy(sw, dev, app_id, "Test", pid)
    try:
        r = requests.post(env["Url"] + "/notes", data=b"first", timeout=10)
        assert r.status_code == 201, r.text
        s = assert_ok(sw.post(env_path(app_id, "Test", "/snapshots"), dev, json={}))
        links, _ = v1_wait(sw, dev, app_id, "Test", s["SnapshotID"])
        sw.wait_log(r"snapshot " + s["SnapshotID"] + r" of .*: files copied with the instances "
                    r"frozen for \d+ ms; database dumped in one transaction")
        # the dump downloads without credentials (pg_dump's custom format starts with PGDMP)
        r = requests.get(links["DatabaseOnly"], timeout=30)
        assert r.status_code == 200 and r.content.startswith(b"PGDMP")
        assert requests.post(env["Url"] + "/notes", data=b"second",
                             timeout=10).status_code == 201
        assert notes(env["Url"]) == ["second", "first"]
        assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
        base = v2_base(sw, dev, app_id, "Test")
        r = assert_ok(sw.post(f"{base}/restores?source_snapshot_id={s['SnapshotID']}&db_only=true",
                              dev), 201)
        r, _ = v2_wait(sw, dev, f"{base}/restores/{r['restore_id']}")
        assert r["state"] == "completed", r
        env = deploy_start(sw, dev, app_id)
        assert notes(env["Url"]) == ["first"]
    finally:
        sw.post(env_path(app_id, "Test", "/stop"), dev)


def deploy_start(sw, dev, app_id):
    from test_deploy import wait_started
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
    r = wait_started(sw, dev, app_id, "Test", job)
    assert r.status_code == 200 and r.json()["Status"] == "Started", r.text
    return assert_ok(sw.get(env_path(app_id, "Test"), dev))


def crafted_snapshot(path, entries):
    """Replaces a snapshot's file with a tar.zst of entries: (name, type, data or link target)."""
    import subprocess
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, payload
                t.addfile(info)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            else:
                info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))
    out = subprocess.run(["zstd", "-q", "-c"], input=buf.getvalue(), capture_output=True,
                         check=True).stdout
    with open(path, "wb") as f:
        f.write(out)


def test_a_restore_writes_nothing_outside_the_data_directory(deployed, tmp_path):
    sw, dev, app_id, env = deployed
    write_as_app(sw, app_id, "Test", "state.txt", b"kept")
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    outside = tmp_path / "outside"
    outside.mkdir()
    cases = [
        [("files/a", "sym", str(outside)), ("files/a/pwned", "file", b"x")],
        [("files/../pwned", "file", b"x")],
        [("files/b", "dir", None), ("files/b/../../pwned", "file", b"x")],
        [("/etc/pwned", "file", b"x")],
    ]
    for entries in cases:
        s = assert_ok(sw.post(env_path(app_id, "Test", "/snapshots"), dev, json={}))
        v1_wait(sw, dev, app_id, "Test", s["SnapshotID"])
        crafted_snapshot(os.path.join(sw.data, "snapshots", app_id, "Test",
                                      s["SnapshotID"] + ".tar.zst"), entries)
        r = sw.post(env_path(app_id, "Test", f"/restore/{s['SnapshotID']}"), dev)
        assert_error(r, 500, "INTERNAL_SERVER_ERROR")
        assert "failed" in r.json()["errorMessage"], r.text
        assert os.listdir(outside) == [], entries
        assert not os.path.exists(os.path.join(sw.data, "envs", app_id, "Test", "pwned"))
        assert not os.path.exists("/etc/pwned")
        # the environment's data is as it was, and no half-restored directory is left
        assert read(sw, app_id, "Test", "state.txt") == b"kept"
        assert not glob.glob(os.path.join(sw.data, "envs", app_id, "Test", "data.restore-*"))
