"""The demo's parallel-shell scene: eight real OpenSSH nodes (xcatd.lab.sshnodes: a network
namespace, an sshd and a host name each), known to the demo's management node; xdsh, xdcp and
xdshbak run against them inside the lab's management-node namespace (XCATBYPASS: the
demo's xcatd listens in the host's namespace, which the nodes cannot be reached from).

Skips (exit 0, one line saying why) where the lab cannot run: not root, no sshd.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> int:
    from xcatd.base.paths import Paths
    from xcatd.db.database import Database
    from xcatd.lab.sshnodes import SshCluster, usable
    why = usable()
    if why:
        print(f"\n(skipping the parallel-shell scene: {why})")
        return 0
    root = Path(os.environ["XCATROOT"])
    paths = Paths(root)
    env = {**os.environ, "XCATBYPASS": "1"}
    env.pop("XCATHOST", None)

    def show(lab: SshCluster, *argv: str, stdin: str | None = None) -> None:
        print(f"\n$ {' '.join(argv)}", flush=True)
        subprocess.run(lab.mn_argv([str(BIN / argv[0]), *argv[1:]]), env=env, input=stdin,
                       text=True, check=False)

    with SshCluster(8, paths, prefix="ssh") as lab:
        names = [n.name for n in lab.nodes]
        print(f"\nparallel shell: {len(names)} sshd nodes ({names[0]}..{names[-1]}), each in "
              f"its own network namespace behind {lab.mn_ns}")
        subprocess.run([str(BIN / "nodeadd"), f"{names[0]}-{names[-1]}", "groups=sshlab"],
                       env=env, check=True)
        db = Database.open(paths)
        with db.begin() as conn:
            db.set_rows(conn, "hosts", {(n,): {"ip": ip} for n, ip in lab.hosts()})
        db.dispose()
        show(lab, "makeknownhosts", "sshlab")
        show(lab, "xdsh", "sshlab", "hostname; uptime -p")
        show(lab, "xdsh", "sshlab", "--xdshbak", "uname -sr")
        lab.stop_sshd(names[2])
        show(lab, "xdsh", "sshlab", "-z", "-t", "3", f"[ $NODE = {names[5]} ] && sleep 60; true")
        lab.start_sshd(names[2])
        src = root / "demo-motd"
        src.write_text("managed by pyxcat\n")
        show(lab, "xdcp", "sshlab", str(src), "/etc/motd")
        show(lab, "xdsh", "sshlab", "-s", "cat /etc/motd")
        pulled = root / "pulled"
        shutil.rmtree(pulled, ignore_errors=True)
        pulled.mkdir()
        show(lab, "xdcp", "sshlab", "-P", "/etc/hostname", str(pulled))
        print("$ ls " + str(pulled) + "\n" + " ".join(sorted(p.name for p in pulled.iterdir())))
        subprocess.run([str(BIN / "noderm"), "sshlab"], env=env, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
