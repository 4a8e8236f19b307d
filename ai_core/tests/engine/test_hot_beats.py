"""The watcher's heartbeats and progress are heap-only (HOT) updates: a beat (statements.BEAT_FIELDS) changes
no column any index of the jobs table holds, so PostgreSQL writes the row's new version on its own page and no
index entry (with heartbeat_at indexed, each beat rewrote the row's entry in all the table's indexes, two of
them GIN). The reaper still finds the running jobs by an index."""

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Index, UniqueConstraint
from django.utils import timezone

from ai_core import statements
from ai_core.engine import batch
from ai_core.engine.upkeep import BATCH, running_to_reap
from ai_core.engine.watch import Attempt, beat
from ai_core.models import AIJob, AIJobType
from ai_core.tests.engine.test_hot_plans import plan_nodes
from testing.jobs import bulk_submit

needs_postgres = pytest.mark.skipif(not settings.IS_POSTGRES, reason="PostgreSQL's indexes and statistics")
JOB = AIJob._meta.db_table


def _names(part) -> set[str]:
    """The model fields an index's or a constraint's fields, expressions or condition name."""
    if part is None:
        return set()
    if isinstance(part, str):
        return {part.lstrip("-")}
    if isinstance(part, F):
        return {part.name.split("__")[0]}
    if hasattr(part, "referenced_base_fields"):  # a Q
        return set(part.referenced_base_fields)
    return {name for child in part.get_source_expressions() for name in _names(child)}


def model_indexed_fields() -> set[str]:
    """Every field the jobs model asks an index on: its fields' own (primary key, unique, db_index, a foreign
    key's), its Meta.indexes and its unique constraints, their columns, expressions and conditions."""
    meta = AIJob._meta
    indexed = {f.name for f in meta.concrete_fields if f.primary_key or f.unique or f.db_index}
    for index in [*meta.indexes, *(c for c in meta.constraints if isinstance(c, UniqueConstraint))]:
        for part in [*index.fields, *index.expressions, index.condition]:
            indexed |= _names(part)
        if isinstance(index, Index):
            indexed |= set(index.include)
    return indexed


def database_indexed_columns() -> set[str]:
    """Every column of the jobs table an index of the database holds, as a key, in an expression or in its
    predicate (PostgreSQL records each as a dependency of the index: the migrations' own SQL ones too)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT a.attname FROM pg_index i "
            "JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid "
            "AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid AND d.refobjsubid > 0 "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = d.refobjsubid "
            "WHERE i.indrelid = %s::regclass",
            [JOB],
        )
        return {name for (name,) in cursor.fetchall()}


def test_no_index_of_the_jobs_model_holds_a_field_a_beat_writes():
    assert set(statements.BEAT_FIELDS) == {"heartbeat_at", "progress_percentage", "updated_at"}
    indexed = model_indexed_fields()
    assert not indexed & set(statements.BEAT_FIELDS)
    assert {"status", "job_type", "brand", "job_id", "idempotency_key"} <= indexed  # it sees the model's indexes


@needs_postgres
@pytest.mark.django_db
def test_no_index_of_the_jobs_table_holds_a_column_a_beat_writes():
    indexed = database_indexed_columns()
    written = {AIJob._meta.get_field(name).column for name in statements.BEAT_FIELDS}
    assert not indexed & written
    # It sees predicates and expressions: the trigram search indexes (migration 0005, SQL) index expressions of
    # description and job_id.
    assert {"description", "job_id", "status", "available_at"} <= indexed
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE oid = %s::regclass", [JOB])
        (options,) = cursor.fetchone()
    assert any(option.startswith("fillfactor=") for option in options or [])  # room on a page for the versions


def _updates() -> tuple[int, int]:
    """This connection's updates and heap-only updates of the jobs table not yet flushed to the statistics
    (pg_stat_xact_*: they include earlier transactions' until the connection's next flush, which never
    happens inside a transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = %s", [JOB])
        return cursor.fetchone()


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_heartbeats_and_progress_are_heap_only_updates(job_types, make_brands):
    """A few jobs, so that their rows' new versions fit on their page whether or not PostgreSQL could prune it
    in between (another database's open transaction can hold that back): this tests that no index stops a
    beat being HOT; the room for them on a busy page is the table's fillfactor (migration 0015)."""
    (brand,) = make_brands(1)
    bulk_submit([(brand, "normal")] * 3)
    claimed = batch.claim_many(3)
    attempts = [Attempt(job_pk=c.job_pk, attempt=c.attempt, deadline=float("inf")) for c, _ in claimed]
    assert len(attempts) == 3
    for progress in [25, None, 50, None, 100]:  # progress reported before each round (None: a heartbeat only)
        for attempt in attempts:
            attempt.progress = progress
        with transaction.atomic():  # one round, one transaction, as the watcher's
            updated, heap_only = _updates()
            beat(attempts)
            after = _updates()
        assert (after[0] - updated, after[1] - heap_only) == (3, 3), progress
    rows = AIJob.objects.filter(pk__in=[a.job_pk for a in attempts]).values_list("progress_percentage", flat=True)
    assert list(rows) == [100] * 3


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_the_reaper_reads_running_jobs_by_an_index_among_many_final_ones(job_types, make_brands):
    brands = make_brands(3)
    final = bulk_submit([(brands[i % 3], "normal") for i in range(12_000)])
    now = timezone.now()
    AIJob.objects.filter(pk__in=final).update(status="completed", completed_at=now)
    running = bulk_submit([(brands[i % 3], "normal") for i in range(2_000)])
    AIJob.objects.filter(pk__in=running).update(status="running", started_at=now, attempts=1, heartbeat_at=now)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {JOB}")
    chat = AIJobType.objects.get(name="chat_completion")
    query = running_to_reap(
        chat, silent_since=now - timedelta(minutes=1), overdue_since=now - timedelta(minutes=5)
    ).values_list("pk", "attempts", "fallback_attempts", "started_at")[:BATCH]
    (plan,) = json.loads(query.explain(format="json"))
    scans = [node for node, _ in plan_nodes(plan["Plan"]) if node.get("Relation Name") == JOB or "Index Name" in node]
    assert [(node["Node Type"], node.get("Index Name")) for node in scans if "Index Name" in node] in (
        [("Index Scan", "aijob_running_started")],
        [("Bitmap Index Scan", "aijob_running_started")],
    ), scans
    assert all(node["Node Type"] != "Seq Scan" for node in scans), scans
