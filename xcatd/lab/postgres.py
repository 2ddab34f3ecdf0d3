"""A throwaway PostgreSQL server on loopback, for tests and benchmarks.

>>> isinstance(bindir(), (str, type(None)))
True
"""
from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from xcatd.lab.ports import free_port


def bindir() -> str | None:
    """Where initdb and pg_ctl live (Debian: /usr/lib/postgresql/<v>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


@dataclass
class PgServer:
    port: int
    base: str
    pid: int
    _names = itertools.count()

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg
        name = f"xcat_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, 15)
        for _ in range(200):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)
        shutil.rmtree(self.base, ignore_errors=True)


def start() -> PgServer:
    """initdb + pg_ctl start in a temporary directory; trust auth on 127.0.0.1 only."""
    bd = bindir()
    if bd is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    base = tempfile.mkdtemp(prefix="pyxcat-pg-")
    datadir, sockdir = os.path.join(base, "data"), os.path.join(base, "sock")
    os.makedirs(sockdir)
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as postgres
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chown(sockdir, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    try:
        subprocess.run([*as_user, f"{bd}/initdb", "-D", datadir, "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port = free_port()
        subprocess.run([*as_user, f"{bd}/pg_ctl", "-D", datadir, "-w", "-s", "-l",
                        os.path.join(base, "log"), "-o",
                        f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c synchronous_commit=off -c full_page_writes=off "
                        "-c max_connections=200", "start"], check=True)
        with open(os.path.join(datadir, "postmaster.pid")) as fh:
            pid = int(fh.readline())
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return PgServer(port, base, pid)
