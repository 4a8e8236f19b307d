"""The worker's background loops: one registry, started when a worker is ready and stopped when it shuts down
(ai_core/engine/worker.py), in every worker process.

A loop is anything with `start(hostname)` and `stop()`. `PeriodicLoop` is the way to run a round every N seconds
on a daemon thread of its own: jittered (±20 %, so workers started together do not query together), a failing
round logged and the next one run, the thread's database connection closed after every round. Core's upkeep
(engine/upkeep.py: heartbeat, repairs, compaction, and the rounds apps add with `upkeep.register_round`) is one
loop; an app adds its own in its `AppConfig.ready()` (webhooks: the delivery sweep, every 60 s). Core imports
none of them.
"""

import logging
import random
import threading
from collections.abc import Callable
from typing import Protocol

from django.db import connection

logger = logging.getLogger(__name__)


class Loop(Protocol):
    name: str

    def start(self, hostname: str) -> None: ...

    def stop(self) -> None: ...


class PeriodicLoop:
    """`round_()` every `every_seconds()` seconds (read at each wait, so a setting's change applies), the first
    one a period after the start."""

    def __init__(self, name: str, round_: Callable[[], object], *, every_seconds: Callable[[], float]) -> None:
        self.name = name
        self.round = round_
        self.every_seconds = every_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, hostname: str) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds() * random.uniform(0.8, 1.2)):
            try:
                self.round()
            except Exception:  # the database or broker is briefly away: the next round catches up
                logger.warning("%s round failed", self.name, exc_info=True)
            finally:
                connection.close()


_loops: dict[str, Loop] = {}


def register_loop(loop: Loop) -> None:
    """Run `loop` in every worker process (one per name: registering a name again replaces it)."""
    _loops[loop.name] = loop


def registered() -> list[Loop]:
    return list(_loops.values())


def start_loops(hostname: str) -> None:
    for loop in registered():
        loop.start(hostname)


def stop_loops() -> None:
    for loop in registered():
        try:
            loop.stop()
        except Exception:
            logger.warning("could not stop the %s loop", loop.name, exc_info=True)
