"""POST /ai/openai/chat/ parameter rules per model family, and GET /ai/openai/chat/models/."""

import json

import pytest

from ai_openai.models import OpenAIJob
from ai_openai.tests.factories import ChatRequestFactory

pytestmark = pytest.mark.django_db


def post(client, **body):
    return client.post("/ai/openai/chat/", ChatRequestFactory(**body), format="json")


def test_o_series_refuses_temperature_and_max_tokens(personas, client_for, llm_env):
    response = post(client_for(personas.alice, personas.brand_a), model="o3-mini", temperature=0.2, max_tokens=10)
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_FOR_MODEL"
    assert body["invalid_params"] == ["max_tokens", "temperature"] and body["model_family"] == "reasoning"


def test_standard_models_refuse_reasoning_parameters(personas, client_for, llm_env):
    response = post(
        client_for(personas.alice, personas.brand_a),
        model="gpt-4o",
        reasoning_effort="high",
        max_completion_tokens=5,
    )
    assert response.status_code == 400
    assert response.json()["invalid_params"] == ["max_completion_tokens", "reasoning_effort"]


def test_a_valid_request_creates_the_job_and_its_openai_extension(personas, client_for, llm_env):
    response = post(
        client_for(personas.alice, personas.brand_a),
        model="o3-mini",
        reasoning_effort="low",
        max_completion_tokens=64,
        run_async=True,
    )
    assert response.status_code == 202, response.content
    extension = OpenAIJob.objects.get(job__job_id=response.json()["job_id"])
    assert (extension.model, extension.reasoning_effort, extension.max_completion_tokens) == (
        "o3-mini",
        "low",
        64,
    )
    assert extension.temperature is None
    assert extension.job.input_data["max_completion_tokens"] == 64


def test_non_openai_models_and_bad_bodies_are_400(personas, client_for, llm_env):
    alice = client_for(personas.alice, personas.brand_a)
    assert post(alice, model="claude-haiku-4-5").json()["error_code"] == "MODEL_NOT_SUPPORTED"
    assert post(alice, messages=[]).json()["error_code"] == "VALIDATION_ERROR"
    assert post(alice, response_format={"type": "yaml"}).status_code == 400
    assert post(alice, model="gpt-4o", temperature=3).status_code == 400


def test_the_models_list_shows_rules_prices_and_availability(personas, client_for, llm_env, settings):
    settings.OPENAI_API_KEY = ""
    body = client_for(personas.alice, personas.brand_a).get("/ai/openai/chat/models/").json()
    models = {m["name"]: m for m in body["models"]}
    assert models["gpt-4o-mini"]["price"]["input_per_million"] == "0.150000"
    assert models["gpt-4o-mini"]["available"] is False and models["echo-1"]["available"] is True
    assert "reasoning_effort" in models["o3-mini"]["accepted_params"]
    assert "temperature" not in models["o3-mini"]["accepted_params"]
    assert models["o3-mini"]["accepted_params"] == [
        "max_completion_tokens",
        "reasoning_effort",
        "response_format",
        "tools",
    ]
    assert models["gpt-4o-mini"]["accepted_params"] == [
        "temperature",
        "top_p",
        "max_tokens",
        "response_format",
        "tools",
    ]
    assert "claude-haiku-4-5" not in models


def test_a_lone_surrogate_in_the_model_or_a_message_is_a_400_and_creates_nothing(personas, client_for, llm_env):
    from ai_core.models import AIJob

    alice = client_for(personas.alice, personas.brand_a)
    for body in (
        {"model": "gpt-4o\ud800", "messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "\udfff"}], "run_async": True},
        {"messages": [{"role": "user", "content": "hi", "n\ud800": 1}], "run_async": True},
    ):
        raw = json.dumps(body)  # the surrogate travels as the escape "\ud800"
        response = alice.generic("POST", "/ai/openai/chat/", raw, content_type="application/json")

        assert response.status_code == 400, response.content
        assert response.json()["error_code"] == "INVALID_UNICODE"
    assert not AIJob.objects.exists() and not OpenAIJob.objects.exists()


@pytest.mark.parametrize("key", ["", "k" * 256, "k" * 1000])
def test_an_idempotency_key_outside_1_to_255_characters_is_a_400_as_on_ai_jobs(personas, client_for, llm_env, key):
    # It was stored truncated on PostgreSQL, and a second request then failed the unique index: a 500.
    from ai_core.models import AIJob

    alice = client_for(personas.alice, personas.brand_a)
    for _ in range(2):
        response = alice.post(
            "/ai/openai/chat/",
            {"messages": [{"role": "user", "content": "hi"}], "run_async": True},
            format="json",
            HTTP_IDEMPOTENCY_KEY=key,
        )

        assert response.status_code == 400, response.content
        assert response.json()["error_code"] == "INVALID_IDEMPOTENCY_KEY"
    assert not AIJob.objects.exists()
