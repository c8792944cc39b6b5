"""Git hosting over smart HTTP at /git/<AppId>.git: clone, push, branches, force-push, deletes,
authentication, large pushes; every change is visible through the API at once."""

import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import User, assert_error, assert_ok, children, unique, wait_for


def branch(sw, user, app_id, name="main"):
    return sw.get(f"/api/1/apps/{app_id}/branches/{name}", user)


def test_clone_empty_then_push_main(sw):
    dev, a, repo = sw.new_dev_clone("git")
    assert os.path.isdir(os.path.join(repo.path, ".git"))
    assert repo.rev("HEAD") is None  # empty
    assert_error(branch(sw, dev, a), 404, "BRANCH_NOT_FOUND")
    ids = repo.commits(3)
    repo.push("main")
    b = assert_ok(branch(sw, dev, a))
    assert b["LatestRevisionHash"] == ids[-1] and b["LatestRevisionNumber"] == 3
    # a fresh clone has the same history, and main checked out
    other = sw.clone(a, dev)
    assert other.rev("HEAD") == ids[-1]
    assert other.git("symbolic-ref", "--short", "HEAD").stdout.strip() == "main"
    assert other.git("rev-list", "--count", "HEAD").stdout.strip() == "3"


def test_new_branch_force_push_and_delete(sw):
    dev, app = sw.new_dev_app("branching", user_prefix="branches")
    a = app["AppId"]
    repo = sw.repo_with_commits(a, dev, 4)
    main_ids = [repo.rev(f"main~{i}") for i in range(3, -1, -1)]

    # a new branch from main~1 with 2 commits of its own
    feat = repo.commits(2, "feature/x", parent=main_ids[2])
    repo.push("feature/x")
    b = assert_ok(sw.get(f"/api/1/apps/{a}/branches/feature%2Fx", dev))
    assert b["Name"] == "feature/x" and b["LatestRevisionNumber"] == 5
    assert b["LatestRevisionHash"] == feat[-1]
    names = sorted(x["Name"] for x in assert_ok(sw.get(f"/api/1/apps/{a}/branches", dev)))
    assert names == ["feature/x", "main"]

    # force-push main to a rewritten history of 2 commits: number and revisions change at once
    new = repo.commits(2, "rewrite", parent=None, message="rewritten {i}")
    repo.push("--force", "rewrite:main")
    b = assert_ok(branch(sw, dev, a))
    assert b["LatestRevisionHash"] == new[-1] and b["LatestRevisionNumber"] == 2
    revs = assert_ok(sw.get(f"/api/1/apps/{a}/branches/main/revisions", dev))
    assert [r["Hash"] for r in revs] == new[::-1]
    assert [r["Number"] for r in revs] == [2, 1]
    assert [r["CommitMessage"] for r in revs] == ["rewritten 2", "rewritten 1"]
    # and a force-push back to a longer history
    repo.push("--force", f"{main_ids[-1]}:refs/heads/main")
    b = assert_ok(branch(sw, dev, a))
    assert b["LatestRevisionHash"] == main_ids[-1] and b["LatestRevisionNumber"] == 4
    revs = assert_ok(sw.get(f"/api/1/apps/{a}/branches/main/revisions", dev))
    assert [r["Hash"] for r in revs] == main_ids[::-1]

    # delete the branch: gone at once, from every API
    repo.push("--delete", "feature/x")
    assert_error(sw.get(f"/api/1/apps/{a}/branches/feature%2Fx", dev), 404, "BRANCH_NOT_FOUND")
    assert_error(sw.get(f"/api/1/apps/{a}/branches/feature%2Fx/revisions", dev), 404,
                 "BRANCH_NOT_FOUND")
    assert [x["Name"] for x in assert_ok(sw.get(f"/api/1/apps/{a}/branches", dev))] == ["main"]
    assert_error(sw.get(f"/v1/repositories/{app['ProjectId']}/branches/feature%2Fx", dev,
                        via="token"), 404, "RS404")
    ls = repo.git("ls-remote", "--heads", "origin").stdout
    assert "feature/x" not in ls


def test_unauthenticated_clone_gets_basic_challenge(sw):
    dev, app = sw.new_dev_app("challenge")
    a = app["AppId"]
    for service in ("git-upload-pack", "git-receive-pack"):
        r = requests.get(f"{sw.base}/git/{a}.git/info/refs?service={service}", timeout=10)
        assert_error(r, 401)
        assert r.headers.get("WWW-Authenticate", "").startswith("Basic "), r.headers
        assert 'realm="' in r.headers["WWW-Authenticate"]
    # wrong credentials: challenged again
    r = requests.get(f"{sw.base}/git/{a}.git/info/refs?service=git-upload-pack",
                     auth=(dev.email, dev.key + "x"), timeout=10)
    assert_error(r, 401)
    assert r.headers.get("WWW-Authenticate", "").startswith("Basic ")
    # git itself fails cleanly, without prompting
    p = sw.git("clone", sw.git_url(a), os.path.join(sw.tmp, unique("anon")), check=False)
    assert p.returncode != 0
    # with credentials, the smart HTTP advertisement
    r = requests.get(f"{sw.base}/git/{a}.git/info/refs?service=git-upload-pack",
                     auth=dev.basic(), timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"


def test_dumb_protocol_and_unknown_repo(sw):
    dev, app = sw.new_dev_app("dumb")
    a = app["AppId"]
    assert_error(requests.get(f"{sw.base}/git/{a}.git/HEAD", auth=dev.basic(), timeout=10), 404)
    assert_error(requests.get(f"{sw.base}/git/{a}.git/info/refs", auth=dev.basic(), timeout=10),
                 404)
    r = requests.get(f"{sw.base}/git/{unique('nope')}.git/info/refs?service=git-upload-pack",
                     auth=dev.basic(), timeout=10)
    assert_error(r, 404, "APP_NOT_FOUND")


def test_push_of_several_megabytes(sw):
    dev, a, repo = sw.new_dev_clone("big")
    repo.git("config", "core.compression", "0")  # random data does not compress anyway
    blob = os.urandom(5 * 1024 * 1024)  # random: the pack stays > 5 MB (chunked upload)
    ids = repo.commits(1, files={"big.bin": blob})
    repo.push("main")
    assert assert_ok(branch(sw, dev, a))["LatestRevisionHash"] == ids[-1]
    other = sw.clone(a, dev)
    with open(os.path.join(other.path, "big.bin"), "rb") as f:
        assert f.read() == blob


def test_token_works_as_git_password(sw):
    dev, app = sw.new_dev_app("tokengit")
    a = app["AppId"]
    repo = sw.clone(a, dev, secret=dev.token)
    ids = repo.commits(2)
    repo.push("main")
    assert assert_ok(branch(sw, dev, a))["LatestRevisionHash"] == ids[-1]
    # the token of another user does not work with this email
    other = sw.new_user("tokenother")
    sw.add_member(a, other, "developer")
    p = sw.git("ls-remote", sw.git_url(a, dev, secret=other.token), check=False)
    assert p.returncode != 0


def test_push_of_tags_and_several_branches_at_once(sw):
    dev, a, repo = sw.new_dev_clone("multi")
    m = repo.commits(2)
    x = repo.commits(1, "one", parent=m[0])
    y = repo.commits(3, "two", parent=m[-1])
    repo.push("main", "one", "two")
    got = {b["Name"]: b for b in assert_ok(sw.get(f"/api/1/apps/{a}/branches", dev))}
    assert set(got) == {"main", "one", "two"}
    assert got["one"]["LatestRevisionHash"] == x[-1] and got["one"]["LatestRevisionNumber"] == 2
    assert got["two"]["LatestRevisionHash"] == y[-1] and got["two"]["LatestRevisionNumber"] == 5


def test_concurrent_pushes_and_reads(sw):
    """Pushes to several apps at once while others read them: nothing fails, numbers add up."""
    dev = sw.new_user("busy")
    apps = [sw.new_app("busy", [(dev, "developer")])["AppId"] for _ in range(3)]
    stop = threading.Event()
    errors = []

    def writer(a):
        repo = sw.clone(a, dev)
        for _ in range(3):
            repo.commits(2)
            repo.push("main")
        return repo.rev("main")

    def reader():
        s = requests.Session()
        n = 0
        while not stop.is_set() or n < 5:
            for a in apps:
                for path in (f"/api/1/apps/{a}/branches", f"/api/1/apps/{a}/branches/main/revisions"):
                    r = s.get(sw.base + path, headers=dev.key_headers(), timeout=30)
                    if r.status_code not in (200, 404):
                        errors.append((path, r.status_code, r.text[:200]))
                    n += 1
            stop.wait(0.01)  # throttle: leave the CPU to the pushes
        s.close()

    with ThreadPoolExecutor(max_workers=6) as ex:
        readers = [ex.submit(reader) for _ in range(2)]
        heads = list(ex.map(writer, apps))
        stop.set()
        for f in readers:
            f.result()
    assert not errors, errors[:5]
    for a, head in zip(apps, heads):
        b = assert_ok(sw.get(f"/api/1/apps/{a}/branches/main", dev))
        assert b["LatestRevisionHash"] == head and b["LatestRevisionNumber"] == 6


def test_email_with_plus_and_upper_case_in_the_url(sw):
    email = f"{unique('dev')}+ci@example.com"
    assert_ok(sw.post("/api/slipway/users", sw.admin, json={"email": email, "name": "CI"}), 201)
    u = User(email, sw.new_apikey(email))
    app = sw.new_app("plus", [(u, "developer")])
    ids = sw.repo_with_commits(app["AppId"], u, 1).rev("main")
    # the email in another case is the same user
    upper = User(email.upper(), u.key)
    clone = sw.clone(app["AppId"], upper)
    assert clone.rev("main") == ids


def server_children(pid):
    """Processes whose parent is pid, but the warm build sandboxes (bwrap) it keeps: git
    http-backend while it serves, or its zombie."""
    return [c for c in children(pid) if c[1] != "bwrap"]


def test_client_gone_mid_clone_leaves_nothing_behind(sw):
    """A clone killed while it receives: the server stops its git http-backend (no child or
    zombie stays) and serves on."""
    dev, app = sw.new_dev_app("quitter")
    repo = sw.clone(app["AppId"], dev)
    repo.git("config", "core.compression", "0")
    repo.commits(1, files={"big.bin": os.urandom(8 * 1024 * 1024)})
    repo.push("main")
    dest = os.path.join(sw.tmp, unique("quit"))
    p = subprocess.Popen(["git", "-c", "credential.helper=", "clone", "--progress",
                          sw.git_url(app["AppId"], dev), dest],
                         env=sw.git_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = b""
    while b"Receiving objects" not in seen:
        chunk = p.stderr.read1(256)
        if not chunk:
            break
        seen += chunk
    p.kill()
    p.wait()
    p.stderr.close()
    wait_for(lambda: not server_children(sw.server.proc.pid), 10,
             what="the server's git http-backend children to go away")
    assert sw.get("/healthz").status_code == 200
    assert sw.clone(app["AppId"], dev).rev("main") == repo.rev("main")


def test_the_git_service_comes_from_the_route_not_the_query(sw):
    """git reads the last `service` parameter, the route table the first: a viewer who sends
    both gets the fetch service the table let through, never receive-pack's advertisement, and a
    POST to git-upload-pack with ?service=git-receive-pack is no push (nor audited as one)."""
    viewer = sw.new_user("svcviewer")
    a = sw.new_app("svc", [(viewer, "viewer")])["AppId"]
    for q in ("service=git-upload-pack&service=git-receive-pack",
              "service=git-upload-pack&%73ervice=git-receive-pack"):
        r = requests.get(f"{sw.base}/git/{a}.git/info/refs?{q}", auth=viewer.basic(), timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/x-git-upload-pack-advertisement", q

    def pkt(s):
        return "%04x" % (len(s) + 4) + s
    body = (pkt("0" * 40 + " " + "1" * 40 + " refs/heads/forged\0 report-status\n") + "0000")
    r = requests.post(f"{sw.base}/git/{a}.git/git-upload-pack?service=git-receive-pack",
                      auth=viewer.basic(), data=body.encode(), timeout=30,
                      headers={"Content-Type": "application/x-git-upload-pack-request"})
    assert r.headers.get("Content-Type") != "application/x-git-receive-pack-result", r.text
    entries, intact = sw.audit()
    assert intact is True
    assert not [e for e in entries if e["action"] == "git push" and e["app"] == a], entries
