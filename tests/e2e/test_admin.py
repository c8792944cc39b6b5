"""Administration: the `slipway admin` CLI while the server runs (effects visible at once over
HTTP), and the same operations over HTTP under /api/slipway/ for admins."""

import re
import subprocess

import pytest

from conftest import (BIN, REPO_SCOPE, User, assert_error, assert_ok, quote, unique,
                      unique_email)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --- the CLI --------------------------------------------------------------------------------


def cli_user(sw, prefix="cli", admin=False, scopes=REPO_SCOPE):
    email = unique_email(prefix)
    args = ["user", "add", "--email", email, "--name", f"CLI {prefix}"]
    args += ["--admin"] if admin else []
    assert sw.cli_out(*args).strip() == email
    key = sw.cli_out("apikey", "add", "--email", email).strip()
    token = sw.cli_out("token", "add", "--email", email, "--scopes", scopes).strip()
    sw.secrets += [key, token]
    return User(email, key, token, admin)


def test_cli_user_add_and_list_visible_over_http(sw):
    u = cli_user(sw, "plain")
    a = cli_user(sw, "boss", admin=True)
    out = sw.cli_out("user", "list")
    rows = {ln.split("\t")[0]: ln.split("\t") for ln in out.splitlines()}
    assert rows[u.email][2] == "-" and rows[a.email][2] == "admin"
    # at once over HTTP
    me = assert_ok(sw.get("/api/slipway/me", u))
    assert me["email"] == u.email and me["admin"] is False and me["active"] is True
    assert assert_ok(sw.get("/api/slipway/me", a))["admin"] is True
    assert assert_ok(sw.get("/api/slipway/me", u, via="token"))["email"] == u.email
    users = {x["email"]: x for x in assert_ok(sw.get("/api/slipway/users", sw.admin))}
    assert users[u.email]["admin"] is False and users[a.email]["admin"] is True


def test_cli_apikey_and_token_look_right(sw):
    u = cli_user(sw, "shapes")
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", u.key), u.key
    assert u.token.startswith("slw_") and re.fullmatch(r"slw_[A-Za-z0-9_-]{32,}", u.token)
    assert u.key != u.token[4:]


def test_cli_app_add_and_list(sw):
    app_id = unique("cliapp")
    pid = sw.cli_out("app", "add", "--id", app_id, "--name", "CLI App").strip()
    assert UUID_RE.match(pid), pid
    out = sw.cli_out("app", "list")
    assert f"{app_id}\t{pid}\tCLI App" in out.splitlines()
    # at once over HTTP, for an admin
    got = assert_ok(sw.get(f"/api/1/apps/{app_id}", sw.admin))
    assert got == {"AppId": app_id, "Name": "CLI App", "ProjectId": pid, "Url": got["Url"]}
    assert app_id in [x["AppId"] for x in assert_ok(sw.get("/api/slipway/apps", sw.admin))]


def test_cli_member_add_grant_revoke(sw):
    dev = cli_user(sw, "member")
    app_id = unique("members")
    sw.cli_out("app", "add", "--id", app_id, "--name", "Members")
    assert_error(sw.get(f"/api/1/apps/{app_id}", dev), 403, "NO_ACCESS")
    assert app_id not in [a["AppId"] for a in assert_ok(sw.get("/api/1/apps", dev))]

    out = sw.cli_out("member", "add", "--app", app_id, "--email", dev.email, "--role", "developer")
    assert out.strip() == f"{dev.email}\tdeveloper"
    assert f"{dev.email}\tdeveloper" in sw.cli_out("member", "list", "--app", app_id)
    assert assert_ok(sw.get(f"/api/1/apps/{app_id}", dev))["AppId"] == app_id
    assert app_id in [a["AppId"] for a in assert_ok(sw.get("/api/1/apps", dev))]

    members = assert_ok(sw.get(f"/api/slipway/apps/{app_id}/members", sw.admin))
    m = next(x for x in members if x["email"] == dev.email)
    assert m["role"] == "developer"
    assert "API Rights" in m["rights"]["Test"] and "API Rights" in m["rights"]["Acceptance"]
    assert "API Rights" not in m["rights"]["Production"]

    for env in ("Test", "Acceptance"):
        assert sw.cli_out("revoke", "--app", app_id, "--email", dev.email, "--env", env,
                          "--rights", "api").strip() == "revoked"
    assert_error(sw.get(f"/api/1/apps/{app_id}", dev), 403, "NO_ACCESS")
    assert sw.cli_out("grant", "--app", app_id, "--email", dev.email, "--env", "Production",
                      "--rights", "api,transport").strip() == "granted"
    assert_ok(sw.get(f"/api/1/apps/{app_id}", dev))
    members = assert_ok(sw.get(f"/api/slipway/apps/{app_id}/members", sw.admin))
    m = next(x for x in members if x["email"] == dev.email)
    assert set(m["rights"]["Production"]) >= {"API Rights", "Transport Rights"}
    assert "API Rights" not in m["rights"]["Test"]


def test_cli_apikey_revoke_by_id(sw):
    u = cli_user(sw, "revkey")
    other = sw.cli_out("apikey", "add", "--email", u.email).strip()
    sw.secrets.append(other)
    assert_ok(sw.get("/api/slipway/me", u))
    assert sw.cli_out("apikey", "revoke", "--email", u.email, "--id", u.key[:12]).strip() == "revoked"
    assert_error(sw.get("/api/slipway/me", u), 401, "UNAUTHORIZED")
    # only that key: the user's other key and token still work
    assert_ok(sw.get("/api/slipway/me", User(u.email, other)))
    assert_ok(sw.get("/api/slipway/me", u, via="token"))
    # revoking it again fails
    p = sw.cli("apikey", "revoke", "--email", u.email, "--id", u.key[:12], check=False)
    assert p.returncode != 0 and p.stderr.strip()


def test_cli_token_revoke_by_id(sw):
    u = cli_user(sw, "revtok")
    assert_ok(sw.get("/api/slipway/me", u, via="token"))
    tid = u.token[4:16]
    assert sw.cli_out("token", "revoke", "--email", u.email, "--id", tid).strip() == "revoked"
    assert_error(sw.get("/api/slipway/me", u, via="token"), 401)
    assert_ok(sw.get("/api/slipway/me", u))  # the API key is untouched


def test_cli_cannot_revoke_another_users_key(sw):
    a = cli_user(sw, "owner")
    b = cli_user(sw, "intruder")
    p = sw.cli("apikey", "revoke", "--email", b.email, "--id", a.key[:12], check=False)
    assert p.returncode != 0
    assert_ok(sw.get("/api/slipway/me", a))


@pytest.mark.parametrize("bad_id, why", [
    ("BadApp", "uppercase"), ("x", "one character"), ("a" * 41, "41 characters"),
    ("-lead", "leading dash"), ("bad_id", "underscore"),
])
def test_cli_app_add_invalid_appid(sw, bad_id, why):
    p = sw.cli("app", "add", "--id", bad_id, "--name", "Bad", check=False)
    assert p.returncode != 0, why
    assert "not a valid AppId" in p.stderr, p.stderr
    assert bad_id[:40] in p.stderr


def test_cli_app_add_40_chars_is_fine(sw):
    app_id = (unique("x") + "a" * 40)[:40]
    p = sw.cli("app", "add", "--id", app_id, "--name", "Forty", check=False)
    assert p.returncode == 0, p.stderr


def test_cli_duplicate_app(sw):
    app_id = unique("dup")
    sw.cli_out("app", "add", "--id", app_id, "--name", "One")
    p = sw.cli("app", "add", "--id", app_id, "--name", "Two", check=False)
    assert p.returncode != 0
    assert "exists" in p.stderr and app_id in p.stderr
    assert assert_ok(sw.get(f"/api/1/apps/{app_id}", sw.admin))["Name"] == "One"


def test_cli_duplicate_user(sw):
    email = unique_email("dupuser")
    sw.cli_out("user", "add", "--email", email, "--name", "One")
    p = sw.cli("user", "add", "--email", email, "--name", "Two", check=False)
    assert p.returncode != 0 and "exists" in p.stderr


@pytest.mark.parametrize("args", [
    ["apikey", "add", "--email", "{ghost}"],
    ["token", "add", "--email", "{ghost}", "--scopes", REPO_SCOPE],
    ["member", "add", "--app", "{app}", "--email", "{ghost}", "--role", "developer"],
    ["grant", "--app", "{app}", "--email", "{ghost}", "--env", "Test", "--rights", "api"],
], ids=["apikey", "token", "member", "grant"])
def test_cli_unknown_user(sw, args):
    app_id = unique("ghosts")
    sw.cli_out("app", "add", "--id", app_id, "--name", "Ghosts")
    ghost = unique_email("ghost")
    p = sw.cli(*[a.format(ghost=ghost, app=app_id) for a in args], check=False)
    assert p.returncode != 0
    assert ghost in p.stderr and "no user" in p.stderr, p.stderr


def test_cli_unknown_app_env_right_role(sw):
    u = cli_user(sw, "bad-input")
    app_id = unique("badin")
    sw.cli_out("app", "add", "--id", app_id, "--name", "Bad input")
    sw.cli_out("member", "add", "--app", app_id, "--email", u.email, "--role", "developer")
    cases = [
        (["member", "add", "--app", unique("noapp"), "--email", u.email, "--role", "viewer"],
         "no app"),
        (["grant", "--app", app_id, "--email", u.email, "--env", "Staging", "--rights", "api"],
         "Staging"),
        (["grant", "--app", app_id, "--email", u.email, "--env", "Test", "--rights", "api,fly"],
         "unknown right 'fly"),
        (["revoke", "--app", app_id, "--email", u.email, "--env", "Test", "--rights", "teleport"],
         "unknown right 'teleport"),
        (["member", "add", "--app", app_id, "--email", u.email, "--role", "overlord"],
         "role must be"),
        (["user", "add", "--email", "not-an-email", "--name", "X"], "not a valid email"),
        (["token", "add", "--email", u.email, "--scopes", "BAD SCOPE"], "scopes"),
    ]
    for args, message in cases:
        p = sw.cli(*args, check=False)
        assert p.returncode != 0, args
        assert message in p.stderr, (args, p.stderr)
    # nothing changed: still a developer with API Rights on Test
    assert_ok(sw.get(f"/api/1/apps/{app_id}", u))


@pytest.mark.parametrize("args", [
    ["user", "add", "--email", "x@example.com"],  # no --name
    ["app", "add", "--name", "No id"],
    ["token", "add", "--email", "x@example.com"],  # no --scopes
    ["user", "frobnicate"],
    ["user", "add", "--bogus"],
], ids=["no-name", "no-id", "no-scopes", "unknown-verb", "unknown-option"])
def test_cli_usage_errors_exit_2(sw, args):
    p = sw.cli(*args, check=False)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.strip()


def test_cli_exit_status_says_what_kind_of_failure(sw, tmp_path):
    """Scripts tell failures apart by the exit status (docs/admin.md, "Exit status"): 65 for a
    value that is not valid, 66 for what is not found, 73 for what exists already, 1 when the
    store fails, 2 for usage; the message names the error as the HTTP API does."""
    u = cli_user(sw, "exits")
    outsider = cli_user(sw, "outsider")
    app_id = unique("exits")
    sw.cli_out("app", "add", "--id", app_id, "--name", "Exits")
    sw.cli_out("member", "add", "--app", app_id, "--email", u.email, "--role", "developer")
    ghost = unique_email("ghost")
    cases = [
        (65, ["app", "add", "--id", "Bad_Id", "--name", "X"], "INVALID_APPID"),
        (65, ["user", "add", "--email", "not-an-email", "--name", "X"], "INVALID_PARAMETERS"),
        (65, ["member", "add", "--app", app_id, "--email", u.email, "--role", "overlord"],
         "INVALID_PARAMETERS"),
        (65, ["grant", "--app", app_id, "--email", u.email, "--env", "Test", "--rights", "fly"],
         "INVALID_PARAMETERS"),
        (65, ["token", "add", "--email", u.email, "--scopes", "BAD SCOPE"], "INVALID_PARAMETERS"),
        (66, ["apikey", "add", "--email", ghost], "USER_NOT_FOUND"),
        (66, ["member", "add", "--app", unique("noapp"), "--email", u.email, "--role", "viewer"],
         "APP_NOT_FOUND"),
        (66, ["grant", "--app", app_id, "--email", u.email, "--env", "Staging", "--rights", "api"],
         "ENVIRONMENT_NOT_FOUND"),
        (66, ["apikey", "revoke", "--email", u.email, "--id", "000000000000"], "NOT_FOUND"),
        (66, ["grant", "--app", app_id, "--email", outsider.email, "--env", "Test", "--rights",
              "api"], "NOT_A_MEMBER"),
        (66, ["member", "list", "--app", unique("noapp")], "no app"),
        (73, ["user", "add", "--email", u.email, "--name", "Again"], "USER_EXISTS"),
        (73, ["app", "add", "--id", app_id, "--name", "Again"], "APPLICATION_ALREADY_EXISTS"),
        (2, ["user", "add", "--email", ghost], "--name is required"),
        (0, ["grant", "--app", app_id, "--email", u.email, "--env", "Test", "--rights", "api"], ""),
    ]
    for code, args, message in cases:
        p = sw.cli(*args, check=False)
        assert (p.returncode, message in p.stderr) == (code, True), (args, p.returncode, p.stderr)
    p = sw.cli("user", "list", check=False, data=str(tmp_path / unique("missing")))
    assert p.returncode == 66 and "no data directory" in p.stderr, p.stderr
    broken = tmp_path / unique("broken")
    broken.mkdir()
    (broken / "slipway.db").write_bytes(b"not a database, " * 512)
    p = sw.cli("user", "list", check=False, data=str(broken))
    assert p.returncode == 1 and "cannot open the data directory" in p.stderr, p.stderr
    help_text = sw.cli_out("--help")
    for code in ("65", "66", "73"):
        assert re.search(rf"^  {code} ", help_text, re.M), help_text


# --- the same over HTTP ---------------------------------------------------------------------


def test_http_admin_users_keys_tokens(sw):
    email = unique_email("http")
    u = assert_ok(sw.post("/api/slipway/users", sw.admin,
                          json={"email": email, "name": "Over HTTP"}), 201)
    assert u["email"] == email and u["name"] == "Over HTTP" and u["admin"] is False
    assert isinstance(u["created"], int)
    assert_error(sw.post("/api/slipway/users", sw.admin, json={"email": email, "name": "Again"}),
                 409, "USER_EXISTS")
    assert_error(sw.post("/api/slipway/users", sw.admin, json={"name": "No email"}), 400)
    assert_error(sw.post("/api/slipway/users", sw.admin, json={"email": "bad", "name": "x"}), 400)

    k = assert_ok(sw.post(f"/api/slipway/users/{quote(email)}/apikeys", sw.admin), 201)
    sw.secrets.append(k["apikey"])
    assert k["id"] == k["apikey"][:12]
    t = assert_ok(sw.post(f"/api/slipway/users/{quote(email)}/tokens", sw.admin,
                          json={"scopes": REPO_SCOPE}), 201)
    sw.secrets.append(t["token"])
    assert t["token"].startswith("slw_") and t["id"] == t["token"][4:16]
    user = User(email, k["apikey"], t["token"])
    assert assert_ok(sw.get("/api/slipway/me", user))["email"] == email
    assert assert_ok(sw.get("/api/slipway/me", user, via="token"))["email"] == email

    ghost = unique_email("ghost")
    assert_error(sw.post(f"/api/slipway/users/{quote(ghost)}/apikeys", sw.admin), 404,
                 "USER_NOT_FOUND")

    # revoke both by id
    assert_ok(sw.delete(f"/api/slipway/users/{quote(email)}/apikeys/{k['id']}", sw.admin))
    assert_error(sw.get("/api/slipway/me", user), 401, "UNAUTHORIZED")
    assert_ok(sw.get("/api/slipway/me", user, via="token"))
    assert_ok(sw.delete(f"/api/slipway/users/{quote(email)}/tokens/{t['id']}", sw.admin))
    assert_error(sw.get("/api/slipway/me", user, via="token"), 401, "UNAUTHORIZED")
    # a second revoke of the same id is a 404
    assert_error(sw.delete(f"/api/slipway/users/{quote(email)}/apikeys/{k['id']}", sw.admin), 404)


def test_http_admin_user_with_admin_flag(sw):
    boss = sw.new_user("httpboss", admin=True)
    assert assert_ok(sw.get("/api/slipway/me", boss))["admin"] is True
    # a new admin can administer at once
    assert isinstance(assert_ok(sw.get("/api/slipway/users", boss)), list)
    app = sw.new_app("adminsees")
    assert assert_ok(sw.get(f"/api/1/apps/{app['AppId']}", boss))["AppId"] == app["AppId"]


def test_http_admin_apps_members_rights(sw):
    app_id = unique("httpapp")
    app = assert_ok(sw.post("/api/slipway/apps", sw.admin,
                            json={"AppId": app_id, "Name": "HTTP App"}), 201)
    assert app["AppId"] == app_id and app["Name"] == "HTTP App"
    assert UUID_RE.match(app["ProjectId"]) and app["DefaultBranch"] == "main"
    listed = {a["AppId"]: a for a in assert_ok(sw.get("/api/slipway/apps", sw.admin))}
    assert listed[app_id]["ProjectId"] == app["ProjectId"]
    # visible to the CLI at once
    assert f"{app_id}\t{app['ProjectId']}\tHTTP App" in sw.cli_out("app", "list").splitlines()

    assert_error(sw.post("/api/slipway/apps", sw.admin, json={"AppId": app_id, "Name": "Again"}),
                 400, "APPLICATION_ALREADY_EXISTS")
    for bad in ("Bad_Id", "x", "a" * 41, "UPPER"):
        assert_error(sw.post("/api/slipway/apps", sw.admin, json={"AppId": bad, "Name": "B"}),
                     400, "INVALID_APPID")
    assert_error(sw.post("/api/slipway/apps", sw.admin, json={"AppId": unique("noname")}), 400)

    dev = sw.new_user("httpmember")
    viewer = sw.new_user("httpviewer")
    r = assert_ok(sw.post(f"/api/slipway/apps/{app_id}/members", sw.admin,
                          json={"email": dev.email, "role": "developer"}))
    assert r == {"email": dev.email, "role": "developer"}
    assert_ok(sw.post(f"/api/slipway/apps/{app_id}/members", sw.admin,
                      json={"email": viewer.email, "role": "viewer"}))
    members = {m["email"]: m for m in assert_ok(sw.get(f"/api/slipway/apps/{app_id}/members",
                                                       sw.admin))}
    assert members[dev.email]["role"] == "developer" and members[viewer.email]["role"] == "viewer"
    assert set(members[dev.email]["rights"]) == {"Test", "Acceptance", "Production"}
    # visible to the CLI at once
    cli_members = sw.cli_out("member", "list", "--app", app_id)
    assert f"{dev.email}\tdeveloper" in cli_members and f"{viewer.email}\tviewer" in cli_members
    assert assert_ok(sw.get(f"/api/1/apps/{app_id}", dev))["AppId"] == app_id

    for env in ("Test", "Acceptance"):
        assert_ok(sw.post(f"/api/slipway/apps/{app_id}/revoke", sw.admin,
                          json={"email": dev.email, "env": env, "rights": "api"}))
    assert_error(sw.get(f"/api/1/apps/{app_id}", dev), 403, "NO_ACCESS")
    assert_ok(sw.post(f"/api/slipway/apps/{app_id}/grant", sw.admin,
                      json={"email": dev.email, "env": "Production", "rights": "api"}))
    assert_ok(sw.get(f"/api/1/apps/{app_id}", dev))

    # errors
    ghost = unique_email("ghost")
    assert_error(sw.post(f"/api/slipway/apps/{app_id}/members", sw.admin,
                         json={"email": ghost, "role": "viewer"}), 404, "USER_NOT_FOUND")
    assert_error(sw.post(f"/api/slipway/apps/{app_id}/members", sw.admin,
                         json={"email": dev.email, "role": "king"}), 400)
    assert_error(sw.post(f"/api/slipway/apps/{unique('none')}/members", sw.admin,
                         json={"email": dev.email, "role": "viewer"}), 404, "APP_NOT_FOUND")
    assert_error(sw.post(f"/api/slipway/apps/{app_id}/grant", sw.admin,
                         json={"email": dev.email, "env": "Staging", "rights": "api"}), 404,
                 "ENVIRONMENT_NOT_FOUND")
    assert_error(sw.post(f"/api/slipway/apps/{app_id}/grant", sw.admin,
                         json={"email": dev.email, "env": "Test", "rights": "fly"}), 400)
    outsider = sw.new_user("outsider")
    assert_error(sw.post(f"/api/slipway/apps/{app_id}/grant", sw.admin,
                         json={"email": outsider.email, "env": "Test", "rights": "api"}), 400,
                 "NOT_A_MEMBER")
    assert_error(sw.get(f"/api/slipway/apps/{unique('none')}/members", sw.admin), 404,
                 "APP_NOT_FOUND")
    assert_error(sw.get("/api/slipway/apps/Bad_Id/members", sw.admin), 400, "INVALID_APPID")


ADMIN_ENDPOINTS = [
    ("GET", "/api/slipway/users"), ("POST", "/api/slipway/users"),
    ("POST", "/api/slipway/users/{email}/apikeys"), ("POST", "/api/slipway/users/{email}/tokens"),
    ("DELETE", "/api/slipway/users/{email}/apikeys/abcdefabcdef"),
    ("DELETE", "/api/slipway/users/{email}/tokens/abcdefabcdef"),
    ("GET", "/api/slipway/apps"), ("POST", "/api/slipway/apps"),
    ("GET", "/api/slipway/apps/{app}/members"), ("POST", "/api/slipway/apps/{app}/members"),
    ("POST", "/api/slipway/apps/{app}/grant"), ("POST", "/api/slipway/apps/{app}/revoke"),
    ("GET", "/api/slipway/audit"),
]


def test_http_admin_needs_an_admin(sw):
    dev = sw.new_user("notadmin")
    app = sw.new_app("guarded", [(dev, "admin")])  # even an app admin is not a Slipway admin
    body = {"email": unique_email("never"), "name": "Never", "AppId": unique("never"),
            "role": "viewer", "env": "Test", "rights": "api"}
    for method, path in ADMIN_ENDPOINTS:
        p = path.format(email=quote(dev.email), app=app["AppId"])
        assert_error(sw.request(method, p, dev, json=body), 403, "NO_ACCESS")
        assert_error(sw.request(method, p, dev, via="token", json=body), 403, "NO_ACCESS")
        assert_error(sw.request(method, p, None, json=body), 401, "UNAUTHORIZED")
    # nothing was created
    assert body["email"] not in [u["email"] for u in assert_ok(sw.get("/api/slipway/users",
                                                                       sw.admin))]
    assert_error(sw.get(f"/api/1/apps/{body['AppId']}", sw.admin), 404, "APP_NOT_FOUND")


def test_environment_names_in_any_case(sw):
    dev, app = sw.new_dev_app("envcase")
    a = app["AppId"]
    for env in ("tEsT", "ACCEPTANCE"):
        assert sw.cli_out("revoke", "--app", a, "--email", dev.email, "--env", env,
                          "--rights", "api").strip() == "revoked"
    assert_error(sw.get(f"/api/1/apps/{a}", dev), 403, "NO_ACCESS")
    r = sw.post(f"/api/slipway/apps/{a}/grant", sw.admin,
                json={"email": dev.email, "env": "production", "rights": "api"})
    assert assert_ok(r) == {}
    assert_ok(sw.get(f"/api/1/apps/{a}", dev))
    m = next(x for x in assert_ok(sw.get(f"/api/slipway/apps/{a}/members", sw.admin))
             if x["email"] == dev.email)
    assert m["rights"] == {"Test": [], "Acceptance": [], "Production": ["API Rights"]}


def test_member_add_again_changes_only_the_role(sw):
    dev, app = sw.new_dev_app("rerole")
    a = app["AppId"]
    sw.rights(a, dev, "Test", "api", revoke=True)
    sw.rights(a, dev, "Production", "transport")
    sw.add_member(a, dev, "viewer")
    m = next(x for x in assert_ok(sw.get(f"/api/slipway/apps/{a}/members", sw.admin))
             if x["email"] == dev.email)
    assert m["role"] == "viewer"
    assert m["rights"] == {"Test": [], "Acceptance": ["API Rights"],
                           "Production": ["Transport Rights"]}
    assert f"{dev.email}\tviewer" in sw.cli_out("member", "list", "--app", a)


def test_cli_says_what_is_missing(sw):
    """A new user's slips: the command without --data, a noun without its sub-command, and help
    asked for after the noun."""
    p = subprocess.run([BIN, "admin", "app", "list"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--data DIR is required" in p.stderr, p.stderr
    assert "usage:" not in p.stderr, p.stderr
    p = sw.cli("app", check=False)
    assert p.returncode == 2 and "'app' needs a sub-command: add, list" in p.stderr, p.stderr
    p = sw.cli("user", "frobnicate", check=False)
    assert p.returncode == 2 and "'user' has no sub-command 'frobnicate'" in p.stderr, p.stderr
    for args in (["admin", "app", "--help"], ["admin", "--data", sw.data, "app", "--help"]):
        p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout.startswith("usage: slipway admin"), (args, p)
