from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from batches import selectors, services
from batches.api.parsers import NDJSON, NDJSONParser, line_of
from batches.api.serializers import (
    BatchCancelResponseSerializer,
    BatchCreatedSerializer,
    BatchCreateSerializer,
    BatchSerializer,
)
from batches.models import Batch
from business.api.mixins import BrandScopedMixin
from business.api.parsers import SafeJSONParser
from business.api.responses import QUOTA_EXCEEDED_RESPONSE
from business.errors import ApplicationError

JSONL_PARAMS = [
    OpenApiParameter("job_type", OpenApiTypes.STR, description="JSONL form: the jobs' type (required there)"),
    OpenApiParameter("priority", OpenApiTypes.STR, enum=["low", "normal", "high", "urgent"]),
    OpenApiParameter("description", OpenApiTypes.STR),
    OpenApiParameter("completion_window", OpenApiTypes.STR, enum=["now", "24h"]),
    OpenApiParameter("partial", OpenApiTypes.BOOL, description="create the valid jobs when some are invalid"),
]


async def _async_lines(lines, per_step: int = 500):
    """The sync generator's lines, `per_step` at a time in a thread (its queries are synchronous)."""

    def step() -> list[str]:
        return [line for _, line in zip(range(per_step), lines, strict=False)]

    while chunk := await sync_to_async(step, thread_sensitive=True)():
        yield "".join(chunk)


def results_response(request: HttpRequest, batch: Batch) -> StreamingHttpResponse:
    """The batch's results as a JSONL download (this API and the console's batches page)."""
    lines = selectors.batch_results_jsonl(batch)
    if isinstance(request, ASGIRequest):
        lines = _async_lines(lines)  # under ASGI a sync iterator would be read whole first (and warned about)
    response = StreamingHttpResponse(lines, content_type=NDJSON)
    response["Content-Disposition"] = f'attachment; filename="{batch.batch_id}-results.jsonl"'
    return response


def _flag(value: str | None) -> bool:
    if value in (None, "", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise ApplicationError("partial must be true or false", error_code="INVALID_PARTIAL")


class BatchViewSet(BrandScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Bulk submission: one request creates up to 50 000 ordinary jobs, followed and cancelled together."""

    serializer_class = BatchSerializer
    parser_classes = [SafeJSONParser, NDJSONParser]
    error_codes = {"create": ["429"], "cancel": []}
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Batch.objects.none()
        return selectors.batch_list(brand=self.request.brand)

    def _batch(self) -> Batch:
        return selectors.batch_get(brand=self.request.brand, lookup=self.kwargs["pk"])

    @extend_schema(
        summary="List batches",
        description="The brand's bulk submissions, newest first, paginated: status, counts by status, progress, cost.",
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        summaries = selectors.batch_summaries(page)  # two queries for the page, not two per batch
        return self.get_paginated_response(BatchSerializer(page, many=True, context={"summaries": summaries}).data)

    @extend_schema(
        summary="Show a batch",
        description="One batch (by id or `batch_…`; another brand's is a 404): status, counts, progress, cost so far.",
    )
    def retrieve(self, request, pk=None):
        return Response(BatchSerializer(self._batch()).data)

    @extend_schema(
        summary="Submit a batch of jobs",
        description=(
            "Up to 50 000 jobs of one type as JSON (`jobs: [...]`) or JSONL (`application/x-ndjson`, one job per "
            "line, the batch fields as query parameters). Every line is validated as `POST /ai/jobs/` validates "
            "a job: any invalid line refuses the batch (400 BATCH_VALIDATION_ERROR with per-line errors), unless "
            "`?partial=true`. The quotas reserve the whole batch in one step (429 QUOTA_EXCEEDED refuses it). "
            '`completion_window: "24h"` sends OpenAI and Anthropic jobs through the provider\'s Batch API.'
        ),
        request={"application/json": BatchCreateSerializer, NDJSON: OpenApiTypes.STR},
        parameters=JSONL_PARAMS,
        responses={201: BatchCreatedSerializer, 429: QUOTA_EXCEEDED_RESPONSE},
    )
    def create(self, request):
        partial = _flag(request.query_params.get("partial"))
        if request.content_type.split(";")[0].strip() == NDJSON:
            fields = request.query_params
            payload = BatchCreateSerializer(
                data={
                    key: fields[key]
                    for key in ("job_type", "priority", "description", "completion_window")
                    if key in fields
                }
                | {"jobs": [{}]}
            )
            payload.is_valid(raise_exception=True)
            options = {k: v for k, v in payload.validated_data.items() if k != "jobs"}
            lines = request.data
        else:
            if not isinstance(request.data, dict):
                raise ApplicationError("The body must be a JSON object", error_code="VALIDATION_ERROR")
            payload = BatchCreateSerializer(data=request.data)
            payload.is_valid(raise_exception=True)
            options = {k: v for k, v in payload.validated_data.items() if k != "jobs"}
            lines = [line_of(item) for item in payload.validated_data["jobs"]]
        batch, rejected = services.batch_create(
            brand=request.brand, user=request.user, lines=lines, partial=partial, **options
        )
        data = BatchCreatedSerializer(batch, context={"rejected": rejected}).data
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Cancel a batch",
        description="Cancels every job of the batch that is not final yet; their reservations are released.",
        request=None,
        responses=BatchCancelResponseSerializer,
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        batch = self._batch()
        done = services.batch_cancel(batch=batch, actor=request.user)
        batch.refresh_from_db()
        return Response({**done, "batch": BatchSerializer(batch).data})

    @extend_schema(
        summary="Stream a batch's results",
        description="JSONL, one line per job in submission order: custom_id, job_id, status, result or error, usage.",
        responses={(200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR)},
    )
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        return results_response(request._request, self._batch())
