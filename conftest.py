"""Shared fixtures: personas (healthchecks-style alice/bob/charlie) and authenticated API clients."""

import pytest

from testing.personas import Personas, make_client


def pytest_runtest_setup(item):
    from django.db import connection

    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL and a network broker (the PostgreSQL + Redis pass)")


@pytest.fixture
def personas(db):
    return Personas()


@pytest.fixture
def client_for():
    return make_client


@pytest.fixture(scope="session")
def live_asgi(django_db_setup, django_db_blocker):
    """The real ASGI application under uvicorn in a thread (port 83xx): what `make run` serves.

    Tests using it need `transactional_db` so the server's threads see their rows.
    """
    import socket
    import threading
    import time

    import uvicorn
    from django.db import connections

    # Server threads must not keep connections open past a request, or the test database can't be dropped.
    connections.settings["default"]["CONN_MAX_AGE"] = 0
    for port in range(8300, 8400):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
    from config.asgi import application

    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
        proxy_headers=False,  # as `make run`: forwarded headers are business.proxies' to judge
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    with django_db_blocker.unblock():
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(10)
        if connections["default"].vendor == "postgresql":
            # A connection the server's request threads took from the pool may outlive the server; the test
            # database can only be dropped once no other session uses it.
            with connections["default"].cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture
def job_types(db):
    """The default job types, again: a transactional test's flush removes what the data migration loaded."""
    from ai_core.job_type_defaults import DEFAULT_JOB_TYPES
    from ai_core.models import AIJobType

    for spec in DEFAULT_JOB_TYPES:
        AIJobType.objects.update_or_create(name=spec["name"], defaults={**spec, "default_model": "echo-1"})
