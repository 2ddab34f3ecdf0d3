r"""Simulated node agents: many asyncio tasks in one process, each one node's xcatagent as
the management node sees it, for the scale test and the bench.

Each agent has its own EC P-256 key and certificate request, its own source address in
127.0.0.0/8 (node nN sends from 127.1.(N/200).(N%200+1), the value ``IP_REGEX`` gives
hosts.ip on the group row) and its own aiohttp session: it enrols over plain HTTP with its
boot token, then speaks mutual TLS with its node certificate to xcatd, as the real agent
(postscripts/xcatagent) does: the plan, the plan's scripts (checked against their sha256),
events, the boot's status, and the long poll for updatenode tasks, which it answers with
the lines the real agent prints. Scripts are not run: the management node's side is what
is measured and tested.

>>> [sim_ip(n) for n in ("n1", "n199", "n200", "n1000")]
['127.1.0.2', '127.1.0.200', '127.1.1.1', '127.1.5.1']
>>> from xcatd.base.regexval import compute
>>> all(compute(IP_REGEX, f"n{i}") == sim_ip(f"n{i}") for i in (1, 199, 200, 1000))
True
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import ssl
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xcatd.base.paths import Paths
from xcatd.db.database import Database
from xcatd.provision.nextboot import now_text, token_hash

#: hosts.ip of every simulated node, on its group's row (xCAT's regex value)
IP_REGEX = r"|\D+(\d+)|127.1.($1/200).($1%200+1)|"
HTTP_TIMEOUT = 60.0       # seconds of one request (the long poll gets its wait on top)
RETRY_DELAY = 0.5         # seconds before a failed poll is tried again
_NUMBER = re.compile(r"\D+(\d+)")


class SimError(RuntimeError):
    """What went wrong for one simulated agent (the message names the node)."""


def sim_ip(node: str) -> str:
    """The address the simulated ``node`` sends from (what IP_REGEX computes)."""
    m = _NUMBER.match(node)
    if not m:
        raise ValueError(f"{node}: a simulated node's name ends in its number")
    n = int(m.group(1))
    return f"127.1.{n // 200}.{n % 200 + 1}"


# ---- the management node's side ---------------------------------------------------------------
def define(run: Callable[..., Any], paths: Paths, count: int, *, xcatdport: int,
           scripts: dict[str, str], prefix: str = "n", group: str = "simagents") -> list[str]:
    """Nodes ``prefix``1..``count`` in ``group`` (hosts.ip by IP_REGEX), site.master and
    site.xcatdport for the agents, and ``scripts`` (name -> text) as the group's
    postscripts, written to the postscripts directory; ``run(cmd, *args)`` runs a command
    as an admin would (and fails on an error). Returns the node names."""
    run("nodeadd", f"{prefix}[1-{count}]", f"groups={group}")
    run("chtab", f"node={group}", f"hosts.ip={IP_REGEX}")
    run("chtab", "key=master", "site.value=127.0.0.1")
    run("chtab", "key=xcatdport", f"site.value={xcatdport}")
    run("chtab", "node=xcatdefaults", "postscripts.postscripts=",
        "postscripts.postbootscripts=")
    run("chtab", f"node={group}", f"postscripts.postscripts={','.join(scripts)}")
    d = paths.under("/install/postscripts")
    d.mkdir(parents=True, exist_ok=True)
    for name, text in scripts.items():
        (d / name).write_text(text)
        (d / name).chmod(0o755)
    return [f"{prefix}{i}" for i in range(1, count + 1)]


def arm(paths: Paths, nodes: Iterable[str]) -> dict[str, str]:
    """What nodeset does for each node's boot token (its hash and time in bootstate), for
    all of them in one transaction: {node: token}."""
    tokens = {n: secrets.token_urlsafe(18) for n in nodes}
    db = Database.open(paths)
    stamp = now_text()
    with db.begin() as conn:
        db.set_rows(conn, "bootstate", {(n,): {"tokenhash": token_hash(t), "tokentime": stamp}
                                        for n, t in tokens.items()})
    return tokens


# ---- one agent -------------------------------------------------------------------------------
class SimAgent:
    """One node's agent: ``enrol`` once, then ``boot``, ``post_events`` and ``serve``."""

    def __init__(self, node: str, token: str, http: str, *, task_events: bool = True) -> None:
        self.node, self.token, self.http = node, token, http
        self.ip = sim_ip(node)
        self.task_events = task_events   # post an event per script of a task, as xcatagent
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.csr = (x509.CertificateSigningRequestBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
                    .sign(self.key, hashes.SHA256())
                    .public_bytes(serialization.Encoding.PEM))
        self.session: aiohttp.ClientSession | None = None
        self.fetched: dict[str, str] = {}    # script path -> sha256 of what was fetched
        self.counts: Counter[str] = Counter()   # requests by kind, tasks answered
        self.ready = asyncio.Event()         # the first task poll was answered

    # ---- identity ----------------------------------------------------------------------------
    async def enrol(self) -> None:
        """POST /xcat/enrol/<node> with the token and the CSR, from the node's address; then
        a session with the certificate it got."""
        url = f"http://{self.http}/xcat/enrol/{self.node}"
        conn = aiohttp.TCPConnector(local_addr=(self.ip, 0), force_close=True)
        try:
            async with aiohttp.ClientSession(connector=conn) as s, s.post(
                    url, data=self.csr, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT),
                    headers={"Authorization": f"Bearer {self.token}",
                             "Content-Type": "application/x-pem-file"}) as r:
                body = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SimError(f"{self.node}: enrol: {type(exc).__name__}: {exc}") from None
        self.counts["enrol"] += 1
        if status != 200:
            raise SimError(f"{self.node}: enrol: HTTP {status} "
                           f"{body.decode(errors='replace').strip()[:200]}")
        got = json.loads(body)
        self.open(got["ca"], got["cert"], got.get("master") or "127.0.0.1", int(got["port"]))

    def open(self, ca: str, cert: str, master: str, port: int) -> None:
        """The mutual TLS session to xcatd: the key and certificate go through a 0600 file
        only as long as ssl needs to read them."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca)
        ctx.check_hostname = False   # the server is whoever holds a serverAuth cert of the CA
        key = self.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        fd, path = tempfile.mkstemp(prefix=f"sim-{self.node}-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key + cert.encode())
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)
        conn = aiohttp.TCPConnector(ssl=ctx, local_addr=(self.ip, 0), limit=4)
        self.session = aiohttp.ClientSession(f"https://{master}:{port}", connector=conn)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    # ---- requests ----------------------------------------------------------------------------
    async def request(self, method: str, path: str, body: Any = None,
                      timeout: float = HTTP_TIMEOUT) -> tuple[int, bytes]:
        """One request on the agent's channel; a kept-alive connection the server closed is
        tried once more, as xcatagent does."""
        if self.session is None:
            raise SimError(f"{self.node}: not enrolled")
        for attempt in (0, 1):
            try:
                async with self.session.request(
                        method, "/xcat/agent/" + path, json=body,
                        timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    return r.status, await r.read()
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt:
                    raise SimError(f"{self.node}: {method} {path}: {exc}") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise SimError(f"{self.node}: {method} {path}: {type(exc).__name__}: "
                               f"{exc}") from None
        raise AssertionError("unreachable")

    async def get(self, path: str) -> bytes:
        status, data = await self.request("GET", path)
        self.counts[path.split("?")[0].split("/")[0]] += 1
        if status != 200:
            raise SimError(f"{self.node}: GET {path}: HTTP {status} "
                           f"{data.decode(errors='replace').strip()[:200]}")
        return data

    async def post(self, path: str, body: Any) -> dict:
        status, data = await self.request("POST", path, body)
        self.counts[path.split("/")[0]] += 1
        if status != 200:
            raise SimError(f"{self.node}: POST {path}: HTTP {status} "
                           f"{data.decode(errors='replace').strip()[:200]}")
        return json.loads(data or b"{}")

    async def plan(self, mode: str, scripts: str | None = None) -> dict:
        q = f"plan?mode={mode}" + (f"&scripts={urllib.parse.quote(scripts)}" if scripts else "")
        plan = json.loads(await self.get(q))
        if plan.get("errors"):
            raise SimError(f"{self.node}: plan errors: {'; '.join(plan['errors'])}")
        return plan

    async def fetch_scripts(self, scripts: list[dict]) -> None:
        """The plan's scripts, each checked against its sha256; one already fetched with the
        same hash is not fetched again (xcatagent keeps them in /xcatpost)."""
        for s in scripts:
            if self.fetched.get(s["path"]) == s["sha256"]:
                continue
            data = await self.get("script/" + urllib.parse.quote(s["path"]))
            if hashlib.sha256(data).hexdigest() != s["sha256"]:
                raise SimError(f"{self.node}: {s['path']}: sha256 mismatch")
            self.fetched[s["path"]] = s["sha256"]

    async def post_events(self, events: list[dict]) -> None:
        await self.post("events", {"events": events})

    async def post_status(self, status: str, failed: list[str] | None = None) -> None:
        await self.post("status", {"status": status, "failed": failed or []})

    def _event(self, s: dict, phase: str) -> dict:
        return {"phase": phase, "script": _label(s), "status": "ok", "rc": 0,
                "duration": 0.001, "tail": f"simulated {_label(s)} on {self.node}\n"}

    # ---- what the agent does -----------------------------------------------------------------
    async def boot(self) -> list[str]:
        """A diskless boot's work after enrolment: configuring, the plan, its scripts, one
        batch of events (one per script), booted. Returns the scripts' labels."""
        await self.post_status("configuring")
        plan = await self.plan("boot")
        await self.fetch_scripts(plan["scripts"])
        events = [self._event(s, s["kind"] + "s") for s in plan["scripts"]]
        if events:
            await self.post_events(events)
        await self.post_status("booted")
        return [_label(s) for s in plan["scripts"]]

    async def do_task(self, task: dict) -> dict:
        """A task's result, as xcatagent's do_task makes it (the scripts are not run: each
        one's lines say it ran and exited 0)."""
        kind = task.get("kind")
        try:
            if kind == "scripts":   # the plan comes with the task (else: asked for)
                plan = task.get("plan") or await self.plan("updatenode",
                                                           task.get("scripts") or None)
                await self.fetch_scripts(plan["scripts"])
                lines: list[str] = []
                for s in plan["scripts"]:
                    lines += [f"{s['kind']} start..: {_label(s)}",
                              f"simulated {_label(s)} on {self.node}",
                              f"{s['kind']} end....: {_label(s)} exited with code 0"]
                # the events go with the result, as xcatagent sends them
                events = ([self._event(s, "updatenode") for s in plan["scripts"]]
                          if self.task_events else [])
                return {"rc": 0, "lines": lines, "failed": [], "events": events}
            if kind == "sync":
                plan = json.loads(await self.get("synclist"))
                return {"rc": 0, "lines": [f"synclist of {len(plan.get('files') or [])} "
                                           "entries (simulated)"], "failed": []}
        except (SimError, ValueError, KeyError, TypeError) as exc:   # a bad answer too
            return {"rc": 1, "lines": [f"error: {type(exc).__name__}: {exc}"], "failed": []}
        return {"rc": 1, "lines": [f"unknown task {kind!r}"], "failed": []}

    async def serve(self, wait: float, gate: asyncio.Semaphore | None = None,
                    errors: list[str] | None = None) -> None:
        """The long poll, for ever (until cancelled): the first poll asks for no wait, so
        ``ready`` is set once xcatd has seen the agent (it counts as connected for
        agenttasks.CONNECT_GRACE seconds after a poll, and while one waits). ``gate``
        bounds how many agents make their first connection at once. A failed poll is
        noted in ``errors`` and tried again after RETRY_DELAY."""
        first = True
        while True:
            try:
                async with gate if (first and gate is not None) else contextlib.nullcontext():
                    status, data = await self.request("GET", f"task?wait={0 if first else wait:g}",
                                                      timeout=wait + HTTP_TIMEOUT)
                self.counts["task-poll"] += 1
                if status not in (200, 204):
                    raise SimError(f"{self.node}: task poll: HTTP {status} "
                                   f"{data.decode(errors='replace').strip()[:200]}")
                if first:
                    first = False
                    self.ready.set()
                if status == 204:
                    continue
                task = json.loads(data)
                result = await self.do_task(task)
                await self.post(f"task/{task['id']}", result)
                self.counts["task-done"] += 1
            except (SimError, ValueError, KeyError, TypeError) as exc:
                if errors is not None:
                    errors.append(str(exc) if isinstance(exc, SimError) else
                                  f"{self.node}: task: {type(exc).__name__}: {exc}")
                await asyncio.sleep(RETRY_DELAY)


def _label(script: dict) -> str:
    return " ".join([script["name"], *script.get("args", [])])


# ---- many agents -------------------------------------------------------------------------------
class Fleet:
    """The agents of ``tokens`` ({node: boot token}), enrolling at ``http`` (host:port of
    the HTTP site). Use as ``async with Fleet(...) as fleet``: whatever happens, the
    serving tasks are cancelled and every session closed on the way out. Failures are
    collected in ``errors`` (one line each, naming the node), never raised mid-way."""

    def __init__(self, tokens: dict[str, str], http: str, *, concurrency: int = 100,
                 task_events: bool = True) -> None:
        self.agents = [SimAgent(n, t, http, task_events=task_events)
                       for n, t in tokens.items()]
        self.concurrency = concurrency
        self.errors: list[str] = []
        self._serving: list[asyncio.Task] = []

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def each(self, fn: Callable[[SimAgent], Awaitable[Any]],
                   concurrency: int | None = None) -> float:
        """``fn(agent)`` for every agent, at most ``concurrency`` at a time (the fleet's
        by default); the wall seconds it took. Errors go to ``errors``."""
        sem = asyncio.Semaphore(concurrency or self.concurrency)

        async def one(agent: SimAgent) -> None:
            async with sem:
                try:
                    await fn(agent)
                except SimError as exc:
                    self.errors.append(str(exc))

        start = time.perf_counter()
        await asyncio.gather(*(one(a) for a in self.agents))
        return time.perf_counter() - start

    async def serve(self, wait: float = 20.0, ready_timeout: float = 120.0) -> float:
        """Every agent's long poll, in the background; returns once xcatd has seen every
        agent poll (the seconds that took), or raises SimError naming the agents it has not
        seen within ``ready_timeout``."""
        gate = asyncio.Semaphore(self.concurrency)
        start = time.perf_counter()
        self._serving = [asyncio.create_task(a.serve(wait, gate, self.errors),
                                             name=f"serve-{a.node}") for a in self.agents]
        waiting = [asyncio.create_task(a.ready.wait()) for a in self.agents]
        _done, pending = await asyncio.wait(waiting, timeout=ready_timeout)
        for t in pending:
            t.cancel()
        if pending:
            late = [a.node for a in self.agents if not a.ready.is_set()]
            raise SimError(f"{len(late)} agents not polling after {ready_timeout:g} s: "
                           f"{', '.join(late[:10])}; errors: {self.errors[:3]}")
        return time.perf_counter() - start

    async def stop_serving(self) -> None:
        for t in self._serving:
            t.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
        self._serving = []

    async def close(self) -> None:
        await self.stop_serving()
        await asyncio.gather(*(a.close() for a in self.agents), return_exceptions=True)

    def count(self, what: str) -> int:
        return sum(a.counts[what] for a in self.agents)
