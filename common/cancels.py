"""Durable cancellations and the names of their ZooKeeper marks (``run-<id>``,
``job-<id>``): the leader writes a mark for every cancellation recorded in PostgreSQL, and
every worker keeps the set of marks, so no copy of a cancelled run starts later, on any
worker, whenever it arrives (see docs/ARCHITECTURE.md, "Cancellation")."""

from __future__ import annotations

from common.messages import CancelMessage

KINDS = ("run", "job")
Target = tuple[str, int]  # (kind, id)


def mark(kind: str, target: int) -> str:
    """The mark's node name for a cancelled run or job."""
    if kind not in KINDS:
        raise ValueError(f"a cancellation is of a run or a job, not {kind!r}")
    return f"{kind}-{target}"


def parse(name: str) -> tuple[str, int] | None:
    """(kind, id) of a mark's node name; None for a name that is not a mark."""
    kind, _, target = name.partition("-")
    if kind not in KINDS or not target.isdigit():
        return None
    return kind, int(target)


def targets_of(message: CancelMessage) -> set[Target]:
    """The run and/or job a cancellation message names."""
    named = {("job", message.job_id), ("run", message.run_id)}
    return {(kind, target) for kind, target in named if target is not None}
