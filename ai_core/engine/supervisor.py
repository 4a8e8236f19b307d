"""`make run`'s worker stays alive: when the worker process dies it is started again, after a backoff.

A worker can die of things no code of ours catches (kill -9, the OOM killer, a crash in a C library); without
this, one such death silently removes all execution from a `make run` installation.
"""

import logging
import signal
import subprocess
import threading
import time

from ai_core.engine.retry import RetryPolicy

logger = logging.getLogger(__name__)

# 1 s, 2 s, 4 s … up to a minute between restarts of a worker that keeps dying (half of each step is jitter).
RESTART_POLICY = RetryPolicy(base_seconds=1.0, factor=2.0, max_seconds=60.0)
# A worker that ran this long before it died was healthy: its next restart starts the backoff again.
STABLE_AFTER_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"exit code {returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            pass
    return f"exit code {returncode}"


class WorkerSupervisor:
    """Runs `argv` as a child process and restarts it whenever it exits, until `stop()`.

    The child gets its own process group, so a Ctrl-C in the terminal reaches only the supervising process,
    which then stops the worker itself (SIGTERM: Celery's warm shutdown) instead of racing to restart it.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        policy: RetryPolicy = RESTART_POLICY,
        stable_after_seconds: float = STABLE_AFTER_SECONDS,
    ) -> None:
        self.argv = argv
        self.policy = policy
        self.stable_after_seconds = stable_after_seconds
        self.process: subprocess.Popen | None = None
        self.quick_deaths = 0  # deaths in a row, each before the worker had run stably
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # stop() and a restart never interleave: no worker started after stop()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            self.process = subprocess.Popen(self.argv, process_group=0)
            self._started_at = time.monotonic()
            return True

    def _watch(self) -> None:
        while True:
            returncode = self.process.wait()
            if self._stopping.is_set():
                return
            ran_for = time.monotonic() - self._started_at
            self.quick_deaths = 1 if ran_for >= self.stable_after_seconds else self.quick_deaths + 1
            delay = self.policy.delay(self.quick_deaths)
            logger.error(
                "worker (pid %s) died with %s after %.1f s; restarting it in %.1f s (restart %d in a row)",
                self.process.pid,
                describe_exit(returncode),
                ran_for,
                delay,
                self.quick_deaths,
            )
            if self._stopping.wait(delay) or not self._spawn():
                return
            logger.info("worker restarted (pid %s)", self.process.pid)

    def stop(self) -> None:
        """Stop supervising, then stop the worker: SIGTERM, and SIGKILL past the grace period."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_GRACE_SECONDS)
