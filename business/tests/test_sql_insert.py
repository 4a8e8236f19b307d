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
