from datetime import timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from ai_core import selectors as job_selectors
from ai_core import services as job_services
from ai_core.models import JobStatus
from ai_openai.api.serializers import ChatRequestSerializer
from ai_openai.services import openai_params_validate
from ai_providers.clients.families import ACCEPTED_PARAMS, CHAT_PARAMS
from ai_providers.models import ProviderKind
from ai_providers.selectors import key_source, model_as_dict, models_of_kind
from business.api.authentication import request_api_key
from business.api.mixins import BrandScopedMixin
from business.api.responses import QUOTA_EXCEEDED_RESPONSE
from business.errors import ApplicationError
from business.timestamps import api_timestamp

CHAT_JOB_TYPE = "chat_completion"
MAX_SYNC_WAIT_SECONDS = 60


class ChatView(BrandScopedMixin, APIView):
    """An OpenAI chat completion as a job: 201 with the answer (synchronous job types), else 202 to poll."""

    accepts_api_key_writes = True  # with the jobs:write scope (business.api.permissions)

    @extend_schema(
        summary="OpenAI chat completion",
        description=(
            "A chat completion as a `chat_completion` job. OpenAI parameters are checked per model family "
            "(o-series: `reasoning_effort`, `max_completion_tokens`, no `temperature`; others: `max_tokens`, "
            "`temperature`), else 400 INVALID_PARAMETER_FOR_MODEL with `invalid_params`. A synchronous job type "
            "answers 201 with the result, usage (`cost_usd`), model and `execution_time_ms`; `run_async: true` "
            "or an asynchronous type answers 202 with the job to follow."
        ),
        request=ChatRequestSerializer,
        responses={201: dict, 202: dict, 429: QUOTA_EXCEEDED_RESPONSE},
    )
    def post(self, request):
        payload = ChatRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        job_type = job_services.job_type_get(CHAT_JOB_TYPE)
        model = data.get("model") or job_type.default_model
        params = {key: data.get(key) for key in CHAT_PARAMS}  # `stop` is not one /ai/openai/chat/ takes: None
        openai_params_validate(model=model, params=params)
        input_data = {
            "messages": [dict(m) for m in data["messages"]],
            "model": model,
            **{key: value for key, value in params.items() if value is not None},
        }
        job, _ = job_services.job_create(
            brand=request.brand,
            user=request.user,
            job_type=CHAT_JOB_TYPE,
            input_data=input_data,
            priority=data["priority"],
            description=data["description"],
            idempotency_key=request.headers.get("Idempotency-Key"),
            openai_extension=True,
            api_key=request_api_key(request),
        )
        if job.is_async or data["run_async"]:
            return self._accepted(job)
        # Waiting here holds no transaction and no provider call: the worker runs the job.
        job_selectors.job_wait_final(
            job_pk=job.pk, timeout_seconds=min(job.job_type.timeout_seconds, MAX_SYNC_WAIT_SECONDS)
        )
        job = job_selectors.job_get(brand=request.brand, lookup=job.pk)
        if job.status == JobStatus.COMPLETED:
            return Response(self._completed(job), status=status.HTTP_201_CREATED)
        if job.status in {JobStatus.FAILED, JobStatus.TIMEOUT}:
            raise ApplicationError(
                job.error_message or f"The job ended {job.status}",
                error_code=job.error_code or "JOB_FAILED",
                status_code=502,
                job_id=job.job_id,
                status=job.status,
            )
        if job.status == JobStatus.CANCELLED:
            raise ApplicationError(
                "The job was cancelled",
                error_code="JOB_CANCELLED",
                status_code=409,
                job_id=job.job_id,
                status=job.status,
            )
        return self._accepted(job)

    def _accepted(self, job):
        eta = job.created_at + timedelta(seconds=job.job_type.estimated_duration_seconds)
        return Response(
            {
                "job_id": job.job_id,
                "status": "async",
                "task_id": job.job_id,
                "message": f"Job accepted; follow it at /ai/jobs/{job.job_id}/",
                "estimated_completion": api_timestamp(eta),
            },
            status=status.HTTP_202_ACCEPTED,
        )

    def _completed(self, job) -> dict:
        result = job.result_data or {}
        usage = getattr(job, "usage", None)
        execution_ms = int((job.completed_at - job.started_at).total_seconds() * 1000) if job.started_at else None
        return {
            "job_id": job.job_id,
            "status": "completed",
            "result": result,
            "usage": {
                "prompt_tokens": usage.input_tokens if usage else 0,
                "completion_tokens": usage.output_tokens if usage else 0,
                "total_tokens": usage.total_tokens if usage else 0,
                "cost_usd": str(usage.total_cost) if usage else "0.000000",
            },
            "model": result.get("model") or (job.input_data or {}).get("model"),
            "execution_time_ms": execution_ms,
        }


class ChatModelsView(BrandScopedMixin, APIView):
    """Models /ai/openai/chat/ accepts, with their family's parameter rules and current price."""

    @extend_schema(
        summary="Models for OpenAI chat",
        description=(
            "The models `/ai/openai/chat/` accepts, with their price, whether a key is available, the default "
            "model, and the parameters their family accepts."
        ),
        responses={200: dict},
    )
    def get(self, request):
        models = list(models_of_kind({ProviderKind.OPENAI, ProviderKind.ECHO}))
        available = {}
        out = []
        for model in models:
            provider = model.provider
            if provider.pk not in available:
                available[provider.pk] = key_source(company_id=request.brand.company_id, provider=provider) is not None
            reasoning = model.is_reasoning
            out.append(
                {
                    **model_as_dict(model),
                    "provider": provider.name,
                    "available": available[provider.pk],
                    "is_default": model.name == provider.default_model,
                    "accepted_params": list(ACCEPTED_PARAMS["reasoning" if reasoning else "standard"]),
                }
            )
        return Response({"models": out, "count": len(out)})
