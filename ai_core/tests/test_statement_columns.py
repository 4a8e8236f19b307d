"""Adding an ordinary field with a default to a model needs no change to the hand-written statements.

Each app's SQL text lives in its statements module (STATEMENT_MODULES). The hot statements (the one-statement
creation and transition on PostgreSQL, the roll-up's fold, the usage row, bulk submission's COPY) write rows
of several models; their column lists are built from the models' fields (business.sql), so a new field is
written with its default. The first test adds such a field to every model they write — as a migration would:
the column NOT NULL, without a database default — and drives each statement through it: on PostgreSQL the
statements that list columns by hand would fail with a NotNullViolation; everywhere, a statement missing the
column would leave it out. The others check every statements module on any database: each INSERT it builds
lists every column of its model (its column list read off the statement's text, with a field added at test
time), none spells a column list by hand, and its reads of whole rows read a field added at test time.
"""

import inspect
import re
from types import ModuleType

import pytest
from django.db import connection, models
from django.db.models import NOT_PROVIDED, Model

import ai_core.statements
import ai_usage.statements
import business.statements
import webhooks.statements
from ai_core import lifecycle, selectors
from ai_core.engine.batch import claim_many
from ai_core.engine.runner import run_from_message
from ai_core.models import AIJob, AIJobEvent, JobDailyStat
from ai_core.workflow import stats_compact
from ai_openai.models import OpenAIJob
from ai_usage.models import AIJobUsage, Quota, QuotaReservation, QuotaThresholdCrossing
from batches.models import BatchJob
from business.access import user_with_brand
from business.models import User
from business.sql import Insert, InsertSelect

STATEMENT_MODULES: list[ModuleType] = [
    ai_core.statements,
    ai_usage.statements,
    business.statements,
    webhooks.statements,
]

WRITTEN_BY_HAND = [AIJob, AIJobEvent, JobDailyStat, AIJobUsage, QuotaReservation, OpenAIJob, BatchJob]


def _add_source_field(models_: list[type[Model]], *, columns: bool):
    """`source = CharField(max_length=20, default="api")` on each model (and its column when `columns`); a
    function undoing it all."""
    added = []
    for model in models_:
        field = models.CharField(max_length=20, default="api")
        field.contribute_to_class(model, "source")
        if columns:
            with connection.schema_editor() as editor:
                editor.add_field(model, field)
        added.append((model, field))

    def undo() -> None:
        for model, field in reversed(added):
            if columns:
                with connection.schema_editor() as editor:
                    editor.remove_field(model, field)
            model._meta.local_fields.remove(field)
            model._meta._expire_cache()
            delattr(model, field.attname)

    return undo


@pytest.fixture
def source_field_everywhere():
    """`source = CharField(max_length=20, default="api")` on each model, and its column, for one test."""
    undo = _add_source_field(WRITTEN_BY_HAND, columns=True)
    yield
    undo()


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
    claimed = claim_many(4)
    assert len(claimed) == 2  # the other two, in one batch (on PostgreSQL one statement: claim_batch)
    # The batched end (the asyncio executor's): one of them completed by jobs_complete.
    one = claimed[0][0]
    done = lifecycle.jobs_complete([lifecycle.Completion(job_pk=one.job_pk, attempt=one.attempt, result_data={})])
    assert done == ["completed"]
    # And one holding no reservation (no active quota): on PostgreSQL its usage and OpenAI rows are parts of
    # the batch's one statement.
    Quota.objects.update(is_active=False)
    free = alice.post("/ai/openai/chat/", {**chat("six"), "run_async": True}, format="json")
    assert free.status_code == 202, free.content
    free_pk = AIJob.objects.order_by("-pk").values_list("pk", flat=True)[0]
    started = lifecycle.job_start(job_pk=free_pk)
    done = lifecycle.jobs_complete([lifecycle.Completion(job_pk=free_pk, attempt=started.attempt, result_data={})])
    assert done == ["completed"]
    stats_compact()

    for model in WRITTEN_BY_HAND:
        sources = list(model.objects.values_list("source", flat=True))
        assert sources, f"{model.__name__}: the scenario wrote no row"
        assert set(sources) == {"api"}, f"{model.__name__}: {sources}"


# --- every app's statements module ------------------------------------------------------------------------


def _inserts(module: ModuleType) -> list[tuple[str, Insert | InsertSelect]]:
    """The INSERT builders a statements module holds: its module-level Insert / InsertSelect, and those in its
    module-level caches (dicts of them, filled as builder functions meet models)."""
    found = []
    for name, value in vars(module).items():
        if isinstance(value, Insert | InsertSelect):
            found.append((name, value))
        elif isinstance(value, dict):
            found += [(f"{name}[{key!r}]", v) for key, v in value.items() if isinstance(v, Insert | InsertSelect)]
    return found


def _listed_columns(insert: Insert | InsertSelect) -> set[str]:
    """The columns an INSERT names, read off the text it puts in its statement."""
    text = insert.columns if isinstance(insert, Insert) else re.search(r"\((.*?)\) SELECT ", insert.sql)[1]
    return set(re.findall(r'"([^"]+)"', text))


def _needed_columns(insert: Insert | InsertSelect) -> set[str]:
    """Every concrete column of the INSERT's model without a database default (and not the primary key), but
    those an Insert leaves to its statement (`exclude`: the link to the job the same statement inserts)."""
    meta = insert.model._meta
    excluded = {n for n in getattr(insert, "exclude", ()) if meta.get_field(n).related_model is AIJob}
    return {
        f.column
        for f in meta.concrete_fields
        if not f.primary_key and f.db_default is NOT_PROVIDED and f.name not in excluded
    }


@pytest.fixture
def source_field_on_inserted_models():
    """The field on every model the statements modules' INSERTs write (the models only: no database needed)."""
    written = sorted({insert.model for module in STATEMENT_MODULES for _, insert in _inserts(module)}, key=str)
    undo = _add_source_field(written, columns=False)
    yield written
    undo()


def test_every_insert_of_the_statements_modules_lists_every_column_of_its_model(source_field_on_inserted_models):
    assert {AIJob, AIJobEvent, JobDailyStat, QuotaThresholdCrossing} <= set(source_field_on_inserted_models)
    for module in STATEMENT_MODULES:
        for name, insert in _inserts(module):
            needed = _needed_columns(insert)
            assert "source" in needed, f"{module.__name__}.{name}"
            missing = needed - _listed_columns(insert)
            assert not missing, f"{module.__name__}.{name} leaves out {sorted(missing)}"


# An INSERT's column list in a statement's text: a builder's (`{X.columns}`), after the job link the same
# statement fills (`"{…column}", `) at most.
_BUILT_COLUMN_LIST = re.compile(r'INSERT INTO \{[^}]+\} \((?:"\{[^}]+\}", )?\{[^}]*\.columns\}\)')


@pytest.mark.parametrize("module", STATEMENT_MODULES, ids=lambda m: m.__name__)
def test_no_statements_module_spells_an_insert_column_list_by_hand(module):
    source = inspect.getsource(module)
    written = source.count("INSERT INTO")
    assert written == len(_BUILT_COLUMN_LIST.findall(source)), (
        f"{module.__name__}: an INSERT whose column list is not a business.sql Insert's"
    )


@pytest.fixture
def source_field_on_read_models():
    """The field and its column on the models the statements modules read whole rows of, their reads built
    again (they are built once per process, after the migrations)."""
    undo = _add_source_field([User, AIJob], columns=True)
    business.statements.user_with_brand_read.cache_clear()
    selectors._job_detail_read.cache_clear()
    yield
    undo()
    business.statements.user_with_brand_read.cache_clear()
    selectors._job_detail_read.cache_clear()


@pytest.mark.django_db(transaction=True)
def test_the_statements_modules_reads_of_whole_rows_read_a_field_added_with_a_default(
    source_field_on_read_models, personas, client_for, job_types
):
    alice, brand = personas.alice, personas.brand_a
    User.objects.filter(pk=alice.pk).update(source="sso")
    user, granted = user_with_brand(alice.pk, brand.pk)  # business.statements
    assert granted == brand
    assert (user.source, user.get_deferred_fields()) == ("sso", set())

    chat = {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}
    created = client_for(alice, brand).post(
        "/ai/jobs/", {"job_type": "chat_completion", "input_data": chat}, format="json"
    )
    assert created.status_code == 201, created.content
    AIJob.objects.update(source="form")
    job = selectors.job_get(brand=brand, lookup=created.json()["job_id"], for_detail=True)  # ai_core.statements
    assert (job.source, job.get_deferred_fields()) == ("form", set())
