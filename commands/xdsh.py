"""xdsh: run commands on many nodes at once over ssh, through xcatd."""
import getpass
import os
import sys

import click
from xcatd.commands._cli import _print_version, fail, json_mode, run, xcat_command

from xcatd.remote.envfile import env_file
from xcatd.remote.gather import Gatherer

USAGE = ("Usage: xdsh <noderange> [-e] [-E environment_file] [-f fanout] [-L] [-l userID] "
         "[-m] [-o node_options] [-Q] [-s] [-S csh|ksh] [-t timeout] [-T] [-v] [-z] "
         "[--sudo] [--xdshbak|--xcoll] [--json] command_list\n"
         "       xdsh <noderange> -K [-l userID] [-t timeout]\n"
         "       xdsh <noderange> -c\n"
         "       xdsh [-h | --version | -q]")
MAX_SCRIPT = 4 * 1024 * 1024
LOCALE = ("LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_NUMERIC", "LC_COLLATE", "LC_TIME")


def _read(path: str, what: str) -> str:
    try:
        if os.path.getsize(path) > MAX_SCRIPT:
            fail(f"xdsh: {what} {path} is over {MAX_SCRIPT // 1048576} MiB")
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read()
    except OSError as exc:
        fail(f"xdsh: cannot read {what} {path}: {exc.strerror}")


@xcat_command(help="Run commands on the nodes of a noderange at once over ssh, with the "
                   "management node's root key; each output line as 'node: line'. A node "
                   "that cannot be reached or runs past -t prints one error line; the exit "
                   "code is 1 if any node failed.")
@click.option("-e", "--execute", is_flag=True,
              help="The command is a local script (and its arguments): copy it to the nodes "
                   "and run it there.")
@click.option("-E", "--environment", "envfile", metavar="FILE",
              help="Export the NAME=value lines of FILE before the command.")
@click.option("-f", "--fanout", type=click.IntRange(min=0), metavar="N",
              help="Nodes at work at once (default DSH_FANOUT, else 64).")
@click.option("-L", "--no-locale", is_flag=True, help="Do not export this shell's locale.")
@click.option("-l", "--user", metavar="USER", help="Log in as USER (default root).")
@click.option("-m", "--monitor", is_flag=True, help="Print 'dsh>' status lines as nodes finish.")
@click.option("-o", "--node-options", "options", multiple=True, metavar="OPTS",
              help="ssh options: StrictHostKeyChecking=no|yes, ConnectTimeout=S, "
                   "Port=N (default DSH_NODE_OPTS).")
@click.option("-Q", "--silent", is_flag=True, help="Print none of the nodes' output.")
@click.option("-r", "--node-rsh", metavar="PATH", help="Only ssh is supported.")
@click.option("-s", "--stream", is_flag=True,
              help="Print lines as they arrive, not each node's lines together when it is done.")
@click.option("-S", "--syntax", type=click.Choice(["ksh", "csh"]), default=None,
              help="The shell syntax on the nodes (ksh, the default; csh is not supported).")
@click.option("-t", "--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Longest run of one node, connection included; at its end the command "
                   "is killed on the node (default DSH_TIMEOUT, else none: "
                   "site.requesttimeout, 3600 s, still bounds the whole request).")
@click.option("-T", "--trace", is_flag=True, help="Print what is run where, before running it.")
@click.option("-v", "--verify", is_flag=True,
              help="Verify the nodes first (every node is: an unreachable one always gets "
                   "an error line).")
@click.option("-z", "--exit-status", "exitcode", is_flag=True,
              help="Print each node's exit code ('node: Remote_command_rc = N').")
@click.option("--sudo", is_flag=True, help="Run the command with sudo on the nodes.")
@click.option("-K", "--ssh-setup", "--keysetup", "sshsetup", is_flag=True,
              help="Set up the ssh keys on the nodes (root's, per site.sshbetweennodes).")
@click.option("-c", "--cleanup", is_flag=True,
              help="Remove site.nodesyncfiledir (xdcp's backups) on the nodes.")
@click.option("-q", "--show-config", is_flag=True, help="Print the settings xdsh uses.")
@click.option("--xdshbak", is_flag=True,
              help="Print identical outputs once, headed by their nodes (as '| xdshbak -c').")
@click.option("--xcoll", is_flag=True,
              help="Print identical outputs once, headed by their nodes (as '| xcoll').")
@click.option("-V", "show_version_", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print the version and exit (xCAT's -V).")
@click.argument("noderange", required=False)
@click.argument("command_list", nargs=-1)
def main(execute, envfile, fanout, no_locale, user, monitor, options, silent, node_rsh,
         stream, syntax, timeout, trace, verify, exitcode, sudo, sshsetup, cleanup,
         show_config, xdshbak, xcoll, noderange, command_list):
    if show_config:
        _show_config()
        return
    if not noderange:
        click.echo(USAGE)
        sys.exit(1)
    fanout, timeout = fanout or None, timeout or None   # 0 is "not given", as in xCAT
    if node_rsh and os.path.basename(node_rsh) != "ssh":
        fail(f"xdsh: -r {node_rsh}: only ssh is supported")
    if syntax == "csh":
        fail("xdsh: -S csh: only sh/ksh syntax is supported on the nodes")
    if xdshbak and xcoll:
        fail("xdsh: --xdshbak and --xcoll cannot be used together")
    env: dict[str, str] = {}
    if not no_locale:
        env.update({k: os.environ[k] for k in LOCALE if os.environ.get(k)})
    if envfile:
        try:
            env.update(env_file(_read(envfile, "environment file"), envfile))
        except ValueError as exc:
            fail(f"xdsh: -E {exc}")
    if not options and os.environ.get("DSH_NODE_OPTS"):
        options = (os.environ["DSH_NODE_OPTS"],)
    args = {"fanout": fanout, "timeout": timeout, "user": user, "options": list(options),
            "verify": verify, "trace": trace, "monitor": monitor, "stream": stream,
            "exitcode": exitcode, "silent": silent, "sshsetup": sshsetup, "cleanup": cleanup,
            "env": env, "json": json_mode(), "sudo": sudo}
    words = list(command_list)
    if execute:
        if not words:
            fail("xdsh: -e needs the script to run")
        script = words.pop(0)
        args["script"] = _read(script, "script")
        args["script_name"] = os.path.basename(script)
    args["command"] = " ".join(words)
    if sshsetup:
        args["password"] = _password(user or "root")
    args = {k: v for k, v in args.items() if v not in (None, False, [], {}, "")}
    run("xdsh", noderange, args, gather=_Gather(xcoll) if (xdshbak or xcoll) else None)


def _password(user: str) -> str:
    """-K's password for the first login: DSH_REMOTE_PASSWORD, else asked on a terminal;
    none (the empty answer too) logs in with the management node's key."""
    if os.environ.get("DSH_REMOTE_PASSWORD"):
        return os.environ["DSH_REMOTE_PASSWORD"]
    if not sys.stdin.isatty():
        return ""
    return getpass.getpass(f"Enter the password for the userid: {user} on the node where "
                           "the ssh keys \nwill be updated (empty: log in with the key):")


class _Gather:
    """--xdshbak (as `| xdshbak -c`) and --xcoll: the nodes' output lines are grouped and
    printed at the end; errors still go to stderr as they come."""

    def __init__(self, xcoll: bool) -> None:
        self.xcoll = xcoll
        self.gatherer = Gatherer()

    def take(self, resp) -> bool:
        if resp.node is None or resp.data is None or resp.error is not None \
                or resp.stream == "err":   # stderr is not grouped, as with a pipe
            return False
        self.gatherer.add(resp.node, resp.data)
        return True

    def lines(self) -> list[str]:
        return self.gatherer.render_xcoll() if self.xcoll else \
            self.gatherer.render_xdshbak(collapse=True)


def _show_config() -> None:
    for name in ("DSH_FANOUT", "DSH_TIMEOUT", "DSH_NODE_OPTS", "DSH_NODE_RSH", "DSH_PATH"):
        click.echo(f"dsh:{name}={os.environ.get(name, '')}")
    click.echo("dsh:remote shell=ssh (asyncssh, one connection per node)")
