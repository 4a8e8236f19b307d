"""Reads on usage and quotas. Every brand-scoped read starts from `usage_of()` / `quotas_of()`."""

import math
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from ai_providers import money
from ai_usage.models import AIJobUsage, Quota, QuotaReservation, ReservationState
from ai_usage.services import month_start, next_month, quota_status
from ai_usage.statements import active_quota_exists
from business.errors import ApplicationError, NotFound
from business.models import Brand
from business.numbers import parse_natural
from business.timestamps import api_timestamp

HEALTH_WINDOW = timedelta(minutes=15)
# Parts of input_tokens (cache reads and writes) and of output_tokens (reasoning), summed beside them.
TOKEN_KINDS = ("cached_input_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens")


def usage_of(brands: Brand | Iterable[Brand]) -> QuerySet[AIJobUsage]:
    """All usage rows the caller may see: those of the given brand (or brands). Nothing else."""
    if isinstance(brands, Brand):
        return AIJobUsage.objects.filter(brand_id=brands.id)
    return AIJobUsage.objects.filter(brand_id__in=[b.id for b in brands])


def usage_list(*, brand: Brand) -> QuerySet[AIJobUsage]:
    return usage_of(brand).select_related("job", "job_type", "user")


def _totals(rows: QuerySet[AIJobUsage]) -> dict[str, Any]:
    agg = rows.aggregate(
        jobs=Count("id"),
        succeeded=Count("id", filter=Q(success_rate__gte=1)),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        total_tokens=Sum("total_tokens"),
        **{kind: Sum(kind) for kind in TOKEN_KINDS},
        cost=Sum("total_cost"),
    )
    jobs = agg["jobs"] or 0
    return {
        "jobs": jobs,
        "input_tokens": int(agg["input_tokens"] or 0),
        "output_tokens": int(agg["output_tokens"] or 0),
        "total_tokens": int(agg["total_tokens"] or 0),
        **{kind: int(agg[kind] or 0) for kind in TOKEN_KINDS},
        "total_cost": str(money.dollars(agg["cost"])),
        "success_rate": round((agg["succeeded"] or 0) / jobs, 4) if jobs else None,
    }


def _grouped(rows: QuerySet[AIJobUsage], *fields: str) -> list[dict[str, Any]]:
    out = []
    for row in (
        rows.values(*fields)
        .annotate(jobs=Count("id"), total_tokens=Sum("total_tokens"), cost=Sum("total_cost"))
        .order_by("-cost", *fields)
    ):
        item = {key: row[key] for key in fields}
        item.update(
            jobs=row["jobs"],
            total_tokens=int(row["total_tokens"] or 0),
            total_cost=str(money.dollars(row["cost"])),
        )
        out.append(item)
    return out


def usage_dashboard(*, brand: Brand, days: int) -> dict[str, Any]:
    """Totals, a daily series (every day present, oldest first), breakdowns and quota status for `days` days."""
    today = timezone.localdate()
    first_day = today - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first_day, time.min))
    rows = usage_of(brand).filter(created_at__gte=since)
    per_day = {
        row["day"]: row
        for row in rows.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(jobs=Count("id"), total_tokens=Sum("total_tokens"), cost=Sum("total_cost"))
    }
    daily = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        row = per_day.get(day)
        daily.append(
            {
                "date": day.isoformat(),
                "jobs": row["jobs"] if row else 0,
                "total_tokens": int(row["total_tokens"] or 0) if row else 0,
                "total_cost": money.shown(money.dollars(row["cost"])) if row else "0.00",
            }
        )
    return {
        "days": days,
        "since": first_day.isoformat(),
        "totals": _totals(rows),
        "daily": daily,
        "by_provider": _grouped(rows, "provider_name"),
        "by_model": _grouped(rows, "provider_name", "model_name"),
        "quotas": [quota_status(quota=q) for q in quotas_of(brand)],
    }


def parse_month(value: str | None) -> date:
    if value is None or value == "":
        return month_start()
    try:
        month = datetime.strptime(value, "%Y-%m").date()
        next_month(month)  # 9999-12 has no end the calendar can hold
    except ValueError:
        raise ApplicationError("month must be YYYY-MM, 0001-01 to 9999-11", error_code="INVALID_MONTH") from None
    return month


def cost_breakdown(*, brands: list[Brand], month: date) -> dict[str, Any]:
    """One calendar month's money by provider, model, job type, user and brand."""
    report = usage_breakdown(brands=brands, first_day=month, last_day=next_month(month) - timedelta(days=1))
    del report["daily"], report["since"], report["until"]
    return {"month": f"{month.year:04d}-{month.month:02d}", **report}  # strftime writes year 1 as "1"


def usage_breakdown(*, brands: list[Brand], first_day: date, last_day: date) -> dict[str, Any]:
    """Usage from `first_day` to `last_day` (both included): totals, a daily series (every day present, oldest
    first) and the breakdowns by provider, model, job type, user and brand."""
    start = timezone.make_aware(datetime.combine(first_day, time.min))
    end = timezone.make_aware(datetime.combine(last_day + timedelta(days=1), time.min))
    rows = usage_of(brands).filter(created_at__gte=start, created_at__lt=end)
    per_day = {
        row["day"]: row
        for row in rows.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(jobs=Count("id"), total_tokens=Sum("total_tokens"), cost=Sum("total_cost"))
    }
    daily = []
    day = first_day
    while day <= last_day:
        row = per_day.get(day) or {}
        daily.append(
            {
                "date": day.isoformat(),
                "jobs": row.get("jobs", 0),
                "total_tokens": int(row.get("total_tokens") or 0),
                "total_cost": str(money.dollars(row.get("cost"))),
            }
        )
        day += timedelta(days=1)
    by_user = _grouped(rows, "user_id", "user__username")
    return {
        "since": first_day.isoformat(),
        "until": last_day.isoformat(),
        "totals": _totals(rows),
        "daily": daily,
        "by_provider": _grouped(rows, "provider_name"),
        "by_model": _grouped(rows, "provider_name", "model_name"),
        "by_job_type": [{"job_type": r.pop("job_type__name"), **r} for r in _grouped(rows, "job_type__name")],
        "by_user": [{"user_id": r.pop("user_id"), "username": r.pop("user__username"), **r} for r in by_user],
        "by_brand": [
            {"brand_id": r.pop("brand_id"), "brand_name": r.pop("brand__name"), **r}
            for r in _grouped(rows, "brand_id", "brand__name")
        ],
    }


# Latency percentiles are computed from the newest rows only: enough for p95 to be stable, bounded in memory.
LATENCY_SAMPLE = 5000


def _percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def activity_by(*, brands: list[Brand], field: str, days: int) -> list[dict[str, Any]]:
    """Per value of `field` ("job_type__name", "provider_name"…) over the last `days` days: jobs, failures,
    error rate and the p50 / p95 execution time in seconds (of the newest LATENCY_SAMPLE rows)."""
    since = timezone.now() - timedelta(days=days)
    rows = usage_of(brands).filter(created_at__gte=since)
    counts = {
        row[field]: row
        for row in rows.values(field).annotate(jobs=Count("id"), failed=Count("id", filter=Q(success_rate__lt=1)))
    }
    samples: dict[str, list[float]] = {}
    timed = rows.filter(execution_time_seconds__isnull=False).order_by("-created_at")
    for key, seconds in timed.values_list(field, "execution_time_seconds")[:LATENCY_SAMPLE]:
        samples.setdefault(key, []).append(seconds)
    out = []
    for key, row in sorted(counts.items(), key=lambda item: (-item[1]["jobs"], str(item[0]))):
        ordered = sorted(samples.get(key, []))
        out.append(
            {
                "name": key,
                "jobs": row["jobs"],
                "failed": row["failed"],
                "error_rate": round(row["failed"] / row["jobs"], 4) if row["jobs"] else None,
                "p50_seconds": round(_percentile(ordered, 0.5), 3) if ordered else None,
                "p95_seconds": round(_percentile(ordered, 0.95), 3) if ordered else None,
            }
        )
    return out


def provider_health(*, brand: Brand, providers: list) -> dict[int, dict[str, Any]]:
    """Per provider: configured?, last connection test, and this brand's recent success rate (15 minutes)."""
    from ai_providers.models import ProviderCredential
    from ai_providers.selectors import key_source

    since = timezone.now() - HEALTH_WINDOW
    recent = {
        row["provider_name"]: row
        for row in usage_of(brand)
        .filter(created_at__gte=since)
        .values("provider_name")
        .annotate(jobs=Count("id"), failed=Count("id", filter=Q(success_rate__lt=1)))
    }
    tests = {c.provider_id: c for c in ProviderCredential.objects.filter(company_id=brand.company_id)}
    health = {}
    for provider in providers:
        source = key_source(company_id=brand.company_id, provider=provider)
        stats = recent.get(provider.name, {"jobs": 0, "failed": 0})
        credential = tests.get(provider.pk)
        if source is None:
            state = "unconfigured"
        elif stats["jobs"] and stats["failed"] * 2 >= stats["jobs"]:
            state = "degraded"
        elif credential is not None and credential.last_test_ok is False and source == "company":
            state = "failing"
        else:
            state = "ok"
        health[provider.pk] = {
            "status": state,
            "recent_jobs": stats["jobs"],
            "recent_failures": stats["failed"],
            "window_minutes": int(HEALTH_WINDOW.total_seconds() // 60),
            "last_test": None
            if credential is None or credential.last_tested_at is None
            else {
                "ok": credential.last_test_ok,
                "at": api_timestamp(credential.last_tested_at),
                "message": credential.last_test_message,
            },
        }
    return health


def company_has_active_quota(company_id: int | None) -> bool:
    """Whether any active quota exists in the company: false means no job of its brands has one to fit
    (every quota belongs to a company; quotas_applicable() picks among its active ones).

    Job creation asks on every request, so this is one indexed probe written as SQL: the ORM's compiling of
    it cost several times its execution.
    """
    if not company_id:
        return False
    return active_quota_exists(company_id)


def quotas_of(brand: Brand) -> QuerySet[Quota]:
    """The quotas a request acting on `brand` may see: the brand's own and its company's company-wide ones."""
    return (
        Quota.objects.filter(company_id=brand.company_id)
        .filter(Q(brand_id=brand.id) | Q(brand__isnull=True))
        .select_related("provider", "brand")
    )


def quota_get(*, brand: Brand, pk) -> Quota:
    pk = parse_natural(pk)
    quota = None if pk is None else quotas_of(brand).filter(pk=pk).first()
    if quota is None:
        raise NotFound("Quota not found", error_code="QUOTA_NOT_FOUND")
    return quota


def quota_overview(*, brand: Brand, today: date | None = None) -> list[dict[str, Any]]:
    """Each quota the brand sees, with this month's status, its open reservations and a straight-line forecast
    of the month's use at its end (used so far ÷ days elapsed × days in the month)."""
    today = today or timezone.localdate()
    month = month_start(today)
    days_in_month = (next_month(month) - month).days
    elapsed = today.day
    quotas = list(quotas_of(brand).filter(is_active=True).order_by("brand_id", "provider_id", "id"))
    open_counts = dict(
        QuotaReservation.objects.filter(period__quota__in=quotas, period__month=month, state=ReservationState.RESERVED)
        .values("period__quota_id")
        .annotate(n=Count("id"))
        .values_list("period__quota_id", "n")
    )
    out = []
    for quota in quotas:
        status = quota_status(quota=quota, month=month)
        used_cost = Decimal(status["used"]["cost"])
        forecast_tokens = status["used"]["tokens"] * days_in_month // elapsed
        forecast_cost = money.dollars(used_cost * days_in_month / elapsed)
        limits = status["limits"]
        over = (limits["tokens"] is not None and forecast_tokens > limits["tokens"]) or (
            limits["cost"] is not None and forecast_cost > Decimal(limits["cost"])
        )
        out.append(
            {
                **status,
                "brand_name": quota.brand.name if quota.brand_id else None,
                "open_reservations": open_counts.get(quota.pk, 0),
                "forecast": {"tokens": forecast_tokens, "cost": str(forecast_cost), "over_limit": over},
            }
        )
    return out
