"""business.sql.assignments_of: an UPDATE's SET list for a fixed set of fields, built once and kept, whose values
are prepared as the field's own get_db_prep_save would (its shortcut for values handed over unchanged must not
change what is written), and built again when the model's fields change."""

from datetime import UTC, datetime

import pytest
from django.db import connection, models

from ai_core.models import AIJob
from ai_core.statements import job_assignments
from ai_openai.models import OpenAIJob
from business.sql import assignments_of


def prepared(value):
    return getattr(value, "obj", value)  # psycopg's Jsonb wrapper: compare what it wraps


UPDATES = {
    "status": "completed",
    "updated_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    "result_data": {"completion": "é"},
    "error_message": "",
    "completed_at": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
    "progress_percentage": 100,
    "heartbeat_at": None,
    "attempts": 2,
}


@pytest.mark.django_db
def test_the_values_equal_the_orm_preparation_for_every_field():
    shape = assignments_of(AIJob, tuple(UPDATES))
    fields = [AIJob._meta.get_field(name) for name in UPDATES]
    theirs = [prepared(f.get_db_prep_save(v, connection)) for f, v in zip(fields, UPDATES.values(), strict=True)]
    assert [prepared(v) for v in shape.values(UPDATES.values())] == theirs


def test_the_set_list_names_each_column_in_order_typed_when_asked():
    assert job_assignments({"status": "running", "heartbeat_at": None})[0] == ['"status" = %s', '"heartbeat_at" = %s']
    typed = assignments_of(OpenAIJob, ("prompt_tokens", "openai_id"), typed=True).sql
    kinds = [OpenAIJob._meta.get_field(name).db_type(connection) for name in ("prompt_tokens", "openai_id")]
    assert typed == f'"prompt_tokens" = CAST(%s AS {kinds[0]}), "openai_id" = CAST(%s AS {kinds[1]})'


def test_it_is_built_once_per_model_and_names():
    assert assignments_of(AIJob, ("status",)) is assignments_of(AIJob, ("status",))
    assert assignments_of(AIJob, ("status",)) is not assignments_of(AIJob, ("status",), typed=True)
    assert assignments_of(AIJob, ("status",)).parts is assignments_of(AIJob, ("status",)).parts


def test_a_change_of_the_models_fields_builds_it_again():
    shape = assignments_of(OpenAIJob, ("prompt_tokens",))
    before = shape.parts
    field = models.CharField(max_length=20, default="api")
    field.contribute_to_class(OpenAIJob, "source")
    try:
        assert shape.parts is not before and shape.parts == before  # rebuilt: a renamed column would show
    finally:
        OpenAIJob._meta.local_fields.remove(field)
        OpenAIJob._meta._expire_cache()
        delattr(OpenAIJob, field.attname)
