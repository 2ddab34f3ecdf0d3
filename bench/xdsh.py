"""xdsh and xdcp against ClusterShell's clush and pdsh (-R ssh), side by side in one run, on
real OpenSSH nodes (xcatd.lab.sshnodes: one network namespace, sshd and host name per node),
every client inside the lab's management-node namespace.

Workloads (each timed as the whole command, process start included; the best of --rounds):
  hostname; ``uname -a; cat /proc/loadavg``; a 1 MB file copy; a 50 MB file copy.
Peers, at the same fanout: ``clush -w <addresses> -f F`` (``-c --dest`` to copy) and
``pdsh -R ssh -f F`` (commands only). Every client uses the management node's root key and
checks host keys against the known_hosts makeknownhosts wrote.

Also: a paramiko engine (threads, one connection per node: the design card's library) on
the command workloads, so the engine choice (asyncssh, one event loop) is measured, not
assumed; xdsh through a real xcatd process (``--daemon``); and the CPU seconds spent on the
management node per node (the client process and its children: clush's and pdsh's ssh).
Targets: xdsh's wall time <= clush's on every workload, <= pdsh's on the small commands.

    .venv/bin/python bench/xdsh.py [--nodes 200] [--fanout 64] [--rounds 3] [--no-big]
                                   [--no-daemon] [--no-paramiko]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nodeagent import BIN, runner, stop, wait_port

COMMANDS = {"hostname": "hostname", "uname+loadavg": "uname -a; cat /proc/loadavg"}
FILES = {"copy 1 MB": 1, "copy 50 MB": 50}


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv: list[str], env: dict[str, str], expect_lines: int | None = None
          ) -> tuple[float, float]:
    """(wall s, CPU s of the command and its children) of one run; a run that fails or
    prints the wrong number of lines stops the bench."""
    c0, t0 = cpu_children(), time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - t0, cpu_children() - c0
    lines = [x for x in p.stdout.splitlines() if x.strip()]
    if p.returncode != 0 or (expect_lines is not None and len(lines) != expect_lines):
        raise SystemExit(f"{' '.join(argv[:8])}...: exit {p.returncode}, {len(lines)} lines "
                         f"(wanted {expect_lines})\n{p.stderr[-1500:]}")
    return wall, cpu


def best(rounds: int, fn) -> tuple[float, float]:
    runs = [fn() for _ in range(rounds)]
    return min(runs, key=lambda r: r[0])


PARAMIKO = r'''
import sys, time, paramiko
from concurrent.futures import ThreadPoolExecutor
key = paramiko.Ed25519Key.from_private_key_file(sys.argv[1])
known, fanout, command, hosts = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
def one(host):
    c = paramiko.SSHClient()
    c.load_host_keys(known)
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect(host, username="root", pkey=key, allow_agent=False, look_for_keys=False,
              timeout=30)
    _, out, _ = c.exec_command(command)
    text = out.read().decode()
    out.channel.recv_exit_status()
    c.close()
    return host, text
with ThreadPoolExecutor(fanout) as pool:
    for host, text in pool.map(one, hosts):
        for line in text.splitlines():
            print(f"{host}: {line}")
'''


ASYNCSSH = r'''
import sys
import asyncssh
from xcatd.remote import engine
key = asyncssh.read_private_key(sys.argv[1])
known, fanout, command, hosts = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
settings = engine.Settings(client_keys=[key], known_hosts=known, fanout=fanout)
targets = [engine.Target(h, h) for h in hosts]
for ev in engine.Run(targets, engine.NodeJob(command), settings):
    if ev.kind == "out":
        print(f"{ev.node}: {ev.text}")
    elif ev.kind == "error":
        sys.exit(f"{ev.node}: {ev.text}")
'''


def proc_cpu(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` (xcatd)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_daemon(pid: int, argv: list[str], env: dict[str, str], lines: int
                ) -> tuple[float, float]:
    """A client run through xcatd: its CPU counts the client's and xcatd's."""
    before = proc_cpu(pid)
    wall, cpu = timed(argv, env, lines)
    return wall, cpu + proc_cpu(pid) - before


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--fanout", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-big", action="store_true", help="skip the 50 MB copy")
    ap.add_argument("--no-daemon", action="store_true", help="skip xdsh through xcatd")
    ap.add_argument("--only", default="", help="run the workloads whose name has this")
    ap.add_argument("--no-paramiko", action="store_true",
                    help="skip the paramiko engine (slow: ~0.2 s of CPU a node)")
    args = ap.parse_args()
    from xcatd.base.paths import Paths
    from xcatd.lab.ports import free_port
    from xcatd.lab.sshnodes import SshCluster, usable
    why = usable()
    if why:
        print(f"xdsh bench: cannot run here: {why}")
        return 1
    clush, pdsh = shutil.which("clush", path=str(BIN)) or shutil.which("clush"), \
        shutil.which("pdsh")
    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-xdsh-"))
    root, home = tmp / "root", tmp / "home"
    root.mkdir()
    home.mkdir()
    env = {**os.environ, "XCATROOT": str(root), "HOME": str(home), "XCATBYPASS": "1"}
    env.pop("XCATHOST", None)

    run = runner(env)

    xcatd = None
    try:
        run("xcatconfig")
        paths = Paths(root)
        n = args.nodes
        t0 = time.perf_counter()
        with SshCluster(n, paths) as lab:
            print(f"xdsh bench: {n} sshd nodes up in {time.perf_counter() - t0:.1f} s "
                  f"(namespaces, one sshd each); fanout {args.fanout}; best of "
                  f"{args.rounds}; {os.cpu_count()} cores shared by clients and sshds")
            names = [x.name for x in lab.nodes]
            ips = [x.ip for x in lab.nodes]
            run("nodeadd", f"{names[0]}-{names[-1]}", "groups=compute")
            from xcatd.db.database import Database
            db = Database.open(paths)
            with db.begin() as conn:
                db.set_rows(conn, "hosts", {(name,): {"ip": ip} for name, ip in lab.hosts()})
            db.dispose()
            run("makeknownhosts", "compute")
            from xcatd.security import nodekeys
            key = nodekeys.root_private_key(paths)
            known = nodekeys.known_hosts_path(paths)
            ssh_opts = (f"-i {key} -o UserKnownHostsFile={known} -o GlobalKnownHostsFile=/dev/null"
                        " -o StrictHostKeyChecking=yes -o BatchMode=yes -F /dev/null")
            peer_env = {**env, "PDSH_SSH_ARGS_APPEND": ssh_opts}
            f = str(args.fanout)

            def xdsh(cmd: list[str], lines: int | None) -> tuple[float, float]:
                return timed(lab.mn_argv([str(BIN / "xdsh"), "compute", "-f", f, *cmd]), env,
                             lines)

            def clush_run(cmd: list[str], lines: int | None) -> tuple[float, float]:
                return timed(lab.mn_argv([clush, "-w", ",".join(ips), "-f", f, "-l", "root",
                                          "-o", ssh_opts, *cmd]), peer_env, lines)

            def pdsh_run(cmd: str) -> tuple[float, float]:
                return timed(lab.mn_argv([pdsh, "-R", "ssh", "-l", "root", "-f", f, "-w",
                                          ",".join(ips), cmd]), peer_env, None)

            script = tmp / "paramiko_engine.py"
            script.write_text(PARAMIKO)

            def paramiko_run(cmd: str, lines: int) -> tuple[float, float]:
                return timed(lab.mn_argv([sys.executable, str(script), str(key), str(known), f,
                                          cmd, *ips]), env, lines)

            engine_script = tmp / "asyncssh_engine.py"
            engine_script.write_text(ASYNCSSH)

            def engine_run(cmd: str, lines: int) -> tuple[float, float]:
                return timed(lab.mn_argv([sys.executable, str(engine_script), str(key),
                                          str(known), f, cmd, *ips]), env, lines)

            rows = []
            for label, cmd in COMMANDS.items():
                if args.only not in label:
                    continue
                lines = n * (1 if label == "hostname" else 2)
                got = {"xdsh": best(args.rounds, partial(xdsh, [cmd], lines))}
                if clush:
                    got["clush"] = best(args.rounds, partial(clush_run, [cmd], lines))
                if pdsh:
                    got["pdsh"] = best(args.rounds, partial(pdsh_run, cmd))
                got["engine alone: asyncssh"] = best(args.rounds,
                                                     partial(engine_run, cmd, lines))
                if not args.no_paramiko:
                    got["engine alone: paramiko"] = best(1, partial(paramiko_run, cmd, lines))
                rows.append((label, got))
            for label, mb in FILES.items():
                if (mb > 1 and args.no_big) or args.only not in label:
                    continue
                src = tmp / f"file{mb}m"
                with open(src, "wb") as fh:
                    fh.write(os.urandom(mb * 1024 * 1024))
                dst = f"/tmp/bench{mb}m"
                xdcp_argv = lab.mn_argv([str(BIN / "xdcp"), "compute", "-f", f, str(src), dst])
                clean = partial(lab.mn_run, [str(BIN / "xdsh"), "compute", "-f", f,
                                             f"rm -f {dst}"], env=env, capture_output=True)

                def fresh(fn, clean=clean):
                    clean()   # a fresh copy each round: xdcp skips unchanged files
                    return fn()

                got = {"xdcp": best(args.rounds, partial(fresh, partial(timed, xdcp_argv,
                                                                         env, 0)))}
                if clush:
                    got["clush"] = best(args.rounds, partial(
                        fresh, partial(clush_run, ["-c", str(src), "--dest", dst], None)))
                timed(xdcp_argv, env, 0)
                got["xdcp again (unchanged)"] = timed(xdcp_argv, env, 0)
                clean()
                rows.append((label, got))
            if not args.no_daemon:
                xport = free_port()
                log = tmp / "xcatd.log"
                denv = {k: v for k, v in env.items() if k != "XCATBYPASS"}
                with open(log, "w") as fh:
                    xcatd = subprocess.Popen(lab.mn_argv([str(BIN / "xcatd"), "--listen",
                                                          "127.0.0.1", "--port", str(xport)]),
                                             env=denv, start_new_session=True, stdout=fh,
                                             stderr=subprocess.STDOUT)
                with lab.mn_netns():
                    wait_port(xport, xcatd, "xcatd")
                cenv = {**denv, "XCATHOST": f"127.0.0.1:{xport}"}
                for label, cmd in COMMANDS.items():
                    if args.only not in label:
                        continue
                    lines = n * (1 if label == "hostname" else 2)
                    argv = lab.mn_argv([str(BIN / "xdsh"), "compute", "-f", f, cmd])
                    got = best(args.rounds, partial(with_daemon, xcatd.pid, argv, cenv, lines))
                    rows.append((f"{label} (through xcatd)", {"xdsh": got}))
        report(rows, n)
    finally:
        stop(xcatd)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(rows, n: int) -> None:
    print(f"\n  {'workload':34} {'tool':24} {'wall s':>8} {'MN CPU s':>9} {'CPU ms/node':>12}")
    for label, got in rows:
        for tool, (wall, cpu) in got.items():
            print(f"  {label:34} {tool:24} {wall:8.2f} {cpu:9.2f} {cpu / n * 1000:12.1f}")
    print("\n  ratios (xdsh or xdcp wall time / the peer's; under 1.00 means xdsh is faster):")
    for label, got in rows:
        ours = got.get("xdsh") or got.get("xdcp")
        for peer in ("clush", "pdsh"):
            if peer in got and ours:
                print(f"  {label:34} vs {peer:9} {ours[0] / got[peer][0]:6.2f}   "
                      f"CPU {ours[1] / max(got[peer][1], 1e-9):5.2f}")
        a, p = got.get("engine alone: asyncssh"), got.get("engine alone: paramiko")
        if a and p:
            print(f"  {label:34} asyncssh engine / paramiko engine {a[0] / p[0]:6.2f}   "
                  f"CPU {a[1] / max(p[1], 1e-9):5.2f}")


if __name__ == "__main__":
    sys.exit(main())
