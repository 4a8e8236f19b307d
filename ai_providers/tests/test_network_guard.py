"""A company's base URL cannot lead AI Core's provider calls elsewhere: no redirect is followed, and the call
connects to the address the guard checked. Loopback only: the operator allows 127.0.0.1, 127.0.0.2 plays the
internal address a tenant must not reach."""

import socket

import pytest

from ai_core.engine.runner import run_from_message
from ai_providers.clients.anthropic_client import AnthropicClient
from ai_providers.clients.base import ChatRequest, PermanentProviderError
from ai_providers.clients.openai_client import OpenAIClient
from ai_providers.tests.factories import ProviderCredentialFactory
from testing.jobs import submit
from testing.loopback import Listener, ScriptedResolver


@pytest.fixture
def only_127_0_0_1(settings):
    settings.AICORE_ALLOW_PRIVATE_PROVIDER_URLS = False
    settings.AICORE_PROVIDER_HOST_ALLOWLIST = ["127.0.0.1"]


@pytest.fixture
def refused():
    with Listener("127.0.0.2") as listener:
        yield listener


def _store_base_url(client, base_url: str) -> int:
    answer = client.post(
        "/ai/providers/credentials/", {"provider": "openai", "api_key": "sk-x", "base_url": base_url}, format="json"
    )
    assert answer.status_code == 201, answer.json()
    return answer.json()["id"]


@pytest.mark.django_db
def test_test_connection_refuses_a_redirect_to_a_refused_address(personas, client_for, only_127_0_0_1, refused):
    admin = client_for(personas.acme_admin, personas.brand_a)
    with Listener("127.0.0.1", redirect_to=refused.url) as redirector:
        pk = _store_base_url(admin, redirector.url + "/v1")
        result = admin.post(f"/ai/providers/credentials/{pk}/test_connection/").json()
    assert result["ok"] is False and result["error_code"] == "PROVIDER_REDIRECT_REFUSED", result
    assert refused.url in result["message"]
    assert [r["path"] for r in redirector.requests] == ["/v1/models"]
    assert refused.requests == []


@pytest.mark.django_db(transaction=True)
def test_a_job_fails_on_a_redirect_and_never_reaches_the_refused_address(
    personas, client_for, only_127_0_0_1, refused, catalogue, job_types
):
    admin = client_for(personas.acme_admin, personas.brand_a)
    # 307 keeps the method and body: a client following it would POST the prompt, and the key, to 127.0.0.2.
    with Listener("127.0.0.1", redirect_to=refused.url, redirect_status=307) as redirector:
        _store_base_url(admin, redirector.url + "/v1")
        job = submit(personas.brand_a, model="gpt-4o-mini")
        assert run_from_message(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error_code == "PROVIDER_REDIRECT_REFUSED" and "307" in job.error_message
    assert job.attempts == 1  # permanent: no retry
    assert [r["path"] for r in redirector.requests] == ["/v1/chat/completions"]
    assert refused.requests == []


@pytest.mark.django_db
def test_test_connection_connects_to_the_address_the_guard_checked(
    personas, client_for, only_127_0_0_1, fake_llm, monkeypatch
):
    """The company's host answers 127.0.0.1 (allowed) first, then 127.0.0.2 (refused) to whoever asks again:
    the call must go where the first answer pointed, the only lookup there is."""
    with Listener("127.0.0.2", fake_llm.port) as rebound:
        resolver = ScriptedResolver("llm.rebind.test", ["127.0.0.1", "127.0.0.2"])
        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        credential = ProviderCredentialFactory(
            company=personas.brand_a.company,
            api_key="sk-x",
            base_url=f"http://llm.rebind.test:{fake_llm.port}/v1",
        )
        result = client_for(personas.acme_admin, personas.brand_a).post(
            f"/ai/providers/credentials/{credential.pk}/test_connection/"
        )
    # 4 models: the fake LLM on 127.0.0.1 answered (the listener on 127.0.0.2 lists none)
    assert result.json()["ok"] is True and result.json()["models"] == 4, result.json()
    assert resolver.lookups == 1 and rebound.requests == []


@pytest.mark.django_db
def test_a_stored_url_whose_host_now_resolves_inside_is_refused_on_connect(
    personas, client_for, only_127_0_0_1, refused, monkeypatch
):
    monkeypatch.setattr(socket, "getaddrinfo", ScriptedResolver("llm.moved.test", ["127.0.0.2"]))
    credential = ProviderCredentialFactory(
        company=personas.brand_a.company,
        api_key="sk-x",
        base_url=f"http://llm.moved.test:{refused.port}/v1",  # saved when it pointed elsewhere
    )
    result = client_for(personas.acme_admin, personas.brand_a).post(
        f"/ai/providers/credentials/{credential.pk}/test_connection/"
    )
    assert result.json()["ok"] is False and result.json()["error_code"] == "PROVIDER_ADDRESS_REFUSED"
    assert "loopback" in result.json()["message"]
    assert refused.requests == []


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("guarded", [True, False])
def test_no_client_follows_a_redirect_not_even_on_the_operators_own_url(kind, guarded, only_127_0_0_1, refused):
    """Both SDKs follow redirects by default; ours never do, whether the base URL is a company's (guarded) or
    the operator's environment one."""
    with Listener("127.0.0.1", redirect_to=refused.url, redirect_status=308) as redirector:
        if kind == "openai":
            client = OpenAIClient(api_key="sk-x", base_url=redirector.url + "/v1", guarded=guarded)
        else:
            client = AnthropicClient(api_key="sk-x", base_url=redirector.url, guarded=guarded)
        with pytest.raises(PermanentProviderError) as raised:
            client.check(timeout_seconds=5)
    assert raised.value.error_code == "PROVIDER_REDIRECT_REFUSED" and raised.value.status_code == 308
    assert len(redirector.requests) == 1 and refused.requests == []


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [True, False])
def test_a_call_to_a_refused_address_is_a_permanent_error_and_sends_nothing(kind, stream, only_127_0_0_1, refused):
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=stream)
    if kind == "openai":
        client = OpenAIClient(api_key="sk-x", base_url=refused.url + "/v1")
    else:
        client = AnthropicClient(api_key="sk-x", base_url=refused.url)
    with pytest.raises(PermanentProviderError) as raised:
        client.chat(request, on_progress=lambda percent: None, should_stop=lambda: False)
    assert raised.value.error_code == "PROVIDER_ADDRESS_REFUSED" and "127.0.0.2" in raised.value.message
    assert refused.requests == []
