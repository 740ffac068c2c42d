"""Waiting for a condition on this machine's clock, always with a deadline.

Waits in the Grid'5000 API's time (a job running, a deployment ending) go through the testbed's ``Clock``
instead, which the simulator can speed up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from g5kdeploy.errors import DeadlineExceeded

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns something true, and return that.

    ``what`` says what is awaited ("Prometheus at ... to be ready"): after ``timeout`` seconds the wait ends in
    :class:`DeadlineExceeded` naming it, with ``detail()`` (what is known by then: a log's tail, who is still
    missing) after it. The condition is tried once more at the deadline itself, and it may raise to end the
    wait early (the process that should answer has exited).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            message = f"timed out after {seconds(timeout)} waiting for {what}"
            raise DeadlineExceeded(f"{message}; {detail()}" if detail is not None else message)
        time.sleep(min(interval, left))


def seconds(value: float) -> str:
    """A duration for a message: ``0.2 s``, ``30 s``."""
    return f"{value:.1f}".removesuffix(".0") + " s"
