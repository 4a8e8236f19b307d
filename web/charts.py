"""Chart definitions for the console: plain data the page's Chart.js (web/static/web/charts.js) draws.

Each chart also carries its numbers as a table (shown under the chart, read by screen readers), so nothing is
only in pixels. Money values travel as strings of the Decimal amounts; the browser only formats them.
"""

from decimal import Decimal

STATUS_COLORS = {
    "pending": "#94a3b8",
    "running": "#2563eb",
    "completed": "#16a34a",
    "failed": "#dc2626",
    "cancelled": "#f59e0b",
    "timeout": "#7c3aed",
}


def chart(
    key: str,
    title: str,
    kind: str,
    labels: list[str],
    series: list[tuple[str, list]],
    *,
    money: bool = False,
    horizontal: bool = False,
    colors: list[str] | None = None,
    unit: str = "",
) -> dict:
    """One chart: `series` is [(name, values)], one value per label."""
    return {
        "id": f"chart-{key}",
        "data_id": f"chart-{key}-data",
        "title": title,
        "kind": kind,
        "labels": labels,
        "series": [{"name": name, "values": [_number(v) for v in values]} for name, values in series],
        "money": money,
        "horizontal": horizontal,
        "colors": colors,
        "unit": unit,
        "height": max(220, 44 + 30 * len(labels)) if horizontal else 240,
        "table": {
            "head": ["", *[name for name, _ in series]],
            "rows": [[label, *[_shown(s[1][i], money, unit) for s in series]] for i, label in enumerate(labels)],
        },
        "empty": not any(any(_number(v) for v in values) for _, values in series),
    }


def _number(value):
    # A chart plots floats; the exact Decimal is what the table shows.
    return float(value) if isinstance(value, Decimal | str) else value


def _shown(value, money: bool, unit: str) -> str:
    if value is None:
        return "–"
    if money:
        return f"${value}"
    return f"{value}{unit}"


def daily(key: str, title: str, days: list[dict], field: str, *, money: bool = False, kind: str = "bar") -> dict:
    """A per-day series (`days` oldest first)."""
    return chart(key, title, kind, [d["date"] for d in days], [(title, [d[field] for d in days])], money=money)


def breakdown(key: str, title: str, rows: list[tuple[str, float]], *, money: bool = False) -> dict:
    """Counts or amounts by category, as horizontal bars (labels stay readable at any width)."""
    return chart(
        key, title, "bar", [label for label, _ in rows], [(title, [v for _, v in rows])], money=money, horizontal=True
    )


def status_breakdown(stats: dict[str, int]) -> dict:
    statuses = [s for s in STATUS_COLORS if stats.get(s)]
    return chart(
        "status",
        "Jobs by status",
        "doughnut",
        [f"{s} ({stats[s]})" for s in statuses],
        [("jobs", [stats[s] for s in statuses])],
        colors=[STATUS_COLORS[s] for s in statuses],
    )
