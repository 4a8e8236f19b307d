"""The offline `echo` provider: deterministic answers, zero price, controllable delay and failures."""

import asyncio
import hashlib
import math
import time

from ai_providers.clients.base import (
    CallAbandoned,
    ChatRequest,
    ChatResult,
    PermanentProviderError,
    ProgressCallback,
    StopCheck,
    TransientProviderError,
)


def echo_token_count(text: str) -> int:
    """Deterministic token estimate: one token per 4 characters, at least one for non-empty text."""
    return (len(text) + 3) // 4


class EchoClient:
    name = "echo"
    answers_rate_limits = False  # offline: no limits to learn from its answers

    def chat(self, request: ChatRequest, *, on_progress: ProgressCallback, should_stop: StopCheck) -> ChatResult:
        completion, chunks, delay = self._plan(request)
        size = -(-len(completion) // chunks)
        for index in range(chunks):
            _sleep_unless_stopped(delay / chunks, should_stop)
            self._chunk_done(request, completion, index, chunks, size, on_progress)
        return self._result(request, completion)

    async def achat(self, request: ChatRequest, *, on_progress: ProgressCallback, should_stop: StopCheck) -> ChatResult:
        """The same call as a coroutine (ai_core.engine.aio): its waits are the event loop's, so thousands of
        calls in flight cost no thread each; a cancel is the coroutine's own (the task is cancelled)."""
        completion, chunks, delay = self._plan(request)
        size = -(-len(completion) // chunks)
        for index in range(chunks):
            if delay:
                await asyncio.sleep(delay / chunks)
            if should_stop():
                raise CallAbandoned("echo: call abandoned")
            self._chunk_done(request, completion, index, chunks, size, on_progress)
        return self._result(request, completion)

    @staticmethod
    def _plan(request: ChatRequest) -> tuple[str, int, float]:
        """The requested failure raised, else (the completion, its chunks, the whole delay in seconds)."""
        options = request.options.get("echo") or {}
        fail = options.get("fail")
        # Without fail_times, every attempt fails (a transient failure then exhausts max_attempts).
        if fail and ("fail_times" not in options or request.attempt <= int(options["fail_times"])):
            if fail == "permanent":
                raise PermanentProviderError(
                    "echo: permanent failure requested", error_code="ECHO_PERMANENT", status_code=400
                )
            raise TransientProviderError(
                "echo: transient failure requested", error_code="ECHO_TRANSIENT", status_code=503
            )
        last_user = next((m.get("content", "") for m in reversed(request.messages) if m.get("role") == "user"), "")
        chunks = max(1, int(options.get("chunks", 1)))
        return f"Echo: {last_user}", chunks, max(0, int(options.get("delay_ms", 0))) / 1000

    @staticmethod
    def _chunk_done(request, completion: str, index: int, chunks: int, size: int, on_progress) -> None:
        on_progress(int((index + 1) * 100 / chunks))
        if request.on_token is not None and completion[index * size : (index + 1) * size]:
            request.on_token(completion[index * size : (index + 1) * size])

    @staticmethod
    def _result(request: ChatRequest, completion: str) -> ChatResult:
        prompt_text = "".join(str(m.get("content", "")) for m in request.messages)
        output_tokens = echo_token_count(completion)
        if request.max_tokens is not None:
            output_tokens = min(output_tokens, request.max_tokens)
        return ChatResult(
            completion=completion,
            finish_reason="stop",
            model=request.model,
            request_id=None,
            input_tokens=echo_token_count(prompt_text),
            output_tokens=output_tokens,
        )

    def embed(self, request: ChatRequest, *, should_stop: StopCheck) -> ChatResult:
        texts = list(request.options.get("input") or [])
        dimensions = int(request.options.get("dimensions") or ECHO_EMBEDDING_DIMENSIONS)
        return ChatResult(
            completion="",
            finish_reason="stop",
            model=request.model,
            request_id=None,
            input_tokens=sum(echo_token_count(t) for t in texts),
            output_tokens=0,
            extra={"embeddings": [echo_vector(t, dimensions) for t in texts]},
        )


def _sleep_unless_stopped(seconds: float, should_stop: StopCheck, slice_seconds: float = 0.2) -> None:
    # Slices short next to the 2 s a cancel may take, long enough that hundreds of sleeping calls cost no CPU.
    deadline = time.monotonic() + seconds
    while True:
        if should_stop():
            raise CallAbandoned("echo: call abandoned")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(slice_seconds, remaining))


ECHO_EMBEDDING_DIMENSIONS = 16


def echo_vector(text: str, dimensions: int = ECHO_EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector for `text` (from SHA-256 blocks): equal texts, equal vectors, offline."""
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        raw.extend((byte - 127.5) / 127.5 for byte in digest)
        block += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]
