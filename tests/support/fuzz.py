"""Fuzzing xcatd: a scratch management node with a live xcatd that a whole test module shares,
and hypothesis strategies for command-protocol request bodies built from the command
registry (tests/fronts/test_fuzz.py; the REST fuzz, tests/fronts/test_rest_fuzz.py, shares
the node).

The node (``scratch_mn``) is made of requests sent to its own xcatd, over HTTPS with root's
client certificate, as an admin's commands would: nodes n1-n4 (group compute) and n5 (dead)
managed by the fake driver (xcatd.hardware.fake, registered for ``mgt=fake`` while the node
runs: no BMC is ever contacted), n20 with a driver nobody provides (``kvm``), n30 with none,
a dynamic group, an install osimage with its kernel and initrd, a network, passwords. DNS and
DHCP updates go to a closed port on 127.0.0.1. A dump of its tables (``mn.dump``) puts it
back as it was built: ``mn.reset()``.

The strategies keep a fuzz run from wrecking what it runs on or from waiting forever: paths
that commands read or write (copycds, dumpxCATdb, restorexCATdb) are chosen from a few under
the node's scratch directory, ``job wait`` always gets a short timeout and no generated value
names a real hardware driver. (The policy table may be wrecked: ``reset`` restores it as
root in process, where policy does not apply.)
Everything else is fair game: wrong types, unknown keys, odd noderanges, deep and odd JSON,
long strings, lone surrogates, numbers that are not finite, bodies that are not JSON at all.

>>> body = request_body("nodels", "n1", {"attributes": ["groups"]})
>>> json.loads(body)["request"]["command"]
'nodels'
>>> is_writer("nodels"), is_writer("noderm"), is_writer("rpower")
(False, True, True)
"""
from __future__ import annotations

import contextlib
import http.client
import json
import math
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from xcatd.base.paths import Paths
from xcatd.base.request import Request
from xcatd.daemon.initialize import initialize
from xcatd.daemon.pipeline import run_local
from xcatd.db.database import TABLES
from xcatd.db.objects import DEFINABLE, objtype
from xcatd.handler import (
    ASSIGNMENTS,
    ATTRS,
    FLAG,
    NUMBER,
    TEXT,
    TEXT_OR_TEXTS,
    TEXTS,
    Arg,
    registry,
)
from xcatd.hardware import registry as drivers
from xcatd.hardware.fake import FakeDriver
from xcatd.lab.daemon import DaemonThread
from xcatd.lab.ports import free_port
from xcatd.security.credentials import client_files

IMAGE = "rocky9.4-x86_64-install-compute"
NODES = ("n1", "n2", "n3", "n4", "n5", "n20", "n30")
GROUPS = ("compute", "all", "dead", "other", "bare", "dyn")


# ---- the scratch management node -----------------------------------------------------------
@dataclass
class Reply:
    status: int
    content_type: str
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw)

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.raw.splitlines() if line.strip()]


class ScratchMN:
    """A management node under ``base`` with xcatd running (``port``); ``post`` sends one
    HTTPS request with root's client certificate."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.home = base / "home"
        self.scratch = base / "scratch"   # the only paths file-handling commands are given
        self.dump = self.scratch / "dump"
        for d in (self.root, self.home, self.scratch):
            d.mkdir(parents=True)
        self.paths = Paths(self.root)
        self.thread: DaemonThread | None = None
        self.port = 0
        files = client_files(self.home)
        self.ca, self.cred = files.ca, files.cred
        self._ctx: ssl.SSLContext | None = None

    # -- HTTPS ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        if self._ctx is None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
            ctx.load_cert_chain(str(self.cred))
            self._ctx = ctx
        return self._ctx

    def post(self, body: bytes, path: str = "/v1/request", method: str = "POST",
             timeout: float = 120) -> Reply:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                           context=self.ssl_context(), timeout=timeout)
        try:
            conn.request(method, path, body if method != "GET" else None,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            return Reply(resp.status, resp.getheader("Content-Type") or "", resp.read())
        finally:
            conn.close()

    def ping(self) -> Reply:
        return self.post(b"", "/v1/ping", "GET", timeout=30)

    def run(self, command: str, noderange: str | None = None, stdin: str | None = None,
            **args: Any) -> list[dict]:
        """One request that must succeed; its ``r`` records."""
        reply = self.post(request_body(command, noderange, args, stdin))
        assert reply.status == 200, (command, reply.status, reply.raw[:500])
        records = reply.records()
        failed = [r["r"] for r in records if "r" in r and r["r"].get("error")]
        assert not failed and records[-1]["end"]["exitcode"] == 0, (command, args, records)
        return [r["r"] for r in records if "r" in r]

    # -- life ----------------------------------------------------------------------------
    def start(self) -> None:
        initialize(self.paths, client_home=str(self.home))
        drivers.register("fake", FakeDriver)
        self.thread = DaemonThread(self.paths)
        self.port = self.thread.start().port
        self._build()
        self.dump.mkdir()
        self.run("dumpxCATdb", path=str(self.dump))
        self._scratch_files()

    def stop(self) -> None:
        try:
            if self.thread is not None:
                self.thread.stop()
        finally:
            drivers.unregister("fake")

    def reset(self) -> None:
        """Every table but the logs and the jobs as they were built: restored in this
        process, as root (trusted whatever the policy table holds now), and xcatd told to
        read site and policy again."""
        out = list(run_local(Request("restorexCATdb", args={"path": str(self.dump)}),
                             self.paths, user="root"))
        assert not any(r.failed for r in out), [r.to_dict() for r in out]
        self.thread.daemon.pipeline.tables.invalidate()

    def _build(self) -> None:
        closed = str(free_port())  # DNS and DHCP updates: refused at once, never a real server
        for key, value in {"master": "10.77.0.1", "domain": "fuzz.example", "dhcpsetup": "n",
                           "dnsupdateserver": "127.0.0.1", "dnsport": closed,
                           "omapiserver": "127.0.0.1", "omapiport": closed,
                           "ipmitimeout": "1", "ipmiretries": "0"}.items():
            self.run("chtab", keys={"key": key}, assignments=[["site", "value", "=", value]])
        self.run("chtab", keys={"key": "system"},
                 assignments=[["passwd", "username", "=", "root"],
                              ["passwd", "password", "=", "cluster"]])
        self.run("chtab", keys={"key": "fake"},
                 assignments=[["passwd", "username", "=", "admin"],
                              ["passwd", "password", "=", "s3cret"]])
        self.run("mkdef", type="network", objects="mgt",
                 attributes={"net": "10.77.0.0", "mask": "255.255.255.0", "mgtifname": "eth1",
                             "gateway": "10.77.0.254",
                             "dynamicrange": "10.77.0.200-10.77.0.220"})
        self.run("mkdef", type="osimage", objects=IMAGE,
                 attributes={"imagetype": "linux", "provmethod": "install",
                             "osvers": "rocky9.4", "osarch": "x86_64", "profile": "compute"})
        tree = self.root / "install/rocky9.4/x86_64/images/pxeboot"
        tree.mkdir(parents=True)
        (tree / "vmlinuz").write_bytes(b"KERNEL" * 100)
        (tree / "initrd.img").write_bytes(b"INITRD" * 100)
        self.run("nodeadd", "n[1-4]", assignments=[
            "groups=compute,all", "nodetype.arch=x86_64", "nodehm.mgt=fake"])
        self.run("chtab", keys={"node": "compute"}, assignments=[
            ["hosts", "ip", "=", r"|\D+(\d+)|10.77.0.($1+10)|"],
            ["mac", "mac", "=", r"|\D+(\d+)|52:54:00:00:00:($1+10)|"],
            ["ipmi", "bmc", "=", r"|\D+(\d+)|10.99.0.($1+0)|"]])
        self.run("nodeadd", "n5", assignments=["groups=dead,all", "nodehm.mgt=fake",
                                               "ipmi.bmc=dead-5"])
        self.run("nodeadd", "n20", assignments=["groups=other", "nodehm.mgt=kvm"])
        self.run("nodeadd", "n30", assignments=["groups=bare"])
        self.run("mkdef", type="group", objects="dyn", dynamic=True, where=["mgt==fake"])

    def _scratch_files(self) -> None:
        (self.scratch / "empty").mkdir()
        (self.scratch / "out").mkdir()
        (self.scratch / "empty.iso").write_bytes(b"")
        (self.scratch / "garbage.iso").write_bytes(b"\x00not an iso\xff" * 100)
        bad = self.scratch / "baddump"
        bad.mkdir()
        (bad / "nodelist.csv").write_bytes(b"#node,groups\n\"x\",\"y\",\"z\",\n\xff\xfe\n")
        (bad / "nosuchtable.csv").write_text("#a\n")


@contextlib.contextmanager
def scratch_mn(base: Path) -> Iterator[ScratchMN]:
    mn = ScratchMN(base)
    try:
        mn.start()
        yield mn
    finally:
        mn.stop()


def request_body(command: Any, noderange: Any = None, args: Any = None, stdin: Any = None,
                 **extra: Any) -> bytes:
    request = {"command": command, "noderange": noderange,
               "args": {} if args is None else args, "stdin": stdin}
    return dumps({"request": request, "async": False, **extra})


def dumps(obj: Any, scratch: Path | None = None) -> bytes:
    """JSON as Python's json writes it: NaN and Infinity included (xcatd's parser takes
    them), every non-ASCII character escaped, so a lone surrogate travels as \\udXXX. A
    ``Scratch`` path becomes a path under ``scratch``, a ``Deep`` value its nested lists.

    >>> dumps({"a": [Deep(3), math.nan]})
    b'{"a": [[[[]]], NaN]}'
    """
    deep: dict[str, int] = {}

    def default(o: Any) -> Any:
        if isinstance(o, Scratch) and scratch is not None:
            return str(scratch / o.rel) if o.rel else str(scratch)
        if isinstance(o, Deep):
            token = f"\x00deep{o.depth}\x00"
            deep[json.dumps(token)] = o.depth
            return token
        raise TypeError(f"cannot encode {o!r}")

    text = json.dumps(obj, allow_nan=True, default=default)
    for token, depth in deep.items():
        text = text.replace(token, "[" * depth + "]" * depth)
    return text.encode()


@dataclass(frozen=True)
class Deep:
    """Lists nested ``depth`` deep, written out only when the body is encoded (a value that
    deep would overflow the recursion of whatever walked it: hypothesis' reports, json)."""
    depth: int


@dataclass(frozen=True)
class Scratch:
    """A path under the scratch directory of the node, filled in when the body is
    encoded."""
    rel: str


def is_writer(command: str) -> bool:
    """Whether ``command`` may change the tables (a run puts them back after it)."""
    spec = registry().get(command)
    if spec is None:
        return False
    return bool(spec.writes) or spec.args is None


# ---- strategies ----------------------------------------------------------------------------
def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of the strategies, each ``weight`` times as likely as a weight of 1."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


#: Text meant to break things: control characters, a lone surrogate, format strings, shell
#: and SQL, path tricks, regex syntax, long and very long strings.
NASTY_TEXT = ("", " ", "\x00", "\n", "\t\r", "\ud800", "a\udfffb", "\u202e", "💥", "%s%n",
              "{0}{}", "$(id)", "`id`", "'; DROP TABLE nodelist; --", '"', "\\", "*", "?",
              "../../../etc/passwd", "/", "//", ",", ",,", "=", "==", "=~", "!~", "|", "||",
              "|a|b|", r"|\D+(\d+)|($1+1)|", "(", "[", "[1-", "]", "{", "@", "^", "-", "+",
              "a" * 300, "x" * 70_000, "é" * 5000, "0", "-1", "1e999", "NaN", "true", "null")

text = st.one_of(st.text(max_size=40), st.sampled_from(NASTY_TEXT),
                 st.text(st.characters(codec="utf-8"), max_size=12),
                 st.text(st.characters(categories=["Cs", "Cc", "Zs"]), max_size=6))

#: Every number a JSON parser may hand over: huge ints, floats, -0.0, inf and NaN.
numbers = st.one_of(st.integers(-10, 10_000), st.sampled_from(
    [0, -1, 2**63, -(2**63) - 1, 10**40, 0.5, -0.0, 1e300, -1e300, 1e-300, math.inf, -math.inf,
     math.nan]), st.integers(), st.floats(allow_nan=True, allow_infinity=True))

scalars = st.one_of(st.none(), st.booleans(), numbers, text)

json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                     st.dictionaries(text, inner, max_size=5)),
    max_leaves=12)


def _join(parts: st.SearchStrategy[list[str]], seps: tuple[str, ...] = (",",)):
    return st.tuples(parts, st.sampled_from(seps)).map(lambda t: t[1].join(t[0]))


_names = st.sampled_from(NODES + GROUPS + ("nx", "n01", "N1", "n1.fuzz.example"))
ODD_NODERANGES = (
    "n[1-4]", "n1-n4", "n[1-4],-n2", "all,-compute", "compute,dead", "compute@n[1-3]",
    "compute&dead", "all^n3", "/n\\d", "/n[0-9]+$", "/(", "n[1-", "n[4-1]", "n[01-10]",
    "n[1-3][1-3]", "n[1-500]", "x[1-2000000]", "n[1-999999999999999999999]", ",", ",,",
    "n1,,n2", "+n1", "-n1", "^nofile", "^/nonexistent/file", "@", "n1@", "n[1-2]-n[3-4]",
    "dyn", "dyn,-n1", "n1:n4", "n1.fuzz.example", "n\x00", "\ud800", "n" * 3000,
    ",".join(f"x{i}" for i in range(2000)))
noderanges = st.one_of(st.none(), _names, st.sampled_from(ODD_NODERANGES),
                       _join(st.lists(_names, min_size=1, max_size=4), (",", "&", "@", "^")),
                       text)

_node_attrs = sorted(objtype("node").attrs)
_table_names = sorted(TABLES)
_columns = sorted({c for t in TABLES.values() for c in t.columns})
_table_columns = [f"{t}.{c}" for t, d in sorted(TABLES.items()) for c in d.columns]

attr_names = st.one_of(st.sampled_from(_node_attrs + ["members", "grouptype", "wherevals"]),
                       st.sampled_from(_table_columns), text)
#: Attribute values: no real driver name ever (mgt=ipmi would reach for a BMC)
attr_values = st.one_of(text, st.sampled_from(
    ("fake", "kvm", "compute", "compute,all", "10.77.0.9", "52:54:00:00:00:99", "dead-9",
     r"|\D+(\d+)|10.88.0.($1+0)|", IMAGE, "install", "netboot", "x86_64", "ppc64le"))
).filter(lambda v: "ipmi" not in v.lower())
where_clauses = st.one_of(
    st.tuples(attr_names, st.sampled_from(("==", "!=", "=~", "!~", "=", "")), text).map(
        lambda t: "".join(t)),
    st.sampled_from(("groups==compute", "mgt=~^fa", "bmcpassword==x", "ipmi.password=~^s",
                     "groups=~(", "ip!=", "=~", "groups=~(a|aa)", "node.groups==x")),
    text)
assignment_words = st.one_of(
    st.tuples(attr_names, st.sampled_from(("=", ",=", "^=", "==", "")), attr_values).map(
        lambda t: "".join(t)),
    st.sampled_from(("groups=compute", "groups,=extra", "groups^=compute", "nodehm.mgt=kvm",
                     "nodelist.node=x", "ipmi.password=x", "hosts.ip=|\\D+(\\d+)|10.0.0.($1)|",
                     "nosuchtable.col=1", "groups==compute", "a=b", "=", "=x", "mgt=")),
    text)


def _attrs(names=attr_names) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(names, attr_values, max_size=4)


def _table_assignments() -> st.SearchStrategy[list[list[str]]]:
    four = st.tuples(st.one_of(st.sampled_from(_table_names), text),
                     st.one_of(st.sampled_from(_columns), text),
                     st.sampled_from(("=", "+=", ",=", "^=", "==", "")), attr_values)
    return st.lists(four.map(list), max_size=4)


def _paths(*under: str) -> Any:
    """Paths a fuzzed command may read or write: under the node's scratch directory
    (``Scratch``), relative or empty."""
    return st.one_of(st.sampled_from([Scratch(u) for u in under]),
                     st.sampled_from(("", "relative/dir", "nonexistent")))


#: Values of the declared type for (command, argument), where plain text would rarely say
#: anything the handler understands; "*" is any command.
VALUES: dict[tuple[str, str], st.SearchStrategy] = {
    ("*", "type"): st.one_of(st.sampled_from(DEFINABLE + ("node,group", "bogus", "")), text),
    ("*", "objects"): st.one_of(noderanges.filter(lambda v: v is not None),
                                st.sampled_from(("mgt", IMAGE, "clustersite", "dyn", "1"))),
    ("*", "where"): st.lists(where_clauses, max_size=3),
    ("*", "info"): _join(st.lists(attr_names, max_size=3)),
    ("*", "attributes"): _attrs(),
    ("*", "newname"): st.one_of(_names, text),
    ("*", "table"): st.one_of(st.sampled_from(_table_names), text),
    ("*", "tables"): st.lists(st.one_of(st.sampled_from(_table_names), text), max_size=3),
    ("*", "keys"): st.dictionaries(st.one_of(st.sampled_from(("node", "key", "groupname",
                                                              "netname", "imagename")), text),
                                   st.one_of(_names, text), max_size=3),
    ("*", "columns"): st.lists(st.one_of(st.sampled_from(_table_columns), text), max_size=3),
    ("*", "assignments"): st.lists(assignment_words, max_size=4),
    ("*", "node"): st.one_of(_names, text),
    ("*", "groups"): _join(st.lists(st.one_of(_names, text), max_size=3)),
    ("*", "attributes:nodels"): st.lists(st.one_of(attr_names, where_clauses,
                                                   st.sampled_from(_table_names)), max_size=4),
    ("chtab", "assignments"): _table_assignments(),
    ("rpower", "action"): st.one_of(st.sampled_from(
        ("on", "off", "softoff", "reset", "boot", "cycle", "nmi", "stat", "state", "status",
         "ON")), text),
    ("rsetboot", "device"): st.one_of(st.sampled_from(
        ("net", "hd", "cd", "def", "floppy", "setup", "stat", "NET")), text),
    ("rinv", "what"): st.one_of(
        st.sampled_from(("model", "serial", "firm", "mac", "all", "vpd", "dimm", "bogus")),
        st.lists(st.sampled_from(("model", "all", "temp", "x")), max_size=3), text),
    ("rvitals", "what"): st.one_of(
        st.sampled_from(("temp", "voltage", "fanspeed", "power", "leds", "all", "wattage",
                         "temp,power", "bogus")),
        st.lists(st.sampled_from(("temp", "all", "model", "x")), max_size=3), text),
    ("reventlog", "what"): st.one_of(st.sampled_from(
        ("all", "clear", "5", "0", "-1", "99999999999999999999", "1.5")), text),
    ("nodeset", "state"): st.one_of(st.sampled_from(
        (f"osimage={IMAGE}", "osimage=nope", "osimage=", "boot", "shell", "offline", "stat",
         "standby", "shutdown", "next", "runcmd=bmcsetup", "runimage=http://x/y",
         "boot,shell", "install", "iscsiboot")), text),
    ("job", "action"): st.one_of(st.sampled_from(("list", "show", "wait", "cancel", "LIST")),
                                 text),
    ("job", "jobid"): st.one_of(st.sampled_from(tuple("0123456789abcdef") + ("", "-", "%")),
                                st.text("0123456789abcdef-", max_size=8), text),
    ("job", "state"): st.one_of(st.sampled_from(("done", "failed", "running", "queued")), text),
    ("copycds", "sources"): st.one_of(
        _paths("nonexistent.iso", "empty.iso", "garbage.iso", "empty", ""),
        st.lists(_paths("nonexistent.iso", "empty.iso", "garbage.iso"), max_size=3)),
    ("copycds", "path"): _paths("out", "out/sub", ""),
    ("copycds", "name"): st.one_of(st.sampled_from(("rocky9.4", "rhels9.4", "../x")), text),
    ("copycds", "arch"): st.one_of(st.sampled_from(("x86_64", "x86-64", "ppc64le")), text),
    ("dumpxCATdb", "path"): _paths("out", "out/missing", ""),
    ("restorexCATdb", "path"): _paths("dump", "empty", "baddump", "missing"),
    ("tabrestore", "table"): st.one_of(st.sampled_from(_table_names), text),
}

#: Commands that declare no arguments (None: any, unchecked) still get their real ones.
UNDECLARED = {
    "tabprune": {"table": TEXT, "all": FLAG, "number": NUMBER, "recid": NUMBER,
                 "percent": NUMBER, "days": NUMBER, "verbose": FLAG},
}
VALUES[("tabprune", "table")] = st.one_of(st.sampled_from(
    ("auditlog", "eventlog", "jobs", "jobresults", "nodelist")), text)

_by_type: dict[Arg, st.SearchStrategy] = {
    TEXT: text, FLAG: st.booleans(), NUMBER: numbers,
    TEXTS: st.lists(text, max_size=4),
    TEXT_OR_TEXTS: st.one_of(text, st.lists(text, max_size=4)),
    ATTRS: _attrs(), ASSIGNMENTS: _table_assignments(),
}


def _value(command: str, key: str, kind: Arg) -> st.SearchStrategy:
    """A value of the declared type (mostly), or anything at all."""
    typed = next((VALUES[k] for k in ((command, key), ("*", f"{key}:{command}"), ("*", key))
                  if k in VALUES), None)
    if typed is None:
        typed = _by_type.get(kind, json_values)
    if (command, key) in _PINNED:
        # a path that is not a string is refused before the handler runs: harmless
        return st.one_of(typed, json_values.filter(lambda v: not isinstance(v, str)))
    return weighted((6, typed), (1, json_values), (1, st.none()))


#: Arguments whose values must come from VALUES alone (paths, never random text)
_PINNED = {("copycds", "sources"), ("copycds", "path"), ("dumpxCATdb", "path"),
           ("restorexCATdb", "path"), ("tabrestore", "table")}


def declared(command: str) -> dict[str, Arg]:
    spec = registry().get(command)
    if spec is None:
        return {}
    return spec.args if spec.args is not None else UNDECLARED.get(command, {})


@st.composite
def arguments(draw, command: str) -> Any:
    """``args`` for ``command``: a subset of its declared arguments with values of their
    type (or not), sometimes an unknown key, sometimes not an object at all."""
    shape = draw(st.sampled_from(range(20)))  # 0-14: as declared; 15-19: odd shapes
    if shape == 19:
        return draw(json_values.filter(lambda v: not isinstance(v, dict)))
    kinds = declared(command)
    keys = draw(st.lists(st.sampled_from(sorted(kinds)), unique=True,
                         max_size=min(len(kinds), 5))) if kinds else []
    args = {k: draw(_value(command, k, kinds[k])) for k in keys}
    if shape == 15:
        args.update(draw(st.dictionaries(text, json_values, min_size=1, max_size=3)))
    elif shape == 16:
        args[draw(st.sampled_from(("x", "Type", "__class__", "args")))] = draw(json_values)
    elif shape == 17:
        args.update({f"k{i}": i for i in range(draw(st.sampled_from((64, 65, 500))))})
    elif shape == 18 and keys:
        args[keys[0]] = Deep(draw(st.sampled_from((50, 500, 900, 960))))
    return _pin(command, args)


def _pin(command: str, args: dict) -> dict:
    """What no fuzz run may do: wait for a job without a short timeout."""
    if command == "job" and args.get("action") == "wait":
        timeout = args.get("timeout")
        if not (isinstance(timeout, int | float) and not isinstance(timeout, bool)
                and 0 < abs(timeout) < 1):
            args["timeout"] = 0.2   # never none, 0, NaN or a long one: it could wait forever
    return args


def _stdin(command: str) -> st.SearchStrategy:
    if command == "tabrestore":
        header = st.sampled_from(_table_names).map(
            lambda t: "#" + ",".join(TABLES[t].columns))
        rows = st.lists(st.lists(text.map(lambda s: '"' + s.replace('"', '""') + '"'),
                                 max_size=6).map(",".join), max_size=5)
        return st.one_of(st.tuples(header, rows).map(lambda t: "\n".join([t[0], *t[1]])),
                         st.none(), text)
    return weighted((4, st.none()), (4, text), (1, json_values))


@st.composite
def well_formed(draw, commands: list[str]) -> dict:
    """A request of a registered command, arguments as it declares them (mostly)."""
    command = draw(st.sampled_from(commands))
    request: dict[str, Any] = {"command": command}
    if draw(st.integers(0, 3)):
        request["noderange"] = draw(noderanges)
    request["args"] = draw(arguments(command))
    if draw(st.integers(0, 2)) == 0:
        request["stdin"] = draw(_stdin(command))
    if draw(st.integers(0, 5)) == 0:
        request["env"] = draw(weighted((4, st.dictionaries(text, text, max_size=3)),
                                       (1, json_values)))
    if draw(st.integers(0, 9)) == 0:
        request.update(draw(st.dictionaries(st.sampled_from(
            ("user", "client", "extra", "async")), json_values, max_size=2)))
    return request


#: Requests as the commands' CLIs send them (noderange, args, stdin): the starting points of
#: ``near_valid``, which changes one or two things in them.
TEMPLATES: dict[str, list[tuple[str | None, dict, str | None]]] = {
    "nodels": [(None, {}, None), ("compute", {"attributes": ["groups", "nodehm.mgt"]}, None),
               ("all", {"attributes": ["groups==compute", "mgt"], "with_fieldname": True},
                None), (None, {"show_hidden": True, "blame": True,
                               "attributes": ["ipmi"]}, None)],
    "nodeadd": [("n[40-42]", {"assignments": ["groups=compute", "nodehm.mgt=fake"]}, None)],
    "nodech": [("n1", {"assignments": ["groups,=extra"]}, None),
               ("compute", {"assignments": ["nodehm.mgt"], "delete": True}, None),
               ("all", {"assignments": ["groups==dead", "nodetype.arch=ppc64le"]}, None)],
    "noderm": [("n30", {}, None)],
    "nodegrpch": [(None, {"groups": "compute", "assignments": ["nodehm.mgt=fake"]}, None)],
    "lsdef": [(None, {"type": "node", "long": True}, None),
              (None, {"type": "osimage", "objects": IMAGE, "long": True}, None),
              (None, {"all": True, "short": True}, None),
              (None, {"type": "node", "where": ["mgt==fake"], "info": "groups,mgt"}, None),
              (None, {"type": "site", "long": True, "show_secrets": True}, None),
              ("n1", {"stanza": True, "long": True}, None),
              (None, {"type": "group", "objects": "dyn", "compress": True, "long": True},
               None)],
    "mkdef": [(None, {"type": "node", "objects": "n50", "attributes": {"groups": "compute"}},
               None),
              (None, {"type": "group", "objects": "dyn2", "dynamic": True,
                      "where": ["mgt==kvm"]}, None),
              (None, {"type": "network", "objects": "net2",
                      "attributes": {"net": "10.1.0.0", "mask": "255.255.0.0"}}, None),
              (None, {"stanza": True}, "n60:\n  objtype=node\n  groups=compute\n")],
    "chdef": [(None, {"type": "node", "objects": "n1",
                      "attributes": {"groups": "compute,all,x"}}, None),
              (None, {"type": "node", "objects": "n1", "plus": True,
                      "attributes": {"groups": "y"}}, None),
              (None, {"type": "node", "objects": "n2", "newname": "n2b"}, None),
              (None, {"type": "site", "objects": "clustersite",
                      "attributes": {"fuzzkey": "1"}}, None),
              (None, {"type": "node", "where": ["groups=~dead"], "attributes": {"cons": "x"}},
               None)],
    "rmdef": [(None, {"type": "node", "objects": "n30"}, None),
              (None, {"type": "osimage", "objects": IMAGE}, None),
              (None, {"type": "node", "where": ["mgt==kvm"]}, None)],
    "chtab": [(None, {"keys": {"node": "n1"}, "assignments": [["nodehm", "mgt", "=", "kvm"]]},
               None),
              (None, {"keys": {"node": "n1"}, "delete": True, "tables": ["nodehm"]}, None),
              (None, {"keys": {"key": "fuzzkey"}, "assignments": [["site", "value", "=", "1"]]},
               None)],
    "gettab": [(None, {"keys": {"node": "n1"}, "columns": ["nodehm.mgt", "nodelist.groups"],
                       "with_fieldname": True}, None),
               (None, {"keys": {"key": "fake"}, "columns": ["passwd.password"]}, None)],
    "tabdump": [(None, {}, None), (None, {"table": "nodelist"}, None),
                (None, {"table": "auditlog", "number": 3}, None),
                (None, {"table": "nodelist", "where": ["groups=~comp"]}, None),
                (None, {"table": "site", "describe": True}, None),
                (None, {"table": "passwd", "show_secrets": True}, None)],
    "tabrestore": [(None, {"table": "nodehm"}, '#node,power,mgt,comments,disable\n'
                                              '"n1",,"fake",,\n"compute",,"fake",,\n'),
                   (None, {"table": "nodegroup", "append": True}, "#groupname\n\"g9\"\n")],
    "tabgrep": [(None, {"node": "n1"}, None)],
    "tabprune": [(None, {"table": "auditlog", "number": 5}, None),
                 (None, {"table": "jobs", "percent": 50}, None),
                 (None, {"table": "eventlog", "all": True, "verbose": True}, None),
                 (None, {"table": "auditlog", "days": 1}, None),
                 (None, {"table": "auditlog", "recid": 3}, None)],
    "job": [(None, {"action": "list"}, None), (None, {"action": "list", "limit": 5}, None),
            (None, {"action": "list", "all": True, "state": "done"}, None),
            (None, {"action": "show", "jobid": "0"}, None),
            (None, {"action": "wait", "jobid": "0", "timeout": 0.2}, None),
            (None, {"action": "cancel", "jobid": "0"}, None)],
    "rpower": [("compute", {"action": "stat"}, None), ("n1,n5", {"action": "on"}, None),
               ("all", {"action": "boot"}, None)],
    "rsetboot": [("compute", {"device": "net", "persistent": True, "uefi": True}, None),
                 ("all", {"device": "stat"}, None)],
    "rinv": [("compute", {"what": "all"}, None), ("n1,n20", {"what": ["model", "serial"]},
                                                   None)],
    "rvitals": [("compute", {"what": ["temp"]}, None), ("all", {"what": "all"}, None)],
    "reventlog": [("compute", {"what": "5", "sort": True}, None),
                  ("n1", {"what": "clear"}, None), ("all", {"what": "all"}, None)],
    "nodeset": [("compute", {"state": f"osimage={IMAGE}"}, None),
                ("n1", {"state": "boot"}, None), ("all", {"state": "stat"}, None)],
    "makehosts": [(None, {}, None), (None, {"new": True}, None), ("n1", {"delete": True}, None)],
    "makedhcp": [(None, {"new": True}, None), (None, {"all": True}, None),
                 ("n1", {"query": True}, None), ("compute", {"delete": True}, None)],
    "makedns": [(None, {"new": True}, None), ("n1", {}, None)],
    "makenetworks": [(None, {"display": True}, None)],
    "copycds": [(None, {"sources": [Scratch("garbage.iso")], "inspection": True}, None),
                (None, {"sources": Scratch("empty"), "name": "rocky9.4", "arch": "x86_64",
                        "path": Scratch("out")}, None)],
    "dumpxCATdb": [(None, {"path": Scratch("out"), "verbose": True}, None)],
    "restorexCATdb": [(None, {"path": Scratch("baddump")}, None),
                      (None, {"path": Scratch("dump"), "verbose": True}, None)],
    "bootscript": [(None, {"node": "n1"}, None)],
    "callback": [(None, {"node": "n1", "status": "installed", "token": "x"}, None)],
}

#: Values at the edge of each declared type (or past it)
EDGES: dict[Arg, st.SearchStrategy] = {
    NUMBER: st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 2**63, 2**64,
                             -(2**63) - 1, 10**30, -1, 0, 0.5, -0.0, 1e-300, True]),
    TEXT: st.one_of(st.sampled_from(NASTY_TEXT), text),
    FLAG: st.sampled_from([0, 1, "true", "", None, [], {}]),
    TEXTS: st.one_of(st.lists(st.sampled_from(NASTY_TEXT), min_size=1, max_size=3),
                     st.just([]), st.just([""] * 70), text),
    TEXT_OR_TEXTS: st.one_of(st.sampled_from(NASTY_TEXT), st.just([]), st.just([None])),
    ATTRS: st.one_of(st.dictionaries(st.sampled_from(NASTY_TEXT), text, max_size=2),
                     st.just({"": ""}), st.just({"groups": ""})),
    ASSIGNMENTS: st.one_of(st.just([[]]), st.just([["nodelist", "groups", "=", "x", "y"]]),
                           st.lists(st.lists(st.sampled_from(NASTY_TEXT), min_size=4,
                                             max_size=4), max_size=2)),
}


@st.composite
def near_valid(draw, commands: list[str]) -> dict:
    """A request as a command's CLI sends it, with none, one or two of its parts changed: an
    argument at the edge of its type or of another type, one more, one less, another
    noderange."""
    command = draw(st.sampled_from([c for c in commands if c in TEMPLATES]))
    noderange, args, stdin = draw(st.sampled_from(TEMPLATES[command]))
    args = dict(args)
    kinds = declared(command)
    for _ in range(draw(st.sampled_from((0, 1, 1, 1, 2)))):
        change = draw(st.sampled_from(("edge", "edge", "edge", "add", "drop", "noderange",
                                       "stdin")))
        if change == "edge" and args:
            key = draw(st.sampled_from(sorted(args)))
            kind = kinds.get(key)
            if (command, key) in _PINNED:
                args[key] = draw(_value(command, key, kind))
            else:
                args[key] = draw(weighted((3, EDGES.get(kind, json_values)), (1, json_values)))
        elif change == "add" and kinds:
            key = draw(st.sampled_from(sorted(kinds)))
            args[key] = draw(_value(command, key, kinds[key]))
        elif change == "drop" and args:
            del args[draw(st.sampled_from(sorted(args)))]
        elif change == "noderange":
            noderange = draw(noderanges)
        elif change == "stdin":
            stdin = draw(_stdin(command))
    request: dict[str, Any] = {"command": command, "args": _pin(command, args)}
    if noderange is not None:
        request["noderange"] = noderange
    if stdin is not None:
        request["stdin"] = stdin
    return request


@st.composite
def odd_request(draw, commands: list[str]) -> dict:
    """A request object with fields of the wrong types, an unknown command, or missing
    parts."""
    command = draw(st.one_of(st.sampled_from(commands).map(lambda c: c.upper()), text,
                             json_values, st.sampled_from(commands)))
    request = draw(st.dictionaries(st.sampled_from(
        ("noderange", "args", "stdin", "env", "user", "client")), json_values, max_size=4))
    if draw(st.booleans()):
        request["command"] = command
    if isinstance(request.get("args"), dict):
        request["args"] = _pin(command if isinstance(command, str) else "", request["args"])
    return request


def bodies(commands: list[str] | None = None) -> st.SearchStrategy[Any]:
    """Whole request bodies: mostly a JSON object around a request (then dumped by the
    test, with ``dumps``), sometimes raw bytes that are not a request at all."""
    commands = commands or sorted(registry())
    async_ = st.sampled_from((False, False, False, None, 0, "", True, 1, "yes", [], {}))
    wrap = lambda req: st.fixed_dictionaries(  # noqa: E731
        {"request": st.just(req)}, optional={"async": async_})
    requests = weighted((1, well_formed(commands)), (1, near_valid(commands))).flatmap(wrap)
    odd = st.one_of(
        odd_request(commands).flatmap(wrap),
        st.dictionaries(text, json_values, max_size=3),
        json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: {"request": v}),
        json_values.filter(lambda v: not isinstance(v, dict)))
    raw = st.one_of(
        st.binary(max_size=64),
        st.sampled_from((b"", b"{", b"}", b"null", b"[]", b'{"request": ', b"\xff\xfe\x00",
                         b'{"request": {"command": "nodels"}', b"{'request': 1}",
                         b'{"request": {"command": "nodels", "args": {"attributes": ["\\ud800"]}}}',
                         b'{"request": {"command": "nodels", "noderange": "n1\\u0000"}}',
                         b'{"request": {"command": "nodels"}, "request": 1}',
                         b'\xef\xbb\xbf{"request": {"command": "nodels"}}',
                         b'{"request": {"command": "nodels", "args": NaN}}',
                         b'{"request": {"command": "tabdump", "args": {"number": -Infinity}}}')),
        st.integers(1, 3000).map(lambda d: b"[" * d + b"]" * d),
        st.integers(900, 1000).map(
            lambda d: b'{"request": {"command": "nodels", "args": {"attributes": '
                      + b"[" * d + b"]" * d + b"}}}"),
        st.integers(4000, 5000).map(
            lambda n: b'{"request": {"command": "tabdump", "args": {"number": '
                      + b"7" * n + b"}}}"))
    # about 3 in 4 well-formed requests of registered commands, 1 in 8 odd JSON, 1 in 8 raw
    return weighted((6, requests), (1, odd), (1, raw))


# ---- what every answer must be -------------------------------------------------------------
#: Characters of an error message (xcatd.daemon.dispatch.MAX_ERROR) and the note on the cut
MAX_ERROR = 2000 + 40


def problems(reply: Reply) -> list[str]:
    """What is wrong with the answer to a command-protocol request: a status other than 200
    (records) or 400/413 (a JSON error), records that do not parse or do not end with an
    ``end`` record, an internal error or a traceback in a record, an error longer than xcatd
    cuts them."""
    out: list[str] = []
    if reply.status in (400, 413):
        try:
            body = reply.json()
        except ValueError:
            return [f"HTTP {reply.status} without a JSON body: {reply.raw[:200]!r}"]
        if not (isinstance(body, dict) and isinstance(body.get("error"), str)):
            out.append(f"HTTP {reply.status} body without an error: {reply.raw[:200]!r}")
        return out
    if reply.status != 200:
        return [f"HTTP {reply.status}: {reply.raw[:300]!r}"]
    if "application/x-ndjson" not in reply.content_type:
        out.append(f"200 with Content-Type {reply.content_type!r}")
    try:
        records = reply.records()
    except ValueError as exc:
        return out + [f"a record is not JSON ({exc}): {reply.raw[-300:]!r}"]
    if not records or set(records[-1]) != {"end"}:
        out.append(f"the stream does not end with an end record: {reply.raw[-300:]!r}")
    for rec in records[:-1]:
        if set(rec) != {"r"} or not isinstance(rec["r"], dict):
            out.append(f"not a response record: {str(rec)[:300]}")
            continue
        out += record_problems(rec["r"])
    return out


def record_problems(r: dict) -> list[str]:
    """What is wrong with one response record. (Its data is not looked at: ``job show`` and
    ``tabdump jobresults`` print the errors of earlier requests as data.)"""
    out = []
    for field in ("error", "warning"):
        value = r.get(field)
        if isinstance(value, str) and ("internal error" in value or "Traceback" in value):
            out.append(f"{field}: {value[:500]}")
    if r.get("kind") == "internal":
        out.append(f"an error of kind internal: {str(r.get('error'))[:500]}")
    for field in ("error", "warning"):
        if isinstance(r.get(field), str) and len(r[field]) > MAX_ERROR:
            out.append(f"an {field} of {len(r[field])} characters, not cut")
    return out
