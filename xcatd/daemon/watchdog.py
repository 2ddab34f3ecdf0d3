"""xcatd's node status watchdog: a thread that runs xcatd.provision.nodeevents.watchdog every
min(60, site.nodestatustimeout / 4) seconds, so a node silent in a phase (installing,
configuring...) longer than site.nodestatustimeout ends ``failed`` with a ``watchdog``
event instead of lying forever. It logs each node it fails, and a round that fails (the
database away, a bad site value) is logged and tried again next round: the thread never
dies of it.

    dog = watchdog.start(paths)     # in the daemon's start
    dog.stop()                      # in its stop
"""
from __future__ import annotations

import datetime
import logging
import threading

from xcatd.base.paths import Paths
from xcatd.db.cluster import Cluster
from xcatd.provision import nodeevents

log = logging.getLogger("xcatd.daemon.watchdog")

#: Longest and shortest wait between rounds, seconds
MAX_INTERVAL = 60.0
MIN_INTERVAL = 1.0


class Watchdog:
    """The thread; ``run_once`` is one round."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
        self.rounds = 0

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        # the first round one interval after the start: nodes that could not report while
        # xcatd was down get that long to do so
        while not self._stop.wait(self.interval()):
            self.run_once()

    def interval(self) -> float:
        """min(60, site.nodestatustimeout / 4) seconds, at least 1; 60 when it is off or
        cannot be read."""
        try:
            timeout = nodeevents.status_timeout(Cluster(self.paths).site)
        except Exception:  # run_once says what is wrong
            return MAX_INTERVAL
        return MAX_INTERVAL if timeout is None else max(MIN_INTERVAL,
                                                        min(MAX_INTERVAL, timeout / 4))

    def run_once(self, now: datetime.datetime | None = None) -> list[tuple[str, str]]:
        """One round: the silent nodes failed, each logged; an error is logged, not
        raised (the next round tries again)."""
        self.rounds += 1
        try:
            cluster = Cluster(self.paths)
            failed = nodeevents.watchdog(cluster, now)
        except Exception as exc:  # the database away, a bad site value: next round
            log.error("node status watchdog: %s (trying again next round)", _why(exc))
            return []
        for node, state in failed:
            log.warning("%s: failed: timeout in %s (no word from it for longer than "
                        "site.nodestatustimeout)", node, state)
        return failed


def _why(exc: Exception) -> str:
    """The first line of an error, never its statement parameters (the engine hides them)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def start(paths: Paths) -> Watchdog:
    """Start the watchdog thread of the daemon on ``paths``; call its ``stop`` at shutdown."""
    return Watchdog(paths).start()
