"""The demo's service-node scene: a management node on PostgreSQL and two service nodes, each
an xcatd in its own network namespace (xcatd.lab.snlab), joined with one-time tokens; eight
simulated BMCs behind each service node, which the management node cannot reach itself.
rpower through the management node answers for every node through the right service node;
then sn1 is killed and `rpower --retry` runs its nodes on sn2.

Skips (exit 0, one line saying why) where the lab cannot run: not root, no PostgreSQL.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path


def main() -> int:
    from xcatd.lab import postgres
    from xcatd.lab.snlab import ServiceNodeLab
    from xcatd.lab.twomn import pg_socket_url, usable
    why = usable() or (None if postgres.bindir() else "PostgreSQL is not installed")
    if why:
        print(f"\n(skipping the service-node scene: {why})")
        return 0
    server = postgres.start()
    try:
        url = pg_socket_url(server.new_database(), Path(server.base) / "sock", server.port)
        with tempfile.TemporaryDirectory(prefix="pyxcat-demo-sn-") as tmp, \
                ServiceNodeLab(Path(tmp), url) as lab:
            print("\nservice nodes: a management node on PostgreSQL, sn1 and sn2 joining it "
                  "(xcatconfig --sntoken / --servicenode), each in its own namespace")
            lab.start(site={"snheartbeattimeout": "3"})
            mn = lab.mn
            for sn in ("sn1", "sn2"):  # (no DHCP in this scene: the tests run dhcpd there)
                mn.cli("chtab", f"node={sn}", "servicenode.dhcpserver=0", bypass=True)

            def show(*argv: str, bypass: bool = False) -> None:
                print(f"\n$ {' '.join(argv)}", flush=True)
                r = mn.cli(*argv, bypass=bypass)
                sys.stdout.write(r.out + r.err)

            for k, sn in ((1, "sn1"), (2, "sn2")):
                fleet = lab.start_fleet(4, reach=["sn1", "sn2"], password=f"pw{k}")
                mn.cli("mkdef", "-t", "node", f"r{k}n[1-4]", "groups=compute", "mgt=ipmi",
                       "bmc=127.0.0.1", f"bmcpassword=pw{k}", "bmcusername=admin",
                       f"servicenode={sn},{'sn2' if sn == 'sn1' else 'sn1'}", bypass=True)
                for i in range(4):
                    mn.cli("chdef", f"r{k}n{i + 1}", f"bmcport={fleet.port(i)}", bypass=True)
            show("rpower", "compute", "stat")
            show("tabdump", "nodeowner", bypass=True)
            print("\n$ kill -9 <sn1's xcatd>")
            os.kill(lab.members["sn1"].xcatd.pid, signal.SIGKILL)
            show("rpower", "r1n1-r1n4", "stat")
            show("rpower", "r1n1-r1n4", "stat", "--retry")
            show("lsdef", "r1n1", "-i", "servicenode", bypass=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
