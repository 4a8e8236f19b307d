"""API benchmark: job API at 10k / 100k / 1M jobs, against a bare DRF ModelViewSet measured in the same run.

    python -m bench.api            (or `make bench`, which runs every benchmark module)

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/aicore_bench: one database per
size, suffixed _10k / _100k / _1m, created and migrated if missing; a size loaded in the last 12 hours by
this loader version is reused — BENCH_RELOAD=1 forces a reload),
BENCH_REDIS_URL (default redis://127.0.0.1:6379/4, flushed after each create run), BENCH_PORT (8400),
BENCH_SIZES ("10000,100000,1000000"), BENCH_SECONDS (6: measured seconds per endpoint and size).

How: jobs are bulk-loaded with COPY (secondary indexes dropped and rebuilt around the load, the JobDailyStat
roll-up recomputed with one INSERT … SELECT … GROUP BY, then VACUUM ANALYZE); the app is served by gunicorn
(2 sync workers, the production WSGI entry point) and driven on loopback by wrk. wrk is C and event-driven:
on this 2-core machine a Python load generator would take a core away from the server it is measuring.
Throughput runs use 4 connections (both workers busy); latency runs use 1 connection (the median of
one user's request, not of a queue). Benchmarks measure; they assert nothing (exit 1 only on a crash).
"""

import io
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "api.json"
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aicore_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
PORT = int(os.environ.get("BENCH_PORT", "8400"))
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "10000,100000,1000000").split(",") if s.strip()]
SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
BRANDS = 20
SEARCH_WORD = "invoice"
SECRET = "bench-only-secret-key-0123456789abcdef-0123456789abcdef"

SERVER_ENV = {
    "CELERY_BROKER_URL": REDIS_URL,
    "AICORE_BENCH_BASELINE": "1",
    "AICORE_ENV": "production",
    "SECRET_KEY": SECRET,
    # Production refuses to boot without a credentials key; the bench stores no credentials (echo provider).
    "AICORE_CREDENTIALS_KEY": "YmVuY2gtb25seS1jcmVkZW50aWFscy1rZXktMDEyMyE=",
    "AICORE_METRICS_TOKEN": "bench-only-metrics-token",  # production refuses to boot without one too
    "DEBUG": "0",
    "JWT_ACCESS_MINUTES": "600",
    "LOG_LEVEL": "WARNING",
    "DB_CONN_MAX_AGE": "600",
}
os.environ.update(SERVER_ENV)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


# --- database ----------------------------------------------------------------------------------------

LOADER_VERSION = "2"  # bump when the generated data changes: a database loaded by another version is reloaded
REUSE_HOURS = 12  # data is spread over the year before its load; older than this, "today" would be empty


def db_url(size: int) -> str:
    """One database per size, so a loaded size can be measured again without loading it again."""
    label = f"{size // 1_000_000}m" if size % 1_000_000 == 0 else f"{size // 1000}k" if size % 1000 == 0 else str(size)
    return f"{DB_URL}_{label}"


def ensure_database(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        check=True,
        env={**os.environ, "DATABASE_URL": url},
    )
    with pg(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_load (size bigint, version text, loaded_at timestamptz)")


def pg(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


WORDS = (
    "quarterly report summary customer email draft product launch newsletter translation blog post "
    "social campaign review feedback support ticket meeting notes contract clause policy update "
    "onboarding guide release notes survey results catalogue description headline slogan recipe "
    "press statement forecast budget roadmap tutorial faq answer chatbot reply"
).split()
TOPICS = (
    "spring sale, loyalty programme, new store, summer collection, holiday season, partner event, "
    "price change, shipping delay, product recall, annual report"
).split(", ")
STATUS_WEIGHTS = {"completed": 80, "failed": 8, "cancelled": 5, "timeout": 2, "pending": 3, "running": 2}
PRIORITY_WEIGHTS = {"low": 15, "normal": 65, "high": 15, "urgent": 5}
TYPE_WEIGHTS = {"chat_completion": 60, "text_generation": 25, "content_analysis": 15}
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f+00")


def job_rows(start: int, stop: int, *, brand_ids, user_ids, types, now: datetime):
    """Rows start..stop-1, deterministic: a year of jobs, ~1% mentioning SEARCH_WORD, recent ones open."""
    rng = random.Random(start)
    statuses, status_w = zip(*STATUS_WEIGHTS.items(), strict=True)
    priorities, priority_w = zip(*PRIORITY_WEIGHTS.items(), strict=True)
    type_names, type_w = zip(*TYPE_WEIGHTS.items(), strict=True)
    year = 365 * 86400
    for n in range(start, stop):
        age = rng.random() * year
        created = now - timedelta(seconds=age)
        status = rng.choices(statuses, status_w)[0]
        if status in ("pending", "running") and age > 2 * 86400:
            status = "completed"  # only recent jobs are still open
        type_name = rng.choices(type_names, type_w)[0]
        type_id, is_async = types[type_name]
        words = rng.sample(WORDS, 3)
        if rng.random() < 0.01:
            words[1] = SEARCH_WORD
        description = f"{words[0].capitalize()} {words[1]} {words[2]} for the {rng.choice(TOPICS)} #{n}"
        started = completed = cancelled = None
        attempts = 0
        progress = 0
        result = "\\N"
        error_message = error_code = ""
        if status != "pending" and status != "cancelled":
            started = created + timedelta(seconds=rng.uniform(0.05, 3))
            attempts = 1
        if status in ("completed", "failed", "timeout"):
            completed = started + timedelta(seconds=rng.uniform(0.5, 40))
        if status == "cancelled":
            completed = cancelled = created + timedelta(seconds=rng.uniform(1, 60))
        if status == "completed":
            progress = 100
            result = json.dumps(
                {
                    "completion": f"Here is the {words[0]} {words[2]}.",
                    "finish_reason": "stop",
                    "model": "echo-1",
                }
            )
        elif status == "failed":
            error_message, error_code = "Provider rejected the request", "PROVIDER_ERROR"
        elif status == "timeout":
            error_message, error_code = "The job ran past its timeout", "JOB_TIMEOUT"
        elif status == "running":
            progress = rng.randrange(0, 100)
        input_data = json.dumps({"messages": [{"role": "user", "content": description}], "max_tokens": 256})
        updated = completed or started or created
        yield (
            "ai_job_" + "".join(rng.choices(ALNUM, k=12)),
            status,
            rng.choices(priorities, priority_w)[0],
            str(progress),
            input_data,
            result,
            error_message,
            error_code,
            _ts(started) if started else "\\N",
            _ts(completed) if completed else "\\N",
            _ts(cancelled) if cancelled else "\\N",
            "",
            "t" if is_async else "f",
            str(attempts),
            _ts(updated) if status == "running" else "\\N",
            _ts(created),
            "\\N",
            "",
            description,
            _ts(created),
            _ts(updated),
            str(brand_ids[n % len(brand_ids)]),
            str(rng.choice(user_ids)),
            str(type_id),
        )


JOB_COLUMNS = (
    "job_id, status, priority, progress_percentage, input_data, result_data, error_message, error_code, "
    "started_at, completed_at, cancelled_at, task_id, is_async, attempts, heartbeat_at, available_at, "
    "idempotency_key, idempotency_fingerprint, description, created_at, updated_at, brand_id, "
    "created_by_id, job_type_id"
)
BARE_COLUMNS = (
    "job_id, status, priority, progress_percentage, description, input_data, result_data, created_at, updated_at"
)


def _copy(conn, table: str, columns: str, rows) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for i, row in enumerate(rows, 1):
            buffer.write("\t".join(row))
            buffer.write("\n")
            if i % 20000 == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())


def _secondary_indexes(conn, table: str) -> list[tuple[str, str]]:
    """Indexes that no constraint owns (those can be dropped for the load and rebuilt after it)."""
    return conn.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_class t ON t.oid = x.indrelid WHERE t.relname = %s "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)",
        [table],
    ).fetchall()


def load_jobs(url: str, ctx: dict, total: int) -> dict:
    """Load `total` jobs (and as many bare rows) into an emptied database, indexes rebuilt after. Timings."""
    timings = {}
    t0 = time.perf_counter()
    with pg(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
                "WHERE k.confrelid = 'ai_core_aijob'::regclass AND k.contype = 'f'"
            )
        ]
        conn.execute(
            "TRUNCATE ai_core_aijob, ai_core_jobdailystat, bench_baseline_barejob, bench_load, "
            + ", ".join(sorted(set(tables)))
            + " RESTART IDENTITY CASCADE"
        )
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET session_replication_role = replica")  # skip FK triggers: the loader picks valid ids
        indexes = {t: _secondary_indexes(conn, t) for t in ("ai_core_aijob", "bench_baseline_barejob")}
        for table_indexes in indexes.values():
            for name, _ in table_indexes:
                conn.execute(f'DROP INDEX "{name}"')
        t1 = time.perf_counter()
        _copy(
            conn,
            "ai_core_aijob",
            JOB_COLUMNS,
            job_rows(
                0,
                total,
                brand_ids=ctx["brand_ids"],
                user_ids=ctx["user_ids"],
                types=ctx["types"],
                now=ctx["now"],
            ),
        )
        timings["copy_jobs_s"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        # The same rows for the baseline's table, copied inside the server rather than generated again.
        conn.execute(
            f"INSERT INTO bench_baseline_barejob ({BARE_COLUMNS}) "
            "SELECT 'bare_' || substr(job_id, 8), status, "
            "priority, progress_percentage, description, input_data, result_data, created_at, updated_at "
            "FROM ai_core_aijob ORDER BY id"
        )
        timings["copy_bare_s"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        for table_indexes in indexes.values():
            for _, definition in table_indexes:
                conn.execute(definition)
        timings["indexes_s"] = time.perf_counter() - t1
        conn.execute("SET session_replication_role = origin")
        conn.execute("INSERT INTO bench_load VALUES (%s, %s, now())", [total, LOADER_VERSION])
    timings["total_s"] = time.perf_counter() - t0
    return {k: round(v, 1) for k, v in timings.items()}


def loaded(url: str, size: int) -> bool:
    with pg(url) as conn:
        row = conn.execute(
            "SELECT size, version, loaded_at > now() - make_interval(hours => %s) FROM bench_load",
            [REUSE_HOURS],
        ).fetchone()
    return row is not None and row[0] == size and row[1] == LOADER_VERSION and row[2]


def prepare(url: str, ctx: dict) -> dict:
    """Before every measurement: the roll-up recomputed from the jobs (one INSERT … SELECT … GROUP BY),
    statistics fresh, and the jobs the detail benchmark reads given a history of three events."""
    timings = {}
    with pg(url) as conn:
        t1 = time.perf_counter()
        with conn.transaction():
            conn.execute("DELETE FROM ai_core_jobdailystat")
            conn.execute(
                "INSERT INTO ai_core_jobdailystat (brand_id, day, job_type_id, status, jobs, cost_micros) "
                "SELECT brand_id, (created_at AT TIME ZONE 'UTC')::date, job_type_id, status, count(*), 0 "
                "FROM ai_core_aijob GROUP BY 1, 2, 3, 4"
            )
        timings["rollup_s"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        for table in (
            "ai_core_aijob",
            "ai_core_aijobevent",
            "ai_core_jobdailystat",
            "bench_baseline_barejob",
        ):
            conn.execute(f"VACUUM ANALYZE {table}")
        timings["vacuum_analyze_s"] = time.perf_counter() - t1
        detail_ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM ai_core_aijob WHERE brand_id = %s AND status = 'completed' ORDER BY id LIMIT 200",
                [ctx["brand_ids"][0]],
            )
        ]
        conn.execute("DELETE FROM ai_core_aijobevent WHERE job_id = ANY(%s)", [detail_ids])
        conn.execute(
            "INSERT INTO ai_core_aijobevent (job_id, from_status, to_status, at, attempt, reason) "
            "SELECT j.id, e.f, e.t, j.created_at, e.a, e.r FROM ai_core_aijob j, (VALUES "
            "('', 'pending', 0, 'created'), ('pending', 'running', 1, 'claimed'), "
            "('running', 'completed', 1, 'provider answered')) AS e(f, t, a, r) WHERE j.id = ANY(%s)",
            [detail_ids],
        )
        ctx["detail_ids"] = detail_ids
        ctx["bare_ids"] = [r[0] for r in conn.execute("SELECT id FROM bench_baseline_barejob ORDER BY id LIMIT 200")]
        ctx["rows"] = conn.execute("SELECT count(*) FROM ai_core_aijob").fetchone()[0]
    return {k: round(v, 1) for k, v in timings.items()}


def provision_here() -> None:
    """(With DATABASE_URL set.) The bench company: 20 brands, a company admin, four members; prints JSON."""
    import django

    django.setup()
    from rest_framework_simplejwt.tokens import RefreshToken

    from ai_core.models import AIJobType
    from business.models import Brand
    from business.services import user_provision

    names = [f"bench-{i:02d}" for i in range(1, BRANDS + 1)]
    admin = user_provision(
        username="bench",
        password="bench-pass-1",
        company_name="BenchCo",
        member_of=names[:1],
        company_admin=True,
    )
    users = [admin] + [
        user_provision(
            username=f"bench-user-{i}", password="bench-pass-1", company_name="BenchCo", member_of=names[i::4]
        )
        for i in range(4)
    ]
    brands = {b.name: b.id for b in Brand.objects.filter(name__in=names)}
    print(
        json.dumps(
            {
                "brand_ids": [brands[n] for n in names],
                "user_ids": [u.id for u in users],
                "types": {t.name: (t.id, t.requires_async) for t in AIJobType.objects.filter(name__in=TYPE_WEIGHTS)},
                "token": str(RefreshToken.for_user(admin).access_token),
            }
        )
    )


def provision(url: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.api", "--provision"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": url},
    ).stdout
    ctx = json.loads(out.strip().splitlines()[-1])
    ctx["now"] = datetime.now(UTC).replace(microsecond=0)
    return ctx


# --- server and load generator ----------------------------------------------------------------------


def start_server(url: str) -> subprocess.Popen:
    log = open(ROOT / "var" / "bench-gunicorn.log", "w")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--workers",
            "2",
            "--worker-class",
            "sync",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--backlog",
            "256",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, **SERVER_ENV, "DATABASE_URL": url},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.5).close()
            return server
        except OSError:
            if server.poll() is not None:
                raise RuntimeError("gunicorn exited; see var/bench-gunicorn.log") from None
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start listening")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


LUA = """
local paths = {%(paths)s}
local i = 0
wrk.method = "%(method)s"
%(body)s
%(headers)s
request = function()
  i = i %% #paths + 1
  return wrk.format(nil, paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "status_errors": %%d, "socket_errors": %%d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def wrk(
    paths: list[str],
    *,
    method: str = "GET",
    body: dict | None = None,
    headers: dict | None = None,
    connections: int = 1,
    seconds: float = 5.0,
) -> dict:
    def lua_str(value: str) -> str:
        return json.dumps(value)  # a JSON string literal is a valid Lua string literal here (ASCII)

    headers = dict(headers or {})
    if body is not None:
        headers["Content-Type"] = "application/json"
    script = LUA % {
        "paths": ", ".join(lua_str(p) for p in paths),
        "method": method,
        "body": f"wrk.body = {lua_str(json.dumps(body))}" if body is not None else "",
        "headers": "\n".join(f"wrk.headers[{lua_str(k)}] = {lua_str(v)}" for k, v in headers.items()),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                handle.name,
                f"http://127.0.0.1:{PORT}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    line = next(line for line in out.splitlines() if line.startswith("WRKJSON "))
    raw = json.loads(line[len("WRKJSON ") :])
    return {
        "duration_s": raw["duration_us"] / 1e6,
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "requests": raw["requests"],
        "errors": raw["status_errors"] + raw["socket_errors"],
    }


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def _merge(parts: list[dict]) -> dict:
    requests = sum(p["requests"] for p in parts)
    duration = sum(p["duration_s"] for p in parts)
    return {
        "rps": round(requests / duration, 1),
        "p50_ms": round(sum(p["p50_ms"] for p in parts) / len(parts), 2),
        "p90_ms": round(sum(p["p90_ms"] for p in parts) / len(parts), 2),
        "p99_ms": max(p["p99_ms"] for p in parts),
        "requests": requests,
        "errors": sum(p["errors"] for p in parts),
    }


def _warm(paths: list[str], kwargs: dict) -> None:
    """Until both workers answer this endpoint briskly: their first requests import and connect lazily
    (the first job creation sets up the broker client), which on a busy machine takes seconds."""
    deadline = time.monotonic() + 60
    while True:
        run = wrk(paths, **{**kwargs, "connections": 4, "seconds": 2.0})
        if run["requests"] >= 10 or time.monotonic() > deadline:
            return


def measure(ctx: dict) -> dict:
    """Every endpoint once; an endpoint and its bare twin alternate in short slices (A B A B), so a burst of
    load from elsewhere on the machine lands on both sides of a ratio rather than on one."""
    reader = {"Authorization": f"Bearer {ctx['token']}", "X-Brand-ID": str(ctx["brand_ids"][0])}
    # Jobs are created in another brand than the one read, so the reads measure the loaded data only.
    writer = {**reader, "X-Brand-ID": str(ctx["brand_ids"][-1])}
    create_body = {
        "job_type": "chat_completion",
        "priority": "normal",
        "description": "Bench created job",
        "input_data": {"messages": [{"role": "user", "content": "Say hello"}]},
    }
    bare_body = {
        "status": "pending",
        "priority": "normal",
        "description": "Bench created job",
        "input_data": create_body["input_data"],
    }
    throughput = {"connections": 4}
    latency = {"connections": 1}
    runs = {
        "create": (["/ai/jobs/"], {"method": "POST", "body": create_body, "headers": writer, **throughput}),
        "bare_create": (["/bench/bare-jobs/"], {"method": "POST", "body": bare_body, **throughput}),
        "detail": ([f"/ai/jobs/{i}/" for i in ctx["detail_ids"]], {"headers": reader, **throughput}),
        "bare_detail": ([f"/bench/bare-jobs/{i}/" for i in ctx["bare_ids"]], throughput),
        "list": (["/ai/jobs/"], {"headers": reader, **latency}),
        "bare_list": (["/bench/bare-jobs/"], latency),
        "list_status": (["/ai/jobs/?status=completed"], {"headers": reader, **latency}),
        "list_search": ([f"/ai/jobs/?search={SEARCH_WORD}"], {"headers": reader, **latency}),
        "dashboard": (["/ai/jobs/dashboard/"], {"headers": reader, **latency}),
        "dashboard_company": (["/ai/jobs/dashboard/?scope=company"], {"headers": reader, **latency}),
    }
    groups = [
        ("create", "bare_create"),
        ("detail", "bare_detail"),
        ("list", "bare_list"),
        ("list_status",),
        ("list_search",),
        ("dashboard",),
        ("dashboard_company",),
    ]
    results = {}
    for group in groups:
        for name in group:
            paths, kwargs = runs[name]
            _warm(paths, kwargs)
        parts: dict[str, list] = {name: [] for name in group}
        for _ in range(2):
            for name in group:
                paths, kwargs = runs[name]
                parts[name].append(wrk(paths, **kwargs, seconds=SECONDS / 2))
        for name in group:
            results[name] = _merge(parts[name])
            print(
                f"  {name:<18} {results[name]['rps']:>8.1f} req/s  p50 {results[name]['p50_ms']:>7.2f} ms"
                f"  p99 {results[name]['p99_ms']:>7.2f} ms  errors {results[name]['errors']}",
                flush=True,
            )
        if runs[group[0]][1].get("method") == "POST":
            flush_broker()
    return results


# --- report ------------------------------------------------------------------------------------------


def targets(by_size: dict[int, dict]) -> list[dict]:
    sizes = sorted(by_size)
    small, big = by_size[sizes[0]]["runs"], by_size[sizes[-1]]["runs"]
    rows = []
    for size in sizes:
        runs = by_size[size]["runs"]
        for name, bare, factor in (("create", "bare_create", 0.7), ("detail", "bare_detail", 0.8)):
            ratio = runs[name]["rps"] / runs[bare]["rps"] if runs[bare]["rps"] else 0.0
            rows.append(
                {
                    "benchmark": f"{name} req/s vs bare @{size:,}",
                    "value": round(ratio, 2),
                    "target": f">= {factor}x",
                    "ok": ratio >= factor,
                }
            )
    for name in ("list_status", "list_search"):
        ratio = big[name]["p50_ms"] / small[name]["p50_ms"] if small[name]["p50_ms"] else 0.0
        rows.append(
            {
                "benchmark": f"{name} p50 @{sizes[-1]:,} / @{sizes[0]:,}",
                "value": round(ratio, 2),
                "target": "<= 3x",
                "ok": ratio <= 3,
            }
        )
        rows.append(
            {
                "benchmark": f"{name} p50 ms @{sizes[-1]:,}",
                "value": big[name]["p50_ms"],
                "target": "<= 100 ms",
                "ok": big[name]["p50_ms"] <= 100,
            }
        )
    for name, limit in (("dashboard", 50), ("dashboard_company", 150)):
        rows.append(
            {
                "benchmark": f"{name} p50 ms @{sizes[-1]:,}",
                "value": big[name]["p50_ms"],
                "target": f"<= {limit} ms",
                "ok": big[name]["p50_ms"] <= limit,
            }
        )
    return rows


def print_tables(by_size: dict[int, dict], target_rows: list[dict]) -> None:
    names = list(next(iter(by_size.values()))["runs"])
    header = f"{'endpoint':<18}" + "".join(f"{f'{s:,} jobs':>30}" for s in sorted(by_size))
    print("\n" + header + "\n" + f"{'':<18}" + f"{'req/s   p50 ms   p99 ms':>30}" * len(by_size))
    for name in names:
        cells = "".join(
            f"{r['rps']:>14.1f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
            for r in (by_size[s]["runs"][name] for s in sorted(by_size))
        )
        print(f"{name:<18}{cells}")
    print(f"\n{'target':<42}{'value':>10}  {'goal':<10} met")
    for row in target_rows:
        print(f"{row['benchmark']:<42}{row['value']:>10}  {row['target']:<10} {'yes' if row['ok'] else 'NO'}")


def main() -> int:
    if not shutil.which("wrk"):
        print(
            "wrk is not installed (`apt-get install wrk`; `make bench` does it when run as root)",
            file=sys.stderr,
        )
        return 1
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    by_size: dict[int, dict] = {}
    for size in SIZES:
        url = db_url(size)
        ensure_database(url)
        ctx = provision(url)
        timings: dict = {"reused": True}
        if os.environ.get("BENCH_RELOAD") or not loaded(url, size):
            print(f"loading {size:,} jobs into {url.rpartition('/')[2]} …", flush=True)
            timings = load_jobs(url, ctx, size)
        timings.update(prepare(url, ctx))
        print(f"{size:,} jobs ({ctx['rows']:,} rows now): load/prepare (s) {timings}", flush=True)
        server = start_server(url)
        try:
            by_size[size] = {
                "load": timings,
                "rows": ctx["rows"],
                "runs": measure(ctx),
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            }
        finally:
            stop_server(server)
            flush_broker()
    target_rows = targets(by_size)
    print_tables(by_size, target_rows)
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
        },
        "method": {
            "server": "gunicorn, 2 sync workers",
            "load_generator": "wrk, 1 thread",
            "throughput_connections": 4,
            "latency_connections": 1,
            "seconds": SECONDS,
            "brands": BRANDS,
            "search_word": SEARCH_WORD,
        },
        "sizes": {str(k): v for k, v in by_size.items()},
        "rows": target_rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--provision"]:
        provision_here()
        sys.exit(0)
    sys.exit(main())
