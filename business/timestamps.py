"""The one format of every timestamp the API writes: ISO 8601 in UTC with a "Z" suffix.

It is what DRF's DateTimeField renders under this project's settings (TIME_ZONE UTC), so REST bodies, SSE
frames, webhook payloads and hand-built dicts all read the same: "2026-11-29T04:48:22.240652Z".
"""

from datetime import UTC, datetime


def api_timestamp(value: datetime | None) -> str | None:
    """An aware datetime as the API writes it (None stays None); without building a DRF field per call."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
