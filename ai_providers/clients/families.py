"""Model-family rules that need no SDK (the catalogue resolves names with them; the SDKs load on first call)."""

import re

# o1, o3, o4-mini…: reasoning models take reasoning_effort and max_completion_tokens, no temperature,
# and a "developer" message instead of "system".
REASONING_MODEL = re.compile(r"^o\d")
# OpenAI's parameter rules per model family, in one place: the OpenAI client sends each family only its own,
# and /ai/openai/chat/ refuses the other family's (ai_openai.services.openai_params_validate).
REASONING_ONLY_PARAMS = frozenset({"reasoning_effort", "max_completion_tokens"})
STANDARD_ONLY_PARAMS = frozenset({"temperature", "top_p", "max_tokens"})


def is_reasoning_model(model: str, options: dict | None = None) -> bool:
    family = (options or {}).get("model_family")
    if family:
        return family == "reasoning"
    return bool(REASONING_MODEL.match(model))
