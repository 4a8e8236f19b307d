"""When to try again after a transient provider error."""

from django.conf import settings

from kernel.backoff import Backoff


class RetryPolicy(Backoff):
    """The engine's backoff between attempts of a job (kernel.backoff: equal jitter, by default 1 s doubling up
    to a minute), and whether another attempt or another model may follow.
    """

    def should_retry(self, *, attempt: int, max_attempts: int) -> bool:
        return attempt < max_attempts

    def may_run_again(self) -> bool:
        """Whether the job may be run again at all, on another model (engine.fallback)."""
        return True


def default_policy() -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.AICORE_RETRY_BASE_MS / 1000, max_seconds=settings.AICORE_RETRY_MAX_MS / 1000
    )
