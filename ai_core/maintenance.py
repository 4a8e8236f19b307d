"""Operator writes on jobs: purging old finished jobs without changing any total (the lifecycle's jobs_purge)."""

from ai_core.lifecycle import jobs_purge

__all__ = ["jobs_purge"]
