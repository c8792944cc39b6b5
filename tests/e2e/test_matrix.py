"""Authorization matrices, generated from the server's own route table (`slipway routes`).

Every row of the table (method, pattern and, for git, the query that tells rows apart) must have
a recipe here, a request that the row's handler accepts; a new endpoint without one fails
test_every_route_has_a_recipe. Each recipe is then sent
  - by every identity: anonymous, a non-member, a viewer, a developer, an app admin (member with
    the admin role) and a Slipway administrator, with the route's usual credentials;
  - with tokens of every scope the table names (one at a time), none, and an unrelated one, by a
    Slipway administrator (whom roles never stop), so that only the scope decides;
and the answer must be exactly what the row's access says: 401 without acceptable credentials,
403 NO_ACCESS for a missing scope, role or right, else the recipe's own status. The expectation
is computed here from the table's fields, independently of the server's code. The table itself
is checked against docs/api.md and against the rule that every change needs the developer role
(or an administrator) and a write scope.
"""

import json
import os
import re
import subprocess

import pytest
import requests

from builds import TRIVIAL, commit, head_number, start, wait_done
from conftest import BIN, assert_error, assert_ok, quote, unique, unique_email, wait_for
from test_upload import make_package

ROUTES = json.loads(subprocess.run([BIN, "routes"], capture_output=True, check=True,
                                   text=True).stdout)
ROLES = ["", "viewer", "developer", "admin"]
ANON, OUTSIDER, VIEWER, DEVELOPER, APPADMIN, ADMIN = (
    "anonymous", "non-member", "viewer", "developer", "app-admin", "admin")
WHO = [ANON, OUTSIDER, VIEWER, DEVELOPER, APPADMIN, ADMIN]
ROLE_OF = {OUTSIDER: "", VIEWER: "viewer", DEVELOPER: "developer", APPADMIN: "admin"}
UNRELATED = "mx:webhook:read"


RIGHT_NAMES = {"api": "API Rights", "transport": "Transport Rights",
               "backups": "Access to Backups", "monitoring": "Access to Monitoring",
               "alerts": "Receive Alerts", "permissions": "Manage Permissions"}


def key(r):
    return f"{r['method']} {r['pattern']}" + (f"?{r['query']}" if r["query"] else "")


ALL_SCOPES = sorted({s for r in ROUTES for s in r["scopes"]})
SCOPE_CASES = ["", UNRELATED] + ALL_SCOPES


# --- the world the recipes act on -----------------------------------------------------------------

@pytest.fixture(scope="module")
def ctx(sw):
    users = {who: sw.new_user(f"mx-{who}", token=False) for who in (OUTSIDER, VIEWER, DEVELOPER,
                                                                     APPADMIN)}
    users[ADMIN] = sw.new_user("mx-admin", admin=True, token=False)
    app = sw.new_app("matrix", [(users[r], ROLE_OF[r]) for r in (VIEWER, DEVELOPER, APPADMIN)])
    a = app["AppId"]
    dev = users[DEVELOPER]
    repo = sw.clone(a, dev)
    commit(repo, {"slipway.yml": TRIVIAL})
    n = head_number(sw, dev, a)
    pid = start(sw, dev, a, n)
    assert wait_done(sw, dev, a, pid)["Status"] == "Succeeded"
    r = sw.post(f"/api/v2/apps/{a}/packages/upload", sw.admin,
                files={"file": ("p.mda", make_package(), "application/octet-stream")})
    job = assert_ok(r, 200)["JobId"]
    # Test holds the build's package (which has no run:, so a start's job fails at once: the
    # recipes are about who may, not about running anything), and a start job that has failed
    test = f"/api/1/apps/{a}/environments/Test"
    assert_ok(sw.post(f"{test}/transport", sw.admin, json={"PackageId": pid}))
    start_job = assert_ok(sw.post(f"{test}/start", sw.admin))["JobId"]
    assert_ok(sw.post(f"{test}/stop", sw.admin))  # answers once no start job is active
    assert sw.get(f"{test}/start/{start_job}", sw.admin).status_code == 500
    # logs of a day, as the launcher and the router write them
    for part, name in (("logs", "app"), ("access", "access")):
        d = os.path.join(sw.data, "envs", a, "Test", part)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{name}-{LOG_DAY}.log"), "w") as f:
            f.write("a line\n")
    env_id = assert_ok(sw.get(test, sw.admin))["EnvironmentId"]
    return {"sw": sw, "app": a, "pid": app["ProjectId"], "package": pid, "revision": n,
            "job": job, "start_job": start_job, "env_id": env_id, "users": users, "tokens": {},
            "versions": iter(range(1, 100000))}


LOG_DAY = "2024-01-01"


def stopped(c, path):
    """Test, stopped and without an active start job (stop answers once so), then `path`."""
    assert_ok(c["sw"].post(f"/api/1/apps/{c['app']}/environments/Test/stop", c["sw"].admin))
    return path


def token(ctx, who, scopes):
    """A token of `who` with exactly these scopes (made once)."""
    k = (who, scopes)
    if k not in ctx["tokens"]:
        ctx["tokens"][k] = ctx["sw"].new_token(ctx["users"][who].email, scopes)
    return ctx["tokens"][k]


def victim(ctx, member=False):
    u = ctx["sw"].new_user("mx-victim", token=False)
    if member:
        ctx["sw"].add_member(ctx["app"], u, "developer")
    return u


def fresh_package(ctx):
    r = ctx["sw"].post(f"/api/1/apps/{ctx['app']}/packages/upload", ctx["sw"].admin,
                       files={"file": ("p.mda", make_package(), "application/octet-stream")})
    return assert_ok(r, 200)["PackageId"] if "PackageId" in r.text else _last_package(ctx)


def _last_package(ctx):
    pkgs = assert_ok(ctx["sw"].get(f"/api/1/apps/{ctx['app']}/packages", ctx["sw"].admin))
    return max(pkgs, key=lambda p: p["CreationDate"])["PackageId"]


def upload_files():
    return {"file": ("p.mda", make_package(), "application/octet-stream")}


def backups(c):
    """Test holds the app's package (transported, never started) and the members have Access to
    Backups there; a completed snapshot and archive of it (made once)."""
    if "bk" not in c:
        sw, a, admin = c["sw"], c["app"], c["sw"].admin
        assert_ok(sw.post(f"/api/1/apps/{a}/environments/Test/transport", admin,
                          json={"PackageId": c["package"]}))
        for who in (VIEWER, DEVELOPER, APPADMIN):
            sw.rights(a, c["users"][who], "Test", "api,backups")
        envid = assert_ok(sw.get(f"/api/1/apps/{a}/environments/Test", admin))["EnvironmentId"]
        v2 = f"/api/v2/apps/{c['pid']}/environments/{envid}"
        c["bk"] = {"v2": v2}
        c["bk"]["snap"] = backup_snapshot(c)
        arch = assert_ok(sw.post(f"{v2}/snapshots/{c['bk']['snap']}/archives", admin), 201)
        c["bk"]["archive"] = arch["archive_id"]
        restore_idle(c)
        r = assert_ok(sw.post(f"{v2}/restores?source_snapshot_id={c['bk']['snap']}", admin), 201)
        c["bk"]["restore"] = r["restore_id"]
    return c["bk"]


def backup_snapshot(c):
    """A new completed snapshot of Test."""
    sw, v2 = c["sw"], c["bk"]["v2"]
    sid = assert_ok(sw.post(f"{v2}/snapshots", sw.admin, json={}), 201)["snapshot_id"]
    wait_for(lambda: assert_ok(sw.get(f"{v2}/snapshots/{sid}", sw.admin))["state"] == "completed",
             timeout=30, what="a snapshot")
    return sid


def restore_idle(c):
    """Waits until no restore into Test is queued or running: a v1 restore (which answers once
    it has ended) is refused while one is."""
    sw, a = c["sw"], c["app"]
    wait_for(lambda: sw.post(f"/api/1/apps/{a}/environments/Test/restore/{c['bk']['snap']}",
                             sw.admin).status_code == 200, timeout=30, what="no restore")


# --- one recipe per row: (path, extra request arguments, the status when allowed) ------------------

def recipes(c):
    a, p, pkg = c["app"], c["pid"], c["package"]
    env = f"/api/1/apps/{a}/environments/Test"
    v4env = f"/api/v4/apps/{p}/environments/{c.get('env_id')}"
    return {
        "GET /healthz": lambda: ("/healthz", {}, 200),
        "GET /api/slipway/me": lambda: ("/api/slipway/me", {}, 200),
        "GET /api/slipway/users": lambda: ("/api/slipway/users", {}, 200),
        "POST /api/slipway/users": lambda: (
            "/api/slipway/users", {"json": {"email": unique_email("mx"), "name": "M"}}, 201),
        "POST /api/slipway/users/:email/apikeys": lambda: (
            f"/api/slipway/users/{quote(victim(c).email)}/apikeys", {"json": {}}, 201),
        "DELETE /api/slipway/users/:email/apikeys/:id": lambda: (
            (lambda u: f"/api/slipway/users/{quote(u.email)}/apikeys/{u.key[:12]}")(victim(c)),
            {}, 200),
        "POST /api/slipway/users/:email/tokens": lambda: (
            f"/api/slipway/users/{quote(victim(c).email)}/tokens",
            {"json": {"scopes": "mx:deployment:read"}}, 201),
        "DELETE /api/slipway/users/:email/tokens/:id": lambda: (
            (lambda u: f"/api/slipway/users/{quote(u.email)}/tokens/"
                       f"{c['sw'].new_token(u.email)[4:16]}")(victim(c)), {}, 200),
        "GET /api/slipway/apps": lambda: ("/api/slipway/apps", {}, 200),
        "POST /api/slipway/apps": lambda: (
            "/api/slipway/apps", {"json": {"AppId": unique("mx"), "Name": "M"}}, 201),
        "GET /api/slipway/apps/:app/members": lambda: (f"/api/slipway/apps/{a}/members", {}, 200),
        "POST /api/slipway/apps/:app/members": lambda: (
            f"/api/slipway/apps/{a}/members",
            {"json": {"email": victim(c).email, "role": "viewer"}}, 200),
        "POST /api/slipway/apps/:app/grant": lambda: (
            f"/api/slipway/apps/{a}/grant",
            {"json": {"email": victim(c, True).email, "env": "Production", "rights": "api"}}, 200),
        "POST /api/slipway/apps/:app/environments": lambda: (
            f"/api/slipway/apps/{a}/environments",
            {"json": {"Mode": unique("flex")[:40], "Production": False}}, 201),
        "POST /api/slipway/apps/:app/revoke": lambda: (
            f"/api/slipway/apps/{a}/revoke",
            {"json": {"email": victim(c, True).email, "env": "Test", "rights": "api"}}, 200),
        "GET /api/slipway/audit": lambda: ("/api/slipway/audit?limit=1", {}, 200),
        "GET /metrics": lambda: ("/metrics", {}, 200),
        "GET /api/slipway/apps/:app/packages/:package": lambda: (
            f"/api/slipway/apps/{a}/packages/{pkg}", {}, 200),
        "GET /api/slipway/apps/:app/packages/:package/log": lambda: (
            f"/api/slipway/apps/{a}/packages/{pkg}/log", {}, 200),
        "GET /api/slipway/apps/:app/packages/:package/manifest": lambda: (
            f"/api/slipway/apps/{a}/packages/{pkg}/manifest", {}, 200),
        # the build has ended: allowed callers learn that, refused ones do not
        "POST /api/slipway/apps/:app/packages/:package/cancel": lambda: (
            f"/api/slipway/apps/{a}/packages/{pkg}/cancel", {}, 409),
        "GET /api/slipway/apps/:app/usage": lambda: (f"/api/slipway/apps/{a}/usage", {}, 200),
        "GET /api/1/apps": lambda: ("/api/1/apps", {}, 200),
        "GET /api/1/apps/:app": lambda: (f"/api/1/apps/{a}", {}, 200),
        "GET /api/1/apps/:app/branches": lambda: (f"/api/1/apps/{a}/branches", {}, 200),
        "GET /api/1/apps/:app/branches/*": lambda: (f"/api/1/apps/{a}/branches/main", {}, 200),
        "GET /api/1/apps/:app/packages": lambda: (f"/api/1/apps/{a}/packages", {}, 200),
        "POST /api/1/apps/:app/packages": lambda: (
            f"/api/1/apps/{a}/packages",
            {"json": {"Branch": "main", "Revision": str(c["revision"]),
                      "Version": f"7.{next(c['versions'])}.0"}}, 201),
        "POST /api/1/apps/:app/packages/upload": lambda: (
            f"/api/1/apps/{a}/packages/upload", {"files": upload_files()}, 200),
        "GET /api/1/apps/:app/packages/:package": lambda: (
            f"/api/1/apps/{a}/packages/{pkg}", {}, 200),
        "DELETE /api/1/apps/:app/packages/:package": lambda: (
            f"/api/1/apps/{a}/packages/{fresh_package(c)}", {}, 200),
        "GET /api/1/apps/:app/packages/:package/download": lambda: (
            f"/api/1/apps/{a}/packages/{pkg}/download", {}, 200),
        "POST /api/v2/apps/:app/packages/upload": lambda: (
            f"/api/v2/apps/{a}/packages/upload", {"files": upload_files()}, 200),
        "GET /api/v2/apps/:app/jobs/:job": lambda: (f"/api/v2/apps/{a}/jobs/{c['job']}", {}, 200),
        "GET /api/1/apps/:app/environments": lambda: (f"/api/1/apps/{a}/environments", {}, 200),
        "GET /api/1/apps/:app/environments/:env": lambda: (f"{env}", {}, 200),
        # after a stop no start job is active: an allowed start makes one (which fails soon)
        "POST /api/1/apps/:app/environments/:env/start": lambda: (
            stopped(c, f"{env}/start"), {"json": {}}, 200),
        # the fixture's start job failed: Mendix answers 500 with its code
        "GET /api/1/apps/:app/environments/:env/start/:job": lambda: (
            f"{env}/start/{c['start_job']}", {}, 500),
        "POST /api/1/apps/:app/environments/:env/stop": lambda: (f"{env}/stop", {}, 200),
        "POST /api/1/apps/:app/environments/:env/transport": lambda: (
            f"{env}/transport", {"json": {"PackageId": pkg}}, 200),
        # Acceptance never holds a package: an allowed caller learns that
        "POST /api/1/apps/:app/environments/:env/clean": lambda: (
            f"/api/1/apps/{a}/environments/Acceptance/clean", {}, 422),
        "GET /api/1/apps/:app/environments/:env/package": lambda: (f"{env}/package", {}, 200),
        "GET /api/1/apps/:app/environments/:env/settings": lambda: (f"{env}/settings", {}, 200),
        "POST /api/1/apps/:app/environments/:env/settings": lambda: (
            f"{env}/settings", {"json": {}}, 200),
        "POST /api/1/apps/:app/environments/:env/scale": lambda: (
            f"{env}/scale", {"json": {"Instances": 1}}, 200),
        "GET /api/1/apps/:app/environments/:env/tags": lambda: (f"{env}/tags", {}, 200),
        "POST /api/1/apps/:app/environments/:env/tags": lambda: (
            f"{env}/tags", {"json": {"Tag": "matrix"}}, 200),
        "DELETE /api/1/apps/:app/environments/:env/tags": lambda: (
            f"{env}/tags", {"json": {"Tag": "matrix"}}, 204),
        "GET /api/1/apps/:app/environments/:env/logs/:date": lambda: (
            f"{env}/logs/{LOG_DAY}", {}, 200),
        "GET /api/1/apps/:app/environments/:env/access-logs/:date": lambda: (
            f"{env}/access-logs/{LOG_DAY}", {}, 200),
        "GET /api/slipway/apps/:app/environments/:env/logs/:date/download": lambda: (
            f"/api/slipway/apps/{a}/environments/Test/logs/{LOG_DAY}/download", {}, 200),
        "GET /api/slipway/apps/:app/environments/:env/access-logs/:date/download": lambda: (
            f"/api/slipway/apps/{a}/environments/Test/access-logs/{LOG_DAY}/download", {}, 200),
        "GET /api/v4/apps": lambda: ("/api/v4/apps", {}, 200),
        "GET /api/v4/apps/:project": lambda: (f"/api/v4/apps/{p}", {}, 200),
        "GET /api/v4/apps/:project/environments": lambda: (
            f"/api/v4/apps/{p}/environments", {}, 200),
        "GET /api/v4/apps/:project/environments/:envid": lambda: (f"{v4env}", {}, 200),
        "GET /api/v4/apps/:project/environments/:envid/permissions": lambda: (
            f"{v4env}/permissions", {}, 200),
        # Receive Alerts for the viewer on Test: it changes no one's access
        "PATCH /api/v4/apps/:project/environments/:envid/permissions": lambda: (
            f"{v4env}/permissions",
            {"json": {"permissions": [{"member": {"userId": c["users"][VIEWER].email},
                                       "canViewAlerts": True}]}}, 200),
        "GET /api/1/apps/:app/environments/:env/snapshots": lambda: (
            (backups(c), f"/api/1/apps/{a}/environments/Test/snapshots")[1], {}, 200),
        "POST /api/1/apps/:app/environments/:env/snapshots": lambda: (
            (backups(c), f"/api/1/apps/{a}/environments/Test/snapshots")[1],
            {"json": {"Comment": "matrix"}}, 200),
        "GET /api/1/apps/:app/environments/:env/snapshots/:snapshot": lambda: (
            f"/api/1/apps/{a}/environments/Test/snapshots/{backups(c)['snap']}", {}, 200),
        "POST /api/1/apps/:app/environments/:env/restore/:snapshot": lambda: (
            (restore_idle(c) if backups(c) else None,
             f"/api/1/apps/{a}/environments/Test/restore/{c['bk']['snap']}")[1], {}, 200),
        "GET /api/v2/apps/:project/environments/:envid/snapshots": lambda: (
            f"{backups(c)['v2']}/snapshots?limit=5", {}, 200),
        "POST /api/v2/apps/:project/environments/:envid/snapshots": lambda: (
            f"{backups(c)['v2']}/snapshots", {"json": {"comment": "matrix"}}, 201),
        "GET /api/v2/apps/:project/environments/:envid/snapshots/:snapshot": lambda: (
            f"{backups(c)['v2']}/snapshots/{c['bk']['snap']}", {}, 200),
        "PUT /api/v2/apps/:project/environments/:envid/snapshots/:snapshot": lambda: (
            f"{backups(c)['v2']}/snapshots/{c['bk']['snap']}", {"json": {"comment": "m"}}, 200),
        "DELETE /api/v2/apps/:project/environments/:envid/snapshots/:snapshot": lambda: (
            f"{backups(c)['v2']}/snapshots/{backup_snapshot(c)}", {}, 204),
        "POST /api/v2/apps/:project/environments/:envid/snapshots/:snapshot/archives": lambda: (
            f"{backups(c)['v2']}/snapshots/{c['bk']['snap']}/archives", {}, 201),
        "GET /api/v2/apps/:project/environments/:envid/snapshots/:snapshot/archives/:archive":
            lambda: (f"{backups(c)['v2']}/snapshots/{c['bk']['snap']}/archives/"
                     f"{c['bk']['archive']}", {}, 200),
        "POST /api/v2/apps/:project/environments/:envid/restores": lambda: (
            (restore_idle(c) if backups(c) else None,
             f"{c['bk']['v2']}/restores?source_snapshot_id={c['bk']['snap']}")[1], {}, 201),
        "GET /api/v2/apps/:project/environments/:envid/restores/:restore": lambda: (
            f"{backups(c)['v2']}/restores/{c['bk']['restore']}", {}, 200),
        "GET /api/slipway/apps/:app/environments/:env/snapshots/:snapshot/:part": lambda: (
            f"/api/slipway/apps/{a}/environments/Test/snapshots/{backups(c)['snap']}/all", {},
            200),
        "GET /v1/repositories/:project/info": lambda: (f"/v1/repositories/{p}/info", {}, 200),
        "GET /v1/repositories/:project/branches": lambda: (
            f"/v1/repositories/{p}/branches", {}, 200),
        "GET /v1/repositories/:project/branches/:branch": lambda: (
            f"/v1/repositories/{p}/branches/main", {}, 200),
        "GET /v1/repositories/:project/branches/:branch/commits": lambda: (
            f"/v1/repositories/{p}/branches/main/commits", {}, 200),
        "GET /git/:repo/info/refs?service=git-upload-pack": lambda: (
            f"/git/{a}.git/info/refs?service=git-upload-pack", {}, 200),
        "GET /git/:repo/info/refs?service=git-receive-pack": lambda: (
            f"/git/{a}.git/info/refs?service=git-receive-pack", {}, 200),
        "GET /git/:repo/info/refs": lambda: (f"/git/{a}.git/info/refs", {}, 404),
        # a flush packet: the client has nothing to ask for, or no ref to update
        "POST /git/:repo/git-upload-pack": lambda: (
            f"/git/{a}.git/git-upload-pack",
            {"data": b"0000",
             "headers": {"Content-Type": "application/x-git-upload-pack-request"}}, 200),
        "POST /git/:repo/git-receive-pack": lambda: (
            f"/git/{a}.git/git-receive-pack",
            {"data": b"0000",
             "headers": {"Content-Type": "application/x-git-receive-pack-request"}}, 200),
        "GET /git/:repo/*": lambda: (f"/git/{a}.git/HEAD", {}, 404),
    }


RECIPE_KEYS = set(recipes({"app": "", "pid": "", "package": "", "env_id": ""}))


# --- what the table says -------------------------------------------------------------------------

def expected(route, who, cred, scopes, ok):
    """The status the row's access gives `who` presenting `cred` ("apikey", "token", "basic" with
    an API key, "basic-token"); scopes: the token's."""
    if not route["auth"]:
        return ok
    if who == ANON:
        return 401
    if cred.split("-")[0] not in route["auth"]:
        return 401
    if cred in ("token", "basic-token") and route["scopes"]:
        if not set(scopes.split(",")) & set(route["scopes"]):
            return 403
    if route["admin"] and who != ADMIN:
        return 403
    if route["target"] and who != ADMIN:
        role = ROLE_OF[who]
        if not role or ROLES.index(role) < ROLES.index(route["role"]):
            return 403
        # members have API Rights on Test and Acceptance by default, and Access to Backups on
        # Test as backups() grants it before any backups row is sent; no other right
        if set(route["rights"]) - {"api", "backups"}:
            return 403
    return ok


def send(ctx, route, who, cred, scopes=""):
    path, kw, ok = recipes(ctx)[key(route)]()
    kw = dict(kw)
    headers = dict(kw.pop("headers", {}))
    user = ctx["users"].get(who)
    if user is not None:
        if cred == "apikey":
            headers.update(user.key_headers())
        elif cred == "token":
            headers["Authorization"] = f"MxToken {token(ctx, who, scopes)}"
        elif cred == "basic":
            kw["auth"] = user.basic()
        else:
            kw["auth"] = user.basic(token(ctx, who, scopes))
    r = requests.request(route["method"], ctx["sw"].base + path, headers=headers, timeout=60,
                         **kw)
    return r, ok


def check(r, want, what):
    if want in (401, 403) and "/api/v4/" in r.request.url:  # v4's body
        assert r.status_code == want, f"{what}: {r.status_code} {r.text[:300]}"
        err = r.json()["error"]
        assert err["code"] == want and err["message"] and "invalid-params" in err, (what, err)
    elif want in (401, 403):
        body = assert_error(r, want)
        code = body.get("errorCode") or body.get("error", {}).get("code")
        assert code in ("UNAUTHORIZED", "NO_ACCESS", "RS401", "RS403", want), (what, body)
    else:
        assert r.status_code == want, f"{what}: {r.status_code} {r.text[:300]}"


def usual_cred(route):
    for cred in ("apikey", "basic", "token"):
        if cred in route["auth"]:
            return cred
    return "apikey"


# --- the tests -------------------------------------------------------------------------------------

def test_every_route_has_a_recipe():
    table = {key(r) for r in ROUTES}
    assert table - RECIPE_KEYS == set(), "routes without a recipe in test_matrix.py"
    assert RECIPE_KEYS - table == set(), "recipes of routes that no longer exist"


READS_BY_POST = {"POST /git/:repo/git-upload-pack"}  # a fetch: git's protocol POSTs it


def test_every_change_needs_a_developer_and_a_write_scope():
    for r in ROUTES:
        if r["method"] == "GET" or not r["auth"] or key(r) in READS_BY_POST:
            continue
        assert r["admin"] or ROLES.index(r["role"]) >= ROLES.index("developer"), key(r)
        assert r["scopes"] and all(s.endswith(":write") or s == "slipway:admin"
                                   for s in r["scopes"]), key(r)


def test_docs_list_every_route_with_its_access():
    """docs/api.md's access table has one line per row, with the same credentials, scopes, role
    and rights."""
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "api.md")).read()
    doc = doc.split("## Who may call what", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in doc.splitlines():
        m = re.match(r"\| `(GET|POST|PUT|PATCH|DELETE) ([^`]+)` \|(.*)\|\s*$", line)
        if m:
            rows[f"{m.group(1)} {m.group(2)}"] = [c.strip() for c in m.group(3).split("|")]
    assert set(rows) == {key(r) for r in ROUTES}
    for r in ROUTES:
        creds, scopes, who = rows[key(r)][:3]
        assert creds == (", ".join(r["auth"]) or "none"), key(r)
        assert scopes == (" or ".join(f"`{s}`" for s in r["scopes"]) or "-"), key(r)
        want = ("administrator" if r["admin"] else
                " + ".join([r["role"]] + [RIGHT_NAMES[x] for x in r["rights"]]) if r["role"]
                else "any user" if r["auth"] else "anyone")
        assert who == want, key(r)


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("route", ROUTES, ids=[key(r) for r in ROUTES])
def test_role_matrix(ctx, route, who):
    cred = usual_cred(route)
    scopes = ",".join(route["scopes"])
    r, ok = send(ctx, route, who, cred, scopes)
    check(r, expected(route, who, cred, scopes, ok), f"{who} {key(route)}")


TOKEN_ROUTES = [r for r in ROUTES if "token" in r["auth"] or "basic" in r["auth"]]


@pytest.mark.parametrize("scopes", SCOPE_CASES, ids=[s or "no-scope" for s in SCOPE_CASES])
@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=[key(r) for r in TOKEN_ROUTES])
def test_scope_matrix(ctx, route, scopes):
    cred = "token" if "token" in route["auth"] else "basic-token"
    r, ok = send(ctx, route, ADMIN, cred, scopes)
    check(r, expected(route, ADMIN, cred, scopes, ok), f"scopes '{scopes}' {key(route)}")


def test_api_keys_are_not_bound_by_scopes(ctx):
    """An API key stands for its user whole: a developer builds and pushes with one."""
    route = next(r for r in ROUTES if key(r) == "POST /api/1/apps/:app/packages")
    r, ok = send(ctx, route, DEVELOPER, "apikey")
    check(r, ok, "developer's API key builds")


def test_signed_download_needs_no_credentials_and_only_that_path(ctx):
    sw, a, pkg = ctx["sw"], ctx["app"], ctx["package"]
    url = assert_ok(sw.get(f"/api/1/apps/{a}/packages/{pkg}?url=true",
                           ctx["users"][VIEWER]))["Url"]["Location"]
    assert requests.get(url, timeout=30).status_code == 200
    # the signature is for that path: another endpoint or package does not take it
    query = url.split("?", 1)[1]
    other = f"{sw.base}/api/1/apps/{a}/packages?{query}"
    assert_error(requests.get(other, timeout=30), 401)
