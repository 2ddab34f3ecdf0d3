"""Bounded work per request: the attacks of issue 11 rerun against a real xcatd, with a peer.

Each run sets up a scratch management node (xcatconfig, SQLite, nodes n[001-004] with a BMC
password, a user ``bob`` allowed nodels/lsdef but denied ``show_secrets``), starts the
xcatd console script of the Python that runs this file, and measures:

- regex bomb (groups ``compute,all``, as in the report):
  ``lsdef 'n[001-004]' -w 'groups=~(.*.*.*)*X'`` while another client asks ``nodels n002``
  ten times a second: how long that client waited at most, and the bomb's own answer;
  then the same with ``groups=~^(a|aa)+$`` on a groups value of 38 a's and a b,
  which is exponential for both regex engines;
- noderange bomb: ``nodels 'n[1-10000000]'``: xcatd's resident memory after it, and the
  size of the answer;
- secret oracle: bob walks ``nodels 'ipmi.password=~^<prefix>'`` a character at a time:
  how many requests it takes to recover the password (or how soon he is refused);
- dead BMC: ``rpower <N nodes> stat`` with every node's ``ipmi.bmc=127.0.0.9`` (nothing
  answers there): its wall time;
- TFTP slot attack: 130 read requests from one address asking ``timeout=255`` and never
  acknowledging, then a boot ROM's fetch of a loader from another address: whether it got
  the file, and how long it took.

``--peer PYTHON`` runs the same measurements with another checkout's Python (its venv) and
prints both columns with their ratio. Nothing here asserts a time: it prints figures.
Everything goes to 127.0.0.0/8. Usage::

    .venv/bin/python bench/bounds.py --peer /tmp/pyxcat-before/.venv/bin/python
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PASSWORD = "S3cretPW"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#: slow for Python's re (seconds) and for the regex package alike (tens of seconds)
SLOW_GROUPS = "a" * 38 + "b"
LOADER = b"\x7fELF-loader " * 4000  # 48 KB, about what undionly.kpxe weighs


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MN:
    """A scratch management node with xcatd running (HTTPS on ``port``, TFTP on ``tftp``)."""

    def __init__(self, tmp: Path, dead: int) -> None:
        self.root, self.home, self.bob = tmp / "root", tmp / "home", tmp / "bob"
        for d in (self.root, self.home, self.bob):
            d.mkdir()
        self.port, self.tftp = free_port(), free_port(socket.SOCK_DGRAM)
        self.env = {**os.environ, "XCATROOT": str(self.root), "HOME": str(self.home),
                    "XCATHOST": f"127.0.0.1:{self.port}"}
        self.env.pop("XCATBYPASS", None)
        self.run("xcatconfig", bypass=True)
        self.run("xcatclientcert", "-d", str(self.bob / ".xcat"), "bob", bypass=True)
        for argv in (
            ("nodeadd", "n[001-004]", "groups=compute,all",
             "nodehm.mgt=ipmi", "ipmi.bmc=127.0.0.9", f"ipmi.password={PASSWORD}"),
            ("chtab", "key=tftpserver", "site.value=embedded"),
            ("chtab", "key=tftpbind", f"site.value=127.0.0.1:{self.tftp}"),
            ("chtab", "priority=5.1", "policy.name=bob",
             'policy.parameters="show_secrets":true', "policy.rule=deny"),
            ("chtab", "priority=5.2", "policy.name=bob", "policy.commands=nodels,lsdef",
             "policy.rule=allow"),
        ):
            self.run(*argv, bypass=True)
        if dead:
            self.run("nodeadd", f"d[1-{dead}]", "groups=dead", "nodehm.mgt=ipmi",
                     "ipmi.bmc=127.0.0.9", "ipmi.password=x", bypass=True)
        tftpboot = self.root / "tftpboot" / "xcat"
        tftpboot.mkdir(parents=True, exist_ok=True)
        (tftpboot / "xnba.kpxe").write_bytes(LOADER)
        self.proc = subprocess.Popen([str(BIN / "xcatd"), "--listen", "127.0.0.1", "--port",
                                      str(self.port)], env=self.env, start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        while "ready on" not in (line := self.proc.stderr.readline()):
            if not line:
                raise SystemExit("xcatd did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def run(self, *argv: str, bypass: bool = False) -> subprocess.CompletedProcess:
        env = {**self.env, "XCATBYPASS": "1"} if bypass else self.env
        p = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True,
                           text=True, timeout=3600)
        if bypass and p.returncode:
            raise SystemExit(f"{argv}: {p.stderr}")
        return p

    def context(self, home: Path) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(home / ".xcat" / "ca.pem"))
        ctx.load_cert_chain(str(home / ".xcat" / "client-cred.pem"))
        return ctx

    def request(self, command: str, noderange: str | None = None, args: dict | None = None,
                home: Path | None = None, timeout: float = 3600) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                           context=self.context(home or self.home))
        body = json.dumps({"request": {"command": command, "noderange": noderange,
                                       "args": args or {}}})
        try:
            conn.request("POST", "/v1/request", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def rss(self) -> int:
        """xcatd's resident memory, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def errors_of(raw: bytes) -> list[str]:
    out = []
    for line in raw.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("r", {}).get("error"):
            out.append(rec["r"]["error"])
    return out


def regex_bomb(mn: MN, pattern: str = "groups=~(.*.*.*)*X") -> dict:
    done = threading.Event()
    bomb: dict = {}

    def run() -> None:
        t = time.perf_counter()
        _, raw = mn.request("lsdef", "n[001-004]", {"type": "node", "where": [pattern]})
        bomb["seconds"] = time.perf_counter() - t
        bomb["answer"] = (errors_of(raw) or [raw[:100].decode("utf-8", "replace")])[0]
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    waits = []
    while not done.is_set():
        t = time.perf_counter()
        mn.request("nodels", "n002")
        waits.append(time.perf_counter() - t)
        time.sleep(0.1)
    thread.join()
    return {"other client's longest wait (s)": max(waits), "other client's requests":
            len(waits), "bomb's own time (s)": bomb["seconds"],
            "bomb's answer": bomb["answer"][:90]}


def noderange_bomb(mn: MN) -> dict:
    before = mn.rss()
    t = time.perf_counter()
    _, raw = mn.request("nodels", "n[1-10000000]")
    return {"xcatd RSS before (MB)": before / 2**20, "xcatd RSS after (MB)": mn.rss() / 2**20,
            "answer (bytes)": len(raw), "time (s)": time.perf_counter() - t,
            "answer": (errors_of(raw) or ["?"])[0][:90]}


def oracle(mn: MN) -> dict:
    prefix, asked = "", 0
    while True:
        for c in ALPHABET:
            asked += 1
            _, raw = mn.request("nodels", f"ipmi.password=~^{prefix}{c}", home=mn.bob)
            errors = errors_of(raw)
            if errors and "denied" in errors[0].lower():
                return {"requests": asked, "recovered": repr(prefix), "answer": errors[0][:90]}
            if b'"node"' in raw:
                prefix += c
                break
        else:
            return {"requests": asked, "recovered": repr(prefix),
                    "full password": prefix == PASSWORD}


def dead_bmc(mn: MN, count: int) -> dict:
    t = time.perf_counter()
    _, raw = mn.request("rpower", "dead", {"action": "stat"})
    return {"nodes": count, "time (s)": time.perf_counter() - t,
            "nodes answered": len(errors_of(raw))}


def rrq(name: str, **options: str) -> bytes:
    opts = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())
    return struct.pack("!H", 1) + name.encode() + b"\0octet\0" + opts


def tftp_attack(mn: MN) -> dict:
    attackers = []
    try:
        for _ in range(130):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.2", 0))
            s.sendto(rrq("xcat/xnba.kpxe", timeout="255"), ("127.0.0.1", mn.tftp))
            attackers.append(s)
        time.sleep(0.5)
        t = time.perf_counter()
        got = boot_rom_fetch(mn.tftp, "xcat/xnba.kpxe", deadline=120)
        return {"loader fetched": got == LOADER, "fetch time (s)": time.perf_counter() - t}
    finally:
        for s in attackers:
            s.close()


def boot_rom_fetch(port: int, name: str, deadline: float) -> bytes | None:
    """A PXE ROM's fetch from 127.0.0.3: the request again every 2 s until answered."""
    end = time.monotonic() + deadline
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.3", 0))
        s.settimeout(2)
        while True:
            if time.monotonic() > end:
                return None
            s.sendto(rrq(name), ("127.0.0.1", port))
            try:
                data, tid = s.recvfrom(70000)
                break
            except TimeoutError:
                continue
        got, want = b"", 1
        while True:
            block = struct.unpack("!HH", data[:4])[1]
            if block == want:
                got += data[4:]
                want += 1
            s.sendto(struct.pack("!HH", 4, block), tid)
            if len(data) - 4 < 512:
                return got
            data = s.recv(70000)


def measure(dead: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-bounds-"))
    mn = None
    try:
        mn = MN(tmp, dead)
        out = {"regex bomb": regex_bomb(mn)}
        mn.run("chdef", "n001", f"groups={SLOW_GROUPS}", bypass=True)
        out["regex bomb 2"] = regex_bomb(mn, "groups=~^(a|aa)+$")
        out |= {"secret oracle": oracle(mn),
               "TFTP slot attack": tftp_attack(mn)}
        if dead:
            out["dead BMC"] = dead_bmc(mn, dead)
        out["noderange bomb"] = noderange_bomb(mn)  # last: the old daemon keeps the memory
        return out
    finally:
        if mn is not None:
            mn.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def show(label: str, mine: dict, peer: dict | None) -> None:
    print(f"\n{label}")
    for key, value in mine.items():
        other = (peer or {}).get(key)
        line = f"  {key:34} {fmt(value):>40}"
        if peer is not None:
            line += f"   peer {fmt(other):>40}"
            if isinstance(value, float) and isinstance(other, float) and value > 0:
                line += f"   peer/this {other / value:8.1f}x"
        print(line)


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dead", type=int, default=200, help="nodes behind the dead BMC")
    ap.add_argument("--peer", help="another checkout's Python, measured side by side")
    ap.add_argument("--peer-dead", type=int, default=0,
                    help="nodes behind the dead BMC for the peer (0: skip; the old daemon "
                         "needed about 8 s per node)")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.json:  # the peer's side: figures as JSON on stdout
        print(json.dumps(measure(args.dead)))
        return 0
    peer = None
    if args.peer:
        p = subprocess.run([args.peer, __file__, "--json", "--dead", str(args.peer_dead)],
                           capture_output=True, text=True, timeout=7200)
        if p.returncode:
            raise SystemExit(f"the peer failed: {p.stderr[-2000:]}")
        peer = json.loads(p.stdout.strip().splitlines()[-1])
    mine = measure(args.dead)
    print(f"this tree: {BIN.parent}" + (f"; peer: {args.peer}" if peer else ""))
    for label in mine:
        show(label, mine[label], None if peer is None else peer.get(label, {}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
