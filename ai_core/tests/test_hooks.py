"""ai_core/hooks.py: the registry (points, order, once per batch) and what the lifecycle hands the hooks."""

import pytest

from ai_core import lifecycle
from ai_core.hooks import Registry, RowExists, hooks
from ai_core.models import AIJob, JobStatus
from ai_core.tests.factories import AIJobFactory

S = JobStatus


def test_an_unknown_hook_point_or_probe_name_is_refused():
    registry = Registry()
    with pytest.raises(TypeError):
        registry.register(on_finished=lambda finals: None)
    with pytest.raises(ValueError):
        registry.register(probes={"not a name": RowExists(AIJob, "id")})


def test_hooks_run_by_order_then_registration_and_once_each():
    registry = Registry()
    calls = []

    def late(payloads):
        calls.append(("late", len(payloads)))

    def early(payloads):
        calls.append(("early", len(payloads)))

    registry.register(on_deleted=late)
    registry.register(on_deleted=early, order=10)
    registry.register(on_deleted=late)  # a second registration (ready() run again) keeps one
    registry.call("on_deleted", [1, 2, 3])
    registry.call("on_deleted", [])  # nothing to say: no call
    assert calls == [("early", 3), ("late", 3)]


def test_the_extensions_register_their_hooks_and_probes_in_ready():
    from ai_openai import hooks as openai_hooks
    from ai_usage import hooks as usage_hooks

    assert set(hooks.probes) >= {"has_openai_row", "holds_quota_reservation"}
    assert hooks["on_final"].index(usage_hooks.on_final) < hooks["on_final"].index(openai_hooks.on_final)
    assert hooks["before_final"] == [usage_hooks.before_final]  # quota rows first: the lock order


@pytest.mark.django_db(transaction=True)
def test_a_batch_cancel_calls_each_final_hook_once_with_the_jobs_it_moved(personas):
    jobs = [AIJobFactory(brand=personas.brand_a, status=S.PENDING) for _ in range(4)]
    done = jobs[0]
    started = lifecycle.job_start(job_pk=done.pk)
    lifecycle.job_complete(job_pk=done.pk, attempt=started.attempt, result_data={})
    heard = {"before_final": [], "on_final": [], "on_final_committed": []}

    def before_final(finals):
        heard["before_final"].append(sorted(f.job_pk for f in finals))

    def on_final(finals):
        heard["on_final"].append(sorted((f.job_pk, f.to, f.in_transaction) for f in finals))
        return []

    def on_final_committed(committed):
        heard["on_final_committed"].append(sorted((c.job_pk, c.status) for c in committed))

    hooks.register(before_final=before_final, on_final=on_final, on_final_committed=on_final_committed)
    try:
        moved = lifecycle.jobs_cancel([j.pk for j in jobs], reason="all at once")
    finally:
        hooks.unregister(before_final=before_final, on_final=on_final, on_final_committed=on_final_committed)

    rest = sorted(j.pk for j in jobs[1:])
    assert moved == set(rest)
    assert heard["before_final"] == [sorted(j.pk for j in jobs)]  # every candidate, before the compare-and-set
    assert heard["on_final"] == [[(pk, S.CANCELLED, True) for pk in rest]]  # the moved ones, once
    assert heard["on_final_committed"] == [[(pk, S.CANCELLED) for pk in rest]]  # after commit, once
    assert AIJob.objects.get(pk=done.pk).status == S.COMPLETED
