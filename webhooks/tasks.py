"""Celery tasks: thin wrappers over webhooks.services; messages carry ids only."""

from celery import shared_task

from webhooks import services


@shared_task(name=services.DELIVER_TASK, ignore_result=True)
def deliver(delivery_id: int) -> None:
    delay = services.delivery_attempt(delivery_id=delivery_id)
    if delay is not None:
        services.publish_delivery(delivery_id, countdown=delay)


@shared_task(name="webhooks.sweep", ignore_result=True)
def sweep() -> int:
    return services.deliveries_sweep()
