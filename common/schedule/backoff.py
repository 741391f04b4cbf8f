"""Retry delays: exponential backoff with a cap and deterministic jitter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from common.errors import ScheduleError
from common.schedule.jitter import stable_fraction


@dataclass(frozen=True)
class Backoff:
    """Delay before retry attempts: base, base*factor, base*factor**2, ... up to cap.

    `jitter` (0..1) shortens each delay by up to that fraction of it, by an amount
    derived from the seed and attempt, so a retried run always waits the same time.
    """

    base: timedelta = timedelta(seconds=1)
    factor: float = 2.0
    cap: timedelta = timedelta(minutes=10)
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base <= timedelta(0):
            raise ScheduleError(f"backoff base must be positive, got {self.base}")
        if not self.factor >= 1:  # also refuses NaN
            raise ScheduleError(f"backoff factor must be at least 1, got {self.factor}")
        if self.cap < self.base:
            raise ScheduleError(f"backoff cap {self.cap} is below its base {self.base}")
        if not 0 <= self.jitter <= 1:
            raise ScheduleError(f"backoff jitter must be between 0 and 1, got {self.jitter}")

    def delay(self, attempt: int, *, seed: str = "") -> timedelta:
        """Wait before attempt `attempt` (1 is the first run and waits nothing; 2 waits base)."""
        if attempt < 1:
            raise ScheduleError(f"attempt must be 1 or more, got {attempt}")
        if attempt == 1:
            return timedelta(0)
        base, cap = self.base.total_seconds(), self.cap.total_seconds()
        # Compare logarithms so that huge attempt numbers cannot overflow a float.
        if (attempt - 2) * math.log(self.factor) >= math.log(cap / base):
            seconds = cap
        else:
            seconds = base * self.factor ** (attempt - 2)
        seconds -= seconds * self.jitter * stable_fraction(seed, attempt)
        return timedelta(seconds=seconds)
