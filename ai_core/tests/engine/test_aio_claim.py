"""The asyncio executor's claim hand-off (engine.aio._claim_and_prepare): every attempt a batch claimed is in
flight, so beaten by the watcher, before the first of them is prepared. Preparing one can take seconds (its
client's first use imports its SDK; its capacity lease waits behind other processes' locks): meanwhile the rest
of the batch must not look silent to the reaper."""

import pytest

from ai_core import services
from ai_core.engine import aio, runner
from ai_core.engine.watch import in_flight
from ai_core.models import AIJob, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)
ECHO = {"model": "echo-1", "messages": [{"role": "user", "content": "claimed"}]}


def test_every_claimed_attempt_is_in_flight_before_the_first_is_prepared(personas, job_types, monkeypatch):
    jobs = [
        services.job_create(
            brand=personas.brand_a, user=personas.alice, job_type="chat_completion", input_data=dict(ECHO)
        )[0]
        for _ in range(3)
    ]
    in_flight_at_each_begin = []
    real_begin = runner.begin

    def begin(call):
        in_flight_at_each_begin.append({attempt.job_pk for attempt in in_flight.snapshot()})
        return real_begin(call)

    monkeypatch.setattr(runner, "begin", begin)
    prepared = aio._claim_and_prepare(10, "test-claim", None)
    try:
        claimed = {one.call.job.pk for one in prepared}
        assert claimed == {job.pk for job in jobs}
        assert set(AIJob.objects.filter(pk__in=claimed).values_list("status", flat=True)) == {JobStatus.RUNNING}
        assert len(in_flight_at_each_begin) == 3
        assert all(seen >= claimed for seen in in_flight_at_each_begin)  # the first begin already saw all three
        assert all(one.error is None and one.start is not None for one in prepared)
    finally:
        for one in prepared:
            in_flight.remove(one.call.attempt)
            if hasattr(one.start, "close"):
                one.start.close()  # the call's coroutine, never awaited here
