"""Writes on usage and quotas: the charge of a finished job, and quota reservations (reserve, settle, release).

Money in quota counters is integer micro-dollars; AIJobUsage keeps Decimal with 6 places.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import F, Q
from django.utils import timezone

from ai_core.models import AIJob, JobStatus
from ai_providers.clients.base import ChatRequest
from ai_providers.money import (
    FREE,
    NO_TOKENS,
    Cost,
    TokenUsage,
    cost_ceiling_micros,
    cost_of,
    dollars,
    from_micros,
    to_micros,
)
from ai_providers.selectors import ModelChoice, model_resolve, price_at, prices_from
from ai_providers.services import request_bounded
from ai_usage import statements
from ai_usage.alerts import clean_thresholds, crossings_of, thresholds_check, use_ratio
from ai_usage.models import AIJobUsage, Quota, QuotaPeriod, QuotaReservation, ReservationState
from business.errors import ApplicationError
from business.models import ApiKey, Brand

S = JobStatus
logger = logging.getLogger(__name__)


def month_start(day: date | None = None) -> date:
    return (day or timezone.localdate()).replace(day=1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def job_model_name(job: AIJob) -> str:
    """The model the job is charged for: the one it ran on (a fallback, once it switched to one)."""
    return job.current_model()


# --- the charge of a finished job ---------------------------------------------------------------------


@dataclass(frozen=True)
class Charge:
    provider_name: str
    model_name: str
    tokens: TokenUsage
    cost: Cost
    priced_at: Any

    @property
    def input_tokens(self) -> int:
        return self.tokens.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.tokens.output_tokens

    @property
    def total_tokens(self) -> int:
        return self.tokens.total_tokens


def usage_charge(
    *, job: AIJob, tokens: TokenUsage = NO_TOKENS, cost: Decimal | None = None, batch: bool = False
) -> Charge:
    """Tokens of every kind × the price in effect when the job ran (its last start), or `cost` when the caller
    knows the amount billed. Never raises: a model that left the catalogue is charged at zero rather than
    losing the job's final state. `batch`: the call went through the provider's Batch API (its price ratio).
    """
    model_name = job_model_name(job)
    priced_at = job.started_at or timezone.now()
    try:
        choice = model_resolve(model_name)
        provider_name = choice.provider.name
        price = price_at(model_name, priced_at, choice=choice) if cost is None else FREE
    except ApplicationError:
        provider_name, price = "unknown", FREE
    if cost is not None:
        billed = Cost(input_cost=dollars(cost), output_cost=dollars(0))
    else:
        billed = cost_of(tokens, price, batch=batch)
    return Charge(provider_name=provider_name, model_name=model_name, tokens=tokens, cost=billed, priced_at=priced_at)


def usage_row(*, job: AIJob, attempt: int, at: Any, status: str, charge: Charge) -> AIJobUsage | None:
    """The usage row of a job that ended `status` on `attempt` at `at`; None for a cancelled job that used no
    tokens (a cancelled call that had used some, e.g. a gateway stream cut short, is charged for them)."""
    if status == S.CANCELLED and not charge.total_tokens:
        return None
    attempts = max(1, attempt)
    execution = round((at - job.started_at).total_seconds(), 3) if job.started_at else None
    return AIJobUsage(
        job=job,
        brand_id=job.brand_id,
        job_type_id=job.job_type_id,
        user_id=job.created_by_id,
        provider_name=charge.provider_name,
        model_name=charge.model_name,
        **charge.tokens.by_kind(),
        total_tokens=charge.total_tokens,
        input_cost=charge.cost.input_cost,
        output_cost=charge.cost.output_cost,
        total_cost=charge.cost.total_cost,
        execution_time_seconds=execution,
        success_rate=1.0 if status == S.COMPLETED else 0.0,
        error_count=attempts - 1 if status == S.COMPLETED else attempts,
        job_created_at=job.created_at,
        final_status=status,
        priced_at=charge.priced_at,
    )


# --- quotas -------------------------------------------------------------------------------------------


class QuotaExceeded(ApplicationError):
    status_code = 429
    error_code = "QUOTA_EXCEEDED"


def quotas_applicable(*, brand: Brand, provider_id: int | None, api_key: ApiKey | None = None) -> list[Quota]:
    """The active quotas a job of this brand on this provider must fit: the brand's and the company-wide ones,
    for this provider or for every provider, and the job's API key's own. Ordered by id so concurrent
    reservations lock rows in one order.
    """
    if api_key is not None and api_key.monthly_cost_limit is not None:
        # The key's limit as a quota row (made on its first job; a race makes it once): reserved like the others.
        Quota.objects.bulk_create(
            [
                Quota(
                    company_id=brand.company_id,
                    brand=brand,
                    api_key=api_key,
                    monthly_cost_limit=api_key.monthly_cost_limit,
                )
            ],
            ignore_conflicts=True,
        )
    return list(
        _quotas_of_brand_jobs(brand, api_key=api_key).filter(Q(provider__isnull=True) | Q(provider_id=provider_id))
    )


def _quotas_of_brand_jobs(brand: Brand, *, api_key: ApiKey | None):
    """The active quotas over jobs of the brand (its own and the company-wide ones, on any provider), with the
    API key's own limit only for that key's jobs; ordered by id so concurrent reservations lock rows in one order."""
    return (
        Quota.objects.filter(company_id=brand.company_id, is_active=True)
        .filter(Q(brand_id=brand.id) | Q(brand__isnull=True))
        .filter(Q(api_key__isnull=True) | Q(api_key_id=api_key.pk if api_key else None))
        .order_by("id")
    )


# Tokens a chat format adds of its own: per message (role markers, separators) and per request (priming).
MESSAGE_OVERHEAD_TOKENS = 4
REQUEST_OVERHEAD_TOKENS = 16


def prompt_upper_bound(request: ChatRequest) -> int:
    """An upper bound of the prompt tokens a provider can count for `request`, the request it is sent: one per
    UTF-8 byte of everything it carries as text (no tokenizer packs less than a byte into a token) — each
    message's role, name and content, the tools, tool choice and response format — plus the chat format's own.
    """
    size = REQUEST_OVERHEAD_TOKENS
    for message in request.messages:
        size += MESSAGE_OVERHEAD_TOKENS
        for field in message.values() if isinstance(message, dict) else [message]:
            size += _bytes_of(field)
    # options["input"]: the texts of an embedding request.
    for extra in (
        request.tools,
        request.response_format,
        request.options.get("tool_choice"),
        request.options.get("input"),
    ):
        if extra:
            size += _bytes_of(extra)
    return size


def _bytes_of(value: Any) -> int:
    return len(value.encode() if isinstance(value, str) else json.dumps(value).encode())


@dataclass(frozen=True)
class Reservation:
    tokens: int
    cost_micros: int


NOTHING = Reservation(tokens=0, cost_micros=0)


def reservation_for(*, request: ChatRequest | None, choice: ModelChoice, batch: bool = False) -> Reservation:
    """The most the job can be charged: the request it will send, bounded as the provider receives it
    (request_bounded), at the dearest price it can run at (prices_from), through the money module's ceiling.

    `request` None: no provider request can be built for the job (no handler): it fails without a call.
    `batch`: the job goes through the provider's Batch API, at its batch price.
    """
    if request is None:
        return NOTHING
    bounded = request_bounded(request, choice)
    prompt, output = prompt_upper_bound(bounded), bounded.max_tokens
    may_write_cache = asks_for_cache_write([bounded.messages, bounded.tools, bounded.options])
    micros = max(
        cost_ceiling_micros(
            prompt_tokens=prompt, output_tokens=output, price=price, may_write_cache=may_write_cache, batch=batch
        )
        for price in prices_from(choice)
    )
    return Reservation(tokens=prompt + output, cost_micros=micros)


def asks_for_cache_write(value: Any) -> bool:
    """Whether a request marks content for the provider's cache (Anthropic's `cache_control`): its prompt may
    then be billed as cache writes, dearer than plain input."""
    if isinstance(value, dict):
        return "cache_control" in value or any(asks_for_cache_write(v) for v in value.values())
    if isinstance(value, list):
        return any(asks_for_cache_write(v) for v in value)
    return False


def quota_reserve(*, job: AIJob, choice: ModelChoice, request: ChatRequest | None, batch: bool = False) -> None:
    """Reserve the maximum of a new job on every applicable quota of the current month, or raise QUOTA_EXCEEDED.

    Must run inside the job's creation transaction: a refusal rolls back the job and any reservation already
    made on another quota. `batch`: the job goes through the provider's Batch API, at its batch price.
    """
    _reserve(job=job, need=reservation_for(request=request, choice=choice, batch=batch), choice=choice, rows=[])


def quota_rereserve(*, job: AIJob, choice: ModelChoice, request: ChatRequest | None) -> None:
    """Replace the reservations of a pending job whose input changed, or of a job switching to a fallback model,
    by what the new input or model needs (release the old, reserve the new), or raise QUOTA_EXCEEDED.

    Must run in a transaction that then changes the job by a compare-and-set on its status (the job's row is
    locked last, as at a job's end): if the job was claimed or ended meanwhile, or the quota refuses, the whole
    change rolls back and the old reservations stay as they were.
    """
    # Locked as a job's end locks them (quota_lock_open): a cancel committing meanwhile is seen here.
    rows = QuotaReservation.objects.select_for_update(of=("self",)).filter(job_id=job.pk).order_by("period_id", "id")
    _reserve(job=job, need=reservation_for(request=request, choice=choice), choice=choice, rows=list(rows))


def _reserve(*, job: AIJob, need: Reservation, choice: ModelChoice, rows: list[QuotaReservation]) -> None:
    """Move the job from what its reservation `rows` hold to holding `need` on every applicable quota of the
    current month.

    Each quota period moves by one conditional UPDATE (`… WHERE used + reserved + more <= limit`, `more` what
    the job needs beyond what it already holds there): concurrent writers queue on the row lock and each
    re-checks the condition against the committed counters, so when one more job fits, exactly one is admitted.
    A period the job no longer needs (another provider's quota, last month's) gets its reservation back; one
    given back by an earlier update is taken again if needed again (one row per job and period).

    Locks are taken in the order of every writer of reservations and quota periods (quota_lock_open): the job's
    reservation rows (the caller's, locked by (period, id)), then the periods by id, and the job's own row
    after all of them (a reservation row made here is new: nobody waits on it).
    """
    quotas = quotas_applicable(brand=job.brand, provider_id=choice.provider.pk, api_key=job.api_key)
    held = [r for r in rows if r.state == ReservationState.RESERVED]
    if not quotas and not held:
        return
    month = month_start()
    QuotaPeriod.objects.bulk_create([QuotaPeriod(quota=q, month=month) for q in quotas], ignore_conflicts=True)
    periods = QuotaPeriod.objects.filter(Q(quota__in=quotas, month=month) | Q(pk__in=[r.period_id for r in held]))
    row_of = {r.period_id: r for r in rows}
    wanted = {q.pk for q in quotas}
    grown = []
    for period in sorted(periods.select_related("quota"), key=lambda p: p.pk):  # quota_lock_open's order
        quota, row = period.quota, row_of.get(period.pk)
        before = row if row is not None and row.state == ReservationState.RESERVED else NOTHING
        after = need if period.quota_id in wanted and period.month == month else NOTHING
        if row is not None:
            state = ReservationState.RESERVED if after is not NOTHING else ReservationState.RELEASED
            closed_at = None if after is not NOTHING else timezone.now()
            QuotaReservation.objects.filter(pk=row.pk).update(
                state=state, tokens=after.tokens, cost_micros=after.cost_micros, closed_at=closed_at
            )
        more_tokens, more_micros = after.tokens - before.tokens, after.cost_micros - before.cost_micros
        guarded = QuotaPeriod.objects.filter(pk=period.pk)
        # Only growth is checked: giving some back is always allowed, even on a period already over its limit.
        if more_tokens > 0 and quota.monthly_token_limit is not None:
            guarded = guarded.filter(used_tokens__lte=(quota.monthly_token_limit - more_tokens) - F("reserved_tokens"))
        if more_micros > 0 and quota.monthly_cost_limit is not None:
            limit = to_micros(quota.monthly_cost_limit)
            guarded = guarded.filter(used_cost_micros__lte=(limit - more_micros) - F("reserved_cost_micros"))
        moved = guarded.update(
            reserved_tokens=F("reserved_tokens") + more_tokens,
            reserved_cost_micros=F("reserved_cost_micros") + more_micros,
        )
        if moved != 1:
            period.refresh_from_db()
            raise QuotaExceeded(
                f"This job needs up to {need.tokens} tokens / ${_dollars(need.cost_micros)}; "
                f"quota {quota.pk} does not have that much left this month",
                remaining_quota=_remaining(quota, period),
                required={"tokens": need.tokens, "cost": _dollars(need.cost_micros)},
            )
        if row is None:
            QuotaReservation.objects.create(job=job, period=period, tokens=after.tokens, cost_micros=after.cost_micros)
        if more_tokens > 0 or more_micros > 0:
            grown.append(period.pk)
    if grown:
        thresholds_check(period_pks=grown, reserved=True)


@dataclass(frozen=True)
class BulkReservation:
    """One job of a bulk creation, as quota_reserve_bulk reserves it."""

    job_pk: int
    input_data: Any
    choice: ModelChoice
    # What the job will send (ai_core.services.job_provider_request), built only when a quota applies.
    request: Callable[[], ChatRequest | None]
    batch: bool = False  # through a provider's Batch API: reserved at its batch price


def quota_reserve_bulk(*, brand: Brand, jobs: list[BulkReservation]) -> int:
    """Reserve every job's maximum on the quotas each must fit, all or nothing, or raise QUOTA_EXCEEDED.

    The bulk form of quota_reserve: per quota, ONE conditional UPDATE adds the sum of the needs of the jobs it
    applies to (`… WHERE used + reserved + total <= limit`), so the whole batch is admitted or refused in one
    step against the committed counters; then one reservation row per job and quota (bulk insert). Must run
    inside the creating transaction (a refusal rolls back the jobs and the quotas already reserved on).
    Returns the number of reservation rows.
    """
    if not jobs:
        return 0
    quotas = list(_quotas_of_brand_jobs(brand, api_key=None))  # API keys cannot submit batches
    if not quotas:
        return 0
    month = month_start()
    QuotaPeriod.objects.bulk_create([QuotaPeriod(quota=q, month=month) for q in quotas], ignore_conflicts=True)
    periods = {p.quota_id: p for p in QuotaPeriod.objects.filter(quota__in=quotas, month=month)}
    needs: dict[tuple, Reservation] = {}
    rows, totals = [], {q.pk: [0, 0] for q in quotas}
    for item in jobs:
        key = (item.choice.name, item.batch, json.dumps(item.input_data, sort_keys=True))
        need = needs.get(key) or needs.setdefault(
            key, reservation_for(request=item.request(), choice=item.choice, batch=item.batch)
        )
        for quota in quotas:
            if quota.provider_id is not None and quota.provider_id != item.choice.provider.pk:
                continue
            totals[quota.pk][0] += need.tokens
            totals[quota.pk][1] += need.cost_micros
            rows.append(
                QuotaReservation(
                    job_id=item.job_pk, period=periods[quota.pk], tokens=need.tokens, cost_micros=need.cost_micros
                )
            )
    for quota in sorted(quotas, key=lambda q: periods[q.pk].pk):  # quota_lock_open's order: period by id
        tokens, micros = totals[quota.pk]
        if not tokens and not micros:
            continue
        period = periods[quota.pk]
        guarded = QuotaPeriod.objects.filter(pk=period.pk)
        if quota.monthly_token_limit is not None:
            guarded = guarded.filter(used_tokens__lte=(quota.monthly_token_limit - tokens) - F("reserved_tokens"))
        if quota.monthly_cost_limit is not None:
            limit = to_micros(quota.monthly_cost_limit)
            guarded = guarded.filter(used_cost_micros__lte=(limit - micros) - F("reserved_cost_micros"))
        if (
            guarded.update(
                reserved_tokens=F("reserved_tokens") + tokens, reserved_cost_micros=F("reserved_cost_micros") + micros
            )
            != 1
        ):
            period.refresh_from_db()
            raise QuotaExceeded(
                f"These {len(jobs)} jobs need up to {tokens} tokens / ${_dollars(micros)}; "
                f"quota {quota.pk} does not have that much left this month",
                remaining_quota=_remaining(quota, period),
                required={"tokens": tokens, "cost": _dollars(micros)},
            )
    QuotaReservation.objects.bulk_create(rows, batch_size=5000)
    thresholds_check(period_pks=[periods[q.pk].pk for q in quotas if any(totals[q.pk])], reserved=True)
    return len(rows)


def quota_settle(*, job_pk: int, tokens: int, cost_micros: int) -> None:
    """Replace the job's reservations by its real charge, exactly once (a compare-and-set on each state), and
    record the budget alerts (thresholds) the real use now reaches (the one-job case of quota_close_locked)."""
    quota_close_locked(quota_lock_open(job_pks=[job_pk]), {job_pk: (tokens, cost_micros)})


def quota_release(*, job_pk: int) -> None:
    """Give the job's reservations back (failed, timeout, cancelled, deleted while pending), exactly once."""
    quota_close_locked(quota_lock_open(job_pks=[job_pk]), {job_pk: None})


@dataclass(frozen=True)
class OpenReservation:
    pk: int
    job_pk: int
    period_pk: int
    tokens: int
    cost_micros: int


def quota_lock_open(*, job_pks: list[int]) -> list[OpenReservation]:
    """The open reservations of these jobs, locked with their quota periods: the first half of closing them
    (quota_close_locked, same transaction), taken BEFORE the jobs' rows are locked by their end.

    The lock order, the same for every writer of reservations and quota periods (a job's end or a batch's,
    quota_reserve / quota_rereserve / quota_reserve_bulk, a deletion's release), so no two transactions ever
    wait on each other in a cycle:

    1. the reservation rows (all of them the transaction will change), by (period id, id);
    2. then the quota period rows, by id;
    3. then the job rows (the lifecycle's compare-and-set), by id.

    A batch's end locks every period once, whatever the number of its jobs on it; a job's end racing it either
    committed first (its reservation is no longer open) or waits for this transaction."""
    if not job_pks:
        return []
    held = [OpenReservation(*row) for row in statements.open_reservations_of_many(job_pks)]
    statements.periods_lock(sorted({r.period_pk for r in held}))
    return held


def quota_close_locked(held: list[OpenReservation], closes: dict[int, tuple[int, int] | None]) -> None:
    """Close the reservations `held` (quota_lock_open, same transaction) of the jobs in `closes`: settled at
    their charge (tokens, micro-dollars) or released (None). Each reservation is closed once (a compare-and-set
    on its state: one another writer closed first is left alone), each quota period moved once by the sum of
    its closed reservations (one statement), then the budget alerts of the periods settled on are recorded."""
    mine = [r for r in held if r.job_pk in closes]
    if not mine:
        return
    rows = []
    for r in mine:
        charge = closes[r.job_pk]
        state = ReservationState.RELEASED if charge is None else ReservationState.SETTLED
        rows.append((r.pk, state, *(charge or (0, 0))))
    won = set(statements.reservations_close(rows, timezone.now()))
    moves: dict[int, list[int]] = {}
    settled = set()
    for r in mine:
        if r.pk not in won:
            continue  # another writer closed it first
        tokens, micros = closes[r.job_pk] or (0, 0)
        if tokens > r.tokens or micros > r.cost_micros:
            # Cannot happen while providers honour the bound they are sent (reservation_for); if one does not,
            # the money was spent all the same: it is counted, and said.
            logger.warning(
                "job %s charged %s tokens / %s micro-dollars over its reservation of %s / %s",
                r.job_pk,
                tokens,
                micros,
                r.tokens,
                r.cost_micros,
            )
        move = moves.setdefault(r.period_pk, [0, 0, 0, 0])
        move[0] += r.tokens
        move[1] += r.cost_micros
        move[2] += tokens
        move[3] += micros
        if closes[r.job_pk] is not None:
            settled.add(r.period_pk)
    statements.periods_move([(pk, *move) for pk, move in moves.items()])
    if settled:
        thresholds_check(period_pks=sorted(settled))


def _dollars(micros: int) -> str:
    return str(from_micros(micros))


NEAR_LIMIT_RATIO = Decimal("0.8")


def _remaining(quota: Quota, period: QuotaPeriod | None) -> dict[str, Any]:
    used_t = period.used_tokens + period.reserved_tokens if period else 0
    used_c = period.used_cost_micros + period.reserved_cost_micros if period else 0
    return {
        "tokens": max(0, quota.monthly_token_limit - used_t) if quota.monthly_token_limit is not None else None,
        "cost": _dollars(max(0, to_micros(quota.monthly_cost_limit) - used_c))
        if quota.monthly_cost_limit is not None
        else None,
    }


def quota_status(*, quota: Quota, month: date | None = None) -> dict[str, Any]:
    """Used, reserved and remaining for the month, whether it is near its limit (80 %), and when it resets."""
    month = month_start(month)
    period = QuotaPeriod.objects.filter(quota=quota, month=month).first()
    used_t = period.used_tokens if period else 0
    reserved_t = period.reserved_tokens if period else 0
    used_c = period.used_cost_micros if period else 0
    reserved_c = period.reserved_cost_micros if period else 0
    ratio = use_ratio(quota, tokens=used_t + reserved_t, cost_micros=used_c + reserved_c)
    return {
        "quota_id": quota.pk,
        "scope": "brand" if quota.brand_id else "company",
        "brand_id": quota.brand_id,
        "provider": quota.provider.name if quota.provider_id else None,
        "month": month.strftime("%Y-%m"),
        "limits": {
            "tokens": quota.monthly_token_limit,
            "cost": str(quota.monthly_cost_limit) if quota.monthly_cost_limit is not None else None,
        },
        "used": {"tokens": used_t, "cost": _dollars(used_c)},
        "reserved": {"tokens": reserved_t, "cost": _dollars(reserved_c)},
        "remaining": _remaining(quota, period),
        "percent_used": float(round(ratio * 100, 2)),
        "near_limit": ratio >= NEAR_LIMIT_RATIO,
        "exceeded": ratio >= 1,
        "reset_at": next_month(month).isoformat(),
        "alert_thresholds": list(quota.alert_thresholds or []),
        "crossed_thresholds": crossings_of(quota, month),  # budget alerts of the month
    }


# --- quota administration (company admins) ------------------------------------------------------------


def quota_save(*, quota: Quota | None, company_id: int, data: dict[str, Any]) -> Quota:
    quota = quota or Quota(company_id=company_id)
    for field in ("brand", "provider", "monthly_token_limit", "monthly_cost_limit", "is_active"):
        if field in data:
            setattr(quota, field, data[field])
    if "alert_thresholds" in data:
        quota.alert_thresholds = clean_thresholds(data["alert_thresholds"])
    if quota.brand is not None and quota.brand.company_id != company_id:
        raise ApplicationError(
            "brand must belong to your company",
            error_code="VALIDATION_ERROR",
            errors={"brand": ["Unknown brand."]},
        )
    if quota.monthly_token_limit is None and quota.monthly_cost_limit is None:
        raise ApplicationError(
            "Set a monthly token limit, a monthly cost limit, or both",
            error_code="VALIDATION_ERROR",
            errors={"monthly_token_limit": ["One limit needed."]},
        )
    quota.save()
    return quota


# --- repricing ----------------------------------------------------------------------------------------


def usage_reprice(*, since, until, model_name: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Recompute the cost of usage priced in [since, until) at the prices now in effect at each row's
    priced_at, moving the difference into the jobs roll-up and the quota counters the job was settled on.
    """
    from django.db import transaction

    from ai_core.lifecycle import stat_move

    rows = AIJobUsage.objects.filter(priced_at__gte=since, priced_at__lt=until).order_by("id")
    if model_name:
        rows = rows.filter(model_name=model_name)
    changed, delta_total = 0, Decimal(0)
    for usage in rows.iterator():
        cost = cost_of(usage.tokens, price_at(usage.model_name, usage.priced_at))
        delta = cost.total_cost - usage.total_cost
        if not delta and cost.input_cost == usage.input_cost:
            continue
        changed += 1
        delta_total += delta
        if dry_run:
            continue
        with transaction.atomic():
            AIJobUsage.objects.filter(pk=usage.pk).update(
                input_cost=cost.input_cost, output_cost=cost.output_cost, total_cost=cost.total_cost
            )
            if delta and usage.final_status:
                stat_move(
                    brand_id=usage.brand_id,
                    day=timezone.localdate(usage.job_created_at),
                    job_type_id=usage.job_type_id,
                    deltas={},
                    cost={usage.final_status: delta},
                )
            if delta and usage.job_id:
                micros = to_micros(delta)
                for reservation in QuotaReservation.objects.filter(job_id=usage.job_id, state=ReservationState.SETTLED):
                    QuotaReservation.objects.filter(pk=reservation.pk).update(
                        settled_cost_micros=F("settled_cost_micros") + micros
                    )
                    QuotaPeriod.objects.filter(pk=reservation.period_id).update(
                        used_cost_micros=F("used_cost_micros") + micros
                    )
                    thresholds_check(period_pks=[reservation.period_id])  # a correction upwards may cross one
    return {"rows": changed, "delta": str(dollars(delta_total)), "dry_run": dry_run}
