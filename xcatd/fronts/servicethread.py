"""A network service of xcatd (the HTTP site, the TFTP server) on its own event loop in a
thread, for tests, benchmarks and the lab; xcatd itself runs them on its main loop."""
from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Protocol


class Service(Protocol):
    async def start(self, host: str | None, port: int) -> int: ...
    async def stop(self) -> None: ...


class ServiceThread:
    """Start ``service`` on ``host:port`` (port 0: a free one) in a thread of its own."""

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0,
                 name: str = "service") -> None:
        self.service = service
        self.host, self.port = host, port
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> int:
        self._thread.start()
        self.port = self._call(self.service.start(self.host, self.port))
        return self.port

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self.service.stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
        with contextlib.suppress(RuntimeError):
            self.loop.close()

    def __enter__(self) -> ServiceThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def close_listeners(servers: list[asyncio.base_events.Server], runner: Any) -> None:
    """Close listening sockets, wait for them, then clean up the aiohttp runner behind them
    (xcatd's HTTPS port and unix socket, the HTTP site). ``servers`` is emptied."""
    for srv in servers:
        srv.close()
    for srv in servers:
        with contextlib.suppress(Exception):
            await srv.wait_closed()
    servers.clear()
    if runner is not None:
        await runner.cleanup()
