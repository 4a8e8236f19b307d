"""`aicore`: AI Core from the terminal.

    aicore submit chat_completion --input prompt.json --wait
    aicore jobs list --status running
    aicore jobs show ai_job_abc123def456
    aicore jobs cancel ai_job_abc123def456
    aicore dashboard [--company]
    aicore batch submit products.jsonl --job-type text_generation --window 24h --wait
    aicore batch show batch_abc123def456 | aicore batch results batch_abc123def456 > out.jsonl

Connection from flags or the environment: AICORE_URL, AICORE_USERNAME, AICORE_PASSWORD (or AICORE_TOKEN),
AICORE_BRAND.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from aicore.client import AICoreClient, AICoreError

EXIT_OK, EXIT_JOB_NOT_COMPLETED, EXIT_ERROR = 0, 1, 2
STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "timeout": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "pending": "white",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aicore", description="Submit and follow AI Core jobs.")
    parser.add_argument("--url", default=os.environ.get("AICORE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--username", default=os.environ.get("AICORE_USERNAME"))
    parser.add_argument("--password", default=os.environ.get("AICORE_PASSWORD"))
    parser.add_argument("--token", default=os.environ.get("AICORE_TOKEN"), help="an access token instead of a login")
    parser.add_argument("--brand", default=os.environ.get("AICORE_BRAND"), help="brand id (X-Brand-ID)")
    parser.add_argument("--json", action="store_true", help="print raw JSON instead of tables")
    commands = parser.add_subparsers(dest="command", required=True)

    submit = commands.add_parser("submit", help="submit a job")
    submit.add_argument("job_type")
    submit.add_argument("--input", required=True, help="JSON file with input_data ('-' reads stdin)")
    submit.add_argument("--priority", default="normal", choices=["low", "normal", "high", "urgent"])
    submit.add_argument("--description", default="")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--wait", action="store_true", help="follow the job to its end with a progress bar")
    submit.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")

    jobs = commands.add_parser("jobs", help="list, show or cancel jobs").add_subparsers(dest="action", required=True)
    listing = jobs.add_parser("list")
    for name in ("status", "priority", "job-type", "search", "ordering"):
        listing.add_argument(f"--{name}")
    listing.add_argument("--limit", type=int, default=20)
    jobs.add_parser("show").add_argument("job_id")
    jobs.add_parser("cancel").add_argument("job_id")

    batch = commands.add_parser("batch", help="bulk submission: submit a JSONL file, follow, cancel, results")
    batch_actions = batch.add_subparsers(dest="action", required=True)
    batch_submit = batch_actions.add_parser("submit", help="one job per line: {input_data, custom_id?, …}")
    batch_submit.add_argument("file", help="JSONL file ('-' reads stdin)")
    batch_submit.add_argument("--job-type", default="chat_completion")
    batch_submit.add_argument("--window", default="now", choices=["now", "24h"], help="completion window")
    batch_submit.add_argument("--priority", default="normal", choices=["low", "normal", "high", "urgent"])
    batch_submit.add_argument("--description", default="")
    batch_submit.add_argument("--partial", action="store_true", help="create the valid jobs when some are invalid")
    batch_submit.add_argument("--wait", action="store_true", help="follow the batch to its end with a progress bar")
    batch_submit.add_argument("--timeout", type=float, default=None)
    batch_submit.add_argument("--poll", type=float, default=1.0, help="seconds between two looks while waiting")
    for name in ("show", "cancel", "results"):
        batch_actions.add_parser(name).add_argument("batch_id")

    dashboard = commands.add_parser("dashboard", help="the brand's (or company's) activity")
    dashboard.add_argument("--company", action="store_true", help="all brands of the company (company admins)")
    commands.add_parser("job-types", help="the job catalogue")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    try:
        with _connect(args) as client:
            return COMMANDS[args.command](client, args, console)
    except AICoreError as exc:
        Console(stderr=True, highlight=False).print(
            f"[red]error[/red] {exc.status_code} {exc.error_code}: {exc.detail}"
        )
        return EXIT_ERROR
    except (OSError, ValueError, TimeoutError) as exc:
        Console(stderr=True, highlight=False).print(f"[red]error[/red] {exc}")
        return EXIT_ERROR


def _connect(args) -> AICoreClient:
    if args.token:
        return AICoreClient(args.url, access=args.token, brand=args.brand)
    if not args.username:
        raise ValueError("give --username/--password (or AICORE_USERNAME/AICORE_PASSWORD) or --token")
    return AICoreClient(args.url, username=args.username, password=args.password or "", brand=args.brand)


def _read_input(source: str) -> dict:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the input file must hold a JSON object (the job's input_data)")
    return data


def cmd_submit(client: AICoreClient, args, console: Console) -> int:
    job = client.submit(
        args.job_type,
        _read_input(args.input),
        priority=args.priority,
        description=args.description,
        idempotency_key=args.idempotency_key,
    )
    if not args.wait:
        _print(console, args, job, lambda: console.print(f"{job['job_id']} {_status(job['status'])}"))
        return EXIT_OK
    console.print(f"submitted {job['job_id']} ({job['job_type']['name']})")
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(job["status"], total=100)

        def on_progress(percent: int, status: str) -> None:
            progress.update(bar, completed=percent, description=status)

        final = client.wait(job, timeout=args.timeout, on_progress=on_progress)
        progress.update(bar, completed=final["progress_percentage"], description=final["status"])
    _print(console, args, final, lambda: _show_job(console, final))
    return EXIT_OK if final["status"] == "completed" else EXIT_JOB_NOT_COMPLETED


def cmd_jobs(client: AICoreClient, args, console: Console) -> int:
    if args.action == "show":
        job = client.job(args.job_id)
        _print(console, args, job, lambda: _show_job(console, job))
    elif args.action == "cancel":
        answer = client.cancel(args.job_id)
        done = answer["job"]
        line = f"{done['job_id']} {_status(done['status'])} at {done['cancelled_at']}"
        _print(console, args, answer, lambda: console.print(line))
    else:
        filters = {
            "status": args.status,
            "priority": args.priority,
            "job_type": args.job_type,
            "search": args.search,
            "ordering": args.ordering,
            "page_size": min(args.limit, 100),
        }
        jobs = []
        for job in client.iter_jobs(**filters):
            jobs.append(job)
            if len(jobs) >= args.limit:
                break
        _print(console, args, jobs, lambda: console.print(_jobs_table(jobs, width=console.width)))
    return EXIT_OK


def cmd_batch(client: AICoreClient, args, console: Console) -> int:
    if args.action == "show":
        batch = client.batch(args.batch_id)
        _print(console, args, batch, lambda: _show_batch(console, batch))
        return EXIT_OK
    if args.action == "cancel":
        answer = client.cancel_batch(args.batch_id)
        _print(console, args, answer, lambda: console.print(f"cancelled {answer['cancelled']} jobs"))
        return EXIT_OK
    if args.action == "results":
        for row in client.batch_results(args.batch_id):
            console.file.write(json.dumps(row) + "\n")
        return EXIT_OK
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    batch = client.submit_batch(
        args.job_type,
        data,
        completion_window=args.window,
        priority=args.priority,
        description=args.description,
        partial=args.partial,
    )
    for rejected in batch.get("rejected", []):
        console.print(f"[yellow]line {rejected['line']} left out[/yellow]: {rejected.get('error_code')}")
    if not args.wait:
        _print(console, args, batch, lambda: console.print(f"{batch['batch_id']} {batch['counts']['total']} jobs"))
        return EXIT_OK
    console.print(f"submitted {batch['batch_id']} ({batch['counts']['total']} jobs, window {args.window})")
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(batch["status"], total=batch["counts"]["total"])

        def on_progress(current: dict) -> None:
            counts = current["counts"]
            done = sum(counts[s] for s in ("completed", "failed", "cancelled", "timeout"))
            progress.update(bar, completed=done, description=f"{current['status']} ({counts['failed']} failed)")

        final = client.wait_batch(batch["id"], timeout=args.timeout, poll_seconds=args.poll, on_progress=on_progress)
    _print(console, args, final, lambda: _show_batch(console, final))
    return EXIT_OK if final["counts"]["completed"] == final["counts"]["total"] else EXIT_JOB_NOT_COMPLETED


def _show_batch(console: Console, batch: dict) -> None:
    table = Table(title=f"{batch['batch_id']} ({batch['status']}, window {batch['completion_window']})")
    for name in ("total", "pending", "running", "completed", "failed", "cancelled", "timeout"):
        table.add_column(name, justify="right")
    table.add_row(
        *(
            str(batch["counts"][name])
            for name in ("total", "pending", "running", "completed", "failed", "cancelled", "timeout")
        )
    )
    console.print(table)
    console.print(f"progress {batch['progress_percentage']} %, cost so far ${batch['cost_so_far']}")


def cmd_dashboard(client: AICoreClient, args, console: Console) -> int:
    data = client.dashboard(scope="company" if args.company else "brand")

    def render() -> None:
        stats = Table(title=f"AI jobs ({data['scope']})")  # one line per total: fits any terminal
        stats.add_column("total", no_wrap=True)
        stats.add_column("jobs", justify="right")
        for key, value in data["stats"].items():
            stats.add_row(key.replace("_", " "), str(value))
        console.print(stats)
        types = Table(title="Top job types")
        types.add_column("job type")
        types.add_column("jobs", justify="right")
        for row in data["top_job_types"]:
            types.add_row(row["name"], str(row["count"]))
        console.print(types)
        brands = Table(title="Brands")
        for name in ("brand", "jobs", "cost"):
            brands.add_column(name, justify="left" if name == "brand" else "right")
        for row in data["brand_breakdown"]:
            brands.add_row(row["brand_name"], str(row["jobs"]), f"${row['cost']}")
        console.print(brands)
        active = [day for day in data["daily_activity"] if day["jobs"]][:7]
        if active:
            days = Table(title="Recent days")
            for name in ("date", "jobs", "cost"):
                days.add_column(name, justify="left" if name == "date" else "right")
            for day in active:
                days.add_row(day["date"], str(day["jobs"]), f"${day['total_cost']}")
            console.print(days)
        console.print(_jobs_table(data["recent_jobs"], width=console.width, title="Recent jobs"))

    _print(console, args, data, render)
    return EXIT_OK


def cmd_job_types(client: AICoreClient, args, console: Console) -> int:
    types = client.job_types()

    def render() -> None:
        table = Table(title="Job types")
        for name in ("name", "category", "async", "model", "est. seconds"):
            table.add_column(name)
        for t in types:
            table.add_row(
                t["name"],
                t["category"],
                "yes" if t["requires_async"] else "no",
                t["default_model"],
                str(t["estimated_duration_seconds"]),
            )
        console.print(table)

    _print(console, args, types, render)
    return EXIT_OK


COMMANDS = {
    "submit": cmd_submit,
    "jobs": cmd_jobs,
    "batch": cmd_batch,
    "dashboard": cmd_dashboard,
    "job-types": cmd_job_types,
}


def _print(console: Console, args, data, render) -> None:
    if args.json:
        console.print_json(json.dumps(data))
    else:
        render()


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


# From this terminal width on, the jobs table also shows when each job was created.
WIDE_TERMINAL = 100


def _jobs_table(jobs: list[dict], *, width: int, title: str = "Jobs") -> Table:
    """A table that fits `width` (80 columns and up): job_id, type and status are never cut — ids are copied
    from here and a status is read whole — and the description wraps in the room that is left."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("job_id", no_wrap=True, min_width=19)
    table.add_column("type", no_wrap=True)
    table.add_column("status", no_wrap=True, min_width=max(map(len, STATUS_STYLE)))
    table.add_column("%", justify="right", no_wrap=True)
    table.add_column("priority", no_wrap=True)
    wide = width >= WIDE_TERMINAL
    if wide:
        table.add_column("created (UTC)", no_wrap=True)
    table.add_column("description", ratio=1, overflow="fold")
    for job in jobs:
        created = [job["created_at"][5:16].replace("T", " ")] if wide else []
        table.add_row(
            job["job_id"],
            job["job_type"]["name"],
            _status(job["status"]),
            f"{job['progress_percentage']}%",
            job["priority"],
            *created,
            job.get("description") or "",
        )
    return table


def _show_job(console: Console, job: dict) -> None:
    table = Table(show_header=False, title=job["job_id"])
    table.add_column("field", style="bold")
    table.add_column("value")
    for key in (
        "status",
        "job_type",
        "priority",
        "progress_percentage",
        "attempts",
        "created_at",
        "started_at",
        "completed_at",
        "execution_time_seconds",
        "error_code",
        "error_message",
        "description",
    ):
        value = job.get(key)
        if key == "job_type":
            value = job["job_type"]["name"]
        if key == "status":
            value = _status(value)
        if value not in (None, ""):
            table.add_row(key, str(value))
    result = job.get("result_data") or {}
    if result:
        table.add_row("result", result.get("completion") or json.dumps(result)[:2000])
    usage = job.get("usage")
    if usage:
        table.add_row("usage", f"{usage.get('total_tokens')} tokens, ${usage.get('total_cost')}")
    console.print(table)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
