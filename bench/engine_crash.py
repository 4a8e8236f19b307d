"""kill -9 of a worker process with 2 000 calls in flight (the asyncio executor), then the count of what it cost.

    python -m bench.engine_crash        (or `make bench-crash`; PostgreSQL + Redis, as bench.engine)

One worker process (AICORE_ENGINE_EXECUTOR=asyncio, AICORE_ENGINE_IN_FLIGHT=2000) takes 2 000 echo jobs of
BENCH_CRASH_MS (default 8 000 ms); once most of them are running it is killed with SIGKILL, a second worker
starts, and every job must end: 0 lost (all final), 0 duplicated (one final event per job, a sane history),
0 double-charged (one usage row per completed job), each final within the reaper window after the kill plus its
own run. Short engine periods (heartbeat 1 s, reap after 5 s). Results: bench/results/engine_crash.json.
"""

import json
import os
import signal
import time
from datetime import UTC, datetime

from bench.engine import ROOT, ensure_database, fresh_state, pg_connections, start_worker, stop, submit_jobs
from bench.machine import machine

RESULTS = ROOT / "bench" / "results" / "engine_crash.json"
N_JOBS = int(os.environ.get("BENCH_CRASH_JOBS", "2000"))
CALL_MS = int(os.environ.get("BENCH_CRASH_MS", "8000"))
ENGINE = {
    "AICORE_ENGINE_EXECUTOR": "asyncio",
    "AICORE_ENGINE_IN_FLIGHT": str(N_JOBS),
    "AICORE_HEARTBEAT_MS": "1000",
    "AICORE_CANCEL_POLL_MS": "500",
    "AICORE_REAP_AFTER_MS": "5000",
    "AICORE_SWEEP_INTERVAL_MS": "1000",
    "AICORE_SWEEP_PENDING_AFTER_MS": "5000",
    "AICORE_ENGINE_DRAIN_SECONDS": "5",
    "DB_POOL_MAX_SIZE": "8",
}


def main() -> None:
    ensure_database()
    import django

    django.setup()
    from django.db.models import Count

    from ai_core.models import FINAL_STATUSES, AIJobEvent
    from ai_usage.models import AIJobUsage

    load_before = os.getloadavg()
    AIJob, brands = fresh_state()
    submit_jobs(brands, N_JOBS, {"delay_ms": CALL_MS, "chunks": 8}, ENGINE["AICORE_ENGINE_EXECUTOR"])
    victim = start_worker("-P", "threads", "-c", "4", "-n", "crash-victim@%h", **ENGINE)
    most_running = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        most_running = max(most_running, AIJob.objects.filter(status="running").count())
        if most_running >= N_JOBS * 0.9:
            break
        time.sleep(0.2)
    connections = pg_connections()
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait()
    survivor = start_worker("-P", "threads", "-c", "4", "-n", "crash-survivor@%h", **ENGINE)
    try:
        while time.monotonic() < killed_at + 600:
            if not AIJob.objects.exclude(status__in=FINAL_STATUSES).exists():
                break
            time.sleep(0.5)
        all_final_after = round(time.monotonic() - killed_at, 1)
    finally:
        stop([survivor])
    jobs = AIJob.objects.all()
    finals = AIJobEvent.objects.filter(to_status__in=FINAL_STATUSES).values("job_id").annotate(n=Count("id"))
    usage = AIJobUsage.objects.values("job_id").annotate(n=Count("id"))
    completed = set(jobs.filter(status="completed").values_list("pk", flat=True))
    usage_of = {row["job_id"]: row["n"] for row in usage}
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(load_before),
        "jobs": N_JOBS,
        "call_ms": CALL_MS,
        "running_when_killed": most_running,
        "pg_connections_when_killed": connections,
        "lost": jobs.exclude(status__in=FINAL_STATUSES).count(),
        "duplicated": sum(1 for row in finals if row["n"] != 1),
        "double_charged": sum(1 for pk in completed if usage_of.get(pk, 0) != 1),
        "statuses": dict(jobs.values_list("status").annotate(n=Count("id"))),
        "reaped": jobs.filter(attempts__gt=1).count(),
        "all_final_seconds_after_kill": all_final_after,
        "bound_seconds": round(5 + 1 + CALL_MS / 1000 * 2, 1),  # reap window + a sweep + the re-run (with load)
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    ok = report["lost"] == report["duplicated"] == report["double_charged"] == 0
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
