"""A small Server-Sent Events reader (the subset AI Core's streams use: id, event, data, comments)."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerEvent:
    event: str
    data: dict
    id: int | None = None


def parse_sse(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Turn a stream of text lines into events; comments (keep-alives) and `retry:` are skipped."""
    event, data, event_id = "message", [], None
    for line in lines:
        line = line.rstrip("\r\n")
        if line == "":
            if data:
                yield ServerEvent(event=event, data=json.loads("\n".join(data)), id=event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = int(value) if value.isdigit() else None
