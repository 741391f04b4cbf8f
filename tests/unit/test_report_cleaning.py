"""What a worker reports is made storable before it is sent: a plug-in's text with a lone
surrogate or a NUL, or an exit code past 32 bits, would make PostgreSQL refuse the event."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from common.messages import (
    INT32,
    RunMessage,
    StatusMessage,
    decode,
    decode_batch,
    encode,
    encode_batches,
)
from common.states import RunState
from common.zk import Coordinator
from workerd.attempt import AttemptRunner, Slot, utcnow
from workerd.config import WorkerConfig
from workerd.jobtypes import JobContext, Outcome, python_plugin
from workerd.jobtypes.python_plugin import PythonPluginJob
from workerd.outbox import Outbox, Report
from workerd.receipt import Receipt

T0 = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)


class Odd:
    """A plug-in that fails with what a careless one may return: an error text decoded with
    `surrogateescape` (a lone surrogate) and an exit code no process could have."""

    def run(self, ctx: JobContext) -> Outcome:
        return Outcome("failed", exit_code=2**40, error=b"bad byte \xff".decode(
            "utf-8", "surrogateescape"))


class OddEntryPoint:
    def load(self) -> type[Odd]:
        return Odd


def test_a_plug_ins_lone_surrogate_and_huge_exit_code_are_cleaned_and_clamped_in_its_report(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python_plugin, "entry_points",
                        lambda group, name: [OddEntryPoint()] if name == "test.odd" else [])
    outbox = Outbox()
    runner = AttemptRunner(WorkerConfig(), cast(Coordinator, None), outbox,
                           {"python": PythonPluginJob()}, threading.Event())
    message = RunMessage(
        run_id=5, job_id=6, scheduled_for=T0, attempt=1, max_attempts=1, job_type="python",
        payload={"entry_point": "test.odd", "args": {}}, pool="default", priority=5,
        concurrency="allow", timeout_s=5.0, backoff={"base": 1, "factor": 2, "cap": 9,
                                                     "jitter": 0}, epoch=1)
    runner.proceed(Receipt(1, 1, "default.normal", message, encode(message)),
                   Slot(message, threading.Event()), utcnow())
    reports = [a.message for a in outbox.take(20) if isinstance(a, Report)]
    assert [cast(StatusMessage, r).state for r in reports] == [RunState.FAILED, RunState.DEAD]
    assert cast(StatusMessage, reports[0]).error == "bad byte \udcff"  # as the plug-in said
    sent = [m for body in encode_batches(reports) for m in decode_batch(body)]
    for report in sent:
        assert isinstance(report, StatusMessage)
        assert report.exit_code == INT32[1]
        assert report.error == "bad byte \ufffd"


@pytest.mark.parametrize(("text", "stored"), [
    ("lone \udcff low", "lone \ufffd low"),
    ("lone \ud800 high", "lone \ufffd high"),
    ("nul\x00inside", "nul\ufffdinside"),
    ("caf\u00e9 \U0001f600 fine", "caf\u00e9 \U0001f600 fine"),  # well-formed text is kept
    ("plain ascii", "plain ascii"),
])
def test_every_text_field_is_cleaned_of_what_postgresql_refuses(text: str, stored: str) -> None:
    event = StatusMessage(run_id=1, attempt=1, state=RunState.FAILED, at=T0, worker=text,
                          error=text, reason=text)
    sent = decode(encode(event))
    assert isinstance(sent, StatusMessage)
    assert (sent.worker, sent.error, sent.reason) == (stored, stored, stored)


@pytest.mark.parametrize(("code", "sent"), [
    (2**40, INT32[1]), (-(2**40), INT32[0]), (INT32[1], INT32[1]), (-1, -1), (None, None)])
def test_an_exit_code_is_clamped_to_32_bits(code: int | None, sent: int | None) -> None:
    event = StatusMessage(run_id=1, attempt=1, state=RunState.FAILED, at=T0, exit_code=code)
    wire: dict[str, Any] = json.loads(encode(event))
    assert wire["exit_code"] == sent
