"""pyxcat's version, in the shape xCAT prints it: ``Version 2.16.5 (git commit abc, built ...)``.

The version is the installed distribution's. The commit comes from the install record when
pip installed from a repository, else from the git checkout the package runs from (an
editable install); the build date only from a packager's ``xcatd/BUILD`` file. What cannot
be known is said to be ``unknown``, never guessed.

>>> version_line("0.1.0", "df87eea", None)
'Version 0.1.0 (git commit df87eea, built unknown)'
"""
from __future__ import annotations

import json
from functools import cache
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "pyxcat"
#: Optional lines ``commit=<sha>`` and ``built=<date>`` a package build may leave here.
BUILD_FILE = Path(__file__).resolve().parent.parent / "BUILD"


def version_line(version: str | None = None, commit: str | None = None,
                 built: str | None = None) -> str:
    return (f"Version {version or 'unknown'} (git commit {commit or 'unknown'}, "
            f"built {built or 'unknown'})")


@cache
def current() -> str:
    """This installation's version line (read once per process)."""
    build = _build_file()
    return version_line(_version(), build.get("commit") or _commit(), build.get("built"))


def _version() -> str | None:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def _build_file() -> dict[str, str]:
    try:
        text = BUILD_FILE.read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _commit() -> str | None:
    try:
        direct = json.loads(metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
                            or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        direct = {}
    commit = (direct.get("vcs_info") or {}).get("commit_id")
    if commit:
        return commit
    # an editable install (or a run from the source tree): the checkout's HEAD
    return git_head(Path(__file__).resolve().parents[2])


def git_head(tree: Path) -> str | None:
    """The commit ``tree``'s checkout is at, read from its files (no git process)."""
    git = tree / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = (tree / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
    except (OSError, IndexError):
        return None
    if not head.startswith("ref:"):
        return head or None
    ref = head[4:].strip()
    common = git
    try:  # a worktree keeps its refs in the main repository
        common = (git / (git / "commondir").read_text().strip()).resolve()
    except OSError:
        pass
    for base in dict.fromkeys((git, common)):
        try:
            return (base / ref).read_text().strip() or None
        except OSError:
            pass
        try:
            for line in (base / "packed-refs").read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha
        except OSError:
            pass
    return None
