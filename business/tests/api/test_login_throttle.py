"""Failed-login throttling under parallel attempts, and the client IP it counts (trusted proxies only)."""

import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from business.models import LoginFailure
from business.proxies import client_ip
from testing.workers import database_url_of_tests


def login(username, password, **meta):
    return APIClient().post("/auth/login/", {"username": username, "password": password}, format="json", **meta)


@pytest.mark.django_db(transaction=True)
def test_thirty_parallel_wrong_passwords_evaluate_exactly_the_limit(personas):
    attempts = 30
    start = threading.Barrier(attempts)
    statuses = []

    def guess(n):
        start.wait()
        try:
            statuses.append(login("alice", f"wrong-{n}", REMOTE_ADDR=f"10.3.0.{n}").status_code)
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    limit = settings.LOGIN_FAILURES_PER_USERNAME
    assert sorted(statuses) == [401] * limit + [429] * (attempts - limit)
    assert LoginFailure.objects.filter(username="alice").count() == limit
    assert login("alice", "alice-pass-1", REMOTE_ADDR="10.3.1.1").status_code == 429  # the right one waits too


def test_a_successful_login_leaves_no_failure_behind(personas):
    assert login("alice", "alice-pass-1", REMOTE_ADDR="10.4.0.1").status_code == 200
    assert login("alice", "wrong", REMOTE_ADDR="10.4.0.1").status_code == 401
    assert list(LoginFailure.objects.values_list("username", "ip")) == [("alice", "10.4.0.1")]


@pytest.fixture
def behind_proxy(settings):
    settings.AICORE_TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::1")]


@pytest.mark.parametrize(
    "peer,forwarded,client",
    [
        ("203.0.113.7", None, "203.0.113.7"),
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # not a trusted proxy: the header is the client's claim
        ("10.0.0.5", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.5", "1.1.1.1, 198.51.100.1, 10.0.0.9", "198.51.100.1"),  # the nearest hop that is no proxy
        ("10.0.0.5", "foo", "10.0.0.5"),  # not an address: ignored
        ("10.0.0.5", "1.1.1.1, foo", "10.0.0.5"),
        ("10.0.0.5", "foo, 198.51.100.1", "198.51.100.1"),  # junk a client put first changes nothing
        ("10.0.0.5", "10.0.0.7, 10.0.0.9", "10.0.0.7"),
        ("fd00::1", "2001:db8::5", "2001:db8::5"),
        ("::ffff:10.0.0.5", "198.51.100.1", "198.51.100.1"),
        ("foo", "198.51.100.1", None),
        ("", None, None),
    ],
)
def test_the_client_ip_comes_from_x_forwarded_for_only_through_a_trusted_proxy(behind_proxy, peer, forwarded, client):
    meta = {"REMOTE_ADDR": peer, **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {})}
    assert client_ip(meta) == client


def test_a_forged_x_forwarded_for_does_not_escape_the_per_ip_limit(personas):
    for attempt in range(settings.LOGIN_FAILURES_PER_IP):
        forged = {"HTTP_X_FORWARDED_FOR": f"198.51.100.{attempt}"}
        assert login(f"guess{attempt % 4}", "wrong", REMOTE_ADDR="203.0.113.9", **forged).status_code == 401

    assert (
        login("bob", "bob-pass-1", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.99").status_code == 429
    )
    assert set(LoginFailure.objects.values_list("ip", flat=True)) == {"203.0.113.9"}


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(personas, behind_proxy):
    proxy = {"REMOTE_ADDR": "10.0.0.5"}
    for attempt in range(settings.LOGIN_FAILURES_PER_IP):
        assert login(f"guess{attempt % 4}", "wrong", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy).status_code == 401

    assert login("bob", "bob-pass-1", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy).status_code == 429
    assert login("bob", "bob-pass-1", HTTP_X_FORWARDED_FOR="198.51.100.2", **proxy).status_code == 200


def test_a_bad_trusted_proxy_stops_the_boot():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "AICORE_TRUSTED_PROXIES": "10.0.0.1,proxy.lan"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and "AICORE_TRUSTED_PROXIES" in done.stderr and "proxy.lan" in done.stderr


@pytest.mark.django_db(transaction=True)
def test_a_non_ip_x_forwarded_for_on_login_is_ignored_by_the_served_app(live_asgi, personas):
    response = httpx.post(
        f"{live_asgi}/auth/login/",
        json={"username": "alice", "password": "wrong"},
        headers={"X-Forwarded-For": "foo"},
        timeout=10,
    )
    assert (response.status_code, response.json()["error_code"]) == (401, "INVALID_CREDENTIALS")
    assert list(LoginFailure.objects.values_list("ip", flat=True)) == ["127.0.0.1"]


@pytest.fixture
def make_run_api(transactional_db):
    """`manage.py aicore_run --no-worker` (what `make run` serves) on a free port, on the test database."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": database_url_of_tests(), "AICORE_ENV": "test"}
    server = subprocess.Popen(
        [sys.executable, "manage.py", "aicore_run", "--no-worker", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    yield base
    server.terminate()
    server.wait(15)


def test_make_run_does_not_let_uvicorn_trust_forwarded_headers(make_run_api, personas):
    spoofed = {"X-Forwarded-For": "198.51.100.77"}
    response = httpx.post(
        f"{make_run_api}/auth/login/", json={"username": "alice", "password": "wrong"}, headers=spoofed, timeout=10
    )
    assert response.status_code == 401
    assert list(LoginFailure.objects.values_list("ip", flat=True)) == ["127.0.0.1"]
