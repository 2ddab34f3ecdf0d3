"""xdshbak and xcoll as installed: the console scripts read node: line output on a pipe and
print xCAT's formats, exactly; no daemon is involved."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
HOSTS_HEAD = "HOSTS " + "-" * 73
HOSTS_RULE = "-" * 79
EQ = "=" * 36


def pipe(cmd: str, *args: str, data: str | bytes = "") -> subprocess.CompletedProcess:
    """Run the console script with ``data`` on standard input; bytes in, bytes out."""
    raw = data.encode() if isinstance(data, str) else data
    return subprocess.run([str(BIN / cmd), *args], input=raw, capture_output=True,
                          timeout=60, check=False)


def out(cmd: str, *args: str, data: str | bytes = "") -> str:
    r = pipe(cmd, *args, data=data)
    assert (r.returncode, r.stderr) == (0, b"")
    return r.stdout.decode()


def two_hundred(lines: list[str]) -> str:
    """The same lines from n001..n200, the nodes interleaved in a shuffled order."""
    nodes = [f"n{i:03d}" for i in range(1, 201)]
    random.Random(18).shuffle(nodes)
    return "".join(f"{node}: {line}\n" for line in lines for node in nodes)


# ---- xdshbak -------------------------------------------------------------------------------
def test_identical_output_of_200_nodes_collapses_to_one_block():
    text = out("xdshbak", "-c", data=two_hundred(["Linux n 6.1", "up 3 days"]))
    assert text == (f"{HOSTS_HEAD}\nn[001-200]\n{HOSTS_RULE}\nLinux n 6.1\nup 3 days\n")


def test_without_c_every_node_has_its_block_in_node_order():
    text = out("xdshbak", data=two_hundred(["ok"]))
    blocks = text.split("\n\n")
    assert len(blocks) == 200
    assert [b.split("\n")[0] for b in blocks] == [f"HOST:n{i:03d}" for i in range(1, 201)]
    assert blocks[0] == "HOST:n001\n----------\nok"
    assert blocks[-1] == "HOST:n200\n----------\nok\n"


def test_default_format_pins_xcats_layout():
    data = ("n10: Linux\nn2: Linux\nn2: second line\nn1: a: b\n"
            "an error line without a prefix\nn3:no-space\n")
    assert out("xdshbak", data=data) == (
        "HOST:n1\n--------\na: b\n\n"
        "HOST:n2\n--------\nLinux\nsecond line\n\n"
        "HOST:n10\n---------\nLinux\n")


def test_different_outputs_make_separate_blocks_in_the_order_they_came():
    data = "n3: B\nn1: A\nn4: A\nn2: B\nn5: C\n"
    assert out("xdshbak", "-c", data=data) == (
        f"{HOSTS_HEAD}\nn[2-3]\n{HOSTS_RULE}\nB\n\n"
        f"{HOSTS_HEAD}\nn[1,4]\n{HOSTS_RULE}\nA\n\n"
        f"{HOSTS_HEAD}\nn5\n{HOSTS_RULE}\nC\n")


def test_x_keeps_the_prefix_and_sorts_by_node_and_b_drops_it():
    data = "n10: ten\nn2: two\nn2: 2b\nn1: one\n"
    assert out("xdshbak", "-x", data=data) == "n1: one\nn2: two\nn2: 2b\nn10: ten\n"
    assert out("xdshbak", "-x", "-b", data=data) == "one\ntwo\n2b\nten\n"
    assert out("xdshbak", "-xb", data=data) == "one\ntwo\n2b\nten\n"


def test_a_dot_for_every_1000_lines_read_unless_q():
    data = "".join(f"n{i % 7}: line {i}\n" for i in range(2500))
    loud, quiet = out("xdshbak", "-x", data=data), out("xdshbak", "-x", "-q", data=data)
    assert loud == "..\n" + quiet
    assert quiet.startswith("n0: line 0\n")
    assert out("xdshbak", "-c", "-q", data=data) == out("xdshbak", "-qc", data=data)
    assert out("xdshbak", data="n1: x\n" * 999) == "HOST:n1\n--------\n" + "x\n" * 999
    # lines without a prefix count too
    assert out("xdshbak", data="junk\n" * 1000) == ".\n"


@pytest.mark.parametrize("args", [[], ["-c"], ["-x"], ["-x", "-b"], ["-q"]])
def test_empty_input_prints_nothing(args):
    assert out("xdshbak", *args, data="") == ""
    assert out("xdshbak", *args, data="no node prefix here\n") == ""


@pytest.mark.parametrize("args, needle", [
    (["-c", "-x"], "-c and -x cannot be used together"),
    (["-cx"], "-c and -x cannot be used together"),
    (["-b"], "-b works only with -x"),
    (["-c", "-b"], "-b works only with -x"),
    (["-z"], "-z"),
    (["extra"], "extra"),
])
def test_wrong_options_exit_255_with_usage_on_stderr(args, needle):
    r = pipe("xdshbak", *args, data="n1: x\n")
    assert r.returncode == 255
    assert r.stdout == b""
    err = r.stderr.decode()
    assert err.startswith("Error: ") and needle in err
    assert "Usage: xdshbak" in err and "Traceback" not in err


def test_help_exits_0():
    r = pipe("xdshbak", "-h")
    assert r.returncode == 0
    assert r.stdout.decode().startswith("Usage: xdshbak ")


def test_bytes_that_are_not_utf8_and_carriage_returns_pass_through():
    r = pipe("xdshbak", "-x", data=b"n1: caf\xe9\r\nn1: ok\n")
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout == b"n1: caf\xe9\r\nn1: ok\n"


def test_a_closed_pipe_ends_quietly():
    data = "".join(f"n{i}: some output of node {i}\n" for i in range(20000))
    r = subprocess.run(f"{BIN / 'xdshbak'} -q | head -n 1", shell=True, input=data.encode(),
                       capture_output=True, timeout=60, check=False)
    assert r.stdout == b"HOST:n0\n"
    assert r.stderr == b""


# ---- xcoll ---------------------------------------------------------------------------------
def test_xcoll_folds_200_identical_nodes_and_counts_them():
    assert out("xcoll", "-c", data=two_hundred(["ok"])) == (
        f"{EQ}\nn[001-200]\n{EQ}\nNode count = 200 \n{EQ}\nok\n\n")


def test_xcoll_pins_xcats_layout():
    data = "n2: same\nn1:same\nsn1: other\nsn1: two\nno colon here\n"
    assert out("xcoll", data=data) == (
        f"{EQ}\nUNKNOWN\n{EQ}\nno colon here\n\n"
        f"{EQ}\nn[1-2]\n{EQ}\nsame\n\n"
        f"{EQ}\nsn1\n{EQ}\nother\ntwo\n\n")


def test_xcoll_n_names_the_nodes_and_i_prints_each():
    data = "n2: up\nn10: up\nn1: up\n"
    assert out("xcoll", "-n", data=data) == f"{EQ}\nn1,n10,n2\n{EQ}\nup\n\n"
    assert out("xcoll", "-i", data=data) == (
        f"{EQ}\nn1\n{EQ}\nup\n\n{EQ}\nn10\n{EQ}\nup\n\n{EQ}\nn2\n{EQ}\nup\n\n")


def test_xcoll_of_nothing_is_nothing_and_a_wrong_option_exits_1():
    assert out("xcoll", data="") == ""
    r = pipe("xcoll", "-z", data="n1: x\n")
    assert (r.returncode, r.stdout) == (1, b"")
    assert b"Usage: xcoll" in r.stderr
