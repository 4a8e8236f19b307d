"""The compare-and-set machinery of the job lifecycle: the transition table and the assembly of the statements
that perform a transition (their text is in ai_core/statements.py). ai_core/lifecycle.py is its only caller
(the lifecycle's own module for every write of a job's status, events and roll-up).

Every status change in AI Core goes through `transition()` (or `claim_pending()`, the engine's claim, which
picks its job itself, and `claim_pending_batch()`, up to N of them in one statement): one compare-and-set
(`UPDATE ai_job SET status = <to> WHERE id = %s AND status = <from> [AND attempts = <attempt>]`),
one AIJobEvent row, the timestamps, and the dashboard roll-up — all in one transaction.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F, Model
from django.utils import timezone

from ai_core import statements
from ai_core.hooks import Committed, InsertRow, UpdateRows, hooks
from ai_core.models import FINAL_STATUSES, AIJob, AIJobEvent, JobDailyStat, JobStatus
from ai_providers.money import to_micros
from business.errors import Conflict, NotFound
from business.sql import prepared_cursor

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

from ai_core.signals import job_final_committed  # noqa: E402,F401  (a thin wrapper over on_final_committed)


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
    brand_id: int
    extra: tuple = ()  # what the caller asked the statement to return besides (claim_pending's also_return)


def can_transition(current: str, to: str) -> bool:
    return to in TRANSITIONS.get(current, frozenset())


def allowed_from(to: str, expected: frozenset[str] | set[str] | None = None) -> frozenset[str]:
    """The statuses a job may be in for a move to `to` (narrowed by `expected` when given)."""
    sources = frozenset(status for status, targets in TRANSITIONS.items() if to in targets)
    return sources if expected is None else sources & frozenset(expected)


@dataclass(frozen=True)
class _Change:
    """What one transition writes, whatever picks the job."""

    to: str
    allowed: frozenset[str]
    attempt: int | None
    reason: str
    actor_id: int | None
    fields: dict[str, Any]
    cost: Decimal | None
    now: Any

    def updates(self) -> dict[str, Any]:
        """Column values of the job (`attempts` excepted: +1 on a claim, written by each path its own way)."""
        updates: dict[str, Any] = {"status": self.to, "updated_at": self.now, **self.fields}
        if self.to == S.RUNNING:
            updates.update(started_at=self.now, heartbeat_at=self.now, progress_percentage=0)
        if self.to in FINAL_STATUSES:
            updates["completed_at"] = self.now
        if self.to == S.CANCELLED:
            updates["cancelled_at"] = self.now
        if self.to == S.COMPLETED:
            updates["progress_percentage"] = 100
        return updates


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
    at: Any = None,
    along: Sequence[InsertRow | UpdateRows] = (),
    also_return: str = "",
) -> Transitioned:
    """Move one job to `to`, or raise IllegalTransition / StaleAttempt. Never overwrites silently.

    1. Read the job's current status (locked, on PostgreSQL).
    2. Check the table (and `expected`, and the attempt fence when given).
    3. Compare-and-set on exactly that status.
    4. Write the event and move the job between roll-up buckets, in the same transaction.

    On PostgreSQL the four steps are one statement: one round trip, atomic on its own (see _cas_statement).
    `along` (PostgreSQL only): writes of other apps that belong to this move (hooks.InsertRow / UpdateRows,
    data: their statements are built here from the models' fields), parts of the same statement; they write
    nothing when the compare-and-set fails. `also_return` (PostgreSQL; elsewhere
    Transitioned.extra stays empty): as for claim_pending, more columns read from `moved`.
    """
    change = _Change(
        to=to,
        allowed=allowed_from(to, expected),
        attempt=attempt,
        reason=reason[:500],
        actor_id=actor_id,
        fields=fields or {},
        cost=cost,
        now=at or timezone.now(),
    )
    if connection.vendor == "postgresql":
        done = _cas_statement(
            change,
            pick=statements.PICK_BY_ID,
            pick_params=[job_pk],
            along=[statements.along_part(w) for w in along],
            also_return=also_return,
        )
        if done is None:
            raise NotFound("Job not found", error_code="JOB_NOT_FOUND")
    else:
        if along:
            raise ValueError("`along` writes need PostgreSQL's one-statement transition")
        done = _cas_portable(job_pk, change)
    if to in FINAL_STATUSES:
        _announce([Committed(job_pk=job_pk, status=to, brand_id=done.brand_id)])
    return done


def _announce(ended: list[Committed]) -> None:
    """The on_final_committed hooks, once the transaction that made these jobs final has committed (in
    autocommit: at once), so they never announce a state that was rolled back. One call per batch of jobs."""
    if ended:
        transaction.on_commit(partial(hooks.call, "on_final_committed", ended), robust=True)


def writes_apply(writes: Sequence[InsertRow | UpdateRows]) -> None:
    """The extensions' writes of jobs' ends as their own statements, in the caller's transaction, right after
    the compare-and-set that moved those jobs: the rows to insert in one bulk insert per model (a conflicting
    row is skipped), the updates grouped per model and values (one UPDATE … WHERE job IN (…) each)."""
    inserts: dict[type[Model], list[Model]] = {}
    updates: dict[tuple, list[int]] = {}
    for write in writes:
        if isinstance(write, InsertRow):
            inserts.setdefault(type(write.row), []).append(write.row)
        else:
            updates.setdefault((write.model, write.key, tuple(write.values.items())), []).append(write.job_pk)
    for model, rows in inserts.items():
        model.objects.bulk_create(rows, ignore_conflicts=True)
    for (model, key, values), pks in updates.items():
        for start in range(0, len(pks), 2000):
            model.objects.filter(**{f"{key}__in": pks[start : start + 2000]}).update(**dict(values))


def claimed_at_creation(job: AIJob, *, reason: str, fields: dict[str, Any]) -> list[tuple]:
    """Make a new, unsaved job one its creator claims in the same instant (the gateway runs its call at once):
    the claim's columns as a move to running writes them, attempt 1. Returns the events of both moves, as
    (from, to, attempt, reason, actor id): created -> pending, then the claim -> running, so its history reads
    as any claimed job's. Not a compare-and-set: no other process can see the row before it exists.
    """
    claim = _Change(
        to=S.RUNNING,
        allowed=allowed_from(S.RUNNING),
        attempt=None,
        reason=reason[:500],
        actor_id=None,
        fields=fields,
        cost=None,
        now=job.created_at,
    )
    for name, value in claim.updates().items():
        setattr(job, name, value)
    job.attempts = 1
    return [("", S.PENDING, 0, "created", job.created_by_id), (S.PENDING, S.RUNNING, 1, claim.reason, None)]


def _claim_change(reason: str, fields: dict[str, Any]) -> _Change:
    """The engine's claim of a pending job it picked: pending -> running, now."""
    return _Change(
        to=S.RUNNING,
        allowed=frozenset({S.PENDING}),
        attempt=None,
        reason=reason[:500],
        actor_id=None,
        fields=fields,
        cost=None,
        now=timezone.now(),
    )


def claim_pending(
    *, levels: Sequence[tuple[str, int]], reason: str, fields: dict[str, Any], also_return: str = ""
) -> Transitioned | None:
    """PostgreSQL: claim the first claimable job found along `levels`, in one statement. None when none is.

    `levels` are (priority, after brand) in the order to look: at each, the oldest job of the first brand
    after that one. The same compare-and-set statement as transition(), its row picked with SKIP LOCKED so
    racing workers spread out instead of queueing on one row. `also_return`: more columns for
    Transitioned.extra, read from `moved` (the job's row as claimed: every column of the job table).
    """
    change = _claim_change(reason, fields)
    params = [value for level in levels for value in level] + [change.now]
    return _cas_statement(change, pick=statements.claim_pick(len(levels)), pick_params=params, also_return=also_return)


def claim_pending_batch(
    *,
    levels: Sequence[tuple[str, int, int, int]],
    limit: int,
    reason: str,
    fields: dict[str, Any],
    also_return: str = "",
) -> tuple[list[Transitioned], bool]:
    """PostgreSQL: claim up to `limit` claimable jobs in one statement (statements.claim_batch_sql), in the order
    `limit` successive claim_pending() calls would take them. Returns the claims made, in that order (fewer
    when fewer are claimable or unlocked: SKIP LOCKED), and whether some jobs it picked were taken or locked
    by a concurrent claim meanwhile (claimable jobs may remain: ask again).

    `levels`: per priority in order, (priority, after brand, turn brand, claims in a row): the brands after
    `after brand` first, `turn brand` having had that many claims of its turn. Each claim is the same
    compare-and-set as transition()'s, with its event; the roll-up's deltas summed per bucket.
    """
    change = _claim_change(reason, fields)
    assignments, values = statements.job_assignments(change.updates())
    sql = statements.claim_batch_sql(levels=len(levels), assignments=assignments, also_return=also_return)
    params = [value for rank, level in enumerate(levels) for value in (rank, *level)]  # in placeholder order
    params += [change.now, limit, *values, list(change.allowed)]
    params += [change.to, change.now, change.reason, change.actor_id, *statements.TRANSITION_EVENT.defaults()]
    params += [settings.TIME_ZONE, *statements.CLAIM_BATCH_ROLLUP.defaults(), change.to]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    claims = [
        Transitioned(
            job_pk=job_pk,
            from_status=S.PENDING,
            to_status=S.RUNNING,
            attempt=attempt,
            at=change.now,
            brand_id=brand_id,
            extra=tuple(extra),
        )
        for _, job_pk, attempt, brand_id, *extra in rows
        if job_pk is not None
    ]
    return claims, rows[0][0] > len(claims)


def _raise_refusal(current: str, current_attempt: int, change: _Change) -> None:
    if current not in change.allowed:
        raise IllegalTransition(current, change.to)
    if change.attempt is not None and current_attempt != change.attempt:
        raise StaleAttempt(f"Attempt {change.attempt} is stale (job is on attempt {current_attempt})")


def _cas_statement(
    change: _Change,
    *,
    pick: str,
    pick_params: list[Any],
    along: Sequence[tuple[str, list[Any]]] = (),
    also_return: str = "",
) -> Transitioned | None:
    """PostgreSQL: the whole transition in one statement of data-modifying CTEs (statements.transition_sql:
    the compare-and-set on the picked row, its event, its roll-up deltas and the `along` writes). Returns None
    when nothing was picked.
    """
    assignments, values = statements.job_assignments(change.updates())
    sql = statements.transition_sql(
        pick=pick,
        assignments=assignments,
        claim=change.to == S.RUNNING,
        fenced=change.attempt is not None,
        along=[part for part, _ in along],
        also_return=also_return,
    )
    params = [*pick_params, *values, list(change.allowed)]  # in the order of the placeholders
    if change.attempt is not None:
        params.append(change.attempt)
    params += [change.to, change.now, change.reason, change.actor_id, *statements.TRANSITION_EVENT.defaults()]
    params += [settings.TIME_ZONE, *statements.TRANSITION_ROLLUP.defaults()]
    params += [change.to, to_micros(change.cost) if change.cost else 0]
    for _, part_params in along:
        params += part_params
    # Prepared (business.sql.prepared_cursor): planning this statement cost PostgreSQL more than running it.
    # (Tried while the roll-up was updated in place, preparing halved the engine's throughput: the faster
    # statements only queued harder on the roll-up rows' locks. With the append-only roll-up it pays.)
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    job_pk, current, current_attempt, new_attempt, brand_id, *extra = row
    if new_attempt is None:
        _raise_refusal(current, current_attempt, change)
        raise Conflict("The job changed while being updated; retry", error_code="CONCURRENT_UPDATE")
    return Transitioned(
        job_pk=job_pk,
        from_status=current,
        to_status=change.to,
        attempt=new_attempt,
        at=change.now,
        brand_id=brand_id,
        extra=tuple(extra),
    )


def _cas_portable(job_pk: int, change: _Change) -> Transitioned:
    """Other databases (SQLite): the same steps as separate statements in one transaction."""
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
            _raise_refusal(current, row["attempts"], change)
            updates = change.updates()
            new_attempt = row["attempts"]
            if change.to == S.RUNNING:
                updates["attempts"] = F("attempts") + 1
                new_attempt += 1
            guarded = AIJob.objects.filter(pk=job_pk, status=current)
            if change.attempt is not None:
                guarded = guarded.filter(attempts=change.attempt)
            if guarded.update(**updates) == 1:
                break
        else:  # pragma: no cover - five lost races in a row means something is badly wrong
            raise Conflict("The job changed too often while being updated; retry", error_code="CONCURRENT_UPDATE")

        AIJobEvent.objects.create(
            job_id=job_pk,
            from_status=current,
            to_status=change.to,
            at=change.now,
            attempt=new_attempt,
            reason=change.reason,
            actor_id=change.actor_id,
        )
        stat_move(
            brand_id=row["brand_id"],
            day=timezone.localdate(row["created_at"]),
            job_type_id=row["job_type_id"],
            deltas={current: -1, change.to: +1},
            cost={change.to: change.cost} if change.cost else None,
        )
    return Transitioned(
        job_pk=job_pk,
        from_status=current,
        to_status=change.to,
        attempt=new_attempt,
        at=change.now,
        brand_id=row["brand_id"],
    )


@dataclass(frozen=True)
class Move:
    """One job of transition_many() with what its move carries of its own: the attempt it must still be on
    (None: any), what it cost (the roll-up's), and job fields of its own (the same names for every job)."""

    job_pk: int
    attempt: int | None = None
    cost: Decimal | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def transition_many(
    moves: Sequence[int | Move], *, to: str, expected: frozenset[str] | set[str] | None = None, reason: str = "",
    actor_id: int | None = None, fields: dict[str, Any] | None = None, at: Any = None,
    along: Sequence[InsertRow | UpdateRows] = (),
) -> list[Transitioned]:  # fmt: skip
    """Move many jobs to `to` at once, each by the same compare-and-set as transition() (on its status at the
    time of the statement; with a `Move`, fenced by its attempt and carrying its cost and fields): a job that
    left the allowed statuses meanwhile, moved to another attempt or is gone is skipped, never an error, never
    overwritten. Returns the moves made, in job id order. `fields`: job fields every move sets. `along`
    (PostgreSQL only): the extensions' writes of these jobs' ends (hooks.InsertRow / UpdateRows), parts of the
    same statement, written for the jobs it moved only.

    PostgreSQL: ONE statement for all of them (statements.transitions_sql): the rows locked in id order, each
    job's compare-and-set, its event, the roll-up's deltas summed per (brand, day, type, status); atomic on its
    own, or part of the caller's transaction. Elsewhere, in one transaction: moves carrying nothing per job by
    one `UPDATE … WHERE id IN (…) AND status = <from>` per source status, others one by one (transition()'s
    portable steps), then the events and the roll-up's deltas.
    """
    moves = [m if isinstance(m, Move) else Move(job_pk=m) for m in moves]
    change = _Change(
        to=to,
        allowed=allowed_from(to, expected),
        attempt=None,
        reason=reason[:500],
        actor_id=actor_id,
        fields=fields or {},
        cost=None,
        now=at or timezone.now(),
    )
    if to == S.RUNNING:
        raise ValueError("a claim moves one job at a time (attempts + 1): use transition()")
    if not moves:
        return []
    if connection.vendor == "postgresql":
        done = _cas_many_statement(change, moves, along)
    elif along:
        raise ValueError("`along` writes need PostgreSQL's one-statement transition")
    elif any(m.attempt is not None or m.cost or m.fields for m in moves):
        done = _cas_many_portable(change, moves)
    else:
        done = _cas_many_plain(change, [m.job_pk for m in moves])
    if to in FINAL_STATUSES:
        _announce([Committed(job_pk=t.job_pk, status=to, brand_id=t.brand_id) for t in done])
    return done


def _cas_many_statement(
    change: _Change, moves: list[Move], along: Sequence[InsertRow | UpdateRows]
) -> list[Transitioned]:
    """PostgreSQL: transition_many's one statement (a job named twice moves once, by its first move)."""
    unique = list({m.job_pk: m for m in reversed(moves)}.values())
    names = list(unique[0].fields)
    assignments, values = statements.job_assignments(change.updates())
    parts = statements.along_many_parts(along)
    sql = statements.transitions_sql(
        assignments=assignments, each=statements.job_field_types(names), along=[part for part, _ in parts]
    )
    params = [
        [m.job_pk for m in unique],
        [m.attempt for m in unique],
        [to_micros(m.cost) if m.cost else 0 for m in unique],
        *(statements.job_values(name, [m.fields[name] for m in unique]) for name in names),
        *values,
        list(change.allowed),
        change.to,
        change.now,
        change.reason,
        change.actor_id,
        *statements.TRANSITION_EVENT.defaults(),
        *statements.MANY_ROLLUP.defaults(),
        settings.TIME_ZONE,
        change.to,
    ]
    for _, part_params in parts:
        params += part_params
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        Transitioned(
            job_pk=pk, from_status=current, to_status=change.to, attempt=new_attempt, at=change.now, brand_id=brand_id
        )  # fmt: skip
        for pk, current, _, new_attempt, brand_id in rows
        if new_attempt is not None
    ]


def _cas_many_portable(change: _Change, moves: list[Move]) -> list[Transitioned]:
    """Other databases: each move by transition()'s portable steps, in one transaction, in job id order; one
    refused (or whose job is gone) is skipped."""
    done, seen = [], set()
    with transaction.atomic():
        for move in sorted(moves, key=lambda m: m.job_pk):
            if move.job_pk in seen:
                continue
            seen.add(move.job_pk)
            one = _Change(**{**change.__dict__, "attempt": move.attempt, "cost": move.cost,
                             "fields": {**change.fields, **move.fields}})  # fmt: skip
            try:
                done.append(_cas_portable(move.job_pk, one))  # its own savepoint: a refusal writes nothing
            except (IllegalTransition, StaleAttempt, NotFound):
                continue
    return done


def _cas_many_plain(change: _Change, job_pks: list[int]) -> list[Transitioned]:
    """Other databases: moves carrying nothing per job, set-based: per source status ONE
    `UPDATE … WHERE id IN (…) AND status = <from> RETURNING id, attempts` (the row lock and the re-check of the
    status are the UPDATE's own, so a job is moved once whatever races it), then the events in one bulk insert
    and the roll-up's deltas summed per (brand, day, type, status)."""
    conn = connections[DEFAULT_DB_ALIAS]
    assignments, values = statements.job_assignments(change.updates())
    moved: dict[int, tuple[str, int]] = {}
    with transaction.atomic():
        for source in sorted(change.allowed):
            pks = [pk for pk in job_pks if pk not in moved]
            if not pks:
                break
            with conn.cursor() as cursor:
                cursor.execute(statements.jobs_move_sql(assignments, len(pks)), [*values, *pks, source])
                moved.update((pk, (source, attempts)) for pk, attempts in cursor.fetchall())
        if not moved:
            return []
        rows = AIJob.objects.filter(pk__in=list(moved)).values_list("pk", "brand_id", "job_type_id", "created_at")
        done, deltas = [], {}
        for pk, brand_id, job_type_id, created_at in rows.order_by("pk"):
            source, attempts = moved[pk]
            done.append(Transitioned(pk, source, change.to, attempts, change.now, brand_id))
            for status, delta in ((source, -1), (change.to, 1)):
                key = (brand_id, timezone.localdate(created_at), job_type_id, status)
                deltas[key] = deltas.get(key, 0) + delta
        AIJobEvent.objects.bulk_create(
            [
                AIJobEvent(
                    job_id=t.job_pk,
                    from_status=t.from_status,
                    to_status=change.to,
                    at=change.now,
                    attempt=t.attempt,
                    reason=change.reason,
                    actor_id=change.actor_id,
                )
                for t in done
            ],
            batch_size=2000,
        )
        JobDailyStat.objects.bulk_create(
            [
                JobDailyStat(brand_id=b, day=d, job_type_id=t, status=st, jobs=n, cost_micros=0)
                for (b, d, t, st), n in deltas.items()
                if n
            ]
        )
    return done


def stat_move(
    *, brand_id: int, day, job_type_id: int, deltas: dict[str, int], cost: dict[str, Decimal] | None = None
) -> None:
    """Add job-count (and cost) deltas to the roll-up of one (brand, day, type): a row per status, appended
    (JobDailyStat is append-only; stats_compact folds them)."""
    cost = cost or {}
    JobDailyStat.objects.bulk_create(
        [
            JobDailyStat(
                brand_id=brand_id,
                day=day,
                job_type_id=job_type_id,
                status=status,
                jobs=deltas.get(status, 0),
                cost_micros=to_micros(cost.get(status, Decimal(0))),
            )
            for status in sorted(set(deltas) | set(cost))
        ]
    )


COMPACT_KEYS = 500  # roll-up keys folded per round


def stats_compact(*, keys: int = COMPACT_KEYS, since_id: int = 0) -> int:
    """Fold the roll-up's delta rows: each (brand, day, type, status) with several rows becomes one row of
    their sums, in one transaction, so the sums readers see never change. Returns the keys folded.

    `since_id`: only keys with a row above that id (the recent writes; 0 looks at every key, a scan of the
    whole roll-up). Safe beside writers and other compactions: rows appended meanwhile are simply left for the
    next round; on PostgreSQL a row two compactions both delete is counted by the one whose DELETE returned it.
    """
    params = [since_id, keys] if since_id else [keys]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                statements.rollup_fold_sql(recent=bool(since_id)), [*params, *statements.FOLDED_ROLLUP.defaults()]
            )
            return cursor.rowcount
    with transaction.atomic(), connection.cursor() as cursor:  # SQLite: one writer at a time
        cursor.execute(statements.rollup_duplicates_sql(recent=bool(since_id)), params)
        folded = cursor.fetchall()
        for brand_id, day, job_type_id, status, jobs, micros, ids in folded:
            JobDailyStat.objects.filter(pk__in=[int(i) for i in ids.split(",")]).delete()
            JobDailyStat.objects.create(
                brand_id=brand_id, day=day, job_type_id=job_type_id, status=status, jobs=jobs, cost_micros=micros
            )
        return len(folded)
