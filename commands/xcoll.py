"""xcoll: print each distinct output of ``node: line`` input once, headed by its nodes."""
from collections.abc import Iterator

import click
from xcatd.commands._cli import xcat_command
from xcatd.commands._filter import FilterCommand, run_filter

from xcatd.remote.gather import Gatherer, split_xcoll


@xcat_command(cls=FilterCommand,
              help="Read node: line output (xdsh, rinv...) on standard input and print each "
                   "distinct output once, headed by the nodes that gave it as a folded "
                   "noderange. A line without a colon belongs to the node UNKNOWN.")
@click.option("-n", "names", is_flag=True,
              help="Head each block with the node names, comma-separated.")
@click.option("-c", "count", is_flag=True, help="Show how many nodes gave each output.")
@click.option("-i", "individual", is_flag=True,
              help="One block per node, identical outputs not merged.")
def main(names, count, individual):
    def gather(lines: Iterator[str]) -> list[str]:
        found = Gatherer()
        for text in lines:
            found.add(*split_xcoll(text))
        return found.render_xcoll(names=names, count=count, individual=individual)

    run_filter(gather)
