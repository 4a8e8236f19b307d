"""Provider Batch APIs through the official SDKs: OpenAI (files + batches, JSONL with custom_id) and Anthropic
(Message Batches). Half price, answered within 24 h. Used by the batches app's routing; the request bodies
and the answers' parsing are the clients' own (chat_params / messages_params, whole_result / message_result),
so a batched job is asked and read exactly as a normal one."""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime

import anthropic
import openai

from ai_providers.clients.anthropic_client import AnthropicClient, message_result, messages_params
from ai_providers.clients.anthropic_client import map_error as anthropic_error
from ai_providers.clients.base import ChatRequest, ChatResult, PermanentProviderError, ProviderError
from ai_providers.clients.openai_client import OpenAIClient, chat_params
from ai_providers.clients.openai_client import map_error as openai_error
from kernel.netguard import AddressRefused

SUBMISSION_KEY = "aicore_submission"  # the metadata that finds a batch created by a worker that died before noting it


@dataclass(frozen=True)
class BatchLine:
    custom_id: str
    request: ChatRequest


@dataclass(frozen=True)
class BatchState:
    provider_status: str
    ended: bool  # no more answers will come (completed, failed, expired, cancelled)


@dataclass(frozen=True)
class BatchOutcome:
    """One request's end: a result, an error, or neither (expired or cancelled before it was answered)."""

    custom_id: str
    result: ChatResult | None = None
    error: ProviderError | None = None

    @property
    def unanswered(self) -> bool:
        return self.result is None and self.error is None


RequestOf = Callable[[str], ChatRequest | None]


class OpenAIBatchAPI:
    """Two steps, each recorded by the caller: upload the JSONL input file, then create the batch with the
    submission key in its metadata (find() looks for it first, so a retried step never creates a second)."""

    endpoint = "/v1/chat/completions"
    two_steps = True

    def __init__(self, client: OpenAIClient) -> None:
        self.client = client
        self.sdk = client._sdk
        self.name = client.name

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (openai.OpenAIError, AddressRefused) as exc:
            raise openai_error(exc, self.name) from None

    def upload(self, lines: list[BatchLine]) -> str:
        data = "".join(
            json.dumps(
                {
                    "custom_id": line.custom_id,
                    "method": "POST",
                    "url": self.endpoint,
                    "body": chat_params(replace(line.request, stream=False)),
                }
            )
            + "\n"
            for line in lines
        ).encode()
        return self._call(self.sdk.files.create, file=("aicore-batch.jsonl", data), purpose="batch").id

    def find(self, key: str, *, since: datetime | None = None, count: int = 0) -> str | None:
        page = self._call(self.sdk.batches.list, limit=100)
        for batch in page.data:
            if (batch.metadata or {}).get(SUBMISSION_KEY) == key:
                return batch.id
        return None

    def create(self, key: str, *, input_file_id: str, lines: list[BatchLine] | None = None) -> str:
        batch = self._call(
            self.sdk.batches.create,
            input_file_id=input_file_id,
            endpoint=self.endpoint,
            completion_window="24h",
            metadata={SUBMISSION_KEY: key},
        )
        return batch.id

    def poll(self, batch_id: str) -> BatchState:
        batch = self._call(self.sdk.batches.retrieve, batch_id)
        return BatchState(batch.status, batch.status in {"completed", "failed", "expired", "cancelled"})

    def outcomes(self, batch_id: str, request_of: RequestOf) -> Iterator[BatchOutcome]:
        batch = self._call(self.sdk.batches.retrieve, batch_id)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            text = self._call(self.sdk.files.content, file_id).text
            for raw in text.splitlines():
                if raw.strip():
                    yield self._outcome(json.loads(raw), request_of)

    def _outcome(self, item: dict, request_of: RequestOf) -> BatchOutcome:
        custom_id = str(item.get("custom_id") or "")
        response, error = item.get("response") or {}, item.get("error") or {}
        if response.get("status_code") == 200:
            request = request_of(custom_id)
            if request is None:
                return BatchOutcome(custom_id)
            body = response.get("body") or {}
            return BatchOutcome(custom_id, result=self.client.whole_result(request, body, request_id=None))
        if error.get("code") in {"batch_expired", "batch_cancelled"}:
            return BatchOutcome(custom_id)
        body = response.get("body") or {}
        message = (body.get("error") or {}).get("message") or error.get("message") or "the provider refused it"
        status = response.get("status_code")
        return BatchOutcome(
            custom_id, error=PermanentProviderError(f"{self.name} batch request: {message}", status_code=status)
        )

    def cancel(self, batch_id: str) -> None:
        self._call(self.sdk.batches.cancel, batch_id)


class AnthropicBatchAPI:
    """One step: the Message Batch carries its requests. The API has no metadata: find() relies on the caller
    creating one batch per account at a time (batches.routing) and recording when it began, so the batch
    created since then that no record knows, of the same size, is the one a dead worker created. Should there be
    several (the key used outside the hub), it refuses to choose: a guess could adopt another's batch."""

    two_steps = False

    def __init__(self, client: AnthropicClient) -> None:
        self.sdk = client._sdk
        self.name = client.name

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (anthropic.AnthropicError, AddressRefused) as exc:
            raise anthropic_error(exc, self.name) from None

    def find(self, key: str, *, since: datetime | None = None, count: int = 0, known: set[str] = frozenset()):
        if since is None:
            return None
        page = self._call(self.sdk.messages.batches.list, limit=100)
        found = [
            b.id
            for b in page.data
            if b.created_at >= since and b.id not in known and _anthropic_total(b.request_counts) == count
        ]
        if len(found) > 1:
            raise PermanentProviderError(
                f"{self.name}: {len(found)} unrecorded message batches of {count} requests were created since "
                f"{since.isoformat()}; which one this submission created cannot be told, none is adopted"
            )
        return found[0] if found else None

    def create(self, key: str, *, input_file_id: str = "", lines: list[BatchLine] | None = None) -> str:
        requests = []
        for line in lines or []:
            params = messages_params(line.request)
            requests.append({"custom_id": line.custom_id, "params": params})
        return self._call(self.sdk.messages.batches.create, requests=requests).id

    def poll(self, batch_id: str) -> BatchState:
        batch = self._call(self.sdk.messages.batches.retrieve, batch_id)
        return BatchState(batch.processing_status, batch.processing_status == "ended")

    def outcomes(self, batch_id: str, request_of: RequestOf) -> Iterator[BatchOutcome]:
        for item in self._call(self.sdk.messages.batches.results, batch_id):
            result = item.result
            if result.type == "succeeded":
                yield BatchOutcome(
                    item.custom_id, result=message_result(result.message.model_dump(mode="json"), request_id=None)
                )
            elif result.type == "errored":
                error = getattr(result.error, "error", None)
                message = getattr(error, "message", None) or "the provider refused it"
                yield BatchOutcome(
                    item.custom_id, error=PermanentProviderError(f"{self.name} batch request: {message}")
                )
            else:  # expired, canceled
                yield BatchOutcome(item.custom_id)

    def cancel(self, batch_id: str) -> None:
        self._call(self.sdk.messages.batches.cancel, batch_id)


def _anthropic_total(counts) -> int:
    return sum(getattr(counts, name, 0) or 0 for name in ("processing", "succeeded", "errored", "canceled", "expired"))


def batch_api_for(client) -> OpenAIBatchAPI | AnthropicBatchAPI | None:
    """The Batch API of a provider client, or None (echo and other providers have none)."""
    if isinstance(client, OpenAIClient):
        return OpenAIBatchAPI(client)
    if isinstance(client, AnthropicClient):
        return AnthropicBatchAPI(client)
    return None
