"""rsetboot: the next boot device."""
import click
from xcatd.commands._cli import retry_option, run, xcat_command


@xcat_command(help="rsetboot <noderange> [net|hd|cd|floppy|setup|def|default|stat] [-u] [-p]")
@click.option("-u", "uefi", is_flag=True, help="UEFI boot.")
@click.option("-p", "persistent", is_flag=True, help="Keep it for every boot.")
@click.argument("noderange")
@click.argument("device", required=False, default="stat")
@retry_option
def main(uefi, persistent, noderange, device):
    run("rsetboot", noderange, {"device": device, "uefi": uefi, "persistent": persistent})
