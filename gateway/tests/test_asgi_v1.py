"""config.asgi serves /v1/ in one hop to a kept thread, through the undocumented methods of Django's ASGIHandler
(docs/PERFORMANCE.md, private framework APIs). Pinned here: those methods are still there with the signatures
used, and a /v1/ answer through our path is byte for byte the stock handler's (status, headers, body)."""

import asyncio
import inspect
import json

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler

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
    ],
)
def test_a_v1_answer_is_the_stock_handlers_byte_for_byte(method, path, body, headers):
    ours = asyncio.run(_answer(ApplicationHandler(), method, path, body, headers))
    stock = asyncio.run(_answer(ASGIHandler(), method, path, body, headers))
    assert ours == stock
    assert ours[0] in {400, 401, 405}
    assert json.loads(ours[2])["error"]["code"]
