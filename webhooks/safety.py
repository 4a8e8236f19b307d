"""The network guard (kernel.netguard) as it applies to webhook targets: a brand must not make AI Core call into
its own network. Checked when an endpoint is saved, and by the transport on each connection (DNS answers change).
"""

from django.conf import settings

from business.errors import ApplicationError
from kernel.netguard import NetPolicy, URLRefused, check_url


class UnsafeTarget(ApplicationError):
    error_code = "UNSAFE_WEBHOOK_URL"


def webhook_policy() -> NetPolicy:
    """What the operator allows webhook targets to reach beyond public addresses: hosts or networks listed in
    AICORE_WEBHOOK_ALLOWED_HOSTS, or everything with AICORE_WEBHOOK_ALLOW_PRIVATE."""
    return NetPolicy.from_entries(
        settings.AICORE_WEBHOOK_ALLOWED_HOSTS, allow_private=settings.AICORE_WEBHOOK_ALLOW_PRIVATE
    )


def check_target(url: str) -> str:
    """The URL if it is a safe webhook target, else raise UnsafeTarget (400)."""
    try:
        check_url(url, webhook_policy())
    except URLRefused as exc:
        raise UnsafeTarget(
            f"The webhook URL is refused: {exc.message} (AICORE_WEBHOOK_ALLOWED_HOSTS or AICORE_WEBHOOK_ALLOW_PRIVATE)",
            errors={"url": [exc.hint]},
        ) from None
    return url
