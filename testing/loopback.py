"""Loopback listeners and a scripted resolver for the network-guard tests: no packet leaves 127.0.0.0/8.

Linux answers on every 127.x.y.z address, so 127.0.0.1 can play an allowed host and 127.0.0.2 a refused one
(a policy allowing only 127.0.0.1) while both really listen.
"""

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Listener:
    """An HTTP server on `host` that records every request and answers 200 `{"ok": true}`, or a redirect to
    `redirect_to` (status `redirect_status`) when that is set."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        redirect_to: str = "",
        redirect_status: int = 302,
        tls: ssl.SSLContext | None = None,
    ):
        self.requests: list[dict] = []
        self.redirect_to, self.redirect_status = redirect_to, redirect_status
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                listener.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                if listener.redirect_to:
                    self.send_response(listener.redirect_status)
                    self.send_header("Location", listener.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = b'{"ok": true, "object": "list", "data": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.host, self.port = self.server.server_address[:2]
        self.url = f"{'https' if tls else 'http'}://{self.host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ScriptedResolver:
    """Stands in for socket.getaddrinfo: `name` resolves to each of `answers` in turn (the last one from then on),
    as a rebinding DNS server would answer; any other host goes to the real resolver (only loopback literals in
    these tests). Counts the lookups of `name`."""

    def __init__(self, name: str, answers: list[str]):
        self.name, self.answers, self.lookups = name, list(answers), 0
        self.real = socket.getaddrinfo

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        host = host.decode() if isinstance(host, bytes) else host
        if host != self.name:
            return self.real(host, port, family, type, proto, flags)
        address = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))]


def twin_listeners(first: str = "127.0.0.1", second: str = "127.0.0.2") -> tuple[Listener, Listener]:
    """Two listeners on the same port at two loopback addresses: where a rebinding host name points, first
    and then."""
    for _ in range(20):
        one = Listener(first)
        try:
            return one, Listener(second, one.port)
        except OSError:  # that port is taken on the second address: another pair
            one.close()
    raise RuntimeError("no port free on both loopback addresses")
