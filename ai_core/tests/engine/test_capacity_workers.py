"""Provider capacity with real worker processes: a burst beyond a provider's rate limit waits instead of failing.

Three worker processes share a fake OpenAI-compatible endpoint in rate-limit mode (fake_llm.RateLimit: a fixed
window, 429 with Retry-After beyond it). Limits are scaled up (20 a second) so a drain takes seconds.
PostgreSQL + Redis only (the heavy ones); the embedded set-up is covered in-process by engine/test_capacity_waits.py.
"""

from datetime import timedelta

import pytest
from django.conf import settings

from ai_core.models import FINAL_STATUSES, AIJob, AIJobEvent
from ai_core.services import jobs_cancel
from ai_providers.models import CapacityLease, CapacityLimit, Provider
from testing.jobs import all_final, bulk_submit, wait_for
from testing.workers import purge_broker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.IS_POSTGRES, reason="three worker processes: the PostgreSQL + Redis pass"),
]
PER_SECOND = 20  # low enough to bind even on a loaded machine (the waits must happen)
CONCURRENCY = 8


@pytest.fixture(scope="module")
def three_workers(workers, fake_llm):
    purge_broker()
    env = {
        "OPENAI_API_KEY": "sk-capacity-test",
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
        "AICORE_CAPACITY_SMOOTHING_SECONDS": "1",
        "AICORE_CAPACITY_CACHE_SECONDS": "1",
        # Not the reaper's test: on a loaded machine a worker starved for 1.5 s would look dead (FAST_ENGINE).
        "AICORE_REAP_AFTER_MS": "5000",
        "AICORE_CAPACITY_LEASE_MS": "3000",
    }
    procs = [workers.start(concurrency=CONCURRENCY, **env) for _ in range(3)]
    workers.wait_ready(*procs)
    workers.capacity_env = env
    return workers


@pytest.fixture
def endpoint(three_workers, fake_llm, catalogue, job_types):
    """The fake endpoint, limited afresh for each test."""
    purge_broker()
    fake_llm.rate_limit(requests=PER_SECOND, per_seconds=1)
    yield fake_llm
    fake_llm.server.limiter = None


def chat(text: str = "hello") -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 16}


def drain(pks, workers, timeout: float = 60) -> list[AIJob]:
    wait_for(lambda: all_final(pks), timeout=timeout, what=lambda: f"every job to end\n{workers.logs()}")
    return list(AIJob.objects.filter(pk__in=pks))


def most_granted_in_a_second() -> int:
    """The most leases granted in any one-second window, over every process (the limiter's own record)."""
    granted = sorted(CapacityLease.objects.values_list("granted_at", flat=True))
    return max((sum(1 for t in granted if at - timedelta(seconds=1) < t <= at) for at in granted), default=0)


def assert_burst_absorbed(jobs: list[AIJob], limiter) -> None:
    assert {job.status for job in jobs} == {"completed"}, [(j.status, j.error_code) for j in jobs if j.is_final]
    retried = [j.pk for j in jobs if j.attempts != 1]
    reasons = set(AIJobEvent.objects.filter(job_id__in=retried, to_status="pending").values_list("reason", flat=True))
    assert not retried, f"{len(retried)} jobs spent more than one attempt: {reasons}"  # waits spent none
    assert limiter.served == len(jobs)  # each job called the provider successfully exactly once
    calls = limiter.served + limiter.refused
    assert limiter.refused < 0.05 * calls, f"{limiter.refused} answers of 429 in {calls} calls"


def test_a_burst_beyond_a_configured_limit_waits_and_completes_once_each(endpoint, make_brands, three_workers):
    CapacityLimit.objects.create(
        provider=Provider.objects.get(name="openai"), model="gpt-4o-mini", requests_per_minute=PER_SECOND * 60
    )
    endpoint.server.limiter.state_headers = False  # nothing to learn: the configured limit alone keeps it
    (brand,) = make_brands(1)
    pks = bulk_submit([(brand, "normal")] * 200, input_data=chat())
    jobs = drain(pks, three_workers)
    assert_burst_absorbed(jobs, endpoint.server.limiter)
    # Three processes drew from one budget: never more than the limit in any second (no x3).
    assert most_granted_in_a_second() <= PER_SECOND
    assert AIJobEvent.objects.filter(job_id__in=pks, reason__startswith="waiting for openai capacity").exists()


def test_limits_are_learned_from_the_providers_headers_alone(endpoint, make_brands, three_workers):
    (brand,) = make_brands(1)
    pks = bulk_submit([(brand, "normal")] * 200, input_data=chat())
    jobs = drain(pks, three_workers)
    assert_burst_absorbed(jobs, endpoint.server.limiter)
    learned = CapacityLimit.objects.get(model="gpt-4o-mini")
    assert learned.requests_per_minute is None and learned.learned_requests_per_minute == PER_SECOND * 60


def test_a_small_brand_gets_its_share_beside_a_large_backlog(endpoint, make_brands, three_workers):
    CapacityLimit.objects.create(
        provider=Provider.objects.get(name="openai"), model="gpt-4o-mini", requests_per_minute=20 * 60
    )
    large, small = make_brands(2)
    backlog = bulk_submit([(large, "normal")] * 300, input_data=chat())
    wait_for(
        lambda: AIJob.objects.filter(pk__in=backlog, waiting__isnull=False).exists(),
        timeout=30,
        what="the backlog to wait for capacity",
    )
    late = bulk_submit([(small, "normal")] * 10, input_data=chat())
    started = AIJob.objects.filter(pk__in=backlog, status="completed").count()
    drain(late, three_workers)
    done_meanwhile = AIJob.objects.filter(pk__in=backlog, status="completed").count() - started
    # The rest of the backlog cancelled, and every call under way over with its lease given back, before the
    # test's flush: a worker still claiming (a job back from a capacity wait is claimable again) holds the
    # capacity row while it writes the leases, and deadlocked with the flush's TRUNCATE. Parked pending jobs
    # were not enough: a call under way that met a wait went back to pending, claimable, after the parking.
    unfinished = AIJob.objects.filter(pk__in=backlog).exclude(status__in=FINAL_STATUSES).values_list("pk", flat=True)
    jobs_cancel(list(unfinished), reason="test over")
    wait_for(
        lambda: all_final(backlog) and not CapacityLease.objects.filter(released_at__isnull=True).exists(),
        timeout=30,
        what="the backlog's calls under way to end",
    )
    # Equal weights: the small brand's 10 jobs took about every other slot (some 20 of the backlog's meanwhile,
    # plus the calls under way; more on a loaded machine), not the end of the queue (nearly 300).
    assert done_meanwhile < 100, f"the small brand waited behind {done_meanwhile} of the backlog's jobs"
    assert {job.status for job in AIJob.objects.filter(pk__in=late)} == {"completed"}


def test_a_worker_killed_while_holding_capacity_gives_it_back(endpoint, make_brands, three_workers):
    CapacityLimit.objects.create(
        provider=Provider.objects.get(name="openai"), model="gpt-4o-mini", concurrent_requests=1
    )
    (brand,) = make_brands(1)
    (long_call,) = bulk_submit([(brand, "normal")], input_data=chat("[fake chunks=30 delay=0.1]"))
    wait_for(
        lambda: CapacityLease.objects.filter(released_at__isnull=True).exists(),
        timeout=30,
        what="the long call to hold the only slot",
    )
    for proc in list(three_workers.procs):  # whichever holds it dies without a word
        three_workers.kill(proc)
    three_workers.procs.clear()
    three_workers.wait_ready(three_workers.start(concurrency=CONCURRENCY, **three_workers.capacity_env))
    after = bulk_submit([(brand, "normal")], input_data=chat())
    jobs = drain([long_call, *after], three_workers)
    assert {job.status for job in jobs} == {"completed"}
    killed = CapacityLease.objects.order_by("granted_at").first()
    assert killed.released_at is None  # never released: its expiry gave the slot back
    assert CapacityLease.objects.count() == 3  # the killed call, its job's next attempt, the other job
