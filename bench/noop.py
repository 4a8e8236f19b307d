"""The raw-Celery baseline task: no database, no engine; it only counts itself in Redis so the bench can see
when the queue is drained."""

import os

import redis

from config.celery_app import app

_counter = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1"))


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    _counter.incr("bench:engine:noop")
