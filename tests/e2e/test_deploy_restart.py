"""Restarts of Slipway do not take apps down: a server stopped (SIGTERM) or killed (SIGKILL)
leaves instances and nginx running, and the next server adopts them — or, where an instance
is gone, starts it again and says why. Also: what an instance runs as (uid, no capability, its
environment), scheduled events, and a database per environment."""

import datetime
import os
import re
import signal
import time

import requests

from conftest import Slipway, assert_error, assert_ok, own_env_ports, wait_for
from test_crash import kill9
from test_deploy import (build, deploy, env_path, example_files, get, instance_pids,
                         new_deployer, notes_files, wait_started)


def fresh(server_factory, tmp_path, ports):
    srv = server_factory(extra_args=["--env-ports", str(ports)])
    return Slipway(srv, str(tmp_path))


def again(s, server_factory, ports):
    s.server = server_factory(data=s.data, extra_args=["--env-ports", str(ports)])
    return s.server


def test_restarts_keep_apps_running(server_factory, tmp_path):
    ports = own_env_ports()
    s = fresh(server_factory, tmp_path, ports)
    dev, app_id, repo = new_deployer(s, "adopt")
    pid = build(s, dev, app_id, repo, example_files())
    env = deploy(s, dev, app_id, "Test", pid)
    launchers = instance_pids(s, app_id, "Test")
    assert len(launchers) == 1 and get(env["Url"]).status_code == 200

    # a clean stop: the app goes on answering while no server runs
    assert s.server.stop() == 0
    assert get(env["Url"]).json()["greeting"] == "hello"
    srv = again(s, server_factory, ports)
    assert "adopted 1 running instance" in s.log() or \
        wait_for(lambda: "adopted 1 running instance" in srv.stderr(), timeout=5)
    assert instance_pids(s, app_id, "Test") == launchers
    now = assert_ok(s.get(env_path(app_id, "Test"), dev))
    assert now["Status"] == "Running" and now["Url"] == env["Url"]
    # still supervised: a killed instance comes back
    os.killpg(launchers[0], signal.SIGKILL)
    wait_for(lambda: instance_pids(s, app_id, "Test") not in ([], launchers), timeout=20,
             what="the adopted instance started again")
    wait_for(lambda: get(env["Url"]).status_code == 200, timeout=20, what="the app answering")
    launchers = instance_pids(s, app_id, "Test")

    # kill -9 of the server: the app goes on answering; the next server adopts it
    kill9(srv)
    assert get(env["Url"]).status_code == 200
    srv = again(s, server_factory, ports)
    wait_for(lambda: "adopted 1 running instance" in srv.stderr(), timeout=5, what="adoption")
    assert instance_pids(s, app_id, "Test") == launchers

    # an instance that died while no server ran is started again, and the log says why; its
    # limit groups do not stay behind empty
    assert srv.stop() == 0
    groups = v1_groups(launchers[0])
    os.killpg(launchers[0], signal.SIGKILL)
    wait_for(lambda: not instance_pids(s, app_id, "Test"), timeout=5, what="the instance gone")
    srv = again(s, server_factory, ports)
    wait_for(lambda: "is gone: it will be started again" in srv.stderr(), timeout=5,
             what="the reason in the log")
    assert all(held_or_gone(g) for g in groups), groups
    wait_for(lambda: get(env["Url"]).status_code == 200, timeout=20, what="the app again")
    # nothing deployed was lost: settings, package, status
    assert assert_ok(s.get(env_path(app_id, "Test", "/package"), dev))["PackageId"] == pid
    assert_ok(s.post(env_path(app_id, "Test", "/stop"), dev))
    assert get(env["Url"]).status_code == 503


def memory_limit(pid):
    """The memory limit of the process's cgroup (v2 memory.max, else v1 memory.limit_in_bytes),
    in bytes; None when it has none."""
    with open(f"/proc/{pid}/cgroup") as f:
        groups = dict((l.split(":")[1], l.split(":", 2)[2].strip()) for l in f)
    if "memory" in groups:
        path = f"/sys/fs/cgroup/memory{groups['memory']}/memory.limit_in_bytes"
    else:
        path = f"/sys/fs/cgroup{groups['']}/memory.max"
        if not os.path.exists(path):
            path = f"/sys/fs/cgroup/unified{groups['']}/memory.max"
    with open(path) as f:
        text = f.read().strip()
    return None if text == "max" else int(text)


def status_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_instances_run_unprivileged_with_their_own_environment(sw):
    dev, app_id, repo = new_deployer(sw, "deployuid")
    # the app prints its identity and environment, then serves the example
    yml = (example_files()["slipway.yml"].decode()
           .replace("command: ./bin/hello",
                    "command: grep -E '^(Uid|Gid|CapEff|CapPrm|CapBnd|NoNewPrivs)' "
                    "/proc/self/status; env | sort; exec ./bin/hello"))
    pid = build(sw, dev, app_id, repo, example_files(yml))
    deploy(sw, dev, app_id, "Test", pid)
    today = datetime.date.today().isoformat()
    link = assert_ok(sw.get(env_path(app_id, "Test", f"/logs/{today}"), dev))
    log = requests.get(link["DownloadUrl"], timeout=10).text
    lines = [l.split("] ", 1)[1] for l in log.splitlines() if "] " in l]
    fields = dict(l.split(":\t", 1) for l in lines if ":\t" in l)
    uid = fields["Uid"].split()[0]
    assert uid != "0" and int(uid) >= 200000, fields
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["CapPrm"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    env = dict(l.split("=", 1) for l in lines if ":\t" not in l
               and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", l))
    assert set(env) >= {"PORT", "DATA_DIR", "SLIPWAY_APP", "SLIPWAY_ENV", "SLIPWAY_VERSION",
                        "SLIPWAY_INSTANCE", "MX_Main_Greeting", "PATH", "HOME", "LANG"}
    assert env["SLIPWAY_APP"] == app_id and env["SLIPWAY_ENV"] == "Test"
    assert env["MX_Main_Greeting"] == "hello" and env["SLIPWAY_INSTANCE"] == "0"
    # nothing of the server's environment
    assert not {k for k in env if k.startswith(("SLIPWAY_BIN", "PYTEST", "SUDO", "SSH"))}
    assert set(env) <= {"PORT", "DATA_DIR", "SLIPWAY_APP", "SLIPWAY_ENV", "SLIPWAY_VERSION",
                        "SLIPWAY_INSTANCE", "MX_Main_Greeting", "PATH", "HOME", "LANG", "PWD",
                        "SHLVL", "_", "OLDPWD"}, env
    # under its memory limit (MemoryPerInstance), through cgroup v2 or, on a hybrid host, v1
    launcher = instance_pids(sw, app_id, "Test")[0]
    assert memory_limit(launcher) == 1024 << 20
    # the data directory is the instance's own; the server's files are out of its reach
    st = os.stat(env["DATA_DIR"])
    assert st.st_uid == int(uid) and st.st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(sw.data, "slipway.db")).st_mode & 0o077 == 0
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))


def test_scheduled_event_runs_while_enabled_and_running(sw):
    dev, app_id, repo = new_deployer(sw, "deployevent")
    yml = example_files()["slipway.yml"].decode() + (
        "\nscheduled_events:\n  - name: Main.Tick\n    cron: \"* * * * *\"\n"
        "    command: echo tick from $SLIPWAY_ENV; exit 7\n")
    pid = build(sw, dev, app_id, repo, example_files(yml))
    deploy(sw, dev, app_id, "Test", pid)
    s = assert_ok(sw.get(env_path(app_id, "Test", "/settings"), dev))
    assert s["ScheduledEvents"] == [{"Name": "Main.Tick", "Value": "Disabled",
                                     "DeployedValue": "Disabled"}]
    assert_error(sw.post(env_path(app_id, "Test", "/settings"), dev,
                         json={"ScheduledEvents": [{"Name": "Main.Tick", "Value": "On"}]}),
                 500, "INVALID_SCHEDULED_EVENT_PARAMETER")
    assert_error(sw.post(env_path(app_id, "Test", "/settings"), dev,
                         json={"ScheduledEvents": [{"Name": "Main.Nope", "Value": "Enabled"}]}),
                 400, "SCHEDULED_EVENT_NOT_FOUND")
    assert_ok(sw.post(env_path(app_id, "Test", "/settings"), dev,
                      json={"ScheduledEvents": [{"Name": "Main.Tick", "Value": "Enabled"}]}))
    # applied at the next start
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
    assert wait_started(sw, dev, app_id, "Test", job).json()["Status"] == "Started"
    today = datetime.date.today().isoformat()
    log = os.path.join(sw.data, "envs", app_id, "Test", "logs", f"app-{today}.log")

    def ran():
        with open(log, encoding="utf-8") as f:
            text = f.read()
        return "[event:Main.Tick] tick from Test" in text and \
            "[event:Main.Tick] exited with status 7" in text
    wait_for(ran, timeout=75, interval=0.5, what="the event's run at the next minute")
    sw.wait_log(r"scheduled event Main\.Tick exited with status 7", timeout=10)
    # stopped: it runs no more
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))


def test_database_per_environment(sw):
    dev, app_id, repo = new_deployer(sw, "deploynotes")
    pid = build(sw, dev, app_id, repo, notes_files())
    env = deploy(sw, dev, app_id, "Test", pid)
    r = requests.post(env["Url"] + "/notes", data="first note", timeout=10)
    assert r.status_code == 201, r.text
    notes = get(env["Url"], "/notes").json()
    assert [n["text"] for n in notes] == ["first note"]
    # another environment has a database of its own
    acc = deploy(sw, dev, app_id, "Acceptance", pid)
    assert get(acc["Url"], "/notes").json() == []
    # the data survives a restart of the environment
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    job = assert_ok(sw.post(env_path(app_id, "Test", "/start"), dev))["JobId"]
    assert wait_started(sw, dev, app_id, "Test", job).json()["Status"] == "Started"
    assert [n["text"] for n in get(env["Url"], "/notes").json()] == ["first note"]
    # clean removes it
    for mode in ("Test", "Acceptance"):
        assert_ok(sw.post(env_path(app_id, mode, "/stop"), dev))
    assert_ok(sw.post(env_path(app_id, "Test", "/clean"), dev))
    env = deploy(sw, dev, app_id, "Test", pid)
    assert get(env["Url"], "/notes").json() == []
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))


def test_without_nginx_the_url_is_the_instance(server_factory, tmp_path):
    ports = own_env_ports()
    s = Slipway(server_factory(extra_args=["--nginx", "/nonexistent/nginx", "--env-ports",
                                           str(ports)]), str(tmp_path))
    said = [l for l in s.server.stderr().splitlines() if "without a router" in l]
    assert len(said) == 1, said
    dev, app_id, repo = new_deployer(s, "nonginx")
    pid = build(s, dev, app_id, repo, example_files())
    env = deploy(s, dev, app_id, "Test", pid)
    port = int(env["Url"].rsplit(":", 1)[1])
    assert (port - ports) % 10 == 1  # the first instance's port, not the slot's router port
    assert get(env["Url"]).json()["greeting"] == "hello"
    assert_ok(s.post(env_path(app_id, "Test", "/stop"), dev))
    assert len([l for l in s.server.stderr().splitlines() if "without a router" in l]) == 1


def mounts():
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def test_a_data_directory_others_cannot_reach_is_bound_for_them(tmp_path):
    """A root server's data directory below a directory other users cannot pass (as under
    /root): it is bound under /run/slipway, the apps run there, and a stop that leaves no
    instance running removes the bind mount."""
    from conftest import Server, stop_leftovers
    closed = tmp_path / "closed"
    closed.mkdir()
    srv = Server(str(closed / "data"), str(tmp_path), ["--env-ports", str(own_env_ports())])
    os.chmod(closed, 0o700)  # after Server() made it passable
    srv.start()
    try:
        m = re.search(r"is reached as (/run/slipway/slipway-[0-9a-f]{16})", srv.stderr())
        assert m, srv.stderr()[-2000:]
        alias = m.group(1)
        assert alias in mounts()
        s = Slipway(srv, str(tmp_path))
        dev, app_id, repo = new_deployer(s, "closed")
        pid = build(s, dev, app_id, repo, example_files())
        env = deploy(s, dev, app_id, "Test", pid)
        assert get(env["Url"]).json()["greeting"] == "hello"
        assert_ok(s.post(env_path(app_id, "Test", "/stop"), dev))
        assert srv.stop() == 0
        assert alias not in mounts() and not os.path.exists(alias)
    finally:
        if srv.proc.poll() is None:
            srv.stop()
        stop_leftovers(srv.data)


def test_ports_among_the_ephemeral_ones_are_warned_of(sw, server_factory):
    """Outgoing connections take ports of the kernel's ephemeral range for a while, so an
    environment's port there can be found taken at its start: the server says so at start."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = map(int, f.read().split())
    srv = server_factory(extra_args=["--env-ports", str(lo + 10)])
    said = [l for l in srv.stderr().splitlines() if "ephemeral ports" in l]
    assert len(said) == 1 and f"{lo}-{hi}" in said[0] and "--env-ports" in said[0], said
    assert "ephemeral ports" not in sw.server.stderr()  # the tests' own ports stay below them


def test_started_waits_for_the_router_after_a_clean(server_factory, tmp_path):
    """A pipeline's redeploy: stop, clean (the router drops the environment's port), transport,
    start (it takes it again). While the clean's configuration is still on its way to nginx,
    Started must not take the one before it, which still served the environment: the URL would
    stop answering right after. Each router configuration is held 300 ms here."""
    srv = server_factory(prefix=["env", "SLIPWAY_TEST_ROUTER_DELAY_MS=300"])
    s = Slipway(srv, str(tmp_path))
    dev, app_id, repo = new_deployer(s, "redeploy")
    pid = build(s, dev, app_id, repo, example_files())
    for _ in range(2):
        env = deploy(s, dev, app_id, "Test", pid)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # and it goes on answering
            assert get(env["Url"]).status_code == 200
            time.sleep(0.02)
    assert_ok(s.post(env_path(app_id, "Test", "/stop"), dev))


def v1_groups(pid):
    """The v1 hierarchies' group directories of the process (its memory and pids limits on a
    host that has them there)."""
    with open(f"/proc/{pid}/cgroup") as f:
        rows = [l.rstrip("\n").split(":", 2) for l in f]
    return [f"/sys/fs/cgroup/{ctl}{path}" for _, ctls, path in rows
            for ctl in ctls.split(",") if ctl in ("memory", "pids")]


def held_or_gone(group):
    """A v1 group is not left behind empty: removed, or holding processes."""
    try:
        with open(os.path.join(group, "cgroup.procs")) as f:
            return f.read().strip() != ""
    except FileNotFoundError:
        return True


def test_adopted_instances_keep_running_beside_new_ones(server_factory, tmp_path):
    """After a restart, instances the new server starts do not take the limit groups of those it
    adopted (their names come from another run): the adopted go on running; and once an adopted
    instance ends, its groups are removed."""
    ports = own_env_ports()
    s = fresh(server_factory, tmp_path, ports)
    dev, app_id, repo = new_deployer(s, "adoptgroups")
    pid = build(s, dev, app_id, repo, example_files())
    deploy(s, dev, app_id, "Test", pid)
    test = instance_pids(s, app_id, "Test")
    groups = v1_groups(test[0])
    assert s.server.stop() == 0
    srv = again(s, server_factory, ports)
    wait_for(lambda: "adopted 1 running instance" in srv.stderr(), timeout=5, what="adoption")
    deploy(s, dev, app_id, "Acceptance", pid)
    assert instance_pids(s, app_id, "Test") == test
    time.sleep(0.5)
    assert instance_pids(s, app_id, "Test") == test, srv.stderr()[-2000:]
    assert "exited with status" not in srv.stderr()
    acc = instance_pids(s, app_id, "Acceptance")
    assert not set(groups) & set(v1_groups(acc[0]))
    # the adopted one ends: it is started again, and its old groups are not left behind empty
    # (removed, or taken again: empty v1 groups are kept for the next instance)
    os.killpg(test[0], signal.SIGKILL)
    wait_for(lambda: instance_pids(s, app_id, "Test") not in ([], test), timeout=20,
             what="the instance started again")
    wait_for(lambda: all(held_or_gone(g) for g in groups), timeout=5,
             what=f"the adopted instance's groups {groups} removed or taken again")
    for mode in ("Test", "Acceptance"):
        assert_ok(s.post(env_path(app_id, mode, "/stop"), dev))
