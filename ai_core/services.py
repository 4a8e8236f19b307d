"""Writes on jobs. Status changes go through ai_core.workflow.transition (one compare-and-set each)."""

import hashlib
import json
from collections.abc import Callable
from contextlib import nullcontext
from copy import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import fastjsonschema
import jsonschema
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ai_core.dispatch import dispatch_job_on_commit
from ai_core.engine.handlers import build_request
from ai_core.models import AIJob, AIJobEvent, AIJobType, CompletionWindow, JobDailyStat, JobPriority, JobStatus
from ai_core.workflow import (
    IllegalTransition,
    Transitioned,
    claim_pending,
    claimed_at_creation,
    stat_move,
    transition,
)
from ai_openai.models import OpenAIJob
from ai_openai.services import (
    openai_job_create,
    openai_job_insert_part,
    openai_job_new,
    openai_job_sync,
    openai_job_wanted,
)
from ai_providers.clients.base import ChatRequest, PermanentProviderError
from ai_providers.money import NO_TOKENS, TokenUsage
from ai_providers.selectors import ModelChoice, key_source, model_resolve
from ai_providers.services import MAX_OUTPUT_BOUND, OUTPUT_BOUND_PARAMS, ProviderNotConfigured, is_output_bound
from ai_usage.selectors import active_quota_exists_sql, company_has_active_quota
from ai_usage.services import (
    accounting_along,
    accounting_in_one_statement,
    quota_release,
    quota_rereserve,
    quota_reserve,
    usage_charge,
    usage_record,
)
from business.api.parsers import json_depth_exceeds, json_strings
from business.errors import ApplicationError, Conflict, NotFound
from business.memo import TTLMemo
from business.models import ApiKey, Brand, User
from business.sql import Insert, InsertSelect, prepared_cursor

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
    extension = openai_job_wanted(choice=choice, always=openai_extension)
    key_limited = api_key is not None and api_key.monthly_cost_limit is not None
    try:
        if not key_limited and router is None and _creation_in_one_statement():
            # The usual job (and its OpenAI row, a gateway call's): one statement that writes it unless its
            # company has an active quota.
            openai_row = openai_job_new(choice=choice, input_data=input_data) if extension else None
            created, events = job, None
            if claimed_by is not None:  # a copy: should the statement write nothing, `job` is still pending
                created = copy(job)
                events = claimed_at_creation(created, **_claim(f"{claimed_by}:{job.job_id}"))
            if _insert_created_job(created, unless_quota_of=brand.company_id, openai_row=openai_row, events=events):
                if dispatch:
                    dispatch_job_on_commit(created.pk, priority=priority)  # no transaction: published at once
                # As the engine's load reads them (runner._job_from): no reservation, created without a quota.
                created.has_openai_row, created.holds_quota_reservation = openai_row is not None, False
                return created, True
            quotas = True  # it has one: reserve on it, in a transaction
        else:
            quotas = key_limited or company_has_active_quota(brand.company_id)
        # A savepoint inside a caller's transaction: a failed insert (an Idempotency-Key race) won't break it.
        with transaction.atomic():
            _insert_created_job(job)
            if quotas:
                quota_reserve(job=job, choice=choice, request=job_provider_request(job), batch=router is not None)
            if router is not None:
                router.attach(job, choice)
            if extension:
                openai_job_create(job=job, choice=choice, input_data=input_data, always=openai_extension)
            if dispatch:
                dispatch_job_on_commit(job.pk, priority=priority)
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


def job_provider_request(job: AIJob) -> ChatRequest | None:
    """The provider request the job will send, built by the engine's own handler: what its quota reservation
    covers. None when none can be built: the engine then fails the job without calling any provider."""
    try:
        return build_request(job)
    except (PermanentProviderError, KeyError, TypeError, ValueError):
        # No handler for the type, or input its (admin-edited) schema lets through but its handler cannot read.
        return None


def _creation_in_one_statement() -> bool:
    """Whether a job with nothing else to write (no quota to reserve, no OpenAI row) is created by one
    statement, atomic on its own, with no BEGIN and COMMIT round trips: on PostgreSQL, outside a transaction."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _insert_created_job(
    job: AIJob,
    *,
    unless_quota_of: int | None = None,
    openai_row: OpenAIJob | None = None,
    events: list[tuple] | None = None,
) -> bool:
    """Insert the new job with its creation event and the roll-up's +1 pending. Returns whether it did.

    On PostgreSQL one statement does all three (data-modifying CTEs), written once per process: job creation is
    the API's hottest write, and the ORM's insert cost more to compile than to run. `unless_quota_of` (a
    company id, PostgreSQL): the statement writes nothing when that company has an active quota (the caller
    then reserves on it in a transaction), saving the separate probe on every creation. PostgreSQL only:
    `openai_row`, the job's OpenAIJob row, unsaved, inserted by the same statement (a gateway call's);
    `events`, its events when not the creation's alone (claimed_at_creation's), the roll-up then +1 job.status.
    """
    day = timezone.localdate(job.created_at)
    if connection.vendor != "postgresql":
        job.save(force_insert=True)
        AIJobEvent.objects.create(
            job=job, from_status="", to_status=S.PENDING, at=job.created_at, reason="created", actor=job.created_by
        )
        stat_move(brand_id=job.brand_id, day=day, job_type_id=job.job_type_id, deltas={S.PENDING: +1})
        return True
    events = events or [("", S.PENDING, 0, "created", job.created_by_id)]
    guarded = unless_quota_of is not None
    params = [*JOB_INSERT.values(job), *([unless_quota_of] if guarded else []), job.created_at]
    params += CREATION_EVENTS.defaults()
    params += [value for event in events for value in event]
    params += [job.brand_id, day, job.job_type_id, job.status, *CREATION_ROLLUP.defaults()]
    openai_part = None if openai_row is None else openai_job_insert_part(openai_row)
    if openai_part is not None:
        params += openai_part[1]
    statement = _creation_statement(guarded=guarded, events=len(events), openai_part=openai_part and openai_part[0])
    with prepared_cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    if row is None:
        return False
    _saved(job, row[0])
    if openai_row is not None:
        _saved(openai_row, row[1])
        openai_row.job = job  # and job.openai_job, the reverse of the one-to-one: no query to read it
    return True


def _saved(instance, pk: int) -> None:
    """An instance inserted by a hand-written statement, as the ORM leaves one it saved."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = connection.alias


JOB_INSERT = Insert(AIJob)


# The creation's events (from the VALUES list `e`) and its roll-up +1, beside the inserted `job`
# (business.sql.InsertSelect fills the columns not named here with their field's default).
CREATION_EVENTS = InsertSelect(
    AIJobEvent,
    {
        "job_id": "job.id",
        "from_status": "e.from_status",
        "to_status": "e.to_status",
        "at": "%s::timestamptz",
        "attempt": "e.attempt",
        "reason": "e.reason",
        "actor_id": "e.actor_id",
    },
)
CREATION_ROLLUP = InsertSelect(
    JobDailyStat,
    {
        "brand_id": "%s::bigint",
        "day": "%s::date",
        "job_type_id": "%s::bigint",
        "status": "%s::text",
        "jobs": "1",
        "cost_micros": "0",
    },
)


def _creation_statement(*, guarded: bool, events: int = 1, openai_part: str | None = None) -> str:
    """PostgreSQL's one-statement creation; its first placeholders take JOB_INSERT's values, then (guarded)
    the company whose active quota stops it, the events' instant and defaults then their rows (from, to,
    attempt, reason, actor), the roll-up's, then the OpenAI row's."""
    unless = f"WHERE NOT {active_quota_exists_sql()} " if guarded else ""
    rows = ", ".join(["(%s::text, %s::text, %s::integer, %s::text, %s::bigint)"] * events)
    openai = f", openai AS ({openai_part}) SELECT id, (SELECT id FROM openai) FROM job" if openai_part else ""
    return (
        f"WITH job AS (INSERT INTO {AIJob._meta.db_table} ({JOB_INSERT.columns}) "
        f"SELECT {JOB_INSERT.typed_placeholders} {unless}RETURNING id), "
        f"event AS ({CREATION_EVENTS} "
        f"FROM job CROSS JOIN (VALUES {rows}) AS e (from_status, to_status, attempt, reason, actor_id)), "
        f"stat AS ({CREATION_ROLLUP} FROM job)" + (openai or " SELECT id FROM job")
    )


def _idempotent_replay(brand: Brand, key: str, fingerprint: str) -> AIJob | None:
    job = AIJob.objects.filter(brand=brand, idempotency_key=key).first()
    if job is None:
        return None
    if job.created_at < timezone.now() - IDEMPOTENCY_WINDOW:
        # The key has expired: free it for the new request (the old job keeps its history).
        AIJob.objects.filter(pk=job.pk, idempotency_key=key).update(idempotency_key=None)
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
    with transaction.atomic() if replanned is not None else nullcontext():
        if replanned is not None:
            # Reservations first and the job's row last, the lock order of a job's end (no deadlock with a
            # cancel); the compare-and-set below then undoes all of it if the job left `pending` meanwhile.
            quota_rereserve(job=job, choice=choice, request=job_provider_request(replanned))
            openai_job_sync(job=job, choice=choice, input_data=changes["input_data"])
        if AIJob.objects.filter(pk=job.pk, status=status).update(**changes) != 1:
            job.refresh_from_db(fields=["status"])
            raise Conflict(
                f"The job changed to {job.status} meanwhile; reload and retry",
                error_code="JOB_STATE_CHANGED",
                current_status=job.status,
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


def job_delete(*, job: AIJob) -> None:
    """Delete a job that is not running. Its usage row (money spent) is kept."""
    with transaction.atomic():
        # A pending job never ran: its reservation goes back (a final job has none open; a running one rolls
        # this back below). Released before the job's row is locked: the lock order of a job's end.
        quota_release(job_pk=job.pk)
        # Lock the row: a worker claiming the job between our check and the delete would otherwise run a
        # deleted job and leave the roll-up counting it in the wrong status.
        status = AIJob.objects.select_for_update().filter(pk=job.pk).values_list("status", flat=True).first()
        if status is None:
            raise NotFound("Job not found", error_code="JOB_NOT_FOUND")
        if status == S.RUNNING:
            raise Conflict(
                "Cannot delete a running job; cancel it first", error_code="JOB_RUNNING", current_status=status
            )
        AIJob.objects.filter(pk=job.pk).delete()
        stat_move(
            brand_id=job.brand_id,
            day=timezone.localdate(job.created_at),
            job_type_id=job.job_type_id,
            deltas={status: -1},
        )


# --- lifecycle ----------------------------------------------------------------------------------------


def job_cancel(
    *,
    job_pk: int,
    actor: User | None = None,
    reason: str = "cancelled by user",
    input_tokens: int = 0,
    output_tokens: int = 0,
) -> Transitioned:
    """Cancel a pending or running job. Tokens: what a call that was cut short had already used (a gateway
    stream whose client hung up): charged like a finished job's, else nothing is."""
    try:
        return _finalize(
            job_pk,
            to=S.CANCELLED,
            reason=reason,
            actor_id=actor.pk if actor else None,
            tokens=TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens),
        )
    except IllegalTransition as exc:
        raise Conflict(
            "Job cannot be cancelled",
            error_code="JOB_NOT_CANCELLABLE",
            error="Job cannot be cancelled",
            current_status=exc.current,
        ) from None


def _finalize(
    job_pk: int,
    *,
    to: str,
    attempt: int | None = None,
    tokens: TokenUsage = NO_TOKENS,
    cost: Decimal | None = None,
    job: AIJob | None = None,
    batch: bool = False,
    **transition_args: Any,
) -> Transitioned:
    """A final transition and its accounting in ONE transaction: usage row (completed, failed, timeout),
    quota settle (completed) or release (otherwise), roll-up cost, OpenAI token counts. A duplicate delivery
    loses the transition's compare-and-set, which rolls the whole thing back: a job is charged once.

    The engine's usual end on PostgreSQL (no quota reservation: accounting_in_one_statement) needs no
    transaction: the usage row and the OpenAI row's token counts are more parts of the transition's own
    statement, written only if the compare-and-set moved the job. Otherwise the accounting is written first and
    the transition last.

    `job`: the caller's copy when it has one (the engine, read right after its claim). Only fields that do
    not change while a job runs are used from it; the status is the transition's business. `batch`: the call
    went through the provider's Batch API, priced at its batch ratio.
    """
    one_statement = job is not None and connection.vendor == "postgresql" and accounting_in_one_statement(job)
    with nullcontext() if one_statement else transaction.atomic():
        if job is None:
            job = AIJob.objects.select_related("job_type", "openai_job").filter(pk=job_pk).first()
        if job is None:
            raise NotFound("Job not found", error_code="JOB_NOT_FOUND")
        charge = usage_charge(job=job, tokens=tokens, cost=cost, batch=batch)
        at = timezone.now()
        on_attempt = job.attempts if attempt is None else attempt
        along = []
        result = (transition_args.get("fields") or {}).get("result_data")
        if one_statement:
            along = accounting_along(job=job, attempt=on_attempt, at=at, status=to, charge=charge, result=result)
        else:
            usage_record(job=job, attempt=on_attempt, at=at, status=to, charge=charge, result=result)
        return transition(
            job_pk, to=to, attempt=attempt, cost=charge.cost.total_cost or None, at=at, along=along, **transition_args
        )


def _claim(task_id: str) -> dict[str, Any]:
    """What a claim writes besides the move to running, whichever way the job was picked."""
    return {"reason": "claimed by worker", "fields": {"task_id": task_id[:255], "waiting": None}}


def job_start(*, job_pk: int, task_id: str = "", also_return: str = "") -> Transitioned:
    """Claim a pending job for one attempt: pending -> running, attempts + 1 (`also_return`: see transition)."""
    return transition(job_pk, to=S.RUNNING, expected={S.PENDING}, also_return=also_return, **_claim(task_id))


def job_claim_pending(
    *, levels: list[tuple[str, int]], task_id: str = "", also_return: str = ""
) -> Transitioned | None:
    """PostgreSQL: claim the first claimable job along `levels` ((priority, after brand), in order)."""
    return claim_pending(levels=levels, also_return=also_return, **_claim(task_id))


def job_progress(*, job_pk: int, attempt: int, percentage: int) -> bool:
    """Record progress of the current attempt (also a heartbeat). False when the attempt is no longer current."""
    return jobs_beat([(job_pk, attempt, max(0, min(100, int(percentage))))]) == 1


def jobs_beat(beats: list[tuple[int, int, int | None]]) -> int:
    """Stamp heartbeat_at, and the progress when one is given, on jobs still running on these attempts:
    (job pk, attempt, progress or None), in one statement. Returns the number of jobs stamped.

    updated_at moves only with the progress (the brand's event stream looks for progress by it).
    """
    job = AIJob._meta.db_table
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    # A row source both PostgreSQL and SQLite read: SELECT ... UNION ALL SELECT ...
    values = " UNION ALL ".join(["SELECT %s AS pk, %s AS attempt, CAST(%s AS integer) AS progress"] * len(beats))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {job} SET heartbeat_at = %s, "
            f"progress_percentage = COALESCE(beat.progress, {job}.progress_percentage), "
            f"updated_at = CASE WHEN beat.progress IS NULL OR beat.progress = {job}.progress_percentage "
            f"THEN {job}.updated_at ELSE %s END "
            f"FROM ({values}) AS beat "
            f"WHERE {job}.id = beat.pk AND {job}.attempts = beat.attempt AND {job}.status = 'running'",
            [now, now, *[value for beat in beats for value in beat]],
        )
        return cursor.rowcount


def job_complete(
    *,
    job_pk: int,
    attempt: int,
    result_data: dict,
    input_tokens: int = 0,
    output_tokens: int = 0,
    tokens: TokenUsage | None = None,
    cost: Decimal | None = None,
    job: AIJob | None = None,
    batch: bool = False,
) -> Transitioned:
    """running -> completed, charging the tokens at the price in effect when the job started.

    `tokens`: every kind of token the call reported; without it, `input_tokens` and `output_tokens` (plain).
    `batch`: answered through the provider's Batch API (charged at the price's batch ratio)."""
    return _finalize(
        job_pk,
        to=S.COMPLETED,
        attempt=attempt,
        tokens=tokens or TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens),
        cost=cost,
        job=job,
        batch=batch,
        reason="completed",
        fields={"result_data": result_data, "error_message": "", "error_code": ""},
    )


def job_fail(
    *, job_pk: int, attempt: int | None, error_message: str, error_code: str = "JOB_FAILED", cost: Decimal | None = None
) -> Transitioned:
    return _finalize(
        job_pk,
        to=S.FAILED,
        attempt=attempt,
        cost=cost,
        reason=error_code,
        fields={"error_message": error_message[:10_000], "error_code": error_code[:64]},
    )


def job_timeout(
    *,
    job_pk: int,
    attempt: int | None,
    error_message: str = "The job exceeded its time limit",
    error_code: str = "JOB_TIMEOUT",
    cost: Decimal | None = None,
) -> Transitioned:
    return _finalize(
        job_pk,
        to=S.TIMEOUT,
        attempt=attempt,
        cost=cost,
        reason="timeout",
        fields={"error_message": error_message, "error_code": error_code},
    )


def job_wait_for_capacity(
    *, job_pk: int, attempt: int, waiting: dict[str, str], claimable_at: datetime
) -> Transitioned:
    """running -> pending until the provider has capacity: claimable again at `claimable_at`, shown as `waiting`,
    and the attempt given back (attempts - 1: waiting is not failing; the fence makes the count exact)."""
    return job_give_back(
        job_pk=job_pk,
        attempt=attempt,
        reason=f"waiting for {waiting['provider']} capacity until {waiting['until']}",
        claimable_at=claimable_at,
        waiting=waiting,
    )


def job_give_back(
    *, job_pk: int, attempt: int, reason: str, claimable_at: datetime, waiting: dict[str, str] | None = None
) -> Transitioned:
    """running -> pending with the attempt given back (attempts - 1), claimable again at `claimable_at`: the
    attempt could not start (no provider capacity, its brand over its max_running_jobs), nothing failed."""
    return _back_to_pending(
        job_pk, attempt=attempt, reason=reason, available_at=claimable_at, attempts=attempt - 1, waiting=waiting
    )


def job_fall_back(*, job: AIJob, attempt: int, choice: ModelChoice, reason: str) -> Transitioned:
    """running -> pending on the fallback model `choice`, in one transaction: the job's quota reservation re-made
    at that model's price (QUOTA_EXCEEDED when it does not fit), then the compare-and-set fenced by `attempt`,
    which records the model and resets the attempts the new model has had (each model gets max_attempts).

    Reservations first and the job's row last, the lock order of a job's end; a job cancelled meanwhile fails
    the compare-and-set, which rolls the new reservation back."""
    switched = copy(job)
    switched.fallback_model = choice.name
    with transaction.atomic():
        quota_rereserve(job=job, choice=choice, request=job_provider_request(switched))
        return _back_to_pending(
            job.pk,
            attempt=attempt,
            reason=f"fallback {job.current_model()} -> {choice.name}: {reason}",
            available_at=timezone.now(),
            fallback_model=choice.name,
            fallback_provider=choice.provider.name,
            fallback_attempts=attempt,
        )


def job_requeue(*, job_pk: int, attempt: int, reason: str, delay_seconds: float = 0) -> Transitioned:
    """running -> pending for another attempt (transient error or lost worker), claimable after a delay."""
    return _back_to_pending(
        job_pk, attempt=attempt, reason=reason, available_at=timezone.now() + timedelta(seconds=delay_seconds)
    )


def _back_to_pending(job_pk: int, *, attempt: int, reason: str, available_at: datetime, **fields) -> Transitioned:
    """The engine's running -> pending, fenced by `attempt`: claimable at `available_at`, its progress and
    heartbeat reset, with the move's own `fields` (re-queue, give-back, fallback)."""
    return transition(
        job_pk,
        to=S.PENDING,
        attempt=attempt,
        reason=reason[:500],
        fields={"available_at": available_at, "progress_percentage": 0, "heartbeat_at": None, **fields},
    )
