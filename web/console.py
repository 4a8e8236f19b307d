"""The console's brand: which brand a page acts on, remembered across requests and logins.

The brand comes from the session (the brand switcher, or a `?brand=` link) and is checked against the user's
brands on every request, exactly like X-Brand-ID in the API. The last one is also stored on the user's
ConsolePreference, so a new login opens on it; without one, on the user's first brand by id (brand 1 in the
demo, as in the README and the CLI).
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.shortcuts import render
from django.urls import reverse

from business.access import SESSION_BRAND_KEY, brand_for_user, brands_for_user, parse_brand_header
from business.models import Brand
from web.models import ConsolePreference

NAVIGATION = [
    ("web-dashboard", "Overview"),
    ("web-jobs", "Jobs"),
    ("web-usage", "Usage & cost"),
    ("web-quotas", "Quotas"),
    ("web-providers", "Providers"),
    ("web-webhooks", "Webhooks"),
    ("web-batches", "Batches"),
    ("web-api-keys", "API keys"),
]


def remember_brand(request: HttpRequest, brand: Brand) -> None:
    """Act on `brand` from now on, in this session and the next logins."""
    if request.session.get(SESSION_BRAND_KEY) != brand.id:
        request.session[SESSION_BRAND_KEY] = brand.id
        ConsolePreference.objects.update_or_create(user=request.user, defaults={"last_brand": brand})


def _remembered_brand_id(request: HttpRequest) -> int | None:
    chosen = request.session.get(SESSION_BRAND_KEY)
    if chosen is not None:
        return chosen
    return ConsolePreference.objects.filter(user=request.user).values_list("last_brand_id", flat=True).first()


def current_brand(request: HttpRequest) -> Brand | None:
    """The brand this request acts on (None when the user has none)."""
    user = request.user
    wanted = request.GET.get("brand")
    if wanted:
        brand_id = parse_brand_header(wanted)
        brand = brand_for_user(user, brand_id) if brand_id is not None else None
        if brand is not None:
            remember_brand(request, brand)
            return brand
        messages.error(request, "You cannot act on that brand.")
    remembered = _remembered_brand_id(request)
    brand = brand_for_user(user, remembered) if remembered is not None else None
    if brand is None:
        request.session.pop(SESSION_BRAND_KEY, None)
        brand = brands_for_user(user).order_by("id").first()
        if brand is not None:
            remember_brand(request, brand)
    return brand


def is_company_admin_of(user, brand: Brand) -> bool:
    return bool(user.is_company_admin and user.company_id == brand.company_id)


def console_page(view):
    """A logged-in page acting on the request's brand: the view gets it as its second argument."""

    @login_required
    @wraps(view)
    def page(request, *args, **kwargs):
        brand = current_brand(request)
        if brand is None:
            return render(request, "web/no_brand.html", status=403)
        return view(request, brand, *args, **kwargs)

    return page


def context(request: HttpRequest, brand: Brand, **extra) -> dict:
    current = request.resolver_match.url_name if request.resolver_match else ""
    section = {
        "web-job": "web-jobs",
        "web-cancel": "web-jobs",
        "web-webhook": "web-webhooks",
        "web-api-key-revoke": "web-api-keys",
    }.get(current, current)
    return {
        "brand": brand,
        # After switching brand, a detail page (a job, a webhook of the old brand) makes no sense: its list does.
        "switch_next": reverse(section) if section != current and section in dict(NAVIGATION) else request.path,
        "brands": list(brands_for_user(request.user).order_by("id")),
        "navigation": [(name, label, name == section) for name, label in NAVIGATION],
        "company_admin": is_company_admin_of(request.user, brand),
        **extra,
    }


def refuse(request: HttpRequest, brand: Brand, message: str):
    return render(request, "web/forbidden.html", context(request, brand, message=message), status=403)
