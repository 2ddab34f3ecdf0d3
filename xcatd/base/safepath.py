"""Which files the network may have: the path rules the HTTP site and the TFTP server share.

A name from the network is a path inside a served tree or nothing: no ``..``, no hidden
names (temporary and lock files) but the installers' own, no symlink that leads out of the
tree, no directory (so no listing), and only world-readable files unless the caller has
checked that the asker owns the file.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = (root / "a.txt").write_text("x"); (root / "a.txt").chmod(0o644)
>>> safe_file(root, "a.txt") == (root / "a.txt").resolve(), safe_file(root, "../etc/passwd")
(True, None)
>>> safe_name("n01"), safe_name("../n01"), safe_name(".hidden")
(True, False, False)
"""
from __future__ import annotations

import os
import stat as stat_mod
from pathlib import Path

#: Hidden names installers fetch from the media tree (anaconda reads .treeinfo and
#: .discinfo from inst.repo; Debian and Ubuntu media describe themselves in .disk/).
INSTALLER_DOTFILES = frozenset({".treeinfo", ".discinfo", ".disk"})


def safe_name(name: str) -> bool:
    """One path component that is not hidden: a node's name in a URL, say."""
    return bool(name) and "/" not in name and not name.startswith(".") and "\x00" not in name


def safe_file(root: Path, rel: str) -> Path | None:
    """The regular file ``rel`` names inside ``root``, or None: no ``..``, no hidden names
    but the installers' own (INSTALLER_DOTFILES), no symlink that leads out of the tree, no
    directory (so no listing)."""
    parts = rel.split("/")
    if not rel or rel.endswith("/") or any(
            not p or "\x00" in p or (p.startswith(".") and p not in INSTALLER_DOTFILES)
            for p in parts):
        return None
    try:
        base = root.resolve(strict=True)
        real = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a loop of links
        return None
    if not real.is_relative_to(base):
        return None
    try:
        st = real.stat()
    except OSError:
        return None
    return real if stat_mod.S_ISREG(st.st_mode) else None


def world_readable(path: Path) -> bool:
    """Files only root may read are not for the network (a node's own files excepted)."""
    try:
        return bool(os.stat(path).st_mode & stat_mod.S_IROTH)
    except OSError:
        return False
