"""Hooks into the Celery worker's life: the registered loops (engine/loops.py: upkeep, and those apps add) run
wherever a worker runs, no separate beat process."""

import sys

from celery.signals import worker_ready, worker_shutting_down

from ai_core.engine import runner
from ai_core.engine.loops import register_loop, start_loops, stop_loops
from ai_core.engine.upkeep import upkeep

register_loop(upkeep)


@worker_ready.connect
def _start_loops(sender, **_kwargs) -> None:
    start_loops(hostname=sender.hostname)  # sender: the worker's consumer


@worker_shutting_down.connect
def _stop_loops(**_kwargs) -> None:
    runner.shutting_down.set()  # the threads executor's wake-ups start no further job (runner.run_wake_up)
    stop_loops()


def worker_command(*options: str) -> list[str]:
    """The command line of a worker process of this app (pool and concurrency come from the settings)."""
    return [sys.executable, "-m", "celery", "-A", "config", "worker", *options]
