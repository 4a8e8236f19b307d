"""What a webhook delivers about a job: the job as the jobs API shows it (`GET /ai/jobs/{id}/`), so a receiver
reads the same document from a delivery and from the API. This is the one place webhooks take the API layer's
representation; the delivery services ask it for the document and import no API module themselves."""

import json
from datetime import datetime

from ai_core.api.serializers import JobSerializer
from ai_core.models import AIJob
from business.timestamps import api_timestamp


def job_event(job: AIJob, event: str, at: datetime) -> dict:
    """The body of a `job.<status>` delivery, as JSON values (dates and decimals as the API writes them)."""
    payload = {"event": event, "created_at": api_timestamp(at), "data": {"job": JobSerializer(job).data}}
    return json.loads(json.dumps(payload, default=str))
