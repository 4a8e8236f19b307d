"""The one reading of JSON input: what the hub refuses in a JSON text (malformed, NaN/Infinity, too deep, lone
surrogates), shared by the API's parser, the web form and the job services. No Django, no DRF: the shared kernel."""

import json
import re
from collections.abc import Iterator
from typing import Any

# A lone surrogate can only come from a \uD800–\uDFFF escape: the UTF-8 decoder refuses encoded ones.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONRefused(ValueError):
    """A JSON text the hub will not take, with the error_code it answers."""

    def __init__(self, detail: str, *, error_code: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.error_code = error_code


def json_depth_exceeds(value, limit: int) -> bool:
    """True when containers nest deeper than `limit` (iterative: deep input must not blow the stack)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def json_strings(value: Any) -> Iterator[str]:
    """Every string and key in a JSON value (iterative, like json_depth_exceeds)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _reject_constant(name: str):
    # NaN and Infinity are not JSON; PostgreSQL's jsonb would refuse them later, as a 500.
    raise ValueError(f"{name} is not valid JSON")


def json_parse(text: str, *, max_depth: int) -> Any:
    """The one reading of JSON input (API bodies and the web form's JSON fields): the value, or JSONRefused.

    Refused: malformed JSON, NaN and Infinity, nesting deeper than `max_depth`, and lone surrogates
    ("\\ud800"), which are valid JSON but no valid text: PostgreSQL's jsonb cannot store them and they
    cannot be encoded as UTF-8 again, so anything that kept one would fail later, as a 500.
    """
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise JSONRefused("JSON nested too deeply", error_code="MALFORMED_JSON") from None
    except ValueError as exc:
        raise JSONRefused(f"Not valid JSON: {exc}", error_code="MALFORMED_JSON") from None
    if json_depth_exceeds(value, max_depth):
        raise JSONRefused("JSON nested too deeply", error_code="MALFORMED_JSON")
    if _SURROGATE_ESCAPE.search(text) and any(_SURROGATE.search(s) for s in json_strings(value)):
        raise JSONRefused(
            "JSON holds a lone surrogate escape (such as \\ud800): not valid Unicode text",
            error_code="INVALID_UNICODE",
        )
    return value
