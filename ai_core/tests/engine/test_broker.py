"""The broker settings the engine relies on (config.celery_app): late acks, prefetch one, no unacked copy on Redis."""

from django.conf import settings

from config.celery_app import app


def test_messages_are_acked_late_one_at_a_time_and_redis_keeps_no_unacked_copy():
    """Redis without ack emulation: its restore through a closed connection killed workers (broker outage)."""
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    if settings.CELERY_BROKER_URL.startswith("redis"):
        assert app.conf.broker_transport_options["ack_emulation"] is False
