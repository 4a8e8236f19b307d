"""Operator writes on jobs: purging old finished jobs without changing any total.

A purged job leaves the job table, its events go with it, its usage row stays (job becomes NULL, so money
spent and token totals never shrink), and the roll-up moves exactly like job_delete does it: the job count
leaves its bucket, the cost stays in it.
"""

from collections import Counter
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from ai_core.models import FINAL_STATUSES, AIJob
from ai_core.workflow import stat_move


def jobs_purge(*, older_than: timedelta, batch_size: int = 1000, dry_run: bool = False) -> int:
    """Delete final jobs that ended before now - older_than, in batches. Returns how many (would) go."""
    cutoff = timezone.now() - older_than
    candidates = AIJob.objects.filter(status__in=list(FINAL_STATUSES), completed_at__lt=cutoff)
    if dry_run:
        return candidates.count()
    purged = 0
    while True:
        with transaction.atomic():
            rows = list(
                candidates.order_by("id").values("id", "brand_id", "job_type_id", "status", "created_at")[:batch_size]
            )
            if not rows:
                return purged
            # Final jobs never change status again, so the rows read here are the rows deleted.
            AIJob.objects.filter(pk__in=[r["id"] for r in rows], status__in=list(FINAL_STATUSES)).delete()
            buckets = Counter(
                (r["brand_id"], timezone.localdate(r["created_at"]), r["job_type_id"], r["status"]) for r in rows
            )
            for (brand_id, day, job_type_id, status), count in sorted(buckets.items(), key=str):
                stat_move(brand_id=brand_id, day=day, job_type_id=job_type_id, deltas={status: -count})
        purged += len(rows)
