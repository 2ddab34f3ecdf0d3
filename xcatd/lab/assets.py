"""The lab's boot assets: a stock Debian kernel and the few modules the test initrd loads.

The machines we test on have no /boot of their own, so ``make lab-assets`` (which runs this file
as a script, with the system Python: it needs only the standard library, apt-get and dpkg)
downloads the package behind ``linux-image-amd64``, unpacks it, keeps ``vmlinuz`` and the module
closure of ``INITRD_MODULES``, and deletes the rest (~70 MB in, ~12 MB kept). It skips the work
when the assets are already there. ``PYXCAT_LAB_ASSETS`` points the lab at another directory.

    >>> from xcatd.lab import assets
    >>> assets.kernel()                     # doctest: +SKIP
    PosixPath('/work/main/.cache/lab/vmlinuz')
    >>> [p.stem for p in assets.load_order(assets.modules_dir())][-1]  # doctest: +SKIP
    'overlay'
"""
from __future__ import annotations

import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = "PYXCAT_LAB_ASSETS"
META_PACKAGE = "linux-image-amd64"
# Load order matters only through dependencies (load_order sorts them); the list is the facts'
# driver chain for virtio-net, e1000 for the other NIC model, and what diskless images mount.
INITRD_MODULES = ("button", "failover", "net_failover", "virtio_ring", "virtio",
                  "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_net",
                  "e1000", "loop", "squashfs", "overlay")
_DEPENDS = re.compile(rb"(?:^|\x00)depends=([^\x00]*)\x00")


class AssetsMissing(RuntimeError):
    """The kernel or its modules are not there; the message says how to get them."""


def assets_dir() -> Path:
    """Where the assets live: $PYXCAT_LAB_ASSETS, else .cache/lab in the source tree."""
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".cache" / "lab"


def kernel() -> Path:
    """The lab kernel (bzImage); raises AssetsMissing when `make lab-assets` has not run."""
    path = assets_dir() / "vmlinuz"
    if not path.is_file():
        raise AssetsMissing(f"lab kernel {path} is missing: run `make lab-assets` "
                            f"(or set {ENV} to a directory holding vmlinuz and modules/)")
    return path


def modules_dir() -> Path:
    """The directory of the initrd's kernel modules (flat, one ``<name>.ko`` each)."""
    path = assets_dir() / "modules"
    if not (path / "virtio_net.ko").is_file():
        raise AssetsMissing(f"lab kernel modules in {path} are missing: run `make lab-assets` "
                            f"(or set {ENV} to a directory holding vmlinuz and modules/)")
    return path


def kernel_version() -> str:
    """The `uname -r` of the lab kernel, as recorded when it was fetched."""
    kernel()
    return (assets_dir() / "kernel-version").read_text().strip()


def module_depends(ko: Path) -> list[str]:
    """The ``depends=`` of a module's .modinfo (what insmod needs loaded first)."""
    data = ko.read_bytes()
    if ko.name.endswith(".xz"):
        data = lzma.decompress(data)
    m = _DEPENDS.search(data)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def load_order(mod_dir: Path) -> list[Path]:
    """Every ``*.ko`` in ``mod_dir``, each after the modules it depends on (insmod order)."""
    rank = {name: i for i, name in enumerate(INITRD_MODULES)}  # the facts' order, as checked
    mods = {_name(p): p for p in sorted(mod_dir.glob("*.ko"),
                                        key=lambda p: (rank.get(_name(p), len(rank)), p.name))}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in seen or name not in mods:  # built in, or not ours to load
            return
        if name in trail:
            raise ValueError(f"module dependency cycle: {' -> '.join(trail + (name,))}")
        for dep in module_depends(mods[name]):
            visit(dep.replace("-", "_"), trail + (name,))
        seen.add(name)
        order.append(mods[name])

    for name in mods:
        visit(name, ())
    return order


def fetch(dest: Path | None = None, modules: tuple[str, ...] = INITRD_MODULES) -> Path:
    """Download and trim the Debian kernel into ``dest`` unless it is already there."""
    dest = Path(dest) if dest else assets_dir()
    if (dest / "vmlinuz").is_file() and (dest / "modules" / "virtio_net.ko").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    package = _kernel_package()
    with tempfile.TemporaryDirectory(prefix="kernel-", dir=dest) as tmp:
        work = Path(tmp)
        _run(["apt-get", "-q", "download", package], cwd=work)
        deb = next(work.glob("*.deb"), None)
        if deb is None:
            raise RuntimeError(f"apt-get download {package} left no .deb in {work}")
        _run(["dpkg", "-x", str(deb), str(work / "root")])
        deb.unlink()  # 70 MB we no longer need
        version = package.removeprefix("linux-image-")
        _install(work / "root", version, modules, dest)
    return dest


def _kernel_package() -> str:
    """The versioned package behind the meta-package, e.g. linux-image-6.1.0-56-amd64
    (a fresh machine may have no package lists yet: root updates them once and asks again)."""
    argv = ["apt-cache", "depends", META_PACKAGE]
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    if p.returncode and os.geteuid() == 0:
        _run(["apt-get", "update", "-qq"])
    out = _run(argv).stdout if p.returncode else p.stdout
    m = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if not m:
        raise RuntimeError(f"apt-cache depends {META_PACKAGE} names no kernel package:\n{out}")
    return m.group(1)


def _install(root: Path, version: str, wanted: tuple[str, ...], dest: Path) -> None:
    """Copy vmlinuz and the closure of ``wanted`` from an unpacked package; vmlinuz last,
    so its presence says the set is complete."""
    tree = root / "lib" / "modules" / version
    found = {_name(p): p for p in tree.rglob("*.ko*")}
    keep: set[str] = set()
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in found:
            builtin = (tree / "modules.builtin").read_text()
            if re.search(rf"/{re.escape(name)}\.ko$", builtin, re.M):
                continue  # built into this kernel: nothing to load
            raise RuntimeError(f"module {name} is neither in {tree} nor built in")
        keep.add(name)
        todo += [d.replace("-", "_") for d in module_depends(found[name])]
    mods = dest / "modules"
    shutil.rmtree(mods, ignore_errors=True)
    mods.mkdir()
    for name in sorted(keep):
        src = found[name]
        if src.name.endswith(".ko.xz"):
            (mods / f"{name}.ko").write_bytes(lzma.decompress(src.read_bytes()))
        elif src.name.endswith(".ko"):
            shutil.copyfile(src, mods / f"{name}.ko")
        else:
            raise RuntimeError(f"cannot unpack module {src.name} (only .ko and .ko.xz)")
    (dest / "kernel-version").write_text(version + "\n")
    shutil.copyfile(root / "boot" / f"vmlinuz-{version}", dest / "vmlinuz.tmp")
    os.replace(dest / "vmlinuz.tmp", dest / "vmlinuz")


def _name(path: Path) -> str:
    return path.name.split(".ko")[0].replace("-", "_")


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if p.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def main() -> int:
    """`make lab-assets`: fetch unless present, then say where the assets are."""
    try:
        dest = fetch()
    except (RuntimeError, OSError) as exc:
        print(f"lab-assets: {exc}", file=sys.stderr)
        return 1
    print(f"lab-assets: {dest / 'vmlinuz'} ({(dest / 'kernel-version').read_text().strip()}), "
          f"{len(list((dest / 'modules').glob('*.ko')))} modules in {dest / 'modules'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
