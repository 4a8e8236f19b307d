"""Reads behind the live event streams (SSE): transitions after a cursor, and progress of running jobs.

Event ids come from a sequence that is allocated when a row is inserted, not when its transaction commits,
so on PostgreSQL a smaller id can become visible after a larger one was already streamed. A cursor that
only moved forward would skip it forever; `EventCursor` therefore re-reads a short window behind the
newest id it sent and drops what it already sent.
"""

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ai_core.models import FINAL_STATUSES, AIJob, AIJobEvent, JobStatus
from business.models import Brand
from business.timestamps import api_timestamp

# How long a transaction may stay open between inserting an event and committing it and still be streamed.
LATE_COMMIT_WINDOW_SECONDS = 30.0
BATCH = 500


def event_payload(row: dict) -> dict:
    return {
        "event_id": row["id"],
        "id": row["job_id"],
        "job_id": row["job__job_id"],
        "from_status": row["from_status"],
        "to_status": row["to_status"],
        "status": row["to_status"],
        "attempt": row["attempt"],
        "reason": row["reason"],
        "at": api_timestamp(row["at"]),
    }


_EVENT_FIELDS = ("id", "job_id", "job__job_id", "from_status", "to_status", "attempt", "reason", "at")


@dataclass
class EventCursor:
    """Where one stream stands: ids sent recently (for late commits) and the progress last reported."""

    after_id: int = 0
    recent: deque = field(default_factory=deque)  # (monotonic time sent, event id)
    sent_ids: set = field(default_factory=set)
    progress: dict = field(default_factory=dict)  # job pk -> last progress sent
    progress_since: float | None = None

    def floor(self) -> int:
        now = time.monotonic()
        while self.recent and now - self.recent[0][0] > LATE_COMMIT_WINDOW_SECONDS:
            _, old = self.recent.popleft()
            self.sent_ids.discard(old)
        return min((event_id for _, event_id in self.recent), default=self.after_id + 1) - 1

    def take(self, rows: list[dict]) -> list[dict]:
        fresh = []
        now = time.monotonic()
        for row in rows:
            if row["id"] in self.sent_ids:
                continue
            self.sent_ids.add(row["id"])
            self.recent.append((now, row["id"]))
            self.after_id = max(self.after_id, row["id"])
            fresh.append(row)
        return fresh


def latest_event_id() -> int:
    return AIJobEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def job_stream_tick(*, job_pk: int, cursor: EventCursor) -> tuple[list[dict], list[dict], bool]:
    """One poll of a job's stream: (new transition payloads, progress payloads, job is final).

    The job row is read before its events: a final status and its event commit together, so when the status
    read is final, the events read after it include the final event and the stream may end.
    """
    job = AIJob.objects.filter(pk=job_pk).values("status", "progress_percentage", "job_id").first()
    if job is None:  # deleted while watched
        return [], [], True
    rows = list(
        AIJobEvent.objects.filter(job_id=job_pk, id__gt=cursor.floor()).order_by("id").values(*_EVENT_FIELDS)[:BATCH]
    )
    events = [event_payload(r) for r in cursor.take(rows)]
    progress = []
    if job["status"] == JobStatus.RUNNING and cursor.progress.get(job_pk) != job["progress_percentage"]:
        cursor.progress[job_pk] = job["progress_percentage"]
        progress.append(
            {
                "id": job_pk,
                "job_id": job["job_id"],
                "status": job["status"],
                "progress_percentage": job["progress_percentage"],
            }
        )
    return events, progress, job["status"] in FINAL_STATUSES and len(rows) < BATCH


def brand_stream_tick(*, brand: Brand, cursor: EventCursor) -> tuple[list[dict], list[dict]]:
    """One poll of a brand-wide stream: new transitions of the brand's jobs, progress of running ones."""
    rows = list(
        AIJobEvent.objects.filter(job__brand_id=brand.id, id__gt=cursor.floor())
        .order_by("id")
        .values(*_EVENT_FIELDS)[:BATCH]
    )
    events = [event_payload(r) for r in cursor.take(rows)]
    running = AIJob.objects.filter(brand_id=brand.id, status=JobStatus.RUNNING)
    now = time.time()
    if cursor.progress_since is not None:
        # Only rows touched since the last poll (minus a margin for clock skew between writers).
        running = running.filter(updated_at__gte=datetime.fromtimestamp(cursor.progress_since - 5, tz=UTC))
    cursor.progress_since = now
    progress = []
    for job in running.values("id", "job_id", "progress_percentage")[:BATCH]:
        if cursor.progress.get(job["id"]) != job["progress_percentage"]:
            cursor.progress[job["id"]] = job["progress_percentage"]
            progress.append(
                {
                    "id": job["id"],
                    "job_id": job["job_id"],
                    "status": JobStatus.RUNNING.value,
                    "progress_percentage": job["progress_percentage"],
                }
            )
    for event in events:  # a job that left running starts afresh if it runs again
        if event["to_status"] != JobStatus.RUNNING:
            cursor.progress.pop(event["id"], None)
    return events, progress
