"""The execution engine: what a worker does with a wake-up message.

- claim.py: pick the best pending job (priority first, brands round-robin) and claim it (CAS pending→running).
- handlers.py: job type → provider request (a registry; new types plug in without touching the engine).
- providers.py: model → provider client (the one seam the provider catalogue extends).
- runner.py: one attempt of one job, from claim to its final (or re-queued) state, fenced by attempt number.
- watch.py: per-process heartbeat and cancel watcher over the attempts in flight.
- upkeep.py: sweeper (lost wake-ups) and reaper (dead workers, overdue jobs), run in every worker.
- retry.py: the retry policy (exponential backoff with jitter).
- aio.py: the asyncio executor (AICORE_ENGINE_EXECUTOR=asyncio): one event loop per process runs the calls.
- batch.py: claims and completions of many jobs per trip to the database (the asyncio executor's).
"""
