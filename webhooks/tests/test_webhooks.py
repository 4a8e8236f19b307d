"""Webhooks end to end: a receiver verifies the signature; 500s are retried; private targets are refused."""

import hashlib
import hmac
import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ai_core import services as jobs
from aicore.webhooks import verify
from business.errors import ApplicationError
from testing.loopback import Listener, ScriptedResolver
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.tasks import deliver
from webhooks.tests.factories import WebhookEndpointFactory

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


class Receiver:
    """A webhook receiver on 127.0.0.1:83xx answering with the given status codes in turn (then 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        for port in range(8399, 8300, -1):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) != 0:
                    break
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}/hooks/aicore"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.AICORE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the operator allows our local receiver
    settings.AICORE_WEBHOOK_RETRY_BASE_SECONDS = 0
    server = Receiver()
    yield server
    server.close()


def _finish_job(personas, django_capture_on_commit_callbacks):
    job, _ = jobs.job_create(brand=personas.brand_a, user=personas.alice, job_type="chat_completion", input_data=CHAT)
    with django_capture_on_commit_callbacks(execute=True):
        started = jobs.job_start(job_pk=job.pk)
        jobs.job_complete(job_pk=job.pk, attempt=started.attempt, result_data={"completion": "hello"})
    return job


def test_final_state_is_delivered_signed_and_logged(personas, client_for, receiver, django_capture_on_commit_callbacks):
    admin = client_for(personas.adam, personas.brand_a)
    created = admin.post("/ai/webhooks/", {"url": receiver.url, "description": "CRM"}, format="json")
    assert created.status_code == 201, created.json()
    secret = created.json()["secret"]
    assert "secret" not in admin.get(f"/ai/webhooks/{created.json()['id']}/").json()
    member = client_for(personas.alice, personas.brand_a)
    assert member.post("/ai/webhooks/", {"url": receiver.url}, format="json").status_code == 403

    job = _finish_job(personas, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    deliver(delivery.pk)

    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    expected = hmac.new(secret.encode(), f"{headers['X-AICore-Timestamp']}.".encode() + body, hashlib.sha256)
    assert headers["X-AICore-Signature"] == "v1=" + expected.hexdigest()
    assert verify(secret, timestamp=headers["X-AICore-Timestamp"], body=body, signature=headers["X-AICore-Signature"])
    assert not verify(
        secret,
        timestamp=headers["X-AICore-Timestamp"],
        body=body + b" ",
        signature=headers["X-AICore-Signature"],
    )
    payload = json.loads(body)
    assert (headers["X-AICore-Event"], payload["event"]) == ("job.completed", "job.completed")
    assert (payload["data"]["job"]["job_id"], payload["data"]["job"]["status"]) == (job.job_id, "completed")
    assert payload["created_at"].endswith("Z") and payload["data"]["job"]["completed_at"].endswith("Z")  # one format

    log = admin.get(f"/ai/webhooks/{created.json()['id']}/deliveries/").json()["results"]
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [("succeeded", 1, 200)]
    assert client_for(personas.bob, personas.brand_b).get(f"/ai/webhooks/{created.json()['id']}/").status_code == 404


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(
    personas, receiver, django_capture_on_commit_callbacks
):
    services.endpoint_create(brand=personas.brand_a, user=personas.adam, url=receiver.url)
    receiver.answers = [500, 503]
    _finish_job(personas, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()

    assert services.delivery_attempt(delivery_id=delivery.pk) is not None  # 500: a retry is scheduled
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert services.delivery_attempt(delivery_id=delivery.pk) is not None  # 503
    assert services.delivery_attempt(delivery_id=delivery.pk) is None  # 200: settled
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 3, 200)
    assert len({r["headers"]["X-AICore-Delivery"] for r in receiver.requests}) == 1
    assert len(receiver.requests) == 3


def test_retries_stop_after_max_attempts_and_backoff_grows(
    personas, receiver, settings, django_capture_on_commit_callbacks
):
    settings.AICORE_WEBHOOK_MAX_ATTEMPTS = 2
    services.endpoint_create(brand=personas.brand_a, user=personas.adam, url=receiver.url)
    receiver.answers = [500, 500, 500]
    _finish_job(personas, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert services.delivery_attempt(delivery_id=delivery.pk) is not None
    assert services.delivery_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert services.delivery_attempt(delivery_id=delivery.pk) is None and len(receiver.requests) == 2

    settings.AICORE_WEBHOOK_RETRY_BASE_SECONDS = 10
    assert 8 <= services.retry_delay(1) <= 12 < 128 <= services.retry_delay(3) <= 192


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8399/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://0.0.0.0/",
        "ftp://example.com/x",
        "http://user:pw@93.184.216.34/",
    ],
)
def test_private_or_odd_targets_are_refused(personas, client_for, url):
    admin = client_for(personas.adam, personas.brand_a)
    answer = admin.post("/ai/webhooks/", {"url": url}, format="json")
    assert answer.status_code == 400
    assert answer.json()["error_code"] in {"UNSAFE_WEBHOOK_URL", "VALIDATION_ERROR"}


def test_a_public_address_is_accepted_but_a_target_that_turned_private_is_never_called(
    personas, client_for, receiver, settings, django_capture_on_commit_callbacks
):
    admin = client_for(personas.adam, personas.brand_a)
    assert admin.post("/ai/webhooks/", {"url": "https://93.184.216.34/hook"}, format="json").status_code == 201
    admin.patch(
        f"/ai/webhooks/{admin.get('/ai/webhooks/').json()['results'][0]['id']}/",
        {"is_active": False},
        format="json",
    )
    services.endpoint_create(brand=personas.brand_a, user=personas.adam, url=receiver.url)
    settings.AICORE_WEBHOOK_ALLOWED_HOSTS = []  # the operator withdrew the permission
    _finish_job(personas, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()  # only the active endpoint gets one
    assert services.delivery_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_error.startswith("UNSAFE_WEBHOOK_URL")
    assert receiver.requests == []


def test_the_sweep_republishes_only_overdue_deliveries(personas, receiver, django_capture_on_commit_callbacks):
    services.endpoint_create(brand=personas.brand_a, user=personas.adam, url=receiver.url)
    _finish_job(personas, django_capture_on_commit_callbacks)
    _finish_job(personas, django_capture_on_commit_callbacks)
    lost, fresh = WebhookDelivery.objects.order_by("id")
    WebhookDelivery.objects.filter(pk=lost.pk).update(next_attempt_at=lost.created_at - timedelta(minutes=5))
    assert services.deliveries_sweep() == 1
    services.delivery_attempt(delivery_id=lost.pk)
    assert services.deliveries_sweep() == 0
    assert WebhookDelivery.objects.get(pk=lost.pk).status == "succeeded"
    assert WebhookDelivery.objects.get(pk=fresh.pk).status == "pending"


def test_a_redirect_is_a_failed_attempt_and_its_target_is_never_called(
    personas, receiver, django_capture_on_commit_callbacks
):
    # 307 keeps the method and body: following it would POST the signed payload to 127.0.0.2, which the
    # operator never allowed (only 127.0.0.1).
    with Listener("127.0.0.2") as refused, Listener("127.0.0.1", redirect_to=refused.url, redirect_status=307) as hop:
        services.endpoint_create(brand=personas.brand_a, user=personas.adam, url=hop.url + "/hook")
        _finish_job(personas, django_capture_on_commit_callbacks)
        delivery = WebhookDelivery.objects.get()
        assert services.delivery_attempt(delivery_id=delivery.pk) is not None  # retried: the receiver may fix it
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("pending", 307)
    assert (
        delivery.last_error == f"WEBHOOK_REDIRECT_REFUSED: HTTP 307 to '{refused.url}/hook'; redirects are not followed"
    )
    assert len(hop.requests) == 1 and refused.requests == []


def test_the_delivery_connects_to_the_address_that_was_checked(
    personas, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    """The brand's host answers 127.0.0.1 (allowed) first, then 127.0.0.2 (refused) to whoever asks again, as a
    rebinding DNS server would: the delivery must go where the checked answer pointed."""
    port = receiver.server.server_address[1]
    with Listener("127.0.0.2", port) as rebound:
        resolver = ScriptedResolver("hooks.rebind.test", ["127.0.0.1", "127.0.0.2"])
        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        WebhookEndpointFactory(brand=personas.brand_a, url=f"http://hooks.rebind.test:{port}/hooks/aicore")
        _finish_job(personas, django_capture_on_commit_callbacks)
        delivery = WebhookDelivery.objects.get()
        assert services.delivery_attempt(delivery_id=delivery.pk) is None
    assert rebound.requests == []  # the refused address never saw the payload
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("succeeded", 200)
    assert resolver.lookups == 1 and len(receiver.requests) == 1
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.rebind.test:{port}"


def test_redeliver_sends_a_failed_deliverys_event_again_as_a_new_logged_delivery(
    personas, receiver, settings, django_capture_on_commit_callbacks
):
    settings.AICORE_WEBHOOK_MAX_ATTEMPTS = 1
    endpoint = services.endpoint_create(brand=personas.brand_a, user=personas.adam, url=receiver.url)
    receiver.answers = [500]
    _finish_job(personas, django_capture_on_commit_callbacks)
    failed = WebhookDelivery.objects.get()
    assert services.delivery_attempt(delivery_id=failed.pk) is None
    failed.refresh_from_db()
    assert (failed.status, failed.last_status_code) == ("failed", 500)

    with django_capture_on_commit_callbacks() as published:
        again = services.delivery_redeliver(delivery=failed)
    assert len(published) == 1  # handed to the worker once committed
    assert services.delivery_attempt(delivery_id=again.pk) is None
    again.refresh_from_db()
    failed.refresh_from_db()
    assert (again.status, again.attempts, again.last_status_code) == ("succeeded", 1, 200)
    assert failed.status == "failed"  # the log keeps the first attempt as it was
    first, second = receiver.requests
    assert json.loads(first["body"]) == json.loads(second["body"]) == failed.payload
    assert second["headers"]["X-AICore-Delivery"] == str(again.pk)

    endpoint.is_active = False
    endpoint.save()
    with pytest.raises(ApplicationError):
        services.delivery_redeliver(delivery=failed)


@pytest.fixture
def endpoints_memo(settings, monkeypatch):
    """The per-process memo of each brand's endpoints on (5 s), with a clock the test moves."""
    from business import memo

    settings.AICORE_WEBHOOK_ENDPOINT_CACHE_SECONDS = 5
    clock = [1000.0]
    monkeypatch.setattr(memo.time, "monotonic", lambda: clock[0])
    services.endpoints_memo.clear()
    yield clock
    services.endpoints_memo.clear()


def _deliveries() -> list[tuple[int, str]]:
    return sorted(WebhookDelivery.objects.values_list("endpoint_id", "job__job_id"))


def test_an_endpoint_created_in_this_process_gets_the_very_next_jobs_end(
    personas, receiver, endpoints_memo, django_capture_on_commit_callbacks
):
    _finish_job(personas, django_capture_on_commit_callbacks)  # the memo now knows brand A has no endpoint
    assert _deliveries() == []
    endpoint = services.endpoint_create(brand=personas.brand_a, user=personas.adam, url=receiver.url)
    job = _finish_job(personas, django_capture_on_commit_callbacks)  # at the same instant: no TTL passed
    assert _deliveries() == [(endpoint.pk, job.job_id)]


def test_an_endpoint_deleted_or_disabled_in_this_process_gets_no_more_deliveries(
    personas, receiver, endpoints_memo, django_capture_on_commit_callbacks
):
    kept = services.endpoint_create(brand=personas.brand_a, user=personas.adam, url=receiver.url)
    deleted = services.endpoint_create(brand=personas.brand_a, user=personas.adam, url=receiver.url)
    first = _finish_job(personas, django_capture_on_commit_callbacks)
    assert _deliveries() == [(kept.pk, first.job_id), (deleted.pk, first.job_id)]
    services.endpoint_delete(endpoint=deleted)
    second = _finish_job(personas, django_capture_on_commit_callbacks)
    # (the deleted endpoint's log went with it)
    assert _deliveries() == sorted([(kept.pk, first.job_id), (kept.pk, second.job_id)])
    services.endpoint_update(endpoint=kept, data={"is_active": False})
    _finish_job(personas, django_capture_on_commit_callbacks)
    assert len(_deliveries()) == 2


def test_an_endpoint_created_in_another_process_is_seen_within_the_ttl(
    personas, receiver, endpoints_memo, django_capture_on_commit_callbacks
):
    _finish_job(personas, django_capture_on_commit_callbacks)  # brand A: no endpoint, remembered for 5 s
    # Another process's creation: no signal reaches this one (bulk_create sends none).
    [endpoint] = WebhookEndpoint.objects.bulk_create([WebhookEndpoint(brand=personas.brand_a, url=receiver.url)])
    endpoints_memo[0] += 4
    _finish_job(personas, django_capture_on_commit_callbacks)
    assert _deliveries() == []  # still within the TTL
    endpoints_memo[0] += 2
    job = _finish_job(personas, django_capture_on_commit_callbacks)
    assert _deliveries() == [(endpoint.pk, job.job_id)]


def test_a_brands_endpoints_are_read_once_per_ttl_not_at_every_jobs_end(
    personas, receiver, endpoints_memo, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from webhooks import statements

    def lookups() -> int:
        with CaptureQueriesContext(connection) as queries:
            _finish_job(personas, django_capture_on_commit_callbacks)
        table = WebhookEndpoint._meta.db_table
        return sum(1 for q in queries if q["sql"].startswith("SELECT id, events FROM") and table in q["sql"])

    assert statements.ENDPOINTS_OF_BRAND.startswith("SELECT id, events FROM")
    assert [lookups(), lookups()] == [1, 0]
    endpoints_memo[0] += 6
    assert lookups() == 1
