"""What RabbitMQ was asked to do while a benchmark ran: messages published, delivered and
acknowledged, summed over every node's global counters (`rabbit_global_counters`).

Next to bench.cpu this separates the two halves of the broker's share of a run: how many
operations a run needs, and what each costs (the raw round trip's). The counters are read
with `rabbitmqctl eval` (an Erlang VM of its own, about a second a node), so a window is
opened and closed outside the CPU window, not inside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

KINDS = ("published", "delivered", "acked")
# Publishes received over AMQP 0-9-1; deliveries and acks of quorum queues (every queue the
# daemons use is one). Printed as one line of three integers.
EXPRESSION = (
    "O = rabbit_global_counters:overview(), "
    "P = maps:get([{protocol, amqp091}], O), "
    "Q = maps:get([{protocol, amqp091}, {queue_type, rabbit_quorum_queue}], O), "
    "io:format(\"zeitplan-ops ~w ~w ~w~n\", [maps:get(messages_received_total, P), "
    "maps:get(messages_delivered_total, Q), maps:get(messages_acknowledged_total, Q)]).")
_LINE = re.compile(r"^zeitplan-ops (\d+) (\d+) (\d+)$", re.MULTILINE)


class Node(Protocol):
    """What is needed of a RabbitMQ node (common.devcluster.rabbitmq.RabbitNode)."""

    name: str

    def ctl(self, *args: str, timeout: float = 30.0) -> str | None:
        """rabbitmqctl's stdout, or None when it failed."""


@dataclass(frozen=True)
class Ops:
    """Counter totals of one node, or their sum or difference."""

    published: int = 0
    delivered: int = 0
    acked: int = 0

    def __add__(self, other: Ops) -> Ops:
        return Ops(self.published + other.published, self.delivered + other.delivered,
                   self.acked + other.acked)

    def __sub__(self, other: Ops) -> Ops:
        return Ops(self.published - other.published, self.delivered - other.delivered,
                   self.acked - other.acked)


def parse(output: str | None) -> Ops | None:
    """The counters in `rabbitmqctl eval EXPRESSION`'s output (None when absent)."""
    found = _LINE.search(output or "")
    return Ops(*(int(value) for value in found.groups())) if found else None


def read(nodes: Iterable[Node]) -> dict[str, Ops]:
    """Each answering node's counters, the nodes asked at once."""
    nodes = list(nodes)
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        answers = list(pool.map(lambda node: parse(node.ctl("eval", EXPRESSION)), nodes))
    return {node.name: ops for node, ops in zip(nodes, answers, strict=True)
            if ops is not None}


def summary(before: Mapping[str, Ops], after: Mapping[str, Ops], runs: int
            ) -> dict[str, Any] | None:
    """Operations over the window, in all and per run, from the nodes read both times
    (None when no node was)."""
    names = after.keys() & before.keys()
    if not names:
        return None
    total = sum((after[name] - before[name] for name in names), Ops())
    counts = {kind: getattr(total, kind) for kind in KINDS}
    return {"nodes": len(names), "runs": runs, "total": counts,
            "per_run": {kind: round(n / runs, 3) if runs else 0.0
                        for kind, n in counts.items()}}


def describe(figures: Mapping[str, Any]) -> str:
    """One line for a window's figures (of :func:`summary`)."""
    per_run = figures["per_run"]
    return (f"{per_run['published']:.2f} publishes, {per_run['delivered']:.2f} deliveries "
            f"and {per_run['acked']:.2f} acks a run, over {figures['nodes']} node(s)")


class OpsWindow:
    """A context manager that counts the broker's operations while it is entered."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes = list(nodes)
        self.before: dict[str, Ops] = {}
        self.after: dict[str, Ops] = {}

    def __enter__(self) -> OpsWindow:
        self.before = read(self.nodes)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.after = read(self.nodes)

    def summary(self, runs: int) -> dict[str, Any] | None:
        """The window's figures for `runs` runs (see :func:`summary`)."""
        return summary(self.before, self.after, runs)
