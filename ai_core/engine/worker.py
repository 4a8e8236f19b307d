"""Hooks into the Celery worker's life: upkeep runs wherever a worker runs, no separate beat process."""

import sys

from celery.signals import worker_ready, worker_shutting_down

from ai_core.engine.upkeep import upkeep


@worker_ready.connect
def _start_upkeep(sender, **_kwargs) -> None:
    upkeep.start(hostname=sender.hostname)  # sender: the worker's consumer


@worker_shutting_down.connect
def _stop_upkeep(**_kwargs) -> None:
    upkeep.stop()


def worker_command(*options: str) -> list[str]:
    """The command line of a worker process of this app (pool and concurrency come from the settings)."""
    return [sys.executable, "-m", "celery", "-A", "config", "worker", *options]
