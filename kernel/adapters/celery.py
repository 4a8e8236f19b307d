"""Celery: a task message published without `send_task`'s per-call work (the only module that builds Celery
protocol-2 messages itself).

Kept for job creation: `send_task` costs ~0.6 ms of CPU more per wake-up than this publisher (docs/PERFORMANCE.md,
"Private framework APIs": the measured gain on the job-creation benchmark, with AICORE_DIRECT_WAKE_UPS=0 as the
public path). What it relies on of Celery — `amqp.router.route`, `amqp.as_task_v2`'s headers and embed, the body
layout `[args, kwargs, embed]` and how `send_task_message` picks exchange and routing key — is pinned by
kernel/tests/test_adapters_celery.py: a message published here must be the one `send_task` publishes, byte for
byte but for its id.
"""

import collections
import json
import logging
from typing import NamedTuple

from celery import signals
from kombu import Queue
from kombu.utils.uuid import uuid

logger = logging.getLogger(__name__)


class WakeUpMessage(NamedTuple):
    """What every wake-up shares, and how it is routed."""

    queue: Queue
    headers: dict  # protocol 2; each message sets its own id, root_id and argsrepr
    embed: str  # the body's third part as JSON (callbacks, errbacks, chain, chord: all None)
    options: dict  # exchange, routing key, delivery mode
    keep_idle: int  # producers kept between publishes, at most (the broker pool limit)
    send_sent_event: bool  # task_send_sent_event: send_task then also publishes a task-sent event


class OneIntTaskPublisher:
    """Publishes `task(<one int>)` messages without Celery's per-call machinery (`send_task`).

    `app.send_task` re-reads configuration, routes, builds the message, acquires a pooled producer and
    re-checks declarations on every call: most of the CPU of a job creation's publish. A wake-up is the same
    message but for its argument and task id, so its parts are made once per process by the app's own helpers
    (`amqp.router`, `amqp.as_task_v2`) and it is published through producers kept here. Each producer has its
    own broker connection (a kombu connection is not shareable between threads) and serves one thread at a
    time: an idle stack keeps as many as ever published at once, up to the broker pool limit.

    A new connection tries as send_task does (task_publish_retry_policy: one quick retry). A kept one may have
    died since its last use (a broker restart): when it fails, it is dropped and the message goes once more
    through a new connection.
    """

    def __init__(self, app, task_name: str) -> None:
        self.app = app
        self.task_name = task_name
        self._idle = collections.deque()  # append and pop are atomic: threads need no lock
        self._message: WakeUpMessage | None = None

    def usable(self) -> bool:
        """Whether this sends what send_task would: nobody listens to publish signals, no task-sent events,
        and not from inside a task (send_task would record it as the message's parent)."""
        message = self._message or self._build()
        return not (
            signals.before_task_publish.receivers
            or signals.after_task_publish.receivers
            or message.send_sent_event
            or self.app.current_worker_task is not None
        )

    def publish(self, number: int) -> None:
        message = self._message or self._build()
        try:
            producer = self._idle.pop()
        except IndexError:
            producer = None
        if producer is not None:
            try:
                self._send(producer, message, number)
            except Exception:
                self._discard(producer)
                logger.info("a kept broker connection failed; publishing %s on a new one", number, exc_info=True)
            else:
                self._keep(producer, message)
                return
        producer = self._connect(message)
        try:
            self._send(producer, message, number)
        except BaseException:
            self._discard(producer)
            raise
        self._keep(producer, message)

    def _send(self, producer, message: WakeUpMessage, number: int) -> None:
        task_id = uuid()
        args = f"[{int(number)}]"  # what json.dumps and repr make of [number]
        producer.publish(
            f"[{args}, {{}}, {message.embed}]",  # protocol 2: args, kwargs, embed
            content_type="application/json",
            content_encoding="utf-8",
            headers={**message.headers, "id": task_id, "root_id": task_id, "argsrepr": args},
            correlation_id=task_id,
            reply_to=self.app.thread_oid,
            **message.options,
        )

    def _build(self) -> WakeUpMessage:
        """The parts every wake-up shares, made as send_task makes them (a test compares the two)."""
        app, amqp = self.app, self.app.amqp
        route = amqp.router.route({}, self.task_name, [0], {}, app.tasks.get(self.task_name))
        queue = route.get("queue") or amqp.default_queue
        if isinstance(queue, str):
            queue = amqp.queues[queue]
        exchange, routing_key = route.get("exchange"), route.get("routing_key")
        # celery.app.amqp's send_task_message: a direct queue is reached through the default exchange
        if (not exchange or not routing_key) and queue.exchange.type == "direct":
            exchange, routing_key = "", queue.name
        else:
            exchange = exchange or queue.exchange.name or amqp.default_exchange
            routing_key = routing_key or queue.routing_key or app.conf.task_default_routing_key
        headers, _properties, (_args, _kwargs, embed), _event = amqp.as_task_v2(
            "", self.task_name, args=[0], kwargs={}, ignore_result=None
        )
        self._message = WakeUpMessage(
            queue=queue,
            headers=headers,
            embed=json.dumps(embed),
            options={
                "exchange": exchange,
                "routing_key": routing_key,
                "delivery_mode": queue.exchange.delivery_mode or app.conf.task_default_delivery_mode,
            },
            keep_idle=app.conf.broker_pool_limit or 1,
            send_sent_event=bool(app.conf.task_send_sent_event),
        )
        return self._message

    def _connect(self, message: WakeUpMessage):
        connection = self.app.connection_for_write(transport_options=self.app.conf.task_publish_retry_policy)
        try:
            producer = self.app.amqp.Producer(connection, auto_declare=False)
            producer.maybe_declare(message.queue)  # once per connection, as send_task's declare=[queue] does
        except BaseException:
            connection.release()
            raise
        return producer

    def _keep(self, producer, message: WakeUpMessage) -> None:
        if len(self._idle) < message.keep_idle:
            self._idle.append(producer)
        else:
            self._discard(producer)

    @staticmethod
    def _discard(producer) -> None:
        try:
            producer.connection.release()
        except Exception:  # a broken connection may fail to close; it is dropped either way
            logger.debug("could not close a broker connection", exc_info=True)
