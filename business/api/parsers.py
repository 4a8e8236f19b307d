import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


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


def _reject_constant(name: str):
    # NaN and Infinity are not JSON; PostgreSQL's jsonb would refuse them later, as a 500.
    raise ValueError(f"{name} is not valid JSON")


class SafeJSONParser(JSONParser):
    """JSONParser that turns pathological input (deep nesting, bad encodings) into a 400, never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except RecursionError:
            raise ParseError("JSON nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if json_depth_exceeds(data, settings.AICORE_MAX_JSON_DEPTH + 4):
            raise ParseError("JSON nested too deeply")
        return data
