"""The attempts running in this process, and the thread that keeps them honest.

Every AICORE_CANCEL_POLL_MS the watcher reads the status of all in-flight jobs in one query: a job that is
no longer running on our attempt (cancelled, or re-queued by a reaper) gets its stop flag set, which makes
the provider call return. In the same round it writes the progress the calls reported since the last one,
and every AICORE_HEARTBEAT_MS it stamps heartbeat_at on all of them: one statement per CHUNK attempts,
whatever the number of calls in flight, instead of one per call.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

from ai_core.models import JobStatus
from ai_core.services import jobs_beat
from ai_core.statements import jobs_states
from ai_providers.capacity import leases_renew

logger = logging.getLogger(__name__)
CHUNK = 200  # bounded statement size (and row locks held by one beat) whatever the number of calls in flight
GONE = ("deleted", None)


@dataclass(eq=False)
class Attempt:
    """One attempt of one job in this process: the fence (attempt), the deadline and the stop flag."""

    job_pk: int
    attempt: int
    deadline: float  # time.monotonic()
    stop: threading.Event = field(default_factory=threading.Event)
    stop_reason: str = ""
    progress: int | None = None  # the last percentage the provider reported
    progress_written: int | None = None  # the last one written (by the watcher)
    capacity_lease: int | None = None  # the provider capacity lease the call holds (renewed with the heartbeat)

    def report(self, percentage: int) -> None:
        self.progress = max(0, min(100, int(percentage)))

    def halt(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    def should_stop(self) -> bool:
        if not self.stop.is_set() and time.monotonic() >= self.deadline:
            self.halt("timeout")
        return self.stop.is_set()


class InFlight:
    def __init__(self) -> None:
        self._attempts: dict[int, Attempt] = {}
        self._lock = threading.Lock()
        self._owner_pid: int | None = None

    def add(self, attempt: Attempt) -> None:
        with self._lock:
            self._attempts[id(attempt)] = attempt
            if self._owner_pid != os.getpid():  # first use in this (possibly forked) process
                self._owner_pid = os.getpid()
                threading.Thread(target=self._loop, name="aicore-watch", daemon=True).start()

    def remove(self, attempt: Attempt) -> None:
        with self._lock:
            self._attempts.pop(id(attempt), None)

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self._attempts.values())

    def __len__(self) -> int:
        return len(self._attempts)

    def _loop(self) -> None:
        poll = settings.AICORE_CANCEL_POLL_MS / 1000
        beat_every = settings.AICORE_HEARTBEAT_MS / 1000
        last_beat = 0.0
        while True:
            time.sleep(poll)
            attempts = self.snapshot()
            if not attempts:
                continue
            try:
                stop_the_gone(attempts)
                if time.monotonic() - last_beat >= beat_every:
                    beat(attempts)  # all of them: heartbeat, and progress where it moved
                    # With the heartbeat, the capacity leases of their calls (a killed process stops renewing).
                    leases_renew([a.capacity_lease for a in attempts if a.capacity_lease is not None])
                    last_beat = time.monotonic()
                else:
                    beat([a for a in attempts if a.progress != a.progress_written])
            except Exception:  # the database may be briefly away: try again next round
                logger.warning("in-flight watcher round failed", exc_info=True)
            finally:
                connection.close()


def _chunks(attempts: list[Attempt]):
    for start in range(0, len(attempts), CHUNK):
        yield attempts[start : start + CHUNK]


def stop_the_gone(attempts: list[Attempt]) -> None:
    """Halt every attempt whose job is no longer running on that attempt (one query per CHUNK jobs)."""
    running, cancelled = JobStatus.RUNNING.value, JobStatus.CANCELLED.value
    for chunk in _chunks(attempts):
        rows = {pk: (status, number) for pk, status, number in jobs_states([a.job_pk for a in chunk])}
        for attempt in chunk:
            status, number = rows.get(attempt.job_pk, GONE)
            if status == running and number == attempt.attempt:
                continue
            attempt.halt("cancelled" if status == cancelled else "superseded")


def beat(attempts: list[Attempt]) -> None:
    """Stamp heartbeat_at (and the reported progress) on the jobs still running on these attempts. In job order,
    the order the asyncio executor's batched completions lock their rows in (engine.batch); on PostgreSQL the
    statement locks them in that order itself, skipping a row a completion holds (statements.BEATS_PG): no
    deadlock, and a skipped beat is made next round."""
    for chunk in _chunks(sorted(attempts, key=lambda attempt: attempt.job_pk)):
        beats = [(a.job_pk, a.attempt, a.progress) for a in chunk]
        jobs_beat(beats)
        for attempt, (_, _, progress) in zip(chunk, beats, strict=True):
            attempt.progress_written = progress


in_flight = InFlight()
