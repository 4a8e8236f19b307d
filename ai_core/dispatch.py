"""Waking workers. The job row is the truth: a lost or failed publish only delays a job until the sweeper
re-dispatches it, so publishing never fails a request."""

import collections
import json
import logging
import os
import threading
from typing import NamedTuple

from celery import current_app, signals
from django.db import transaction
from kombu import Queue
from kombu.utils.uuid import uuid

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "ai_core.run_job"


class WakeUpMessage(NamedTuple):
    """What every wake-up shares, and how it is routed."""

    queue: Queue
    headers: dict  # protocol 2; each message sets its own id, root_id and argsrepr
    embed: str  # the body's third part as JSON (callbacks, errbacks, chain, chord: all None)
    options: dict  # exchange, routing key, delivery mode
    keep_idle: int  # producers kept between publishes, at most (the broker pool limit)
    send_sent_event: bool  # task_send_sent_event: send_task then also publishes a task-sent event


class WakeUps:
    """Publishes `run_job(job_pk)` messages without Celery's per-call machinery.

    `app.send_task` re-reads configuration, routes, builds the message, acquires a pooled producer and
    re-checks declarations on every call: most of the CPU of a job creation's publish. A wake-up is the same
    message but for its job pk and task id, so its parts are made once per process by the app's own helpers
    (`amqp.router`, `amqp.as_task_v2`) and it is published through producers kept here. Each producer has its
    own broker connection (a kombu connection is not shareable between threads) and serves one thread at a
    time: an idle stack keeps as many as ever published at once, up to the broker pool limit.

    A new connection tries as send_task does (task_publish_retry_policy: one quick retry). A kept one may have
    died since its last use (a broker restart): when it fails, it is dropped and the message goes once more
    through a new connection.
    """

    def __init__(self, app) -> None:
        self.app = app
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

    def publish(self, job_pk: int) -> None:
        message = self._message or self._build()
        try:
            producer = self._idle.pop()
        except IndexError:
            producer = None
        if producer is not None:
            try:
                self._send(producer, message, job_pk)
            except Exception:
                self._discard(producer)
                logger.info("a kept broker connection failed; publishing job %s on a new one", job_pk, exc_info=True)
            else:
                self._keep(producer, message)
                return
        producer = self._connect(message)
        try:
            self._send(producer, message, job_pk)
        except BaseException:
            self._discard(producer)
            raise
        self._keep(producer, message)

    def _send(self, producer, message: WakeUpMessage, job_pk: int) -> None:
        task_id = uuid()
        args = f"[{int(job_pk)}]"  # what json.dumps and repr make of [job_pk]
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
        route = amqp.router.route({}, RUN_JOB_TASK, [0], {}, app._tasks.get(RUN_JOB_TASK))
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
            "", RUN_JOB_TASK, args=[0], kwargs={}, ignore_result=None
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


_wake_ups: WakeUps | None = None


def _forget_wake_ups() -> None:
    global _wake_ups
    _wake_ups = None  # a forked child must not write on its parent's broker sockets


os.register_at_fork(after_in_child=_forget_wake_ups)


def publish_job(job_pk: int, *, priority: str = "normal", countdown: float | None = None) -> None:
    """Wake a worker now (through WakeUps), or after `countdown` seconds (a retry's backoff, via send_task)."""
    global _wake_ups
    app = current_app  # the project's app (config/celery_app.py makes it the default in every thread)
    try:
        if countdown is None:
            wake_ups = _wake_ups or WakeUps(app)
            _wake_ups = wake_ups
            if wake_ups.usable():
                wake_ups.publish(job_pk)
                return
        app.send_task(RUN_JOB_TASK, args=[job_pk], countdown=countdown)
    except Exception:  # the broker is down or slow: the sweeper will pick the job up later
        logger.warning("could not publish job %s; the sweeper will re-dispatch it", job_pk, exc_info=True)


def dispatch_job_on_commit(job_pk: int, *, priority: str = "normal") -> None:
    """Publish after the surrounding transaction commits, so a worker never sees a job that isn't there."""
    transaction.on_commit(lambda: publish_job(job_pk, priority=priority))


def dispatch_jobs_on_commit(job_pks: list[int]) -> None:
    """Wake a worker per job after commit (bulk creation): a wake-up claims one job, so each job needs one.

    Published by a thread of their own, so the request answers once its rows are committed: 10 000 wake-ups
    took longer than writing the 10 000 jobs. Workers start on the first ones meanwhile; wake-ups lost to a
    process that stops midway are the sweeper's, as any lost publish (the job row is the truth).
    """
    pks = list(job_pks)
    if not pks:
        return

    def publish_all() -> None:
        for pk in pks:
            publish_job(pk)

    def start() -> None:
        if len(pks) <= BULK_WAKE_UPS_INLINE:
            publish_all()
        else:
            threading.Thread(target=publish_all, name="aicore-bulk-wake-ups", daemon=True).start()

    transaction.on_commit(start)


BULK_WAKE_UPS_INLINE = 100  # fewer than this are published before the request answers
