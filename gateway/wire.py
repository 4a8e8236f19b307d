"""OpenAI's chat completion wire format: the request body → a job's input_data, a finished job → the response.

Validated here: what our job schema cannot say in OpenAI's words (types of the OpenAI parameters, n = 1). The
job type's JSON Schema and the catalogue then check the rest, as for any job.
"""

import time
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError

# Passed on to the job (and so to the provider) as given; each is checked for its JSON type here.
_PARAMS: dict[str, tuple[type, ...]] = {
    "temperature": (int, float),
    "top_p": (int, float),
    "max_tokens": (int,),
    "max_completion_tokens": (int,),
    "tools": (list,),
    "tool_choice": (str, dict),
    "response_format": (dict,),
    "stop": (str, list),
    "reasoning_effort": (str,),
}
_RESPONSE_FORMATS = {"text", "json_object", "json_schema"}


@dataclass
class ChatCall:
    """What one /v1/chat/completions request asks for."""

    model: str
    input_data: dict[str, Any]
    stream: bool
    include_usage: bool
    user: str
    metadata: dict[str, str]


def _invalid(message: str, param: str, code: str = "invalid_parameter") -> GatewayError:
    return GatewayError(message, status=400, code=code, param=param)


def _text_of(content: Any, where: str) -> str:
    """Message content as text: a string, null (an assistant message with tool calls), or text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text") or "") for p in content)
    raise _invalid("Only text content is supported (a string or text parts)", where)


def _message(raw: Any, index: int) -> dict[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
        raise _invalid("Each message must be an object with a role", where)
    message = {"role": raw["role"], "content": _text_of(raw.get("content"), f"{where}.content")}
    for key in ("name", "tool_call_id", "tool_calls"):
        if raw.get(key) is not None:
            message[key] = raw[key]
    return message


def chat_call_parse(body: Any) -> ChatCall:
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object", "body", code="invalid_request")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model is required", "model", code="missing_required_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages must be a non-empty array", "messages", code="missing_required_parameter")
    if body.get("n") not in (None, 1):
        raise _invalid("Only n = 1 is supported", "n")
    input_data: dict[str, Any] = {"messages": [_message(m, i) for i, m in enumerate(messages)], "model": model}
    for name, types in _PARAMS.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise _invalid(f"{name} has the wrong type", name)
        input_data[name] = value
    fmt = input_data.get("response_format")
    if fmt is not None and fmt.get("type") not in _RESPONSE_FORMATS:
        raise _invalid(f"response_format.type must be one of {', '.join(sorted(_RESPONSE_FORMATS))}", "response_format")
    if fmt is not None and fmt.get("type") == "text":
        del input_data["response_format"]
    stream = body.get("stream", False)
    options = body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise _invalid("stream must be a boolean and stream_options an object", "stream")
    user, metadata = body.get("user") or "", body.get("metadata") or {}
    if not isinstance(user, str) or not isinstance(metadata, dict):
        raise _invalid("user must be a string and metadata an object", "metadata")
    return ChatCall(
        model=model,
        input_data=input_data,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        user=user[:200],
        metadata={str(k)[:64]: str(v)[:512] for k, v in list(metadata.items())[:16]},
    )


def completion_id(job_id: str) -> str:
    return f"chatcmpl-{job_id}"


def usage_body(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def completion_body(*, job_id: str, model: str, created: int, result: dict, usage: dict | None) -> dict:
    tool_calls = result.get("tool_calls") or None
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.get("completion") or ("" if not tool_calls else None),
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": completion_id(job_id),
        "object": "chat.completion",
        "created": created,
        "model": result.get("model") or model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(result, tool_calls)}],
        "usage": usage,
    }


def _finish_reason(result: dict, tool_calls) -> str:
    reason = result.get("finish_reason") or "stop"
    # Anthropic's words, in OpenAI's.
    reason = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls", "stop_sequence": "stop"}.get(
        reason, reason
    )
    return "tool_calls" if tool_calls and reason == "stop" else reason


class ChunkWriter:
    """The SSE chunks of one streamed completion (`chat.completion.chunk` objects, then `[DONE]`)."""

    def __init__(self, *, job_id: str, model: str, include_usage: bool):
        self.base = {"id": completion_id(job_id), "object": "chat.completion.chunk", "created": int(time.time())}
        self.model, self.include_usage = model, include_usage

    def _event(self, choices: list, usage: dict | None = None) -> bytes:
        import json

        data = {**self.base, "model": self.model, "choices": choices}
        if self.include_usage:
            data["usage"] = usage
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    def delta(self, delta: dict) -> bytes:
        return self._event([{"index": 0, "delta": delta, "finish_reason": None}])

    def end(self, *, result: dict, usage: dict | None) -> list[bytes]:
        tool_calls = result.get("tool_calls") or None
        self.model = result.get("model") or self.model
        out = []
        if tool_calls:
            out.append(self.delta({"tool_calls": [{"index": i, **call} for i, call in enumerate(tool_calls)]}))
        out.append(self._event([{"index": 0, "delta": {}, "finish_reason": _finish_reason(result, tool_calls)}]))
        if self.include_usage:
            out.append(self._event([], usage))
        out.append(b"data: [DONE]\n\n")
        return out

    @staticmethod
    def error(exc: GatewayError) -> bytes:
        import json

        return f"data: {json.dumps(exc.body())}\n\n".encode()


@dataclass
class EmbeddingCall:
    model: str
    input_data: dict[str, Any]
    base64: bool


def embedding_call_parse(body: Any) -> EmbeddingCall:
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object", "body", code="invalid_request")
    model, texts = body.get("model"), body.get("input")
    if not isinstance(model, str) or not model:
        raise _invalid("model is required", "model", code="missing_required_parameter")
    if isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts):
        pass
    elif not isinstance(texts, str):
        raise _invalid("input must be a string or an array of strings (token arrays are not supported)", "input")
    input_data: dict[str, Any] = {"input": texts, "model": model}
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int):
            raise _invalid("dimensions must be an integer", "dimensions")
        input_data["dimensions"] = dimensions
    encoding = body.get("encoding_format") or "float"
    if encoding not in {"float", "base64"}:
        raise _invalid("encoding_format must be float or base64", "encoding_format")
    return EmbeddingCall(model=model, input_data=input_data, base64=encoding == "base64")


def embeddings_body(*, call: EmbeddingCall, result: dict, input_tokens: int) -> dict:
    import base64
    import struct

    def encoded(vector: list[float]):
        # OpenAI's base64: the little-endian float32 array (what the SDKs ask for by default, then decode).
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if call.base64 else vector

    data = [
        {"object": "embedding", "index": i, "embedding": encoded(vector)}
        for i, vector in enumerate(result.get("embeddings") or [])
    ]
    return {
        "object": "list",
        "data": data,
        "model": result.get("model") or call.model,
        "usage": {"prompt_tokens": input_tokens, "total_tokens": input_tokens},
    }
