"""Noderange: a dense table of expressions and their expansions, plus properties."""
from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xcatd.base.noderange as nr
from xcatd.base.noderange import InvalidNodes, NodeRange, NodeRangeError, expand, fold


class FakeCluster:
    """Nodes rack1-n1..rack2-n4, n01..n20, sn1, sn2; groups; one attribute."""

    def __init__(self, exclude: str | None = None) -> None:
        self.nodes = {f"rack{r}-n{i}" for r in (1, 2) for i in range(1, 5)}
        self.nodes |= {f"n{i:02d}" for i in range(1, 21)} | {"sn1", "sn2", "node5", "node6"}
        self.groups = {
            "compute": {f"n{i:02d}" for i in range(1, 21)},
            "rack1": {f"rack1-n{i}" for i in range(1, 5)},
            "service": {"sn1", "sn2"},
            "empty": set(),
            "rack2": {f"rack2-n{i}" for i in range(1, 5)},
            "grp1": {"n01", "n02"},
            "grp2": set(),          # defined, no members
            "grp3": {"n02", "sn1"},
            "sn2": {"n20"},         # a group named like a node: the node wins
        }
        self.mgt = {n: ("ipmi" if n.startswith("n") else "kvm") for n in self.nodes}
        self._exclude = exclude
        self.member_lookups: list[str] = []
        self.group_name_reads = 0

    def all_nodes(self):
        return set(self.nodes)

    def known_nodes(self, names):
        return set(names) & self.nodes

    def group_members(self, name):
        self.member_lookups.append(name)
        return self.groups.get(name)

    def group_names(self):
        self.group_name_reads += 1
        return set(self.groups)

    def select_nodes(self, attr, op, value):
        import re
        vals = self.mgt if attr in ("mgt", "nodehm.mgt") else {}
        ops = {"==": lambda v: v == value, "=": lambda v: v == value,
               "!=": lambda v: v != value, "=~": lambda v: re.search(value, v) is not None,
               "!~": lambda v: re.search(value, v) is None}
        return {n for n, v in vals.items() if ops[op](v)}

    def excludenodes(self):
        return self._exclude


def names(*items):
    return sorted(items, key=nr.natural_key)


PATTERNS = [  # (noderange, expansion) without a cluster
    ("n1", ["n1"]),
    ("n1,n2", ["n1", "n2"]),
    ("n[1-3]", ["n1", "n2", "n3"]),
    ("n[01-03]", ["n01", "n02", "n03"]),
    ("n[098-101]", ["n098", "n099", "n100", "n101"]),
    ("n[1-2,5]", ["n1", "n2", "n5"]),
    ("n[1-2,07-08]", ["n1", "n2", "n07", "n08"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ("r[1-2]-n[01-02]-eth0", ["r1-n01-eth0", "r1-n02-eth0", "r2-n01-eth0", "r2-n02-eth0"]),
    ("n1-n3", ["n1", "n2", "n3"]),
    ("n1:n3", ["n1", "n2", "n3"]),
    ("n01-n03", ["n01", "n02", "n03"]),
    ("n1-3", ["n1", "n2", "n3"]),
    ("n1a-n3a", ["n1a", "n2a", "n3a"]),
    ("rack1-n1-rack1-n3", ["rack1-n1", "rack1-n2", "rack1-n3"]),
    ("n10+3", ["n10", "n11", "n12", "n13"]),
    ("n08+2", ["n08", "n09", "n10"]),
    ("n[1-5],-n3", ["n1", "n2", "n4", "n5"]),
    ("-n3,n[1-5]", ["n1", "n2", "n4", "n5"]),
    ("n[1-5],-n[2-3],n3", ["n1", "n4", "n5"]),
    ("n[1-9]@n[5-20]", ["n5", "n6", "n7", "n8", "n9"]),
    ("(n1,n2)@(n2,n3)", ["n2"]),
    ("(n[1-5],-n2),n7", ["n1", "n3", "n4", "n5", "n7"]),
    ("n[1-3],n[2-4]", ["n1", "n2", "n3", "n4"]),
]


@pytest.mark.parametrize("text,expected", PATTERNS)
def test_pattern_expansion(text, expected):
    assert NodeRange.fromstring(text).sorted() == names(*expected)


CLUSTER = [  # (noderange, expansion) against FakeCluster
    ("compute@n[01-03]", ["n01", "n02", "n03"]),
    ("rack1", ["rack1-n1", "rack1-n2", "rack1-n3", "rack1-n4"]),
    ("rack1,-rack1-n2", ["rack1-n1", "rack1-n3", "rack1-n4"]),
    ("rack1-n2", ["rack1-n2"]),  # a node whose name looks like a range is the node
    ("service,n01", ["n01", "sn1", "sn2"]),
    ("/sn\\d", ["sn1", "sn2"]),
    ("/n0[1-2]", ["n01", "n02"]),          # anchored: rack1-n1 does not match
    ("mgt==kvm", ["rack1-n1", "rack1-n2", "rack1-n3", "rack1-n4",
                  "rack2-n1", "rack2-n2", "rack2-n3", "rack2-n4", "sn1", "sn2"]),
    ("mgt==ipmi@/n0[1-3]", ["n01", "n02", "n03"]),
    ("mgt=~^ip,-compute", ["node5", "node6"]),
    ("service,mgt!=kvm@n0[1-2]", ["n01", "n02", "sn1", "sn2"]),
    ("5-6", ["node5", "node6"]),           # all-digit atoms take XCAT_NODE_PREFIX (node)
    ("empty", []),
    ("empty,sn1", ["sn1"]),
]


@pytest.mark.parametrize("text,expected", CLUSTER)
def test_cluster_expansion(text, expected):
    assert expand(text, FakeCluster()).sorted() == names(*expected)


RACKS = ["rack1-n1", "rack1-n2", "rack1-n3", "rack1-n4",
         "rack2-n1", "rack2-n2", "rack2-n3", "rack2-n4"]
GROUP_RANGES = [  # (noderange, expansion): a range of group names is the groups' union
    ("rack1-rack2", RACKS),
    ("rack[1-2]", RACKS),
    ("rack1:rack2", RACKS),
    ("rack[1:2]", RACKS),
    ("rack1+1", RACKS),
    ("grp1-grp3", ["n01", "n02", "sn1"]),        # an empty group adds nothing, and is no error
    ("grp[1,3]", ["n01", "n02", "sn1"]),
    ("grp2-grp2", []),
    ("sn1-sn2", ["sn1", "sn2"]),                 # nodes win over a group of the same name
    ("compute,-grp1-grp3", [f"n{i:02d}" for i in range(3, 21)]),
    ("grp1-grp3@service", ["sn1"]),
    ("rack1-rack2,-rack1-n1-rack1-n3", ["rack1-n4", *RACKS[4:]]),
    ("n01-n03,grp3", ["n01", "n02", "n03", "sn1"]),
]


@pytest.mark.parametrize("text,expected", GROUP_RANGES)
def test_a_range_of_groups_is_the_union_of_the_groups(text, expected):
    assert expand(text, FakeCluster()).sorted() == names(*expected)


@pytest.mark.parametrize("text,expected", [
    ("rack1-rack2", RACKS),
    ("grp1-grp3", ["n01", "n02", "sn1"]),
    ("new1-new2", ["new1", "new2"]),           # names for nodes to come stay names
    ("grp3-grp4", ["grp4", "n02", "sn1"]),
])
def test_unverified_ranges_take_groups_too(text, expected):
    """Policy and lock sets are expanded unverified: a deny rule on the nodes of grp3 must
    see them in a request for grp3-grp4."""
    assert expand(text, FakeCluster(), verify=False).sorted() == names(*expected)


def test_a_range_naming_a_missing_group_names_it():
    with pytest.raises(InvalidNodes) as exc:
        expand("grp3-grp5", FakeCluster())
    assert str(exc.value) == "Invalid nodes and/or groups in noderange: grp4,grp5"


def test_group_ranges_with_a_prefix_from_env():
    env = {"XCAT_NODE_PREFIX": "grp", "XCAT_NODE_SUFFIX": ""}
    assert expand("1-2", FakeCluster(), env=env).sorted() == ["n01", "n02"]


def test_ranges_of_nodes_never_read_the_groups():
    cluster = FakeCluster()
    assert len(expand("n[01-20],rack1-n1-rack1-n4", cluster)) == 24
    assert cluster.group_name_reads == 0


def test_groups_are_read_once_and_only_the_matching_names_looked_up():
    cluster = FakeCluster()
    with pytest.raises(InvalidNodes):
        expand("grp[1-1000],rack[1-2]", cluster)
    assert cluster.group_name_reads == 1
    tokens = {"grp[1-1000]", "rack[1-2]"}  # (each token is first tried as a group's name)
    assert sorted(set(cluster.member_lookups) - tokens) == ["grp1", "grp2", "grp3", "rack1",
                                                            "rack2"]


def test_all_digit_atoms_use_prefix_and_suffix_from_env():
    env = {"XCAT_NODE_PREFIX": "rack1-n", "XCAT_NODE_SUFFIX": ""}
    assert expand("1-2", FakeCluster(), env=env).sorted() == ["rack1-n1", "rack1-n2"]


def test_site_excludenodes_is_removed_from_every_result():
    cluster = FakeCluster(exclude="n[01-18],sn1")
    assert expand("compute,service", cluster).sorted() == ["n19", "n20", "sn2"]


def test_unknown_names_are_reported_together_in_order():
    with pytest.raises(InvalidNodes) as exc:
        expand("n01,bogus,n[19-22],other", FakeCluster())
    assert str(exc.value) == "Invalid nodes and/or groups in noderange: bogus,n21,n22,other"


def test_unverified_expansion_accepts_new_names():
    assert expand("new[1-2]", FakeCluster(), verify=False).sorted() == ["new1", "new2"]


def test_noderange_file(tmp_path):
    f = tmp_path / "nodes"
    f.write_text("# comment\nn01\nservice: the service nodes\n^ignored\n\nn[02-03]\n")
    assert expand(f"^{f}", FakeCluster()).sorted() == ["n01", "n02", "n03", "sn1", "sn2"]


@pytest.mark.parametrize("text,part", [
    ("n[1-", "n[1-"),
    ("n[3-1]", "n[3-1]"),
    ("n[a-b]", "n[a-b]"),
    ("n1-n0", "n1-n0"),
    ("(n1,n2", "(n1,n2"),
    ("n1)", "n1)"),
    ("/n[", "/n["),
    ("n1,,@", ""),
])
def test_parse_errors_name_the_bad_token(text, part):
    with pytest.raises(NodeRangeError) as exc:
        expand(text, FakeCluster())
    assert exc.value.part == part
    assert part in str(exc.value)


def test_missing_noderange_file_names_the_file(tmp_path):
    with pytest.raises(NodeRangeError) as exc:
        expand(f"^{tmp_path}/nope", FakeCluster())
    assert "nope" in exc.value.part


FOLDS = [
    (["n1", "n2", "n3"], "n[1-3]"),
    (["n01", "n02", "n10"], "n[01-02,10]"),
    (["n099", "n100"], "n[099-100]"),
    (["n9", "n10", "n11"], "n[9-11]"),
    (["a", "b1", "b2"], "a,b[1-2]"),
    (["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"], "rack[1-2]-n[1-2]"),
    (["rack1-n1", "rack1-n2", "rack2-n1"], "rack1-n[1-2],rack2-n1"),
    (["n1-eth0", "n2-eth0"], "n[1-2]-eth0"),
    ([], ""),
]


@pytest.mark.parametrize("items,text", FOLDS)
def test_fold(items, text):
    assert fold(items) == text


def test_nodeset_behaves_like_a_set():
    a, b = NodeRange.fromstring("n[1-10]"), NodeRange.fromstring("n[5-15]")
    assert str(a | b) == "n[1-15]"
    assert str(a & b) == "n[5-10]"
    assert str(a - b) == "n[1-4]"
    assert str(a ^ b) == "n[1-4,11-15]"
    assert "n3" in a and "n11" not in a and len(a) == 10
    assert list(NodeRange(["n10", "n9", "n1"])) == ["n1", "n9", "n10"]
    a.update("n[20-21]")
    assert str(a) == "n[1-10,20-21]"
    assert a.issuperset(["n1"]) and NodeRange(["n1"]).issubset(a)


def test_module_examples_run():
    assert doctest.testmod(nr).failed == 0


# ---- properties ----------------------------------------------------------------------------
name_st = st.builds(
    lambda pre, num, pad, suf: f"{pre}{num:0{pad}d}{suf}",
    st.sampled_from(["n", "node", "rack1-n", "r", "cn-"]),
    st.integers(0, 2000), st.sampled_from([0, 2, 3, 4]), st.sampled_from(["", "-ib", "a"]))


@settings(max_examples=300, deadline=None)
@given(st.sets(name_st, max_size=60))
def test_fold_then_expand_gives_the_same_set(items):
    text = fold(items)
    assert NodeRange.fromstring(text).names == set(items) if items else text == ""


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 500), max_size=50), st.sets(st.integers(0, 500), max_size=50))
def test_exclusion_equals_set_difference(xs, ys):
    a = [f"n{x}" for x in xs]
    b = [f"n{y}" for y in ys]
    if not a:
        return
    text = fold(a) + ("," + ",".join(f"-{n}" for n in b) if b else "")
    assert NodeRange.fromstring(text).names == set(a) - set(b)
