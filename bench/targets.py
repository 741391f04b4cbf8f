"""The issue's performance targets and the verdict on a figure (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """`value >= limit` (at_least) or `value < limit`, in `unit`."""

    text: str
    limit: float
    at_least: bool
    unit: str = ""


@dataclass(frozen=True)
class Verdict:
    """met: True, False, or None when the figure cannot say (a lower bound under a limit)."""

    met: bool | None
    text: str


def number(value: float, unit: str = "") -> str:
    """A figure for a table: thousands separators, precision by size, then the unit."""
    if unit == "x":
        return f"{value:.2f}×"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}" if unit in ("", "s") else f"{value:.1f}"
    return f"{text} {unit}".strip()


def judge(target: Target, value: float | None, *, lower_bound: bool = False) -> Verdict:
    """Met or missed, and by how much. `lower_bound`: the real value is at least `value`."""
    if value is None:
        return Verdict(None, "not measured")
    limit, unit = target.limit, target.unit
    if target.at_least:
        if lower_bound and value < limit:
            return Verdict(None, "unknown (only a lower bound was measured)")
        if value >= limit:
            return Verdict(True, f"**met** ({_times(value, limit)} the target)")
        return Verdict(False, f"**missed** by {number(limit - value, unit)} "
                              f"({_times(value, limit)} the target)")
    if value < limit:
        if lower_bound:
            return Verdict(None, "unknown (only a lower bound was measured)")
        return Verdict(True, f"**met** ({number(limit - value, unit)} under)")
    return Verdict(False, f"**missed** by {'at least ' if lower_bound else ''}"
                          f"{number(value - limit, unit)} ({_times(value, limit)} the limit)")


def _times(value: float, limit: float) -> str:
    if limit == 0:
        return "n/a"
    ratio = value / limit
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:,.0f}×"


# The targets.
E2E_RATIO = Target("≥ 0.50 of the raw round trip", 0.5, True)
E2E_RATE_3NODE = Target("≥ 2,500 runs/s (3-node cluster)", 2500.0, True, "runs/s")
LATENESS = {10.0: Target("p99 < 10 ms", 10.0, False, "ms"),
            1000.0: Target("p99 < 50 ms", 50.0, False, "ms")}
CRON_P99 = Target("p99 < 1 s (100,000 cron jobs)", 1000.0, False, "ms")
SCHEDULERD_MB = Target("schedulerd < 200 MB with 1M jobs", 200.0, False, "MB")
WORKERD_MB = Target("workerd < 100 MB", 100.0, False, "MB")
FAILOVER_TERM = Target("worst < 1 s", 1.0, False, "s")
CELERY_RATIO = Target("≥ 2× Celery's throughput", 2.0, True, "x")


def failover_kill(session_timeout: float) -> Target:
    """SIGKILL: the session must expire first, so the bound is the session timeout + 1 s."""
    limit = session_timeout + 1.0
    return Target(f"worst < session timeout + 1 s = {limit:g} s", limit, False, "s")


def lower_is_better(name: str, ours: float, theirs: float) -> Verdict:
    """Zeitplan's figure against the peer's, where lower is better."""
    if ours < theirs:
        return Verdict(True, f"**met** ({number(theirs - ours, 'ms')} lower than {name})")
    return Verdict(False, f"**missed** ({number(ours - theirs, 'ms')} higher than {name})")
