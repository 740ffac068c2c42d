"""Ctrl-C and SIGTERM: one interruption, then a cleanup (releasing the run's jobs) that no signal can cut short.

The first SIGINT or SIGTERM raises KeyboardInterrupt where the agent is, so the same ``finally``/``except``
paths release what it holds. Every later signal is only acknowledged: a second Ctrl-C pressed a few
milliseconds after the first (before any cleanup code could shield itself) must not abandon the jobs.
A :func:`shielded` body, which has its own deadline, defers even the first signal until it is done.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType

INTERRUPTED = 130
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    interrupted: int | None = None
    shield_depth = 0
    deferred: int | None = None


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    if _State.interrupted is not None:
        _say("still cleaning up (releasing the run's jobs before exit); a kill -9 would leave them to g5k release")
        return
    if _State.shield_depth:
        _State.deferred = _State.deferred or signum
        return
    _State.interrupted = signum
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _say(message: str) -> None:
    # os.write, not print: a signal handler may run in the middle of another write to stderr.
    with suppress(OSError, ValueError):
        os.write(sys.stderr.fileno(), f"\n{message}\n".encode())


def terminate_as_interrupt() -> None:
    """From now on, the first SIGINT or SIGTERM raises KeyboardInterrupt and later ones cannot interrupt cleanup."""
    if threading.current_thread() is not threading.main_thread():
        return
    _State.interrupted = _State.deferred = None
    _State.shield_depth = 0
    for sig in _SIGNALS:
        signal.signal(sig, _on_signal)


def exit_at_once_on_signal() -> None:
    """Before a command starts (while the agent loads), a signal has nothing to clean up: exit 130 at once."""

    def leave(_signum: int, _frame: FrameType | None) -> None:
        _say("interrupted")
        os._exit(INTERRUPTED)

    for sig in _SIGNALS:
        signal.signal(sig, leave)


@contextmanager
def shielded() -> Iterator[None]:
    """Defer SIGINT and SIGTERM while the body runs (it must have its own deadline), then re-deliver them.

    Handlers other than ours (a command that never called :func:`terminate_as_interrupt`) are replaced for the
    body's duration.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    for sig in _SIGNALS:
        signal.signal(sig, _on_signal)
    _State.shield_depth += 1
    try:
        yield
    finally:
        _State.shield_depth -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        deferred, _State.deferred = _State.deferred, None
        if deferred is not None and not _State.shield_depth and _State.interrupted is None:
            _State.interrupted = deferred
            raise KeyboardInterrupt(signal.Signals(deferred).name)
