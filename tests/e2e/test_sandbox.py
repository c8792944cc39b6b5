"""The build sandbox holds against a hostile build step (issue 7, point 1): each attack runs as a
build step of its own and must fail inside the sandbox, with the host untouched and the server
still serving. Run as root (as in CI), they are the attacks root's capabilities allowed: a step
had nearly every capability (CapEff 000001fffeffffff) and was root on the host.

The fork bomb, the memory hog and the disk filler are bounded even if a limit failed: at most
3000 sleepers, 320 MB of memory, 120 MB of disk, against limits far below."""
import ctypes
import re
import os
import struct
import uuid

import pytest

from builds import build_log, commit, details, head_number, processes_matching, start, wait_done
from conftest import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks need a server run as root")


@pytest.fixture
def app(sw):
    dev, app_id, repo = sw.new_dev_clone("sandbox", user_prefix="sandboxed")
    return sw, dev, app_id, repo


def pipeline(steps, limits=None):
    """A slipway.yml with these steps (YAML block scalars, so any shell text goes) and build
    limits (e.g. {"pids": 50})."""
    text = "version: 1\nruntime: shell\nbuild:\n  steps:\n"
    for s in steps:
        text += "    - |\n" + "".join(f"      {line}\n" for line in s.splitlines())
    for k, v in (limits or {}).items():
        text += f"  {k}: {v}\n"
    text += "  timeout: 60s\npackage:\n  include:\n    - out/\n"
    return text.encode()


def build(sw, dev, app_id, repo, steps, limits=None):
    """Commits the pipeline, builds it and waits: (package, log, reason)."""
    commit(repo, {"slipway.yml": pipeline(steps, limits)})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    p = wait_done(sw, dev, app_id, pid, timeout=120)
    return p, build_log(sw, dev, app_id, pid), details(sw, dev, app_id, pid)["Reason"]


def assert_serving(sw):
    r = sw.http.get(sw.base + "/healthz", timeout=10)
    assert r.status_code == 200, r.text


def assert_failed_in_step_1(p, log, reason):
    assert p["Status"] == "Failed", log
    assert reason.startswith("step 1 ") and "\n==> step 1 exited with status " in log, reason
    assert "step 2/" not in log, log


@pytest.fixture
def marker():
    """A file name under /usr/local/share that no step may create (removed if one did)."""
    path = f"/usr/local/share/slipway-sandbox-{uuid.uuid4().hex[:10]}"
    yield path
    if os.path.lexists(path):
        os.remove(path)


def test_remount_of_usr_and_write_fail(app, marker):
    sw, dev, app_id, repo = app
    p, log, reason = build(sw, dev, app_id, repo, [
        f"mount -o remount,bind,rw /usr && echo x > {marker}", "echo ESCAPED"])
    assert_failed_in_step_1(p, log, reason)
    assert not os.path.lexists(marker), "the step wrote to the host's /usr"
    assert "ESCAPED" not in log.split("step 1/")[1].split("exited")[0].replace("echo ESCAPED", "")
    # and without the remount, the read-only /usr stays read-only
    p, log, reason = build(sw, dev, app_id, repo, [f"echo x > {marker}"])
    assert_failed_in_step_1(p, log, reason)
    assert not os.path.lexists(marker)
    assert_serving(sw)


def test_slipway_scripts_cannot_be_made_writable(app):
    """/slipway holds the step scripts the engine runs next; a step must not rewrite them."""
    sw, dev, app_id, repo = app
    p, log, reason = build(sw, dev, app_id, repo, [
        "mount -o remount,bind,rw /slipway && echo 'echo INJECTED' > /slipway/step-2.sh",
        "mkdir -p out"])
    assert_failed_in_step_1(p, log, reason)
    assert "INJECTED" not in log.replace("echo 'echo INJECTED'", "")
    p, log, reason = build(sw, dev, app_id, repo, ["echo x > /slipway/step-2.sh", "mkdir -p out"])
    assert_failed_in_step_1(p, log, reason)
    assert_serving(sw)


def file_handle(path):
    """name_to_handle_at(2) of path, as hex: what open_by_handle_at(2) opens again (root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(struct.pack("Ii", 128, 0) + bytes(128))
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(-100, path.encode(), buf, ctypes.byref(mount_id), 0) != 0:
        pytest.skip(f"no file handles here: {os.strerror(ctypes.get_errno())}")
    size = struct.unpack_from("I", buf.raw)[0]
    return buf.raw[:8 + size].hex()


# open_by_handle_at with a handle of the data directory, through the workspace's mount (same file
# system: the workspace is in the data directory); CAP_DAC_READ_SEARCH lets it open any inode
SHOCKER = """python3 - HANDLE NAME <<'EOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
handle = ctypes.create_string_buffer(bytes.fromhex(sys.argv[1]))
mount = os.open("/workspace", os.O_RDONLY | os.O_DIRECTORY)
fd = libc.open_by_handle_at(mount, handle, os.O_RDONLY | os.O_DIRECTORY)
if fd < 0:
    sys.exit("open_by_handle_at: " + os.strerror(ctypes.get_errno()))
print("opened the data directory:", sorted(os.listdir(fd))[:3])
out = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
os.write(out, b"x")
print("ESCAPED")
EOF"""


def test_data_directory_cannot_be_reached(app):
    """The data directory (database, secret, repositories) is not in the sandbox; with root's
    capabilities a step could still open it by file handle (CAP_DAC_READ_SEARCH), or mount the
    host's disk (CAP_SYS_ADMIN, CAP_MKNOD). Neither works."""
    sw, dev, app_id, repo = app
    data = os.path.realpath(sw.server.data)
    name = f"pwned-{uuid.uuid4().hex[:8]}"
    target = os.path.join(data, name)
    st = os.stat(data)
    attacks = [f"echo x > {target}",  # the host path does not exist inside
               SHOCKER.replace("HANDLE", file_handle(data)).replace("NAME", name),
               "mkdir -p /tmp/dev /tmp/disk && mount -t tmpfs none /tmp/dev && "
               f"mknod /tmp/dev/disk b {os.major(st.st_dev)} {os.minor(st.st_dev)} && "
               "mount /tmp/dev/disk /tmp/disk && echo ESCAPED"]
    try:
        for attack in attacks:
            p, log, reason = build(sw, dev, app_id, repo, [attack, "mkdir -p out"])
            assert_failed_in_step_1(p, log, reason)
            assert not os.path.exists(target), f"the step wrote into the data directory:\n{log}"
            assert "\nESCAPED" not in log and "\nopened the data directory" not in log, log
    finally:
        if os.path.exists(target):
            os.remove(target)
    assert_serving(sw)


def test_no_user_namespace_inside(app):
    """`unshare -r` would make the step root of a namespace of its own, with capabilities."""
    sw, dev, app_id, repo = app
    p, log, reason = build(sw, dev, app_id, repo, ["unshare -r id", "mkdir -p out"])
    assert_failed_in_step_1(p, log, reason)
    assert "uid=0(root)" not in log
    assert_serving(sw)


def test_mknod_fails(app):
    sw, dev, app_id, repo = app
    p, log, reason = build(sw, dev, app_id, repo, ["mknod ./mem c 1 1 && ls -l ./mem",
                                                   "mkdir -p out"])
    assert_failed_in_step_1(p, log, reason)
    assert "Operation not permitted" in log, log
    assert_serving(sw)


def test_no_capabilities_and_not_root_on_the_host(app):
    """Inside, CapEff is 0; outside, the step's processes belong to an ordinary user, and so do
    the files it writes. Both the first step and a later one, in the build's executor."""
    sw, dev, app_id, repo = app
    mark = f"sleep 2.{uuid.uuid4().int % 10**8:08d}"
    steps = ["grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status; echo \"inside uid=$(id -u)\"",
             f"grep '^CapEff:' /proc/self/status; mkdir -p out; {mark}; stat -c 'owner=%u' out"]
    commit(repo, {"slipway.yml": pipeline(steps)})
    pid = start(sw, dev, app_id, head_number(sw, dev, app_id))
    procs = wait_for(lambda: processes_matching(mark), timeout=60, what="the step's sleep")
    with open(f"/proc/{procs[0]}/status") as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    p = wait_done(sw, dev, app_id, pid)
    log = build_log(sw, dev, app_id, pid)
    assert p["Status"] == "Succeeded", log
    uids = status["Uid"].split()
    assert "0" not in uids and status["Gid"].split()[0] != "0", status
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status
    assert log.count("CapEff:\t0000000000000000") == 2, log
    assert "CapPrm:\t0000000000000000" in log and "CapBnd:\t0000000000000000" in log, log
    # an executor's step is root of the executor's user namespace, which maps that uid (and only
    # that one) to the sandbox user: no capability, and the host sees the sandbox user
    assert "inside uid=0" in log, log
    assert_serving(sw)


def test_workspace_files_belong_to_the_step(app):
    """The exported revision is the step's to change (the workspace is the sandbox user's)."""
    sw, dev, app_id, repo = app
    p, log, _ = build(sw, dev, app_id, repo, [
        "echo more >> slipway.yml && rm main.txt && mkdir -p out && cp slipway.yml out/ && "
        "touch /tmp/x"])
    assert p["Status"] == "Succeeded", log


def test_fork_bomb_is_bounded_by_build_pids(app):
    sw, dev, app_id, repo = app
    bomb = ("n=0\n"
            "while [ $n -lt 3000 ]; do\n"
            "  sleep 30 &\n"
            "  n=$((n+1))\n"
            "  if [ $((n % 10)) -eq 0 ]; then echo \"started $n\"; fi\n"
            "done\n"
            "echo \"all $n started\"")
    p, log, reason = build(sw, dev, app_id, repo, [bomb, "mkdir -p out"], {"pids": 50})
    assert_failed_in_step_1(p, log, reason)
    assert "==> limits: memory 2GB, 50 processes and threads, disk 2GB" in log, log
    started = [int(x.split()[1]) for x in log.splitlines() if x.startswith("started ")]
    assert started and max(started) < 60, started
    assert "all 3000 started" not in log
    assert "reached build.pids (50 processes and threads)" in log, log
    assert "build.pids" in reason, reason
    assert_not_blamed_on_limits(sw, dev, app_id, repo)
    assert_serving(sw)


def assert_not_blamed_on_limits(sw, dev, app_id, repo):
    """The next builds may run in the same v1 limit groups (kept for reuse once empty), whose
    counters still hold what the last one ran into: a step that merely fails is not said to have
    reached a limit. Two builds, for both of --executors 2's spare groups."""
    for _ in range(2):
        p, log, reason = build(sw, dev, app_id, repo, ["exit 3"], {"pids": 50, "memory": "64MB"})
        assert p["Status"] == "Failed", log
        assert reason.startswith("step 1 ('exit 3") and reason.endswith("exited with status 3"), reason
        assert "reached build.pids" not in log, log


HOG = ("python3 -c '\n"
       "import sys\n"
       "chunks = []\n"
       "for i in range(20):\n"
       "    chunks.append(bytes([1]) * (16 << 20))\n"
       "    print(\"allocated\", (i + 1) * 16, \"MB\", flush=True)\n"
       "'")


def test_memory_hog_is_killed_at_build_memory(app):
    sw, dev, app_id, repo = app
    p, log, reason = build(sw, dev, app_id, repo, [HOG, "mkdir -p out"], {"memory": "64MB"})
    assert p["Status"] == "Failed" and "step 2/" not in log, log
    allocated = [int(x.split()[1]) for x in log.splitlines() if x.startswith("allocated ")]
    assert not allocated or max(allocated) <= 64, allocated
    assert "ran out of memory" in reason and "build.memory (64MB)" in reason, reason
    assert_not_blamed_on_limits(sw, dev, app_id, repo)
    assert_serving(sw)


def test_disk_filler_is_stopped_at_build_disk(app):
    sw, dev, app_id, repo = app
    # one large file: the file size limit stops it at build.disk
    p, log, reason = build(sw, dev, app_id, repo, ["head -c 100M /dev/zero > big; echo done"],
                           {"disk": "20MB"})
    assert p["Status"] == "Failed", log
    assert "larger than build.disk (20MB)" in reason, reason
    assert "\ndone" not in log
    # many smaller files, slowly: the engine's check of the build's directory stops the step
    filler = ("for i in $(seq 1 30); do\n"
              "  head -c 4M /dev/zero > f$i\n"
              "  echo \"wrote $i\"\n"
              "  sleep 0.2\n"
              "done")
    p, log, reason = build(sw, dev, app_id, repo, [filler, "mkdir -p out"], {"disk": "20MB"})
    assert p["Status"] == "Failed", log
    assert "take more than build.disk (20MB)" in reason, reason
    wrote = [int(x.split()[1]) for x in log.splitlines() if x.startswith("wrote ")]
    assert wrote and max(wrote) < 30, wrote
    assert "step 2/" not in log
    # quickly, then exit 0: the check after the step fails the build
    p, log, reason = build(sw, dev, app_id, repo, [
        "for i in 1 2 3 4 5 6 7; do head -c 4M /dev/zero > f$i; done", "mkdir -p out"],
        {"disk": "20MB"})
    assert p["Status"] == "Failed", log
    assert "take more than build.disk (20MB)" in reason, reason
    assert "step 2/" not in log
    assert_serving(sw)


def test_a_step_inherits_no_descriptor_of_the_server(server_factory, tmp_path):
    """A descriptor the server inherited without close-on-exec (from whatever started it) is not
    passed on to a step: only 0, 1 and 2 are (a step used to read through it as slipway-build)."""
    from conftest import Slipway
    secret = tmp_path / "host-secret"
    secret.write_text("TOP-SECRET-OF-THE-HOST\n")
    secret.chmod(0o600)
    srv = server_factory(prefix=("sh", "-c", 'exec 7<"$0"; exec "$@"', str(secret)))
    sw = Slipway(srv, str(tmp_path))
    dev, a, repo = sw.new_dev_clone("fdleak")
    p, log, reason = build(sw, dev, a, repo,
                           ["ls -l /proc/$$/fd | sed 's/^/fd: /'",
                            "cat <&7 && echo READ-FD-$((6+1)) || echo no-fd-$((6+1))"])
    assert "TOP-SECRET-OF-THE-HOST" not in log and "READ-FD-7" not in log, log
    assert "no-fd-7" in log, log
    # besides 0-2, only the shell's own script files (dash keeps them open at 10 and up)
    fds = sorted(int(n) for n, target in re.findall(r"fd: .* (\d+) -> (\S+)", log)
                 if not target.startswith("/slipway/"))
    assert fds == [0, 1, 2], log
    assert_serving(sw)
