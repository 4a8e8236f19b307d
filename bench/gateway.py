"""Gateway benchmark: the same `openai` SDK client calling the fake OpenAI server directly, and through AI Core's
/v1/chat/completions (a brand key, a job per call: creation, claim, the provider call, usage, cost, events).

    python -m bench.gateway        (or `make bench`)

The API served by uvicorn (ASGI, as `make run` serves it) with BENCH_GATEWAY_WORKERS processes (default 2, the
machine's cores: a call is Python CPU, one core per process) on PostgreSQL; the fake server answers at 0 ms.
Measured in the same run: added latency p50 / p99 at 1 client, non-streaming (targets ≤ 3 ms / ≤ 15 ms);
throughput at 16 concurrent clients (≥ 0.5 × direct); time to the first streamed token, added p50 (≤ 5 ms).
Environment: BENCH_DATABASE_URL (postgres://…/aicore_bench_gateway, created if missing), BENCH_GATEWAY_CALLS
(default 300), BENCH_GATEWAY_HTTP (uvicorn's --http: auto, the default, is httptools; h11 to compare).
The machine may be shared: figures are indicative.
"""

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench.engine import ensure_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "gateway.json"
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aicore_bench_gateway")
CALLS = int(os.environ.get("BENCH_GATEWAY_CALLS", "300"))
WORKERS = int(os.environ.get("BENCH_GATEWAY_WORKERS", "2"))
# uvicorn's HTTP parser: "auto" (httptools, a runtime dependency, as `make run`), or "h11" to compare.
HTTP = os.environ.get("BENCH_GATEWAY_HTTP", "auto")
CONCURRENCY = 16
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark"}]

os.environ.update(
    {
        "DATABASE_URL": DB_URL,
        "AICORE_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
        "OPENAI_API_KEY": "sk-bench",
    }
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def brand_key() -> str:
    from ai_core.job_type_defaults import DEFAULT_JOB_TYPES
    from ai_core.models import AIJobType
    from business.services import api_key_create, user_provision

    for spec in DEFAULT_JOB_TYPES:
        AIJobType.objects.update_or_create(name=spec["name"], defaults=spec)
    user = user_provision(username="bench-gw", password=None, company_name="BenchGateway", admin_of=["GW"])
    return api_key_create(brand=user.memberships.get().brand, user=user, name="bench")[1]


def start_api(fake_url: str) -> tuple[subprocess.Popen, int]:
    """uvicorn, WORKERS processes, on a listening socket made here (returns the server and its port).

    The socket is ours so that it has TCP_NODELAY, which the connections accepted on it inherit: uvicorn's
    own socket for several workers has none, and then a response written in two parts (headers, body) waits
    for the client's delayed ACK, ~40 ms a call.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    env = {**os.environ, "OPENAI_BASE_URL": fake_url}
    argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--fd", str(listener.fileno())]
    argv += ["--log-level", "warning", "--no-access-log", "--lifespan", "off", "--workers", str(WORKERS)]
    argv += ["--http", HTTP]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, pass_fds=[listener.fileno()])
    listener.close()  # the server holds it now
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the API exited")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.1)
    raise RuntimeError("the API did not start")


def latencies(client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        out.append((time.perf_counter() - started) * 1000)
    return out


def first_token_ms(client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        first = None
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = (time.perf_counter() - started) * 1000
        out.append(first)
    return out


def throughput(make_client, n: int) -> float:
    clients = [make_client() for _ in range(CONCURRENCY)]
    per_client = n // CONCURRENCY
    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda c: latencies(c, per_client), clients))
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    return per_client * CONCURRENCY / elapsed


def api_cpu_seconds(api: subprocess.Popen) -> float | None:
    """CPU time (user + system) the API's processes (uvicorn and its workers) have used so far; Linux only.
    Unlike wall-clock figures on a shared machine, the CPU a call costs the API does not depend on the load."""
    pids, total = [api.pid], 0
    try:
        children = Path(f"/proc/{api.pid}/task/{api.pid}/children").read_text().split()
        pids += [int(pid) for pid in children]
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    except (OSError, ValueError, IndexError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    import django

    ensure_database(DB_URL)
    django.setup()
    import openai

    from testing.fake_llm import FakeLLM

    key = brand_key()
    with FakeLLM() as fake:
        api, port = start_api(fake.openai_base_url)
        try:

            def direct():
                return openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-bench", max_retries=0)

            def through():
                return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)

            results = {}
            for name, make in (("direct", direct), ("gateway", through)):
                with make() as client:
                    latencies(client, 30)  # warm-up: connections, memos, prepared statements
                    lat = latencies(client, CALLS)
                    ttft = first_token_ms(client, CALLS // 3)
                cpu_before = api_cpu_seconds(api)
                calls_per_s = throughput(make, CALLS * 2)
                cpu_after = api_cpu_seconds(api)
                results[name] = {
                    "p50_ms": round(pct(lat, 0.5), 3),
                    "p99_ms": round(pct(lat, 0.99), 3),
                    "ttft_p50_ms": round(pct(ttft, 0.5), 3),
                    "calls_per_s_16_clients": round(calls_per_s, 1),
                    "mean_ms": round(statistics.mean(lat), 3),
                }
                if name == "gateway" and cpu_before is not None and cpu_after is not None:
                    # The 16-client phase's calls: the API's own CPU per call (PostgreSQL's is not counted).
                    per_call = (cpu_after - cpu_before) / (CALLS * 2 // CONCURRENCY * CONCURRENCY)
                    results[name]["api_cpu_ms_per_call"] = round(per_call * 1000, 2)
        finally:
            api.terminate()
            api.wait(20)
    d, g = results["direct"], results["gateway"]
    added_p50 = round(g["p50_ms"] - d["p50_ms"], 3)
    added_p99 = round(g["p99_ms"] - d["p99_ms"], 3)
    added_ttft = round(g["ttft_p50_ms"] - d["ttft_p50_ms"], 3)
    ratio = round(g["calls_per_s_16_clients"] / d["calls_per_s_16_clients"], 3)
    rows = [
        {"benchmark": "added latency p50, 1 client (ms)", "value": added_p50, "target": "<= 3", "ok": added_p50 <= 3},
        {"benchmark": "added latency p99, 1 client (ms)", "value": added_p99, "target": "<= 15", "ok": added_p99 <= 15},
        {"benchmark": "throughput 16 clients, gateway/direct", "value": ratio, "target": ">= 0.5", "ok": ratio >= 0.5},
        {
            "benchmark": "time to first token added, p50 (ms)",
            "value": added_ttft,
            "target": "<= 5",
            "ok": added_ttft <= 5,
        },
    ]
    document = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "calls": CALLS,
        "http": HTTP,
        "direct": d,
        "gateway": g,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    for row in rows:
        print(f"{row['benchmark']:<44}{row['value']!s:>10}  {row['target']:<8} {'yes' if row['ok'] else 'NO'}")
    print(json.dumps({"direct": d, "gateway": g}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
