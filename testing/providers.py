"""Fixtures shared by the provider, OpenAI and usage tests (imported by each app's tests/conftest.py)."""

import gc
import warnings

import pytest

from testing.fake_llm import FakeLLM


@pytest.fixture(scope="session")
def fake_llm():
    with FakeLLM() as server:
        yield server
        _drop_clients()


def _drop_clients() -> None:
    """SDK clients built by the tests (and the engine's cached ones) keep keep-alive sockets to the fake server
    until they are collected. Collect them here, quietly, while the server still runs: otherwise pytest's last
    garbage collection finds them and turns their ResourceWarning into an error of the whole session."""
    from ai_providers.clients.anthropic_client import anthropic_client
    from ai_providers.clients.openai_client import openai_client

    openai_client.cache_clear()
    anthropic_client.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def catalogue(db):
    """The provider catalogue, again: a transactional test's flush removes what the data migration loaded."""
    from ai_providers.catalogue_defaults import load_catalogue
    from ai_providers.models import ModelPrice, Provider, ProviderModel

    load_catalogue(Provider, ProviderModel, ModelPrice)


@pytest.fixture
def llm_env(settings, fake_llm, catalogue, job_types):
    """The operator's environment points both providers at the local fake server."""
    settings.OPENAI_API_KEY = "sk-env-test-key"
    settings.OPENAI_BASE_URL = fake_llm.openai_base_url
    settings.ANTHROPIC_API_KEY = "sk-ant-env-test-key"
    settings.ANTHROPIC_BASE_URL = fake_llm.base_url
    return fake_llm
