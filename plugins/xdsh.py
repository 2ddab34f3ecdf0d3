"""xdsh and xdcp: commands and file copies on many nodes at once over ssh, from the
management node's root key, through xcatd (policy, audit, jobs). The work is the engine's
(xcatd.remote.engine: one event loop, one connection per node, channels multiplexed).

Output is xCAT's: ``node: line`` for each line of a node's standard output (stdout) and error
(stderr); by default a node's lines come together when the node is done, with ``-s`` as they
arrive. A node whose command exits non-zero gets xCAT's ``Error: <node> remote Command had
return code: <rc>``; ``-z`` adds ``<node>: Remote_command_rc = <rc>`` to its output. A node
that cannot be reached, refuses its host key or runs past ``-t`` gets one error line, always
(xCAT printed unreachable nodes only with -v), and the exit code is 1 if any node failed.
"""
from __future__ import annotations

import os
import posixpath
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

from xcatd.base import cancel as cancelling
from xcatd.base.request import ErrorKind, Request, Response, XcatError
from xcatd.handler import ATTRS, FLAG, NUMBER, TEXT, TEXTS, Context, command, root_only
from xcatd.provision.synclist import SyncPlanner
from xcatd.remote import engine, files, nodes, syncjob
from xcatd.remote.engine import Event, Run
from xcatd.security import nodekeys

#: Lines of one node kept back before they are sent anyway (the default mode's buffer).
MAX_BUFFERED = 10_000
DEFAULT_NODESYNCFILEDIR = "/var/xcat/node/syncfiles"
MAX_SCRIPT = 4 * 1024 * 1024
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

COMMON = {"fanout": NUMBER, "timeout": NUMBER, "user": TEXT, "options": TEXTS,
          "verify": FLAG, "trace": FLAG, "monitor": FLAG, "json": FLAG}


def _number(req: Request, key: str) -> float | None:
    value = req.args.get(key)
    if value is None:
        return None
    if value <= 0:
        raise XcatError(f"{req.command}: -{'f' if key == 'fanout' else 't'} must be more "
                        f"than 0, not {value:g}", kind=ErrorKind.BAD_REQUEST)
    return value


def _settings(req: Request, ctx: Context, env: dict[str, str] | None = None
              ) -> engine.Settings:
    try:
        options = nodes.parse_options(req.args.get("options") or [])
    except ValueError as exc:
        raise XcatError(f"{req.command}: {exc}", kind=ErrorKind.BAD_REQUEST) from None
    fanout = _number(req, "fanout") or nodes.default_fanout(req.env) or engine.DEFAULT_FANOUT
    timeout = _number(req, "timeout")
    if timeout is None and (req.env or {}).get("DSH_TIMEOUT", "").isdigit():
        timeout = float(req.env["DSH_TIMEOUT"]) or None
    user = req.args.get("user") or "root"
    if not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise XcatError(f"{req.command}: -l {user!r} is not a user name",
                        kind=ErrorKind.BAD_REQUEST)
    maxssh = ctx.site.integer("maxssh", 0, low=0) or None
    try:
        return nodes.settings(ctx.paths, user=user, fanout=int(fanout), timeout=timeout,
                              options=options, env=env, maxssh=maxssh)
    except ValueError as exc:
        raise XcatError(f"{req.command}: {exc}") from None


def _targets(req: Request, ctx: Context, names: list[str]) -> list[engine.Target]:
    options = nodes.parse_options(req.args.get("options") or [])
    return nodes.targets(ctx, names, port=int(options.get("Port", 22)))


def _trace(req: Request, settings: engine.Settings, targets: list[engine.Target],
           what: str) -> Iterator[Response]:
    if not req.args.get("trace"):
        return
    yield Response(data=f"TRACE: {req.command}: {len(targets)} nodes, fanout "
                        f"{settings.fanout}, timeout "
                        f"{'none' if settings.timeout is None else f'{settings.timeout:g}'}"
                        f", user {settings.user}, host keys "
                        f"{'checked' if settings.strict else 'not checked'}"
                        + (f", at most {settings.maxssh} connections (site.maxssh)"
                           if settings.maxssh else ""))
    for t in targets:
        yield Response(data=f"TRACE: {t.node}: ssh {settings.user}@{t.host} port {t.port}: "
                            f"{what}")


def _results(req: Request, run: Run, targets: list[engine.Target]) -> Iterator[Response]:
    """The run's events as xCAT's lines: per node when it is done, or as they come (-s)."""
    stream = bool(req.args.get("stream"))
    silent = bool(req.args.get("silent"))
    monitor = bool(req.args.get("monitor"))
    exitcode = bool(req.args.get("exitcode") or req.args.get("json"))
    held: dict[str, list[Response]] = {}
    try:
        if monitor:
            yield Response(data=f"dsh>  Starting on {len(targets)} nodes")
        yield from _events(run, held, stream, silent, monitor, exitcode)
    finally:
        run.stop()     # at once when it has ended; a closed request stops it


def _events(run: Run, held: dict[str, list[Response]], stream: bool, silent: bool,
            monitor: bool, exitcode: bool) -> Iterator[Response]:
    for ev in run.iter(stopped=cancelling.requested):
        if ev.kind in ("out", "err"):
            if silent:
                continue
            key = "stdout" if ev.kind == "out" else "stderr"
            resp = Response(node=ev.node, data=ev.text, obj={key: [ev.text]},
                            stream="err" if ev.kind == "err" else None)
            if stream:
                yield resp
                continue
            lines = held.setdefault(ev.node, [])
            lines.append(resp)
            if len(lines) >= MAX_BUFFERED:
                yield from lines
                lines.clear()
            continue
        yield from held.pop(ev.node, [])
        yield from _end_of(ev, exitcode, monitor, silent)


def _end_of(ev: Event, exitcode: bool, monitor: bool, silent: bool) -> Iterator[Response]:
    if ev.kind == "rc":
        rc = ev.rc or 0
        if exitcode:   # xCAT's -z line (also what --json asks for: every node's rc)
            yield Response(node=ev.node, data=f"Remote_command_rc = {rc}", obj={"rc": rc})
        if rc != 0:
            yield Response(error=f"{ev.node} remote Command had return code: {rc}",
                           errorcode=1) if not silent else Response(errorcode=1)
        if monitor:
            yield Response(data=f"dsh>  Remote_command_{'successful' if rc == 0 else 'failed'}"
                                f" {ev.node}")
    elif ev.kind == "error":   # xdsh's own error about the node: -Q does not hide it
        yield Response(node=ev.node, error=ev.text, errorcode=1)
        if monitor:
            yield Response(data=f"dsh>  Remote_command_failed {ev.node}")


@command("xdsh", noderange="required",
         args={**COMMON, "command": TEXT, "script": TEXT, "script_name": TEXT, "env": ATTRS,
               "stream": FLAG, "exitcode": FLAG, "silent": FLAG,
               "sshsetup": FLAG, "cleanup": FLAG, "sudo": FLAG, "password": TEXT})
def xdsh(req: Request, ctx: Context, nr) -> Iterator[Response]:
    a = req.args
    names = list(nr)
    if a.get("sshsetup"):
        yield from _ssh_setup(req, ctx, names)
        return
    command_text = (a.get("command") or "").strip()
    if a.get("cleanup"):
        if command_text or a.get("script") is not None:
            raise XcatError("xdsh: -c takes no command", kind=ErrorKind.BAD_REQUEST)
        where = ctx.site.text("nodesyncfiledir", DEFAULT_NODESYNCFILEDIR) or \
            DEFAULT_NODESYNCFILEDIR
        if not posixpath.isabs(where) or posixpath.normpath(where) == "/":
            raise XcatError(f"xdsh -c: site.nodesyncfiledir {where!r} is not a directory "
                            "xdsh may remove")
        command_text = f"rm -rf -- {shlex.quote(posixpath.normpath(where))}"
    env = a.get("env") or {}
    bad = [k for k in env if not ENV_NAME.fullmatch(k)]
    if bad:
        raise XcatError(f"xdsh: {bad[0][:40]!r} is not an environment variable name",
                        kind=ErrorKind.BAD_REQUEST)
    settings = _settings(req, ctx, env=env)
    settings.sudo = bool(a.get("sudo"))
    if a.get("script") is not None:
        body = a["script"].encode()
        if len(body) > MAX_SCRIPT:
            raise XcatError(f"xdsh -e: the script is over {MAX_SCRIPT // 1048576} MiB",
                            kind=ErrorKind.BAD_REQUEST)
        job: engine.NodeJob = files.ScriptJob(body, command_text)
        what = f"{a.get('script_name') or 'script'} {command_text}".strip()
    elif command_text:
        job = engine.NodeJob(command_text)
        what = command_text
    else:
        raise XcatError("xdsh: no command to run (give a command, -e script, -c or -K)",
                        kind=ErrorKind.BAD_REQUEST)
    targets = _targets(req, ctx, names)
    yield from _trace(req, settings, targets, what)
    yield from _results(req, Run(targets, job, settings), targets)


def _ssh_setup(req: Request, ctx: Context, names: list[str]) -> Iterator[Response]:
    """xdsh -K: the management node's root public keys (and the site's key list) into the
    nodes' authorized_keys, over the key login or the password the admin gave
    (DSH_REMOTE_PASSWORD; never recorded); root's key pair too for the nodes that
    site.sshbetweennodes names (ALLGROUPS, NOGROUPS or groups). 10 seconds a node unless
    -t says otherwise, as in xCAT."""
    if req.args.get("command") or req.args.get("script") is not None:
        raise XcatError("xdsh -K takes no command", kind=ErrorKind.BAD_REQUEST)
    root_only(req, "xdsh -K")
    settings = _settings(req, ctx)
    if req.args.get("timeout") is None:
        settings.timeout = 10.0
    password = req.args.get("password")
    if password:
        settings.password = password
    public = nodekeys.root_public_keys(ctx.paths, ctx.installdir)
    # root's key pair goes to root's own ~/.ssh only: never to another user's (-l)
    between = _between_nodes(ctx, names) if settings.user == "root" else set()
    pair: dict[str, bytes] = {}
    if between:
        try:
            key = nodekeys.root_private_key(ctx.paths)
        except nodekeys.NodeKeyError as exc:
            raise XcatError(f"xdsh -K: {exc}") from None
        pair = {key.name: key.read_bytes(), f"{key.name}.pub": Path(f"{key}.pub").read_bytes()}
    job = files.KeySetupJob(public, pair, between)
    targets = _targets(req, ctx, names)
    yield from _trace(req, settings, targets, "set up ssh keys")
    yield from _results(req, Run(targets, job, settings), targets)


def _between_nodes(ctx: Context, names: list[str]) -> set[str]:
    """The nodes site.sshbetweennodes lets ssh to each other (xCAT's ALLGROUPS default)."""
    value = ctx.site.text("sshbetweennodes", "ALLGROUPS")
    groups = {g.strip() for g in value.split(",") if g.strip()}
    if not groups or "ALLGROUPS" in groups:
        return set(names)
    if "NOGROUPS" in groups:
        return set()
    member = ctx.db.resolve(names, {"nodelist": ["groups"]})
    return {n for n in names
            if groups & {g.strip() for g in
                         (member.get(n, {}).get(("nodelist", "groups")) or "").split(",")}}


@command("xdcp", noderange="required",
         args={**COMMON, "sources": TEXTS, "target": TEXT, "recursive": FLAG,
               "preserve": FLAG, "pull": FLAG, "synclist": TEXT})
def xdcp(req: Request, ctx: Context, nr) -> Iterator[Response]:
    """Push (default), pull (-P) or sync a synclist (-F). The sources are read, and pulled
    files written, on the management node as root: only root may run it."""
    root_only(req, "xdcp")
    a = req.args
    names = list(nr)
    settings = _settings(req, ctx)
    if a.get("synclist") is not None:
        yield from _sync(req, ctx, names, settings)
        return
    sources = [s for s in a.get("sources") or [] if s]
    dst = (a.get("target") or "").strip()
    if not sources or not dst:
        raise XcatError("xdcp: give the source files and the target path",
                        kind=ErrorKind.BAD_REQUEST)
    if a.get("pull"):
        for s in sources:
            if not posixpath.isabs(s):
                raise XcatError(f"xdcp -P: {s}: give the full path of the file on the nodes",
                                kind=ErrorKind.BAD_REQUEST)
        if not os.path.isdir(dst):
            raise XcatError(f"xdcp -P: {dst} is not a directory on the management node",
                            kind=ErrorKind.BAD_REQUEST)
        job: engine.NodeJob = files.PullJob(sources, dst, bool(a.get("recursive")),
                                            bool(a.get("preserve")))
        what = f"pull {' '.join(sources)} to {dst}/<name>._<node>"
    else:
        if not posixpath.isabs(dst):
            raise XcatError(f"xdcp: {dst}: the target must be a full path on the nodes",
                            kind=ErrorKind.BAD_REQUEST)
        local: list[files.LocalFile] = []
        for s in sources:
            try:
                local += files.local_tree(s, bool(a.get("recursive")))
            except ValueError as exc:
                raise XcatError(f"xdcp: {exc}", kind=ErrorKind.BAD_REQUEST) from None
        try:   # several sources of one name would land on one path
            files.plan_push([(f.path, f.rel) for f in local], dst, True)
        except ValueError as exc:
            raise XcatError(f"xdcp: {exc}", kind=ErrorKind.BAD_REQUEST) from None
        job = files.PushJob(local, dst, bool(a.get("preserve")))
        what = f"copy {' '.join(sources)} to {dst}"
    targets = _targets(req, ctx, names)
    yield from _trace(req, settings, targets, what)
    yield from _results(req, Run(targets, job, settings), targets)


def _sync(req: Request, ctx: Context, names: list[str], settings: engine.Settings
          ) -> Iterator[Response]:
    """xdcp -F: the synclist's plan for each node (as updatenode -F makes it), applied on
    the node by xcatsync.py over ssh. A node whose plan has errors is not touched."""
    path = req.args["synclist"]
    root = str(ctx.paths.root).rstrip("/")
    if root and path.startswith(root + "/"):   # a test's scratch XCATROOT
        path = path[len(root):]
    if not os.path.isfile(ctx.paths.under(path)):
        raise XcatError(f"xdcp -F: {req.args['synclist']}: no such file",
                        kind=ErrorKind.BAD_REQUEST)
    planner = SyncPlanner(ctx, names, synclists=[path])
    plans = {n: planner.plan(n) for n in names}
    bad = {n for n, p in plans.items() if p.errors}
    for n in sorted(bad):
        for text in plans[n].errors:
            yield Response(node=n, error=text, errorcode=1)
    good = [n for n in names if n not in bad]
    if not good:
        return
    targets = _targets(req, ctx, good)
    job = syncjob.SyncJob(plans, syncjob.node_half())
    yield from _trace(req, settings, targets, f"sync {path}")
    yield from _results(req, Run(targets, job, settings), targets)
