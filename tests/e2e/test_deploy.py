"""Environments through Mendix's Deploy API v1, as a pipeline drives them: build, poll, stop,
clean, transport, start, poll the start job, and the app answers at the environment's URL
(through nginx). Then settings, scale, a killed instance, logs, and bad input."""

import datetime
import json
import os
import re
import signal
import time

import pytest
import requests

from builds import build_log, commit, head_number, start as build_start, wait_done
from conftest import assert_error, assert_ok, command_lines, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.normpath(os.path.join(HERE, "..", "..", "examples", "hello-c"))
NOTES = os.path.normpath(os.path.join(HERE, "..", "..", "examples", "notes-c"))


def source_files(top):
    """An example app's sources (not what a local build left: bin/, out/, *.o), by path."""
    files = {}
    for root, _, names in os.walk(top):
        for n in names:
            full = os.path.join(root, n)
            rel = os.path.relpath(full, top)
            if rel.startswith(("bin/", "out/")) or rel.endswith(".o"):
                continue
            with open(full, "rb") as f:
                files[rel] = f.read()
    return files


def example_files(yml=None):
    files = source_files(EXAMPLE)
    if yml is not None:
        files["slipway.yml"] = yml.encode()
    return files


def notes_files():
    """examples/notes-c, the example that keeps its notes in the environment's database."""
    return source_files(NOTES)


def build(sw, dev, app_id, repo, files, version="1.0.0"):
    commit(repo, files)
    pid = build_start(sw, dev, app_id, head_number(sw, dev, app_id), version)
    p = wait_done(sw, dev, app_id, pid)
    assert p["Status"] == "Succeeded", build_log(sw, dev, app_id, pid)
    return pid


def env_path(app_id, mode, rest=""):
    return f"/api/1/apps/{app_id}/environments/{mode}{rest}"


def wait_started(sw, dev, app_id, mode, job, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = sw.get(env_path(app_id, mode, f"/start/{job}"), dev)
        if r.status_code != 200:
            return r
        if r.json()["Status"] == "Started":
            return r
        assert r.json()["Status"] == "Starting"
        time.sleep(0.05)
    pytest.fail("the start job did not end")


def deploy(sw, dev, app_id, mode, pid):
    """The pipeline's sequence: stop, clean, transport, start, poll."""
    r = sw.post(env_path(app_id, mode, "/stop"), dev)
    assert r.status_code == 200, r.text
    r = sw.post(env_path(app_id, mode, "/clean"), dev)
    assert r.status_code in (200, 422), r.text
    assert_ok(sw.post(env_path(app_id, mode, "/transport"), dev, json={"PackageId": pid}))
    job = assert_ok(sw.post(env_path(app_id, mode, "/start"), dev,
                            json={"AutoSyncDb": True}))["JobId"]
    r = wait_started(sw, dev, app_id, mode, job)
    assert r.status_code == 200 and r.json()["Status"] == "Started", r.text
    return assert_ok(sw.get(env_path(app_id, mode), dev))


def get(url, path="/", timeout=10):
    return requests.get(url + path, timeout=timeout)


def new_deployer(sw, prefix):
    """A developer of a new app with Transport Rights on Test and Acceptance (as a team grants
    them in Mendix's portal): (dev, app_id, repo)."""
    dev, app_id, repo = sw.new_dev_clone(prefix, user_prefix="deployer")
    for mode in ("Test", "Acceptance"):
        sw.rights(app_id, dev, mode, "api,transport")
    return dev, app_id, repo


@pytest.fixture
def hello(sw):
    dev, app_id, repo = new_deployer(sw, "deploy")
    pid = build(sw, dev, app_id, repo, example_files())
    return sw, dev, app_id, repo, pid


def test_pipeline_deploys_to_test_and_acceptance(hello):
    sw, dev, app_id, repo, pid = hello
    envs = assert_ok(sw.get(f"/api/1/apps/{app_id}/environments", dev))
    assert [e["Mode"] for e in envs] == ["Test", "Acceptance", "Production"]
    assert all(e["Status"] == "Empty" for e in envs)
    test = deploy(sw, dev, app_id, "Test", pid)
    assert test["Status"] == "Running" and test["ModelVersion"].startswith("1.0.0.")
    assert test["MendixVersion"] == "c17" and test["Production"] is False
    body = get(test["Url"]).json()
    assert body["greeting"] == "hello" and body["version"] == test["ModelVersion"]
    # started through the lean launcher beside the slipway binary
    assert re.search(r"app instances start through \S*/slipway-instance$", sw.log(), re.M)
    with open(f"/proc/{instance_pids(sw, app_id, 'Test')[0]}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0].endswith(b"/slipway-instance")
    # the same package to Acceptance (mode in any case)
    acc = deploy(sw, dev, app_id, "acceptance", pid)
    assert acc["Url"] != test["Url"] and get(acc["Url"]).json()["greeting"] == "hello"
    # stop answers once stopped; the router then answers 503 with a JSON body
    r = sw.post(env_path(app_id, "Acceptance", "/stop"), dev, data="")
    assert_ok(r)
    assert r.json()["Status"] == "Stopped"
    r = get(acc["Url"])
    assert r.status_code == 503 and r.json()["errorCode"]
    # a second stop: 200 with a JSON body
    assert_ok(sw.post(env_path(app_id, "Acceptance", "/stop"), dev, json={"dummy": "test"}))
    # clean: refused while running, done when stopped, 422 when empty
    assert_error(sw.post(env_path(app_id, "Test", "/clean"), dev), 403, "ENVIRONMENT_NOT_STOPPED")
    cleaned = assert_ok(sw.post(env_path(app_id, "Acceptance", "/clean"), dev))
    assert cleaned[0]["Mode"] == "Acceptance" and cleaned[0]["Status"] == "Empty"
    assert_error(sw.post(env_path(app_id, "Acceptance", "/clean"), dev), 422,
                 "ENVIRONMENT_NOT_DEPLOYED")
    # the environment's package, with a signed URL that works without credentials
    p = assert_ok(sw.get(env_path(app_id, "Test", "/package?url=true"), dev))
    assert p["PackageId"] == pid and p["ExpiryDate"] is None
    assert requests.get(p["Url"]["Location"], timeout=10).status_code == 200
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))


def test_start_job_on_v2_and_already_started(hello):
    sw, dev, app_id, repo, pid = hello
    assert_ok(sw.post(env_path(app_id, "Test", "/transport"), dev, json={"PackageId": pid}))
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]  # no body at all
    wait_for(lambda: sw.get(f"/api/v2/apps/{app_id}/jobs/{job}", dev).json()["Status"]
             == "Completed", timeout=30, what="the v2 job")
    r = sw.post(env_path(app_id, "Test", "/start"), dev, json={"AutoSyncDb": "true"})
    assert r.status_code == 200 and r.json()["errorCode"] == "ALREADY_STARTED"
    assert_error(sw.get(env_path(app_id, "Test", "/start/nope"), dev), 404, "NO_SUCH_STARTJOB")
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))


def test_settings_scale_kill_and_logs(hello):
    sw, dev, app_id, repo, pid = hello
    env = deploy(sw, dev, app_id, "Test", pid)
    s = assert_ok(sw.get(env_path(app_id, "Test", "/settings"), dev))
    assert s["Constants"] == [{"Name": "Main.Greeting", "DataType": "String", "Value": "hello",
                               "DeployedValue": "hello"}]
    assert s["CustomSettings"] == [] and s["ScheduledEvents"] == []
    s["Constants"][0]["Value"] = "hi there"
    s2 = assert_ok(sw.post(env_path(app_id, "Test", "/settings"), dev, json=s))
    assert s2["Constants"][0]["Value"] == "hi there"
    assert s2["Constants"][0]["DeployedValue"] == "hello"
    assert get(env["Url"]).json()["greeting"] == "hello"  # applied at the next start
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev, json={}))["JobId"]
    assert wait_started(sw, dev, app_id, "Test", job).json()["Status"] == "Started"
    assert get(env["Url"]).json()["greeting"] == "hi there"
    assert assert_ok(sw.get(env_path(app_id, "Test", "/settings"), dev))["Constants"][0][
        "DeployedValue"] == "hi there"
    # an unknown constant
    assert_error(sw.post(env_path(app_id, "Test", "/settings"), dev,
                         json={"Constants": [{"Name": "Main.Nope", "Value": "x"}]}),
                 400, "CONSTANT_NOT_FOUND")
    # scale to 2: both instances answer through the URL
    assert_error(sw.post(env_path(app_id, "Test", "/scale"), dev,
                         json={"Instances": 2, "MemoryPerInstance": 512}), 400, "INVALID_REQUEST")
    scaled = assert_ok(sw.post(env_path(app_id, "Test", "/scale"), dev,
                               json={"Instances": 2, "MemoryPerInstance": 1024}))
    assert scaled["Instances"] == 2
    seen = set()
    wait_for(lambda: seen.add(get(env["Url"]).json()["instance"]) or seen == {"0", "1"},
             timeout=20, what="both instances answering")
    # kill an instance: it comes back
    pids = instance_pids(sw, app_id, "Test")
    assert len(pids) == 2
    os.killpg(pids[1], signal.SIGKILL)
    wait_for(lambda: len(instance_pids(sw, app_id, "Test")) == 2
             and pids[1] not in instance_pids(sw, app_id, "Test"), timeout=20,
             what="the killed instance started again")
    # today's app log and access log, through signed URLs
    today = datetime.date.today().isoformat()
    for kind, needle in (("logs", "[0] started"), ("access-logs", "GET / ")):
        link = assert_ok(sw.get(env_path(app_id, "Test", f"/{kind}/{today}"), dev))
        assert link["Environment"] == env["EnvironmentId"]
        text = wait_for(lambda: (lambda t: t if needle in t else None)(
            requests.get(link["DownloadUrl"], timeout=10).text), timeout=10, what=kind)
        assert needle in text
    assert_error(sw.get(env_path(app_id, "Test", "/logs/2001-01-01"), dev), 404)
    assert_error(sw.get(env_path(app_id, "Test", "/logs/yesterday"), dev), 400)
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))


def instance_pids(sw, app_id, mode):
    """The launchers of the environment's instances (not scheduled events)."""
    data = os.path.realpath(sw.data)
    needle = f"{data}/envs/{app_id}/{mode}/logs".encode()
    return sorted(pid for pid, argv in command_lines()
                  if len(argv) > 5 and argv[1] == b"instance" and needle in argv and
                  not argv[argv.index(b"--label") + 1].startswith(b"event:"))


def test_bad_input(sw):
    dev, app_id, repo = new_deployer(sw, "deploybad")
    assert_error(sw.post(env_path(app_id, "Test", "/transport"), dev,
                         json={"PackageId": "00000000-0000-0000-0000-000000000000"}), 404,
                 "PACKAGE_NOT_FOUND")
    assert_error(sw.post(env_path(app_id, "Test", "/transport"), dev, json={}), 400,
                 "INVALID_PARAMETERS")
    assert_error(sw.post(env_path(app_id, "Test", "/start"), dev), 500, "NO_MDA_HAS_BEEN_DEPLOYED")
    assert_error(sw.get(env_path(app_id, "Nowhere"), dev), 404, "ENVIRONMENT_NOT_FOUND")
    # a failed package cannot be transported
    commit(repo, {"slipway.yml": b"version: 1\nbuild:\n  steps: [\"exit 1\"]\npackage:\n"
                                 b"  include: [out/]\n"})
    failed = build_start(sw, dev, app_id, head_number(sw, dev, app_id), "1.0.0")
    assert wait_done(sw, dev, app_id, failed)["Status"] == "Failed"
    assert_error(sw.post(env_path(app_id, "Test", "/transport"), dev, json={"PackageId": failed}),
                 403)
    # Production needs rights granted explicitly
    r = sw.post(env_path(app_id, "Production", "/stop"), dev)
    assert_error(r, 403, "NO_ACCESS")
    assert "Production" in r.json()["errorMessage"]


def test_app_that_never_becomes_healthy(sw):
    dev, app_id, repo = new_deployer(sw, "deploysick")
    yml = ("version: 1\nbuild:\n  steps: [\"mkdir -p bin && printf '#!/bin/sh\\\\necho "
           "booting; exec sleep 100\\\\n' > bin/run && chmod +x bin/run\"]\npackage:\n"
           "  include: [bin/]\nrun:\n  command: ./bin/run\n  health: /healthz\n"
           "  start_timeout: 2s\n  stop_timeout: 1s\n")
    pid = build(sw, dev, app_id, repo, {"slipway.yml": yml.encode()})
    assert_ok(sw.post(env_path(app_id, "Test", "/transport"), dev, json={"PackageId": pid}))
    t0 = time.monotonic()
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
    r = wait_started(sw, dev, app_id, "Test", job)
    assert 1.5 < time.monotonic() - t0 < 15
    body = assert_error(r, 500, "START_FAILED")
    assert "run.start_timeout" in body["errorMessage"] and "booting" in body["errorMessage"]
    env = assert_ok(sw.get(env_path(app_id, "Test"), dev))
    assert env["Status"] == "Stopped"
    wait_for(lambda: not instance_pids(sw, app_id, "Test"), timeout=10, what="instances gone")


def test_app_that_exits_during_start(sw):
    dev, app_id, repo = new_deployer(sw, "deploycrash")
    yml = ("version: 1\nbuild:\n  steps: [\"mkdir -p bin && printf '#!/bin/sh\\\\necho "
           "missing config >&2; exit 4\\\\n' > bin/run && chmod +x bin/run\"]\npackage:\n"
           "  include: [bin/]\nrun:\n  command: ./bin/run\n  health: /healthz\n")
    pid = build(sw, dev, app_id, repo, {"slipway.yml": yml.encode()})
    assert_ok(sw.post(env_path(app_id, "Test", "/transport"), dev, json={"PackageId": pid}))
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
    body = assert_error(wait_started(sw, dev, app_id, "Test", job), 500, "START_FAILED")
    assert "status 4" in body["errorMessage"] and "missing config" in body["errorMessage"]


def test_flexible_environment_and_production_url(hello):
    sw, dev, app_id, repo, pid = hello
    # an administrator adds an environment; it is addressed by its name, in any case
    env = assert_ok(sw.post(f"/api/slipway/apps/{app_id}/environments", sw.admin,
                            json={"Mode": "Staging-2", "Production": False}), 201)
    assert env["Mode"] == "Staging-2" and env["Status"] == "Empty"
    assert_error(sw.post(f"/api/slipway/apps/{app_id}/environments", sw.admin,
                         json={"Mode": "staging-2"}), 409)
    assert_error(sw.post(f"/api/slipway/apps/{app_id}/environments", sw.admin,
                         json={"Mode": "../etc"}), 400)
    assert_error(sw.post(f"/api/slipway/apps/{app_id}/environments", dev,
                         json={"Mode": "Mine"}), 403)
    out = sw.cli_out("env", "add", "--app", app_id, "--env", "Demo")
    assert out.startswith("Demo\t")
    modes = [e["Mode"] for e in assert_ok(sw.get(f"/api/1/apps/{app_id}/environments", dev))]
    assert modes == ["Test", "Acceptance", "Production", "Staging-2", "Demo"]
    sw.rights(app_id, dev, "Staging-2", "api,transport")
    staging = deploy(sw, dev, app_id, "staging-2", pid)
    assert get(staging["Url"]).json()["greeting"] == "hello"
    assert_ok(sw.post(env_path(app_id, "STAGING-2", "/stop"), dev))
    # the app's Url is its Production environment's once a package is there
    apps = {a["AppId"]: a for a in assert_ok(sw.get("/api/1/apps", dev))}
    assert apps[app_id]["Url"] != staging["Url"]
    sw.rights(app_id, dev, "Production", "api,transport")
    assert_ok(sw.post(env_path(app_id, "Production", "/transport"), dev, json={"PackageId": pid}))
    prod = assert_ok(sw.get(env_path(app_id, "Production"), dev))
    assert prod["Production"] is True
    assert assert_ok(sw.get(f"/api/1/apps/{app_id}", dev))["Url"] == prod["Url"]


def test_a_release_that_would_escape_its_directory_is_refused(sw):
    """Transport unpacks (and checks) the package again: a package file changed on disk after
    its upload cannot write outside its release."""
    from test_upload import FILES, make_package
    dev, app_id, repo = new_deployer(sw, "deployescape")
    r = sw.post(f"/api/v2/apps/{app_id}/packages/upload", dev,
                files={"file": ("p.mda", make_package(), "application/octet-stream")})
    pid = assert_ok(r)["PackageId"]
    wait_for(lambda: sw.get(f"/api/1/apps/{app_id}/packages/{pid}", dev).json()["Status"]
             == "Succeeded", timeout=10, what="the upload")
    path = os.path.join(sw.data, "packages", app_id, f"{pid}.tar.zst")
    with open(path, "wb") as f:
        f.write(make_package(FILES + [("../../escaped-" + pid, "file", b"x", 0o644)]))
    body = assert_error(sw.post(env_path(app_id, "Test", "/transport"), dev,
                                json={"PackageId": pid}), 500, "PACKAGE_PARSE_FAILED")
    assert "leaves the package" in body["errorMessage"]
    releases = os.path.join(sw.data, "releases")
    for root, dirs, files in os.walk(sw.data):
        assert not any(n.startswith("escaped-") for n in files + dirs), root
    assert not os.path.exists(os.path.join(releases, app_id, pid))
    env = assert_ok(sw.get(env_path(app_id, "Test"), dev))
    assert env["Status"] == "Empty"


def test_tags_secret_constants_and_transport_rights(sw):
    dev, app_id, repo = new_deployer(sw, "deploysecret")
    yml = example_files()["slipway.yml"].decode().replace(
        "constants:\n", "constants:\n  - name: Main.Token\n    type: String\n    secret: true\n"
        "  - name: Main.Limit\n    type: Integer\n    default: \"3\"\n", 1).replace(
        "command: ./bin/hello", "command: echo token=$MX_Main_Token limit=$MX_Main_Limit; "
        "exec ./bin/hello")
    pid = build(sw, dev, app_id, repo, example_files(yml))
    assert_ok(sw.post(env_path(app_id, "Test", "/transport"), dev, json={"PackageId": pid}))
    # a constant without a default and without a value fails the start
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
    assert_error(wait_started(sw, dev, app_id, "Test", job), 500, "MISSING_CONSTANT")
    secret = "s3cr3t-" + pid[:8]
    s = assert_ok(sw.post(env_path(app_id, "Test", "/settings"), dev, json={"Constants": [
        {"Name": "Main.Token", "Value": secret}, {"Name": "Main.Limit", "Value": 7}]}))
    shown = {c["Name"]: c for c in s["Constants"]}
    assert shown["Main.Token"]["Value"] == "********" and secret not in json.dumps(s)
    assert shown["Main.Limit"]["Value"] == "7" and shown["Main.Limit"]["DataType"] == "Integer"
    assert_error(sw.post(env_path(app_id, "Test", "/settings"), dev, json={"Constants": [
        {"Name": "Main.Limit", "Value": "many"}]}), 400, "INVALID_PARAMETERS")
    # the masked value sent back (GET, edit, POST) leaves the secret as it is
    s["Constants"] = [c for c in s["Constants"] if c["Name"] == "Main.Token"]
    assert_ok(sw.post(env_path(app_id, "Test", "/settings"), dev, json=s))
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
    assert wait_started(sw, dev, app_id, "Test", job).json()["Status"] == "Started"
    today = datetime.date.today().isoformat()
    log = os.path.join(sw.data, "envs", app_id, "Test", "logs", f"app-{today}.log")
    wait_for(lambda: f"token={secret} limit=7" in open(log, encoding="utf-8").read(), timeout=10,
             what="the app seeing the secret")
    # stored sealed: the plain text is nowhere in the database's files
    for name in os.listdir(sw.data):
        if name.startswith("slipway.db"):
            with open(os.path.join(sw.data, name), "rb") as f:
                assert secret.encode() not in f.read(), name
    assert secret not in sw.log()
    # tags
    assert assert_ok(sw.get(env_path(app_id, "Test", "/tags"), dev)) == {"Tag": None, "Tags": []}
    assert_ok(sw.post(env_path(app_id, "Test", "/tags"), dev, json={"Tag": "europe"}))
    t = assert_ok(sw.post(env_path(app_id, "Test", "/tags"), dev, json={"Tag": "blue"}))
    assert t["Tags"] == ["blue", "europe"]
    r = sw.delete(env_path(app_id, "Test", "/tags"), dev, json={"Tag": "europe"})
    assert r.status_code == 204
    assert sw.delete(env_path(app_id, "Test", "/tags"), dev, json={"Tag": "absent"}).status_code \
        == 204
    assert assert_ok(sw.get(env_path(app_id, "Test", "/tags"), dev))["Tags"] == ["blue"]
    assert_error(sw.post(env_path(app_id, "Test", "/tags"), dev, json={}), 400)
    # transport needs Transport Rights on that environment
    sw.rights(app_id, dev, "Acceptance", "transport", revoke=True)
    assert_error(sw.post(env_path(app_id, "Acceptance", "/transport"), dev,
                         json={"PackageId": pid}), 403, "TRANSPORT_NOT_ALLOWED")
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))


def test_crash_looping_instance(sw):
    dev, app_id, repo = new_deployer(sw, "deployloop")
    yml = example_files()["slipway.yml"].decode().replace(
        "command: ./bin/hello",
        "command: if [ -e \"$DATA_DIR/ran\" ]; then echo crashing; exit 3; fi; "
        "touch \"$DATA_DIR/ran\"; exec ./bin/hello")
    pid = build(sw, dev, app_id, repo, example_files(yml))
    env = deploy(sw, dev, app_id, "Test", pid)
    assert env["CrashLooping"] is False
    os.killpg(instance_pids(sw, app_id, "Test")[0], signal.SIGKILL)
    wait_for(lambda: sw.get(env_path(app_id, "Test"), dev).json()["CrashLooping"], timeout=30,
             what="CrashLooping")
    sw.wait_log(r"is crash-looping: instance 0 failed 5 times in a row", timeout=5)
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    # a successful start clears it
    os.unlink(os.path.join(sw.data, "envs", app_id, "Test", "data", "ran"))
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
    assert wait_started(sw, dev, app_id, "Test", job).json()["Status"] == "Started"
    assert sw.get(env_path(app_id, "Test"), dev).json()["CrashLooping"] is False
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))


def test_releases_are_shared_read_only_and_pruned(sw):
    dev, app_id, repo = new_deployer(sw, "deployrel")
    files = example_files()
    files["share/open.txt"] = b"world-writable in the workspace\n"
    files["slipway.yml"] = files["slipway.yml"].replace(b"    - bin/\n",
                                                        b"    - bin/\n    - share/\n")
    files["Makefile"] = files["Makefile"] + b"\n# chmod: see slipway.yml\n"
    yml = files["slipway.yml"].decode().replace("    - make\n",
                                                 "    - make\n    - chmod 0777 share share/open.txt\n")
    files["slipway.yml"] = yml.encode()
    p1 = build(sw, dev, app_id, repo, files)
    for mode in ("Test", "Acceptance"):
        assert_ok(sw.post(env_path(app_id, mode, "/transport"), dev, json={"PackageId": p1}))
    releases = os.path.join(sw.data, "releases", app_id)
    assert os.listdir(releases) == [p1]  # unpacked once, shared
    for root, dirs, names in os.walk(os.path.join(releases, p1)):
        for n in dirs + names:
            st = os.lstat(os.path.join(root, n))
            assert not (st.st_mode & 0o022), (n, oct(st.st_mode))
    assert_ok(sw.post(env_path(app_id, "Acceptance", "/clean"), dev))
    assert os.listdir(releases) == [p1]  # Test still holds it
    files["README.md"] = b"changed\n"
    p2 = build(sw, dev, app_id, repo, files, version="1.0.1")
    assert_ok(sw.post(env_path(app_id, "Test", "/transport"), dev, json={"PackageId": p2}))
    assert os.listdir(releases) == [p2]  # nothing holds the first any more


def test_stop_during_a_start_ends_it(sw):
    dev, app_id, repo = new_deployer(sw, "deploystopstart")
    yml = ("version: 1\nbuild:\n  steps: [\"mkdir -p bin && cp run.sh bin/run && chmod +x "
           "bin/run\"]\npackage:\n  include: [bin/]\nrun:\n  command: ./bin/run\n"
           "  health: /healthz\n  start_timeout: 60s\n  stop_timeout: 1s\n")
    # never healthy, and deaf to SIGTERM: killed after run.stop_timeout
    script = b"#!/bin/sh\ntrap '' TERM\necho deaf now\nwhile :; do sleep 1; done\n"
    pid = build(sw, dev, app_id, repo, {"slipway.yml": yml.encode(), "run.sh": script})
    assert_ok(sw.post(env_path(app_id, "Test", "/transport"), dev, json={"PackageId": pid}))
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
    log = os.path.join(sw.data, "envs", app_id, "Test", "logs",
                       f"app-{datetime.date.today().isoformat()}.log")
    wait_for(lambda: os.path.exists(log) and "deaf now" in open(log, encoding="utf-8").read(),
             timeout=10, what="the instance ignoring SIGTERM")
    t0 = time.monotonic()
    stopped = assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    took = time.monotonic() - t0
    assert stopped["Status"] == "Stopped" and 0.9 < took < 10, took
    body = assert_error(sw.get(env_path(app_id, "Test", f"/start/{job}"), dev), 500,
                        "START_FAILED")
    assert "stopped during its start" in body["errorMessage"]
    wait_for(lambda: not instance_pids(sw, app_id, "Test"), timeout=10, what="no instance left")
