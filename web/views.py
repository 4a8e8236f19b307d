"""The web console: server-rendered pages over the same selectors and services as the API.

Every page acts on the request's brand (web.console.current_brand) and reads through the per-resource
selectors that take it, so a page shows exactly what the API would show that user for that brand.
"""

import csv
from datetime import timedelta
from decimal import Decimal

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from ai_core import selectors, services
from ai_core.api.filters import JobFilter
from ai_core.api.serializers import JobDetailSerializer
from ai_core.models import JobPriority, JobStatus
from ai_providers import money
from ai_providers import selectors as provider_selectors
from ai_providers import services as provider_services
from ai_usage import selectors as usage_selectors
from batches.api.views import results_response
from batches.selectors import batch_get, batch_list, batch_summaries
from business import selectors as business_selectors
from business import services as business_services
from business.access import brand_for_user, brands_for_user, can_administer_brand, company_brands
from business.errors import ApplicationError
from web import charts
from web.console import console_page, context, is_company_admin_of, refuse, remember_brand
from web.forms import ApiKeyForm, CredentialForm, SubmitJobForm, UsagePeriodForm
from webhooks import selectors as webhook_selectors
from webhooks import services as webhook_services

JOBS_PER_PAGE = 25
DELIVERIES_PER_PAGE = 25
ORDERINGS = [
    ("-created_at", "newest first"),
    ("created_at", "oldest first"),
    ("-priority", "priority: urgent first"),
    ("priority", "priority: low first"),
    ("-progress_percentage", "most progress"),
    ("status", "status"),
]


def _job_types() -> list[str]:
    return [t.name for t in selectors.job_types_active()]


# --- overview ---------------------------------------------------------------------------------------------


@console_page
def dashboard(request, brand):
    data = selectors.dashboard(brands=[brand])
    today = timezone.localdate()
    usage = usage_selectors.usage_breakdown(
        brands=[brand], first_day=today - timedelta(days=selectors.DASHBOARD_DAYS - 1), last_day=today
    )
    days = list(reversed(data["daily_activity"]))  # oldest first, left to right
    latency = usage_selectors.activity_by(brands=[brand], field="job_type__name", days=selectors.DASHBOARD_DAYS)
    type_rows = [(f"{row['name']} ({row['count']})", row["count"]) for row in data["top_job_types"]]
    page = {
        "stats": data["stats"],
        "totals": usage["totals"],
        "charts": [
            charts.daily("daily-jobs", "Jobs per day", days, "jobs"),
            charts.daily("daily-cost", "Cost per day (USD)", days, "total_cost", money=True, kind="line"),
            charts.daily("daily-tokens", "Tokens per day", usage["daily"], "total_tokens"),
            charts.status_breakdown(data["stats"]),
            charts.breakdown("types", "Jobs by type", type_rows),
            charts.chart(
                "latency",
                "Execution time by job type (s)",
                "bar",
                [row["name"] for row in latency],
                [("p50", [row["p50_seconds"] for row in latency]), ("p95", [row["p95_seconds"] for row in latency])],
                unit=" s",
            ),
        ],
        "latency": latency,
        "month_cost": money.shown(sum((Decimal(d["total_cost"]) for d in days), Decimal(0))),
        "recent_jobs": data["recent_jobs"],
        "form": SubmitJobForm(job_types=_job_types()),
        "statuses": JobStatus.values,
    }
    if is_company_admin_of(request.user, brand):
        company = selectors.dashboard(brands=list(company_brands(request.user, brand)))
        rows = [(f"{row['brand_name']} ({row['jobs']})", row["jobs"]) for row in company["brand_breakdown"]]
        page["charts"].append(charts.breakdown("brands", "Jobs by brand (company)", rows))
        page["brand_breakdown"] = company["brand_breakdown"]
    return render(request, "web/dashboard.html", context(request, brand, **page))


@require_POST
@console_page
def switch_brand(request, brand):
    chosen = request.POST.get("brand", "")
    target = brand_for_user(request.user, int(chosen)) if chosen.isascii() and chosen.isdigit() else None
    if target is None:
        messages.error(request, "You cannot act on that brand.")
    else:
        remember_brand(request, target)
        messages.success(request, f"Now working on {target.name}.")
    # `next` comes from the page's form but anyone can post it: only a path on this site is followed
    # ("//evil.example/x" starts with "/" too).
    wanted = request.POST.get("next", "")
    same_site = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return redirect(wanted if same_site else "web-dashboard")


@require_POST
@console_page
def submit(request, brand):
    form = SubmitJobForm(request.POST, job_types=_job_types())
    if form.is_valid():
        try:
            job, _ = services.job_create(brand=brand, user=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            messages.error(request, exc.detail)
        else:
            return redirect("web-job", job_id=job.job_id)
    else:
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(errors)}")
    return redirect("web-dashboard")


# --- jobs ---------------------------------------------------------------------------------------------------


@console_page
def jobs(request, brand):
    """The brand's jobs with the API's filters (JobFilter itself), ordering and a pager."""
    params = request.GET.copy()
    for key in ("page", "brand", "fragment"):  # the pager's links carry the filters only
        params.pop(key, None)
    if not params.get("ordering"):
        params["ordering"] = "-created_at"
    filterset = JobFilter(params, queryset=selectors.job_list(brand=brand))
    errors = []
    if filterset.is_valid():
        queryset = filterset.qs
    else:
        errors = [f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in filterset.errors.items()]
        queryset = selectors.job_list(brand=brand).none()
    pager = Paginator(queryset, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    page = {
        "pager": pager,
        "filters": params,
        "query": params.urlencode(),
        "errors": errors,
        "statuses": JobStatus.values,
        "priorities": JobPriority.values,
        "job_types": _job_types(),
        "orderings": ORDERINGS,
        "creators": list(business_selectors.brand_users(brand)),
    }
    template = "web/jobs_rows.html" if request.GET.get("fragment") == "rows" else "web/jobs.html"
    return render(request, template, context(request, brand, **page))


@console_page
def job_detail(request, brand, job_id: str):
    try:
        job = selectors.job_get(brand=brand, lookup=job_id, for_detail=True)
    except ApplicationError:
        # A link to a job of another of the user's brands switches to that brand instead of a dead end.
        other = selectors.job_brand_among(brands=brands_for_user(request.user), lookup=job_id)
        if other is not None and other.id != brand.id:
            remember_brand(request, other)
            messages.info(request, f"Switched to {other.name}, the brand of this job.")
            return redirect("web-job", job_id=job_id)
        return render(request, "web/not_found.html", context(request, brand, what="job"), status=404)
    data = JobDetailSerializer(job).data
    return render(
        request,
        "web/job.html",
        context(request, brand, job=job, data=data, final=job.is_final, events=data["events"], usage=data["usage"]),
    )


@console_page
def cancel(request, brand, job_id: str):
    """GET: the confirmation page (the no-JavaScript path of the job page's dialog). POST: cancel."""
    try:
        job = selectors.job_get(brand=brand, lookup=job_id)
    except ApplicationError:
        return render(request, "web/not_found.html", context(request, brand, what="job"), status=404)
    if request.method != "POST":
        return render(request, "web/cancel_confirm.html", context(request, brand, job=job))
    try:
        services.job_cancel(job_pk=job.pk, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Job {job.job_id} cancelled.")
    return redirect("web-job", job_id=job.job_id)


# --- usage & cost -------------------------------------------------------------------------------------------

USAGE_DIMENSIONS = [
    ("by_model", "Model", "model_name"),
    ("by_provider", "Provider", "provider_name"),
    ("by_job_type", "Job type", "job_type"),
    ("by_user", "User", "username"),
    ("by_brand", "Brand", "brand_name"),
]


@console_page
def usage(request, brand):
    company = is_company_admin_of(request.user, brand)
    form = UsagePeriodForm(request.GET or None, company_admin=company)
    first_day, last_day, scope = form.chosen()
    brands = list(company_brands(request.user, brand)) if scope == "company" else [brand]
    report = usage_selectors.usage_breakdown(brands=brands, first_day=first_day, last_day=last_day)
    if request.GET.get("format") == "csv":
        return _usage_csv(report, brand, scope)
    breakdowns = []
    for key, label, field in USAGE_DIMENSIONS:
        rows = report[key]
        if key == "by_brand" and scope != "company":
            continue
        names = [str(row[field] or "–") for row in rows]
        breakdowns.append(
            {
                "key": key,
                "label": label,
                "rows": [{"name": name, **row} for name, row in zip(names, rows, strict=True)],
                "chart": charts.breakdown(
                    key.replace("_", "-"),
                    f"Cost by {label.lower()}",
                    [(f"{n} ({row['jobs']})", row["total_cost"]) for n, row in zip(names, rows, strict=True)],
                    money=True,
                ),
            }
        )
    page = {
        "form": form,
        "report": report,
        "scope": scope,
        "daily_charts": [
            charts.daily("usage-cost", "Cost per day (USD)", report["daily"], "total_cost", money=True, kind="line"),
            charts.daily("usage-tokens", "Tokens per day", report["daily"], "total_tokens"),
        ],
        "breakdowns": breakdowns,
        "csv_query": _with(request.GET, format="csv"),
    }
    return render(request, "web/usage.html", context(request, brand, **page))


def _with(query, **changes) -> str:
    params = query.copy()
    for key, value in changes.items():
        params[key] = value
    return params.urlencode()


def _usage_csv(report: dict, brand, scope: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"usage-{brand.id if scope == 'brand' else 'company'}-{report['since']}-{report['until']}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow(["dimension", "name", "provider", "jobs", "total_tokens", "total_cost_usd"])
    for day in report["daily"]:
        writer.writerow(["day", day["date"], "", day["jobs"], day["total_tokens"], day["total_cost"]])
    for key, _label, field in USAGE_DIMENSIONS:
        for row in report[key]:
            provider = row.get("provider_name", "") if key == "by_model" else ""
            writer.writerow(
                [key.removeprefix("by_"), row[field], provider, row["jobs"], row["total_tokens"], row["total_cost"]]
            )
    return response


# --- quotas ---------------------------------------------------------------------------------------------------


@console_page
def quotas(request, brand):
    overview = usage_selectors.quota_overview(brand=brand)
    return render(request, "web/quotas.html", context(request, brand, quotas=overview))


# --- providers ------------------------------------------------------------------------------------------------


@console_page
def providers(request, brand):
    catalogue = list(provider_selectors.providers_active())
    health = usage_selectors.provider_health(brand=brand, providers=catalogue)
    activity = {row["name"]: row for row in usage_selectors.activity_by(brands=[brand], field="provider_name", days=7)}
    company = is_company_admin_of(request.user, brand)
    credentials = {c.provider_id: c for c in provider_selectors.credentials_of(brand)} if company else {}
    capacity = provider_selectors.capacity_overview(company_id=brand.company_id)
    rows = []
    for provider in catalogue:
        models = []
        for model in provider.models.all():
            if not model.is_active:
                continue
            current = provider_selectors.current_price(model)
            prices = sorted(model.prices.all(), key=lambda p: p.effective_from, reverse=True)
            models.append({"model": model, "current": current, "prices": prices})
        rows.append(
            {
                "provider": provider,
                "health": health[provider.pk],
                "activity": activity.get(provider.name),
                "models": models,
                "credential": credentials.get(provider.pk),
                "capacity": [row for row in capacity if row["provider"] == provider.name],
                "form": CredentialForm(prefix=f"p{provider.pk}") if company and provider.requires_key else None,
            }
        )
    return render(request, "web/providers.html", context(request, brand, providers=rows))


@require_POST
@console_page
def credential_save(request, brand, provider_name: str):
    """Store or replace the company's key for a provider (company admins; the key is never shown again)."""
    if not is_company_admin_of(request.user, brand):
        return refuse(request, brand, "Provider credentials are managed by company admins.")
    try:
        provider = provider_selectors.provider_get(provider_name)
    except ApplicationError:
        return render(request, "web/not_found.html", context(request, brand, what="provider"), status=404)
    form = CredentialForm(request.POST, prefix=f"p{provider.pk}")
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(errors)}")
        return redirect("web-providers")
    existing = provider_selectors.credentials_of(brand).filter(provider=provider).first()
    try:
        if existing is None:
            provider_services.credential_create(company=brand.company, provider=provider, **form.cleaned_data)
        else:
            provider_services.credential_update(credential=existing, data=form.cleaned_data)
    except ApplicationError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Key for {provider.display_name} saved.")
    return redirect("web-providers")


@require_POST
@console_page
def credential_test(request, brand, credential_id: str):
    if not is_company_admin_of(request.user, brand):
        return refuse(request, brand, "Provider credentials are managed by company admins.")
    try:
        credential = provider_selectors.credential_get(brand=brand, pk=credential_id)
    except ApplicationError:
        return render(request, "web/not_found.html", context(request, brand, what="credential"), status=404)
    # A real call to the provider: the view holds no transaction open (ATOMIC_REQUESTS is off).
    result = provider_services.credential_test(credential=credential)
    (messages.success if result.get("ok") else messages.error)(
        request, f"{credential.provider.display_name}: {result.get('message', '')}"
    )
    return redirect("web-providers")


# --- webhooks -------------------------------------------------------------------------------------------------


@console_page
def webhooks(request, brand):
    endpoints = list(webhook_selectors.endpoints_of(brand))
    return render(request, "web/webhooks.html", context(request, brand, endpoints=endpoints))


@console_page
def webhook_detail(request, brand, endpoint_id: str):
    try:
        endpoint = webhook_selectors.endpoint_get(brand=brand, pk=endpoint_id)
    except ApplicationError:
        # Like a job link: a webhook of another of the user's brands switches to that brand.
        for other in brands_for_user(request.user).exclude(pk=brand.pk):
            try:
                webhook_selectors.endpoint_get(brand=other, pk=endpoint_id)
            except ApplicationError:
                continue
            remember_brand(request, other)
            messages.info(request, f"Switched to {other.name}, the brand of this webhook.")
            return redirect("web-webhook", endpoint_id=endpoint_id)
        return render(request, "web/not_found.html", context(request, brand, what="webhook"), status=404)
    pager = Paginator(webhook_selectors.deliveries_of(endpoint), DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    page = {"endpoint": endpoint, "pager": pager, "can_admin": can_administer_brand(request.user, brand)}
    return render(request, "web/webhook.html", context(request, brand, **page))


@require_POST
@console_page
def redeliver(request, brand, endpoint_id: str, delivery_id: str):
    try:
        endpoint = webhook_selectors.endpoint_get(brand=brand, pk=endpoint_id)
        delivery = webhook_selectors.delivery_get(endpoint=endpoint, pk=delivery_id)
    except ApplicationError:
        return render(request, "web/not_found.html", context(request, brand, what="delivery"), status=404)
    if not can_administer_brand(request.user, brand):
        return refuse(request, brand, "Redelivering is for the brand's admins.")
    try:
        again = webhook_services.delivery_redeliver(delivery=delivery)
    except ApplicationError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Delivery {delivery.pk} queued again as delivery {again.pk}.")
    return redirect(reverse("web-webhook", kwargs={"endpoint_id": endpoint.pk}))


# --- batches --------------------------------------------------------------------------------------------------


@console_page
def batches(request, brand):
    """The brand's bulk submissions with their progress, counts and cost so far."""
    batches = list(batch_list(brand=brand)[:50])
    summaries = batch_summaries(batches)
    rows = [{"batch": b, "summary": summaries[b.pk]} for b in batches]
    return render(request, "web/batches.html", context(request, brand, rows=rows))


@console_page
def batch_results(request, brand, batch_id: str):
    """The batch's results JSONL, as GET /ai/batches/{id}/results/ gives it, for the console's brand (the API
    takes the brand from X-Brand-ID, which a plain link cannot send)."""
    try:
        batch = batch_get(brand=brand, lookup=batch_id)
    except ApplicationError:
        return render(request, "web/not_found.html", context(request, brand, what="batch"), status=404)
    return results_response(request, batch)


# --- API keys -------------------------------------------------------------------------------------------------


def _api_keys_page(request, brand, *, form=None, created=None, status=200):
    can_admin = can_administer_brand(request.user, brand)
    page = {
        "keys": list(business_selectors.api_keys_of(brand)),
        "can_admin": can_admin,
        "form": (form or ApiKeyForm()) if can_admin else None,
        "created": created,
        "now": timezone.now(),
    }
    response = render(request, "web/api_keys.html", context(request, brand, **page), status=status)
    if created is not None:
        add_never_cache_headers(response)  # the page carries the key in clear: no cache may keep it
    return response


@console_page
def api_keys(request, brand):
    """The brand's keys (never the key itself). POST: an admin creates one, shown in full on this answer only."""
    if request.method != "POST":
        return _api_keys_page(request, brand)
    if not can_administer_brand(request.user, brand):
        return refuse(request, brand, "API keys are managed by the brand's admins.")
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _api_keys_page(request, brand, form=form, status=400)
    try:
        key, raw = business_services.api_key_create(brand=brand, user=request.user, **form.cleaned_data)
    except ApplicationError as exc:
        form.add_error(None, exc.detail)
        return _api_keys_page(request, brand, form=form, status=exc.status_code)
    # Rendered here, not redirected: the key is never stored (session, messages) to be shown on a later page.
    return _api_keys_page(request, brand, created={"key": key, "raw": raw}, status=201)


@console_page
def api_key_revoke(request, brand, key_id: str):
    """GET: the confirmation page (the no-JavaScript path of the list's dialog). POST: revoke."""
    try:
        key = business_selectors.api_key_get(brand=brand, pk=key_id)
    except ApplicationError:
        return render(request, "web/not_found.html", context(request, brand, what="API key"), status=404)
    if not can_administer_brand(request.user, brand):
        return refuse(request, brand, "API keys are managed by the brand's admins.")
    if request.method != "POST":
        return render(request, "web/api_key_revoke.html", context(request, brand, key=key))
    if key.revoked_at is not None:
        messages.info(request, f"{key} was already revoked.")
    else:
        business_services.api_key_revoke(key=key)
        messages.success(request, f"{key} revoked: it is refused from the next request on.")
    return redirect("web-api-keys")
