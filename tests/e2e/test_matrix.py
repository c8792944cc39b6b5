"""Authorization matrix: every endpoint x {anonymous, member, non-member, admin}, exact statuses.

Team Server and Slipway endpoints use API-key headers; the App Repository API uses tokens with
the scope mx:modelrepository:repo:read for every identity; git uses HTTP basic (email + key).
Endpoints that change something get fresh targets for each cell from `prepare`.
"""

import pytest
import requests

from conftest import REPO_SCOPE, User, assert_error, quote, unique, unique_email

ANON, MEMBER, NONMEMBER, ADMIN = "anonymous", "member", "non-member", "admin"
WHO = [ANON, MEMBER, NONMEMBER, ADMIN]


@pytest.fixture(scope="module")
def ctx(sw):
    member = sw.new_user("mx-member")
    nonmember = sw.new_user("mx-nonmember")
    app = sw.new_app("matrix", [(member, "developer")])
    sw.repo_with_commits(app["AppId"], member, 2)
    admin = User(sw.admin.email, sw.admin.key, sw.new_token(sw.admin.email, REPO_SCOPE), True)
    return {"sw": sw, "app": app["AppId"], "pid": app["ProjectId"],
            "users": {ANON: None, MEMBER: member, NONMEMBER: nonmember, ADMIN: admin}}


def victim(ctx):
    """A fresh user that admin-only endpoints act on."""
    return ctx["sw"].new_user("mx-victim", token=False)


def fresh_member(ctx):
    u = victim(ctx)
    ctx["sw"].add_member(ctx["app"], u, "developer")
    return u


def prep_apikey_delete(ctx):
    u = victim(ctx)
    return {"path": f"/api/slipway/users/{quote(u.email)}/apikeys/{u.key[:12]}"}


def prep_token_delete(ctx):
    u = victim(ctx)
    token = ctx["sw"].new_token(u.email)
    return {"path": f"/api/slipway/users/{quote(u.email)}/tokens/{token[4:16]}"}


def prep_user_post(ctx, what):
    u = victim(ctx)
    body = {"scopes": REPO_SCOPE} if what == "tokens" else {}
    return {"path": f"/api/slipway/users/{quote(u.email)}/{what}", "json": body}


def prep_rights(ctx, verb):
    u = fresh_member(ctx)
    return {"path": f"/api/slipway/apps/{ctx['app']}/{verb}",
            "json": {"email": u.email, "env": "Production", "rights": "api"}}


# (id, method, path or prepare(ctx) -> {path, json}, auth kind, statuses by identity)
R_READ = {ANON: 401, MEMBER: 200, NONMEMBER: 403, ADMIN: 200}
R_ADMIN = {ANON: 401, MEMBER: 403, NONMEMBER: 403, ADMIN: 200}
R_ADMIN_NEW = {ANON: 401, MEMBER: 403, NONMEMBER: 403, ADMIN: 201}
R_ANY = {ANON: 401, MEMBER: 200, NONMEMBER: 200, ADMIN: 200}

ENDPOINTS = [
    # Team Server API v1
    ("ts-apps", "GET", "/api/1/apps", "key", R_ANY),
    ("ts-apps-slash", "GET", "/api/1/apps/", "key", R_ANY),
    ("ts-app", "GET", "/api/1/apps/{app}", "key", R_READ),
    ("ts-branches", "GET", "/api/1/apps/{app}/branches", "key", R_READ),
    ("ts-branch", "GET", "/api/1/apps/{app}/branches/main", "key", R_READ),
    ("ts-trunk", "GET", "/api/1/apps/{app}/branches/trunk", "key", R_READ),
    ("ts-revisions", "GET", "/api/1/apps/{app}/branches/main/revisions", "key", R_READ),
    ("ts-revisions-enc", "GET", "/api/1/apps/{app}/branches/branches%2Fmain/revisions", "key",
     R_READ),
    ("ts-app-via-token", "GET", "/api/1/apps/{app}", "token", R_READ),
    # App Repository API
    ("repo-info", "GET", "/v1/repositories/{pid}/info", "token", R_READ),
    ("repo-branches", "GET", "/v1/repositories/{pid}/branches", "token", R_READ),
    ("repo-branch", "GET", "/v1/repositories/{pid}/branches/main", "token", R_READ),
    ("repo-commits", "GET", "/v1/repositories/{pid}/branches/main/commits", "token", R_READ),
    # Slipway's own API
    ("me", "GET", "/api/slipway/me", "key", R_ANY),
    ("users-list", "GET", "/api/slipway/users", "key", R_ADMIN),
    ("users-add", "POST",
     lambda c: {"path": "/api/slipway/users", "json": {"email": unique_email("mx"), "name": "M"}},
     "key", R_ADMIN_NEW),
    ("apikey-add", "POST", lambda c: prep_user_post(c, "apikeys"), "key", R_ADMIN_NEW),
    ("apikey-revoke", "DELETE", prep_apikey_delete, "key", R_ADMIN),
    ("token-add", "POST", lambda c: prep_user_post(c, "tokens"), "key", R_ADMIN_NEW),
    ("token-revoke", "DELETE", prep_token_delete, "key", R_ADMIN),
    ("apps-list", "GET", "/api/slipway/apps", "key", R_ADMIN),
    ("apps-add", "POST",
     lambda c: {"path": "/api/slipway/apps", "json": {"AppId": unique("mx"), "Name": "M"}},
     "key", R_ADMIN_NEW),
    ("members-list", "GET", "/api/slipway/apps/{app}/members", "key", R_ADMIN),
    ("members-add", "POST",
     lambda c: {"path": f"/api/slipway/apps/{c['app']}/members",
                "json": {"email": victim(c).email, "role": "viewer"}}, "key", R_ADMIN),
    ("grant", "POST", lambda c: prep_rights(c, "grant"), "key", R_ADMIN),
    ("revoke", "POST", lambda c: prep_rights(c, "revoke"), "key", R_ADMIN),
    ("audit", "GET", "/api/slipway/audit", "key", R_ADMIN),
    ("metrics", "GET", "/metrics", "key", R_ADMIN),
    ("healthz", "GET", "/healthz", "key", {ANON: 200, MEMBER: 200, NONMEMBER: 200, ADMIN: 200}),
    # git smart HTTP
    ("git-upload-pack", "GET", "/git/{app}.git/info/refs?service=git-upload-pack", "basic",
     R_READ),
    ("git-receive-pack", "GET", "/git/{app}.git/info/refs?service=git-receive-pack", "basic",
     R_READ),
]


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("name, method, target, auth, expect", ENDPOINTS,
                         ids=[e[0] for e in ENDPOINTS])
def test_matrix(ctx, name, method, target, auth, expect, who):
    sw = ctx["sw"]
    user = ctx["users"][who]
    if callable(target):
        req = target(ctx)
    else:
        req = {"path": target.format(app=ctx["app"], pid=ctx["pid"])}
    kw = {"timeout": 30}
    if "json" in req:
        kw["json"] = req["json"]
    headers = {}
    if user is not None:
        if auth == "key":
            headers = user.key_headers()
        elif auth == "token":
            headers = user.token_headers()
        else:
            kw["auth"] = user.basic()
    r = requests.request(method, sw.base + req["path"], headers=headers, **kw)
    want = expect[who]
    if want >= 400:
        body = assert_error(r, want)
        if want == 403:
            assert body["errorCode"] in ("NO_ACCESS", "RS403"), body
        if want == 401 and auth == "basic":
            assert r.headers.get("WWW-Authenticate", "").startswith("Basic ")
    else:
        assert r.status_code == want, f"{who} {method} {req['path']}: {r.status_code} {r.text[:300]}"
