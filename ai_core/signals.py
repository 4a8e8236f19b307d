"""`job_final_committed`: a Django signal over the lifecycle's `on_final_committed` hook (ai_core/hooks.py), for
receivers that prefer a signal. Arguments: job_pk, status; sent once per job, after the commit of its end.

The hook registry is how extension apps attach to the lifecycle (webhooks registers on_final_committed itself);
this signal is only a thin wrapper, sent when it has receivers (ai_core.apps registers `send_final_committed`).
"""

import logging

from django.dispatch import Signal

logger = logging.getLogger(__name__)

job_final_committed = Signal()


def send_final_committed(ended: list) -> None:
    """The on_final_committed hook that sends job_final_committed for each job (after commit, robust: one
    failing receiver does not keep the signal from the next jobs)."""
    from ai_core.models import AIJob

    if not job_final_committed.has_listeners(AIJob) and not job_final_committed.has_listeners():
        return
    for item in ended:
        try:
            job_final_committed.send(sender=AIJob, job_pk=item.job_pk, status=item.status)
        except Exception:
            logger.exception("job_final_committed receiver failed for job %s", item.job_pk)
