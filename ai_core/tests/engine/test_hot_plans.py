"""The asyncio executor's hot statements (the batched claim, the watcher's poll and heartbeat, the batched
completion) find the job rows they lock and write by their primary key, whatever the statistics say: with
statistics older than the rows (a table just filled, or one of finished jobs whose pending or running rows the
statistics put at ~0), PostgreSQL otherwise planned them as scans of every such row per job (a batch of 100
claims over 2 000 pending jobs ~5x slower). Also: the watcher's poll and heartbeat on many attempts, on both
databases."""

import threading
import time

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ai_core import statements
from ai_core.engine import batch
from ai_core.engine.watch import Attempt, beat, stop_the_gone
from ai_core.models import AIJob
from ai_core.services import job_cancel, job_start
from ai_providers.clients.base import ChatResult
from business.sql import prepared_cursor
from testing.jobs import bulk_submit

needs_postgres = pytest.mark.skipif(not settings.IS_POSTGRES, reason="PostgreSQL's plans")
JOB = AIJob._meta.db_table


def answer() -> ChatResult:
    return ChatResult(
        completion="ok", finish_reason="stop", model="echo-1", request_id=None, input_tokens=1, output_tokens=1
    )


def plan_nodes(node: dict, under: tuple[str, ...] = ()):
    """Every node of an EXPLAIN (FORMAT JSON) plan with the CTEs / sub-plans it sits under."""
    here = (*under, node["Subplan Name"]) if "Subplan Name" in node else under
    yield node, here
    for child in node.get("Plans", []):
        yield from plan_nodes(child, here)


def explain(sql: str, params) -> dict:
    with prepared_cursor() as cursor:
        cursor.execute(statements.explained(sql), params)
        (plan,) = cursor.fetchone()[0]
    return plan["Plan"]


class Captured:
    def __init__(self) -> None:
        self.statements: list[tuple[str, list]] = []

    def __call__(self, execute, sql, params, many, context):
        self.statements.append((sql, params))
        return execute(sql, params, many, context)

    def first(self, prefix: str) -> tuple[str, list]:
        return next((sql, params) for sql, params in self.statements if sql.lstrip().startswith(prefix))


def job_scans(plan: dict, ctes: tuple[str, ...] | None) -> list[dict]:
    """The nodes that read the jobs table (under one of `ctes`; None: anywhere)."""
    return [
        node
        for node, under in plan_nodes(plan)
        if node.get("Relation Name") == JOB and (ctes is None or any(f"CTE {cte}" in under for cte in ctes))
    ]


def assert_by_primary_key(plan: dict, ctes: tuple[str, ...] | None) -> None:
    scans = job_scans(plan, ctes)
    assert scans, "the statement reads no job row"
    for node in scans:
        if node["Node Type"] == "ModifyTable":
            continue
        # The primary key's index (or the locked row's ctid): a batch's rows, never every pending or running job.
        assert (node["Node Type"], node.get("Index Name")) in {("Index Scan", f"{JOB}_pkey"), ("Tid Scan", None)}, node


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_the_batched_claim_heartbeat_poll_and_completion_find_jobs_by_id_with_stale_statistics(job_types, make_brands):
    brands = make_brands(3)
    levels = ("low", "normal", "high", "urgent")
    done = bulk_submit([(brands[i % 3], levels[i % 4]) for i in range(2000)])
    AIJob.objects.filter(pk__in=done).update(status="completed", completed_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {JOB}")  # statistics of finished jobs only: older than the backlog below
    bulk_submit([(brands[i % 3], levels[i % 4]) for i in range(600)])
    captured = Captured()
    with connection.execute_wrapper(captured):
        claimed = batch.claim_many(100)
        attempts = [Attempt(job_pk=c.job_pk, attempt=c.attempt, deadline=float("inf")) for c, _ in claimed]
        for attempt in attempts:
            attempt.report(50)
        beat(attempts)
        stop_the_gone(attempts)
        statuses = batch.complete_many([(c.job_pk, c.attempt, answer(), job) for c, job in claimed])
    assert len(claimed) == 100 and statuses == ["completed"] * 100
    assert_by_primary_key(explain(*captured.first("WITH RECURSIVE level")), ("cur", "moved"))
    assert_by_primary_key(explain(*captured.first("WITH held AS")), None)
    assert_by_primary_key(explain(*captured.first("SELECT id, status, attempts")), None)
    assert_by_primary_key(explain(*captured.first("WITH v AS")), ("cur", "moved"))


@pytest.mark.django_db(transaction=True)
def test_the_watcher_polls_and_beats_many_attempts_current_ones_only(job_types, make_brands):
    """Beyond one chunk (watch.CHUNK): each attempt halted for its own reason, beaten only when current."""
    (brand,) = make_brands(1)
    pks = bulk_submit([(brand, "normal")] * 205)
    started = {pk: job_start(job_pk=pk).attempt for pk in pks}
    cancelled, deleted, zombie = pks[0], pks[1], pks[2]
    job_cancel(job_pk=cancelled)
    AIJob.objects.filter(pk=deleted).delete()
    AIJob.objects.filter(pk__in=pks).update(heartbeat_at=None)
    attempts = {pk: Attempt(job_pk=pk, attempt=started[pk], deadline=float("inf")) for pk in pks}
    attempts[zombie] = Attempt(job_pk=zombie, attempt=started[zombie] - 1, deadline=float("inf"))
    for index, pk in enumerate(pks):
        if index % 2:
            attempts[pk].report(index % 100)

    stop_the_gone(list(attempts.values()))
    beat(list(attempts.values()))

    halted = {pk: a.stop_reason for pk, a in attempts.items() if a.stop.is_set()}
    assert halted == {cancelled: "cancelled", deleted: "superseded", zombie: "superseded"}
    rows = {pk: (beaten, progress) for pk, beaten, progress in AIJob.objects.values_list(
        "pk", "heartbeat_at", "progress_percentage"
    )}  # fmt: skip
    for index, pk in enumerate(pks[3:], start=3):
        assert rows[pk][0] is not None
        assert rows[pk][1] == (index % 100 if index % 2 else 0)
    assert rows[zombie][0] is None and rows[cancelled][0] is None  # a halted attempt keeps nothing alive


def test_a_batched_completion_stores_awkward_values_as_given(job_types, make_brands):
    """The batch's arrays (binary on PostgreSQL) carry quotes, backslashes, braces, commas, newlines, non-ASCII
    text and NULLs unchanged."""
    (brand,) = make_brands(1)
    pks = bulk_submit([(brand, "normal")] * 3)
    texts = ['say "hi", {x}\\n', "l'été\n\t→ 終", ""]
    items = []
    for pk, text in zip(pks, texts, strict=True):
        attempt = job_start(job_pk=pk).attempt
        result = ChatResult(
            completion=text, finish_reason="stop", model="echo-1", request_id=None, input_tokens=3, output_tokens=0
        )
        items.append((pk, attempt, result, None))
    assert batch.complete_many(items) == ["completed"] * 3
    for pk, text in zip(pks, texts, strict=True):
        job = AIJob.objects.get(pk=pk)
        assert (job.result_data["completion"], job.result_data.get("request_id")) == (text, None)
        assert job.completed_at is not None


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_skips_a_row_a_completion_holds_instead_of_waiting(job_types, make_brands):
    """A batched completion holds its rows' locks until it commits; a beat waiting on them while the completion
    waits on the beat's would deadlock: the beat skips the held row (beaten again next round)."""
    (brand,) = make_brands(1)
    pks = bulk_submit([(brand, "normal")] * 3)
    attempts = [Attempt(job_pk=pk, attempt=job_start(job_pk=pk).attempt, deadline=float("inf")) for pk in pks]
    AIJob.objects.filter(pk__in=pks).update(heartbeat_at=None)
    held, release = threading.Event(), threading.Event()

    def completion_holding_the_first_row():
        try:
            with transaction.atomic():
                list(AIJob.objects.select_for_update().filter(pk=pks[0]))
                held.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=completion_holding_the_first_row)
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        beat(attempts)
        assert time.monotonic() - started < 2  # did not wait for the holder
    finally:
        release.set()
        holder.join()
    beaten = dict(AIJob.objects.filter(pk__in=pks).values_list("pk", "heartbeat_at"))
    assert beaten[pks[0]] is None and beaten[pks[1]] is not None and beaten[pks[2]] is not None
    beat(attempts)  # the next round beats it
    assert AIJob.objects.get(pk=pks[0]).heartbeat_at is not None
