"""A process-local memo with a time to live, for the small catalogues read on every job.

Job types, provider models and prices are read on every job creation and every job's end, and change a few
times a year. A memo keeps them for `ttl_setting` seconds (0 turns it off: the test default). A save or a
delete in this process clears it at once (post_save/post_delete receivers); other processes see the change
within the TTL. Cached values are shared between threads: treat them as read-only.
"""

import time
from collections.abc import Callable, Hashable
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save


class TTLMemo:
    def __init__(self, ttl_setting: str) -> None:
        self.ttl_setting = ttl_setting
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The value of `key`, from `load()` when absent or older than the TTL. Exceptions are not cached."""
        ttl = getattr(settings, self.ttl_setting)
        if not ttl:
            return load()
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        value = load()
        self._entries[key] = (now + ttl, value)
        return value

    def clear(self, **_signal_kwargs: Any) -> None:
        self._entries.clear()

    def clear_on_change(self, *models: type) -> None:
        """Clear the memo whenever a row of these models is saved or deleted in this process (call from ready())."""
        for model in models:
            uid = f"{self.ttl_setting}:{model._meta.label}"
            post_save.connect(self.clear, sender=model, dispatch_uid=f"{uid}:save")
            post_delete.connect(self.clear, sender=model, dispatch_uid=f"{uid}:delete")
