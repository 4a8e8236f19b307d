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

On PostgreSQL `claim_batch` makes up to N claims in one statement, in the order N claim_next() calls would
(the asyncio executor's batches, engine.batch): the same rules, the rotation moved on past each claim.
"""

import threading
from dataclasses import replace

from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ai_core import statements
from ai_core.models import AIJob, JobPriority, JobStatus
from ai_core.services import job_claim_pending, job_claim_pending_batch, job_give_back, job_start
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
        return self.position(priority)[0]

    def position(self, priority: str) -> tuple[int, int, int]:
        """(after brand, turn brand, claims in a row): the next claim takes the first brand after `after brand`
        (wrapping around); `turn brand` (0: none) is the brand whose turn goes on, with that many claims of it
        made."""
        with self._lock:
            brand_id, weight, in_a_row = self._last.get(priority, (0, 1, 0))
        if brand_id and in_a_row < weight:
            return brand_id - 1, brand_id, in_a_row  # the pick takes the first brand above: this one again
        return brand_id, 0, 0

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
CLAIMED_ALONG = ", ".join(["moved.priority", BRAND_WEIGHT, BRAND_MAX_RUNNING])  # what _served reads of a claim


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
                levels=levels, task_id=task_id, also_return=", ".join(filter(None, [CLAIMED_ALONG, also_return]))
            )
        except Conflict:  # the row changed between its pick and its compare-and-set: look again
            continue
        if claimed is None:
            return None
        kept = _served([claimed])
        if kept:
            return kept[0]
    return None


def claim_batch(limit: int, *, task_id: str = "", also_return: str = "") -> list[Transitioned]:
    """PostgreSQL: claim up to `limit` jobs in ONE statement (workflow.claim_pending_batch), in the order as
    many claim_next() calls would take them: priority first, then at each level brands in the rotation's order
    (starting where the last claim left it), each `capacity_weight` claims in a row, oldest first within a
    brand; a brand with max_running_jobs gets no more than its room. Then the committed re-check of limited
    brands (_over_brand_limit, one statement for the batch) and the rotation moved on past the claims kept,
    as if each had been claim_next's. Fewer than `limit` when fewer are claimable (or were locked by a
    concurrent claim: SKIP LOCKED), in claim order; `also_return` as claim_next's.

    Concurrent claimers pick the same best jobs: one that lost some of its picks to another claims again for
    what it is short of (up to MAX_LOST_RACES statements), so a claim comes back short only when no more
    jobs are claimable, or after that many lost races."""
    kept: list[Transitioned] = []
    for _ in range(MAX_LOST_RACES):
        levels = [(priority.value, *rotation.position(priority)) for priority in PRIORITY_ORDER]
        claimed, lost_some = job_claim_pending_batch(
            levels=levels,
            limit=limit - len(kept),
            task_id=task_id,
            also_return=", ".join(filter(None, [CLAIMED_ALONG, also_return])),
        )
        kept += _served(claimed)
        if not lost_some or len(kept) >= limit:
            break
    return kept


def _served(claimed: list[Transitioned]) -> list[Transitioned]:
    """Claims made with CLAIMED_ALONG first in their extra: those a race took past their brand's
    max_running_jobs given back (_over_brand_limit), the rotation moved on past the others, in their order,
    which are returned without CLAIMED_ALONG's columns."""
    limited = {c.job_pk: c.extra[2] for c in claimed if c.extra[2] is not None}
    given_back = _over_brand_limit([c for c in claimed if c.job_pk in limited], limited) if limited else set()
    kept = []
    for one in claimed:
        if one.job_pk in given_back:
            continue
        priority, weight = one.extra[:2]
        rotation.served(priority, one.brand_id, weight)
        kept.append(replace(one, extra=one.extra[3:]))
    return kept


def _over_brand_limit(claimed: list[Transitioned], max_running: dict[int, int]) -> set[int]:
    """The claims (of brands with max_running_jobs: the limit per job pk) that raced others past it, given back.

    A claim statement counts the brand's running jobs in its own snapshot, so workers claiming at the same
    instant can each see room. Once committed they see each other: the brand's first `max_running` running
    jobs (by start, then id) keep running, a later one goes back to pending with its attempt given back. One
    more statement for a batch with claims of limited brands; none for others."""
    with prepared_cursor() as cursor:
        cursor.execute(statements.running_before_sql(len(claimed)), [c.job_pk for c in claimed])
        before = dict(cursor.fetchall())
    over = set()
    for one in claimed:
        limit = max_running[one.job_pk]
        if before.get(one.job_pk, 0) < limit:
            continue
        over.add(one.job_pk)
        try:
            job_give_back(
                job_pk=one.job_pk,
                attempt=one.attempt,
                reason=f"its brand already runs {before[one.job_pk]} jobs (max_running_jobs {limit})",
                claimable_at=timezone.now(),
            )
        except Conflict:  # cancelled meanwhile: nothing to give back
            pass
    return over
