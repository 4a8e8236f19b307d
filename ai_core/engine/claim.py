"""Which pending job a woken worker runs next, and the claim itself.

A broker message only wakes a worker; the worker then takes the *best* claimable job from the database:
strictly by priority (urgent > high > normal > low), and within a priority brand by brand in round-robin,
each brand served as many claims in a row as its weight (business.Brand.capacity_weight, 1 by default), oldest
job first within a brand. So one brand's 10 000 queued jobs cannot delay another brand's single job by more
than one turn per brand, and message order in the broker does not matter. Jobs waiting for provider capacity
are pending like any other (ai_providers.capacity): when a slot frees, this order decides who gets it.

A brand with `max_running_jobs` (business.Brand) that many of its jobs running is skipped by the claim, across
the deployment (the count is the database's): its jobs stay pending, nothing spent. SQLite's claims run one at
a time (IMMEDIATE transactions); PostgreSQL's concurrent ones may each see room, so a claim of a limited brand
then checks, committed, that it is among the brand's first `max_running_jobs` (`_over_brand_limit`).
"""

import threading
from dataclasses import replace

from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ai_core import statements
from ai_core.models import AIJob, JobPriority, JobStatus
from ai_core.services import job_claim_pending, job_give_back, job_start
from ai_core.workflow import IllegalTransition, Transitioned
from business.errors import Conflict, NotFound
from business.sql import prepared_cursor

PRIORITY_ORDER = tuple(reversed(JobPriority))  # urgent first: JobPriority is declared by rank, as PRIORITY_RANK
MAX_LOST_RACES = 8


class BrandRotation:
    """The last brand served at each priority, its weight and its claims in a row, per process: the next claim
    starts after it, or at it again while it had fewer claims in a row than its weight. The claim itself
    reads the weight (no query of its own)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int, int]] = {}
        self._before: dict[str, tuple[int, int, int]] = {}
        self._lock = threading.Lock()

    def after(self, priority: str) -> int:
        with self._lock:
            brand_id, weight, in_a_row = self._last.get(priority, (0, 1, 0))
        if brand_id and in_a_row < weight:
            return brand_id - 1  # the pick takes the first brand above: this one again
        return brand_id

    def served(self, priority: str, brand_id: int, weight: int = 1) -> None:
        with self._lock:
            before = self._last.get(priority, (0, 1, 0))
            self._before[priority] = before
            self._last[priority] = (brand_id, weight, before[2] + 1 if brand_id == before[0] else 1)

    def not_served(self, priority: str, brand_id: int) -> None:
        """The brand's claim found no provider capacity: its turn is not used up. Otherwise the brand the
        rotation favours would collect the refusals, and the claims that do get a slot go to the others."""
        with self._lock:
            if self._last.get(priority, (0,))[0] == brand_id and priority in self._before:
                self._last[priority] = self._before.pop(priority)


rotation = BrandRotation()


BRAND_WEIGHT = statements.of_moved_brand("capacity_weight")
BRAND_MAX_RUNNING = statements.of_moved_brand("max_running_jobs")


def _best_level(now) -> str | None:
    """The most urgent priority that has a claimable job (of a brand below its max_running_jobs), in one round
    trip (an index probe per level).
    SQLite's pick needs it; PostgreSQL's one-statement claim looks at the levels itself."""
    at = connection.ops.adapt_datetimefield_value(now)  # raw SQL: stored as the ORM does (SQLite: naive UTC)
    with prepared_cursor() as cursor:
        cursor.execute(
            statements.levels_with_work_sql(len(PRIORITY_ORDER)),
            [value for level in PRIORITY_ORDER for value in (level.value, level.value, at)],
        )
        found = {row[0] for row in cursor.fetchall()}
    return next((level for level in PRIORITY_ORDER if level in found), None)


def _pick() -> int | None:
    """The pk of the best claimable job (databases without SKIP LOCKED; PostgreSQL claims in one statement).

    At the most urgent non-empty level, one index range scan (aijob_pending_claim: priority, brand,
    created_at, id) finds the oldest job of the first brand after the last one served, wrapping around.
    """
    now = timezone.now()
    priority = _best_level(now)
    if priority is None:
        return None
    level = AIJob.objects.filter(status=JobStatus.PENDING, available_at__lte=now, priority=priority)
    level = level.exclude(brand_id__in=RawSQL(statements.BRANDS_AT_LIMIT, []))
    level = level.order_by("brand_id", "created_at", "id")
    for queryset in (level.filter(brand_id__gt=rotation.after(priority)), level):
        row = queryset.values_list("pk", "brand_id", "brand__capacity_weight").first()
        if row is not None:
            rotation.served(priority, row[1], row[2])
            return row[0]
    return None


def claim_next(*, task_id: str = "", also_return: str = "") -> Transitioned | None:
    """Claim the best pending job (pending→running, attempts+1) or return None when there is none.

    The claim is a compare-and-set (workflow): a job cancelled meanwhile, or taken by another worker,
    fails it and we look again. `also_return` (PostgreSQL): columns of the claimed row (`moved`) the claim
    statement returns in Transitioned.extra, so the caller need not read the job again.
    """
    if connection.vendor == "postgresql":
        return _claim_in_one_statement(task_id, also_return)
    for _ in range(MAX_LOST_RACES):
        with transaction.atomic():
            pk = _pick()
            if pk is None:
                return None
            try:
                return job_start(job_pk=pk, task_id=task_id)
            except (IllegalTransition, NotFound):
                continue
    return None


def _claim_in_one_statement(task_id: str, also_return: str) -> Transitioned | None:
    """PostgreSQL: one statement looks at each priority level in order (at each, the first brand after the
    last one served there, then from the first brand) and claims the first job it finds (SKIP LOCKED)."""
    levels = []
    for priority in PRIORITY_ORDER:
        levels += [(priority.value, after) for after in dict.fromkeys((rotation.after(priority), 0))]
    for _ in range(MAX_LOST_RACES):
        try:
            claimed = job_claim_pending(
                levels=levels,
                task_id=task_id,
                also_return=", ".join(filter(None, ["moved.priority", BRAND_WEIGHT, BRAND_MAX_RUNNING, also_return])),
            )
        except Conflict:  # the row changed between its pick and its compare-and-set: look again
            continue
        if claimed is None:
            return None
        priority, weight, max_running = claimed.extra[:3]
        if max_running is not None and _over_brand_limit(claimed, max_running):
            continue
        rotation.served(priority, claimed.brand_id, weight)
        return replace(claimed, extra=claimed.extra[3:])
    return None


def _over_brand_limit(claimed: Transitioned, max_running: int) -> bool:
    """Whether a claim of a brand with max_running_jobs raced others past it, and then gave the job back.

    The claim statement counts the brand's running jobs in its own snapshot, so workers claiming at the same
    instant can each see room for one more. Once committed they see each other: the brand's first
    `max_running` running jobs (by start, then id) keep running, a later one goes back to pending with its
    attempt given back. A limited brand's claim costs this one more statement; others' none."""
    with prepared_cursor() as cursor:
        cursor.execute(statements.RUNNING_BEFORE, [claimed.brand_id, claimed.job_pk])
        (before,) = cursor.fetchone()
    if before < max_running:
        return False
    try:
        job_give_back(
            job_pk=claimed.job_pk,
            attempt=claimed.attempt,
            reason=f"its brand already runs {before} jobs (max_running_jobs {max_running})",
            claimable_at=timezone.now(),
        )
    except Conflict:  # cancelled meanwhile: nothing to give back
        pass
    return True
