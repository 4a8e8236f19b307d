"""`make bench`: every benchmark module that exists, each in its own process, then one combined summary.

Modules: bench.api (job API vs a bare DRF ModelViewSet), bench.engine (execution engine vs raw Celery and
procrastinate; it runs bench.providers, the provider layer, itself for its table), bench.gateway (/v1/ vs
the provider directly), bench.startup (time for `make run` to answer), bench.bulk (bulk submission and 24 h
provider batches), bench.capacity (a drain against a provider rate limit, and the capacity machinery's
overhead). Each prints its own table and writes bench/results/<name>.json.
Benchmarks measure, they do not assert: the exit status is non-zero only when a module crashed.
BENCH_MODULES=api,engine picks some of them (providers alone: BENCH_MODULES=providers).
"""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = [
    m.strip()
    for m in os.environ.get("BENCH_MODULES", "api,engine,gateway,startup,bulk,capacity").split(",")
    if m.strip()
]


def _scalars(data, prefix=""):
    """Leaf numbers/strings of a results document, as dotted keys (two levels deep is plenty)."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and prefix.count(".") < 1:
            yield from _scalars(value, name + ".")
        elif isinstance(value, int | float | str | bool) and not isinstance(value, dict):
            yield name, value


def summarize(name: str) -> list[str]:
    path = ROOT / "bench" / "results" / f"{name}.json"
    if not path.exists():
        return ["  (no results file)"]
    data = json.loads(path.read_text())
    rows = data.get("rows")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        lines = []
        for row in rows:
            met = {True: "yes", False: "NO"}.get(row.get("ok"), "")
            lines.append(
                f"  {row.get('benchmark', ''):<44}{row.get('value', '')!s:>10}  {row.get('target', '')!s:<10} {met}"
            )
        return lines
    return [
        f"  {key:<50} {value}"
        for key, value in _scalars(data)
        if not key.startswith(("machine", "when", "started", "finished"))
    ][:40]


def main() -> int:
    outcomes = []
    for name in MODULES:
        if importlib.util.find_spec(f"bench.{name}") is None:
            continue
        print(f"\n===== bench.{name} =====", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=ROOT).returncode
        outcomes.append((name, code, time.monotonic() - started))
    print("\n===== summary =====")
    for name, code, seconds in outcomes:
        print(f"bench.{name}: {'ok' if code == 0 else f'CRASHED (exit {code})'} in {seconds:.0f} s")
        print("\n".join(summarize(name)))
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
