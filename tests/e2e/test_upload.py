"""Package uploads through the real binary: Deploy API v1 and v2 `POST .../packages/upload`
(multipart/form-data, part `file`) and the v2 job status. Valid packages are kept and list and
download like built ones; invalid ones are refused with a reason that names the entry at fault,
and nothing of them is kept."""
import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

from conftest import Slipway, assert_error, assert_ok, wait_for

MDA = "application/octet-stream"


# --- packages made in Python ------------------------------------------------------------------


def zstd(raw):
    return subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True, check=True).stdout


def tar_bytes(members):
    """A pax tar of (TarInfo, data or None), in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def info(name, type_=tarfile.REGTYPE, data=b"", mode=0o644, target=""):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.mode = mode
    ti.mtime = 1_700_000_000
    ti.size = len(data) if type_ == tarfile.REGTYPE else 0
    ti.linkname = target
    return ti


FILES = [
    ("bin", "dir", None, 0o755),
    ("bin/app", "file", b"#!/bin/sh\necho hello\n", 0o755),
    ("static", "dir", None, 0o755),
    ("static/index.html", "file", b"<h1>hello</h1>\n", 0o644),
    ("static/data.bin", "file", os.urandom(16384), 0o600),  # incompressible: > 4 KiB
    ("current", "symlink", "static", None),
]


def manifest_entry(path, kind, payload, mode):
    if kind == "file":
        return {"path": path, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
                "mode": mode}
    if kind == "dir":
        return {"path": path, "type": "dir", "mode": mode}
    return {"path": path, "type": "symlink", "target": payload}


def member(path, kind, payload, mode):
    if kind == "file":
        return info(path, data=payload, mode=mode), payload
    if kind == "dir":
        return info(path, tarfile.DIRTYPE, mode=mode), None
    return info(path, tarfile.SYMTYPE, mode=0o777, target=payload), None


def make_package(files=FILES, version="1.2.3.4", listed=None, extra=(), manifest_first=True,
                 tail=b""):
    """A .tar.zst: manifest.json (its "files" are `listed`, default the entries of `files`), the
    files, then the `extra` (TarInfo, data) members that the manifest does not list; `tail`
    follows the tar in the same zstd stream."""
    manifest = {"app": "uploaded", "version": version,
                "files": [manifest_entry(*f) for f in files] if listed is None else listed}
    text = json.dumps(manifest).encode()
    head = [(info("manifest.json", data=text), text)] if manifest_first else []
    return zstd(tar_bytes(head + [member(*f) for f in files] + list(extra)) + tail)


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def app(sw):
    dev, a = sw.new_dev_app("upload", user_prefix="uploader")
    return sw, dev, a["AppId"]


def upload(sw, user, app_id, blob, api="v2", name=None, via="key", data=None, **kw):
    q = f"?name={name}" if name is not None else ""
    return sw.request("POST", f"/api/{api}/apps/{app_id}/packages/upload{q}", user, via=via,
                      files={"file": ("pkg.mda", blob, MDA)}, data=data, **kw)


def job(sw, user, app_id, job_id):
    return assert_ok(sw.get(f"/api/v2/apps/{app_id}/jobs/{job_id}", user))


def wait_job(sw, user, app_id, job_id):
    """Polls as a client does while the job is Queued or Running."""
    def done():
        j = job(sw, user, app_id, job_id)
        assert j["Status"] in ("Queued", "Running", "Completed", "Failed"), j
        return j if j["Status"] in ("Completed", "Failed") else None
    return wait_for(done, timeout=30, interval=0.05, what=f"job {job_id}")


def listed(sw, user, app_id):
    return {p["PackageId"]: p for p in assert_ok(sw.get(f"/api/1/apps/{app_id}/packages", user))}


def package_files(sw, app_id):
    d = os.path.join(sw.data, "packages", app_id)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def assert_kept(sw, user, app_id, pid, blob, name, version):
    p = listed(sw, user, app_id)[pid]
    assert p["Status"] == "Succeeded" and p["Name"] == name and p["Version"] == version, p
    assert p["Size"] == len(blob) and p["Creator"] and isinstance(p["CreationDate"], int)
    d = assert_ok(sw.get(f"/api/slipway/apps/{app_id}/packages/{pid}", user))
    assert d["Source"] == "upload" and d["Sha256"] == hashlib.sha256(blob).hexdigest()
    r = sw.get(f"/api/1/apps/{app_id}/packages/{pid}/download", user)
    assert r.status_code == 200 and r.content == blob
    url = assert_ok(sw.get(f"/api/1/apps/{app_id}/packages/{pid}?url=true", user))["Url"]
    assert sw.http.get(url["Location"], timeout=30).content == blob
    with open(os.path.join(sw.data, "packages", app_id, f"{pid}.tar.zst"), "rb") as f:
        assert f.read() == blob


# --- valid uploads ------------------------------------------------------------------------------


def test_v2_upload_of_a_crafted_package(app):
    sw, dev, app_id = app
    blob = make_package()
    r = upload(sw, dev, app_id, blob, name="my%20app-1.2.3.mda")
    ids = assert_ok(r)
    assert set(ids) == {"PackageId", "JobId"}, ids
    assert wait_job(sw, dev, app_id, ids["JobId"]) == {"Status": "Completed"}
    assert_kept(sw, dev, app_id, ids["PackageId"], blob, "my app-1.2.3.mda", "1.2.3.4")


def test_v1_upload_with_credentials_as_form_fields_and_a_token(app):
    """Some clients repeat Mendix-Username and Mendix-ApiKey as form fields: they are ignored.
    Without ?name the name is default.mda; without a manifest "version", 0.0.0.0."""
    sw, dev, app_id = app
    blob = make_package(version=None)
    r = upload(sw, dev, app_id, blob, api="1",
               data={"Mendix-Username": dev.email, "Mendix-ApiKey": dev.key})
    ids = assert_ok(r)
    assert set(ids) == {"PackageId", "JobId"}
    assert job(sw, dev, app_id, ids["JobId"])["Status"] == "Completed"
    assert_kept(sw, dev, app_id, ids["PackageId"], blob, "default.mda", "0.0.0.0")
    # the same with Authorization: MxToken, and the form fields first
    body, ctype = multipart([("Mendix-Username", None, dev.email.encode()),
                             ("file", "x.mda", blob)])
    r = sw.request("POST", f"/api/v2/apps/{app_id}/packages/upload?name=t.mda", dev, via="token",
                   data=body, headers={"Content-Type": ctype})
    ids = assert_ok(r)
    assert_kept(sw, dev, app_id, ids["PackageId"], blob, "t.mda", "0.0.0.0")


def test_built_package_uploaded_again(app):
    """A package made by the Build API, downloaded and uploaded again, is the same package."""
    sw, dev, app_id = app
    repo = sw.clone(app_id, dev)
    yml = (b"version: 1\nruntime: shell\nbuild:\n  steps:\n"
           b"    - 'mkdir -p out/sub && echo hi > out/sub/hi.txt && ln -s sub/hi.txt out/link'\n"
           b"package:\n  include:\n    - out/\n")
    repo.commits(1, files={"slipway.yml": yml})
    repo.push("main")
    n = assert_ok(sw.get(f"/api/1/apps/{app_id}/branches/main", dev))["LatestRevisionNumber"]
    pid = assert_ok(sw.post(f"/api/1/apps/{app_id}/packages", dev,
                            json={"Branch": "main", "Revision": str(n), "Version": "4.5.6"}),
                    201)["PackageId"]

    def built():
        p = assert_ok(sw.get(f"/api/1/apps/{app_id}/packages/{pid}", dev))
        return p if p["Status"] in ("Succeeded", "Failed") else None
    built_pkg = wait_for(built, timeout=90, interval=0.05, what="the build")
    assert built_pkg["Status"] == "Succeeded", sw.get(
        f"/api/slipway/apps/{app_id}/packages/{pid}/log", dev).text
    blob = sw.get(f"/api/1/apps/{app_id}/packages/{pid}/download", dev).content
    for api in ("1", "v2"):
        ids = assert_ok(upload(sw, dev, app_id, blob, api=api, name="rebuilt.tar.zst"))
        assert ids["PackageId"] != pid
        assert wait_job(sw, dev, app_id, ids["JobId"])["Status"] == "Completed"
        assert_kept(sw, dev, app_id, ids["PackageId"], blob, "rebuilt.tar.zst",
                    built_pkg["Version"])


# --- invalid packages ------------------------------------------------------------------------


def bad_traversal():
    return make_package(extra=[(info("../evil", data=b"x"), b"x")]), "../evil"


def bad_absolute():
    return make_package(extra=[(info("/etc/evil", data=b"x"), b"x")]), "/etc/evil"


def bad_symlink():
    files = FILES + [("static/escape-link", "symlink", "../../etc/passwd", None)]
    return make_package(files=files), "static/escape-link"


def bad_symlink_unlisted():
    link = info("escape-abs", tarfile.SYMTYPE, mode=0o777, target="/etc/passwd")
    return make_package(extra=[(link, None)]), "escape-abs"


def bad_device():
    dev = info("dev-null", tarfile.CHRTYPE, mode=0o666)
    dev.devmajor, dev.devminor = 1, 3
    return make_package(extra=[(dev, None)]), "dev-null"


def bad_hardlink():
    link = info("hard-link", tarfile.LNKTYPE, target="bin/app")
    return make_package(extra=[(link, None)]), "hard-link"


def bad_no_manifest():
    return make_package(manifest_first=False), "manifest.json"


def bad_sha256():
    files = [f for f in FILES if f[0] != "static/data.bin"] + [("static/data.bin", "file",
                                                                b"tampered!", 0o600)]
    honest = [manifest_entry(*f) for f in FILES]
    tampered = [dict(e, size=9) if e["path"] == "static/data.bin" else e for e in honest]
    return make_package(files=files, listed=tampered), "static/data.bin"


def bad_not_a_package():
    return os.urandom(4096), "package"


def bad_bomb():
    """A valid package, then 64 MB of zeros in the same zstd stream: 2 KB that every download
    would expand to 64 MB (the issue's had 10 GiB)."""
    blob = make_package(tail=bytes(64 << 20))
    assert len(blob) < 64 << 10
    return blob, "after the end of its tar archive"


def bad_trailing_frame():
    return make_package() + zstd(b"more data"), "after the end of its tar archive"


BAD = {f.__name__[4:]: f for f in (bad_traversal, bad_absolute, bad_symlink, bad_symlink_unlisted,
                                   bad_device, bad_hardlink, bad_no_manifest, bad_sha256,
                                   bad_not_a_package, bad_bomb, bad_trailing_frame)}


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_package_refused_and_not_kept(app, case):
    sw, dev, app_id = app
    blob, names = BAD[case]()
    # v1 answers at once
    e = assert_error(upload(sw, dev, app_id, blob, api="1", name=f"{case}.mda"), 400,
                     "INVALID_PACKAGE")
    assert names in e["errorMessage"], e
    # v2 gives ids; the job failed with the same reason, and no package was kept
    ids = assert_ok(upload(sw, dev, app_id, blob, name=f"{case}.mda"))
    j = wait_job(sw, dev, app_id, ids["JobId"])
    assert j["Status"] == "Failed" and j["Reason"] == e["errorMessage"], (j, e)
    assert ids["PackageId"] not in listed(sw, dev, app_id)
    assert_error(sw.get(f"/api/1/apps/{app_id}/packages/{ids['PackageId']}", dev), 404,
                 "PACKAGE_NOT_FOUND")
    assert package_files(sw, app_id) == []


# --- bad requests, limits, rights ------------------------------------------------------------


def multipart(parts, boundary="slipway-e2e-boundary", close=True):
    """A multipart/form-data body of (name, filename or None, bytes) parts."""
    out = b""
    for name, filename, data in parts:
        fn = f'; filename="{filename}"' if filename else ""
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{fn}\r\n"
                f"Content-Type: {MDA}\r\n\r\n").encode() + data + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def test_bad_requests(app):
    sw, dev, app_id = app
    blob = make_package()
    url = f"/api/v2/apps/{app_id}/packages/upload"

    def post(body, ctype, path=url):
        h = {"Content-Type": ctype} if ctype else {}
        return sw.post(path, dev, data=body, headers=h)
    for path in (url, f"/api/1/apps/{app_id}/packages/upload"):
        # not multipart
        e = assert_error(post(b'{"file": "x"}', "application/json", path), 400,
                         "INVALID_PARAMETERS")
        assert "multipart/form-data" in e["errorMessage"]
        assert_error(post(b"", None, path), 400, "INVALID_PARAMETERS")
        assert_error(post(b"file=abc", "application/x-www-form-urlencoded", path), 400,
                     "INVALID_PARAMETERS")
    # multipart without a part `file`
    body, ctype = multipart([("other", None, blob)])
    e = assert_error(post(body, ctype), 400, "INVALID_PARAMETERS")
    assert "file" in e["errorMessage"]
    # two parts `file`
    body, ctype = multipart([("file", "a", blob), ("file", "b", blob)])
    assert_error(post(body, ctype), 400, "INVALID_PARAMETERS")
    # cut short: no closing boundary
    body, ctype = multipart([("file", "a", blob)], close=False)
    assert_error(post(body[: len(body) // 2], ctype), 400, "INVALID_PARAMETERS")
    # boundaries libmicrohttpd would misread (a lone quote: CVE-2023-27371), or none
    body, _ = multipart([("file", "a", blob)])
    for ctype in ('multipart/form-data; boundary="', "multipart/form-data; boundary=",
                  "multipart/form-data", "multipart/form-data; boundary=a;charset=utf-8",
                  "multipart/form-data; boundary=" + "x" * 71):
        assert_error(post(body, ctype), 400, "INVALID_PARAMETERS")
    # a name that would break the download's file name
    for name in ('a"b', "a%2Fb", "a%0Ab", "", "x" * 201, "%FF"):
        assert_error(upload(sw, dev, app_id, blob, name=name), 400, "INVALID_PARAMETERS")
    # a quoted boundary and a part with no file name are fine
    body, _ = multipart([("file", None, blob)], boundary="quoted b'()+_,-./:=?")
    ids = assert_ok(post(body, 'multipart/form-data; boundary="quoted b\'()+_,-./:=?"'))
    assert job(sw, dev, app_id, ids["JobId"])["Status"] == "Completed"
    # nothing else was kept
    assert package_files(sw, app_id) == [f"{ids['PackageId']}.tar.zst"]


def test_rights_and_unknown_app_or_job(app):
    sw, dev, app_id = app
    blob = make_package()
    outsider = sw.new_user("outsider")
    viewer = sw.new_user("noapi")
    sw.add_member(app_id, viewer, "viewer")
    for env in ("Test", "Acceptance"):
        sw.rights(app_id, viewer, env, "api", revoke=True)
    for api in ("1", "v2"):
        assert_error(upload(sw, None, app_id, blob, api=api), 401)
        assert_error(upload(sw, outsider, app_id, blob, api=api), 403, "NO_ACCESS")
        assert_error(upload(sw, viewer, app_id, blob, api=api), 403, "NO_ACCESS")
        assert_error(upload(sw, dev, "no-such-app", blob, api=api), 404, "APP_NOT_FOUND")
    assert package_files(sw, app_id) == []
    ids = assert_ok(upload(sw, dev, app_id, blob))
    jurl = f"/api/v2/apps/{app_id}/jobs/{ids['JobId']}"
    assert_error(sw.get(jurl, outsider), 403, "NO_ACCESS")
    assert_error(sw.get(jurl), 401)
    assert_error(sw.get(f"/api/v2/apps/{app_id}/jobs/00000000-0000-4000-8000-000000000000", dev),
                 404, "JOB_NOT_FOUND")
    assert_error(sw.get(f"/api/v2/apps/{app_id}/jobs/nope", dev), 404, "JOB_NOT_FOUND")
    # a job id that is not UTF-8 is refused before any lookup (see test_paths.py)
    body = assert_error(sw.get(f"/api/v2/apps/{app_id}/jobs/%FF" + "0" * 35, dev), 400,
                        "INVALID_PARAMETERS")
    assert body["errorMessage"] == "the path segment '\ufffd" + "0" * 35 + "' is not valid UTF-8"
    # the job route is v2 only, and GET is not an upload
    assert_error(sw.get(f"/api/1/apps/{app_id}/jobs/{ids['JobId']}", dev), 404)
    r = sw.get(f"/api/v2/apps/{app_id}/packages/upload", dev)
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in r.headers["Allow"]
    # a job is only found under its own app
    other = sw.new_app("upload-other", [(dev, "developer")])["AppId"]
    assert_error(sw.get(f"/api/v2/apps/{other}/jobs/{ids['JobId']}", dev), 404, "JOB_NOT_FOUND")


def test_uploads_are_audited(app):
    sw, dev, app_id = app
    blob = make_package()
    ok = assert_ok(upload(sw, dev, app_id, blob))
    assert_error(upload(sw, dev, app_id, bad_traversal()[0], api="1"), 400, "INVALID_PACKAGE")
    assert_error(sw.post(f"/api/v2/apps/{app_id}/packages/upload", dev, data=b"x"), 400)
    refused = assert_ok(upload(sw, dev, app_id, bad_device()[0]))  # v2: 200, its job Failed
    entries, intact = sw.audit()
    assert intact
    mine = [e for e in entries if e["app"] == app_id and e["action"] == "package upload"]
    assert [e["result"] for e in mine] == ["ok 200", "error 400", "error 400", "error 400"], mine
    assert all(e["actor"] == dev.email for e in mine)
    assert ok["PackageId"] in mine[0]["detail"] and ok["JobId"] in mine[0]["detail"]
    assert hashlib.sha256(blob).hexdigest() in mine[0]["detail"]
    assert "../evil" in mine[1]["detail"] and "multipart" in mine[2]["detail"]
    assert refused["JobId"] in mine[3]["detail"] and "dev-null" in mine[3]["detail"]


def test_upload_limit(server_factory, tmp_path):
    """--max-upload bounds uploads (413, with or without a Content-Length); --max-push does
    not apply to them."""
    srv = server_factory(extra_args=["--max-upload", "65536", "--max-push", "4096"])
    s = Slipway(srv, str(tmp_path))
    dev, app = s.new_dev_app("limit")
    app_id = app["AppId"]
    big = make_package(files=FILES + [("big.bin", "file", os.urandom(100_000), 0o644)])
    assert len(big) > 65536
    for api in ("1", "v2"):
        assert_error(upload(s, dev, app_id, big, api=api), 413, "REQUEST_TOO_LARGE")
    body, ctype = multipart([("file", "big", big)])

    def chunks():
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]
    assert_error(s.post(f"/api/v2/apps/{app_id}/packages/upload", dev, data=chunks(),
                        headers={"Content-Type": ctype}), 413, "REQUEST_TOO_LARGE")
    assert package_files(s, app_id) == []
    small = make_package()
    assert 4096 < len(small) < 60000
    ids = assert_ok(upload(s, dev, app_id, small))
    assert job(s, dev, app_id, ids["JobId"])["Status"] == "Completed"
    assert srv.stop() == 0
