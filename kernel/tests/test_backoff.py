"""The one backoff rule (kernel.backoff): exponential steps, a ceiling, and jitter within the asked band."""

import random

from kernel.backoff import Backoff


def test_steps_grow_by_the_factor_up_to_the_ceiling():
    backoff = Backoff(base_seconds=10, factor=4, max_seconds=1000)
    assert [backoff.step(n) for n in range(1, 6)] == [10, 40, 160, 640, 1000]


def test_each_wait_lies_in_the_jitter_band_of_its_step_and_never_above_the_ceiling():
    backoff = Backoff(base_seconds=10, factor=4, max_seconds=1000, jitter=(0.8, 1.2), rng=random.Random(3))
    for attempt in range(1, 7):
        step = backoff.step(attempt)
        waits = {backoff.delay(attempt) for _ in range(50)}
        assert all(0.8 * step <= wait <= min(1.2 * step, 1000) for wait in waits)
        assert len(waits) > 1  # jittered, also at the ceiling: failures that came together do not return together
