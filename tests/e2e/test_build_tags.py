"""Version tags through the real binary: a build of Version V of revision Number N tags its
commit `V.N`, and a tag names one commit (as on Mendix's Team Server). A POST whose tag names
another commit, or that a queued or running build of another commit will put, is refused with
409 TAG_EXISTS; a tag pushed meanwhile fails the build that would have put it. Versions have no
leading zeros."""
import threading

import requests

from builds import TRIVIAL, build_log, commit, details, start, wait_done, yml
from conftest import Slipway, assert_error, assert_ok, wait_for


def two_branches(sw, dev, app_id):
    """main (revision 1), and br1 and br2 each one commit on top of it: two commits that are
    both revision 2. Returns the repo and their ids."""
    repo = sw.clone(app_id, dev)
    commit(repo, {"slipway.yml": TRIVIAL})
    ids = {}
    for br in ("br1", "br2"):
        ids[br] = repo.commits(1, br, parent="main", files={"slipway.yml": TRIVIAL})[-1]
        repo.push(br)
    for br in ("br1", "br2"):
        b = assert_ok(sw.get(f"/api/1/apps/{app_id}/branches/{br}", dev))
        assert b["LatestRevisionNumber"] == 2 and b["LatestRevisionHash"] == ids[br], b
    return repo, ids


def post(sw, user, app_id, branch, revision, version):
    return sw.post(f"/api/1/apps/{app_id}/packages", user,
                   json={"Branch": branch, "Revision": str(revision), "Version": version})


def tag_commit(repo, tag):
    """The commit the server's tag names (None without the tag)."""
    out = repo.git("ls-remote", "origin", f"refs/tags/{tag}").stdout.split()
    return out[0] if out else None


def packages(sw, user, app_id):
    return assert_ok(sw.get(f"/api/1/apps/{app_id}/packages", user))


def test_a_version_tag_names_one_commit(sw):
    dev, app = sw.new_dev_app("tags", user_prefix="tagger")
    app_id = app["AppId"]
    repo, ids = two_branches(sw, dev, app_id)
    pid = assert_ok(post(sw, dev, app_id, "br1", 2, "9.0.0"), 201)["PackageId"]
    p = wait_done(sw, dev, app_id, pid)
    assert p["Status"] == "Succeeded" and p["Version"] == "9.0.0.2", build_log(sw, dev, app_id, pid)
    assert tag_commit(repo, "9.0.0.2") == ids["br1"]

    # the same Version of br2's revision 2 would need the same tag on another commit
    e = assert_error(post(sw, dev, app_id, "br2", 2, "9.0.0"), 409, "TAG_EXISTS")
    assert "'9.0.0.2'" in e["errorMessage"] and ids["br1"] in e["errorMessage"], e
    assert ids["br2"] in e["errorMessage"] and "choose another Version" in e["errorMessage"], e
    assert [x["PackageId"] for x in packages(sw, dev, app_id)] == [pid]
    assert tag_commit(repo, "9.0.0.2") == ids["br1"]
    # by commit hash too
    assert_error(post(sw, dev, app_id, "br2", ids["br2"][:10], "9.0.0"), 409, "TAG_EXISTS")

    # a rebuild of the same commit is fine: its tag names that commit already
    for rev in ("2", ids["br1"]):
        again = assert_ok(post(sw, dev, app_id, "br1", rev, "9.0.0"), 201)["PackageId"]
        p = wait_done(sw, dev, app_id, again)
        assert p["Status"] == "Succeeded" and p["Version"] == "9.0.0.2", p
        assert details(sw, dev, app_id, again)["Revision"] == ids["br1"]
    assert tag_commit(repo, "9.0.0.2") == ids["br1"]

    # another Version of br2 is fine
    other = assert_ok(post(sw, dev, app_id, "br2", 2, "9.0.1"), 201)["PackageId"]
    assert wait_done(sw, dev, app_id, other)["Status"] == "Succeeded"
    assert tag_commit(repo, "9.0.1.2") == ids["br2"]

    # a tag a user pushed counts as well (lightweight or annotated)
    repo.git("tag", "9.1.0.2", ids["br1"])
    repo.git("tag", "-a", "-m", "release", "9.2.0.2", ids["br1"])
    repo.push("refs/tags/9.1.0.2", "refs/tags/9.2.0.2")
    for v in ("9.1.0", "9.2.0"):
        e = assert_error(post(sw, dev, app_id, "br2", 2, v), 409, "TAG_EXISTS")
        assert ids["br1"] in e["errorMessage"], e
    pid = assert_ok(post(sw, dev, app_id, "br1", 2, "9.2.0"), 201)["PackageId"]
    assert wait_done(sw, dev, app_id, pid)["Status"] == "Succeeded"


def test_versions_with_leading_zeros_are_refused(sw):
    dev, app_id, repo = sw.new_dev_clone("zeros")
    commit(repo, {"slipway.yml": TRIVIAL})
    for v in ("01.0.0", "1.01.0", "1.0.00", "00.0.0", "0.0.01", "1.0.0.0", "1.0", "-1.0.0",
              "1.0.0 ", "1234567890.0.0"):
        e = assert_error(post(sw, dev, app_id, "main", 1, v), 400, "INVALID_VERSION")
        assert "major.minor.patch" in e["errorMessage"], e
    assert packages(sw, dev, app_id) == []
    for v in ("0.0.0", "10.0.0", "1.10.100", "999999999.0.0"):
        pid = assert_ok(post(sw, dev, app_id, "main", 1, v), 201)["PackageId"]
        p = wait_done(sw, dev, app_id, pid)
        assert p["Status"] == "Succeeded" and p["Version"] == f"{v}.1", p


def test_queued_builds_claim_their_tag_and_a_pushed_tag_fails_the_build(server_factory,
                                                                         tmp_path):
    """With one executor held by a long build, the builds behind it stay Queued: a second build
    whose tag a queued one will put on another commit is refused at once; a tag pushed on another
    commit while a build waits fails that build when it tags, and its package is not kept."""
    srv = server_factory(extra_args=["--executors", "1"])
    s = Slipway(srv, str(tmp_path))
    dev, app = s.new_dev_app("queue")
    app_id = app["AppId"]
    repo, ids = two_branches(s, dev, app_id)
    commit(repo, {"slipway.yml": yml(["sleep 600"])}, branch="hold")
    hold = start(s, dev, app_id, 1, "1.0.0", branch="hold")
    wait_for(lambda: details(s, dev, app_id, hold)["Status"] == "Building", timeout=30,
             what="the long build running")

    a = assert_ok(post(s, dev, app_id, "br1", 2, "9.0.0"), 201)["PackageId"]
    e = assert_error(post(s, dev, app_id, "br2", 2, "9.0.0"), 409, "TAG_EXISTS")
    assert a in e["errorMessage"] and ids["br1"] in e["errorMessage"], e
    assert "'9.0.0.2'" in e["errorMessage"] and ids["br2"] in e["errorMessage"], e
    # the same commit again is fine
    a2 = assert_ok(post(s, dev, app_id, "br1", 2, "9.0.0"), 201)["PackageId"]

    # queued, then someone pushes the tag it would put, on the other commit
    b = assert_ok(post(s, dev, app_id, "br1", 2, "9.3.0"), 201)["PackageId"]
    repo.git("tag", "9.3.0.2", ids["br2"])
    repo.push("refs/tags/9.3.0.2")

    assert_ok(s.post(f"/api/slipway/apps/{app_id}/packages/{hold}/cancel", dev), 202)
    for pid in (a, a2):
        assert wait_done(s, dev, app_id, pid)["Status"] == "Succeeded"
    assert tag_commit(repo, "9.0.0.2") == ids["br1"]
    p = wait_done(s, dev, app_id, b)
    assert p["Status"] == "Failed", p
    reason = details(s, dev, app_id, b)["Reason"]
    assert "'9.3.0.2'" in reason and ids["br2"] in reason, reason
    assert tag_commit(repo, "9.3.0.2") == ids["br2"]
    assert_error(s.get(f"/api/1/apps/{app_id}/packages/{b}/download", dev), 500,
                 "BUILD_NOT_SUCCEEDED")
    assert "'9.3.0.2'" in build_log(s, dev, app_id, b)
    assert srv.stop() == 0


def test_concurrent_posts_for_one_tag(sw):
    """Two POSTs at once of the same Version on two commits of the same Number: one wins."""
    dev, app = sw.new_dev_app("race")
    app_id = app["AppId"]
    _, ids = two_branches(sw, dev, app_id)
    for i in range(6):
        version = f"7.{i}.0"
        answers = {}
        barrier = threading.Barrier(2)

        def go(branch):
            with requests.Session() as http:
                barrier.wait()
                answers[branch] = http.post(
                    f"{sw.base}/api/1/apps/{app_id}/packages", headers=dev.key_headers(),
                    json={"Branch": branch, "Revision": "2", "Version": version}, timeout=30)
        threads = [threading.Thread(target=go, args=(br,)) for br in ("br1", "br2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in answers.values())
        assert codes == [201, 409], {br: (r.status_code, r.text) for br, r in answers.items()}
        winner = next(br for br, r in answers.items() if r.status_code == 201)
        pid = answers[winner].json()["PackageId"]
        assert wait_done(sw, dev, app_id, pid)["Status"] == "Succeeded"
