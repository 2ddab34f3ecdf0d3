"""xdcp: copy files to many nodes at once over ssh (or pull them back), through xcatd."""
import os
import sys

import click
from xcatd.commands._cli import _print_version, fail, json_mode, run, xcat_command

USAGE = ("Usage: xdcp <noderange> [-f fanout] [-l userID] [-o node_options] [-p] [-R] "
         "[-t timeout] [-T] [-v] sourcefile.... targetpath\n"
         "       xdcp <noderange> -P [-f fanout] [-p] [-R] [-t timeout] remotefile.... "
         "localdirectory\n"
         "       xdcp <noderange> -F synclist [-f fanout] [-t timeout]\n"
         "       xdcp [-h | --version]")


@xcat_command(help="Copy files and directories of the management node to the nodes of a "
                   "noderange at once (-P: pull the nodes' files back as <file>._<node>; "
                   "-F: sync a synclist). Files that did not change are not sent again.")
@click.option("-f", "--fanout", type=click.IntRange(min=0), metavar="N",
              help="Nodes at work at once (default DSH_FANOUT, else 64).")
@click.option("-F", "--File", "synclist", metavar="SYNCLIST",
              help="Sync the files of SYNCLIST (xCAT's synclist format).")
@click.option("-l", "--user", metavar="USER", help="Log in as USER (default root).")
@click.option("-o", "--node-options", "options", multiple=True, metavar="OPTS",
              help="ssh options: StrictHostKeyChecking=no|yes, ConnectTimeout=S, "
                   "Port=N.")
@click.option("-p", "--preserve", is_flag=True, help="Keep the files' modes.")
@click.option("-P", "--pull", is_flag=True,
              help="Pull the nodes' files into the local directory, as <file>._<node>.")
@click.option("-r", "--node-rcp", metavar="PATH", help="Only ssh (SFTP) is supported.")
@click.option("-R", "--recursive", is_flag=True, help="Copy directories and what is in them.")
@click.option("-t", "--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Longest run of one node, connection included.")
@click.option("-T", "--trace", is_flag=True, help="Print what is copied where, first.")
@click.option("-v", "--verify", is_flag=True,
              help="Verify the nodes first (every node is: an unreachable one always gets "
                   "an error line).")
@click.option("-V", "show_version_", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print the version and exit (xCAT's -V).")
@click.argument("noderange", required=False)
@click.argument("paths", nargs=-1)
def main(fanout, synclist, user, options, preserve, pull, node_rcp, recursive, timeout,
         trace, verify, noderange, paths):
    if not noderange:
        click.echo(USAGE)
        sys.exit(1)
    fanout, timeout = fanout or None, timeout or None   # 0 is "not given", as in xCAT
    if node_rcp and os.path.basename(node_rcp) not in ("scp", "sftp", "rsync"):
        fail(f"xdcp: -r {node_rcp}: only ssh (SFTP) is supported")
    args = {"fanout": fanout, "timeout": timeout, "user": user, "options": list(options),
            "verify": verify, "trace": trace, "preserve": preserve, "pull": pull,
            "recursive": recursive, "json": json_mode()}
    if synclist:
        if pull:
            fail("xdcp: -F and -P cannot be used together")
        args["synclist"] = os.path.abspath(synclist)
        if paths:
            fail(f"xdcp -F: unexpected arguments: {' '.join(paths)}")
    else:
        if len(paths) < 2:
            fail("xdcp: give the source files and the target path\n" + USAGE)
        *sources, target = paths
        if pull:   # node paths stay as given; the local directory becomes absolute
            args["sources"] = list(sources)
            args["target"] = os.path.abspath(target)
        else:      # local paths are read by xcatd, which does not share our directory
            args["sources"] = [os.path.abspath(s) + ("/" if s.endswith("/") else "")
                               for s in sources]
            args["target"] = target
    run("xdcp", noderange, {k: v for k, v in args.items() if v not in (None, False, [])})
