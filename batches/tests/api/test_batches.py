"""POST /ai/batches/ (JSON and JSONL), its all-or-nothing validation, the bulk quota reservation, the batch's
read endpoints and cancel, brand scoping, the admin and batch.completed."""

import json
from decimal import Decimal

import pytest

from ai_core.models import AIJob, AIJobEvent, JobDailyStat, JobStatus
from ai_core.services import job_create
from ai_core.workflow import stats_compact
from ai_usage.models import QuotaPeriod, QuotaReservation
from ai_usage.tests.factories import QuotaFactory
from batches.models import Batch, BatchJob
from batches.services import batch_complete_if_done
from webhooks.models import WebhookDelivery
from webhooks.tests.factories import WebhookEndpointFactory

S = JobStatus


def job(text: str, **extra) -> dict:
    return {"input_data": {"messages": [{"role": "user", "content": text}]}, **extra}


def jsonl(items) -> str:
    return "\n".join(json.dumps(item) for item in items) + "\n"


@pytest.fixture
def alice(personas, client_for, job_types):
    return client_for(personas.alice, personas.brand_a)


def post_jsonl(client, items, query="job_type=chat_completion"):
    return client.post(f"/ai/batches/?{query}", data=jsonl(items), content_type="application/x-ndjson")


def pending_in_rollup(brand) -> int:
    return sum(JobDailyStat.objects.filter(brand=brand, status=S.PENDING).values_list("jobs", flat=True))


def test_a_json_batch_creates_one_ordinary_job_per_item_with_events_and_rollup(personas, alice):
    body = {
        "job_type": "chat_completion",
        "priority": "high",
        "description": "greetings",
        "jobs": [job("a", custom_id="first"), job("b", priority="low", description="two"), job("c")],
    }

    response = alice.post("/ai/batches/", body, format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["batch_id"].startswith("batch_") and data["completion_window"] == "now"
    assert data["counts"]["total"] == 3 and data["counts"]["pending"] == 3
    assert data["status"] == "in_progress" and data["rejected"] == []
    jobs = list(AIJob.objects.filter(batch_link__batch__batch_id=data["batch_id"]).order_by("batch_link__line"))
    assert [j.priority for j in jobs] == ["high", "low", "high"]
    assert [j.description for j in jobs] == ["", "two", ""]
    assert all(j.brand_id == personas.brand_a.pk and j.created_by_id == personas.alice.pk for j in jobs)
    assert [link.custom_id for link in BatchJob.objects.order_by("line")] == ["first", "", ""]
    events = AIJobEvent.objects.filter(job__in=jobs)
    assert sorted(events.values_list("from_status", "to_status", "reason")) == [("", "pending", "created")] * 3
    assert pending_in_rollup(personas.brand_a) == 3
    stats_compact()
    assert pending_in_rollup(personas.brand_a) == 3


def test_the_rollup_counts_bulk_jobs_like_single_ones(personas, alice):
    job_create(
        brand=personas.brand_a, user=personas.alice, job_type="chat_completion", input_data=job("x")["input_data"]
    )
    post_jsonl(alice, [job(str(i)) for i in range(5)])

    listed = alice.get("/ai/jobs/?status=pending").json()

    assert listed["count"] == 6 == pending_in_rollup(personas.brand_a)


def test_one_bad_line_refuses_the_batch_and_creates_nothing(personas, alice):
    lines = [job("ok"), {"input_data": {"messages": []}}, job("ok too"), {"input_data": {"messages": "x"}, "bogus": 1}]

    response = post_jsonl(alice, lines)

    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "BATCH_VALIDATION_ERROR"
    assert [e["line"] for e in body["errors"]] == [1, 3]
    assert body["errors"][0]["error_code"] == "VALIDATION_ERROR" and "input_data" in body["errors"][0]["errors"]
    assert body["errors"][1]["errors"] == {"bogus": ["Unknown field."]}
    assert AIJob.objects.count() == 0 and Batch.objects.count() == 0 and AIJobEvent.objects.count() == 0
    assert pending_in_rollup(personas.brand_a) == 0


def test_a_malformed_jsonl_line_is_listed_by_line(alice):
    raw = json.dumps(job("fine")) + "\n{not json\n" + json.dumps([1, 2]) + "\n"

    response = alice.post("/ai/batches/?job_type=chat_completion", data=raw, content_type="application/x-ndjson")

    assert response.status_code == 400
    assert [(e["line"], e["error_code"]) for e in response.json()["errors"]] == [
        (1, "INVALID_LINE"),
        (2, "INVALID_LINE"),
    ]
    assert AIJob.objects.count() == 0


def test_partial_creates_the_valid_jobs_and_lists_the_others(alice):
    lines = [job("one"), {"input_data": {"messages": []}}, job("three", custom_id="c3"), job("dup", custom_id="c3")]

    response = post_jsonl(alice, lines, "job_type=chat_completion&partial=true")

    assert response.status_code == 201
    body = response.json()
    assert body["counts"]["total"] == 2 == AIJob.objects.count()
    assert [(r["line"], r["error_code"]) for r in body["rejected"]] == [
        (1, "VALIDATION_ERROR"),
        (3, "VALIDATION_ERROR"),
    ]
    assert sorted(BatchJob.objects.values_list("line", flat=True)) == [0, 2]


def test_partial_with_no_valid_job_creates_nothing(alice):
    response = post_jsonl(alice, [{"input_data": 1}], "job_type=chat_completion&partial=true")

    assert response.status_code == 400 and Batch.objects.count() == 0


@pytest.mark.parametrize(
    "query, code",
    [
        ("job_type=nope", "JOB_TYPE_NOT_FOUND"),
        ("", "VALIDATION_ERROR"),
        ("job_type=chat_completion&completion_window=1w", "VALIDATION_ERROR"),
        ("job_type=chat_completion&partial=maybe", "INVALID_PARTIAL"),
    ],
)
def test_bad_batch_fields_are_a_400(alice, query, code):
    response = post_jsonl(alice, [job("x")], query)

    assert response.status_code == 400 and response.json()["error_code"] == code
    assert AIJob.objects.count() == 0


def test_an_empty_batch_and_a_non_list_are_refused(alice):
    assert alice.post("/ai/batches/", {"job_type": "chat_completion", "jobs": []}, format="json").status_code == 400
    assert alice.post("/ai/batches/", {"job_type": "chat_completion", "jobs": "x"}, format="json").status_code == 400
    assert post_jsonl(alice, []).status_code == 400
    assert AIJob.objects.count() == 0


def test_too_many_jobs_are_refused(settings, alice):
    settings.AICORE_BATCH_MAX_JOBS = 3

    response = post_jsonl(alice, [job(str(i)) for i in range(4)])

    assert response.status_code == 400 and AIJob.objects.count() == 0


def test_the_whole_batch_is_reserved_in_one_step_or_refused(personas, alice, llm_env):
    quota = QuotaFactory(company=personas.brand_a.company, monthly_token_limit=10_000)
    gpt = {"model": "gpt-4o-mini", "max_tokens": 1000}
    one = {"input_data": {"messages": [{"role": "user", "content": "hi"}], **gpt}}

    refused = post_jsonl(alice, [one] * 20)  # 20 × > 1000 tokens: more than the quota

    assert refused.status_code == 429 and refused.json()["error_code"] == "QUOTA_EXCEEDED"
    assert AIJob.objects.count() == 0 and QuotaReservation.objects.count() == 0
    assert sum(QuotaPeriod.objects.filter(quota=quota).values_list("reserved_tokens", flat=True)) == 0

    admitted = post_jsonl(alice, [one] * 5)

    assert admitted.status_code == 201
    period = QuotaPeriod.objects.get(quota=quota)
    reservations = QuotaReservation.objects.filter(state="reserved")
    assert reservations.count() == 5
    assert period.reserved_tokens == sum(r.tokens for r in reservations) > 5000


def test_a_batch_reserving_90_percent_of_a_budget_crosses_its_80_percent_alert_on_submission(
    personas, alice, llm_env, django_capture_on_commit_callbacks
):
    from ai_usage.alerts import quota_threshold_crossed
    from ai_usage.models import QuotaThresholdCrossing

    probe = QuotaFactory(company=personas.brand_a.company, monthly_token_limit=10**9, alert_thresholds=[])
    one = {"input_data": {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini", "max_tokens": 900}}
    assert post_jsonl(alice, [one]).status_code == 201
    need = QuotaReservation.objects.get().tokens  # what one such job reserves
    probe.delete()
    AIJob.objects.all().delete()
    quota = QuotaFactory(company=personas.brand_a.company, monthly_token_limit=need * 10)
    announced = []
    quota_threshold_crossed.connect(lambda **kw: announced.append(kw["payload"]), weak=False, dispatch_uid="t90")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert post_jsonl(alice, [one] * 9).status_code == 201  # 90 % reserved, nothing settled yet
    finally:
        quota_threshold_crossed.disconnect(dispatch_uid="t90")

    crossings = QuotaThresholdCrossing.objects.filter(quota=quota).order_by("threshold")
    assert [(c.threshold, c.basis) for c in crossings] == [(50, "reservation"), (80, "reservation")]
    assert [c.reserved_tokens for c in crossings] == [need * 9] * 2 and crossings[0].used_tokens == 0
    assert [(p["threshold"], p["basis"], p["reserved"]["tokens"]) for p in announced] == [
        (50, "reservation", need * 9),
        (80, "reservation", need * 9),
    ]
    # Settling the jobs crosses nothing again: once per month and threshold.
    from ai_core.services import job_complete, job_start

    for each in AIJob.objects.filter(status=S.PENDING, input_data__model="gpt-4o-mini"):
        job_complete(job_pk=each.pk, attempt=job_start(job_pk=each.pk).attempt, result_data={}, input_tokens=need)
    assert QuotaThresholdCrossing.objects.filter(quota=quota).count() == 2


def test_a_batch_reserves_nothing_on_an_api_keys_own_limit(personas, alice, llm_env):
    # A key's monthly_cost_limit is a quota row of the key's brand: it bounds that key's jobs only.
    from business.services import api_key_create

    key, _ = api_key_create(brand=personas.brand_a, user=personas.adam, name="k", monthly_cost_limit=Decimal("0.001"))
    QuotaFactory(company=personas.brand_a.company, brand=personas.brand_a, api_key=key, monthly_cost_limit=1)
    gpt = {"model": "gpt-4o-mini", "max_tokens": 1000}

    admitted = post_jsonl(alice, [{"input_data": {"messages": [{"role": "user", "content": "hi"}], **gpt}}] * 5)

    assert admitted.status_code == 201, admitted.content
    assert QuotaReservation.objects.count() == 0


def test_list_and_detail_are_brand_scoped(personas, alice, client_for):
    created = post_jsonl(alice, [job("x")]).json()
    bob = client_for(personas.bob, personas.brand_b)

    assert bob.get(f"/ai/batches/{created['batch_id']}/").status_code == 404
    assert bob.get(f"/ai/batches/{created['id']}/").status_code == 404
    assert bob.get(f"/ai/batches/{created['id']}/results/").status_code == 404
    assert bob.post(f"/ai/batches/{created['id']}/cancel/").status_code == 404
    assert bob.get("/ai/batches/").json()["count"] == 0
    assert AIJob.objects.filter(status=S.PENDING).count() == 1
    listed = alice.get("/ai/batches/").json()
    assert listed["count"] == 1 and listed["results"][0]["batch_id"] == created["batch_id"]
    assert alice.get(f"/ai/batches/{created['batch_id']}/").json()["counts"]["pending"] == 1
    assert alice.get("/ai/batches/batch_nope/").status_code == 404


def test_results_stream_every_job_in_line_order(alice):
    created = post_jsonl(alice, [job("a", custom_id="A"), job("b", custom_id="B")]).json()
    first, second = AIJob.objects.order_by("batch_link__line")
    from ai_core.services import job_complete, job_fail, job_start

    job_start(job_pk=first.pk)
    job_complete(job_pk=first.pk, attempt=1, result_data={"content": "hi A"}, input_tokens=3, output_tokens=2)
    job_start(job_pk=second.pk)
    job_fail(job_pk=second.pk, attempt=1, error_message="boom", error_code="PROVIDER_ERROR")

    response = alice.get(f"/ai/batches/{created['id']}/results/")

    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [(r["custom_id"], r["job_id"], r["status"]) for r in rows] == [
        ("A", first.job_id, "completed"),
        ("B", second.job_id, "failed"),
    ]
    assert rows[0]["result"] == {"content": "hi A"} and rows[0]["usage"]["input_tokens"] == 3
    assert rows[1]["error"] == {"code": "PROVIDER_ERROR", "message": "boom"}
    detail = alice.get(f"/ai/batches/{created['id']}/").json()
    assert detail["status"] == "completed" and detail["progress_percentage"] == 100.0


def test_cancel_ends_every_open_job_through_the_workflow_and_releases_reservations(personas, alice, llm_env):
    QuotaFactory(company=personas.brand_a.company, monthly_token_limit=10_000_000)
    gpt = {"input_data": {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini"}}
    created = post_jsonl(alice, [gpt] * 4).json()
    done = AIJob.objects.order_by("batch_link__line").first()
    from ai_core.services import job_complete, job_start

    job_start(job_pk=done.pk)
    job_complete(job_pk=done.pk, attempt=1, result_data={}, input_tokens=1, output_tokens=1)

    response = alice.post(f"/ai/batches/{created['id']}/cancel/")

    assert response.status_code == 200
    assert response.json()["cancelled"] == 3 and response.json()["batch"]["status"] == "cancelled"
    assert AIJob.objects.filter(status=S.CANCELLED).count() == 3
    cancelled = AIJob.objects.filter(status=S.CANCELLED)
    assert set(
        AIJobEvent.objects.filter(job__in=cancelled, to_status="cancelled").values_list("reason", flat=True)
    ) == {"batch cancelled"}
    assert QuotaReservation.objects.filter(job__in=cancelled, state="released").count() == 3
    assert QuotaReservation.objects.filter(state="reserved").count() == 0
    assert Batch.objects.get().completed_at is not None


def test_cancel_is_set_based_its_queries_do_not_grow_with_its_jobs(personas, alice, llm_env):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    quota = QuotaFactory(company=personas.brand_a.company, monthly_token_limit=10_000_000)
    gpt = {"input_data": {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini"}}
    small, large = post_jsonl(alice, [gpt] * 3).json(), post_jsonl(alice, [gpt] * 120).json()
    from ai_core.services import job_start

    for batch in (small, large):  # one running job in each: both source statuses are moved
        running = AIJob.objects.filter(batch_link__batch_id=batch["id"]).order_by("batch_link__line").first()
        job_start(job_pk=running.pk)

    counted = []
    for batch in (small, large):
        with CaptureQueriesContext(connection) as queries:
            response = alice.post(f"/ai/batches/{batch['id']}/cancel/")
        counted.append(len(queries))
        assert response.json()["cancelled"] == batch["total_jobs"]

    assert counted[0] == counted[1]  # a few set-based statements, not a transaction per job
    assert AIJob.objects.filter(status=S.CANCELLED).count() == 123
    assert AIJobEvent.objects.get(job=running, to_status="cancelled").from_status == "running"
    assert QuotaReservation.objects.filter(state="released").count() == 123
    period = QuotaPeriod.objects.get(quota=quota)
    assert (period.reserved_tokens, period.reserved_cost_micros, period.used_tokens) == (0, 0, 0)
    assert pending_in_rollup(personas.brand_a) == 0
    cancelled = JobDailyStat.objects.filter(brand=personas.brand_a, status=S.CANCELLED)
    assert sum(cancelled.values_list("jobs", flat=True)) == 123
    assert alice.post(f"/ai/batches/{large['id']}/cancel/").json()["cancelled"] == 0


def test_batch_completed_is_announced_once_to_subscribed_endpoints(personas, alice, django_capture_on_commit_callbacks):
    endpoint = WebhookEndpointFactory(
        brand=personas.brand_a, url="https://hooks.example.com/x", events=["batch.completed"]
    )
    created = post_jsonl(alice, [job("a")]).json()
    batch = Batch.objects.get(pk=created["id"])
    assert batch_complete_if_done(batch_pk=batch.pk) is False
    from ai_core.services import job_cancel

    job_cancel(job_pk=AIJob.objects.get().pk)

    with django_capture_on_commit_callbacks(execute=True):
        assert batch_complete_if_done(batch_pk=batch.pk) is True
        assert batch_complete_if_done(batch_pk=batch.pk) is False
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint, event="batch.completed")
    assert deliveries.count() == 1
    data = deliveries.get().payload["data"]
    assert data["batch_id"] == batch.batch_id and data["counts"]["cancelled"] == 1


def test_the_admin_lists_batches(personas, alice, admin_client):
    post_jsonl(alice, [job("x")])

    assert admin_client.get("/admin/batches/batch/").status_code == 200
    assert admin_client.get("/admin/batches/providerbatch/").status_code == 200
    assert admin_client.get("/admin/batches/batchjob/").status_code == 200


def test_the_dashboard_page_lists_only_the_brands_batches(personas, alice, client_for):
    from django.test import Client

    mine = post_jsonl(alice, [job("x")], "job_type=chat_completion&description=nightly").json()
    theirs = post_jsonl(client_for(personas.bob, personas.brand_b), [job("y")]).json()
    browser = Client()
    browser.post("/login/", {"username": "alice", "password": "alice-pass-1"})

    page = browser.get("/dashboard/batches/").content.decode()

    assert mine["batch_id"] in page and "nightly" in page
    assert theirs["batch_id"] not in page


def test_the_list_reads_the_same_number_of_queries_for_one_batch_or_many(alice, django_assert_max_num_queries):
    post_jsonl(alice, [job("x")])
    with django_assert_max_num_queries(100) as one:
        assert alice.get("/ai/batches/").json()["count"] == 1
    queries_for_one = len(one.captured_queries)  # now: the next request clears the query log
    for _ in range(4):
        post_jsonl(alice, [job("y"), job("z")])

    with django_assert_max_num_queries(queries_for_one):
        listed = alice.get("/ai/batches/").json()

    assert listed["count"] == 5 and {b["counts"]["total"] for b in listed["results"]} == {1, 2}
