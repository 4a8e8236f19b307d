import json

from rest_framework.parsers import BaseParser

from batches.services import BatchLine

NDJSON = "application/x-ndjson"


class NDJSONParser(BaseParser):
    """JSON Lines (one job per line). A line that is not a JSON object is not an error of the request: it
    becomes a BatchLine carrying its error, listed by line with the others (blank lines are skipped)."""

    media_type = NDJSON

    def parse(self, stream, media_type=None, parser_context=None) -> list[BatchLine]:
        lines = []
        raw = stream.read() if stream is not None else b""
        for text in raw.splitlines():
            if not text.strip():
                continue
            try:
                item = json.loads(text.decode("utf-8"), parse_constant=_reject_constant)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                lines.append(_broken(f"Not a JSON line: {str(exc)[:200]}"))
                continue
            lines.append(line_of(item))
        return lines


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _broken(message: str) -> BatchLine:
    return BatchLine(input_data=None, error={"error_code": "INVALID_LINE", "detail": message})


def line_of(item) -> BatchLine:
    """One job of a submission: {input_data, description?, priority?, custom_id?}."""
    if not isinstance(item, dict):
        return _broken("A job must be a JSON object")
    unknown = set(item) - {"input_data", "description", "priority", "custom_id"}
    if unknown:
        return BatchLine(
            input_data=None,
            custom_id=item.get("custom_id") if isinstance(item.get("custom_id"), str) else "",
            error={
                "error_code": "VALIDATION_ERROR",
                "errors": {name: ["Unknown field."] for name in sorted(unknown)},
            },
        )
    if "input_data" not in item:
        return BatchLine(
            input_data=None, error={"error_code": "VALIDATION_ERROR", "errors": {"input_data": ["Required."]}}
        )
    return BatchLine(
        input_data=item["input_data"],
        description=item.get("description") or "",
        priority=item.get("priority"),
        custom_id=item.get("custom_id") if item.get("custom_id") is not None else "",
    )
