"""kombu's Redis transport, with one Redis client object per channel instead of one per publish.

kombu builds a new `redis.Redis` for every message it publishes (the private `Channel._create_client`), and
building one costs more CPU than the LPUSH itself (redis-py fills a ~170-entry callback table each time): about
0.2 ms of a job creation's 0.5 ms of API CPU, measured (docs/PERFORMANCE.md, "Private framework APIs"). The
client only wraps the channel's connection pool and is safe to share between threads, so this channel keeps one
per pool (a new pool, after a fork or a reconnect, gets a new client). Selected by settings.CELERY_BROKER_TRANSPORT
for redis:// brokers (AICORE_SHARED_REDIS_CLIENT=0: kombu's own transport, for comparison). The one module that
touches kombu's private API; pinned by kernel/tests/test_adapters_kombu.py.
"""

from kombu.transport import redis


class Channel(redis.Channel):
    _shared_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self._pool:
            client = self._shared_client = super()._create_client()
        return client


class RedisTransport(redis.Transport):
    Channel = Channel
