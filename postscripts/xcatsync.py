"""Apply a node's sync plan: the node half of xCAT's synclists (``updatenode -F``, the
``syncfiles`` postscript). The management node makes the plan
(xcatd.provision.synclist.SyncPlan.as_dict()); the node agent fetches it and calls
``apply(plan, fetch)``, ``fetch`` being its authenticated ``GET /xcat/agent/file?path=``.

This runs on nodes: Python 3.9 or later, standard library only, installed as
/usr/lib/xcat/xcatsync.py.

- A file whose sha256 already matches is not fetched again; a fetched file whose sha256 or
  size is not the plan's is written nowhere. Files are written to a temporary file beside
  the destination and renamed into place, with the plan's mode; missing directories are made.
- APPEND: the node keeps the destination as it was before the first append (``original``)
  and the content it appended (``stage``); the destination is rebuilt as original + content,
  and only when the content changed, so syncing twice appends once.
- MERGE (/etc/passwd, /etc/shadow, /etc/group, /etc/gshadow): the source's entries replace
  the destination's entries of the same name (first field), in place; new names are added at
  the end. Mode and owner of the destination are kept.
- EXECUTE scripts run when one of their trigger files changed in this sync, EXECUTEALWAYS
  scripts every time; each with stdin /dev/null, in its own process group, killed whole at
  its timeout (the plan's, else 300 s).
- ``execute_only``: nothing is fetched or written but the scripts' own copies; every EXECUTE
  and EXECUTEALWAYS script that is on the node runs (the files are in place already, as
  when an image was built with them).

``root`` prefixes every node path (tests apply plans into a temporary directory).

>>> merge_entries(b"root:x:0:0::/root:/bin/sh\\nbob:x:1000:1000::/home/bob:/bin/sh\\n",
...               b"bob:x:1000:1000:Bob:/home/bob:/bin/bash\\nann:x:1001:1001::/ann:/bin/sh\\n")
b'root:x:0:0::/root:/bin/sh\\nbob:x:1000:1000:Bob:/home/bob:/bin/bash\\nann:x:1001:1001::/ann:/bin/sh\\n'
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import signal
import stat
import subprocess
import tempfile
from collections.abc import Callable

DEFAULT_TIMEOUT = 300
#: the output of a script kept for the report
TAIL = 2000
MERGEABLE = ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow")
DEFAULT_NODESYNCFILEDIR = "/var/xcat/node/syncfiles"

Fetch = Callable[[str], bytes]


class _Report:
    """The lines of one apply(), sent to ``log`` as they come; errors make rc 1."""

    def __init__(self, log: Callable[[str], object]) -> None:
        self.lines: list[str] = []
        self.failed = False
        self.log = log
        self.updated = self.unchanged = self.errors = 0

    def say(self, text: str) -> None:
        self.lines.append(text)
        try:
            self.log(text)
        except Exception:  # a broken logger must not stop the sync
            pass

    def error(self, text: str) -> None:
        self.failed = True
        self.errors += 1
        self.say("Error: " + text)


class _Bad(Exception):
    """One entry that cannot be applied; the message says why (nothing was written)."""


def apply(plan: dict, fetch: Fetch, root: str = "/", execute_only: bool = False,
          log: Callable[[str], object] = print, timeout: float | None = None
          ) -> tuple[int, list[str]]:
    """Apply ``plan`` under ``root``: (0 when everything worked else 1, the report lines)."""
    report = _Report(log)
    if not isinstance(plan, dict):
        report.error("the sync plan is not a JSON object")
        return 1, report.lines
    for text in _list(plan, "errors"):
        report.error(str(text))
    for text in _list(plan, "warnings"):
        report.say("Warning: " + str(text))
    changed: set[str] = set()
    for entry in _list(plan, "files"):
        _guard(report, entry, lambda e: _sync_file(e, fetch, root, execute_only, report,
                                                   changed))
    if not execute_only:
        nsfd = str(plan.get("nodesyncfiledir") or DEFAULT_NODESYNCFILEDIR)
        for entry in _list(plan, "append"):
            _guard(report, entry, lambda e: _append(e, fetch, root, nsfd, report, changed))
        for entry in _list(plan, "merge"):
            _guard(report, entry, lambda e: _merge(e, fetch, root, report, changed))
    limit = _timeout(timeout if timeout is not None else plan.get("timeout"))
    triggers = plan.get("triggers") if isinstance(plan.get("triggers"), dict) else {}
    for dest in _list(plan, "execute"):
        when = triggers.get(dest) or [dest]
        if execute_only or any(t in changed for t in when):
            _run(str(dest), root, limit, "EXECUTE", report)
    for dest in _list(plan, "executealways"):
        _run(str(dest), root, limit, "EXECUTEALWAYS", report)
    report.say(f"sync: {report.updated} updated, {report.unchanged} unchanged, "
               f"{report.errors} errors")
    return (1 if report.failed else 0), report.lines


def _list(plan: dict, key: str) -> list:
    value = plan.get(key)
    return value if isinstance(value, list) else []


def _guard(report: _Report, entry: object, work: Callable[[dict], None]) -> None:
    """Run ``work`` on one entry; whatever goes wrong is an error of that entry only."""
    dest = entry.get("dest", "?") if isinstance(entry, dict) else "?"
    try:
        if not isinstance(entry, dict):
            raise _Bad("not a JSON object in the plan")
        work(entry)
    except _Bad as exc:
        report.error(f"{dest}: {exc}")
    except (KeyError, TypeError, ValueError) as exc:
        report.error(f"{dest}: malformed plan entry ({exc.__class__.__name__}: {exc})")
    except OSError as exc:
        report.error(f"{dest}: {exc.strerror or exc}"
                     + (f" ({exc.filename})" if exc.filename else ""))


# ---- paths and files ------------------------------------------------------------------------
def node_path(root: str, path: str) -> str:
    """``path`` (absolute, on the node) under ``root``; it cannot lead out of ``root``."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise _Bad(f"not a full path on the node: {path!r}")
    norm = posixpath.normpath(path).lstrip("/")
    return os.path.join(root, norm) if norm else root


def sha256_of(path: str) -> str | None:
    """The sha256 of a regular file (links followed), None when there is none."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def write_atomic(target: str, data: bytes, mode: int | None = None,
                 like: os.stat_result | None = None) -> None:
    """Write ``data`` to a temporary file beside ``target`` and rename it into place, with
    ``like``'s mode and owner, else ``mode`` (0644 when None)."""
    if os.path.isdir(target) and not os.path.islink(target):
        raise _Bad("is a directory on the node")
    directory = os.path.dirname(target)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".xcatsync",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if like is not None:
            os.chmod(tmp, stat.S_IMODE(like.st_mode))
            try:
                os.chown(tmp, like.st_uid, like.st_gid)
            except OSError:
                pass   # not root: the file stays ours
        else:
            os.chmod(tmp, 0o644 if mode is None else mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _want(entry: dict) -> str:
    """The entry's sha256 (64 hexadecimal digits), or _Bad."""
    want = entry.get("sha256")
    if not isinstance(want, str) or len(want) != 64 \
            or want.strip("0123456789abcdef") != "":
        raise _Bad("no sha256 in the plan: not synced")
    return want


def _fetch(entry: dict, fetch: Fetch) -> bytes:
    """The bytes of the entry's file, checked against its size and sha256."""
    path, want = entry["path"], _want(entry)
    try:
        data = fetch(path)
    except Exception as exc:
        raise _Bad(f"cannot fetch {path}: {exc}") from None
    if not isinstance(data, (bytes, bytearray)):
        raise _Bad(f"cannot fetch {path}: the fetch returned no bytes")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise _Bad(f"{path} arrived with sha256 {got}, the plan says {want}: not written")
    size = entry.get("size")
    if isinstance(size, int) and size != len(data):
        raise _Bad(f"{path} arrived with {len(data)} bytes, the plan says {size}: "
                   "not written")
    return bytes(data)


# ---- files, APPEND, MERGE ---------------------------------------------------------------------
def _sync_file(entry: dict, fetch: Fetch, root: str, execute_only: bool, report: _Report,
               changed: set[str]) -> None:
    dest = entry["dest"]
    target = node_path(root, dest)
    _want(entry)
    mode = entry.get("mode")
    mode = mode if isinstance(mode, int) and 0 <= mode <= 0o7777 else None
    if sha256_of(target) == entry["sha256"]:
        if mode is not None and not execute_only and not os.path.islink(target) \
                and stat.S_IMODE(os.stat(target).st_mode) != mode:
            os.chmod(target, mode)
        report.unchanged += 1
        return
    if execute_only and not entry.get("stage"):
        report.say(f"{dest}: not in place (execute only: not synced)")
        return
    data = _fetch(entry, fetch)
    write_atomic(target, data, mode)
    changed.add(dest)
    report.updated += 1
    report.say(f"{dest}: updated")


def _staged(entry: dict, root: str) -> tuple[str, bool]:
    """(the staged copy's path, whether it holds the plan's content already)."""
    _want(entry)
    stage = node_path(root, entry["stage"])
    return stage, sha256_of(stage) == entry["sha256"]


def _append(entry: dict, fetch: Fetch, root: str, nsfd: str, report: _Report,
            changed: set[str]) -> None:
    dest = entry["dest"]
    stage, same = _staged(entry, root)
    if same:
        report.unchanged += 1
        return
    target = node_path(root, dest)
    original = node_path(root, entry.get("original") or f"{nsfd}/org{dest}")
    data = _fetch(entry, fetch)
    if not os.path.isfile(original):
        if not os.path.isfile(target):
            raise _Bad("APPEND needs the file on the node, and it does not exist")
        with open(target, "rb") as fh:
            write_atomic(original, fh.read(), like=os.stat(target))
    with open(original, "rb") as fh:
        base = fh.read()
    if base and not base.endswith(b"\n"):
        base += b"\n"
    like = os.stat(target) if os.path.isfile(target) else os.stat(original)
    write_atomic(target, base + data, like=like)
    write_atomic(stage, data, 0o600)
    changed.add(dest)
    report.updated += 1
    report.say(f"{dest}: appended {entry['path']}")


def merge_entries(current: bytes, new: bytes) -> bytes:
    """``current`` (a passwd, shadow or group file) with ``new``'s entries merged by name:
    an entry of ``new`` replaces the one of the same name in place, the others go at the
    end; a name twice in ``new``: the later line wins."""
    entries: dict[bytes, bytes] = {}
    for number, line in enumerate(new.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, _rest = line.partition(b":")
        if not colon or not name.strip():
            raise _Bad(f"line {number} of the MERGE file is not a 'name:...' entry")
        entries[name] = line
    out: list[bytes] = []
    placed: set[bytes] = set()
    for line in current.splitlines():
        name = line.partition(b":")[0]
        if line.strip() and name in entries:
            if name not in placed:
                out.append(entries[name])
                placed.add(name)
            continue
        out.append(line)
    out += [line for name, line in entries.items() if name not in placed]
    return b"\n".join(out) + b"\n" if out else b""


def _merge(entry: dict, fetch: Fetch, root: str, report: _Report, changed: set[str]) -> None:
    dest = entry["dest"]
    if posixpath.normpath(str(dest)) not in MERGEABLE:
        raise _Bad("MERGE changes only " + ", ".join(MERGEABLE))
    stage, same = _staged(entry, root)
    if same:
        report.unchanged += 1
        return
    target = node_path(root, dest)
    data = _fetch(entry, fetch)
    if not os.path.isfile(target):
        raise _Bad("MERGE needs the file on the node, and it does not exist")
    with open(target, "rb") as fh:
        current = fh.read()
    merged = merge_entries(current, data)
    if merged != current:
        write_atomic(target, merged, like=os.stat(target))
        changed.add(dest)
        report.updated += 1
        report.say(f"{dest}: merged {entry['path']}")
    else:
        report.unchanged += 1
    write_atomic(stage, data, 0o600)


# ---- EXECUTE, EXECUTEALWAYS -------------------------------------------------------------------
def _timeout(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT
    return number if number > 0 else DEFAULT_TIMEOUT


def _run(dest: str, root: str, limit: float, section: str, report: _Report) -> None:
    """Run one script (stdin /dev/null, its own process group, killed whole at ``limit``)."""
    try:
        path = node_path(root, dest)
    except _Bad as exc:
        report.error(f"{section} {dest}: {exc}")
        return
    if not os.path.isfile(path):
        report.error(f"{section} {dest}: not on the node")
        return
    argv = [path] if os.access(path, os.X_OK) else ["/bin/sh", path]
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=root,
                                    start_new_session=True)
        except OSError as exc:
            report.error(f"{section} {dest}: cannot run it: {exc.strerror or exc}")
            return
        timed_out = False
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            rc = proc.wait()
        for line in _tail(out).splitlines():
            report.say(f"{dest}: {line}")
    if timed_out:
        report.error(f"{section} {dest}: timed out after {limit:g} s, killed")
    elif rc != 0:
        report.error(f"{section} {dest}: exit code {rc}")
    else:
        report.say(f"{section} {dest}: ran, exit code 0")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(fh) -> str:
    """The last TAIL characters a script wrote."""
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - 4 * TAIL))
    return fh.read().decode("utf-8", "replace")[-TAIL:]
