"""tabedit (dump, edit, restore) and xcatconfig (idempotent set-up)."""
from __future__ import annotations

import os
import stat

import pytest

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import initialize


@pytest.fixture
def editor(tmp_path, monkeypatch):
    """An 'editor' that applies a sed expression, like an admin changing one line."""
    def use(expr: str) -> None:
        script = tmp_path / "ed.sh"
        script.write_text(f"#!/bin/sh\nsed -i '{expr}' \"$1\"\n")
        script.chmod(0o755)
        monkeypatch.setenv("TABEDITOR", str(script))
    return use


def test_tabedit_restores_the_edited_table(mn_sqlite, editor):
    mn_sqlite.ok("nodeadd", "n1,n2", "groups=compute")
    editor('s/"n2","compute"/"n2","gpu"/')
    mn_sqlite.ok("tabedit", "nodelist")
    assert mn_sqlite.ok("nodels", "n2", "groups").out == "n2: gpu\n"
    assert mn_sqlite.ok("nodels", "n1", "groups").out == "n1: compute\n"


def test_tabedit_without_changes_restores_nothing(mn_sqlite, editor):
    mn_sqlite.ok("nodeadd", "n1", "groups=compute")
    editor("s/nomatch/x/")
    r = mn_sqlite.ok("tabedit", "nodelist")
    assert "No file modifications detected" in r.out


def test_tabedit_with_a_broken_edit_keeps_the_table(mn_sqlite, editor):
    mn_sqlite.ok("nodeadd", "n1", "groups=compute")
    before = mn_sqlite.ok("tabdump", "nodelist").out
    editor('s/^#node,/#node,nosuchcolumn,/')
    r = mn_sqlite.run("tabedit", "nodelist")
    assert r.rc == 1 and "nosuchcolumn" in r.err
    assert mn_sqlite.ok("tabdump", "nodelist").out == before


def test_tabedit_keeps_passwords_it_showed_masked(mn_sqlite, editor):
    mn_sqlite.ok("chtab", "key=ipmi", "passwd.username=ADMIN", "passwd.password=s3cret")
    editor('s/"ADMIN"/"root"/')
    mn_sqlite.ok("tabedit", "passwd")
    r = mn_sqlite.ok("gettab", "--show-secrets", "key=ipmi", "passwd.username",
                     "passwd.password")
    assert sorted(r.lines) == ["passwd.password: s3cret", "passwd.username: root"]


def test_tabedit_refuses_log_tables(mn_sqlite):
    r = mn_sqlite.run("tabedit", "auditlog")
    assert r.rc == 1 and "tabprune" in r.err


def test_xcatconfig_is_idempotent_and_keeps_admin_values(tmp_path):
    paths = Paths(tmp_path)
    initialize(paths)
    from xcatd.db.database import Database
    db = Database.open(paths)
    with db.begin() as conn:
        db.set_rows(conn, "site", {("domain",): {"value": "hpc.example"}})
    again = initialize(paths)
    assert not any("site defaults" in line for line in again)
    assert db.site()["domain"] == "hpc.example"
    initialize(paths, force=True)
    assert db.site()["domain"] != "hpc.example"
    db.dispose()


def test_xcatconfig_writes_cfgloc_readable_by_owner_only(tmp_path):
    paths = Paths(tmp_path)
    initialize(paths)
    mode = stat.S_IMODE(os.stat(paths.cfgloc).st_mode)
    assert mode == 0o600
    assert paths.cfgloc.read_text().strip() == paths.default_db_url


def test_xcatconfig_ships_xcatlib_into_the_postscripts_directory(tmp_path):
    paths = Paths(tmp_path)
    done = initialize(paths)
    lib = tmp_path / "install/postscripts/xcatlib.sh"
    assert f"Wrote {lib}" in done
    assert stat.S_IMODE(lib.stat().st_mode) == 0o755 and "xcat_fetch" in lib.read_text()
    assert f"Wrote {lib}" not in initialize(paths)  # unchanged: not rewritten
    lib.write_text("# an old copy\n")
    assert f"Wrote {lib}" in initialize(paths) and "xcat_fetch" in lib.read_text()


def test_commands_on_an_uninitialised_root_say_run_xcatconfig(bare_root):
    r = bare_root.run("nodels")
    assert r.rc == 1 and "run xcatconfig" in r.err
    assert not (bare_root.root / "var/lib/xcat/xcat.sqlite").exists()


def test_xcatconfig_command_prints_what_it_did(bare_root):
    r = bare_root.run("xcatconfig")
    assert r.rc == 0 and "Management node ready" in r.out
    assert bare_root.run("nodels").rc == 0
