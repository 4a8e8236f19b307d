"""Structured logs: one JSON object per line, carrying the job's id, brand and attempt when known.

    with log_context(job_id="ai_job_…", brand=3, attempt=1):
        logger.info("calling provider")   # → {"message": "calling provider", "job_id": "ai_job_…", …}

The context lives in contextvars, so threads and asyncio tasks each keep their own. `extra={"job_id": …}`
on a single call works too. LOG_FORMAT=json (the default in production) or plain.
"""

import contextlib
import contextvars
import json
import logging
from datetime import UTC, datetime

CONTEXT_FIELDS = ("job_id", "brand", "attempt")
_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("aicore_log_context", default=None)


def _current() -> dict:
    return _context.get() or {}


def bind_log_context(**fields) -> contextvars.Token:
    """Add fields to the current context; give the token to `reset_log_context` when done."""
    return _context.set({**_current(), **{k: v for k, v in fields.items() if v is not None}})


def reset_log_context(token: contextvars.Token) -> None:
    _context.reset(token)


@contextlib.contextmanager
def log_context(**fields):
    token = bind_log_context(**fields)
    try:
        yield
    finally:
        reset_log_context(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_current())
        for field in CONTEXT_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ContextFilter(logging.Filter):
    """For the plain format: appends the job context to the message line."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = {**_current(), **{f: getattr(record, f) for f in CONTEXT_FIELDS if hasattr(record, f)}}
        record.context = " ".join(f"{k}={v}" for k, v in context.items())
        return True
