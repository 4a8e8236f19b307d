"""Model-family rules that need no SDK (the catalogue resolves names with them; the SDKs load on first call)."""

import re

# o1, o3, o4-mini…: reasoning models take reasoning_effort and max_completion_tokens, no temperature,
# and a "developer" message instead of "system".
REASONING_MODEL = re.compile(r"^o\d")
# OpenAI's parameter rules per model family, in one place: what each family accepts (in the order
# /ai/openai/models/ lists them), so what only one of them accepts. The OpenAI client sends each family only its
# own, and /ai/openai/chat/ refuses the other family's (ai_openai.services.openai_params_validate).
ACCEPTED_PARAMS = {
    "reasoning": ("max_completion_tokens", "reasoning_effort", "response_format", "tools"),
    "standard": ("temperature", "top_p", "max_tokens", "response_format", "tools"),
}
# The OpenAI chat parameters a job carries in its input_data: what /ai/openai/chat/ and the gateway's
# /v1/chat/completions pass on, and what the engine hands the provider's client (ai_core.engine.handlers).
CHAT_PARAMS = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "reasoning_effort",
    "response_format",
    "tools",
    "tool_choice",
    "top_p",
    "stop",
)
REASONING_ONLY_PARAMS = frozenset(ACCEPTED_PARAMS["reasoning"]) - frozenset(ACCEPTED_PARAMS["standard"])
STANDARD_ONLY_PARAMS = frozenset(ACCEPTED_PARAMS["standard"]) - frozenset(ACCEPTED_PARAMS["reasoning"])


def is_reasoning_model(model: str, options: dict | None = None) -> bool:
    family = (options or {}).get("model_family")
    if family:
        return family == "reasoning"
    return bool(REASONING_MODEL.match(model))
