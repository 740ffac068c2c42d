"""Clocks in the API's time: the wall clock for Grid'5000, a scaled clock for the simulator.

Every timestamp the Grid'5000 API returns (``submitted_at``, ``scheduled_at``, ``started_at``) is in the
server's time. The agent waits in that time too, so that a simulator running at ``--speed 60`` and the real
platform are driven by the same waiting code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """Time as the API sees it, in epoch seconds, and a way to let it pass."""

    @property
    def speed(self) -> float:
        """API seconds per wall-clock second (anything bounded by ``timeout`` on a remote host runs in the latter)."""
        ...

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of API time."""
        ...


class WallClock:
    """The real clock: Grid'5000's API runs on it."""

    speed = 1.0

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


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
