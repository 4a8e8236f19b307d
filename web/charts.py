"""Dashboard charts as inline SVG, drawn on the server by pygal (no chart JavaScript shipped to the page)."""

from decimal import Decimal

import pygal
from pygal.style import Style

STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#334155",
    foreground_strong="#0f172a",
    foreground_subtle="#cbd5e1",
    colors=("#2563eb", "#16a34a", "#dc2626", "#f59e0b", "#7c3aed", "#64748b"),
    font_family="system-ui, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    title_font_size=14,
)
STATUS_COLORS = {
    "pending": "#94a3b8",
    "running": "#2563eb",
    "completed": "#16a34a",
    "failed": "#dc2626",
    "cancelled": "#f59e0b",
    "timeout": "#7c3aed",
}


def _options(**extra) -> dict:
    # js=[]: pygal's tooltips script lives on a CDN; the dashboard makes no third-party requests.
    return {
        "style": STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "height": 260,
        "width": 640,
        "show_legend": False,
        "margin": 12,
        **extra,
    }


def _render(chart) -> str:
    return chart.render(is_unicode=True)


def daily_jobs(daily_activity: list[dict]) -> str:
    days = list(reversed(daily_activity))  # oldest first, left to right
    chart = pygal.Bar(**_options(title="Jobs per day (30 days)", x_label_rotation=45, show_minor_x_labels=False))
    chart.x_labels = [d["date"][5:] for d in days]
    chart.x_labels_major = [d["date"][5:] for d in days[::5]]
    chart.add("jobs", [d["jobs"] for d in days])
    return _render(chart)


def daily_cost(daily_activity: list[dict]) -> str:
    days = list(reversed(daily_activity))
    chart = pygal.Line(
        **_options(
            title="Cost per day, USD (30 days)",
            x_label_rotation=45,
            fill=True,
            show_minor_x_labels=False,
            value_formatter=lambda v: f"${v:,.4f}",
        )
    )
    chart.x_labels = [d["date"][5:] for d in days]
    chart.x_labels_major = [d["date"][5:] for d in days[::5]]
    # Plotting needs floats; the amounts themselves stay Decimal strings everywhere else.
    chart.add("cost", [float(Decimal(d["total_cost"])) for d in days])
    return _render(chart)


def status_breakdown(stats: dict[str, int]) -> str:
    statuses = [s for s in STATUS_COLORS if stats.get(s)]
    style = Style(**{**STYLE.to_dict(), "colors": tuple(STATUS_COLORS[s] for s in statuses) or ("#cbd5e1",)})
    chart = pygal.Pie(
        **_options(title="Jobs by status", inner_radius=0.45, show_legend=True, legend_at_bottom=True, style=style)
    )
    for status in statuses:
        chart.add(status, stats[status])
    return _render(chart)


def horizontal_bars(title: str, rows: list[tuple[str, float]], *, money: bool = False) -> str:
    options = _options(title=title, height=max(160, 40 + 34 * len(rows)))
    if money:
        options["value_formatter"] = lambda v: f"${v:,.4f}"
    chart = pygal.HorizontalBar(**options)
    chart.x_labels = [label for label, _ in rows]
    chart.add(title, [value for _, value in rows])
    return _render(chart)
