"""Provider capacity (ai_providers.capacity): the windows, the leases, what headers teach, the pacer."""

from datetime import timedelta

import pytest
from django.utils import timezone

from ai_providers import capacity
from ai_providers.capacity import CapacityKey, CapacityWait
from ai_providers.clients.base import ChatRequest
from ai_providers.clients.openai_client import OpenAIClient
from ai_providers.models import CapacityLease, CapacityLimit, Provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(catalogue):
    provider = Provider.objects.get(name="openai")
    capacity.memo.clear()
    return CapacityKey(provider_id=provider.pk, provider="openai", credential_id=None, model="gpt-4o-mini")


def limit(key: CapacityKey, **limits) -> CapacityLimit:
    return CapacityLimit.objects.create(provider_id=key.provider_id, model=key.model, **limits)


def grant(key: CapacityKey, tokens: int = 10) -> capacity.Lease:
    return capacity.acquire(key, holder="test", tokens=tokens)


def test_an_endpoint_without_limits_holds_nothing(key):
    lease = grant(key)
    assert lease.lease_id is None and lease.limit_id is None
    assert not CapacityLease.objects.exists()


def test_requests_beyond_the_smoothed_window_wait_until_the_oldest_leaves_it(key, settings):
    settings.AICORE_CAPACITY_SMOOTHING_SECONDS = 5
    limit(key, requests_per_minute=60)  # 5 in any 5 s
    leases = [grant(key) for _ in range(5)]
    assert all(lease.lease_id for lease in leases)
    with pytest.raises(CapacityWait) as waited:
        grant(key)
    oldest = CapacityLease.objects.order_by("granted_at").first().granted_at
    assert waited.value.until == oldest + timedelta(seconds=5)
    assert waited.value.as_waiting()["reason"] == "provider_capacity"
    row = CapacityLimit.objects.get()
    assert row.waits == 1 and row.waited_at is not None


def test_a_minute_limit_counts_a_whole_minute(key):
    limit(key, requests_per_minute=2)
    grant(key)
    CapacityLease.objects.update(granted_at=timezone.now() - timedelta(seconds=30))
    grant(key)
    with pytest.raises(CapacityWait) as waited:
        grant(key)
    assert waited.value.reason == "requests per minute"


def test_tokens_per_minute_bound_the_calls_but_never_an_empty_minute(key):
    limit(key, tokens_per_minute=1000)
    grant(key, tokens=5000)  # alone in its minute: it goes
    with pytest.raises(CapacityWait) as waited:
        grant(key, tokens=10)
    assert waited.value.reason == "tokens per minute"


def test_a_released_concurrent_slot_is_free_again_and_an_expired_one_too(key):
    limit(key, concurrent_requests=1)
    held = grant(key)
    with pytest.raises(CapacityWait):
        grant(key)
    capacity.release(held, tokens=3, headers={}, status=200)
    again = grant(key)
    assert CapacityLease.objects.get(pk=held.lease_id).tokens == 3
    # The holder was killed: it never releases nor renews; its lease expires.
    CapacityLease.objects.filter(pk=again.lease_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert grant(key).lease_id is not None


def test_renewing_keeps_a_lease_past_its_first_expiry(key):
    limit(key, concurrent_requests=1)
    held = grant(key)
    CapacityLease.objects.filter(pk=held.lease_id).update(expires_at=timezone.now() + timedelta(milliseconds=1))
    assert capacity.leases_renew([held.lease_id]) == 1
    with pytest.raises(CapacityWait):
        grant(key)


OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "240",
    "x-ratelimit-remaining-requests": "239",
    "x-ratelimit-reset-requests": "250ms",
    "x-ratelimit-limit-tokens": "90000",
}


def test_limits_are_learned_from_openai_headers_and_expire(key, settings):
    capacity.last_learned.__init__()
    capacity.release(
        capacity.Lease(key=key, limit_id=None, lease_id=None), tokens=1, headers=OPENAI_HEADERS, status=200
    )
    row = CapacityLimit.objects.get(model="gpt-4o-mini")
    assert (row.learned_requests_per_minute, row.learned_tokens_per_minute) == (240, 90000)
    assert row.requests_per_minute is None  # learned, not configured
    now = timezone.now()
    values = CapacityLimit.objects.filter(pk=row.pk).values(*capacity.STATE_FIELDS).get()
    assert capacity.effective(capacity.Limits(), values, now).requests_per_minute == 240
    later = row.learned_until + timedelta(seconds=1)
    assert capacity.effective(capacity.Limits(), values, later).unlimited  # the provider stopped saying it


def test_a_configured_limit_below_the_learned_one_wins_and_never_above_it(key):
    values = {"learned_requests_per_minute": 100, "learned_tokens_per_minute": None, "blocked_until": None}
    values["learned_until"] = timezone.now() + timedelta(minutes=1)
    assert capacity.effective(capacity.Limits(requests_per_minute=50), values, timezone.now()).requests_per_minute == 50
    assert (
        capacity.effective(capacity.Limits(requests_per_minute=500), values, timezone.now()).requests_per_minute == 100
    )


def test_anthropic_headers_and_retry_after_are_read():
    now = timezone.now()
    learned = capacity.headers_limits(
        {"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-tokens-limit": "40000", "retry-after": "7"},
        status=429,
        now=now,
    )
    assert (learned.requests_per_minute, learned.tokens_per_minute) == (50, 40000)
    assert learned.blocked_until == now + timedelta(seconds=7)
    assert capacity.retry_after_seconds({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5
    assert capacity.headers_limits({"retry-after": "7"}, status=200, now=now).blocked_until is None
    exhausted = capacity.headers_limits(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s"}, status=200, now=now
    )
    assert exhausted.blocked_until == now + timedelta(seconds=90)


def test_a_429_blocks_the_endpoint_for_every_caller_until_retry_after(key):
    limit(key, requests_per_minute=1000)
    lease = grant(key)
    capacity.release(lease, tokens=None, headers={"retry-after": "30"}, status=429)
    with pytest.raises(CapacityWait) as waited:
        grant(key)
    assert waited.value.reason == "the provider asked to wait"
    row = CapacityLimit.objects.get()
    assert (row.calls, row.rate_limited) == (1, 1)


def test_the_pacer_schedules_wake_ups_at_the_capacity_rate_not_per_waiting_job(key, settings):
    settings.AICORE_CAPACITY_SMOOTHING_SECONDS = 1
    limit(key, requests_per_minute=600)  # 10 a second
    for _ in range(10):
        grant(key)
    wakes = []
    for _ in range(50):  # 50 jobs find no room
        with pytest.raises(CapacityWait) as waited:
            grant(key)
        wakes += waited.value.wakes
    assert 10 <= len(wakes) <= 11  # one smoothing window of slots, 0.1 s apart, whatever the queue's length
    assert all(b - a == timedelta(milliseconds=100) for a, b in zip(wakes, wakes[1:], strict=False))


def test_when_a_pause_ends_on_an_endpoint_without_limits_the_waiting_jobs_are_woken(key):
    row = limit(key)  # nothing configured nor learned: only the provider's pause (429 Retry-After)
    CapacityLimit.objects.filter(pk=row.pk).update(blocked_until=timezone.now() + timedelta(seconds=30))
    for _ in range(3):
        with pytest.raises(CapacityWait):
            grant(key)
    CapacityLimit.objects.filter(pk=row.pk).update(blocked_until=timezone.now(), paced_until=None)
    lease = grant(key)
    assert lease.lease_id is None and len(lease.wakes) > 3  # nothing to count, and the waiting jobs are woken


def test_a_batch_of_calls_takes_what_the_windows_have_left_in_one_lock_in_order(key, settings):
    settings.AICORE_CAPACITY_SMOOTHING_SECONDS = 60
    limit(key, requests_per_minute=10, tokens_per_minute=1000)
    grant(key, tokens=100)  # one slot and 100 tokens gone
    results = capacity.acquire_many(key, [(f"call {i}", 200) for i in range(8)])
    # 9 slots are left, but the tokens only for four calls of 200: those four, then every later one waits
    granted, waits = results[:4], results[4:]
    assert all(isinstance(lease, capacity.Lease) and lease.lease_id for lease in granted)
    assert all(isinstance(wait, CapacityWait) and wait.reason == "tokens per minute" for wait in waits)
    assert len({wait.until for wait in waits}) == 1
    holders = set(CapacityLease.objects.exclude(holder="test").values_list("holder", flat=True))
    assert holders == {"call 0", "call 1", "call 2", "call 3"}
    row = CapacityLimit.objects.get()
    assert row.waits == 4 and row.waited_at is not None
    with pytest.raises(CapacityWait):  # what the batch took counts for the next call too
        grant(key, tokens=200)


def test_a_batch_on_an_endpoint_without_limits_holds_nothing(key):
    results = capacity.acquire_many(key, [("a", 10), ("b", 10)])
    assert [(lease.limit_id, lease.lease_id) for lease in results] == [(None, None), (None, None)]
    assert not CapacityLease.objects.exists()


def test_an_endpoint_without_limits_costs_a_call_no_query_once_known(
    key, settings, fake_llm, django_assert_num_queries
):
    """A call to an endpoint that has no limit (configured or learned) asks the database nothing past the
    per-process memo's first look: no lease, no row, no count, nor anything learned from an answer whose
    headers state no limit (a real answer of the fake server through the SDK)."""
    settings.AICORE_CAPACITY_CACHE_SECONDS = 60
    client = OpenAIClient(api_key="sk-test", base_url=fake_llm.openai_base_url, guarded=False)
    request = ChatRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": "capacity"}], max_tokens=8)
    grant(key)  # the memo's first look: no row
    for _ in range(3):
        result = client.chat(request, on_progress=lambda percent: None, should_stop=lambda: False)
        with django_assert_num_queries(0):
            lease = grant(key)
            capacity.release(
                lease, tokens=result.input_tokens + result.output_tokens, headers=result.headers, status=200
            )
        assert lease.lease_id is None and lease.limit_id is None
    assert not CapacityLimit.objects.exists() and not CapacityLease.objects.exists()
