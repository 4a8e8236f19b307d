"""Live job events over SSE, served by the real ASGI app: order, progress, Last-Event-ID resume, isolation."""

import contextlib
import io
import queue
import socket
import threading

import httpx
import pytest
from django.core.management import call_command
from rest_framework_simplejwt.tokens import RefreshToken

from ai_core import services
from aicore.sse import parse_sse
from business.models import Membership

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("job_types")]


def _headers(user, brand=None, **extra):
    headers = {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}", **extra}
    if brand is not None:
        headers["X-Brand-ID"] = str(brand.id)
    return headers


def _submit(personas, brand=None, user=None):
    job, _ = services.job_create(
        brand=brand or personas.brand_a,
        user=user or personas.alice,
        job_type="chat_completion",
        input_data={"messages": [{"role": "user", "content": "hi"}]},
    )
    return job


class Follower:
    """Reads one SSE stream in a thread into a queue; `close()` hangs up like a browser tab closing."""

    def __init__(self, url, headers):
        self.events: queue.Queue = queue.Queue()
        self.client = httpx.Client(timeout=httpx.Timeout(20.0))
        self.response = self.client.send(self.client.build_request("GET", url, headers=headers), stream=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for event in parse_sse(self.response.iter_lines()):
                self.events.put(event)
        except (httpx.HTTPError, AttributeError, ValueError):  # closed under our feet by close()
            pass

    def next(self, kind: str):
        """The next event of `kind` (others are skipped); fails the test if none arrives in 15 s."""
        while True:
            item = self.events.get(timeout=15)
            if item.event == kind:
                return item

    def close(self):
        # Shut the socket down first: that wakes the reader blocked in recv(), which close() alone does not.
        sock = self.response.extensions["network_stream"].get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self.client.close()
        self.thread.join(10)


@pytest.fixture
def follow():
    followers = []

    def open_stream(url, headers):
        follower = Follower(url, headers)
        assert follower.response.status_code == 200
        followers.append(follower)
        return follower

    yield open_stream
    for follower in followers:
        follower.close()


def test_job_stream_sends_transitions_in_order_with_progress_and_ends(live_asgi, personas, follow):
    job = _submit(personas)
    stream = follow(f"{live_asgi}/ai/jobs/{job.job_id}/events/", _headers(personas.alice))

    created = stream.next("status")
    assert (created.data["job_id"], created.data["from_status"], created.data["to_status"]) == (
        job.job_id,
        "",
        "pending",
    )
    started = services.job_start(job_pk=job.pk)
    running = stream.next("status")
    assert running.data["to_status"] == "running" and running.id > created.id
    services.job_progress(job_pk=job.pk, attempt=started.attempt, percentage=40)
    progress = stream.next("progress")
    while progress.data["progress_percentage"] != 40:
        progress = stream.next("progress")
    services.job_complete(job_pk=job.pk, attempt=started.attempt, result_data={"completion": "hi"})
    completed = stream.next("status")
    assert completed.data["to_status"] == "completed" and completed.id > running.id
    assert stream.next("end").data["job_id"] == job.job_id
    stream.thread.join(10)
    assert not stream.thread.is_alive()  # the server ended the stream after the final state


def test_last_event_id_resumes_after_that_event(live_asgi, personas):
    job = _submit(personas)
    started = services.job_start(job_pk=job.pk)
    services.job_complete(job_pk=job.pk, attempt=started.attempt, result_data={})
    url = f"{live_asgi}/ai/jobs/{job.pk}/events/"
    with httpx.stream("GET", url, headers=_headers(personas.alice), timeout=20) as response:
        everything = [e for e in parse_sse(response.iter_lines())]
    statuses = [e for e in everything if e.event == "status"]
    assert [e.data["to_status"] for e in statuses] == ["pending", "running", "completed"]
    assert everything[-1].event == "end"

    resume = _headers(personas.alice, **{"Last-Event-ID": str(statuses[0].id)})
    with httpx.stream("GET", url, headers=resume, timeout=20) as response:
        rest = [e for e in parse_sse(response.iter_lines()) if e.event == "status"]
    assert [(e.id, e.data["to_status"]) for e in rest] == [(e.id, e.data["to_status"]) for e in statuses[1:]]


def test_brand_stream_resumes_and_never_shows_another_brands_jobs(live_asgi, personas, follow):
    before = _submit(personas)  # brand A activity that happened before the stream opened
    stream = follow(f"{live_asgi}/ai/jobs/events/?last_event_id=0", _headers(personas.bob, personas.brand_b))
    other = _submit(personas)  # brand A again, while bob watches brand B
    services.job_start(job_pk=other.pk)
    mine = _submit(personas, brand=personas.brand_b, user=personas.bob)
    services.job_cancel(job_pk=mine.pk, actor=personas.bob)

    first, second = stream.next("status"), stream.next("status")
    assert [(e.data["job_id"], e.data["to_status"]) for e in (first, second)] == [
        (mine.job_id, "pending"),
        (mine.job_id, "cancelled"),
    ]
    assert before.job_id not in {first.data["job_id"], second.data["job_id"]}

    # The brand stream of A, resumed after A's first event, replays A's later transitions in order.
    first_a = before.events.order_by("id").first()
    url = f"{live_asgi}/ai/jobs/events/?last_event_id={first_a.id}"
    stream_a = follow(url, _headers(personas.alice))
    replay = [stream_a.next("status") for _ in range(2)]
    assert [(e.data["job_id"], e.data["to_status"]) for e in replay] == [
        (other.job_id, "pending"),
        (other.job_id, "running"),
    ]


def test_streams_are_scoped_like_the_rest_api(live_asgi, personas):
    job = _submit(personas)
    url = f"{live_asgi}/ai/jobs/{job.job_id}/events/"
    assert httpx.get(url, headers=_headers(personas.bob), timeout=10).status_code == 404
    assert httpx.get(url, headers=_headers(personas.carol), timeout=10).status_code == 404
    denied = httpx.get(f"{live_asgi}/ai/jobs/events/", headers=_headers(personas.bob, personas.brand_a), timeout=10)
    assert (denied.status_code, denied.json()["error_code"]) == (403, "BRAND_ACCESS_DENIED")
    anonymous = httpx.get(url, timeout=10)
    assert (anonymous.status_code, anonymous.json()["error_code"]) == (401, "NOT_AUTHENTICATED")
    bad_token = httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert bad_token.status_code == 401


def _deactivate(personas):
    personas.alice.is_active = False
    personas.alice.save()


def _remove_membership(personas):
    Membership.objects.filter(user=personas.alice, brand=personas.brand_a).delete()


def _change_password(personas):
    call_command("aicore_user", "alice", "--password", "alice-new-pass-2", stdout=io.StringIO())


@pytest.mark.parametrize("revoke", [_deactivate, _remove_membership, _change_password])
@pytest.mark.parametrize("stream_of", ["brand", "job"])
def test_revoked_access_ends_an_open_stream_at_the_next_poll(live_asgi, personas, follow, revoke, stream_of):
    job = _submit(personas)
    path = "/ai/jobs/events/?last_event_id=0" if stream_of == "brand" else f"/ai/jobs/{job.job_id}/events/"
    stream = follow(f"{live_asgi}{path}", _headers(personas.alice, personas.brand_a))
    assert stream.next("status").data["job_id"] == job.job_id  # delivering

    revoke(personas)
    services.job_start(job_pk=job.pk)  # activity she must no longer see

    ended = stream.next("error")  # well before the stream's 300 s lifetime
    assert ended.data["error_code"] == "ACCESS_REVOKED"
    stream.thread.join(10)
    assert not stream.thread.is_alive()  # the server closed the stream
    delivered = []
    while not stream.events.empty():
        delivered.append(stream.events.get())
    assert [e for e in delivered if e.event == "status"] == []
    again = httpx.get(f"{live_asgi}{path}", headers=_headers(personas.alice, personas.brand_a), timeout=10)
    assert again.status_code in (401, 403)
