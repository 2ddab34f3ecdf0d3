"""File work of the parallel shell over each node's one connection (SFTP on it): xdcp's push
and pull, and xdsh -e's script.

Push, as cp and scp place things: into ``dst`` when it is a directory on the node (or ends
with '/', or several sources are given: then it is made), else as ``dst``. A file whose size
and modification time on the node are the source's is not sent again: every file sent gets
the source's modification time (and with ``preserve`` its mode). A file is written beside
its destination and renamed into place, so a node never holds half a file.

Pull (``xdcp -P``) puts each node's copy of ``src`` at ``dst/<name>._<node>``, as xCAT does.

>>> plan_push([("/srv/a", "a")], "/etc/", dst_is_dir=False)
[('/srv/a', '/etc/a')]
>>> plan_push([("/srv/a", "a")], "/etc/motd", dst_is_dir=False)
[('/srv/a', '/etc/motd')]
>>> plan_push([("/srv/d", "d/"), ("/srv/d/x", "d/x")], "/opt", dst_is_dir=True)
[('/srv/d', '/opt/d/'), ('/srv/d/x', '/opt/d/x')]
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from xcatd.remote.engine import Event, NodeError, NodeJob, Settings, Target, asyncssh, run_command

#: Where xdsh -e puts a script on the node before running it (a random name, removed after).
SCRIPT_DIR = "/tmp"


@dataclass(frozen=True)
class LocalFile:
    path: str       # on the management node
    rel: str        # under the copy's top; a directory ends with '/'
    size: int
    mtime: int
    mode: int


def local_tree(src: str, recursive: bool) -> list[LocalFile]:
    """What copying ``src`` sends: the file, or (``recursive``) a directory and everything
    under it, directories first. Raises ValueError naming the source that cannot be sent."""
    st = _lstat(src)
    top = posixpath.basename(src.rstrip("/")) or "/"
    if not stat.S_ISDIR(st.st_mode):
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{src}: not a regular file or directory")
        return [_entry(src, top, st)]
    if not recursive:
        raise ValueError(f"{src} is a directory: copy it with -R")
    out = [_entry(src, top + "/", st)]
    for dirpath, dirnames, filenames in os.walk(src, onerror=_raise):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src)
        base = top if rel == "." else f"{top}/{rel}"
        for name in dirnames:
            p = os.path.join(dirpath, name)
            out.append(_entry(p, f"{base}/{name}/", _lstat(p)))
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            st = _lstat(p)
            if stat.S_ISREG(st.st_mode):
                out.append(_entry(p, f"{base}/{name}", st))
    return out


def _raise(exc: OSError) -> None:
    raise ValueError(f"{exc.filename}: {exc.strerror}")


def _lstat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None


def _entry(path: str, rel: str, st: os.stat_result) -> LocalFile:
    return LocalFile(path, rel, st.st_size, int(st.st_mtime), stat.S_IMODE(st.st_mode))


def plan_push(files: Sequence[tuple[str, str]], dst: str, dst_is_dir: bool
              ) -> list[tuple[str, str]]:
    """(local, node path) for each of ``files`` ((path, rel) pairs of every source), copied
    to ``dst`` on a node where ``dst`` is (``dst_is_dir``) or is not a directory."""
    into = dst_is_dir or dst.endswith("/")
    tops = [rel.rstrip("/") for _, rel in files if rel.rstrip("/").count("/") == 0]
    twice = sorted({t for t in tops if tops.count(t) > 1})
    if twice:
        raise ValueError(f"two sources are named {twice[0]}: they would land on one path")
    into = into or len(tops) > 1
    out = []
    for local, rel in files:
        if into:
            out.append((local, posixpath.join(dst, rel)))
        else:   # one source becomes dst itself (a directory: its content goes under dst)
            _, _, rest = rel.partition("/")
            out.append((local, dst.rstrip("/") + ("/" + rest if rest else
                                                  ("/" if rel.endswith("/") else ""))))
    return [(a, b.replace("//", "/")) for a, b in out]


async def _remote_stat(sftp: Any, path: str) -> Any:
    try:
        return await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        return None


async def _mkdirs(sftp: Any, path: str, made: set[str]) -> None:
    path = path.rstrip("/") or "/"
    if path in made or path == "/":
        return
    if await _remote_stat(sftp, path) is None:
        await _mkdirs(sftp, posixpath.dirname(path), made)
        try:
            await sftp.mkdir(path)
        except asyncssh.SFTPFailure:
            if not stat.S_ISDIR(((await _remote_stat(sftp, path)) or _NoAttrs).permissions or 0):
                raise
    made.add(path)


class _NoAttrs:
    permissions = 0


@contextlib.contextmanager
def _one_line(doing: str, state: dict) -> Iterator[None]:
    """A copy's failure as one line: the node's SFTP error naming the node path it was at
    (``state["path"]``), or a file error of the management node's own."""
    try:
        yield
    except asyncssh.SFTPError as exc:
        raise NodeError(f"cannot {doing} {state['path']} on the node: {exc.reason}") from None
    except ValueError as exc:
        raise NodeError(str(exc)) from None
    except OSError as exc:
        if exc.filename is None:   # the connection's, not a file's here
            raise
        raise NodeError(f"on the management node: {exc.filename}: "
                        f"{exc.strerror or exc}") from None


class PushJob(NodeJob):
    """xdcp's push of ``files`` (every source's LocalFile list together) to ``dst``."""

    def __init__(self, files: Sequence[LocalFile], dst: str, preserve: bool = False) -> None:
        super().__init__()
        self.files = files
        self.dst = dst
        self.preserve = preserve

    async def work(self, conn: Any, target: Target, settings: Settings,
                   emit: Callable[[Event], None], state: dict) -> int:
        state["path"] = self.dst
        with _one_line("write", state):
            return await self._push(conn, state)

    async def _push(self, conn: Any, state: dict) -> int:
        async with conn.start_sftp_client() as sftp:
            attrs = await _remote_stat(sftp, self.dst)
            is_dir = attrs is not None and stat.S_ISDIR(attrs.permissions or 0)
            plan = plan_push([(f.path, f.rel) for f in self.files], self.dst, is_dir)
            by_path = {f.path: f for f in self.files}
            made: set[str] = set()
            into = is_dir or self.dst.endswith("/") or \
                len({f.rel.split("/", 1)[0] for f in self.files}) > 1
            if into:
                await _mkdirs(sftp, self.dst, made)
            for local, remote in plan:
                state["path"] = remote
                f = by_path[local]
                if f.rel.endswith("/"):
                    await _mkdirs(sftp, remote, made)
                    if self.preserve:
                        await sftp.chmod(remote.rstrip("/"), f.mode)
                    continue
                await _mkdirs(sftp, posixpath.dirname(remote), made)
                await self._send(sftp, f, remote)
            return 0

    async def _send(self, sftp: Any, f: LocalFile, remote: str) -> int:
        try:
            link = await sftp.lstat(remote)
        except asyncssh.SFTPNoSuchFile:
            link = None
        if link is not None and stat.S_ISLNK(link.permissions or 0):
            remote = await sftp.realpath(remote)   # as cp does: the file the link names
        now = await _remote_stat(sftp, remote)
        if now is not None and stat.S_ISDIR(now.permissions or 0):
            raise NodeError(f"{remote} is a directory on the node")
        if now is not None and now.size == f.size and now.mtime == f.mtime and \
                (not self.preserve or stat.S_IMODE(now.permissions or 0) == f.mode):
            return 0
        temp = f"{posixpath.dirname(remote)}/.{posixpath.basename(remote)}." \
               f"xdcp{secrets.token_hex(4)}"
        try:
            # made 0600 first: put() would open it with the umask's mode, and a secret
            # would be readable on the node until the chmod
            async with sftp.open(temp, "wb", asyncssh.SFTPAttrs(permissions=0o600)):
                pass
            await sftp.put(f.path, temp, block_size=BLOCK, max_requests=REQUESTS)
            mode = f.mode if self.preserve else (stat.S_IMODE(now.permissions) if now is not None
                                                 else f.mode & 0o755)
            if now is not None and now.uid is not None and (now.uid, now.gid) != (0, 0):
                await sftp.chown(temp, now.uid, now.gid)   # the file keeps its owner
            await sftp.chmod(temp, mode)
            await sftp.utime(temp, (f.mtime, f.mtime))
            await sftp.posix_rename(temp, remote)
        except BaseException:
            with contextlib.suppress(Exception):   # the copy's own error says what went wrong
                await sftp.remove(temp)
            raise
        return 1


#: SFTP write size: OpenSSH's sftp-server takes up to 256 KiB a request; fewer, larger writes
#: cost the management node much less CPU per megabyte.
BLOCK = 255 * 1024
#: SFTP requests in flight per file: 8 x 255 KiB is about ssh's own 2 MiB window, so a
#: copy to 64 nodes at once holds some 128 MiB, not gigabytes.
REQUESTS = 8


class PullJob(NodeJob):
    """xdcp -P: each of ``sources`` (node paths) to ``dst/<name>._<node>`` here."""

    def __init__(self, sources: Sequence[str], dst: str, recursive: bool,
                 preserve: bool) -> None:
        super().__init__()
        self.sources = sources
        self.dst = dst
        self.recursive = recursive
        self.preserve = preserve

    async def work(self, conn: Any, target: Target, settings: Settings,
                   emit: Callable[[Event], None], state: dict) -> int:
        state["path"] = self.sources[0] if self.sources else ""
        with _one_line("read", state):
            return await self._pull(conn, target, state)

    async def _pull(self, conn: Any, target: Target, state: dict) -> int:
        async with conn.start_sftp_client() as sftp:
            for src in self.sources:
                state["path"] = src   # the node's own: the job is shared by every node
                attrs = await _remote_stat(sftp, src)
                if attrs is None:
                    raise NodeError(f"{src}: no such file or directory on the node")
                if stat.S_ISDIR(attrs.permissions or 0) and not self.recursive:
                    raise NodeError(f"{src} is a directory: pull it with -R")
                name = posixpath.basename(src.rstrip("/")) or "root"
                local = os.path.join(self.dst, f"{name}._{target.node}")
                if os.path.islink(local):
                    raise NodeError(f"{local} is a symbolic link on the management node: "
                                    "not followed")
                await sftp.get(src, local, recurse=self.recursive, preserve=self.preserve,
                               block_size=BLOCK, max_requests=REQUESTS)
                _no_set_id(local)
        return 0


def _no_set_id(path: str) -> None:
    """A pulled file is written by root here: it never keeps a node's setuid or setgid bit
    (xdcp -P -p keeps the rest of the mode)."""
    for top, dirs, names in os.walk(path) if os.path.isdir(path) else [("", [], [path])]:
        for name in names + dirs:
            p = os.path.join(top, name) if top else name
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o6000:
                os.chmod(p, stat.S_IMODE(st.st_mode) & ~0o6000)


class ScriptJob(NodeJob):
    """xdsh -e: the script goes to /tmp/<random>.dsh on the node, runs there with
    its arguments, and is removed whatever happened."""

    def __init__(self, body: bytes, args: str) -> None:
        super().__init__()
        self.body = body
        self.args = args

    async def work(self, conn: Any, target: Target, settings: Settings,
                   emit: Callable[[Event], None], state: dict) -> int:
        path = f"{SCRIPT_DIR}/{secrets.token_hex(5)}.dsh"   # xCAT names it so too
        async with conn.start_sftp_client() as sftp, \
                sftp.open(path, "wb", asyncssh.SFTPAttrs(permissions=0o700)) as fh:
            await fh.write(self.body)
        # a newline, not ";": a '#' in the arguments must not comment the removal out
        command = f"{path}{' ' + self.args if self.args else ''}\nrc=$?; rm -f {path}; exit $rc"
        try:
            return await run_command(conn, target.node, command, settings.env, emit, state,
                                     sudo=settings.sudo)
        finally:
            if "session" in state:   # interrupted: the kill runs first, then the removal
                state.setdefault("cleanup", []).append(f"rm -f {path}")


class KeySetupJob(NodeJob):
    """xdsh -K: the management node's public keys join ``~/.ssh/authorized_keys`` of the
    user on the node (lines already there are kept, none is added twice); on the nodes of
    ``between`` (site.sshbetweennodes names them) root's key pair ``private`` goes to
    ``~/.ssh`` too, so the nodes can ssh to each other."""

    def __init__(self, public_keys: str, private: dict[str, bytes],
                 between: set[str]) -> None:
        super().__init__()
        self.public_keys = [k for k in public_keys.splitlines() if k.strip()]
        self.private = private
        self.between = between

    async def work(self, conn: Any, target: Target, settings: Settings,
                   emit: Callable[[Event], None], state: dict) -> int:
        async with conn.start_sftp_client() as sftp:
            home = await sftp.realpath(".")
            ssh = f"{home.rstrip('/')}/.ssh"
            await _mkdirs(sftp, ssh, set())
            await sftp.chmod(ssh, 0o700)
            path = f"{ssh}/authorized_keys"
            current = b""
            if await _remote_stat(sftp, path) is not None:
                async with sftp.open(path, "rb") as fh:
                    current = await fh.read()
            have = {_key_of(line) for line in current.decode(errors="replace").splitlines()}
            new = [k for k in self.public_keys if _key_of(k) not in have]
            if new:
                text = current + (b"" if not current or current.endswith(b"\n") else b"\n")
                text += "".join(k + "\n" for k in new).encode()
                await _write(sftp, path, text, 0o600)
            pair = self.private if target.node in self.between else {}
            for name, body in pair.items():
                await _write(sftp, f"{ssh}/{name}", body,
                             0o644 if name.endswith(".pub") else 0o600)
        emit(Event(target.node, "out", "ssh keys are set up" +
                   (" (with root's key pair: site.sshbetweennodes)" if pair else "")))
        return 0


def _key_of(line: str) -> str:
    """The key material of an authorized_keys line (type and base64), options and comment
    aside."""
    words = line.split()
    for i, w in enumerate(words[:-1]):
        if w.startswith(("ssh-", "ecdsa-", "sk-")):
            return f"{w} {words[i + 1]}"
    return line.strip()


async def _write(sftp: Any, path: str, data: bytes, mode: int) -> None:
    """``data`` to ``path`` on the node, through a file beside it renamed into place."""
    temp = f"{posixpath.dirname(path)}/.{posixpath.basename(path)}.xdsh{secrets.token_hex(4)}"
    try:
        async with sftp.open(temp, "wb", asyncssh.SFTPAttrs(permissions=mode)) as fh:
            await fh.write(data)
        await sftp.chmod(temp, mode)
        await sftp.posix_rename(temp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            await sftp.remove(temp)
        raise
