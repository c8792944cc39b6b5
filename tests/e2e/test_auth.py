"""Authentication (API-key headers, MxToken) and rights (membership, roles, per-environment API
Rights, admins)."""

import re

import pytest

from conftest import User, assert_error, assert_ok, unique_email


@pytest.fixture
def dev_app(sw):
    dev, app = sw.new_dev_app("auth")
    return dev, app


@pytest.mark.parametrize("uname, kname", [
    ("Mendix-Username", "Mendix-ApiKey"), ("mendix-username", "mendix-apikey"),
    ("MENDIX-USERNAME", "MENDIX-APIKEY"), ("mendix-UserName", "mendix-APIKey"),
    ("Mendix-Username", "Mendix-Apikey"),
])
def test_apikey_header_names_in_any_case(sw, dev_app, uname, kname):
    dev, app = dev_app
    r = sw.get(f"/api/1/apps/{app['AppId']}", headers={uname: dev.email, kname: dev.key})
    assert assert_ok(r)["AppId"] == app["AppId"]


def test_username_is_matched_without_case(sw, dev_app):
    dev, app = dev_app
    r = sw.get(f"/api/1/apps/{app['AppId']}",
               headers={"Mendix-Username": dev.email.upper(), "Mendix-ApiKey": dev.key})
    assert_ok(r)


@pytest.mark.parametrize("scheme", ["MxToken", "mxtoken", "MXTOKEN", "mXtOkEn"])
@pytest.mark.parametrize("header", ["Authorization", "authorization", "AUTHORIZATION"])
def test_mxtoken_scheme_in_any_case(sw, dev_app, scheme, header):
    dev, app = dev_app
    r = sw.get(f"/api/1/apps/{app['AppId']}", headers={header: f"{scheme} {dev.token}"})
    assert assert_ok(r)["AppId"] == app["AppId"]
    r = sw.get(f"/v1/repositories/{app['ProjectId']}/info", headers={header: f"{scheme} {dev.token}"})
    assert assert_ok(r)["appId"] == app["ProjectId"]


def check_401(r):
    body = assert_error(r, 401)
    assert set(body) == {"errorCode", "errorMessage"}, body


def test_wrong_key_is_401(sw, dev_app):
    dev, app = dev_app
    path = f"/api/1/apps/{app['AppId']}"
    wrong = dev.key[:-4] + ("AAAA" if not dev.key.endswith("AAAA") else "BBBB")
    check_401(sw.get(path, headers={"Mendix-Username": dev.email, "Mendix-ApiKey": wrong}))
    check_401(sw.get(path, headers={"Mendix-Username": dev.email, "Mendix-ApiKey": "nonsense"}))
    check_401(sw.get(path, headers={"Mendix-Username": dev.email, "Mendix-ApiKey": ""}))
    check_401(sw.get(path, headers={"Mendix-Username": dev.email, "Mendix-ApiKey": "x" * 5000}))
    # the token is not an API key, nor the other way round
    check_401(sw.get(path, headers={"Mendix-Username": dev.email, "Mendix-ApiKey": dev.token}))
    check_401(sw.get(path, headers={"Authorization": f"MxToken {dev.key}"}))
    check_401(sw.get(path, headers={"Authorization": f"MxToken slw_{dev.key}"}))
    # only one of the two headers
    check_401(sw.get(path, headers={"Mendix-Username": dev.email}))
    check_401(sw.get(path, headers={"Mendix-ApiKey": dev.key}))
    # another scheme
    check_401(sw.get(path, headers={"Authorization": f"Bearer {dev.token}"}))


def test_key_of_another_user_is_401(sw, dev_app):
    dev, app = dev_app
    other = sw.new_user("other")
    sw.add_member(app["AppId"], other, "developer")
    check_401(sw.get(f"/api/1/apps/{app['AppId']}",
                     headers={"Mendix-Username": dev.email, "Mendix-ApiKey": other.key}))
    check_401(sw.get(f"/api/1/apps/{app['AppId']}",
                     headers={"Mendix-Username": sw.admin.email, "Mendix-ApiKey": dev.key}))


def test_no_credentials_is_401(sw, dev_app):
    _, app = dev_app
    for path in ("/api/1/apps", f"/api/1/apps/{app['AppId']}", "/api/slipway/me",
                 f"/v1/repositories/{app['ProjectId']}/info"):
        check_401(sw.get(path))


def test_revoked_credentials_are_401(sw, dev_app):
    dev, app = dev_app
    path = f"/api/1/apps/{app['AppId']}"
    assert_ok(sw.get(path, dev))
    assert_ok(sw.delete(f"/api/slipway/users/{dev.email}/apikeys/{dev.key[:12]}", sw.admin))
    check_401(sw.get(path, dev))
    assert_ok(sw.get(path, dev, via="token"))
    assert_ok(sw.delete(f"/api/slipway/users/{dev.email}/tokens/{dev.token[4:16]}", sw.admin))
    check_401(sw.get(path, dev, via="token"))
    # and for git too
    p = sw.git("ls-remote", sw.git_url(app["AppId"], dev), check=False)
    assert p.returncode != 0


def test_new_key_works_at_once(sw, dev_app):
    dev, app = dev_app
    key = sw.new_apikey(dev.email)
    assert_ok(sw.get(f"/api/1/apps/{app['AppId']}", User(dev.email, key)))


# --- rights -----------------------------------------------------------------------------------


def test_developer_has_api_rights_on_test_and_acceptance_by_default(sw, dev_app):
    dev, app = dev_app
    a = app["AppId"]
    assert assert_ok(sw.get(f"/api/1/apps/{a}", dev))["AppId"] == a
    assert assert_ok(sw.get(f"/api/1/apps/{a}/branches", dev)) == []
    m = next(x for x in assert_ok(sw.get(f"/api/slipway/apps/{a}/members", sw.admin))
             if x["email"] == dev.email)
    assert "API Rights" in m["rights"]["Test"] and "API Rights" in m["rights"]["Acceptance"]
    assert "API Rights" not in m["rights"]["Production"]


def test_api_rights_revoked_then_granted_on_production(sw, dev_app):
    dev, app = dev_app
    a = app["AppId"]
    sw.repo_with_commits(a, dev, 1)
    sw.rights(a, dev, "Test", "api", revoke=True)
    assert_ok(sw.get(f"/api/1/apps/{a}", dev))  # still on Acceptance
    sw.rights(a, dev, "Acceptance", "api", revoke=True)
    for path in (f"/api/1/apps/{a}", f"/api/1/apps/{a}/branches",
                 f"/api/1/apps/{a}/branches/trunk", f"/api/1/apps/{a}/branches/main/revisions"):
        assert_error(sw.get(path, dev), 403, "NO_ACCESS")
    # other rights do not stand in for API Rights
    sw.rights(a, dev, "Test", "transport,backups,monitoring,alerts,permissions")
    assert_error(sw.get(f"/api/1/apps/{a}", dev), 403, "NO_ACCESS")
    # the app is still listed (membership), but cannot be read
    assert a in [x["AppId"] for x in assert_ok(sw.get("/api/1/apps", dev))]
    sw.rights(a, dev, "Production", "api")
    assert assert_ok(sw.get(f"/api/1/apps/{a}", dev))["AppId"] == a
    assert len(assert_ok(sw.get(f"/api/1/apps/{a}/branches", dev))) == 1


def test_rights_names_any_case(sw, dev_app):
    dev, app = dev_app
    sw.rights(app["AppId"], dev, "Test", "API")
    sw.rights(app["AppId"], dev, "Acceptance", "Api", revoke=True)
    sw.rights(app["AppId"], dev, "Test", "api", revoke=True)
    assert_error(sw.get(f"/api/1/apps/{app['AppId']}", dev), 403, "NO_ACCESS")


def test_viewer_can_clone_but_not_push(sw):
    dev = sw.new_user("writer")
    viewer = sw.new_user("reader")
    app = sw.new_app("viewing", [(dev, "developer"), (viewer, "viewer")])
    a = app["AppId"]
    ids = sw.repo_with_commits(a, dev, 2).git("rev-parse", "HEAD").stdout.strip()
    clone = sw.clone(a, viewer)
    assert clone.rev("HEAD") == ids
    before = len(sw.log().splitlines())
    clone.commits(1)
    p = clone.push("main", check=False)
    assert p.returncode != 0
    assert "403" in p.stderr, p.stderr
    # the server logged a 403 for the receive-pack of the viewer
    # (the path is logged without its query: GET .../info/refs?service=git-receive-pack)
    lines = sw.wait_log(rf" GET /git/{re.escape(a)}\.git/info/refs 403 "
                        rf".*user={re.escape(viewer.email)}")
    assert lines
    assert len(sw.log().splitlines()) > before
    # the branch did not move
    assert assert_ok(sw.get(f"/api/1/apps/{a}/branches/main", dev))["LatestRevisionHash"] == ids
    # a viewer with API Rights can read the Team Server API
    assert_ok(sw.get(f"/api/1/apps/{a}/branches", viewer))


def test_non_member_gets_403(sw):
    dev = sw.new_user("member")
    stranger = sw.new_user("stranger")
    app = sw.new_app("private", [(dev, "developer")])
    a = app["AppId"]
    sw.repo_with_commits(a, dev, 1)
    assert a not in [x["AppId"] for x in assert_ok(sw.get("/api/1/apps", stranger))]
    for path in (f"/api/1/apps/{a}", f"/api/1/apps/{a}/branches", f"/api/1/apps/{a}/branches/main",
                 f"/api/1/apps/{a}/branches/main/revisions"):
        assert_error(sw.get(path, stranger), 403, "NO_ACCESS")
    for path in ("info", "branches", "branches/main", "branches/main/commits"):
        assert_error(sw.get(f"/v1/repositories/{app['ProjectId']}/{path}", stranger, via="token"),
                     403, "RS403")
    p = sw.git("ls-remote", sw.git_url(a, stranger), check=False)
    assert p.returncode != 0 and "403" in p.stderr


def test_admin_user_can_do_everything(sw):
    boss = sw.new_user("superuser", admin=True)
    dev, app = sw.new_dev_app("anything", user_prefix="dev")
    a = app["AppId"]
    repo = sw.repo_with_commits(a, dev, 1)
    # not a member, yet reads and pushes everything
    assert a in [x["AppId"] for x in assert_ok(sw.get("/api/1/apps", boss))]
    assert_ok(sw.get(f"/api/1/apps/{a}", boss))
    assert_ok(sw.get(f"/api/1/apps/{a}/branches/trunk", boss))
    assert_ok(sw.get(f"/v1/repositories/{app['ProjectId']}/branches", boss, via="token"))
    clone = sw.clone(a, boss)
    clone.commits(1)
    clone.push("main")
    head = assert_ok(sw.get(f"/api/1/apps/{a}/branches/main", dev))
    assert head["LatestRevisionNumber"] == 2 and head["LatestRevisionHash"] == clone.rev("main")
    assert repo.rev("main") != clone.rev("main")
    assert_ok(sw.get("/api/slipway/audit", boss))
    email = unique_email("madebyboss")
    assert_ok(sw.post("/api/slipway/users", boss, json={"email": email, "name": "x"}), 201)


def answer_before_body(port, head: bytes, timeout=5.0):
    """Sends only a request's head, announcing a 1 GB body, and reads the answer: the server must
    answer (and close) without waiting for the body. Returns the status line's code."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)  # a server that waits for the body times out here
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("path", ["/api/1/apps/{app}/packages/upload",
                                  "/api/v2/apps/{app}/packages/upload",
                                  "/git/{app}.git/git-receive-pack"])
def test_refused_uploads_and_pushes_are_answered_before_their_body(sw, path):
    """Who may not upload or push is refused on the headers: the server never spools the body."""
    viewer = sw.new_user("bodyless")
    app = sw.new_app("bodyless", [(viewer, "viewer")])
    target = path.format(app=app["AppId"]).encode()
    base = (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n")
    assert answer_before_body(sw.server.port, base + b"\r\n") == 401
    if path.startswith("/git/"):
        import base64
        cred = base64.b64encode(f"{viewer.email}:{viewer.key}".encode())
        who = b"Authorization: Basic " + cred + b"\r\n"
    else:
        who = f"Mendix-Username: {viewer.email}\r\nMendix-ApiKey: {viewer.key}\r\n".encode()
    assert answer_before_body(sw.server.port, base + who + b"\r\n") == 403
