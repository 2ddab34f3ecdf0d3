"""The node agent's cost per script: the real agent (postscripts/xcatagent) running 1 and then
20 trivial scripts of a plan through a real xcatd process (mutual TLS, the plan, the hash
checks, events in the background), against a bash loop running the same scripts, side by
side on this machine. The marginal cost of the 19 more scripts is compared, so the fixed
costs (python's start, the TLS handshake, the plan's fetch) cancel out. Target: the agent
adds under 30 ms per script. (The lab's VM test prints the same figure under QEMU's
emulated CPU, where it varies with the host's load.)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nodeagent import BIN, runner, stop, wait_port

AGENT = Path(__file__).resolve().parents[1] / "postscripts" / "xcatagent"
SCRIPTS = [f"t{i:02d}" for i in range(1, 21)]
ROUNDS = 5
TARGET_MS = 30.0


def best(fn) -> float:
    """The fastest of ROUNDS runs, in seconds."""
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    from xcatd.base.paths import Paths
    from xcatd.lab.agentsim import arm, define
    from xcatd.lab.ports import free_port
    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-agentscripts-"))
    root, home, node_dir = tmp / "root", tmp / "home", tmp / "node"
    for d in (root, home, node_dir):
        d.mkdir()
    xport, hport = free_port(), free_port()
    env = {**os.environ, "XCATROOT": str(root), "HOME": str(home),
           "XCATHOST": f"127.0.0.1:{xport}"}
    env.pop("XCATBYPASS", None)

    run = runner(env)

    xcatd = None
    try:
        run("xcatconfig")
        run("chtab", "key=httpport", f"site.value={hport}")
        run("chtab", "key=httpbind", "site.value=127.0.0.1")
        run("chtab", "key=httpsourcecheck", "site.value=no")
        paths = Paths(root)
        scripts = {name: "#!/bin/sh\n:\n" for name in SCRIPTS}
        nodes = define(run, paths, 1, xcatdport=xport, scripts=scripts)
        token = arm(paths, nodes)[nodes[0]]
        xcatd = subprocess.Popen([str(BIN / "xcatd"), "--listen", "127.0.0.1", "--port",
                                  str(xport)], env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(xport, xcatd, "xcatd")
        wait_port(hport, xcatd, "xcatd's HTTP site")
        (node_dir / "boot.env").write_text(
            f"XCAT_NODE='{nodes[0]}'\n"
            f"XCAT_CALLBACK='http://127.0.0.1:{hport}/xcat/callback/{nodes[0]}'\n"
            f"XCAT_TOKEN='{token}'\n")
        aenv = {**os.environ, "XCATAGENT_DIR": str(node_dir / "agent"),
                "XCATAGENT_POSTDIR": str(node_dir / "xcatpost"),
                "XCATAGENT_BOOTENV": str(node_dir / "boot.env"),
                "XCATAGENT_LOG": str(node_dir / "xcat.log")}

        def agent(*args: str) -> None:
            subprocess.run([sys.executable, str(AGENT), *args], env=aenv, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        agent("enrol")
        agent("run", "--mode", "updatenode", "--scripts", ",".join(SCRIPTS))  # fetch them
        post = node_dir / "xcatpost"
        one = best(lambda: agent("run", "--mode", "updatenode", "--scripts", "t01"))
        twenty = best(lambda: agent("run", "--mode", "updatenode", "--scripts",
                                    ",".join(SCRIPTS)))
        loop = f"cd {post}; for s in {' '.join(SCRIPTS)}; do ./$s </dev/null; done"
        bash_one = best(lambda: subprocess.run(["bash", "-c", f"cd {post}; ./t01 </dev/null"],
                                               check=True))
        bash_twenty = best(lambda: subprocess.run(["bash", "-c", loop], check=True))
        agent_ms = (twenty - one) / 19 * 1000
        bash_ms = (bash_twenty - bash_one) / 19 * 1000
        over = agent_ms - bash_ms
        print(f"agent per-script bench: the real xcatagent and a bash loop, 20 trivial "
              f"scripts, best of {ROUNDS}, {os.cpu_count()} CPUs")
        print(f"  agent: 1 script {one * 1000:.0f} ms, 20 scripts {twenty * 1000:.0f} ms: "
              f"{agent_ms:.1f} ms per script")
        print(f"  bash : 1 script {bash_one * 1000:.0f} ms, 20 scripts "
              f"{bash_twenty * 1000:.0f} ms: {bash_ms:.1f} ms per script")
        print(f"  the agent's overhead: {over:.1f} ms per script "
              f"({agent_ms / bash_ms:.1f}x the loop's cost per script), target < "
              f"{TARGET_MS:.0f} ms: {'met' if over < TARGET_MS else 'MISSED'}")
    finally:
        stop(xcatd)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
