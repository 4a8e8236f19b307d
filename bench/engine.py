"""Execution-engine benchmark: the whole job path vs. raw Celery and vs. a peer (procrastinate), on one machine.

    python -m bench.engine        (or `make bench`, which installs the `bench` extra: procrastinate)

1. Baselines: 5 000 no-op Celery tasks (2 prefork processes) drained from Redis; 5 000 no-op procrastinate
   jobs (2 worker processes × concurrency 8) drained from PostgreSQL (its own database on the same server).
2. Ours: 5 000 `echo` jobs at 0 ms through the whole path (claim, events, roll-up, result) with 2 worker
   processes of the asyncio executor (the default, 64 calls in flight each: part `fast_aio`), same Redis and
   PostgreSQL; again with the threads executor (threads pool, 8 threads each: part `fast`).
3. I/O-bound: 2 000 `echo` jobs of 2 000 ms on one worker machine, 400 threads in all, run twice: as ONE
   worker process (400 threads, a database pool of at most 10 connections) and as one process per core
   (2 × 200 threads, pools of at most 9): sustained jobs/s, calls in flight, peak PostgreSQL connections,
   worker RSS (summed over the processes). The peer: 2 000 procrastinate jobs sleeping 2 000 ms (asyncio) in
   one worker process at concurrency 400.
   Part `io_aio`: the same 2 000 jobs with the asyncio executor in ONE process, 400 then 2 000 calls in flight.
4. The provider ratio: bench.providers (OpenAI SDK → local fake server at 0 ms vs echo), run as a subprocess
   and copied into the table.

Rates are measured from the first to the last completion, after everything was queued (worker start-up is
excluded from both sides). Environment: BENCH_DATABASE_URL (postgres://…/aicore_bench_engine, created if
missing), BENCH_PEER_DATABASE_URL (postgres://…/aicore_bench_peer, dropped and re-created), BENCH_PROVIDERS_DATABASE_URL
(postgres://…/aicore_bench_providers), BENCH_REDIS_URL
(redis://127.0.0.1:6379/1; its keys are flushed), BENCH_ENGINE_FAST_JOBS / BENCH_ENGINE_SLOW_JOBS (counts).
A subset: BENCH_ENGINE_PARTS=celery,peer,fast,fast_aio,io,io_aio,peer_io,providers (default all; e.g.
`celery,peer,fast,fast_aio` for the 0 ms table only, ~2 minutes). The machine may be shared: figures are indicative.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "engine.json"
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aicore_bench_engine")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
N_FAST = int(os.environ.get("BENCH_ENGINE_FAST_JOBS", "5000"))
N_SLOW = int(os.environ.get("BENCH_ENGINE_SLOW_JOBS", "2000"))
PEER_DB_URL = os.environ.get("BENCH_PEER_DATABASE_URL", DB_URL.rsplit("/", 1)[0] + "/aicore_bench_peer")
ALL_PARTS = "celery,peer,fast,fast_aio,io,io_aio,peer_io,providers"
PARTS = set(os.environ.get("BENCH_ENGINE_PARTS", ALL_PARTS).split(","))
SLOW_MS = 2000
SLOW_THREADS = 400
# (processes, threads each, database pool max each): one process, then one per core of this machine.
IO_LAYOUTS = [(1, SLOW_THREADS, 10), (2, SLOW_THREADS // 2, 9)]
# The asyncio executor (AICORE_ENGINE_EXECUTOR=asyncio), one process: 400 then 2 000 calls in flight, a pool of
# at most 8 connections (its 4 database threads, the watcher, the upkeep).
AIO_LAYOUTS = [(1, SLOW_THREADS, 8, "asyncio"), (1, 2000, 8, "asyncio")]
FAST_IN_FLIGHT = 64  # the asyncio executor's calls in flight per process for echo at 0 ms
FAST_WAKE_UPS = 32  # AICORE_WAKE_UPS_PER_COMMIT's asyncio default for 8 worker threads (config/settings.py)

ENV = {
    "DATABASE_URL": DB_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    "BENCH_REDIS_URL": REDIS_URL,
    "BENCH_PEER_DATABASE_URL": PEER_DB_URL,
    "AICORE_ENV": "development",
    "LOG_LEVEL": "WARNING",
    "PYTHONWARNINGS": "ignore",
}
os.environ.update(ENV)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def ensure_database(url: str = DB_URL) -> None:
    """Create the bench database `url` if missing, and migrate it."""
    import psycopg

    admin_url, name = url.rsplit("/", 1)
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
    subprocess.run(migrate, cwd=ROOT, check=True, env={**os.environ, "DATABASE_URL": url})


def start_worker(*options: str, **env: str) -> subprocess.Popen:
    from ai_core.engine.worker import worker_command

    argv = worker_command("-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat", *options)
    return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL)


def stop(workers: list[subprocess.Popen]) -> None:
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def drain_rate(count, total: int, timeout: float = 600) -> dict:
    """Poll `count()` until it reaches `total`; the rate runs from the first to the last completion.

    Every 0.1 s: our side's count is a query that takes a core's share of the machine being measured (at
    every 20 ms, ~5 % of a core); the rate's resolution stays ~1 % over a drain of ten seconds."""
    first = last = None
    deadline = time.monotonic() + timeout
    done = 0
    while done < total and time.monotonic() < deadline:
        done = count()
        now = time.monotonic()
        if done and first is None:
            first = now
        last = now
        time.sleep(0.1)
    seconds = (last - first) if first is not None else float("nan")
    return {"jobs": done, "seconds": round(seconds, 2), "per_second": round((done - 1) / seconds, 1)}


def fresh_state() -> tuple:
    import redis
    from django.db import connection

    from ai_core.models import AIJob
    from business.models import Brand, Company

    redis.Redis.from_url(REDIS_URL).flushdb()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE ai_core_aijobevent, ai_core_jobdailystat, ai_core_aijob CASCADE")
    company, _ = Company.objects.get_or_create(name="Bench")
    brands = [Brand.objects.get_or_create(company=company, name=f"bench-{i}")[0] for i in range(5)]
    return AIJob, brands


def wake_ups(executor: str) -> int:
    """AICORE_WAKE_UPS_PER_COMMIT as the executor's deployment has it: coalesced on asyncio, one per job on threads."""
    return FAST_WAKE_UPS if executor == "asyncio" else 0


def submit_jobs(brands, count: int, echo: dict, executor: str) -> None:
    """One commit of `count` jobs; the wake-ups are published right after it, as `executor`'s deployment sends them
    (this process's setting is set for every run: a run must not inherit the previous run's)."""
    from django.conf import settings
    from django.db import transaction

    from ai_core.services import job_create

    priorities = ["low", "normal", "high", "urgent"]
    data = {"model": "echo-1", "messages": [{"role": "user", "content": "bench"}], "echo": echo}
    settings.AICORE_WAKE_UPS_PER_COMMIT = wake_ups(executor)
    with transaction.atomic():
        for index in range(count):
            job_create(
                brand=brands[index % len(brands)],
                user=None,
                job_type="chat_completion",
                input_data=data,
                priority=priorities[index % 4],
            )


def baseline() -> dict:
    import redis

    from bench.noop import noop

    counter = redis.Redis.from_url(REDIS_URL)
    counter.flushdb()
    for _ in range(N_FAST):
        noop.delay()
    workers = [start_worker("-P", "prefork", "-c", "2", "--include", "bench.noop")]
    try:
        return drain_rate(lambda: int(counter.get("bench:engine:noop") or 0), N_FAST)
    finally:
        stop(workers)


def ours_fast(executor: str = "threads") -> dict:
    AIJob, brands = fresh_state()
    submit_jobs(brands, N_FAST, {"delay_ms": 0}, executor)
    env = {
        "AICORE_ENGINE_EXECUTOR": executor,
        "AICORE_ENGINE_IN_FLIGHT": str(FAST_IN_FLIGHT),
        "AICORE_WAKE_UPS_PER_COMMIT": str(wake_ups(executor)),
    }
    workers = [start_worker("-P", "threads", "-c", "8", "-n", f"fast{i}@%h", **env) for i in range(2)]
    try:
        result = drain_rate(lambda: AIJob.objects.filter(status="completed").count(), N_FAST)
        # CPU per job of the worker processes (start-up included, the same for both executors): unlike a rate,
        # hardly moved by the other engineers' load on the machine.
        result["worker_cpu_ms_per_job"] = round(cpu_seconds([w.pid for w in workers]) * 1000 / N_FAST, 2)
    finally:
        stop(workers)
    result["not_completed"] = AIJob.objects.exclude(status="completed").count()
    if executor == "asyncio":
        result["workers"] = f"2 workers, asyncio executor, {FAST_IN_FLIGHT} in flight each"
    else:
        result["workers"] = "2 workers, threads pool, 8 threads each"
    return result


def pg_connections() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system, all threads) the processes used so far: a cost per job that, unlike a rate,
    another engineer's load on the machine hardly moves."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sampled_drain(count, total: int, pids: list[int], connections, running=None) -> dict:
    """drain_rate, sampling every 0.25 s the peaks of calls in flight, PostgreSQL connections and RSS."""
    from django.db import connection

    peaks = {"in_flight": 0, "pg_connections": 0, "rss_mb": 0.0}
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(0.25):
            if running is not None:
                peaks["in_flight"] = max(peaks["in_flight"], running())
            peaks["pg_connections"] = max(peaks["pg_connections"], connections())
            peaks["rss_mb"] = max(peaks["rss_mb"], sum(rss_mb(pid) for pid in pids))
        connection.close()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = drain_rate(count, total)
    finally:
        stop_sampling.set()
        sampler.join()
    return {**result, **peaks, "rss_mb": round(peaks["rss_mb"], 1)}


def with_span(result: dict, span_seconds: float | None) -> None:
    """An I/O-bound drain's rate over its whole span, from the first call's start to the last call's end (read from
    the database's own timestamps): with 400 calls of 2 s in flight at most it cannot pass 200/s. The rate from the
    first to the last completion (drain_rate) leaves the first calls' 2 s out, so it is kept under its own name."""
    result["per_second_first_to_last_completion"] = result["per_second"]
    if span_seconds:
        result["span_seconds"] = round(span_seconds, 2)
        result["per_second"] = round(result["jobs"] / span_seconds, 1)


def ours_io_bound(processes: int, threads: int, pool_max: int, executor: str = "threads") -> dict:
    """`threads`: the Celery threads (threads pool) or, with the asyncio executor, the calls in flight at most
    (AICORE_ENGINE_IN_FLIGHT; the Celery pool then has 4 threads, which only hand wake-ups to the loop)."""
    from django.db import connection
    from django.db.models import Max, Min

    AIJob, brands = fresh_state()
    submit_jobs(brands, N_SLOW, {"delay_ms": SLOW_MS, "chunks": 4}, executor)
    connection.close()
    env = {
        "DB_POOL_MAX_SIZE": str(pool_max),
        "DB_POOL_MIN_SIZE": "2",
        "AICORE_ENGINE_EXECUTOR": executor,
        "AICORE_WAKE_UPS_PER_COMMIT": str(wake_ups(executor)),
    }
    celery_threads = threads
    if executor == "asyncio":
        env["AICORE_ENGINE_IN_FLIGHT"], celery_threads = str(threads), 4
    workers = [
        start_worker("-P", "threads", "-c", str(celery_threads), "-n", f"io{i}@%h", **env) for i in range(processes)
    ]
    try:
        result = sampled_drain(
            lambda: AIJob.objects.filter(status="completed").count(),
            N_SLOW,
            [worker.pid for worker in workers],
            pg_connections,
            running=lambda: AIJob.objects.filter(status="running").count(),
        )
        result["worker_cpu_ms_per_job"] = round(cpu_seconds([w.pid for w in workers]) * 1000 / N_SLOW, 2)
    finally:
        stop(workers)
    span = AIJob.objects.aggregate(first=Min("started_at"), last=Max("completed_at"))
    with_span(result, (span["last"] - span["first"]).total_seconds() if span["first"] and span["last"] else None)
    how = f"asyncio executor, {threads} in flight" if executor == "asyncio" else f"threads pool, {threads} threads"
    result.update(
        workers=f"{processes} worker process(es), {how} each",
        executor=executor,
        threads=processes * threads,
        db_pool_max=processes * pool_max,
        delay_ms=SLOW_MS,
        not_completed=AIJob.objects.exclude(status="completed").count(),
    )
    return result


# --- the peer: procrastinate --------------------------------------------------------------------------


def peer_fresh() -> None:
    """A new, empty procrastinate database with its schema (the peer's own migrations)."""
    import psycopg

    admin_url, name = PEER_DB_URL.rsplit("/", 1)
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    from bench.peer import app

    with app.open():
        app.schema_manager.apply_schema()


def peer_query(sql: str) -> int:
    import psycopg

    with psycopg.connect(PEER_DB_URL, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def peer_succeeded() -> int:
    return peer_query("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")


def peer_running() -> int:
    return peer_query("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'")


def peer_span_seconds() -> float | None:
    """From the first job's start to the last job's success, by procrastinate's own event log."""
    seconds = peer_query(
        "SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded') - min(at) FILTER (WHERE type = 'started'))"
        " FROM procrastinate_events"
    )
    return float(seconds) if seconds is not None else None


def peer_connections() -> int:
    return peer_query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )


def start_peer(concurrency: int, name: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "procrastinate", "--app=bench.peer.app", "--log-level=warning", "worker"]
    argv.append(f"--concurrency={concurrency}")
    return subprocess.Popen([*argv, f"--name={name}"], cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL)


def peer_run(task_name: str, count: int, kwargs: dict, processes: int, concurrency: int, sampled: bool) -> dict:
    from bench import peer

    peer_fresh()
    with peer.app.open():
        getattr(peer, task_name).batch_defer(*[kwargs] * count)
    workers = [start_peer(concurrency, f"peer{i}") for i in range(processes)]
    try:
        if sampled:
            pids = [worker.pid for worker in workers]
            result = sampled_drain(peer_succeeded, count, pids, peer_connections, running=peer_running)
            with_span(result, peer_span_seconds())
        else:
            result = drain_rate(peer_succeeded, count)
    finally:
        stop(workers)
    return {**result, "workers": f"{processes} procrastinate worker process(es), concurrency {concurrency} each"}


def providers_ratio(executor: str = "threads") -> dict:
    """bench.providers in its own process (its own database and Redis): the OpenAI SDK path vs echo, on workers
    of `executor` (AICORE_ENGINE_EXECUTOR; asyncio: the OpenAI calls through AsyncOpenAI)."""
    database = os.environ.get("BENCH_PROVIDERS_DATABASE_URL", DB_URL.rsplit("/", 1)[0] + "/aicore_bench_providers")
    env = {**os.environ, "BENCH_DATABASE_URL": database, "AICORE_ENGINE_EXECUTOR": executor}
    if executor == "asyncio":
        env["AICORE_ENGINE_IN_FLIGHT"] = str(FAST_IN_FLIGHT)
    code = subprocess.run([sys.executable, "-m", "bench.providers"], cwd=ROOT, env=env).returncode
    document = json.loads((ROOT / "bench" / "results" / "providers.json").read_text()) if code == 0 else {}
    return {key: document.get(key) for key in ("echo", "openai", "ratio")}


def rate_ratio(ours: dict | None, theirs: dict | None) -> float | None:
    if not ours or not theirs or not theirs.get("per_second"):
        return None
    return round(ours["per_second"] / theirs["per_second"], 2)


def main() -> None:
    ensure_database()
    import django

    django.setup()
    from django.conf import settings

    load_before = os.getloadavg()
    base = baseline() if "celery" in PARTS else None
    peer_noop = peer_run("noop", N_FAST, {}, 2, 8, sampled=False) if "peer" in PARTS else None
    fast = ours_fast() if "fast" in PARTS else None
    fast_aio = ours_fast("asyncio") if "fast_aio" in PARTS else None
    layouts = [ours_io_bound(*layout) for layout in IO_LAYOUTS] if "io" in PARTS else []
    slow = max(layouts, key=lambda run: run["per_second"]) if layouts else None
    aio_layouts = [ours_io_bound(*layout) for layout in AIO_LAYOUTS] if "io_aio" in PARTS else []
    peer_io = peer_run("sleep", N_SLOW, {"ms": SLOW_MS}, 1, SLOW_THREADS, sampled=True) if "peer_io" in PARTS else None
    providers = providers_ratio() if "providers" in PARTS else None
    providers_aio = providers_ratio("asyncio") if "providers" in PARTS else None
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(load_before),
        "parts": sorted(PARTS),
        "default_executor": settings.AICORE_ENGINE_EXECUTOR,
        "broker": REDIS_URL.rsplit("@", 1)[-1],
        "database": DB_URL.rsplit("/", 1)[-1],
        "baseline_noop_celery": base and {**base, "workers": "1 worker, prefork, 2 processes"},
        "baseline_noop_procrastinate": peer_noop,
        "echo_0ms_full_path": fast,
        "ratio_vs_baseline": rate_ratio(fast, base),
        "ratio_vs_procrastinate": rate_ratio(fast, peer_noop),
        "echo_0ms_full_path_asyncio": fast_aio,
        "ratio_vs_baseline_asyncio": rate_ratio(fast_aio, base),
        "ratio_vs_procrastinate_asyncio": rate_ratio(fast_aio, peer_noop),
        "io_bound_echo_2000ms": slow,
        "io_bound_layouts": layouts,
        "io_bound_asyncio": aio_layouts,
        "peer_io_bound_sleep_2000ms": peer_io,
        "providers": providers,
        "providers_asyncio": providers_aio,
        "targets": {
            "ratio_vs_baseline": 0.8,
            "ratio_vs_procrastinate": 1.5,
            "io_jobs_per_second_one_process": 190,
            "io_jobs_per_second_one_process_2000_in_flight": 800,
            "io_pg_connections_max": 20,
            "providers_ratio": 0.8,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report, layouts + aio_layouts)
    print(f"→ {RESULTS.relative_to(ROOT)}")


def print_table(report: dict, layouts: list[dict]) -> None:
    def rate(run: dict | None) -> str:
        return f"{run['per_second']}/s" if run else "—"

    def io_note(run: dict) -> str:
        return f"{run['in_flight'] or '—'} in flight, {run['pg_connections']} PG conns, RSS {run['rss_mb']} MB"

    rows = [
        ("raw Celery no-op (baseline)", rate(report["baseline_noop_celery"]), ""),
        ("procrastinate no-op (2 × 8)", rate(report["baseline_noop_procrastinate"]), ""),
        (
            "echo 0 ms, whole path (2 × asyncio)",
            rate(report["echo_0ms_full_path_asyncio"]),
            f"{report['ratio_vs_baseline_asyncio']}× Celery (target ≥ 0.8), "
            f"{report['ratio_vs_procrastinate_asyncio']}× procrastinate (target ≥ 1.5)",
        ),
        (
            "echo 0 ms, whole path (2 × 8 threads)",
            rate(report["echo_0ms_full_path"]),
            f"{report['ratio_vs_baseline']}× Celery, {report['ratio_vs_procrastinate']}× procrastinate",
        ),
    ]
    rows += [(f"echo 2 000 ms, {run['workers'].split(' each')[0]}", rate(run), io_note(run)) for run in layouts]
    if report["peer_io_bound_sleep_2000ms"]:
        peer_io = report["peer_io_bound_sleep_2000ms"]
        rows.append(("procrastinate sleep 2 000 ms, 1 proc", rate(peer_io), io_note(peer_io)))
    if report["providers"]:
        rows.append(("OpenAI SDK / echo (bench.providers)", str(report["providers"]["ratio"]), "target ≥ 0.8"))
    if report.get("providers_asyncio"):
        rows.append(("OpenAI SDK / echo, asyncio executor", str(report["providers_asyncio"]["ratio"]), "target ≥ 0.8"))
    print(f"{'engine benchmark':<38}{'rate':>12}  notes")
    for name, value, note in rows:
        print(f"{name:<38}{value:>12}  {note}")


if __name__ == "__main__":
    main()
