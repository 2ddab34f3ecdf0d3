"""The generated-file lifecycle: every changed file of a rebuild is checked on a temporary copy
before any is renamed into place; a failed check changes nothing; an unchanged file is not
rewritten."""
from __future__ import annotations

import os

import pytest

from xcatd.base.files import CheckFailed
from xcatd.base.request import ErrorKind, XcatError
from xcatd.netconf.manager import Generated, install


def refuse(tmp):
    raise CheckFailed("checker rejected the file", f"line 1 of {tmp.name}: no")


def test_nothing_is_written_when_one_file_fails_its_check(tmp_path):
    a, b = tmp_path / "a.conf", tmp_path / "b.zone"
    a.write_text("old a\n")
    with pytest.raises(XcatError) as err:
        install([Generated(a, "new a\n", check=lambda tmp: None),
                 Generated(b, "new b\n", check=refuse)], "test")
    assert err.value.kind == ErrorKind.CONFLICT
    assert "checker rejected the file; the live test files were not changed" in str(err.value)
    assert a.read_text() == "old a\n" and not b.exists()
    left = [n for n in os.listdir(tmp_path) if not n.endswith(".lock")]
    assert left == ["a.conf"]  # no temporary file is left behind


def test_checks_see_the_new_text_and_files_land_with_their_mode(tmp_path):
    seen = []
    path = tmp_path / "sub" / "dhcpd.conf"
    written = install([Generated(path, "subnet x\n", 0o600,
                                 check=lambda tmp: seen.append(tmp.read_text()))], "dhcpd")
    assert written == [path] and seen == ["subnet x\n"]
    assert path.read_text() == "subnet x\n" and (path.stat().st_mode & 0o777) == 0o600


def test_an_unchanged_file_is_neither_checked_nor_rewritten(tmp_path):
    path = tmp_path / "hosts"
    install([Generated(path, "10.0.0.1 n1\n")], "hosts")
    before = path.stat().st_mtime_ns
    assert install([Generated(path, "10.0.0.1 n1\n", check=refuse)], "hosts") == []
    assert path.stat().st_mtime_ns == before


def test_a_single_file_names_itself_in_the_error(tmp_path):
    path = tmp_path / "named.conf"
    with pytest.raises(XcatError, match=f"{path} was not changed"):
        install([Generated(path, "options {}\n", check=refuse)], "bind")
