"""--json: the commands that list or report print one JSON document of one shape (README,
"--json"), in process and through a live xcatd. The nodes' values come from each plugin's
machine-readable form; errors, warnings and usage errors are inside the document, nothing is
printed on stderr, and the exit code stays xCAT's."""
from __future__ import annotations

import importlib
import json

import pytest
from support.cluster import nodech, nodes, site
from xcatd.commands._cli import JSON_COMMANDS, option_strings

from xcatd.hardware import registry
from xcatd.hardware.fake import FakeDriver

#: n1-n3 behind the fake driver, n3's BMC never answers; nodeset leaves DHCP alone
pytestmark = pytest.mark.cluster(
    site(dhcpsetup="n"),
    nodes("n1-n3", "nodehm.mgt=fake", r"ipmi.bmc=|\D+(\d+)|10.0.0.($1+0)|",
          groups="compute,all"),
    nodech("n3", "ipmi.bmc=dead-3"))

KEYS = ["command", "rc", "nodes", "data", "lines", "warnings", "errors"]
DEAD = "timeout: no answer from the BMC at dead-3:623"


@pytest.fixture(autouse=True)
def fake():
    registry.register("fake", FakeDriver)
    yield registry.driver("fake")
    registry.unregister("fake")


def document(mn, *argv: str, rc: int = 0) -> dict:
    """The one document a command prints: its keys in order, nothing on stderr, the exit
    code in ``rc`` and as the process's."""
    r = mn.run(*argv)
    assert r.rc == rc, (r.out, r.err)
    assert r.err == ""
    doc = json.loads(r.out)
    assert list(doc) == KEYS
    assert doc["rc"] == rc
    return doc


def shape(command: str, rc: int = 0, **parts) -> dict:
    return {"command": command, "rc": rc, "nodes": {}, "data": [], "lines": [],
            "warnings": [], "errors": [], **parts}


def dead(node: str = "n3") -> dict:
    return {"node": node, "error": DEAD, "errorcode": 1, "kind": None}


# ---- nodels --------------------------------------------------------------------------------
def test_nodels_gives_each_node_its_values_by_table_and_column(cluster):
    assert document(cluster, "nodels", "--json", "n1,n2", "groups", "mgt") == shape(
        "nodels", nodes={"n1": {"nodelist.groups": "compute,all", "nodehm.mgt": "fake"},
                         "n2": {"nodelist.groups": "compute,all", "nodehm.mgt": "fake"}})


def test_bare_nodels_lists_the_nodes_as_empty_objects(cluster):
    assert document(cluster, "nodels", "--json") == shape(
        "nodels", nodes={"n1": {}, "n2": {}, "n3": {}})


def test_nodels_blame_names_the_group_each_value_comes_from(cluster):
    cluster.ok("chtab", "node=compute", "nodetype.os=rhels9")
    cluster.ok("chtab", "node=n2", "nodetype.os=sles15")
    assert document(cluster, "nodels", "--json", "-b", "n1,n2", "os")["nodes"] == {
        "n1": {"nodetype.os": "rhels9", "inherited": {"nodetype.os": "compute"}},
        "n2": {"nodetype.os": "sles15"}}


def test_an_unknown_node_is_an_error_inside_the_document(cluster):
    assert document(cluster, "nodels", "--json", "n1,n99", rc=1) == shape(
        "nodels", rc=1, errors=[{"node": None, "error": "Invalid nodes and/or groups in "
                                 "noderange: n99", "errorcode": 1, "kind": "not_found"}])


# ---- hardware ------------------------------------------------------------------------------
def test_rpower_stat_is_each_nodes_power_and_a_dead_bmc_one_error(cluster):
    assert document(cluster, "rpower", "--json", "n1-n3", "stat", rc=1) == shape(
        "rpower", rc=1, nodes={"n1": {"power": "off"}, "n2": {"power": "off"}},
        errors=[dead()])


def test_rpower_action_gives_xcats_word_for_what_was_done(cluster):
    assert document(cluster, "rpower", "--json", "n1", "on")["nodes"] == {
        "n1": {"power": "on"}}
    assert document(cluster, "rpower", "--json", "n1", "boot")["nodes"] == {
        "n1": {"power": "on reset"}}


def test_rsetboot_gives_the_next_boot_device(cluster):
    assert document(cluster, "rsetboot", "--json", "n1,n2", "stat") == shape(
        "rsetboot", nodes={"n1": {"nextboot": "boot override inactive"},
                           "n2": {"nextboot": "boot override inactive"}})
    assert document(cluster, "rsetboot", "--json", "n1", "net")["nodes"] == {
        "n1": {"nextboot": "Network"}}


def test_rinv_gives_one_field_per_labelled_line(cluster):
    assert document(cluster, "rinv", "--json", "n1,n3", rc=1) == shape(
        "rinv", rc=1, nodes={"n1": {"System Description": "Fake machine at 10.0.0.1",
                                    "System Serial Number": "FAKE623"}},
        errors=[dead()])


def test_rvitals_gives_one_field_per_sensor(cluster):
    assert document(cluster, "rvitals", "--json", "n1,n2", "temp") == shape(
        "rvitals", nodes={"n1": {"CPU Temp": "40 C (104 F)"},
                          "n2": {"CPU Temp": "40 C (104 F)"}})


def test_reventlog_gives_the_entries_as_a_list_and_an_empty_sel_as_a_message(cluster):
    assert document(cluster, "reventlog", "--json", "n1", "all")["nodes"] == {
        "n1": {"eventlog": ["Power Supply #1: AC lost"]}}
    assert document(cluster, "reventlog", "--json", "n1", "clear")["nodes"] == {
        "n1": {"eventlog": [], "message": "SEL cleared"}}
    assert document(cluster, "reventlog", "--json", "n1", "5")["nodes"] == {
        "n1": {"eventlog": [], "message": "no SEL entries"}}


# ---- nodeset, job --------------------------------------------------------------------------
def test_nodeset_stat_and_a_change_give_each_nodes_state(cluster):
    assert document(cluster, "nodeset", "--json", "n1,n2", "stat") == shape(
        "nodeset", nodes={"n1": {"state": "offline"}, "n2": {"state": "offline"}})
    assert document(cluster, "nodeset", "--json", "n1", "boot")["nodes"] == {
        "n1": {"state": "boot"}}
    assert document(cluster, "nodeset", "--json", "n1", "stat")["nodes"] == {
        "n1": {"state": "boot"}}


def test_nodeset_with_two_states_is_xcats_invalid_argument_inside_the_document(cluster):
    assert document(cluster, "nodeset", "--json", "n1", "boot", "shell", rc=1) == shape(
        "nodeset", rc=1, errors=[{"node": None, "error": "Invalid argument: 'boot shell'",
                                  "errorcode": 1, "kind": None}])


def test_job_list_and_show_give_records(cluster):
    assert cluster.run("rpower", "n3", "stat").rc == 1
    listed = document(cluster, "job", "--json", "list", "-a")
    assert listed["nodes"] == {} and listed["lines"] == []
    assert all(list(item) == ["job"] for item in listed["data"])
    jobid = [item["job"]["jobid"] for item in listed["data"]
             if item["job"]["command"] == "rpower"][-1]
    shown = document(cluster, "job", "--json", "show", jobid[:8])
    assert shown["data"][0]["job"]["jobid"] == jobid
    assert shown["data"][0]["job"]["exitcode"] == "1"
    assert {"result": {"node": "n3", "error": DEAD, "errorcode": 1}} in shown["data"][1:]
    assert shown["nodes"] == {} and shown["errors"] == []  # a report: the job failed, not show


def test_job_of_no_such_id_is_an_error_inside_the_document(cluster):
    doc = document(cluster, "job", "--json", "show", "ffffffff", rc=1)
    assert doc["errors"] == [{"node": None, "error": "No job ffffffff", "errorcode": 1,
                              "kind": "not_found"}]


# ---- every command that takes it -----------------------------------------------------------
def test_a_usage_error_is_inside_the_document_with_xcats_exit_code(cluster):
    assert document(cluster, "rpower", "--json", rc=1) == shape(
        "rpower", rc=1, errors=[{"node": None, "error": "Missing argument 'NODERANGE'.",
                                 "errorcode": 1, "kind": None}])


@pytest.mark.parametrize("argv, check", [
    # other helpers' plugins: the generic document, whatever form their lines take
    (["lsdef", "--json", "n1"], lambda d: d["data"] == [
        {"name": "n1", "type": "node", "attributes": {"groups": "compute,all",
                                                      "mgt": "fake"}}]),
    (["tabdump", "--json", "nodelist"], lambda d: d["data"][0]["columns"][:2] == [
        "node", "groups"] and [r["row"]["node"] for r in d["data"][1:]] == ["n1", "n2", "n3"]
     and d["lines"] == []),
    (["tabdump", "--json", "-d", "nodelist"],
     lambda d: set(d["data"][0]["descriptions"]) >= {"node", "groups", "status"}),
    (["gettab", "--json", "node=n1", "nodehm.mgt"],
     lambda d: d["data"] == [{"nodehm.mgt": "fake"}] and d["lines"] == []),
    (["nodestat", "--json", "n1"], lambda d: d["rc"] == 1 and d["errors"][0]["node"] == "n1"),
])
def test_commands_of_other_plugins_give_the_same_document(cluster, argv, check):
    r = cluster.run(*argv)
    doc = json.loads(r.out)
    assert list(doc) == KEYS and doc["command"] == argv[0] and doc["rc"] == r.rc
    assert check(doc), doc


def test_every_listing_command_takes_json_and_the_others_do_not():
    for name in JSON_COMMANDS:
        main = importlib.import_module(f"xcatd.commands.{name}").main
        assert "--json" in option_strings(main.params), name
    for name in ("mkdef", "chtab", "tabch", "makedhcp", "copycds", "xcatd"):
        main = importlib.import_module(f"xcatd.commands.{name}").main
        assert "--json" not in option_strings(main.params), name


def test_a_command_without_json_refuses_it(cluster):
    r = cluster.run("mkdef", "--json", "-t", "node", "n9")
    assert r.rc == 1
    assert r.err.startswith("Error: No such option '--json'.")
    assert r.out == ""
