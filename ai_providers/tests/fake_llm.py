"""A local fake LLM server speaking OpenAI's and Anthropic's wire formats over real HTTP (tests and benchmarks).

The real SDKs talk to it. What it does is scripted by a directive in the last user message, so a worker in
another process can be scripted too:  `[fake status=429 times=1 key=t1]`, `[fake hang]`, `[fake trickle=0.2]`,
`[fake chunks=5 delay=0.05]`, `[fake usage=1000,500]`, `[fake nousage]`, `[fake tool]`.

- status=N [times=K] [key=K]: answer HTTP N (the first K requests carrying that key, else forever).
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
"""

import itertools
import json
import re
import socket
import threading
import time
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
        messages = body.get("messages") or []
        last_user = next((str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        directive = _parse_directive(last_user)
        if "status" in directive and self.server.should_fail(directive):
            status = int(directive["status"])
            message = f"fake failure {status}"
            if anthropic:
                self._json(status, {"type": "error", "error": {"type": "api_error", "message": message}})
            else:
                self._json(status, {"error": {"message": message, "type": "fake_error", "code": None}})
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
        usage = (
            None
            if "nousage" in directive
            else {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": int(directive.get("cached", 0)), "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": int(directive.get("reasoning", 0))},
            }
        )
        headers = {"x-request-id": f"req_fake{number}"}
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
            self._json(
                200,
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text or None, "tool_calls": [tool_call]}
                            if tool_call
                            else {"role": "assistant", "content": text},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                },
                headers,
            )
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
        headers = {"request-id": f"req_fake{number}"}
        five_minutes, one_hour = int(directive.get("cache_write", 0)), int(directive.get("cache_write_1h", 0))
        cache = {
            "cache_read_input_tokens": int(directive.get("cached", 0)),
            "cache_creation_input_tokens": five_minutes + one_hour,
            "cache_creation": {"ephemeral_5m_input_tokens": five_minutes, "ephemeral_1h_input_tokens": one_hour},
        }
        if not body.get("stream"):
            self._json(
                200,
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": finish,
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt, "output_tokens": completion, **cache},
                },
                headers,
            )
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
        try:
            while not self.server.stopping.wait(every):
                self._send_chunk(make_event())
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address):
        super().__init__(address, _Handler)
        self.stopping = threading.Event()
        self.counter = itertools.count(1)
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.failures: dict[str, int] = {}

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


def port_is_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


if __name__ == "__main__":  # `python -m ai_providers.tests.fake_llm`: serve until Ctrl-C
    with FakeLLM() as fake:
        print(f"fake LLM on {fake.openai_base_url} (OpenAI) and {fake.base_url} (Anthropic)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
