"""engine.batch.claim_many: a batch of claims (on PostgreSQL one statement, claim.claim_batch) takes the jobs in the
order as many claim_next() calls would: priority first, brands in rotation by weight, oldest first within a
brand, max_running_jobs respected, the rotation continuing across batches; and under concurrent claimers (real
threads, PostgreSQL) no job is claimed twice and no brand runs past its max_running_jobs."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from ai_core.engine import claim, finish
from ai_core.engine.batch import claim_many
from ai_core.engine.claim import BrandRotation, claim_next
from ai_core.models import AIJob, AIJobEvent, JobDailyStat
from ai_core.services import job_cancel
from business.models import Brand
from testing.jobs import bulk_submit, submit

needs_postgres = pytest.mark.skipif(
    not settings.IS_POSTGRES, reason="SQLite's claims run one IMMEDIATE transaction at a time: no concurrent claimers"
)


@pytest.fixture
def rotation(monkeypatch):
    """A fresh rotation for the test (the process's own is shared by the tests before)."""
    fresh = BrandRotation()
    monkeypatch.setattr(claim, "rotation", fresh)
    return fresh


def brands_with(make_brands, *weights: int) -> list[Brand]:
    brands = make_brands(len(weights))
    for brand, weight in zip(brands, weights, strict=True):
        Brand.objects.filter(pk=brand.pk).update(capacity_weight=weight)
    return sorted(brands, key=lambda b: b.pk)


def claimed_pks(batch) -> list[int]:
    return [claimed.job_pk for claimed, _ in batch]


class _Undo(Exception):
    pass


def claims_one_by_one(monkeypatch, count: int) -> tuple[list[int], dict]:
    """What `count` successive claim_next() calls take, from a fresh rotation, then undone (rolled back)."""
    reference = BrandRotation()
    monkeypatch.setattr(claim, "rotation", reference)
    order = []
    try:
        with transaction.atomic():
            for _ in range(count):
                one = claim_next()
                if one is None:
                    break
                order.append(one.job_pk)
            raise _Undo
    except _Undo:
        pass
    monkeypatch.setattr(claim, "rotation", BrandRotation())
    return order, dict(reference._last)


def test_a_batch_takes_priority_first_then_brands_by_weight_oldest_first_and_the_next_batch_goes_on(
    job_types, make_brands, rotation
):
    a, b, c = brands_with(make_brands, 2, 1, 1)
    a1, a2, a3, a4 = (submit(a) for _ in range(4))
    b1, b2, b3 = (submit(b) for _ in range(3))
    c1 = submit(c)
    urgent = submit(c, priority="urgent")
    low = submit(a, priority="low")

    first = claim_many(2)
    assert claimed_pks(first) == [urgent.pk, a1.pk]
    # The next batch goes on with the brand's turn (weight 2: a2), then the others, then the next round.
    assert claimed_pks(claim_many(4)) == [a2.pk, b1.pk, c1.pk, a3.pk]
    assert claimed_pks(claim_many(10)) == [a4.pk, b2.pk, b3.pk, low.pk]
    assert claim_many(10) == []
    claimed, job = first[1]
    assert (claimed.attempt, job.pk, job.status, job.attempts, job.brand_id) == (1, a1.pk, "running", 1, a.pk)
    assert rotation.position("normal") == (b.pk, 0, 0)  # b served last at normal: c comes next
    assert [e.to_status for e in AIJobEvent.objects.filter(job_id=a3.pk).order_by("id")] == ["pending", "running"]
    rollup = dict(JobDailyStat.objects.values_list("status").annotate(n=Sum("jobs")))
    assert (rollup["pending"], rollup["running"]) == (0, 10)


def test_a_batch_goes_round_the_brands_from_where_the_last_one_stopped(job_types, make_brands, rotation):
    a, b, c = brands_with(make_brands, 1, 1, 1)
    jobs = {brand.pk: [submit(brand).pk for _ in range(3)] for brand in (a, b, c)}
    (a1, a2, a3), (b1, b2, b3), (c1, c2, c3) = jobs[a.pk], jobs[b.pk], jobs[c.pk]
    assert claimed_pks(claim_many(2)) == [a1, b1]
    # After b: c, then round again from a, one each per round.
    assert claimed_pks(claim_many(7)) == [c1, a2, b2, c2, a3, b3, c3]


def test_a_batch_claims_what_as_many_successive_claims_would_across_levels_weights_and_limits(
    job_types, make_brands, rotation, monkeypatch
):
    heavy, light, limited, other = brands_with(make_brands, 3, 1, 2, 1)
    Brand.objects.filter(pk=limited.pk).update(max_running_jobs=3)
    submit(limited)
    assert claim_next() is not None  # one of its three already running
    for index in range(7):
        submit(heavy), submit(light, priority="high" if index % 3 else "normal")
        submit(limited, priority=("urgent", "normal", "low")[index % 3]), submit(other)
        if index % 2:
            submit(heavy, priority="urgent")
    later = submit(other)
    AIJob.objects.filter(pk=later.pk).update(available_at=timezone.now() + timedelta(minutes=5))
    pending = AIJob.objects.filter(status="pending").count() - 1

    reference, rotation_after = claims_one_by_one(monkeypatch, pending)
    assert len(reference) == pending - 5  # the limited brand's room: 2 of its 7 pending

    batches = [claim_many(size) for size in (1, 4, 7, 2, 64)]
    assert [len(batch) for batch in batches[:4]] == [1, 4, 7, 2]
    assert [pk for batch in batches for pk in claimed_pks(batch)] == reference
    assert claim.rotation._last == rotation_after  # the rotation left where the claims one by one left it
    assert AIJob.objects.filter(brand=limited, status="running").count() == 3
    assert set(AIJob.objects.filter(status="pending").values_list("attempts", flat=True)) == {0}


def test_a_brand_at_its_max_running_jobs_gets_no_more_than_its_room_in_a_batch(job_types, make_brands, rotation):
    limited, other = brands_with(make_brands, 1, 1)
    Brand.objects.filter(pk=limited.pk).update(max_running_jobs=2)
    submit(limited)
    assert claim_next().brand_id == limited.pk
    limited_jobs = [submit(limited, priority="urgent") for _ in range(4)]
    others = [submit(other) for _ in range(3)]

    assert claimed_pks(claim_many(10)) == [limited_jobs[0].pk] + [job.pk for job in others]
    assert claim_many(10) == []
    assert list(
        AIJob.objects.filter(pk__in=[j.pk for j in limited_jobs]).values_list("status", "attempts").order_by("id")
    ) == [
        ("running", 1),
        ("pending", 0),
        ("pending", 0),
        ("pending", 0),
    ]


def test_a_cancelled_job_is_never_claimed_by_a_batch(job_types, make_brands, rotation):
    (brand,) = brands_with(make_brands, 1)
    jobs = [submit(brand) for _ in range(5)]
    for job in jobs[1::2]:
        job_cancel(job_pk=job.pk)
    assert claimed_pks(claim_many(10)) == [jobs[0].pk, jobs[2].pk, jobs[4].pk]
    assert list(
        AIJob.objects.filter(pk__in=[j.pk for j in jobs[1::2]]).values_list("status", "attempts").order_by("id")
    ) == [
        ("cancelled", 0),
        ("cancelled", 0),
    ]


# --- concurrent claimers (real threads, their own connections) ----------------------------------------------


def run_claimers(count: int, claim_round) -> list:
    """`count` threads started at the same instant, each running `claim_round()` until it returns None; what
    each collected, and the first error raised."""
    barrier = threading.Barrier(count)
    collected: list[list] = [[] for _ in range(count)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            while (found := claim_round()) is not None:
                collected[index] += found
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return collected


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_claim_every_job_once(job_types, make_brands, rotation):
    brands = brands_with(make_brands, 1, 2, 1, 3)
    pks = bulk_submit([(brand, "normal") for brand in brands for _ in range(60)])

    # Each claimer's first batch is claimed while the others' are too: none goes on before all four claimed once
    # (4 × 16 < 240 jobs), so the batches really run side by side, whatever the scheduler does.
    first_round, started = threading.Barrier(4), threading.local()

    def claim_round():
        found = claimed_pks(claim_many(16)) or None
        if not getattr(started, "done", False):
            started.done = True
            first_round.wait(timeout=30)
        return found

    collected = run_claimers(4, claim_round)
    claimed = [pk for each in collected for pk in each]
    assert sorted(claimed) == sorted(pks)  # each once
    assert all(collected)  # every claimer claimed, side by side
    assert set(AIJob.objects.filter(pk__in=pks).values_list("status", "attempts")) == {("running", 1)}
    running_events = Counter(AIJobEvent.objects.filter(to_status="running").values_list("job_id", flat=True))
    assert set(running_events.values()) == {1} and len(running_events) == len(pks)
    rollup = dict(JobDailyStat.objects.values_list("status").annotate(n=Sum("jobs")))
    assert (rollup["pending"], rollup["running"]) == (0, len(pks))


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_never_run_a_brand_past_its_max_running_jobs(job_types, make_brands, rotation):
    limited, other = brands_with(make_brands, 1, 1)
    Brand.objects.filter(pk=limited.pk).update(max_running_jobs=3)
    bulk_submit([(limited, "urgent")] * 30 + [(other, "normal")] * 30)
    running, peak = [0], [0]  # the limited brand's claims kept and not yet ended (never more than the truth)
    lock = threading.Lock()

    def claim_round():
        """A batch, then the limited brand's claims ended (their room freed for the next batches)."""
        batch = claim_many(8)
        if not batch:
            return None
        ours = [claimed for claimed, job in batch if job.brand_id == limited.pk]
        with lock:
            running[0] += len(ours)
            peak[0] = max(peak[0], running[0])
        for claimed in ours:
            with lock:
                running[0] -= 1  # before its end commits: the count never runs ahead of the database's
            finish.fail(claimed.job_pk, claimed.attempt, "PROVIDER_ERROR", "done")
        return [job.brand_id for _, job in batch]

    collected = run_claimers(4, claim_round)
    served = Counter(brand for each in collected for brand in each)
    assert served == {limited.pk: 30, other.pk: 30}  # every job claimed, the limited ones as room freed
    assert 1 <= peak[0] <= 3, peak
    assert AIJob.objects.filter(brand=limited, status="failed").count() == 30
