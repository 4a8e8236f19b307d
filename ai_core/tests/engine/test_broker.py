"""The broker settings the engine relies on (config.celery_app, config.broker): late acks, prefetch one, one Redis
client per pool."""

import pytest
from django.conf import settings

from config.celery_app import app


def test_messages_are_acked_late_one_at_a_time_and_redis_keeps_no_unacked_copy():
    """Redis without ack emulation: its restore through a closed connection killed workers (broker outage)."""
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    if settings.CELERY_BROKER_URL.startswith("redis"):
        assert app.conf.broker_transport_options["ack_emulation"] is False


def test_the_redis_channel_shares_one_client_per_pool_and_a_new_pool_gets_a_new_one():
    """config.broker: kombu would build a Redis client per publish and per ack; ours keeps one per pool."""
    from kombu import Connection

    from config.broker import RedisTransport

    redis_url = settings.CELERY_BROKER_URL
    if not redis_url.startswith("redis://"):
        pytest.skip("needs the Redis broker (the PostgreSQL pass)")
    with Connection(redis_url, transport=RedisTransport) as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.connection_pool is channel.pool
            assert first.ping()
        channel._disconnect_pools()  # what a fork or a reconnect does
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool
            assert third.ping()
