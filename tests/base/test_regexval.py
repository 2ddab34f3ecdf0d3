"""Regex table values: xCAT's /pat/repl/ and |pat|repl| forms, computed per node."""
import doctest

import pytest

import xcatd.base.regexval as rv
from xcatd.base.regexval import RegexValueError, compute


@pytest.mark.parametrize("value,node,expected", [
    ("|\\D+(\\d+)|10.0.0.($1+100)|", "n7", "10.0.0.107"),
    ("|\\D+(\\d+)|10.0.0.($1+0)|", "n007", "10.0.0.7"),
    ("|node(\\d+)|10.0.0.($1+0)|", "node12", "10.0.0.12"),
    ("|node(\\d+)|bmc$1|", "node012", "bmc012"),
    ("|node(\\d+)|bmc${1}x|", "node3", "bmc3x"),
    ("|\\D+(\\d+)|(($1-1)%14+1)|", "node20", "6"),
    ("|\\D+(\\d+)|cmm(($1-1)/14+1)|", "node20", "cmm2"),
    ("|\\D+(\\d+)\\D+(\\d+)|10.($1).($2*2).1|", "r3n05", "10.3.10.1"),
    ("|\\D+(\\d+)|10.0.(($1-1)/254).(($1-1)%254+1)|", "n300", "10.0.1.46"),
    ("|(\\d+)|-($1)|", "n5", "n-5"),            # like s///: the rest of the name stays
    ("/\\z/-bmc/", "node1", "node1-bmc"),
    ("/n/bmc/", "n42", "bmc42"),
    ("/(\\d+)$/-ib$1/", "n42", "n-ib42"),
    ("|10.0.0.($1+0)|", "node17", "10.0.0.17"),  # easy form
    ("|10.($1+0).($2+0).1|", "rack02n07", "10.2.7.1"),
    ("|nomatch(\\d+)|x$1|", "n1", "n1"),         # no match: the node name, as Perl's s///
    ("|(.*)|($1).cluster.net|", "node01", "node01.cluster.net"),  # a name group is text
    ("|(.*)|(($1))-bmc|", "rack1-n01", "rack1-n01-bmc"),
    ("|(\\D+)(\\d+)|($1)-($2+1)|", "node01", "node-2"),   # text and arithmetic side by side
    ("|(.*)|($1)|", "007", "7"),                   # a number stays a number
    ("10.0.0.1", "n1", "10.0.0.1"),
    ("a|b", "n1", "a|b"),
    ("", "n1", ""),
    (None, "n1", None),
])
def test_regex_values(value, node, expected):
    assert compute(value, node) == expected


@pytest.mark.parametrize("value,node,part", [
    ("|n(\\d+)|10.($1+)|", "n1", "($1+)"),
    ("|n(\\d+)|10.($1+2|", "n1", "10.($1+2"),
    ("|n(\\d+)|10.($1/0)|", "n1", "0"),
    ("|n(\\d+)|10.($2+1)|", "n1", "$2"),
    ("|n(\\d+|x|", "n1", "n(\\d+"),
    ("|n(\\d+)|(__import__('os'))|", "n1", "(__import__('os'))"),
    ("|(.*)|($1+1).cluster.net|", "node01", "node01"),  # arithmetic on text stays an error
])
def test_bad_regex_values_name_the_part(value, node, part):
    with pytest.raises(RegexValueError) as exc:
        compute(value, node)
    assert part in exc.value.part or exc.value.part in part


def test_arithmetic_never_reaches_eval(monkeypatch):
    import builtins
    monkeypatch.setattr(builtins, "eval", lambda *a: pytest.fail("eval used"))
    rv.compile_value.cache_clear()
    assert compute("|n(\\d+)|($1*3-1)|", "n4") == "11"


def test_module_examples_run():
    assert doctest.testmod(rv).failed == 0
