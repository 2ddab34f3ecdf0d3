"""Progress of long work: drawn on one status line of stderr when it is a terminal (a pty
here), never in piped output, never in --json, never in a job's record, never in the REST
API's answers. $XCAT_PROGRESS_INTERVAL=0 makes every step report, so the tests need no
timing; the commands run as their console scripts, in process and through a live xcatd."""
from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import threading

import pytest
from support.cluster import MASTER, NET, mgt_network, nodes, site, site_free_port, site_value

from xcatd.base import cancel
from xcatd.base.progress import INTERVAL_ENV, Meter
from xcatd.base.request import Request, Response
from xcatd.fronts.client import submit
from xcatd.lab.bind import Named
from xcatd.lab.fakemedia import build_tree

pytestmark = pytest.mark.cluster(site(dhcpsetup="n"), nodes("n1-n3", groups="compute,all"))

CLEAR = b"\r\x1b[K"
BAR = re.compile(rb"\rCopying tree-rocky \[[# ]{20}\] +\d+% [\d.]+ \w+ of 3\.\d MiB\x1b\[K")


@pytest.fixture(autouse=True)
def every_step(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A Rocky tree of a little over 3 MiB: a few chunks of copying."""
    base = tmp_path_factory.mktemp("media")
    big = base / "initrd.img"
    big.write_bytes(os.urandom(3 << 20))
    return build_tree(base / "tree-rocky", "rocky9.4", initrd=big)


def on_terminal(mn, *argv: str) -> tuple[int, str, bytes]:
    """Run a console script with stderr on a pseudo-terminal and stdout on a pipe: its exit
    code, stdout, and every byte written to the terminal."""
    master, slave = pty.openpty()
    env = {**os.environ, "XCATROOT": str(mn.root)}
    exe = os.path.join(os.path.dirname(sys.executable), argv[0])
    proc = subprocess.Popen([exe, *argv[1:]], stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    seen = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has gone
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(30)
    os.close(master)
    return proc.returncode, out.decode(), bytes(seen)


COPIED = ["Copying media to /install/rocky9.4/x86_64", "Media copy operation successful"]


# ---- the command line ----------------------------------------------------------------------
def test_copycds_on_a_terminal_shows_bytes_copied_and_clears_the_line(mn, media):
    rc, out, err = on_terminal(mn, "copycds", str(media))
    assert rc == 0, err
    assert BAR.search(err), err
    assert err.endswith(CLEAR)  # nothing of it is left on the screen
    assert out.splitlines() == COPIED


@pytest.mark.skipif(not shutil.which("named"), reason="needs bind9 (named)")
@pytest.mark.cluster(site(domain="hpc.example", master=MASTER), site_free_port("dnsport"),
                     site(dnslisten="127.0.0.1", nameserverhost="mgt"), mgt_network(),
                     nodes("n[1-3]", ip=NET))
def test_makedns_on_a_terminal_shows_the_records_sent(cluster):
    cluster.ok("makedns", "-n")
    with Named(cluster.root / "etc/named.conf", int(site_value(cluster, "dnsport"))):
        rc, out, err = on_terminal(cluster, "makedns", "n1-n3")
    assert rc == 0, err
    assert (b"\rUpdating DNS records [####################] 100% 3 records of 3 records"
            b"\x1b[K") in err
    assert err.endswith(CLEAR)
    assert out.splitlines() == ["Updated 3 host records in 2 zones"]


def test_piped_output_has_no_progress(mn, media):
    r = mn.sh("copycds", str(media))
    assert r.rc == 0, r.err
    assert r.lines == COPIED
    assert r.err == ""


def test_json_on_a_terminal_has_no_progress(cluster):
    rc, out, err = on_terminal(cluster, "nodeset", "n1-n3", "stat")
    assert rc == 0
    assert b"\rReading boot states [" in err  # this command reports progress...
    assert out.splitlines() == ["n1: offline", "n2: offline", "n3: offline"]
    rc, out, err = on_terminal(cluster, "nodeset", "--json", "n1-n3", "stat")
    assert rc == 0
    assert err == b""                          # ...but not with --json
    doc = json.loads(out)
    assert doc["nodes"] == {n: {"state": "offline"} for n in ("n1", "n2", "n3")}
    assert "progress" not in out


def test_the_job_record_keeps_no_progress(mn, media):
    responses = list(submit(Request("copycds", args={"sources": [str(media)]})))
    shown = [r for r in responses if r.progress is None]
    assert any(r.progress for r in responses)  # the client was sent some
    assert [r.data for r in shown] == COPIED
    listed = json.loads(mn.ok("job", "--json", "list", "-a").out)["data"]
    jobid = [j["job"]["jobid"] for j in listed if j["job"]["command"] == "copycds"][-1]
    shown = json.loads(mn.ok("job", "--json", "show", jobid).out)["data"]
    results = [item["result"] for item in shown[1:]]
    assert all(results)  # not one empty record
    if mn.daemon is not None:  # xcatd keeps the output lines, and those alone
        assert results == [{"data": line, "errorcode": 0} for line in COPIED]
    else:  # in process only a count of them, which progress does not inflate
        assert results == [{"warning": "2 output lines were not recorded (run in process: "
                                       "the output went to its terminal)", "errorcode": 0}]


def test_the_rest_api_sends_no_progress(cluster_daemon):
    import http.client
    import ssl
    from pathlib import Path

    xcat = Path(os.environ["HOME"]) / ".xcat"
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(xcat / "ca.pem"))
    ctx.load_cert_chain(str(xcat / "client-cred.pem"))
    through_protocol = list(submit(Request("nodeset", "n1-n3", {"state": "stat"})))
    assert any(r.progress for r in through_protocol)  # the same request reports progress
    for accept in ("application/x-ndjson", "application/json"):
        conn = http.client.HTTPSConnection("127.0.0.1", cluster_daemon.daemon.listening.port,
                                           context=ctx, timeout=30)
        try:
            conn.request("GET", "/xcatws/nodes/n1-n3/bootstate", headers={"Accept": accept})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == 200, body
        assert b"progress" not in body
        if accept == "application/json":
            assert json.loads(body) == {n: {"bootstat": "offline"} for n in ("n1", "n2", "n3")}
        else:
            records = [json.loads(line) for line in body.splitlines()]
            assert [r["r"]["node"] for r in records if "r" in r] == ["n1", "n2", "n3"]


# ---- the meter ------------------------------------------------------------------------------
def test_work_that_cannot_count_shows_dots_while_it_is_quiet():
    gate = threading.Event()

    def work():
        yield Response(data="planned")
        assert gate.wait(30)  # until the caller has had a progress Response
        yield Response(data="written")

    seen = []
    for resp in Meter("Writing", interval=0).around(work()):
        seen.append(resp)
        if resp.progress is not None:
            assert resp.progress == {"what": "Writing"}
            gate.set()
    assert [r.data for r in seen if r.progress is None] == ["planned", "written"]
    assert any(r.progress for r in seen)


def test_work_that_counts_is_not_covered_with_dots():
    gate = threading.Event()

    def work():
        yield Response(progress={"what": "Updating dhcpd", "done": 1, "total": 2})
        assert gate.wait(30)
        yield Response(data="done")

    gen = Meter("Writing", interval=0).around(work())
    assert next(gen).progress["what"] == "Updating dhcpd"
    gate.set()
    assert [r.data for r in gen] == ["done"]  # no dots while it was quiet


def test_closing_waits_for_the_work_and_stops_it_between_steps():
    ended = []

    def work():
        try:
            yield Response(data="one")
            yield Response(data="two")
        finally:
            ended.append(threading.current_thread().name)

    gen = Meter("Writing", interval=0).around(work())
    assert next(gen).data == "one"
    gen.close()
    assert ended and ended[0] != threading.current_thread().name  # ended, in its thread


def test_the_work_runs_in_the_requests_context_and_its_errors_reach_the_caller():
    event = threading.Event()
    event.set()

    def work():
        yield Response(data=f"cancelled: {cancel.requested()}")
        raise ValueError("the check failed")

    with cancel.bound(event):
        gen = Meter("Writing", interval=0).around(work())
        assert next(gen).data == "cancelled: True"
        with pytest.raises(ValueError, match="the check failed"):
            list(gen)
