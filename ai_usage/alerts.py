"""Budget alerts: a quota's month crossing one of its thresholds (default 50, 80, 100 % of a limit).

When: on settlement, against the month's settled use (`used`, the real cost and tokens of finished jobs); and
on reservation, against the settled use plus what jobs in flight hold (`used + reserved`): a batch of 10 000
jobs reserving 90 % of the budget is announced when it is submitted, not hours later as its jobs settle (a
reservation is an upper bound, so such an alert says "committed", its `basis` says which). A refused
reservation (429 QUOTA_EXCEEDED) is rolled back with the refused job, so it records nothing. The percentage is
the larger of tokens / token limit and cost / cost limit.

Once: a row per (quota, month, threshold) under a unique constraint; inserting it with ON CONFLICT DO
NOTHING is the compare-and-set that many settlements racing past the same threshold cannot win twice. Only
the winner announces it (`quota_threshold_crossed`, after commit: the webhooks app delivers `quota.threshold`).
"""

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from ai_providers.money import dollars, from_micros, to_micros
from ai_usage.models import CrossingBasis, Quota, QuotaPeriod, QuotaThresholdCrossing, normalise_thresholds
from ai_usage.statements import crossing_insert_once
from business.errors import ApplicationError
from business.timestamps import api_timestamp

# Sent after the commit of the settlement that crossed a threshold: sender=Quota, quota, crossing, payload (the
# `quota.threshold` webhook's data).
quota_threshold_crossed = Signal()


def use_ratio(quota: Quota, *, tokens: int, cost_micros: int) -> Decimal:
    """How much of the quota's tightest limit `tokens` and `cost_micros` take (1 = all of it)."""
    ratios = [Decimal(0)]
    if quota.monthly_token_limit:
        ratios.append(Decimal(tokens) / Decimal(quota.monthly_token_limit))
    if quota.monthly_cost_limit:
        ratios.append(Decimal(cost_micros) / Decimal(to_micros(quota.monthly_cost_limit)))
    return max(ratios)


def clean_thresholds(value: Any) -> list[int]:
    """A quota's thresholds as given by a client, normalised (models.normalise_thresholds), or a 400."""
    try:
        return normalise_thresholds(value)
    except ValueError as exc:
        raise ApplicationError(
            str(exc), error_code="VALIDATION_ERROR", errors={"alert_thresholds": [str(exc)]}
        ) from None


def thresholds_check(*, period_pks: list[int], reserved: bool = False) -> list[QuotaThresholdCrossing]:
    """Record (once) every threshold the settled use of these quota periods has reached (`reserved`: the
    settled use plus the reservations, after a reservation). Call inside the transaction that moved their
    counters, after the move: the period row it locked then holds what every earlier writer committed plus
    this one."""
    crossed = []
    for period in (
        QuotaPeriod.objects.filter(pk__in=period_pks)
        .select_related("quota__brand", "quota__provider")
        .order_by("quota_id")
    ):
        quota = period.quota
        held_tokens, held_micros = (period.reserved_tokens, period.reserved_cost_micros) if reserved else (0, 0)
        percent = (
            use_ratio(quota, tokens=period.used_tokens + held_tokens, cost_micros=period.used_cost_micros + held_micros)
            * 100
        )
        # Only well-formed thresholds count: a value written past the API's and the admin's checks must not
        # break the settlement of a job.
        due = [t for t in quota.alert_thresholds or [] if type(t) is int and 1 <= t <= 100 and percent >= t]
        if not due:
            continue
        known = set(
            QuotaThresholdCrossing.objects.filter(quota=quota, month=period.month).values_list("threshold", flat=True)
        )
        for threshold in sorted(set(due) - known):
            crossing = QuotaThresholdCrossing(
                quota=quota,
                month=period.month,
                threshold=threshold,
                percent_used=percent.quantize(Decimal("0.01")),
                used_tokens=period.used_tokens,
                used_cost_micros=period.used_cost_micros,
                reserved_tokens=held_tokens,
                reserved_cost_micros=held_micros,
                basis=CrossingBasis.RESERVATION if reserved else CrossingBasis.SETTLEMENT,
                crossed_at=timezone.now(),
            )
            if _insert_once(crossing):
                crossed.append(crossing)
                payload = crossing_payload(quota, crossing)
                transaction.on_commit(
                    lambda quota=quota, crossing=crossing, payload=payload: quota_threshold_crossed.send(
                        sender=Quota, quota=quota, crossing=crossing, payload=payload
                    )
                )
    return crossed


def _insert_once(crossing: QuotaThresholdCrossing) -> bool:
    return crossing_insert_once(crossing)


def crossings_of(quota: Quota, month) -> list[dict[str, Any]]:
    """The thresholds the quota crossed in `month`, lowest first (the dashboards and quota_status)."""
    return [
        {
            "threshold": c.threshold,
            "crossed_at": api_timestamp(c.crossed_at),
            "percent_used": float(c.percent_used),
        }
        for c in QuotaThresholdCrossing.objects.filter(quota=quota, month=month).order_by("threshold")
    ]


def crossing_payload(quota: Quota, crossing: QuotaThresholdCrossing) -> dict[str, Any]:
    """The `quota.threshold` webhook's data: which quota, brand (null: company-wide), threshold, month, use
    when it was crossed (`basis` reservation: `reserved` counts towards it), and the limits."""
    return {
        "quota_id": quota.pk,
        "brand": {"id": quota.brand_id, "name": quota.brand.name} if quota.brand_id else None,
        "provider": quota.provider.name if quota.provider_id else None,
        "threshold": crossing.threshold,
        "month": crossing.month.strftime("%Y-%m"),
        "percent_used": float(crossing.percent_used),
        "basis": crossing.basis,
        "used": {"tokens": crossing.used_tokens, "cost": str(from_micros(crossing.used_cost_micros))},
        "reserved": {"tokens": crossing.reserved_tokens, "cost": str(from_micros(crossing.reserved_cost_micros))},
        "limit": {
            "tokens": quota.monthly_token_limit,
            "cost": str(dollars(quota.monthly_cost_limit)) if quota.monthly_cost_limit is not None else None,
        },
        "crossed_at": api_timestamp(crossing.crossed_at),
    }
