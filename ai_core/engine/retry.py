"""When to try again after a transient provider error."""

import random
from dataclasses import dataclass, field

from django.conf import settings


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter": half the step is fixed, half random.

    The fixed half keeps retries from hammering a provider that just said 429; the random half spreads a
    burst of jobs that failed together so they do not come back together.
    """

    base_seconds: float = 1.0
    factor: float = 2.0
    max_seconds: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def step(self, attempt: int) -> float:
        """The backoff ceiling after `attempt` failed attempts (attempt >= 1)."""
        return min(self.max_seconds, self.base_seconds * self.factor ** max(0, attempt - 1))

    def delay(self, attempt: int) -> float:
        step = self.step(attempt)
        return step / 2 + self.rng.uniform(0, step / 2)

    def should_retry(self, *, attempt: int, max_attempts: int) -> bool:
        return attempt < max_attempts

    def may_run_again(self) -> bool:
        """Whether the job may be run again at all, on another model (engine.fallback)."""
        return True


def default_policy() -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.AICORE_RETRY_BASE_MS / 1000, max_seconds=settings.AICORE_RETRY_MAX_MS / 1000
    )
