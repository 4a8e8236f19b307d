"""Provider capacity benchmark: a drain against a provider's rate limit, and what the machinery costs.

    python -m bench.capacity        (or `make bench`, BENCH_MODULES=capacity)

1. Drain: 1 000 `gpt-4o-mini` jobs through 2 worker processes (threads pool, 8 threads each) against the fake
   OpenAI-compatible server limited to 600 requests a minute (10 a second, fixed windows, 429 with Retry-After
   beyond, x-ratelimit-* headers on every answer). Nothing is configured: the limit is learned from the headers.
   jobs/s from the first to the last completion, against the limit's 10/s; the 429 answers and failed jobs.
2. Overhead: `echo` 0 ms jobs (an endpoint without limits) drained with the capacity machinery on and off
   (AICORE_CAPACITY_ENABLED), twice each in the same run, in the order on, off, off, on (a drift of the shared
   machine's load weighs on both sides alike).

Environment: BENCH_CAPACITY_DATABASE_URL (postgres://…/aicore_bench_capacity, created if missing),
BENCH_CAPACITY_REDIS_URL (redis://127.0.0.1:6379/5; its keys are flushed), BENCH_CAPACITY_JOBS (1000),
BENCH_CAPACITY_ECHO_JOBS (3000). The machine may be shared: figures are indicative.
"""

import json
import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "capacity.json"
os.environ.setdefault(
    "BENCH_DATABASE_URL",
    os.environ.get("BENCH_CAPACITY_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aicore_bench_capacity"),
)
os.environ.setdefault("BENCH_REDIS_URL", os.environ.get("BENCH_CAPACITY_REDIS_URL", "redis://127.0.0.1:6379/5"))
N_LIMITED = int(os.environ.get("BENCH_CAPACITY_JOBS", "1000"))
N_ECHO = int(os.environ.get("BENCH_CAPACITY_ECHO_JOBS", "3000"))
LIMIT_PER_SECOND = 10  # 600 requests a minute

from bench.engine import drain_rate, ensure_database, fresh_state, start_worker, stop, submit_jobs  # noqa: E402
from bench.machine import machine  # noqa: E402
from testing.fake_llm import FakeLLM  # noqa: E402

WORKERS = [("-P", "threads", "-c", "8", "-n", f"capacity{i}@%h") for i in range(2)]


def submit_limited(brands, count: int) -> None:
    from django.db import transaction

    from ai_core.services import job_create

    data = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "bench"}], "max_tokens": 16}
    with transaction.atomic():  # one commit; the wake-ups are published right after it
        for index in range(count):
            job_create(brand=brands[index % len(brands)], user=None, job_type="chat_completion", input_data=data)


def drain_limited(fake: FakeLLM) -> dict:
    from ai_providers.models import CapacityLimit

    AIJob, brands = fresh_state()
    CapacityLimit.objects.all().delete()
    limiter = fake.rate_limit(requests=LIMIT_PER_SECOND, per_seconds=1)
    submit_limited(brands, N_LIMITED)
    workers = [start_worker(*options) for options in WORKERS]
    try:
        result = drain_rate(lambda: AIJob.objects.filter(status="completed").count(), N_LIMITED)
    finally:
        stop(workers)
    calls = limiter.served + limiter.refused
    result.update(
        limit_per_second=LIMIT_PER_SECOND,
        share_of_limit=round(result["per_second"] / LIMIT_PER_SECOND, 3),
        provider_calls=calls,
        answers_429=limiter.refused,
        share_429=round(limiter.refused / calls, 4) if calls else 0.0,
        failed=AIJob.objects.filter(status="failed").count(),
        not_completed=AIJob.objects.exclude(status="completed").count(),
        learned_rpm=CapacityLimit.objects.values_list("learned_requests_per_minute", flat=True).first(),
    )
    return result


def drain_echo(machinery: bool) -> dict:
    AIJob, brands = fresh_state()
    submit_jobs(brands, N_ECHO, {"delay_ms": 0}, "threads")
    switch = {"AICORE_CAPACITY_ENABLED": "1" if machinery else "0"}
    workers = [start_worker(*options, **switch) for options in WORKERS]
    try:
        return drain_rate(lambda: AIJob.objects.filter(status="completed").count(), N_ECHO)
    finally:
        stop(workers)


def machinery_per_call_us(iterations: int = 10_000) -> float:
    """What the runner adds per call on an endpoint without limits (acquire and release), timed in this process:
    a steadier figure than the difference of two drains on a shared machine."""
    import time

    from ai_providers import capacity
    from ai_providers.clients.base import ChatRequest
    from ai_providers.services import client_for_model

    client = client_for_model("echo-1", None)
    request = ChatRequest(model="echo-1", messages=[{"role": "user", "content": "bench"}])
    started = time.perf_counter()
    for _ in range(iterations):
        lease = capacity.acquire(client.capacity_key, holder="bench", tokens=client.tokens_at_most(request))
        capacity.release(lease, tokens=3, headers={}, status=200)
    return round((time.perf_counter() - started) / iterations * 1e6, 1)


def main() -> None:
    ensure_database(os.environ["BENCH_DATABASE_URL"])
    with FakeLLM() as fake:
        os.environ.update(OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=fake.openai_base_url)
        import django

        django.setup()
        load_before = os.getloadavg()
        limited = drain_limited(fake)
        runs = {True: [], False: []}
        for machinery in (True, False, False, True):  # ABBA: a drift of the shared machine cancels out
            runs[machinery].append(drain_echo(machinery)["per_second"])
        per_call_us = machinery_per_call_us()
    on, off = statistics.mean(runs[True]), statistics.mean(runs[False])
    overhead = round((off - on) / off, 3) if off else None
    # The whole machine's CPU time per job with the machinery off, and the machinery's share of it.
    cpu_us_per_job = (os.cpu_count() or 1) * 1e6 / off if off else None
    per_call_share = round(per_call_us / cpu_us_per_job, 4) if cpu_us_per_job else None
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(
            load_before, "shared machine (other engineers' tests and benchmarks run at once): figures are indicative"
        ),
        "workers": "2 worker processes, threads pool, 8 threads each",
        "drain_against_600_per_minute": limited,
        "echo_0ms_per_second": {"machinery_on": runs[True], "machinery_off": runs[False]},
        "echo_overhead_share": overhead,
        "machinery_us_per_call": per_call_us,
        "machinery_share_of_cpu_per_job": per_call_share,
        "targets": {"share_of_limit": 0.9, "echo_overhead_share_max": 0.05},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'capacity benchmark':<44}{'value':>12}  notes")
    print(
        f"{'drain, limit 600/min (learned)':<44}{limited['per_second']:>10}/s  "
        f"{limited['share_of_limit']:.0%} of the limit (target ≥ 90 %), {limited['answers_429']} × 429 in "
        f"{limited['provider_calls']} calls, {limited['failed']} failed"
    )
    print(f"{'echo 0 ms, machinery on':<44}{on:>10.1f}/s  runs {runs[True]}")
    print(f"{'echo 0 ms, machinery off':<44}{off:>10.1f}/s  runs {runs[False]}")
    print(f"{'overhead of the machinery (drains)':<44}{overhead:>12.1%}  (target ≤ 5 %)")
    print(f"{'machinery per call, in process':<44}{per_call_us:>10} µs  {per_call_share:.2%} of a job's CPU time")
    print(f"→ {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
