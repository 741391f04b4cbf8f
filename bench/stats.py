"""Pure statistics for the benchmarks: percentiles, summaries, rates. No I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values`, linearly interpolated between the closest
    ranks (numpy's default "linear" method). ValueError on an empty sequence."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True)
class Summary:
    """Count, mean, p50, p99 and max of a sample (in the sample's unit)."""

    count: int
    mean: float
    p50: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float | int]:
        """The summary as a plain dict (for JSON)."""
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    """Summary of a non-empty sample."""
    if not values:
        raise ValueError("summary of an empty sample")
    return Summary(count=len(values), mean=sum(values) / len(values),
                   p50=percentile(values, 50), p99=percentile(values, 99), max=max(values))


def rate(count: int, seconds: float) -> float:
    """Events per second; 0.0 for an empty or instantaneous interval."""
    if count <= 0 or seconds <= 0:
        return 0.0
    return count / seconds


def ratio(part: float, whole: float) -> float | None:
    """part / whole, None when the whole is not positive."""
    return part / whole if whole > 0 else None


def even_offsets(count: int, per_second: float) -> list[float]:
    """Offsets in seconds of `count` events spread evenly at `per_second` (0, 1/r, 2/r...)."""
    if per_second <= 0:
        raise ValueError(f"rate must be positive, not {per_second}")
    return [n / per_second for n in range(count)]


def censored_summary(observed: Sequence[float], bounds: Sequence[float]) -> dict[str, Any]:
    """Summary of a sample in which some values are known only to be at least `bounds`
    (events that had not happened by the cut-off). Percentiles are taken over the observed
    values and the bounds together; with any bound they are lower bounds (`lower_bound`),
    which is true because each real value is at least its bound."""
    values = [*observed, *bounds]
    if not values:
        raise ValueError("summary of an empty sample")
    summary = summarize(values)
    return {"count": summary.count, "observed": len(observed), "censored": len(bounds),
            "p50": round(summary.p50, 1), "p99": round(summary.p99, 1),
            "max": round(summary.max, 1), "lower_bound": bool(bounds)}


def median(values: Sequence[float]) -> float:
    """The median (50th percentile, interpolated)."""
    return percentile(values, 50)
