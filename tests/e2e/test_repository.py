"""App Repository API (Mendix-compatible) under /v1/repositories/<ProjectId>: MxToken with the
scope mx:modelrepository:repo:read; info, branches and commits with cursor paging."""

import base64
import datetime
import re

import pytest

from conftest import REPO_SCOPE, Slipway, assert_error, assert_ok

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@pytest.fixture(scope="module")
def repo_app(sw):
    dev, app = sw.new_dev_app("repoapi")
    repo = sw.clone(app["AppId"], dev)
    main = repo.commits(7, message="repo commit {i}")
    names = [f"b{i}" for i in range(1, 6)]
    for i, n in enumerate(names):
        repo.commits(1, n, parent=main[i])
    repo.push("main", *names)
    return dev, app, repo, main, names


def rget(sw, user, app, path, **kw):
    return sw.get(f"/v1/repositories/{app['ProjectId']}{path}", user, via="token", **kw)


def check_commit(c, repo):
    assert set(c) >= {"id", "author", "date", "message"}
    assert c["id"] == repo.rev(c["id"]) and len(c["id"]) == 40
    assert c["author"] == {"name": "Dev Eloper", "email": "dev@example.com"}
    assert RFC3339.match(c["date"]), c["date"]
    when = datetime.datetime.fromisoformat(c["date"].replace("Z", "+00:00"))
    ct = int(repo.git("log", "-1", "--format=%ct", c["id"]).stdout)
    assert int(when.timestamp()) == ct
    assert c["message"] == repo.git("log", "-1", "--format=%B", c["id"]).stdout.rstrip("\n")


def test_info(sw, repo_app):
    dev, app, repo, main, names = repo_app
    info = assert_ok(rget(sw, dev, app, "/info"))
    assert info["appId"] == app["ProjectId"]
    assert info["type"] == "git"
    assert info["url"].endswith(f"/git/{app['AppId']}.git")
    assert info["url"] == f"{sw.base}/git/{app['AppId']}.git"
    # that URL clones
    assert sw.git("ls-remote", sw.git_url(app["AppId"], dev)).stdout.count("refs/heads/") == 6


def test_token_needs_the_scope(sw, repo_app):
    dev, app = repo_app[0], repo_app[1]
    for scopes in ("", "mx:deployment:read", "mx:modelrepository:repo:write,mx:webhook:read"):
        token = sw.new_token(dev.email, scopes)
        for path in ("/info", "/branches", "/branches/main", "/branches/main/commits"):
            r = sw.get(f"/v1/repositories/{app['ProjectId']}{path}",
                       headers={"Authorization": f"MxToken {token}"})
            assert_error(r, 403, "RS403")
    # the scope among others is enough
    token = sw.new_token(dev.email, "mx:deployment:read,mx:modelrepository:repo:read")
    assert_ok(sw.get(f"/v1/repositories/{app['ProjectId']}/info",
                     headers={"Authorization": f"MxToken {token}"}))


def test_admin_token_also_needs_the_scope(sw, repo_app):
    """Scopes restrict what a token may do, whoever owns it: an administrator's token made for,
    say, deployments only must not read repositories either (the admin's own rights are not
    the token's)."""
    app = repo_app[1]
    boss = sw.new_user("scopeboss", admin=True, token=False)
    for scopes in ("", "mx:deployment:read"):
        token = sw.new_token(boss.email, scopes)
        for path in ("/info", "/branches", "/branches/main", "/branches/main/commits"):
            r = sw.get(f"/v1/repositories/{app['ProjectId']}{path}",
                       headers={"Authorization": f"MxToken {token}"})
            assert_error(r, 403, "RS403")
    token = sw.new_token(boss.email, REPO_SCOPE)
    assert_ok(sw.get(f"/v1/repositories/{app['ProjectId']}/info",
                     headers={"Authorization": f"MxToken {token}"}))


def test_api_key_headers_are_not_enough(sw, repo_app):
    dev, app = repo_app[0], repo_app[1]
    for path in ("/info", "/branches", "/branches/main", "/branches/main/commits"):
        r = sw.get(f"/v1/repositories/{app['ProjectId']}{path}", dev, via="key")
        body = assert_error(r, 401, "RS401")
        assert set(body) == {"errorCode", "errorMessage"}
        assert_error(sw.get(f"/v1/repositories/{app['ProjectId']}{path}"), 401, "RS401")


def test_unknown_project_and_non_member(sw, repo_app):
    dev, app = repo_app[0], repo_app[1]
    admin_token = sw.new_token(sw.admin.email)
    for pid in ("00000000-0000-4000-8000-000000000000", "nope", app["AppId"]):
        assert_error(sw.get(f"/v1/repositories/{pid}/info", dev, via="token"), 404, "RS404")
        assert_error(sw.get(f"/v1/repositories/{pid}/branches",
                            headers={"Authorization": f"MxToken {admin_token}"}), 404, "RS404")
    stranger = sw.new_user("repostranger")
    for path in ("/info", "/branches", "/branches/main", "/branches/main/commits"):
        assert_error(rget(sw, stranger, app, path), 403, "RS403")


def test_branches_paging_walks_every_branch_once(sw, repo_app):
    dev, app, repo, main, names = repo_app
    seen, pages = [], 0
    page = assert_ok(rget(sw, dev, app, "/branches", params={"limit": 2}))
    first = page["cursors"]["first"]
    last = page["cursors"]["last"]
    assert isinstance(first, str) and isinstance(last, str)
    assert "prev" not in page["cursors"]
    while True:
        pages += 1
        assert len(page["items"]) <= 2
        assert set(page["cursors"]) >= {"first", "last"}
        for b in page["items"]:
            seen.append(b["name"])
            assert b["latestCommit"]["id"] == repo.rev(b["name"])
            check_commit(b["latestCommit"], repo)
        nxt = page["cursors"].get("next")
        if not nxt:
            break
        assert pages < 10
        page = assert_ok(rget(sw, dev, app, "/branches", params={"limit": 2, "cursor": nxt}))
    assert sorted(seen) == sorted(["main", *names]) and len(seen) == len(set(seen)) == 6
    assert pages == 3
    # the last cursor leads to the last page; the first to the first
    lp = assert_ok(rget(sw, dev, app, "/branches", params={"limit": 2, "cursor": last}))
    assert [b["name"] for b in lp["items"]] == seen[-2:]
    assert "next" not in lp["cursors"] and "prev" in lp["cursors"]
    fp = assert_ok(rget(sw, dev, app, "/branches", params={"limit": 2, "cursor": first}))
    assert [b["name"] for b in fp["items"]] == seen[:2]
    # without a limit: all of them (default 20)
    assert len(assert_ok(rget(sw, dev, app, "/branches"))["items"]) == 6


@pytest.mark.parametrize("params", [{"cursor": "zzz"}, {"cursor": "!!!"}, {"cursor": "x" * 100},
                                    {"cursor": base64.urlsafe_b64encode(b"o:-1").decode()},
                                    {"cursor": base64.urlsafe_b64encode(b"q:2").decode()},
                                    {"limit": "0"}, {"limit": "101"}, {"limit": "two"}])
def test_bad_paging_is_400(sw, repo_app, params):
    dev, app = repo_app[0], repo_app[1]
    assert_error(rget(sw, dev, app, "/branches", params=params), 400, "RS400")
    assert_error(rget(sw, dev, app, "/branches/main/commits", params=params), 400, "RS400")


def test_branch(sw, repo_app):
    dev, app, repo, main, names = repo_app
    b = assert_ok(rget(sw, dev, app, "/branches/main"))
    assert b["name"] == "main"
    assert b["latestCommit"]["id"] == main[-1]
    check_commit(b["latestCommit"], repo)
    assert_error(rget(sw, dev, app, "/branches/nope"), 404, "RS404")


def test_branch_with_a_slash(sw):
    dev, app = sw.new_dev_app("reposlash")
    repo = sw.clone(app["AppId"], dev)
    ids = repo.commits(2, "feature/y")
    repo.push("feature/y")
    for name in ("feature%2Fy", "branches%2Ffeature%2Fy"):
        b = assert_ok(rget(sw, dev, app, f"/branches/{name}"))
        assert b["name"] == "feature/y" and b["latestCommit"]["id"] == ids[-1]
        c = assert_ok(rget(sw, dev, app, f"/branches/{name}/commits"))
        assert [x["id"] for x in c["items"]] == ids[::-1]


def test_commits_newest_first_with_paging(sw, repo_app):
    dev, app, repo, main, names = repo_app
    page = assert_ok(rget(sw, dev, app, "/branches/main/commits"))
    assert [c["id"] for c in page["items"]] == main[::-1]
    for c in page["items"]:
        check_commit(c, repo)
    assert [c["message"] for c in page["items"]] == [f"repo commit {i}" for i in range(7, 0, -1)]
    dates = [c["date"] for c in page["items"]]
    assert dates == sorted(dates, reverse=True)
    assert "next" not in page["cursors"]
    # paging by 3
    ids, cur = [], None
    for _ in range(5):
        params = {"limit": 3, **({"cursor": cur} if cur else {})}
        p = assert_ok(rget(sw, dev, app, "/branches/main/commits", params=params))
        ids += [c["id"] for c in p["items"]]
        cur = p["cursors"].get("next")
        if not cur:
            break
    assert ids == main[::-1]
    # trunk works as in the Team Server API
    assert assert_ok(rget(sw, dev, app, "/branches/trunk/commits"))["items"] == page["items"]
    assert_error(rget(sw, dev, app, "/branches/nope/commits"), 404, "RS404")


def test_utf8_author_round_trips(sw):
    dev, app = sw.new_dev_app("repoutf8")
    repo = sw.clone(app["AppId"], dev)
    ids = repo.commits(1, message="Zoë ✓ 日本", author=("Zoë Ünïcode", "zoe@example.com"))
    repo.push("main")
    c = assert_ok(rget(sw, dev, app, "/branches/main"))["latestCommit"]
    assert c["id"] == ids[0] and c["message"] == "Zoë ✓ 日本"
    assert c["author"] == {"name": "Zoë Ünïcode", "email": "zoe@example.com"}


def test_non_utf8_author_name_does_not_break_the_api(sw):
    """One commit by a Latin-1 author name (common in old repositories) must not turn every
    branch and commit listing of the app into a 500."""
    dev, app = sw.new_dev_app("repolatin1")
    repo = sw.clone(app["AppId"], dev)
    first = repo.commits(1)
    cid = repo.raw_commit("main", b"Jos\xe9 Garc\xeda", b"jose@example.com",
                          b"Caf\xe9 menu: fix the latin-1 price list", tz=b"+0200")
    repo.push("main")
    page = assert_ok(rget(sw, dev, app, "/branches"))
    assert [b["name"] for b in page["items"]] == ["main"]
    c = assert_ok(rget(sw, dev, app, "/branches/main"))["latestCommit"]
    assert c["id"] == cid and c["author"]["email"] == "jose@example.com"
    assert c["author"]["name"].startswith("Jos") and "Garc" in c["author"]["name"]
    assert "menu: fix the latin-1 price list" in c["message"]
    commits = assert_ok(rget(sw, dev, app, "/branches/main/commits"))
    assert [x["id"] for x in commits["items"]] == [cid, first[0]]


def test_non_utf8_branch_name_does_not_break_the_listing(sw):
    dev, app, repo, head = sw.new_app_with_odd_branch("repooddref")
    page = assert_ok(rget(sw, dev, app, "/branches"))
    assert "main" in [b["name"] for b in page["items"]]


def test_info_url_uses_the_public_url(server_factory, tmp_path):
    """--public-url is the base the clone URL is built on; a trailing slash on it must not
    double the slash before /git/."""
    for base in ("https://slipway.example.com/ci/", "https://slipway.example.com"):
        srv = server_factory(extra_args=["--public-url", base])
        s = Slipway(srv, str(tmp_path))
        dev, app = s.new_dev_app("pub")
        info = assert_ok(s.get(f"/v1/repositories/{app['ProjectId']}/info", dev, via="token"))
        assert info["url"] == f"{base.rstrip('/')}/git/{app['AppId']}.git", info
        s.http.close()
        assert srv.stop() == 0
