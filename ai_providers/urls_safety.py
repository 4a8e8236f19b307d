"""The network guard (kernel.netguard) as it applies to company-supplied provider base URLs."""

from django.conf import settings

from business.errors import ApplicationError
from kernel.netguard import NetPolicy, URLRefused, check_url


class UnsafeBaseURL(ApplicationError):
    error_code = "UNSAFE_BASE_URL"


def provider_policy() -> NetPolicy:
    """What the operator allows a company's base URL to reach beyond public addresses."""
    return NetPolicy.from_entries(
        settings.AICORE_PROVIDER_HOST_ALLOWLIST, allow_private=settings.AICORE_ALLOW_PRIVATE_PROVIDER_URLS
    )


def check_base_url(url: str) -> str:
    """Refuse a base URL that is not http(s), embeds credentials, or whose host resolves to an address the guard
    refuses (private, loopback, link-local — cloud metadata services live there —, CGNAT, …) unless the operator
    allowed it. Returns the URL without trailing slash. Calls check again on connecting (kernel.netguard).
    """
    try:
        check_url(url, provider_policy())
    except URLRefused as exc:
        raise UnsafeBaseURL(
            f"base_url refused: {exc.message} (AICORE_ALLOW_PRIVATE_PROVIDER_URLS, AICORE_PROVIDER_HOST_ALLOWLIST)",
            errors={"base_url": [exc.hint]},
        ) from None
    return url.rstrip("/")
