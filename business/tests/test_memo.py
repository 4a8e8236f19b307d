"""business.memo.TTLMemo: kept for its TTL, cleared by a change, and never keeps a value loaded while a clear
happened (a read that began before a change in another thread would otherwise be kept for a whole TTL)."""

from business import memo
from business.memo import TTLMemo


def test_a_value_is_kept_for_the_ttl_and_a_clear_during_its_load_keeps_nothing(settings, monkeypatch):
    settings.AICORE_TEST_MEMO_SECONDS = 5
    clock = [100.0]
    monkeypatch.setattr(memo.time, "monotonic", lambda: clock[0])
    kept = TTLMemo("AICORE_TEST_MEMO_SECONDS")
    loads = []

    def load(value):
        loads.append(value)
        return value

    assert kept.get("k", lambda: load("old")) == "old"
    assert kept.get("k", lambda: load("new")) == "old" and loads == ["old"]
    clock[0] += 6
    assert kept.get("k", lambda: load("new")) == "new"

    def load_during_a_change():
        kept.clear()  # what another thread's save does while this one reads
        return load("stale")

    kept.clear()
    assert kept.get("k", load_during_a_change) == "stale"
    assert kept.get("k", lambda: load("fresh")) == "fresh"  # the stale value was not kept
    assert kept.get("k", lambda: load("later")) == "fresh"
