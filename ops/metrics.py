"""Prometheus metrics, read from the database at scrape time.

The database is the truth shared by every API and worker process, so a scrape of any one API process gives
the whole picture, with no multiprocess bookkeeping. Each family is one aggregate query: job counts and cost
come from the JobDailyStat roll-up (thousands of rows, not millions), queue depth from the partial index on
pending jobs, provider figures from the usage table.
"""

from django.db.models import Count, F, Min, Q, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

from ai_core.engine.upkeep import workers_alive
from ai_core.models import AIJob, JobDailyStat, JobStatus
from ai_providers.money import from_micros
from ai_providers.selectors import capacity_limits
from ai_usage.models import AIJobUsage


class DatabaseCollector:
    def collect(self):
        yield from _jobs()
        yield from _queue()
        yield from _usage()
        yield from _webhooks()
        yield from _quota_alerts()
        yield from _workers()
        yield from _capacity()


def _jobs():
    """Job counts and cost per brand, keyed by the brand's id: names are unique only within a company, and two
    companies' brands of one name must never add up. The name is a label beside the id, for dashboards."""
    jobs = GaugeMetricFamily(
        "aicore_jobs",
        "Jobs by brand, job type and current status",
        labels=["brand_id", "brand", "job_type", "status"],
    )
    cost = CounterMetricFamily(
        "aicore_job_cost_usd",
        "Cost of jobs in US dollars, by brand and job type",
        labels=["brand_id", "brand", "job_type"],
    )
    costs: dict[tuple[str, str, str], int] = {}
    rows = (
        JobDailyStat.objects.values(
            "brand_id", brand_name=F("brand__name"), type_name=F("job_type__name"), st=F("status")
        )
        .annotate(n=Sum("jobs"), micros=Sum("cost_micros"))
        .order_by("brand_id", "type_name", "st")
    )
    for row in rows:
        brand = (str(row["brand_id"]), row["brand_name"])
        jobs.add_metric([*brand, row["type_name"], row["st"]], int(row["n"] or 0))
        key = (*brand, row["type_name"])
        costs[key] = costs.get(key, 0) + int(row["micros"] or 0)
    for labels, micros in costs.items():
        cost.add_metric(list(labels), float(from_micros(micros)))
    yield jobs
    yield cost


def _queue():
    depth = GaugeMetricFamily(
        "aicore_queue_depth", "Pending jobs that a worker may claim now, by priority", labels=["priority"]
    )
    waiting = GaugeMetricFamily("aicore_jobs_waiting_retry", "Pending jobs waiting for a retry backoff")
    now = timezone.now()
    counts = dict(
        AIJob.objects.filter(status=JobStatus.PENDING, available_at__lte=now)
        .values_list("priority")
        .annotate(n=Count("id"))
    )
    for priority in ("urgent", "high", "normal", "low"):
        depth.add_metric([priority], counts.get(priority, 0))
    waiting.add_metric([], AIJob.objects.filter(status=JobStatus.PENDING, available_at__gt=now).count())
    yield depth
    yield waiting


def _usage():
    duration = SummaryMetricFamily(
        "aicore_job_duration_seconds", "Execution time of finished jobs", labels=["job_type"]
    )
    latency = SummaryMetricFamily(
        "aicore_provider_latency_seconds", "Provider call time per finished job", labels=["provider", "model"]
    )
    errors = CounterMetricFamily(
        "aicore_provider_errors", "Failed provider calls (usage error_count)", labels=["provider", "model"]
    )
    tokens = CounterMetricFamily("aicore_provider_tokens", "Tokens used", labels=["provider", "model", "direction"])
    timed = Q(execution_time_seconds__isnull=False)
    for row in (
        AIJobUsage.objects.values(type_name=F("job_type__name"))
        .annotate(n=Count("id", filter=timed), total=Sum("execution_time_seconds", filter=timed))
        .order_by("type_name")
    ):
        duration.add_metric([row["type_name"]], count_value=row["n"], sum_value=float(row["total"] or 0))
    for row in (
        AIJobUsage.objects.values("provider_name", "model_name")
        .annotate(
            n=Count("id", filter=timed),
            total=Sum("execution_time_seconds", filter=timed),
            failed=Sum("error_count"),
            tin=Sum("input_tokens"),
            tout=Sum("output_tokens"),
        )
        .order_by("provider_name", "model_name")
    ):
        labels = [row["provider_name"], row["model_name"]]
        latency.add_metric(labels, count_value=row["n"], sum_value=float(row["total"] or 0))
        errors.add_metric(labels, int(row["failed"] or 0))
        tokens.add_metric([*labels, "input"], int(row["tin"] or 0))
        tokens.add_metric([*labels, "output"], int(row["tout"] or 0))
    yield duration
    yield latency
    yield errors
    yield tokens


def _webhooks():
    from webhooks.models import WebhookDelivery

    deliveries = GaugeMetricFamily("aicore_webhook_deliveries", "Webhook deliveries by status", labels=["status"])
    counts = dict(WebhookDelivery.objects.values_list("status").annotate(n=Count("id")))
    for status in WebhookDelivery.Status.values:
        deliveries.add_metric([status], counts.get(status, 0))
    yield deliveries


def _quota_alerts():
    from ai_usage.models import QuotaThresholdCrossing

    crossings = CounterMetricFamily(
        "aicore_quota_threshold_crossings",
        "Budget alerts: quota thresholds crossed (at most once per quota, month and threshold)",
        labels=["quota_id", "brand", "threshold"],
    )
    for row in (
        QuotaThresholdCrossing.objects.values("quota_id", "threshold", brand_name=F("quota__brand__name"))
        .annotate(n=Count("id"))
        .order_by("quota_id", "threshold")
    ):
        brand = row["brand_name"] or "(company-wide)"
        crossings.add_metric([str(row["quota_id"]), brand, str(row["threshold"])], row["n"])
    yield crossings


def _workers():
    alive = GaugeMetricFamily(
        "aicore_workers_alive", "Worker processes whose heartbeat is fresher than AICORE_WORKER_STALE_SECONDS"
    )
    alive.add_metric([], workers_alive())
    yield alive


def _capacity():
    """Provider capacity per endpoint and model (ai_providers.CapacityLimit's counters), the jobs waiting for it,
    and how long the queue's oldest job has waited, by priority."""
    labels = ["provider", "endpoint", "model"]
    calls = CounterMetricFamily("aicore_provider_calls", "Provider calls on endpoints with rate limits", labels=labels)
    limited = CounterMetricFamily("aicore_provider_rate_limited", "Provider calls answered 429", labels=labels)
    waits = CounterMetricFamily("aicore_capacity_waits", "Times a job went back to wait for capacity", labels=labels)
    waited = CounterMetricFamily(
        "aicore_capacity_wait_seconds", "Total length of the capacity waits, as announced", labels=labels
    )
    for row in capacity_limits():
        key = [row.provider.name, f"credential-{row.credential_id}" if row.credential_id else "environment", row.model]
        calls.add_metric(key, row.calls)
        limited.add_metric(key, row.rate_limited)
        waits.add_metric(key, row.waits)
        waited.add_metric(key, row.wait_seconds)
    yield from (calls, limited, waits, waited)
    waiting = GaugeMetricFamily("aicore_jobs_waiting_capacity", "Pending jobs waiting for provider capacity")
    waiting.add_metric([], AIJob.objects.filter(status=JobStatus.PENDING, waiting__isnull=False).count())
    yield waiting
    oldest = GaugeMetricFamily(
        "aicore_queue_wait_seconds", "How long the oldest pending job has waited, by priority", labels=["priority"]
    )
    now = timezone.now()
    firsts = dict(
        AIJob.objects.filter(status=JobStatus.PENDING).values_list("priority").annotate(first=Min("created_at"))
    )
    for priority in ("urgent", "high", "normal", "low"):
        first = firsts.get(priority)
        oldest.add_metric([priority], (now - first).total_seconds() if first else 0.0)
    yield oldest


def registry() -> CollectorRegistry:
    """A registry per scrape: nothing is kept in process memory between scrapes."""
    fresh = CollectorRegistry(auto_describe=False)
    fresh.register(DatabaseCollector())
    return fresh
