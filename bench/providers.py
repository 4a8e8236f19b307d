"""Provider-layer benchmark: the whole job path with the real OpenAI client vs. the offline echo provider.

    python -m bench.providers        (or `make bench`)

Both runs push N jobs (default 2 000) through the complete path — job_create (catalogue, quota reservation,
OpenAIJob), broker, 2 worker processes (threads pool, 8 threads each), claim, provider call, completion with
usage, cost, quota settlement and roll-up — on PostgreSQL + Redis:

1. echo: model `echo-1`, answering at 0 ms in process.
2. openai: model `gpt-4o-mini` through the official SDK (streaming, usage) over real HTTP to the local fake
   OpenAI-compatible server answering at 0 ms; a brand quota is active so reservations are exercised too.

The target is openai ≥ 0.8 × echo in jobs/s. Rates run from the first to the last completion after
everything was queued. Each run also reports the workers' CPU per job (what another engineer's load on the
machine hardly moves) and the TCP connections the fake server accepted (a client keeping its connections alive
opens few).

Environment: BENCH_DATABASE_URL (postgres://…/aicore_bench_providers, created if missing), BENCH_REDIS_URL
(redis://127.0.0.1:6379/2; flushed), BENCH_PROVIDER_JOBS; BENCH_PROVIDERS_EXECUTOR: the engine executors to
measure, `threads`, `asyncio` or both (`threads,asyncio`), each with its own echo run (default: the
AICORE_ENGINE_EXECUTOR as the settings read it, asyncio unless set; asyncio runs AICORE_ENGINE_IN_FLIGHT calls in flight
per process, 64 unless set); BENCH_PROVIDERS_BASE_TREE: another checkout of the project (e.g. main in a git
worktree) whose code the workers also run, before this tree's, for before/after figures of one run. The
machine may be shared: figures are indicative, compare only figures of one run.
"""

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

# The same database set-up, worker shutdown and drain measurement as the engine bench.
from bench.engine import cpu_seconds, drain_rate, ensure_database, stop

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "providers.json"
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aicore_bench_providers")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
N_JOBS = int(os.environ.get("BENCH_PROVIDER_JOBS", "2000"))
BASE_TREE = os.environ.get("BENCH_PROVIDERS_BASE_TREE", "")
ASYNCIO_IN_FLIGHT = os.environ.get("AICORE_ENGINE_IN_FLIGHT", "64")  # bench.engine's FAST_IN_FLIGHT
TARGET_RATIO = 0.8

os.environ.update(
    {
        "DATABASE_URL": DB_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "AICORE_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
        "OPENAI_API_KEY": "sk-bench",  # the submitting process checks a key exists; workers get the URL too
    }
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def start_workers(count: int, env: dict, tree: Path = ROOT) -> list[subprocess.Popen]:
    """`count` worker processes running the code of `tree` (this checkout, or BENCH_PROVIDERS_BASE_TREE: its
    directory comes first on the path, before this checkout's editable install)."""
    from ai_core.engine.worker import worker_command

    procs = []
    for index in range(count):
        argv = worker_command(
            "-P",
            "threads",
            "-c",
            "8",
            "-n",
            f"prov{index}@%h",
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        )
        procs.append(
            subprocess.Popen(
                argv, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree), **env}, stdout=subprocess.DEVNULL
            )
        )
    return procs


def fresh_state():
    import redis
    from django.db import connection

    from ai_core.models import AIJob
    from ai_usage.models import Quota
    from business.models import Brand, Company

    redis.Redis.from_url(REDIS_URL).flushdb()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE ai_core_aijobevent, ai_core_jobdailystat, ai_core_aijob, ai_usage_aijobusage, "
            "ai_usage_quotareservation, ai_usage_quotaperiod, ai_usage_quota CASCADE"
        )
    company, _ = Company.objects.get_or_create(name="Bench")
    brands = [Brand.objects.get_or_create(company=company, name=f"bench-{i}")[0] for i in range(5)]
    for brand in brands:  # generous: exercised, never binding
        Quota.objects.create(company=company, brand=brand, monthly_token_limit=10**12)
    return AIJob, brands


def run(model: str, worker_env: dict, fake, tree: Path = ROOT) -> dict:
    from django.db import connection, transaction

    from ai_core.services import job_create

    AIJob, brands = fresh_state()
    data = {"model": model, "messages": [{"role": "user", "content": "bench"}], "max_tokens": 32}
    if model.startswith("echo"):
        data["echo"] = {"delay_ms": 0}
    with transaction.atomic():  # one commit; the wake-ups are published right after it
        for index in range(N_JOBS):
            job_create(brand=brands[index % len(brands)], user=None, job_type="chat_completion", input_data=data)
    connection.close()
    workers = start_workers(2, worker_env, tree)
    pids = [worker.pid for worker in workers]
    first: dict = {}  # the count and the workers' CPU time at the first completion (start-up excluded)
    connections = fake.connections

    def finished() -> int:
        done = AIJob.objects.filter(status__in=["completed", "failed"]).count()
        if done and not first:
            first.update(done=done, cpu=cpu_seconds(pids))
        return done

    try:
        result = drain_rate(finished, N_JOBS)
        cpu = cpu_seconds(pids) - first.get("cpu", 0.0)
    finally:
        stop(workers)
    result["not_completed"] = AIJob.objects.exclude(status="completed").count()
    result["worker_cpu_ms_per_job"] = round(1000 * cpu / max(1, result["jobs"] - first.get("done", 0)), 2)
    result["provider_connections_opened"] = fake.connections - connections
    return result


def measure(executor: str, fake, trees: list[tuple[str, Path]]) -> list[dict]:
    """Echo, then OpenAI through the fake server on the code of each of `trees` (before, after), on workers of
    `executor`. One echo run: the engine's code is the same in both trees of a provider change, and each run of
    jobs costs minutes on a loaded machine."""
    env = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": fake.openai_base_url, "AICORE_ENGINE_EXECUTOR": executor}
    if executor == "asyncio":
        env["AICORE_ENGINE_IN_FLIGHT"] = ASYNCIO_IN_FLIGHT
    echo = run("echo-1", env, fake)
    print(f"{executor} echo: {echo}", flush=True)
    runs = []
    for when, tree in trees:
        openai = run("gpt-4o-mini", env, fake, tree)
        print(f"{executor} {when} openai: {openai}", flush=True)
        ratio = round(openai["per_second"] / echo["per_second"], 2) if echo["per_second"] else None
        cpu_ratio = round(echo["worker_cpu_ms_per_job"] / openai["worker_cpu_ms_per_job"], 2)
        runs.append(
            {
                "executor": executor,
                "when": when,
                "tree": str(tree),
                "echo": echo,
                "openai": openai,
                "ratio": ratio,
                "cpu_ratio": cpu_ratio,
            }
        )
    return runs


def rows_of(label: str, one: dict) -> list[dict]:
    echo, openai, ratio = one["echo"], one["openai"], one["ratio"]
    return [
        {
            "benchmark": f"{label}: echo 0 ms, full path ({N_JOBS} jobs), jobs/s",
            "value": echo["per_second"],
            "target": "",
        },
        {
            "benchmark": f"{label}: openai SDK → fake server 0 ms, jobs/s",
            "value": openai["per_second"],
            "target": "",
        },
        {
            "benchmark": f"{label}: worker CPU ms per job, echo → openai",
            "value": f"{echo['worker_cpu_ms_per_job']} → {openai['worker_cpu_ms_per_job']}",
            "target": "",
        },
        {
            "benchmark": f"{label}: connections to the fake server (openai run)",
            "value": openai["provider_connections_opened"],
            "target": "",
        },
        {
            "benchmark": f"{label}: openai / echo",
            "value": ratio,
            "target": f">= {TARGET_RATIO}",
            "ok": ratio is not None and ratio >= TARGET_RATIO,
        },
    ]


def main() -> int:
    import django

    ensure_database(DB_URL)
    django.setup()
    from django.conf import settings

    from testing.fake_llm import FakeLLM

    # The executors to measure; by default the workers' own (AICORE_ENGINE_EXECUTOR as the settings read it).
    chosen = os.environ.get("BENCH_PROVIDERS_EXECUTOR", settings.AICORE_ENGINE_EXECUTOR)
    executors = [name.strip() for name in chosen.split(",") if name.strip()]

    started = datetime.now(UTC)
    runs, rows = [], []
    trees = [("before", Path(BASE_TREE).resolve()), ("after", ROOT)] if BASE_TREE else [("", ROOT)]
    with FakeLLM() as fake:
        for executor in executors:
            for one in measure(executor, fake, trees):
                runs.append(one)
                rows += rows_of(f"{executor} {one['when']}".strip(), one)
    ours = [one for one in runs if one["tree"] == str(ROOT)]
    document = {
        "benchmark": "providers",
        "when": started.isoformat(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "setup": "PostgreSQL + Redis, 2 worker processes (threads pool × 8 threads, or the asyncio executor with "
        f"{ASYNCIO_IN_FLIGHT} calls in flight each); a brand quota active in every run",
        # This checkout's first executor, as bench.engine reads it.
        "echo": ours[0]["echo"],
        "openai": ours[0]["openai"],
        "ratio": ours[0]["ratio"],
        "cpu_ratio": ours[0]["cpu_ratio"],
        "runs": runs,
        "target_ratio": TARGET_RATIO,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"{'benchmark':<64}{'value':>14}  target")
    for row in rows:
        print(f"{row['benchmark']:<64}{row['value']!s:>14}  {row['target']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
