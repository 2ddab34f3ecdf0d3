"""The object layer: node, group, osimage, network, site, policy, ... over the tables.

The attribute map (``tables/objdefs.txt``) is xCAT's: each object attribute lives in one table
column, the row found by an access column, sometimes only if another attribute has a given
value (``bmc`` lives in ``ipmi.bmc`` only if ``mgt=ipmi``). lsdef/mkdef/chdef/rmdef and the
REST API read and write objects through this module and nothing else.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources

from sqlalchemy.engine import Connection

from xcatd.base.noderange import natural_key
from xcatd.base.patterns import PatternError, compile_pattern
from xcatd.base.regexval import RegexValueError
from xcatd.db import nics
from xcatd.db.database import TABLES, Database, DBError, match_value, parse_where, split_list

SITE_OBJECT = "clustersite"


@dataclass(frozen=True)
class AttrDef:
    """Where one object attribute lives."""

    name: str
    table: str
    column: str
    keycol: str                       # column that holds the object name
    fixed: tuple[tuple[str, str], ...] = ()   # other key columns with fixed values
    only_if: tuple[str, str] | None = None


@dataclass
class ObjType:
    name: str
    objkey: str
    attrs: dict[str, list[AttrDef]] = field(default_factory=dict)

    def tables(self) -> list[str]:
        return list(dict.fromkeys(a.table for defs in self.attrs.values() for a in defs))

    def attr_names(self) -> list[str]:
        return list(self.attrs)

    def column_of(self, attr: str, values: Mapping[str, str] | None = None) -> AttrDef | None:
        """The definition of ``attr`` that applies given the object's other values."""
        defs = self.attrs.get(attr)
        if not defs:
            return None
        for d in defs:
            if d.only_if is None or (values is not None and
                                     values.get(d.only_if[0]) == d.only_if[1]):
                return d
        return None


_LINE = re.compile(r"^\s+(\S+) -> (\w+)\.(\w+) access=(\S+)(?: only_if=(\w+)=(\S+))?\s*$")


@lru_cache(maxsize=1)
def object_types() -> dict[str, ObjType]:
    text = resources.files("xcatd.tables").joinpath("objdefs.txt").read_text()
    types: dict[str, ObjType] = {}
    current: ObjType | None = None
    for line in text.splitlines():
        if line.startswith("== "):
            name, objkey = line[3:].split(" objkey=")
            current = types[name.strip()] = ObjType(name.strip(), objkey.strip())
            continue
        m = _LINE.match(line)
        if not m or current is None:
            continue
        attr, table, column, access, oi_attr, oi_val = m.groups()
        if table not in TABLES:
            continue
        keycol, fixed = "", []
        for part in access.split("::"):
            lhs, rhs = part.split("=", 1)
            col = lhs.split(".", 1)[1]
            kind, _, val = rhs.partition(":")
            if kind == "attr":
                keycol = col
            else:
                fixed.append((col, val))
        if current.name == "site":
            continue  # site attributes are every key of the site table (see below)
        d = AttrDef(attr, table, column, keycol, tuple(fixed),
                    (oi_attr, oi_val) if oi_attr else None)
        current.attrs.setdefault(attr, []).append(d)
    for name in ("node", "group"):  # attributes on group rows are the same as on nodes
        if name in types:
            types[name].attrs.setdefault("usercomment", [])
    return types


def objtype(name: str) -> ObjType:
    types = object_types()
    if name not in types:
        raise DBError(f"'{name}' is not a valid object type. Valid types: "
                      + ", ".join(sorted(DEFINABLE)))
    return types[name]


#: Object types mkdef/chdef/rmdef/lsdef accept.
DEFINABLE = ("node", "group", "osimage", "network", "site", "policy", "osdistro", "route",
             "zone", "rack", "boottarget", "notification", "monitoring", "osdistroupdate")

#: Types lsdef also lists (-t only, never with -a: the logs can be very long), as xCAT does.
LOG_TYPES = ("auditlog", "eventlog")
LISTABLE = DEFINABLE + LOG_TYPES

#: Node attributes kept per node only (never inherited from a group row).
NODE_ONLY = {"groups"}

#: xCAT's short names for nodels and noderange selectors.
SHORTNAMES = {"groups": ("nodelist", "groups"), "tags": ("nodelist", "groups"),
              "mgt": ("nodehm", "mgt")}


def node_column(attr: str) -> tuple[str, str]:
    """Map ``attr`` or ``table.column`` to a (table, column) of a node attribute."""
    if "." in attr:
        table, _, col = attr.partition(".")
        if table not in TABLES or col not in TABLES[table].columns:
            raise DBError(f"{attr} not a valid table.column description")
        return table, col
    if attr in SHORTNAMES:
        return SHORTNAMES[attr]
    defs = object_types()["node"].attrs.get(attr)
    if not defs:
        raise DBError(f"{attr} not a valid table.column description")
    return defs[0].table, defs[0].column


def attr_columns(typename: str, attr: str) -> list[tuple[str, str]]:
    """The (table, column)s an attribute of ``typename`` may live in ([] for none)."""
    return [(d.table, d.column) for d in objtype(typename).attrs.get(attr, [])]


# ---- reading objects -----------------------------------------------------------------------
class ObjectStore:
    """Reads and writes object definitions for one request (one connection)."""

    def __init__(self, db: Database, conn: Connection) -> None:
        self.db = db
        self.conn = conn

    # names
    def names(self, typename: str) -> list[str]:
        t = objtype(typename)
        if typename == "node":
            return sorted(self.db.all_nodes(self.conn), key=natural_key)
        if typename == "group":
            return sorted(self.group_names(), key=natural_key)
        if typename == "site":
            return [SITE_OBJECT]
        keydef = t.attrs[t.objkey][0]
        rows = self.db.rows(keydef.table, self.conn)
        return sorted({str(r[keydef.keycol]) for r in rows if r.get(keydef.keycol) not in
                       (None, "")}, key=natural_key)

    def group_names(self) -> set[str]:
        names = {r["groupname"] for r in self.db.rows("nodegroup", self.conn)}
        for groups in self.db.node_groups(None, self.conn).values():
            names.update(groups)
        return names

    def exists(self, typename: str, names: Iterable[str]) -> set[str]:
        return set(names) & set(self.names(typename))

    # values
    def read(self, typename: str, names: list[str], *, computed: bool = True
             ) -> dict[str, dict[str, str]]:
        """{name: {attr: value}} with only the attributes that have a value."""
        if typename == "node":
            return self._read_nodes(names, computed)
        if typename == "site":
            site = self.db.site(self.conn)
            return {SITE_OBJECT: dict(site)} if SITE_OBJECT in names else {}
        t = objtype(typename)
        out: dict[str, dict[str, str]] = {n: {} for n in names}
        if typename == "group":
            self._group_extras(names, out)
        rows_by_table: dict[tuple[str, str], dict[str, dict]] = {}
        for defs in t.attrs.values():
            for d in defs:
                k = (d.table, d.keycol)
                if k not in rows_by_table:
                    rows_by_table[k] = self._rows_by(d.table, d.keycol, names, d.fixed)
        self._fill(t, names, out, lambda d, n: rows_by_table[(d.table, d.keycol)].get(n))
        return out

    def _rows_by(self, table: str, keycol: str, names: list[str],
                 fixed: tuple[tuple[str, str], ...]) -> dict[str, dict]:
        keys: list = names
        if TABLES[table].types.get(keycol, "").startswith("INTEGER"):  # log record ids
            keys = [int(n) for n in names if n.isdigit()]
        rows = self.db.rows(table, self.conn, keys=keys, keycol=keycol)
        out: dict[str, dict] = {}
        for r in rows:
            if all(r.get(c) == v for c, v in fixed):
                out.setdefault(str(r[keycol]), r)
        return out

    @staticmethod
    def _fill(t: ObjType, names: list[str], out: dict[str, dict[str, str]], lookup) -> None:
        # unconditional attributes first, so only_if conditions can see them
        for conditional in (False, True):
            for attr, defs in t.attrs.items():
                for name in names:
                    values = out[name]
                    if attr in values and not conditional:
                        continue
                    for d in defs:
                        if (d.only_if is not None) != conditional:
                            continue
                        if d.only_if and values.get(d.only_if[0]) != d.only_if[1]:
                            continue
                        row = lookup(d, name)
                        v = row.get(d.column) if row else None
                        if v not in (None, ""):
                            values[attr] = str(v)
                            break

    def _read_nodes(self, names: list[str], computed: bool) -> dict[str, dict[str, str]]:
        direct, conditional, wanted = _node_attr_map()
        cond_columns = {(d.table, d.column) for _, defs in conditional for d in defs}
        resolved = self.db.resolve(names, wanted, conn=self.conn, computed=computed)
        out: dict[str, dict[str, str]] = {}
        for name in names:
            vals = resolved[name]
            obj = {direct[tc]: v for tc, v in vals.items() if tc in direct}
            if not cond_columns.isdisjoint(vals):
                for attr, defs in conditional:
                    if attr in obj:
                        continue
                    for d in defs:
                        v = vals.get((d.table, d.column))
                        if v and (d.only_if is None or obj.get(d.only_if[0]) == d.only_if[1]):
                            obj[attr] = v
                            break
            if computed:
                for attr in nics.NIC_ATTRS:
                    if attr in obj and "!" in obj[attr]:
                        obj[attr] = self._nic_computed(name, attr, obj[attr])
            out[name] = obj
        self._keyed_elsewhere(names, out)
        return out

    @staticmethod
    def _nic_computed(node: str, attr: str, value: str) -> str:
        try:
            return nics.computed(value, node) or ""
        except RegexValueError as exc:
            raise DBError(f"{node}: bad regular expression value in {attr}: {exc}") from None

    def _keyed_elsewhere(self, names: list[str], out: dict[str, dict[str, str]]) -> None:
        """Node attributes in tables keyed by another column that holds the node's name
        (ppcdirect.hcp for passwd.HMC, ppchcp.hcp for an HMC's username): read directly,
        never inherited, as xCAT reads them."""
        defs = _elsewhere_defs()
        if not defs or not names:
            return
        rows: dict[tuple[str, str, tuple], dict[str, dict]] = {}
        for attr, d in defs:
            k = (d.table, d.keycol, d.fixed)
            if k not in rows:
                rows[k] = self._rows_by(d.table, d.keycol, names, d.fixed)
            if not rows[k]:
                continue
            for name in names:
                obj = out[name]
                if attr in obj or (d.only_if and obj.get(d.only_if[0]) != d.only_if[1]):
                    continue
                row = rows[k].get(name)
                v = row.get(d.column) if row else None
                if v not in (None, ""):
                    obj[attr] = str(v)

    def _group_extras(self, names: list[str], out: dict[str, dict[str, str]]) -> None:
        members = self.group_members(names)
        for name in names:
            if members.get(name) is not None:
                out[name]["members"] = ",".join(members[name])

    def group_members(self, groups: Iterable[str]) -> dict[str, list[str] | None]:
        groups = list(groups)
        rows = {r["groupname"]: r for r in self.db.rows("nodegroup", self.conn, keys=groups)}
        node_groups = self.db.node_groups(None, self.conn)
        static: dict[str, list[str]] = defaultdict(list)
        for node, gl in node_groups.items():
            for g in gl:
                static[g].append(node)
        out: dict[str, list[str] | None] = {}
        for g in groups:
            row = rows.get(g)
            if row and (row.get("grouptype") or "") == "dynamic":
                out[g] = sorted(self.dynamic_members(row.get("wherevals") or ""),
                                key=natural_key)
            else:
                out[g] = sorted(static.get(g, []), key=natural_key)
        return out

    def dynamic_members(self, wherevals: str) -> set[str]:
        nodes = self.db.all_nodes(self.conn)
        result = set(nodes)
        for cond in [c for c in wherevals.split("::") if c.strip()]:
            attr, op, value = parse_where(cond)
            result &= self.select_nodes(nodes, attr, op, value)
        return result

    def select_nodes(self, nodes: Iterable[str], attr: str, op: str, value: str) -> set[str]:
        table, col = node_column(attr)
        nodes = list(nodes)
        if op in ("=~", "!~") and len(value) > 1 and value.startswith("/") and value.endswith("/"):
            value = value[1:-1]
        if op in ("=~", "!~"):
            try:
                compile_pattern(value)
            except PatternError as exc:
                raise DBError(str(exc)) from None
        values = self.db.resolve(nodes, {table: [col]}, conn=self.conn)
        return {n for n in nodes if match_value(values[n].get((table, col)), op, value)}


@lru_cache(maxsize=1)
def _node_attr_map() -> tuple[dict[tuple[str, str], str], list[tuple[str, list[AttrDef]]],
                              dict[str, list[str]]]:
    """Node attributes by column: the unconditional ones map straight from (table, column);
    the others are chosen per node by their only_if condition."""
    direct: dict[tuple[str, str], str] = {}
    conditional: list[tuple[str, list[AttrDef]]] = []
    wanted: dict[str, list[str]] = defaultdict(list)
    for attr, defs in objtype("node").attrs.items():
        usable = [d for d in defs if not d.fixed and d.keycol == "node"]
        for d in usable:
            wanted[d.table].append(d.column)
        if len(usable) == 1 and usable[0].only_if is None and \
                (usable[0].table, usable[0].column) not in direct:
            direct[(usable[0].table, usable[0].column)] = attr
        elif usable:
            conditional.append((attr, usable))
    return direct, conditional, dict(wanted)


@lru_cache(maxsize=1)
def _elsewhere_defs() -> list[tuple[str, AttrDef]]:
    """Node attributes whose rows are not found by a ``node`` key column."""
    return [(attr, d) for attr, defs in objtype("node").attrs.items() for d in defs
            if d.fixed or d.keycol != "node"]


class _ResolvedRow:
    """Adapter: a node's resolved values look like a table row to ObjectStore._fill."""

    __slots__ = ("table", "values")

    def __init__(self, values: dict[tuple[str, str], str], table: str) -> None:
        self.values, self.table = values, table

    def get(self, column: str, default=None):
        return self.values.get((self.table, column), default)

    def __bool__(self) -> bool:
        return True


def split_attr_list(value: str | None) -> list[str]:
    return split_list(value)


# ---- writing objects -----------------------------------------------------------------------
@cache
def _spec(d: AttrDef) -> str:
    """Where plan() collects a definition's rows: table, key column, fixed key columns."""
    return f"{d.table}\0{d.keycol}\0" + ",".join(c for c, _ in d.fixed)


def _node_key_tables() -> list[str]:
    """Tables whose rows belong to a node (or group) by a ``node`` key column."""
    return [n for n, t in TABLES.items() if "node" in t.keys]


class ObjectWriter(ObjectStore):
    """Writes definitions inside the caller's transaction; any error rolls everything back."""

    def plan(self, typename: str, changes: Mapping[str, Mapping[str, str | None]],
             current: Mapping[str, Mapping[str, str]]) -> dict[str, dict[tuple, dict]]:
        """Turn {name: {attr: value}} into {table: {key tuple: {column: value}}}.

        ``current`` holds the objects' present values (for only_if conditions). Raises
        DBError naming the object and attribute when a value has nowhere to go.
        """
        t = objtype(typename)
        per_table: dict[str, dict[tuple, dict]] = defaultdict(dict)
        for name, attrs in changes.items():
            merged = {**current.get(name, {}), **{k: v for k, v in attrs.items() if v}}
            for attr, value in attrs.items():
                if typename == "site":
                    per_table["site"].setdefault((attr,), {})["value"] = value
                    continue
                if typename == "group" and attr == "members":
                    continue  # written through nodelist.groups by the caller
                d = t.column_of(attr, merged)
                if d is None:
                    cond = [x.only_if for x in t.attrs.get(attr, []) if x.only_if]
                    if not t.attrs.get(attr):
                        raise DBError(f"'{attr}' is not a valid attribute name for an object "
                                      f"type of '{typename}'.")
                    c_attr = cond[-1][0]
                    values = " or ".join(sorted({v for a, v in cond if a == c_attr}))
                    raise DBError(f"Cannot set the attr='{attr}' attribute unless {c_attr} "
                                  f"value is {values}.")
                key = (name, *(v for _, v in d.fixed)) if d.fixed else (name,)
                row = per_table[_spec(d)]
                row.setdefault(key, {})[d.column] = value
        return per_table

    def apply(self, per_table: Mapping[str, Mapping[tuple, dict]]) -> None:
        for spec, updates in per_table.items():
            if "\0" not in spec:
                self.db.set_rows(self.conn, spec, updates)
                continue
            table, keycol, fixed = spec.split("\0")
            keycols = (keycol,) + tuple(c for c in fixed.split(",") if c)
            tdef = TABLES[table]
            missing = [k for k in tdef.keys if k not in keycols]
            if missing:
                updates = self._fill_missing_keys(table, keycols, missing, updates)
            self.db.set_rows(self.conn, table, updates, keycols=keycols)

    def _fill_missing_keys(self, table: str, keycols: tuple[str, ...], missing: list[str],
                           updates: Mapping[tuple, dict]) -> dict[tuple, dict]:
        """A row found by a non-key column (networks by netname) needs its real keys to be
        inserted: they must come with the values, or the row must exist already."""
        existing = {tuple(r[k] for k in keycols)
                    for r in self.db.rows(table, self.conn, include_disabled=True)}
        out = {}
        for key, values in updates.items():
            if key not in existing:
                absent = [k for k in missing if not values.get(k)]
                if absent and TABLES[table].keys != ("node",) and table != "switch":
                    raise DBError(f"'{key[0]}': the {table} table needs "
                                  + " and ".join(absent) + " to create a definition.")
                values = {**{k: "" for k in absent}, **values}
            out[key] = values
        return out

    def delete(self, typename: str, names: list[str]) -> None:
        if typename == "node":
            for table in _node_key_tables():
                self.db.delete_rows(self.conn, table, "node", names)
            for table, keycol in {(d.table, d.keycol) for _, d in _elsewhere_defs()}:
                self.db.delete_rows(self.conn, table, keycol, names)
            return
        if typename == "site":
            raise DBError("The site definition cannot be removed.")
        t = objtype(typename)
        if typename == "group":
            self._remove_group_from_nodes(names)
            for table in _node_key_tables():
                self.db.delete_rows(self.conn, table, "node", names)
        for table, keycol in {(d.table, d.keycol) for defs in t.attrs.values() for d in defs}:
            if keycol != "node" or typename != "group":
                self.db.delete_rows(self.conn, table, keycol, names)

    def _remove_group_from_nodes(self, groups: list[str]) -> None:
        drop = set(groups)
        updates = {}
        for node, gl in self.db.node_groups(None, self.conn).items():
            if drop & set(gl):
                updates[(node,)] = {"groups": ",".join(g for g in gl if g not in drop)}
        if updates:
            self.db.set_rows(self.conn, "nodelist", updates)

    def rename(self, typename: str, old: str, new: str) -> None:
        if typename == "node":
            pairs = {(table, "node") for table in _node_key_tables()}
            pairs |= {(d.table, d.keycol) for _, d in _elsewhere_defs()}
        elif typename == "site":
            raise DBError("The site definition cannot be renamed.")
        else:
            t = objtype(typename)
            pairs = {(d.table, d.keycol) for defs in t.attrs.values() for d in defs}
        for table, keycol in pairs:
            self.db.update_match(self.conn, table, {keycol: old}, {keycol: new})
        if typename == "group":
            updates = {}
            for node, gl in self.db.node_groups(None, self.conn).items():
                if old in gl:
                    updates[(node,)] = {"groups": ",".join(new if g == old else g for g in gl)}
            if updates:
                self.db.set_rows(self.conn, "nodelist", updates)
            for table in _node_key_tables():
                self.db.update_match(self.conn, table, {"node": old}, {"node": new})
