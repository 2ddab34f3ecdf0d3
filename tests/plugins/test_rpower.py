"""rpower / rsetboot / fence_node against real BMCs: a pyghmi fleet and ipmi_sim."""
import shutil
import socket
import time

import pytest
from support.cluster import behind_fleet, build, nodes, site

from xcatd.base.request import Request
from xcatd.daemon.pipeline import run_local
from xcatd.hardware import registry
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
    # xCAT's words for bad credentials, as its client prints them (its own tests grep this)
    assert "n5: Error: ERROR: Incorrect password provided" in errors
    assert "secret" not in r.err


def test_boot_device(fleet_cluster):
    mn = fleet_cluster
    assert mn.ok("rsetboot", "n1", "stat").lines == ["n1: boot override inactive"]
    assert mn.ok("rsetboot", "n1", "net").lines == ["n1: Network"]
    assert mn.ok("rsetboot", "n1", "stat").lines == ["n1: Network"]
    assert mn.ok("rsetboot", "n1").lines == ["n1: Network"]  # no word: stat, as in xCAT


@pytest.mark.parametrize("word", ["default", "def", "DEFAULT"])
def test_rsetboot_default_and_def_both_restore_the_bios_order(fleet_cluster, word):
    mn = fleet_cluster
    assert mn.ok("rsetboot", "n2", "hd").lines == ["n2: Hard Drive"]
    assert mn.ok("rsetboot", "n2", word).lines == ["n2: boot override inactive"]
    assert mn.ok("rsetboot", "n2", "stat").lines == ["n2: boot override inactive"]


@pytest.mark.parametrize("word", ["dsdf", "usb", "boot"])
def test_an_unknown_rsetboot_action_is_xcats_unsupported_command(fleet_cluster, word):
    mn = fleet_cluster
    mn.ok("rsetboot", "n3", "cd")
    r = mn.run("rsetboot", "n3", word)
    assert (r.rc, r.out) == (1, "")
    assert r.err.startswith(f"Error: Unsupported command: rsetboot {word} (use "), r.err
    assert len(r.err.splitlines()) == 1
    assert mn.ok("rsetboot", "n3", "stat").lines == ["n3: CD/DVD"]  # the BMC was not asked


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


@pytest.mark.parametrize("cmd, args", [("rpower", {"action": "stat"}),
                                       ("rpower", {"action": "boot"}),
                                       ("rinv", {"what": "model"})])
def test_closing_a_request_cancels_its_bmc_work(mn_sqlite, cmd, args):
    """job cancel closes the handler's generator between two responses: the close reaches
    the IPMI driver through rpower (and its boot helper) or rinv, the BMC logins still in
    flight stop and their site.ipmimaxp slots are free at once."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.setblocking(False)
    port = silent.getsockname()[1]

    def received() -> int:
        n = 0
        while True:
            try:
                silent.recv(4096)
            except BlockingIOError:
                return n
            n += 1
    try:
        with Fleet(count=1, badpass=[0]) as fleet:
            # the silent BMC's logins would go on for 10 s; three users, three logins
            build(mn_sqlite, site(ipmimaxp="4", ipmitimeout="0.5", ipmiretries="20"),
                  nodes("bad", "nodehm.mgt=ipmi", "ipmi.bmc=127.0.0.1",
                        f"ipmi.bmcport={fleet.port(0)}", "ipmi.username=admin",
                        "ipmi.password=secret"),
                  *(nodes(f"s{i}", "nodehm.mgt=ipmi", "ipmi.bmc=127.0.0.1",
                          f"ipmi.bmcport={port}", f"ipmi.username=u{i}", "ipmi.password=x")
                    for i in range(1, 4)))
            responses = run_local(Request(cmd, "bad,s1-s3", args=args), mn_sqlite.paths)
            first = next(r for r in responses if r.node)
            assert (first.node, first.error) == ("bad", "ERROR: Incorrect password provided")
            responses.close()
            gate = registry.driver("ipmi")._gate(4)
            assert gate._value == 4
            received()
            time.sleep(2.0)  # four retransmission periods
            assert received() == 0
    finally:
        silent.close()
