"""The request a command makes, the responses a handler streams back, and the kinds of error.

Both are plain data that serialise to JSON unchanged, so the in-process path and the daemon
carry the same objects. An error carries its kind (not found, conflict, denied, ...), so a
front picks its answer (an HTTP status, say) from the kind, never from the wording.

>>> r = Response(node="n1", data="on")
>>> r.render()
('out', 'n1: on')
>>> Response(node="n7", error="timeout").render()
('err', 'n7: Error: timeout')
>>> e = XcatError("No job 42", kind=ErrorKind.NOT_FOUND)
>>> e.response().kind, e.response().render()
('not_found', ('err', 'Error: No job 42'))
>>> json_problem({"args": {"a": [[["x"]]]}}), json_problem({"noderange": "n\\ud800"})
(None, "noderange: not Unicode text (a lone surrogate, '\\\\ud800')")
>>> storable("n\\udcff")
'n\\\\udcff'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: How deep a request's JSON may nest (its arguments are at most lists of lists of strings).
MAX_DEPTH = 32


def json_problem(value: Any, where: str = "") -> str | None:
    """What makes decoded JSON unfit for a request, naming where it is, or None: nesting
    deeper than MAX_DEPTH, or a string that is no Unicode text (a lone surrogate, which JSON
    escapes allow and no database or terminal takes). Walks without recursion."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"{at or 'the request'}: nested more than {MAX_DEPTH} deep"
        if isinstance(item, str):
            bad = _lone_surrogate(item)
            if bad is not None:
                return (f"{at or 'the request'}: not Unicode text (a lone surrogate, "
                        f"'\\u{ord(bad):04x}')")
        elif isinstance(item, dict):
            for key, sub in item.items():
                name = f"{at}.{key}" if at else str(key)
                stack.append((key, name, depth + 1))
                stack.append((sub, name, depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, f"{at}[{i}]", depth + 1) for i, sub in enumerate(item))
    return None


def _lone_surrogate(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None


def storable(text: str) -> str:
    """``text`` as a database and a terminal take it: a lone surrogate (from a request or a
    byte that is no UTF-8) is written as its escape."""
    if _lone_surrogate(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class ErrorKind(StrEnum):
    """What went wrong, for fronts that answer by kind (REST's HTTP status)."""

    BAD_REQUEST = "bad_request"   # the request itself is wrong: a bad word, a missing option
    NOT_FOUND = "not_found"       # it names an object, node, table or job that is not there
    CONFLICT = "conflict"         # it collides with what is there (exists already, a bad setting)
    DENIED = "denied"             # policy, ownership, a bad or spent token
    BUSY = "busy"                 # the nodes are locked by another request: try again later
    UPSTREAM = "upstream"         # a BMC, DHCP or DNS server failed or did not answer
    PARTIAL = "partial"           # some nodes failed, others did not (a request's outcome)
    INTERNAL = "internal"         # a bug or a database failure: see xcatd's log


@dataclass
class Request:
    """One command invocation: what to do, to which nodes, with which options.

    ``args`` holds the options the command line parsed (plugins never parse argv).
    """

    command: str
    noderange: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    user: str = "root"
    client: str = "localhost"

    def validate(self) -> None:
        """Raise TypeError naming the first field of the wrong type (requests arrive as JSON
        from anyone holding a certificate)."""
        if not isinstance(self.command, str) or not self.command:
            raise TypeError("command must be a non-empty string")
        for name in ("noderange", "stdin"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string")
        if not isinstance(self.args, dict):
            raise TypeError("args must be an object")
        if not isinstance(self.env, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()):
            raise TypeError("env must be an object of strings")

    def problem(self) -> str | None:
        """What makes the request's values unfit (json_problem), or None."""
        for name in ("command", "noderange", "args", "env", "stdin"):
            why = json_problem(getattr(self, name), name)
            if why:
                return why
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "noderange": self.noderange, "args": self.args,
                "env": self.env, "stdin": self.stdin, "user": self.user,
                "client": self.client}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Request:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Response:
    """One piece of output: a line of data, a warning or an error, optionally for a node."""

    node: str | None = None
    data: str | None = None
    error: str | None = None
    warning: str | None = None
    errorcode: int = 0
    #: Machine-readable form of ``data`` for the REST API and --json (never printed, never
    #: stored in the job record).
    obj: dict[str, Any] | None = None
    #: An ErrorKind value for an error (None: a node's own failure, or no error).
    kind: str | None = None
    #: Progress of long work, alone in its Response (xcatd.base.progress): drawn on a
    #: terminal only, never printed otherwise, kept in a job record or sent by REST.
    progress: dict[str, Any] | None = None
    #: "err": ``data`` is a line of a node's standard error (xdsh), printed to stderr as is.
    stream: str | None = None

    def render(self) -> tuple[str, str]:
        """('out' | 'err', text) as xCAT prints it."""
        prefix = f"{self.node}: " if self.node is not None else ""
        if self.error is not None:
            return "err", f"{prefix}Error: {self.error}"
        if self.warning is not None:
            return "err", f"{prefix}Warning: {self.warning}"
        if self.data is None:
            return "out", self.node or ""
        return ("err" if self.stream == "err" else "out"), f"{prefix}{self.data}"

    @property
    def failed(self) -> bool:
        return self.error is not None or self.errorcode != 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != 0}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Response:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class XcatError(Exception):
    """An error a handler reports for the whole request (or one node, with ``node``)."""

    def __init__(self, message: str, node: str | None = None, errorcode: int = 1, *,
                 kind: ErrorKind = ErrorKind.BAD_REQUEST) -> None:
        super().__init__(message)
        self.node = node
        self.errorcode = errorcode
        self.kind = ErrorKind(kind)

    def response(self) -> Response:
        return Response(node=self.node, error=str(self), errorcode=self.errorcode or 1,
                        kind=self.kind.value)


def not_found(message: str, node: str | None = None) -> XcatError:
    return XcatError(message, node, kind=ErrorKind.NOT_FOUND)


def conflict(message: str, node: str | None = None) -> XcatError:
    return XcatError(message, node, kind=ErrorKind.CONFLICT)


def denied(message: str, node: str | None = None) -> XcatError:
    return XcatError(message, node, kind=ErrorKind.DENIED)
