"""How a command reaches dispatch.

``XCATBYPASS=1`` runs the request in this process, as in xCAT. The daemon transport (HTTPS to
xcatd) arrives with the daemon; until then every request runs in process, whatever
``XCATBYPASS`` says, and the output and exit codes are the same either way.
"""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.dispatch import dispatch
from xcatd.request import Request, Response


def submit(request: Request) -> Iterator[Response]:
    """Send a request and stream its responses."""
    return dispatch(request)
