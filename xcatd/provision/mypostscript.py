r"""The environment a node's postscripts run in, rendered from a mypostscript template in
xCAT's format, so that a site's own template and its existing postscripts carry over.

The template is the site's ``<installdir>/postscripts/mypostscript.tmpl`` (xCAT's place),
else ``mypostscript/mypostscript.tmpl`` in the custom template directory, else the shipped
``templates/mypostscript/mypostscript.tmpl``. What it may hold, besides plain shell:

- ``#TABLE:<table>:$NODE:<column>#``: the node's value (through its groups, regex values
  computed); ``THISNODE`` means ``$NODE``; another key names that row (``#TABLE:osimage:
  img:profile#``). noderes.xcatmaster defaults to site.master, nfsserver and tftpserver to
  the node's xcatmaster, as in xCAT.
- ``#INCLUDE:<file>#``: another file's lines, relative to the including file or an absolute
  management-node path (under XCATROOT); only world-readable files (what is meant for
  nodes), nested at most MAX_INCLUDE_DEPTH deep.
- ``#SITE_TABLE_ALL_ATTRIBS_EXPORT#``: every site key as ``KEY='value'`` and ``export KEY``
  (site.master as SITEMASTER).
- ``tabdump(<table>)``: ``<TABLE>_LINES=<n>`` and ``<TABLE>_LINE<i>='col=value||...'`` for a
  table not keyed by node (``tabdump(networks)`` gives NETWORKS_LINES, NETWORKS_LINE1...).
- ``$NODE``, ``$NSETSTATE``, ``$NTYPE``, ``$MACADDRESS``, ``$UPDATENODE``,
  ``$ENABLESSHBETWEENNODES``, ``$ZONENAME``, ``#IPADDR#``, ``#MASTER_IP_ADDR#``,
  ``#OSIMAGE_VARS_EXPORT#`` (OSPKGDIR, OSPKGS, OTHERPKGDIR, OTHERPKGS<n>, OTHERPKGS_INDEX,
  ENVLIST, the image's environvar, NOSYNCFILES) and ``#ROUTES_VARS_EXPORT#`` (ROUTE_<name>).
- Lines starting with ``##`` are dropped.

Secrets are never filled in: a secret column (tables.SECRET_COLUMNS: BMC, switch and root
passwords...), the passwd table and pyxcat's token tables render empty, and so do site keys
that name a password, secret or key (``secret_site_key``); each is named in a warning. A
script that needs a secret asks the node API for it.

A value put right after ``=`` is shell-quoted when it needs to be, inside ``'...'`` or
``"..."`` it is escaped, so a table value cannot run commands on the node.

Where this differs from xCAT, on purpose: an include keeps its lines (xCAT joins them with
commas); a missing include is a warning, not silence; ``#INCLUDE_POSTSCRIPTS_LIST#`` and
``#INCLUDE_POSTBOOTSCRIPTS_LIST#`` render as comment lines (the scripts are in the typed plan,
so sourcing the environment never runs them); ``#Subroutine:...#`` (Perl), AIX, VLAN,
monitoring, kit, cloud and diskless-POWER exports render empty.
"""
from __future__ import annotations

import ipaddress
import re
import shlex
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from xcatd.base.paths import Paths
from xcatd.base.request import XcatError
from xcatd.base.safepath import world_readable
from xcatd.base.site import SiteValues
from xcatd.base.templating import custom_dir
from xcatd.db import nics
from xcatd.db.cluster import Cluster
from xcatd.db.netinfo import parse_macs
from xcatd.provision.pkglist import PkgListError, PkgPass, read_pkglists
from xcatd.tables import NOT_SECRET_SITE_KEYS, SECRET_SITE_KEY, TABLES, is_secret

TEMPLATE = "mypostscript.tmpl"
MAX_INCLUDE_DEPTH = 8
#: xCAT's words for a node's provmethod that name no osimage
LEGACY_PROVMETHODS = ("install", "netboot", "statelite")

#: Tables tabdump() refuses: xCAT's list (matched as a prefix, as xCAT does), tables keyed by
#: node (use #TABLE# for those), and tables that hold secrets or pyxcat's own state.
_XCAT_NO_DUMP = re.compile(
    r"^(auditlog|bootparams|chain|deps|domain|eventlog|firmware|hypervisor|iscsi|"
    r"kvm_nodedata|mac|nics|ipmi|mp|ppc|ppcdirect|site|websrv|zvm|statelite|rack|hosts|"
    r"prodkey|switch|node|kit|kitcomponent)")
SECRET_TABLES = frozenset({"passwd", "token", "bootstate", "jobs", "jobresults", "nodelock"})

_SECRET_KEY = re.compile(SECRET_SITE_KEY, re.I)
_NOT_SECRET_KEYS = NOT_SECRET_SITE_KEYS

_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INCLUDE = re.compile(r"#INCLUDE:([^#\n]+)#")
_TABLE = r"#TABLE:([^:#\n]+):([^:#\n]+):([^#\n]+)#"
_TOKENS = re.compile(
    _TABLE
    + r"|#(IPADDR|MASTER_IP_ADDR|ROUTES_VARS_EXPORT|OSIMAGE_VARS_EXPORT|"
      r"INCLUDE_POSTSCRIPTS_LIST|INCLUDE_POSTBOOTSCRIPTS_LIST|SITE_TABLE_ALL_ATTRIBS_EXPORT|"
      r"NETWORK_FOR_DISKLESS_EXPORT|VLAN_VARS_EXPORT|MONITORING_VARS_EXPORT|"
      r"KITCOMP_DEPLOY_PARAMS_EXPORT|CFGMGTINFO_EXPORT|CLOUDINFO_EXPORT|"
      r"AIX_ROOT_PW_VARS_EXPORT)#"
    + r"|#Subroutine:[^#\n]*#"
    + r"|tabdump\((\w+)\)"
    + r"|\$(NODE|NSETSTATE|NTYPE|MACADDRESS|ENABLESSHBETWEENNODES|ZONENAME|UPDATENODE)\b")
_NODE_KEYS = ("$NODE", "THISNODE")

#: What the renderer reads for every node besides the template's own #TABLE# columns.
BASE_COLUMNS = {
    "nodetype": ("os", "arch", "profile", "provmethod"),
    "noderes": ("xcatmaster", "nfsserver", "tftpserver", "routenames", "current_osimage"),
    "hosts": ("ip",),
    "mac": ("mac",),
    "chain": ("currstate",),
}


def secret_site_key(key: str) -> bool:
    """Site keys whose value is a secret and never reaches a node.

    >>> [k for k in ("master", "omapikey", "ldappassword", "dhcpomapikeyname",
    ...              "genpasswords", "tokenexpiredays", "apitoken") if secret_site_key(k)]
    ['omapikey', 'ldappassword', 'apitoken']
    """
    return key.lower() not in _NOT_SECRET_KEYS and bool(_SECRET_KEY.search(key))


def node_osimage(provmethod: str | None, current: str | None) -> str | None:
    """The osimage a node is provisioned with: nodetype.provmethod when it names one, else
    noderes.current_osimage.

    >>> node_osimage("rocky9-x86_64-install-compute", None), node_osimage("install", "img")
    ('rocky9-x86_64-install-compute', 'img')
    """
    if provmethod and provmethod not in LEGACY_PROVMETHODS:
        return provmethod
    return current or None


def quote(value: str) -> str:
    """``'value'`` for sh, whatever it holds.

    >>> print(quote("it's"))
    'it'"'"'s'
    """
    return "'" + value.replace("'", "'\"'\"'") + "'"


def export(name: str, value: str) -> str:
    return f"{name}={quote(value)}\nexport {name}\n"


def in_context(value: str, before: str) -> str:
    """``value`` as it may stand after ``before`` (the character in front of it) in sh:
    escaped inside quotes, quoted after ``=`` or elsewhere when it needs to be.

    >>> print(in_context("a b", "="), in_context("a'b", "'"), in_context('a"$b', '"'))
    'a b' a'"'"'b a\\"\\$b
    >>> in_context("10.0.0.1", "="), in_context("", "=")
    ('10.0.0.1', '')
    """
    if before == "'":
        return value.replace("'", "'\"'\"'")
    if before == '"':
        return re.sub(r'([\\"$`])', r"\\\1", value)
    return shlex.quote(value) if value else ""


@dataclass
class Template:
    """A mypostscript template read and checked: its text (includes done, ``##`` lines
    dropped), where it came from, the #TABLE# columns it asks for, and warnings."""

    path: str
    text: str
    columns: dict[str, set[str]] = field(default_factory=dict)   # node-keyed: table -> cols
    literal: set[tuple[str, str, str]] = field(default_factory=set)   # (table, key, col)
    warnings: list[str] = field(default_factory=list)


def find_template(paths: Paths, site: SiteValues, installdir: Path) -> tuple[str, str]:
    """(where, text) of the template that applies: the site's, else the shipped one."""
    for candidate in (installdir / "postscripts" / TEMPLATE,
                      custom_dir(paths, site) / "mypostscript" / TEMPLATE):
        if candidate.is_file():
            return str(candidate), _read(candidate)
    shipped = resources.files("xcatd.templates").joinpath("mypostscript", TEMPLATE)
    return f"(shipped) mypostscript/{TEMPLATE}", shipped.read_text(encoding="utf-8")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise XcatError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise XcatError(f"{path}: cannot read the mypostscript template: "
                        f"{exc.strerror or exc}") from None


def load_template(paths: Paths, site: SiteValues, installdir: Path) -> Template:
    """The template that applies, read and checked; XcatError names a bad table or column
    with its file and line."""
    where, text = find_template(paths, site, installdir)
    tmpl = Template(where, "")
    base = Path(where).parent if not where.startswith("(") else None
    lines = _expand(text, where, base, paths, tmpl.warnings,
                    (str(Path(where).resolve()),) if base is not None else ())
    tmpl.text = "".join(f"{line}\n" for line, _at in lines)
    for line, at in lines:
        for m in re.finditer(_TABLE, line):
            table, key, col = (g.strip() for g in m.groups())
            _check_column(at, table, col)
            if is_secret(table, col) or table in SECRET_TABLES:
                tmpl.warnings.append(f"{at}: #TABLE:{table}:{key}:{col}# is a secret and is "
                                     "not exported")
            elif key in _NODE_KEYS:
                if not TABLES[table].node_keyed and table != "nodelist":
                    raise XcatError(f"{at}: the {table} table is not keyed by node: name a "
                                    f"row instead of {key}")
                tmpl.columns.setdefault(table, set()).add(col)
            else:
                if len(TABLES[table].keys) != 1:
                    raise XcatError(f"{at}: the {table} table has {len(TABLES[table].keys)} "
                                    "key columns: #TABLE# reads tables with one")
                tmpl.literal.add((table, key, col))
        for m in re.finditer(r"tabdump\((\w+)\)", line):
            if m.group(1) not in TABLES:
                raise XcatError(f"{at}: tabdump({m.group(1)}): no such table")
        if "#Subroutine:" in line:
            tmpl.warnings.append(f"{at}: #Subroutine:...# runs Perl in xCAT and renders "
                                 "empty here")
    return tmpl


def _check_column(at: str, table: str, col: str) -> None:
    if table not in TABLES:
        raise XcatError(f"{at}: #TABLE:{table}:...#: no such table")
    if col not in TABLES[table].columns:
        raise XcatError(f"{at}: #TABLE:{table}:...:{col}#: the {table} table has no column "
                        f"{col}")


def _expand(text: str, where: str, base: Path | None, paths: Paths, warnings: list[str],
            stack: tuple[str, ...]) -> list[tuple[str, str]]:
    """(line, "file, line N") for the template's lines but its ``##`` comments, every
    #INCLUDE:file# replaced by the file's lines."""
    out: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        at = f"{where}, line {number}"
        if line.startswith("##"):  # a comment of the template's own, never sent
            continue
        m = _INCLUDE.search(line)
        if m is None:
            out.append((line, at))
            continue
        name = m.group(1).strip()
        path = paths.under(name) if name.startswith("/") else (
            (base / name) if base is not None else None)
        before, after = line[:m.start()], line[m.end():]
        included: list[tuple[str, str]] = []
        if path is None or not path.is_file():
            warnings.append(f"{at}: #INCLUDE:{name}#: no such file"
                            + (f" ({path})" if path is not None else ""))
        elif str(path.resolve()) in stack or len(stack) >= MAX_INCLUDE_DEPTH:
            raise XcatError(f"{at}: #INCLUDE:{name}#: includes nest too deep or in a cycle "
                            f"({' -> '.join((*stack, str(path.resolve())))})")
        elif not world_readable(path):
            warnings.append(f"{at}: #INCLUDE:{name}#: {path} is not world-readable, so not "
                            "meant for nodes: left out")
        else:
            included = _expand(_read(path), str(path), path.parent, paths, warnings,
                               (*stack, str(path.resolve())))
        if before.strip() or after.strip():
            out.append((before + "\n".join(t for t, _ in included) + after, at))
        else:
            out.extend(included)
    return out


# ---- the data, read once for every node ----------------------------------------------------
class Renderer:
    """Renders the environment of many nodes: the template read once, every table it needs
    read once (a fixed number of queries, whatever the number of nodes)."""

    def __init__(self, cluster: Cluster, nodes: Iterable[str], *, updatenode: bool = False,
                 nodesetstate: str | None = None,
                 groups: Mapping[str, list[str]] | None = None) -> None:
        self.cluster = cluster
        self.site = cluster.site
        self.nodes = list(nodes)
        self.updatenode = updatenode
        self.nodesetstate = nodesetstate
        db = cluster.db
        self.template = load_template(cluster.paths, self.site, cluster.installdir)
        self.warnings = list(self.template.warnings)
        wanted: dict[str, set[str]] = {t: set(c) for t, c in BASE_COLUMNS.items()}
        for table, cols in self.template.columns.items():
            wanted.setdefault(table, set()).update(cols)
        if groups is None:
            groups = db.node_groups(self.nodes)
        self.groups = groups
        self.values = db.resolve(self.nodes, {t: sorted(c) for t, c in wanted.items()},
                                 groups=groups)
        self.literal = self._literal_values()
        self.images = {n: node_osimage(self.v(n, "nodetype", "provmethod"),
                                       self.v(n, "noderes", "current_osimage"))
                       for n in self.nodes}
        used = sorted({i for i in self.images.values() if i})
        self.osimages = {r["imagename"]: r for r in db.rows("osimage", keys=used)}
        self.linuximages = {r["imagename"]: r for r in db.rows("linuximage", keys=used)}
        self.routes = {r["routename"]: r for r in db.rows("routes")}
        self.servicenodes = {r["node"] for r in db.rows("servicenode")}
        self.site_block = self._site_block()
        self.dumps = self._dumps()
        self.ssh = self._ssh_between_nodes()
        self._image_vars: dict[str, tuple[str, list[str]]] = {}
        self._master_ips: dict[str, str | None] = {}

    def v(self, node: str, table: str, col: str) -> str:
        return self.values[node].get((table, col)) or ""

    def _literal_values(self) -> dict[tuple[str, str, str], str]:
        """#TABLE# values of named rows (not $NODE): one read per table."""
        wanted: dict[str, tuple[set[str], set[str]]] = {}
        for table, key, col in self.template.literal:
            keys, cols = wanted.setdefault(table, (set(), set()))
            keys.add(key)
            cols.add(col)
        found: dict[tuple[str, str], Mapping] = {}
        for table, (keys, cols) in wanted.items():
            tdef = TABLES[table]
            if tdef.node_keyed:  # a node or a group: its value through its groups
                got = self.cluster.db.resolve(sorted(keys), {table: sorted(cols)})
                for key, vals in got.items():
                    found[(table, key)] = {c: v for (_t, c), v in vals.items()}
            else:
                for r in self.cluster.db.rows(table, keys=sorted(keys)):
                    found.setdefault((table, str(r[tdef.keys[0]])), r)
        out = {}
        for table, key, col in self.template.literal:
            value = found.get((table, key), {}).get(col)
            out[(table, key, col)] = "" if value is None else str(value)
        return out

    # ---- node-independent blocks -----------------------------------------------------------
    def _site_block(self) -> str:
        lines = []
        for key in sorted(self.site, key=str.lower):
            if secret_site_key(key):
                self.warnings.append(f"site.{key} looks like a secret and is not exported")
                continue
            name = "SITEMASTER" if key.lower() == "master" else key.upper()
            if not _SHELL_NAME.fullmatch(name):
                self.warnings.append(f"site.{key} is not a shell variable name and is not "
                                     "exported")
                continue
            lines.append(export(name, self.site[key]))
        return "".join(lines).rstrip("\n")

    def _dumps(self) -> dict[str, str]:
        out = {}
        for table in sorted(set(re.findall(r"tabdump\((\w+)\)", self.template.text))):
            tdef = TABLES[table]
            if table in SECRET_TABLES or _XCAT_NO_DUMP.match(table) or tdef.node_keyed:
                self.warnings.append(f"tabdump({table}): the {table} table is not exported "
                                     "(keyed by node, or holds secrets)")
                out[table] = ""
                continue
            rows = self.cluster.db.rows(table)
            name = table.upper()
            lines = [f"{name}_LINES={len(rows)}", f"export {name}_LINES"]
            for i, row in enumerate(rows, 1):
                parts = []
                for col in tdef.columns:
                    if col == "comments" or is_secret(table, col):
                        continue
                    value = row.get(col)
                    parts.append(f"{col}={'' if value is None else value}||")
                    if col == "disable":
                        parts.append("comments=")
                lines.append(f"{name}_LINE{i}={quote(''.join(parts))}")
                lines.append(f"export {name}_LINE{i}")
            out[table] = "\n".join(lines)
        return out

    def _ssh_between_nodes(self) -> set[str] | bool:
        """site.sshbetweennodes: True (ALLGROUPS), False (NOGROUPS or unset), or the
        groups whose nodes may ssh to each other."""
        value = self.site.text("sshbetweennodes")
        groups = {g.strip() for g in value.split(",") if g.strip()}
        if "ALLGROUPS" in groups:
            return True
        if not groups or "NOGROUPS" in groups:
            return False
        return groups

    # ---- per node ------------------------------------------------------------------------
    def master(self, node: str) -> str:
        return self.cluster.node_master(self.v(node, "noderes", "xcatmaster"),
                                        self.v(node, "hosts", "ip"))

    def master_ip(self, node: str) -> str | None:
        """The management node's address for ``node``: xcatmaster (or site.master) as an
        address, or the name looked up (hosts table, then the resolver) once per name."""
        name = self.master(node)
        if name not in self._master_ips:
            self._master_ips[name] = _address_of(self.cluster, name)
        return self._master_ips[name]

    def table_value(self, node: str, table: str, key: str, col: str) -> str:
        table, key, col = table.strip(), key.strip(), col.strip()
        if is_secret(table, col) or table in SECRET_TABLES:
            return ""
        if key not in _NODE_KEYS:
            return self.literal.get((table, key, col), "")
        value = self.v(node, table, col)
        if table == "noderes" and not value and col in ("xcatmaster", "nfsserver",
                                                        "tftpserver"):
            value = self.master(node)
        if table == "nics" and "!" in value:
            value = nics.computed(value, node) or ""
        return value

    def ntype(self, node: str) -> str:
        if node in self.servicenodes:
            return "service"
        master = self.site.text("master")
        if master and master in (node, self.v(node, "hosts", "ip")):
            return "MN"
        return "compute"

    def mac(self, node: str) -> str:
        macs = parse_macs(self.v(node, "mac", "mac"))
        for mac, name in macs:
            if name in (None, node):
                return mac
        return macs[0][0] if macs else ""

    def ssh_between(self, node: str) -> str:
        if node in self.servicenodes or self.ssh is True:
            return "YES"
        if self.ssh is False:
            return "NO"
        return "YES" if self.ssh & set(self.groups.get(node, ())) else "NO"

    def routes_block(self, node: str) -> str:
        lines = []
        for name in (r.strip() for r in self.v(node, "noderes", "routenames").split(",")):
            row = self.routes.get(name)
            if not name or row is None or not row.get("net") or not row.get("mask"):
                continue
            if not _SHELL_NAME.fullmatch(f"ROUTE_{name}"):
                continue
            value = ",".join([row["net"], row["mask"], row.get("gateway") or "",
                              row.get("ifname") or ""])
            lines.append(export(f"ROUTE_{name}", value))
        return "".join(lines).rstrip("\n")

    def image_block(self, node: str) -> tuple[str, list[str]]:
        image = self.images.get(node)
        if not image:
            return "", []
        if image not in self._image_vars:
            self._image_vars[image] = self._image_vars_of(image)
        return self._image_vars[image]

    def _image_vars_of(self, image: str) -> tuple[str, list[str]]:
        """#OSIMAGE_VARS_EXPORT# of one osimage, and the warnings it gives."""
        os_row = self.osimages.get(image)
        if os_row is None:
            return "", [f"osimage {image} is not defined: no osimage variables"]
        row = self.linuximages.get(image, {})
        root = self.cluster.paths.root
        out, warnings = [], []
        if row.get("pkglist"):
            if row.get("pkgdir"):
                out.append(export("OSPKGDIR", row["pkgdir"]))
            try:
                passes = read_pkglists(row["pkglist"], root=root)
            except PkgListError as exc:
                warnings.append(f"osimage {image}: OSPKGS not exported: {exc}")
            else:
                envs = [e for p in passes for e in p.env]
                if envs:
                    out.append(export("ENVLIST", " ".join(envs)))
                if passes:
                    out.append(export("OSPKGS", ",#NEW_INSTALL_LIST#,".join(
                        _pass_text(p) for p in passes)))
        if row.get("otherpkglist"):
            if row.get("otherpkgdir"):
                out.append(export("OTHERPKGDIR", row["otherpkgdir"]))
            try:
                passes = read_pkglists(row["otherpkglist"], root=root)
            except PkgListError as exc:
                warnings.append(f"osimage {image}: OTHERPKGS not exported: {exc}")
                passes = []
            for i, p in enumerate(passes, 1):
                if p.env:
                    out.append(export(f"ENVLIST{i}", " ".join(p.env)))
                out.append(export(f"OTHERPKGS{i}", _pass_text(p)))
            if passes:
                out.append(f"OTHERPKGS_INDEX={len(passes)}\nexport OTHERPKGS_INDEX\n")
        for setting in (os_row.get("environvar") or "").split(","):
            name, sep, value = setting.partition("=")
            name = name.strip()
            if not sep or not _SHELL_NAME.fullmatch(name):
                if setting.strip():
                    warnings.append(f"osimage {image}: environvar '{setting.strip()}' is not "
                                    "NAME=value: left out")
                continue
            out.append(export(name, value.strip()))
        if not os_row.get("synclists"):
            out.append("NOSYNCFILES=1\nexport NOSYNCFILES\n")
        return "".join(out).rstrip("\n"), warnings

    def render(self, node: str, lists: Mapping[str, list[str]] | None = None
               ) -> tuple[str, list[str], list[str]]:
        """(the environment text, errors, warnings) of ``node``. ``lists`` holds the
        node's postscripts and postbootscripts entries, for the list directives."""
        errors: list[str] = []
        master_ip = self.master_ip(node)
        if not master_ip:
            errors.append(f"cannot find the address of the management node "
                          f"'{self.master(node)}' (noderes.xcatmaster, else site.master)")
        image_text, warnings = self.image_block(node)
        state = self.nodesetstate or (self.v(node, "chain", "currstate").split() or [""])[0]
        simple = {
            "IPADDR": self.v(node, "hosts", "ip"), "MASTER_IP_ADDR": master_ip or "",
            "NODE": node, "NSETSTATE": state, "NTYPE": self.ntype(node),
            "MACADDRESS": self.mac(node), "ENABLESSHBETWEENNODES": self.ssh_between(node),
            "UPDATENODE": "1" if self.updatenode else "0",
        }
        blocks = {
            "SITE_TABLE_ALL_ATTRIBS_EXPORT": self.site_block,
            "ROUTES_VARS_EXPORT": self.routes_block(node),
            "OSIMAGE_VARS_EXPORT": image_text,
            "INCLUDE_POSTSCRIPTS_LIST": _comment_list((lists or {}).get("postscripts")),
            "INCLUDE_POSTBOOTSCRIPTS_LIST": _comment_list(
                (lists or {}).get("postbootscripts")),
        }
        text = self.template.text

        def fill(m: re.Match) -> str:
            before = text[m.start() - 1] if m.start() else "\n"
            if m.group(1) is not None:
                return in_context(self.table_value(node, m.group(1), m.group(2), m.group(3)),
                                  before)
            word = m.group(4) or m.group(6)
            if m.group(5) is not None:
                return self.dumps.get(m.group(5), "")
            if word == "ZONENAME":
                return "''"          # no zones: xCAT writes two quotes
            if word in simple:
                return in_context(simple[word], before)
            return blocks.get(word or "", "")

        out = _TOKENS.sub(fill, text)
        if self.updatenode:  # xCAT's own template says UPDATENODE=0 literally
            out = re.sub(r"(?m)^UPDATENODE=0$", "UPDATENODE=1", out)
        return out, errors, warnings


def _pass_text(p: PkgPass) -> str:
    return ",".join([*p.install, *(f"-{n}" for n in p.remove)])


def _comment_list(entries: list[str] | None) -> str:
    return "\n".join(f"# {e}" for e in entries or [])


def _address_of(cluster: Cluster, name: str) -> str | None:
    if not name:
        return None
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    rows = cluster.db.rows("hosts", keys=[name])
    if rows and rows[0].get("ip"):
        return rows[0]["ip"]
    try:
        return socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0]
    except (OSError, UnicodeError):
        return None
