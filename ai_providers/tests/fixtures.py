"""Fixtures shared by the provider, OpenAI and usage tests (imported by each app's tests/conftest.py)."""

import pytest

from ai_providers.tests.fake_llm import FakeLLM


@pytest.fixture(scope="session")
def fake_llm():
    with FakeLLM() as server:
        yield server


@pytest.fixture
def llm_env(settings, fake_llm):
    """The operator's environment points both providers at the local fake server."""
    settings.OPENAI_API_KEY = "sk-env-test-key"
    settings.OPENAI_BASE_URL = fake_llm.openai_base_url
    settings.ANTHROPIC_API_KEY = "sk-ant-env-test-key"
    settings.ANTHROPIC_BASE_URL = fake_llm.base_url
    return fake_llm


@pytest.fixture(autouse=True, scope="session")
def fast_password_hasher():
    """The personas hash five passwords per test: with the production hasher that alone takes seconds."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield
