"""A single job of POST /ai/jobs/ with a 24 h completion window (its input_data's, or its job type's default)
waits for the provider Batch API routing like a batch's job: held pending, reserved at the batch price, sent
through the fake OpenAI Batch API by the routing's round and charged at the batch price."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ai_core.models import AIJob, AIJobType, JobStatus
from ai_core.services import job_provider_request
from ai_providers.money import cost_of
from ai_providers.selectors import model_resolve, price_at
from ai_usage.models import AIJobUsage, Quota, QuotaReservation
from ai_usage.services import reservation_for
from batches import routing
from batches.models import BatchJob, ProviderBatch
from batches.models import ProviderBatchStatus as PB
from batches.tests.test_routing import line, submit

S = JobStatus
pytestmark = pytest.mark.usefixtures("llm_env", "batch_settings")


def post_job(client, input_data, job_type="chat_completion"):
    return client.post("/ai/jobs/", {"job_type": job_type, "input_data": input_data}, content_type="application/json")


def chat(text="hello", model="gpt-4o-mini", **extra):
    return {"model": model, "messages": [{"role": "user", "content": f"{text} [fake usage=1000,500]"}], **extra}


def held(job: AIJob) -> bool:
    return job.status == S.PENDING and job.available_at > timezone.now() + timedelta(days=300)


def test_a_single_24h_job_is_held_reserved_at_the_batch_price_and_answered_through_the_batch_api(personas, alice, fake):
    quota = Quota.objects.create(company=personas.brand_a.company, monthly_cost_limit=Decimal("100"))
    created_before = fake.server.batches_created
    response = post_job(alice, chat(completion_window="24h"))
    assert response.status_code == 201, response.json()
    job = AIJob.objects.get(job_id=response.json()["job_id"])

    assert held(job)
    link = BatchJob.objects.get(job=job)
    assert link.batch is None and link.routed and link.model_name == "gpt-4o-mini"
    need = reservation_for(request=job_provider_request(job), choice=model_resolve("gpt-4o-mini"), batch=True)
    full = reservation_for(request=job_provider_request(job), choice=model_resolve("gpt-4o-mini"))
    reservation = QuotaReservation.objects.get(job=job, period__quota=quota)
    assert reservation.cost_micros == need.cost_micros < full.cost_micros

    routing.upkeep_round()

    assert fake.server.batches_created - created_before == 1
    assert ProviderBatch.objects.get().status == PB.ENDED
    job.refresh_from_db()
    assert job.status == S.COMPLETED and job.result_data["completion"].startswith("Fake: hello")
    usage = AIJobUsage.objects.get(job=job)
    assert usage.total_cost * 2 == cost_of(usage.tokens, price_at("gpt-4o-mini")).total_cost
    assert usage.total_cost == Decimal("0.000225")
    reservation.refresh_from_db()
    assert reservation.state == "settled" and reservation.settled_cost_micros == 225
    detail = alice.get(f"/ai/jobs/{job.job_id}/").json()
    assert detail["status"] == "completed" and detail["usage"]["total_cost"] == "0.000225"


def test_single_24h_jobs_share_a_provider_batch_with_a_batchs_jobs_of_the_same_model(alice, fake):
    submit(alice, [line("from the batch")])
    assert post_job(alice, chat("single", completion_window="24h")).status_code == 201

    routing.upkeep_round()

    assert list(ProviderBatch.objects.values_list("request_count", flat=True)) == [2]
    assert AIJob.objects.filter(status=S.COMPLETED).count() == 2


def test_a_job_type_defaulting_to_24h_routes_its_jobs_unless_their_input_says_now(alice, fake):
    AIJobType.objects.filter(name="chat_completion").update(default_completion_window="24h")
    from ai_core.services import job_type_cache_clear

    job_type_cache_clear()
    routed = post_job(alice, chat("by default")).json()
    normal = post_job(alice, chat("at once", completion_window="now")).json()

    assert held(AIJob.objects.get(job_id=routed["job_id"]))
    now_job = AIJob.objects.get(job_id=normal["job_id"])
    assert now_job.available_at <= timezone.now() and not BatchJob.objects.filter(job=now_job).exists()
    routing.upkeep_round()
    assert AIJob.objects.get(job_id=routed["job_id"]).status == S.COMPLETED
    assert ProviderBatch.objects.get().request_count == 1


@pytest.mark.parametrize("window", ["1h", "", 24, None, ["24h"]])
def test_an_unknown_completion_window_is_a_validation_error_and_stores_nothing(alice, fake, window):
    response = post_job(alice, chat(completion_window=window))

    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert "completion_window" in str(response.json())
    assert not AIJob.objects.exists()


def test_a_batch_line_with_an_unknown_completion_window_is_listed_as_invalid(alice, fake):
    body = '{"input_data": {"messages": [{"role": "user", "content": "x"}], "completion_window": "soon"}}'
    response = alice.post("/ai/batches/?job_type=chat_completion", data=body, content_type="application/x-ndjson")

    assert response.status_code == 400
    assert response.json()["errors"][0]["line"] == 0 and "completion_window" in str(response.json()["errors"])
    assert not AIJob.objects.exists()


def test_a_24h_echo_job_runs_on_the_normal_path(alice, fake):
    response = post_job(alice, {"messages": [{"role": "user", "content": "x"}], "completion_window": "24h"})

    job = AIJob.objects.get(job_id=response.json()["job_id"])
    assert job.available_at <= timezone.now() and not BatchJob.objects.exists()


def test_cancelling_a_held_single_job_releases_its_reservation_and_nothing_is_sent(personas, alice, fake):
    Quota.objects.create(company=personas.brand_a.company, monthly_cost_limit=Decimal("100"))
    created_before = fake.server.batches_created
    job_id = post_job(alice, chat(completion_window="24h")).json()["job_id"]

    assert alice.post(f"/ai/jobs/{job_id}/cancel/").status_code == 200
    routing.upkeep_round()

    assert QuotaReservation.objects.get(job__job_id=job_id).state == "released"
    assert fake.server.batches_created == created_before
    assert AIJob.objects.get(job_id=job_id).status == S.CANCELLED


def test_a_routed_jobs_input_and_any_jobs_completion_window_cannot_change(alice, fake):
    routed = post_job(alice, chat(completion_window="24h")).json()["job_id"]
    normal = post_job(alice, chat(model="echo-1")).json()["job_id"]

    edit = alice.patch(f"/ai/jobs/{routed}/", {"input_data": chat("other", completion_window="24h")}, format="json")
    assert edit.status_code == 409 and edit.json()["error_code"] == "JOB_ROUTED"
    to_now = alice.patch(f"/ai/jobs/{routed}/", {"input_data": chat(completion_window="now")}, format="json")
    assert to_now.status_code == 409 and to_now.json()["error_code"] == "COMPLETION_WINDOW_FIXED"
    to_day = alice.patch(f"/ai/jobs/{normal}/", {"input_data": chat(completion_window="24h")}, format="json")
    assert to_day.status_code == 409 and to_day.json()["error_code"] == "COMPLETION_WINDOW_FIXED"
    assert "other" not in str(AIJob.objects.get(job_id=routed).input_data)
    assert (
        alice.patch(f"/ai/jobs/{normal}/", {"input_data": chat("fine", model="echo-1")}, format="json").status_code
        == 200
    )
