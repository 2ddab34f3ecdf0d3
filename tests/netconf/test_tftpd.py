"""TFTP on this node: who serves it, where, and tftpd-hpa's configuration, which xcatconfig
writes only when it changes and never with a bad setting."""
from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest

from xcatd.base.paths import Paths
from xcatd.base.site import SiteValues
from xcatd.daemon.initialize import initialize
from xcatd.db.database import Database
from xcatd.netconf import tftpd
from xcatd.netconf.tftpd import tftp_bind


@pytest.mark.parametrize("text,expected", [
    ("", (None, 69)), ("10.0.0.1", ("10.0.0.1", 69)), ("10.0.0.1:6969", ("10.0.0.1", 6969)),
    (":6969", (None, 6969)), ("[fd00::1]:70", ("fd00::1", 70)), ("[fd00::1]", ("fd00::1", 69)),
    ("fd00::1", ("fd00::1", 69)), ("none", None),
])
def test_parse_bind(text, expected):
    assert tftp_bind(SiteValues({"tftpbind": text})) == expected


@pytest.mark.parametrize("text", ["10.0.0.1:x", "10.0.0.1:70000", "[fd00::1]x"])
def test_parse_bind_names_the_bad_setting(text):
    with pytest.raises(ValueError, match=r"site\.tftpbind"):
        tftp_bind(SiteValues({"tftpbind": text}))


@pytest.mark.parametrize("site,installed,mode", [
    ({}, True, "tftpd-hpa"), ({}, False, "embedded"),
    ({"tftpserver": "auto"}, False, "embedded"), ({"tftpserver": "embedded"}, True, "embedded"),
    ({"tftpserver": "tftpd-hpa"}, False, "tftpd-hpa"), ({"tftpserver": "none"}, False, "none"),
    ({"tftpbind": "none"}, False, "none"),
])
def test_who_serves_tftp(monkeypatch, site, installed, mode):
    monkeypatch.setattr(tftpd, "tftpd_hpa_installed", lambda: installed)
    assert tftpd.tftp_mode(SiteValues(site)) == mode


# ---- xcatconfig -----------------------------------------------------------------------------
def read_defaults(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = shlex.split(value)[0]
    return values


def set_site(paths: Paths, **values: str) -> None:
    db = Database.open(paths)
    with db.begin() as conn:
        db.set_rows(conn, "site", {(k,): {"value": v} for k, v in values.items()})
    db.dispose()


def test_xcatconfig_writes_tftpd_hpa_configuration_only_when_it_changes(tmp_path):
    paths = Paths(tmp_path / "root")
    paths.root.mkdir()
    done = initialize(paths)
    conf = paths.under("/etc/default/tftpd-hpa")
    assert read_defaults(conf) == {
        "TFTP_USERNAME": "tftp", "TFTP_DIRECTORY": str(paths.root / "tftpboot"),
        "TFTP_ADDRESS": ":69", "TFTP_OPTIONS": "--secure --blocksize 1468"}
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    assert any(str(conf) in line and "not restarted" in line for line in done)
    before = conf.stat().st_mtime_ns
    assert not any("tftpd-hpa" in line for line in initialize(paths))
    assert conf.stat().st_mtime_ns == before

    set_site(paths, tftpdir="/srv/boot", tftpbind="10.0.0.1", tftpblksize="1400")
    done = initialize(paths)
    tree = paths.root / "srv/boot"
    assert f"Created {tree}" in done and stat.S_IMODE(tree.stat().st_mode) == 0o755
    assert read_defaults(conf) == {
        "TFTP_USERNAME": "tftp", "TFTP_DIRECTORY": str(tree), "TFTP_ADDRESS": "10.0.0.1:69",
        "TFTP_OPTIONS": "--secure --blocksize 1400"}


@pytest.mark.parametrize("key,value", [("tftpdir", "/srv/my boot"), ("tftpdir", '/x"$y'),
                                       ("tftpbind", "10.0.0.1:port"), ("tftpblksize", "100")])
def test_xcatconfig_refuses_a_bad_setting_and_keeps_the_file(tmp_path, key, value):
    paths = Paths(tmp_path / "root")
    paths.root.mkdir()
    initialize(paths)
    conf = paths.under("/etc/default/tftpd-hpa")
    before = conf.read_text()
    set_site(paths, **{key: value})
    with pytest.raises(ValueError, match=rf"site\.{key}"):
        initialize(paths)
    assert conf.read_text() == before
    assert not (paths.root / "srv").exists()


def test_xcatconfig_makes_the_tree_readable_for_tftpd(tmp_path):
    paths = Paths(tmp_path / "root")
    paths.root.mkdir()
    initialize(paths)
    tree = paths.root / "tftpboot"
    tree.chmod(0o700)
    assert any("mode 0755" in line for line in initialize(paths))
    assert stat.S_IMODE(tree.stat().st_mode) == 0o755
