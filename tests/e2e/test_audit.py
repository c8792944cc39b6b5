"""The audit log (GET /api/slipway/audit): CLI commands, HTTP admin calls and git pushes, each
with its result, in a hash chain that verifies."""

import hashlib
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import (REPO_SCOPE, Slipway, assert_error, assert_ok, quote, raw_http, unique,
                      unique_email, wait_for)

FFFD = "\ufffd"

FIELDS = {"id": int, "at": int, "actor": str, "action": str, "app": str, "env": str,
          "source": str, "result": str, "detail": str, "hash": str}


def test_audit_entry_shape_and_chain(sw):
    entries, intact = sw.audit()
    assert intact is True
    assert entries, "the audit log is empty"
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for e in entries:
        for k, t in FIELDS.items():
            assert type(e[k]) is t, (k, e)
        assert e["result"], e
    # the first start's admin is the first entry
    assert entries[0]["action"] == "user add" and "admin@localhost" in entries[0]["detail"]
    assert len({e["hash"] for e in entries}) == len(entries)
    # paging with after/limit
    page = assert_ok(sw.get(f"/api/slipway/audit?after={ids[0]}&limit=2", sw.admin))
    assert [e["id"] for e in page["entries"]] == ids[1:3]
    assert page["chainIntact"] is True
    assert_error(sw.get("/api/slipway/audit?limit=0", sw.admin), 400)
    assert_error(sw.get("/api/slipway/audit?after=x", sw.admin), 400)


def test_cli_commands_are_audited(sw, cli_actor):
    email = unique_email("audcli")
    app_id = unique("audcli")
    sw.cli_out("user", "add", "--email", email, "--name", "Audited")
    key = sw.cli_out("apikey", "add", "--email", email).strip()
    token = sw.cli_out("token", "add", "--email", email, "--scopes", REPO_SCOPE).strip()
    sw.secrets += [key, token]
    sw.cli_out("app", "add", "--id", app_id, "--name", "Audited")
    sw.cli_out("member", "add", "--app", app_id, "--email", email, "--role", "developer")
    sw.cli_out("grant", "--app", app_id, "--email", email, "--env", "Production", "--rights", "api")
    sw.cli_out("revoke", "--app", app_id, "--email", email, "--env", "Test", "--rights", "api")
    sw.cli_out("apikey", "revoke", "--email", email, "--id", key[:12])
    sw.cli_out("token", "revoke", "--email", email, "--id", token[4:16])

    entries, intact = sw.audit()
    mine = [e for e in entries
            if e["actor"] == cli_actor and (email in e["detail"] or e["app"] == app_id)]
    assert intact is True
    actions = [e["action"] for e in mine]
    assert actions == ["user add", "apikey add", "token add", "app add", "member add", "grant",
                       "revoke", "apikey revoke", "token revoke"], actions
    for e in mine:
        assert e["result"] == "ok", e
        assert e["source"] == "cli", e
    by = {e["action"]: e for e in mine}
    assert by["grant"]["app"] == app_id and by["grant"]["env"] == "Production"
    assert by["revoke"]["env"] == "Test"
    assert by["app add"]["app"] == app_id
    # never the secrets, only the public ids
    for e in mine:
        assert key not in e["detail"] and token not in e["detail"]
    assert key[:12] in by["apikey revoke"]["detail"]


def test_failed_cli_commands_are_audited(sw, cli_actor):
    bad = unique("dupe")
    sw.cli_out("app", "add", "--id", bad, "--name", "First")
    assert sw.cli("app", "add", "--id", bad, "--name", "Second", check=False).returncode != 0
    ghost = unique_email("auditghost")
    assert sw.cli("apikey", "add", "--email", ghost, check=False).returncode != 0
    assert sw.cli("app", "add", "--id", "Bad_Audit", "--name", "X", check=False).returncode != 0
    entries, intact = sw.audit()
    assert intact is True
    dup = [e for e in entries if e["actor"] == cli_actor and e["action"] == "app add"
           and e["app"] == bad]
    assert [e["result"] for e in dup][0] == "ok"
    assert len(dup) == 2 and dup[1]["result"].startswith("error"), dup
    assert "APPLICATION_ALREADY_EXISTS" in dup[1]["result"]
    gh = [e for e in entries if e["action"] == "apikey add" and ghost in e["detail"]]
    assert len(gh) == 1 and gh[0]["result"].startswith("error") and gh[0]["actor"] == cli_actor
    inv = [e for e in entries if e["action"] == "app add" and e["app"] == "Bad_Audit"]
    assert inv and inv[-1]["result"].startswith("error") and "INVALID_APPID" in inv[-1]["result"]


def test_http_admin_calls_are_audited(sw):
    email = unique_email("audhttp")
    app_id = unique("audhttp")
    assert_ok(sw.post("/api/slipway/users", sw.admin, json={"email": email, "name": "A"}), 201)
    k = assert_ok(sw.post(f"/api/slipway/users/{quote(email)}/apikeys", sw.admin), 201)
    sw.secrets.append(k["apikey"])
    assert_ok(sw.post("/api/slipway/apps", sw.admin, json={"AppId": app_id, "Name": "A"}), 201)
    assert_ok(sw.post(f"/api/slipway/apps/{app_id}/members", sw.admin,
                      json={"email": email, "role": "viewer"}))
    assert_ok(sw.post(f"/api/slipway/apps/{app_id}/grant", sw.admin,
                      json={"email": email, "env": "Acceptance", "rights": "backups"}))
    assert_ok(sw.delete(f"/api/slipway/users/{quote(email)}/apikeys/{k['id']}", sw.admin))
    # and a failing one
    assert_error(sw.post(f"/api/slipway/apps/{app_id}/grant", sw.admin,
                         json={"email": email, "env": "Nowhere", "rights": "api"}), 404)
    entries, intact = sw.audit()
    assert intact is True
    mine = [e for e in entries if email in e["detail"] or e["app"] == app_id]
    assert [e["action"] for e in mine] == ["user add", "apikey add", "app add", "member add",
                                          "grant", "apikey revoke", "grant"], mine
    for e in mine:
        assert e["actor"] == sw.admin.email, e
        assert e["source"] == "127.0.0.1", e
        assert e["result"], e
    assert [e["result"] == "ok" for e in mine] == [True] * 6 + [False]
    assert mine[-1]["result"].startswith("error") and "ENVIRONMENT_NOT_FOUND" in mine[-1]["result"]
    assert k["apikey"] not in str(entries)


def test_git_pushes_are_audited(sw):
    dev = sw.new_user("audgit")
    viewer = sw.new_user("audview")
    app = sw.new_app("audgit", [(dev, "developer"), (viewer, "viewer")])
    a = app["AppId"]
    repo = sw.repo_with_commits(a, dev, 1)
    repo.commits(1)
    repo.push("main")

    def pushes():
        entries, _ = sw.audit()
        return [e for e in entries if e["action"] == "git push" and e["app"] == a
                and e["result"] != "started"] or None
    # (the result is written when the response stream ends, which can trail the client slightly)
    found = wait_for(lambda: (lambda p: p if p and len(p) >= 2 else None)(pushes()), 10,
                     what="two git push audit entries")
    assert len(found) == 2
    for e in found:
        assert e["actor"] == dev.email and e["source"] == "127.0.0.1"
        assert e["result"].startswith("ok"), e
    # each push was also recorded as it started (a push outlives a crashed server)
    started = [e for e in sw.audit()[0] if e["action"] == "git push" and e["app"] == a
               and e["result"] == "started"]
    assert len(started) == 2 and all(e["actor"] == dev.email for e in started)
    # a refused push (viewer) is audited with its error
    clone = sw.clone(a, viewer)
    clone.commits(1)
    assert clone.push("main", check=False).returncode != 0
    entries, intact = sw.audit()
    assert intact is True
    # git stops at the 403 of info/refs, so a refused push may not reach git-receive-pack; but
    # a direct POST to git-receive-pack must be refused and audited
    r = requests.post(f"{sw.base}/git/{a}.git/git-receive-pack", auth=viewer.basic(), data=b"0000",
                      headers={"Content-Type": "application/x-git-receive-pack-request"}, timeout=10)
    assert_error(r, 403, "NO_ACCESS")
    refused = wait_for(lambda: [e for e in sw.audit()[0] if e["action"] == "git push"
                                and e["app"] == a and e["actor"] == viewer.email], 5,
                       what="the refused push's audit entry")
    assert refused[-1]["result"].startswith("error"), refused


def test_audit_needs_an_admin(sw):
    dev = sw.new_user("audnosy")
    assert_error(sw.get("/api/slipway/audit", dev), 403, "NO_ACCESS")
    assert_error(sw.get("/api/slipway/audit", dev, via="token"), 403, "NO_ACCESS")
    assert_error(sw.get("/api/slipway/audit"), 401)


def test_refused_admin_requests_are_audited(sw):
    """Mutating requests are audited even when refused: by a non-admin (403), with credentials
    that are refused (401), or with a bad body (400). One that presents no credentials at all is
    counted instead (anyone could send many)."""
    dev = sw.new_user("audrefused")
    email = unique_email("nevermade")
    assert_error(sw.post("/api/slipway/users", dev, json={"email": email, "name": "N"}), 403)
    assert_error(sw.delete(f"/api/slipway/users/{quote(dev.email)}/apikeys/{dev.key[:12]}",
                           headers={"Mendix-Username": dev.email, "Mendix-ApiKey": "wrong"}), 401)
    assert_error(sw.delete(f"/api/slipway/users/{quote(dev.email)}/tokens/{dev.key[:12]}"), 401)
    assert_error(sw.post("/api/slipway/apps", sw.admin, data=b"{nope"), 400)

    def refused():
        entries, _ = sw.audit()
        mine = [e for e in entries if e["actor"] == dev.email and e["result"].startswith("error")]
        anon = [e for e in entries if e["actor"] == "anonymous" and quote(dev.email) in e["action"]]
        bad = [e for e in entries if e["actor"] == sw.admin.email and e["result"] == "error 400"
               and "/api/slipway/apps" in e["action"]]
        return (mine, anon, bad) if mine and anon and bad else None
    # (a refused request is audited once it completes, which can trail the answer slightly)
    mine, anon, bad = wait_for(refused, 10, what="the refused requests' audit entries")
    assert "POST" in mine[-1]["action"] and "/api/slipway/users" in mine[-1]["action"]
    assert mine[-1]["result"] == "error 403" and mine[-1]["source"] == "127.0.0.1"
    assert "DELETE" in anon[-1]["action"] and anon[-1]["result"] == "error 401"
    assert dev.key not in str(anon)
    # the one without credentials: counted, not itemized
    assert not [e for e in anon if "/tokens/" in e["action"]], anon
    unrecorded = 'slipway_audit_unrecorded_requests_total{reason="anonymous"}'
    wait_for(lambda: sw.metrics()[unrecorded] >= 1, 10, what="the anonymous refusal to be counted")
    # but reads are not audited
    entries, intact = sw.audit()
    assert intact is True
    assert not any("GET " in e["action"] and "/api/slipway/audit" in e["action"] for e in entries)


def test_concurrent_cli_and_http_keep_the_chain_intact(sw, cli_actor):
    """The CLI (another process) and the server append to the same hash chain at once."""
    tag = unique("race")
    cli_emails = [f"{tag}-cli{i}@example.com" for i in range(4)]
    http_emails = [f"{tag}-http{i}@example.com" for i in range(8)]

    def by_cli(email):
        return sw.cli("user", "add", "--email", email, "--name", "Race", check=False)

    def by_http(email):
        s = requests.Session()
        try:
            return s.post(sw.base + "/api/slipway/users", headers=sw.admin.key_headers(),
                          json={"email": email, "name": "Race"}, timeout=30).status_code
        finally:
            s.close()

    with ThreadPoolExecutor(max_workers=8) as ex:
        cli_results = ex.map(by_cli, cli_emails)
        http_results = ex.map(by_http, http_emails)
        cli_results, http_results = list(cli_results), list(http_results)
    assert [p.returncode for p in cli_results] == [0] * 4, [p.stderr for p in cli_results]
    assert http_results == [201] * 8
    entries, intact = sw.audit()
    assert intact is True
    adds = [e for e in entries if e["action"] == "user add" and tag in e["detail"]]
    assert len(adds) == 12 and all(e["result"] == "ok" for e in adds)
    assert sum(e["actor"] == cli_actor for e in adds) == 4
    users = {u["email"] for u in assert_ok(sw.get("/api/slipway/users", sw.admin))}
    assert set(cli_emails + http_emails) <= users


def test_a_path_that_is_not_utf8_never_breaks_the_audit_log(sw):
    """Issue 7.4: an anonymous `POST /x\\xff\\xfe` stored a row that made every audit page holding
    it answer 500, forever. Now it is answered 400 and counted, not stored; and what is stored
    is UTF-8: an audited path cut inside a character ends in U+FFFD."""
    status, _, body = raw_http(sw.server.port, b"POST /x\xff\xfe HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    r = sw.get("/api/slipway/audit?limit=1000", sw.admin)
    assert r.status_code == 200, r.text[:300]
    assert status == 400, body
    # an admin's refused request is audited with its path, which is cut at 256 bytes: here in
    # the middle of a two-byte character
    head = "/api/slipway/apps/x"
    path = (head + "\u00e9" * 130 + "/grant").encode()
    keys = sw.admin.key_headers()
    status, _, body = raw_http(sw.server.port, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                               + "".join(f"{k}: {v}\r\n" for k, v in keys.items()).encode()
                               + b"Content-Length: 5\r\nConnection: close\r\n\r\n{nope")
    assert status == 400, body
    body.decode("utf-8")

    def cut_entry():
        entries, _ = sw.audit()
        return [e for e in entries if e["action"].startswith("POST " + head + "\u00e9")] or None
    found = wait_for(cut_entry, 10, what="the audit entry of the refused request")
    # 256 bytes of path: the head (19) and 118 characters of two bytes, then half of one
    assert found[-1]["action"] == "POST " + head + "\u00e9" * 118 + FFFD, found[-1]
    assert found[-1]["actor"] == sw.admin.email and found[-1]["result"] == "error 400"
    r = sw.get("/api/slipway/audit?limit=1000", sw.admin)
    assert r.status_code == 200, r.text[:300]
    entries, intact = sw.audit()
    assert intact is True
    assert not [e for e in entries if e["action"].startswith("POST /x")], "the anonymous POST"


def _old_row(db, fields):
    """Appends a row as an older version did: the fields' bytes as they are (not UTF-8), hashed as
    they are, chained to the last row."""
    prev, = db.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    at = 1_700_000_000_000
    data = prev.encode() + b"\x1f" + str(at).encode() + b"".join(b"\x1f" + f for f in fields)
    digest = hashlib.sha256(data).hexdigest()
    db.execute("INSERT INTO audit(at_ms, actor, action, app, env, source, result, detail, "
               "prev_hash, hash) VALUES (?, " + ", ".join(["CAST(? AS TEXT)"] * 7) + ", ?, ?)",
               (at, *fields, prev, digest))
    db.commit()


def test_audit_rows_from_older_versions_are_read(server_factory, tmp_path):
    """A database written by an older version may hold rows that are not UTF-8: every page holding
    one answered 500 'cannot read the audit log'. Now such a row is shown with U+FFFD, and the
    chain still verifies over the bytes it holds."""
    srv = server_factory()
    s = Slipway(srv, str(tmp_path))
    db = sqlite3.connect(os.path.join(srv.data, "slipway.db"), timeout=10)
    try:
        _old_row(db, [b"anonymous", b"POST /x\xff\xfe", b"", b"", b"127.0.0.1", b"error 404", b""])
        _old_row(db, [b"admin@localhost", b"apikey add", b"", b"", b"127.0.0.1",
                      b"error 404 USER_NOT_FOUND", b"email=\xff"])
    finally:
        db.close()
    r = s.get("/api/slipway/audit?limit=1000", s.admin)
    assert r.status_code == 200, r.text[:300]
    entries, intact = s.audit()
    assert intact is True
    assert entries[-2]["action"] == "POST /x" + FFFD + FFFD
    assert entries[-1]["detail"] == "email=" + FFFD
    # a page that starts at one of them, and new entries after them
    page = assert_ok(s.get(f"/api/slipway/audit?after={entries[-2]['id'] - 1}&limit=1", s.admin))
    assert page["entries"][0]["action"] == "POST /x" + FFFD + FFFD
    assert_ok(s.post("/api/slipway/apps", s.admin, json={"AppId": unique("old"), "Name": "O"}), 201)
    entries, intact = s.audit()
    assert intact is True and entries[-1]["action"] == "app add"
    s.http.close()


def test_anonymous_flood_to_a_missing_path_is_counted_not_stored(sw):
    """2,000 anonymous POSTs to a missing path left 2,000 permanent rows; now none, and
    /metrics counts them."""
    n = 2000
    key = 'slipway_audit_unrecorded_requests_total{reason="unrouted"}'
    before_rows = len(sw.audit()[0])

    def flood(count):
        with requests.Session() as s:
            return [s.post(sw.base + "/no/such/path", data=b"x", timeout=30).status_code
                    for _ in range(count)]
    with ThreadPoolExecutor(max_workers=8) as ex:
        statuses = [st for chunk in ex.map(flood, [n // 8] * 8) for st in chunk]
    assert statuses == [404] * n
    entries, intact = sw.audit()
    assert intact is True
    assert len(entries) - before_rows <= 1, entries[before_rows:before_rows + 5]
    # (exact counting is test_metrics' business: this server counted other tests' requests too)
    after = wait_for(lambda: (lambda m: m if m[key] >= n else None)(sw.metrics()),
                     10, what="the flood to be counted")
    assert after["slipway_http_unrouted_requests_total"] >= n


def test_refused_credentials_are_audited_within_a_budget(server_factory, tmp_path):
    """Requests that present credentials which are refused (failed logins) are audited one entry
    each, up to 60 a minute; beyond that they are counted. Requests with no credentials at all,
    to real routes, are counted and not stored."""
    srv = server_factory()
    s = Slipway(srv, str(tmp_path))
    rows_before = len(s.audit()[0])
    bad = {"Mendix-Username": "mallory@example.com", "Mendix-ApiKey": "not-a-key"}
    with requests.Session() as h:
        for _ in range(100):
            assert_error(h.post(srv.base + "/api/slipway/users", headers=bad, json={}, timeout=30),
                         401)
        for _ in range(50):
            assert_error(h.post(srv.base + "/api/slipway/users", json={}, timeout=30), 401)
    rate = 'slipway_audit_unrecorded_requests_total{reason="failed_login_rate"}'
    anon = 'slipway_audit_unrecorded_requests_total{reason="anonymous"}'
    # (a refused request is audited once it completes, which can trail the answer slightly)
    wait_for(lambda: len(s.audit()[0]) >= rows_before + 60, 10, what="the itemized entries")
    entries, intact = s.audit()
    assert intact is True
    new = entries[rows_before:]
    assert len(new) == 60, [e["action"] for e in new][:5]
    assert all(e["actor"] == "anonymous" and e["action"] == "POST /api/slipway/users"
               and e["result"] == "error 401" for e in new), new[:3]
    m = wait_for(lambda: (lambda m: m if m[anon] >= 50 else None)(s.metrics()), 10,
                 what="the refused requests to be counted")
    assert m[rate] == 40 and m[anon] == 50, m
    s.http.close()
