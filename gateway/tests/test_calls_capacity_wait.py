"""A gateway call waiting for provider capacity, through the openai SDK against the live ASGI app and the fake
server: while it waits its job shows what a job waiting in the queue shows (`pending` with `waiting`), cleared
when the call starts; a stream refused capacity within its bound is an HTTP 429 (RateLimitError), not a 200
stream that ends with an error event."""

import json
import socket
import threading
import uuid

import openai
import pytest
from rest_framework.test import APIClient

from ai_core.models import AIJob, AIJobEvent
from gateway.tests.test_calls import limit_to_one_a_minute
from gateway.tests.test_views import brand_key, sdk, user
from testing.jobs import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


def seen(key: str, job_id: str) -> dict:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.get(f"/ai/jobs/{job_id}/")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_waiting_for_capacity_shows_waiting_until_it_starts(gateway, personas, stream):
    key = brand_key(personas)
    directive = f"[fake status=429 times=1 key={uuid.uuid4().hex} retry_after=5]"
    answers = []

    def call():
        with sdk(gateway, key) as client:
            created = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=user(f"hello {directive}"),
                stream=stream,
                extra_headers={"X-AICore-Max-Wait": "30"},
            )
            answers.append("".join(c.choices[0].delta.content or "" for c in created if c.choices) if stream else
                           created.choices[0].message.content)  # fmt: skip

    caller = threading.Thread(target=call)
    caller.start()
    try:
        job = wait_for(
            lambda: AIJob.objects.filter(status="pending", waiting__isnull=False).first(),
            timeout=20,
            what="the call's job shown waiting",
        )
        shown = seen(key, job.job_id)
        assert shown["status"] == "pending"
        assert shown["waiting"]["reason"] == "provider_capacity"
        assert (shown["waiting"]["provider"], shown["waiting"]["model"]) == ("openai", "gpt-4o-mini")
    finally:
        caller.join(60)
    assert answers and answers[0].startswith("Fake: hello")
    done = seen(key, job.job_id)
    assert done["status"] == "completed" and done["waiting"] is None
    job.refresh_from_db()
    assert job.attempts == 1 and job.waiting is None  # the same attempt, claimed again: waiting is not failing
    moves = list(AIJobEvent.objects.filter(job=job).order_by("pk").values_list("to_status", flat=True))
    assert moves[-3:] == ["pending", "running", "completed"]


def test_a_stream_refused_capacity_within_its_bound_is_a_429(gateway, personas):
    limit_to_one_a_minute()
    with sdk(gateway, brand_key(personas)) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=user("first"))
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=user("second"), stream=True, extra_headers={"X-AICore-Max-Wait": "0"}
            )
    response = refused.value.response
    assert response.status_code == 429 and refused.value.code == "CAPACITY_WAIT_EXCEEDED"
    assert response.headers["content-type"].startswith("application/json")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    job = AIJob.objects.get(job_id=response.headers["X-AICore-Job-Id"])
    assert (job.status, job.error_code) == ("timeout", "CAPACITY_WAIT_EXCEEDED")


def test_a_call_cancelled_while_it_waits_for_capacity_stops_waiting(gateway, personas):
    from ai_core.services import job_cancel

    key = brand_key(personas)
    directive = f"[fake status=429 times=1 key={uuid.uuid4().hex} retry_after=60]"
    refused = []

    def call():
        with sdk(gateway, key) as client:
            try:
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=user(f"hello {directive}"), extra_headers={"X-AICore-Max-Wait": "120"}
                )
            except openai.APIStatusError as exc:
                refused.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        job = wait_for(
            lambda: AIJob.objects.filter(status="pending", waiting__isnull=False).first(),
            timeout=20,
            what="the call's job shown waiting",
        )
        job_cancel(job_pk=job.pk, reason="no longer wanted")
    finally:
        caller.join(30)  # well before the provider's 60 s Retry-After
    assert not caller.is_alive()
    assert refused and refused[0].status_code == 409 and refused[0].body["code"] == "JOB_CANCELLED"
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_a_stream_whose_client_hangs_up_while_it_waits_for_capacity_is_cancelled(gateway, personas):
    """The stream has not answered yet (it waits for capacity before its headers): the hang-up is seen all the
    same, and the job ends cancelled well before the provider's Retry-After."""
    directive = f"[fake status=429 times=1 key={uuid.uuid4().hex} retry_after=60]"
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": user(f"hello {directive}")}).encode()
    host, port = gateway.removeprefix("http://").split(":")
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {brand_key(personas)}\r\n"
        f"Content-Type: application/json\r\nX-AICore-Max-Wait: 120\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as client:
        client.sendall(request + body)
        job = wait_for(
            lambda: AIJob.objects.filter(status="pending", waiting__isnull=False).first(),
            timeout=20,
            what="the stream's job shown waiting",
        )
    wait_for(lambda: AIJob.objects.get(pk=job.pk).status == "cancelled", timeout=20, what="the job cancelled")
