"""ai_usage's hooks on the job lifecycle (ai_core/hooks.py), registered in AIUsageConfig.ready().

Creation: a job of a company with an active quota (or an API key with a monthly limit, or a job routed to a
provider Batch API) is created in a transaction, its maximum cost reserved (`on_created`); any other is created
by core's one statement, guarded by `RowExists(Quota…)` so that a quota created meanwhile is seen. The end:
`price` charges it, `before_final` locks its open reservations and their quota periods (in one global lock
order, services.quota_lock_open), `on_final` settles or releases them (in the end's transaction, each period
moved once per end however many jobs it ends) and writes its usage row (an `InsertRow`: in the end's own
statement when the job is known to hold no reservation — the claim's `holds_quota_reservation` probe — so the
engine's usual end stays one statement). A new input or a fallback model re-reserves (`on_replanned`); a
deletion releases (`on_deleted`).
"""

from ai_core.hooks import Created, Final, InsertRow, Replanned, RowExists
from ai_core.models import JobStatus
from ai_usage import services
from ai_usage.models import Quota, QuotaReservation, ReservationState
from ai_usage.selectors import company_has_active_quota

S = JobStatus
PROBES = {
    # Whether the job holds an open reservation (read along the engine's claim; reservations change only while
    # a job is pending, so what the claim read holds until its end).
    "holds_quota_reservation": RowExists(QuotaReservation, "job", (("state", ReservationState.RESERVED.value),)),
}
_ACTIVE_QUOTA = RowExists(Quota, "company", (("is_active", True),))


def _key_limited(job) -> bool:
    return job.api_key is not None and job.api_key.monthly_cost_limit is not None


def guard(created: list[Created]) -> bool | RowExists:
    """A key with a monthly limit or a routed job reserves whatever: a transaction. Else: unless a quota exists."""
    if any(c.batch or c.bulk or _key_limited(c.job) for c in created):
        return True
    return _ACTIVE_QUOTA


def on_created(created: list[Created]) -> None:
    """Reserve each new job's maximum on the quotas it must fit (QUOTA_EXCEEDED rolls the creation back)."""
    bulk = [c for c in created if c.bulk]
    if bulk:
        services.quota_reserve_bulk(
            brand=bulk[0].brand,
            jobs=[
                services.BulkReservation(
                    job_pk=c.job_pk, input_data=c.input_data, choice=c.choice, request=c.request, batch=c.batch
                )
                for c in bulk
            ],
        )
    for c in created:
        if c.bulk:
            continue
        if c.guard_matched or _key_limited(c.job) or company_has_active_quota(c.job.brand.company_id):
            services.quota_reserve(job=c.job, choice=c.choice, request=c.request(), batch=c.batch)


def on_replanned(replans: list[Replanned]) -> None:
    for replan in replans:
        services.quota_rereserve(job=replan.job, choice=replan.choice, request=replan.request())


def on_deleted(job_pks: list[int]) -> None:
    for job_pk in job_pks:
        services.quota_release(job_pk=job_pk)


def price(finals: list[Final]) -> list:
    """Each job's charge (kept for on_final); the roll-up records its total (None when free)."""
    costs = []
    for final in finals:
        charge = services.usage_charge(job=final.job, tokens=final.tokens, cost=final.cost, batch=final.batch)
        final.notes["ai_usage"] = {"charge": charge}
        costs.append(charge.cost.total_cost or None)
    return costs


def needs_transaction(finals: list[Final]) -> bool:
    """An end must settle or release what the job holds: unless the claim read that it holds nothing."""
    return any(getattr(final.job, "holds_quota_reservation", True) is not False for final in finals)


def _pays(final: Final, charge) -> bool:
    """Completed, or a cut-short call that used tokens: its charge replaces its reservation."""
    return final.to == S.COMPLETED or (final.to == S.CANCELLED and charge is not None and charge.total_tokens)


def before_final(finals: list[Final]) -> None:
    """Lock what the jobs' end will change, before their rows are locked: their open reservations and those
    reservations' quota periods, in the global lock order (services.quota_lock_open: reservations by (period,
    id), periods by id, the jobs' rows last), each period once however many of the jobs are on it. Nothing is
    written here: on_final settles or releases them for the jobs whose end moved them (one job's end: just
    before its compare-and-set, rolled back with it; a batch's: after it, for the moved jobs only)."""
    held: dict[int, list] = {}
    for r in services.quota_lock_open(job_pks=[f.job_pk for f in finals]):
        held.setdefault(r.job_pk, []).append(r)
    for final in finals:
        final.notes.setdefault("ai_usage", {})["held"] = held.get(final.job_pk, [])


def on_final(finals: list[Final]) -> list[InsertRow]:
    """The usage row of each job (an InsertRow: written only if its end moves it), and, in the end's
    transaction, the reservations before_final locked closed: settled at the job's charge for a job that pays,
    released for the others, each quota period moved once by the sum (services.quota_close_locked)."""
    writes, held, closes = [], [], {}
    for final in finals:
        notes = final.notes.get("ai_usage", {})
        charge = notes.get("charge")
        if notes.get("held"):
            held += notes["held"]
            pays = _pays(final, charge)
            closes[final.job_pk] = (charge.total_tokens, services.to_micros(charge.cost.total_cost)) if pays else None
        if charge is not None:
            usage = services.usage_row(
                job=final.job, attempt=final.attempt, at=final.at, status=final.to, charge=charge
            )
            if usage is not None:
                writes.append(InsertRow(job_pk=final.job_pk, row=usage))
    if held:
        services.quota_close_locked(held, closes)
    return writes


HOOKS = {
    "guard": guard,
    "on_created": on_created,
    "on_replanned": on_replanned,
    "on_deleted": on_deleted,
    "price": price,
    "needs_transaction": needs_transaction,
    "before_final": before_final,
    "on_final": on_final,
}
