"""A local fake LLM server speaking OpenAI's and Anthropic's wire formats over real HTTP (tests and benchmarks).

The real SDKs talk to it. What it does is scripted by a directive in the last user message, so a worker in
another process can be scripted too:  `[fake status=429 times=1 key=t1]`, `[fake hang]`, `[fake trickle=0.2]`,
`[fake chunks=5 delay=0.05]`, `[fake usage=1000,500]`, `[fake nousage]`, `[fake tool]`.

- status=N [times=K] [key=K] [api=openai|anthropic] [retry_after=S]: answer HTTP N (the first K requests carrying
  that key, else forever; with api=, only in that wire format: a fallback to the other provider is answered),
  with a Retry-After of S seconds when given.
- hang: accept the request and never answer (until the server stops).
- trickle=S: stream one small chunk every S seconds, forever.
- chunks=N delay=S: stream the answer in N chunks, S seconds apart.
- usage=IN,OUT: report exactly these token counts; nousage: report none.
- cached=N reasoning=R (OpenAI): N of the prompt tokens were cache reads (`prompt_tokens_details.cached_tokens`,
  included in prompt_tokens as OpenAI does), R of the completion tokens were reasoning.
- cached=N cache_write=W cache_write_1h=H (Anthropic): `cache_read_input_tokens` N, `cache_creation_input_tokens`
  W + H split in `cache_creation` (5 minutes / 1 hour), all beside input_tokens (which excludes them, as
  Anthropic does).
- tool (OpenAI format, with `tools` in the request): call the first tool with {"q": <last user message>}.
Without usage=, tokens are counted as ceil(characters / 4) (prompt: all message contents; answer: the text),
and the answer is cut to max_tokens*4 characters (finish_reason "length") like a real model.
API key "bad-key" gets a 401. Python: `with FakeLLM() as server: server.openai_base_url`.

Rate-limit mode (`server.rate_limit(requests=20, per_seconds=5)`): chat calls beyond `requests` in a fixed
window of `per_seconds` are answered 429 with Retry-After / retry-after-ms, as OpenAI does; every answer carries
OpenAI's x-ratelimit-limit/remaining/reset-requests (Anthropic's anthropic-ratelimit-requests-* on /messages)
unless `state_headers=False`. `server.limiter` counts what was served and refused, per window, and the most
calls in flight at once.

Batch APIs, driven through the real SDKs: OpenAI's `/v1/files` (upload, retrieve, content) and `/v1/batches`
(create, retrieve, list, cancel; output and error files), Anthropic's `/v1/messages/batches` (create, retrieve,
list, results, cancel). A batch is answered at once (0 ms) unless `server.hold_batches` is set (it then stays
in progress until `release_batches()`). Directives in a line's last user message: `batch_error` (that request
fails), `batch_expire` (the batch expires; that request is left unanswered), `batch_fail` (OpenAI: the whole
batch fails validation, nothing is answered).
"""

import contextlib
import itertools
import json
import math
import re
import socket
import threading
import time
import uuid
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIRECTIVE = re.compile(r"\[fake ([^\]]*)\]")
PORT_RANGE = range(8200, 8300)


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _parse_directive(text: str) -> dict[str, str]:
    match = DIRECTIVE.search(text or "")
    if not match:
        return {}
    options: dict[str, str] = {}
    for word in match.group(1).split():
        key, _, value = word.partition("=")
        options[key] = value or "1"
    options.setdefault("key", match.group(0))
    return options


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: with Nagle's algorithm the body waits for the client's delayed
    # ACK (40 ms on Linux), which would make a 0 ms fake answer in 40 ms.
    disable_nagle_algorithm = True
    server: "_Server"
    rate_headers: dict[str, str] = {}  # rate-limit mode: the headers of this request's answer

    def log_message(self, format, *args):  # quiet
        pass

    # --- plumbing ------------------------------------------------------------------------------------------
    def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, headers: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _read_body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _hang(self) -> None:
        self.server.stopping.wait(60)
        self.close_connection = True

    # --- routing -------------------------------------------------------------------------------------------
    def do_GET(self):
        if "/files" in self.path or "/batches" in self.path:
            if not self._unauthorized(anthropic="/messages/" in self.path):
                with self.server.lock:
                    self._batch_api("GET", None)
            return
        if self.path.rstrip("/").endswith("/models"):
            if self._unauthorized():
                return
            models = ["gpt-4o-mini", "gpt-4o", "o3-mini", "claude-sonnet-4-5"]
            if "x-api-key" in self.headers:
                self._json(
                    200,
                    {
                        "data": [
                            {
                                "type": "model",
                                "id": m,
                                "display_name": m,
                                "created_at": "2025-01-01T00:00:00Z",
                            }
                            for m in models
                        ],
                        "has_more": False,
                        "first_id": models[0],
                        "last_id": models[-1],
                    },
                )
            else:
                self._json(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in models],
                    },
                )
            return
        self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self):
        if "/files" in self.path or "/batches" in self.path:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self._unauthorized(anthropic="/messages/" in self.path):
                with self.server.lock:
                    self._batch_api("POST", raw)
            return
        body = self._read_body()
        anthropic = self.path.rstrip("/").endswith("/messages")
        if self.path.rstrip("/").endswith("/embeddings"):
            self.server.record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if not self._unauthorized():
                self._embeddings(body)
            return
        self.server.record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        if self._unauthorized(anthropic=anthropic):
            return
        limiter = self.server.limiter
        if limiter is None:
            self.rate_headers = {}  # a kept-alive connection's handler must not repeat a former limiter's headers
            self._chat(body, anthropic)
            return
        admitted, self.rate_headers = limiter.admit(anthropic=anthropic)
        if not admitted:
            error = {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}
            self._json(429, {"type": "error", "error": error} if anthropic else {"error": error}, self.rate_headers)
            return
        with limiter.calling():
            self._chat(body, anthropic)

    def _chat(self, body: dict, anthropic: bool) -> None:
        messages = body.get("messages") or []
        last_user = next((str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        directive = _parse_directive(last_user)
        wire = "anthropic" if anthropic else "openai"
        if "status" in directive and directive.get("api", wire) == wire and self.server.should_fail(directive):
            status = int(directive["status"])
            message = f"fake failure {status}"
            headers = {"retry-after": directive["retry_after"]} if "retry_after" in directive else {}
            if anthropic:
                self._json(status, {"type": "error", "error": {"type": "api_error", "message": message}}, headers)
            else:
                self._json(status, {"error": {"message": message, "type": "fake_error", "code": None}}, headers)
            return
        if "hang" in directive:
            self._hang()
            return
        if anthropic:
            self._anthropic(body, messages, last_user, directive)
        else:
            self._openai(body, messages, last_user, directive)

    def _unauthorized(self, anthropic: bool = False) -> bool:
        key = self.headers.get("x-api-key") or self.headers.get("Authorization", "").removeprefix("Bearer ")
        if key and key != "bad-key":
            return False
        message = "Incorrect API key provided"
        if anthropic:
            self._json(401, {"type": "error", "error": {"type": "authentication_error", "message": message}})
        else:
            self._json(
                401,
                {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}},
            )
        return True

    # --- answers -------------------------------------------------------------------------------------------
    def _answer(self, body: dict, messages: list, last_user: str, directive: dict, max_tokens: int | None):
        fmt = (body.get("response_format") or {}).get("type")
        text = json.dumps({"answer": last_user}) if fmt in {"json_object", "json_schema"} else f"Fake: {last_user}"
        finish = "stop"
        if max_tokens is not None and _tokens(text) > max_tokens:
            text, finish = text[: max_tokens * 4], "length"
        if "usage" in directive and "," in directive["usage"]:
            prompt, completion = (int(x) for x in directive["usage"].split(","))
        else:
            prompt_text = "".join(str(m.get("content") or "") for m in messages) + str(body.get("system") or "")
            prompt, completion = _tokens(prompt_text), _tokens(text)
        return text, finish, prompt, completion

    def _pieces(self, text: str, directive: dict) -> list[str]:
        count = max(1, int(directive.get("chunks", 3)))
        size = max(1, -(-len(text) // count))
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]

    def _openai(self, body, messages, last_user, directive):
        number = next(self.server.counter)
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        text, finish, prompt, completion = self._answer(body, messages, last_user, directive, max_tokens)
        model, created, rid = body.get("model", "fake"), int(time.time()), f"chatcmpl-fake{number}"
        usage = _openai_usage(prompt, completion, directive)
        headers = {"x-request-id": f"req_fake{number}", **self.rate_headers}
        tool_call = None
        if "tool" in directive and body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            arguments = json.dumps({"q": last_user})
            tool_call = {
                "id": f"call_fake{number}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            text, finish = "", "tool_calls"
        if not body.get("stream"):
            self._json(200, _openai_completion(rid, created, model, text, finish, usage, tool_call), headers)
            return

        def event(choices, usage_value=None):
            data = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            if usage_value is not None:
                data["usage"] = usage_value
            return f"data: {json.dumps(data)}\n\n"

        self._start_stream(headers)
        try:
            if "trickle" in directive:
                self._trickle(
                    lambda: event([{"index": 0, "delta": {"content": "."}, "finish_reason": None}]),
                    float(directive["trickle"]),
                )
                return
            delay = float(directive.get("delay", 0))
            self._send_chunk(
                event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            )
            for piece in self._pieces(text, directive) if tool_call is None else []:
                if delay:
                    time.sleep(delay)
                self._send_chunk(event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
            if tool_call is not None:
                delta = {"tool_calls": [{"index": 0, **tool_call}]}
                self._send_chunk(event([{"index": 0, "delta": delta, "finish_reason": None}]))
            self._send_chunk(event([{"index": 0, "delta": {}, "finish_reason": finish}]))
            include_usage = (body.get("stream_options") or {}).get("include_usage")
            if include_usage and usage is not None:
                self._send_chunk(event([], usage))
            self._send_chunk("data: [DONE]\n\n")
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _embeddings(self, body):
        """OpenAI's embeddings: a deterministic vector per input (its length: `dimensions`, else 8)."""
        texts = [body["input"]] if isinstance(body.get("input"), str) else list(body.get("input") or [])
        size = int(body.get("dimensions") or 8)
        data = [
            {"object": "embedding", "index": i, "embedding": [round((len(t) + k) / 100, 4) for k in range(size)]}
            for i, t in enumerate(texts)
        ]
        tokens = sum(_tokens(t) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._json(200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage})

    def _anthropic(self, body, messages, last_user, directive):
        number = next(self.server.counter)
        text, finish, prompt, completion = self._answer(body, messages, last_user, directive, body.get("max_tokens"))
        finish = "max_tokens" if finish == "length" else "end_turn"
        model, mid = body.get("model", "fake"), f"msg_fake{number}"
        headers = {"request-id": f"req_fake{number}", **self.rate_headers}
        cache = _anthropic_cache(directive)
        if not body.get("stream"):
            self._json(200, _anthropic_message(mid, model, text, finish, prompt, completion, cache), headers)
            return

        def event(name, data):
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        self._start_stream(headers)
        try:
            self._send_chunk(
                event(
                    "message_start",
                    {
                        "message": {
                            "id": mid,
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": {"input_tokens": prompt, "output_tokens": 1, **cache},
                        }
                    },
                )
            )
            self._send_chunk(event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
            if "trickle" in directive:
                self._trickle(
                    lambda: event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "."}}),
                    float(directive["trickle"]),
                )
                return
            delay = float(directive.get("delay", 0))
            for piece in self._pieces(text, directive):
                if delay:
                    time.sleep(delay)
                self._send_chunk(
                    event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
                )
            self._send_chunk(event("content_block_stop", {"index": 0}))
            self._send_chunk(
                event(
                    "message_delta",
                    {
                        "delta": {"stop_reason": finish, "stop_sequence": None},
                        "usage": {"output_tokens": completion},
                    },
                )
            )
            self._send_chunk(event("message_stop", {}))
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _trickle(self, make_event, every: float) -> None:
        with self.server.lock:
            self.server.trickling += 1
        try:
            while not self.server.stopping.wait(every):
                self._send_chunk(make_event())
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with self.server.lock:
                self.server.trickling -= 1
        self.close_connection = True

    # --- Batch APIs ----------------------------------------------------------------------------------------
    def _batch_api(self, method: str, raw: bytes | None) -> None:
        path = self.path.split("?")[0].rstrip("/")
        parts = path.split("/")
        server = self.server
        self.server.record(self.path, {k.lower(): v for k, v in self.headers.items()}, {"batch_api": method})
        if "/messages/batches" in path:
            self._anthropic_batches(method, parts, raw)
            return
        if path.endswith("/files") and method == "POST":
            fields = _multipart(self.headers.get("Content-Type", ""), raw or b"")
            file_id = server.add_file(fields.get("file", b""), purpose=(fields.get("purpose") or b"").decode())
            self._json(200, server.files[file_id]["meta"])
        elif "/files/" in path and path.endswith("/content"):
            stored = server.files.get(parts[-2])
            if stored is None:
                return self._json(404, {"error": {"message": "no such file", "type": "invalid_request_error"}})
            data = stored["data"]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif "/files/" in path:
            stored = server.files.get(parts[-1])
            self._json(200, stored["meta"]) if stored else self._json(404, {"error": {"message": "no such file"}})
        elif path.endswith("/batches") and method == "POST":
            body = json.loads(raw or b"{}")
            stored = server.files.get(body.get("input_file_id"))
            if stored is None:
                return self._json(400, {"error": {"message": "input file not found", "type": "invalid_request_error"}})
            self._json(200, server.openai_batch_create(body, stored["data"]))
        elif path.endswith("/batches"):
            batches = sorted(server.openai_batches.values(), key=lambda b: -b["created_at"])
            self._json(200, {"object": "list", "data": batches, "has_more": False})
        elif path.endswith("/cancel"):
            self._json(200, server.openai_batch_cancel(parts[-2]))
        else:
            batch = server.openai_batches.get(parts[-1])
            if batch is None:
                return self._json(404, {"error": {"message": "no such batch", "type": "invalid_request_error"}})
            self._json(200, server.openai_batch_view(parts[-1]))

    def _anthropic_batches(self, method: str, parts: list[str], raw: bytes | None) -> None:
        server = self.server
        if parts[-1] == "batches" and method == "POST":
            body = json.loads(raw or b"{}")
            self._json(200, server.anthropic_batch_create(body.get("requests") or [], self._base()))
        elif parts[-1] == "batches":
            batches = sorted(server.anthropic_batches.values(), key=lambda b: b["created_at"], reverse=True)
            views = [server.anthropic_batch_view(b["id"]) for b in batches]
            self._json(200, {"data": views, "has_more": False, "first_id": None, "last_id": None})
        elif parts[-1] == "cancel":
            self._json(200, server.anthropic_batch_cancel(parts[-2]))
        elif parts[-1] == "results":
            lines = server.anthropic_results(parts[-2])
            data = "".join(json.dumps(line) + "\n" for line in lines).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/binary")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif parts[-1] in server.anthropic_batches:
            self._json(200, server.anthropic_batch_view(parts[-1]))
        else:
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "no such batch"}})

    def _base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


def _multipart(content_type: str, raw: bytes) -> dict[str, bytes]:
    message = BytesParser(policy=email_policy).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


def _openai_usage(prompt: int, completion: int, directive: dict) -> dict | None:
    if "nousage" in directive:
        return None
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(directive.get("cached", 0)), "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": int(directive.get("reasoning", 0))},
    }


def _openai_completion(rid, created, model, text, finish, usage, tool_call=None) -> dict:
    message = {"role": "assistant", "content": text}
    if tool_call:
        message = {"role": "assistant", "content": text or None, "tool_calls": [tool_call]}
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def _anthropic_cache(directive: dict) -> dict:
    five_minutes, one_hour = int(directive.get("cache_write", 0)), int(directive.get("cache_write_1h", 0))
    return {
        "cache_read_input_tokens": int(directive.get("cached", 0)),
        "cache_creation_input_tokens": five_minutes + one_hour,
        "cache_creation": {"ephemeral_5m_input_tokens": five_minutes, "ephemeral_1h_input_tokens": one_hour},
    }


def _anthropic_message(mid, model, text, finish, prompt, completion, cache) -> dict:
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": finish,
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion, **cache},
    }


def _last_user(body: dict) -> tuple[list, str, dict]:
    messages = body.get("messages") or []
    last_user = next((str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    return messages, last_user, _parse_directive(last_user)


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


class _BatchStore:
    """What the fake Batch APIs hold: files, OpenAI batches, Anthropic message batches (under the server lock)."""

    def __init__(self) -> None:
        self.files: dict[str, dict] = {}
        self.openai_batches: dict[str, dict] = {}
        self.openai_work: dict[str, list] = {}
        self.anthropic_batches: dict[str, dict] = {}
        self.anthropic_work: dict[str, list] = {}
        self.hold_batches = False
        self.batches_created = 0

    def add_file(self, data: bytes, *, purpose: str) -> str:
        file_id = "file-" + uuid.uuid4().hex[:24]
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl",
            "purpose": purpose or "batch_output",
            "status": "processed",
        }
        self.files[file_id] = {"meta": meta, "data": data}
        return file_id

    # OpenAI
    def openai_batch_create(self, body: dict, data: bytes) -> dict:
        batch_id = "batch_" + uuid.uuid4().hex[:24]
        now = time.time()
        lines = [json.loads(line) for line in data.splitlines() if line.strip()]
        self.openai_batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": body.get("input_file_id"),
            "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress",
            "created_at": int(now),
            "in_progress_at": int(now),
            "expires_at": int(now) + 86400,
            "metadata": body.get("metadata"),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
        }
        self.openai_work[batch_id] = lines
        self.batches_created += 1
        if not self.hold_batches:
            self._openai_finish(batch_id)
        return self.openai_batch_view(batch_id)

    def openai_batch_view(self, batch_id: str) -> dict:
        if not self.hold_batches and self.openai_batches[batch_id]["status"] == "in_progress":
            self._openai_finish(batch_id)
        return dict(self.openai_batches[batch_id])

    def openai_batch_cancel(self, batch_id: str) -> dict:
        batch = self.openai_batches[batch_id]
        if batch["status"] in {"in_progress", "validating"}:
            self._openai_finish(batch_id, cancelled=True)
        return dict(batch)

    def _openai_finish(self, batch_id: str, cancelled: bool = False) -> None:
        batch, lines = self.openai_batches[batch_id], self.openai_work.pop(batch_id, [])
        if any("batch_fail" in _last_user(line.get("body") or {})[2] for line in lines):
            batch.update(status="failed", failed_at=int(time.time()))
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": "fake failure"}]}
            return
        expire = any("batch_expire" in _last_user(line.get("body") or {})[2] for line in lines)
        outputs, errors = [], []
        for number, line in enumerate(lines):
            body = line.get("body") or {}
            messages, last_user, directive = _last_user(body)
            item = {"id": f"batch_req_{batch_id}_{number}", "custom_id": line.get("custom_id")}
            if cancelled or "batch_expire" in directive:
                code = "batch_cancelled" if cancelled else "batch_expired"
                errors.append({**item, "response": None, "error": {"code": code, "message": f"fake {code}"}})
            elif "batch_error" in directive:
                fail = {"error": {"message": "fake batch request failure", "type": "invalid_request_error"}}
                errors.append(
                    {**item, "response": {"status_code": 400, "request_id": "req_x", "body": fail}, "error": None}
                )
            else:
                max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
                text, finish, prompt, completion = _Handler._answer(
                    None, body, messages, last_user, directive, max_tokens
                )
                usage = _openai_usage(prompt, completion, directive)
                completion_body = _openai_completion(
                    f"chatcmpl-{batch_id}-{number}", int(time.time()), body.get("model", "fake"), text, finish, usage
                )
                response = {"status_code": 200, "request_id": f"req_{number}", "body": completion_body}
                outputs.append({**item, "response": response, "error": None})
        now = int(time.time())
        status = "cancelled" if cancelled else "expired" if expire else "completed"
        batch.update(status=status, **{f"{status}_at": now})
        batch["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}
        if outputs:
            batch["output_file_id"] = self.add_file(
                "".join(json.dumps(o) + "\n" for o in outputs).encode(), purpose="batch_output"
            )
        if errors:
            batch["error_file_id"] = self.add_file(
                "".join(json.dumps(e) + "\n" for e in errors).encode(), purpose="batch_output"
            )

    # Anthropic
    def anthropic_batch_create(self, requests: list, base: str) -> dict:
        batch_id = "msgbatch_" + uuid.uuid4().hex[:24]
        now = time.time()
        self.anthropic_batches[batch_id] = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "in_progress",
            "created_at": now,
            "expires_at": now + 86400,
            "ended_at": None,
            "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": None,
            "base": base,
            "results": [],
            "count": len(requests),
        }
        self.anthropic_work[batch_id] = requests
        self.batches_created += 1
        if not self.hold_batches:
            self._anthropic_finish(batch_id)
        return self.anthropic_batch_view(batch_id)

    def anthropic_batch_view(self, batch_id: str) -> dict:
        batch = self.anthropic_batches[batch_id]
        if not self.hold_batches and batch["processing_status"] == "in_progress":
            self._anthropic_finish(batch_id)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch["processing_status"] != "ended":
            counts["processing"] = batch["count"]
        for line in batch["results"]:
            counts[line["result"]["type"]] += 1
        view = {k: v for k, v in batch.items() if k not in {"base", "results", "count"}}
        for key in ("created_at", "expires_at", "ended_at", "cancel_initiated_at"):
            if view[key] is not None:
                view[key] = _iso(view[key])
        return {**view, "request_counts": counts}

    def anthropic_batch_cancel(self, batch_id: str) -> dict:
        batch = self.anthropic_batches[batch_id]
        if batch["processing_status"] == "in_progress":
            batch["cancel_initiated_at"] = time.time()
            self._anthropic_finish(batch_id, cancelled=True)
        return self.anthropic_batch_view(batch_id)

    def anthropic_results(self, batch_id: str) -> list:
        return self.anthropic_batches[batch_id]["results"]

    def _anthropic_finish(self, batch_id: str, cancelled: bool = False) -> None:
        batch, requests = self.anthropic_batches[batch_id], self.anthropic_work.pop(batch_id, [])
        for number, request in enumerate(requests):
            params = request.get("params") or {}
            messages, last_user, directive = _last_user(params)
            if cancelled:
                result = {"type": "canceled"}
            elif "batch_expire" in directive:
                result = {"type": "expired"}
            elif "batch_error" in directive:
                error = {"type": "invalid_request_error", "message": "fake batch request failure"}
                result = {"type": "errored", "error": {"type": "error", "error": error}}
            else:
                text, finish, prompt, completion = _Handler._answer(
                    None, params, messages, last_user, directive, params.get("max_tokens")
                )
                finish = "max_tokens" if finish == "length" else "end_turn"
                message = _anthropic_message(
                    f"msg_{batch_id}_{number}",
                    params.get("model", "fake"),
                    text,
                    finish,
                    prompt,
                    completion,
                    _anthropic_cache(directive),
                )
                result = {"type": "succeeded", "message": message}
            batch["results"].append({"custom_id": request.get("custom_id"), "result": result})
        batch["processing_status"] = "ended"
        batch["ended_at"] = time.time()
        batch["results_url"] = f"{batch['base']}/v1/messages/batches/{batch_id}/results"


class RateLimit:
    """A provider's request limit: `requests` per fixed window of `per_seconds`, 429 with Retry-After beyond."""

    def __init__(self, requests: int, per_seconds: float, *, state_headers: bool = True) -> None:
        self.requests, self.per_seconds, self.state_headers = requests, per_seconds, state_headers
        self.lock = threading.Lock()
        self.window, self.count = -1, 0
        self.served, self.refused = 0, 0
        self.per_window: dict[int, int] = {}
        self.in_flight, self.most_in_flight = 0, 0

    def admit(self, *, anthropic: bool = False) -> tuple[bool, dict[str, str]]:
        with self.lock:
            now = time.monotonic()
            window = int(now // self.per_seconds)
            if window != self.window:
                self.window, self.count = window, 0
            reset = (window + 1) * self.per_seconds - now
            admitted = self.count < self.requests
            if admitted:
                self.count += 1
                self.served += 1
                self.per_window[window] = self.count
            else:
                self.refused += 1
            headers = self._state(self.requests - self.count, reset, anthropic) if self.state_headers else {}
        if not admitted:
            headers.update({"retry-after": str(math.ceil(reset)), "retry-after-ms": str(int(reset * 1000) + 1)})
        return admitted, headers

    def _state(self, remaining: int, reset: float, anthropic: bool) -> dict[str, str]:
        per_minute = str(int(self.requests * 60 / self.per_seconds))
        if anthropic:
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + reset + 1))
            return {
                "anthropic-ratelimit-requests-limit": per_minute,
                "anthropic-ratelimit-requests-remaining": str(remaining),
                "anthropic-ratelimit-requests-reset": at,
            }
        return {
            "x-ratelimit-limit-requests": per_minute,
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{int(reset * 1000) + 1}ms",
        }

    @contextlib.contextmanager
    def calling(self):
        """Count the call in flight while it is answered."""
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1


class _Server(_BatchStore, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog: socketserver's 5 resets (or delays by a SYN retransmit, 1 s) the connections beyond it
    # that arrive at once, as an asyncio worker's batch of calls does; a provider accepts them all.
    request_queue_size = 1024

    def __init__(self, address):
        ThreadingHTTPServer.__init__(self, address, _Handler)
        _BatchStore.__init__(self)
        self.stopping = threading.Event()
        self.counter = itertools.count(1)
        self.lock = threading.RLock()  # re-entered by the batch store's methods
        self.requests: list[dict] = []
        self.failures: dict[str, int] = {}
        self.connections = 0  # TCP connections accepted: a client keeping its connections alive opens few
        self.limiter: RateLimit | None = None
        self.trickling = 0  # trickle streams still open: one ends when its client closes it (a cancel)

    def process_request(self, request, client_address):
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        # A client closing a kept-alive connection (a worker stopping) is normal here, not worth a traceback.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def record(self, path: str, headers: dict, body: dict) -> None:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            del self.requests[:-200]  # bounded: benchmarks send thousands

    def should_fail(self, directive: dict) -> bool:
        if "times" not in directive:
            return True
        with self.lock:
            seen = self.failures.get(directive["key"], 0)
            self.failures[directive["key"]] = seen + 1
        return seen < int(directive["times"])


class FakeLLM:
    """Start on the first free port of 8200-8299 (this project's range), serve on a daemon thread."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.server: _Server | None = None

    def start(self) -> "FakeLLM":
        for port in PORT_RANGE:
            try:
                self.server = _Server((self.host, port))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free port in 8200-8299 for the fake LLM server")
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stopping.set()
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> "FakeLLM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def requests(self) -> list[dict]:
        return self.server.requests

    @property
    def connections(self) -> int:
        return self.server.connections

    @property
    def trickling(self) -> int:
        """Trickle streams still open (a client that closes one is seen at the next chunk it would get)."""
        return self.server.trickling

    def rate_limit(self, *, requests: int, per_seconds: float, state_headers: bool = True) -> RateLimit:
        """Serve at most `requests` chat calls per `per_seconds` from now on (see the module's docstring)."""
        self.server.limiter = RateLimit(requests, per_seconds, state_headers=state_headers)
        return self.server.limiter

    def release_batches(self) -> None:
        """Answer every batch held in progress (hold_batches), then stop holding."""
        with self.server.lock:
            self.server.hold_batches = False
            for batch_id in list(self.server.openai_work):
                self.server._openai_finish(batch_id)
            for batch_id in list(self.server.anthropic_work):
                self.server._anthropic_finish(batch_id)


def port_is_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


if __name__ == "__main__":  # `python -m testing.fake_llm`: serve until Ctrl-C
    with FakeLLM() as fake:
        print(f"fake LLM on {fake.openai_base_url} (OpenAI) and {fake.base_url} (Anthropic)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
