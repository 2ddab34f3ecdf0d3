"""Node commands over the tables: nodels, nodeadd, noderm, nodech, nodegrpch."""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from xcatd.tables import SECRET_MASK, is_secret

from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.request import Request, Response, XcatError, not_found
from xcatd.db.database import TABLES, apply_list_op, match_value, split_list
from xcatd.db.objects import ObjectStore, ObjectWriter, node_column
from xcatd.handler import FLAG, TEXT, TEXTS, Context, command

_FILTER = re.compile(r"^([A-Za-z_][\w.]*?)(==|!=|=~|!~)(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Term:
    label: str          # what the admin typed
    table: str
    column: str


def _terms(words: list[str]) -> tuple[list[Term], list[tuple[Term, str, str]], bool]:
    """Split nodels arguments into displayed terms and filters; a bare table name shows
    every column of that table (and forces labels)."""
    shown: list[Term] = []
    filters: list[tuple[Term, str, str]] = []
    force_labels = False
    seen_filter: set[str] = set()
    for word in words:
        m = _FILTER.match(word)
        if m:
            label, op, value = m.groups()
            table, col = node_column(label)
            if label in seen_filter:
                raise XcatError(f"Multiple selection critera for {label}")
            seen_filter.add(label)
            if op in ("=~", "!~"):
                if len(value) > 1 and value.startswith("/") and value.endswith("/"):
                    value = value[1:-1]
                try:
                    re.compile(value)
                except re.error as exc:
                    raise XcatError(f"Invalid regular expression {value!r}: {exc}") from None
            filters.append((Term(label, table, col), op, value))
        elif word in TABLES and "node" in TABLES[word].columns:
            force_labels = True
            for col in TABLES[word].columns:
                if col != "node":
                    shown.append(Term(f"{word}.{col}", word, col))
        else:
            table, col = node_column(word)
            shown.append(Term(word, table, col))
    return shown, filters, force_labels


def _visible(ctx: Context, nodes: set[str], show_hidden: bool) -> set[str]:
    if show_hidden:
        return nodes
    hidden = {r["node"] for r in ctx.db.rows("nodelist") if (r.get("hidden") or "") in ("1", "yes")}
    return nodes - hidden


@command("nodels", noderange="optional",
         args={"attributes": TEXTS, "blame": FLAG, "show_hidden": FLAG, "show_secrets": FLAG,
               "with_fieldname": FLAG})
def nodels(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    a = req.args
    if nodes is None:
        names = _visible(ctx, ctx.all_nodes(), bool(a.get("show_hidden")))
    else:
        names = nodes.names
    shown, filters, force = _terms(list(a.get("attributes") or []))
    ordered = sorted(names, key=natural_key)
    if not shown and not filters:
        for n in ordered:
            yield Response(node=n)
        return
    ctx.check_selection([(t.table, t.column) for t, _op, _v in filters])
    wanted: dict[str, list[str]] = defaultdict(list)
    for term in shown + [f[0] for f in filters]:
        wanted[term.table].append(term.column)
    blame = bool(a.get("blame"))
    values = ctx.db.resolve(ordered, wanted, blame=blame,
                            groups=ctx.node_groups_if_loaded(ordered))
    labelled = force or bool(a.get("with_fieldname")) or len(shown) > 1
    show_secrets = bool(a.get("show_secrets"))
    for node in ordered:
        vals = values[node]
        if any(not match_value(_plain(vals.get((t.table, t.column))), op, v)
               for t, op, v in filters):
            continue
        if not shown:
            yield Response(node=node)
            continue
        for term in shown:
            raw = vals.get((term.table, term.column))
            text = _plain(raw) or ""
            if text and is_secret(term.table, term.column) and not show_secrets:
                text = SECRET_MASK
            # --json: {"nodelist.groups": "all", "inherited": {"nodelist.groups": "compute"}}
            key = f"{term.table}.{term.column}"
            obj: dict = {key: text}
            if blame and raw and raw[1] != node:
                obj["inherited"] = {key: raw[1]}
                text = f"{text} (inherited from group {raw[1]})"
            yield Response(node=node, data=f"{term.label}: {text}" if labelled else text,
                           obj=obj)


def _plain(v):
    return v[0] if isinstance(v, tuple) else v


# ---- assignments shared by nodeadd, nodech, nodegrpch ---------------------------------------
@dataclass(frozen=True)
class Assignment:
    table: str
    column: str
    op: str        # "=", ",=", "^="
    value: str


def parse_assignments(words: list[str], command_name: str
                      ) -> tuple[list[Assignment], list[tuple[str, str, str, str]]]:
    """'table.col=v', 'groups,=g', 'attr^=v' and selections 'col==v' (which pick nodes)."""
    assigns: list[Assignment] = []
    selects: list[tuple[str, str, str, str]] = []
    for word in words:
        m = _FILTER.match(word)
        if m:
            label, op, value = m.groups()
            table, col = node_column(label)
            selects.append((table, col, op, value))
            continue
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise XcatError(f"Malformed argument {word}")
        op = "="
        if name.endswith((",", "^")):
            op, name = name[-1] + "=", name[:-1]
        value = value.removeprefix("@")
        table, col = node_column(name)
        if table == "nodelist" and col == "node":
            raise XcatError("The node name cannot be changed with " + command_name)
        if col in TABLES[table].keys and col != "node":
            raise XcatError(f"{table}.{col} is a key column and cannot be set with "
                            f"{command_name}; use chtab")
        assigns.append(Assignment(table, col, op, value))
    return assigns, selects


def _check_dynamic(ctx: Context, conn, assigns: list[Assignment]) -> None:
    groups = set()
    for a in assigns:
        if (a.table, a.column) == ("nodelist", "groups") and a.op != "^=":
            groups.update(split_list(a.value))
    if not groups:
        return
    for row in ctx.db.rows("nodegroup", conn, keys=groups):
        if (row.get("grouptype") or "") == "dynamic":
            raise XcatError(f"nodegroup {row['groupname']} is a dynamic node group, should not "
                            "add a node into a dynamic node group statically.")


def write_assignments(ctx: Context, conn, nodes: list[str], assigns: list[Assignment]) -> None:
    """Apply assignments to many nodes with one read and one write per table."""
    per_table: dict[str, list[Assignment]] = defaultdict(list)
    for a in assigns:
        per_table[a.table].append(a)
    list_ops = {a.table: [a.column] for a in assigns if a.op != "="}
    current = ctx.db.resolve(nodes, {t: [a.column for a in per_table[t] if a.op != "="]
                                     for t in list_ops}, conn=conn, computed=False) \
        if list_ops else {}
    for table, items in per_table.items():
        updates: dict[tuple, dict] = {}
        for node in nodes:
            row: dict[str, str | None] = {}
            for a in items:
                base = row.get(a.column) if a.column in row else \
                    current.get(node, {}).get((table, a.column))
                row[a.column] = apply_list_op(base, a.op, a.value)
            updates[(node,)] = row
        if TABLES[table].keys != ("node",):
            keycols = ("node",)
            existing = {r["node"] for r in ctx.db.rows(table, conn, keys=nodes)}
            for key, row in updates.items():
                if key[0] not in existing:
                    for k in TABLES[table].keys:
                        if k != "node":
                            row.setdefault(k, "")
            ctx.db.set_rows(conn, table, updates, keycols=keycols)
        else:
            ctx.db.set_rows(conn, table, updates)


def _select(ctx: Context, conn, nodes: list[str], selects) -> list[str]:
    ctx.check_selection([(t, c) for t, c, _op, _v in selects])
    if not selects:
        return nodes
    wanted: dict[str, list[str]] = defaultdict(list)
    for table, col, _, _ in selects:
        wanted[table].append(col)
    values = ctx.db.resolve(nodes, wanted, conn=conn)
    return [n for n in nodes
            if all(match_value(values[n].get((t, c)), op, v) for t, c, op, v in selects)]


# ---- nodeadd / nodech / noderm / nodegrpch ---------------------------------------------------
@command("nodeadd", noderange="new", writes=True, args={"assignments": TEXTS})
def nodeadd(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    assigns, _ = parse_assignments(list(req.args.get("assignments") or []), "nodeadd")
    if not any((a.table, a.column) == ("nodelist", "groups") for a in assigns):
        raise XcatError("Usage: nodeadd <noderange> groups=<groupnames> "
                        "[table.column=value] [...]")
    names = nodes.sorted() if nodes else []
    if not names:
        raise not_found(f"No node in '{req.noderange}', check the noderange syntax.")
    for n in names:
        if n != n.lower():
            yield Response(warning=f"The node name '{n}' contains capital letters which may not "
                                   "be resolved correctly by the dns server.")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", n):
            raise XcatError(f"Invalid node name '{n}'")
    with ctx.db.begin() as conn:
        _check_dynamic(ctx, conn, assigns)
        existing = ctx.db.all_nodes(conn)
        new = [(n,) for n in names if n not in existing]
        if new:
            ctx.db.set_rows(conn, "nodelist", {k: {} for k in new})
        write_assignments(ctx, conn, names, assigns)


@command("nodech", noderange="required", writes=True,
         args={"assignments": TEXTS, "delete": FLAG})
def nodech(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    names = nodes.sorted() if nodes else []
    words = list(req.args.get("assignments") or [])
    if req.args.get("delete"):
        if not words:
            raise XcatError("Usage: nodech {-d | --delete} <noderange> <table> [...]")
        for w in words:
            if "." in w or "=" in w:
                raise XcatError(". and = not valid in delete mode.")
            if w not in TABLES or "node" not in TABLES[w].keys:
                raise XcatError(f"{w} is not a table with node rows")
        with ctx.db.begin() as conn:
            for table in words:
                ctx.db.delete_rows(conn, table, "node", names)
        return
    assigns, selects = parse_assignments(words, "nodech")
    if not assigns:
        raise XcatError("Usage: nodech <noderange> table.column=value [...]")
    with ctx.db.begin() as conn:
        _check_dynamic(ctx, conn, assigns)
        write_assignments(ctx, conn, _select(ctx, conn, names, selects), assigns)
    return iter(())


@command("noderm", noderange="required", writes=True, args={})
def noderm(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    names = nodes.sorted() if nodes else []
    with ctx.db.begin() as conn:
        ObjectWriter(ctx.db, conn).delete("node", names)
    return iter(())


@command("nodegrpch", writes=True, args={"groups": TEXT, "assignments": TEXTS})
def nodegrpch(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    groups = split_list(req.args.get("groups"))
    words = list(req.args.get("assignments") or [])
    if not groups or not words:
        raise XcatError("Usage: nodegrpch <group1,group2,...> [table.column=value] [...]")
    assigns, selects = parse_assignments(words, "nodegrpch")
    if selects:
        raise XcatError("Selections are not supported by nodegrpch")
    for a in assigns:
        if (a.table, a.column) == ("nodelist", "groups"):
            raise XcatError("Group membership is not changeable via nodegrpch")
        if a.op != "=":
            raise XcatError(",= and ^= are not supported by nodegrpch")
        if a.table == "nodelist":
            raise XcatError(f"{a.table}.{a.column} is kept per node and cannot be set on a group")
    with ctx.db.begin() as conn:
        store = ObjectStore(ctx.db, conn)
        known = store.group_names()
        unknown = [g for g in groups if g not in known]
        if unknown:
            raise XcatError(f"Invalid group name(s): {','.join(unknown)}")
        members = store.group_members(groups)
        write_assignments(ctx, conn, groups, assigns)
        # the group value must win: clear the members' own values of those columns
        clear = [Assignment(a.table, a.column, "=", "") for a in assigns]
        nodes = sorted({n for g in groups for n in (members.get(g) or [])}, key=natural_key)
        if nodes:
            _clear_own(ctx, conn, nodes, clear)
    return iter(())


def _clear_own(ctx: Context, conn, nodes: list[str], clear: list[Assignment]) -> None:
    per_table: dict[str, dict[str, None]] = defaultdict(dict)
    for a in clear:
        per_table[a.table][a.column] = None
    for table, cols in per_table.items():
        present = {r["node"] for r in ctx.db.rows(table, conn, keys=nodes)}
        if present:
            ctx.db.set_rows(conn, table, {(n,): dict(cols) for n in present},
                            keycols=("node",))
