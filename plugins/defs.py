"""Object definitions: lsdef, mkdef, chdef, rmdef (node, group, osimage, network, site,
policy, ...; lsdef also lists the auditlog and eventlog records and the shipped object
templates). Every change of one command is one transaction: all objects or none."""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.tables import SECRET_MASK

from xcatd.base.regexval import is_regex_value
from xcatd.base.request import ErrorKind, Request, Response, XcatError, conflict, not_found
from xcatd.db import nics
from xcatd.db.database import match_value, parse_where, split_list
from xcatd.db.defchanges import (
    Definer,
    Item,
    check_attr_names,
    check_wheres,
    known_attrs,
    secret_attrs,
    site_names,
)
from xcatd.db.objects import (
    DEFINABLE,
    LISTABLE,
    SITE_OBJECT,
    ObjectStore,
    ObjectWriter,
    attr_columns,
    objtype,
)
from xcatd.db.objtemplates import STANZA_HEADER, Template, parse_stanzas, templates_of
from xcatd.handler import ATTRS, FLAG, TEXT, TEXTS, Context, command
from xcatd.provision import nodeevents, osimagedef, postscripts
from xcatd.provision.postscripts import KINDS

#: Node attributes a node made from another (mkdef --template <node>) does not copy: they
#: describe the other node's state, not its definition.
RUNTIME_ATTRS = {"status", "statustime", "appstatus", "appstatustime", "updatestatus",
                 "updatestatustime", "currstate", "currchain"}


def _types(req: Request, valid: tuple[str, ...] = DEFINABLE) -> list[str]:
    default = "osimage" if req.args.get("setattr") else "node"
    types = split_list(req.args.get("type")) or [default]
    for t in types:
        if t not in valid:
            raise XcatError(f"'{t}' is not a valid object type. Valid types: "
                            + ", ".join(valid))
    return types


def _text(req: Request) -> str | None:
    return req.args.get("objects") or req.noderange


def _lookup(ctx: Context, store: ObjectStore, typename: str, text: str
            ) -> tuple[list[str], list[str]]:
    """(the objects named that exist, the names that do not). A node noderange is expanded
    without checking its names, so a missing node is named as a missing object, as xCAT
    does, not as a noderange error."""
    if typename == "node":
        names = ctx.expand(text, verify=False).sorted()
        if not names:
            raise not_found(f"No node in '{text}', check the noderange syntax.")
    else:
        names = split_list(text)
        if typename == "site":
            site_names(names)
    present = store.exists(typename, names)
    return [n for n in names if n in present], [n for n in names if n not in present]


def _missing(typename: str, names: list[str]) -> Iterator[Response]:
    for n in names:
        yield Response(error=f"Could not find an object named '{n}' of type '{typename}'.",
                       kind=ErrorKind.NOT_FOUND.value)


def _new_names(req: Request, ctx: Context, typename: str) -> list[str]:
    """Names for mkdef/chdef: nodes from a noderange (which need not exist)."""
    text = _text(req)
    if not text:
        return [SITE_OBJECT] if typename == "site" else []
    if typename == "node":
        return ctx.expand(text, verify=False).sorted()
    names = split_list(text)
    if typename == "site":
        site_names(names)
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
            "newname": TEXT, "attributes": ATTRS, "template": TEXT, "nics": FLAG,
            "setattr": FLAG}


def _def_nodes(req: Request, ctx: Context):
    """The nodes a mkdef/chdef/rmdef of type node changes, for their locks."""
    text = _text(req)
    if text and "node" in (split_list(req.args.get("type")) or ["node"]) \
            and not req.args.get("stanza") and not req.args.get("setattr"):
        return ctx.expand(text, verify=False)  # an error: policy fails closed
    return None


# ---- lsdef ---------------------------------------------------------------------------------
def _wanted(a: dict) -> tuple[list[str], dict[str, set[str]]]:
    """-i (or --nics) as (attributes to show, in order, and {nic attribute: interfaces}):
    nicips.eth0 shows only eth0's entry of nicips."""
    if a.get("nics"):
        if a.get("info"):
            raise XcatError("The flags '-i' and '--nics' cannot be used together.")
        return list(nics.NIC_ATTRS[:-1]), {}
    shown: list[str] = []
    only: dict[str, set[str]] = {}
    for attr in split_list(a.get("info")):
        sub = nics.sub_attr(attr)
        if sub:
            attr = sub[0]
            only.setdefault(attr, set()).add(sub[1])
        if attr not in shown:
            shown.append(attr)
    return shown, only


@command("lsdef", lock_nodes=_def_nodes, args=DEF_ARGS)
def lsdef(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    a = req.args
    if a.get("template") is not None:
        yield from _list_templates(req)
        return
    types = list(DEFINABLE) if a.get("all") else _types(req, LISTABLE)
    text = _text(req)
    long = a.get("long") or (bool(text) and not a.get("short")) or bool(a.get("info")) \
        or bool(a.get("nics"))
    wanted, only = _wanted(a)
    if a.get("compress") and not (wanted or a.get("long")):
        raise XcatError("The '-c' option is only valid with '-i' or '-l'.")
    found = 0
    with ctx.db.connect() as conn:
        store = ObjectStore(ctx.db, conn)
        for typename in types:
            known = known_attrs(typename)
            for bad in [w for w in wanted if known is not None and w not in known]:
                raise not_found(f"'{bad}' is not a valid attribute name for an object type "
                                f"of '{typename}'.")
        if a.get("stanza"):
            yield Response(data=STANZA_HEADER)
        for typename in types:
            if text:
                names, missing = _lookup(ctx, store, typename, text)
                yield from _missing(typename, missing)
            else:
                names = store.names(typename)
            if typename == "node" and not a.get("show_hidden") and not text:
                names = _unhidden(store, names)
            need_values = long or a.get("where") or a.get("stanza")
            values = store.read(typename, names) if need_values else {}
            if typename == "node" and not a.get("stanza") and set(wanted) & set(KINDS):
                _effective_postscripts(ctx, names, values)
            names = _where_filter(ctx, store, typename, names, a.get("where") or [], values)
            found += len(names)
            view = _View(typename, a, long, wanted, only, len(types) > 1)
            if typename == "node" and long and not (a.get("stanza") or a.get("compress")):
                view.extra = _failures(ctx, names, values, wanted)
            yield from view.responses(names, values)
    if not found and not text and not a.get("where"):
        yield Response(data="Could not find any objects to display.")


def _effective_postscripts(ctx: Context, names: list[str], values: dict) -> None:
    """``-i postscripts`` or ``postbootscripts`` of nodes: the lists each node runs
    (xcatdefaults, its osimage's, its own, each entry once), as xCAT's wish list asks. The
    other listings keep the stored value, which is what chdef -p/-m edits and -z restores."""
    for node, lists in postscripts.effective_lists(ctx, names).items():
        vals = values.setdefault(node, {})
        for attr, text in lists.items():
            if text:
                vals[attr] = text
            else:
                vals.pop(attr, None)


def _failures(ctx: Context, names: list[str], values: dict, wanted: list[str]
              ) -> dict[str, dict]:
    """For --json, beside the attributes of a failed node whose status is shown: its
    latest failure event (``lastfailure``, xcatd.provision.nodeevents). The text stays
    xCAT's: status=failed."""
    if wanted and "status" not in wanted:
        return {}
    failed = [n for n in names if values.get(n, {}).get("status") == "failed"]
    return {n: {"lastfailure": ev} for n, ev in nodeevents.last_failure(ctx, failed).items()
            if ev}


def _unhidden(store: ObjectStore, names: list[str]) -> list[str]:
    hidden = {r["node"] for r in store.db.rows("nodelist", store.conn)
              if (r.get("hidden") or "") in ("1", "yes")}
    return [n for n in names if n not in hidden]


class _View:
    """How lsdef prints objects of one type: names, blocks, -c lines or stanzas."""

    def __init__(self, typename: str, a: dict, long: bool, wanted: list[str],
                 only: dict[str, set[str]], several_types: bool, *,
                 masked: bool = True) -> None:
        self.typename, self.a, self.long = typename, a, long
        self.wanted, self.only, self.several = wanted, only, several_types
        self.secrets = secret_attrs(typename) if masked and not a.get("show_secrets") \
            else set()
        self.objkey = objtype(typename).objkey if typename != "site" else None
        self.per_nic = typename in ("node", "group")
        self.extra: dict[str, dict] = {}  # name -> more for --json (lastfailure)

    def pairs(self, vals: dict[str, str]) -> list[tuple[str, str]]:
        """(attribute, value) as shown: nic attributes one line per interface."""
        attrs = self.wanted or sorted(x for x in vals if x != self.objkey)
        out = []
        for attr in attrs:
            v = vals.get(attr, "")
            entries = nics.split_nics(v) if self.per_nic and attr in nics.NIC_ATTRS else []
            if entries and not is_regex_value(v):  # else: one regex, or no '<nic>!' form
                keep = self.only.get(attr)
                out += [(f"{attr}.{nic}", nv) for nic, nv in entries
                        if nv and (keep is None or nic in keep)]
                continue
            if not v and self.per_nic and attr in nics.NIC_ATTRS:  # xCAT shows none
                continue
            if v and attr in self.secrets:
                v = SECRET_MASK
            out.append((attr, v))
        return out

    def responses(self, names: list[str], values: dict) -> Iterator[Response]:
        a, typename = self.a, self.typename
        for name in names:
            if a.get("stanza"):
                lines = [f"\n{name}:", f"    objtype={typename}"]
                lines += [f"    {k}={v}" for k, v in self.pairs(values.get(name, {}))
                          if v != "" or self.wanted]
                yield Response(data="\n".join(lines))
            elif a.get("short") or not self.long:
                yield Response(data=f"{name}  ({typename})",
                               obj={"name": name, "type": typename})
            elif a.get("compress"):
                for k, v in self.pairs(values.get(name, {})):
                    yield Response(node=name, data=f"{k}={v}")
            else:
                title = f"Object name: {name}" + (f"  ({typename})" if self.several else "")
                attrs = self.pairs(values.get(name, {}))
                body = [f"    {k}={v}" for k, v in attrs]
                yield Response(data="\n".join([title, *body]),
                               obj={"name": name, "type": typename, "attributes": dict(attrs),
                                    **self.extra.get(name, {})})


def _list_templates(req: Request) -> Iterator[Response]:
    """lsdef --template [names]: the shipped object templates, as object definitions."""
    a = req.args
    types = None if a.get("all") else _types(req, LISTABLE)
    pool = templates_of(types)
    names = split_list(a.get("template"))
    for n in names:
        if n not in pool:
            raise not_found(f"Could not find {n} in xCAT templates.")
    chosen = [pool[n] for n in names] if names else list(pool.values())
    long = bool(names) or bool(a.get("long") or a.get("info") or a.get("stanza"))
    wanted, only = _wanted(a)
    if a.get("stanza"):
        yield Response(data=STANZA_HEADER)
    several = len({t.objtype for t in chosen}) > 1
    for t in chosen:
        view = _View(t.objtype, a, long, wanted, only, several, masked=False)
        yield from view.responses([t.name], {t.name: dict(t.attrs)})


# ---- mkdef / chdef -------------------------------------------------------------------------
def _attributes(args: dict) -> dict[str, str]:
    """The request's {attr: value} (the CLI parses attr=value words, REST sends JSON); a name
    may end in ',' or '^' (nodech's ,= and ^= list operators)."""
    attrs = args.get("attributes") or {}
    if not isinstance(attrs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()):
        raise XcatError("attributes must be an object of attribute names and string values")
    return dict(attrs)


def _items(req: Request, ctx: Context, store: ObjectStore, creating: bool) -> list[Item]:
    """The objects a mkdef/chdef names, with the attributes each is given."""
    a = req.args
    if a.get("stanza"):
        if _text(req):
            raise XcatError("Cannot use '-z' with '-o' or a noderange.")
        if a.get("type"):
            raise XcatError("Cannot combine '-t' and '-a', '-z', or '-x' options.")
        if a.get("template") is not None:
            raise XcatError("The file input can not be used with --template option!")
        return [Item(n, t, attrs) for n, t, attrs in parse_stanzas(req.stdin or "")]
    types = _types(req)
    attrs = _attributes(a)
    if len(types) > 1 and attrs:
        raise XcatError("Cannot combine multiple types with 'att=val' pairs on the command "
                        "line.")
    typename = types[0]
    if a.get("setattr") and typename != "osimage":
        raise XcatError("Option '-u' only work for objtype 'osimage'.")
    names = _new_names(req, ctx, typename)
    if not names:
        raise XcatError("No object names were provided.")
    if a.get("dynamic") and typename != "group":
        raise XcatError("The '-d' option is only valid for group definitions.")
    items = [Item(n, typename, dict(attrs)) for n in names]
    if typename == "group" and (a.get("where") or a.get("dynamic")):
        _group_conditions(req, store, items, creating)
    if a.get("template") is not None:
        _from_template(req, store, typename, items)
    if creating and not any(i.attrs for i in items) and typename != "group":
        raise XcatError("No object definitions have been created or modified: no attributes "
                        "were specified." + (" The 'groups' attribute is required when "
                                             "creating node definitions."
                                             if typename == "node" else ""))
    return items


def _group_conditions(req: Request, store: ObjectStore, items: list[Item], creating: bool
                      ) -> None:
    """-w on groups: a dynamic group's conditions (-d, or a group that is dynamic already),
    or a static group's members (the nodes that match)."""
    a = req.args
    wheres = a.get("where") or []
    check_wheres(wheres)
    rows = {r["groupname"]: r for r in store.db.rows(
        "nodegroup", store.conn, keys=[i.name for i in items])}
    for item in items:
        row = None if creating else rows.get(item.name)
        dynamic = a.get("dynamic") or (row is not None and row.get("grouptype") == "dynamic")
        if dynamic:
            extra = set(item.attrs) - {"usercomment"}
            if extra:
                raise XcatError(f"Can not assign attributes to dynamic node group "
                                f"'{item.name}'.")
            if not wheres:
                raise XcatError(f"The 'where' attributes and values were not provided for "
                                f"dynamic group '{item.name}'.")
            item.attrs.update(grouptype="dynamic", members="dynamic",
                              wherevals="::".join(wheres))
            if a.get("plus") or a.get("minus"):  # -p/-m edit the conditions, nothing else
                item.attrs = {"wherevals": item.attrs["wherevals"]}
        elif wheres:
            if "members" in item.attrs:
                raise XcatError("Cannot use a list of members together with the '-w' "
                                "option.")
            members = store.dynamic_members("::".join(wheres))
            item.attrs["members"] = ",".join(sorted(members))


def _from_template(req: Request, store: ObjectStore, typename: str, items: list[Item]
                   ) -> None:
    """mkdef --template: a shipped template (which wins over an object of the same name),
    or an existing object of the type."""
    name = req.args.get("template") or ""
    if not name:
        raise XcatError("no object definition template specified for mkdef --template!")
    if "," in name:
        raise XcatError("Only 1 template object definition should be specified for mkdef!")
    shipped = templates_of([typename]).get(name)
    if shipped is None:
        shipped = _object_template(store, typename, name, [i.name for i in items])
    for item in items:
        filled, missing = shipped.fill(item.attrs)
        if missing:
            raise XcatError("\n".join(f'The attribute "{m}" must be specified!'
                                      for m in missing))
        item.attrs = filled


def _object_template(store: ObjectStore, typename: str, name: str, names: list[str]
                     ) -> Template:
    if name not in store.exists(typename, [name]):
        raise not_found(f"Could not find {name} in xCAT templates.\nCould not find the "
                        f"template object named '{name}' of type '{typename}'.")
    if name in names:
        raise XcatError("The template node cannot be the same as the node to create.")
    values = store.read(typename, [name], computed=False)[name]
    drop = RUNTIME_ATTRS | {objtype(typename).objkey, "members"} if typename != "site" \
        else set()
    return Template(name, typename, {k: v for k, v in values.items() if k not in drop})


def _fill_osimages(req: Request, ctx: Context, store: ObjectStore, items: list[Item],
                   command: str) -> None:
    """-u: each osimage completed from its osvers, osarch, profile and provmethod."""
    if command == "chdef":
        present = [i.name for i in items if i.name in store.exists("osimage", [i.name])]
        stored = store.read("osimage", present, computed=False) if present else {}
        for item in items:
            old = stored.get(item.name, {})
            for attr in osimagedef.IMAGE_ATTRS:
                if attr not in item.attrs and old.get(attr):
                    item.attrs[attr] = old[attr]
    for item in items:
        item.attrs = osimagedef.fill(item.attrs, paths=ctx.paths, site=ctx.site,
                                     command=command)


@command("mkdef", writes=True, lock_nodes=_def_nodes, args=DEF_ARGS)
def mkdef(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    a = req.args
    if a.get("plus") or a.get("minus"):
        raise XcatError("The '-p' and '-m' options are not valid for the mkdef command.")
    with ctx.db.begin() as conn:
        writer = ObjectWriter(ctx.db, conn)
        items = _items(req, ctx, writer, creating=True)
        if a.get("setattr"):
            _fill_osimages(req, ctx, writer, items, "mkdef")
        out = Definer(writer, create=True, force=bool(a.get("force"))).define(items)
    for w in out.warnings:
        yield Response(warning=w)
    yield Response(data=f"{out.count} object definitions have been created or modified.")


@command("chdef", writes=True, lock_nodes=_def_nodes, args=DEF_ARGS)
def chdef(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    a = req.args
    if a.get("force"):
        raise XcatError("The '-f' option is not valid for the chdef command.")
    if a.get("plus") and a.get("minus"):
        raise XcatError("The '-p' and '-m' options cannot be used together.")
    if a.get("template") is not None:
        raise XcatError("The option '--template' can not be used with 'chdef'.")
    if a.get("setattr") and (a.get("plus") or a.get("minus")):
        raise XcatError("Cannot use '-u' with '-p' or '-m'.")
    with ctx.db.begin() as conn:
        writer = ObjectWriter(ctx.db, conn)
        if a.get("newname"):
            yield from _rename(req, writer)
            return
        items = _items(req, ctx, writer, creating=False)
        if a.get("where") and not a.get("stanza") and items[0].objtype != "group":
            by_type: dict[str, list[str]] = {}
            for i in items:
                by_type.setdefault(i.objtype, []).append(i.name)
            keep = {(t, n) for t, ns in by_type.items()
                    for n in _where_filter(ctx, writer, t, ns, a["where"])}
            items = [i for i in items if (i.objtype, i.name) in keep]
        if a.get("setattr"):
            _fill_osimages(req, ctx, writer, items, "chdef")
        if not any(i.attrs for i in items):
            raise XcatError("No attributes were specified to change.")
        mode = "plus" if a.get("plus") else "minus" if a.get("minus") else None
        out = Definer(writer, create=False, mode=mode).define(items)
    for w in out.warnings:
        yield Response(warning=w)
    yield Response(data=f"{out.count} object definitions have been created or modified.")
    if out.new:
        yield Response(data=f"New object definitions '{','.join(out.new)}' have been "
                            "created.")


def _rename(req: Request, writer: ObjectWriter) -> Iterator[Response]:
    a = req.args
    for opt in ("plus", "minus", "stanza", "where", "dynamic"):
        if a.get(opt):
            raise XcatError("The '-n' option cannot be used with the '-d', '-p', '-m', '-z' "
                            "or '-w' options.")
    typename = _types(req)[0]
    names = split_list(_text(req))
    if len(names) != 1:
        raise XcatError("The '-n' option renames one object at a time.")
    old, new = names[0], a["newname"]
    if old not in writer.exists(typename, [old]):
        raise not_found(f"The {old} is not a valid object.")
    if new in writer.exists(typename, [new]):
        raise conflict(f"A definition for '{new}' already exists.")
    check_attr_names(typename, new, {})
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
        chosen: list[tuple[str, list[str]]] = []
        absent: list[Response] = []
        for typename in types:
            if a.get("all"):
                chosen.append((typename, writer.names(typename)))
                continue
            text = _text(req)
            if not text:
                raise XcatError("No object names were provided.")
            names, missing = _lookup(ctx, writer, typename, text)
            chosen.append((typename, names))
            absent += _missing(typename, missing)
        if absent:  # nothing is removed: the command is one transaction
            yield from absent
            return
        for typename, names in chosen:
            if names:
                writer.delete(typename, names)
                count += len(names)
    if count:
        yield Response(data=f"{count} object definitions have been removed.")
    else:
        yield Response(data="No objects have been removed from the xCAT database.")

