"""The asyncio executor's batched completions (engine.batch.complete_many → lifecycle.jobs_complete): the hooks
called once per batch, one compare-and-set statement for all its jobs, each quota period settled once, in one
global lock order — so concurrent batches on the same quotas never deadlock, and a job is charged once."""

import pytest
from django.conf import settings

from ai_core import lifecycle, services
from ai_core.engine import batch
from ai_core.models import AIJob, AIJobEvent, JobDailyStat, JobStatus
from ai_core.tests.test_concurrency import run_together
from ai_providers.clients.base import ChatResult
from ai_usage.models import AIJobUsage, Quota, QuotaPeriod, QuotaReservation, ReservationState
from ai_usage.services import month_start

S = JobStatus
pytestmark = pytest.mark.django_db(transaction=True)
CHAT = {"messages": [{"role": "user", "content": "batched"}], "model": "gpt-4o-mini", "max_tokens": 50}

needs_postgres = pytest.mark.skipif(
    not settings.IS_POSTGRES, reason="SQLite writes one transaction at a time: batches never interleave there"
)


def answer(text: str = "ok", *, input_tokens: int = 10, output_tokens: int = 20) -> ChatResult:
    return ChatResult(
        completion=text,
        finish_reason="stop",
        model="gpt-4o-mini",
        request_id=None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def quotas_of(*brands) -> list[Quota]:
    """A quota per brand, then a company-wide one (the highest id: a job of brand A locks A's period before the
    company's, one of brand B B's), all active: every job reserves on two periods."""
    company = brands[0].company
    quotas = [Quota.objects.create(company=company, brand=brand, monthly_token_limit=10**9) for brand in brands]
    return [*quotas, Quota.objects.create(company=company, monthly_token_limit=10**9)]


def running_jobs(personas, count: int, brands=None) -> list[tuple[int, int]]:
    """`count` jobs, of brand A or of `brands` in turn, each claimed: (job pk, attempt)."""
    brands = brands or [personas.brand_a]
    claimed = []
    for index in range(count):
        job, _ = services.job_create(
            brand=brands[index % len(brands)], user=personas.alice, job_type="chat_completion", input_data=dict(CHAT)
        )
        claimed.append((job.pk, services.job_start(job_pk=job.pk).attempt))
    return claimed


def period(quota: Quota) -> QuotaPeriod:
    return QuotaPeriod.objects.get(quota=quota, month=month_start())


def charged_tokens() -> int:
    return sum(AIJobUsage.objects.values_list("total_tokens", flat=True))


def test_a_batch_completes_every_job_with_its_usage_events_roll_up_and_settled_quota(personas, llm_env):
    quotas = quotas_of(personas.brand_a)
    claimed = running_jobs(personas, 4)
    statuses = batch.complete_many([(pk, attempt, answer(f"answer {pk}"), None) for pk, attempt in claimed])

    assert statuses == [S.COMPLETED] * 4
    for pk, attempt in claimed:
        job = AIJob.objects.get(pk=pk)
        assert (job.status, job.result_data["completion"], job.progress_percentage) == (
            S.COMPLETED,
            f"answer {pk}",
            100,
        )
        assert job.completed_at is not None
        end = AIJobEvent.objects.get(job_id=pk, to_status=S.COMPLETED)
        assert (end.from_status, end.attempt, end.reason) == (S.RUNNING, attempt, "completed")
    usage = AIJobUsage.objects.filter(job_id__in=[pk for pk, _ in claimed])
    assert usage.count() == 4 and {u.total_tokens for u in usage} == {30}
    assert QuotaReservation.objects.filter(state=ReservationState.SETTLED).count() == 8  # 4 jobs × 2 quotas
    for quota in quotas:
        counters = period(quota)
        assert (counters.used_tokens, counters.reserved_tokens, counters.reserved_cost_micros) == (120, 0, 0)
        assert counters.used_cost_micros == sum(u.total_cost for u in usage) * 10**6
    # The roll-up: four jobs left running for completed, with their cost.
    rollup = {
        status: (sum(JobDailyStat.objects.filter(status=status).values_list("jobs", flat=True)))
        for status in (S.PENDING, S.RUNNING, S.COMPLETED)
    }
    assert rollup == {S.PENDING: 0, S.RUNNING: 0, S.COMPLETED: 4}
    cost = sum(JobDailyStat.objects.filter(status=S.COMPLETED).values_list("cost_micros", flat=True))
    assert cost == sum(u.total_cost for u in usage) * 10**6 > 0


def test_a_cancelled_job_and_a_stale_attempt_are_skipped_uncharged_and_the_others_completed(personas, llm_env):
    quotas = quotas_of(personas.brand_a)
    (done_pk, done_attempt), (cancelled_pk, cancelled_attempt), (stale_pk, stale_attempt) = running_jobs(personas, 3)
    services.job_cancel(job_pk=cancelled_pk)
    # The stale attempt's job was re-queued and claimed again: attempt + 1 is its current one.
    lifecycle.job_requeue(job_pk=stale_pk, attempt=stale_attempt, reason="lost worker")
    assert services.job_start(job_pk=stale_pk).attempt == stale_attempt + 1

    statuses = batch.complete_many(
        [
            (done_pk, done_attempt, answer(), None),
            (cancelled_pk, cancelled_attempt, answer("too late"), None),
            (stale_pk, stale_attempt, answer("zombie"), None),
        ]
    )

    assert statuses == [S.COMPLETED, None, None]
    assert AIJob.objects.get(pk=cancelled_pk).status == S.CANCELLED
    stale = AIJob.objects.get(pk=stale_pk)
    assert (stale.status, stale.attempts, stale.result_data) == (S.RUNNING, stale_attempt + 1, None)
    assert list(AIJobUsage.objects.values_list("job_id", flat=True)) == [done_pk]
    assert not AIJobEvent.objects.filter(job_id__in=[cancelled_pk, stale_pk], to_status=S.COMPLETED).exists()
    # The cancelled job's reservations were given back by its cancel, the stale one's are still held.
    assert set(QuotaReservation.objects.filter(job_id=stale_pk).values_list("state", flat=True)) == {"reserved"}
    for quota in quotas:
        counters = period(quota)
        assert counters.used_tokens == 30
        held = QuotaReservation.objects.get(job_id=stale_pk, period=counters)
        assert (counters.reserved_tokens, counters.reserved_cost_micros) == (held.tokens, held.cost_micros)


def test_the_same_batch_written_twice_charges_once(personas, llm_env):
    quotas = quotas_of(personas.brand_a)
    items = [(pk, attempt, answer(), None) for pk, attempt in running_jobs(personas, 3)]
    assert batch.complete_many(items) == [S.COMPLETED] * 3
    before = {q.pk: (period(q).used_tokens, period(q).used_cost_micros) for q in quotas}

    assert batch.complete_many(items) == [None] * 3  # a duplicate delivery: discarded, nothing written
    assert lifecycle.jobs_complete([lifecycle.Completion(job_pk=items[0][0], attempt=items[0][1], result_data={})]) == [
        None
    ]
    assert {q.pk: (period(q).used_tokens, period(q).used_cost_micros) for q in quotas} == before
    assert AIJobUsage.objects.count() == 3 and charged_tokens() == 90
    assert AIJobEvent.objects.filter(to_status=S.COMPLETED).count() == 3
    assert sum(JobDailyStat.objects.filter(status=S.COMPLETED).values_list("jobs", flat=True)) == 3


def test_a_job_named_twice_in_one_batch_is_completed_once(personas, llm_env):
    quotas_of(personas.brand_a)
    ((pk, attempt),) = running_jobs(personas, 1)
    assert batch.complete_many([(pk, attempt, answer("first"), None), (pk, attempt, answer("again"), None)]) == [
        S.COMPLETED,
        None,
    ]
    assert AIJob.objects.get(pk=pk).result_data["completion"] == "first"
    assert AIJobUsage.objects.count() == 1 and AIJobEvent.objects.filter(to_status=S.COMPLETED).count() == 1


def quota_of_brand_holds_its_jobs_charges(quota: Quota) -> None:
    """The quota's period counts exactly what its jobs were charged, and holds nothing back."""
    usage = AIJobUsage.objects.all() if quota.brand_id is None else AIJobUsage.objects.filter(brand_id=quota.brand_id)
    counters = period(quota)
    tokens = sum(usage.values_list("total_tokens", flat=True))
    micros = sum(usage.values_list("total_cost", flat=True)) * 10**6
    assert (counters.used_tokens, counters.used_cost_micros) == (tokens, micros)
    assert (counters.reserved_tokens, counters.reserved_cost_micros) == (0, 0)


@needs_postgres
def test_concurrent_batches_on_the_same_quotas_never_deadlock_and_charge_each_job_once(personas, llm_env):
    """The issue's case: batches whose jobs reach the same quota periods in different orders (jobs of brands A
    and B in turn, each batch every 5th job: some start with A's period, some with B's) settled those periods
    one job after another, interleaved with each other, and deadlocked."""
    brands = [personas.brand_a, personas.brand_b]
    quotas = quotas_of(*brands)
    threads_count, per_batch = 5, 8
    claimed = running_jobs(personas, threads_count * per_batch, brands)
    batches = [claimed[i::threads_count] for i in range(threads_count)]
    # lifecycle.jobs_complete itself: complete_many would hide a failed batch by writing it job by job. A
    # deadlock (or any other failure) leaves its outcome None.
    outcomes = run_together(
        *(
            lambda one=one: lifecycle.jobs_complete(
                [
                    lifecycle.Completion(job_pk=pk, attempt=attempt, result_data={"n": pk}, tokens=answer().tokens)
                    for pk, attempt in one
                ]
            )
            for one in batches
        )
    )

    assert outcomes == [[S.COMPLETED] * per_batch] * threads_count
    jobs = len(claimed)
    assert AIJob.objects.filter(status=S.COMPLETED).count() == jobs
    assert AIJobUsage.objects.count() == jobs and charged_tokens() == 30 * jobs
    for quota in quotas:
        quota_of_brand_holds_its_jobs_charges(quota)
    assert QuotaReservation.objects.exclude(state=ReservationState.SETTLED).count() == 0
    assert QuotaReservation.objects.count() == 2 * jobs


@needs_postgres
def test_batched_completions_racing_a_batch_cancel_of_the_same_jobs_move_each_job_once(personas, llm_env):
    """A batch's cancel and the executor's completions lock the same reservations, periods and jobs in one
    order: no deadlock, each job ends once, charged only if it completed, nothing left reserved."""
    brands = [personas.brand_a, personas.brand_b]
    quotas = quotas_of(*brands)
    claimed = running_jobs(personas, 12, brands)
    halves = [claimed[0::2], claimed[1::2]]
    actions = [
        lambda: lifecycle.jobs_cancel([pk for pk, _ in reversed(claimed)], reason="batch cancelled"),
        *(
            lambda half=half: lifecycle.jobs_complete(
                [lifecycle.Completion(job_pk=pk, attempt=a, result_data={}, tokens=answer().tokens) for pk, a in half]
            )
            for half in halves
        ),
    ]
    outcomes = run_together(*actions)

    assert None not in outcomes, outcomes  # none failed (a deadlock)
    cancelled = outcomes[0]
    completed = set()
    for half, statuses in zip(halves, outcomes[1:], strict=True):
        completed |= {pk for (pk, _), status in zip(half, statuses, strict=True) if status}
    assert cancelled | completed == {pk for pk, _ in claimed} and not cancelled & completed
    assert set(AIJobUsage.objects.values_list("job_id", flat=True)) == completed
    assert charged_tokens() == 30 * len(completed)
    for quota in quotas:
        quota_of_brand_holds_its_jobs_charges(quota)


def test_without_reservations_a_batch_writes_usage_and_openai_rows_of_the_moved_jobs_only(personas, llm_env):
    """No quota: no job holds a reservation, so the batch is one statement on PostgreSQL (the extensions'
    writes parts of it): the usage rows and the OpenAI rows' counts of the completed jobs, none of the others."""
    from ai_openai.models import OpenAIJob

    (done_pk, done_attempt), (cancelled_pk, cancelled_attempt) = running_jobs(personas, 2)
    services.job_cancel(job_pk=cancelled_pk)
    statuses = batch.complete_many(
        [
            (done_pk, done_attempt, answer(input_tokens=7, output_tokens=5), None),
            (cancelled_pk, cancelled_attempt, answer(input_tokens=7, output_tokens=5), None),
        ]
    )

    assert statuses == [S.COMPLETED, None]
    assert list(AIJobUsage.objects.values_list("job_id", "total_tokens")) == [(done_pk, 12)]
    rows = {row.job_id: row for row in OpenAIJob.objects.filter(job_id__in=[done_pk, cancelled_pk])}
    assert set(rows) == {done_pk, cancelled_pk}  # gpt-4o-mini jobs have their OpenAI row
    assert (rows[done_pk].prompt_tokens, rows[done_pk].completion_tokens, rows[done_pk].total_tokens) == (7, 5, 12)
    assert rows[cancelled_pk].total_tokens == 0
    assert AIJob.objects.get(pk=cancelled_pk).status == S.CANCELLED
    cost = sum(JobDailyStat.objects.filter(status=S.COMPLETED).values_list("cost_micros", flat=True))
    assert cost == AIJobUsage.objects.get().total_cost * 10**6 > 0
