"""ai_core.engine.retry: the retry policy's exponential steps, ceiling and jitter."""

import random

from ai_core.engine.retry import RetryPolicy


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling():
    policy = RetryPolicy(base_seconds=1, factor=2, max_seconds=10, rng=random.Random(7))
    assert [policy.step(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    for attempt in range(1, 7):
        delays = {policy.delay(attempt) for _ in range(50)}
        step = policy.step(attempt)
        assert all(step / 2 <= d <= step for d in delays)
        assert len(delays) > 1  # jittered: a burst of failures does not come back in lockstep
    assert policy.should_retry(attempt=2, max_attempts=3)
    assert not policy.should_retry(attempt=3, max_attempts=3)
