"""OAR durations: ``H``, ``H:MM`` or ``H:MM:SS``, hours may exceed 24 (``61:55`` is a weekend)."""

from __future__ import annotations

import re
import reprlib

_OAR_DURATION = re.compile(r"(\d+)(?::([0-5]?\d))?(?::([0-5]?\d))?")
#: The longest walltime a playbook may ask for: a week, a round bound above the longest non-working window of
#: Grid'5000's usage policy (110 h, Wednesday 19:00 to Monday 09:00 when Ascension Thursday meets 8 May).
MAX_WALLTIME = 168 * 3600
#: Any other duration (a wait, a deadline): a year; beyond it a number is a typo, not a plan.
MAX_DURATION = 366 * 24 * 3600
# More hours than this many digits exceed any maximum; int() of thousands of digits is refused by Python itself.
_MAX_HOUR_DIGITS = 9


def parse_duration(text: str, *, maximum: int = MAX_DURATION, kind: str = "duration") -> int:
    """Seconds in an OAR duration up to ``maximum``; ``ValueError`` naming the accepted forms otherwise."""
    match = _OAR_DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{reprlib.repr(text)} is not an OAR duration: use H, H:MM or H:MM:SS (hours may exceed 24)")
    hours_text, minutes, seconds = match.groups()
    if len(hours_text.lstrip("0")) > _MAX_HOUR_DIGITS:
        total = maximum + 1
    else:
        total = int(hours_text) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    if total <= 0:
        raise ValueError(f"{text!r} is zero: a duration must be positive")
    if total > maximum:
        raise ValueError(f"{reprlib.repr(text)} is longer than {format_duration(maximum)}, the longest {kind} allowed")
    return total


def format_duration(seconds: int) -> str:
    """``H:MM:SS``, the form OAR prints and accepts."""
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
