"""Adding an ordinary field with a default to a model needs no change to the hand-written statements.

The hot statements (the one-statement creation and transition on PostgreSQL, the roll-up's fold, the usage
row, bulk submission's COPY) write rows of several models. Their column lists are built from the models'
fields (business.sql), so a new field is written with its default. This test adds such a field to every model
they write — as a migration would: the column NOT NULL, without a database default — and drives each
statement through it: on PostgreSQL the statements that list columns by hand would fail with a
NotNullViolation; everywhere, a statement missing the column would leave it out.
"""

import pytest
from django.db import connection, models

from ai_core.engine.runner import run_from_message
from ai_core.models import AIJob, AIJobEvent, JobDailyStat
from ai_core.workflow import stats_compact
from ai_openai.models import OpenAIJob
from ai_usage.models import AIJobUsage, Quota, QuotaReservation
from batches.models import BatchJob

WRITTEN_BY_HAND = [AIJob, AIJobEvent, JobDailyStat, AIJobUsage, QuotaReservation, OpenAIJob, BatchJob]


@pytest.fixture
def source_field_everywhere():
    """`source = CharField(max_length=20, default="api")` on each model, and its column, for one test."""
    added = []
    for model in WRITTEN_BY_HAND:
        field = models.CharField(max_length=20, default="api")
        field.contribute_to_class(model, "source")
        with connection.schema_editor() as editor:
            editor.add_field(model, field)
        added.append((model, field))
    yield
    for model, field in reversed(added):
        with connection.schema_editor() as editor:
            editor.remove_field(model, field)
        model._meta.local_fields.remove(field)
        model._meta._expire_cache()
        delattr(model, field.attname)


def chat(text: str) -> dict:
    return {"model": "echo-1", "messages": [{"role": "user", "content": text}]}


@pytest.mark.django_db(transaction=True)
def test_a_field_added_with_a_default_is_written_by_every_hot_statement(
    source_field_everywhere, personas, client_for, job_types
):
    brand = personas.brand_a
    Quota.objects.create(company=brand.company, brand=brand, monthly_token_limit=1_000_000)  # reservations
    alice = client_for(personas.alice, brand)

    created = alice.post("/ai/jobs/", {"job_type": "chat_completion", "input_data": chat("one")}, format="json")
    assert created.status_code == 201, created.content
    to_cancel = alice.post("/ai/jobs/", {"job_type": "chat_completion", "input_data": chat("two")}, format="json")
    assert to_cancel.status_code == 201, to_cancel.content
    through_openai = alice.post("/ai/openai/chat/", {**chat("three"), "run_async": True}, format="json")
    assert through_openai.status_code == 202, through_openai.content
    batch = alice.post(
        "/ai/batches/",
        {"job_type": "chat_completion", "jobs": [{"input_data": chat("four")}, {"input_data": chat("five")}]},
        format="json",
    )
    assert batch.status_code == 201, batch.content

    assert alice.post(f"/ai/jobs/{to_cancel.json()['job_id']}/cancel/").status_code == 200
    # A wake-up runs the best claimable job (not the one named): two runs, two of the four pending jobs.
    assert run_from_message(AIJob.objects.get(job_id=created.json()["job_id"]).pk, task_id="t-1") == "completed"
    assert run_from_message(BatchJob.objects.filter(batch__batch_id=batch.json()["batch_id"])[0].job_id) == "completed"
    stats_compact()

    for model in WRITTEN_BY_HAND:
        sources = list(model.objects.values_list("source", flat=True))
        assert sources, f"{model.__name__}: the scenario wrote no row"
        assert set(sources) == {"api"}, f"{model.__name__}: {sources}"
