"""Writes for companies, brands, users, login throttling and brand API keys."""

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from business import statements
from business.errors import ApplicationError, Conflict
from business.memo import TTLMemo
from business.models import ApiKey, ApiKeyScope, Brand, Company, LoginFailure, Membership, User


def login_check(*, username: str, password: str, ip: str | None) -> User:
    """Authenticate, refusing with 429 once the username or the IP has too many recent failures.

    Failures are rows in the database so every server process sees the same counts. Checking the count and
    counting the attempt are one step (_take_attempt): an attempt is recorded as a failure before the password
    is checked and forgotten again if it was right, so parallel guesses are evaluated up to the limit, no more.
    """
    attempt = _take_attempt(username=username[:150], ip=ip)
    # Outside the lock: hashing a password takes a while, and other usernames must not wait for it.
    user = authenticate(username=username, password=password)
    if user is None:
        raise ApplicationError("Invalid username or password", error_code="INVALID_CREDENTIALS", status_code=401)
    LoginFailure.objects.filter(pk=attempt.pk).delete()
    return user


@transaction.atomic
def _take_attempt(*, username: str, ip: str | None) -> LoginFailure:
    """Count this attempt if the username and the IP are under their limits, else refuse with 429.

    Attempts on one username (and from one IP) take their turn: on PostgreSQL under a transaction-scoped
    advisory lock per key, taken in one order so two attempts can never deadlock; SQLite's transactions
    take the database's write lock when they start (transaction_mode IMMEDIATE), which serialises them anyway.
    """
    if connection.vendor == "postgresql":
        keys = sorted({f"user:{username}", *([f"ip:{ip}"] if ip else [])})
        with connection.cursor() as cursor:
            for key in keys:
                cursor.execute(statements.ADVISORY_XACT_LOCK, [f"aicore.login.{key}"])
    since = timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    recent = LoginFailure.objects.filter(at__gte=since)
    too_many = recent.filter(username=username).count() >= settings.LOGIN_FAILURES_PER_USERNAME or (
        ip is not None and recent.filter(ip=ip).count() >= settings.LOGIN_FAILURES_PER_IP
    )
    if too_many:
        raise ApplicationError(
            "Too many failed login attempts; try again later",
            error_code="LOGIN_THROTTLED",
            status_code=429,
            retry_after_seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS,
        )
    return LoginFailure.objects.create(username=username, ip=ip)


@transaction.atomic
def user_provision(
    *,
    username: str,
    password: str | None,
    company_name: str | None = None,
    member_of: list[str] = (),
    admin_of: list[str] = (),
    company_admin: bool = False,
    staff: bool = False,
) -> User:
    """Create or update a user, creating the company and brands as needed (idempotent)."""
    user = User.objects.filter(username=username).first() or User(username=username)
    company = None
    if company_name:
        company, _ = Company.objects.get_or_create(name=company_name)
    elif user.company_id:
        company = user.company
    if (member_of or admin_of or company_admin) and company is None:
        raise ApplicationError("Brands and company admin rights need --company", error_code="COMPANY_REQUIRED")
    if user.pk and company is not None and user.company_id not in (None, company.id):
        # Memberships and company-admin rights are tied to one company; moving would leave them dangling.
        raise ApplicationError(f"User '{username}' belongs to another company", error_code="COMPANY_MISMATCH")
    user.company = company
    user.is_company_admin = company_admin or user.is_company_admin
    if staff:
        user.is_staff = True
        user.is_superuser = True
    if password and not user.check_password(password):
        # Only a new password is set: setting one revokes the user's tokens (CHECK_REVOKE_TOKEN), and
        # re-provisioning the same user (make run's demo data) must not log everybody out.
        user.set_password(password)
    user.save()
    for role, names in ((Membership.Role.MEMBER, member_of), (Membership.Role.ADMIN, admin_of)):
        for name in names:
            brand, _ = Brand.objects.get_or_create(company=company, name=name)
            Membership.objects.update_or_create(user=user, brand=brand, defaults={"role": role})
    return user


# --- brand API keys -------------------------------------------------------------------------------------

API_KEY_PREFIX = "aic_"
# last_used_at moves at most this often: a key used 100 times a second costs one write a minute, not 100 a second.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class ApiKeyRefused(ApplicationError):
    status_code = 401
    error_code = "API_KEY_INVALID"


def brand_capacity_set(*, brand: Brand, **fields: int | None) -> Brand:
    """Change how the brand shares provider capacity (`capacity_weight`, `max_running_jobs`: the fields given).
    The claim reads both from the row, so the next claim anywhere applies them."""
    for name, value in fields.items():
        setattr(brand, name, value)
    if fields:
        brand.save(update_fields=list(fields))
    return brand


def api_key_hash(raw_key: str) -> str:
    """SHA-256 of the key. The key carries 256 random bits, so a fast hash is safe: nothing to brute-force."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(
    *,
    brand: Brand,
    user: User,
    name: str,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    monthly_cost_limit: Decimal | None = None,
) -> tuple[ApiKey, str]:
    """Create a key for the brand. Returns (key row, the full key): the only time the key exists in clear."""
    scopes = sorted(set(scopes if scopes is not None else ApiKeyScope.values))
    unknown = [scope for scope in scopes if scope not in ApiKeyScope.values]
    if unknown or not scopes:
        raise ApplicationError(
            f"Unknown or missing scopes: {', '.join(unknown) or 'none given'}",
            error_code="VALIDATION_ERROR",
            errors={"scopes": [f"Choose among {', '.join(ApiKeyScope.values)}."]},
        )
    for _ in range(5):  # the prefix is unique: a collision (1 in 2^48 per pair) draws again
        raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    brand=brand,
                    name=name,
                    prefix=raw[len(API_KEY_PREFIX) : len(API_KEY_PREFIX) + 8],
                    key_hash=api_key_hash(raw),
                    scopes=scopes,
                    created_by=user,
                    expires_at=expires_at,
                    monthly_cost_limit=monthly_cost_limit,
                )
            return key, raw
        except IntegrityError:
            continue
    raise Conflict("Could not draw a unique key prefix; try again", error_code="API_KEY_PREFIX_TAKEN")


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke once (a compare-and-set on revoked_at); the key is refused from the next request on."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_keys_memo.clear()  # refused here from the next request on; other processes: within the memo's TTL
    key.refresh_from_db()
    return key


# A key that authenticated, with its brand, creator and the creator's right to act on the brand, is reused
# for this many seconds per process (AICORE_API_KEY_CACHE_SECONDS): every request of a service presents it.
# A revocation or an edit of a key, user or membership in this process applies to the next request at once
# (api_key_revoke clears it; so do saves and deletes, see BusinessConfig.ready); one made in another process
# within the TTL. Expiry is checked on every request. Only matching keys are kept: no entry for a wrong key.
api_keys_memo = TTLMemo("AICORE_API_KEY_CACHE_SECONDS")


def api_key_use(raw_key: str) -> ApiKey:
    """The usable key a request presents (with its brand, company and creator loaded), or ApiKeyRefused.

    1. Look the row up by its prefix (unique), 2. compare the hashes in constant time, 3. refuse a revoked or
    expired key and a key whose creator can no longer act on its brand, 4. note the use, at most once a minute.
    Steps 1 and 2 are memoised (api_keys_memo).
    """
    digest = api_key_hash(raw_key)
    key = api_keys_memo.get(digest, lambda: _api_key_matching(raw_key, digest))
    now = timezone.now()
    refusal = api_key_refusal(key, now=now)
    if refusal:
        raise ApiKeyRefused(refusal[1], error_code=refusal[0])
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        # Conditional: of many requests racing past the minute, one writes.
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        key.last_used_at = now
    return key


def api_key_refusal(key: ApiKey, *, now: datetime | None = None) -> tuple[str, str] | None:
    """Why the key can no longer be used ((error_code, message)), or None. `key` needs the creator_allowed
    annotation of _api_key_rows."""
    now = now or timezone.now()
    if key.revoked_at is not None:
        return "API_KEY_REVOKED", "This API key has been revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "API_KEY_EXPIRED", "This API key has expired"
    if key.created_by is None or not key.created_by.is_active or not key.creator_allowed:
        return "API_KEY_OWNER_GONE", "The user who created this API key can no longer act on its brand"
    return None


def api_key_still_usable(key_pk: int) -> bool:
    """For long-lived requests (event streams): whether the key they authenticated with may still be used."""
    key = _api_key_rows().filter(pk=key_pk).first()
    return key is not None and api_key_refusal(key) is None


def _api_key_rows():
    creator = User.objects.filter(pk=OuterRef("created_by_id"), company_id=OuterRef("brand__company_id"))
    member = Membership.objects.filter(user_id=OuterRef("pk"), brand_id=OuterRef(OuterRef("brand_id")))
    return ApiKey.objects.select_related("brand__company", "created_by").annotate(
        creator_allowed=Exists(creator.filter(Q(is_company_admin=True) | Exists(member)))
    )


def _api_key_matching(raw_key: str, digest: str) -> ApiKey:
    """The key row whose hash matches (compared in constant time), else ApiKeyRefused (not memoised)."""
    key = None
    if raw_key.startswith(API_KEY_PREFIX) and len(raw_key) >= len(API_KEY_PREFIX) + 32:
        key = _api_key_rows().filter(prefix=raw_key[len(API_KEY_PREFIX) : len(API_KEY_PREFIX) + 8]).first()
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise ApiKeyRefused("Invalid API key")
    return key
