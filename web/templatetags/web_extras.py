import json
from datetime import UTC, datetime
from decimal import Decimal

from django import template
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

from ai_providers import money

register = template.Library()


@register.filter
def get_item(mapping, key):
    return mapping.get(key, 0) if mapping else 0


@register.filter
def as_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@register.filter
def when(value):
    """An instant as <time>: UTC text for readers without JavaScript, put in the viewer's zone by console.js."""
    if not value:
        return "–"
    instant = parse_datetime(value) if isinstance(value, str) else value
    if not isinstance(instant, datetime):
        return value
    instant = instant.astimezone(UTC)
    return format_html(
        '<time datetime="{}">{}</time>',
        instant.isoformat().replace("+00:00", "Z"),
        instant.strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


@register.filter
def percent(value) -> str:
    return "–" if value is None else f"{float(value) * 100:.1f}%"


@register.filter
def seconds(value) -> str:
    return "–" if value is None else f"{float(value):.3g} s"


@register.filter
def plain(value) -> str:
    """A Decimal without trailing zeros or exponent: 0.800000 → 0.8 (prices per million tokens)."""
    if value is None:
        return "–"
    return format(Decimal(value).normalize(), "f")


@register.filter
def usd(value) -> str:
    """An amount in dollars for people: $0.00, $1.50, $0.000150 (small amounts keep their digits)."""
    if value is None or value == "":
        return "–"
    return f"${money.shown(Decimal(value))}"
