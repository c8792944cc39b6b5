"""`slipway instance`, the launcher of one app instance or scheduled event (issue 9): it runs the
app, writes its output stamped into the environment's daily log file, passes the exit status on,
and outlives whoever started it. Driven directly, without a server."""
import datetime
import os
import pwd
import re
import signal
import subprocess
import time

import pytest

from conftest import BIN, wait_for

LINE_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d)T\d\d:\d\d:\d\d\.\d{3}([+-]\d\d:\d\d) \[([A-Za-z0-9_.:-]+)\] (.*)$")
STARTED_RE = re.compile(r"^started \(pid (\d+)\)$")
# the environment the launcher is given in these tests, and nothing else
BASE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


# Both launchers: `slipway instance` and the lean `slipway-instance` beside it (libc only),
# which the server runs when it is there.
LEAN = os.path.join(os.path.dirname(BIN), "slipway-instance")
LAUNCHERS = {"slipway": BIN, "lean": LEAN}
_launcher = [BIN]


@pytest.fixture(autouse=True, params=sorted(LAUNCHERS))
def launcher(request):
    assert os.access(LAUNCHERS[request.param], os.X_OK), f"{LAUNCHERS[request.param]}: make"
    _launcher[0] = LAUNCHERS[request.param]
    yield request.param
    _launcher[0] = BIN


def argv(log_dir, command, label="0", cwd="/", extra=()):
    return [_launcher[0], "instance", "--log-dir", str(log_dir), "--label", label, "--cwd",
            str(cwd), *extra, "--", *command]


def sh(script):
    return ["/bin/sh", "-c", script]


def launch(log_dir, command, env=None, **kw):
    extra = kw.pop("extra", ())
    label = kw.pop("label", "0")
    cwd = kw.pop("cwd", "/")
    return subprocess.Popen(argv(log_dir, command, label, cwd, extra), env=env or BASE_ENV,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def run(log_dir, command, timeout=30, **kw):
    p = launch(log_dir, command, **kw)
    out, err = p.communicate(timeout=timeout)
    assert out == b"" and err == b"", (out, err)
    return p.returncode


def entries(log_dir):
    """Every log line of every daily file as (date, offset, label, text), in file order (the
    files by name); checks that each line is in the file of its own date."""
    rows = []
    for name in sorted(os.listdir(log_dir)):
        assert re.fullmatch(r"app-\d{4}-\d\d-\d\d\.log", name), name
        with open(os.path.join(log_dir, name), "rb") as f:
            data = f.read()
        assert data.endswith(b"\n"), data[-200:]
        for line in data.decode("utf-8").split("\n")[:-1]:  # strict: the log is valid UTF-8
            m = LINE_RE.match(line)
            assert m, line
            assert name == f"app-{m[1]}.log", (name, line)
            rows.append((m[1], m[2], m[3], m[4]))
    return rows


def texts(log_dir):
    return [r[3] for r in entries(log_dir)]


def app_lines(log_dir):
    """The app's own lines: between 'started' and the launcher's last line."""
    t = texts(log_dir)
    assert STARTED_RE.match(t[0]), t
    return t[1:-1]


def local_offset():
    off = time.localtime().tm_gmtoff // 60
    return f"{'-' if off < 0 else '+'}{abs(off) // 60:02d}:{abs(off) % 60:02d}"


def started_pid(log_dir):
    def find():
        if not os.listdir(log_dir):
            return None
        for t in texts(log_dir):
            m = STARTED_RE.match(t)
            if m:
                return int(m[1])
        return None
    return wait_for(find, what="the 'started' line")


def wait_text(log_dir, text):
    wait_for(lambda: os.listdir(log_dir) and text in texts(log_dir), what=f"the line {text!r}")


def status_fields(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_stdout_and_stderr_land_in_the_daily_file_stamped_and_the_status_is_passed_on(tmp_path):
    rc = run(tmp_path, sh("echo to stdout; echo to stderr >&2; echo again; exit 3"), label="1")
    assert rc == 3
    rows = entries(tmp_path)
    assert [r[3] for r in rows[1:]] == ["to stdout", "to stderr", "again",
                                        "exited with status 3"]
    assert STARTED_RE.match(rows[0][3])
    assert {r[2] for r in rows} == {"1"}
    assert {r[1] for r in rows} == {local_offset()}
    today = datetime.date.today().isoformat()
    assert rows[-1][0] in (today, (datetime.date.today() - datetime.timedelta(days=1)).isoformat())
    (name,) = os.listdir(tmp_path)
    assert os.stat(tmp_path / name).st_mode & 0o777 == 0o640


def test_lines_are_stamped_in_local_time_and_filed_by_local_date(tmp_path):
    # the same moment, two zones 26 hours apart: two dates, each file named by its own
    for tz, offset in (("Etc/GMT-14", "+14:00"), ("Etc/GMT+12", "-12:00"),
                       ("Asia/Kolkata", "+05:30")):
        log_dir = tmp_path / tz.replace("/", "_")
        log_dir.mkdir()
        assert run(log_dir, ["/bin/echo", "hi"], env={**BASE_ENV, "TZ": tz}) == 0
        rows = entries(log_dir)
        assert [r[3] for r in rows[1:]] == ["hi", "exited with status 0"]
        assert {r[1] for r in rows} == {offset}
        zone = datetime.timezone(datetime.timedelta(
            hours=int(offset[:3]), minutes=int(offset[0] + offset[4:])))
        now = datetime.datetime.now(zone).date()
        assert rows[0][0] in (now.isoformat(), (now - datetime.timedelta(days=1)).isoformat())


def test_partial_long_invalid_and_control_text(tmp_path):
    script = (
        "printf 'bad \\377\\376 bytes\\n';"
        "printf 'esc \\033[31mred\\033[0m tab\\there nul \\000 del \\177 c1 \\302\\205 end\\r\\n';"
        # 63 ASCII bytes then a 2-byte character across the 64-byte cut: never split
        "printf '%063d\\303\\251%070d\\n' 0 0;"
        "printf 'no newline at the end'")
    assert run(tmp_path, sh(script), extra=["--max-line", "64"]) == 0
    assert app_lines(tmp_path) == [
        "bad \ufffd\ufffd bytes",
        "esc ?[31mred?[0m tab\there nul ? del ? c1 ? end",
        "0" * 63 + "\u2026",
        "\u00e9" + "0" * 62 + "\u2026",  # 64 bytes
        "0" * 8,
        "no newline at the end",
    ]


def test_a_line_of_exactly_max_line_bytes_is_not_cut_and_the_default_is_16384(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert run(a, sh("printf '%064d\\n%065d\\n' 0 0"), extra=["--max-line", "64"]) == 0
    assert app_lines(a) == ["0" * 64, "0" * 64 + "\u2026", "0"]
    assert run(b, sh("printf '%016384d\\n%016385d' 0 0")) == 0
    assert app_lines(b) == ["0" * 16384, "0" * 16384 + "\u2026", "0"]


def test_an_app_killed_by_a_signal_gives_128_plus_the_signal(tmp_path):
    p = launch(tmp_path, sh("echo up; exec sleep 60"))
    pid = started_pid(tmp_path)
    wait_text(tmp_path, "up")
    os.kill(pid, signal.SIGKILL)
    assert p.wait(timeout=10) == 137
    assert texts(tmp_path)[-1] == "killed by signal 9"


def test_sigterm_to_the_process_group_ends_the_app_and_the_launcher_logs_then_exits_143(
        tmp_path):
    # the app is a shell waiting for its own child: the whole group gets the signal
    p = launch(tmp_path, sh("echo up; sleep 60; echo never"), start_new_session=True)
    app = started_pid(tmp_path)
    wait_text(tmp_path, "up")
    assert os.getpgid(app) == p.pid  # the app stayed in the launcher's group
    os.killpg(p.pid, signal.SIGTERM)
    assert p.wait(timeout=10) == 143  # an exit status: the launcher itself was not killed
    assert texts(tmp_path)[-2:] == ["up", "killed by signal 15"]


def test_the_launcher_detaches_from_its_caller_and_outlives_it(tmp_path, request):
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    keep_r, keep_w = os.pipe()  # a descriptor the caller leaks to the launcher
    cmd = " ".join(f"'{a}'" for a in argv(log_dir, sh(f"echo up; read x < '{fifo}'; echo \"$x\"")))
    # The caller starts the launcher in the background with its stdout and stderr on pipes, and
    # exits: communicate() returns only once nobody holds those pipes any more.
    caller = subprocess.Popen(sh(f"{cmd} & echo $!"), env=BASE_ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=[keep_w],
                              start_new_session=True)
    # the launcher and its app stay in the caller's process group: nothing is left on a failure
    def kill_group():
        try:
            os.killpg(caller.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    request.addfinalizer(kill_group)
    out, err = caller.communicate(timeout=10)
    assert caller.returncode == 0 and err == b"", err
    launcher = int(out)
    wait_text(log_dir, "up")
    os.close(keep_w)
    try:
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{launcher}/fd/{fd}") == "/dev/null"
        inherited = os.stat(f"/proc/self/fd/{keep_r}")
        for fd in os.listdir(f"/proc/{launcher}/fd"):
            try:
                st = os.stat(f"/proc/{launcher}/fd/{fd}")
            except FileNotFoundError:
                continue
            assert (st.st_dev, st.st_ino) != (inherited.st_dev, inherited.st_ino), fd
        assert status_fields(launcher)["State"][0] in "SR"  # its parent is gone, it runs on
    finally:
        with open(fifo, "w") as f:
            f.write("bye\n")
        os.close(keep_r)
    wait_text(log_dir, "exited with status 0")
    assert app_lines(log_dir) == ["up", "bye"]


def test_the_app_gets_exactly_the_launchers_environment(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PORT": "8080", "DATA_DIR": "/srv/data",
           "MX_App_Secret": "a b=c", "EMPTY": ""}
    assert run(tmp_path, ["/usr/bin/env"], env=env, cwd=tmp_path) == 0
    assert sorted(app_lines(tmp_path)) == sorted(f"{k}={v}" for k, v in env.items())


def test_the_app_runs_in_cwd_with_stdin_dev_null_and_only_stdio_open(tmp_path):
    script = "pwd; cat; ls /proc/self/fd; readlink /proc/self/fd/0"
    assert run(tmp_path, sh(script), cwd=tmp_path) == 0
    # ls runs with its own directory descriptor open (3)
    assert app_lines(tmp_path) == [str(tmp_path), "0", "1", "2", "3", "/dev/null"]


def test_identity_and_capabilities(tmp_path):
    """As root: the app runs as the given user with no capability and no_new_privs, the launcher
    stays uid 0 with none either. As another user, becoming someone else fails clearly."""
    if os.environ.get("CI"):
        assert os.geteuid() == 0, "CI runs these tests as root"
    nobody = pwd.getpwnam("nobody")
    ids = ["--uid", str(nobody.pw_uid), "--gid", str(nobody.pw_gid)]
    fields = "^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs):"
    p = launch(tmp_path, sh(f"grep -E '{fields}' /proc/self/status; exec sleep 60"), extra=ids)
    if os.geteuid() != 0:
        assert p.wait(timeout=10) == 125
        assert texts(tmp_path) == [
            f"cannot start: cannot become uid {nobody.pw_uid} gid {nobody.pw_gid}: "
            "Operation not permitted"]
        return
    app = started_pid(tmp_path)
    wait_text(tmp_path, "NoNewPrivs:\t1")
    mine = status_fields(p.pid)
    os.kill(app, signal.SIGKILL)
    assert p.wait(timeout=10) == 137
    seen = dict(t.split(":\t", 1) for t in app_lines(tmp_path))
    assert seen["Uid"].split() == [str(nobody.pw_uid)] * 4
    assert seen["Gid"].split() == [str(nobody.pw_gid)] * 4
    assert seen["Groups"].strip() == ""
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(seen[cap], 16) == 0, (cap, seen)
    assert seen["NoNewPrivs"] == "1"
    # the launcher, after the fork: still root (the log directory is root's), and powerless
    assert mine["Uid"].split() == ["0"] * 4
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(mine[cap], 16) == 0, (cap, mine)
    assert mine["NoNewPrivs"] == "1"


def test_a_program_that_cannot_start_is_told_without_its_arguments(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("not a program\n")
    plain.chmod(0o644)
    cases = [
        (["/nonexistent/app", "--password=hunter2"], "/", 127,
         "cannot start: cannot execute '/nonexistent/app': No such file or directory"),
        ([str(plain), "--password=hunter2"], "/", 126,
         f"cannot start: cannot execute '{plain}': Permission denied"),
        (["/bin/true", "--password=hunter2"], "/nonexistent", 125,
         "cannot start: cannot enter '/nonexistent': No such file or directory"),
    ]
    for i, (command, cwd, status, line) in enumerate(cases):
        log_dir = tmp_path / f"log{i}"
        log_dir.mkdir()
        assert run(log_dir, command, cwd=cwd) == status
        assert texts(log_dir) == [line]  # the program, never its arguments


@pytest.mark.parametrize("args, message", [
    (["--label", "0", "--cwd", "/", "--", "/bin/true"], "are required"),
    (["--log-dir", "relative", "--label", "0", "--cwd", "/", "--", "/bin/true"],
     "must be an absolute path"),
    (["--log-dir", "{log}", "--label", "a b", "--cwd", "/", "--", "/bin/true"], "--label"),
    (["--log-dir", "{log}", "--label", "x" * 101, "--cwd", "/", "--", "/bin/true"], "--label"),
    (["--log-dir", "{log}", "--label", "0", "--cwd", "/"], "no program"),
    (["--log-dir", "{log}", "--label", "0", "--cwd", "/", "--uid", "0", "--gid", "0", "--",
      "/bin/true"], "--uid"),
    (["--log-dir", "{log}", "--label", "0", "--cwd", "/", "--uid", "65534", "--",
      "/bin/true"], "go together"),
    (["--log-dir", "{log}", "--label", "0", "--cwd", "/", "--max-line", "63", "--",
      "/bin/true"], "--max-line"),
    (["--log-dir", "{log}", "--label", "0", "--cwd", "/", "--bogus", "1", "--", "/bin/true"],
     "unknown option"),
])
def test_a_bad_command_line_is_refused_before_anything_runs(tmp_path, args, message):
    marker = tmp_path / "ran"
    args = [a.replace("{log}", str(tmp_path)) for a in args]
    if args[-1] == "/bin/true":
        args[-1:] = ["/bin/touch", str(marker)]
    p = subprocess.run([_launcher[0], "instance", *args], env=BASE_ENV, capture_output=True,
                       timeout=10)
    assert p.returncode == 125
    assert message in p.stderr.decode(), p.stderr
    assert not marker.exists()
    assert os.listdir(tmp_path) == []


def test_labels_of_events(tmp_path):
    label = "event:Main.Cleanup_1-" + "x" * 79  # 100 characters
    assert run(tmp_path, ["/bin/echo", "done"], label=label) == 0
    assert {r[2] for r in entries(tmp_path)} == {label}


def test_an_unwritable_log_directory_never_holds_the_app_back(tmp_path):
    missing = tmp_path / "missing"
    # 4 MB of output, far more than a pipe holds: the launcher reads and drops it
    assert run(missing, sh("head -c 4000000 /dev/zero | tr '\\0' 'x' | fold -w 100; exit 4"),
               timeout=60) == 4
    assert not missing.exists()


def test_launchers_sharing_a_file_write_whole_lines(tmp_path):
    script = "i=0; while [ $i -lt 300 ]; do printf '%0999d\\n' $i; i=$((i+1)); done"
    ps = [launch(tmp_path, sh(script), label=str(n)) for n in range(4)]
    for p in ps:
        assert p.wait(timeout=60) == 0
    rows = entries(tmp_path)  # each line parses: none was cut by another's
    for n in range(4):
        mine = [r[3] for r in rows if r[2] == str(n)]
        assert mine[1:-1] == [f"{i:0999d}" for i in range(300)]
