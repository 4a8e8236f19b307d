"""Sweeper and reaper: the periodic repairs that make "never lost" hold when messages or workers vanish;
the roll-up's compaction (its writers append deltas: workflow.stats_compact); and this process's heartbeat
(WorkerHeartbeat), which tells /readyz and /metrics in any process that a worker is alive.

Every worker process runs them (several at once is safe: each repair is a compare-and-set fenced by the
attempt number, a duplicate wake-up message is harmless because a message only wakes a worker, and a
compaction only folds rows its own transaction deleted).
"""

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from ai_core.dispatch import publish_jobs
from ai_core.engine import finish
from ai_core.engine.finish import Discarded
from ai_core.models import AIJob, AIJobType, JobDailyStat, JobStatus, WorkerHeartbeat
from ai_core.services import job_requeue
from ai_core.workflow import stats_compact

logger = logging.getLogger(__name__)
BATCH = 1000
TRICKLE = 8  # wake-ups re-published per round while jobs are running
OVERDUE_GRACE_SECONDS = 10  # past its timeout plus this, a job whose worker still beats is ended anyway


def sweep(*, now=None) -> int:
    """Re-dispatch pending jobs whose wake-up seems lost: claimable for longer than SWEEP_PENDING_AFTER.

    Their available_at moves to now, so a job is re-published at most once per period. A wake-up claims the
    best job, not a given one, so while workers are busy a backlog is just a backlog: then only a trickle is
    re-published (insurance); once no job runs, enough to restart every lost one.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(milliseconds=settings.AICORE_SWEEP_PENDING_AFTER_MS)
    stale = AIJob.objects.filter(status=JobStatus.PENDING, available_at__lt=cutoff)
    busy = AIJob.objects.filter(status=JobStatus.RUNNING).exists()
    pks = list(stale.order_by("available_at").values_list("pk", flat=True)[: TRICKLE if busy else BATCH])
    if not pks:
        return 0
    stale.filter(pk__in=pks).update(available_at=now)
    publish_jobs(pks)  # a few wake-ups for them all: a woken worker claims while it finds work
    logger.info("sweeper re-dispatched %s pending jobs", len(pks))
    return len(pks)


def reap(*, now=None) -> dict[str, int]:
    """Finish or re-queue running jobs whose worker stopped beating, and end jobs past their timeout."""
    now = now or timezone.now()
    done = {"requeued": 0, "failed": 0, "timeout": 0}
    requeued: list[int] = []
    silent_since = now - timedelta(milliseconds=settings.AICORE_REAP_AFTER_MS)
    for job_type in AIJobType.objects.all():
        limit = min(job_type.timeout_seconds, settings.AICORE_MAX_JOB_SECONDS)
        overdue_since = now - timedelta(seconds=limit + OVERDUE_GRACE_SECONDS)
        for pk, attempt, earlier_models, started_at in running_to_reap(
            job_type, silent_since=silent_since, overdue_since=overdue_since
        ).values_list("pk", "attempts", "fallback_attempts", "started_at")[:BATCH]:
            # Each write is fenced by the attempt: if the worker woke up and finished, or another reaper was
            # faster, it is discarded (None) and not counted.
            if started_at <= now - timedelta(seconds=limit):
                outcome = finish.timeout(pk, attempt)
            elif attempt - earlier_models < job_type.max_attempts:  # each model gets max_attempts (fallbacks)
                outcome = _requeue(pk, attempt, requeued)
            else:
                outcome = finish.fail(
                    pk,
                    attempt,
                    "WORKER_LOST",
                    f"The worker running this job stopped responding ({attempt} attempts)",
                )
            if outcome is not None:
                done[outcome] += 1
    publish_jobs(requeued)  # a few wake-ups for all the jobs a dead worker left (dispatch.publish_jobs)
    if any(done.values()):
        logger.warning("reaper: %s", done)
    return done


def running_to_reap(job_type: AIJobType, *, silent_since: datetime, overdue_since: datetime) -> QuerySet[AIJob]:
    """The running jobs of `job_type` that stopped beating before `silent_since` or started before
    `overdue_since`. Read through the partial index of running jobs by type and start (aijob_running_started),
    the heartbeat a filter on those rows: no index holds heartbeat_at, so a beat is a HOT update (models.AIJob)."""
    running = AIJob.objects.filter(status=JobStatus.RUNNING, job_type=job_type)
    return running.filter(Q(heartbeat_at__lt=silent_since) | Q(started_at__lt=overdue_since))


def _requeue(pk: int, attempt: int, requeued: list[int]) -> str | None:
    try:
        job_requeue(job_pk=pk, attempt=attempt, reason="worker lost (no heartbeat)")
    except Discarded:
        return None
    requeued.append(pk)
    return "requeued"


def worker_beat(hostname: str, *, now=None) -> None:
    """Stamp this process's heartbeat: one UPDATE a round; the first round of a process inserts its row and
    drops the rows of processes gone for a day (a worker killed -9 never deletes its own)."""
    now = now or timezone.now()
    if not WorkerHeartbeat.objects.filter(hostname=hostname, pid=os.getpid()).update(last_seen=now):
        WorkerHeartbeat.objects.filter(last_seen__lt=now - timedelta(days=1)).delete()
        WorkerHeartbeat.objects.create(hostname=hostname, pid=os.getpid(), started_at=now, last_seen=now)


def worker_gone(hostname: str) -> None:
    WorkerHeartbeat.objects.filter(hostname=hostname, pid=os.getpid()).delete()


def workers_alive(*, now=None) -> int:
    """Worker processes whose heartbeat is fresher than AICORE_WORKER_STALE_SECONDS, in any host."""
    since = (now or timezone.now()) - timedelta(seconds=settings.AICORE_WORKER_STALE_SECONDS)
    return WorkerHeartbeat.objects.filter(last_seen__gte=since).count()


class StatsCompaction:
    """Which roll-up rows each round folds: those written since the previous round (less a margin for writes
    that committed late), and every key once every FULL_EVERY rounds — a scan of the whole roll-up, which
    grows with history, so not every few seconds."""

    FULL_EVERY = 60
    MARGIN = 10_000  # ids: a write can commit after a higher id was read; the next full round catches any left

    def __init__(self) -> None:
        self._since = 0
        self._rounds = 0

    def run(self) -> int:
        since = 0 if self._rounds % self.FULL_EVERY == 0 else self._since
        top = JobDailyStat.objects.aggregate(top=Max("id"))["top"] or 0
        folded = stats_compact(since_id=since)
        self._since, self._rounds = max(0, top - self.MARGIN), self._rounds + 1
        return folded


# Rounds of other apps run by the same loop (an app registers its round in its AppConfig.ready(): core never
# imports them). Each is called with no argument; a failing one does not stop the others.
EXTRA_ROUNDS: list = []


def register_round(round_: Callable[[], object]) -> None:
    if round_ not in EXTRA_ROUNDS:
        EXTRA_ROUNDS.append(round_)


def run_extra_rounds() -> None:
    for extra in list(EXTRA_ROUNDS):
        try:
            extra()
        except Exception:  # like the core's: the next round repairs what this one missed
            logger.warning("upkeep round %s failed", getattr(extra, "__name__", extra), exc_info=True)


class Upkeep:
    """A daemon thread stamping the worker's heartbeat and running reap(), sweep(), stats_compact() and the
    registered rounds (EXTRA_ROUNDS) every AICORE_SWEEP_INTERVAL_MS (with jitter); the first heartbeat is
    written as soon as the worker is ready. One of the worker's loops (engine/loops.py)."""

    name = "aicore-upkeep"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._compaction = StatsCompaction()
        self._hostname = ""

    def start(self, hostname: str) -> None:
        self._hostname = hostname
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="aicore-upkeep", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            worker_gone(self._hostname)  # a stopped worker stops counting at once, not after the stale delay
        except Exception:
            logger.warning("could not remove this worker's heartbeat", exc_info=True)
        finally:
            connection.close()

    def _loop(self) -> None:
        interval = settings.AICORE_SWEEP_INTERVAL_MS / 1000
        self._round(repairs=False)  # alive as soon as ready: the first heartbeat does not wait a period
        while not self._stop.wait(interval * random.uniform(0.8, 1.2)):
            self._round()

    def _round(self, *, repairs: bool = True) -> None:
        started = time.monotonic()
        try:
            worker_beat(self._hostname)
            if repairs:
                reap()
                sweep()
                self._compaction.run()
        except Exception:  # database or broker briefly away: the next round repairs what this one missed
            logger.warning("upkeep round failed", exc_info=True)
        try:
            if repairs:
                run_extra_rounds()
        finally:
            connection.close()
        logger.debug("upkeep round took %.3fs", time.monotonic() - started)


upkeep = Upkeep()
