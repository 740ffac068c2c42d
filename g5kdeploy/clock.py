"""Clocks in the API's time: the wall clock for Grid'5000 (the simulator keeps its own, possibly scaled).

Every timestamp the Grid'5000 API returns (``submitted_at``, ``scheduled_at``, ``started_at``) is in the
server's time. The agent waits in that time too, so that a simulator running at ``--speed 60`` and the real
platform are driven by the same waiting code.
"""

from __future__ import annotations

import time
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
