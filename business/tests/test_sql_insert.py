"""business.sql.Insert prepares each value as the field's own get_db_prep_save would (its shortcut for values
the field hands over unchanged must not change what is written)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection

from ai_core.models import AIJob, AIJobType
from ai_usage.models import AIJobUsage
from business.sql import Insert


def prepared(value):
    return getattr(value, "obj", value)  # psycopg's Jsonb wrapper: compare what it wraps


def orm_values(instance, fields):
    return [prepared(f.get_db_prep_save(f.pre_save(instance, add=True), connection)) for f in fields]


@pytest.mark.django_db
def test_insert_values_equal_the_orm_preparation_for_every_field(personas, job_types):
    job = AIJob(
        job_type=AIJobType.objects.get(name="chat_completion"),
        brand=personas.brand_a,
        created_by=personas.alice,
        input_data={"messages": [{"role": "user", "content": "é"}]},
        description="d",
        attempts=2,
        is_async=True,
        started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    insert = Insert(AIJob)
    ours = [prepared(v) for v in insert.values(job)]
    theirs = orm_values(job, insert.fields)
    auto_now = [i for i, f in enumerate(insert.fields) if getattr(f, "auto_now", False)]
    assert [v for i, v in enumerate(ours) if i not in auto_now] == [
        v for i, v in enumerate(theirs) if i not in auto_now
    ]
    if connection.vendor == "postgresql":  # psycopg adapts an aware datetime itself: passed as it is
        assert ours[insert.fields.index(AIJob._meta.get_field("started_at"))] is job.started_at


@pytest.mark.django_db
def test_insert_values_prepare_what_the_field_would_convert(personas, job_types):
    """A value of another type than the field's own (a str for an integer, a Decimal) goes through the field."""
    usage = AIJobUsage(brand=personas.brand_a, input_tokens="12", total_cost=Decimal("0.5"))
    insert = Insert(AIJobUsage)
    ours = [prepared(v) for v in insert.values(usage)]
    theirs = orm_values(usage, insert.fields)
    auto_now = {i for i, f in enumerate(insert.fields) if getattr(f, "auto_now", False)}

    assert [v for i, v in enumerate(ours) if i not in auto_now] == [
        v for i, v in enumerate(theirs) if i not in auto_now
    ]
    assert ours[[f.name for f in insert.fields].index("input_tokens")] == 12


@pytest.mark.django_db(transaction=True)
def test_bulk_insert_like_writes_the_rows_the_orm_would_write(personas, job_types):
    """Every column of a row written from a template plus its varying fields equals that of the same job
    written by the ORM: a model change (a new field, a default) cannot make the bulk path write another row."""
    from business.sql import bulk_insert_like

    job_type = AIJobType.objects.get(name="chat_completion")
    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    common = {"job_type": job_type, "brand": personas.brand_a, "created_by": personas.alice, "is_async": True}
    template = AIJob(**common, created_at=at, updated_at=at, available_at=at)
    varying = ["job_id", "priority", "input_data", "available_at"]
    rows = [("ai_job_bulk00000001", "high", {"messages": [{"role": "user", "content": "é"}]}, at)]
    rows.append(("ai_job_bulk00000002", "low", {"n": [1, 2.5, None, True]}, datetime(2027, 1, 1, tzinfo=UTC)))

    pks = bulk_insert_like(AIJob, template, varying, rows)
    by_orm = [
        AIJob.objects.create(
            **common, **dict(zip(varying, (f"ai_job_orm{i:09d}", *row[1:]), strict=True)), created_at=at
        )
        for i, row in enumerate(rows)
    ]

    assert len(pks) == 2 and len(set(pks)) == 2
    fields = [f.attname for f in AIJob._meta.concrete_fields if f.attname not in {"id", "job_id", "updated_at"}]
    written = list(AIJob.objects.filter(pk__in=pks).order_by("pk").values_list("job_id", *fields))
    expected = list(AIJob.objects.filter(pk__in=[j.pk for j in by_orm]).order_by("pk").values_list(*fields))
    assert [row[0] for row in written] == [row[0] for row in rows]
    assert [row[1:] for row in written] == expected
