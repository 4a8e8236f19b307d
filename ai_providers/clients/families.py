"""Model-family rules that need no SDK (the catalogue resolves names with them; the SDKs load on first call)."""

import re

# o1, o3, o4-mini…: reasoning models take reasoning_effort and max_completion_tokens, no temperature,
# and a "developer" message instead of "system".
REASONING_MODEL = re.compile(r"^o\d")


def is_reasoning_model(model: str, options: dict | None = None) -> bool:
    family = (options or {}).get("model_family")
    if family:
        return family == "reasoning"
    return bool(REASONING_MODEL.match(model))
