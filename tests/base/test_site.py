"""Typed site values: one reading of each kind of value, and a bad value is an error that names
the key and the value, never a traceback."""
from __future__ import annotations

import pytest

from xcatd.base.paths import Paths
from xcatd.base.site import SiteValueError, SiteValues


@pytest.mark.parametrize("values,key,default,want", [
    ({}, "httpport", 80, 80),
    ({"httpport": "8080"}, "httpport", 80, 8080),
    ({"httpport": " 8080 "}, "httpport", 80, 8080),
    ({"httpport": ""}, "httpport", 80, 80),
])
def test_ports(values, key, default, want):
    assert SiteValues(values).port(key, default) == want


@pytest.mark.parametrize("value", ["8o", "0", "65536", "-1", "80.5"])
def test_a_bad_port_names_the_key_and_the_value(value):
    with pytest.raises(SiteValueError, match=rf"^site\.httpport '{value}' is not a port"):
        SiteValues({"httpport": value}).httpport()


@pytest.mark.parametrize("value,want", [
    ("y", True), ("yes", True), ("1", True), ("TRUE", True), ("on", True),
    ("n", False), ("no", False), ("0", False), ("off", False), ("False", False)])
def test_flags(value, want):
    assert SiteValues({"dhcpsetup": value}).flag("dhcpsetup", not want) is want


def test_an_unset_flag_is_its_default_and_a_bad_one_an_error():
    assert SiteValues({}).flag("dhcpsetup", True) is True
    with pytest.raises(SiteValueError, match=r"site\.dhcpsetup 'maybe' is not yes or no"):
        SiteValues({"dhcpsetup": "maybe"}).flag("dhcpsetup", True)


def test_numbers_have_bounds():
    site = SiteValues({"ipmitimeout": "0.05", "maxinstallboots": "x", "ipmimaxp": "0"})
    assert site.number("ipmitimeout", 2.0) == 0.05
    with pytest.raises(SiteValueError, match=r"must be at least 0\.1"):
        site.number("ipmitimeout", 2.0, low=0.1)
    with pytest.raises(SiteValueError, match="'x' is not a whole number"):
        site.integer("maxinstallboots", 3)
    with pytest.raises(SiteValueError, match="'nan' is not a number"):
        SiteValues({"t": "nan"}).number("t", 1.0)


@pytest.mark.parametrize("value,host,want", [
    ("", None, (None, 80)), ("", "10.0.0.1", ("10.0.0.1", 80)), ("", "0.0.0.0", (None, 80)),
    ("10.0.0.2", None, ("10.0.0.2", 80)), ("10.0.0.2:81", None, ("10.0.0.2", 81)),
    (":81", "10.0.0.1", (None, 81)), ("[::1]:82", None, ("::1", 82)), ("[::1]", None, ("::1", 80)),
    ("fd00::1", None, ("fd00::1", 80)), ("none", None, None), ("OFF", None, None),
])
def test_bind_addresses(value, host, want):
    assert SiteValues({"httpbind": value}).bind("httpbind", 80, host) == want


@pytest.mark.parametrize("value", ["10.0.0.1:http", "10.0.0.1:70000", "[::1]x"])
def test_a_bad_bind_address_names_the_setting(value):
    with pytest.raises(SiteValueError, match=r"site\.httpbind"):
        SiteValues({"httpbind": value}).bind("httpbind", 80)


def test_the_directories_every_part_shares_are_under_the_root():
    paths = Paths("/r")
    assert SiteValues({}).installdir(paths) == paths.under("/install")
    assert SiteValues({"tftpdir": "/srv/tftp/"}).tftpdir(paths) == paths.under("/srv/tftp")
    with pytest.raises(SiteValueError, match=r"site\.installdir 'install' is not an absolute"):
        SiteValues({"installdir": "install"}).installdir(paths)


def test_choices_name_what_is_allowed():
    assert SiteValues({"mode": "Static"}).choice("mode", "dhcp", ("dhcp", "static")) == "static"
    with pytest.raises(SiteValueError, match="is not one of dhcp, static"):
        SiteValues({"mode": "dynamic"}).choice("mode", "dhcp", ("dhcp", "static"))
