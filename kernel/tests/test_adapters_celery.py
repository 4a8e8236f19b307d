"""kernel/adapters/celery.py pinned to Celery: a message its publisher builds is the one `send_task` publishes, byte
for byte but for its id — on the default queue and on a routed one. A Celery upgrade that changes the protocol-2
headers, the body layout, `amqp.as_task_v2`, `amqp.router.route` or how `send_task_message` picks exchange and
routing key fails here (kombu's in-memory transport: no broker, no database)."""

import itertools

import pytest
from celery import Celery

from kernel.adapters.celery import OneIntTaskPublisher

_names = itertools.count()


def _task(number):
    return number


@pytest.fixture
def app():
    """An app of its own on kombu's memory transport (queues named per test: the transport's state is global)."""
    n = next(_names)
    app = Celery(f"pin{n}", broker="memory://", set_as_current=False)
    app.conf.task_default_queue = f"pin-default-{n}"
    app.conf.task_routes = {"pin.routed": {"queue": f"pin-routed-{n}"}}
    app.task(name="pin.wake", ignore_result=True)(_task)
    app.task(name="pin.routed", ignore_result=True)(_task)
    return app


def take(app, queue_name: str, count: int) -> list:
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(queue_name)
        try:
            messages = [queue.get(timeout=5) for _ in range(count)]
            for message in messages:
                message.ack()
        finally:
            queue.close()
    return messages


def comparable(message) -> dict:
    ids = {"id", "root_id", "argsrepr"}
    per_message = {"correlation_id", "delivery_tag", "application_headers", "body_encoding"}
    return {
        "headers": {k: v for k, v in message.headers.items() if k not in ids},
        "properties": {k: v for k, v in message.properties.items() if k not in per_message},
        "delivery_info": {k: message.delivery_info.get(k) for k in ("exchange", "routing_key")},
        "content": (message.content_type, message.content_encoding),
    }


def body(message) -> bytes:
    return message.body if isinstance(message.body, bytes) else message.body.encode()


@pytest.mark.parametrize("task_name, queue_of", [("pin.wake", "pin-default-"), ("pin.routed", "pin-routed-")])
def test_a_published_message_is_the_one_send_task_publishes(app, task_name, queue_of):
    app.send_task(task_name, args=[41])
    publisher = OneIntTaskPublisher(app, task_name)
    assert publisher.usable()
    publisher.publish(42)
    queue_name = app.amqp.router.route({}, task_name, [0], {}, app.tasks.get(task_name))["queue"].name
    assert queue_name.startswith(queue_of)
    celerys, ours = take(app, queue_name, 2)

    assert comparable(ours) == comparable(celerys)
    assert body(ours).replace(b"[[42]", b"[[41]") == body(celerys)
    assert ours.decode() == [[42], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    assert ours.headers["task"] == task_name and ours.headers["argsrepr"] == "[42]"
    assert ours.headers["id"] == ours.headers["root_id"] == ours.properties["correlation_id"] != celerys.headers["id"]
    for producer in publisher._idle:
        producer.connection.release()


def test_the_protocol_2_parts_the_publisher_reuses(app):
    """What `_build` takes from `amqp.as_task_v2`: headers naming the task, and the embed as the body's third part."""
    headers, _properties, (args, kwargs, embed), _event = app.amqp.as_task_v2(
        "", "pin.wake", args=[0], kwargs={}, ignore_result=None
    )
    assert headers["task"] == "pin.wake" and headers["lang"] == "py"
    assert (args, kwargs) == ([0], {})
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
