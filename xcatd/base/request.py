"""The request a command makes and the responses a plugin streams back.

Both are plain data that serialise to JSON unchanged, so the in-process path and the daemon
carry the same objects.

>>> r = Response(node="n1", data="on")
>>> r.render()
('out', 'n1: on')
>>> Response(node="n7", error="timeout").render()
('err', 'n7: Error: timeout')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    #: Machine-readable form of ``data`` for the REST API and --json (never printed).
    obj: dict[str, Any] | None = None

    def render(self) -> tuple[str, str]:
        """('out' | 'err', text) as xCAT prints it."""
        prefix = f"{self.node}: " if self.node is not None else ""
        if self.error is not None:
            return "err", f"{prefix}Error: {self.error}"
        if self.warning is not None:
            return "err", f"{prefix}Warning: {self.warning}"
        if self.data is None:
            return "out", self.node or ""
        return "out", f"{prefix}{self.data}"

    @property
    def failed(self) -> bool:
        return self.error is not None or self.errorcode != 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != 0}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Response:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class XcatError(Exception):
    """An error a plugin reports for the whole request (or one node, with ``node``)."""

    def __init__(self, message: str, node: str | None = None, errorcode: int = 1) -> None:
        super().__init__(message)
        self.node = node
        self.errorcode = errorcode
