"""End-to-end tests: drive the real build/slipway binary over HTTP, git and its CLI.

One server runs for the whole session (fixture `sw`); every test makes its own users and apps
with unique names, so tests stay independent of each other and of their order. Tests that need
a server of their own (start/stop behaviour, restarts) start one with `Server`.

Only the standard library, pytest and requests are used; everything talks to 127.0.0.1.
"""

import itertools
import json
import os
import pwd
import re
import select
import shlex
import socket
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import uuid

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SLIPWAY_BIN") or os.path.join(ROOT, "build", "slipway")

ADMIN_EMAIL = "admin@localhost"
REPO_SCOPE = "mx:modelrepository:repo:read"
# what a test user's token may do unless a test says otherwise: read and push the repository,
# build, upload and deploy (scopes: docs/api.md)
USER_SCOPES = "mx:modelrepository:repo:read,mx:modelrepository:repo:write,mx:deployment:write"
READY_RE = re.compile(r"^slipway: listening on http://127\.0\.0\.1:(\d+)$")
START_DEADLINE = 20.0  # seconds for the server to print its readiness line
STOP_DEADLINE = 20.0  # seconds for it to exit after SIGTERM

_counter = itertools.count(1)

# Everything talks to 127.0.0.1: never through a proxy that CI may have configured.
for _var in ("no_proxy", "NO_PROXY"):
    os.environ[_var] = ",".join(x for x in (os.environ.get(_var), "127.0.0.1", "localhost") if x)


def unique(prefix="t"):
    """A short unique lowercase name, valid as an AppId (2-40 of a-z, 0-9, '-')."""
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


def unique_email(prefix="user"):
    return f"{unique(prefix)}@example.com"


def wait_for(fn, timeout=10.0, interval=0.02, what="condition"):
    """Polls fn() until it returns a true value (returned) or the deadline passes (fails)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- the server process ---------------------------------------------------------------------


# Each server of a test session gets environment ports of its own (--env-ports), all below the
# kernel's ephemeral ports (net.ipv4.ip_local_port_range, 32768 and up here), which any outgoing
# connection may hold for a while: the session's server 20000 and up (its slots grow with its
# apps: about 500 of them, ports to 25000), the others blocks of 1,000 (100 slots) from 10000.
_env_ports = itertools.count()


def own_env_ports():
    """The next block of environment ports for a server of one test (kept for its restarts)."""
    return 10000 + next(_env_ports) % 10 * 1000


def env_ports_arg(extra_args, session=False):
    if any(str(a).startswith("--env-ports") for a in extra_args):
        return []
    session_base = os.environ.get("SLIPWAY_E2E_ENV_PORTS", "20000")  # for sessions side by side
    return ["--env-ports", session_base if session else str(own_env_ports())]


def passable(path):
    """Lets other users pass through the temporary directories above a data directory (not list
    them): app instances, nginx and PostgreSQL run as users of their own and reach their files
    there, as they would under /var/lib."""
    tmp = os.path.realpath(tempfile.gettempdir())
    path = os.path.realpath(path)
    while path.startswith(tmp + "/"):
        os.chmod(path, os.stat(path).st_mode & 0o7777 | 0o011)
        path = os.path.dirname(path)


def stop_leftovers(data_dir):
    """What a data directory's environments leave running by design (instances, nginx,
    PostgreSQL survive the server, for the next one to adopt): stopped at the end of a test."""
    data_dir = os.path.realpath(data_dir)
    pid_file = os.path.join(data_dir, "router", "nginx.pid")
    try:
        with open(pid_file) as f:
            os.kill(int(f.read().strip()), signal.SIGQUIT)
    except (OSError, ValueError):
        pass
    pgdata = os.path.join(data_dir, "database", "data")
    if os.path.exists(os.path.join(pgdata, "postmaster.pid")):
        try:
            with open(os.path.join(pgdata, "postmaster.pid")) as f:
                pg = int(f.readline().strip())
            os.kill(pg, signal.SIGINT)  # fast shutdown, waited for: its port is free after
            for _ in range(100):
                os.kill(pg, 0)
                time.sleep(0.05)
        except (OSError, ValueError):
            pass
    needle = f"--log-dir\0{data_dir}/envs/".encode()
    for pid, argv in command_lines():
        if needle in b"\0".join(argv):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


def command_lines():
    """Every process this user can read, as (pid, its argv as bytes)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                yield int(entry), f.read().split(b"\0")
        except OSError:
            continue


class Server:
    """`slipway serve --data DIR --listen 127.0.0.1:0`, started and stopped by the tests."""

    def __init__(self, data_dir, log_dir=None, extra_args=(), prefix=(), session=False):
        self.data = data_dir
        log_dir = log_dir or os.path.dirname(os.path.abspath(data_dir))
        self.stderr_path = os.path.join(
            log_dir, f"slipway-{os.path.basename(data_dir)}-{next(_counter)}.stderr")
        self.extra_args = list(extra_args) + env_ports_arg(extra_args, session)
        passable(os.path.dirname(os.path.abspath(data_dir)))
        self.prefix = list(prefix)  # a command the server runs under (e.g. unshare)
        self.proc = None
        self.stdout_before_ready = ""
        self.stdout_after = ""
        self.port = None
        self.admin_key = None  # from the first-start banner, if printed
        self._stderr_file = None

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self._stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            [*self.prefix, BIN, "serve", "--data", self.data, "--listen", "127.0.0.1:0", *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr_file)
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace")
                m = READY_RE.match(text)
                if m:
                    self.port = int(m.group(1))
                    self.stdout_after = buf.decode("utf-8", "replace")
                    break
                self.stdout_before_ready += text + "\n"
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                self._abort()
                pytest.fail(f"no readiness line within {START_DEADLINE}s; stdout so far:\n"
                            f"{self.stdout_before_ready}{buf!r}\nstderr:\n{self.stderr()}")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                rc = self.proc.wait()
                pytest.fail(f"the server exited ({rc}) before it was ready; stdout:\n"
                            f"{self.stdout_before_ready}{buf!r}\nstderr:\n{self.stderr()}")
            buf += chunk
        m = re.search(r"^    (\S+)$", self.stdout_before_ready, re.M)
        self.admin_key = m.group(1) if m else None
        return self

    def _abort(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, sig=signal.SIGTERM):
        """Signals the server, waits, and returns its exit code (the rest of stdout is kept)."""
        self.proc.send_signal(sig)
        try:
            rest, _ = self.proc.communicate(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self._abort()
            pytest.fail(f"the server did not exit within {STOP_DEADLINE}s of {sig!r}")
        self.stdout_after += rest.decode("utf-8", "replace")
        self._stderr_file.close()
        return self.proc.returncode

    @property
    def stdout(self):
        ready = f"slipway: listening on http://127.0.0.1:{self.port}\n" if self.port else ""
        return self.stdout_before_ready + ready + self.stdout_after

    def stderr(self):
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


# --- identities and HTTP ----------------------------------------------------------------------


class User:
    def __init__(self, email, key=None, token=None, admin=False):
        self.email = email
        self.key = key  # API key
        self.token = token  # personal access token with the App Repository scope
        self.admin = admin

    def key_headers(self):
        return {"Mendix-Username": self.email, "Mendix-ApiKey": self.key}

    def token_headers(self, token=None):
        return {"Authorization": f"MxToken {token or self.token}"}

    def basic(self, secret=None):
        return (self.email, secret or self.key)

    def __repr__(self):
        return f"User({self.email})"


def assert_error(r, status, code=None):
    """The answer has the status and a JSON error body {errorCode, errorMessage}."""
    assert r.status_code == status, (
        f"{r.request.method} {r.request.url}: expected {status}, got {r.status_code}: {r.text[:500]}")
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("errorCode"), str) and body["errorCode"], body
    assert isinstance(body.get("errorMessage"), str) and body["errorMessage"], body
    if code is not None:
        assert body["errorCode"] == code, body
    return body


def assert_ok(r, status=200):
    assert r.status_code == status, (
        f"{r.request.method} {r.request.url}: expected {status}, got {r.status_code}: {r.text[:500]}")
    return r.json()


class Slipway:
    """The session's running server plus helpers around it."""

    def __init__(self, server, tmp):
        self.server = server
        self.tmp = tmp
        self.data = server.data
        self.admin = User(ADMIN_EMAIL, server.admin_key, admin=True)
        self.http = requests.Session()
        self.secrets = [server.admin_key]  # every secret made; none may reach the log
        self.git_home = os.path.join(tmp, "githome")
        os.makedirs(self.git_home, exist_ok=True)
        self._time = 1_700_000_000

    @property
    def base(self):
        return self.server.base

    # HTTP
    def request(self, method, path, user=None, via="key", headers=None, **kw):
        """A request as `user` (None: anonymous) with API-key headers (via="key") or a token
        (via="token")."""
        h = {}
        if user is not None:
            h.update(user.key_headers() if via == "key" else user.token_headers())
        h.update(headers or {})
        kw.setdefault("timeout", 30)
        return self.http.request(method, self.base + path, headers=h, **kw)

    def get(self, path, user=None, **kw):
        return self.request("GET", path, user, **kw)

    def post(self, path, user=None, **kw):
        return self.request("POST", path, user, **kw)

    def delete(self, path, user=None, **kw):
        return self.request("DELETE", path, user, **kw)

    # the admin CLI
    def cli(self, *args, check=True, data=None):
        """Runs `slipway admin --data DIR ARGS...`; returns the CompletedProcess (text).
        A single string argument is split like a shell would."""
        if len(args) == 1:
            args = tuple(shlex.split(args[0]))
        p = subprocess.run([BIN, "admin", "--data", data or self.data, *args],
                           capture_output=True, text=True, timeout=60)
        if check:
            assert p.returncode == 0, f"slipway admin {' '.join(args)} -> {p.returncode}\n{p.stderr}"
        return p

    def cli_out(self, *args):
        return self.cli(*args).stdout

    # users and apps, made through the admin HTTP API (fast; the CLI is tested on its own)
    def new_user(self, prefix="user", admin=False, key=True, token=True, scopes=USER_SCOPES):
        email = unique_email(prefix)
        assert_ok(self.post("/api/slipway/users", self.admin,
                            json={"email": email, "name": f"Name of {email}", "admin": admin}), 201)
        u = User(email, admin=admin)
        if key:
            u.key = self.new_apikey(email)
        if token:
            u.token = self.new_token(email, scopes)
        return u

    def new_apikey(self, email):
        j = assert_ok(self.post(f"/api/slipway/users/{quote(email)}/apikeys", self.admin), 201)
        self.secrets.append(j["apikey"])
        return j["apikey"]

    def new_token(self, email, scopes=REPO_SCOPE):
        j = assert_ok(self.post(f"/api/slipway/users/{quote(email)}/tokens", self.admin,
                                json={"scopes": scopes}), 201)
        self.secrets.append(j["token"])
        return j["token"]

    def new_app(self, prefix="app", members=()):
        """Makes an app; members: (User, role) pairs. Returns the app JSON (AppId, ProjectId...)."""
        app = assert_ok(self.post("/api/slipway/apps", self.admin,
                                  json={"AppId": unique(prefix), "Name": f"App {prefix}"}), 201)
        for user, role in members:
            self.add_member(app["AppId"], user, role)
        return app

    def new_dev_app(self, prefix="app", user_prefix=None):
        """A user (with an API key and a token) and a new app it is a developer of: (dev, app
        JSON). The user's email starts with user_prefix (default: prefix)."""
        dev = self.new_user(user_prefix or prefix)
        return dev, self.new_app(prefix, [(dev, "developer")])

    def new_dev_clone(self, prefix="app", user_prefix=None):
        """new_dev_app, and the app cloned as that user: (dev, app_id, Repo)."""
        dev, app = self.new_dev_app(prefix, user_prefix)
        return dev, app["AppId"], self.clone(app["AppId"], dev)

    def new_app_with_odd_branch(self, prefix):
        """new_dev_app with main (one commit) and a branch whose name is not UTF-8, "caf" and
        the byte 0xE9, on the same commit (git allows any bytes in ref names): (dev, app, repo,
        that commit's id)."""
        dev, app = self.new_dev_app(prefix)
        repo = self.clone(app["AppId"], dev)
        ids = repo.commits(1)
        repo.push("main")
        repo.git("update-ref", "refs/heads/caf\udce9", ids[0])  # surrogateescape: 0xE9
        repo.push("refs/heads/caf\udce9")
        return dev, app, repo, ids[0]

    def add_member(self, app_id, user, role="developer"):
        assert_ok(self.post(f"/api/slipway/apps/{app_id}/members", self.admin,
                            json={"email": user.email, "role": role}))

    def rights(self, app_id, user, env, rights, revoke=False):
        assert_ok(self.post(f"/api/slipway/apps/{app_id}/{'revoke' if revoke else 'grant'}",
                            self.admin, json={"email": user.email, "env": env, "rights": rights}))

    def audit(self):
        """Every audit entry (paging with ?after) and chainIntact of the last page."""
        entries, after, intact = [], 0, None
        while True:
            j = assert_ok(self.get(f"/api/slipway/audit?after={after}&limit=1000", self.admin))
            entries += j["entries"]
            intact = j["chainIntact"]
            if len(j["entries"]) < 1000:
                return entries, intact
            after = j["entries"][-1]["id"]

    def metrics(self):
        """GET /metrics (as the admin) as {'name{labels}': value}, comments left out."""
        r = self.get("/metrics", self.admin)
        assert r.status_code == 200, r.text[:500]
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
        return {k: float(v) for k, v in (ln.rsplit(" ", 1) for ln in r.text.splitlines()
                                         if ln and not ln.startswith("#"))}

    # the request log
    def log(self):
        return self.server.stderr()

    def wait_log(self, regex, timeout=10.0):
        """Waits until a stderr line matches; returns all matching lines."""
        rx = re.compile(regex)

        def lines():
            return [ln for ln in self.log().splitlines() if rx.search(ln)]
        return wait_for(lines, timeout, what=f"a log line matching {regex!r}")

    # git
    def next_time(self):
        self._time += 1
        return self._time

    def git_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(HOME=self.git_home, XDG_CONFIG_HOME=os.path.join(self.git_home, ".config"),
                   GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_ASKPASS="",
                   SSH_ASKPASS="", LC_ALL="C")
        return env

    def git_url(self, app_id, user=None, secret=None):
        host = f"127.0.0.1:{self.server.port}"
        if user is None:
            return f"http://{host}/git/{app_id}.git"
        cred = f"{quote(user.email)}:{quote(secret or user.key)}"
        return f"http://{cred}@{host}/git/{app_id}.git"

    def git(self, *args, cwd=None, check=True, input=None):
        p = subprocess.run(
            ["git", "-c", "user.name=Dev Eloper", "-c", "user.email=dev@example.com",
             "-c", "credential.helper=", "-c", "init.defaultBranch=main",
             "-c", "advice.detachedHead=false", *args],
            cwd=cwd, env=self.git_env(), capture_output=True, timeout=120, input=input,
            **({"encoding": "utf-8", "errors": "surrogateescape"}
               if isinstance(input, str) or input is None else {}))
        if check:
            assert p.returncode == 0, f"git {' '.join(args)} -> {p.returncode}\n{p.stderr}"
        return p

    def clone(self, app_id, user, secret=None):
        dest = os.path.join(self.tmp, unique("clone"))
        self.git("clone", "-q", self.git_url(app_id, user, secret), dest)
        return Repo(self, dest)

    def repo_with_commits(self, app_id, user, n, branch="main", secret=None):
        """Clones the app as user, adds n commits on branch and pushes it."""
        repo = self.clone(app_id, user, secret)
        repo.commits(n, branch)
        repo.push(branch)
        return repo


def processes():
    """Every process this user can read, as (pid, command name, state letter, parent pid)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm, rest = stat.split("(", 1)[1].rsplit(")", 1)
        fields = rest.split()
        yield int(entry), comm, fields[0], int(fields[1])


def children(pid):
    """The processes whose parent is pid, as (pid, command name, state letter)."""
    return [(p, comm, state) for p, comm, state, ppid in processes() if ppid == pid]


def quote(s):
    return urllib.parse.quote(s, safe="")


def read_all(s, timeout):
    """Everything the server sends until it closes (b"<EOF>" appended) or `timeout` of silence."""
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data + b"<EOF>"
            data += chunk
    except socket.timeout:
        return data
    except ConnectionResetError:
        return data + b"<EOF>"


def raw_http(port, request: bytes, timeout=10.0):
    """Sends raw bytes (for what requests would rewrite) and reads one answer until the server
    closes or the declared body is in. Returns (status, headers dict lowercased, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


class Repo:
    """A working clone; commits are made with `git fast-import` (fast, deterministic dates)."""

    def __init__(self, sw, path):
        self.sw = sw
        self.path = path

    def git(self, *args, **kw):
        return self.sw.git(*args, cwd=self.path, **kw)

    def rev(self, ref):
        p = self.git("rev-parse", "--verify", "-q", ref, check=False)
        return p.stdout.strip() if p.returncode == 0 else None

    def commits(self, n, branch="main", parent="tip", message="commit {i} on {branch}",
                merge=None, files=None, author=("Dev Eloper", "dev@example.com"), force=False):
        """Adds n commits on branch (from its tip, or from `parent` — a revision, or None for a
        new root). The first commit may merge `merge`. files: {name: bytes} for the last commit.
        Returns the new commit ids, oldest first."""
        start = self.rev(f"refs/heads/{branch}") if parent == "tip" else (
            self.rev(parent) if parent else None)
        if parent not in ("tip", None):
            assert start, f"no revision {parent}"
        merge_id = self.rev(merge) if merge else None
        out = bytearray()
        for i in range(n):
            t = self.sw.next_time()
            msg = message.format(i=i + 1, branch=branch).encode() + b"\n"
            out += f"commit refs/heads/{branch}\nmark :{i + 1}\n".encode()
            out += f"author {author[0]} <{author[1]}> {t} +0000\n".encode()
            out += f"committer {author[0]} <{author[1]}> {t} +0000\n".encode()
            out += b"data %d\n" % len(msg) + msg
            if i == 0:
                if start:
                    out += f"from {start}\n".encode()
                if merge_id:
                    out += f"merge {merge_id}\n".encode()
            content = f"{branch} {i + 1} {t}\n".encode()
            out += f"M 644 inline {branch.replace('/', '_')}.txt\n".encode()
            out += b"data %d\n" % len(content) + content + b"\n"
            if i == n - 1:
                for name, data in (files or {}).items():
                    out += f"M 644 inline {name}\n".encode() + b"data %d\n" % len(data) + data + b"\n"
        out += b"done\n"
        args = ["fast-import", "--quiet", "--done"] + (["--force"] if force else [])
        p = subprocess.run(["git", *args], cwd=self.path, env=self.sw.git_env(), input=bytes(out),
                           capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        ids = self.git("rev-list", "--first-parent", f"-n{n}", f"refs/heads/{branch}").stdout.split()
        return ids[::-1]

    def raw_commit(self, branch, author_name: bytes, author_email: bytes, message: bytes,
                   tz=b"+0000"):
        """One commit on branch with author and message given as raw bytes (git stores bytes:
        old repositories hold Latin-1 names and messages). Returns its id."""
        t = self.sw.next_time()
        tip = self.rev(f"refs/heads/{branch}")
        who = author_name + b" <" + author_email + b"> %d " % t + tz
        out = (b"commit refs/heads/" + branch.encode() + b"\nauthor " + who + b"\ncommitter " + who
               + b"\ndata %d\n" % len(message) + message + b"\n"
               + (f"from {tip}\n".encode() if tip else b"")
               + b"M 644 inline raw.txt\ndata %d\n%d\n\ndone\n" % (len(str(t)) + 1, t))
        p = subprocess.run(["git", "fast-import", "--quiet", "--done"], cwd=self.path,
                           env=self.sw.git_env(), input=out, capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        return self.rev(f"refs/heads/{branch}")

    def push(self, *args, check=True):
        return self.git("push", "-q", "origin", *args, check=check)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sw_tmp():
    d = tempfile.mkdtemp(prefix="slipway-e2e-")
    yield d
    if os.environ.get("SLIPWAY_E2E_KEEP"):
        print(f"\nslipway e2e: kept {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def sw(sw_tmp):
    """The session's server: started once, stopped with SIGTERM at the end (must exit 0)."""
    assert os.access(BIN, os.X_OK), f"{BIN} is not built: run make"
    server = Server(os.path.join(sw_tmp, "data"), sw_tmp, session=True).start()
    assert server.admin_key, f"no admin key in the first-start banner:\n{server.stdout}"
    s = Slipway(server, sw_tmp)
    yield s
    s.http.close()
    try:
        rc = server.stop()
    finally:  # what the environments left runs on the session's ports otherwise
        stop_leftovers(server.data)
    err = server.stderr()
    assert rc == 0, f"the server exited with {rc} after SIGTERM; stderr tail:\n{err[-6000:]}"
    leaked = [x[:12] + "..." for x in s.secrets if x and x in err]
    assert not leaked, f"secrets found in the server's stderr: {leaked}"


@pytest.fixture(autouse=True)
def _passable_tmp_path(request):
    """A test's tmp_path lets other users pass, as a data directory's parents must (else a root
    server binds the data directory under /run/slipway, which a killed server leaves behind)."""
    if "tmp_path" in request.fixturenames:
        passable(str(request.getfixturevalue("tmp_path")))


@pytest.fixture
def server_factory(tmp_path):
    """Starts extra servers of a test's own; any still running at the end are stopped (SIGTERM,
    so that they remove their cgroups; SIGKILL if that does not end them)."""
    servers = []

    def make(data=None, extra_args=(), prefix=()):
        srv = Server(str(data or tmp_path / unique("data")), str(tmp_path), extra_args,
                     prefix).start()
        servers.append(srv)
        return srv
    yield make
    for srv in servers:
        try:
            if srv.proc.poll() is None:
                srv.proc.terminate()
                try:
                    srv.proc.wait(timeout=STOP_DEADLINE)
                except subprocess.TimeoutExpired:
                    srv.proc.kill()
                    srv.proc.wait()
        finally:
            stop_leftovers(srv.data)


@pytest.fixture
def cli_actor():
    return "cli:" + pwd.getpwuid(os.getuid()).pw_name


def pytest_report_header(config):
    return f"slipway binary: {BIN}"


__all__ = ["read_all", "ADMIN_EMAIL", "REPO_SCOPE", "USER_SCOPES", "BIN", "Server", "User", "Slipway", "Repo", "unique",
           "unique_email", "wait_for", "assert_error", "assert_ok", "quote", "raw_http", "json"]
