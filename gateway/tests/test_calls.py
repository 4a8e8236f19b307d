"""Provider capacity through /v1/: a call refused capacity (a configured limit, or the provider's 429) waits for
it in the API process up to its X-AICore-Max-Wait (default 30 s), then answers 429 with Retry-After; the
provider's 429 is never passed through. Against the live ASGI app and the fake server, through the openai SDK."""

import uuid

import httpx
import openai
import pytest

from ai_core.models import AIJob
from ai_providers.models import CapacityLimit
from ai_providers.tests.factories import CapacityLimitFactory
from gateway.tests.test_views import brand_key, sdk, user

pytestmark = [pytest.mark.django_db(transaction=True)]


def limit_to_one_a_minute() -> None:
    CapacityLimitFactory(model="gpt-4o-mini", requests_per_minute=1)


def test_a_429_from_the_provider_is_waited_out_within_the_bound(gateway, personas):
    directive = f"[fake status=429 times=1 key={uuid.uuid4().hex} retry_after=1]"
    with sdk(gateway, brand_key(personas)) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=user(f"hello {directive}"), extra_headers={"X-AICore-Max-Wait": "20"}
        )
    assert raw.parse().choices[0].message.content.startswith("Fake: hello")
    job = AIJob.objects.get(job_id=raw.headers["X-AICore-Job-Id"])
    assert job.status == "completed" and job.attempts == 1  # the same attempt, run again once the wait was over
    assert CapacityLimit.objects.get(model="gpt-4o-mini").rate_limited == 1


def test_a_call_that_gets_no_capacity_within_its_bound_is_a_429_with_retry_after(gateway, personas):
    limit_to_one_a_minute()
    key = brand_key(personas)
    with sdk(gateway, key) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=user("first"))
        for headers in ({"X-AICore-Max-Wait": "0"}, {}):  # no header: 30 s, still short of the next slot
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(model="gpt-4o-mini", messages=user("second"), extra_headers=headers)
            response = refused.value.response
            assert refused.value.code == "CAPACITY_WAIT_EXCEEDED"
            assert 1 <= int(response.headers["Retry-After"]) <= 60
            job = AIJob.objects.get(job_id=response.headers["X-AICore-Job-Id"])
            assert (job.status, job.error_code) == ("timeout", "CAPACITY_WAIT_EXCEEDED")


def test_a_stream_refused_capacity_is_an_http_429_before_any_chunk(gateway, personas):
    limit_to_one_a_minute()
    with sdk(gateway, brand_key(personas)) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=user("first"))
        with pytest.raises(openai.RateLimitError, match="capacity"):
            list(client.chat.completions.create(model="gpt-4o-mini", messages=user("second"), stream=True))
    assert AIJob.objects.order_by("-pk").values_list("error_code", flat=True)[0] == "CAPACITY_WAIT_EXCEEDED"


def test_bursts_beyond_the_providers_rate_limit_all_succeed(gateway, personas, fake_llm):
    limiter = fake_llm.rate_limit(requests=2, per_seconds=1)
    try:
        with sdk(gateway, brand_key(personas)) as client:
            answers = [
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=user(f"call {n}"), extra_headers={"X-AICore-Max-Wait": "20"}
                )
                for n in range(5)
            ]
    finally:
        fake_llm.server.limiter = None
    assert [a.choices[0].message.content for a in answers] == [f"Fake: call {n}" for n in range(5)]
    assert limiter.served == 5
    limit = CapacityLimit.objects.get(model="gpt-4o-mini")
    assert limit.waits + limit.rate_limited >= 1  # 5 calls at 2 a second: some had to wait
    assert AIJob.objects.filter(status="completed").count() == 5


@pytest.mark.parametrize("value", ["301", "-1", "soon", "nan", "inf"])
def test_a_max_wait_out_of_bounds_is_a_400_and_no_job(gateway, personas, value):
    headers = {"Authorization": f"Bearer {brand_key(personas)}", "X-AICore-Max-Wait": value}
    body = {"model": "gpt-4o-mini", "messages": user("hello")}
    refused = httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "INVALID_MAX_WAIT"
    assert refused.json()["error"]["param"] == "X-AICore-Max-Wait"
    assert not AIJob.objects.exists()
