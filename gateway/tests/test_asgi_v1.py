"""config.asgi serves /v1/ in one hop to a kept thread, through the undocumented methods of Django's ASGIHandler
(docs/PERFORMANCE.md, private framework APIs), behind the gateway's own middleware (GatewayChain: MIDDLEWARE
without a browser session's). Pinned here: those methods are still there with the signatures used, a /v1/ answer
through our path is byte for byte the stock handler's (status, headers, body), and the guards the gateway keeps
(database unavailable, body size, security headers) still answer."""

import asyncio
import inspect
import json
import os
import subprocess
import sys

import pytest
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import OperationalError

from business.services import api_key_create
from config.asgi import ApplicationHandler

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_the_asgi_handler_methods_the_v1_path_relies_on_are_there():
    expected = {
        "read_body": ["self", "receive"],
        "create_request": ["self", "scope", "body_file"],
        "send_response": ["self", "response", "send"],
        "listen_for_disconnect": ["self", "receive"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(ASGIHandler, name)).parameters) == parameters, name
    assert inspect.iscoroutinefunction(ASGIHandler.read_body)
    assert inspect.iscoroutinefunction(ASGIHandler.send_response)
    assert not inspect.iscoroutinefunction(ASGIHandler.create_request)


def test_the_api_process_imports_the_provider_sdks_before_its_first_request():
    probe = (
        "import sys; import config.asgi; "
        "print(all(m in sys.modules for m in ('openai', 'anthropic', 'ai_providers.clients.openai_client')))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    found = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert found.stdout.strip() == "True", found.stderr


async def _answer(app, method: str, path: str, body: bytes = b"", headers=()) -> tuple[int, list, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(10)
    content = b""
    while True:
        message = await communicator.receive_output(10)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(10)
    return start["status"], sorted(start["headers"]), content


@pytest.mark.parametrize(
    "method,path,body,headers",
    [
        ("GET", "/v1/models", b"", []),  # no key: 401
        ("POST", "/v1/chat/completions", b"{not json", [(b"authorization", b"Bearer aic_nope")]),
        ("GET", "/v1/chat/completions", b"", []),  # 405
        ("POST", "/v1/embeddings", json.dumps({"model": "x"}).encode(), [(b"content-type", b"application/json")]),
        ("POST", "/v1/chat/completions", b"{}", [(b"content-length", b"999999999")]),  # 413, before the view
        ("GET", "/v1/nope", b"", []),  # not a gateway path: the whole chain's 404
    ],
)
def test_a_v1_answer_is_the_stock_handlers_byte_for_byte(method, path, body, headers):
    ours = asyncio.run(_answer(ApplicationHandler(), method, path, body, headers))
    stock = asyncio.run(_answer(ASGIHandler(), method, path, body, headers))
    assert ours == stock
    assert ours[0] in {400, 401, 404, 405, 413}
    error = json.loads(ours[2])["error"]  # OpenAI's shape, the guards' and the 404's too
    assert set(error) == {"message", "type", "code", "param"} and error["code"]
    if ours[0] == 413:
        assert error == {**error, "code": "PAYLOAD_TOO_LARGE", "type": "invalid_request_error"}


def test_the_gateway_paths_skip_only_the_browser_session_middleware():
    chain = ApplicationHandler().gateway_chain
    assert set(chain.matches) == {"/v1/chat/completions", "/v1/embeddings", "/v1/models"}
    assert chain.middleware == [m for m in settings.MIDDLEWARE if m not in settings.AICORE_GATEWAY_SKIPPED_MIDDLEWARE]
    assert {m.rsplit(".", 1)[1] for m in settings.AICORE_GATEWAY_SKIPPED_MIDDLEWARE} == {
        "SessionMiddleware",
        "CsrfViewMiddleware",
        "AuthenticationMiddleware",
        "MessageMiddleware",
    }
    for kept in ("DatabaseUnavailableMiddleware", "RequestSizeLimitMiddleware", "SecurityMiddleware"):
        assert any(m.endswith(kept) for m in chain.middleware), kept


def test_a_gateway_call_that_meets_a_dropped_database_answers_503(personas, monkeypatch):
    key = api_key_create(name="sdk", brand=personas.brand_a, user=personas.adam)[1]

    def dropped(raw):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("gateway.views.api_key_use", dropped)
    status, headers, body = asyncio.run(
        _answer(ApplicationHandler(), "GET", "/v1/models", headers=[(b"authorization", f"Bearer {key}".encode())])
    )
    assert status == 503
    assert json.loads(body) == {
        "error": {
            "message": "The database is unavailable; retry shortly",
            "type": "api_error",
            "code": "DATABASE_UNAVAILABLE",
            "param": None,
        }
    }
    headers = {name.lower(): value for name, value in headers}
    assert headers[b"retry-after"] == b"5"
    assert headers[b"x-frame-options"] == b"DENY" and headers[b"x-content-type-options"] == b"nosniff"
