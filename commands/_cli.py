"""Shared plumbing for the command-line front: build a Request, print Responses, exit.

Commands stay thin: parse argv with click, call ``run``. Usage errors print the message and
the usage and exit 1, as xCAT's commands do. Every command also takes what xCAT's do:
``-h``/``--help``/``-?`` (a usage starting ``Usage:``), ``-v``/``--version`` (``-v`` only where
the command gives it no other meaning), and Getopt's single-dash long options (``-help``,
``-version``, ``-long``: any ``--word`` the command has).

Commands that list or report (JSON_COMMANDS) take ``--json``: instead of lines, one JSON
document (JsonReport) with the nodes' values, errors and warnings, printed at the end; the
exit code stays xCAT's. Long work streams progress Responses (xcatd.base.progress); they are
drawn on one status line of stderr (StatusLine) only when stderr is a terminal and --json is
off, and cleared before any other output and at the end.
"""
from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn, TextIO

import click

from xcatd.base import version
from xcatd.base.noderange import NodeRangeError, inline_files
from xcatd.base.request import Request, Response
from xcatd.fronts.client import submit

#: Environment variables a request carries to the plugins.
PASSED_ENV = ("XCAT_NODE_PREFIX", "XCAT_NODE_SUFFIX", "XCATROOT", "XCATBYPASS", "DSH_FANOUT",
              "DSH_TIMEOUT")

CONTEXT = {"help_option_names": ["-h", "--help", "-?"], "max_content_width": 100}


#: The commands that list or report: they take --json.
JSON_COMMANDS = frozenset({"nodels", "lsdef", "tabdump", "gettab", "rpower", "rsetboot",
                           "rinv", "rvitals", "reventlog", "nodeset", "job", "nodestat",
                           "pping", "nodeevents", "xdsh", "xdcp"})

#: Set by the --async option every command has, and by --json.
_options = {"async": False, "json": False, "retry": False}


def json_mode() -> bool:
    """Whether this invocation was given --json."""
    return _options["json"]


def run(command: str, noderange: str | None = None, args: dict[str, Any] | None = None,
        stdin: str | None = None, *, per_node: bool = True,
        gather: Any = None) -> NoReturn:
    """Submit one request, print its responses as they arrive (or, with --json, one
    document at the end: see JsonReport for ``per_node``), exit with xCAT's code.
    ``gather`` (xdsh --xdshbak): an object whose ``take(resp)`` keeps the nodes' output
    lines it wants instead of printing them, and whose ``lines()`` are printed at the end."""
    if noderange and "^" in noderange:
        try:  # ^file is read here, with this user's rights, not by the daemon
            noderange = inline_files(noderange)
        except NodeRangeError as exc:
            fail(str(exc))
    req = Request(command=command, noderange=noderange, args=args or {},
                  env={k: os.environ[k] for k in PASSED_ENV if k in os.environ},
                  stdin=stdin, user=_user(), client=socket.gethostname())
    code = 0
    out, err = sys.stdout, sys.stderr
    async_ = _options["async"]
    report = JsonReport(command, per_node=per_node) if _options["json"] else None
    if _options["retry"]:  # (the relay's: nodes whose service node fails run on the next)
        req.args = {**req.args, "retry": True}
    _options["async"] = _options["json"] = _options["retry"] = False
    status = StatusLine(err) if report is None and _isatty(err) else None
    _signals_interrupt()
    try:
        for resp in submit(req, async_=async_):
            if resp.progress is not None:
                if status is not None:
                    status.draw(resp.progress)
                continue
            if resp.failed:
                code = code or (resp.errorcode or 1)
            if report is not None:
                report.add(resp)
                continue
            if resp.node is None and resp.data is None and resp.error is None \
                    and resp.warning is None:
                continue   # an exit status alone (xdsh -Q): nothing to print
            if gather is not None and gather.take(resp):
                continue
            if status is not None:
                status.clear()
            stream, text = resp.render()
            if stream == "err":
                out.flush()
                err.write(text + "\n")
                err.flush()
            else:
                out.write(text + "\n")
        if status is not None:
            status.clear()
        if gather is not None:
            out.write("".join(line + "\n" for line in gather.lines()))
        if report is not None:
            out.write(report.text(code) + "\n")
        out.flush()
    except BrokenPipeError:  # `nodels | head` is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt as exc:
        if status is not None:
            status.clear()
        code = 128 + getattr(exc, "signum", signal.SIGINT)
        if report is not None:
            report.add(Response(error="Interrupted", errorcode=code))
            out.write(report.text(code) + "\n")
            out.flush()
        else:
            err.write("Interrupted\n")
    sys.exit(code)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced by a buffer, or closed
        return False


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGQUIT, handled as ^C is: the request stops (xdsh kills what it started
    on the nodes) and the command exits 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise(signum: int, _frame: Any) -> None:
    raise Signalled(signum)


def _signals_interrupt() -> None:
    """TERM and QUIT interrupt a command the way INT does (xCAT's xdsh passes all three on
    to the commands it runs), when this is the main thread."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGQUIT):
            signal.signal(sig, _raise)


class JsonReport:
    """The one document ``--json`` prints, whatever the command (README, "--json")::

        {"command": "rpower", "rc": 1,
         "nodes": {"n1": {"power": "on"}},
         "data": [], "lines": [],
         "warnings": [{"node": null, "warning": "..."}],
         "errors": [{"node": "n2", "error": "...", "errorcode": 1, "kind": null}]}

    A node's answers go to ``nodes``: the plugin's machine-readable form (Response.obj)
    merged into the node's object (lists add up, objects merge, other values replace), or
    without one, the text under ``lines``. A node that only answers its name (nodels) is
    an empty object. Answers for no node go to ``data`` (their objects) or ``lines`` (their
    text). Every key is always there. ``per_node=False`` treats every answer as for no
    node, the node written into ``lines`` (job: the responses it replays are records).

    >>> r = JsonReport("rvitals")
    >>> for resp in (Response(node="n1", data="CPU Temp: 40 C", obj={"CPU Temp": "40 C"}),
    ...              Response(node="n1", data="Fan: 3000 RPM", obj={"Fan": "3000 RPM"}),
    ...              Response(node="n2", error="timeout", errorcode=1)):
    ...     r.add(resp)
    >>> r.doc["nodes"]
    {'n1': {'CPU Temp': '40 C', 'Fan': '3000 RPM'}}
    >>> r.doc["errors"]
    [{'node': 'n2', 'error': 'timeout', 'errorcode': 1, 'kind': None}]
    """

    def __init__(self, command: str, *, per_node: bool = True) -> None:
        self.per_node = per_node
        self.doc: dict[str, Any] = {"command": command, "rc": 0, "nodes": {}, "data": [],
                                    "lines": [], "warnings": [], "errors": []}

    def add(self, resp: Response) -> None:
        if resp.error is not None:
            self.doc["errors"].append({"node": resp.node, "error": resp.error,
                                       "errorcode": resp.errorcode or 1, "kind": resp.kind})
        elif resp.warning is not None:
            self.doc["warnings"].append({"node": resp.node, "warning": resp.warning})
        elif resp.node is not None and self.per_node:
            entry = self.doc["nodes"].setdefault(resp.node, {})
            if resp.obj is not None:
                merge(entry, resp.obj)
            elif resp.data is not None:
                merge(entry, {"lines": [resp.data]})
        elif resp.obj is not None:
            self.doc["data"].append(resp.obj)
        elif resp.data is not None or resp.node is not None:
            self.doc["lines"].append(resp.render()[1])

    def text(self, rc: int) -> str:
        self.doc["rc"] = rc
        return json.dumps(self.doc, indent=2)


def merge(into: dict[str, Any], obj: dict[str, Any]) -> None:
    """Merge ``obj`` into ``into``: lists add up, objects merge, other values replace.

    >>> d = {"events": ["a"], "x": 1, "inherited": {"p": "g1"}}
    >>> merge(d, {"events": ["b"], "x": 2, "inherited": {"q": "g2"}}); d
    {'events': ['a', 'b'], 'x': 2, 'inherited': {'p': 'g1', 'q': 'g2'}}
    """
    for key, value in obj.items():
        held = into.get(key)
        if isinstance(value, list) and isinstance(held, list):
            held.extend(value)
        elif isinstance(value, dict) and isinstance(held, dict):
            merge(held, value)
        else:
            into[key] = _copy(value)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        merge(out, value)
        return out
    return value


class StatusLine:
    """Progress on one line of a terminal (stderr), redrawn in place at most every
    ``gap`` seconds, cleared before any other output and at the end."""

    def __init__(self, stream: TextIO, gap: float = 0.1) -> None:
        self.stream, self.gap = stream, gap
        self.shown = False
        self.last = 0.0
        self.ticks: dict[str, int] = {}

    def draw(self, state: dict[str, Any]) -> None:
        what = str(state.get("what") or "")
        self.ticks[what] = self.ticks.get(what, 0) + 1
        now = time.monotonic()
        done, total = state.get("done"), state.get("total")
        complete = isinstance(done, int) and isinstance(total, int) and 0 < total <= done
        if self.shown and now - self.last < self.gap and not complete:
            return  # (a finished bar is always drawn: the last thing the admin sees of it)
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns or 80
        except (OSError, ValueError, AttributeError):
            width = 80
        width = max(width - 1, 20)  # the last column would wrap on some terminals
        text = progress_text(state, self.ticks[what], width)
        self.stream.write("\r" + text[:width] + "\x1b[K")
        self.stream.flush()
        self.shown, self.last = True, now

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def progress_text(state: dict[str, Any], ticks: int = 1, width: int = 79) -> str:
    """The status line for a progress state: a bar when the total is known, the count when
    only that is, else a line of dots that grows with each update.

    >>> progress_text({"what": "Copying", "done": 3 << 29, "total": 3 << 30, "unit": "bytes"})
    'Copying [##########          ]  50% 1.5 GiB of 3.0 GiB'
    >>> progress_text({"what": "Updating dhcpd", "done": 120, "unit": "hosts"})
    'Updating dhcpd: 120 hosts'
    >>> progress_text({"what": "Writing"}, ticks=3)
    'Writing ...'
    """
    what = str(state.get("what") or "Working")
    done, total, unit = state.get("done"), state.get("total"), str(state.get("unit") or "")
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        part = min(max(done / total, 0.0), 1.0)
        filled = int(part * 20)
        return (f"{what} [{'#' * filled}{' ' * (20 - filled)}] {int(part * 100):3d}% "
                f"{_amount(done, unit)} of {_amount(total, unit)}")
    if isinstance(done, int):
        return f"{what}: {_amount(done, unit)}"
    room = max(width - len(what) - 1, 1)
    return f"{what} {'.' * (((ticks - 1) % room) + 1)}"


def _amount(n: int, unit: str) -> str:
    if unit != "bytes":
        return f"{n} {unit}".rstrip() if unit else str(n)
    if n < 1024:
        return f"{n} bytes"
    size = n / 1024
    for name in ("KiB", "MiB", "GiB"):
        if size < 1024 or name == "GiB":
            break
        size /= 1024
    return f"{size:.1f} {name}"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def fail(message: str, code: int = 1) -> NoReturn:
    """``Error: message`` and exit ``code``; with --json, the document saying so."""
    if _options["json"]:
        ctx = click.get_current_context(silent=True)
        _json_failure(ctx.info_name if ctx else None, message, code)
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _json_failure(command: str | None, message: str, code: int) -> NoReturn:
    """The --json document of a command refused before it sent a request."""
    _options["json"] = False
    report = JsonReport(command or os.path.basename(sys.argv[0]))
    report.add(Response(error=message, errorcode=code))
    sys.stdout.write(report.text(code) + "\n")
    sys.stdout.flush()
    sys.exit(code)


def _set_async(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    _options["async"] = bool(value)


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    _options["json"] = bool(value)


def _set_retry(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    _options["retry"] = bool(value)


#: --retry for the commands the management node relays to service nodes
retry_option = click.option(
    "--retry", is_flag=True, expose_value=False, callback=_set_retry,
    help="Nodes whose service node fails during the request run again on the next service "
         "node in their pool (noderes.servicenode).")


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version.current())
        ctx.exit(0)


def option_strings(params: list[click.Parameter]) -> set[str]:
    """Every option spelling the parameters take (``-v``, ``--verbose``, ``--no-x``...)."""
    return {o for p in params if isinstance(p, click.Option)
            for o in (*p.opts, *p.secondary_opts)}


def getopt_long(args: list[str], params: list[click.Parameter]) -> list[str]:
    """``args`` with Getopt's single-dash long options spelt as click wants them:
    ``-help`` -> ``--help``, ``-version`` -> ``--version``, ``-opt=v`` -> ``--opt=v`` for any
    ``--opt`` in ``params``. Values of options and everything after ``--`` stay as they are.

    >>> getopt_long(["-help", "-w", "-help", "-x", "--", "-help"],
    ...             [click.Option(["-w"]), click.Option(["-x", "--xy"], is_flag=True)])
    ['--help', '-w', '-help', '-x', '--', '-help']
    """
    spelt = option_strings(params)
    longs = {o[2:]: o for o in spelt if o.startswith("--")}
    longs.setdefault("help", "--help")
    takes_value = {o for p in params if isinstance(p, click.Option)
                   and not p.is_flag and not p.count for o in p.opts}
    out: list[str] = []
    value_next = False
    for i, arg in enumerate(args):
        if value_next:
            value_next = False
        elif arg == "--":
            return out + args[i:]
        elif len(arg) > 2 and arg[0] == "-" and arg[1] != "-" and arg not in spelt:
            name, eq, value = arg[1:].partition("=")
            if name in longs:
                arg = longs[name] + eq + value
        value_next = arg in takes_value
        out.append(arg)
    return out


class XcatCommand(click.Command):
    """A click command that reports usage errors the xCAT way (message, usage, exit 1),
    with the options every command has: --async (unless ``async_option=False``),
    -v/--version (the spellings the command does not use itself), and --json for those that
    list or report (``json_option``)."""

    def __init__(self, *args: Any, async_option: bool = True, json_option: bool = False,
                 **kw: Any) -> None:
        super().__init__(*args, **kw)
        if async_option:
            self.params.append(click.Option(
                ["--async", "async_"], is_flag=True, expose_value=False, callback=_set_async,
                is_eager=True, help="Submit as a job, print its id and return at once "
                                    "(see 'job wait ID')."))
        if json_option:
            self.params.append(click.Option(
                ["--json", "json_"], is_flag=True, expose_value=False, callback=_set_json,
                is_eager=True, help="Print one JSON document (the nodes' values, errors and "
                                    "warnings) instead of lines; the exit code is the same."))
        free = [o for o in ("-v", "--version") if o not in option_strings(self.params)]
        if free:
            self.params.append(click.Option(
                [*free, "show_version"], is_flag=True, expose_value=False, is_eager=True,
                callback=_print_version, help="Print the version and exit."))

    def main(self, args: Any = None, prog_name: str | None = None, **kw: Any) -> Any:
        args = getopt_long(list(sys.argv[1:] if args is None else args), self.params)
        _options["json"] = False
        try:
            return super().main(args=args, prog_name=prog_name, standalone_mode=False, **kw)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            sys.stderr.write("Aborted!\n")
            sys.exit(1)
        except click.UsageError as exc:
            msg = exc.format_message()
            ctx = exc.ctx
            if "--json" in option_strings(self.params) and \
                    "--json" in args[:args.index("--") if "--" in args else len(args)]:
                _json_failure(ctx.info_name if ctx else prog_name, msg, 1)
            sys.stderr.write(f"Error: {msg}\n")
            if ctx is not None:
                sys.stderr.write(ctx.get_usage() + "\n")
            sys.exit(1)
        except click.ClickException as exc:
            sys.stderr.write(f"Error: {exc.format_message()}\n")
            sys.exit(1)


def xcat_command(fn: Callable | None = None, **kw: Any) -> Any:
    """click.command with our defaults; a command named in JSON_COMMANDS (by ``name``, else
    by its module) takes --json."""
    kw.setdefault("context_settings", CONTEXT)
    kw.setdefault("cls", XcatCommand)

    def make(f: Callable) -> click.Command:
        opts = dict(kw)
        if issubclass(opts["cls"], XcatCommand):
            name = opts.get("name") or f.__module__.rpartition(".")[2]
            opts.setdefault("json_option", name in JSON_COMMANDS)
        return click.command(**opts)(f)

    return make(fn) if fn else make


def read_stdin() -> str:
    return sys.stdin.read()
