"""Property: whatever jobs are submitted and updated, and however those race, no month ends above its quota.

Random job shapes (priced and unpriced models of both wire formats, every combination of max_tokens and
max_completion_tokens, prompts up to 100 KB of one- to four-byte characters) are submitted and updated; then
the engine runs every job to its end against the fake OpenAI/Anthropic server, which echoes the prompt back as
long as the output bound it receives allows. On PostgreSQL the submits and updates run on parallel threads
while the engine claims jobs (an update races the claim); SQLite serialises writers, so there they run in turn.
"""

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection, connections
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from ai_core import services as jobs
from ai_core.engine.runner import run_from_message
from ai_core.models import FINAL_STATUSES, AIJob
from ai_usage.models import Quota, QuotaPeriod, QuotaReservation, ReservationState
from ai_usage.services import month_start
from business.errors import ApplicationError
from business.models import Brand, Company

pytestmark = pytest.mark.django_db(transaction=True)

# Priced (OpenAI standard and reasoning, Anthropic), unpriced (a name the openai prefixes match) and free.
MODELS = ["gpt-4o-mini", "gpt-4o", "o3-mini", "claude-haiku-4-5", "gpt-unpriced-preview", "echo-1"]
# A bound of each kind: absent, small, large (values outside 1..200 000 are refused at submit: test_quota_bounds).
BOUND = st.one_of(st.none(), st.integers(1, 64), st.integers(1, 200_000))

shapes = st.fixed_dictionaries(
    {
        "job_type": st.sampled_from(["chat_completion", "text_generation", "content_analysis"]),
        "model": st.sampled_from(MODELS),
        "max_tokens": BOUND,
        "max_completion_tokens": BOUND,
        "size": st.one_of(st.integers(1, 300), st.integers(1, 5_000), st.integers(1, 100_000)),
        "char": st.sampled_from(["a", "é", "漢", "🙂"]),
    }
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), shapes),
        st.tuples(st.just("submit"), shapes),
        st.tuples(st.just("update"), st.integers(0, 7), shapes),
        st.tuples(st.just("update"), st.integers(0, 7), shapes),
        st.tuples(st.just("cancel"), st.integers(0, 7)),
    ),
    min_size=2,
    max_size=8,
)
limits = st.tuples(
    st.one_of(st.none(), st.sampled_from(["1.000000", "0.250100", "0.010000", "0.000100", "5.000000"]).map(Decimal)),
    st.one_of(st.none(), st.integers(5_000, 2_000_000)),
).map(lambda pair: pair if pair != (None, None) else (Decimal("0.010000"), None))


def input_data(shape: dict) -> dict:
    text = shape["char"] * shape["size"]
    if shape["job_type"] == "chat_completion":
        data = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]}
    elif shape["job_type"] == "text_generation":
        data = {"prompt": text}
    else:
        data = {"content": text}
    data["model"] = shape["model"]
    for bound in ("max_tokens", "max_completion_tokens"):
        if shape[bound] is not None:
            data[bound] = shape[bound]
    return data


# What a client may be told here; anything else fails the test. (CONCURRENT_UPDATE: a cancel whose
# compare-and-set met an update of the same job committing under it — the workflow's "retry".)
REFUSALS = {
    "QUOTA_EXCEEDED",
    "JOB_RUNNING",
    "JOB_NOT_PENDING",
    "JOB_STATE_CHANGED",
    "JOB_NOT_CANCELLABLE",
    "CONCURRENT_UPDATE",
}


class World:
    """One example's brand, quota and jobs (examples share the database: each gets a company of its own)."""

    def __init__(self, cost_limit, token_limit):
        company = Company.objects.create(name=f"prop-{uuid.uuid4().hex[:12]}")
        self.brand = Brand.objects.create(company=company, name="P")
        self.quota = Quota.objects.create(
            company=company, brand=self.brand, monthly_cost_limit=cost_limit, monthly_token_limit=token_limit
        )
        self.job_pks: list[int] = []
        self.refusals: list[str] = []
        self.lock = threading.Lock()

    def apply(self, operation) -> None:
        kind, *args = operation
        try:
            if kind == "submit":
                (shape,) = args
                job, _ = jobs.job_create(
                    brand=self.brand, user=None, job_type=shape["job_type"], input_data=input_data(shape)
                )
                with self.lock:
                    self.job_pks.append(job.pk)
                return
            with self.lock:
                pk = self.job_pks[args[0] % len(self.job_pks)] if self.job_pks else None
            if pk is None:
                return
            if kind == "cancel":
                jobs.job_cancel(job_pk=pk)
                return
            shape = args[1]
            job = AIJob.objects.select_related("job_type", "brand").get(pk=pk)
            if job.job_type.name != shape["job_type"]:
                shape = {**shape, "job_type": job.job_type.name}  # input_data must fit the job's own type
            jobs.job_update(job=job, data={"input_data": input_data(shape)})
        except ApplicationError as exc:
            assert exc.error_code in REFUSALS, (exc.error_code, exc.detail)
            with self.lock:
                self.refusals.append(exc.error_code)


def drain() -> None:
    while run_from_message(0) is not None:
        pass


def run_concurrently(world: World, ops) -> None:
    """The submits on parallel threads, started together; then the updates and cancels the same way, racing
    the engine as it claims the jobs they change."""
    submits = [op for op in ops if op[0] == "submit"]
    changes = [op for op in ops if op[0] != "submit"]
    in_parallel([lambda op=op: world.apply(op) for op in submits])
    done = threading.Event()
    crashed: list[BaseException] = []

    def engine():
        try:
            while not done.is_set():
                if run_from_message(0) is None:
                    done.wait(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the calling thread
            crashed.append(exc)
        finally:
            connections.close_all()

    runner = threading.Thread(target=engine)
    try:
        in_parallel([lambda op=op: world.apply(op) for op in changes], started=runner.start)
    finally:
        done.set()
        if runner.is_alive() or runner.ident is not None:
            runner.join(60)
    if crashed:
        raise crashed[0]


def in_parallel(works, started=None) -> None:
    """Each work on its own thread, released together (then `started()`); raises what the first one raised."""
    barrier = threading.Barrier(len(works) + 1)
    failures: list[BaseException] = []

    def guarded(work):
        try:
            barrier.wait(30)
            work()
        except BaseException as exc:  # noqa: BLE001 - reported by the calling thread
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=guarded, args=(work,)) for work in works]
    for thread in threads:
        thread.start()
    barrier.wait(30)
    if started is not None:
        started()
    for thread in threads:
        thread.join(60)
    if failures:
        raise failures[0]


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is reproducible, never flaky
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no "explain" phase: minutes on a failure
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=operations, limit=limits)
def test_no_job_shape_update_or_race_ends_a_month_above_its_quota(personas, llm_env, ops, limit):
    note(f"limit={limit!r} ops={ops!r}")
    world = World(*limit)
    if connection.vendor == "postgresql":
        run_concurrently(world, ops)
    else:
        for operation in ops:
            world.apply(operation)
    drain()

    assert not AIJob.objects.filter(pk__in=world.job_pks).exclude(status__in=FINAL_STATUSES).exists()
    event(f"{len(world.job_pks)} jobs")
    for code in world.refusals:
        event(f"refused {code}")
    for status in AIJob.objects.filter(pk__in=world.job_pks).values_list("status", flat=True):
        event(f"job {status}")
    period = QuotaPeriod.objects.filter(quota=world.quota, month=month_start()).first()
    if period is None:
        return  # nothing was admitted
    assert (period.reserved_tokens, period.reserved_cost_micros) == (0, 0)
    if world.quota.monthly_token_limit is not None:
        assert period.used_tokens <= world.quota.monthly_token_limit
    if world.quota.monthly_cost_limit is not None:
        assert Decimal(period.used_cost_micros) / 1_000_000 <= world.quota.monthly_cost_limit
    # stronger than the limit: no job was ever charged more than it had reserved
    for reservation in QuotaReservation.objects.filter(period=period, state=ReservationState.SETTLED):
        assert reservation.settled_tokens <= reservation.tokens
        assert reservation.settled_cost_micros <= reservation.cost_micros
