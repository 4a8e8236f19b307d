"""Reads on jobs. Every brand-scoped read starts from `jobs_of()`: the one access function for jobs."""

import json
import time
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import BigIntegerField, QuerySet, Sum, Value
from django.db.models.functions import Cast
from django.utils import timezone

from ai_core.models import FINAL_STATUSES, AIJob, AIJobEvent, AIJobType, JobDailyStat, JobStatus
from ai_core.workflow import from_micros
from business.errors import NotFound
from business.models import Brand

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


def _job_extensions() -> list[str]:
    """The one-to-one extensions other apps hang on a job (usage, openai_job), for select_related."""
    return [rel.get_accessor_name() for rel in AIJob._meta.related_objects if rel.one_to_one]


EVENT_FIELDS = ("id", "from_status", "to_status", "at", "attempt", "reason", "actor_id")


def job_get(*, brand: Brand, lookup: str | int, for_detail: bool = False) -> AIJob:
    """One job of the brand by numeric id or by job_id ("ai_job_…"); another brand's job is a 404.

    for_detail: its one-to-one extensions ride along in the job's query, and `job.event_rows` holds its
    events as plain rows (a detail view only renders them; model instances and the prefetch machinery cost
    more than the query).
    """
    # No ORDER BY: the lookup is unique, and ordering would only cost compiling it.
    qs = job_list(brand=brand).order_by()
    if for_detail:
        qs = qs.select_related(*_job_extensions())
    text = str(lookup)
    if text.startswith("ai_job_"):
        job = next(iter(qs.filter(job_id=text)[:1]), None)
    elif text.isascii() and text.isdigit() and len(text) < 19:
        job = next(iter(qs.filter(pk=int(text))[:1]), None)
    else:
        job = None
    if job is not None and for_detail:
        job.event_rows = list(AIJobEvent.objects.filter(job_id=job.pk).order_by("id").values(*EVENT_FIELDS))
    if job is None:
        raise NotFound("Job not found", error_code="JOB_NOT_FOUND")
    return job


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
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
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


def money(amount: Decimal) -> str:
    """A cost for people: two decimals, more only when a smaller amount would otherwise read as zero."""
    exact = Decimal(amount).quantize(Decimal("0.000001"))
    cents = exact.quantize(Decimal("0.01"))
    return str(cents) if cents == exact else str(exact.normalize())


def _recent_jobs(brand_ids: list[int], limit: int) -> list[AIJob]:
    """The newest jobs across brands without sorting all their rows.

    `brand_id IN (…) ORDER BY created_at` sorts every row of those brands; on PostgreSQL a LATERAL join takes
    each brand's newest `limit` ids from its (brand, created_at) index, then the rows of the overall newest.
    Elsewhere (SQLite: development and tests, small tables) the plain query does.
    """
    jobs = AIJob.objects.select_related("job_type", "brand", "created_by")
    if len(brand_ids) == 1 or connection.vendor != "postgresql":
        return list(jobs.filter(brand_id__in=brand_ids)[:limit])
    table = AIJob._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT j.id FROM unnest(%s::bigint[]) AS b(id) CROSS JOIN LATERAL ("
            f"SELECT id, created_at FROM {table} WHERE brand_id = b.id ORDER BY created_at DESC, id DESC LIMIT %s"
            f") AS j ORDER BY j.created_at DESC, j.id DESC LIMIT %s",
            [brand_ids, limit, limit],
        )
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
        daily_activity.append({"date": day.isoformat(), "jobs": jobs, "total_cost": money(from_micros(cost))})

    brand_breakdown = sorted(
        (
            {
                "brand_id": b.id,
                "brand_name": b.name,
                "jobs": by_brand.get(b.id, (0, 0))[0],
                "cost": money(from_micros(by_brand.get(b.id, (0, 0))[1])),
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
