"""Job type → provider request. Register a function for a new job type; the engine never changes.

@register("summarize")
def summarize(job: AIJob) -> ChatRequest: ...
"""

from collections.abc import Callable
from typing import Any

from ai_core.models import AIJob
from ai_providers.clients.base import ChatRequest, PermanentProviderError
from ai_providers.clients.families import CHAT_PARAMS

Handler = Callable[[AIJob], ChatRequest]
_HANDLERS: dict[str, Handler] = {}

# The request's own fields; every other OpenAI chat parameter of input_data (and the echo client's `echo`)
# reaches the provider as it is, an option (the provider validates them per model).
REQUEST_FIELDS = ("max_tokens", "temperature")
PASSTHROUGH_OPTIONS = ("echo", *(name for name in CHAT_PARAMS if name not in REQUEST_FIELDS))


def register(job_type_name: str) -> Callable[[Handler], Handler]:
    def decorator(handler: Handler) -> Handler:
        _HANDLERS[job_type_name] = handler
        return handler

    return decorator


def handler_for(job_type_name: str) -> Handler:
    try:
        return _HANDLERS[job_type_name]
    except KeyError:
        raise PermanentProviderError(
            f"No handler runs jobs of type '{job_type_name}'", error_code="NO_HANDLER"
        ) from None


def registered_types() -> list[str]:
    return sorted(_HANDLERS)


def build_request(job: AIJob) -> ChatRequest:
    return handler_for(job.job_type.name)(job)


def chat_request(job: AIJob, messages: list[dict[str, Any]]) -> ChatRequest:
    """A request with the common fields (model, max_tokens, temperature, provider options) of input_data."""
    data = job.input_data
    options = {key: data[key] for key in PASSTHROUGH_OPTIONS if key in data}
    return ChatRequest(
        model=job.current_model(),  # a fallback model, once the job switched to one
        messages=messages,
        max_tokens=data.get("max_tokens"),
        temperature=data.get("temperature"),
        response_format=options.pop("response_format", None),
        tools=options.pop("tools", None),
        options=options,
    )


@register("chat_completion")
def chat_completion(job: AIJob) -> ChatRequest:
    return chat_request(job, list(job.input_data["messages"]))


@register("embedding")
def embedding(job: AIJob) -> ChatRequest:
    data = job.input_data
    texts = [data["input"]] if isinstance(data["input"], str) else list(data["input"])
    options = {"input": texts, **({"dimensions": data["dimensions"]} if data.get("dimensions") else {})}
    return ChatRequest(model=job.current_model(), messages=[], options=options, operation="embedding", stream=False)


@register("text_generation")
def text_generation(job: AIJob) -> ChatRequest:
    data = job.input_data
    messages = list(data.get("messages") or [])
    if data.get("prompt"):
        messages.append({"role": "user", "content": data["prompt"]})
    return chat_request(job, messages)


@register("content_analysis")
def content_analysis(job: AIJob) -> ChatRequest:
    data = job.input_data
    kind = data.get("analysis_type") or "general"
    instructions = data.get("instructions") or f"Analyse the following content ({kind} analysis)."
    return chat_request(
        job, [{"role": "system", "content": instructions}, {"role": "user", "content": data["content"]}]
    )
