"""Helpers the build tests share: a slipway.yml, a commit pushed, a build asked for, polled,
its log and details read, a downloaded package unpacked, processes found by command line."""
import io
import subprocess
import tarfile

from conftest import assert_ok, wait_for


def yml(steps, timeout=None, include=("out/",)):
    """A slipway.yml with these build steps (each a YAML single-quoted string)."""
    text = "version: 1\nruntime: shell\nbuild:\n  steps:\n"
    text += "".join("    - '" + s.replace("'", "''") + "'\n" for s in steps)
    if timeout:
        text += f"  timeout: {timeout}\n"
    text += "package:\n  include:\n" + "".join(f"    - {i}\n" for i in include)
    return text.encode()


TRIVIAL = yml(["mkdir -p out", "echo hello > out/hello.txt"])


def commit(repo, files, branch="main"):
    ids = repo.commits(1, branch, files=files)
    repo.push(branch)
    return ids[-1]


def start(sw, dev, app_id, revision, version="1.0.0", branch="main"):
    r = sw.post(f"/api/1/apps/{app_id}/packages", dev,
                json={"Branch": branch, "Revision": str(revision), "Version": version,
                      "Description": "e2e"})
    return assert_ok(r, 201)["PackageId"]


def package(sw, dev, app_id, pid, query=""):
    return assert_ok(sw.get(f"/api/1/apps/{app_id}/packages/{pid}{query}", dev))


def details(sw, dev, app_id, pid):
    return assert_ok(sw.get(f"/api/slipway/apps/{app_id}/packages/{pid}", dev))


def wait_done(sw, dev, app_id, pid, timeout=90):
    def done():
        p = package(sw, dev, app_id, pid)
        return p if p["Status"] in ("Succeeded", "Failed") else None
    return wait_for(done, timeout=timeout, interval=0.02, what=f"build {pid}")


def build_log(sw, dev, app_id, pid):
    r = sw.get(f"/api/slipway/apps/{app_id}/packages/{pid}/log", dev)
    assert r.status_code == 200, r.text
    return r.text


def head_number(sw, dev, app_id, branch="main"):
    return assert_ok(sw.get(f"/api/1/apps/{app_id}/branches/{branch}", dev))["LatestRevisionNumber"]


def untar(blob):
    p = subprocess.run(["zstd", "-dcq"], input=blob, capture_output=True, check=True)
    return tarfile.open(fileobj=io.BytesIO(p.stdout))


def processes_matching(text):
    """Live processes whose command line contains text (zombies have none, so never match)."""
    p = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split() if x]
