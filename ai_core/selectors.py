"""Reads on jobs. Every brand-scoped read starts from `jobs_of()`: the one access function for jobs."""

import json
import time
from collections.abc import Iterable
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models import BigIntegerField, QuerySet, Sum, Value
from django.db.models.functions import Cast
from django.utils import timezone

from ai_core import statements
from ai_core.models import FINAL_STATUSES, AIJob, AIJobType, JobDailyStat, JobStatus
from ai_providers import money
from business.errors import NotFound
from business.models import Brand
from business.numbers import parse_natural

DASHBOARD_DAYS = 30


def jobs_of(brands: Brand | Iterable[Brand]) -> QuerySet[AIJob]:
    """All jobs the caller may see: those of the given brand (or brands). Nothing else, ever."""
    if isinstance(brands, Brand):
        # Typed bigint like the column: a bare integer literal is int4, and PostgreSQL then folds the brand
        # condition to int8 = int4, which the trigram search indexes (btree_gin, int8 = int8 only) cannot use.
        return AIJob.objects.filter(brand_id=Cast(Value(brands.id), BigIntegerField()))
    return AIJob.objects.filter(brand_id__in=[b.id for b in brands])


def job_list(*, brand: Brand) -> QuerySet[AIJob]:
    return jobs_of(brand).select_related("job_type", "brand", "created_by")


def _job_lookup(lookup: str | int) -> tuple[str, str | int] | None:
    """(field, value) a job lookup names: its job_id ("ai_job_…") or its numeric id; None for anything else."""
    text = str(lookup)
    if text.startswith("ai_job_"):
        return "job_id", text
    pk = parse_natural(text)
    return None if pk is None else ("id", pk)


def job_get(*, brand: Brand, lookup: str | int, for_detail: bool = False) -> AIJob:
    """One job of the brand by numeric id or by job_id ("ai_job_…"); another brand's job is a 404.

    for_detail: its one-to-one extensions and its events (`job.event_rows`, plain rows) come along, in the
    same single query (see statements.JobDetailRead).
    """
    found = _job_lookup(lookup)
    job = None
    if found is not None and for_detail:
        job = _job_detail_read().get(brand=brand, field=found[0], value=found[1])
    elif found is not None:
        # No ORDER BY: the lookup is unique, and ordering would only cost compiling it.
        job = next(iter(job_list(brand=brand).order_by().filter(**{found[0]: found[1]})[:1]), None)
    if job is None:
        raise NotFound("Job not found", error_code="JOB_NOT_FOUND")
    return job


def job_brand_among(*, brands: Iterable[Brand], lookup: str | int) -> Brand | None:
    """Which of `brands` holds the job (by id or job_id), or None: how a link to a job of another of the
    user's brands finds the brand to switch to. Only the given brands are looked at."""
    found = _job_lookup(lookup)
    brands = {b.id: b for b in brands}
    if found is None or not brands:
        return None
    brand_id = jobs_of(brands.values()).filter(**{found[0]: found[1]}).values_list("brand_id", flat=True).first()
    return brands.get(brand_id)


_PROBE_BRAND_ID = 987_654_321


@cache
def _brand_condition(vendor: str) -> str:
    """jobs_of()'s condition as SQL, with one placeholder for the brand id.

    Compiled from the access function itself (once per process), so a hand-written read of jobs can never
    select rows that jobs_of() would not.
    """
    query = jobs_of(Brand(id=_PROBE_BRAND_ID)).query
    sql, params = query.get_compiler(connection=connection).compile(query.where)
    if [int(p) for p in params] != [_PROBE_BRAND_ID]:
        raise ImproperlyConfigured("jobs_of() must filter on the brand id alone for the hand-written job reads")
    return sql


@cache
def _job_detail_read() -> statements.JobDetailRead:
    """Built on first use: by then every app has registered its extensions of the job."""
    return statements.JobDetailRead(_brand_condition)


def job_type_ids_matching(text: str) -> list[int]:
    """Job types whose name contains the text: a search then tests the job's own indexed type id."""
    return list(AIJobType.objects.filter(name__icontains=text).values_list("id", flat=True))


def job_count_bounded(jobs: QuerySet[AIJob], *, limit: int | None = None) -> tuple[int, bool]:
    """(count, exact) of a filtered job queryset, reading at most `limit` + 1 rows.

    An exact COUNT(*) of a broad search would read most of a brand's rows; past `limit`
    (AICORE_SEARCH_EXACT_COUNT_LIMIT) matches the pagination only needs an order of magnitude, so it gets
    PostgreSQL's row estimate instead (never less than limit + 1; other databases report limit + 1).
    """
    limit = settings.AICORE_SEARCH_EXACT_COUNT_LIMIT if limit is None else limit
    counted = jobs.order_by()[: limit + 1].count()
    if counted <= limit or connection.vendor != "postgresql":
        return counted, counted <= limit
    sql, params = jobs.order_by().values("id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(statements.explained(sql), params)
        plan = cursor.fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return max(int(plan[0]["Plan"]["Plan Rows"]), limit + 1), False


def job_types_active() -> QuerySet[AIJobType]:
    return AIJobType.objects.filter(is_active=True).order_by("id")


def job_count_from_rollup(
    *, brand: Brand, statuses: list[str] | None = None, job_type_names: list[str] | None = None
) -> int:
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


def _recent_jobs(brand_ids: list[int], limit: int) -> list[AIJob]:
    """The newest jobs across brands without sorting all their rows.

    `brand_id IN (…) ORDER BY created_at` sorts every row of those brands; on PostgreSQL a LATERAL join takes
    each brand's newest `limit` ids from its (brand, created_at) index, then the rows of the overall newest.
    Elsewhere (SQLite: development and tests, small tables) the plain query does.
    """
    jobs = AIJob.objects.select_related("job_type", "brand", "created_by")
    if len(brand_ids) == 1 or connection.vendor != "postgresql":
        return list(jobs.filter(brand_id__in=brand_ids)[:limit])
    with connection.cursor() as cursor:
        cursor.execute(statements.NEWEST_PER_BRAND, [brand_ids, limit, limit])
        ids = [row[0] for row in cursor.fetchall()]
    return list(jobs.filter(id__in=ids)[:limit])


def dashboard(*, brands: list[Brand], recent_limit: int = 10) -> dict:
    """The jobs dashboard of one brand or of a whole company, from the roll-up: four queries for a brand.

    One GROUP BY (brand, type, status) over the roll-up feeds stats, top job types and the brand breakdown;
    one GROUP BY day over the last 30 days feeds daily_activity and jobs_today; one reads the type names
    and one the recent jobs (two for several brands).
    """
    brand_ids = [b.id for b in brands]
    stats_rows = JobDailyStat.objects.filter(brand_id__in=brand_ids).order_by()
    today = timezone.localdate()
    first_day = today - timedelta(days=DASHBOARD_DAYS - 1)

    by_status: dict[str, int] = {}
    by_type: dict[str, int] = {}
    by_brand: dict[int, list[int]] = {}
    # Grouped by the type's id, not its name: the covering index (brand, job_type, status) then feeds the
    # aggregate in order with no join; the handful of names come from the catalogue.
    type_names = dict(AIJobType.objects.values_list("id", "name"))
    for row in stats_rows.values("brand_id", "job_type_id", "status").annotate(
        jobs=Sum("jobs"), cost=Sum("cost_micros")
    ):
        jobs, cost = int(row["jobs"] or 0), int(row["cost"] or 0)
        name = type_names.get(row["job_type_id"], str(row["job_type_id"]))
        by_status[row["status"]] = by_status.get(row["status"], 0) + jobs
        by_type[name] = by_type.get(name, 0) + jobs
        totals = by_brand.setdefault(row["brand_id"], [0, 0])
        totals[0] += jobs
        totals[1] += cost

    per_day = {
        row["day"]: (int(row["jobs"] or 0), int(row["cost"] or 0))
        for row in stats_rows.filter(day__gte=first_day)
        .values("day")
        .annotate(jobs=Sum("jobs"), cost=Sum("cost_micros"))
    }
    stats = {"total_jobs": sum(by_status.values()), "jobs_today": per_day.get(today, (0, 0))[0]}
    stats.update({status: by_status.get(status, 0) for status in JobStatus.values})

    top_job_types = [
        {"name": name, "count": count}
        for name, count in sorted(by_type.items(), key=lambda item: (-item[1], item[0]))
        if count
    ][:10]

    daily_activity = []
    for offset in range(DASHBOARD_DAYS):
        day = today - timedelta(days=offset)
        jobs, cost = per_day.get(day, (0, 0))
        daily_activity.append(
            {"date": day.isoformat(), "jobs": jobs, "total_cost": money.shown(money.from_micros(cost))}
        )

    brand_breakdown = sorted(
        (
            {
                "brand_id": b.id,
                "brand_name": b.name,
                "jobs": by_brand.get(b.id, (0, 0))[0],
                "cost": money.shown(money.from_micros(by_brand.get(b.id, (0, 0))[1])),
            }
            for b in brands
        ),
        key=lambda item: (-item["jobs"], item["brand_name"]),
    )

    return {
        "stats": stats,
        "recent_jobs": _recent_jobs(brand_ids, recent_limit),
        "top_job_types": top_job_types,
        "daily_activity": daily_activity,
        "brand_breakdown": brand_breakdown,
    }
