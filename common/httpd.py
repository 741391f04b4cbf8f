"""A small HTTP server every daemon runs: /health and /metrics (schedulers add more)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

# A route answers (status, content type, body).
Route = Callable[[], tuple[int, str, bytes]]


def json_route(fn: Callable[[], tuple[int, dict[str, Any]]]) -> Route:
    """A route from a function returning (status, JSON-able dict)."""
    def route() -> tuple[int, str, bytes]:
        status, body = fn()
        return status, "application/json", json.dumps(body).encode()
    return route


def health_route(health: Callable[[], tuple[bool, bool, str]],
                 details: Callable[[], dict[str, Any]]) -> Route:
    """``/health``: 200 when live and ready, 503 otherwise, with the reason and details."""
    def route() -> tuple[int, dict[str, Any]]:
        live, ready, reason = health()
        return (200 if live and ready else 503), {
            "live": live, "ready": ready, "reason": reason, **details()}
    return json_route(route)


def metrics_route() -> tuple[int, str, bytes]:
    """``/metrics`` in the Prometheus text format."""
    return 200, CONTENT_TYPE_LATEST, generate_latest()


class HttpServer:
    """Serves GET routes on a background thread."""

    def __init__(self, address: tuple[str, int], routes: dict[str, Route]) -> None:
        table = dict(routes)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                route = table.get(self.path.split("?", 1)[0])
                status, ctype, body = (route() if route else
                                       (404, "text/plain", b"not found\n"))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(address, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="http")

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
