"""The Deploy API v4 (personal access tokens only): apps by ProjectId and environments by
EnvironmentId, their pagination and sort, a deployed environment's package (expand=package), the
state mapping, the members' permissions on an environment (GET and PATCH), and the v4 error body
{"error": {code, message, invalid-params}} for refusals and bad input."""

import re

import requests

from conftest import REPO_SCOPE, assert_ok
from test_deploy import build, deploy, env_path, example_files, new_deployer

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
PERMS = ["canDeployApp", "canManageBackups", "canViewAlerts", "canAccessAPI", "canViewLogs",
         "canManagePrivileges"]


def v4(sw, method, path, user, token=None, **kw):
    headers = {"Authorization": f"MxToken {token or user.token}"} if user else {}
    return requests.request(method, sw.base + "/api/v4" + path, headers=headers, timeout=30, **kw)


def v4_error(r, status, param=None):
    """The answer is a v4 error body with that status (and an invalid-params entry `param`)."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    assert r.headers["Content-Type"].startswith("application/json")
    err = r.json()["error"]
    assert set(r.json()) == {"error"} and err["code"] == status, r.text
    assert isinstance(err["message"], str) and err["message"], r.text
    assert isinstance(err["invalid-params"], list), r.text
    if param:
        assert param in [p["name"] for p in err["invalid-params"]], r.text
        assert all(p["reason"] for p in err["invalid-params"]), r.text
    return err


def envs(sw, user, pid, query=""):
    return assert_ok(v4(sw, "GET", f"/apps/{pid}/environments{query}", user))


def test_apps_environments_pagination_and_sort(sw):
    dev, app_id, _ = new_deployer(sw, "v4")
    boss = sw.new_user("v4boss")
    sw.add_member(app_id, boss, "admin")
    app = assert_ok(sw.get(f"/api/1/apps/{app_id}", dev))
    pid = app["ProjectId"]
    other = sw.new_app("v4other", [(dev, "viewer")])
    hidden = sw.new_app("v4hidden")
    # the apps the user is a member of, each in v4's shape
    j = assert_ok(v4(sw, "GET", "/apps", dev))
    by_id = {a["id"]: a for a in j["apps"]}
    assert set(by_id) == {pid, other["ProjectId"]} and j["pagination"] == {
        "offset": 0, "limit": 100, "size": 2}
    assert by_id[pid] == {"id": pid, "name": app["Name"], "licenseType": "licensed",
                          "subdomain": app_id, "region": "self-hosted",
                          "technicalContact": {"userId": boss.email,
                                               "name": f"Name of {boss.email}",
                                               "status": "active"}}
    assert by_id[other["ProjectId"]]["technicalContact"] == {"userId": None, "name": None,
                                                             "status": None}
    assert assert_ok(v4(sw, "GET", f"/apps/{pid}", dev)) == by_id[pid]
    # pages: size counts them all
    page = assert_ok(v4(sw, "GET", "/apps?offset=1&limit=1", dev))
    assert len(page["apps"]) == 1 and page["pagination"] == {"offset": 1, "limit": 1, "size": 2}
    assert page["apps"][0]["id"] == sorted(by_id.values(), key=lambda a: a["subdomain"])[1]["id"]
    assert assert_ok(v4(sw, "GET", "/apps?licenseType=free", dev))["apps"] == []
    assert len(assert_ok(v4(sw, "GET", "/apps?licenseType=licensed", dev))["apps"]) == 2
    v4_error(v4(sw, "GET", "/apps?licenseType=gold", dev), 400, "licenseType")
    v4_error(v4(sw, "GET", "/apps?limit=0", dev), 400, "limit")
    v4_error(v4(sw, "GET", "/apps?offset=-1", dev), 400, "offset")
    # an administrator sees every app
    admin_token = sw.new_token(sw.admin.email, "mx:deployment:read")
    ids = {a["id"] for a in assert_ok(v4(sw, "GET", "/apps?limit=1000", sw.admin,
                                         admin_token))["apps"]}
    assert {pid, other["ProjectId"], hidden["ProjectId"]} <= ids
    # environments: index order by default, none deployed yet
    j = envs(sw, dev, pid)
    v1 = assert_ok(sw.get(f"/api/1/apps/{app_id}/environments", dev))
    assert [e["name"] for e in j["environments"]] == ["Test", "Acceptance", "Production"]
    assert j["pagination"] == {"offset": 0, "limit": 100, "size": 3}
    for e, old in zip(j["environments"], v1):
        assert e == {"id": old["EnvironmentId"], "appId": pid, "name": old["Mode"],
                     "state": "notdeployed", "isProduction": old["Production"],
                     "url": old["Url"], "dbVersion": "", "planName": "self-hosted"}
    names = lambda q: [e["name"] for e in envs(sw, dev, pid, q)["environments"]]  # noqa: E731
    assert names("?sort=-index") == ["Production", "Acceptance", "Test"]
    assert names("?sort=name") == ["Acceptance", "Production", "Test"]
    assert names("?sort=%2Bname") == ["Acceptance", "Production", "Test"]
    assert names("?sort=-name") == ["Test", "Production", "Acceptance"]
    assert names("?sort=name&offset=1&limit=1") == ["Production"]
    assert envs(sw, dev, pid, "?offset=5")["environments"] == []
    v4_error(v4(sw, "GET", f"/apps/{pid}/environments?sort=size", dev), 400, "sort")
    v4_error(v4(sw, "GET", f"/apps/{pid}/environments?expand=members", dev), 400, "expand")
    test = j["environments"][0]
    assert assert_ok(v4(sw, "GET", f"/apps/{pid}/environments/{test['id']}", dev)) == test
    # not found: an unknown app, another app's environment, a Mode instead of an id
    v4_error(v4(sw, "GET", "/apps/00000000-0000-0000-0000-000000000000", dev), 404)
    v4_error(v4(sw, "GET", f"/apps/{app_id}", dev), 404)
    foreign = envs(sw, dev, other["ProjectId"])["environments"][0]["id"]
    v4_error(v4(sw, "GET", f"/apps/{pid}/environments/{foreign}", dev), 404)
    v4_error(v4(sw, "GET", f"/apps/{pid}/environments/Test", dev), 404)


def test_refusals_have_the_v4_body(sw):
    dev, app_id, _ = new_deployer(sw, "v4auth")
    pid = assert_ok(sw.get(f"/api/1/apps/{app_id}", dev))["ProjectId"]
    test, _, prod = envs(sw, dev, pid)["environments"]
    # no credentials, or an API key (v4 takes tokens only), or a bad token
    err = v4_error(v4(sw, "GET", "/apps", None), 401, "Authentication")
    assert "MxToken" in err["message"]
    v4_error(requests.get(sw.base + "/api/v4/apps", headers=dev.key_headers(), timeout=30), 401,
             "Authentication")
    v4_error(v4(sw, "GET", "/apps", dev, token="slw_nope"), 401, "Authentication")
    # a token without a deployment scope
    repo_token = sw.new_token(dev.email, REPO_SCOPE)
    assert "mx:deployment:read" in v4_error(v4(sw, "GET", "/apps", dev, repo_token), 403)[
        "message"]
    # a non-member; a member without API Rights on Production
    stranger = sw.new_user("v4stranger")
    v4_error(v4(sw, "GET", f"/apps/{pid}", stranger), 403)
    v4_error(v4(sw, "GET", f"/apps/{pid}/environments/{test['id']}", stranger), 403)
    err = v4_error(v4(sw, "GET", f"/apps/{pid}/environments/{prod['id']}", dev), 403)
    assert "API Rights" in err["message"]
    # a read-only token cannot change permissions
    read_token = sw.new_token(dev.email, "mx:deployment:read")
    v4_error(v4(sw, "PATCH", f"/apps/{pid}/environments/{test['id']}/permissions", dev,
                read_token, json={"permissions": []}), 403)


def test_expand_package_and_states_of_a_deployed_app(sw):
    dev, app_id, repo = new_deployer(sw, "v4deploy")
    pkg_id = build(sw, dev, app_id, repo, example_files(), version="2.1.0")
    pid = assert_ok(sw.get(f"/api/1/apps/{app_id}", dev))["ProjectId"]
    v1 = deploy(sw, dev, app_id, "Test", pid=pkg_id)
    test = v1["EnvironmentId"]
    path = f"/apps/{pid}/environments/{test}"
    env = assert_ok(v4(sw, "GET", path, dev))
    assert env["state"] == "running" and "package" not in env and env["url"] == v1["Url"]
    env = assert_ok(v4(sw, "GET", path + "?expand=package", dev))
    p = env["package"]
    built = assert_ok(sw.get(f"/api/1/apps/{app_id}/packages/{pkg_id}", dev))
    assert p == {"id": pkg_id, "appId": pid, "modelVersion": built["Version"],
                 "runtimeVersion": "c17", "createdOn": p["createdOn"], "expiresOn": None,
                 "description": built["Description"], "fileName": built["Name"],
                 "fileSize": built["Size"]}
    assert ISO.match(p["createdOn"]) and p["modelVersion"].startswith("2.1.0.")
    assert p["fileSize"] > 0
    # the list expands too; environments without a package have none
    listed = envs(sw, dev, pid, "?expand=package")["environments"]
    assert listed[0] == env and all("package" not in e for e in listed[1:])
    assert [e["state"] for e in listed] == ["running", "notdeployed", "notdeployed"]
    # Stopped is "stopped"; the package stays
    assert_ok(sw.post(env_path(app_id, "Test", "/stop"), dev))
    env = assert_ok(v4(sw, "GET", path + "?expand=package", dev))
    assert env["state"] == "stopped" and env["package"]["id"] == pkg_id


def perms_of(sw, user, pid, env_id, query=""):
    return assert_ok(v4(sw, "GET", f"/apps/{pid}/environments/{env_id}/permissions{query}",
                        user))


def test_permissions_round_trip(sw):
    dev, app_id, _ = new_deployer(sw, "v4perm")  # API Rights + Transport Rights on Test
    mate = sw.new_user("v4mate")
    sw.add_member(app_id, mate, "viewer")
    pid = assert_ok(sw.get(f"/api/1/apps/{app_id}", dev))["ProjectId"]
    test, acc, prod = envs(sw, dev, pid)["environments"]
    path = f"/apps/{pid}/environments/{test['id']}/permissions"
    j = perms_of(sw, dev, pid, test["id"])
    assert j["technicalContact"] == {"userId": None, "name": None, "status": None}
    assert j["pagination"] == {"offset": 0, "limit": 100, "size": 2}
    got = {p["member"]["userId"]: p for p in j["permissions"]}
    assert set(got) == {dev.email, mate.email}
    assert got[dev.email] == {"member": {"userId": dev.email}, "canDeployApp": "true",
                              "canManageBackups": "false", "canViewAlerts": "false",
                              "canAccessAPI": "true", "canViewLogs": "false",
                              "canManagePrivileges": "false"}
    assert {k: got[mate.email][k] for k in PERMS} == {
        **{k: "false" for k in PERMS}, "canAccessAPI": "true"}
    # one member, and pages
    one = perms_of(sw, dev, pid, test["id"], f"?userId={mate.email}")
    assert [p["member"]["userId"] for p in one["permissions"]] == [mate.email]
    assert one["pagination"]["size"] == 1
    second = perms_of(sw, dev, pid, test["id"], "?offset=1&limit=1")
    assert second["permissions"] == [j["permissions"][1]]
    # without Manage Permissions: 403, nothing changed
    change = {"permissions": [{"member": {"userId": mate.email}, "canDeployApp": True,
                               "canViewLogs": True, "canAccessAPI": False}]}
    err = v4_error(v4(sw, "PATCH", path, dev, json=change), 403)
    assert "Manage Permissions" in err["message"]
    assert perms_of(sw, dev, pid, test["id"]) == j
    # with it (on Test only): the named rights change, the others stay
    sw.rights(app_id, dev, "Test", "permissions")
    after = assert_ok(v4(sw, "PATCH", path, dev, json=change))
    mine = {p["member"]["userId"]: p for p in after["permissions"]}[mate.email]
    assert {k: mine[k] for k in PERMS} == {
        **{k: "false" for k in PERMS}, "canDeployApp": "true", "canViewLogs": "true"}
    assert perms_of(sw, dev, pid, test["id"])["permissions"] == after["permissions"]
    # the mate now transports, but has no API Rights on Test any more: the v1 API refuses him
    assert sw.get(env_path(app_id, "Test"), mate).status_code == 403
    members = assert_ok(sw.get(f"/api/slipway/apps/{app_id}/members", sw.admin))
    rights = {m["email"]: m["rights"] for m in members}[mate.email]
    assert sorted(rights["Test"]) == ["Access to Monitoring", "Transport Rights"]
    # other environments are untouched, and need Manage Permissions of their own
    assert {p["member"]["userId"]: p for p in perms_of(sw, dev, pid, acc["id"])[
        "permissions"]}[mate.email]["canAccessAPI"] == "true"
    v4_error(v4(sw, "PATCH", f"/apps/{pid}/environments/{acc['id']}/permissions", dev,
                json=change), 403)
    # bad entries: a non-member, a non-boolean; nothing is written when one is bad
    stranger = sw.new_user("v4perm-stranger")
    bad = {"permissions": [{"member": {"userId": mate.email}, "canManageBackups": True},
                           {"member": {"userId": stranger.email}, "canDeployApp": True}]}
    err = v4_error(v4(sw, "PATCH", path, dev, json=bad), 400, "permissions[1].member.userId")
    assert stranger.email in err["invalid-params"][0]["reason"]
    v4_error(v4(sw, "PATCH", path, dev, json={"permissions": [
        {"member": {"userId": mate.email}, "canDeployApp": "yes"}]}), 400,
        "permissions[0].canDeployApp")
    v4_error(v4(sw, "PATCH", path, dev, json={"permissions": []}), 400, "permissions")
    v4_error(v4(sw, "PATCH", path, dev, json={"permissions": [{"canDeployApp": True}]}), 400,
             "permissions[0].member.userId")
    assert perms_of(sw, dev, pid, test["id"])["permissions"] == after["permissions"]
    # audited: who changed what, and the refusals
    entries, intact = sw.audit()
    mine = [e for e in entries if e["action"] == "env permissions" and e["app"] == app_id]
    ok = [e for e in mine if e["result"].startswith("ok")]
    assert len(ok) == 1 and ok[0]["actor"] == dev.email and ok[0]["env"] == "Test"
    assert ok[0]["detail"] == f"{mate.email} +canDeployApp -canAccessAPI +canViewLogs"
    assert any(e["result"] == "error 403" for e in mine)
    assert any(e["result"] == "error 400" for e in mine)
    assert intact
