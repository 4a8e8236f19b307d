"""Provider capacity: each endpoint's rate limits for each model, kept by every process of the deployment together.

The shared state is the database (CapacityLimit, CapacityLease), not Redis: the database is there in every
set-up (the embedded SQLite one included, whatever the broker), it is already the truth the engine's
compare-and-sets rely on, and a lease row can be tied to the attempt that holds it. A call asks for a lease
under a lock on its limit's row (`acquire`): it is granted when the endpoint's windows have room, else the call
waits (CapacityWait, with the time a slot frees). Endpoints without limits (configured or learned) skip all of
it: one per-process memo lookup (`resolve`).

The windows, all read from the leases of the last minute:
- requests per minute: at most the limit in any 60 s, and at most limit × SMOOTHING/60 (at least 1) in any
  AICORE_CAPACITY_SMOOTHING_SECONDS, since providers enforce a minute's limit over shorter periods too;
- tokens per minute: the tokens a call may use (prompt estimate + output bound, corrected when it ends) in any
  60 s; a call never waits on tokens alone when the minute is empty (it would wait forever);
- concurrent requests: leases not released and not expired. A holder renews its lease with the job's heartbeat
  (`leases_renew`), so a process killed -9 mid-call gives its slot back when the lease expires.

Waking the waiting jobs (the pacer): a waiting job holds no thread and gets no wake-up of its own. Each grant or
wait while jobs wait schedules at most one wake-up, at the next free slot, and never more than one smoothing
window of them ahead (CapacityLimit.paced_until): wake-ups follow the capacity, not the queue's length. A
wake-up claims the best pending job (priority, then brand by weight), so which job gets a slot is the claim's
fair choice, whatever message woke it.
"""

import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Min, Q, Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ai_providers.models import CapacityLease, CapacityLimit
from ai_providers.selectors import LIMIT_FIELDS
from business.memo import TTLMemo

logger = logging.getLogger(__name__)
MINUTE = timedelta(seconds=60)


@dataclass(frozen=True)
class CapacityKey:
    """An endpoint (the environment's: credential None, or a company credential's) and a model."""

    provider_id: int | None  # None: the built-in echo provider, which has no row and no limits
    provider: str
    credential_id: int | None
    model: str


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None

    @property
    def unlimited(self) -> bool:
        return not any((self.requests_per_minute, self.tokens_per_minute, self.concurrent_requests))


@dataclass(frozen=True)
class Resolved:
    """What the memo knows of a key: its row and the configured limits (its own, else the endpoint-wide row's)."""

    limit_id: int
    configured: Limits


class CapacityWait(Exception):
    """No capacity now: a slot frees at `until`. `wakes`: when the caller should publish wake-ups (none: the
    pacer has enough scheduled, the job is claimed after one of them).

    `claimable_at`: when the waiting job may be claimed again. For the endpoint's own limits, at once: a wake-up
    comes only with a free slot, and which waiting job gets it must be the claim's fair choice (priority, brand
    weight); a job pushed out to a time of its own would miss the slot to whichever job is claimable then, and
    a brand whose jobs the claim favours would collect the refusals. After a 429, `until`: the job honours the
    provider's Retry-After itself."""

    def __init__(
        self,
        key: CapacityKey,
        until: datetime,
        *,
        wakes: list[datetime],
        reason: str = "",
        claimable_at: datetime | None = None,
    ) -> None:
        super().__init__(f"{key.provider} {key.model}: no capacity until {until.isoformat()} ({reason})")
        self.key, self.until, self.wakes, self.reason = key, until, wakes, reason
        self.claimable_at = claimable_at or timezone.now()

    def as_waiting(self) -> dict[str, str]:
        """The job's `waiting` field while it waits."""
        return {
            "reason": "provider_capacity",
            "provider": self.key.provider,
            "model": self.key.model,
            "until": self.until.isoformat(),
        }


memo = TTLMemo("AICORE_CAPACITY_CACHE_SECONDS")


def resolve(key: CapacityKey) -> Resolved | None:
    """The key's limit row, or None when the endpoint has no row for it (no limit configured or learned)."""
    if key.provider_id is None or not settings.AICORE_CAPACITY_ENABLED:
        return None
    return memo.get(key, lambda: _resolve(key))


def _resolve(key: CapacityKey) -> Resolved | None:
    rows = {
        row["model"]: row
        for row in CapacityLimit.objects.filter(
            provider_id=key.provider_id, credential_id=key.credential_id, model__in=[key.model, ""]
        ).values("id", "model", *LIMIT_FIELDS)
    }
    own, endpoint_wide = rows.get(key.model), rows.get("")
    configured = Limits(**{name: (own or {}).get(name) or (endpoint_wide or {}).get(name) for name in LIMIT_FIELDS})
    if own is None:
        if endpoint_wide is None or configured.unlimited:
            return None
        own = {"id": _row_for(key).pk}  # the model's own row holds its leases and what is learned of it
    return Resolved(limit_id=own["id"], configured=configured)


def _row_for(key: CapacityKey) -> CapacityLimit:
    """The key's row, created when missing (two processes may race to create it: the loser reads it)."""
    lookup = {"provider_id": key.provider_id, "credential_id": key.credential_id, "model": key.model}
    row = CapacityLimit.objects.filter(**lookup).first()
    if row is None:
        try:
            with transaction.atomic():
                row = CapacityLimit.objects.create(**lookup)
        except IntegrityError:
            row = CapacityLimit.objects.get(**lookup)
        memo.clear()
    return row


def effective(configured: Limits, row: dict[str, Any], now: datetime) -> Limits:
    """The limits in force: the configured ones and the learned ones (while fresh), the lower of both when both
    exist (never more than the provider says; an operator may ask for less)."""
    learned_fresh = row["learned_until"] is not None and row["learned_until"] > now

    def lower(configured_value: int | None, learned_value: int | None) -> int | None:
        values = [v for v in (configured_value, learned_value if learned_fresh else None) if v]
        return min(values) if values else None

    return Limits(
        requests_per_minute=lower(configured.requests_per_minute, row["learned_requests_per_minute"]),
        tokens_per_minute=lower(configured.tokens_per_minute, row["learned_tokens_per_minute"]),
        concurrent_requests=configured.concurrent_requests,
    )


def smoothing() -> timedelta:
    return timedelta(seconds=settings.AICORE_CAPACITY_SMOOTHING_SECONDS)


def per_smoothing_window(requests_per_minute: int) -> int:
    return max(1, int(requests_per_minute * settings.AICORE_CAPACITY_SMOOTHING_SECONDS / 60))


@dataclass
class Lease:
    """A granted call (lease_id None: the endpoint is unlimited, nothing is held). `wakes`: wake-ups the grant
    scheduled for waiting jobs (the caller publishes them)."""

    key: CapacityKey
    limit_id: int | None
    lease_id: int | None
    wakes: list[datetime] = field(default_factory=list)


STATE_FIELDS = ("learned_requests_per_minute", "learned_tokens_per_minute", "learned_until", "blocked_until")


def acquire(key: CapacityKey, *, holder: str, tokens: int) -> Lease:
    """A lease for one call of `tokens` tokens at most, or CapacityWait (acquire_many for one call)."""
    (granted,) = acquire_many(key, [(holder, tokens)])
    if isinstance(granted, CapacityWait):
        raise granted
    return granted


def acquire_many(key: CapacityKey, calls: list[tuple[str, int]]) -> list["Lease | CapacityWait"]:
    """For each call (holder, tokens at most), in order: a lease, or the CapacityWait it would raise. Once one
    waits, the calls after it wait too (the order is the claim's fair order: none overtakes).

    1. Lock the key's row (PostgreSQL: FOR UPDATE; SQLite: the IMMEDIATE transaction's write lock): one lock for
       all of them, so a batch of calls costs the windows one read, not one each.
    2. Read the windows from the leases of the last minute; grant while no window is full.
    3. Lease rows for the grants; the waits counted; in both cases a wake-up scheduled when jobs are waiting
       (the wake-ups ride on the first result: the caller publishes each result's).
    """
    resolved = resolve(key)
    if resolved is None:
        return [Lease(key=key, limit_id=None, lease_id=None) for _ in calls]
    with transaction.atomic():
        row = (
            CapacityLimit.objects.select_for_update()
            .filter(pk=resolved.limit_id)
            .values("paced_until", "waited_at", *STATE_FIELDS)
            .first()
        )
        if row is None:  # deleted meanwhile
            memo.clear()
            return [Lease(key=key, limit_id=None, lease_id=None) for _ in calls]
        now = timezone.now()
        limits = effective(resolved.configured, row, now)
        waiting = row["waited_at"] is not None and row["waited_at"] > now - MINUTE
        if limits.unlimited and not (row["blocked_until"] and row["blocked_until"] > now):
            # Nothing to count (a pause is over, no limit is known): wake the jobs the pause made wait.
            wakes = _pace(resolved.limit_id, row, limits, now, now) if waiting else []
            results = [Lease(key=key, limit_id=resolved.limit_id, lease_id=None) for _ in calls]
            results[0].wakes = wakes
            return results
        leases = CapacityLease.objects.filter(limit_id=resolved.limit_id)
        leases.filter(granted_at__lt=now - MINUTE).filter(Q(released_at__isnull=False) | Q(expires_at__lt=now)).delete()
        windows = _windows(leases, now)
        granted: list[CapacityLease] = []
        until, reason = None, ""
        for holder, tokens in calls:
            until, reason = _next_free(windows, limits, row, now, tokens)
            if until is not None:
                break
            granted.append(
                CapacityLease(
                    limit_id=resolved.limit_id,
                    holder=holder[:100],
                    tokens=tokens,
                    granted_at=now,
                    expires_at=now + lease_ttl(),
                )
            )
            _count_grant(windows, now, tokens)
        CapacityLease.objects.bulk_create(granted)
        results: list[Lease | CapacityWait] = [
            Lease(key=key, limit_id=resolved.limit_id, lease_id=lease.pk) for lease in granted
        ]
        refused = len(calls) - len(granted)
        if refused:
            wakes = _pace(resolved.limit_id, row, limits, until, now)
            CapacityLimit.objects.filter(pk=resolved.limit_id).update(
                waited_at=now,
                waits=F("waits") + refused,
                wait_seconds=F("wait_seconds") + refused * (until - now).total_seconds(),
            )
            results += [CapacityWait(key, until, wakes=[], reason=reason) for _ in range(refused)]
        else:
            wakes = _pace(resolved.limit_id, row, limits, now, now) if waiting else []
        results[0].wakes = wakes
    return results


def _windows(leases, now: datetime) -> dict[str, Any]:
    """The windows' counts from the leases of the last minute (one aggregate)."""
    short = now - smoothing()
    return leases.aggregate(
        minute=Count("id", filter=Q(granted_at__gt=now - MINUTE)),
        minute_oldest=Min("granted_at", filter=Q(granted_at__gt=now - MINUTE)),
        short=Count("id", filter=Q(granted_at__gt=short)),
        short_oldest=Min("granted_at", filter=Q(granted_at__gt=short)),
        tokens=Sum("tokens", filter=Q(granted_at__gt=now - MINUTE)),
        running=Count("id", filter=Q(released_at__isnull=True, expires_at__gt=now)),
        running_first_expiry=Min("expires_at", filter=Q(released_at__isnull=True, expires_at__gt=now)),
    )


def _count_grant(windows: dict[str, Any], now: datetime, tokens: int) -> None:
    """The windows with one more lease granted `now` (as _windows would read them after it)."""
    windows["minute"] += 1
    windows["short"] += 1
    windows["minute_oldest"] = windows["minute_oldest"] or now
    windows["short_oldest"] = windows["short_oldest"] or now
    windows["tokens"] = (windows["tokens"] or 0) + tokens
    windows["running"] += 1
    expiry = now + lease_ttl()
    first = windows["running_first_expiry"]
    windows["running_first_expiry"] = expiry if first is None else min(first, expiry)


def _next_free(
    windows: dict[str, Any], limits: Limits, row: dict, now: datetime, tokens: int
) -> tuple[datetime | None, str]:
    """None when a call of `tokens` fits now, else when the first full window frees a slot, and which."""
    if row["blocked_until"] and row["blocked_until"] > now:
        return row["blocked_until"], "the provider asked to wait"
    rpm, tpm, concurrent = limits.requests_per_minute, limits.tokens_per_minute, limits.concurrent_requests
    if concurrent and windows["running"] >= concurrent:
        # A slot frees when a call ends, which no one can tell in advance: look again after a slot's interval.
        return min(windows["running_first_expiry"], now + _slot_interval(limits)), "concurrent requests"
    if rpm and windows["minute"] >= rpm:
        return windows["minute_oldest"] + MINUTE, "requests per minute"
    if rpm and windows["short"] >= per_smoothing_window(rpm):
        return windows["short_oldest"] + smoothing(), "requests per minute (smoothed)"
    if tpm and windows["minute"] and (windows["tokens"] or 0) + tokens > tpm:
        return windows["minute_oldest"] + MINUTE, "tokens per minute"
    return None, ""


def _pace(limit_id: int, row: dict, limits: Limits, not_before: datetime, now: datetime) -> list[datetime]:
    """Wake-ups for waiting jobs, one per free slot from `not_before` until one smoothing window past it, minus
    those already scheduled (up to paced_until): none when enough are. Several at once keep several claims
    going in parallel when the pacer fell behind (the rate would otherwise be one claim's latency)."""
    interval = _slot_interval(limits)
    start = max(row["paced_until"] or now, not_before)
    end = max(now, not_before) + smoothing()
    wakes: list[datetime] = []
    while start < end and len(wakes) < MAX_WAKES_AT_ONCE:
        wakes.append(start)
        start += interval
    if wakes:
        CapacityLimit.objects.filter(pk=limit_id).update(paced_until=start)
    return wakes


MAX_WAKES_AT_ONCE = 100


def _slot_interval(limits: Limits) -> timedelta:
    """The time between two slots: at the request rate; else a call a window per concurrent slot; else a
    window (a token rate gives none: calls differ); no limit at all (a pause just ended): as fast as allowed."""
    if limits.requests_per_minute:
        return smoothing() / per_smoothing_window(limits.requests_per_minute)
    if limits.concurrent_requests:
        return smoothing() / limits.concurrent_requests
    if limits.tokens_per_minute:
        return smoothing()
    return smoothing() / MAX_WAKES_AT_ONCE


def lease_ttl() -> timedelta:
    return timedelta(milliseconds=settings.AICORE_CAPACITY_LEASE_MS)


def leases_renew(lease_ids: list[int]) -> int:
    """Extend the leases of calls still in flight here (the in-flight watcher's heartbeat)."""
    if not lease_ids:
        return 0
    now = timezone.now()
    return CapacityLease.objects.filter(pk__in=lease_ids, released_at__isnull=True).update(expires_at=now + lease_ttl())


def release(lease: Lease, *, tokens: int | None, headers: dict[str, str], status: int | None) -> None:
    """The call ended: free its slot (its tokens corrected to what it used), count it, and learn what the
    provider's headers say (the row is created when an endpoint without one states a limit)."""
    now = timezone.now()
    if lease.lease_id is not None:
        done = CapacityLease.objects.filter(pk=lease.lease_id)
        done.update(released_at=now, **({"tokens": tokens} if tokens is not None else {}))
    learned = headers_limits(headers, status=status, now=now)
    limit_id = lease.limit_id
    if limit_id is None and (learned.requests_per_minute or learned.tokens_per_minute or learned.blocked_until):
        if lease.key.provider_id is None or not settings.AICORE_CAPACITY_ENABLED:
            return
        limit_id = _row_for(lease.key).pk  # a limit the provider told us of: from now on it is kept
        memo.clear()  # and this process keeps it from its next call (the row may be another process's)
    if limit_id is None:
        return
    changes: dict[str, Any] = {"calls": F("calls") + 1}
    if status == 429:
        changes["rate_limited"] = F("rate_limited") + 1
    if learned.blocked_until:
        changes["blocked_until"] = learned.blocked_until
    changes.update(_learned_changes(limit_id, learned, now))
    CapacityLimit.objects.filter(pk=limit_id).update(**changes)


def after_rate_limit(key: CapacityKey, headers: dict[str, str]) -> CapacityWait:
    """A 429 that happened anyway (another client shares the key): wait as long as the provider says (else
    a retry's first backoff), woken by a wake-up of its own."""
    seconds = retry_after_seconds(headers)
    if seconds is None:
        seconds = settings.AICORE_RETRY_BASE_MS / 1000
    until = timezone.now() + timedelta(seconds=seconds)
    return CapacityWait(key, until, wakes=[until], reason="the provider answered 429", claimable_at=until)


@dataclass(frozen=True)
class Learned:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    blocked_until: datetime | None = None


class _LastLearned:
    """What this process last wrote of each row's learned limits: the same values are written again only when
    their expiry needs moving (a quarter of AICORE_CAPACITY_LEARNED_SECONDS), not on every response."""

    def __init__(self) -> None:
        self._written: dict[int, tuple[Learned, datetime]] = {}
        self._lock = threading.Lock()

    def due(self, limit_id: int, learned: Learned, now: datetime) -> bool:
        refresh = timedelta(seconds=settings.AICORE_CAPACITY_LEARNED_SECONDS / 4)
        with self._lock:
            last = self._written.get(limit_id)
            if last is not None and last[0] == learned and last[1] > now - refresh:
                return False
            self._written[limit_id] = (learned, now)
            return True


last_learned = _LastLearned()


def _learned_changes(limit_id: int, learned: Learned, now: datetime) -> dict[str, Any]:
    if not (learned.requests_per_minute or learned.tokens_per_minute):
        return {}
    values = Learned(learned.requests_per_minute, learned.tokens_per_minute)
    if not last_learned.due(limit_id, values, now):
        return {}
    memo.clear()  # this process uses the new limits at once; the others within AICORE_CAPACITY_CACHE_SECONDS
    return {
        "learned_requests_per_minute": learned.requests_per_minute,
        "learned_tokens_per_minute": learned.tokens_per_minute,
        "learned_until": now + timedelta(seconds=settings.AICORE_CAPACITY_LEARNED_SECONDS),
    }


def headers_limits(headers: dict[str, str], *, status: int | None, now: datetime) -> Learned:
    """The limits a response's headers state (OpenAI's x-ratelimit-*, Anthropic's anthropic-ratelimit-*), and
    until when to stop: Retry-After on 429/503/529, or no requests left until the window's reset."""
    if not headers:
        return Learned()
    get = {name.lower(): value for name, value in headers.items()}.get
    rpm = _int(get("x-ratelimit-limit-requests") or get("anthropic-ratelimit-requests-limit"))
    tpm = _int(
        get("x-ratelimit-limit-tokens")
        or get("anthropic-ratelimit-tokens-limit")
        or get("anthropic-ratelimit-input-tokens-limit")
    )
    blocked_until = None
    if status in {429, 503, 529}:
        wait = retry_after_seconds(headers)
        if wait is not None:
            blocked_until = now + timedelta(seconds=wait)
    remaining = _int(get("x-ratelimit-remaining-requests") or get("anthropic-ratelimit-requests-remaining"))
    if blocked_until is None and remaining == 0:
        reset = _reset_at(get("x-ratelimit-reset-requests") or get("anthropic-ratelimit-requests-reset"), now)
        blocked_until = reset
    return Learned(requests_per_minute=rpm, tokens_per_minute=tpm, blocked_until=blocked_until)


def retry_after_seconds(headers: dict[str, str]) -> float | None:
    """Retry-After (seconds or an HTTP date), or OpenAI's retry-after-ms; None when absent or unreadable."""
    get = {name.lower(): value for name, value in (headers or {}).items()}.get
    milliseconds = _float(get("retry-after-ms"))
    if milliseconds is not None:
        return max(0.0, milliseconds / 1000)
    value = get("retry-after")
    seconds = _float(value)
    if seconds is not None:
        return max(0.0, seconds)
    if value:
        try:
            return max(0.0, (parsedate_to_datetime(value) - timezone.now()).total_seconds())
        except (TypeError, ValueError):
            return None
    return None


DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _reset_at(value: str | None, now: datetime) -> datetime | None:
    """OpenAI's reset is a duration ("1s", "6m0s", "20ms"); Anthropic's an RFC 3339 time."""
    if not value:
        return None
    parts = DURATION_PART.findall(value)
    if parts and "".join(number + unit for number, unit in parts) == value.strip():
        return now + timedelta(seconds=sum(float(number) * DURATION_UNITS[unit] for number, unit in parts))
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
