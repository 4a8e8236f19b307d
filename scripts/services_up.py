"""Exit 0 when the PostgreSQL and Redis servers named on the command line answer, else 1.

With `--why`, print which of them does not answer (name, host and port; never the URL's credentials), one line:
what `make test` ends with when it cannot run the PostgreSQL pass."""

import socket
import sys
from urllib.parse import urlsplit

NAMES = {"postgres": "PostgreSQL", "postgresql": "PostgreSQL", "redis": "Redis", "amqp": "RabbitMQ"}


def answers(url: str) -> bool:
    parts = urlsplit(url)
    default_port = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "amqp": 5672}.get(parts.scheme, 0)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def where(url: str) -> str:
    parts = urlsplit(url)
    return f"{NAMES.get(parts.scheme, parts.scheme)} at {parts.hostname or '127.0.0.1'}:{parts.port or 'default port'}"


if __name__ == "__main__":
    why = "--why" in sys.argv[1:]
    down = [url for url in sys.argv[1:] if url != "--why" and not answers(url)]
    if why and down:
        print(" and ".join(where(url) for url in down) + (" does not answer" if len(down) == 1 else " do not answer"))
    sys.exit(1 if down else 0)
