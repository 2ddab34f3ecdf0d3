"""Gathering node output into xCAT's xdshbak and xcoll blocks: parsing, order, the exact
layout of each format."""
from __future__ import annotations

import doctest
import random

import pytest

from xcatd.remote import gather
from xcatd.remote.gather import Gatherer, split_xcoll, split_xdshbak, version_sorted

HOSTS_HEAD = "HOSTS -------------------------------------------------------------------------"
HOSTS_RULE = "-------------------------------------------------------------------------------"
EQ = "===================================="


def gathered(*pairs: tuple[str, str]) -> Gatherer:
    g = Gatherer()
    for node, line in pairs:
        g.add(node, line)
    return g


def test_the_examples_in_the_docstrings_hold():
    results = doctest.testmod(gather)
    assert results.attempted > 0 and results.failed == 0


def test_rules_are_as_wide_as_xcats():
    assert (len(HOSTS_HEAD), len(HOSTS_RULE), len(EQ)) == (79, 79, 36)
    assert (gather.HOSTS_HEAD, gather.HOSTS_RULE, gather.XCOLL_RULE) == (HOSTS_HEAD,
                                                                          HOSTS_RULE, EQ)


# ---- parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("n1: up", ("n1", "up")),
    ("n1: up\n", ("n1", "up")),
    ("n1: a: b", ("n1", "a: b")),          # split at the first ": " only
    ("n1:  two", ("n1", " two")),          # one space belongs to the separator
    ("n1: ", ("n1", "")),
    ("rack 1: x", ("rack 1", "x")),
    (": x", ("", "x")),
    ("n1:up", None),                       # xdshbak needs ": "
    ("no prefix at all", None),
    ("", None),
    ("\n", None),
])
def test_split_xdshbak(text, expected):
    assert split_xdshbak(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("n1: up", ("n1", "up")),
    ("n1:up", ("n1", "up")),               # xcoll splits at the first colon
    ("n1:  two", ("n1", " two")),
    ("n1: a:b\n", ("n1", "a:b")),
    ("no colon here", ("UNKNOWN", "no colon here")),
    ("", ("UNKNOWN", "")),
])
def test_split_xcoll(text, expected):
    assert split_xcoll(text) == expected


# ---- order ---------------------------------------------------------------------------------
@pytest.mark.parametrize("names, expected", [
    (["n10", "n2", "n1"], ["n1", "n2", "n10"]),                  # numbers by value
    (["n010", "n009", "n1"], ["n009", "n010", "n1"]),            # leading zero: as text
    (["b1", "A2", "a1"], ["a1", "A2", "b1"]),                    # text without case
    (["n1a", "n1-eth0", "n1.dom", "n1"], ["n1", "n1-eth0", "n1.dom", "n1a"]),
    (["rack2-n1", "rack10-n1", "rack2-n10", "rack2-n9"],
     ["rack2-n1", "rack2-n9", "rack2-n10", "rack10-n1"]),
    (["10.0.0.10", "10.0.0.9", "9.1.1.1"], ["9.1.1.1", "10.0.0.9", "10.0.0.10"]),
])
def test_version_order(names, expected):
    assert version_sorted(names) == expected


def test_equal_names_keep_their_order():
    assert version_sorted(["N1", "n1"]) == ["N1", "n1"]
    assert version_sorted(["n1", "N1"]) == ["n1", "N1"]


# ---- xdshbak -------------------------------------------------------------------------------
def test_xdshbak_prints_a_host_block_per_node_in_version_order():
    g = gathered(("n10", "ten"), ("n2", "two"), ("n2", "2b"), ("n1", "one"))
    assert g.render_xdshbak() == [
        "HOST:n1", "--------", "one", "",
        "HOST:n2", "--------", "two", "2b", "",
        "HOST:n10", "---------", "ten"]


def test_xdshbak_host_rule_is_six_longer_than_the_name_up_to_63():
    long = "x" * 70
    lines = gathered(("node001", "a"), (long, "b")).render_xdshbak()
    assert lines[1] == "-" * 13
    assert lines[4:6] == [f"HOST:{long}", "-" * 63]


def test_a_nodes_interleaved_lines_all_stay_in_order():
    g = gathered(("n1", "a"), ("n2", "x"), ("n1", "b"), ("n2", "y"), ("n1", "c"))
    assert g.render_xdshbak() == ["HOST:n1", "--------", "a", "b", "c", "",
                                  "HOST:n2", "--------", "x", "y"]


def test_collapse_folds_200_identical_nodes_into_one_block():
    nodes = [f"n{i:03d}" for i in range(1, 201)]
    random.Random(7).shuffle(nodes)
    g = Gatherer()
    for line in ("Linux", "5.10"):
        for node in nodes:
            g.add(node, line)
    assert g.render_xdshbak(collapse=True) == [HOSTS_HEAD, "n[001-200]", HOSTS_RULE,
                                               "Linux", "5.10"]


def test_collapse_blocks_come_in_the_order_their_first_node_came():
    g = gathered(("n5", "B"), ("n1", "A"), ("n3", "B"), ("n2", "A"), ("n4", "C"))
    assert g.render_xdshbak(collapse=True) == [
        HOSTS_HEAD, "n[3,5]", HOSTS_RULE, "B", "",
        HOSTS_HEAD, "n[1-2]", HOSTS_RULE, "A", "",
        HOSTS_HEAD, "n4", HOSTS_RULE, "C"]


def test_collapse_tells_outputs_apart_by_every_line():
    g = gathered(("n1", "a"), ("n1", "b"), ("n2", "a"), ("n3", "a"), ("n3", "b"))
    assert [line for line in g.render_xdshbak(collapse=True) if line.startswith("n")] == \
        ["n[1,3]", "n2"]


def test_collapse_can_list_the_names_as_xcat_does():
    g = gathered(("n10", "A"), ("n9", "A"), ("sn1", "A"))
    assert g.render_xdshbak(collapse=True, fold_names=False)[1] == "n9, n10, sn1"


def test_compact_prefixes_every_line_and_drops_trailing_empty_lines():
    g = gathered(("n2", "x"), ("n10", "a"), ("n10", ""), ("n10", "b"), ("n10", ""),
                 ("n10", ""), ("n3", ""))
    assert g.render_xdshbak(compact=True) == ["n2: x", "n10: a", "n10: ", "n10: b"]


def test_bare_prints_only_the_lines_in_node_order():
    g = gathered(("n2", "x"), ("n1", "a"), ("n1", ""))
    assert g.render_xdshbak(compact=True, bare=True) == ["a", "", "x"]


@pytest.mark.parametrize("kw", [{}, {"collapse": True}, {"compact": True},
                                {"compact": True, "bare": True}])
def test_nothing_gathered_renders_nothing(kw):
    assert Gatherer().render_xdshbak(**kw) == []
    assert len(Gatherer()) == 0


def test_groups_pair_nodes_with_their_output():
    g = gathered(("n2", "a"), ("n1", "b"), ("n3", "a"))
    assert g.groups() == [(["n2", "n3"], ["a"]), (["n1"], ["b"])]
    assert len(g) == 3


def test_a_lines_newline_is_dropped():
    assert gathered(("n1", "up\n")).output == {"n1": ["up"]}


# ---- xcoll ---------------------------------------------------------------------------------
def test_xcoll_blocks_with_rules_and_an_empty_line_after_each():
    g = gathered(("n2", "same"), ("n1", "same"), ("sn1", "other"), ("sn1", "two"))
    assert g.render_xcoll() == [EQ, "n[1-2]", EQ, "same", "",
                                EQ, "sn1", EQ, "other", "two", ""]


def test_xcoll_count_adds_the_node_count_with_xcats_trailing_space():
    g = gathered(*[(f"n{i}", "up") for i in range(1, 4)])
    assert g.render_xcoll(count=True) == [EQ, "n[1-3]", EQ, "Node count = 3 ", EQ, "up", ""]


def test_xcoll_names_joins_the_sorted_names_with_commas():
    g = gathered(("n2", "up"), ("n10", "up"), ("n1", "up"))
    assert g.render_xcoll(names=True)[1] == "n1,n10,n2"


def test_xcoll_individual_prints_every_node_even_with_the_same_output():
    g = gathered(("n2", "up"), ("n1", "up"))
    assert g.render_xcoll(individual=True, count=True) == [EQ, "n1", EQ, "up", "",
                                                           EQ, "n2", EQ, "up", ""]


def test_xcoll_orders_headers_by_leading_number_then_as_text():
    g = gathered(("10.0.0.1", "a"), ("9.0.0.1", "b"), ("n1", "c"), ("UNKNOWN", "d"))
    headers = g.render_xcoll()[1::5]
    assert headers == ["UNKNOWN", "n1", "9.0.0.1", "10.0.0.1"]


def test_xcoll_of_nothing_is_nothing():
    assert Gatherer().render_xcoll(count=True) == []
