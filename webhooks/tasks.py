"""Celery tasks: thin wrappers over webhooks.services; messages carry ids only."""

import logging
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from django.db import connection

from webhooks import services

logger = logging.getLogger(__name__)
SWEEP_EVERY_SECONDS = 60
_stop = threading.Event()


@shared_task(name=services.DELIVER_TASK, ignore_result=True)
def deliver(delivery_id: int) -> None:
    delay = services.delivery_attempt(delivery_id=delivery_id)
    if delay is not None:
        services.publish_delivery(delivery_id, countdown=delay)


@shared_task(name="webhooks.sweep", ignore_result=True)
def sweep() -> int:
    return services.deliveries_sweep()


def _sweep_loop() -> None:
    while not _stop.wait(SWEEP_EVERY_SECONDS):
        try:
            services.deliveries_sweep()
        except Exception:  # the database or broker is briefly away: the next round catches up
            logger.warning("webhook sweep failed", exc_info=True)
        finally:
            connection.close()


@worker_ready.connect
def _start_sweeper(**_kwargs) -> None:
    """Every worker re-publishes overdue deliveries (a lost message only delays a webhook); several at once
    is harmless because an attempt first claims its delivery with a compare-and-set."""
    _stop.clear()
    threading.Thread(target=_sweep_loop, name="webhooks-sweep", daemon=True).start()


@worker_shutting_down.connect
def _stop_sweeper(**_kwargs) -> None:
    _stop.set()
