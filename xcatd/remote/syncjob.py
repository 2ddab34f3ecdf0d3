"""xdcp -F over ssh: each node applies its sync plan (xcatd.provision.synclist, the same
plan ``updatenode -F`` gives the node agent) with the node half that the agent uses,
xcatsync.py, sent over the node's connection with a small driver. The driver asks for the
files the node lacks on its stdout (a marked line naming the management-node path) and
reads them from its stdin, so a file already in place is never sent, and only files the
plan lists are ever answered. APPEND, MERGE, EXECUTE and EXECUTEALWAYS behave as they do
under updatenode -F. The node needs python3 (3.9 or later).
"""
from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from importlib import resources
from typing import Any

from xcatd.provision.synclist import SyncPlan
from xcatd.remote.engine import Event, NodeError, NodeJob, Settings, Target, asyncssh, run_command

FETCH = "\x1excat-fetch "

#: The node-side driver: runs xcatsync.apply with a fetch that asks the management node.
DRIVER = r'''
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import xcatsync
out, inp = sys.stdout.buffer, sys.stdin.buffer
def say(text):
    out.write(text.encode("utf-8", "replace") + b"\n"); out.flush()
def fetch(path):
    out.write(b"\x1excat-fetch " + path.encode("utf-8", "surrogateescape") + b"\n")
    out.flush()
    size = int(inp.readline() or b"-1")
    if size < 0:
        raise OSError("the management node refused it")
    data = inp.read(size)
    if len(data) != size:
        raise OSError("the management node's answer ended early")
    return data
with open(sys.argv[1]) as fh:
    plan = json.load(fh)
rc, _lines = xcatsync.apply(plan, fetch, log=say)
sys.exit(rc)
'''


def node_half() -> bytes:
    return resources.files("xcatd.postscripts").joinpath("xcatsync.py").read_bytes()


class SyncJob(NodeJob):
    """Apply one node's SyncPlan (xdcp -F)."""

    def __init__(self, plans: dict[str, SyncPlan], xcatsync: bytes) -> None:
        super().__init__()
        self.plans = plans
        self.xcatsync = xcatsync

    async def work(self, conn: Any, target: Target, settings: Settings,
                   emit: Callable[[Event], None], state: dict) -> int:
        plan = self.plans[target.node]
        work = f"/tmp/xdcp-sync.{secrets.token_hex(6)}"
        async with conn.start_sftp_client() as sftp:
            await sftp.mkdir(work, asyncssh.SFTPAttrs(permissions=0o700))
            state.setdefault("cleanup", []).append(f"rm -rf {work}")
            for name, body in (("xcatsync.py", self.xcatsync),
                               ("driver.py", DRIVER.encode()),
                               ("plan.json", json.dumps(plan.as_dict()).encode())):
                async with sftp.open(f"{work}/{name}", "wb") as fh:
                    await fh.write(body)
        pending: set[asyncio.Task] = set()

        def intercept(chan: Any, line: str) -> bool:
            if not line.startswith(FETCH):
                return False
            task = asyncio.get_running_loop().create_task(
                _answer(chan, plan, line[len(FETCH):]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            return True

        command = (f"command -v python3 >/dev/null || {{ echo 'xdcp -F needs python3 on the "
                   f"node' >&2; rm -rf {work}; exit 127; }}; python3 {work}/driver.py "
                   f"{work}/plan.json; rc=$?; rm -rf {work}; exit $rc")
        rc = await run_command(conn, target.node, command, settings.env, emit, state, intercept)
        state["cleanup"].remove(f"rm -rf {work}")
        if rc == 127:
            raise NodeError("xdcp -F needs python3 on the node")
        return rc


async def _answer(chan: Any, plan: SyncPlan, path: str) -> None:
    """Send the file the node asked for, if its plan lists it (one answer at a time: the
    driver asks for one file and waits for it)."""
    if not plan.allows(path):
        chan.write(b"-1\n")
        return
    try:
        data = await asyncio.to_thread(_read, path)
    except OSError:
        chan.write(b"-1\n")
        return
    chan.write(f"{len(data)}\n".encode() + data)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
