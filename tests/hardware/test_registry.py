"""Drivers by nodehm.mgt: the entry-point group names them, a third party adds one without
touching the commands, and a driver offers only the interfaces it implements."""
from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from support.cluster import nodes

from xcatd.hardware import registry
from xcatd.hardware.fake import FakeDriver
from xcatd.hardware.interfaces import Driver, PowerInterface
from xcatd.hardware.ipmi import IpmiManager


class PduOnly(Driver, PowerInterface):
    """A PDU: power only, no sensors, no boot device."""

    def power_state(self, targets, limits=None):
        return FakeDriver().power_state(targets)

    def set_power(self, targets, action, limits=None):
        return FakeDriver().set_power(targets, action)


@pytest.fixture
def drivers():
    registry.register("pdu", PduOnly)
    registry.register("fake", FakeDriver)
    yield
    registry.unregister("pdu")
    registry.unregister("fake")


pytestmark = pytest.mark.cluster(
    nodes("p1", "nodehm.mgt=pdu", "ipmi.bmc=10.0.0.1", groups="pdu"),
    nodes("f1", "nodehm.mgt=fake", "ipmi.bmc=10.0.0.2", groups="fake"),
    nodes("k1", "nodehm.mgt=kvm", "ipmi.bmc=10.0.0.3", groups="kvm"))


@pytest.fixture
def managed(cluster_sqlite, drivers):
    return cluster_sqlite


def test_ipmi_is_registered_through_the_entry_point_group():
    found = {ep.name: ep.value for ep in entry_points(group=registry.GROUP)}
    assert found["ipmi"] == "xcatd.hardware.ipmi:IpmiManager"
    assert isinstance(registry.interface("ipmi", PowerInterface), IpmiManager)


def test_a_registered_driver_serves_the_commands_without_changing_them(managed):
    assert managed.ok("rpower", "p1,f1", "on").lines == ["f1: on", "p1: on"]
    assert managed.ok("rpower", "f1", "stat").lines == ["f1: on"]
    assert managed.ok("rsetboot", "f1", "net").lines == ["f1: Network"]


def test_a_driver_without_an_interface_is_that_nodes_error(managed):
    r = managed.run("rvitals", "p1,f1", "temp")
    assert r.rc == 1
    assert r.out.splitlines() == ["f1: CPU Temp: 40 C (104 F)"]
    assert r.err.splitlines() == ["p1: Error: mgt=pdu has no sensors"]
    r = managed.run("rsetboot", "p1", "net")
    assert (r.rc, r.err.strip()) == (1, "p1: Error: mgt=pdu has no boot device control")


def test_a_mgt_with_no_driver_names_the_drivers_there_are(managed):
    r = managed.run("rpower", "k1", "stat")
    assert r.rc == 1 and "k1: Error: mgt=kvm is not supported (hardware drivers:" in r.err
    assert "fake" in r.err and "ipmi" in r.err and "pdu" in r.err


def test_unregistering_a_driver_takes_it_away(managed):
    registry.unregister("pdu")
    assert "mgt=pdu is not supported" in managed.run("rpower", "p1", "stat").err


def test_a_bad_ipmi_setting_is_an_error_naming_it_not_a_silent_default(managed):
    managed.ok("chtab", "key=ipmitimeout", "site.value=2s")
    r = managed.run("rpower", "f1", "stat")
    assert (r.rc, r.err.strip()) == (1, "Error: site.ipmitimeout '2s' is not a number")
    managed.ok("chtab", "key=ipmitimeout", "site.value=0")   # a number: raised to its floor
    assert managed.ok("rpower", "f1", "stat").lines == ["f1: off"]
