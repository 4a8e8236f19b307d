"""/v1/ through the official `openai` SDK (sync and async) against the live ASGI app, which calls the fake LLM
server through the real provider SDKs. Every call must be a job of the key's brand with the same usage and cost."""

import asyncio
from decimal import Decimal

import httpx
import openai
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from ai_core.models import AIJob
from business.models import ApiKey
from gateway.tests.factories import ChatCompletionFactory, GatewayKeyFactory
from testing.jobs import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


def brand_key(personas, **kwargs) -> str:
    kwargs.setdefault("brand", personas.brand_a)
    kwargs.setdefault("user", personas.adam)
    return GatewayKeyFactory(**kwargs).raw_key


def sdk(gateway, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=30)


def job_seen_by_the_brand(key: str, job_id: str) -> dict:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.get(f"/ai/jobs/{job_id}/")
    assert response.status_code == 200, response.content
    return response.json()


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_chat_completion_is_a_job_with_the_same_usage_and_cost(gateway, personas):
    key = brand_key(personas)
    with sdk(gateway, key) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=user("hello [fake usage=1000,500]"), temperature=0.2, user="u-1"
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Fake: hello [fake usage=1000,500]"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1000, 500)
    job_id = raw.headers["X-AICore-Job-Id"]
    job = AIJob.objects.select_related("usage", "openai_job").get(job_id=job_id)
    assert job.status == "completed" and job.job_type.name == "chat_completion"
    assert job.brand == personas.brand_a and job.created_by == personas.adam
    assert job.api_key == ApiKey.objects.get()
    assert job.openai_job.temperature == 0.2
    seen = job_seen_by_the_brand(key, job_id)
    assert seen["usage"]["input_tokens"] == 1000 and seen["usage"]["output_tokens"] == 500
    assert Decimal(seen["usage"]["total_cost"]) == job.usage.total_cost > 0
    assert [e["to_status"] for e in seen["events"]] == ["pending", "running", "completed"]


def test_a_streamed_completion_passes_text_and_usage_on(gateway, personas):
    key = brand_key(personas)
    with sdk(gateway, key) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=user("stream me [fake chunks=4 usage=40,7]"),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Fake: stream me [fake chunks=4 usage=40,7]"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 4  # passed on piece by piece
    assert chunks[-1].usage.prompt_tokens == 40 and chunks[-1].usage.completion_tokens == 7
    job = AIJob.objects.select_related("usage").get(job_id=chunks[0].id.removeprefix("chatcmpl-"))
    assert job.status == "completed"
    assert (job.usage.input_tokens, job.usage.output_tokens) == (40, 7)
    assert job.usage.total_cost > 0


def test_the_provider_is_asked_for_a_stream_only_when_the_client_streams(gateway, personas, llm_env):
    with sdk(gateway, brand_key(personas)) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=user("whole [marker-w]"))
        list(client.chat.completions.create(model="gpt-4o-mini", messages=user("parts [marker-s]"), stream=True))

    def sent(marker: str) -> dict:
        return next(r["body"] for r in reversed(llm_env.requests) if marker in str(r["body"].get("messages")))

    # A client waiting for the whole answer gets it from one plain provider response: no stream to parse.
    assert not sent("marker-w").get("stream")
    assert sent("marker-s")["stream"] is True


def test_the_async_client_works_too(gateway, personas):
    key = brand_key(personas)

    async def run():
        async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0) as client:
            whole = await client.chat.completions.create(**ChatCompletionFactory(messages=user("hi async")))
            asked = ChatCompletionFactory(messages=user("hi stream"), stream=True)
            stream = await client.chat.completions.create(**asked)
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return whole, "".join(parts)

    whole, streamed = asyncio.run(run())
    assert whole.choices[0].message.content == "Echo: hi async"
    assert streamed == "Echo: hi stream"
    assert AIJob.objects.filter(status="completed", brand=personas.brand_a).count() == 2


def test_tools_and_json_mode(gateway, personas):
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
        }
    ]
    with sdk(gateway, brand_key(personas)) as client:
        called = client.chat.completions.create(
            model="gpt-4o-mini", messages=user("find [fake tool]"), tools=tools, tool_choice="auto"
        )
        streamed = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=user("find [fake tool]"), tools=tools, stream=True
            )
        )
        as_json = client.chat.completions.create(
            model="gpt-4o-mini", messages=user("json please"), response_format={"type": "json_object"}
        )
    call = called.choices[0].message.tool_calls[0]
    assert called.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup" and '"q"' in call.function.arguments
    stream_calls = [tc for c in streamed if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert stream_calls and stream_calls[0].function.name == "lookup"
    assert as_json.choices[0].message.content == '{"answer": "json please"}'


def test_the_gateway_runs_through_the_whole_middleware_under_asgi(gateway, personas, settings):
    """/v1/ takes the middleware run synchronously (config.asgi): the same middleware, with the same effects."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    headers = {"Authorization": f"Bearer {brand_key(personas)}"}
    body = {"model": "gpt-4o-mini", "messages": user("hello")}
    answered = httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert answered.status_code == 200, answered.text
    assert answered.headers["X-Frame-Options"] == "DENY"  # XFrameOptionsMiddleware
    assert answered.headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware
    oversized = {**body, "messages": user("x" * 5000)}
    refused = httpx.post(f"{gateway}/v1/chat/completions", json=oversized, headers=headers, timeout=30)
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert AIJob.objects.count() == 1


def test_a_claude_model_goes_through_the_anthropic_client(gateway, personas):
    with sdk(gateway, brand_key(personas)) as client:
        answer = client.chat.completions.create(model="claude-sonnet-4-5", messages=user("bonjour"), max_tokens=50)
    assert answer.choices[0].message.content == "Fake: bonjour"
    assert AIJob.objects.get().usage.provider_name == "anthropic"


def test_models_lists_what_the_brand_may_use(gateway, personas, settings):
    with sdk(gateway, brand_key(personas)) as client:
        ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "echo-1", "claude-sonnet-4-5"} <= ids
    settings.OPENAI_API_KEY = ""  # no key for OpenAI any more: its models are not offered
    with sdk(gateway, brand_key(personas)) as client:
        ids = {m.id for m in client.models.list()}
    assert "echo-1" in ids and "gpt-4o-mini" not in ids


def test_errors_map_to_the_sdk_exception_classes(gateway, personas):
    with sdk(gateway, "aic_" + "x" * 43) as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="echo-1", messages=user("hi"))
    with sdk(gateway, brand_key(personas, scopes=["jobs:read"])) as client, pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="echo-1", messages=user("hi"))
    key = brand_key(personas)
    with sdk(gateway, key) as client:
        with pytest.raises(openai.NotFoundError) as unknown:
            client.chat.completions.create(model="no-such-model", messages=user("hi"))
        assert unknown.value.body["param"] == "model"
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="echo-1", messages=user("hi"), n=2)
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="echo-1", messages=user("hi"), temperature=9)
        assert bad.value.code == "VALIDATION_ERROR"
    poor = brand_key(personas, monthly_cost_limit=Decimal("0.000001"))
    with sdk(gateway, poor) as client, pytest.raises(openai.RateLimitError) as quota:
        client.chat.completions.create(model="gpt-4o-mini", messages=user("hi"))
    assert quota.value.code == "QUOTA_EXCEEDED"
    assert not AIJob.objects.exists()  # nothing stored for a refused call
    ApiKey.objects.filter(prefix=key[4:12]).update(revoked_at=timezone.now())
    with sdk(gateway, key) as client, pytest.raises(openai.AuthenticationError):
        client.models.list()


@pytest.mark.parametrize(
    "body, code",
    [
        ('{"model": "echo-1", "messages": [{"role": "user", "content": "\\ud800"}]}', "INVALID_UNICODE"),
        ('{"model": "echo-1", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "MALFORMED_JSON"),
        ("[" * 200 + "]" * 200, "MALFORMED_JSON"),
    ],
)
def test_a_body_no_database_can_store_is_a_400_and_no_job(personas, llm_env, body, code):
    # Read as every JSON body of the hub is: a lone surrogate would be a 500 from PostgreSQL's jsonb.
    key = brand_key(personas)
    response = APIClient().post(
        "/v1/chat/completions", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code
    assert not AIJob.objects.exists()


def test_an_idempotency_key_returns_the_same_job(gateway, personas):
    with sdk(gateway, brand_key(personas)) as client:
        first, second = (
            client.chat.completions.with_raw_response.create(
                model="echo-1", messages=user("once"), extra_headers={"Idempotency-Key": "k-1"}
            )
            for _ in range(2)
        )
    assert first.headers["X-AICore-Job-Id"] == second.headers["X-AICore-Job-Id"]
    assert second.parse().choices[0].message.content == "Echo: once"
    assert AIJob.objects.count() == 1


def test_another_brands_key_sees_none_of_it(gateway, personas):
    with sdk(gateway, brand_key(personas)) as client:
        job_id = client.chat.completions.with_raw_response.create(model="echo-1", messages=user("mine")).headers[
            "X-AICore-Job-Id"
        ]
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {brand_key(personas, brand=personas.brand_b, user=personas.bob)}")
    assert other.get(f"/ai/jobs/{job_id}/").status_code == 404
    assert other.get("/ai/jobs/").json()["count"] == 0


@pytest.mark.parametrize("background", [False, True])
def test_a_client_that_hangs_up_cancels_its_job_unless_background(gateway, personas, background):
    headers = {"Authorization": f"Bearer {brand_key(personas)}"}
    if background:
        headers["X-AICore-Background"] = "true"
    body = {"model": "gpt-4o-mini", "stream": True, "messages": user("long [fake chunks=40 delay=0.1]")}
    with httpx.Client(timeout=20) as http:
        with http.stream("POST", f"{gateway}/v1/chat/completions", json=body, headers=headers) as response:
            job_id = response.headers["X-AICore-Job-Id"]
            lines = response.iter_lines()
            assert next(line for line in lines if '"content":"Fake' in line or '"content":"F' in line)
    expected = "completed" if background else "cancelled"
    wait_for(lambda: AIJob.objects.get(job_id=job_id).status == expected, timeout=15, what=f"the job {expected}")
    job = AIJob.objects.select_related("usage").get(job_id=job_id)
    # Charged for what was generated: all of it in the background, the part streamed before the hang-up else.
    assert job.usage.final_status == expected and 0 < job.usage.output_tokens
    assert job.usage.total_cost > 0
    full = len("Fake: long [fake chunks=40 delay=0.1]") // 4
    assert (job.usage.output_tokens >= full) if background else (job.usage.output_tokens < full)


def test_embeddings_are_jobs_priced_per_token(gateway, personas):
    key = brand_key(personas)
    with sdk(gateway, key) as client:
        echo = client.embeddings.create(model="echo-embed-1", input=["a cat", "a dog", "a cat"])
        floats = client.embeddings.create(model="echo-embed-1", input="a cat", encoding_format="float", dimensions=4)
        text = "embed me " * 50  # 450 characters: 113 tokens, $0.000002 at $0.02 per million
        real = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=text)
    vectors = [item.embedding for item in echo.data]
    assert len(vectors) == 3 and len(vectors[0]) == 16
    assert vectors[0] == pytest.approx(vectors[2]) and vectors[0] != vectors[1]  # deterministic, per text
    assert len(floats.data[0].embedding) == 4
    answer = real.parse()
    assert answer.data[0].embedding == pytest.approx([4.5 + k / 100 for k in range(8)])  # the fake server's vector
    job = AIJob.objects.select_related("usage", "job_type").get(job_id=real.headers["X-AICore-Job-Id"])
    assert job.job_type.name == "embedding" and job.status == "completed"
    assert job.usage.input_tokens == answer.usage.prompt_tokens == 113
    assert job.usage.output_tokens == 0
    assert job.usage.total_cost == job.usage.input_cost == Decimal("0.000002")
    with sdk(gateway, key) as client, pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="echo-embed-1", input=[[1, 2, 3]])


def test_a_gateway_call_is_answered_now_whatever_its_job_types_default_window(gateway, personas):
    from ai_core.models import AIJobType
    from ai_core.services import job_type_cache_clear

    AIJobType.objects.filter(name="chat_completion").update(default_completion_window="24h")
    job_type_cache_clear()
    try:
        with sdk(gateway, brand_key(personas)) as client:
            raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=user("now please"))
        assert raw.parse().choices[0].message.content == "Fake: now please"
        job = AIJob.objects.select_related("usage").get(job_id=raw.headers["X-AICore-Job-Id"])
        assert job.status == "completed" and not hasattr(job, "batch_link")
    finally:
        AIJobType.objects.filter(name="chat_completion").update(default_completion_window="now")
        job_type_cache_clear()
