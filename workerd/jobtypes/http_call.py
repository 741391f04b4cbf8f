"""The http job type: one request with urllib, judged by its status code.

The request runs on a helper thread so that a cancel or the timeout returns at once; the
socket timeout (the time left) makes the abandoned thread end on its own. Until it does,
the Outcome carries it (`leftover`: the attempt keeps its job's lock), and at
`STRAY_LIMIT` such requests the worker refuses http attempts with a failed outcome.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from typing import Any

from common.jobspec import describe_statuses
from workerd.jobtypes import (
    Deadline,
    JobContext,
    Outcome,
    checked_payload,
    stopped,
    wait_until_done,
)
from workerd.jobtypes.strays import STRAY_LIMIT, Stray, Strays
from workerd.output import CappedOutput

USER_AGENT = "zeitplan-worker"


@dataclass
class _Response:
    status: int | None = None
    body: bytes = b""
    error: BaseException | None = None


class HttpJob:
    """Runs http payloads: url, method, headers, body and the expected statuses."""

    def __init__(self, stray_limit: int = STRAY_LIMIT) -> None:
        self._strays = Strays("HTTP requests abandoned on a cancel or timeout", stray_limit)

    def run(self, ctx: JobContext) -> Outcome:
        """Send the request with an Idempotency-Key header; emit the (capped) body on stdout."""
        payload = checked_payload("http", ctx)
        if isinstance(payload, Outcome):
            return payload
        deadline = Deadline(ctx.timeout)
        request = _request(payload, ctx.key.idempotency_key)
        stray = self._strays.track()
        if stray is None:
            return Outcome("failed", error=self._strays.refusal())
        response = _Response()
        done = threading.Event()
        thread = threading.Thread(
            target=_send,
            args=(request, deadline.remaining(), ctx.output_limit + 1, response, done, stray),
            daemon=True,
        )
        thread.start()
        reason = wait_until_done(done, ctx, deadline)
        if reason is not None:
            outcome = stopped(reason, deadline)
            return replace(outcome, leftover=stray) if stray.abandon() else outcome
        if response.error is not None:
            return _error_outcome(response.error, deadline)
        CappedOutput(ctx.emit, ctx.output_limit).write("stdout", response.body)
        expected: list[int] = payload["expect_status"]
        if response.status in expected:
            return Outcome("succeeded")
        return Outcome(
            "failed", error=f"HTTP {response.status} (expected {describe_statuses(expected)})"
        )


def _request(payload: dict[str, Any], idempotency_key: str) -> urllib.request.Request:
    body = payload["body"]
    headers = {"User-Agent": USER_AGENT, **payload["headers"]}
    headers["Idempotency-Key"] = idempotency_key
    return urllib.request.Request(
        payload["url"],
        data=None if body is None else body.encode(),
        headers=headers,
        method=payload["method"],
    )


def _send(
    request: urllib.request.Request,
    timeout: float | None,
    max_body: int,
    response: _Response,
    done: threading.Event,
    stray: Stray,
) -> None:
    try:
        try:
            reply = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            reply = exc  # a status outside 2xx is still an answer to judge
        with reply:
            response.status = reply.status
            response.body = reply.read(max_body)
    except BaseException as exc:  # the helper thread's boundary: every failure is reported
        response.error = exc
    finally:
        done.set()
        stray.end()


def _error_outcome(exc: BaseException, deadline: Deadline) -> Outcome:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError) and deadline.timeout is not None:
        return stopped("timed_out", deadline)
    if isinstance(reason, OSError) and reason.strerror:
        return Outcome("failed", error=f"connection failed: {reason.strerror}")
    return Outcome("failed", error=f"request failed: {type(reason).__name__}: {reason}")
