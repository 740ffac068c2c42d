"""The simulator's time: the wall clock, possibly scaled, persisted so that a restarted server goes on."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ScaledClock:
    """A clock that runs ``speed`` times faster than the wall clock from a common origin.

    ``now = origin_sim + (time.time() - origin_real) * speed``. The simulator keeps its time with one of these
    and persists the three numbers, so an agent in another process can rebuild the same clock.
    """

    origin_real: float
    origin_sim: float
    speed: float = 1.0

    def now(self) -> float:
        return self.origin_sim + (time.time() - self.origin_real) * self.speed

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)

    def to_dict(self) -> dict[str, float]:
        return {"origin_real": self.origin_real, "origin_sim": self.origin_sim, "speed": self.speed}
