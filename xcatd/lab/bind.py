"""A real named (BIND 9) on 127.0.0.1 serving a management node's generated configuration,
for tests; stopped by PID whatever happens."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from xcatd.lab import stop_process_group


class Named:
    def __init__(self, conf: Path, port: int) -> None:
        self.conf, self.port = conf, port
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> Named:
        if not shutil.which("named"):
            raise RuntimeError("named is not installed (Debian package bind9)")
        # named -g logs every update: a file, never a pipe nobody reads (it would block)
        self.log = self.conf.parent / f"named-{self.port}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(["named", "-g", "-u", "root", "-c", str(self.conf)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"named exited: {self.log.read_text()[-2000:]}")
            try:
                q = dns.message.make_query(".", "SOA")
                dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.5)
                # named answers before its zones are loaded (on a busy machine a query
                # can come first); "running" follows "all zones loaded" in its log
                if "running" in self.log.read_text(errors="replace"):
                    return self
            except (dns.exception.Timeout, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("named did not answer in time")

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None

    def __enter__(self) -> Named:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
