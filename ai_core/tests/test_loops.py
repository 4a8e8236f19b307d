"""ai_core.engine.loops: the one registry of a worker's background loops, and the periodic loop apps use."""

import threading

from ai_core.engine import loops
from ai_core.engine.upkeep import upkeep


def test_the_worker_runs_upkeep_and_the_loops_apps_register():
    import ai_core.engine.worker  # noqa: F401  (registers upkeep, as a worker process imports it)

    names = {loop.name for loop in loops.registered()}
    assert {"aicore-upkeep", "webhooks-sweep"} <= names
    assert upkeep in loops.registered()


def test_a_periodic_loop_runs_its_rounds_survives_a_failing_one_and_stops(monkeypatch, caplog):
    rounds = []
    third = threading.Event()

    def round_():
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("the database is away")
        if len(rounds) == 3:
            third.set()

    loop = loops.PeriodicLoop("test-loop", round_, every_seconds=lambda: 0.01)
    monkeypatch.setattr(loops, "_loops", {})
    loops.register_loop(loop)
    loops.start_loops("test-host")
    assert third.wait(10)
    loops.stop_loops()
    loop._thread.join(10)
    assert not loop._thread.is_alive()
    assert "test-loop round failed" in caplog.text
    assert rounds[:3] == [0, 1, 2]
