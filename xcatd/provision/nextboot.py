"""What each node does the next time it boots from the network: nodeset's engine.

``nodeset <noderange> osimage[=<image>] | boot | shell | standby | runcmd=<cmd> |
runimage=<url> | shutdown | offline | next | stat``, and comma chains
(``osimage=img,runimage=url``): the first state is set now, the rest wait in chain.currchain
for ``nodeset next`` (and for the node's own ``installed`` report). chain.currstate holds the
state in xCAT's words (``install rocky9.4-x86_64-compute``, ``boot``), which is also what the
command prints and what ``nodeset stat`` reads back from the boot files.

For an install osimage the work is done in bulk: one resolve for every node, the install
files rendered and validated (xcatd.provision.installfiles), the kernel and initrd copied once per
osimage into ``<tftpdir>/xcat/osimage/<image>/`` (only when they changed), each node's boot
files written (xcatd.netboot.loaders) only where they changed, one database transaction, then the
DHCP server told about the nodes (xcatd.netconf.dhcp.update_nodes; not when site.dhcpsetup=n).
A node whose files cannot be made gets one error line and keeps its previous boot files,
install file, chain and token; the other nodes go on. To keep that promise the install files
are written under temporary (hidden, never served) names, the boot files are written with
the old ones remembered, and only after the database commit are the install files renamed
into place; a failed boot-file write puts the node's old boot files back, a failed commit
puts back every node's.

A comma chain is checked whole before anything is set (every state word known, every
osimage it names defined for install), so that the chain can later be followed by
``nodeset next`` and by the node's own ``installed`` report.

The installer's kernel and initrd are copied only from a regular file inside
<installdir>: a symlink, or a path whose real location is outside the tree (a crafted
ISO), fails that osimage's nodes rather than copying, say, /etc/shadow into the TFTP tree.

Each node set to boot a kernel of ours gets a fresh random callback token: it goes into the
node's install file and onto its kernel command line (``xcatcallback=<url> xcattoken=<t>``)
and only its SHA-256 is stored (bootstate.tokenhash), so the database never holds it and
bootparams.kcmdline is stored without it. xcatd.fronts.nodeapi checks it when the node reports.
"""
from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat as stat_mod
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import jinja2

from xcatd.base.files import locked, write_atomic
from xcatd.base.noderange import natural_key
from xcatd.base.request import Response, XcatError
from xcatd.base.site import SiteValues
from xcatd.base.templating import environment
from xcatd.db.cluster import Cluster
from xcatd.db.netinfo import parse_macs
from xcatd.netboot import loaders
from xcatd.netboot.loaders import BootTarget, NodeBoot
from xcatd.netconf import dhcp
from xcatd.provision import installfiles, osfamily
from xcatd.provision.media import inside_tree
from xcatd.provision.statelite import node_plans

USAGE = ("Usage: nodeset <noderange> [shell|boot|runcmd=bmcsetup|osimage[=<imagename>]|"
         "offline|shutdown|stat|next]")
GENESIS_STATES = ("shell", "standby", "shutdown")
#: noderes.netboot values xCAT writes boot files for and pyxcat does not (POWER firmware)
XCAT_ONLY_NETBOOTS = ("petitboot", "yaboot")
#: xCAT's old state words: the node's own osimage (nodetype.provmethod)
LEGACY_STATES = ("install", "netboot", "statelite")
GENESIS_PREFIXES = ("runcmd=", "runimage=")
#: chain.currstate values a boot-script fetch counts as an install boot.
INSTALL_PREFIX = "install"
#: provmethod of diskless images, and the first word of their chain state
NETBOOT = "netboot"
STATELITE = "statelite"
#: osimage.rootfstype values a statelite image boots with (the packed image into RAM)
LITE_ROOTFS = ("", "ramdisk")
#: What packimage writes beside a diskless image (xcatd.provision.packimage)
MANIFEST = "manifest.json"

ATTRS = {
    "nodetype": ["os", "arch", "profile", "provmethod"],
    "noderes": ["netboot", "tftpdir", "tftpserver", "xcatmaster", "installnic", "primarynic",
                "next_osimage"],
    "chain": ["currstate", "currchain", "chain"],
    "hosts": ["ip"],
    "mac": ["mac"],
    "nodehm": ["serialport", "serialspeed"],
    "bootparams": ["addkcmdline"],
}


def token_hash(token: str) -> str:
    """What the database keeps of a callback token."""
    return hashlib.sha256(token.encode()).hexdigest()


def now_text() -> str:
    """nodelist.statustime as xCAT writes it."""
    return datetime.datetime.now().strftime("%m-%d-%Y %H:%M:%S")


def dhcp_setup(site: SiteValues) -> bool:
    """site.dhcpsetup=n (or 0, no) keeps nodeset away from the DHCP server, as in xCAT."""
    return site.flag("dhcpsetup", True)


# ---- what one node ends up with -------------------------------------------------------------
@dataclass
class Change:
    """Everything nodeset changes for one node; written only when the whole plan for the
    node was made without an error."""

    node: str
    currstate: str
    currchain: str | None = None                 # None: leave chain.currchain alone
    target: BootTarget | None = None              # None: no boot files (offline)
    token: str | None = None                      # None: the node's token is retired
    bootparams: dict[str, str | None] = field(default_factory=dict)
    nodetype: dict[str, str | None] = field(default_factory=dict)
    noderes: dict[str, str | None] = field(default_factory=dict)
    autoinst: dict[str, str] = field(default_factory=dict)  # relpath under autoinst: text


@dataclass
class Outcome:
    changes: dict[str, Change] = field(default_factory=dict)
    errors: list[Response] = field(default_factory=list)
    warnings: list[Response] = field(default_factory=list)

    def fail(self, node: str, message: str) -> None:
        self.changes.pop(node, None)
        self.errors.append(Response(node=node, error=message, errorcode=1))


@dataclass
class Staged:
    """A node's files written but not yet live: its install files under temporary names
    (renamed into place after the commit) and what its boot files held before (put back
    if the node or the whole run fails)."""

    temps: list[tuple[Path, str]] = field(default_factory=list)  # (temporary file, rel)
    before: list[tuple[Path, str, bytes | str | None, int]] = field(default_factory=list)


def url_host(addr: str) -> str:
    """An address as the host part of a URL (an IPv6 address in brackets)."""
    return f"[{addr}]" if ":" in addr and not addr.startswith("[") else addr


def split_chain(text: str | None) -> list[str]:
    return [s.strip() for s in re.split(r"[,;]", text or "") if s.strip()]


# ---- the run ---------------------------------------------------------------------------------
class NodesetRun:
    """One nodeset over a set of nodes: their attributes read once, then planned, written
    and committed together."""

    def __init__(self, ctx: Cluster, names: list[str]) -> None:
        self.ctx = ctx
        self.site = ctx.site
        self.names = names
        self.values = ctx.db.resolve(names, ATTRS, groups=ctx.node_groups_if_loaded(names))
        self.installdir = ctx.installdir
        self.boot_env = environment(ctx.paths, self.site)  # templates/boot, site's own first
        self.httpport = str(self.site.httpport())
        self.master = self.site.get("master") or "127.0.0.1"

    def v(self, node: str, table: str, col: str) -> str | None:
        return self.values[node].get((table, col))

    def tftpdir(self, node: str) -> Path:
        own = self.v(node, "noderes", "tftpdir")
        return self.ctx.paths.under(own) if own else self.ctx.tftpdir

    def server(self, node: str) -> str:
        """The address the node reaches this server at (HTTP, callbacks)."""
        return self.v(node, "noderes", "xcatmaster") or (
            self.ctx.server_for(self.v(node, "hosts", "ip")) if self.ctx.servicenode
            else self.master)

    def netboot(self, node: str) -> str:
        return (self.v(node, "noderes", "netboot") or "xnba").lower()

    def node_boot(self, node: str) -> NodeBoot:
        nb = self.netboot(node)
        server = self.server(node)
        if nb.startswith("grub2"):
            server = self.v(node, "noderes", "tftpserver") or server
        elif nb == "xnba":
            server = url_host(server)
        return NodeBoot(node, nb, self.tftpdir(node), server, self.httpport,
                        macs=[m for m, _ in parse_macs(self.v(node, "mac", "mac"))],
                        ip=self.v(node, "hosts", "ip"), arch=self.v(node, "nodetype", "arch"))

    def callback_url(self, node: str) -> str:
        return f"http://{url_host(self.server(node))}:{self.httpport}/xcat/callback/{node}"

    def console(self, node: str) -> str:
        port = self.v(node, "nodehm", "serialport")
        if port is None:
            return ""
        speed = self.v(node, "nodehm", "serialspeed")
        return f"console=tty0 console=ttyS{port}" + (f",{speed}" if speed else "")

    # ---- planning ---------------------------------------------------------------------------
    def plan(self, wanted: dict[str, tuple[str, str | None]]) -> Outcome:
        """``wanted`` maps each node to (state, rest of its chain or None). Errors that
        concern the whole request (a bad osimage, an unknown state) raise XcatError before
        anything is planned; a node's own problem is that node's error line."""
        out = Outcome()
        by_state: dict[str, list[str]] = defaultdict(list)
        for node, (state, _rest) in wanted.items():
            by_state[state].append(node)
        for state in by_state:
            check_state(state)
        skipped = set()
        for node, (state, _rest) in wanted.items():
            nb = self.netboot(node)
            if nb in loaders.NETBOOTS:
                continue
            if nb in XCAT_ONLY_NETBOOTS:  # xCAT's warning; the node is left as it was
                skipped.add(node)
                out.warnings.append(Response(node=node, warning=(
                    f"{nb} might be invalid when provisioning {state.split('=', 1)[-1]},"
                    f"valid options: \"{','.join(loaders.NETBOOTS)}\". For more details see "
                    "the 'netboot' description in the output of \"tabdump -d noderes\". "
                    f"{node} is left as it was (pyxcat does not write {nb} boot files)")))
            else:
                out.fail(node, str(loaders.UnknownLoader(nb)))
        bad = {e.node for e in out.errors} | skipped
        images = self._images(by_state, bad)
        for state, nodes in by_state.items():
            nodes = [n for n in nodes if n not in bad]
            if state == "osimage" or state.startswith("osimage="):
                for image, members in images.items():
                    todo = [n for n in nodes if n in members]
                    method = self.osimages[image].get("provmethod")
                    if todo and method in (NETBOOT, STATELITE):
                        self._plan_netboot(image, todo, out, method)
                    elif todo:
                        self._plan_install(image, todo, out)
            elif state == "boot":
                for n in nodes:
                    out.changes[n] = Change(n, "boot", target=BootTarget("boot"))
            elif state == "offline":
                for n in nodes:
                    out.changes[n] = Change(n, "offline")
            else:
                self._plan_genesis(state, nodes, out)
        for node, (_state, rest) in wanted.items():
            c = out.changes.get(node)
            if c is not None and rest is not None:
                c.currchain = rest
        return out

    def _images(self, by_state: dict[str, list[str]], bad: set[str]) -> dict[str, set[str]]:
        """{osimage: nodes} for the osimage states, every image checked first: a bad one
        fails the whole request and changes nothing."""
        images: dict[str, set[str]] = defaultdict(set)
        missing = []
        for state, nodes in by_state.items():
            if state.startswith("osimage="):
                images[state.split("=", 1)[1].strip()].update(n for n in nodes if n not in bad)
            elif state == "osimage":
                for n in nodes:
                    image = self._image_of(n)
                    if image:
                        images[image].add(n)
                    elif n not in bad:
                        missing.append(n)
        if missing:
            raise _no_image(missing)
        self.osimages, self.linuximages = self.image_rows(images)
        return images

    def image_rows(self, images: Iterable[str]) -> tuple[dict[str, dict], dict[str, dict]]:
        """(osimage rows, linuximage rows) of ``images``, each checked to be one nodeset
        can install; the first bad one raises XcatError naming it."""
        images = sorted(set(images))
        if "" in images:
            raise XcatError("osimage= needs an image name")
        rows = {r["imagename"]: r for r in self.ctx.db.rows("osimage", keys=images)}
        for image in images:
            row = rows.get(image)
            if row is None:
                raise XcatError(f"Cannot find the OS image {image} on the osimage table.")
            pm = row.get("provmethod")
            if not pm:
                raise XcatError(f"osimage.provmethod for {image} must be set.")
            if pm not in ("install", NETBOOT, STATELITE):
                raise XcatError(f"osimage {image}: provmethod={pm} is not supported by nodeset "
                                "yet (install, netboot and statelite are)")
            rootfs = (row.get("rootfstype") or "").strip()
            if pm == STATELITE and rootfs not in LITE_ROOTFS:
                raise XcatError(f"osimage {image}: rootfstype={rootfs} is not supported: a "
                                "statelite node fetches its packed image into RAM (set "
                                "osimage.rootfstype=ramdisk, then liteimg); the root over "
                                "NFS is not built")
            for attr in ("osvers", "osarch", "profile"):
                if not row.get(attr):
                    raise XcatError(f"osimage {image}: {attr} is not set")
        linux = {r["imagename"]: r for r in self.ctx.db.rows("linuximage", keys=images)}
        return rows, linux

    def check_chain(self, states: list[str]) -> None:
        """Refuse a chain that could not be followed, before anything is set: every state
        word known, every osimage it names installable, and a bare ``osimage`` after the
        first state only for nodes that will know their image by then."""
        named: list[str] = []
        for i, state in enumerate(states):
            check_state(state)
            if state.startswith("osimage="):
                named.append(state.split("=", 1)[1].strip())
            elif state == "osimage" and i > 0 and not named:
                missing = [n for n in self.names if not self._image_of(n)]
                if missing:
                    raise _no_image(missing)
        if named:
            self.image_rows(named)

    def legacy_states(self, word: str, rest: str | None
                      ) -> tuple[dict[str, tuple[str, str | None]], list[Response]]:
        """xCAT's ``nodeset <nr> install|netboot|statelite``: each node's own osimage (its
        nodetype.provmethod, else noderes.next_osimage), which must be an image of that
        kind; a node without one gets xCAT's line saying to name the image."""
        wanted: dict[str, tuple[str, str | None]] = {}
        errors: list[Response] = []
        for node in self.names:
            image = self._image_of(node)
            if image:
                wanted[node] = (f"osimage={image}", rest)
            else:
                errors.append(Response(node=node, errorcode=1, error=(
                    'The options "install", "netboot", and "statelite" have been deprecated, '
                    'use "osimage=<osimage_name>" instead (nodetype.provmethod names no '
                    "osimage).")))
        images = sorted({s.split("=", 1)[1] for s, _ in wanted.values()})
        rows = {r["imagename"]: r for r in self.ctx.db.rows("osimage", keys=images)}
        for node, (state, _rest) in list(wanted.items()):
            image = state.split("=", 1)[1]
            pm = (rows.get(image) or {}).get("provmethod")
            why = (f"Cannot find the OS image {image} on the osimage table." if image not in rows
                   else None if pm == word else
                   f"its osimage {image} (nodetype.provmethod) is {_a(pm or 'provmethod-less')}"
                   f" image, not {_a(word)} one: use nodeset {node} osimage=<image>")
            if why:
                del wanted[node]
                errors.append(Response(node=node, error=why, errorcode=1))
        return wanted, errors

    def _image_of(self, node: str) -> str | None:
        """``nodeset osimage`` without a name: nodetype.provmethod when it names an
        osimage (xCAT), else noderes.next_osimage."""
        pm = self.v(node, "nodetype", "provmethod")
        if pm and pm not in ("install", "netboot", "statelite"):
            return pm
        return self.v(node, "noderes", "next_osimage")

    def _plan_install(self, image: str, nodes: list[str], out: Outcome) -> None:
        row = self.osimages[image]
        osvers, arch, profile = row["osvers"], row["osarch"], row["profile"]
        tokens = {n: secrets.token_urlsafe(32) for n in nodes}
        extra = {n: {"callback_url": self.callback_url(n), "callback_token": tokens[n]}
                 for n in nodes}
        rendered = installfiles.render_install_files(self.ctx.db, self.ctx.paths, self.site,
                                                     nodes, image, extra)
        for node in nodes:
            if node in rendered.errors:
                out.fail(node, rendered.errors[node])
        ok = self._validate(installfiles, rendered,
                            [n for n in nodes if n in rendered.files
                             and n not in rendered.errors], extra)
        for node, msg in ok.items():
            if msg:
                out.fail(node, msg)
        ok = [n for n, msg in ok.items() if not msg]
        if not ok:
            return
        boot = self._kernel(image, osvers, arch, ok, out)
        if boot is None:
            return
        kernel, initrd = boot
        addk = " ".join(split_words(self.linuximages.get(image, {}).get("addkcmdline")))
        state = f"install {osvers}-{arch}-{profile}"
        for node in ok:
            b = rendered.boot.get(node) or {}
            try:
                kcmd = installfiles.install_kcmdline(
                    rendered.kind, node, b["file_url"], b["repo_url"], b.get("nic") or None,
                    loader=loaders.loader(self.netboot(node)).cmdline)
            except (XcatError, KeyError) as exc:
                out.fail(node, f"cannot make its kernel command line: {exc}")
                continue
            kcmd = " ".join(p for p in (kcmd, self.console(node), addk,
                                        self.v(node, "bootparams", "addkcmdline") or "",
                                        f"xcatcallback={self.callback_url(node)}") if p)
            out.changes[node] = Change(
                node, state, currchain="boot",
                target=BootTarget(state, kernel, initrd, f"{kcmd} xcattoken={tokens[node]}"),
                token=tokens[node],
                bootparams={"kernel": kernel, "initrd": initrd, "kcmdline": kcmd},
                nodetype={"provmethod": image, "os": osvers, "arch": arch, "profile": profile},
                noderes={"current_osimage": image},
                autoinst=rendered.files[node])

    def _plan_netboot(self, image: str, nodes: list[str], out: Outcome,
                      method: str = NETBOOT) -> None:
        """A diskless image (provmethod=netboot or statelite): its packed kernel and initrd
        into the TFTP roots, and a kernel command line naming the root image's URL and
        sha256 (from the image's manifest), the node, and the node's callback with a token
        of its own. The state stays ``netboot <image>`` (``statelite <image>``; its chain:
        the same image again): every boot netboots, and the token is kept for the reports
        of every boot (the initrd's ``netbooting``, systemd's ``booted``). A statelite node
        also gets ``xcat.statelite=<URL>`` where its initrd fetches its plan (what to mount
        and place), checked here for each node first."""
        row, linux = self.osimages[image], self.linuximages.get(image, {})
        osvers, arch, profile = row["osvers"], row["osarch"], row["profile"]
        try:
            packed = diskless_image(self.installdir, image, osvers, arch, profile,
                                    linux.get("rootimgdir"), self.ctx.paths)
        except XcatError as exc:
            for n in nodes:
                out.fail(n, str(exc))
            return
        dest_rel = f"xcat/osimage/{image}"
        for tftpdir in sorted({self.tftpdir(n) for n in nodes}):
            try:
                for src in (packed.kernel, packed.initrd):
                    copy_if_changed(src, tftpdir / dest_rel / src.name)
            except OSError as exc:
                for n in nodes:
                    out.fail(n, f"osimage {image}: cannot copy its kernel/initrd "
                                f"({exc.strerror or exc}: {exc.filename}); run packimage")
                return
        kernel, initrd = f"{dest_rel}/{packed.kernel.name}", f"{dest_rel}/{packed.initrd.name}"
        rel = packed.rootimg.relative_to(self.installdir).as_posix()
        addk = " ".join(split_words(linux.get("addkcmdline")))
        state = f"{method} {image}"
        plans: dict = {}
        if method == STATELITE:
            try:
                plans = node_plans(self.ctx.db, nodes, image,
                                   {n: self.server(n) for n in nodes})
            except XcatError as exc:
                for n in nodes:
                    out.fail(n, str(exc))
                return
        for node in nodes:
            site = f"http://{url_host(self.server(node))}:{self.httpport}"
            url = f"{site}/install/{rel}"
            lite = ""
            if method == STATELITE:
                if isinstance(plans[node], XcatError):
                    out.fail(node, str(plans[node]))
                    continue
                lite = f"xcat.statelite={site}/xcat/statelite/{node}"
            kcmd = " ".join(p for p in (
                f"xcat.image={url}", f"xcat.sha256={packed.sha256}", f"xcat.node={node}", lite,
                self.console(node), addk, self.v(node, "bootparams", "addkcmdline") or "",
                f"xcatcallback={self.callback_url(node)}") if p)
            token = secrets.token_urlsafe(32)
            out.changes[node] = Change(  # nodeset next: the same image again
                node, state, currchain=f"osimage={image}",
                target=BootTarget(state, kernel, initrd, f"{kcmd} xcattoken={token}"),
                token=token, bootparams={"kernel": kernel, "initrd": initrd, "kcmdline": kcmd},
                nodetype={"provmethod": image, "os": osvers, "arch": arch, "profile": profile},
                noderes={"current_osimage": image})

    def _validate(self, installfiles, rendered, nodes: list[str],
                  extra: dict[str, dict[str, str]]) -> dict[str, str]:
        """{node: why its install files are bad, or ""}: a name that would leave
        <installdir>/autoinst, or what the install kind's own validator says.

        The validator runs once per distinct *shape* of install file, not once per node
        (pykickstart takes ~40 ms a file: 7 minutes for 10,000 nodes): a node's shape is its
        files with its own values (name, address, MACs, callback URL and token, each checked
        by installfiles as a valid instance of its kind) masked out. Two nodes of one shape
        differ only in those values, at the same places, so one validation stands for both.
        """
        result = {n: "" for n in nodes}
        shapes: dict[tuple, list[str]] = defaultdict(list)
        for node in nodes:
            files = rendered.files[node]
            bad = next((p for p in files if not _safe_rel(p)), None)
            if bad is not None:
                result[node] = f"install file name {bad!r} leaves <installdir>/autoinst"
                continue
            own = self._own_values(node, extra.get(node, {}))
            shapes[tuple(sorted((_mask(rel, own), _mask(text, own))
                                for rel, text in files.items()))].append(node)
        for members in shapes.values():
            first = members[0]
            for rel, text in rendered.files[first].items():
                try:
                    installfiles.validate(rendered.kind, text)
                except XcatError as exc:
                    for node in members:
                        name = node + rel[len(first):] if rel.startswith(first) else rel
                        result[node] = str(exc) if name == node else f"{name}: {exc}"
                    break
        return result

    def _own_values(self, node: str, extra: dict[str, str]) -> list[tuple[str, str]]:
        """(value, mask) pairs of what is the node's own in its install files, longest
        values first so that a URL is masked before the node name inside it."""
        vals = [(extra.get("callback_token") or "", "\x00T"),
                (extra.get("callback_url") or "", "\x00U"),
                (self.v(node, "hosts", "ip") or "", "\x00I"), (node, "\x00N")]
        vals += [(m, "\x00M") for m, _ in parse_macs(self.v(node, "mac", "mac"))]
        vals += [(m.upper(), "\x00M") for m, _ in parse_macs(self.v(node, "mac", "mac"))]
        return sorted((v for v in vals if v[0]), key=lambda v: -len(v[0]))

    def _kernel(self, image: str, osvers: str, arch: str, nodes: list[str],
                out: Outcome) -> tuple[str, str] | None:
        """Copy the installer's kernel and initrd into every TFTP root these nodes use
        (once, and only when they changed); their paths relative to the TFTP root."""
        try:
            krel, irel = osfamily.boot_files(osvers, arch)
        except (XcatError, ValueError, KeyError) as exc:
            for n in nodes:
                out.fail(n, f"osimage {image}: {exc}")
            return None
        src_dir = self.installdir / osvers / arch
        dest_rel = f"xcat/osimage/{image}"
        for rel in (krel, irel):
            if not inside_tree(src_dir / rel, self.installdir):
                for n in nodes:
                    out.fail(n, f"osimage {image}: {src_dir / rel} is a symlink or lies outside "
                                f"{self.installdir}: refusing to copy it into the TFTP tree "
                                "(copy the media again with copycds)")
                return None
        for tftpdir in sorted({self.tftpdir(n) for n in nodes}):
            try:
                for rel in (krel, irel):
                    copy_if_changed(src_dir / rel, tftpdir / dest_rel / PurePosixPath(rel).name)
            except OSError as exc:
                for n in nodes:
                    out.fail(n, f"osimage {image}: cannot copy the installer kernel/initrd "
                                f"({exc.strerror or exc}: {exc.filename}); run copycds")
                return None
        return (f"{dest_rel}/{PurePosixPath(krel).name}", f"{dest_rel}/{PurePosixPath(irel).name}")

    def _plan_genesis(self, state: str, nodes: list[str], out: Outcome) -> None:
        """shell, standby, shutdown, runcmd=, runimage=: the genesis kernel with
        destiny=<state>, as xCAT boots them."""
        xcatdport = self.site.port("xcatdport", 3001)
        for node in nodes:
            arch = self.v(node, "nodetype", "arch")
            if not arch:
                out.fail(node, "No archictecture defined in nodetype table (nodetype.arch)")
                continue
            tftp = self.tftpdir(node)
            kernel = f"xcat/genesis.kernel.{arch}"
            fs = next((f"xcat/genesis.fs.{arch}.{ext}" for ext in ("gz", "lzma", "xz")
                       if (tftp / f"xcat/genesis.fs.{arch}.{ext}").is_file()), None)
            if not (tftp / kernel).is_file() or fs is None:
                out.fail(node, f"cannot set {state}: the genesis kernel and initrd "
                               f"({tftp / kernel}, {tftp}/xcat/genesis.fs.{arch}.gz) are "
                               "missing (pyxcat does not build the genesis image yet)")
                continue
            token = secrets.token_urlsafe(32)
            kcmd = " ".join(p for p in (
                "quiet", self.console(node), f"xcatd={self.server(node)}:{xcatdport}",
                f"destiny={state}", f"xcatcallback={self.callback_url(node)}") if p)
            out.changes[node] = Change(
                node, state, target=BootTarget(state, kernel, fs, f"{kcmd} xcattoken={token}"),
                token=token, bootparams={"kernel": kernel, "initrd": fs, "kcmdline": kcmd})

    # ---- writing ----------------------------------------------------------------------------
    def write(self, out: Outcome) -> dict[str, Staged]:
        """Files first, node by node: the install files under temporary names, then the boot
        files (the old ones remembered). A node whose files cannot be written gets its old
        boot files back, loses its temporary files and keeps its database state."""
        staged: dict[str, Staged] = {}
        for node in sorted(out.changes, key=natural_key):
            c = out.changes[node]
            st = Staged()
            try:
                for rel, text in c.autoinst.items():
                    st.temps.append((self._stage(node, text), rel))
                nb = self.node_boot(node)
                st.before = snapshot(loaders.boot_paths(nb))
                if c.target is None:
                    loaders.remove_node(nb)
                else:
                    _changed, warnings = loaders.write_node(nb, c.target, self.boot_env)
                    out.warnings += [Response(node=node, warning=w) for w in warnings]
            except OSError as exc:
                self.undo({node: st})
                out.fail(node, f"cannot write its boot files: {exc.strerror or exc}: "
                               f"{exc.filename}")
                continue
            except jinja2.TemplateError as exc:  # a site's own boot template is broken
                self.undo({node: st})
                out.fail(node, f"boot file template: {template_error(exc)}")
                continue
            staged[node] = st
        return staged

    def _stage(self, node: str, text: str) -> Path:
        """``text`` in a fresh 0600 file of <installdir>/autoinst with a hidden name (never
        served: httpserve and the nginx config refuse names starting with a dot)."""
        base = self.installdir / "autoinst"
        base.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{node}.", suffix=".new", dir=base)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        except BaseException:
            os.unlink(name)
            raise
        return Path(name)

    def undo(self, staged: dict[str, Staged]) -> None:
        """Put the nodes' old boot files back and drop their temporary install files."""
        for st in staged.values():
            restore(st.before)
            for tmp, _rel in st.temps:
                tmp.unlink(missing_ok=True)

    def install(self, staged: dict[str, Staged], out: Outcome) -> None:
        """After the commit: the install files (with the token just stored) go live."""
        base = self.installdir / "autoinst"
        for node in sorted(staged, key=natural_key):
            try:
                for tmp, rel in staged[node].temps:
                    final = clear_way(base, rel)
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, final)
            except OSError as exc:
                for tmp, _rel in staged[node].temps:
                    tmp.unlink(missing_ok=True)
                out.errors.append(Response(
                    node=node, errorcode=1, error="cannot put its install file in place "
                    f"({exc.strerror or exc}: {exc.filename}); run nodeset again"))

    def commit(self, out: Outcome, status: dict[str, str] | None = None) -> None:
        """Every table change of the run in one transaction."""
        changes = out.changes
        if not changes and not status:
            return
        chain, bp, nt, nr, bs = {}, {}, {}, {}, {}
        for node, c in changes.items():
            row = {"currstate": c.currstate}
            if c.currchain is not None:
                row["currchain"] = c.currchain
            chain[(node,)] = row
            if c.bootparams:
                bp[(node,)] = c.bootparams
            if c.nodetype:
                nt[(node,)] = c.nodetype
            if c.noderes:
                nr[(node,)] = c.noderes
            bs[(node,)] = {"tokenhash": token_hash(c.token) if c.token else None,
                           "installboots": 0, "tokentime": now_text() if c.token else None}
        db = self.ctx.db
        with db.begin() as conn:
            for table, rows in (("chain", chain), ("bootparams", bp), ("nodetype", nt),
                                ("noderes", nr), ("bootstate", bs)):
                if rows:
                    db.set_rows(conn, table, rows)
            if status:
                t = now_text()
                db.set_rows(conn, "nodelist", {(n,): {"status": s, "statustime": t}
                                               for n, s in status.items()})

    def next_states(self, out: Outcome) -> dict[str, tuple[str, str | None]]:
        """``nodeset next``: each node's next state from chain.currchain (or chain.chain);
        the rest stays in currchain, and the last state sticks there, as in xCAT."""
        wanted = {}
        for node in self.names:
            chain = split_chain(self.v(node, "chain", "currchain")
                                or self.v(node, "chain", "chain"))
            if not chain:
                out.errors.append(Response(node=node, error="no chain to move along "
                                           "(chain.currchain and chain.chain are empty)",
                                           errorcode=1))
                continue
            first, rest = chain[0], chain[1:]
            wanted[node] = (first, ",".join(rest) if rest else
                            (None if first.startswith("osimage") else first))
        return wanted


@dataclass(frozen=True)
class PackedImage:
    """A diskless image as packimage left it: the files a node boots, and the root image's
    sha256 the initrd checks."""

    kernel: Path
    initrd: Path
    rootimg: Path
    sha256: str


def diskless_image(installdir: Path, image: str, osvers: str, arch: str, profile: str,
                   rootimgdir: str | None, paths) -> PackedImage:
    """The packed image of ``image`` (its manifest, written by packimage), checked: under
    <installdir> (where the HTTP site serves it), with its kernel, initrd and root image
    there. XcatError says what is missing and which command makes it."""
    where = (paths.under(rootimgdir) if rootimgdir
             else installdir / "netboot" / osvers / arch / profile)
    manifest = where / MANIFEST
    try:
        info = json.loads(manifest.read_text())
        if not info.get("initrd"):
            raise XcatError(f"osimage {image} has no initrd beside it ({where}): run genimage "
                            f"{image} again")
        root = info["rootimg"]
        packed = PackedImage(where / info["kernel"]["file"], where / info["initrd"]["file"],
                             where / root["file"], str(root["sha256"]))
    except FileNotFoundError:
        raise XcatError(f"osimage {image} is not packed ({manifest} is missing): run "
                        f"genimage {image} and packimage {image}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise XcatError(f"osimage {image}: {manifest} is unreadable ({exc}): run packimage "
                        f"{image} again") from None
    for f in (packed.kernel, packed.initrd, packed.rootimg):
        if not inside_tree(f, installdir) or not f.is_file():
            raise XcatError(f"osimage {image}: {f} is missing or outside {installdir}: run "
                            f"packimage {image} again")
    if not re.fullmatch(r"[0-9a-f]{64}", packed.sha256):
        raise XcatError(f"osimage {image}: {manifest} holds no sha256 of the root image")
    return packed


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def split_words(text: str | None) -> list[str]:
    return (text or "").split()


def _mask(text: str, own: list[tuple[str, str]]) -> str:
    for value, mask in own:
        text = text.replace(value, mask)
    return text


def _safe_rel(rel: str) -> bool:
    p = PurePosixPath(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and "\x00" not in rel


def _no_image(nodes: list[str]) -> XcatError:
    return XcatError("OS image name must be specified in nodetype.provmethod for "
                     f"nodes: {' '.join(sorted(nodes, key=natural_key))}.")


def check_state(state: str) -> None:
    """An unknown state fails the whole request, naming it."""
    if state in ("boot", "offline", "osimage") or state in GENESIS_STATES:
        return
    if state.startswith("osimage="):
        return
    if state.startswith(GENESIS_PREFIXES):
        if not state.split("=", 1)[1].strip():
            raise XcatError(f"{state.split('=', 1)[0]}= needs a value")
        return
    raise XcatError(f"Unknown state {state} requested")


def clear_way(base: Path, rel: str) -> Path:
    """The path of ``rel`` under ``base``, with whatever stands in its way removed: a
    node's kickstart file where its autoinstall directory goes, or the other way round."""
    parts = PurePosixPath(rel).parts
    for i in range(1, len(parts)):
        p = base.joinpath(*parts[:i])
        if p.is_symlink() or p.is_file():
            p.unlink()
    target = base.joinpath(*parts)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    return target


def snapshot(paths: list[Path]) -> list[tuple[Path, str, bytes | str | None, int]]:
    """What each path holds now (a file's bytes and mode, a link's target, nothing), so a
    failed run can put it back. Anything else (a directory) is left alone."""
    out: list[tuple[Path, str, bytes | str | None, int]] = []
    for p in paths:
        try:
            st = p.lstat()
        except FileNotFoundError:
            out.append((p, "absent", None, 0))
            continue
        except NotADirectoryError:
            continue
        if stat_mod.S_ISLNK(st.st_mode):
            out.append((p, "link", os.readlink(p), 0))
        elif stat_mod.S_ISREG(st.st_mode):
            out.append((p, "file", p.read_bytes(), stat_mod.S_IMODE(st.st_mode)))
    return out


def restore(before: list[tuple[Path, str, bytes | str | None, int]]) -> None:
    """Put back what ``snapshot`` saw, as far as it goes (best effort: this runs after a
    failure already reported)."""
    for p, kind, data, mode in before:
        try:
            if kind == "file":
                write_atomic(p, data, mode=mode)
                continue
            if p.is_symlink() or p.is_file():
                p.unlink()
            if kind == "link":
                p.symlink_to(data)
        except OSError:
            pass


def template_error(exc: Exception) -> str:
    """A Jinja2 error as the admin needs it: which file, which line, what."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}"
    return str(exc)


def copy_if_changed(src: Path, dest: Path) -> bool:
    """Copy ``src`` to ``dest`` unless it is there already with the same size and time
    (the installer's kernel: megabytes, shared by every node of an osimage). ``src`` is
    opened without following a final symlink and must be a regular file."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fsrc:
        st = os.fstat(fsrc.fileno())
        if not stat_mod.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(src))
        with locked(dest):
            try:
                d = dest.stat()
                if d.st_size == st.st_size and d.st_mtime_ns == st.st_mtime_ns:
                    return False
            except FileNotFoundError:
                pass
            tmp = dest.with_name(f".{dest.name}.new")
            tmp.unlink(missing_ok=True)
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(out, "wb") as fdst:
                shutil.copyfileobj(fsrc, fdst, 1 << 20)
                os.fchmod(fdst.fileno(), 0o644)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(tmp, dest)
    return True


# ---- entry points ------------------------------------------------------------------------------
def set_states(ctx: Cluster, wanted: dict[str, tuple[str, str | None]], *,
               dhcp_server: bool = True, status: dict[str, str] | None = None,
               run: NodesetRun | None = None) -> Iterator[Response]:
    """Plan, write and commit ``wanted`` ({node: (state, rest of chain)}); then DHCP.
    Yields the error lines first, then one line per node set, in node order."""
    run = run or NodesetRun(ctx, sorted(wanted, key=natural_key))
    out = run.plan(wanted)
    staged = run.write(out)
    try:
        run.commit(out, {n: s for n, s in (status or {}).items() if n in out.changes})
    except BaseException:
        run.undo(staged)      # the database kept every node's old state: so do the files
        raise
    run.install(staged, out)
    yield from sorted(out.errors, key=lambda r: natural_key(r.node or ""))
    yield from out.warnings
    for node in sorted(out.changes, key=natural_key):
        yield Response(node=node, data=out.changes[node].currstate)
    if dhcp_server and out.changes and dhcp_setup(ctx.site):
        yield from update_dhcp(ctx, out)


def update_dhcp(ctx: Cluster, out: Outcome) -> Iterator[Response]:
    """Tell the DHCP server about the nodes (removing the offline ones)."""
    offline = [n for n, c in out.changes.items() if c.target is None]
    online = [n for n, c in out.changes.items() if c.target is not None]
    yield from dhcp.update_nodes(ctx, online, offline)


def stat(ctx: Cluster, names: list[str]) -> Iterator[Response]:
    """xCAT's nodeset stat: the state each node's boot file describes."""
    run = NodesetRun(ctx, names)
    for node in names:
        nb = run.netboot(node)
        if nb not in loaders.NETBOOTS:
            yield Response(node=node, error=f"noderes.netboot '{nb}' is not supported",
                           errorcode=1)
            continue
        yield Response(node=node, data=loaders.read_state(run.tftpdir(node), nb, node))


