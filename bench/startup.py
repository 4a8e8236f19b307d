"""Start-up benchmark: how long `make run` takes to answer, and to have its worker ready.

    python -m bench.startup        (or `make bench`, BENCH_MODULES=startup for this one alone)

Runs `make run` on a free port with a SQLite database and embedded broker in a temporary directory, as a
user does, and measures from the command to the first 200 on /healthz, and to the worker's "ready." line:

1. first start: an empty database (migrate from scratch, demo data), the venv already installed;
2. warm starts (BENCH_STARTUP_RUNS, default 3): the same database again — what every later `make run` costs.

Each run is stopped as Ctrl-C stops it (SIGINT to its process group). No test asserts these figures; the machine
may be shared, so they are indicative. A cold start (no .venv) is bounded by pip's download time and is not
measured here (see README).
"""

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "startup.json"
RUNS = int(os.environ.get("BENCH_STARTUP_RUNS", "3"))
TARGET_WARM_SECONDS = 10.0
GIVE_UP_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def one_start(data_dir: Path) -> dict:
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{data_dir / 'aicore.sqlite3'}",
        CELERY_BROKER_URL=f"sqla+sqlite:///{data_dir / 'broker.sqlite3'}",
        AICORE_ENV="development",
        PYTHONWARNINGS="ignore",
    )
    log_path = data_dir / f"run-{port}.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        run = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to stop it the way Ctrl-C does
        )
    http_seconds = worker_seconds = None
    try:
        while time.monotonic() - started < GIVE_UP_SECONDS and run.poll() is None:
            if http_seconds is None and answers(f"http://127.0.0.1:{port}/healthz"):
                http_seconds = time.monotonic() - started
            if worker_seconds is None and b" ready." in log_path.read_bytes():
                worker_seconds = time.monotonic() - started
            if http_seconds is not None and worker_seconds is not None:
                break
            time.sleep(0.05)
    finally:
        os.killpg(run.pid, signal.SIGINT)
        try:
            run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    if http_seconds is None or worker_seconds is None:
        raise RuntimeError(f"`make run` did not come up:\n{log_path.read_text(errors='replace')[-3000:]}")
    return {"http_seconds": round(http_seconds, 2), "worker_ready_seconds": round(worker_seconds, 2)}


def report(what: str, run: dict) -> None:
    print(f"{what}: HTTP {run['http_seconds']} s, worker ready {run['worker_ready_seconds']} s", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="aicore-bench-startup-") as tmp:
        data_dir = Path(tmp)
        first = one_start(data_dir)
        report("first start (empty database)", first)
        warm = []
        for index in range(RUNS):
            warm.append(one_start(data_dir))
            report(f"warm start {index + 1}", warm[-1])
    warm_http = statistics.median(run["http_seconds"] for run in warm)
    warm_worker = statistics.median(run["worker_ready_seconds"] for run in warm)
    results = {
        "benchmark": "startup",
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "setup": "make run, SQLite + embedded broker in a temporary directory, .venv installed",
        "first_start": first,
        "warm_starts": warm,
        "rows": [
            {"benchmark": "first start, empty database: first 200 on /healthz, s", "value": first["http_seconds"]},
            {"benchmark": "first start: worker ready, s", "value": first["worker_ready_seconds"]},
            {
                "benchmark": f"warm start (median of {RUNS}): first 200 on /healthz, s",
                "value": warm_http,
                "target": f"<= {TARGET_WARM_SECONDS:g}",
                "ok": warm_http <= TARGET_WARM_SECONDS,
            },
            {"benchmark": f"warm start (median of {RUNS}): worker ready, s", "value": warm_worker},
        ],
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for row in results["rows"]:
        print(f"  {row['benchmark']:<58}{row['value']:>8}  {row.get('target', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
