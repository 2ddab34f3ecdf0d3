"""rpower / rsetboot / fence_node against real BMCs: a pyghmi fleet and ipmi_sim."""
import shutil

import pytest
from support.cluster import behind_fleet, build, nodes

from xcatd.lab.bmcfleet import Fleet
from xcatd.lab.ipmisim import IpmiSim


@pytest.fixture
def fleet_cluster(mn_daemon):
    with Fleet(count=6, dead=[4], badpass=[5]) as fleet:
        yield build(mn_daemon, nodes("n[0-5]", "nodehm.mgt=ipmi"), behind_fleet(fleet))


def test_power_on_off_and_state_through_xcatd(fleet_cluster):
    mn = fleet_cluster
    # each node prints as soon as its BMC answers: order is not fixed
    assert sorted(mn.ok("rpower", "n[0-2]", "stat").lines) == ["n0: off", "n1: off", "n2: off"]
    r = mn.ok("rpower", "n[0-1]", "on")
    assert sorted(r.lines) == ["n0: on", "n1: on"]
    assert sorted(mn.ok("rpower", "n[0-2]", "state").lines) == ["n0: on", "n1: on", "n2: off"]
    assert mn.ok("nodels", "n0", "nodelist.status").lines == ["n0: powering-on"]
    assert sorted(mn.ok("rpower", "n[0-2]", "boot").lines) == [
        "n0: on reset", "n1: on reset", "n2: off on"]
    assert mn.ok("rpower", "n0", "off").lines == ["n0: off"]
    assert mn.ok("nodels", "n0", "nodelist.status").lines == ["n0: powering-off"]


def test_a_dead_bmc_and_a_wrong_password_are_one_error_line_each(fleet_cluster):
    r = fleet_cluster.run("rpower", "n[0-5]", "stat")
    assert r.rc == 1
    assert sorted(r.lines) == ["n0: off", "n1: off", "n2: off", "n3: off"]
    errors = r.err.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(("n4: Error: ", "n5: Error: "))
    assert {e.split(":")[0] for e in errors} == {"n4", "n5"}
    assert "secret" not in r.err


def test_boot_device(fleet_cluster):
    mn = fleet_cluster
    assert mn.ok("rsetboot", "n1", "stat").lines == ["n1: boot override inactive"]
    assert mn.ok("rsetboot", "n1", "net").lines == ["n1: Network"]
    assert mn.ok("rsetboot", "n1", "stat").lines == ["n1: Network"]
    r = mn.run("rsetboot", "n1", "usb")
    assert r.rc == 1 and "usb" in r.err


def test_bad_input_names_the_problem(fleet_cluster):
    mn = fleet_cluster
    mn.ok("nodeadd", "k1", "groups=other", "nodehm.mgt=kvm")
    mn.ok("nodeadd", "x1", "groups=other")
    r = mn.run("rpower", "k1,x1", "stat")
    assert r.rc == 1 and "k1: Error: mgt=kvm is not supported" in r.err
    assert "x1: Error: no hardware management method" in r.err
    r = mn.run("rpower", "n0", "explode")
    assert r.rc == 1 and "rpower explode" in r.err


def test_fence_node_powers_off_and_verifies(fleet_cluster):
    from xcatd.daemon.fence import fence_node
    mn = fleet_cluster
    mn.ok("rpower", "n2", "on")
    result = fence_node("n2", mn.paths)
    assert result.fenced and result.message == "off"
    assert mn.ok("rpower", "n2", "stat").lines == ["n2: off"]
    dead = fence_node("n4", mn.paths)
    assert not dead.fenced and dead.message


@pytest.mark.skipif(not shutil.which("ipmi_sim") or not shutil.which("ipmitool"),
                    reason="needs openipmi (ipmi_sim) and ipmitool")
def test_rpower_against_ipmi_sim_with_ipmitool_as_judge(mn_daemon, tmp_path):
    with IpmiSim(tmp_path / "bmc") as bmc:
        mn_daemon.ok("nodeadd", "s1", "groups=all", "nodehm.mgt=ipmi", "ipmi.bmc=127.0.0.1",
                     f"ipmi.bmcport={bmc.port}", f"ipmi.username={bmc.user}",
                     f"ipmi.password={bmc.password}")
        assert mn_daemon.ok("rpower", "s1", "on").lines == ["s1: on"]
        assert bmc.ipmitool("chassis", "power", "status").stdout.strip() == \
            "Chassis Power is on"
        assert mn_daemon.ok("rpower", "s1", "off").lines == ["s1: off"]
        assert bmc.ipmitool("chassis", "power", "status").stdout.strip() == \
            "Chassis Power is off"
