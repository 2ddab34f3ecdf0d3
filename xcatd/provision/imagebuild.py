"""genimage's engine: build a diskless image root, aside, then publish it in one rename.

Debian and Ubuntu images are made by one ``mmdebstrap`` run: the first package-list pass
goes in with ``--include``, later passes, removals, other packages and the postinstall
scripts run as its customize hooks (mmdebstrap mounts /proc, /sys and /dev for them and keeps
services from starting). RHEL-family images are made by ``dnf --installroot``, pass by pass,
from repositories found in ``pkgdir`` (the copycds tree) and ``otherpkgdir``. Either way
every step runs inside ``unshare --mount --propagation private``: whatever it mounts dies
with the namespace, so no mount outlives the build, even when genimage is killed.

Each build happens in ``<rootimgdir>/.build-<random>/rootimg`` and is published only when
every step has succeeded (publish()). A per-image lock (``<rootimgdir>/.genimage.lock``)
refuses a second genimage of the same image at once. Each step's output goes to
``<rootimgdir>/genimage.log``; errors name the stage and the log.

>>> spec = ImageSpec("debian12-x86_64-netboot-compute", "debian12", "x86_64", "compute",
...                  Path("/r/install/netboot/debian12/x86_64/compute"),
...                  passes=(PkgPass(("busybox",), ()),))
>>> spec.family, spec.suite, spec.debarch, len(spec.digest())
('debian', 'bookworm', 'amd64', 64)
>>> mmdebstrap_argv(spec, Path("/b/rootimg"))[:4]
['mmdebstrap', '--mode=root', '--variant=minbase', '--include=busybox']
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xcatd.provision.osfamily import family, normalise_arch
from xcatd.provision.pkglist import PkgPass, group_names

DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: Environment variable naming a directory where genimage keeps downloaded packages and
#: finished image trees keyed by their spec's digest (the tests and CI set it; a site that
#: wants repeatable rebuilds may too).
CACHE_ENV = "PYXCAT_IMAGE_CACHE"
DEB_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64el", "x86": "i386",
              "s390x": "s390x"}
UBUNTU_CODENAMES = {"20.04": "focal", "22.04": "jammy", "24.04": "noble"}
DEBIAN_CODENAMES = {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie"}
LOG_NAME = "genimage.log"
LOCK_NAME = ".genimage.lock"
SPEC_NAME = "genimage.json"
_STAGE = "@@pyxcat-genimage-stage "


class ImageBuildError(Exception):
    """A build that failed; the message names the stage and the log."""


class ImageBusy(ImageBuildError):
    """Another genimage holds this image's lock."""


@dataclass(frozen=True)
class ImageSpec:
    """Everything that decides what an image holds (its digest keys the cache and the
    manifest); paths are the management node's, already mapped under XCATROOT."""

    name: str
    osvers: str
    arch: str
    profile: str
    rootimgdir: Path
    passes: tuple[PkgPass, ...] = ()
    otherpasses: tuple[PkgPass, ...] = ()
    #: Debian: mirror URLs; RHEL: repository URLs or directories (pkgdir, then otherpkgdir)
    mirrors: tuple[str, ...] = ()
    otherrepos: tuple[str, ...] = ()
    postinstall: tuple[Path, ...] = ()
    kernelver: str = ""
    netdrivers: str = ""
    #: the osimage's attributes as recorded, for the IMG_* environment of postinstall scripts
    attrs: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def family(self) -> str:
        f = family(self.osvers)
        return "rhel" if f is not None and f.platform == "rh" else \
            ("debian" if f is not None else "unknown")

    @property
    def suite(self) -> str:
        m = re.match(r"([a-z]+)([\d.]+)?", self.osvers)
        ver = (m.group(2) or "") if m else ""
        if self.osvers.startswith("ubuntu"):
            return UBUNTU_CODENAMES.get(ver, "")
        return DEBIAN_CODENAMES.get(ver.split(".")[0], "")

    @property
    def releasever(self) -> str:
        m = re.search(r"(\d+)", self.osvers)
        return m.group(1) if m else ""

    @property
    def debarch(self) -> str:
        return DEB_ARCHES.get(normalise_arch(self.arch), self.arch)

    def digest(self) -> str:
        """sha256 of the inputs: lists, sources, scripts (by content), kernel choice."""
        scripts = []
        for p in self.postinstall:
            try:
                scripts.append(hashlib.sha256(p.read_bytes()).hexdigest())
            except OSError:
                scripts.append(f"missing:{p}")
        data = {"osvers": self.osvers, "arch": self.arch, "suite": self.suite,
                "passes": [[list(p.install), list(p.remove), list(p.env)] for p in self.passes],
                "other": [[list(p.install), list(p.remove), list(p.env)]
                          for p in self.otherpasses],
                "mirrors": list(self.mirrors), "otherrepos": list(self.otherrepos),
                "postinstall": scripts, "kernelver": self.kernelver, "v": 1}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def environment(self) -> dict[str, str]:
        """The IMG_* variables xCAT gives postinstall scripts."""
        a = self.attrs
        return {"IMG_ARCH": self.arch, "IMG_NAME": self.name, "IMG_OSVER": self.osvers,
                "IMG_KERNELVERSION": self.kernelver, "IMG_PROFILE": self.profile,
                "IMG_PKGLIST": a.get("pkglist", ""), "IMG_PKGDIR": a.get("pkgdir", ""),
                "IMG_OTHERPKGLIST": a.get("otherpkglist", ""),
                "IMG_OTHERPKGDIR": a.get("otherpkgdir", ""),
                "IMG_ROOTIMGDIR": a.get("rootimgdir", str(self.rootimgdir))}


@dataclass
class Step:
    """One command of the build: its stage name, argv, and how many packages it adds."""

    stage: str
    argv: list[str]
    packages: int = 0
    env: dict[str, str] | None = None


# ---- Debian: one mmdebstrap run ------------------------------------------------------------
def _marker(stage: str) -> str:
    return f"--customize-hook=echo {shlex.quote(_STAGE + stage)}"


def _apt(words: str, env: Sequence[str] = ()) -> str:
    extra = "".join(f" {shlex.quote(e)}" for e in env)
    return ('--customize-hook=chroot "$1" env DEBIAN_FRONTEND=noninteractive'
            f"{extra} apt-get -y -q -o Dpkg::Use-Pty=0 {words}")


def mmdebstrap_argv(spec: ImageSpec, target: Path, debcache: Path | None = None) -> list[str]:
    """The mmdebstrap command that builds ``spec`` into ``target``: pass 1 with --include,
    every later step a customize hook preceded by a stage marker the log reader follows."""
    first = spec.passes[0] if spec.passes else PkgPass((), ())
    argv = ["mmdebstrap", "--mode=root", "--variant=minbase"]
    if first.install:
        argv.append("--include=" + ",".join(first.install))
    argv.append(f"--architectures={spec.debarch}")
    if debcache is not None:
        # downloaded .debs stay in the cache (bind-mounted; unmounted before mmdebstrap's
        # cleanup), so a rebuild downloads nothing it has already
        argv += ["--skip=download/empty", "--skip=essential/unlink",
                 '--setup-hook=mkdir -p "$1/var/cache/apt/archives" && mount --bind '
                 f'{shlex.quote(str(debcache))} "$1/var/cache/apt/archives"']
    quoted = lambda names: " ".join(shlex.quote(n) for n in names)  # noqa: E731
    if first.remove:
        argv += [_marker("pkglist pass 1 removals"),
                 _apt(f"remove --purge {quoted(first.remove)}", first.env)]
    for kind, passes in (("pkglist", spec.passes[1:]), ("otherpkgs", spec.otherpasses)):
        start = 2 if kind == "pkglist" else 1
        for i, p in enumerate(passes, start):
            if p.install:
                argv += [_marker(f"{kind} pass {i}: {len(p.install)} packages"),
                         _apt(f"install --no-install-recommends {quoted(p.install)}",
                              p.env)]
            if p.remove:
                argv += [_marker(f"{kind} pass {i} removals"),
                         _apt(f"remove --purge {quoted(p.remove)}", p.env)]
    for script in spec.postinstall:
        argv += [_marker(f"postinstall {script.name}"),
                 f"--customize-hook={shlex.quote(str(script))} \"$1\" "
                 f"{shlex.quote(spec.osvers)} {shlex.quote(spec.arch)} "
                 f"{shlex.quote(spec.profile)}"]
    if debcache is not None:
        argv += [_marker("cleanup"), '--customize-hook=umount "$1/var/cache/apt/archives"']
    argv += [spec.suite, str(target)]
    argv += list(spec.mirrors) or [DEFAULT_DEBIAN_MIRROR]
    argv += _other_sources(spec)
    return argv


def _other_sources(spec: ImageSpec) -> list[str]:
    """otherpkgdir as apt sources: a URL or directory holding a flat repository
    (Packages[.gz] at its top), trusted as the site's own."""
    out = []
    for repo in spec.otherrepos:
        url = repo if re.match(r"[a-z]+://", repo) else f"file://{repo}"
        out.append(f"deb [trusted=yes] {url} ./")
    return out


# ---- RHEL family: dnf --installroot, pass by pass -------------------------------------------
def rhel_repos(sources: Sequence[str]) -> list[str]:
    """Repository URLs from pkgdir/otherpkgdir entries: a URL as it is, a directory with
    repodata/ itself, else each of its subdirectories with repodata/ (BaseOS, AppStream)."""
    out: list[str] = []
    for s in sources:
        if re.match(r"[a-z]+://", s):
            out.append(s)
            continue
        d = Path(s)
        if (d / "repodata").is_dir():
            out.append(f"file://{d}")
        elif d.is_dir():
            out += [f"file://{sub}" for sub in sorted(d.iterdir())
                    if (sub / "repodata").is_dir()]
    return out


def dnf_steps(spec: ImageSpec, target: Path) -> list[Step]:
    repos = rhel_repos(spec.mirrors) + rhel_repos(spec.otherrepos)
    base = ["dnf", "-y", "-q", "--installroot", str(target), "--releasever",
            spec.releasever or "9", "--setopt=reposdir=/dev/null", "--nogpgcheck",
            "--setopt=install_weak_deps=False", "--setopt=cachedir=/var/cache/dnf",
            "--setopt=keepcache=False"]
    for i, url in enumerate(repos):
        base.append(f"--repofrompath=xcat-{i},{url}")
    steps: list[Step] = []
    for kind, passes in (("pkglist", spec.passes), ("otherpkgs", spec.otherpasses)):
        for i, p in enumerate(passes, 1):
            if p.install:
                steps.append(Step(f"{kind} pass {i}: {len(p.install)} packages",
                                  base + ["install", *p.install], len(p.install),
                                  _env(p.env)))
            if p.remove:
                steps.append(Step(f"{kind} pass {i} removals", base + ["remove", *p.remove],
                                  env=_env(p.env)))
    return steps


def _env(settings: Sequence[str]) -> dict[str, str]:
    return dict(s.split("=", 1) for s in settings)


# ---- running steps ---------------------------------------------------------------------------
def private(argv: list[str]) -> list[str]:
    """``argv`` in its own mount namespace: its mounts end with it, crash or not."""
    return ["unshare", "--mount", "--propagation", "private", "--", *argv]


def run_step(step: Step, log) -> Iterator[str]:
    """Run one step, its output into ``log``, yielding a progress line at each stage (stage
    markers in the output switch it). Raises ImageBuildError on a non-zero exit, naming the
    stage; closing the generator stops the step's processes."""
    stage = step.stage
    yield stage
    log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {stage}: {shlex.join(step.argv)}\n")
    log.flush()
    env = {**os.environ, **(step.env or {}), "DEBIAN_FRONTEND": "noninteractive",
           "LC_ALL": "C.UTF-8"}
    proc = subprocess.Popen(step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    unpacked = 0
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            if line.startswith(_STAGE):
                if unpacked:
                    yield f"{stage}: {unpacked} packages unpacked"
                stage, unpacked = line[len(_STAGE):].strip(), 0
                yield stage
                log.write(f"==== {time.strftime('%H:%M:%S')} {stage}\n")
                continue
            if line.startswith("Unpacking ") or line.lstrip().startswith("Installing  "):
                unpacked += 1
            log.write(line)
        rc = proc.wait()
    except BaseException:  # cancelled (generator closed), interrupted: stop the build
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        log.flush()
    if unpacked:
        yield f"{stage}: {unpacked} packages unpacked"
    if rc != 0:
        raise ImageBuildError(f"stage '{stage}' failed (exit status {rc})")


# ---- locking, scratch, publishing ------------------------------------------------------------
@contextlib.contextmanager
def image_lock(rootimgdir: Path, name: str) -> Iterator[None]:
    """Hold the image's lock for the build; a second genimage is refused at once."""
    rootimgdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(rootimgdir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise ImageBusy(f"osimage {name} is being built by another genimage (pid "
                            f"{holder}): wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def remove_stale(rootimgdir: Path) -> None:
    """Scratch trees of builds that died (called with the lock held, so none is running)."""
    for d in rootimgdir.glob(".build-*"):
        shutil.rmtree(d, ignore_errors=True)
    for d in rootimgdir.glob(".trash-*"):
        shutil.rmtree(d, ignore_errors=True)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False where unsupported."""
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def publish(build: Path, rootimgdir: Path) -> None:
    """Make ``build/rootimg`` the published ``rootimgdir/rootimg``, the published one
    ``rootimg.previous`` (the older previous is deleted), and the same for the files beside
    it (kernel, initrd-stateless.gz).

    Crash points: (1) before the exchange: the published image is untouched, the scratch
    is removed by the next genimage; (2) after the exchange, the new tree is published and
    the old one sits in the scratch directory: the next genimage removes it (rollback to it
    is lost, nothing else); (3) after rootimg.previous is replaced: done but for the kernel
    and initrd, each replaced by one rename (a crash between leaves the new tree with the
    old kernel: run genimage again). Without renameat2 (an old kernel or a filesystem that
    lacks it) the published tree is renamed to rootimg.previous first, so a crash between the
    two renames leaves no rootimg, and rootimg.previous is the last good image."""
    new, cur, prev = build / "rootimg", rootimgdir / "rootimg", rootimgdir / "rootimg.previous"
    if cur.exists() or cur.is_symlink():
        if _exchange(new, cur):
            old = new  # the exchange left the old tree where the new one was
        else:
            _retire(prev, rootimgdir)
            os.rename(cur, prev)
            os.rename(new, cur)
            old = None
        if old is not None:
            _retire(prev, rootimgdir)
            os.rename(old, prev)
    else:
        os.rename(new, cur)
    for f in sorted(build.iterdir()):
        if f.is_file():
            target = rootimgdir / f.name
            if target.is_file():
                tmp = rootimgdir / f".{f.name}.previous.tmp"
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                os.link(target, tmp)
                os.replace(tmp, rootimgdir / f"{f.name}.previous")
            os.replace(f, target)
    _fsync_dir(rootimgdir)


def _retire(path: Path, rootimgdir: Path) -> None:
    """Move ``path`` out of the way in one rename, then delete it."""
    if path.exists() or path.is_symlink():
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=rootimgdir))
        os.rename(path, trash / "old")
        shutil.rmtree(trash, ignore_errors=True)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- the kernel beside the image ---------------------------------------------------------------
def find_kernel(rootimg: Path, kernelver: str = "") -> Path | None:
    """The image's kernel: /boot/vmlinuz-<kernelver> when given, else the newest."""
    boot = rootimg / "boot"
    if kernelver:
        k = boot / f"vmlinuz-{kernelver}"
        if not k.is_file():
            found = ", ".join(sorted(p.name.removeprefix("vmlinuz-")
                                     for p in boot.glob("vmlinuz-*"))) or "none"
            raise ImageBuildError(f"kernel version {kernelver} is not in the image "
                                  f"(/boot has: {found})")
        return k
    kernels = sorted(boot.glob("vmlinuz-*"), key=lambda p: _version_key(p.name[8:]))
    return kernels[-1] if kernels else None


def _version_key(v: str) -> list:
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in re.split(r"[.\-+~]", v)]


# ---- the cache of finished trees ----------------------------------------------------------
def cached_tree(cache: Path, digest: str) -> Path:
    return cache / "images" / f"{digest}.tar.zst"


def save_tree(rootimg: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}")
    subprocess.run(["tar", "--xattrs", "--acls", "--numeric-owner", "-I", "zstd -1 -T0",
                    "-cf", str(tmp), "-C", str(rootimg), "."], check=True,
                   capture_output=True)
    os.replace(tmp, archive)


def restore_tree(archive: Path, rootimg: Path) -> None:
    rootimg.mkdir(mode=0o755)
    subprocess.run(["tar", "--xattrs", "--acls", "--numeric-owner", "-I", "zstd -T0",
                    "-xpf", str(archive), "-C", str(rootimg)], check=True, capture_output=True)


# ---- the whole build -------------------------------------------------------------------------
@dataclass
class BuildResult:
    rootimg: Path
    kernel: Path | None
    initrd: Path | None
    digest: str
    cached: bool
    notes: list[str] = field(default_factory=list)


def build_image(spec: ImageSpec, *, cache: Path | None = None,
                initrd_builder: Callable[[Path, Path], object] | None = None,
                image_hooks: tuple[tuple[str, Callable[[Path], object]], ...] = ()
                ) -> Generator[str, None, BuildResult]:
    """Build ``spec`` aside and publish it (see the module docstring), yielding a progress
    line per stage and returning the BuildResult; ``initrd_builder(rootimg, out)`` makes the
    diskless initrd; each ``(stage, hook)`` of ``image_hooks`` is called with the image root
    after the packages and postinstall scripts (and after the cache), before the kernel."""
    if spec.family not in ("debian", "rhel"):
        raise ImageBuildError(f"genimage cannot build {spec.osvers} images (Debian, Ubuntu "
                              "and the RHEL family only)")
    if spec.family == "debian" and not spec.suite:
        raise ImageBuildError(f"no Debian/Ubuntu release code name known for {spec.osvers}")
    groups = group_names((*spec.passes, *spec.otherpasses))
    if spec.family == "debian" and groups:
        raise ImageBuildError(f"{', '.join(groups)}: {spec.osvers} has no package groups; "
                              "list the packages (or a task-* metapackage) instead")
    rootimgdir = spec.rootimgdir
    with image_lock(rootimgdir, spec.name):
        remove_stale(rootimgdir)
        log_path = rootimgdir / LOG_NAME
        build = Path(tempfile.mkdtemp(prefix=".build-", dir=rootimgdir))
        try:
            with open(log_path, "w", encoding="utf-8") as log:
                result = yield from _build(spec, build, log, cache, initrd_builder,
                                           image_hooks)
            yield "publishing"
            publish(build, rootimgdir)
            result.rootimg = rootimgdir / "rootimg"
            if result.kernel is not None:
                result.kernel = rootimgdir / "kernel"
            if result.initrd is not None:
                result.initrd = rootimgdir / result.initrd.name
            _write_spec(spec, rootimgdir, result)
            return result
        except ImageBuildError as exc:
            raise ImageBuildError(f"{exc}; the published image is unchanged; see "
                                  f"{log_path}") from None
        except OSError as exc:
            raise ImageBuildError(f"{exc.filename or ''}: {exc.strerror or exc}; the "
                                  f"published image is unchanged; see {log_path}") from None
        finally:
            shutil.rmtree(build, ignore_errors=True)


@contextlib.contextmanager
def _cache_lock(debcache: Path | None) -> Iterator[None]:
    """Hold the package cache while one build's apt uses it (builds of other images that
    share PYXCAT_IMAGE_CACHE wait here rather than fail on apt's lock)."""
    if debcache is None:
        yield
        return
    with open(debcache.parent / f".{debcache.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _build(spec: ImageSpec, build: Path, log, cache: Path | None,
           initrd_builder, image_hooks=()) -> Generator[str, None, BuildResult]:
    rootimg = build / "rootimg"
    digest = spec.digest()
    archive = cached_tree(cache, digest) if cache is not None else None
    cached = archive is not None and archive.is_file()
    if cached:
        yield f"restoring the image from the cache ({digest[:12]})"
        log.write(f"==== restored from {archive}\n")
        restore_tree(archive, rootimg)
    elif spec.family == "debian":
        debcache = None
        if cache is not None:
            debcache = cache / "debs" / f"{spec.suite}-{spec.debarch}"
            debcache.mkdir(parents=True, exist_ok=True)
        first = spec.passes[0].install if spec.passes else ()
        with _cache_lock(debcache):  # apt locks the archives: one build at a time uses them
            yield from run_step(Step(f"bootstrap {spec.suite} ({len(first)} packages in pass 1)",
                                     private(mmdebstrap_argv(spec, rootimg, debcache)),
                                     env={**_env(spec.passes[0].env if spec.passes else ()),
                                          **spec.environment()}), log)
    else:
        rootimg.mkdir(mode=0o755)
        for step in dnf_steps(spec, rootimg):
            yield from run_step(Step(step.stage, private(step.argv), step.packages,
                                     step.env), log)
        shutil.rmtree(rootimg / "var" / "cache" / "dnf", ignore_errors=True)
        for script in spec.postinstall:
            yield from run_step(Step(f"postinstall {script.name}",
                          private([str(script), str(rootimg), spec.osvers, spec.arch,
                                   spec.profile]), env=spec.environment()), log)
    if archive is not None and not cached:
        yield "saving the image in the cache"
        save_tree(rootimg, archive)
    for stage, hook in image_hooks:
        yield stage
        try:
            hook(rootimg)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ImageBuildError(f"stage '{stage}' failed: {exc}") from None
    result = BuildResult(rootimg, None, None, digest, cached)
    kernel = find_kernel(rootimg, spec.kernelver)
    if kernel is None:
        result.notes.append("the image has no kernel (/boot/vmlinuz-*): none put beside it "
                            "(add the kernel package to the pkglist)")
    else:
        shutil.copy2(kernel, build / "kernel")
        result.kernel = build / "kernel"
        yield f"kernel {kernel.name.removeprefix('vmlinuz-')}"
    if initrd_builder is None:
        result.notes.append("no diskless initrd builder is installed "
                            "(xcatd.netboot.diskless): no initrd written")
    elif kernel is not None:
        yield "initrd"
        out = build / "initrd-stateless.gz"
        drivers = [d.strip() for d in spec.netdrivers.split(",") if d.strip()] or None
        try:
            initrd_builder(rootimg, out, kernelver=kernel.name.removeprefix("vmlinuz-"),
                           netdrivers=drivers)
        except (OSError, ValueError, RuntimeError) as exc:  # DisklessError among them
            raise ImageBuildError(f"stage 'initrd' failed: {exc}") from None
        result.initrd = out
    return result


def _write_spec(spec: ImageSpec, rootimgdir: Path, result: BuildResult) -> None:
    """genimage.json beside the image: what it was built from (packimage's manifest
    quotes the digest)."""
    data = {"imagename": spec.name, "osvers": spec.osvers, "arch": spec.arch,
            "profile": spec.profile, "digest": result.digest,
            "passes": [{"install": list(p.install), "remove": list(p.remove)}
                       for p in spec.passes],
            "otherpkgs": [{"install": list(p.install), "remove": list(p.remove)}
                          for p in spec.otherpasses],
            "sources": list(spec.mirrors) + list(spec.otherrepos),
            "postinstall": [str(p) for p in spec.postinstall],
            "kernel": result.kernel.name if result.kernel else None,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = rootimgdir / f".{SPEC_NAME}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, rootimgdir / SPEC_NAME)
