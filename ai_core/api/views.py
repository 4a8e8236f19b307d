from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ai_core import selectors, services
from ai_core.api.filters import JobFilter, JobFilterBackend
from ai_core.api.serializers import (
    STATUS_CHOICES,
    ByStatusResponseSerializer,
    CancelResponseSerializer,
    DashboardSerializer,
    JobCreateSerializer,
    JobDetailSerializer,
    JobSerializer,
    JobTypeSerializer,
    JobUpdateSerializer,
)
from ai_core.models import AIJob
from business.access import company_brands
from business.api.authentication import request_api_key
from business.api.mixins import BrandScopedMixin
from business.api.responses import QUOTA_EXCEEDED_RESPONSE
from business.errors import ApplicationError

MAX_WAIT_SECONDS = 60


@extend_schema_view(
    list=extend_schema(
        summary="List job types",
        description=(
            "The active job types, as a bare array (the catalogue is small): each with its category, whether it "
            "runs asynchronously, its default model, timeout, attempts and the JSON Schema `input_data` must match."
        ),
    ),
    retrieve=extend_schema(
        summary="Get a job type",
        description="One job type of the catalogue by id. The catalogue is shared: every brand reads the same.",
    ),
)
class JobTypeViewSet(BrandScopedMixin, viewsets.ReadOnlyModelViewSet):
    """The catalogue of job types (a bare array: it is small)."""

    serializer_class = JobTypeSerializer
    pagination_class = None

    def get_queryset(self):
        return selectors.job_types_active()


def _prefer_wait_seconds(request) -> float | None:
    """`Prefer: wait=N` (0 < N <= 60) asks the create call to wait for the job's final state."""
    for part in request.headers.get("Prefer", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "wait":
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1
            if not 0 <= seconds <= MAX_WAIT_SECONDS:
                raise ApplicationError(
                    f"Prefer: wait must be between 0 and {MAX_WAIT_SECONDS} seconds", error_code="INVALID_PREFER_WAIT"
                )
            return seconds
    return None


@extend_schema_view(
    list=extend_schema(
        summary="List jobs",
        description=(
            "The brand's jobs, newest first, paginated (`page`, `page_size` up to 100). Filters: `status`, "
            "`priority`, `job_type` (name), `created_by` (user id), `is_async`, `progress_percentage__gte`, "
            "`created_at__gte` / `created_at__lte`, and `search` (job_id, description, job type name). "
            "`ordering=-priority` lists the most urgent first (urgent > high > normal > low), `ordering=priority` "
            "the least urgent first. A `search` count beyond the exact bound is PostgreSQL's estimate, flagged by "
            "the `X-Count-Estimated: true` header."
        ),
    )
)
class JobViewSet(BrandScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The brand's AI jobs: submit, read, change, delete, cancel, and the dashboard."""

    accepts_api_key_writes = True  # with the jobs:write scope (business.api.permissions)
    filterset_class = JobFilter
    filter_backends = [JobFilterBackend]
    # Error responses beyond the generic ones (see business.api.schema), per action, for the OpenAPI document.
    error_codes = {
        "create": ["409", "429"],  # Idempotency-Key reused with another body; quota
        "update": ["409"],
        "partial_update": ["409"],
        "destroy": ["409"],
        "cancel": ["409"],
        "by_status": ["400"],
        "dashboard": ["400"],
    }
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: there is no request brand
            return AIJob.objects.none()
        return selectors.job_list(brand=self.request.brand)

    def get_serializer_class(self):
        return JobSerializer

    def paginate_queryset(self, queryset):
        self.paginator.known_count = self._rollup_count()
        self.count_estimated = False
        if self.paginator.known_count is None and self.request.query_params.get("search", "").strip():
            # A broad search matches tens of thousands of rows: count exactly up to a bound, else estimate.
            self.paginator.known_count, exact = selectors.job_count_bounded(queryset)
            self.count_estimated = not exact
        return super().paginate_queryset(queryset)

    def list(self, request, *args, **kwargs):
        response = super().list(request, *args, **kwargs)
        if self.count_estimated:
            response["X-Count-Estimated"] = "true"
        return response

    def _rollup_count(self) -> int | None:
        params = self.request.query_params
        used = {key for key in params if key not in {"page", "page_size", "ordering"}}
        if not used <= JobFilter.ROLLUP_COUNTABLE:
            return None
        # The same values the filters apply: the last one of a repeated parameter, and "" means no filter.
        # (The paginator trusts this count to slice the page, so it must never differ from the rows.)
        status, job_type = params.get("status"), params.get("job_type")
        return selectors.job_count_from_rollup(
            brand=self.request.brand,
            statuses=[status] if status else None,
            job_type_names=[job_type] if job_type else None,
        )

    def _job(self):
        return selectors.job_get(brand=self.request.brand, lookup=self.kwargs["pk"], for_detail=True)

    @extend_schema(
        summary="Get a job",
        description=(
            "One job by numeric id or `job_id` (`ai_job_…`), with its OpenAI extension (`openai_job`), its `usage` "
            "(tokens, cost, provider; null until it ends) and its `events` (every transition). Another brand's "
            "job is a 404."
        ),
        responses=JobDetailSerializer,
    )
    def retrieve(self, request, pk=None):
        return Response(JobDetailSerializer(self._job()).data)

    @extend_schema(
        summary="Submit a job",
        description=(
            "Creates a `pending` job of the brand and wakes a worker (201). `input_data` is validated against the "
            "job type's JSON Schema (400 VALIDATION_ERROR); an unknown type is 400 JOB_TYPE_NOT_FOUND, a model "
            "without provider key 400 PROVIDER_NOT_CONFIGURED, and a submit over the brand's quota 429 "
            "QUOTA_EXCEEDED with `remaining_quota`. With `Idempotency-Key`, the same key and body within 24 h "
            "answer the original job (200) and another body 409. `Prefer: wait=N` answers once the job is final "
            "or N seconds passed. `input_data.completion_window` (`now` or `24h`, default: the job type's "
            "`default_completion_window`): a `24h` OpenAI or Anthropic job stays pending until the provider's Batch "
            "API answers it, reserved and charged at the batch price."
        ),
        request=JobCreateSerializer,
        responses={201: JobSerializer, 200: JobSerializer, 429: QUOTA_EXCEEDED_RESPONSE},
        parameters=[
            OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False),
            OpenApiParameter(
                "Prefer",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="wait=N (N <= 60): answer when the job is final or N seconds pass",
            ),
        ],
    )
    def create(self, request):
        payload = JobCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        wait = _prefer_wait_seconds(request)
        job, created = services.job_create(
            brand=request.brand,
            user=request.user,
            idempotency_key=request.headers.get("Idempotency-Key"),
            api_key=request_api_key(request),
            **payload.validated_data,
        )
        headers = {}
        if wait and created:
            selectors.job_wait_final(job_pk=job.pk, timeout_seconds=wait)
            headers["Preference-Applied"] = f"wait={wait:g}"
        if wait or not created:
            job = selectors.job_get(brand=request.brand, lookup=job.pk)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(JobSerializer(job).data, status=code, headers=headers)

    @extend_schema(
        summary="Replace a job's editable fields",
        description=(
            "Sets `description` and `priority`; `input_data` only while the job is pending (else 409 "
            "JOB_NOT_PENDING), `progress_percentage` only while it runs. A running job refuses other changes "
            "(409 JOB_RUNNING). Status, brand, creator, results, usage and timestamps are never writable."
        ),
        request=JobUpdateSerializer,
        responses=JobSerializer,
    )
    def update(self, request, pk=None, partial=False):
        payload = JobUpdateSerializer(data=request.data, partial=partial)
        payload.is_valid(raise_exception=True)
        job = services.job_update(job=self._job(), data=payload.validated_data)
        return Response(JobSerializer(job).data)

    @extend_schema(
        summary="Change some of a job's fields",
        description=(
            "Like PUT, for the fields sent only: `description`, `priority`, `input_data` while pending (else 409 "
            "JOB_NOT_PENDING), `progress_percentage` while running."
        ),
        request=JobUpdateSerializer,
        responses=JobSerializer,
    )
    def partial_update(self, request, pk=None):
        return self.update(request, pk, partial=True)

    @extend_schema(
        summary="Delete a job",
        description=(
            "Deletes the job and its events (204); its quota reservation, if any, is released and its usage row "
            "stays. A running job is 409 JOB_RUNNING: cancel it first."
        ),
        responses={204: None},
    )
    def destroy(self, request, pk=None):
        services.job_delete(job=self._job())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Cancel a job",
        description=(
            "Cancels a pending or running job (a running one stops within seconds: the provider call in flight is "
            "abandoned). A job that already ended is 409 JOB_NOT_CANCELLABLE with `current_status` (and "
            "`error`, kept for compatibility)."
        ),
        request=None,
        responses=CancelResponseSerializer,
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = selectors.job_get(brand=request.brand, lookup=pk)
        done = services.job_cancel(job_pk=job.pk, actor=request.user)
        return Response(
            {
                "message": "Job cancelled successfully",
                "job": {"id": job.pk, "job_id": job.job_id, "status": done.to_status, "cancelled_at": done.at},
            }
        )

    @extend_schema(
        summary="List jobs in one status",
        description=(
            "The brand's jobs in `status` as `{jobs, count, next, previous}`, paginated like the list and "
            "accepting the same filters. A missing or unknown status is 400 INVALID_STATUS."
        ),
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=STATUS_CHOICES, required=True)],
        responses=ByStatusResponseSerializer,
    )
    @action(detail=False, methods=["get"])
    def by_status(self, request):
        wanted = request.query_params.get("status")
        if wanted not in STATUS_CHOICES:
            raise ApplicationError(f"status must be one of {', '.join(STATUS_CHOICES)}", error_code="INVALID_STATUS")
        # The list's filters apply too (status among them), so the roll-up count stays equal to the rows.
        jobs = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(jobs)
        count = self.paginator.page.paginator.count
        return Response(
            {
                "jobs": JobSerializer(page, many=True).data,
                "count": count,
                "next": self.paginator.get_next_link(),
                "previous": self.paginator.get_previous_link(),
            }
        )

    @extend_schema(
        summary="Job dashboard",
        description=(
            "Totals per status, jobs today, the 10 newest jobs, top job types, 30 days of activity (jobs and cost "
            "per day) and the brand breakdown. `scope=company` (company admins only, else 403 "
            "COMPANY_ADMIN_REQUIRED) aggregates every brand of the company."
        ),
        parameters=[OpenApiParameter("scope", OpenApiTypes.STR, enum=["brand", "company"], required=False)],
        responses=DashboardSerializer,
    )
    @action(detail=False, methods=["get"])
    def dashboard(self, request):
        scope = request.query_params.get("scope", "brand")
        if scope not in {"brand", "company"}:
            raise ApplicationError("scope must be 'brand' or 'company'", error_code="INVALID_SCOPE")
        brands = list(company_brands(request.user, request.brand)) if scope == "company" else [request.brand]
        data = selectors.dashboard(brands=brands)
        data["recent_jobs"] = JobSerializer(data["recent_jobs"], many=True).data
        data["scope"] = scope
        return Response(data)
