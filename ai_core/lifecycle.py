"""The job lifecycle: the only code that writes a job's status, its events and its roll-up.

Creation, every transition (claims, re-queues, give-backs, fallbacks, ends, cancels), progress and heartbeats,
the update compare-and-set, deletion, purge and the roll-up's writers (JobDailyStat) live here. Status changes
go through ai_core.workflow (the transition table and its compare-and-set), which only this module calls (the
batches app's provider routing claims its jobs through job_claim_answered / job_claim_to_end); the statement
text is in ai_core/statements.py.

Extension apps attach through the hook registry (ai_core/hooks.py), registered in their AppConfig.ready():
ai_core imports none of them. docs/ARCHITECTURE.md ("The lifecycle and its hooks") says when each hook runs and
in which transaction.
"""

from collections import Counter
from collections.abc import Callable
from copy import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ai_core import statements
from ai_core.dispatch import dispatch_job_on_commit
from ai_core.engine.handlers import build_request
from ai_core.hooks import Created, Final, Replanned, hooks
from ai_core.models import FINAL_STATUSES, AIJob, AIJobEvent, JobStatus
from ai_core.workflow import (
    IllegalTransition,
    Move,
    Transitioned,
    claim_pending,
    claim_pending_batch,
    claimed_at_creation,
    stat_move,
    transition,
    transition_many,
    writes_apply,
)
from ai_providers.clients.base import ChatRequest, PermanentProviderError
from ai_providers.money import NO_TOKENS, TokenUsage
from business.errors import Conflict, NotFound
from business.models import User
from business.sql import bulk_insert, bulk_insert_like, bulk_insert_values, prepared_cursor

S = JobStatus

__all__ = [
    "job_insert",
    "jobs_insert_bulk",
    "job_update_guarded",
    "job_delete",
    "jobs_purge",
    "job_cancel",
    "jobs_cancel",
    "job_start",
    "job_claim_pending",
    "job_claim_pending_batch",
    "job_progress",
    "jobs_beat",
    "job_complete",
    "jobs_complete",
    "Completion",
    "job_fail",
    "job_timeout",
    "job_wait_for_capacity",
    "job_give_back",
    "job_fall_back",
    "job_requeue",
    "job_make_claimable",
    "job_provider_request",
    "stat_move",
]


def job_provider_request(job: AIJob) -> ChatRequest | None:
    """The provider request the job will send, built by the engine's own handler: what its quota reservation
    covers. None when none can be built: the engine then fails the job without calling any provider."""
    try:
        return build_request(job)
    except (PermanentProviderError, KeyError, TypeError, ValueError):
        # No handler for the type, or input its (admin-edited) schema lets through but its handler cannot read.
        return None


# --- creation -----------------------------------------------------------------------------------------


def _creation_in_one_statement() -> bool:
    """Whether a job is created by one statement, atomic on its own, with no BEGIN and COMMIT round trips: on
    PostgreSQL, outside a transaction."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def job_insert(
    created: Created,
    *,
    claimed_by: str | None = None,
    dispatch: bool = True,
    attach: Callable[[AIJob], None] | None = None,
) -> AIJob:
    """Write the new job `created.job` with its creation event, the roll-up's +1 and the extensions' rows and
    hooks. Returns the job as written (`job.status` says pending or, with `claimed_by`, running).

    On PostgreSQL outside a transaction, when the hooks' guards allow (hooks.creation_guards), one statement
    writes the job, its events, its roll-up and the extensions' rows (hooks.rows_at_creation): no transaction.
    It writes nothing when a guard's row exists (a company with an active quota); then, and elsewhere, the job
    is written in a transaction with the extensions' rows, then `on_created` (a quota reservation) and
    `attach` (the caller's own write: the batches router's record).

    `claimed_by` (who runs the attempt at once: "gateway"): where one statement creates the job, it is created
    claimed (running, attempt 1, see workflow.claimed_at_creation), saving the claim's round trip; otherwise it
    is created pending and the caller claims it. Raises IntegrityError on an Idempotency-Key race.
    """
    job = created.job
    payloads = [created]
    guards = hooks.creation_guards(payloads) if attach is None else None
    if guards is not None and _creation_in_one_statement():
        rows = [row for _, row in hooks.rows_at_creation(payloads)]
        inserted, events = job, None
        if claimed_by is not None:  # a copy: should the statement write nothing, `job` is still pending
            inserted = copy(job)
            events = claimed_at_creation(inserted, **_claim(f"{claimed_by}:{job.job_id}"))
        if _insert_one_statement(inserted, guards=guards, rows=rows, events=events):
            if dispatch:
                dispatch_job_on_commit(inserted.pk, priority=inserted.priority)  # no transaction: published at once
            # As the engine's claim reads them: what the extensions hold for it is what was just written.
            inserted.probed = {name: any(isinstance(r, p.model) for r in rows) for name, p in hooks.probes.items()}
            inserted.__dict__.update(inserted.probed)
            return inserted
        created.guard_matched = bool(guards)
    # A savepoint inside a caller's transaction: a failed insert (an Idempotency-Key race) won't break it.
    with transaction.atomic():
        rows = [row for _, row in hooks.rows_at_creation(payloads)]
        if connection.vendor == "postgresql":
            _insert_one_statement(job, guards=[], rows=rows, events=None)  # unguarded: it writes
        else:
            _insert_orm(job)
            for row in rows:
                setattr(row, statements.job_link(type(row)).name, job)
                row.save(force_insert=True)
        hooks.call("on_created", payloads)
        if attach is not None:
            attach(job)
        if dispatch:
            dispatch_job_on_commit(job.pk, priority=job.priority)
    return job


def jobs_insert_bulk(
    template: AIJob,
    varying: list[str],
    rows: list[tuple],
    *,
    created: Callable[[int, int], Created],
    actor_id: int | None,
) -> list[int]:
    """Write many new jobs of one brand and type at once (bulk submission), in the caller's transaction: the
    jobs (`template`'s values but for the `varying` fields each row gives: business.sql.bulk_insert_like, COPY),
    their creation events (COPY), the roll-up's +N pending, the extensions' rows (COPY per model) and the
    `on_created` hooks, called once with every job (`created(index, pk)`: its payload). Returns the jobs' pks."""
    pks = bulk_insert_like(AIJob, template, varying, rows)
    payloads = [created(i, pk) for i, pk in enumerate(pks)]
    hooks.call("on_created", payloads)
    event = {
        "from_status": "",
        "to_status": S.PENDING,
        "at": template.created_at,
        "attempt": 0,
        "reason": "created",
        "actor_id": actor_id,
    }
    bulk_insert_values(AIJobEvent, [{"job_id": pk, **event} for pk in pks])
    stat_move(
        brand_id=template.brand_id,
        day=timezone.localdate(template.created_at),
        job_type_id=template.job_type_id,
        deltas={S.PENDING: len(pks)},
    )
    by_model: dict[type, list] = {}
    for index, row in hooks.rows_at_creation(payloads):
        setattr(row, statements.job_link(type(row)).attname, pks[index])
        by_model.setdefault(type(row), []).append(row)
    for model, instances in by_model.items():
        bulk_insert(model, instances)
    return pks


def _insert_orm(job: AIJob) -> None:
    """The job, its creation event and the roll-up's +1 pending, by the ORM (in the caller's transaction)."""
    job.save(force_insert=True)
    AIJobEvent.objects.create(
        job=job, from_status="", to_status=S.PENDING, at=job.created_at, reason="created", actor=job.created_by
    )
    stat_move(
        brand_id=job.brand_id,
        day=timezone.localdate(job.created_at),
        job_type_id=job.job_type_id,
        deltas={S.PENDING: 1},
    )


def _insert_one_statement(job: AIJob, *, guards: list, rows: list, events: list[tuple] | None) -> bool:
    """PostgreSQL: the job with its events, its roll-up and the extensions' `rows` in one statement
    (statements.creation_statement: data-modifying CTEs, prepared). Returns whether it wrote (no guard's row).

    Job creation is the API's hottest write, and the ORM's insert cost more to compile than to run. `events`:
    its events when not the creation's alone (claimed_at_creation's), the roll-up then +1 job.status."""
    events = events or [("", S.PENDING, 0, "created", job.created_by_id)]
    sql, _ = statements.creation_statement(guards=guards, events=len(events), rows=rows)
    params = statements.creation_params(
        job,
        guards=guards,
        company_id=job.brand.company_id,
        events=events,
        day=timezone.localdate(job.created_at),
        rows=rows,
    )
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchone()
    if found is None:
        return False
    statements.saved(job, found[0])
    for row, pk in zip(rows, found[1:], strict=True):
        statements.saved(row, pk)
        setattr(row, statements.job_link(type(row)).name, job)  # and the job's reverse one-to-one: no query
    return True


# --- client updates and deletion ----------------------------------------------------------------------


def job_update_guarded(*, job: AIJob, status: str, changes: dict[str, Any], replanned: Replanned | None = None) -> None:
    """Write a client's `changes` to the job while it is still `status` (compare-and-set), or JOB_STATE_CHANGED.

    `replanned` (new input of a pending job): the on_replanned hooks run first in the same transaction
    (reservations first and the job's row last, the lock order of a job's end); the compare-and-set then undoes
    all of it if the job left `status` meanwhile."""
    with transaction.atomic() if replanned is not None else _nothing():
        if replanned is not None:
            hooks.call("on_replanned", [replanned])
        if AIJob.objects.filter(pk=job.pk, status=status).update(**changes) != 1:
            job.refresh_from_db(fields=["status"])
            raise Conflict(
                f"The job changed to {job.status} meanwhile; reload and retry",
                error_code="JOB_STATE_CHANGED",
                current_status=job.status,
            )


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def idempotency_key_free(*, job_pk: int, key: str) -> None:
    """Free an expired Idempotency-Key for a new request (the old job keeps its history)."""
    AIJob.objects.filter(pk=job_pk, idempotency_key=key).update(idempotency_key=None)


def job_delete(*, job: AIJob) -> None:
    """Delete a job that is not running. Its usage row (money spent) is kept."""
    with transaction.atomic():
        # A pending job never ran: the extensions give back what they hold for it (a reservation; a final job
        # has none open; a running one rolls this back below). Before the job's row is locked: the lock order.
        hooks.call("on_deleted", [job.pk])
        # Lock the row: a worker claiming the job between our check and the delete would otherwise run a
        # deleted job and leave the roll-up counting it in the wrong status.
        status = AIJob.objects.select_for_update().filter(pk=job.pk).values_list("status", flat=True).first()
        if status is None:
            raise NotFound("Job not found", error_code="JOB_NOT_FOUND")
        if status == S.RUNNING:
            raise Conflict(
                "Cannot delete a running job; cancel it first", error_code="JOB_RUNNING", current_status=status
            )
        AIJob.objects.filter(pk=job.pk).delete()
        stat_move(
            brand_id=job.brand_id,
            day=timezone.localdate(job.created_at),
            job_type_id=job.job_type_id,
            deltas={status: -1},
        )


def jobs_purge(*, older_than: timedelta, batch_size: int = 1000, dry_run: bool = False) -> int:
    """Delete final jobs that ended before now - older_than, in batches. Returns how many (would) go.

    A purged job leaves the job table, its events go with it, its usage row stays (job becomes NULL, so money
    spent and token totals never shrink), and the roll-up moves exactly like job_delete does it: the job count
    leaves its bucket, the cost stays in it."""
    cutoff = timezone.now() - older_than
    candidates = AIJob.objects.filter(status__in=list(FINAL_STATUSES), completed_at__lt=cutoff)
    if dry_run:
        return candidates.count()
    purged = 0
    while True:
        with transaction.atomic():
            rows = list(
                candidates.order_by("id").values("id", "brand_id", "job_type_id", "status", "created_at")[:batch_size]
            )
            if not rows:
                return purged
            # Final jobs never change status again, so the rows read here are the rows deleted.
            AIJob.objects.filter(pk__in=[r["id"] for r in rows], status__in=list(FINAL_STATUSES)).delete()
            buckets = Counter(
                (r["brand_id"], timezone.localdate(r["created_at"]), r["job_type_id"], r["status"]) for r in rows
            )
            for (brand_id, day, job_type_id, status), count in sorted(buckets.items(), key=str):
                stat_move(brand_id=brand_id, day=day, job_type_id=job_type_id, deltas={status: -count})
        purged += len(rows)


# --- ends ---------------------------------------------------------------------------------------------


def job_cancel(
    *,
    job_pk: int,
    actor: User | None = None,
    reason: str = "cancelled by user",
    input_tokens: int = 0,
    output_tokens: int = 0,
) -> Transitioned:
    """Cancel a pending or running job. Tokens: what a call that was cut short had already used (a gateway
    stream whose client hung up): charged like a finished job's, else nothing is."""
    try:
        return _finalize(
            job_pk,
            to=S.CANCELLED,
            reason=reason,
            actor_id=actor.pk if actor else None,
            tokens=TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens),
        )
    except IllegalTransition as exc:
        raise Conflict(
            "Job cannot be cancelled",
            error_code="JOB_NOT_CANCELLABLE",
            error="Job cannot be cancelled",
            current_status=exc.current,
        ) from None


def jobs_cancel(job_pks: list[int], *, reason: str, actor_id: int | None = None) -> set[int]:
    """Cancel many jobs not yet final (a batch's cancel), set-based in one transaction: `before_final` for all
    (the extensions lock what they hold for them), the workflow's bulk compare-and-set (transition_many), then
    `on_final` with the jobs it moved. Returns those; a job that became final meanwhile is left as it is."""
    now = timezone.now()
    with transaction.atomic():
        finals = {
            pk: Final(job=AIJob(pk=pk), to=S.CANCELLED, attempt=0, at=now, tokens=NO_TOKENS, in_transaction=True)
            for pk in job_pks
        }
        hooks.call("before_final", list(finals.values()))
        moves = transition_many(job_pks, to=S.CANCELLED, reason=reason, actor_id=actor_id)
        moved = []
        for t in moves:
            final = finals[t.job_pk]
            final.attempt = t.attempt
            moved.append(final)
        writes_apply(hooks.final_writes(moved))
    return {t.job_pk for t in moves}


def _load_for_end(job_pk: int) -> AIJob | None:
    """The job as its end needs it (with its company and the extensions' probes), in one plain statement."""
    row = statements.job_row(_END_READ, job_pk)
    if row is None:
        return None
    job = _END_READ.job(row)
    from ai_core.services import job_type_by_pk  # the per-process memo of job types

    job.job_type = job_type_by_pk(job.job_type_id)
    return job


_END_READ = statements.JobRead("j")


def _finalize(
    job_pk: int,
    *,
    to: str,
    attempt: int | None = None,
    tokens: TokenUsage = NO_TOKENS,
    cost: Decimal | None = None,
    job: AIJob | None = None,
    batch: bool = False,
    **transition_args: Any,
) -> Transitioned:
    """A final transition and the extensions' writes of it (usage row, quota settle or release, OpenAI token
    counts) as one atomic change. A duplicate delivery loses the transition's compare-and-set and writes
    nothing: a job is charged once.

    The engine's usual end on PostgreSQL (`job` read by its claim, no hook needing a transaction: no open
    reservation) is ONE statement with no transaction: the `on_final` hooks' writes (hooks.InsertRow/UpdateRows)
    are parts of the transition's own statement, written only if the compare-and-set moved the job. Otherwise,
    in one transaction: `before_final` (quota settlement), the `on_final` writes, then the compare-and-set last
    (the lock order of a job's end; a lost compare-and-set rolls everything back).

    `job`: the caller's copy when it has one (the engine, read right after its claim). Only fields that do
    not change while a job runs are used from it; the status is the transition's business. `batch`: the call
    went through the provider's Batch API, priced at its batch ratio.
    """
    fields = transition_args.get("fields") or {}
    at = timezone.now()

    def final_of(found: AIJob) -> Final:
        return Final(
            job=found,
            to=to,
            attempt=found.attempts if attempt is None else attempt,
            at=at,
            tokens=tokens,
            cost=cost,
            batch=batch,
            result_data=fields.get("result_data"),
            error_code=fields.get("error_code", ""),
        )

    if job is not None and connection.vendor == "postgresql":
        final = final_of(job)
        if not hooks.needs_transaction([final]):
            hooks.price([final])
            along = hooks.final_writes([final])
            return transition(
                job_pk, to=to, attempt=attempt, cost=final.charged or None, at=at, along=along, **transition_args
            )
    with transaction.atomic():
        if job is None:
            job = _load_for_end(job_pk)
        if job is None:
            raise NotFound("Job not found", error_code="JOB_NOT_FOUND")
        final = final_of(job)
        final.in_transaction = True
        hooks.price([final])
        hooks.call("before_final", [final])
        # The writes before the job's row is locked (the lock order of a job's end: a pending job's update
        # locks its OpenAI row, then the job's); a compare-and-set that then fails rolls them back.
        writes_apply(hooks.final_writes([final]))
        return transition(job_pk, to=to, attempt=attempt, cost=final.charged or None, at=at, **transition_args)


def job_complete(
    *,
    job_pk: int,
    attempt: int,
    result_data: dict,
    input_tokens: int = 0,
    output_tokens: int = 0,
    tokens: TokenUsage | None = None,
    cost: Decimal | None = None,
    job: AIJob | None = None,
    batch: bool = False,
) -> Transitioned:
    """running -> completed, charging the tokens at the price in effect when the job started.

    `tokens`: every kind of token the call reported; without it, `input_tokens` and `output_tokens` (plain).
    `batch`: answered through the provider's Batch API (charged at the price's batch ratio)."""
    return _finalize(
        job_pk,
        to=S.COMPLETED,
        attempt=attempt,
        tokens=tokens or TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens),
        cost=cost,
        job=job,
        batch=batch,
        reason="completed",
        fields={"result_data": result_data, "error_message": "", "error_code": ""},
    )


@dataclass
class Completion:
    """One job of jobs_complete: its attempt, its answer, the tokens the call reported, and the job as its
    claim read it (None: read here). `batch`: answered through the provider's Batch API."""

    job_pk: int
    attempt: int
    result_data: dict
    tokens: TokenUsage = NO_TOKENS
    job: AIJob | None = None
    batch: bool = False
    cost: Decimal | None = None


def jobs_complete(items: list[Completion]) -> list[str | None]:
    """running -> completed for many jobs at once, each fenced by its attempt, in one transaction; per item the
    status it was left in ("completed"), or None: its write was discarded (the job cancelled, taken over by
    another attempt, deleted, or already completed by the same write: a job is charged once).

    The batched form of job_complete, with the same hooks called ONCE with every job: `price`, then in the
    transaction `before_final` (ai_usage locks the open reservations and their quota periods, in its global
    lock order), the workflow's multi-row compare-and-set (transition_many: on PostgreSQL one statement with
    the events and the roll-up; the job rows locked after the extensions' rows, the lock order of a job's end),
    then `on_final` with the jobs it moved only (their usage rows, their reservations settled) and
    `on_final_committed` after the commit. A job skipped by the compare-and-set has nothing written for it.

    On PostgreSQL, when no hook needs a transaction (`needs_transaction`: the claim read that no job holds a
    reservation), the whole batch is ONE statement: the `on_final` writes (usage rows, OpenAI rows' counts)
    are parts of the compare-and-set's statement, written for the jobs it moved only, as a single job's end.
    """
    at = timezone.now()
    finals, first = {}, {}
    for index, item in enumerate(items):
        if item.job_pk in first:
            continue  # named twice: the second is a duplicate write
        first[item.job_pk] = index
        job = item.job or _load_for_end(item.job_pk)
        if job is None:
            continue  # deleted meanwhile
        finals[item.job_pk] = Final(
            job=job,
            to=S.COMPLETED,
            attempt=item.attempt,
            at=at,
            tokens=item.tokens,
            cost=item.cost,
            batch=item.batch,
            result_data=item.result_data,
            in_transaction=True,
        )
    if not finals:
        return [None] * len(items)
    ending = list(finals.values())
    hooks.price(ending)
    move = partial(
        transition_many,
        [
            Move(job_pk=pk, attempt=f.attempt, cost=f.charged or None, fields={"result_data": f.result_data})
            for pk, f in finals.items()
        ],
        to=S.COMPLETED,
        reason="completed",
        fields={"error_message": "", "error_code": ""},
        at=at,
    )
    if connection.vendor == "postgresql" and not hooks.needs_transaction(ending):
        # No job holds anything to settle: ONE statement, the extensions' writes parts of it (moved jobs only).
        for final in ending:
            final.in_transaction = False
        done = move(along=hooks.final_writes(ending))
    else:
        with transaction.atomic():
            hooks.call("before_final", ending)
            done = move()
            writes_apply(hooks.final_writes([finals[t.job_pk] for t in done]))
    moved = {first[t.job_pk] for t in done}
    return [S.COMPLETED if index in moved else None for index in range(len(items))]


def job_fail(
    *, job_pk: int, attempt: int | None, error_message: str, error_code: str = "JOB_FAILED", cost: Decimal | None = None
) -> Transitioned:
    return _finalize(
        job_pk,
        to=S.FAILED,
        attempt=attempt,
        cost=cost,
        reason=error_code,
        fields={"error_message": error_message[:10_000], "error_code": error_code[:64]},
    )


def job_timeout(
    *,
    job_pk: int,
    attempt: int | None,
    error_message: str = "The job exceeded its time limit",
    error_code: str = "JOB_TIMEOUT",
    cost: Decimal | None = None,
) -> Transitioned:
    return _finalize(
        job_pk,
        to=S.TIMEOUT,
        attempt=attempt,
        cost=cost,
        reason="timeout",
        fields={"error_message": error_message, "error_code": error_code},
    )


# --- claims, progress, heartbeats -----------------------------------------------------------------------


def _claim(task_id: str) -> dict[str, Any]:
    """What a claim writes besides the move to running, whichever way the job was picked."""
    return {"reason": "claimed by worker", "fields": {"task_id": task_id[:255], "waiting": None}}


def job_start(*, job_pk: int, task_id: str = "", also_return: str = "") -> Transitioned:
    """Claim a pending job for one attempt: pending -> running, attempts + 1 (`also_return`: see transition)."""
    return transition(job_pk, to=S.RUNNING, expected={S.PENDING}, also_return=also_return, **_claim(task_id))


def job_claim_answered(*, job_pk: int, attempt: int, provider_batch_id: str) -> Transitioned:
    """Claim a pending job a provider's Batch API answered, to write its answer: pending -> running, fenced by
    `attempt` (the attempt its custom_id names; the claim moves attempts from attempt - 1 to it)."""
    return transition(
        job_pk,
        to=S.RUNNING,
        expected={S.PENDING},
        attempt=attempt - 1,
        reason="answered by provider batch",
        fields={"task_id": f"provider-batch:{provider_batch_id}"[:255]},
    )


def job_claim_to_end(*, job_pk: int, attempts: int, reason: str) -> Transitioned:
    """Claim a pending routed job to end it without a provider call (pending -> running, fenced by its current
    `attempts`); its caller then ends it on attempts + 1."""
    return transition(job_pk, to=S.RUNNING, expected={S.PENDING}, attempt=attempts, reason=reason[:200])


def job_claim_pending(
    *, levels: list[tuple[str, int]], task_id: str = "", also_return: str = ""
) -> Transitioned | None:
    """PostgreSQL: claim the first claimable job along `levels` ((priority, after brand), in order)."""
    return claim_pending(levels=levels, also_return=also_return, **_claim(task_id))


def job_claim_pending_batch(
    *, levels: list[tuple[str, int, int, int]], limit: int, task_id: str = "", also_return: str = ""
) -> tuple[list[Transitioned], bool]:
    """PostgreSQL: claim up to `limit` claimable jobs in one statement, in the order successive claims would
    (`levels`: per priority in order, the rotation's (priority, after brand, turn brand, claims in a row)); and
    whether a concurrent claim took some of the jobs picked (workflow.claim_pending_batch)."""
    return claim_pending_batch(levels=levels, limit=limit, also_return=also_return, **_claim(task_id))


def job_progress(*, job_pk: int, attempt: int, percentage: int) -> bool:
    """Record progress of the current attempt (also a heartbeat). False when the attempt is no longer current."""
    return jobs_beat([(job_pk, attempt, max(0, min(100, int(percentage))))]) == 1


def jobs_beat(beats: list[tuple[int, int, int | None]]) -> int:
    """Stamp heartbeat_at, and the progress when one is given, on jobs still running on these attempts:
    (job pk, attempt, progress or None), in one statement. Returns the number of jobs stamped.

    updated_at moves only with the progress (the brand's event stream looks for progress by it).
    """
    return statements.jobs_beat(beats, timezone.now())


# --- back to pending ------------------------------------------------------------------------------------


def job_wait_for_capacity(
    *, job_pk: int, attempt: int, waiting: dict[str, str], claimable_at: datetime
) -> Transitioned:
    """running -> pending until the provider has capacity: claimable again at `claimable_at`, shown as `waiting`,
    and the attempt given back (attempts - 1: waiting is not failing; the fence makes the count exact)."""
    return job_give_back(
        job_pk=job_pk,
        attempt=attempt,
        reason=f"waiting for {waiting['provider']} capacity until {waiting['until']}",
        claimable_at=claimable_at,
        waiting=waiting,
    )


def job_give_back(
    *, job_pk: int, attempt: int, reason: str, claimable_at: datetime, waiting: dict[str, str] | None = None
) -> Transitioned:
    """running -> pending with the attempt given back (attempts - 1), claimable again at `claimable_at`: the
    attempt could not start (no provider capacity, its brand over its max_running_jobs), nothing failed."""
    return _back_to_pending(
        job_pk, attempt=attempt, reason=reason, available_at=claimable_at, attempts=attempt - 1, waiting=waiting
    )


def job_fall_back(*, job: AIJob, attempt: int, choice, reason: str) -> Transitioned:
    """running -> pending on the fallback model `choice`, in one transaction: the on_replanned hooks (the job's
    quota reservation re-made at that model's price: QUOTA_EXCEEDED when it does not fit), then the
    compare-and-set fenced by `attempt`, which records the model and resets the attempts the new model has had
    (each model gets max_attempts).

    Reservations first and the job's row last, the lock order of a job's end; a job cancelled meanwhile fails
    the compare-and-set, which rolls the new reservation back."""
    switched = copy(job)
    switched.fallback_model = choice.name
    with transaction.atomic():
        hooks.call("on_replanned", [Replanned(job=job, choice=choice, request=lambda: job_provider_request(switched))])
        return _back_to_pending(
            job.pk,
            attempt=attempt,
            reason=f"fallback {job.current_model()} -> {choice.name}: {reason}",
            available_at=timezone.now(),
            fallback_model=choice.name,
            fallback_provider=choice.provider.name,
            fallback_attempts=attempt,
        )


class _LeftPending(Exception):
    pass


def job_make_claimable(*, job: AIJob, choice) -> bool:
    """A pending job held off the claim (routed to a provider's Batch API) put on the normal path, in one
    transaction: the on_replanned hooks (its reservation grows to what `choice` may charge on the normal path:
    QUOTA_EXCEEDED when it cannot), then claimable now by a compare-and-set on `pending` (not a status change).
    False, with nothing changed, when the job left `pending` meanwhile (cancelled)."""
    try:
        with transaction.atomic():
            hooks.call("on_replanned", [Replanned(job=job, choice=choice, request=lambda: job_provider_request(job))])
            if not AIJob.objects.filter(pk=job.pk, status=S.PENDING).update(available_at=timezone.now()):
                raise _LeftPending  # its reservation stays as its cancel left it
    except _LeftPending:
        return False
    return True


def job_requeue(*, job_pk: int, attempt: int, reason: str, delay_seconds: float = 0) -> Transitioned:
    """running -> pending for another attempt (transient error or lost worker), claimable after a delay."""
    return _back_to_pending(
        job_pk, attempt=attempt, reason=reason, available_at=timezone.now() + timedelta(seconds=delay_seconds)
    )


def _back_to_pending(job_pk: int, *, attempt: int, reason: str, available_at: datetime, **fields) -> Transitioned:
    """The engine's running -> pending, fenced by `attempt`: claimable at `available_at`, its progress and
    heartbeat reset, with the move's own `fields` (re-queue, give-back, fallback)."""
    return transition(
        job_pk,
        to=S.PENDING,
        attempt=attempt,
        reason=reason[:500],
        fields={"available_at": available_at, "progress_percentage": 0, "heartbeat_at": None, **fields},
    )
