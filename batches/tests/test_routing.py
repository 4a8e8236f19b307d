"""completion_window "24h": jobs accumulated into provider batches and answered through the fake OpenAI Batch
API and Anthropic Message Batches, driven by the real SDKs over HTTP; each answer written through the normal
transitions at the Batch API price; crash-safety at every submission step; expiry, failures and cancel."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ai_core.models import AIJob, AIJobEvent, JobStatus
from ai_core.services import job_provider_request
from ai_providers.money import cost_of
from ai_providers.selectors import model_resolve, price_at
from ai_usage.models import AIJobUsage, Quota, QuotaReservation
from ai_usage.services import reservation_for
from batches import routing
from batches.models import Batch, BatchJob, ProviderBatch
from batches.models import ProviderBatchStatus as PB

S = JobStatus
pytestmark = pytest.mark.usefixtures("llm_env", "batch_settings")


def line(text: str, model: str = "gpt-4o-mini", usage: str = "1000,500", **extra) -> dict:
    content = f"{text} [fake usage={usage}]" if usage else text
    return {"input_data": {"model": model, "messages": [{"role": "user", "content": content}]}, **extra}


def submit(client, lines, window="24h"):
    body = "\n".join(json.dumps(item) for item in lines)
    response = client.post(
        f"/ai/batches/?job_type=chat_completion&completion_window={window}",
        data=body,
        content_type="application/x-ndjson",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_2000_jobs_in_one_24h_batch_complete_through_the_openai_batch_api_at_half_price(alice, fake):
    lines = [line(f"item {i}", usage="2000,1000" if i % 2 else "1000,500", custom_id=f"sku-{i}") for i in range(2000)]
    created_before = fake.server.batches_created
    batch = submit(alice, lines)

    # Routed jobs wait for the routing: no worker may claim them.
    assert AIJob.objects.filter(status=S.PENDING, available_at__gt=timezone.now() + timedelta(days=300)).count() == 2000

    routing.upkeep_round()

    assert fake.server.batches_created - created_before == 1
    provider_batch = ProviderBatch.objects.get()
    assert provider_batch.status == PB.ENDED and provider_batch.request_count == 2000
    assert provider_batch.input_file_id.startswith("file-") and provider_batch.provider_batch_id.startswith("batch_")
    assert AIJob.objects.filter(status=S.COMPLETED).count() == 2000
    price = price_at("gpt-4o-mini")
    usages = list(AIJobUsage.objects.all())
    assert len(usages) == 2000
    for usage in usages:
        standard = cost_of(usage.tokens, price).total_cost
        assert usage.total_cost * 2 == standard
        assert usage.total_cost == (Decimal("0.000450") if usage.input_tokens == 2000 else Decimal("0.000225"))
    first = AIJob.objects.get(batch_link__line=0)
    events = AIJobEvent.objects.filter(job=first).order_by("id").values_list("to_status", "attempt", "reason")
    assert list(events) == [
        ("pending", 0, "created"),
        ("running", 1, "answered by provider batch"),
        ("completed", 1, "completed"),
    ]
    detail = alice.get(f"/ai/batches/{batch['id']}/").json()
    assert detail["status"] == "completed" and detail["counts"]["completed"] == 2000 == detail["counts"]["total"]
    assert Decimal(detail["cost_so_far"]) == Decimal("0.225") + Decimal("0.450")
    assert Batch.objects.get(pk=batch["id"]).completed_at is not None
    response = alice.get(f"/ai/batches/{batch['id']}/results/")
    rows = [json.loads(r) for r in b"".join(response.streaming_content).decode().splitlines()]
    assert [r["custom_id"] for r in rows] == [f"sku-{i}" for i in range(2000)]
    assert {r["status"] for r in rows} == {"completed"}
    assert rows[7]["result"]["completion"].startswith("Fake: item 7")
    assert rows[7]["usage"]["total_cost"] == "0.000450" and rows[8]["usage"]["total_cost"] == "0.000225"


def test_24h_jobs_are_reserved_and_settled_at_the_batch_price(personas, alice, fake):
    quota = Quota.objects.create(company=personas.brand_a.company, monthly_cost_limit=Decimal("1000"))
    lines = [line(f"item {i}") for i in range(10)]
    submit(alice, lines)
    choice = model_resolve("gpt-4o-mini")
    first = AIJob.objects.get(batch_link__line=0)
    need = reservation_for(request=job_provider_request(first), choice=choice, batch=True)
    full = reservation_for(request=job_provider_request(first), choice=choice)
    assert QuotaReservation.objects.get(job=first, period__quota=quota).cost_micros == need.cost_micros
    assert need.cost_micros * 2 in {full.cost_micros, full.cost_micros + 1}  # half, rounded up

    routing.upkeep_round()

    settled = QuotaReservation.objects.filter(state="settled")
    assert settled.count() == 10
    assert {r.settled_cost_micros for r in settled} == {225}  # $0.000225: half of 1000 in + 500 out tokens
    assert quota.periods.get().used_cost_micros == 2250


def test_anthropic_jobs_go_through_message_batches_at_half_price(alice, fake):
    created_before = fake.server.batches_created
    submit(alice, [line(f"claude {i}", model="claude-sonnet-4-5") for i in range(5)])

    routing.upkeep_round()

    assert fake.server.batches_created - created_before == 1
    assert ProviderBatch.objects.get().provider_batch_id.startswith("msgbatch_")
    assert AIJob.objects.filter(status=S.COMPLETED).count() == 5
    price = price_at("claude-sonnet-4-5")
    for usage in AIJobUsage.objects.all():
        assert usage.total_cost * 2 == cost_of(usage.tokens, price).total_cost > 0


def test_jobs_of_other_models_and_companies_go_to_separate_provider_batches(personas, alice, client_for, fake):
    submit(alice, [line("a"), line("b", model="gpt-4o"), line("c")])
    submit(client_for(personas.carol, personas.brand_z), [line("z")])

    routing.upkeep_round()

    shapes = sorted(ProviderBatch.objects.values_list("company_id", "model_name", "request_count"))
    assert shapes == sorted(
        [
            (personas.brand_a.company_id, "gpt-4o-mini", 2),
            (personas.brand_a.company_id, "gpt-4o", 1),
            (personas.brand_z.company_id, "gpt-4o-mini", 1),
        ]
    )
    assert AIJob.objects.filter(status=S.COMPLETED).count() == 4


def test_a_lone_job_waits_at_most_the_accumulation_bound(settings, alice, fake):
    settings.AICORE_PROVIDER_BATCH_MIN_JOBS = 1000
    settings.AICORE_PROVIDER_BATCH_MAX_WAIT_SECONDS = 300
    submit(alice, [line("alone")])

    assert routing.route_waiting() == []
    assert routing.route_waiting(now=timezone.now() + timedelta(seconds=301)) != []
    assert BatchJob.objects.get().provider_batch is not None


def test_a_large_group_is_split_into_provider_batches_of_the_maximum_size(settings, alice, fake):
    settings.AICORE_PROVIDER_BATCH_MAX_JOBS = 4
    submit(alice, [line(str(i)) for i in range(10)])

    routing.upkeep_round()

    assert sorted(ProviderBatch.objects.values_list("request_count", flat=True)) == [2, 4, 4]
    assert AIJob.objects.filter(status=S.COMPLETED).count() == 10


def test_echo_jobs_with_a_24h_window_run_on_the_normal_path(alice, fake):
    submit(alice, [{"input_data": {"messages": [{"role": "user", "content": "x"}]}}])

    job = AIJob.objects.get()
    assert job.available_at <= timezone.now() and BatchJob.objects.get().routed is False


def test_failed_requests_fail_their_job_and_expired_ones_return_to_the_normal_path(alice, fake):
    submit(alice, [line("fine"), line("bad [fake batch_error]", usage=""), line("late [fake batch_expire]", usage="")])
    fine, bad, late = AIJob.objects.order_by("batch_link__line")

    routing.upkeep_round()

    assert ProviderBatch.objects.get().status == PB.FAILED  # the provider batch expired
    fine.refresh_from_db(), bad.refresh_from_db(), late.refresh_from_db()
    assert fine.status == S.COMPLETED
    assert bad.status == S.FAILED and "fake batch request failure" in bad.error_message
    assert late.status == S.PENDING and late.available_at <= timezone.now() and late.attempts == 0
    assert BatchJob.objects.get(job=late).routed is False
    assert AIJobUsage.objects.get(job=bad).total_cost == 0


def _needs(personas, input_data) -> tuple:
    """What a job of that input reserves through the Batch API and on the normal path."""
    from ai_core.services import job_type_get

    job = AIJob(job_type=job_type_get("chat_completion"), brand=personas.brand_a, input_data=input_data)
    request, choice = job_provider_request(job), model_resolve(input_data["model"])
    return reservation_for(request=request, choice=choice, batch=True), reservation_for(request=request, choice=choice)


def test_a_job_back_on_the_normal_path_is_reserved_at_the_standard_price(personas, alice, fake):
    quota = Quota.objects.create(company=personas.brand_a.company, monthly_cost_limit=Decimal("100"))
    late = line("late [fake batch_expire]", usage="")
    at_batch, standard = _needs(personas, late["input_data"])
    submit(alice, [late])
    assert QuotaReservation.objects.get().cost_micros == at_batch.cost_micros

    routing.upkeep_round()

    job = AIJob.objects.get()
    assert job.status == S.PENDING and job.available_at <= timezone.now()
    reservation = QuotaReservation.objects.get(job=job, period__quota=quota)
    assert reservation.state == "reserved" and reservation.cost_micros == standard.cost_micros > at_batch.cost_micros
    assert reservation.period.reserved_cost_micros == standard.cost_micros


def test_a_job_its_quota_cannot_cover_at_the_standard_price_fails_instead_of_running(personas, alice, fake):
    late = line("late [fake batch_expire]", usage="")
    at_batch, _ = _needs(personas, late["input_data"])
    quota = Quota.objects.create(
        company=personas.brand_a.company, monthly_cost_limit=Decimal(at_batch.cost_micros) / 1_000_000
    )
    submit(alice, [late])  # fits exactly, at the batch price

    routing.upkeep_round()

    job = AIJob.objects.get()
    assert job.status == S.FAILED and job.error_code == "QUOTA_EXCEEDED" and job.attempts == 1
    assert QuotaReservation.objects.get(job=job).state == "released"
    period = QuotaReservation.objects.get(job=job).period
    assert (period.reserved_cost_micros, period.used_cost_micros, period.quota_id) == (0, 0, quota.pk)


def test_expired_requests_end_timeout_when_so_configured(settings, alice, fake):
    settings.AICORE_PROVIDER_BATCH_ON_EXPIRY = "timeout"
    submit(alice, [line("late [fake batch_expire]", usage="")])

    routing.upkeep_round()

    job = AIJob.objects.get()
    assert job.status == S.TIMEOUT and job.attempts == 1


def test_a_provider_batch_that_fails_validation_returns_its_jobs_to_the_normal_path(alice, fake):
    submit(alice, [line("x [fake batch_fail]", usage=""), line("y")])

    routing.upkeep_round()

    assert ProviderBatch.objects.get().status == PB.FAILED
    assert AIJob.objects.filter(status=S.PENDING, available_at__lte=timezone.now()).count() == 2


STEPS = ["uploaded", "upload recorded", "submitting recorded", "created"]


class WorkerDied(BaseException):
    """What a kill -9 at a step boundary leaves: nothing after that point ran."""


def _crash_at(step):
    def hook(name):
        if name == step:
            raise WorkerDied(step)

    return hook


@pytest.mark.parametrize(
    "model, step",
    [("gpt-4o-mini", step) for step in STEPS]  # upload, then create (found again by its metadata)
    + [("claude-sonnet-4-5", step) for step in STEPS[2:]],  # one step (adopted by its time and size)
)
def test_a_worker_dying_at_any_submission_step_never_creates_a_second_provider_batch(alice, fake, model, step):
    submit(alice, [line(str(i), model=model) for i in range(3)])
    created_before = fake.server.batches_created
    routing.route_waiting()
    provider_batch = ProviderBatch.objects.get()
    routing.step_hook = _crash_at(step)

    with pytest.raises(WorkerDied):
        routing.provider_batch_submit(provider_batch.pk)
    routing.step_hook = None
    # Its lease runs out; another worker's round takes over.
    assert routing.provider_batch_submit(provider_batch.pk) is None  # still leased by the dead worker
    ProviderBatch.objects.filter(pk=provider_batch.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    routing.upkeep_round()

    assert fake.server.batches_created - created_before == 1
    assert ProviderBatch.objects.get().status == PB.ENDED
    assert AIJob.objects.filter(status=S.COMPLETED).count() == 3


def test_one_creation_per_provider_is_in_flight_at_a_time(settings, alice, fake):
    settings.AICORE_PROVIDER_BATCH_MAX_JOBS = 2
    submit(alice, [line(str(i), model="claude-sonnet-4-5") for i in range(4)])
    created_before = fake.server.batches_created
    first, second = routing.route_waiting()
    routing.step_hook = _crash_at("submitting recorded")
    with pytest.raises(WorkerDied):
        routing.provider_batch_submit(first)
    routing.step_hook = None

    # The first's creation may have reached the provider: the second waits, or the first could not tell its own.
    assert routing.provider_batch_submit(second) == PB.PREPARING
    assert ProviderBatch.objects.get(pk=second).status == PB.PREPARING
    assert fake.server.batches_created == created_before
    ProviderBatch.objects.filter(pk=first).update(leased_until=timezone.now() - timedelta(seconds=1))
    routing.upkeep_round()
    routing.upkeep_round()

    assert fake.server.batches_created - created_before == 2
    assert set(ProviderBatch.objects.values_list("status", flat=True)) == {PB.ENDED}
    assert AIJob.objects.filter(status=S.COMPLETED).count() == 4


def test_an_unrecorded_anthropic_batch_is_not_guessed_among_two_of_its_size(alice, fake, llm_env):
    import anthropic

    submit(alice, [line(str(i), model="claude-sonnet-4-5") for i in range(3)])
    created_before = fake.server.batches_created
    (pk,) = routing.route_waiting()
    routing.step_hook = _crash_at("created")
    with pytest.raises(WorkerDied):
        routing.provider_batch_submit(pk)
    routing.step_hook = None
    # Meanwhile someone else creates a batch of the same size with the same key, outside the hub.
    sdk = anthropic.Anthropic(api_key="sk-ant-env-test-key", base_url=llm_env.base_url)
    params = {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    sdk.messages.batches.create(requests=[{"custom_id": f"other-{i}", "params": params} for i in range(3)])
    ProviderBatch.objects.filter(pk=pk).update(leased_until=timezone.now() - timedelta(seconds=1))

    assert routing.provider_batch_submit(pk) == PB.FAILED

    assert fake.server.batches_created - created_before == 2  # its own and the other: no third
    failed = ProviderBatch.objects.get(pk=pk)
    assert failed.provider_batch_id == "" and "cannot be told" in failed.error_message
    # Its jobs go back to the normal path (AICORE_PROVIDER_BATCH_ON_EXPIRY) rather than wait for no answer.
    assert AIJob.objects.filter(status=S.PENDING, available_at__lte=timezone.now()).count() == 3


def test_cancel_mid_batch_releases_the_cancelled_jobs_reservations_and_discards_their_answers(personas, alice, fake):
    Quota.objects.create(company=personas.brand_a.company, monthly_cost_limit=Decimal("100"))
    fake.server.hold_batches = True
    submit(alice, [line(str(i)) for i in range(10)])
    routing.upkeep_round()
    assert ProviderBatch.objects.get().status == PB.SUBMITTED
    jobs = list(AIJob.objects.order_by("batch_link__line"))
    for job in jobs[:4]:
        assert alice.post(f"/ai/jobs/{job.job_id}/cancel/").status_code == 200

    cancelled = [job.pk for job in jobs[:4]]
    assert QuotaReservation.objects.filter(job_id__in=cancelled, state="released").count() == 4
    assert QuotaReservation.objects.filter(state="reserved").count() == 6
    fake.release_batches()
    routing.upkeep_round()

    assert AIJob.objects.filter(pk__in=cancelled, status=S.CANCELLED).count() == 4
    assert AIJob.objects.filter(status=S.COMPLETED).count() == 6
    assert not AIJobUsage.objects.filter(job_id__in=cancelled).exists()
    assert QuotaReservation.objects.filter(state="settled").count() == 6
    assert ProviderBatch.objects.get().status == PB.ENDED


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-5"])
def test_the_provider_batch_is_cancelled_when_all_its_jobs_are(alice, fake, model):
    fake.server.hold_batches = True
    batch = submit(alice, [line(str(i), model=model) for i in range(3)])
    routing.upkeep_round()

    assert alice.post(f"/ai/batches/{batch['id']}/cancel/").json()["cancelled"] == 3
    routing.upkeep_round()

    provider_batch = ProviderBatch.objects.get()
    assert provider_batch.status == PB.CANCELLED
    store = fake.server.openai_batches if model.startswith("gpt") else fake.server.anthropic_batches
    status_key = "status" if model.startswith("gpt") else "processing_status"
    assert store[provider_batch.provider_batch_id][status_key] in {"cancelled", "ended"}
    assert QuotaReservation.objects.filter(state="reserved").count() == 0
