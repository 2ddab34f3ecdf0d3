"""Changing object definitions (mkdef, chdef): the checks xCAT makes and the writes, all in
the caller's transaction, so one command changes every object or none.

An attribute name may carry a list operator, as nodech's words do: ``groups,`` adds the
value to the front of the comma list (``groups,=rack2`` on the command line) and
``groups^`` removes it. The nic attributes take an interface after a dot
(``nicips.eth0``), merged into the nics table's ``eth0!...`` lists.

>>> list_op("groups,"), list_op("groups^"), list_op("groups")
(('groups', ',='), ('groups', '^='), ('groups', '='))
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from xcatd.base.regexval import RegexValueError, compute, is_regex_value
from xcatd.base.request import ErrorKind, XcatError
from xcatd.db import nics
from xcatd.db.database import DBError, apply_list_op, parse_where, split_list
from xcatd.db.objects import DEFINABLE, SITE_OBJECT, ObjectWriter, objtype
from xcatd.tables import SECRET_MASK, is_secret

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ATTR_NAME = re.compile(r"[\w.:-]+[,^]?")
#: Group attributes a dynamic group keeps (it takes no node attributes).
DYNAMIC_GROUP_ATTRS = {"grouptype", "members", "wherevals", "usercomment"}
#: Attributes whose list separator is not a comma.
SEPARATORS = {"wherevals": "::"}
POSTSCRIPT_ATTRS = ("postscripts", "postbootscripts")


def list_op(key: str) -> tuple[str, str]:
    """'groups,' -> ('groups', ',='); an attribute name without operator -> '='."""
    if key.endswith((",", "^")):
        return key[:-1], key[-1] + "="
    return key, "="


@dataclass
class Item:
    """One object a command defines or changes."""

    name: str
    objtype: str
    attrs: dict[str, str]


@dataclass
class Outcome:
    count: int = 0
    new: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Failed(XcatError):
    """Every problem found, one per line, and nothing changed."""

    def __init__(self, errors: list[str], kind: ErrorKind) -> None:
        super().__init__("\n".join(errors + [
            "One or more errors occured when attempting to create or modify xCAT object "
            "definitions; no definition was changed."]), kind=kind)


def secret_attrs(typename: str) -> set[str]:
    if typename == "site":
        return set()
    return {name for name, defs in objtype(typename).attrs.items()
            if any(is_secret(d.table, d.column) for d in defs)}


def known_attrs(typename: str) -> set[str] | None:
    """Attribute names of a type; None for site, whose attributes are any site key."""
    if typename == "site":
        return None
    return set(objtype(typename).attrs) | {"members"}


def check_attr_names(typename: str, name: str, attrs: Mapping[str, str]) -> None:
    known = known_attrs(typename)
    for key in attrs:
        attr, _ = list_op(key)
        if not _ATTR_NAME.fullmatch(key):
            raise XcatError(f"Invalid attribute name '{key[:64]}'")
        if known is None:
            continue
        sub = nics.sub_attr(attr) if typename in ("node", "group") else None
        if sub:
            try:
                nics.check_nic(attr, sub[1])
            except nics.NicAttrError as exc:
                raise XcatError(str(exc)) from None
            attr = sub[0]
        if attr not in known:
            raise XcatError(f"'{attr}' is not a valid attribute name for an object type of "
                            f"'{typename}'.")
    if typename in ("node", "group") and not _NAME.fullmatch(name):
        raise XcatError(f"Invalid {typename} name '{name}'")


class Definer:
    """mkdef/chdef's writes for one command: ``define`` checks everything, then writes."""

    def __init__(self, writer: ObjectWriter, *, create: bool, force: bool = False,
                 mode: str | None = None, wheres: list[str] | None = None) -> None:
        self.w = writer
        self.create, self.force, self.mode = create, force, mode
        self.wheres = wheres or []
        self.errors: list[str] = []
        self.kind = ErrorKind.BAD_REQUEST
        self.out = Outcome()

    def _error(self, message: str, kind: ErrorKind | None = None) -> None:
        self.errors.append(message)
        if kind is not None and self.kind == ErrorKind.BAD_REQUEST:
            self.kind = kind

    def define(self, items: list[Item]) -> Outcome:
        by_type: dict[str, list[Item]] = {}
        for item in items:
            if item.objtype not in DEFINABLE:
                raise XcatError(f"'{item.objtype}' is not a valid object type.")
            check_attr_names(item.objtype, item.name, item.attrs)
            by_type.setdefault(item.objtype, []).append(item)
        for typename, objs in by_type.items():
            self._define_type(typename, objs)
        if self.errors:
            raise Failed(self.errors, self.kind)
        return self.out

    # ---- one type ----------------------------------------------------------------------
    def _define_type(self, typename: str, objs: list[Item]) -> None:
        names = [o.name for o in objs]
        existing = self.w.exists(typename, names)
        if self.create and typename != "site":
            dup = [n for n in names if n in existing]
            if dup and not self.force:
                for n in dup:
                    self._error(f"A definition for '{n}' already exists.\nTo remove the old "
                                "definition and replace it with a new definition use the "
                                "force '-f' option.\nTo change the existing definition use "
                                "the 'chdef' command.", ErrorKind.CONFLICT)
                return
            if dup:  # the transaction keeps the old one if the new one fails its checks
                self.w.delete(typename, dup)
                existing = set()
        new = [n for n in names if n not in existing]
        if self.mode == "minus" and new:
            self._error(f"The '-m' option is not valid since the '{new[0]}' definition does "
                        "not exist.", ErrorKind.NOT_FOUND)
            return
        current = self.w.read(typename, [n for n in names if n in existing],
                              computed=False) if existing else {}
        sources = self._postscript_sources(typename, objs, existing)
        changes: dict[str, dict[str, str | None]] = {}
        conditions: dict[str, dict[str, str]] = {}
        for o in objs:
            cur = current.get(o.name, {})
            attrs = self._object_attrs(typename, o, cur, o.name in existing, sources)
            if attrs is None:
                continue
            changes[o.name] = {k: (v if v != "" else None) for k, v in attrs.items()}
            conditions[o.name] = cur
        if typename == "node":
            self._inherit_conditions(changes, conditions)
        if typename == "network":
            self._check_networks(changes, current, existing)
        if typename == "group":
            self._write_members(changes)
            for name in changes:  # a static group needs a nodegroup row to exist unlisted
                if name not in existing:
                    changes[name].setdefault("grouptype", "static")
        if self.errors:
            return
        try:
            plan = self.w.plan(typename, changes, conditions)
        except DBError as exc:
            self._error(str(exc))
            return
        if typename == "group":  # rows in node tables keyed by the group name
            for name in changes:
                if name not in existing:
                    plan.setdefault("nodegroup\0groupname\0", {}).setdefault((name,), {})
        self.w.apply(plan)
        self.out.count += len(changes)
        self.out.new += [n for n in new if n in changes]

    def _object_attrs(self, typename: str, o: Item, cur: dict[str, str], exists: bool,
                      sources: dict) -> dict[str, str] | None:
        """The values to write for one object, or None (its errors are recorded)."""
        attrs = dict(o.attrs)
        if typename == "node" and not exists and not attrs.get("groups"):
            if self.create:
                self._error(f"Attribute 'groups' is not specified for node '{o.name}', "
                            "skipping to the next node.")
                return None
            attrs["groups"] = "all"  # chdef creates missing nodes in group all
        if typename == "group":
            row_type = attrs.get("grouptype") or cur.get("grouptype")
            extra = {list_op(k)[0] for k in attrs} - DYNAMIC_GROUP_ATTRS
            if row_type == "dynamic" and extra:
                self._error(f"Can not assign attributes to dynamic node group '{o.name}'.")
                return None
        before = len(self.errors)
        self._keep_masked(typename, o.name, attrs, cur)
        if typename in ("node", "group"):
            self._drop_default_postscripts(o.name, attrs, cur, sources)
            attrs = self._merge_nics(typename, o.name, attrs, cur)
        attrs = self._list_ops(attrs, cur)
        if self.mode:
            attrs = self._list_edit(typename, o.name, attrs, cur)
        return attrs if len(self.errors) == before else None

    # ---- values ------------------------------------------------------------------------
    def _keep_masked(self, typename: str, name: str, attrs: dict[str, str],
                     stored: dict[str, str]) -> None:
        """A masked secret (from lsdef -z) means 'keep the stored one', never '********'."""
        for attr in [a for a, v in attrs.items() if v == SECRET_MASK]:
            if attr not in secret_attrs(typename):
                continue
            if stored.get(attr):
                del attrs[attr]
            else:
                self._error(f"'{attr}' of '{name}' is masked ({SECRET_MASK}) and there is no "
                            "stored value to keep; give the real value.")

    def _merge_nics(self, typename: str, name: str, attrs: dict[str, str],
                    cur: dict[str, str]) -> dict[str, str]:
        """nicips.eth0=... merged into the object's nicips (its own or inherited list)."""
        subs: dict[str, dict[str, str]] = {}
        out = {}
        for key, value in attrs.items():
            attr, op = list_op(key)
            sub = nics.sub_attr(attr)
            if sub is None:
                out[key] = value
                continue
            if op != "=" or self.mode:
                self._error("chdef does not support to change the nic related attributes "
                            "with -m or -p flag.")
                continue
            subs.setdefault(sub[0], {})[sub[1]] = value
        for base, updates in subs.items():
            start = out.get(base, cur.get(base))
            if is_regex_value(start):  # one regex for every interface (a group's row)
                if typename != "node":
                    self._error(f"{base} of '{name}' is one regular expression for every "
                                f"interface: set {base}, not {base}.<nic>.")
                    continue
                try:
                    start = compute(start, name)  # the node's own row: its own values
                except RegexValueError as exc:
                    self._error(f"{name}: bad regular expression value in {base}: {exc}")
                    continue
            out[base] = nics.merge(start, updates) or ""
        return out

    def _list_ops(self, attrs: dict[str, str], cur: dict[str, str]) -> dict[str, str]:
        """attr,=v and attr^=v against the value so far (nodech's operators)."""
        out = {k: v for k, v in attrs.items() if list_op(k)[1] == "="}
        for key, value in attrs.items():
            attr, op = list_op(key)
            if op == "=":
                continue
            start = out.get(attr, cur.get(attr))
            out[attr] = apply_list_op(start, op, value) or ""
        return out

    def _list_edit(self, typename: str, name: str, attrs: dict[str, str],
                   current: dict[str, str]) -> dict[str, str]:
        """-p adds the values to the lists, -m removes them (an absent one is an error)."""
        out = {}
        for attr, value in attrs.items():
            sep = SEPARATORS.get(attr, ",")
            have = [x for x in (current.get(attr) or "").split(sep) if x]
            items = [x for x in value.split(sep) if x]
            if self.mode == "plus":
                out[attr] = sep.join(have + [x for x in items if x not in have])
                continue
            for x in items:
                if x in have:
                    continue
                if typename == "group" and attr == "members":
                    self._error(f"{x} is not a member of '{name}'.")
                else:
                    self._error(f"{x} is not in the attribute of '{attr}' for the '{name}' "
                                "definition.")
            out[attr] = sep.join(x for x in have if x not in items)
        return out

    # ---- postscripts -------------------------------------------------------------------
    def _postscript_sources(self, typename: str, objs: list[Item], existing: set[str]
                            ) -> dict:
        """xcatdefaults' postscripts, and where each object's current ones come from."""
        if typename not in ("node", "group") or not any(
                list_op(k)[0] in POSTSCRIPT_ATTRS for o in objs for k in o.attrs):
            return {}
        rows = self.w.db.rows("postscripts", self.w.conn, keys=["xcatdefaults"])
        defaults = {attr: split_list(rows[0].get(attr)) if rows else []
                    for attr in POSTSCRIPT_ATTRS}
        blamed: dict[str, dict] = {}
        nodes = [o.name for o in objs if o.name in existing and typename == "node"]
        if nodes and self.mode == "plus":
            blamed = self.w.db.resolve(nodes, {"postscripts": list(POSTSCRIPT_ATTRS)},
                                       conn=self.w.conn, blame=True, computed=False)
        return {"defaults": defaults, "blamed": blamed}

    def _drop_default_postscripts(self, name: str, attrs: dict[str, str],
                                  cur: dict[str, str], sources: dict) -> None:
        """A postscript xcatdefaults runs already is dropped with xCAT's warning; with -p,
        one already in the object's list (its own or a group's) is named too."""
        if not sources or name == "xcatdefaults":
            return
        for key in [k for k in attrs if list_op(k)[0] in POSTSCRIPT_ATTRS]:
            attr, op = list_op(key)
            if op == "^=" or self.mode == "minus":
                continue
            keep = []
            for script in split_list(attrs[key]):
                if script in sources["defaults"][attr]:
                    self.out.warnings.append(f"{name}: {attr} '{script}' is already included "
                                             "in the 'xcatdefaults'.")
                    continue
                if self.mode == "plus" and script in split_list(cur.get(attr)):
                    got = sources["blamed"].get(name, {}).get(("postscripts", attr))
                    where = got[1] if got else name
                    self.out.warnings.append(f"{name}: {attr} '{script}' is already included "
                                             f"in the '{where}'.")
                keep.append(script)
            attrs[key] = ",".join(keep)

    # ---- conditions, networks, groups --------------------------------------------------
    def _inherit_conditions(self, changes: dict[str, dict], conditions: dict[str, dict]
                            ) -> None:
        """bmc needs mgt=ipmi: a value the node's groups give counts, as in xCAT."""
        wanted = {n: split_list(c.get("groups") or conditions[n].get("groups"))
                  for n, c in changes.items()}
        groups = sorted({g for gl in wanted.values() for g in gl})
        if not groups:
            return
        present = self.w.exists("group", groups)
        values = self.w.read("group", sorted(present), computed=False) if present else {}
        for node, gl in wanted.items():
            inherited: dict[str, str] = {}
            for g in reversed(gl):  # the first group wins
                inherited.update({k: v for k, v in values.get(g, {}).items() if v})
            conditions[node] = {**inherited, **conditions[node]}

    def _check_networks(self, changes: dict[str, dict], current: dict[str, dict],
                        existing: set[str]) -> None:
        others = self.w.read("network", self.w.names("network"))
        taken: dict[tuple[str, str], str] = {}
        for name, v in others.items():
            if name not in changes and v.get("net") and v.get("mask"):
                taken[(v["net"], v["mask"])] = name
        for name, attrs in changes.items():
            merged = {**current.get(name, {}), **attrs}
            net, mask = merged.get("net"), merged.get("mask")
            if name not in existing and not (net and mask):
                self._error(f"Net or mask value should not be empty for xCAT network object "
                            f"'{name}'.")
                continue
            for attr, value in (("net", net), ("mask", mask)):
                if not value:
                    self._error(f"Attribute '{attr}' is not specified for network entry "
                                f"'{name}', skipping.")
            other = taken.get((net, mask))
            if other:
                self._error(f"A network definition called '{other}' already exists that "
                            "contains the same net and mask values. Cannot create a "
                            f"definition for '{name}'.", ErrorKind.CONFLICT)
            taken[(net, mask)] = name

    def _write_members(self, changes: dict[str, dict]) -> None:
        """Static group membership lives in each node's nodelist.groups."""
        all_nodes = self.w.db.all_nodes(self.w.conn)
        node_groups = self.w.db.node_groups(None, self.w.conn)
        updates: dict[tuple, dict] = {}
        for group, attrs in changes.items():
            if "members" not in attrs or attrs.get("grouptype") == "dynamic":
                continue
            wanted = split_list(attrs.pop("members") or "")
            missing = [n for n in wanted if n not in all_nodes]
            for n in missing:
                self._error(f"Could not find a node named '{n}', skipping to the next node.",
                            ErrorKind.NOT_FOUND)
            for node, gl in node_groups.items():
                groups = updates.get((node,), {}).get("groups")
                gl = split_list(groups) if groups is not None else gl
                if node in wanted and group not in gl:
                    updates[(node,)] = {"groups": ",".join(gl + [group])}
                elif node not in wanted and group in gl:
                    updates[(node,)] = {"groups": ",".join(g for g in gl if g != group)}
        if updates and not self.errors:
            self.w.db.set_rows(self.w.conn, "nodelist", updates)


def check_wheres(wheres: list[str]) -> None:
    for w in wheres:
        try:
            parse_where(w)
        except DBError as exc:
            raise XcatError(str(exc)) from None


def site_names(names: list[str]) -> None:
    bad = [n for n in names if n != SITE_OBJECT]
    if bad:
        raise XcatError(f"The site definition is named '{SITE_OBJECT}', not "
                        f"'{','.join(bad)}'.")
