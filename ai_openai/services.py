"""The OpenAI extension of jobs: parameter rules per model family, and the OpenAIJob row."""

from typing import Any

from ai_core.models import AIJob
from ai_openai.models import OpenAIJob
from ai_providers.clients.families import REASONING_ONLY_PARAMS, STANDARD_ONLY_PARAMS
from ai_providers.models import ProviderKind
from ai_providers.selectors import ModelChoice, model_resolve
from business.errors import ApplicationError


def openai_params_validate(*, model: str, params: dict[str, Any]) -> ModelChoice:
    """o-series models refuse temperature/top_p/max_tokens (they take reasoning_effort and max_completion_tokens);
    other models refuse the reasoning parameters. Raises INVALID_PARAMETER_FOR_MODEL listing every offender.
    """
    choice = model_resolve(model)
    if choice.provider.kind not in {ProviderKind.OPENAI, ProviderKind.ECHO}:
        raise ApplicationError(
            f"Model '{model}' is not an OpenAI model",
            error_code="MODEL_NOT_SUPPORTED",
            provider=choice.provider.name,
        )
    given = {key for key, value in params.items() if value is not None}
    invalid = sorted(given & (STANDARD_ONLY_PARAMS if choice.is_reasoning else REASONING_ONLY_PARAMS))
    if invalid:
        family = "reasoning (o-series)" if choice.is_reasoning else "standard"
        hint = (
            "use max_completion_tokens and reasoning_effort; temperature is fixed"
            if choice.is_reasoning
            else "use max_tokens and temperature"
        )
        raise ApplicationError(
            f"{', '.join(invalid)} not accepted by {family} model '{model}': {hint}",
            error_code="INVALID_PARAMETER_FOR_MODEL",
            invalid_params=invalid,
            model=model,
            model_family=choice.family,
        )
    return choice


def openai_job_wanted(*, choice: ModelChoice, always: bool = False) -> bool:
    """Whether a job gets an OpenAIJob row: its model runs on an OpenAI-format provider, or (`always`) it was
    submitted through /ai/openai/, echo included."""
    return always or choice.provider.kind == ProviderKind.OPENAI


def openai_job_new(*, choice: ModelChoice, input_data: dict) -> OpenAIJob:
    """The OpenAIJob row of a job about to be created, unsaved and without its job (ai_openai.hooks)."""
    return OpenAIJob(**openai_job_fields(choice=choice, input_data=input_data))


def openai_job_sync(*, job: AIJob, choice: ModelChoice, input_data: dict) -> None:
    """After a pending job's input changed: its OpenAIJob row says the new model and parameters, and a job
    moved onto an OpenAI model gets one."""
    fields = openai_job_fields(choice=choice, input_data=input_data)
    if not OpenAIJob.objects.filter(job_id=job.pk).update(**fields) and openai_job_wanted(choice=choice):
        OpenAIJob.objects.create(job_id=job.pk, **fields)


def openai_job_fields(*, choice: ModelChoice, input_data: dict) -> dict[str, Any]:
    """The OpenAIJob row's fields but its job (creation, openai_job_sync; bulk creation too)."""

    def number(key):
        value = input_data.get(key)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    return {
        "model": choice.name,
        "temperature": number("temperature"),
        "max_tokens": number("max_tokens"),
        "max_completion_tokens": number("max_completion_tokens"),
        "reasoning_effort": str(input_data.get("reasoning_effort") or "")[:10],
        "response_format": input_data.get("response_format"),
        "tools": input_data.get("tools"),
    }
