import pytest

from testing.providers import catalogue, fake_llm, llm_env  # noqa: F401


def pytest_runtest_setup(item):
    from django.db import connection

    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (the PostgreSQL + Redis pass)")


# The provider Batch API tests' fixtures (test_routing, test_routing_single_jobs).


@pytest.fixture
def batch_settings(settings, fake):
    # The catalogue memo as in production (tests default to none): thousands of jobs read the same model.
    from ai_providers.selectors import catalogue_memo

    catalogue_memo.clear()
    settings.AICORE_CATALOGUE_CACHE_SECONDS = 300
    settings.AICORE_PROVIDER_BATCH_MIN_JOBS = 1
    settings.AICORE_PROVIDER_BATCH_POLL_SECONDS = 0
    settings.AICORE_PROVIDER_BATCH_ON_EXPIRY = "requeue"
    yield
    catalogue_memo.clear()


@pytest.fixture
def alice(personas, client_for, job_types):
    return client_for(personas.alice, personas.brand_a)


@pytest.fixture
def fake(llm_env):  # noqa: F811 (the imported fixture, requested by name)
    """The fake provider account starts each test empty (its server lives for the session)."""
    with llm_env.server.lock:
        llm_env.server.openai_batches.clear()
        llm_env.server.anthropic_batches.clear()
    llm_env.server.hold_batches = False
    yield llm_env
    llm_env.server.hold_batches = False
    from batches import routing

    routing.step_hook = None
