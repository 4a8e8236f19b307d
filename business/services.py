"""Writes for companies, brands, users and login throttling."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import connection, transaction
from django.utils import timezone

from business.errors import ApplicationError
from business.models import Brand, Company, LoginFailure, Membership, User


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
                cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"aicore.login.{key}"])
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
