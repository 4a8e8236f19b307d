"""A request that meets a dropped database connection (what a PostgreSQL restart leaves in every process)
answers 503 DATABASE_UNAVAILABLE with Retry-After, never 500, and the next request works.

The API runs as `make run` serves it (uvicorn, its own process) on the test database, with Django's psycopg
pool of one connection (so the second request surely gets the dropped one), and without the pool (under ASGI
each request then gets a connection of its own thread, so it may well never meet a dropped one: 200 or 503,
never 500). The connections are dropped as a restart drops them: pg_terminate_backend, from another
session. The shared PostgreSQL server itself is never restarted.
"""

import subprocess
import sys
import time

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection
from rest_framework_simplejwt.tokens import RefreshToken

from testing.workers import database_url_of_tests, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["pool", "persistent"])
def api_server(request, tmp_path):
    port = free_port(range(8400, 8500))
    env = {
        "PATH": "/usr/bin:/bin",
        "AICORE_ENV": "test",
        "DATABASE_URL": database_url_of_tests(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONWARNINGS": "ignore",
        "SECRET_KEY": settings.SECRET_KEY,  # the server must accept the tokens this test signs
    }
    if request.param == "pool":
        env.update(DB_POOL="1", DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="1")
    else:
        env.update(DB_POOL="0", DB_CONN_MAX_AGE="600")
    argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port), "--log-level", "warning"]
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _answers(url):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
        time.sleep(0.1)
    yield request.param, url
    proc.terminate()
    proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def drop_other_connections() -> int:
    """What a PostgreSQL restart does to every connection of the API process (not to this test's own)."""
    connection.ensure_connection()
    ours = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as separate:
        rows = separate.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
            [ours],
        ).fetchall()
    return len(rows)


def test_a_dropped_database_connection_answers_503_then_the_next_request_works(api_server, personas):
    mode, url = api_server
    headers = {
        "Authorization": f"Bearer {RefreshToken.for_user(personas.alice).access_token}",
        "X-Brand-ID": str(personas.brand_a.pk),
    }
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        assert client.get("/ai/jobs/").status_code == 200  # the server now holds a database connection
        assert drop_other_connections() >= 1

        failed = client.get("/ai/jobs/")
        if mode == "pool" or failed.status_code != 200:
            assert failed.status_code == 503, failed.text
            assert failed.json()["error_code"] == "DATABASE_UNAVAILABLE"
            assert int(failed.headers["Retry-After"]) > 0

        again = client.get("/ai/jobs/")
        assert again.status_code == 200, again.text  # the broken connection was discarded, not reused
        assert client.get("/ai/jobs/").status_code == 200
