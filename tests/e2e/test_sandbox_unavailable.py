"""Where bubblewrap cannot make namespaces (a container without user namespaces, a chroot), the
server says once why builds cannot be sandboxed, does not spin restarting sandboxes (it used to
restart the warm sandbox about 800 times a second, each logged), and builds fail with that reason
(issue 8). The host's namespaces are taken away by running the server, as an ordinary user, in a
user namespace where no further one may be made (bwrap --disable-userns)."""
import os
import pwd
import shutil
import signal
import tempfile
import time

import pytest

from builds import TRIVIAL, commit, head_number
from conftest import Slipway, assert_error, children

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"),
                                reason="needs root to run the server as another user")

WHY = "bubblewrap cannot make a sandbox on this host"


def server_process(launcher_pid):
    """The slipway process under runuser and bwrap."""
    todo = [launcher_pid]
    while todo:
        pid = todo.pop()
        for child, comm, _ in children(pid):
            if comm == "slipway":
                return child
            todo.append(child)
    raise AssertionError("no slipway process under the launcher")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_builds_are_refused_with_the_reason_said_once_and_no_spinning(server_factory, tmp_path,
                                                                     request):
    nobody = pwd.getpwnam("nobody")
    home = tempfile.mkdtemp(prefix="slipway-e2e-nobody-")  # reachable by nobody, unlike tmp_path
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    request.addfinalizer(lambda: shutil.rmtree(home, ignore_errors=True))
    srv = server_factory(data=os.path.join(home, "data"), prefix=[
        "runuser", "-u", "nobody", "--",
        "bwrap", "--dev-bind", "/", "/", "--unshare-user", "--disable-userns", "--"])
    # told before the server answers
    assert WHY in srv.stderr(), srv.stderr()
    pid = server_process(srv.proc.pid)
    before = cpu_seconds(pid)
    time.sleep(3)  # a window to measure in, not a wait for something
    used = cpu_seconds(pid) - before
    assert used < 0.3, f"the server used {used:.2f} s of CPU in 3 s while idle"
    err = srv.stderr()
    assert err.count(WHY) == 1, err
    assert err.count("\n") < 30, err

    sw = Slipway(srv, str(tmp_path))
    dev = sw.new_user("unsandboxed")
    app = sw.new_app("unsandboxed", [(dev, "developer")])
    repo = sw.clone(app["AppId"], dev)
    commit(repo, {"slipway.yml": TRIVIAL})
    r = sw.post(f"/api/1/apps/{app['AppId']}/packages", dev,
                json={"Branch": "main", "Revision": str(head_number(sw, dev, app["AppId"])),
                      "Version": "1.0.0", "Description": "e2e"})
    body = assert_error(r, 500, "BUILD_FAILED")
    assert WHY in body["errorMessage"] and "ENOSPC" in body["errorMessage"], body
    sw.http.close()
    os.kill(pid, signal.SIGTERM)  # bwrap does not pass signals on
    assert srv.proc.wait(timeout=20) == 0
    assert srv.stderr().count(WHY) == 1
