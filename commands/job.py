"""job: list, show, wait for and cancel jobs (every request the daemon ran is a job)."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="job [list [-a] [-s STATE]] | show ID | wait ID [-t SECONDS] | cancel ID. "
                   "IDs may be shortened to a unique prefix.")
@click.option("-a", "--all", "all_", is_flag=True, help="list: every job, not the last 20.")
@click.option("-s", "--state", help="list: only jobs in this state.")
@click.option("-t", "--timeout", type=float, help="wait: give up after this many seconds.")
@click.argument("action", type=click.Choice(["list", "show", "wait", "cancel"]),
                default="list")
@click.argument("jobid", required=False)
def main(all_, state, timeout, action, jobid):
    if action != "list" and not jobid:
        raise click.UsageError(f"job {action} needs a job id")
    # --json: every answer is a record (a job, a result it replays), never a node's value
    run("job", None, {"action": action, "jobid": jobid, "all": all_, "state": state,
                      "timeout": timeout}, per_node=False)
