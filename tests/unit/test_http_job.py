import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from workerd.jobtypes import JobContext, Outcome, RunKey
from workerd.jobtypes.http_call import HttpJob

KEY = RunKey(run_id=1, job_id=9, scheduled_for=datetime(2024, 5, 1, 12, tzinfo=UTC), attempt=3)


class Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.seen.append((self.command, self.path, dict(self.headers), body))
        if self.path.startswith("/slow"):
            time.sleep(2)
            return  # the client has given up: closing without an answer
        status = int(self.path.split("/")[2]) if self.path.startswith("/status/") else 200
        reply = b"x" * 5000 if self.path == "/big" else f"answer {status}\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def run(payload: dict[str, Any], timeout: float | None = 5.0, **kw: Any) -> tuple[Outcome, bytes]:
    chunks: list[bytes] = []
    ctx = JobContext(
        KEY, payload, timeout, threading.Event(), lambda s, c: chunks.append(c), {}, **kw
    )
    return HttpJob().run(ctx), b"".join(chunks)


def test_a_2xx_answer_succeeds_and_its_body_is_emitted(server: str) -> None:
    outcome, body = run({"url": f"{server}/hello"})
    assert outcome == Outcome("succeeded")
    assert body == b"answer 200\n"


def test_the_request_carries_the_idempotency_key_headers_and_body(server: str) -> None:
    payload = {
        "url": f"{server}/hook",
        "method": "POST",
        "headers": {"X-Team": "ops"},
        "body": "hi",
    }
    assert run(payload)[0].state == "succeeded"
    [(method, path, headers, body)] = Handler.seen
    assert (method, path, body) == ("POST", "/hook", b"hi")
    assert headers["Idempotency-Key"] == "9:2024-05-01T12:00:00Z:3"
    assert headers["X-Team"] == "ops"


def test_an_unexpected_status_fails_saying_what_was_expected(server: str) -> None:
    outcome, body = run({"url": f"{server}/status/503"})
    assert outcome == Outcome("failed", error="HTTP 503 (expected 200-299)")
    assert body == b"answer 503\n"


def test_a_listed_status_outside_2xx_succeeds(server: str) -> None:
    assert run({"url": f"{server}/status/404", "expect_status": [404]})[0].state == "succeeded"


def test_a_2xx_status_not_listed_fails(server: str) -> None:
    outcome, _ = run({"url": f"{server}/hello", "expect_status": [201, 202]})
    assert outcome == Outcome("failed", error="HTTP 200 (expected 201-202)")


def test_a_slow_answer_times_out(server: str) -> None:
    started = time.monotonic()
    outcome, _ = run({"url": f"{server}/slow"}, timeout=0.3)
    assert outcome == Outcome("timed_out", error="timed out after 0.3 s")
    assert time.monotonic() - started < 1.5


def test_a_cancel_returns_at_once(server: str) -> None:
    ctx = JobContext(KEY, {"url": f"{server}/slow"}, None, threading.Event(), lambda s, c: None, {})
    threading.Timer(0.2, ctx.cancel.set).start()
    started = time.monotonic()
    assert HttpJob().run(ctx) == Outcome("cancelled", error="cancelled")
    assert time.monotonic() - started < 1.0


def test_a_refused_connection_fails_with_a_short_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome, _ = run({"url": f"http://127.0.0.1:{port}/"})
    assert outcome == Outcome("failed", error="connection failed: Connection refused")


def test_a_big_body_is_capped(server: str) -> None:
    outcome, body = run({"url": f"{server}/big"}, output_limit=100)
    assert outcome.state == "succeeded"
    assert body == b"x" * 100 + b"\n[zeitplan: output truncated after 100 bytes]\n"


def test_requests_left_running_are_capped_and_hand_their_end_to_the_attempt(
        server: str) -> None:
    job = HttpJob(stray_limit=1)

    def call(path: str, cancel_after: float | None = None) -> Outcome:
        ctx = JobContext(KEY, {"url": f"{server}{path}"}, None, threading.Event(),
                         lambda s, c: None, {})
        if cancel_after is not None:
            threading.Timer(cancel_after, ctx.cancel.set).start()
        return job.run(ctx)
    first = call("/slow", cancel_after=0.1)  # the server answers (closes) 2 s later
    assert first.state == "cancelled" and first.leftover is not None
    refused = call("/hello")
    assert refused.state == "failed" and refused.error is not None
    assert refused.error.startswith("refused: 1 HTTP requests abandoned")
    ended = threading.Event()
    first.leftover.when_ended(ended.set)
    assert ended.wait(5)
    assert call("/hello") == Outcome("succeeded")
