"""Reads on batches, always through the request's brand (another brand's batch is a 404)."""

import json
from collections.abc import Iterator

from django.db.models import Count, QuerySet, Sum

from ai_core.models import FINAL_STATUSES, AIJob, JobStatus
from ai_providers.money import dollars
from ai_usage.models import AIJobUsage
from batches.models import Batch, BatchJob
from business.errors import NotFound
from business.models import Brand


def batch_list(*, brand: Brand) -> QuerySet[Batch]:
    return Batch.objects.filter(brand=brand).select_related("job_type")


def batch_get(*, brand: Brand, lookup: str) -> Batch:
    """A batch of the brand by numeric id or batch_id ("batch_…")."""
    text = str(lookup)
    field = "batch_id" if text.startswith("batch_") else "pk" if text.isascii() and text.isdigit() else None
    batch = batch_list(brand=brand).filter(**{field: text}).first() if field and len(text) < 19 else None
    if batch is None:
        raise NotFound("Batch not found", error_code="BATCH_NOT_FOUND")
    return batch


def batch_summaries(batches: list[Batch]) -> dict[int, dict]:
    """batch_summary of each batch, in two queries whatever their number (a list page)."""
    pks = [batch.pk for batch in batches]
    counts = {pk: dict.fromkeys(JobStatus.values, 0) for pk in pks}
    rows = (
        AIJob.objects.filter(batch_link__batch_id__in=pks)
        .order_by()
        .values("batch_link__batch_id", "status")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        counts[row["batch_link__batch_id"]][row["status"]] = row["n"]
    costs = dict(
        AIJobUsage.objects.filter(job__batch_link__batch_id__in=pks)
        .order_by()
        .values("job__batch_link__batch_id")
        .annotate(total=Sum("total_cost"))
        .values_list("job__batch_link__batch_id", "total")
    )
    return {batch.pk: _summary(batch, counts[batch.pk], costs.get(batch.pk)) for batch in batches}


def batch_summary(batch: Batch) -> dict:
    """What the API shows of a batch: counts by status, progress, its status, the cost so far."""
    return batch_summaries([batch])[batch.pk]


def _summary(batch: Batch, counts: dict[str, int], cost) -> dict:
    total = sum(counts.values())
    final = sum(counts[s] for s in FINAL_STATUSES)
    if final < total:
        status = "cancelling" if batch.cancel_requested_at else "in_progress"
    elif batch.cancel_requested_at and counts[JobStatus.CANCELLED]:
        status = "cancelled"
    else:
        status = "completed"
    return {
        "status": status,
        "counts": {"total": total, **counts},
        "progress_percentage": round(100 * final / total, 2) if total else 100.0,
        "cost_so_far": str(dollars(cost)),
    }


RESULT_CHUNK = 2000


def batch_results_jsonl(batch: Batch) -> Iterator[str]:
    """The batch's jobs in submission order, one JSON line each: custom_id, job_id, status, result or error,
    usage. Read in chunks (a 50 000-job batch is never held in memory at once)."""
    links = (
        BatchJob.objects.filter(batch=batch)
        .order_by("line")
        .values_list(
            "line",
            "custom_id",
            "job__job_id",
            "job__status",
            "job__result_data",
            "job__error_code",
            "job__error_message",
            "job__usage__input_tokens",
            "job__usage__output_tokens",
            "job__usage__cached_input_tokens",
            "job__usage__total_cost",
        )
    )
    for line, custom_id, job_id, status, result, code, message, inp, out, cached, cost in links.iterator(
        chunk_size=RESULT_CHUNK
    ):
        row = {"line": line, "custom_id": custom_id, "job_id": job_id, "status": status}
        if status == JobStatus.COMPLETED:
            row["result"] = result
        elif status in FINAL_STATUSES:
            row["error"] = {"code": code, "message": message}
        row["usage"] = (
            None
            if inp is None
            else {
                "input_tokens": inp,
                "output_tokens": out,
                "cached_input_tokens": cached,
                "total_tokens": inp + out,
                "total_cost": str(cost),
            }
        )
        yield json.dumps(row, default=str) + "\n"
