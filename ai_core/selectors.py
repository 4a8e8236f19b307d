"""Reads on jobs. Every brand-scoped read starts from `jobs_of()`: the one access function for jobs."""

import time
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal

from django.db.models import Prefetch, QuerySet, Sum
from django.utils import timezone

from ai_core.models import FINAL_STATUSES, AIJob, AIJobEvent, AIJobType, JobDailyStat, JobStatus
from ai_core.workflow import from_micros
from business.errors import NotFound
from business.models import Brand

DASHBOARD_DAYS = 30


def jobs_of(brands: Brand | Iterable[Brand]) -> QuerySet[AIJob]:
    """All jobs the caller may see: those of the given brand (or brands). Nothing else, ever."""
    if isinstance(brands, Brand):
        return AIJob.objects.filter(brand_id=brands.id)
    return AIJob.objects.filter(brand_id__in=[b.id for b in brands])


def job_list(*, brand: Brand) -> QuerySet[AIJob]:
    return jobs_of(brand).select_related("job_type", "brand", "created_by")


def job_get(*, brand: Brand, lookup: str | int, for_detail: bool = False) -> AIJob:
    """One job of the brand by numeric id or by job_id ("ai_job_…"); another brand's job is a 404."""
    qs = job_list(brand=brand)
    if for_detail:
        qs = qs.prefetch_related(Prefetch("events", queryset=AIJobEvent.objects.order_by("id")))
    text = str(lookup)
    if text.startswith("ai_job_"):
        job = qs.filter(job_id=text).first()
    elif text.isdigit() and len(text) < 19:
        job = qs.filter(pk=int(text)).first()
    else:
        job = None
    if job is None:
        raise NotFound("Job not found", error_code="JOB_NOT_FOUND")
    return job


def job_types_active() -> QuerySet[AIJobType]:
    return AIJobType.objects.filter(is_active=True).order_by("id")


def job_count_from_rollup(*, brand: Brand, statuses: list[str] | None = None,
                          job_type_names: list[str] | None = None) -> int:
    """Exact count of a brand's jobs by status / type, read from the roll-up instead of the job table."""
    stats = JobDailyStat.objects.filter(brand_id=brand.id)
    if statuses:
        stats = stats.filter(status__in=statuses)
    if job_type_names:
        stats = stats.filter(job_type__name__in=job_type_names)
    return int(stats.aggregate(n=Sum("jobs"))["n"] or 0)


def job_wait_final(*, job_pk: int, timeout_seconds: float, poll_seconds: float = 0.1) -> None:
    """Block until the job is final or the timeout passes (for `Prefer: wait=N`)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        status = AIJob.objects.filter(pk=job_pk).values_list("status", flat=True).first()
        if status is None or status in FINAL_STATUSES:
            return
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
        poll_seconds = min(poll_seconds * 1.5, 0.5)


def money(amount: Decimal) -> str:
    """A cost for people: two decimals, more only when a smaller amount would otherwise read as zero."""
    exact = Decimal(amount).quantize(Decimal("0.000001"))
    cents = exact.quantize(Decimal("0.01"))
    return str(cents) if cents == exact else str(exact.normalize())


def dashboard(*, brands: list[Brand], recent_limit: int = 10) -> dict:
    """The jobs dashboard of one brand or of a whole company, from the roll-up (a bounded number of queries)."""
    brand_ids = [b.id for b in brands]
    stats_rows = JobDailyStat.objects.filter(brand_id__in=brand_ids)
    today = timezone.localdate()
    first_day = today - timedelta(days=DASHBOARD_DAYS - 1)

    by_status = dict(stats_rows.values("status").annotate(n=Sum("jobs")).values_list("status", "n"))
    jobs_today = stats_rows.filter(day=today).aggregate(n=Sum("jobs"))["n"] or 0
    stats = {"total_jobs": int(sum(by_status.values())), "jobs_today": int(jobs_today)}
    stats.update({status: int(by_status.get(status, 0)) for status in JobStatus.values})

    top_job_types = [
        {"name": row["job_type__name"], "count": int(row["count"])}
        for row in stats_rows.values("job_type__name").annotate(count=Sum("jobs")).order_by("-count", "job_type__name")
        if row["count"]
    ][:10]

    per_day = {
        row["day"]: row
        for row in stats_rows.filter(day__gte=first_day).values("day").annotate(jobs=Sum("jobs"), cost=Sum("cost_micros"))
    }
    daily_activity = []
    for offset in range(DASHBOARD_DAYS):
        day = today - timedelta(days=offset)
        row = per_day.get(day)
        daily_activity.append({
            "date": day.isoformat(),
            "jobs": int(row["jobs"]) if row else 0,
            "total_cost": money(from_micros(row["cost"] or 0)) if row else "0.00",
        })

    per_brand = {
        row["brand_id"]: row
        for row in stats_rows.values("brand_id").annotate(jobs=Sum("jobs"), cost=Sum("cost_micros"))
    }
    brand_breakdown = sorted(
        (
            {"brand_id": b.id, "brand_name": b.name, "jobs": int(per_brand[b.id]["jobs"]) if b.id in per_brand else 0,
             "cost": money(from_micros(per_brand[b.id]["cost"] or 0)) if b.id in per_brand else "0.00"}
            for b in brands
        ),
        key=lambda item: (-item["jobs"], item["brand_name"]),
    )

    recent_jobs = list(jobs_of(brands).select_related("job_type", "brand", "created_by")[:recent_limit])
    return {
        "stats": stats,
        "recent_jobs": recent_jobs,
        "top_job_types": top_job_types,
        "daily_activity": daily_activity,
        "brand_breakdown": brand_breakdown,
    }
