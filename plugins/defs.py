"""Object definitions: lsdef, mkdef, chdef, rmdef (node, group, osimage, network, site,
policy, ...). Every change of one command is one transaction: all objects or none."""
from __future__ import annotations

import re
from collections.abc import Iterator

from xcatd.tables import SECRET_MASK, is_secret

from xcatd.base.request import ErrorKind, Request, Response, XcatError, conflict, not_found
from xcatd.db.database import DBError, match_value, parse_where, split_list
from xcatd.db.objects import (
    DEFINABLE,
    SITE_OBJECT,
    ObjectStore,
    ObjectWriter,
    attr_columns,
    objtype,
)
from xcatd.handler import ATTRS, FLAG, TEXT, TEXTS, Context, command

STANZA_HEADER = "# <xCAT data object stanza file>"


def _types(req: Request) -> list[str]:
    types = split_list(req.args.get("type")) or ["node"]
    for t in types:
        if t not in DEFINABLE:
            raise XcatError(f"'{t}' is not a valid object type. Valid types: "
                            + ", ".join(DEFINABLE))
    return types


def _secret_attrs(typename: str) -> set[str]:
    if typename == "site":
        return set()
    return {name for name, defs in objtype(typename).attrs.items()
            if any(is_secret(d.table, d.column) for d in defs)}


def _names(req: Request, ctx: Context, store: ObjectStore, typename: str, *,
           must_exist: bool) -> list[str]:
    """Object names from -o / the noderange; node names go through noderange expansion."""
    text = req.args.get("objects") or req.noderange
    if not text:
        return []
    if typename == "node":
        nodes = ctx.expand(text, verify=must_exist)
        if not nodes and must_exist:
            raise not_found(f"No node in '{text}', check the noderange syntax.")
        return nodes.sorted()
    names = split_list(text)
    if typename == "site":
        bad = [n for n in names if n != SITE_OBJECT]
        if bad:
            raise XcatError(f"The site definition is named '{SITE_OBJECT}', not "
                            f"'{','.join(bad)}'.")
    if must_exist:
        present = store.exists(typename, names)
        missing = [n for n in names if n not in present]
        if missing:
            raise not_found("\n".join(f"Could not find an object named '{n}' of type "
                                       f"'{typename}'." for n in missing))
    return names


def _where_filter(ctx: Context, store: ObjectStore, typename: str, names: list[str],
                  wheres: list[str], values: dict[str, dict[str, str]] | None = None
                  ) -> list[str]:
    if not wheres:
        return names
    conds = []
    for w in wheres:
        attr, op, value = parse_where(w)
        ctx.check_selection(attr_columns(typename, attr), attr)
        if op in ("=~", "!~") and len(value) > 1 and value[0] == "/" and value[-1] == "/":
            value = value[1:-1]
        conds.append((attr, op, value))
    values = values if values is not None else store.read(typename, names)
    return [n for n in names
            if all(match_value(values.get(n, {}).get(a), op, v) for a, op, v in conds)]


#: What lsdef, mkdef, chdef and rmdef take (each reads its own; the CLI sends the same set)
DEF_ARGS = {"type": TEXT, "objects": TEXT, "where": TEXTS, "all": FLAG, "long": FLAG,
            "short": FLAG, "info": TEXT, "compress": FLAG, "stanza": FLAG, "show_hidden": FLAG,
            "show_secrets": FLAG, "force": FLAG, "dynamic": FLAG, "plus": FLAG, "minus": FLAG,
            "newname": TEXT, "attributes": ATTRS}


def _def_nodes(req: Request, ctx: Context):
    """The nodes a mkdef/chdef/rmdef of type node changes, for their locks."""
    text = req.args.get("objects") or req.noderange
    if text and "node" in (split_list(req.args.get("type")) or ["node"]) \
            and not req.args.get("stanza"):
        return ctx.expand(text, verify=False)  # an error: policy fails closed
    return None


# ---- lsdef ---------------------------------------------------------------------------------
@command("lsdef", lock_nodes=_def_nodes, args=DEF_ARGS)
def lsdef(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    a = req.args
    types = list(DEFINABLE) if a.get("all") else _types(req)
    explicit = bool(a.get("objects") or req.noderange)
    long = a.get("long") or (explicit and not a.get("short")) or bool(a.get("info"))
    wanted = split_list(a.get("info"))
    if a.get("compress") and not (wanted or a.get("long")):
        raise XcatError("The '-c' option is only valid with '-i' or '-l'.")
    found = 0
    with ctx.db.connect() as conn:
        store = ObjectStore(ctx.db, conn)
        if a.get("stanza"):
            yield Response(data=STANZA_HEADER)
        for typename in types:
            names = _names(req, ctx, store, typename, must_exist=True) if explicit \
                else store.names(typename)
            if typename == "node" and not a.get("show_hidden") and not explicit:
                names = _unhidden(store, names)
            need_values = long or a.get("where") or a.get("stanza")
            values = store.read(typename, names) if need_values else {}
            names = _where_filter(ctx, store, typename, names, a.get("where") or [], values)
            known = _known_attrs(typename)
            for bad in [w for w in wanted if known is not None and w not in known]:
                raise not_found(f"'{bad}' is not a valid attribute name for an object type "
                                f"of '{typename}'.")
            found += len(names)
            yield from _print_objects(typename, names, values, a, long, wanted, len(types) > 1)
    if not found:
        if a.get("where"):
            return
        if not explicit:
            yield Response(data="Could not find any objects to display.")


def _known_attrs(typename: str) -> set[str] | None:
    """Attribute names of a type; None for site, whose attributes are any site key."""
    if typename == "site":
        return None
    return set(objtype(typename).attrs) | {"members"}


def _unhidden(store: ObjectStore, names: list[str]) -> list[str]:
    hidden = {r["node"] for r in store.db.rows("nodelist", store.conn)
              if (r.get("hidden") or "") in ("1", "yes")}
    return [n for n in names if n not in hidden]


def _print_objects(typename: str, names: list[str], values: dict, a: dict, long: bool,
                   wanted: list[str], several_types: bool) -> Iterator[Response]:
    secrets = set() if a.get("show_secrets") else _secret_attrs(typename)

    objkey = objtype(typename).objkey if typename != "site" else None

    def shown(name: str) -> list[tuple[str, str]]:
        vals = values.get(name, {})
        attrs = wanted or sorted(a for a in vals if a != objkey)
        out = []
        for attr in attrs:
            v = vals.get(attr, "")
            if v and attr in secrets:
                v = SECRET_MASK
            out.append((attr, v))
        return out

    for name in names:
        if a.get("stanza"):
            lines = [f"\n{name}:", f"    objtype={typename}"]
            lines += [f"    {k}={v}" for k, v in shown(name) if v != "" or wanted]
            yield Response(data="\n".join(lines))
        elif a.get("short") or not long:
            yield Response(data=f"{name}  ({typename})", obj={"name": name, "type": typename})
        elif a.get("compress"):
            for k, v in shown(name):
                yield Response(node=name, data=f"{k}={v}")
        else:
            title = f"Object name: {name}" + (f"  ({typename})" if several_types else "")
            attrs = shown(name)
            body = [f"    {k}={v}" for k, v in attrs]
            yield Response(data="\n".join([title, *body]),
                           obj={"name": name, "type": typename, "attributes": dict(attrs)})


# ---- mkdef / chdef -------------------------------------------------------------------------
def _attributes(args: dict) -> dict[str, str]:
    """The request's {attr: value} (the CLI parses attr=value words, REST sends JSON)."""
    attrs = args.get("attributes") or {}
    if not isinstance(attrs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()):
        raise XcatError("attributes must be an object of attribute names and string values")
    for name in attrs:
        if not re.fullmatch(r"[\w.-]+", name):
            raise XcatError(f"Invalid attribute name '{name[:64]}'")
    return dict(attrs)


def parse_stanzas(text: str) -> list[tuple[str, str, dict[str, str]]]:
    """xCAT stanza files: 'name:' then indented 'attr=value' lines; '#' comments."""
    out: list[tuple[str, str, dict[str, str]]] = []
    current: tuple[str, dict[str, str]] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line and line.endswith(":"):
            current = (line[:-1].strip(), {})
            out.append((current[0], "", current[1]))
            continue
        if current is None:
            raise XcatError(f"Stanza line {lineno}: '{line}' is outside any object stanza")
        name, sep, value = line.partition("=")
        if not sep:
            raise XcatError(f"Stanza line {lineno}: '{line}' is not attr=value")
        current[1][name.strip()] = value.strip()
    result = []
    for name, _, attrs in out:
        objt = attrs.pop("objtype", "")
        if not objt:
            raise XcatError(f"No objtype value was specified for '{name}'. Cannot create "
                            "object definition.")
        result.append((name, objt, attrs))
    return result


def _validate(typename: str, name: str, attrs: dict[str, str]) -> None:
    known = _known_attrs(typename)
    if known is None:
        return
    for attr in attrs:
        if attr not in known:
            raise XcatError(f"'{attr}' is not a valid attribute name for an object type of "
                            f"'{typename}'.")
    if typename in ("node", "group") and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise XcatError(f"Invalid {typename} name '{name}'")


def _requests(req: Request, ctx: Context, store: ObjectStore, creating: bool
              ) -> list[tuple[str, str, dict[str, str]]]:
    a = req.args
    if a.get("stanza"):
        if a.get("objects") or req.noderange:
            raise XcatError("Cannot use '-z' with '-o' or a noderange.")
        if a.get("type"):
            raise XcatError("Cannot combine '-t' and '-a', '-z', or '-x' options.")
        return parse_stanzas(req.stdin or "")
    typename = _types(req)[0]
    attrs = _attributes(a)
    if a.get("dynamic"):
        if typename != "group":
            raise XcatError("The '-d' option is only valid for group definitions.")
        if not a.get("where"):
            raise XcatError("The 'where' attributes and values were not provided for dynamic "
                            "group.")
        for w in a["where"]:
            parse_where(w)
        attrs = {**attrs, "grouptype": "dynamic", "members": "dynamic",
                 "wherevals": "::".join(a["where"])}
    if typename == "site" and not (a.get("objects") or req.noderange):
        names = [SITE_OBJECT]
    elif typename == "node":
        names = _names(req, ctx, store, typename, must_exist=False)
    else:
        names = _names(req, ctx, store, typename, must_exist=False)
    if not names:
        raise XcatError("No object names were provided.")
    return [(n, typename, dict(attrs)) for n in names]


@command("mkdef", writes=True, lock_nodes=_def_nodes, args=DEF_ARGS)
def mkdef(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    if req.args.get("plus") or req.args.get("minus"):
        raise XcatError("The '-p' and '-m' options are not valid for the mkdef command.")
    with ctx.db.begin() as conn:
        writer = ObjectWriter(ctx.db, conn)
        items = _requests(req, ctx, writer, creating=True)
        count = _define(ctx, writer, items, force=bool(req.args.get("force")), create=True)
    yield Response(data=f"{count} object definitions have been created or modified.")


@command("chdef", writes=True, lock_nodes=_def_nodes, args=DEF_ARGS)
def chdef(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    a = req.args
    if a.get("force"):
        raise XcatError("The '-f' option is not valid for the chdef command.")
    if a.get("plus") and a.get("minus"):
        raise XcatError("The '-p' and '-m' options cannot be used together.")
    with ctx.db.begin() as conn:
        writer = ObjectWriter(ctx.db, conn)
        if a.get("newname"):
            yield from _rename(req, ctx, writer)
            return
        items = _requests(req, ctx, writer, creating=False)
        if a.get("where") and not a.get("dynamic"):
            by_type: dict[str, list[str]] = {}
            for n, t, _ in items:
                by_type.setdefault(t, []).append(n)
            keep = {(t, n) for t, ns in by_type.items()
                    for n in _where_filter(ctx, writer, t, ns, a["where"])}
            items = [i for i in items if (i[1], i[0]) in keep]
        if not any(attrs for _, _, attrs in items):
            raise XcatError("No attributes were specified to change.")
        mode = "plus" if a.get("plus") else "minus" if a.get("minus") else None
        existing: dict[str, set[str]] = {}
        for t in {t for _, t, _ in items}:
            existing[t] = writer.exists(t, [n for n, tt, _ in items if tt == t])
        new = [n for n, t, _ in items if n not in existing[t]]
        if mode == "minus" and new:
            raise not_found(f"The '-m' option is not valid since the '{new[0]}' definition "
                            "does not exist.")
        warnings: list[str] = []
        count = _define(ctx, writer, items, force=False, create=False, mode=mode,
                        warnings=warnings)
    for w in warnings:
        yield Response(warning=w)
    if new:
        yield Response(data=f"New object definitions '{','.join(new)}' have been created.")
    yield Response(data=f"{count} object definitions have been created or modified.")


def _define(ctx: Context, writer: ObjectWriter, items, *, force: bool, create: bool,
            mode: str | None = None, warnings: list[str] | None = None) -> int:
    by_type: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for name, typename, attrs in items:
        if typename not in DEFINABLE:
            raise XcatError(f"'{typename}' is not a valid object type.")
        _validate(typename, name, attrs)
        by_type.setdefault(typename, []).append((name, attrs))
    count = 0
    errors: list[str] = []
    kind = ErrorKind.BAD_REQUEST
    for typename, objs in by_type.items():
        names = [n for n, _ in objs]
        existing = writer.exists(typename, names)
        if create and typename != "site":
            dup = [n for n in names if n in existing]
            if dup and not force:
                errors += [f"A definition for '{n}' already exists.\nTo remove the old "
                           "definition and replace it with a new definition use the force "
                           "'-f' option.\nTo change the existing definition use the 'chdef' "
                           "command." for n in dup]
                kind = ErrorKind.CONFLICT if kind == ErrorKind.BAD_REQUEST else kind
                continue
            if dup:
                writer.delete(typename, dup)
                existing = set()
        current = writer.read(typename, [n for n in names if n in existing], computed=False) \
            if existing else {}
        changes: dict[str, dict[str, str | None]] = {}
        for name, attrs in objs:
            attrs = dict(attrs)
            if typename == "node" and name not in existing and not attrs.get("groups"):
                if create:
                    errors.append(f"Attribute 'groups' is not specified for node "
                                  f"'{name}', skipping to the next node.")
                    continue
                attrs["groups"] = "all"  # chdef creates missing nodes in group all
            if typename == "group":
                row_type = attrs.get("grouptype") or current.get(name, {}).get("grouptype")
                if row_type == "dynamic" and set(attrs) - {"grouptype", "members",
                                                           "wherevals", "usercomment"}:
                    errors.append(f"Can not assign attributes to dynamic node group '{name}'.")
                    continue
            errors += _keep_masked(typename, name, attrs, current.get(name, {}))
            if mode:
                attrs = _list_edit(name, attrs, current.get(name, {}), mode, warnings)
            changes[name] = {k: (v if v != "" else None) for k, v in attrs.items()}
        if typename == "group":
            missing = _write_members(writer, changes, current, mode)
            if missing:
                errors += missing
                kind = ErrorKind.NOT_FOUND
            for name in changes:  # a static group needs a nodegroup row to exist unlisted
                if name not in existing:
                    changes[name].setdefault("grouptype", "static")
        try:
            plan = writer.plan(typename, changes, current)
        except DBError as exc:
            errors.append(str(exc))
            continue
        if typename == "group":  # rows in node tables keyed by the group name
            for name in changes:
                if name not in existing:
                    plan.setdefault("nodegroup\0groupname\0", {}).setdefault((name,), {})
        writer.apply(plan)
        count += len(changes)
    if errors:
        raise XcatError("\n".join(errors + [
            "One or more errors occured when attempting to create or modify xCAT object "
            "definitions; no definition was changed."]), kind=kind)
    return count


def _keep_masked(typename: str, name: str, attrs: dict[str, str],
                 stored: dict[str, str]) -> list[str]:
    """A masked secret (from lsdef -z) means 'keep the stored one', never '********'."""
    errors = []
    for attr in [a for a, v in attrs.items() if v == SECRET_MASK]:
        if attr not in _secret_attrs(typename):
            continue
        if stored.get(attr):
            del attrs[attr]
        else:
            errors.append(f"'{attr}' of '{name}' is masked ({SECRET_MASK}) and there is no "
                          "stored value to keep; give the real value.")
    return errors


def _list_edit(name: str, attrs: dict[str, str], current: dict[str, str], mode: str,
               warnings: list[str] | None) -> dict[str, str]:
    sep_of = {"wherevals": "::"}
    out = {}
    for attr, value in attrs.items():
        sep = sep_of.get(attr, ",")
        have = [x for x in (current.get(attr) or "").split(sep) if x]
        items = [x for x in value.split(sep) if x]
        if mode == "plus":
            out[attr] = sep.join(have + [x for x in items if x not in have])
        else:
            for x in items:
                if x not in have and warnings is not None:
                    warnings.append(f"{x} is not in the attribute of '{attr}' for the "
                                    f"'{name}' definition.")
            out[attr] = sep.join(x for x in have if x not in items)
    return out


def _write_members(writer: ObjectWriter, changes: dict[str, dict], current: dict,
                   mode: str | None) -> list[str]:
    """Static group membership lives in each node's nodelist.groups."""
    errors: list[str] = []
    all_nodes = writer.db.all_nodes(writer.conn)
    node_groups = writer.db.node_groups(None, writer.conn)
    updates: dict[tuple, dict] = {}
    for group, attrs in changes.items():
        if "members" not in attrs or attrs.get("grouptype") == "dynamic":
            continue
        value = attrs.pop("members") or ""
        if mode == "plus":  # _list_edit merged with the current members already
            pass
        wanted = split_list(value)
        missing = [n for n in wanted if n not in all_nodes]
        errors += [f"Could not find a node named '{n}', skipping to the next node."
                   for n in missing]
        for node, gl in node_groups.items():
            groups = updates.get((node,), {}).get("groups")
            gl = split_list(groups) if groups is not None else gl
            if node in wanted and group not in gl:
                updates[(node,)] = {"groups": ",".join(gl + [group])}
            elif node not in wanted and group in gl:
                updates[(node,)] = {"groups": ",".join(g for g in gl if g != group)}
    if updates and not errors:
        writer.db.set_rows(writer.conn, "nodelist", updates)
    return errors


def _rename(req: Request, ctx: Context, writer: ObjectWriter) -> Iterator[Response]:
    a = req.args
    for opt in ("plus", "minus", "stanza", "where", "dynamic"):
        if a.get(opt):
            raise XcatError("The '-n' option cannot be used with the '-d', '-p', '-m', '-z' "
                            "or '-w' options.")
    typename = _types(req)[0]
    names = split_list(a.get("objects") or req.noderange)
    if len(names) != 1:
        raise XcatError("The '-n' option renames one object at a time.")
    old, new = names[0], a["newname"]
    if old not in writer.exists(typename, [old]):
        raise XcatError(f"The {old} is not a valid object.")
    if new in writer.exists(typename, [new]):
        raise conflict(f"A definition for '{new}' already exists.")
    _validate(typename, new, {})
    writer.rename(typename, old, new)
    yield Response(data=f"Changed the object name from {old} to {new}.")


# ---- rmdef ---------------------------------------------------------------------------------
@command("rmdef", writes=True, lock_nodes=_def_nodes, args=DEF_ARGS)
def rmdef(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    a = req.args
    if a.get("where"):
        raise XcatError("The '-w' option is not supported for the rmdef command.")
    if a.get("all") and not a.get("force"):
        raise XcatError("You must use the '-f' option when using the '-a' option.")
    with ctx.db.begin() as conn:
        writer = ObjectWriter(ctx.db, conn)
        count = 0
        types = [t for t in DEFINABLE if t != "site"] if a.get("all") else _types(req)
        for typename in types:
            if a.get("all"):
                names = writer.names(typename)
            else:
                names = _names(req, ctx, writer, typename, must_exist=True)
                if not names:
                    raise XcatError("No object names were provided.")
            if names:
                writer.delete(typename, names)
                count += len(names)
    if count:
        yield Response(data=f"{count} object definitions have been removed.")
    else:
        yield Response(data="No objects have been removed from the xCAT database.")
