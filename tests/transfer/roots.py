"""Management nodes for the transfer tests: several in one test, each under its own root and
HOME, made as xcatconfig makes them. Commands run on one of them in process (the quick way to
set up and to look) or as the installed console script in a subprocess with that node's
environment (how xcatexport and xcatimport are tested)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import initialize, place_loaders
from xcatd.db.database import TABLES, Database
from xcatd.lab.incli import Result, environ, run_command

BIN = Path(sys.executable).parent
#: every table, in a stable order
ALL_TABLES = sorted(TABLES)


class Root:
    """One management node: ``root`` (its XCATROOT) and ``home`` (its user's HOME)."""

    def __init__(self, base: Path, url: str | None = None) -> None:
        self.base = base
        self.root = base / "root"
        self.home = base / "home"
        self.root.mkdir(parents=True)
        self.home.mkdir()
        self.paths = Paths(self.root)
        initialize(self.paths, db_url=url, client_home=str(self.home))
        place_loaders(self.paths)  # as xcatconfig does (makedhcp hands them out)
        # the command tests' habit: no audit rows from ordinary commands (tabdump
        # --show-secrets among them), so the tables say only what the test did
        self.ok("chtab", "key=auditskipcmds", "site.value=ALL")

    @property
    def db(self) -> Database:
        return Database.open(self.paths)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("XCATHOST", "XCAT_NODE_PREFIX", "XCAT_NODE_SUFFIX")}
        env.update(XCATROOT=str(self.root), HOME=str(self.home), XCATBYPASS="1")
        return env

    def _environ(self):
        return environ(self.env)

    def run(self, cmd: str, *args: str, input: str | None = None) -> Result:
        """A command in this process, on this node, as its console script would run it."""
        with self._environ():
            return run_command(cmd, *args, input=input)

    def ok(self, cmd: str, *args: str, input: str | None = None) -> Result:
        r = self.run(cmd, *args, input=input)
        assert r.rc == 0, f"{cmd} {' '.join(args)} failed ({r.rc}): {r.err}"
        return r

    def popen_args(self, *argv: str) -> list[str]:
        exe = BIN / argv[0]
        return [str(exe) if exe.exists() else argv[0], *argv[1:]]

    def sh(self, *argv: str, input: str | None = None, timeout: int = 120) -> Result:
        """The installed console script, in a subprocess with this node's environment."""
        p = subprocess.run(self.popen_args(*argv), input=input, capture_output=True, text=True,
                           env=self.env, timeout=timeout, cwd=self.base)
        return Result(p.returncode, p.stdout, p.stderr)

    def tables(self, skip: tuple[str, ...] = ()) -> dict[str, str]:
        """``tabdump --show-secrets`` of every table (but ``skip``)."""
        return {t: self.ok("tabdump", "--show-secrets", t).out
                for t in ALL_TABLES if t not in skip}

    def files(self) -> dict[str, str]:
        """sha256 (or link target) and mode of every file and directory under the root and
        the HOME (``~/...``), the database and the logs aside."""
        out = {}
        for top, prefix in ((self.root, ""), (self.home, "~/")):
            for dirpath, dirnames, filenames in os.walk(top):
                d = Path(dirpath)
                for name in dirnames + filenames:
                    p = d / name
                    rel = prefix + p.relative_to(top).as_posix()
                    if rel.startswith(("var/lib/xcat/xcat.sqlite", "var/log/")) \
                            or rel == "var/log":
                        continue
                    st = p.lstat()
                    if p.is_symlink():
                        out[rel] = f"-> {os.readlink(p)}"
                    elif p.is_dir():
                        out[rel] = f"dir {st.st_mode & 0o7777:04o}"
                    else:
                        out[rel] = (f"{hashlib.sha256(p.read_bytes()).hexdigest()} "
                                    f"{st.st_mode & 0o7777:04o}")
        return out

    def state(self) -> tuple[dict[str, str], dict[str, str]]:
        """What must not change when an import fails: every table (but the job history,
        which every command, tabdump among them, adds to) and every file."""
        return self.tables(skip=("jobs", "jobresults")), self.files()

    def close(self) -> None:
        Database.open(self.paths).dispose()
