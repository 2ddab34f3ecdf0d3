"""xcatd in a background thread of this process, for tests and benchmarks."""
from __future__ import annotations

import asyncio
import threading

from xcatd.base.paths import Paths
from xcatd.fronts.server import Daemon, Listening


class DaemonThread:
    """Start with ``start()``; ``listening`` says where; ``stop()`` closes it all."""

    def __init__(self, paths: Paths, host: str = "127.0.0.1", port: int = 0,
                 unix: bool = True) -> None:
        self.daemon = Daemon(paths, host, port, unix)
        self.loop = asyncio.new_event_loop()
        self.listening: Listening | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="xcatd", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.listening = self.loop.run_until_complete(self.daemon.start())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> Listening:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.listening is not None
        return self.listening

    def stop(self) -> None:
        if self._thread.is_alive() and self.listening is not None:
            asyncio.run_coroutine_threadsafe(self.daemon.stop(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
        self.loop.close()
