"""One request's view of the cluster: the database, the paths, the site table (typed), and
node and group facts read at most once.

Handlers get a Context (xcatd.handler), which is a Cluster with the request; the domain
packages take a Cluster, so they can be called from any handler, front or tool without
making up a request. A Cluster also answers the noderange module's questions (groups,
selectors, site.excludenodes), reading each table at most once.
"""
from __future__ import annotations

import socket
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import sqlalchemy as sa

from xcatd.base.noderange import DEFAULT_LIMIT, NodeRange, expand
from xcatd.base.paths import Paths
from xcatd.base.site import SiteValues
from xcatd.db.database import MAX_LIKE, SA_TABLES, Database, active, split_list
from xcatd.db.objects import ObjectStore


class Cluster:
    def __init__(self, paths: Paths | None = None, db: Database | None = None,
                 site: SiteValues | None = None) -> None:
        self.paths = paths or Paths()
        self.db = db or Database.open(self.paths)
        self.db.check_ready()
        self._site = site
        self._nodes: set[str] | None = None
        self._groups: dict[str, list[str]] | None = None
        self._node_groups: dict[str, list[str]] | None = None
        self._some_groups: dict[str, list[str]] = {}
        self._nodegroups: dict[str, dict] | None = None
        #: the service node this request runs on (a part its management node relayed);
        #: None on the management node
        self.servicenode: str | None = None

    # ---- the site table and the directories every part shares ------------------------------
    @property
    def site(self) -> SiteValues:
        if self._site is None:
            self._site = self.db.site()
        return self._site

    def node_master(self, xcatmaster: str | None, ip: str | None) -> str:
        """Where a node reaches xcatd: its noderes.xcatmaster, else this server's address
        for it (server_for; site.master on the management node, "" when unset there)."""
        if xcatmaster:
            return xcatmaster
        return self.server_for(ip) if self.servicenode else (self.site.get("master") or "")

    def server_for(self, ip: str | None) -> str:
        """The address a node at ``ip`` reaches this server at, where the node's own
        noderes.xcatmaster says nothing: site.master on the management node; on a service
        node, its own address on the node's network (the source address the kernel would
        use towards ``ip``: a route lookup, nothing is sent), as xCAT derives it."""
        if self.servicenode and ip:
            found = source_address(ip)
            if found:
                return found
        return self.site.master()

    @cached_property
    def installdir(self) -> Path:
        return self.site.installdir(self.paths)

    @cached_property
    def tftpdir(self) -> Path:
        return self.site.tftpdir(self.paths)

    # ---- nodes and groups, read once -------------------------------------------------------
    def all_nodes(self) -> set[str]:
        if self._nodes is None:
            self._load_nodelist()
        return self._nodes  # type: ignore[return-value]

    def known_nodes(self, names: set[str]) -> set[str]:
        if self._nodes is not None:
            return names & self._nodes
        rows = self.db.rows("nodelist", keys=names)
        for r in rows:  # keep their groups: resolving their attributes needs them next
            self._some_groups[r["node"]] = split_list(r["groups"])
        return {r["node"] for r in rows}

    def node_groups_if_loaded(self, nodes: Iterable[str] | None = None
                              ) -> dict[str, list[str]] | None:
        """Groups of ``nodes`` if this request has read them already, else None."""
        if self._node_groups is not None:
            return self._node_groups
        if nodes is not None and self._some_groups:
            some = self._some_groups
            if all(n in some for n in nodes):
                return some
        return None

    def node_groups(self) -> dict[str, list[str]]:
        """Every node's groups (nodelist.groups), read once per request."""
        if self._node_groups is None:
            self._load_nodelist()
        return self._node_groups  # type: ignore[return-value]

    def _load_nodelist(self) -> None:
        groups = self._node_groups = self.db.node_groups()
        self._nodes = set(groups)
        self._groups = {}
        for node, gl in groups.items():
            for g in gl:
                self._groups.setdefault(g, []).append(node)

    def group_members(self, name: str) -> set[str] | None:
        if self._nodegroups is None:
            self._nodegroups = {r["groupname"]: r for r in self.db.rows("nodegroup")}
        row = self._nodegroups.get(name)
        if row is not None and (row.get("grouptype") or "") == "dynamic":
            with self.db.connect() as conn:
                return ObjectStore(self.db, conn).dynamic_members(row.get("wherevals") or "")
        if self._groups is not None:
            members = self._groups.get(name)
        else:  # only the rows that can name the group, not the whole nodelist
            t = SA_TABLES["nodelist"]
            like = "%" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            # a name past what LIKE takes (no group is named so) is looked for in every row
            rows = self.db.rows("nodelist", where=t.c.groups.like(like, escape="\\")
                                if len(like.encode("utf-8", "replace")) <= MAX_LIKE else None)
            members = [r["node"] for r in rows if name in split_list(r["groups"])]
        if members:
            return set(members)
        if row is not None:
            return set()  # a defined group with no members
        return None

    def group_names(self) -> set[str]:
        """Every group: named in nodelist.groups or defined in the nodegroup table (the
        distinct group lists only, unless the nodelist was read already)."""
        if self._nodegroups is None:
            self._nodegroups = {r["groupname"]: r for r in self.db.rows("nodegroup")}
        if self._groups is not None:
            return set(self._groups) | set(self._nodegroups)
        t = SA_TABLES["nodelist"]
        with self.db.connect() as conn:
            lists = conn.execute(sa.select(t.c.groups, t.c.disable).distinct()).all()
        names = {g for groups, disable in lists if active({"disable": disable})
                 for g in split_list(groups)}
        return names | set(self._nodegroups)

    def select_nodes(self, attr: str, op: str, value: str) -> set[str]:
        with self.db.connect() as conn:
            return ObjectStore(self.db, conn).select_nodes(self.all_nodes(), attr,
                                                           "==" if op == "=" else op, value)

    def excludenodes(self) -> str | None:
        return self.site.get("excludenodes")

    def expand(self, noderange: str, *, verify: bool = True,
               env: dict[str, str] | None = None, allow_files: bool = False) -> NodeRange:
        """The nodes of a noderange (names must exist unless ``verify`` is False); ``^file``
        terms only with ``allow_files`` (they are read with this process's rights); at most
        site.noderangemax names made from ranges (TooManyNodes)."""
        return expand(noderange, self, verify=verify, env=env, allow_files=allow_files,
                      limit=self.site.integer("noderangemax", DEFAULT_LIMIT, low=1))


def source_address(ip: str) -> str | None:
    """This host's address towards ``ip`` (connecting a UDP socket sends nothing)."""
    try:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((ip, 9))
            return s.getsockname()[0]
    except OSError:
        return None
