"""Celery 5, the peer, as its benchmark runs it: the app, two tasks and a beat scheduler.

Loaded in subprocesses only: `celery -A bench.peer_celery worker|beat ...` and
`python -m bench.peer_celery publish N` (`bench.peer` starts them). Settings chosen to give
Celery the guarantees Zeitplan gives its runs, so the comparison is like for like:
a quorum queue, persistent messages, publisher confirms (`confirm_publish`), acks after the
task ran (`task_acks_late`), no result backend (Zeitplan's status reports go to its own
database instead). Prefetch is Celery's default 4 per slot, as Zeitplan's workers.

Every task appends one line to a file per worker process under $BENCH_CELERY_OUT (one
`write` per line, O_APPEND): `noop <n> <started> <finished>` and
`tick <due> <sent> <started>`, wall-clock seconds. A tick's `due` is what beat itself
considered its due time (the entry's last run plus its 1-s period), `sent` when beat sent it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import beat_init, worker_ready
from kombu.entity import Queue

QUEUE = "bench.celery"
BROKER = os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
OUT = Path(os.environ.get("BENCH_CELERY_OUT", "."))

app = Celery("bench_peer", broker=BROKER)
app.conf.update(
    task_queues=(Queue(QUEUE, queue_arguments={"x-queue-type": "quorum"}),),  # type: ignore[no-untyped-call]
    task_default_queue=QUEUE,
    task_ignore_result=True,
    result_backend=None,
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
    task_send_sent_event=False,
    enable_utc=True,
    timezone="UTC",
    beat_schedule={"tick": {"task": "bench.tick", "schedule": 1.0}},
)

_fd: int | None = None


def _record(line: str) -> None:
    global _fd
    if _fd is None:
        _fd = os.open(OUT / f"tasks-{os.getpid()}.log",
                      os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, line.encode())


def _noop(n: int) -> None:
    started = time.time()
    _record(f"noop {n} {started:.6f} {time.time():.6f}\n")


def _tick(due: float = 0.0, sent: float = 0.0) -> None:
    _record(f"tick {due:.6f} {sent:.6f} {time.time():.6f}\n")


noop = app.task(name="bench.noop")(_noop)
tick = app.task(name="bench.tick")(_tick)


class StampingScheduler(PersistentScheduler):  # type: ignore[misc]
    """Beat's own scheduler; it only adds the entry's due and send times as arguments."""

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True,
                    **kwargs: Any) -> Any:
        """Stamp, then send as beat does (`entry` is the entry before this run)."""
        period = getattr(entry.schedule, "run_every", None)
        if entry.name == "tick" and period is not None:
            entry.kwargs = {"due": (entry.last_run_at + period).timestamp(),
                            "sent": time.time()}
        return super().apply_async(entry, producer, advance, **kwargs)


def _touch(name: str) -> None:
    (OUT / name).write_text(f"{os.getpid()}\n")


def _worker_ready(sender: Any = None, **_kwargs: Any) -> None:
    _touch(f"ready-{getattr(sender, 'hostname', os.getpid())}")


def _beat_ready(sender: Any = None, **_kwargs: Any) -> None:
    _touch("ready-beat")


worker_ready.connect(_worker_ready, weak=False)
beat_init.connect(_beat_ready, weak=False)


def publish(count: int, start: int = 0) -> dict[str, float]:
    """Publish `count` no-op tasks numbered from `start` on one producer (each publish waits
    for its confirm, as kombu's confirm_publish does); the wall-clock times of the first and
    last publish."""
    with app.producer_or_acquire() as producer:
        first = time.time()
        for n in range(start, start + count):
            noop.apply_async((n,), producer=producer)
        last = time.time()
    return {"first_publish": first, "last_publish": last}


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[1] != "publish":
        sys.exit("usage: python -m bench.peer_celery publish COUNT [FIRST]")
    print(json.dumps(publish(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) == 4 else 0)),
          flush=True)
