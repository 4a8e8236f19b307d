"""The one backoff policy: how long to wait before trying again after a failure.

The engine's provider retries (ai_core.engine.retry), the worker supervisor's restarts and the webhook
deliveries (webhooks.services.retry_delay) all wait by this rule; only their numbers differ.
"""

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Exponential steps with jitter: after `attempt` failures the step is base * factor**(attempt-1), capped at
    max_seconds, and the wait a random point between `jitter[0]` and `jitter[1]` times the step (never above
    max_seconds).

    The default (0.5, 1.0) is "equal jitter": the fixed half keeps retries from hammering a provider that just
    said 429, the random half spreads a burst of failures so they do not come back together.
    """

    base_seconds: float = 1.0
    factor: float = 2.0
    max_seconds: float = 60.0
    jitter: tuple[float, float] = (0.5, 1.0)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def step(self, attempt: int) -> float:
        """The backoff step after `attempt` failed attempts (attempt >= 1)."""
        return min(self.max_seconds, self.base_seconds * self.factor ** max(0, attempt - 1))

    def delay(self, attempt: int) -> float:
        step = self.step(attempt)
        low, high = self.jitter
        return min(self.max_seconds, step * low + self.rng.uniform(0, step * (high - low)))
