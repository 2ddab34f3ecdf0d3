"""rinv / rvitals / reventlog through a live xcatd against OpenIPMI's ipmi_sim, with ipmitool
reading the same BMC as the independent judge; the pyghmi fleet gives dead and wrong-password
BMCs."""
import re
import shutil
from dataclasses import replace

import pytest

from xcatd.base.request import Request
from xcatd.handler import registry
from xcatd.lab.bmcdata import DEFAULT_SENSORS, BmcData, Dimm, lab_emu
from xcatd.lab.bmcfleet import Fleet
from xcatd.lab.ipmisim import IpmiSim

needs_ipmi_sim = pytest.mark.skipif(not shutil.which("ipmi_sim") or not shutil.which("ipmitool"),
                                    reason="needs openipmi (ipmi_sim) and ipmitool")


def _add_sim_node(mn, node, bmc):
    mn.ok("nodeadd", node, "groups=sims", "nodehm.mgt=ipmi", "ipmi.bmc=127.0.0.1",
          f"ipmi.bmcport={bmc.port}", f"ipmi.username={bmc.user}",
          f"ipmi.password={bmc.password}")


@pytest.fixture
def sim(mn_daemon, tmp_path):
    """Node s1 behind an ipmi_sim holding the lab server's FRU, SDRs, DIMMs and SEL."""
    with IpmiSim(tmp_path / "bmc", emu_extra=lab_emu()) as bmc:
        _add_sim_node(mn_daemon, "s1", bmc)
        yield mn_daemon, bmc


def labelled(lines, node="s1"):
    """{'Label': 'value'} from 'node: Label: value' lines."""
    out = {}
    for line in lines:
        assert line.startswith(f"{node}: "), line
        label, _, value = line[len(node) + 2:].partition(": ")
        out[label] = value
    return out


def ipmitool_fields(text):
    """{'Field': 'value'} from ipmitool's 'Field : value' output, first occurrence wins."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def ipmitool_frus(text):
    """{'FRU description': fields} from 'ipmitool fru print'."""
    sections = re.split(r"^FRU Device Description : (.*)$", text, flags=re.M)
    return {name: ipmitool_fields(body) for name, body in zip(sections[1::2], sections[2::2],
                                                               strict=True)}


@needs_ipmi_sim
def test_rinv_reports_what_ipmitool_reads_from_the_same_bmc(sim):
    mn, bmc = sim
    inv = labelled(mn.ok("rinv", "s1", "all").lines)
    frus = ipmitool_frus(bmc.ipmitool("fru", "print").stdout)
    fru = frus["Builtin FRU Device (ID 0)"]
    assert inv["System Serial Number"] == fru["Product Serial"] == "S1234567"
    assert inv["System Description"] == fru["Product Name"]
    assert inv["System Model/MTM"] == fru["Product Part Number"]
    assert inv["System Manufacturer"] == fru["Product Manufacturer"]
    assert inv["System Asset Number"] == fru["Product Asset Tag"]
    assert inv["Chassis Serial Number"] == fru["Chassis Serial"]
    assert inv["Board Serial Number"] == fru["Board Serial"]
    assert inv["Board manufacture date"] + " UTC" == fru["Board Mfg Date"]
    assert inv["BMC Firmware"] == ipmitool_fields(
        bmc.ipmitool("mc", "info").stdout)["Firmware Revision"]
    guid = bmc.ipmitool("raw", "0x06", "0x37").stdout.split()
    assert inv["UUID/GUID"].replace("-", "") == "".join(guid).upper()
    dimm = frus["DIMM A1 (ID 1)"]
    assert inv["DIMM A1 Serial Number"] == dimm["Serial Number"]
    assert inv["DIMM A1 Part Number"] == dimm["Part Number"]
    assert inv["DIMM A1 Manufacturer"] == dimm["Manufacturer"]
    assert inv["DIMM A1 Description"].startswith(dimm["Memory size"])
    # one word, only its lines (xCAT's vpd: model, serial, device id, firmware)
    assert mn.ok("rinv", "s1", "serial").lines == [
        "s1: System Serial Number: S1234567", "s1: Chassis Serial Number: CHS0001"]
    assert set(labelled(mn.ok("rinv", "s1", "vpd").lines)) == {
        "System Description", "System Model/MTM", "System Serial Number",
        "Chassis Serial Number", "Chassis Part Number", "Device ID", "Manufacturer ID",
        "BMC Firmware", "Product ID"}
    assert [k for k in labelled(mn.ok("rinv", "s1", "dimm").lines)
            if not k.startswith("DIMM ")] == []


def _number(text):
    return float(re.match(r"-?[\d.]+", text).group())


@needs_ipmi_sim
def test_rvitals_readings_are_ipmitools_and_power_is_the_chassis_state(sim):
    mn, bmc = sim
    judge = {}
    for line in bmc.ipmitool("sdr", "list", "full").stdout.splitlines():
        name, value, _status = (f.strip() for f in line.split("|"))
        judge[name] = _number(value)
    vitals = labelled(mn.ok("rvitals", "s1", "all").lines)
    assert {k: _number(v) for k, v in vitals.items() if k != "Power Status"} == judge
    assert vitals["CPU Temp"] == "40 C (104 F)"
    assert vitals["System Power"] == "120 Watts (410 BTUs/hr)"
    assert vitals["Power Status"] == "off"
    assert set(labelled(mn.ok("rvitals", "s1", "voltage").lines)) == {"12V", "3.3V"}
    assert set(labelled(mn.ok("rvitals", "s1", "temp", "fanspeed").lines)) == {
        "CPU Temp", "Fan 1"}
    bmc.ipmitool("chassis", "power", "on")
    assert labelled(mn.ok("rvitals", "s1", "power").lines) == {
        "System Power": "120 Watts (410 BTUs/hr)", "Power Status": "on"}
    assert mn.ok("rvitals", "s1", "leds").lines == [
        "s1: LED status not supported on this system"]


def untimed(lines):
    """'s1: 11/21/2026 14:48:40 text' -> 's1: text', after checking the date's shape."""
    out = []
    for line in lines:
        node, date, time_, text = line.split(" ", 3)
        assert re.fullmatch(r"\d\d/\d\d/\d{4}", date) and re.fullmatch(r"[\d:]{8}", time_)
        out.append(f"{node} {text}")
    return out


@needs_ipmi_sim
def test_reventlog_reads_newest_entries_and_clear_empties_the_sel(sim):
    mn, bmc = sim
    events = mn.ok("reventlog", "s1").lines
    judged = [line.split("|")[3].strip() for line in
              bmc.ipmitool("sel", "elist").stdout.strip().splitlines()]
    assert len(events) == len(judged) == 4
    # the same sensors, in the same order (ipmitool names them '<type> <sensor>')
    ours = [re.search(r"\(([^ )]+(?: [^ )]+)?)", e).group(1) for e in events]
    assert [j.endswith(o) or o == f"Sensor 0x{j.split('#0x')[-1]}" for o, j in
            zip(ours, judged, strict=True)] == [True] * 4
    assert "(CPU Temp reading 85 C (185 F) with threshold 80 C (176 F))" in events[0]
    assert events[2].endswith(" - Recovered")
    # ipmi_sim stamps entries with its uptime; pyghmi dates them from the BMC's clock, so
    # the second may differ between two reads: compare what happened, not when
    assert untimed(mn.ok("reventlog", "s1", "2").lines) == untimed(events[-2:])
    assert untimed(mn.ok("reventlog", "s1", "2", "-s").lines) == untimed(events[:-3:-1])
    assert untimed(mn.ok("reventlog", "s1", "all", "-s").lines) == untimed(events[::-1])
    assert mn.ok("reventlog", "s1", "clear").lines == ["s1: SEL cleared"]
    assert ipmitool_fields(bmc.ipmitool("sel", "info").stdout)["Entries"] == "0"
    assert mn.ok("reventlog", "s1").lines == ["s1: no SEL entries"]


@needs_ipmi_sim
def test_a_sensor_past_its_threshold_says_which_one(mn_daemon, tmp_path):
    hot = tuple(replace(s, raw=92) if s.name == "CPU Temp" else s for s in DEFAULT_SENSORS)
    with IpmiSim(tmp_path / "hot", emu_extra=lab_emu(BmcData(sensors=hot))) as bmc:
        _add_sim_node(mn_daemon, "hot1", bmc)
        status = [f.strip() for f in bmc.ipmitool("sdr", "get", "CPU Temp").stdout.split("\n")
                  if "Status" in f]
        assert status == ["Status                : Upper Critical"]
        assert mn_daemon.ok("rvitals", "hot1", "temp").lines == [
            "hot1: CPU Temp: 92 C (198 F) (At or above upper critical threshold)"]


@pytest.fixture
def bare(mn_daemon, tmp_path):
    """Node b1 behind an ipmi_sim holding nothing: no FRU data, no SDRs, an empty SEL."""
    with IpmiSim(tmp_path / "bare") as bmc:
        _add_sim_node(mn_daemon, "b1", bmc)
        yield mn_daemon, bmc


@needs_ipmi_sim
def test_an_empty_sel_is_a_state_reported_in_xcats_words(bare):
    """xCAT reads Get SEL Info first: no entries is 'no SEL entries', exit 0, whether the
    admin reads all, some or clears."""
    mn, bmc = bare
    assert ipmitool_fields(bmc.ipmitool("sel", "info").stdout)["Entries"] == "0"
    for args in ((), ("all",), ("5",), ("5", "-s"), ("all", "-s"), ("clear",)):
        r = mn.run("reventlog", "b1", *args)
        assert (r.rc, r.out, r.err) == (0, "b1: no SEL entries\n", ""), (args, r)


@needs_ipmi_sim
def test_rinv_all_prints_what_it_can_read_and_a_line_for_the_fru_it_cannot(bare):
    mn, bmc = bare
    judge = bmc.ipmitool("fru", "print", "0", check=False).stdout
    assert "Device not present (Invalid data field in request)" in judge
    r = mn.run("rinv", "b1", "all")
    assert (r.rc, r.err) == (0, ""), r.err
    inv = labelled(r.lines, "b1")
    assert list(inv) == ["System FRU", "Device ID", "UUID/GUID", "Manufacturer ID",
                         "BMC Firmware", "Product ID"]
    assert inv["System FRU"] == "Unable to read (Invalid data field in request)"
    mc = ipmitool_fields(bmc.ipmitool("mc", "info").stdout)
    assert inv["BMC Firmware"] == mc["Firmware Revision"]
    assert inv["Device ID"] == mc["Device ID"]
    assert inv["Manufacturer ID"] == mc["Manufacturer ID"]
    guid = "".join(bmc.ipmitool("raw", "0x06", "0x37").stdout.split()).upper()
    assert inv["UUID/GUID"].replace("-", "") == guid
    # one word that needs the FRU: the line saying why, still not a failure
    r = mn.run("rinv", "b1", "serial")
    assert (r.rc, r.lines) == (0, ["b1: System FRU: Unable to read (Invalid data field "
                                   "in request)"])
    assert mn.ok("rinv", "b1", "firm").lines == [f"b1: BMC Firmware: {mc['Firmware Revision']}"]


@needs_ipmi_sim
def test_a_bmc_without_sensors_gives_its_power_state(bare):
    mn, bmc = bare
    assert mn.ok("rvitals", "b1", "all").lines == ["b1: Power Status: off"]
    assert mn.ok("rvitals", "b1", "temp").lines == []
    bmc.ipmitool("chassis", "power", "on")
    assert mn.ok("rvitals", "b1", "power").lines == ["b1: Power Status: on"]


@needs_ipmi_sim
def test_a_fru_the_bmc_cannot_give_is_one_line_among_the_parts_it_can(mn_daemon, tmp_path):
    """A FRU locator for a DIMM whose FRU device holds nothing: its line says so, in
    xCAT's words, and every other part still prints."""
    ghost = Dimm(9, "DIMM C1").locator(20)
    extra = (f"main_sdr_add 0x20 {' '.join(f'0x{b:02x}' for b in ghost)}",)
    # pyghmi keeps one SDR per BMC model, firmware and SDR time stamp, for all the BMCs of a
    # cluster (xcatd's daemon runs in this process); every ipmi_sim of the lab has the same
    # of each, so the SDR of another test's BMC (no DIMM C1) would stand in for this one's
    from pyghmi.ipmi import sdr
    sdr.shared_sdrs.clear()
    with IpmiSim(tmp_path / "ghost", emu_extra=lab_emu(BmcData(extra=extra))) as bmc:
        _add_sim_node(mn_daemon, "g1", bmc)
        reason = bmc.ipmitool("fru", "print", "9", check=False).stdout
        assert reason.strip() == "Device not present (Invalid data field in request)"
        r = mn_daemon.run("rinv", "g1", "all")
        assert (r.rc, r.err) == (0, ""), r.err
        inv = labelled(r.lines, "g1")
        assert inv.get("DIMM C1") == "Unable to read (Invalid data field in request)", r.lines
        assert inv["System Serial Number"] == "S1234567"
        assert inv["DIMM A1 Serial Number"] and inv["DIMM B1 Serial Number"]
        assert inv["BMC Firmware"] == "9.08"
        dimm = labelled(mn_daemon.ok("rinv", "g1", "dimm").lines, "g1")
        assert dimm["DIMM C1"] == inv["DIMM C1"] and "DIMM A1 Part Number" in dimm


def test_reventlog_alone_prints_its_usage_and_succeeds(mn_sqlite):
    for r in (mn_sqlite.run("reventlog"), mn_sqlite.sh("reventlog")):
        assert r.rc == 0, r.err
        assert r.out.startswith("Usage: reventlog ") and r.err == ""


@needs_ipmi_sim
def test_a_dead_bmc_and_a_wrong_password_are_one_error_line_each(sim):
    mn, _bmc = sim
    mn.ok("chtab", "key=ipmitimeout", "site.value=0.5")
    mn.ok("chtab", "key=ipmiretries", "site.value=1")
    with Fleet(count=2, dead=[0], badpass=[1]) as fleet:
        mn.ok("nodeadd", "f0,f1", "groups=fleet", "nodehm.mgt=ipmi", "ipmi.bmc=127.0.0.1",
              "ipmi.username=admin", "ipmi.password=secret")
        mn.ok("nodech", "f0", f"ipmi.bmcport={fleet.port(0)}")
        mn.ok("nodech", "f1", f"ipmi.bmcport={fleet.port(1)}")
        for argv, good in ((("rinv", "f0,f1,s1", "serial"), "s1: System Serial Number: "),
                           (("rvitals", "f0,f1,s1", "temp"), "s1: CPU Temp: 40 C"),
                           (("reventlog", "f0,f1,s1", "1"), "s1: ")):
            r = mn.run(*argv)
            assert r.rc == 1, argv
            assert any(line.startswith(good) for line in r.lines), (argv, r.out)
            assert not any(line.startswith(("f0", "f1")) for line in r.lines), r.out
            errors = r.err.splitlines()
            assert sorted(e.split(":")[0] for e in errors) == ["f0", "f1"], r.err
            assert all(e.startswith(("f0: Error: ", "f1: Error: ")) for e in errors)
            assert "f1: Error: ERROR: Incorrect password provided" in errors  # xCAT's words
            assert "secret" not in r.out + r.err


@pytest.mark.parametrize("argv,word", [
    (("rinv", "s9", "bogus"), "bogus"),
    (("rinv", "s9", "model,serial"), "model serial"),
    (("rvitals", "s9", "temp", "humidity"), "humidity"),
    (("reventlog", "s9", "0"), "reventlog 0"),
    (("reventlog", "s9", "-3"), "-3"),
    (("reventlog", "s9", "everything"), "everything"),
])
def test_unknown_words_are_named_and_nothing_is_asked(mn_sqlite, argv, word):
    mn_sqlite.ok("nodeadd", "s9", "groups=all", "nodehm.mgt=ipmi", "ipmi.bmc=127.0.0.1",
                 "ipmi.bmcport=9")  # nothing listens there: an attempt would be an error line
    r = mn_sqlite.run(*argv)
    assert r.rc == 1 and word in r.err, r.err
    assert r.out == "" and "s9:" not in r.err


def test_nodes_without_a_bmc_are_told_why(mn_sqlite):
    mn_sqlite.ok("nodeadd", "x1", "groups=all")
    mn_sqlite.ok("nodeadd", "k1", "groups=all", "nodehm.mgt=kvm")
    r = mn_sqlite.run("rvitals", "x1,k1")
    assert r.rc == 1
    assert sorted(r.err.splitlines()) == [
        "k1: Error: mgt=kvm is not supported (hardware drivers: ipmi)",
        "x1: Error: no hardware management method (nodehm.mgt)"]


def test_only_clearing_the_event_log_changes_nodes():
    spec = registry()["reventlog"]
    assert spec.writes(Request("reventlog", "n1", {"what": "clear"}))
    assert not spec.writes(Request("reventlog", "n1", {"what": "5"}))
    assert not spec.writes(Request("reventlog", "n1", {}))
    assert registry()["rinv"].writes is False
    assert registry()["rvitals"].writes is False


@needs_ipmi_sim
def test_the_installed_commands_work(sim):
    mn, _bmc = sim
    r = mn.sh("rvitals", "s1", "fanspeed")
    assert (r.rc, r.out) == (0, "s1: Fan 1: 6000 RPM\n"), r.err
    r = mn.sh("rinv", "s1", "firm")
    assert (r.rc, r.out) == (0, "s1: BMC Firmware: 9.08\n"), r.err
    r = mn.sh("reventlog", "s1", "1")
    assert r.rc == 0 and r.out.startswith("s1: ") and "Sensor 0x30" in r.out, r.err
