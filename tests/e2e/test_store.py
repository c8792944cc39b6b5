"""The data directory: an SQLite database in WAL mode with a schema version; restarts keep data."""

import os
import sqlite3

import requests

from conftest import ADMIN_EMAIL, Slipway, assert_ok, unique, unique_email


def open_ro(data_dir):
    db = os.path.join(data_dir, "slipway.db")
    assert os.path.isfile(db), f"no database at {db}"
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def test_database_is_wal_with_a_schema_version(sw):
    con = open_ro(sw.data)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] >= 1
        # the running server's users are in it
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables, "the database has no tables"
    finally:
        con.close()


def test_second_start_keeps_data_and_makes_no_second_admin(server_factory, tmp_path):
    data = str(tmp_path / "data")
    first = server_factory(data)
    sw1 = Slipway(first, str(tmp_path))
    dev, app = sw1.new_dev_app("keep")
    assert first.stop() == 0

    second = server_factory(data)
    assert "first start" not in second.stdout_before_ready
    assert second.admin_key is None, "a second admin key was printed on the second start"
    # the old admin key and the user's key still work; the app is still there
    admin_h = {"Mendix-Username": ADMIN_EMAIL, "Mendix-ApiKey": first.admin_key}
    users = assert_ok(requests.get(second.base + "/api/slipway/users", headers=admin_h, timeout=10))
    admins = [u for u in users if u["admin"]]
    assert [u["email"] for u in admins] == [ADMIN_EMAIL]
    assert dev.email in [u["email"] for u in users]
    got = assert_ok(requests.get(f"{second.base}/api/1/apps/{app['AppId']}",
                                 headers=dev.key_headers(), timeout=10))
    assert got["ProjectId"] == app["ProjectId"]
    # and the CLI sees one admin too
    out = sw1.cli_out("user list")
    assert sum(1 for ln in out.splitlines() if ln.endswith("\tadmin")) == 1, out
    assert second.stop() == 0


def test_admin_email_option_on_first_start(server_factory):
    email = unique_email("boss")
    srv = server_factory(extra_args=["--admin-email", email])
    assert email in srv.stdout_before_ready
    me = assert_ok(requests.get(srv.base + "/api/slipway/me", timeout=10,
                                headers={"Mendix-Username": email, "Mendix-ApiKey": srv.admin_key}))
    assert me["email"] == email and me["admin"] is True
    assert srv.stop() == 0


def test_cli_on_a_missing_data_dir_fails(sw, tmp_path):
    p = sw.cli("user list", check=False, data=str(tmp_path / unique("missing")))
    assert p.returncode != 0
    assert "no data directory" in p.stderr


def test_one_server_per_data_directory(server_factory, tmp_path):
    """A second server on the same data directory refuses to start (it would fail the first
    one's running builds when it cleans up at start)."""
    import subprocess
    from conftest import BIN
    first = server_factory()
    p = subprocess.run([BIN, "serve", "--data", first.data, "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "another 'slipway serve' runs on the data directory" in p.stderr
    assert "listening" not in p.stdout
    assert first.stop() == 0
