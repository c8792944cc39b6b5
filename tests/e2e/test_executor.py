"""Executors (issue 8, point 11): a build's steps run in a long-lived sandbox of its executor slot
that keeps the user and network namespaces, each step with fresh mount, pid and IPC namespaces.
Nothing of one build may be seen by the next one on the same executor: processes (a setsid
daemon), SysV IPC, keys (keyrings belong to a user namespace: the steps' seccomp program denies the
key calls), files in /tmp. And a step there has no capability, cannot make a user namespace, has
no network, and is the sandbox user on the host."""
import os
import shutil
import subprocess
import uuid

import pytest

from builds import build_log, commit, details, head_number, processes_matching, start, wait_done
from conftest import Slipway

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("bwrap"),
                                reason="executors hold the sandbox of a server run as root")


def pipeline(steps):
    text = "version: 1\nruntime: shell\nbuild:\n  steps:\n"
    for s in steps:
        text += "    - |\n" + "".join(f"      {line}\n" for line in s.splitlines())
    return (text + "  timeout: 60s\npackage:\n  include:\n    - out/\n").encode()


def build(sw, dev, app_id, repo, steps):
    commit(repo, {"slipway.yml": pipeline(steps)})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    p = wait_done(sw, dev, app_id, pid, timeout=60)
    return p, build_log(sw, dev, app_id, pid), details(sw, dev, app_id, pid)["Reason"]


def executors(sw):
    """The server's executors (their command line names their directory under DIR/builds/)."""
    builds = os.path.join(sw.data, "builds") + "/"
    return sorted(set(processes_matching("SLIPWAY_EXECUTOR")) & set(processes_matching(builds)))


@pytest.fixture
def one(server_factory, tmp_path):
    """A server with one executor: every build runs in the same one."""
    srv = server_factory(extra_args=["--executors", "1"])
    sw = Slipway(srv, str(tmp_path))
    dev, app_id, repo = sw.new_dev_clone("exec")
    return sw, dev, app_id, repo


def test_a_build_leaves_nothing_to_the_next_on_the_same_executor(one):
    sw, dev, app_id, repo = one
    daemon = f"sleep 3{uuid.uuid4().int % 10**6:06d}"
    before = executors(sw)
    assert before, "expected an executor"
    p, log, _ = build(sw, dev, app_id, repo, [
        f"setsid {daemon} </dev/null >/dev/null 2>&1 &\n"
        "ipcmk -M 4096 && ipcmk -Q && echo made-'ipc'\n"
        "keyctl add user leaked secret-of-build-1 @u && echo KEY-'ADDED' || echo no-'keys'\n"
        "echo secret-of-build-1 > /tmp/left\n"
        "mkdir -p out",
    ])
    assert p["Status"] == "Succeeded", log
    assert "made-ipc" in log and "no-keys" in log and "KEY-ADDED" not in log, log
    assert not processes_matching(daemon), "the step's daemon outlived its build"
    p, log, _ = build(sw, dev, app_id, repo, [
        "ipcs -m -q | sed 's/^/ipc: /'\n"
        "keyctl print %user:leaked && echo KEY-'SEEN' || echo no-'key'\n"
        "cat /tmp/left && echo FILE-'SEEN' || echo no-'file'\n"
        "ps -e -o comm= | sed 's/^/proc: /'\n"
        "mkdir -p out",
    ])
    assert p["Status"] == "Succeeded", log
    ipc = [line for line in log.splitlines() if line.startswith("ipc: 0x")]
    assert not ipc, log
    assert "KEY-SEEN" not in log and "secret-of-build-1" not in log and "FILE-SEEN" not in log, log
    procs = [line[6:] for line in log.splitlines() if line.startswith("proc: ")]
    assert procs and "sleep" not in procs, log
    assert executors(sw) == before, "the builds did not run in the same executor"


def test_a_step_in_an_executor_is_confined(one):
    sw, dev, app_id, repo = one
    mark = f"sleep 2.{uuid.uuid4().int % 10**8:08d}"
    p, log, _ = build(sw, dev, app_id, repo, [
        "grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/self/status\n"
        "unshare -U true && echo USERNS-'MADE' || echo no-'userns'\n"
        "unshare -r true && echo ROOT-USERNS-'MADE' || echo no-root-'userns'\n"
        "cat /proc/net/dev | sed 's/^/net: /'\n"
        "python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), 2)' "
        "2>/dev/null && echo NET-'REACHED' || echo no-'net'\n"
        f"mkdir -p out; {mark}",
    ])
    assert p["Status"] == "Succeeded", log
    assert "CapEff:\t0000000000000000" in log and "CapPrm:\t0000000000000000" in log, log
    assert "CapBnd:\t0000000000000000" in log and "CapAmb:\t0000000000000000" in log, log
    assert "no-userns" in log and "no-root-userns" in log and "USERNS-MADE" not in log, log
    assert "no-net" in log and "NET-REACHED" not in log, log
    devs = [line[5:].split(":")[0].strip() for line in log.splitlines()
            if line.startswith("net: ") and ":" in line[5:] and "|" not in line]
    assert devs == ["lo"], log


def test_the_step_is_the_sandbox_user_on_the_host(one):
    sw, dev, app_id, repo = one
    mark = f"sleep 2.{uuid.uuid4().int % 10**8:08d}"
    commit(repo, {"slipway.yml": pipeline([f"mkdir -p out; {mark}"])})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    from conftest import wait_for
    procs = wait_for(lambda: processes_matching(mark), timeout=30, what="the step's sleep")
    with open(f"/proc/{procs[0]}/status") as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    uids = status["Uid"].split()
    assert "0" not in uids and "0" not in status["Gid"].split(), status
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
    assert wait_done(sw, dev, app_id, pid)["Status"] == "Succeeded"


def test_a_timed_out_build_takes_its_executor_and_the_next_build_gets_a_new_one(one):
    sw, dev, app_id, repo = one
    before = executors(sw)
    text = pipeline(["mkdir -p out; sleep 30"]).replace(b"timeout: 60s", b"timeout: 1s")
    commit(repo, {"slipway.yml": text})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    p = wait_done(sw, dev, app_id, pid, timeout=30)
    assert p["Status"] == "Failed" and "timed out" in details(sw, dev, app_id, pid)["Reason"]
    p, log, _ = build(sw, dev, app_id, repo, ["mkdir -p out; echo fine"])
    assert p["Status"] == "Succeeded", log
    after = executors(sw)
    assert after and not set(after) & set(before), (before, after)


def test_a_step_cannot_start_the_next_one_through_its_descriptors(one):
    """The next step's sandbox is set up while a step runs no more (as soon as it ended) and waits
    for a byte of the runner's requests: a step has no descriptor of those, nor of the status
    pipe, so writing to every descriptor it has starts nothing, and the executor goes on."""
    sw, dev, app_id, repo = one
    before = executors(sw)
    p, log, _ = build(sw, dev, app_id, repo, [
        "ls -l /proc/$$/fd/ >/tmp/fds; sed -n 's/.* \\([0-9]*\\) -> /fd: \\1 /p' /tmp/fds\n"
        'for f in /proc/$$/fd/* /dev/fd/*; do (echo s >"$f") 2>/dev/null || true; done\n'
        "for n in 0 3 4 5 6 7 8 9; do (echo s >&$n) 2>/dev/null || true; done",
        "echo ran >>/workspace/count",
        "sleep 0.2; echo ran >>/workspace/count",
        "sed 's/^/count: /' /workspace/count; mkdir -p out",
    ])
    assert p["Status"] == "Succeeded", log
    fds = dict(line[4:].split(" ", 1) for line in log.splitlines() if line.startswith("fd: "))
    assert fds.get("0") == "/dev/null", log
    # the output's pipe only (at 1 and 2; the shell keeps a copy of 1 while it redirects it)
    pipes = {what for what in fds.values() if what.startswith("pipe:")}
    assert pipes == {fds["2"]}, log
    assert [line for line in log.splitlines() if line.startswith("count: ")] == ["count: ran"] * 2
    assert executors(sw) == before, "the executor was replaced: it ran something out of turn"
    p, log, _ = build(sw, dev, app_id, repo, ["ls -A /workspace | sed 's/^/ws: /'; mkdir -p out"])
    assert p["Status"] == "Succeeded", log
    ws = {line[4:] for line in log.splitlines() if line.startswith("ws: ")}
    assert "slipway.yml" in ws and not {"count", "out"} & ws, log
    assert executors(sw) == before


def test_the_next_build_gets_its_directories_as_new(one):
    """An executor's directories stay (its next step's sandbox binds them ahead) and are emptied
    between builds: what a step changed on them (mode, extended attributes such as ACLs)
    is undone too."""
    sw, dev, app_id, repo = one
    before = executors(sw)
    p, log, _ = build(sw, dev, app_id, repo, [
        "chmod 0777 /workspace /tmp\n"
        "python3 -c \"import os; [os.setxattr(d, 'user.left', b'x') for d in ('/workspace',"
        " '/tmp')]\" && echo XATTR-'SET' || echo no-'xattr'\n"
        "mkdir -p out /tmp/sub; echo left >/tmp/sub/file; ln -s /etc/passwd /tmp/link",
    ])
    assert p["Status"] == "Succeeded", log
    p, log, _ = build(sw, dev, app_id, repo, [
        "stat -c 'dir: %n %a' /workspace /tmp; ls -A /tmp | sed 's/^/tmp: /'\n"
        "python3 -c \"import os; print('xattrs:', os.listxattr('/workspace') +"
        " os.listxattr('/tmp'))\"\n"
        "mkdir -p out",
    ])
    assert p["Status"] == "Succeeded", log
    dirs = [line.split()[1:] for line in log.splitlines() if line.startswith("dir: ")]
    assert dirs == [["/workspace", "700"], ["/tmp", "700"]], log
    assert not [line for line in log.splitlines() if line.startswith("tmp: ")], log
    assert "xattrs: []" in log, log
    assert executors(sw) == before


def test_dev_shm_is_each_steps_own_and_the_prepared_dev_and_etc_are_read_only(one):
    """An executor prepares the steps' root once (/usr, /etc, /dev, the binds); a step gets its own
    /dev/shm (POSIX shared memory of one build must not reach the next) and cannot change what
    the next build sees of /, /usr, /dev, /etc or /slipway, while /workspace and /tmp are
    writable. The devices, the links and a pty still work."""
    sw, dev, app_id, repo = one
    before = executors(sw)
    assert before, "expected an executor"
    p, log, _ = build(sw, dev, app_id, repo, [
        "echo secret-of-build-1 > /dev/shm/left && echo wrote-'shm'\n"
        "python3 -c 'import ctypes, os; fd = ctypes.CDLL(None).shm_open(b\"/slipway-left\", "
        "os.O_CREAT | os.O_RDWR, 0o644); os.write(fd, b\"leaked\"); print(\"made-\" + \"posix-shm\")'\n"
        "for p in /dev/left /dev/pts/left /etc/left /etc/passwd /etc/ssl/left /left /usr/left \\\n"
        "    /slipway/left /proc/left; do\n"
        "  (echo x > $p) 2>/dev/null && echo WROTE-$p || echo no-write-$p\n"
        "done\n"
        "mkdir /dev/made 2>/dev/null && echo MADE-'DIR' || echo no-'mkdir'\n"
        "echo x > /workspace/left && echo x > /tmp/left && echo rw-'ok'\n"
        "rm -f /dev/null 2>/dev/null || ln -s /tmp /dev/link 2>/dev/null || true\n"
        "mount -t tmpfs none /dev 2>/dev/null && echo MOUNTED || echo no-'mount'\n"
        "echo x > /dev/null && head -c 8 /dev/zero | wc -c | sed 's/^/zero: /'\n"
        "ls -l /dev/stdout /dev/fd/ | head -1\n"
        "python3 -c 'import os, pty; m, s = pty.openpty(); print(\"pty:\", os.ttyname(s))'\n"
        "mkdir -p out",
    ])
    assert p["Status"] == "Succeeded", log
    assert "wrote-shm" in log and "made-posix-shm" in log, log
    for path in ("/dev/left", "/dev/pts/left", "/etc/left", "/etc/passwd", "/etc/ssl/left",
                 "/left", "/usr/left", "/slipway/left", "/proc/left"):
        assert f"no-write-{path}" in log and f"WROTE-{path}" not in log, log
    assert "no-mkdir" in log and "no-mount" in log and "rw-ok" in log, log
    assert "zero: 8" in log and "pty: /dev/pts/" in log, log
    p, log, _ = build(sw, dev, app_id, repo, [
        "ls -A /dev/shm | sed 's/^/shm: /'\n"
        "cat /dev/shm/left && echo FILE-'SEEN' || echo no-'file'\n"
        "python3 -c 'import ctypes, os; fd = ctypes.CDLL(None).shm_open(b\"/slipway-left\", "
        "os.O_RDONLY, 0); print(\"SHM-\" + \"SEEN\", os.read(fd, 6)) if fd >= 0 else "
        "print(\"no-\" + \"posix-shm\")'\n"
        "ls -A /dev | sed 's/^/dev: /'\n"
        "test -c /dev/null && echo null-'ok'\n"
        "mkdir -p out",
    ])
    assert p["Status"] == "Succeeded", log
    assert "no-file" in log and "no-posix-shm" in log, log
    assert "SHM-SEEN" not in log and "FILE-SEEN" not in log and "leaked" not in log, log
    assert not [line for line in log.splitlines() if line.startswith("shm: ")], log
    names = {line[5:] for line in log.splitlines() if line.startswith("dev: ")}
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd",
            "stdin", "stdout", "stderr"} <= names, log
    assert not names & {"left", "made", "link"}, log
    assert "null-ok" in log, log
    assert executors(sw) == before, "the builds did not run in the same executor"


def test_an_executor_whose_etc_files_were_replaced_is_replaced(server_factory, tmp_path):
    """The executor binds the host's /etc files for its steps once; an upgrade replaces such a file
    by a rename, which a bind made before does not follow: the next build gets a new executor
    that sees the new file. The server runs with a copy of /etc bound over its own (a mount
    namespace of its own), so the test never touches the host's /etc."""
    etc = tmp_path / "etc"
    subprocess.run(["cp", "-a", "/etc", str(etc)], check=True)
    srv = server_factory(extra_args=["--executors", "1"], prefix=[
        "unshare", "-m", "--propagation", "private", "sh", "-c",
        'mount --bind "$0" /etc && exec "$@"', str(etc)])
    sw = Slipway(srv, str(tmp_path))
    dev, app_id, repo = sw.new_dev_clone("exec")
    mark = f"slipway-mark-{uuid.uuid4().hex[:8]}"
    step = f"grep -c {mark} /etc/passwd | sed 's/^/marks: /' || true\nmkdir -p out"
    before = executors(sw)
    p, log, _ = build(sw, dev, app_id, repo, [step])
    assert p["Status"] == "Succeeded" and "marks: 0" in log, log
    assert executors(sw) == before
    with open(etc / "passwd.new", "w") as f:
        f.write((etc / "passwd").read_text() + f"{mark}:x:4242:4242::/nonexistent:/bin/false\n")
    os.rename(etc / "passwd.new", etc / "passwd")  # as useradd and dpkg do
    p, log, _ = build(sw, dev, app_id, repo, [step])
    assert p["Status"] == "Succeeded" and "marks: 1" in log, log
    after = executors(sw)
    assert after and after != before, "the executor was not replaced"
