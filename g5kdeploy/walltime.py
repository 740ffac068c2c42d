"""OAR durations: ``H``, ``H:MM`` or ``H:MM:SS``, hours may exceed 24 (``61:55`` is a weekend)."""

from __future__ import annotations

import re

_OAR_DURATION = re.compile(r"^(\d+)(?::([0-5]?\d))?(?::([0-5]?\d))?$")


def parse_duration(text: str) -> int:
    """Seconds in an OAR duration; ``ValueError`` naming the accepted forms otherwise."""
    match = _OAR_DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an OAR duration: use H, H:MM or H:MM:SS (hours may exceed 24)")
    hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r} is zero: a duration must be positive")
    return total


def format_duration(seconds: int) -> str:
    """``H:MM:SS``, the form OAR prints and accepts."""
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
