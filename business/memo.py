"""A process-local memo with a time to live, for the small catalogues read on every job.

Job types, provider models and prices are read on every job creation and every job's end, and change a few
times a year. A memo keeps them for `ttl_setting` seconds (0 turns it off: the test default). A save or a
delete in this process clears it at once (post_save/post_delete receivers), and again when its transaction
commits (a read made in another thread before that commit saw the old rows); a value loaded while a clear
happened is not kept. Other processes see the change within the TTL. Cached values are shared between threads:
treat them as read-only.
"""

import time
from collections.abc import Callable, Hashable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save


class TTLMemo:
    def __init__(self, ttl_setting: str) -> None:
        self.ttl_setting = ttl_setting
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._clears = 0  # how many clears so far: a load that saw one begin or end under it is not kept

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The value of `key`, from `load()` when absent or older than the TTL. Exceptions are not cached."""
        ttl = getattr(settings, self.ttl_setting)
        if not ttl:
            return load()
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        clears = self._clears
        value = load()
        if clears == self._clears:
            self._entries[key] = (now + ttl, value)
        return value

    def clear(self, **_signal_kwargs: Any) -> None:
        self._clears += 1
        self._entries.clear()

    def _changed(self, *, using: str | None = None, **_signal_kwargs: Any) -> None:
        self.clear()
        transaction.on_commit(self.clear, using=using)  # outside a transaction: at once

    def clear_on_change(self, *models: type) -> None:
        """Clear the memo whenever a row of these models is saved or deleted in this process (call from ready())."""
        for model in models:
            uid = f"{self.ttl_setting}:{model._meta.label}"
            post_save.connect(self._changed, sender=model, dispatch_uid=f"{uid}:save")
            post_delete.connect(self._changed, sender=model, dispatch_uid=f"{uid}:delete")
