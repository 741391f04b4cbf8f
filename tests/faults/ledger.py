"""The execution ledger: what the workload's jobs say they did, outside Zeitplan's tables.

Every attempt appends to ``<dir>/<run_id>`` a start line, ``S attempt time worker``, and,
if it gets that far, an end line, ``E attempt time worker exit_code``. Lines are short
appends (atomic under O_APPEND), so concurrent attempts of one run never interleave. The
worker's name comes from the harness's process tag (``<uuid>:<daemon name>``, see
common.devcluster.process) in the environment of the job's parent, the worker: a shell
job's own environment is clean.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Behaviour:
    """What a workload job does: sleep `slow` seconds; exit 3 while attempt < `fail_until`
    (0: never fail; a value above max_attempts: always fail)."""

    slow: float = 0.0
    fail_until: int = 0


@dataclass
class Execution:
    """One attempt as the ledger saw it; `end` and `exit_code` are None when it never ended
    (its worker died under it)."""

    run_id: int
    attempt: int
    worker: str
    start: float
    end: float | None = None
    exit_code: int | None = None

    @property
    def finished(self) -> bool:
        """It wrote its end line."""
        return self.end is not None


class Ledger:
    """A directory of per-run append-only files."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o777)

    def argv(self, behaviour: Behaviour) -> list[str]:
        """The shell job's argv: record the start, behave, record the end, exit."""
        book = shlex.quote(str(self.dir))
        lines = [
            f'f={book}/"$ZEITPLAN_RUN_ID"',
            "w=$(tr '\\0' '\\n' < /proc/$PPID/environ | sed -n 's/^ZEITPLAN_PROCESS_TAG=.*://p')",
            'echo "S $ZEITPLAN_ATTEMPT $EPOCHREALTIME $w" >> "$f"',
        ]
        if behaviour.slow:
            lines.append(f"sleep {behaviour.slow:g}")
        if behaviour.fail_until:
            lines.append(f'rc=0; [ "$ZEITPLAN_ATTEMPT" -lt {behaviour.fail_until} ] && rc=3')
        else:
            lines.append("rc=0")
        lines += ['echo "E $ZEITPLAN_ATTEMPT $EPOCHREALTIME $w $rc" >> "$f"', "exit $rc"]
        return ["/bin/bash", "-c", "\n".join(lines)]

    def read(self) -> dict[int, list[Execution]]:
        """Every run's executions, in start order."""
        out: dict[int, list[Execution]] = {}
        for path in self.dir.iterdir():
            if path.name.isdigit():
                out[int(path.name)] = parse(int(path.name), path.read_text())
        return out


def parse(run_id: int, text: str) -> list[Execution]:
    """The executions of one run file; an end line closes the open start of the same
    attempt on the same worker."""
    executions: list[Execution] = []
    open_ones: dict[tuple[int, str], list[Execution]] = defaultdict(list)
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] not in ("S", "E"):
            continue  # a line cut by a kill mid-write (never seen, but harmless)
        attempt, at, worker = int(parts[1]), float(parts[2]), parts[3]
        if parts[0] == "S":
            execution = Execution(run_id, attempt, worker, at)
            executions.append(execution)
            open_ones[(attempt, worker)].append(execution)
        elif open_ones[(attempt, worker)]:
            execution = open_ones[(attempt, worker)].pop(0)
            execution.end = at
            execution.exit_code = int(parts[4]) if len(parts) > 4 else None
    return sorted(executions, key=lambda e: e.start)
