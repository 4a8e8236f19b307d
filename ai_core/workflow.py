"""The job lifecycle: the transition table and the one function that performs a transition.

Every status change in AI Core goes through `transition()`: one compare-and-set
(`UPDATE ai_job SET status = <to> WHERE id = %s AND status = <from> [AND attempts = <attempt>]`),
one AIJobEvent row, the timestamps, and the dashboard roll-up — all in one transaction.
"""

from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from ai_core.models import FINAL_STATUSES, AIJob, AIJobEvent, JobDailyStat, JobStatus
from business.errors import Conflict, NotFound

S = JobStatus

# The whole state machine. running -> pending is the engine's re-queue (a retry while attempts remain);
# the API never asks for it. Final states have no way out.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED, S.PENDING}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.TIMEOUT: frozenset(),
}


# Sent once the transaction that made a job final has committed (webhooks, notifications). Arguments:
# job_pk, status. After commit, so receivers never announce a state that was rolled back.
job_final_committed = Signal()


class IllegalTransition(Conflict):
    error_code = "ILLEGAL_TRANSITION"

    def __init__(self, current: str, to: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or f"A {current} job cannot become {to}", current_status=current, **extra)
        self.current = current
        self.to = to


class StaleAttempt(Conflict):
    """A write from an attempt that is no longer the job's current one (a zombie worker): discarded."""

    error_code = "STALE_ATTEMPT"


@dataclass(frozen=True)
class Transitioned:
    job_pk: int
    from_status: str
    to_status: str
    attempt: int
    at: Any


def can_transition(current: str, to: str) -> bool:
    return to in TRANSITIONS.get(current, frozenset())


def transition(
    job_pk: int,
    *,
    to: str,
    expected: frozenset[str] | set[str] | None = None,
    attempt: int | None = None,
    reason: str = "",
    actor_id: int | None = None,
    fields: dict[str, Any] | None = None,
    cost: Decimal | None = None,
) -> Transitioned:
    """Move one job to `to`, or raise IllegalTransition / StaleAttempt. Never overwrites silently.

    1. Read the job's current status (and the immutable roll-up key).
    2. Check the table (and `expected`, and the attempt fence when given).
    3. Compare-and-set on exactly that status; if another writer won in between, re-read and decide again.
    4. Write the event and move the job between roll-up buckets, in the same transaction.
    """
    with transaction.atomic():
        for _ in range(5):
            row = (
                AIJob.objects.filter(pk=job_pk)
                .values("status", "brand_id", "job_type_id", "created_at", "attempts")
                .first()
            )
            if row is None:
                raise NotFound("Job not found", error_code="JOB_NOT_FOUND")
            current = row["status"]
            if not can_transition(current, to) or (expected is not None and current not in expected):
                raise IllegalTransition(current, to)
            if attempt is not None and row["attempts"] != attempt:
                raise StaleAttempt(f"Attempt {attempt} is stale (job is on attempt {row['attempts']})")

            now = timezone.now()
            updates: dict[str, Any] = {"status": to, "updated_at": now, **(fields or {})}
            new_attempt = row["attempts"]
            if to == S.RUNNING:
                updates.update(started_at=now, attempts=F("attempts") + 1, heartbeat_at=now, progress_percentage=0)
                new_attempt += 1
            if to in FINAL_STATUSES:
                updates["completed_at"] = now
            if to == S.CANCELLED:
                updates["cancelled_at"] = now
            if to == S.COMPLETED:
                updates["progress_percentage"] = 100

            guarded = AIJob.objects.filter(pk=job_pk, status=current)
            if attempt is not None:
                guarded = guarded.filter(attempts=attempt)
            if guarded.update(**updates) == 1:
                break
        else:  # pragma: no cover - five lost races in a row means something is badly wrong
            raise Conflict("The job changed too often while being updated; retry", error_code="CONCURRENT_UPDATE")

        AIJobEvent.objects.create(
            job_id=job_pk,
            from_status=current,
            to_status=to,
            at=now,
            attempt=new_attempt,
            reason=reason[:500],
            actor_id=actor_id,
        )
        day = timezone.localdate(row["created_at"])
        stat_move(
            brand_id=row["brand_id"],
            day=day,
            job_type_id=row["job_type_id"],
            deltas={current: -1, to: +1},
            cost={to: cost} if cost else None,
        )
        if to in FINAL_STATUSES:
            transaction.on_commit(
                partial(job_final_committed.send, sender=AIJob, job_pk=job_pk, status=to), robust=True
            )
    return Transitioned(job_pk=job_pk, from_status=current, to_status=to, attempt=new_attempt, at=now)


MICROS = Decimal("1000000")


def to_micros(amount: Decimal) -> int:
    return int((Decimal(amount) * MICROS).to_integral_value())


def from_micros(micros: int) -> Decimal:
    return (Decimal(int(micros)) / MICROS).quantize(Decimal("0.000001"))


def stat_move(
    *, brand_id: int, day, job_type_id: int, deltas: dict[str, int], cost: dict[str, Decimal] | None = None
) -> None:
    """Apply job-count (and cost) deltas to the roll-up rows of one (brand, day, type).

    Rows are touched in a fixed order (by status name) so two transactions moving jobs in opposite
    directions (pending->running vs running->pending) cannot deadlock on each other's rows.
    """
    cost = cost or {}
    keys = sorted(set(deltas) | set(cost))
    table = JobDailyStat._meta.db_table
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(keys))
    params: list[Any] = []
    for status in keys:
        params += [brand_id, day, job_type_id, status, deltas.get(status, 0), to_micros(cost.get(status, Decimal(0)))]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (brand_id, day, job_type_id, status, jobs, cost_micros) VALUES {placeholders} "
            f"ON CONFLICT (brand_id, day, job_type_id, status) DO UPDATE "
            f"SET jobs = {table}.jobs + excluded.jobs, cost_micros = {table}.cost_micros + excluded.cost_micros",
            params,
        )
