"""xdshbak: regroup xdsh's ``node: line`` output by node, or by identical output (-c)."""
import sys
from collections.abc import Iterator

import click
from xcatd.commands._cli import xcat_command
from xcatd.commands._filter import FilterCommand, run_filter

from xcatd.remote.gather import Gatherer, split_xdshbak

#: xdshbak prints a "." for every this many lines it reads, unless -q.
DOT_EVERY = 1000


@xcat_command(cls=FilterCommand, usage_exit=255,
              help="Read xdsh's output (node: line) on standard input and print it by node, "
                   "nodes in order: a HOST: header, then the node's lines. Lines without a "
                   "'node: ' prefix are left out.")
@click.option("-c", "collapse", is_flag=True,
              help="Show each distinct output once, headed by the nodes that gave it "
                   "(a folded noderange).")
@click.option("-x", "compact", is_flag=True,
              help="No headers: every line keeps its node prefix, nodes in order. Not with -c.")
@click.option("-b", "bare", is_flag=True, help="With -x: leave out the node prefix too.")
@click.option("-q", "quiet", is_flag=True,
              help=f"Quiet: no '.' for every {DOT_EVERY} lines read.")
def main(collapse, compact, bare, quiet):
    if collapse and compact:
        raise click.UsageError("-c and -x cannot be used together")
    if bare and not compact:
        raise click.UsageError("-b works only with -x")

    def gather(lines: Iterator[str]) -> list[str]:
        found = Gatherer()
        count = 0
        for count, text in enumerate(lines, 1):
            if not quiet and count % DOT_EVERY == 0:
                sys.stdout.write(".")
                sys.stdout.flush()
            pair = split_xdshbak(text)
            if pair:
                found.add(*pair)
        if not quiet and count >= DOT_EVERY:
            sys.stdout.write("\n")
        return found.render_xdshbak(collapse=collapse, compact=compact, bare=bare)

    run_filter(gather)
