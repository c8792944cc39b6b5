"""Request paths that are not UTF-8, on every route family: a 400 naming the bad segment (U+FFFD
for each bad byte), never a 500; and error messages that quote a long name cut inside a character
stay valid JSON."""

import pytest
import requests

from conftest import REPO_SCOPE, User, raw_http

FFFD = "\ufffd"


@pytest.fixture(scope="module")
def ctx(sw):
    app = sw.new_app("utf8")
    admin = User(sw.admin.email, sw.admin.key, sw.new_token(sw.admin.email, REPO_SCOPE), True)
    return {"app": app["AppId"], "pid": app["ProjectId"], "admin": admin}


def send(sw, ctx, method, path, auth):
    admin = ctx["admin"]
    kw = {"timeout": 30}
    if auth == "key":
        kw["headers"] = admin.key_headers()
    elif auth == "token":
        kw["headers"] = admin.token_headers()
    elif auth == "basic":
        kw["auth"] = admin.basic()
    path = path.format(app=ctx["app"], pid=ctx["pid"])
    return requests.request(method, sw.base + path, **kw)


def error_message(r):
    """The error body's message in whichever shape the surface uses; the body must be UTF-8."""
    r.content.decode("utf-8")  # strict: raises on anything that is not UTF-8
    body = r.json()
    return body["error"]["message"] if "error" in body else body["errorMessage"]


# (method, path, auth kind, the bad segment as the message names it)
BAD = [
    # the four of the issue
    ("GET", "/api/1/apps/%ff", "key", FFFD),
    ("GET", "/api/1/apps/{app}/branches/%c3", "key", FFFD),
    ("GET", "/v1/repositories/%ff/info", "token", FFFD),
    ("POST", "/api/slipway/users/%ff/apikeys", "key", FFFD),
    # and the other route families
    ("GET", "/api/1/apps/{app}/branches/main%ff/revisions", "key", "main" + FFFD),
    ("GET", "/api/1/apps/{app}/packages/x%fe%ff", "key", "x" + FFFD + FFFD),
    ("GET", "/v1/repositories/{pid}/branches/%e2%82/commits", "token", FFFD + FFFD),
    ("DELETE", "/api/slipway/users/a%ff%40x/apikeys/abc", "key", "a" + FFFD + "@x"),
    ("GET", "/api/slipway/apps/%c0%af/members", "key", FFFD + FFFD),
    ("GET", "/api/v2/apps/%ff/jobs/x", "key", FFFD),
    ("GET", "/api/v4/apps/%ff", "token", FFFD),
    ("GET", "/git/%ff.git/info/refs?service=git-upload-pack", "basic", FFFD + ".git"),
    ("GET", "/git/{app}.git/info/%ed%a0%80", "basic", FFFD * 3),
    ("POST", "/no/such/%ff", None, FFFD),
]


@pytest.mark.parametrize("method, path, auth, seg", BAD, ids=[f"{m} {p}" for m, p, _, _ in BAD])
def test_path_segment_not_utf8_is_400_naming_it(sw, ctx, method, path, auth, seg):
    r = send(sw, ctx, method, path, auth)
    assert r.status_code == 400, f"{method} {path}: {r.status_code} {r.text[:300]}"
    assert r.headers["Content-Type"].startswith("application/json")
    assert error_message(r) == f"the path segment '{seg}' is not valid UTF-8"
    if path.startswith("/v1/"):
        assert r.json()["errorCode"] == "RS400"
    elif path.startswith("/api/v4/"):
        assert r.json()["error"]["code"] == 400
    else:
        assert r.json()["errorCode"] == "INVALID_PARAMETERS"


def test_raw_bytes_in_the_path_are_400_too(sw):
    status, headers, body = raw_http(sw.server.port, b"GET /api/1/apps/\xff HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
    assert status == 400
    assert body.decode("utf-8") == ('{"errorCode":"INVALID_PARAMETERS","errorMessage":'
                                    '"the path segment \'\ufffd\' is not valid UTF-8"}')


# Error messages quote names cut to a length (%.60s, %.255s): a cut inside a character left
# bytes that are not UTF-8, and the answer was 500 'out of memory'.
CUT = [
    ("GET", "/api/1/apps/" + "a" * 59 + "%C3%A9", "key", 400),
    ("GET", "/api/1/apps/{app}/branches/" + "b" * 254 + "%C3%A9", "key", 404),
    ("GET", "/api/1/apps/{app}/branches/" + "b" * 254 + "%C3%A9/revisions", "key", 404),
    ("GET", "/v1/repositories/" + "c" * 59 + "%E2%82%AC/info", "token", 404),
    ("GET", "/v1/repositories/{pid}/branches/" + "d" * 254 + "%C3%A9", "token", 404),
]


@pytest.mark.parametrize("method, path, auth, status", CUT, ids=[c[1][:30] for c in CUT])
def test_long_names_cut_inside_a_character_answer_json(sw, ctx, method, path, auth, status):
    r = send(sw, ctx, method, path, auth)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text[:300]}"
    assert error_message(r)
