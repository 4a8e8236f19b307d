"""The peer baseline: procrastinate (a PostgreSQL-only task queue, asyncio workers), on the same PostgreSQL
server as AI Core, in a database of its own (BENCH_PEER_DATABASE_URL). Two tasks: a no-op, and an asyncio sleep
standing in for an I/O-bound call. Installed by the `bench` extra only; AI Core itself never imports it."""

import asyncio
import os

from procrastinate import App, PsycopgConnector

DB_URL = os.environ.get("BENCH_PEER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aicore_bench_peer")

app = App(connector=PsycopgConnector(conninfo=DB_URL))


@app.task(name="bench.peer.noop")
def noop() -> None:
    """Nothing: what the drain measures is the queue's own cost per job."""


@app.task(name="bench.peer.sleep")
async def sleep(ms: int) -> None:
    await asyncio.sleep(ms / 1000)
