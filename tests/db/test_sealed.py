"""Secrets at rest: secret columns are stored sealed under the root's master key, read clear
by pyxcat, selected on in Python; a clear database is sealed by xcatconfig; a value that does
not open is an error naming the column."""
from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import initialize
from xcatd.db.database import Database, DBError, seal_clear_values, where_clause
from xcatd.db.sealed import PREFIX, SECRETS, Sealer, ensure_master_key, is_sealed, key_path
from xcatd.lab.daemon import DaemonThread

SECRET = "s3cret"


def raw(db: Database, table: str, column: str) -> list:
    """The stored values, read with SQL past the sealer."""
    with db.engine.connect() as conn:
        return [v for (v,) in conn.execute(sa.text(f'SELECT "{column}" FROM "{table}"'))]


def set_raw(db: Database, table: str, column: str, value: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text(f'UPDATE "{table}" SET "{column}" = :v'), {"v": value})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def root(request, tmp_path):
    """A root fresh from xcatconfig, on each backend (the Database API only, no commands)."""
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_server").new_database()
    paths = Paths(tmp_path / "root")
    paths.root.mkdir()
    initialize(paths, db_url=url)
    yield paths
    Database.open(paths).dispose()


def add_secrets(db: Database) -> None:
    with db.begin() as conn:
        db.set_rows(conn, "passwd", {("system", "root"): {"password": SECRET},
                                     ("ipmi", "ADMIN"): {"password": "bmcpw"},
                                     ("omapi", "xcat_key"): {"password": None}})
        db.set_rows(conn, "nodelist", {("n1",): {"groups": "compute,all"}})
        db.set_rows(conn, "ipmi", {("compute",): {"bmc": "10.0.0.1", "password": "grouppw"},
                                   ("n1",): {"username": "root"}})


# ---- the command path -----------------------------------------------------------------------
def test_chtab_stores_sealed_and_tabdump_shows_it_clear(mn):
    mn.ok("chtab", "key=system", "passwd.username=root", f"passwd.password={SECRET}")
    stored = raw(mn.db, "passwd", "password")
    assert len(stored) == 1 and stored[0].startswith(PREFIX) and SECRET not in stored[0]
    assert mn.ok("tabdump", "--show-secrets", "passwd").lines[1:] == [
        f'"system","root","{SECRET}",,,,']
    assert mn.ok("gettab", "--show-secrets", "key=system", "passwd.password").lines == [SECRET]
    assert stat.S_IMODE(key_path(mn.paths).stat().st_mode) == 0o600


def test_no_byte_of_the_sqlite_files_holds_the_clear_password(mn_sqlite):
    mn_sqlite.ok("mkdef", "n1", "groups=all", "mgt=ipmi", "bmc=10.1.0.1",
                 f"bmcpassword={SECRET}")
    mn_sqlite.ok("chtab", "key=system", "passwd.username=root", "passwd.password=rootpw")
    path = mn_sqlite.db.engine.url.database
    data = b"".join(Path(p).read_bytes() for p in (path, path + "-wal") if os.path.exists(p))
    assert PREFIX.encode() in data
    assert SECRET.encode() not in data and b"rootpw" not in data
    assert mn_sqlite.ok("nodels", "--show-secrets", "n1", "bmcpassword").lines == [
        f"n1: {SECRET}"]


def test_dumpxcatdb_writes_clear_values_while_the_database_holds_sealed_ones(mn_sqlite,
                                                                             tmp_path):
    mn_sqlite.ok("chtab", "key=system", "passwd.username=root", f"passwd.password={SECRET}")
    mn_sqlite.ok("dumpxCATdb", "-p", str(tmp_path / "dump"))
    assert f'"system","root","{SECRET}",,,,' in (tmp_path / "dump/passwd.csv").read_text()
    assert SECRET not in raw(mn_sqlite.db, "passwd", "password")[0]
    mn_sqlite.ok("restorexCATdb", "-p", str(tmp_path / "dump"))
    assert is_sealed(raw(mn_sqlite.db, "passwd", "password")[0])
    assert mn_sqlite.ok("gettab", "--show-secrets", "key=system",
                        "passwd.password").lines == [SECRET]


def test_selections_on_a_secret_column_work_through_the_commands(mn_sqlite):
    mn_sqlite.ok("chtab", "key=system", "passwd.username=root", f"passwd.password={SECRET}")
    mn_sqlite.ok("chtab", "key=ipmi", "passwd.username=ADMIN", "passwd.password=other")
    assert mn_sqlite.ok("tabdump", "-w", f"password=={SECRET}", "passwd").lines[1:] == [
        '"system","root","********",,,,']
    assert mn_sqlite.ok("gettab", f"password={SECRET}", "passwd.key").lines == ["system"]
    mn_sqlite.ok("chtab", f"password={SECRET}", "passwd.comments=found")
    assert mn_sqlite.ok("gettab", "key=system", "passwd.comments").lines == ["found"]
    mn_sqlite.ok("chtab", "-d", "password=other", "passwd")
    assert mn_sqlite.ok("tabdump", "passwd").lines[1:] == ['"system","root","********",,,"found",']


# ---- the Database API -----------------------------------------------------------------------
def test_every_write_seals_and_every_read_opens(root):
    db = Database.open(root)
    add_secrets(db)
    stored = raw(db, "passwd", "password")
    assert sum(map(is_sealed, stored)) == 2 and None in stored
    assert not any(SECRET in (v or "") for v in stored)
    rows = {r["key"]: r["password"] for r in db.rows("passwd")}
    assert rows == {"system": SECRET, "ipmi": "bmcpw", "omapi": None}
    got = db.resolve(["n1"], {"ipmi": ["password", "bmc"]}, blame=True)["n1"]
    assert got[("ipmi", "password")] == ("grouppw", "compute")
    with db.begin() as conn:
        db.replace_rows(conn, "websrv", [{"node": "w1", "password": "webpw"}])
        db.insert_row(conn, "switches", {"switch": "sw1", "password": "swpw"})
        db.update_match(conn, "ipmi", {"node": "n1"}, {"password": "ownpw"})
    assert is_sealed(raw(db, "websrv", "password")[0])
    assert is_sealed(raw(db, "switches", "password")[0])
    assert db.resolve(["n1"], {"ipmi": ["password"]})["n1"][("ipmi", "password")] == "ownpw"
    assert db.match("switches", {"switch": "sw1"})[0]["password"] == "swpw"


def test_selections_on_a_secret_column_compare_clear_values(root):
    db = Database.open(root)
    add_secrets(db)

    def keys(*exprs):
        return sorted(r["key"] for r in db.rows("passwd", where=where_clause("passwd", exprs)))

    assert [r["key"] for r in db.match("passwd", {"password": SECRET})] == ["system"]
    assert db.match("passwd", {"password": SECRET, "key": "ipmi"}) == []
    assert keys(f"password=={SECRET}") == ["system"]
    assert keys("password!=bmcpw") == ["omapi", "system"]       # NULL is not bmcpw
    assert keys("password=~s3%") == ["system"]
    assert keys("password=~_mcp_") == ["ipmi"]
    assert keys("password!~%pw") == ["omapi", "system"]
    assert keys("password>c", "key!=omapi") == ["system"]
    with db.begin() as conn:
        db.set_rows(conn, "passwd", {("system", "root"): {"disable": "1"}})
    assert keys(f"password=={SECRET}") == []                    # disabled rows left out
    with db.begin() as conn:
        assert db.has_value(conn, "passwd", "password", SECRET)
        assert not db.has_value(conn, "passwd", "password", "nope")
        assert db.update_match(conn, "passwd", {"password": "bmcpw"}, {"password": "newpw"}) == 1
        assert db.delete_match(conn, "passwd", {"password": SECRET}) == 1
    assert {r["key"]: r["password"] for r in db.rows("passwd")} == {"ipmi": "newpw",
                                                                    "omapi": None}
    assert sum(map(is_sealed, raw(db, "passwd", "password"))) == 1


def test_a_tampered_value_is_an_error_naming_the_column_and_row(root):
    db = Database.open(root)
    add_secrets(db)
    with db.engine.connect() as conn:
        token = conn.execute(sa.text("SELECT password FROM ipmi WHERE node = 'compute'")
                             ).scalar_one()
    with db.engine.begin() as conn:
        flipped = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
        conn.execute(sa.text("UPDATE ipmi SET password = :v WHERE node = 'compute'"),
                     {"v": flipped})
    for read in (lambda: db.rows("ipmi"),
                 lambda: db.resolve(["n1"], {"ipmi": ["password"]})):
        with pytest.raises(DBError) as exc:
            read()
        assert "cannot decrypt ipmi.password of compute" in str(exc.value)
        assert str(key_path(root)) in str(exc.value)


def test_a_wrong_or_missing_master_key_is_an_error_naming_the_key_file(root):
    db = Database.open(root)
    add_secrets(db)
    db.dispose()
    key_path(root).write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    with pytest.raises(DBError) as exc:
        Database.open(root).rows("passwd")
    message = str(exc.value)
    assert message.startswith("cannot decrypt passwd.password of ")
    assert f": the master key {key_path(root)} is missing or is not this database's" in message
    Database.open(root).dispose()
    key_path(root).unlink()
    with pytest.raises(DBError) as exc:
        Database.open(root).match("passwd", {"key": "system"})
    assert str(exc.value) == (
        f"cannot decrypt passwd.password of system,root: the master key {key_path(root)} is "
        "missing or is not this database's (or the stored value was altered)")


def test_a_damaged_key_file_is_an_error_that_does_not_show_it(root):
    Database.open(root).dispose()
    good = key_path(root).read_bytes()
    key_path(root).write_text("c2hvcnQ=\n")
    with pytest.raises(DBError) as exc:
        Database.open(root)
    assert str(exc.value) == (f"The master key {key_path(root)} is damaged: it is not one "
                              "base64 line of 32 bytes")
    key_path(root).write_bytes(good)


def test_a_value_sealed_for_one_column_does_not_open_in_another(root):
    db = Database.open(root)
    add_secrets(db)
    token = next(v for v in raw(db, "ipmi", "password") if v)
    set_raw(db, "passwd", "password", token)
    with pytest.raises(DBError, match=r"cannot decrypt passwd\.password"):
        db.rows("passwd")
    sealer = Sealer(os.urandom(32))
    with pytest.raises(DBError, match=r"cannot decrypt passwd\.password"):
        sealer.unseal("passwd", "password", sealer.seal("ipmi", "password", SECRET))


def test_sealing_is_randomised_and_a_clear_value_reads_as_it_is():
    key = os.urandom(32)
    sealer = Sealer(key)
    a, b = (sealer.seal("ipmi", "password", SECRET) for _ in range(2))
    assert a != b and {sealer.unseal("ipmi", "password", t) for t in (a, b)} == {SECRET}
    assert sealer.unseal("ipmi", "password", "legacy") == "legacy"
    assert sealer.seal("ipmi", "password", "") == "" and sealer.seal("ipmi", "password",
                                                                    None) is None
    shown = repr(sealer) + repr(vars(sealer))
    assert base64.b64encode(key).decode() not in shown and key.hex() not in shown


# ---- the master key and the upgrade path ----------------------------------------------------
def test_the_master_key_is_made_once_private_and_never_replaced(tmp_path):
    paths = Paths(tmp_path)
    assert ensure_master_key(paths) is True
    first = key_path(paths).read_bytes()
    assert stat.S_IMODE(key_path(paths).stat().st_mode) == 0o600
    assert len(base64.b64decode(first.strip(), validate=True)) == 32
    os.chmod(key_path(paths), 0o644)
    assert ensure_master_key(paths) is False
    assert key_path(paths).read_bytes() == first
    assert stat.S_IMODE(key_path(paths).stat().st_mode) == 0o600
    assert [p.name for p in key_path(paths).parent.iterdir()] == ["masterkey"]


def test_xcatconfig_seals_a_clear_database_once(root):
    clear = Database(Database.open(root).url)   # a pyxcat from before sealing
    add_secrets(clear)
    assert SECRET in raw(clear, "passwd", "password")
    done = initialize(root)
    assert "Encrypted 3 secret values" in done   # system, ipmi in passwd; compute in ipmi
    stored = raw(clear, "passwd", "password") + raw(clear, "ipmi", "password")
    assert sum(map(is_sealed, stored)) == 3 and not any(SECRET in v for v in stored if v)
    db = Database.open(root)
    assert db.match("passwd", {"key": "system"})[0]["password"] == SECRET
    assert db.resolve(["n1"], {"ipmi": ["password"]})["n1"][("ipmi", "password")] == "grouppw"
    again = initialize(root)
    assert not [line for line in again if line.startswith("Encrypted")]
    assert raw(clear, "passwd", "password") + raw(clear, "ipmi", "password") == stored
    assert seal_clear_values(db) == 0
    clear.engine.dispose()


def test_an_upgrade_makes_the_key_and_a_database_opened_before_starts_sealing(root):
    Database.open(root).dispose()
    key_path(root).unlink()               # as a root set up before secrets were sealed
    old = Database.open(root)
    assert not old.sealer.has_key
    add_secrets(old)
    assert SECRET in raw(old, "passwd", "password")
    done = initialize(root)
    assert "Created the master key for secrets at rest" in done
    assert "Encrypted 3 secret values" in done
    assert Database.open(root) is old and old.sealer.has_key
    with old.begin() as conn:
        old.set_rows(conn, "passwd", {("system", "root"): {"password": "changed"}})
    assert all(v is None or is_sealed(v) for v in raw(old, "passwd", "password"))
    assert old.match("passwd", {"key": "system"})[0]["password"] == "changed"


def test_xcatd_start_makes_the_key_and_seals_a_clear_database(root):
    Database.open(root).dispose()
    key_path(root).unlink()
    old = Database.open(root)
    add_secrets(old)
    thread = DaemonThread(root)
    thread.start()
    try:
        assert stat.S_IMODE(key_path(root).stat().st_mode) == 0o600
        stored = raw(old, "passwd", "password") + raw(old, "ipmi", "password")
        assert sum(map(is_sealed, stored)) == 3
        assert old.match("passwd", {"password": SECRET})[0]["key"] == "system"
    finally:
        thread.stop()


def test_without_a_key_values_are_written_clear_and_sealing_is_refused(root):
    db = Database(Database.open(root).url)
    with db.begin() as conn:
        db.set_rows(conn, "passwd", {("system", "root"): {"password": SECRET}})
    assert raw(db, "passwd", "password") == [SECRET]
    assert db.match("passwd", {"password": SECRET})[0]["key"] == "system"
    with pytest.raises(DBError, match="no master key"):
        seal_clear_values(db)
    db.engine.dispose()


def test_only_tables_with_secret_columns_are_sealed():
    assert SECRETS["passwd"] == ("password",) and SECRETS["pdu"] == (
        "authkey", "community", "password", "privkey")
    assert "nodehm" not in SECRETS and "site" not in SECRETS
