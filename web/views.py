"""The web dashboard: server-rendered pages over the same selectors and services as the API.

The brand comes from the session (the brand switcher) and is checked against the user's brands on every
request, exactly like X-Brand-ID in the API.
"""

from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from ai_core import selectors, services
from ai_core.api.serializers import JobDetailSerializer
from ai_core.models import JobPriority, JobStatus
from batches.selectors import batch_list, batch_summaries
from business.access import SESSION_BRAND_KEY, brands_for_user, company_brands, resolve_request_brand
from business.errors import ApplicationError
from web import charts
from web.forms import SubmitJobForm


def _brand(request: HttpRequest):
    """The session's brand if the user may still act on it, else their first brand (None without any)."""
    chosen = request.session.get(SESSION_BRAND_KEY)
    if chosen is not None:
        try:
            return resolve_request_brand(request.user, str(chosen))
        except ApplicationError:
            request.session.pop(SESSION_BRAND_KEY, None)
    brand = brands_for_user(request.user).order_by("name").first()
    if brand is not None:
        request.session[SESSION_BRAND_KEY] = brand.id
    return brand


def _context(request, brand, **extra) -> dict:
    return {"brand": brand, "brands": list(brands_for_user(request.user).order_by("name")), **extra}


def _job_types() -> list[str]:
    return [t.name for t in selectors.job_types_active()]


@login_required
def dashboard(request):
    brand = _brand(request)
    if brand is None:
        return render(request, "web/no_brand.html", status=403)
    data = selectors.dashboard(brands=[brand])
    company = None
    if request.user.is_company_admin and request.user.company_id == brand.company_id:
        company = selectors.dashboard(brands=list(company_brands(request.user, brand)))
    type_rows = [(row["name"], row["count"]) for row in data["top_job_types"]]
    page = {
        "stats": data["stats"],
        "daily_jobs_chart": charts.daily_jobs(data["daily_activity"]),
        "daily_cost_chart": charts.daily_cost(data["daily_activity"]),
        "status_chart": charts.status_breakdown(data["stats"]),
        "types_chart": charts.horizontal_bars("Jobs by type", type_rows) if type_rows else "",
        "month_cost": sum_cost(data["daily_activity"]),
        "form": SubmitJobForm(job_types=_job_types()),
        "statuses": JobStatus.values,
        "priorities": JobPriority.values,
        "job_types": _job_types(),
    }
    if company is not None:
        rows = [(row["brand_name"], row["jobs"]) for row in company["brand_breakdown"]]
        page["brand_chart"] = charts.horizontal_bars("Jobs by brand (company)", rows)
        page["brand_breakdown"] = company["brand_breakdown"]
    return render(request, "web/dashboard.html", _context(request, brand, **page))


def sum_cost(daily_activity: list[dict]) -> str:
    return selectors.money(sum((Decimal(d["total_cost"]) for d in daily_activity), Decimal(0)))


@login_required
@require_POST
def switch_brand(request):
    try:
        brand = resolve_request_brand(request.user, request.POST.get("brand", ""))
    except ApplicationError:
        messages.error(request, "You cannot act on that brand.")
    else:
        request.session[SESSION_BRAND_KEY] = brand.id
        messages.success(request, f"Now working on {brand.name}.")
    return redirect(request.POST.get("next") if request.POST.get("next", "").startswith("/") else "web-dashboard")


@login_required
@require_POST
def submit(request):
    brand = _brand(request)
    if brand is None:
        return redirect("web-dashboard")
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


@login_required
def job_detail(request, job_id: str):
    brand = _brand(request)
    if brand is None:
        return redirect("web-dashboard")
    try:
        job = selectors.job_get(brand=brand, lookup=job_id, for_detail=True)
    except ApplicationError:
        return render(request, "web/not_found.html", _context(request, brand), status=404)
    data = JobDetailSerializer(job).data
    return render(
        request,
        "web/job.html",
        _context(request, brand, job=job, data=data, final=job.is_final, events=data["events"]),
    )


@login_required
@require_POST
def cancel(request, job_id: str):
    """The no-JavaScript path of the cancel button (the page normally calls the API)."""
    brand = _brand(request)
    try:
        job = selectors.job_get(brand=brand, lookup=job_id)
        services.job_cancel(job_pk=job.pk, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.detail)
    return redirect("web-job", job_id=job_id)


@login_required
def batches(request):
    """The brand's bulk submissions with their progress, counts and cost so far."""
    brand = _brand(request)
    if brand is None:
        return render(request, "web/no_brand.html", status=403)
    batches = list(batch_list(brand=brand)[:50])
    summaries = batch_summaries(batches)
    rows = [{"batch": b, "summary": summaries[b.pk]} for b in batches]
    return render(request, "web/batches.html", _context(request, brand, rows=rows))
