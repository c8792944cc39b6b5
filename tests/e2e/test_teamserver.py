"""Team Server API v1 (Mendix-compatible) under /api/1: apps, branches, revisions."""

import pytest

from conftest import assert_error, assert_ok, unique

BRANCH_FIELDS = {"Name": str, "DisplayName": str, "LatestRevisionNumber": int,
                 "LatestRevisionMendixVersion": str, "LatestTaggedVersion": str,
                 "LatestRevisionHash": str}
REVISION_FIELDS = {"Number": int, "CommitMessage": str, "Date": int, "Author": str,
                   "MendixVersion": str}


def check_fields(obj, fields):
    for name, typ in fields.items():
        assert name in obj, f"{name} missing in {obj}"
        assert type(obj[name]) is typ, f"{name} is {type(obj[name]).__name__} in {obj}"


# --- apps -------------------------------------------------------------------------------------


def test_apps_lists_only_the_users_apps(sw):
    dev = sw.new_user("lister")
    mine = [sw.new_app("mine", [(dev, "developer")]), sw.new_app("mine2", [(dev, "viewer")])]
    theirs = sw.new_app("theirs")
    got = assert_ok(sw.get("/api/1/apps", dev))
    assert isinstance(got, list)
    assert sorted(a["AppId"] for a in got) == sorted(a["AppId"] for a in mine)
    for a in got:
        assert set(a) >= {"AppId", "Name", "ProjectId", "Url"}
        for f in ("AppId", "Name", "ProjectId", "Url"):
            assert isinstance(a[f], str), a
    # a brand-new user sees nothing; an admin sees all
    assert assert_ok(sw.get("/api/1/apps", sw.new_user("nobody"))) == []
    all_ids = {a["AppId"] for a in assert_ok(sw.get("/api/1/apps", sw.admin))}
    assert {a["AppId"] for a in mine + [theirs]} <= all_ids


def test_app_get(sw):
    dev, app = sw.new_dev_app("getme", user_prefix="getter")
    got = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}", dev))
    assert got["AppId"] == app["AppId"] and got["ProjectId"] == app["ProjectId"]
    assert got["Name"] == app["Name"]
    for f in ("AppId", "Name", "ProjectId", "Url"):
        assert isinstance(got[f], str)
    listed = next(a for a in assert_ok(sw.get("/api/1/apps", dev)) if a["AppId"] == app["AppId"])
    assert listed == got


def test_unknown_and_invalid_app(sw):
    dev = sw.new_user("unknown")
    assert_error(sw.get(f"/api/1/apps/{unique('ghost')}", dev), 404, "APP_NOT_FOUND")
    assert_error(sw.get(f"/api/1/apps/{unique('ghost')}/branches", dev), 404, "APP_NOT_FOUND")
    assert_error(sw.get(f"/api/1/apps/{unique('ghost')}/branches/trunk", sw.admin), 404,
                 "APP_NOT_FOUND")
    for bad in ("Bad_Id", "UPPER", "a" * 41, "x"):
        assert_error(sw.get(f"/api/1/apps/{bad}", dev), 400, "INVALID_APPID")
        assert_error(sw.get(f"/api/1/apps/{bad}/branches", sw.admin), 400, "INVALID_APPID")


# --- branches ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history(sw):
    """An app with main (25 commits), feature/x (from main~5, 2 commits) and hotfix."""
    dev, app = sw.new_dev_app("history")
    repo = sw.clone(app["AppId"], dev)
    main = repo.commits(25, message="main commit {i}\n\nwith a body")
    feat = repo.commits(2, "feature/x", parent=main[19])
    hot = repo.commits(1, "hotfix", parent=main[-1])
    repo.push("main", "feature/x", "hotfix")
    return dev, app, repo, main, feat, hot


def test_branches_list(sw, history):
    dev, app, repo, main, feat, hot = history
    got = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches", dev))
    assert isinstance(got, list)
    by = {b["Name"]: b for b in got}
    assert set(by) == {"main", "feature/x", "hotfix"}
    for b in got:
        check_fields(b, BRANCH_FIELDS)
    assert by["main"] == {"Name": "main", "DisplayName": "Main line", "LatestRevisionNumber": 25,
                          "LatestRevisionMendixVersion": by["main"]["LatestRevisionMendixVersion"],
                          "LatestTaggedVersion": "", "LatestRevisionHash": main[-1]}
    assert by["feature/x"]["DisplayName"] == "feature/x"
    assert by["feature/x"]["LatestRevisionNumber"] == 22
    assert by["feature/x"]["LatestRevisionHash"] == feat[-1]
    assert by["hotfix"]["LatestRevisionNumber"] == 26
    assert by["hotfix"]["LatestRevisionHash"] == repo.rev("hotfix")


def test_branch_get_and_trunk(sw, history):
    dev, app, repo, main, feat, hot = history
    a = app["AppId"]
    b = assert_ok(sw.get(f"/api/1/apps/{a}/branches/main", dev))
    check_fields(b, BRANCH_FIELDS)
    assert b["LatestRevisionHash"] == repo.rev("main") and b["LatestRevisionNumber"] == 25
    assert b["DisplayName"] == "Main line"
    assert assert_ok(sw.get(f"/api/1/apps/{a}/branches/trunk", dev)) == b


@pytest.mark.parametrize("path", ["feature%2Fx", "branches%2Ffeature%2Fx", "branches/feature%2Fx",
                                  "branches/feature/x", "feature/x", "branches%2Ffeature/x",
                                  "feature%2fx"])
def test_branch_name_forms(sw, history, path):
    dev, app, repo, main, feat, hot = history
    b = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches/{path}", dev))
    assert b["Name"] == "feature/x" and b["LatestRevisionHash"] == feat[-1]
    revs = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches/{path}/revisions", dev))
    assert [r["Hash"] for r in revs] == (main[:20] + feat)[::-1][:20]


def test_branches_prefix_for_a_plain_name(sw, history):
    dev, app, repo, main, feat, hot = history
    b = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches/branches%2Fhotfix", dev))
    assert b["Name"] == "hotfix"


@pytest.mark.parametrize("name", ["nope", "branches%2Fnope", "feature%2Fy", "trunk%2Fx",
                                  "feature", "main%2Frevisions"])
def test_unknown_branch(sw, history, name):
    dev, app = history[0], history[1]
    assert_error(sw.get(f"/api/1/apps/{app['AppId']}/branches/{name}", dev), 404,
                 "BRANCH_NOT_FOUND")
    assert_error(sw.get(f"/api/1/apps/{app['AppId']}/branches/{name}/revisions", dev), 404,
                 "BRANCH_NOT_FOUND")


def test_trunk_of_an_empty_repo_is_not_found(sw):
    dev, app = sw.new_dev_app("empty")
    assert_error(sw.get(f"/api/1/apps/{app['AppId']}/branches/trunk", dev), 404,
                 "BRANCH_NOT_FOUND")
    assert assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches", dev)) == []


# --- revisions --------------------------------------------------------------------------------


def test_revisions_newest_first_20_by_default(sw, history):
    dev, app, repo, main, feat, hot = history
    revs = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches/main/revisions", dev))
    assert len(revs) == 20
    for r in revs:
        check_fields(r, REVISION_FIELDS)
    assert [r["Number"] for r in revs] == list(range(25, 5, -1))
    assert [r["Hash"] for r in revs] == main[::-1][:20]
    for r in revs:
        assert r["Hash"] == repo.rev(r["Hash"])  # a full git commit id
        assert r["Author"] == "dev@example.com"
        assert r["CommitMessage"] == f"main commit {r['Number']}\n\nwith a body"
        ct = int(repo.git("log", "-1", "--format=%ct", r["Hash"]).stdout)
        assert r["Date"] == ct * 1000
    dates = [r["Date"] for r in revs]
    assert dates == sorted(dates, reverse=True)
    # trunk and trailing slash forms give the same
    assert assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches/trunk/revisions/", dev)) == revs


def test_revisions_of_a_branch(sw, history):
    dev, app, repo, main, feat, hot = history
    revs = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches/hotfix/revisions", dev))
    assert revs[0]["Hash"] == hot[-1] and revs[0]["Number"] == 26
    assert [r["Hash"] for r in revs[1:]] == main[::-1][:19]


def test_revision_hashes_match_git_rev_parse(sw, history):
    dev, app, repo, main, feat, hot = history
    revs = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches/feature%2Fx/revisions", dev))
    for i, r in enumerate(revs[:5]):
        assert r["Hash"] == repo.rev(f"feature/x~{i}")
        assert r["Number"] == 22 - i


def test_revision_number_counts_first_parents_of_a_merge(sw):
    dev, a, repo = sw.new_dev_clone("merge", user_prefix="merger")
    main = repo.commits(4)
    side = repo.commits(3, "side", parent=main[1])
    repo.push("main", "side")
    before = assert_ok(sw.get(f"/api/1/apps/{a}/branches/main", dev))["LatestRevisionNumber"]
    assert before == 4
    sb = assert_ok(sw.get(f"/api/1/apps/{a}/branches/side", dev))
    assert sb["LatestRevisionNumber"] == 5 and sb["LatestRevisionHash"] == side[-1]
    merge = repo.commits(1, "main", merge="side", message="Merge side into main")
    assert repo.git("rev-list", "--count", "main").stdout.strip() == "8"  # all commits
    repo.push("main")
    b = assert_ok(sw.get(f"/api/1/apps/{a}/branches/main", dev))
    assert b["LatestRevisionNumber"] == before + 1 == 5
    assert b["LatestRevisionHash"] == merge[-1]
    revs = assert_ok(sw.get(f"/api/1/apps/{a}/branches/main/revisions", dev))
    assert [r["Hash"] for r in revs] == [merge[-1]] + main[::-1]  # first parents only
    assert [r["Number"] for r in revs] == [5, 4, 3, 2, 1]
    assert revs[0]["CommitMessage"] == "Merge side into main"


# --- tags -------------------------------------------------------------------------------------


def test_latest_tagged_version(sw):
    dev, a, repo = sw.new_dev_clone("tags", user_prefix="tagger")
    main = repo.commits(5)
    other = repo.commits(2, "other", parent=main[1])
    repo.push("main", "other")

    def tagged(name):
        return assert_ok(sw.get(f"/api/1/apps/{a}/branches/{name}", dev))["LatestTaggedVersion"]
    assert tagged("main") == ""

    repo.git("tag", "1.0.0.3", main[2])  # lightweight
    repo.git("push", "-q", "--tags", "origin")
    assert tagged("main") == "1.0.0.3"
    assert tagged("other") == ""  # main[2] is not on other's history
    assert tagged("trunk") == "1.0.0.3"

    repo.git("tag", "-a", "-m", "release", "1.0.0.4", main[3])  # annotated
    repo.git("tag", "not-a-version", main[4])
    repo.git("tag", "9.9.9.9", other[-1])  # higher, but only on other
    repo.git("push", "-q", "--tags", "origin")
    assert tagged("main") == "1.0.0.4"
    assert tagged("other") == "9.9.9.9"
    listed = {b["Name"]: b for b in assert_ok(sw.get(f"/api/1/apps/{a}/branches", dev))}
    assert listed["main"]["LatestTaggedVersion"] == "1.0.0.4"
    assert listed["other"]["LatestTaggedVersion"] == "9.9.9.9"

    # a tag on main's tip from a merge's side branch does not count: first parents only
    repo.git("tag", "2.0.0.1", other[0])
    repo.git("push", "-q", "--tags", "origin")
    m = repo.commits(1, "main", merge="other")
    repo.push("main")
    assert tagged("main") == "1.0.0.4"
    assert assert_ok(sw.get(f"/api/1/apps/{a}/branches/main", dev))["LatestRevisionHash"] == m[-1]


def test_branches_sorted_by_name(sw, history):
    dev, app = history[0], history[1]
    names = [b["Name"] for b in assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches", dev))]
    assert names == sorted(names)


def test_revisions_limit_and_offset(sw, history):
    dev, app, repo, main, feat, hot = history
    path = f"/api/1/apps/{app['AppId']}/branches/main/revisions"
    revs = assert_ok(sw.get(path + "?limit=5", dev))
    assert [r["Hash"] for r in revs] == main[::-1][:5]
    revs = assert_ok(sw.get(path + "?limit=5&offset=20", dev))
    assert [r["Number"] for r in revs] == [5, 4, 3, 2, 1]
    revs = assert_ok(sw.get(path + "?limit=1000", dev))
    assert [r["Hash"] for r in revs] == main[::-1]
    assert assert_ok(sw.get(path + "?offset=25", dev)) == []
    for bad in ("limit=0", "limit=1001", "limit=x", "offset=-1", "offset=y"):
        assert_error(sw.get(f"{path}?{bad}", dev), 400, "INVALID_PARAMETERS")


# --- text that is not plain ASCII -------------------------------------------------------------


def test_utf8_commit_text_round_trips(sw):
    dev, app = sw.new_dev_app("utf8")
    repo = sw.clone(app["AppId"], dev)
    ids = repo.commits(1, message="Zoë fixed the ✓ mark 日本",
                       author=("Zoë Ünïcode", "zoe@example.com"))
    repo.push("main")
    revs = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches/main/revisions", dev))
    assert revs[0]["Hash"] == ids[0]
    assert revs[0]["CommitMessage"] == "Zoë fixed the ✓ mark 日本"
    assert revs[0]["Author"] == "zoe@example.com"


def test_non_utf8_commit_message_is_not_dropped(sw):
    """git stores bytes; a Latin-1 message must not turn into "" (invalid bytes may be
    replaced, the rest of the text must stay)."""
    dev, app = sw.new_dev_app("latin1")
    repo = sw.clone(app["AppId"], dev)
    repo.commits(1)
    cid = repo.raw_commit("main", b"Jos\xe9", b"jose@example.com",
                          b"Caf\xe9 menu: fix the latin-1 price list")
    repo.push("main")
    revs = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches/main/revisions", dev))
    assert revs[0]["Hash"] == cid and revs[0]["Author"] == "jose@example.com"
    assert "menu: fix the latin-1 price list" in revs[0]["CommitMessage"], revs[0]
    assert revs[0]["CommitMessage"].startswith("Caf")


def test_non_utf8_branch_name_does_not_break_the_listing(sw):
    """git allows any bytes in ref names; one odd branch pushed by any developer must not make
    the app's branch list fail for everybody."""
    dev, app, repo, head = sw.new_app_with_odd_branch("oddref")
    assert "caf" in repo.git("ls-remote", "--heads", "origin").stdout
    got = assert_ok(sw.get(f"/api/1/apps/{app['AppId']}/branches", dev))
    assert "main" in [b["Name"] for b in got]
