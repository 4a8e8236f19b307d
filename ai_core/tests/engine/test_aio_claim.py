"""The asyncio executor's claim hand-off (engine.aio._claim_and_prepare): every attempt a batch claimed is in
flight, so beaten by the watcher, before the first of them is prepared. Preparing one can take seconds (its
client's first use imports its SDK; its capacity lease waits behind other processes' locks): meanwhile the rest
of the batch must not look silent to the reaper. And the prepared attempts reach the loop a group at a time, not
one by one."""

import asyncio

import pytest

from ai_core.engine import aio, runner
from ai_core.engine.watch import in_flight
from ai_core.models import AIJob, JobStatus
from testing.jobs import submit

pytestmark = pytest.mark.django_db(transaction=True)


def put_down(prepared: list[aio.Prepared]) -> None:
    """The claimed attempts out of flight, their calls' coroutines (never awaited here) closed."""
    for one in prepared:
        in_flight.remove(one.call.attempt)
        if hasattr(one.start, "close"):
            one.start.close()


def test_every_claimed_attempt_is_in_flight_before_the_first_is_prepared(personas, job_types, monkeypatch):
    jobs = [submit(personas.brand_a) for _ in range(3)]
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
        put_down(prepared)


def test_a_claimed_batch_reaches_the_loop_in_one_hand_off_per_endpoint(personas, job_types):
    """One wake-up of the loop for an endpoint's granted calls: a hand-off per job (one call_soon_threadsafe
    each) woke the loop for every job and halved the whole path's rate at 0 ms (docs/PERFORMANCE.md, Engine)."""
    jobs = [submit(personas.brand_a) for _ in range(5)]
    loop = asyncio.new_event_loop()
    hand_offs: list[list[aio.Prepared]] = []
    prepared = []
    try:
        prepared = aio._claim_and_prepare(10, "test-claim", loop, lambda ready: hand_offs.append(list(ready)))
        loop.run_until_complete(asyncio.sleep(0))  # the loop runs the hand-offs queued from this thread
        assert {one.call.job.pk for one in prepared} == {job.pk for job in jobs}
        assert len(hand_offs) == 1  # the five calls share echo's endpoint
        assert [one.call.job.pk for one in hand_offs[0]] == [one.call.job.pk for one in prepared]
        assert all(one.error is None and one.start is not None for one in hand_offs[0])
    finally:
        put_down(prepared)
        loop.close()
