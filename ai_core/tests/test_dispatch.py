"""ai_core.dispatch on the broker of the pass (embedded SQLAlchemy broker, or Redis): a lean wake-up is the
message send_task would have sent, from any thread, and a dead kept connection is replaced."""

import threading

import pytest
from celery import Celery, signals
from kombu.exceptions import OperationalError

from ai_core import dispatch
from ai_core.dispatch import RUN_JOB_TASK, WakeUps, publish_job
from config.celery_app import app
from testing.workers import purge_broker

pytestmark = pytest.mark.slow  # a real broker; no worker consumes these (the module starts none)


@pytest.fixture
def broker():
    purge_broker()
    yield
    purge_broker()


def take(count: int) -> list:
    """The next `count` messages of the default queue, raw, acknowledged."""
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(app.conf.task_default_queue)
        try:
            messages = [queue.get(timeout=10) for _ in range(count)]
            for message in messages:
                message.ack()
        finally:
            queue.close()
    return messages


def without_ids(message) -> dict:
    ids = {"id", "root_id", "argsrepr"}
    per_message = {"correlation_id", "delivery_tag", "application_headers"}  # AMQP repeats the headers here
    properties = {k: v for k, v in message.properties.items() if k not in per_message}
    return {
        "headers": {k: v for k, v in message.headers.items() if k not in ids},
        "properties": properties,
        "delivery_info": {k: message.delivery_info.get(k) for k in ("exchange", "routing_key")},
        "content": (message.content_type, message.content_encoding),
    }


def body_of(message) -> bytes:
    return message.body if isinstance(message.body, bytes) else message.body.encode()  # py-amqp gives str


def test_a_wake_up_is_the_message_send_task_sends(broker):
    app.send_task(RUN_JOB_TASK, args=[41])
    publish_job(42)
    celerys, ours = take(2)

    assert without_ids(ours) == without_ids(celerys)
    assert ours.decode() == [[42], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    assert body_of(ours).replace(b"[[42]", b"[[41]") == body_of(celerys)  # the same bytes
    assert ours.decode()[2] == celerys.decode()[2]
    assert ours.headers["task"] == RUN_JOB_TASK and ours.headers["argsrepr"] == "[42]"
    assert ours.headers["id"] == ours.headers["root_id"] == ours.properties["correlation_id"]
    assert ours.headers["id"] != celerys.headers["id"]


def test_wake_ups_from_many_threads_all_arrive_once(broker):
    wake_ups = WakeUps(app)
    pks = list(range(1, 201))

    def publish(share):
        for pk in share:
            wake_ups.publish(pk)

    threads = [threading.Thread(target=publish, args=(pks[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    messages = take(len(pks))
    assert sorted(m.decode()[0][0] for m in messages) == pks
    assert len({m.headers["id"] for m in messages}) == len(pks)
    assert 1 <= len(wake_ups._idle) <= app.conf.broker_pool_limit  # connections are reused, and bounded
    for producer in wake_ups._idle:
        producer.connection.release()


def test_a_kept_connection_that_fails_is_dropped_and_the_wake_up_goes_through_a_new_one(broker):
    wake_ups = WakeUps(app)
    wake_ups.publish(1)
    (stale,) = wake_ups._idle

    def broken(*args, **kwargs):
        raise ConnectionError("the broker restarted")

    stale.publish = broken
    wake_ups.publish(2)

    assert [m.decode()[0] for m in take(2)] == [[1], [2]]
    (fresh,) = wake_ups._idle
    assert fresh is not stale
    fresh.connection.release()


def test_publishing_never_raises_when_the_broker_is_unreachable(monkeypatch, caplog):
    unreachable = Celery("unreachable", set_as_current=False)
    unreachable.config_from_object("django.conf:settings", namespace="CELERY")
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    unreachable.conf.broker_url = unreachable.conf.broker_read_url = unreachable.conf.broker_write_url = url
    with pytest.raises(OperationalError):
        WakeUps(unreachable).publish(6)

    monkeypatch.setattr(dispatch, "_wake_ups", WakeUps(unreachable))
    publish_job(7)
    assert "could not publish job 7" in caplog.text


def test_send_task_still_publishes_when_someone_listens_to_publish_signals(broker, monkeypatch):
    seen = []

    def receiver(sender=None, headers=None, **kwargs):
        seen.append(headers["argsrepr"])

    signals.before_task_publish.connect(receiver)
    try:
        publish_job(5)
    finally:
        signals.before_task_publish.disconnect(receiver)

    assert seen == ["[5]"]
    assert [m.decode()[0] for m in take(1)] == [[5]]
