"""Claims and finishes of many jobs at once, for the asyncio executor (engine.aio).

- claim_many: up to N claims in one trip to a database thread, in claim.py's order (priority order, brand
  round-robin with weights, max_running_jobs): on PostgreSQL in ONE statement (claim.claim_batch, SKIP LOCKED),
  on SQLite claim_next's IMMEDIATE transactions one at a time. The order and the fairness are claim.py's,
  unchanged: the batch saves the hand-offs, and on PostgreSQL the round trips and the statements.
- complete_many: N completions in ONE transaction by the lifecycle's batched end (lifecycle.jobs_complete: the
  hooks called once for all, one multi-row compare-and-set statement with the events and the roll-up, each
  quota period settled once), the same fenced compare-and-set and accounting as finish.complete (a job whose
  attempt changed, or that was cancelled, is skipped, never overwritten; a job is charged once). A batch that
  fails as a whole (the database away, a statement error) is written again job by job, so one bad row costs
  the others nothing.
"""

import logging
import time

from django.conf import settings
from django.db import connection

from ai_core.engine import finish, runner
from ai_core.engine.claim import claim_batch, claim_next
from ai_core.models import AIJob
from ai_core.workflow import Transitioned
from ai_providers.clients.base import ChatResult

logger = logging.getLogger(__name__)


def claim_many(limit: int, task_id: str = "") -> list[tuple[Transitioned, AIJob]]:
    """Claim up to `limit` jobs, best first, each with the job as an attempt needs it; fewer when fewer are
    claimable (an empty list: none), or when half a heartbeat period went by: a claimed job is stamped when
    claimed, and beaten only once its attempt is in flight (the reaper must not find it silent meanwhile)."""
    claimed = []
    until = time.monotonic() + settings.AICORE_HEARTBEAT_MS / 2000
    try:
        while len(claimed) < limit and (not claimed or time.monotonic() < until):
            some = _claim_some(limit - len(claimed), task_id)
            if not some:
                break
            claimed += [(one, runner.claimed_job(one)) for one in some]
    except Exception:
        if not claimed:
            raise
        # The claims made are committed (each statement on its own): run them; the reaper would otherwise
        # wait for their heartbeat to stop.
        logger.warning("claim batch cut short after %d claims", len(claimed), exc_info=True)
        connection.close()
    return claimed


def _claim_some(limit: int, task_id: str) -> list[Transitioned]:
    """Up to `limit` claims in one statement on PostgreSQL (a batch cut short by SKIP LOCKED or a give-back is
    topped up by the next call), else one."""
    if connection.vendor == "postgresql":
        return claim_batch(limit, task_id=task_id, also_return=runner.CLAIMED.sql)
    one = claim_next(task_id=task_id, also_return=runner.CLAIMED.sql)
    return [] if one is None else [one]


def complete_many(items: list[tuple[int, int, ChatResult, AIJob]]) -> list[str | None]:
    """Complete (job pk, attempt, result, job) items in one transaction by the lifecycle's batched end
    (finish.complete_many); the status each was left in (None: its write was discarded, as finish.complete
    says). Only when the batch fails as a whole is it written again job by job."""
    try:
        return finish.complete_many(items)
    except Exception:
        if len(items) == 1:
            raise
        logger.warning("finish batch of %d failed; writing them one by one", len(items), exc_info=True)
        connection.close()
    statuses = []
    for pk, attempt, result, job in items:
        try:
            statuses.append(finish.complete(pk, attempt, result, job=job))
        except Exception:
            logger.exception("job %s attempt %s: completion not written (the reaper will re-queue it)", pk, attempt)
            connection.close()
            statuses.append(None)
    return statuses
