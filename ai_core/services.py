"""Job creation and client updates: the rules a new or changed job must satisfy (input, model, key, idempotency).

The writes themselves are the lifecycle's (ai_core/lifecycle.py: every write of a job's status, events and
roll-up); its public functions are re-exported here (job_complete, job_fail, job_timeout, job_start, …) so
callers keep importing them from ai_core.services."""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

import fastjsonschema
import jsonschema
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from ai_core import lifecycle
from ai_core.hooks import Created, Replanned
from ai_core.lifecycle import (  # noqa: F401  (re-exported: callers import the lifecycle's writes from here)
    Completion,
    job_cancel,
    job_claim_pending,
    job_claim_pending_batch,
    job_complete,
    job_delete,
    job_fail,
    job_fall_back,
    job_give_back,
    job_progress,
    job_provider_request,
    job_requeue,
    job_start,
    job_timeout,
    job_wait_for_capacity,
    jobs_beat,
    jobs_cancel,
    jobs_complete,
)
from ai_core.models import AIJob, AIJobType, CompletionWindow, JobPriority, JobStatus
from ai_providers.selectors import ModelChoice, key_source, model_resolve
from ai_providers.services import MAX_OUTPUT_BOUND, OUTPUT_BOUND_PARAMS, ProviderNotConfigured, is_output_bound
from business.errors import ApplicationError, Conflict, NotFound
from business.memo import TTLMemo
from business.models import ApiKey, Brand, User
from kernel.jsonread import json_depth_exceeds, json_strings

S = JobStatus
IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Checked once per job (10 000 times per bulk creation): a TextChoices' `.values` builds its list on each read.
PRIORITIES = frozenset(JobPriority.values)
COMPLETION_WINDOWS = frozenset(CompletionWindow.values)


class JobValidationError(ApplicationError):
    error_code = "VALIDATION_ERROR"


# --- input validation ---------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _validator_for(schema_json: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_json))


# Keywords fastjsonschema (draft 7) checks exactly as jsonschema checks them in 2020-12, the job types' dialect.
# A schema using any other (prefixItems, $defs, format, uniqueItems, …), or an enum/const of anything but
# strings (Python's `1 == True` would let through what jsonschema refuses), is validated by jsonschema alone.
SAME_IN_DRAFT_7 = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "minProperties",
        "maxProperties",
        "description",
        "title",
        "default",
        "examples",
    }  # fmt: skip
)


def _draft_7_compatible(schema: Any) -> bool:
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict) or not set(schema) <= SAME_IN_DRAFT_7:
        return False
    constants = [*schema.get("enum", ()), *([schema["const"]] if "const" in schema else [])]
    if not all(isinstance(value, str) for value in constants):
        return False
    subschemas = [*(schema.get("properties") or {}).values(), *(schema.get(k) for k in ("not", "items"))]
    subschemas += [*schema.get("anyOf", ()), *schema.get("oneOf", ()), *schema.get("allOf", ())]
    if isinstance(schema.get("additionalProperties"), dict):
        subschemas.append(schema["additionalProperties"])
    return all(_draft_7_compatible(s) for s in subschemas if s is not None)


@dataclass(frozen=True)
class InputValidator:
    """A job type's schema check: the fastjsonschema-compiled function answers "valid" (most inputs, ten times
    faster than jsonschema: a 10 000-job batch spent a third of its time there); jsonschema has the last word
    and writes the messages whenever the compiled one refuses, or for a schema it cannot compile as is."""

    full: jsonschema.Draft202012Validator
    compiled: Callable[[Any], Any] | None

    def errors(self, input_data: Any) -> list:
        if self.compiled is not None:
            try:
                self.compiled(input_data)
                return []
            except fastjsonschema.JsonSchemaException:
                pass
        return sorted(self.full.iter_errors(input_data), key=lambda e: list(e.absolute_path))


@lru_cache(maxsize=64)
def _input_validator_for(schema_json: str) -> InputValidator:
    schema = json.loads(schema_json)
    compiled = None
    if _draft_7_compatible(schema):
        compiled = fastjsonschema.compile({**schema, "$schema": "http://json-schema.org/draft-07/schema#"})
    return InputValidator(full=_validator_for(schema_json), compiled=compiled)


def _validator_of(job_type: AIJobType) -> InputValidator:
    """The job type's schema validator, kept on the job type for as long as it holds the same schema object:
    a memoised job type (job_type_get) serves many creations, and serialising its schema as the key of
    _input_validator_for cost more than the validation."""
    schema = job_type.input_schema
    kept = job_type.__dict__.get("_schema_validator")
    if kept is None or kept[0] is not schema:
        kept = job_type._schema_validator = (schema, _input_validator_for(json.dumps(schema, sort_keys=True)))
    return kept[1]


def validate_input_data(job_type: AIJobType, input_data: Any) -> None:
    """input_data must be an object of bounded size and depth that matches the job type's JSON Schema."""
    if not isinstance(input_data, dict):
        raise JobValidationError("input_data must be a JSON object", errors={"input_data": ["Must be a JSON object."]})
    if json_depth_exceeds(input_data, settings.AICORE_MAX_JSON_DEPTH):
        raise JobValidationError(
            f"input_data nests deeper than {settings.AICORE_MAX_JSON_DEPTH} levels",
            errors={"input_data": [f"Nesting deeper than {settings.AICORE_MAX_JSON_DEPTH} levels."]},
        )
    text = json.dumps(input_data, ensure_ascii=False)
    # JSON escapes a NUL as \u0000 (a cheap first test); PostgreSQL's jsonb cannot store one: a 500 otherwise.
    if "\\u0000" in text and any("\x00" in s for s in json_strings(input_data)):
        raise JobValidationError(
            "input_data cannot contain NUL characters (\\u0000)", errors={"input_data": ["Contains a NUL character."]}
        )
    size = len(text.encode())
    if size > settings.AICORE_MAX_INPUT_BYTES:
        raise ApplicationError(
            f"input_data is {size} bytes; the limit is {settings.AICORE_MAX_INPUT_BYTES}",
            error_code="INPUT_TOO_LARGE",
            status_code=413,
            errors={"input_data": ["Too large."]},
        )
    for key in OUTPUT_BOUND_PARAMS:  # whatever the job type's schema says: quotas reserve on them
        if key in input_data and not is_output_bound(input_data[key]):
            raise JobValidationError(
                f"input_data.{key} must be a whole number from 1 to {MAX_OUTPUT_BOUND}",
                errors={"input_data": [f"{key}: a whole number from 1 to {MAX_OUTPUT_BOUND}."]},
            )
    if not job_type.input_schema:
        return
    messages = []
    for error in _validator_of(job_type).errors(input_data):
        where = ".".join(str(p) for p in error.absolute_path)
        message = error.message if len(error.message) <= 300 else error.message[:300] + "…"
        messages.append(f"{where}: {message}" if where else message)
    if messages:
        raise JobValidationError(
            f"input_data does not match the '{job_type.name}' schema: {messages[0]}",
            errors={"input_data": messages[:20]},
        )


# The catalogue of job types is tiny and read on every job creation.
job_types_memo = TTLMemo("AICORE_JOB_TYPE_CACHE_SECONDS")
job_type_cache_clear = job_types_memo.clear


def job_type_get(name: str) -> AIJobType:
    """The active job type of that name (cached AICORE_JOB_TYPE_CACHE_SECONDS; treat it as read-only)."""
    if not isinstance(name, str):
        raise NotFound(f"Job type '{name}' not found", error_code="JOB_TYPE_NOT_FOUND", status_code=400)
    job_type = job_types_memo.get(name, lambda: AIJobType.objects.filter(name=name, is_active=True).first())
    if job_type is None:
        raise NotFound(f"Job type '{name}' not found", error_code="JOB_TYPE_NOT_FOUND", status_code=400)
    return job_type


def job_type_by_pk(pk: int) -> AIJobType:
    """A job type by primary key, active or not (the engine runs what was accepted); memoised like job_type_get."""
    return job_types_memo.get(("pk", pk), lambda: AIJobType.objects.get(pk=pk))


def _fingerprint(**request: Any) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


# --- creation -----------------------------------------------------------------------------------------


def job_check(
    *, brand: Brand, job_type: AIJobType, input_data: Any, priority: str, keys_seen: dict | None = None
) -> ModelChoice:
    """Everything a new job must satisfy before it is written (one rule for single and bulk creation): its
    input against the job type, its priority, a catalogue model (MODEL_NOT_SUPPORTED) whose provider has a key
    for the brand's company (PROVIDER_NOT_CONFIGURED), and so must the fallback models it names. Returns the
    model's catalogue choice.

    `keys_seen`: whether each provider has a key, kept across the calls of one bulk creation (a query each)."""
    validate_input_data(job_type, input_data)
    if priority not in PRIORITIES:
        raise JobValidationError(f"Unknown priority '{priority}'", errors={"priority": ["Invalid choice."]})
    completion_window_of(job_type, input_data)
    choice = _model_of(brand=brand, job_type=job_type, input_data=input_data, keys_seen=keys_seen)
    _fallbacks_check(brand=brand, job_type=job_type, input_data=input_data, keys_seen=keys_seen)
    return choice


def completion_window_of(job_type: AIJobType, input_data: dict) -> str:
    """The job's completion window: its `input_data.completion_window` ("now" or "24h"), else its type's
    default (VALIDATION_ERROR for any other value)."""
    window = input_data.get("completion_window", job_type.default_completion_window)
    if not isinstance(window, str) or window not in COMPLETION_WINDOWS:
        raise JobValidationError(
            "input_data.completion_window must be 'now' or '24h'",
            errors={"input_data": ["completion_window: 'now' or '24h'."]},
        )
    return window


@dataclass(frozen=True)
class JobRouter:
    """How a new single job may leave the normal path (the batches app's provider Batch API routing, registered
    from its AppConfig.ready: ai_core imports no batches code).

    `routes(choice, window)`: whether a job of that model and completion window is routed. A routed job is
    created pending but claimable by no worker for `hold`, reserved at the batch price, and `attach(job, choice)`
    records it for the router in the creating transaction."""

    routes: Callable[[ModelChoice, str], bool]
    attach: Callable[[AIJob, ModelChoice], None]
    hold: timedelta
    # Whether the job (of a batch or single) waits for or is inside a provider batch: its request is fixed.
    holds: Callable[[int], bool]


_router: JobRouter | None = None


def register_job_router(router: JobRouter) -> None:
    global _router
    _router = router


def _routed(choice: ModelChoice, window: str) -> JobRouter | None:
    return _router if _router is not None and _router.routes(choice, window) else None


def job_create(
    *,
    brand: Brand,
    user: User | None,
    job_type: str,
    input_data: dict,
    priority: str = JobPriority.NORMAL,
    description: str = "",
    idempotency_key: str | None = None,
    openai_extension: bool = False,
    api_key: ApiKey | None = None,
    dispatch: bool = True,
    completion_window: str | None = None,
    claimed_by: str | None = None,
) -> tuple[AIJob, bool]:
    """Create a pending job and wake a worker after commit. Returns (job, created).

    `claimed_by` (who runs the attempt at once, with dispatch=False: "gateway"): where one statement creates
    the job, it is created claimed (running, attempt 1, task id `<claimed_by>:<job_id>`, see
    claimed_at_creation), which saves the claim's round trip and commit; otherwise it is created pending and
    the caller claims it. `job.status` says which.

    With an idempotency key, the same key and body within 24 h return the original job (created=False);
    the same key with another body is a 409. The job's model must be in the catalogue (MODEL_NOT_SUPPORTED)
    with a key for its provider (PROVIDER_NOT_CONFIGURED); its maximum cost is reserved on the brand's
    quotas in the creating transaction (QUOTA_EXCEEDED, 429).

    A job whose completion window (`completion_window`, else completion_window_of) the registered router takes
    (a 24 h job of a provider with a Batch API) waits for it instead of a worker, reserved at the batch price.
    """
    idempotency_key_check(idempotency_key)
    type_ = job_type_get(job_type)
    choice = job_check(brand=brand, job_type=type_, input_data=input_data, priority=priority)
    router = _routed(choice, completion_window or completion_window_of(type_, input_data))
    fingerprint = ""
    if idempotency_key is not None:
        fingerprint = _fingerprint(job_type=job_type, input_data=input_data, priority=priority, description=description)
        existing = _idempotent_replay(brand, idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
    job = AIJob(
        job_type=type_,
        brand=brand,
        created_by=user,
        priority=priority,
        description=description,
        input_data=input_data,
        is_async=type_.requires_async,
        idempotency_key=idempotency_key,
        idempotency_fingerprint=fingerprint,
        api_key=api_key,
    )
    if router is not None:
        job.available_at = job.created_at + router.hold
        dispatch = False  # no worker wakes for it: the router sends it
    created = Created(
        job=job,
        choice=choice,
        input_data=input_data,
        brand=brand,
        openai=openai_extension,
        batch=router is not None,
        request=lambda: job_provider_request(job),
    )
    try:
        job = lifecycle.job_insert(
            created,
            claimed_by=claimed_by,
            dispatch=dispatch,
            attach=None if router is None else (lambda new: router.attach(new, choice)),
        )
    except IntegrityError:
        # Two requests with the same key raced; the loser answers with the winner's job.
        if idempotency_key is None:
            raise
        existing = _idempotent_replay(brand, idempotency_key, fingerprint)
        if existing is None:
            raise
        return existing, False
    return job, True


def idempotency_key_check(key: str | None) -> None:
    """An Idempotency-Key, when given, is 1 to 255 characters: the width of the column that keeps it."""
    limit = AIJob._meta.get_field("idempotency_key").max_length
    if key is not None and not 1 <= len(key) <= limit:
        raise ApplicationError(f"Idempotency-Key must be 1 to {limit} characters", error_code="INVALID_IDEMPOTENCY_KEY")


def _model_of(
    *, brand: Brand, job_type: AIJobType, input_data: dict, keys_seen: dict | None = None, model: str | None = None
) -> ModelChoice:
    """The catalogue entry of the model the job would run (MODEL_NOT_SUPPORTED), with a key for its provider
    (PROVIDER_NOT_CONFIGURED): checked on creation and on every change of a pending job's input. `model`: the
    fallback model a job switched to, which its input no longer decides.

    `keys_seen`: whether each provider has a key, kept across the calls of one bulk creation (a query each)."""
    model = model or input_data.get("model") or job_type.default_model
    return _with_key(brand=brand, choice=model_resolve(model), keys_seen={} if keys_seen is None else keys_seen)


def _with_key(*, brand: Brand, choice: ModelChoice, keys_seen: dict) -> ModelChoice:
    """`choice` when its provider has a key for the brand's company, else PROVIDER_NOT_CONFIGURED."""
    if choice.provider.pk not in keys_seen:
        keys_seen[choice.provider.pk] = key_source(company_id=brand.company_id, provider=choice.provider) is not None
    if not keys_seen[choice.provider.pk]:
        raise ProviderNotConfigured(
            f"Provider '{choice.provider.name}' (model '{choice.name}') has no API key: store a "
            f"credential for your company or ask the operator to set one",
            provider=choice.provider.name,
            model=choice.name,
        )
    return choice


MAX_FALLBACK_MODELS = 3


def fallback_models_clean(models: Any, *, primary: str) -> list[ModelChoice]:
    """Fallback models as a job type or a request names them: a list of up to MAX_FALLBACK_MODELS distinct model
    names other than the job's own (VALIDATION_ERROR), each in the catalogue (MODEL_NOT_SUPPORTED, naming it).
    Returns their catalogue entries, in order."""
    if (
        not isinstance(models, list)
        or len(models) > MAX_FALLBACK_MODELS
        or not all(isinstance(name, str) and name for name in models)
    ):
        raise JobValidationError(
            f"fallback_models must be a list of up to {MAX_FALLBACK_MODELS} model names",
            errors={"fallback_models": [f"A list of up to {MAX_FALLBACK_MODELS} model names."]},
        )
    if len(set(models)) != len(models) or primary in models:
        raise JobValidationError(
            "fallback_models must name distinct models other than the job's own",
            errors={"fallback_models": ["Distinct models, other than the job's own model."]},
        )
    choices = []
    for name in models:
        try:
            choices.append(model_resolve(name))
        except ApplicationError as exc:
            raise ApplicationError(
                f"fallback_models: {exc.detail}",
                error_code=exc.error_code,
                errors={"fallback_models": [exc.detail]},
                model=name,
            ) from None
    return choices


def _fallbacks_check(*, brand: Brand, job_type: AIJobType, input_data: dict, keys_seen: dict | None = None) -> None:
    """The fallback models a request names (input_data.fallback_models): clean, and each with a key for its
    provider. A type's own list is checked when it is saved (admin); the engine skips one it cannot run."""
    if "fallback_models" not in input_data:
        return
    primary = input_data.get("model") or job_type.default_model
    keys_seen = {} if keys_seen is None else keys_seen
    for choice in fallback_models_clean(input_data["fallback_models"], primary=primary):
        _with_key(brand=brand, choice=choice, keys_seen=keys_seen)


def _idempotent_replay(brand: Brand, key: str, fingerprint: str) -> AIJob | None:
    job = AIJob.objects.filter(brand=brand, idempotency_key=key).first()
    if job is None:
        return None
    if job.created_at < timezone.now() - IDEMPOTENCY_WINDOW:
        # The key has expired: free it for the new request (the old job keeps its history).
        lifecycle.idempotency_key_free(job_pk=job.pk, key=key)
        return None
    if job.idempotency_fingerprint != fingerprint:
        raise Conflict(
            "Idempotency-Key was already used with a different request body",
            error_code="IDEMPOTENCY_KEY_REUSED",
            job_id=job.job_id,
        )
    return job


# --- client updates -----------------------------------------------------------------------------------

UPDATABLE_FIELDS = {"description", "priority", "input_data", "progress_percentage"}


def job_update(*, job: AIJob, data: dict[str, Any]) -> AIJob:
    """Apply a client update under the rules of the job's status, guarded by a compare-and-set on it.

    pending: description, priority, input_data. running: progress_percentage only (else JOB_RUNNING).
    final: description and priority only.

    New input_data is checked as on creation (schema, model, provider key), and the job's quota reservation is
    replaced by what the new input needs, in the transaction of the compare-and-set on `pending`: a job
    claimed meanwhile refuses the change (JOB_STATE_CHANGED), and a refusal (QUOTA_EXCEEDED) leaves the job and
    its old reservation as they were.
    """
    changes = {k: v for k, v in data.items() if k in UPDATABLE_FIELDS}
    if not changes:
        return job
    status = job.status
    if status == S.RUNNING and set(changes) - {"progress_percentage"}:
        raise Conflict("Cannot modify running job", error_code="JOB_RUNNING", current_status=status)
    replanned = None
    if "input_data" in changes:
        if status != S.PENDING:
            raise Conflict(
                "input_data can only change while the job is pending",
                error_code="JOB_NOT_PENDING",
                current_status=status,
            )
        validate_input_data(job.job_type, changes["input_data"])
        _routing_unchanged(job, changes["input_data"])
        replanned = AIJob(
            pk=job.pk,
            job_type=job.job_type,
            brand=job.brand,
            input_data=changes["input_data"],
            fallback_model=job.fallback_model,
        )  # the job as it would be: what its reservation must cover
        choice = _model_of(
            brand=job.brand, job_type=job.job_type, input_data=changes["input_data"], model=job.fallback_model
        )
        _fallbacks_check(brand=job.brand, job_type=job.job_type, input_data=changes["input_data"])
    if "progress_percentage" in changes and status != S.RUNNING:
        raise Conflict(
            "progress_percentage can only change while the job is running",
            error_code="JOB_NOT_RUNNING",
            current_status=status,
        )
    changes["updated_at"] = timezone.now()
    lifecycle.job_update_guarded(
        job=job,
        status=status,
        changes=changes,
        replanned=None
        if replanned is None
        else Replanned(
            job=job,
            choice=choice,
            request=lambda: job_provider_request(replanned),
            input_data=changes["input_data"],
        ),
    )
    for field, value in changes.items():
        setattr(job, field, value)
    return job


def _routing_unchanged(job: AIJob, input_data: dict) -> None:
    """A job's completion window is chosen at its creation (it decides the path the job takes), and a job sent
    to a provider's Batch API keeps the input it was sent with (its answer is for that input)."""
    if completion_window_of(job.job_type, input_data) != completion_window_of(job.job_type, job.input_data):
        raise Conflict("completion_window cannot change after the job's creation", error_code="COMPLETION_WINDOW_FIXED")
    if _router is not None and _router.holds(job.pk):
        raise Conflict(
            "input_data of a job routed to a provider Batch API cannot change; cancel it and submit another",
            error_code="JOB_ROUTED",
        )
