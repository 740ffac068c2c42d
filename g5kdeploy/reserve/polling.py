"""When to look at a waiting job again.

The API predicts a start (``scheduled_at``) for most jobs, so the agent sleeps towards it, halving the
gap and re-reading the prediction (it moves earlier when other jobs end early), and polls fast only in
the last seconds and while the job is launching. Without a prediction it backs off and never polls one
job more often than every 5 s: Grid'5000 has no published rate limit, and its tools learnt to be gentle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Seconds between polls in the last moments before a predicted start and while the job launches.
FAST_POLL = 0.25
#: Below this many seconds before the predicted start, sleep straight to it.
FINAL_APPROACH = 10.0
#: Longest single sleep, so that a prediction that moved earlier is seen in time.
LONGEST_SLEEP = 600.0
#: How long past a predicted start fast polling goes on before the prediction is treated as stale.
OVERDUE_GRACE = 15.0
#: Delays between polls of a job without prediction; the last one repeats.
BACKOFF = (5.0, 10.0, 20.0, 40.0, 60.0)
STARTING_STATES = frozenset({"tolaunch", "launching"})


@dataclass
class PollState:
    """What the planner remembers about one job between polls."""

    blind_polls: int = 0

    def next_delay(self, job: dict[str, Any], now: float) -> float:
        """Seconds of API time to wait before reading ``job`` again."""
        if job.get("state") in STARTING_STATES:
            return FAST_POLL
        scheduled = job.get("scheduled_at")
        if scheduled:
            remaining = float(scheduled) - now
            if remaining > FINAL_APPROACH:
                self.blind_polls = 0
                return min(LONGEST_SLEEP, max(BACKOFF[0], remaining / 2))
            if remaining > FAST_POLL:
                return remaining
            if remaining > -OVERDUE_GRACE:
                return FAST_POLL
        delay = BACKOFF[min(self.blind_polls, len(BACKOFF) - 1)]
        self.blind_polls += 1
        return delay
