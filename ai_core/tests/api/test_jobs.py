"""The /ai/jobs/ API of SPEC §5: create, mass assignment, filters, update and delete rules, cancel, by_status,
Idempotency-Key and Prefer: wait."""

import json

import pytest
from django.core.serializers.json import DjangoJSONEncoder

from ai_core import services
from ai_core.api.serializers import JobDetailSerializer, JobSerializer
from ai_core.models import AIJob, AIJobEvent, JobStatus
from ai_core.tests.factories import AIJobFactory, AIJobTypeFactory, input_for

S = JobStatus
CHAT = {"job_type": "chat_completion", "input_data": input_for("chat_completion", "hello")}


@pytest.fixture
def alice(personas, client_for):
    return client_for(personas.alice, personas.brand_a)


def job_of(personas, status=S.PENDING, **kwargs):
    return AIJobFactory(brand=personas.brand_a, created_by=personas.alice, status=status, **kwargs)


# --- create -------------------------------------------------------------------------------------------


def test_create_answers_201_with_a_pending_job_of_the_brand(personas, alice):
    response = alice.post("/ai/jobs/", {**CHAT, "priority": "high", "description": "greet"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    assert body["job_id"].startswith("ai_job_") and len(body["job_id"]) == 19
    assert body["job_type"]["name"] == "chat_completion"
    assert body["brand"] == {"id": personas.brand_a.id, "name": "A"}
    assert body["created_by"] == {"id": personas.alice.id, "username": "alice"}
    assert body["priority"] == "high" and body["description"] == "greet"
    assert body["is_async"] is False and body["execution_time_seconds"] is None
    job = AIJob.objects.get(job_id=body["job_id"])
    assert list(job.events.values_list("from_status", "to_status")) == [("", "pending")]


def test_is_async_follows_the_job_type(alice):
    body = alice.post("/ai/jobs/", {"job_type": "text_generation", "input_data": {"prompt": "x"}}, format="json").json()

    assert body["is_async"] is True


def test_input_data_invalid_for_the_type_is_a_400_with_field_errors(alice):
    response = alice.post("/ai/jobs/", {"job_type": "chat_completion", "input_data": {"messages": []}}, format="json")

    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert "input_data" in response.json()["errors"]
    assert AIJob.objects.count() == 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("status", "completed"),
        ("brand", 999),
        ("brand_id", 999),
        ("created_by", 999),
        ("created_by_id", 999),
        ("result_data", {"completion": "forged"}),
        ("job_id", "ai_job_forgedforged1"),
        ("created_at", "2001-01-01T00:00:00Z"),
        ("updated_at", "2001-01-01T00:00:00Z"),
        ("started_at", "2001-01-01T00:00:00Z"),
        ("completed_at", "2001-01-01T00:00:00Z"),
        ("cancelled_at", "2001-01-01T00:00:00Z"),
        ("task_id", "forged"),
        ("attempts", 7),
        ("id", 424242),
        ("progress_percentage", 90),
        ("error_message", "forged"),
        ("is_async", True),
        ("usage", {"total_cost": 0}),
    ],
)
def test_create_never_takes_server_fields_from_the_body(personas, alice, field, value):
    response = alice.post("/ai/jobs/", {**CHAT, field: value}, format="json")

    assert response.status_code == 201
    job = AIJob.objects.get(job_id=response.json()["job_id"])
    assert (job.status, job.brand_id, job.created_by_id) == (
        "pending",
        personas.brand_a.id,
        personas.alice.id,
    )
    assert job.result_data is None and job.task_id == "" and job.attempts == 0 and job.progress_percentage == 0
    assert job.job_id != "ai_job_forgedforged1" and job.pk != 424242
    assert job.created_at.year > 2001 and job.started_at is job.completed_at is job.cancelled_at is None
    assert job.error_message == "" and job.is_async is False


@pytest.mark.parametrize("method", ["put", "patch"])
def test_update_never_applies_server_fields_from_the_body(personas, alice, method):
    job = job_of(personas)
    before = AIJob.objects.filter(pk=job.pk).values().get()
    forged = {
        "status": "completed",
        "brand": personas.brand_b.id,
        "created_by": personas.bob.id,
        "result_data": {"x": 1},
        "job_id": "ai_job_forgedforged1",
        "created_at": "2001-01-01T00:00:00Z",
        "started_at": "2001-01-01T00:00:00Z",
        "completed_at": "2001-01-01T00:00:00Z",
        "task_id": "t",
        "attempts": 9,
        "is_async": True,
        "error_message": "x",
        "cancelled_at": "2001-01-01T00:00:00Z",
    }

    response = getattr(alice, method)(f"/ai/jobs/{job.pk}/", {**forged, "description": "new"}, format="json")

    assert response.status_code == 200
    after = AIJob.objects.filter(pk=job.pk).values().get()
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"description", "updated_at"}


# --- list, filters, ordering --------------------------------------------------------------------------


def test_list_is_paginated_newest_first(personas, alice):
    jobs = [job_of(personas) for _ in range(3)]

    body = alice.get("/ai/jobs/", {"page_size": 2}).json()

    assert body["count"] == 3
    assert [j["job_id"] for j in body["results"]] == [jobs[2].job_id, jobs[1].job_id]
    assert body["next"] and body["previous"] is None


def test_filters_narrow_the_list_and_the_count_matches_the_rows(personas, alice):
    done = job_of(personas, S.COMPLETED, priority="high", description="quarterly report")
    job_of(personas, S.RUNNING)
    gen = job_of(personas, job_type=AIJobTypeFactory(name="text_generation"))
    by_adam = AIJobFactory(brand=personas.brand_a, created_by=personas.adam)

    def ids(**params):
        body = alice.get("/ai/jobs/", params).json()
        assert body["count"] == len(body["results"]), params
        return {j["job_id"] for j in body["results"]}

    assert ids(status="completed") == {done.job_id}
    assert ids(priority="high") == {done.job_id}
    assert ids(job_type="text_generation") == {gen.job_id}
    assert ids(is_async="true") == {gen.job_id}
    assert ids(created_by=personas.adam.id) == {by_adam.job_id}
    assert ids(progress_percentage__gte=100) == {done.job_id}
    assert ids(search="QUARTERLY") == {done.job_id}
    assert ids(search=done.job_id[-6:]) == {done.job_id}
    assert ids(search="text_gen") == {gen.job_id}
    assert ids(status="completed", job_type="chat_completion") == {done.job_id}
    assert ids(created_at__gte="2000-01-01T00:00:00Z", created_at__lte="2999-01-01") == {
        j.job_id for j in AIJob.objects.all()
    }
    assert ids(created_at__lte="2000-01-01T00:00:00Z") == set()


@pytest.mark.parametrize(
    "params",
    [
        {"status": ""},
        {"job_type": ""},
        {"status": ["pending", "running"]},
        {"job_type": ["chat_completion", "text_generation"]},
    ],
)
def test_the_count_always_equals_the_rows_listed(personas, alice, params):
    job_of(personas)
    job_of(personas, S.RUNNING)

    body = alice.get("/ai/jobs/", params).json()

    assert body["count"] == len(body["results"])


def test_ordering(personas, alice):
    low = job_of(personas, S.RUNNING)
    high = job_of(personas, S.COMPLETED)

    assert [j["job_id"] for j in alice.get("/ai/jobs/", {"ordering": "-progress_percentage"}).json()["results"]] == [
        high.job_id,
        low.job_id,
    ]
    assert [j["job_id"] for j in alice.get("/ai/jobs/", {"ordering": "created_at"}).json()["results"]] == [
        low.job_id,
        high.job_id,
    ]


def test_ordering_by_priority_follows_the_rank_not_the_alphabet(personas, alice):
    # Created so that neither creation order nor alphabetical order (high < low < normal < urgent) is the rank.
    jobs = {p: job_of(personas, priority=p) for p in ("normal", "urgent", "low", "high")}
    second_urgent = job_of(personas, priority="urgent")

    def order(param):
        return [j["job_id"] for j in alice.get("/ai/jobs/", {"ordering": param}).json()["results"]]

    most_urgent_first = [second_urgent.job_id, jobs["urgent"].job_id] + [
        jobs[p].job_id for p in ("high", "normal", "low")
    ]
    assert order("-priority") == most_urgent_first  # one rank: newest first, as in the default order
    assert order("priority") == [jobs[p].job_id for p in ("low", "normal", "high")] + [
        second_urgent.job_id,
        jobs["urgent"].job_id,
    ]
    assert order("-priority,created_at")[:2] == [jobs["urgent"].job_id, second_urgent.job_id]


def test_detail_by_pk_or_job_id_has_events_usage_and_openai_job(personas, alice):
    job = job_of(personas, S.COMPLETED)

    for lookup in (job.pk, job.job_id):
        body = alice.get(f"/ai/jobs/{lookup}/").json()
        assert body["job_id"] == job.job_id
        assert "usage" in body and body["openai_job"] is None
        assert [(e["from_status"], e["to_status"]) for e in body["events"]] == [
            ("", "pending"),
            ("pending", "running"),
            ("running", "completed"),
        ]
        assert body["execution_time_seconds"] is not None


def test_detail_reads_what_the_orm_reads_extensions_included(personas, alice):
    """The detail's one hand-written query renders exactly what select_related and a query per relation do."""
    job, _ = services.job_create(
        brand=personas.brand_a,
        user=personas.alice,
        job_type="chat_completion",
        input_data={**input_for("chat_completion"), "temperature": 0.5, "max_tokens": 64},
        openai_extension=True,
    )
    started = services.job_start(job_pk=job.pk, task_id="task-1")
    services.job_complete(
        job_pk=job.pk, attempt=started.attempt, result_data={"completion": "done"}, input_tokens=7, output_tokens=3
    )
    orm_job = AIJob.objects.select_related("job_type", "brand", "created_by", "openai_job", "usage").get(pk=job.pk)

    body = alice.get(f"/ai/jobs/{job.job_id}/").json()

    assert body["openai_job"]["temperature"] == 0.5 and body["openai_job"]["max_tokens"] == 64
    assert body["usage"]["total_tokens"] == 10 and len(body["events"]) == 3
    assert body == json.loads(json.dumps(JobDetailSerializer(orm_job).data, cls=DjangoJSONEncoder))


@pytest.mark.parametrize("serializer", [JobSerializer, JobDetailSerializer])
def test_every_listed_job_field_has_a_fast_renderer_derived_from_the_one_field_list(serializer):
    """Meta.fields is the only field list; the plain columns' renderers come from the model, so today no job
    field falls back to its (slower) DRF field, and a name Meta.fields does not list is never rendered."""
    assert list(serializer.fast_fields) == serializer.Meta.fields


@pytest.mark.parametrize("lookup", ["999999", "ai_job_doesnotexist", "abc", "١", "9" * 30])
def test_unknown_job_is_a_404(personas, alice, lookup):
    response = alice.get(f"/ai/jobs/{lookup}/")

    assert response.status_code == 404
    assert response.json()["error_code"] == "JOB_NOT_FOUND"


# --- update and delete rules --------------------------------------------------------------------------


def test_a_pending_job_accepts_description_priority_and_input_data(personas, alice):
    job = job_of(personas)

    response = alice.patch(
        f"/ai/jobs/{job.pk}/",
        {"description": "d", "priority": "urgent", "input_data": input_for("chat_completion", "bye")},
        format="json",
    )

    assert response.status_code == 200
    job.refresh_from_db()
    assert (job.description, job.priority, job.input_data["messages"][0]["content"]) == ("d", "urgent", "bye")


def test_new_input_data_is_validated_against_the_type(personas, alice):
    job = job_of(personas)

    response = alice.patch(f"/ai/jobs/{job.pk}/", {"input_data": {"nope": 1}}, format="json")

    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT])
def test_input_data_of_a_job_that_is_not_pending_is_a_409(personas, alice, status):
    job = job_of(personas, status)

    response = alice.patch(f"/ai/jobs/{job.pk}/", {"input_data": input_for("chat_completion")}, format="json")

    assert response.status_code == 409
    assert response.json()["error_code"] == "JOB_NOT_PENDING"


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT])
def test_a_final_job_still_accepts_description_and_priority(personas, alice, status):
    job = job_of(personas, status)

    assert alice.patch(f"/ai/jobs/{job.pk}/", {"description": "note"}, format="json").status_code == 200


@pytest.mark.parametrize(
    "body", [{"description": "x"}, {"priority": "low"}, {"input_data": input_for("chat_completion")}]
)
def test_a_running_job_refuses_anything_but_progress(personas, alice, body):
    job = job_of(personas, S.RUNNING)

    response = alice.patch(f"/ai/jobs/{job.pk}/", body, format="json")

    assert response.status_code == 409
    assert response.json()["error_code"] == "JOB_RUNNING"


def test_progress_can_be_set_while_running(personas, alice):
    job = job_of(personas, S.RUNNING)

    response = alice.patch(f"/ai/jobs/{job.pk}/", {"progress_percentage": 40}, format="json")

    assert response.status_code == 200 and response.json()["progress_percentage"] == 40


@pytest.mark.parametrize("status", [S.PENDING, S.COMPLETED, S.CANCELLED])
def test_progress_is_refused_unless_running(personas, alice, status):
    job = job_of(personas, status)

    response = alice.patch(f"/ai/jobs/{job.pk}/", {"progress_percentage": 40}, format="json")

    assert response.status_code == 409
    assert response.json()["error_code"] == "JOB_NOT_RUNNING"


@pytest.mark.parametrize("value", [-1, 101, "lots", None, 50.5])
def test_progress_out_of_range_is_a_400(personas, alice, value):
    job = job_of(personas, S.RUNNING)

    response = alice.patch(f"/ai/jobs/{job.pk}/", {"progress_percentage": value}, format="json")

    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"


def test_deleting_a_running_job_is_a_409(personas, alice):
    job = job_of(personas, S.RUNNING)

    response = alice.delete(f"/ai/jobs/{job.pk}/")

    assert response.status_code == 409
    assert response.json()["error_code"] == "JOB_RUNNING"
    assert AIJob.objects.filter(pk=job.pk).exists()


@pytest.mark.parametrize("status", [S.PENDING, S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT])
def test_deleting_a_job_that_is_not_running_is_a_204(personas, alice, status):
    job = job_of(personas, status)

    response = alice.delete(f"/ai/jobs/{job.pk}/")

    assert response.status_code == 204
    assert not AIJob.objects.filter(pk=job.pk).exists()
    assert not AIJobEvent.objects.filter(job_id=job.pk).exists()
    assert alice.get("/ai/jobs/").json()["count"] == 0
    assert alice.get("/ai/jobs/dashboard/").json()["stats"]["total_jobs"] == 0


# --- cancel -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.PENDING, S.RUNNING])
def test_cancel_of_a_pending_or_running_job(personas, alice, status):
    job = job_of(personas, status)

    response = alice.post(f"/ai/jobs/{job.job_id}/cancel/")

    assert response.status_code == 200
    job.refresh_from_db()
    assert response.json() == {
        "message": "Job cancelled successfully",
        "job": {
            "id": job.pk,
            "job_id": job.job_id,
            "status": "cancelled",
            "cancelled_at": job.cancelled_at.isoformat().replace("+00:00", "Z"),
        },
    }
    event = job.events.last()
    assert (event.from_status, event.to_status, event.actor_id) == (status, "cancelled", personas.alice.id)


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT])
def test_it_rejects_cancel_of_a_final_job(personas, alice, status):
    job = job_of(personas, status)
    events = job.events.count()

    response = alice.post(f"/ai/jobs/{job.pk}/cancel/")

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "Job cannot be cancelled"
    assert body["current_status"] == status
    assert body["error_code"] == "JOB_NOT_CANCELLABLE"
    assert body["detail"]
    assert job.events.count() == events


# --- by_status ----------------------------------------------------------------------------------------


def test_by_status_lists_and_counts_jobs_of_one_status(personas, alice):
    running = [job_of(personas, S.RUNNING) for _ in range(2)]
    job_of(personas)

    body = alice.get("/ai/jobs/by_status/", {"status": "running"}).json()

    assert body["count"] == 2
    assert {j["job_id"] for j in body["jobs"]} == {j.job_id for j in running}


@pytest.mark.parametrize("params", [{}, {"status": ""}, {"status": "done"}, {"status": "PENDING"}])
def test_by_status_without_a_known_status_is_a_400(personas, alice, params):
    response = alice.get("/ai/jobs/by_status/", params)

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_STATUS"


def test_by_status_count_matches_its_rows_with_other_filters(personas, alice):
    job_of(personas, S.RUNNING)
    job_of(personas, S.RUNNING, job_type=AIJobTypeFactory(name="text_generation"))

    body = alice.get("/ai/jobs/by_status/", {"status": "running", "job_type": "text_generation"}).json()

    assert body["count"] == len(body["jobs"]) == 1


# --- Idempotency-Key and Prefer: wait -----------------------------------------------------------------


def test_the_same_idempotency_key_and_body_return_the_original_job(personas, alice):
    first = alice.post("/ai/jobs/", CHAT, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = alice.post("/ai/jobs/", CHAT, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["job_id"] == first.json()["job_id"]
    assert AIJob.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_a_409(personas, alice):
    alice.post("/ai/jobs/", CHAT, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    response = alice.post("/ai/jobs/", {**CHAT, "priority": "urgent"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 409
    assert response.json()["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert AIJob.objects.count() == 1


def test_idempotency_keys_are_per_brand(personas, alice, client_for):
    bob = client_for(personas.bob)
    a = alice.post("/ai/jobs/", CHAT, format="json", HTTP_IDEMPOTENCY_KEY="k-1").json()
    b = bob.post("/ai/jobs/", CHAT, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert b.status_code == 201 and b.json()["job_id"] != a["job_id"]


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_an_invalid_idempotency_key_is_a_400(personas, alice, key):
    response = alice.post("/ai/jobs/", CHAT, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_IDEMPOTENCY_KEY"
    assert AIJob.objects.count() == 0


@pytest.mark.parametrize("prefer", ["wait=abc", "wait=61", "wait=-1", "wait=nan", "wait=inf", "wait="])
def test_an_invalid_prefer_wait_is_a_400_and_stores_nothing(personas, alice, prefer):
    response = alice.post("/ai/jobs/", CHAT, format="json", HTTP_PREFER=prefer)

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PREFER_WAIT"
    assert AIJob.objects.count() == 0


def test_prefer_wait_answers_with_the_job_when_the_wait_is_over(personas, alice):
    response = alice.post("/ai/jobs/", CHAT, format="json", HTTP_PREFER="respond-async, wait=0.2")

    assert response.status_code == 201
    assert response.json()["status"] == "pending"  # no worker in this test: the wait simply runs out
    assert response["Preference-Applied"] == "wait=0.2"
