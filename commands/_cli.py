"""Shared plumbing for the command-line front: build a Request, print Responses, exit.

Commands stay thin: parse argv with click, call ``run``. Usage errors print the message and
the usage and exit 1, as xCAT's commands do.
"""
from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from xcatd.base.noderange import NodeRangeError, inline_files
from xcatd.base.request import Request
from xcatd.fronts.client import submit

#: Environment variables a request carries to the plugins.
PASSED_ENV = ("XCAT_NODE_PREFIX", "XCAT_NODE_SUFFIX", "XCATROOT", "XCATBYPASS")

CONTEXT = {"help_option_names": ["-h", "--help", "-?"], "max_content_width": 100}


#: Set by the --async option every command has.
_options = {"async": False}


def run(command: str, noderange: str | None = None, args: dict[str, Any] | None = None,
        stdin: str | None = None) -> NoReturn:
    """Submit one request, print its responses as they arrive, exit with xCAT's code."""
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
    _options["async"] = False
    try:
        for resp in submit(req, async_=async_):
            stream, text = resp.render()
            if stream == "err":
                out.flush()
                err.write(text + "\n")
                err.flush()
            else:
                out.write(text + "\n")
            if resp.failed:
                code = code or (resp.errorcode or 1)
        out.flush()
    except BrokenPipeError:  # `nodels | head` is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        err.write("Interrupted\n")
        code = 130
    sys.exit(code)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _set_async(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    _options["async"] = bool(value)


class XcatCommand(click.Command):
    """A click command that reports usage errors the xCAT way (message, usage, exit 1),
    with the --async option every command has."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.params.append(click.Option(
            ["--async", "async_"], is_flag=True, expose_value=False, callback=_set_async,
            is_eager=True, help="Submit as a job, print its id and return at once "
                                "(see 'job wait ID')."))

    def main(self, args: Any = None, prog_name: str | None = None, **kw: Any) -> Any:
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
            sys.stderr.write(f"Error: {msg}\n")
            if ctx is not None:
                sys.stderr.write(ctx.get_usage() + "\n")
            sys.exit(1)
        except click.ClickException as exc:
            sys.stderr.write(f"Error: {exc.format_message()}\n")
            sys.exit(1)


def xcat_command(fn: Callable | None = None, **kw: Any) -> Any:
    kw.setdefault("context_settings", CONTEXT)
    kw.setdefault("cls", XcatCommand)
    return click.command(**kw)(fn) if fn else click.command(**kw)


def read_stdin() -> str:
    return sys.stdin.read()
