"""The asyncio executor of a worker process (AICORE_ENGINE_EXECUTOR=asyncio).

LLM calls are I/O-bound: a call waits seconds on the network for a few milliseconds of CPU. On the threads
path each call in flight holds a thread (its stack, its share of the GIL's switching); here one event loop per
process (a thread of its own, started by the first wake-up) runs up to AICORE_ENGINE_IN_FLIGHT calls as
coroutines, with the providers' async SDKs (echo, OpenAI and OpenAI-compatible through AsyncOpenAI). A client
without a coroutine path (a synchronous custom client, embeddings, a company's own base URL behind the network
guard) runs its call on AICORE_ENGINE_SYNC_THREADS threads, under the same decisions.

- A wake-up message (tasks.run_job) only pokes the loop and returns: its message is acked before the job ends.
  That is safe because the row is the truth, not the message: a claimed job is `running` with a heartbeat, and
  when this process dies the reaper re-queues it (attempt fence: the dead attempt's late writes are discarded);
  a pending job whose wake-up was taken by a process that died before claiming it is re-dispatched by the
  sweeper. No job depends on the message surviving.
- The loop keeps claiming while it has room and the last claim found jobs (a wake-up or a job's end asks
  again, also after a claim found fewer than it asked for, until a claim finds none with no call left here):
  one wake-up runs many jobs, as the jobs of one transaction share a few wake-ups (dispatch.publish_jobs). A
  process whose room a full claim filled hands on one wake-up (at most one per half heartbeat), for a process
  with room.
- Database work never runs on the loop (Django's ORM refuses to): it runs on AICORE_ENGINE_DB_THREADS threads,
  so the process holds at most that many connections for it (plus the watcher's and the upkeep's), whatever
  the number of calls in flight. It is batched: claims (batch.claim_many) and completions (batch.complete_many,
  one transaction for many jobs) by up to AICORE_ENGINE_BATCH; heartbeats and progress are the watcher's, one
  statement per round for all calls in flight (watch.py).
- The decisions of an attempt (fallback past an open circuit, capacity lease and wait, retry or fail, timeout)
  are the thread path's own functions (runner.begin, runner.after_failure, runner.release): one behaviour.
- Cancel: the watcher halts an attempt whose job was cancelled (or taken over); the halt cancels the call's
  task, which closes the provider stream, within the watcher's poll (AICORE_CANCEL_POLL_MS).
"""

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from celery.signals import worker_shutting_down
from django.conf import settings
from django.db import connection

from ai_core.engine import batch, circuit, runner
from ai_core.engine.watch import Attempt, in_flight
from ai_core.models import JobStatus
from ai_providers import capacity
from ai_providers.clients.base import CallAbandoned, ChatResult

logger = logging.getLogger(__name__)


def enabled() -> bool:
    return settings.AICORE_ENGINE_EXECUTOR == "asyncio"


def db_threads() -> int:
    """AICORE_ENGINE_DB_THREADS, but never the whole connection pool: the watcher (heartbeats, cancels) and the
    upkeep (reaper, sweeper) must always find a connection, or the calls in flight would look dead."""
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    if isinstance(pool, dict) and pool.get("max_size"):
        return max(1, min(settings.AICORE_ENGINE_DB_THREADS, pool["max_size"] - 2))
    return settings.AICORE_ENGINE_DB_THREADS


@dataclass(eq=False)
class LoopAttempt(Attempt):
    """An attempt whose halt (from the watcher's thread, or its own deadline) also cancels its call's task."""

    loop: asyncio.AbstractEventLoop | None = None
    call_task: asyncio.Task | None = field(default=None, repr=False)

    def halt(self, reason: str) -> None:
        super().halt(reason)
        task, loop = self.call_task, self.loop
        if task is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)


class Engine:
    """One per process: the loop, its database threads, the calls in flight and the batched finishes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: set[asyncio.Task] = set()
        self.stopping = False

    # --- from any thread -------------------------------------------------------------------------------

    def wake(self, *, task_id: str = "") -> None:
        """A wake-up: claim what there is room for. Returns at once (the loop does the work)."""
        self._start()
        self.loop.call_soon_threadsafe(self._poke, task_id)

    def in_flight(self) -> int:
        return len(self.tasks)

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop claiming, let the calls in flight end for up to `grace_seconds`, then stop the loop (what is still
        running is the reaper's: its heartbeat stops)."""
        if self.loop is None or self._pid != os.getpid():
            return
        self.stopping = True
        grace = settings.AICORE_ENGINE_DRAIN_SECONDS if grace_seconds is None else grace_seconds
        deadline = time.monotonic() + grace
        while self.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        self.loop.call_soon_threadsafe(self.loop.stop)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()  # first use in this (possibly forked) process
            self.loop = asyncio.new_event_loop()
            self.tasks = set()
            self.stopping = False
            self.more = False
            self.flowing = False  # the last claims found jobs: a call's end asks again
            self.handed_on_at = -float("inf")
            self.claimers = 0  # claim loops running
            self.reserved = 0  # room the running claims asked for
            self.claim_size = settings.AICORE_ENGINE_BATCH  # smaller while claims find no capacity for their jobs
            self.probes = Probes()
            self.task_id = ""
            self.pending: list[tuple[LoopAttempt, ChatResult, object, asyncio.Future]] = []
            self.writing = 0
            self.db = ThreadPoolExecutor(db_threads(), thread_name_prefix="aicore-aio-db")
            self.sync_calls = ThreadPoolExecutor(
                settings.AICORE_ENGINE_SYNC_THREADS, thread_name_prefix="aicore-aio-call"
            )
            threading.Thread(target=self.loop.run_forever, name="aicore-aio", daemon=True).start()

    # --- on the loop -----------------------------------------------------------------------------------

    async def in_db(self, function, *args):
        """`function(*args)` on a database thread, in this task's context (its log fields)."""
        return await self.loop.run_in_executor(self.db, contextvars.copy_context().run, _db_call, function, *args)

    def _poke(self, task_id: str = "") -> None:
        self.more = True
        self.task_id = task_id or self.task_id
        # Claims run side by side on all database threads but one (each claim is one statement: several at once
        # go as fast as the database takes them, SKIP LOCKED keeps them apart).
        if self.claimers < max(1, db_threads() - 1) and not self.stopping:
            self.claimers += 1
            self.loop.create_task(self._claim_while_room())

    async def _claim_while_room(self) -> None:
        try:
            while self.more and not self.stopping:
                room = settings.AICORE_ENGINE_IN_FLIGHT - len(self.tasks) - self.reserved
                if room <= 0:
                    return  # `more` stays: the next end asks again
                asked = min(room, self.claim_size)
                self.more = False
                self.reserved += asked
                try:
                    claimed = await self.in_db(_claim_and_prepare, asked, self.task_id, self.loop, self._launch)
                except Exception:
                    logger.warning("claim failed; the next wake-up or sweep asks again", exc_info=True)
                    await asyncio.sleep(0.5)
                    self.more = True
                    continue
                finally:
                    self.reserved -= asked
                refused = sum(isinstance(prepared.error, capacity.CapacityWait) for prepared in claimed)
                if refused:
                    # Claimed beyond what their endpoints had left: those go back to pending, waiting (and their
                    # brands lose no turn). The next claims take what was granted (at least one), as the threads
                    # path would, and no claim follows at once: the capacity pacer's wake-ups come with free slots.
                    self.claim_size = max(1, len(claimed) - refused)
                elif claimed:  # there may be more (a batch also ends early, after half a heartbeat)
                    self.claim_size = min(settings.AICORE_ENGINE_BATCH, self.claim_size * 2)
                    self.more = self.flowing = True
                elif not self.tasks:  # none left here to end and free a brand's room: wait for a wake-up
                    self.flowing = False
                if len(claimed) == asked and len(self.tasks) + self.reserved >= settings.AICORE_ENGINE_IN_FLIGHT:
                    self._hand_on()
        finally:
            self.claimers -= 1

    def _launch(self, ready: list["Prepared"]) -> None:
        """Prepared attempts under way (called on the loop as soon as they are prepared)."""
        for prepared in ready:
            task = self.loop.create_task(self._run(prepared))
            self.tasks.add(task)
            task.add_done_callback(self._ended)

    def _hand_on(self) -> None:
        """Full, with a backlog: one wake-up for a process with room (wake-ups are few, dispatch.publish_jobs:
        a process started after them got none). At most one per half heartbeat, never one per job."""
        now = time.monotonic()
        if now - self.handed_on_at >= settings.AICORE_HEARTBEAT_MS / 2000:
            self.handed_on_at = now
            self.loop.run_in_executor(self.db, runner.hand_on_wake_up)

    def _ended(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        status = None
        if not task.cancelled() and task.exception() is not None:
            logger.error("attempt crashed in the executor", exc_info=task.exception())
        elif not task.cancelled():
            status = task.result()
        # A wake-up stands for many jobs (dispatch.publish_jobs): while claims find work, each end asks again,
        # also after a claim found fewer than it asked for (the rest behind a brand's max_running_jobs, say).
        # Not a job left pending: one waiting for capacity is claimable at once, its wake-ups come with free slots.
        # As a wake-up would: claims side by side up to _poke's bound (each end one), not one claim at a time.
        if self.more or (self.flowing and status != JobStatus.PENDING):
            self._poke()

    async def _run(self, prepared: "Prepared") -> str | None:
        call = prepared.call
        runner.bind_attempt_log(call.job, call.attempt.attempt)  # this task's own context
        try:
            return await self._attempt(prepared)
        finally:
            in_flight.remove(call.attempt)

    async def _attempt(self, prepared: "Prepared") -> str | None:
        call, attempt = prepared.call, prepared.call.attempt
        if prepared.error is not None:
            return await self.in_db(runner.after_failure, call, prepared.error)
        if prepared.ended is not runner.NOT_ENDED:
            return prepared.ended
        if self.probes.must_wait(call, prepared.lease):
            # The endpoint's first answer here may state its limits: the claimed calls beyond the first few
            # wait for it, then ask for a lease again (granted, or CapacityWait back to pending).
            if not await self.probes.heard_of(call):
                return await self.in_db(runner.abandoned, attempt)
            try:
                prepared.lease = await self.in_db(runner.capacity_lease, call)
            except Exception as exc:
                return await self.in_db(runner.after_failure, call, exc)
        with self.probes.calling(call, prepared.lease):
            return await self._call_and_end(prepared)

    async def _call_and_end(self, prepared: "Prepared") -> str | None:
        call, attempt = prepared.call, prepared.call.attempt
        result, error = await self._call(call, prepared.start)
        if error is not None:
            try:
                raised = await self.in_db(runner.release, prepared.lease, attempt, None, error)
                raise raised
            except Exception as exc:
                return await self.in_db(runner.after_failure, call, exc)
        if attempt.should_stop():
            return await self.in_db(_released_then_abandoned, call, prepared.lease, result)
        # Its call is over: no more heartbeats for it (they would only wait on the locks of the completion's
        # transaction, or deadlock with it), nor a cancel to deliver (a cancel now races the completion's
        # compare-and-set, which one of them wins).
        in_flight.remove(attempt)
        return await self._complete(prepared, result)

    async def _call(self, call: runner.Call, start) -> tuple[ChatResult | None, BaseException | None]:
        """The provider call as its own task (a halt cancels it, not the database work around it), bounded by
        the attempt's deadline. Returns (result, None) or (None, the error; CallAbandoned when stopped).

        `start`: the client's coroutine call (CatalogueBound.async_call); None: the client has none, and the
        call runs on a thread, stopped by its should_stop as on the threads path (a thread cannot be cancelled)."""
        attempt = call.attempt
        if start is not None:
            task = asyncio.ensure_future(start(on_progress=attempt.report, should_stop=call.should_stop))
            attempt.call_task = task
        else:
            work = self.loop.run_in_executor(self.sync_calls, contextvars.copy_context().run, _sync_call, call)
            task = asyncio.ensure_future(work)
        try:
            if start is not None and attempt.stop.is_set():  # halted before its task existed
                task.cancel()
            await asyncio.wait({task}, timeout=max(0.0, attempt.deadline - time.monotonic()))
            if not task.done():
                attempt.halt("timeout")  # cancels a coroutine call; a thread's call sees should_stop
                await asyncio.wait({task})
        finally:
            attempt.call_task = None
        if task.cancelled():
            return None, CallAbandoned("call abandoned")
        if task.exception() is not None:
            return None, task.exception()
        return task.result(), None

    async def _complete(self, prepared: "Prepared", result: ChatResult) -> str | None:
        """Queue the completion; the writer writes what queued meanwhile: the leases given back, then the
        completions in one transaction (batch.complete_many)."""
        future = self.loop.create_future()
        self.pending.append((prepared, result, future))
        if self.writing < 2:
            self.writing += 1
            self.loop.create_task(self._write_completions())
        return await future

    async def _write_completions(self) -> None:
        try:
            while self.pending:
                size = settings.AICORE_ENGINE_BATCH
                items, self.pending = self.pending[:size], self.pending[size:]
                try:
                    statuses = await self.in_db(_complete_many, [(prepared, result) for prepared, result, _ in items])
                except Exception as exc:
                    for *_, future in items:
                        future.set_exception(exc)
                    continue
                for (*_, future), status in zip(items, statuses, strict=True):
                    future.set_result(status)
        finally:
            self.writing -= 1


# Calls in flight at most, per process, on an endpoint whose limits are not known yet (nothing configured, nothing
# learned: the claim's whole batch would reach it at once). Its first answer may state them (x-ratelimit-*
# headers): the others wait for it. About a threads pool's worth, as many as the threads path would send.
PROBE_CALLS = 8


class Probes:
    """The endpoints this process has not heard from yet, and the calls sent to them meanwhile (on the loop)."""

    def __init__(self) -> None:
        self.sent: dict = {}  # key -> calls in flight before its first answer
        self.answered: dict = {}  # key -> asyncio.Event, set by the first answer

    def _answered(self, key) -> asyncio.Event:
        return self.answered.setdefault(key, asyncio.Event())

    def _probing(self, call: runner.Call, lease) -> bool:
        client = call.client
        return (
            getattr(client, "answers_rate_limits", True)
            and lease.lease_id is None
            and not self._answered(client.capacity_key).is_set()
        )

    def must_wait(self, call: runner.Call, lease) -> bool:
        return self._probing(call, lease) and self.sent.get(call.client.capacity_key, 0) >= PROBE_CALLS

    async def heard_of(self, call: runner.Call) -> bool:
        """Wait for the endpoint's first answer (False: the attempt was stopped meanwhile)."""
        answered, attempt = self._answered(call.client.capacity_key), call.attempt
        while not answered.is_set():
            if attempt.should_stop():
                return False
            try:
                await asyncio.wait_for(answered.wait(), timeout=0.2)
            except TimeoutError:
                pass
        return not attempt.should_stop()

    @contextlib.contextmanager
    def calling(self, call: runner.Call, lease):
        if not self._probing(call, lease):
            yield
            return
        key = call.client.capacity_key
        self.sent[key] = self.sent.get(key, 0) + 1
        try:
            yield
        finally:
            self.sent[key] -= 1
            self._answered(key).set()  # its lease given back: what its answer said of the limits is known here


@dataclass(eq=False)
class Prepared:
    """A claimed job made ready on a database thread: its call (runner.begin done) and lease, or how it ended
    (a fallback switch) or what it raised (after_failure decides on the loop's next trip)."""

    call: runner.Call
    ended: str | None = runner.NOT_ENDED
    lease: object = None
    start: object = None  # the client's coroutine call, or None: the call runs on a thread
    error: Exception | None = None


def _claim_and_prepare(limit: int, task_id: str, loop, launch=None) -> list[Prepared]:
    """batch.claim_many, then each claimed attempt put in flight (its heartbeat from now on) and prepared
    (runner.begin, the capacity lease), all in one trip to a database thread; they are handed to `launch` on the
    loop as soon as they are prepared: those that ended before their call, then each endpoint's calls once their
    leases are granted (one hand-off, one wake-up of the loop, per group: one per job woke the loop for each,
    and halved the whole path's rate at 0 ms)."""
    prepared = []
    # Every claimed attempt in flight first, beaten from now on: preparing one (its client's first use, its
    # capacity lease behind other processes' locks) may take a while, and the last of a batch must not look
    # silent to the reaper meanwhile.
    for claimed, job in batch.claim_many(limit, task_id):
        attempt = runner.new_attempt(job, claimed.attempt, kind=LoopAttempt)
        attempt.loop = loop
        in_flight.add(attempt)
        prepared.append(Prepared(call=runner.Call(job=job, attempt=attempt)))
    by_endpoint: dict = {}
    ended = []
    for one in prepared:
        call = one.call
        token = runner.bind_attempt_log(call.job, call.attempt.attempt)
        try:
            one.ended = runner.begin(call)
        except Exception as exc:
            one.error = exc
        finally:
            runner.unbind_attempt_log(token)
        if one.error is None and one.ended is runner.NOT_ENDED:
            by_endpoint.setdefault(call.client.capacity_key, []).append(one)
        else:
            ended.append(one)
    if ended and launch is not None:
        loop.call_soon_threadsafe(launch, ended)
    # The leases of each endpoint's calls under one lock, in the claim's order; each call starts as soon as its
    # endpoint's leases are granted, not after the whole batch (a provider's window counts the call, ours the
    # grant: the two must stay close).
    for group in by_endpoint.values():
        try:
            leases = runner.capacity_leases([one.call for one in group])
        except Exception as exc:
            leases = [exc] * len(group)
        for one, lease in zip(group, leases, strict=True):
            if isinstance(lease, Exception):
                one.error = lease
            else:
                one.lease = lease
                try:
                    one.start = one.call.client.async_call(one.call.request)
                except Exception as exc:
                    one.error = exc
        if launch is not None:
            loop.call_soon_threadsafe(launch, group)
    return prepared


def _complete_many(items: list[tuple[Prepared, ChatResult]]) -> list[str | None]:
    """The calls' leases given back and their providers' circuits told, then the completions in one
    transaction."""
    for prepared, result in items:
        runner.release(prepared.lease, prepared.call.attempt, result, None)
        circuit.record_success(prepared.call.provider)
    return batch.complete_many([(p.call.job.pk, p.call.attempt.attempt, result, p.call.job) for p, result in items])


def _released_then_abandoned(call: runner.Call, lease, result: ChatResult) -> str | None:
    runner.release(lease, call.attempt, result, None)
    return runner.abandoned(call.attempt)


def _db_call(function, *args):
    """One piece of database work; its connection goes back to the pool after it (as the threads path gives it
    back before every provider call), so the watcher and the upkeep always find one."""
    try:
        return function(*args)
    finally:
        connection.close()


def _sync_call(call: runner.Call) -> ChatResult:
    try:
        return call.client.chat(call.request, on_progress=call.attempt.report, should_stop=call.should_stop)
    finally:
        connection.close()  # a custom client that used the database gives its connection back


engine = Engine()


@worker_shutting_down.connect
def _drain(**_kwargs) -> None:
    engine.stop()
