"""Pins what kernel/adapters/kombu.py relies on in kombu's Redis transport: `Channel._create_client` is what
`conn_or_acquire` calls for a client of the channel's pool, and a new pool (fork, reconnect) replaces `_pool`."""

import pytest
from django.conf import settings
from kombu import Connection
from kombu.transport import redis

from kernel.adapters.kombu import Channel, RedisTransport


def test_the_private_hook_it_overrides_is_still_kombus():
    assert callable(getattr(redis.Channel, "_create_client", None))
    assert Channel._create_client is not redis.Channel._create_client


def test_the_redis_channel_shares_one_client_per_pool_and_a_new_pool_gets_a_new_one():
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


def test_the_settings_select_it_for_a_redis_broker():
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs the Redis broker (the PostgreSQL pass)")
    assert settings.CELERY_BROKER_TRANSPORT == "kernel.adapters.kombu:RedisTransport"
