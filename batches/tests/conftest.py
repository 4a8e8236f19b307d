from ai_providers.tests.fixtures import catalogue, fake_llm, llm_env  # noqa: F401


def pytest_runtest_setup(item):
    import pytest
    from django.db import connection

    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (the PostgreSQL + Redis pass)")
