"""When a nightly job may run: the first slot of Grid'5000's non-working time (its windows are the usage
policy's, :mod:`g5kdeploy.reserve.policy`) that holds a walltime.

Everything here is a pure function of an injected ``now``. Arithmetic is done in UTC: Python adds and compares
aware datetimes that share a tzinfo on the wall clock, which is wrong by an hour across a DST change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from g5kdeploy.errors import ConfigError
from g5kdeploy.playbook import PARIS
from g5kdeploy.reserve.policy import DAY_START, Window, as_utc, label, paris_at, windows
from g5kdeploy.walltime import format_duration

DEFAULT_PREFERRED = time(19, 5)
# A reservation must be submitted before it starts; a few minutes covers the submission and the API's clock.
DEFAULT_MARGIN = timedelta(minutes=5)
# A year sees every kind of long weekend (Easter Monday, Ascension, Christmas), so a walltime that fits none
# of them in this horizon fits nothing.
DEFAULT_HORIZON = timedelta(days=366)
# Past this many skipped windows, the rest are summed up in one note: a 70 h job skips months of nights.
MAX_NOTES = 8


def _paris(moment: datetime) -> datetime:
    return moment.astimezone(PARIS)


@dataclass(frozen=True)
class Slot:
    """A job's start and end (Paris time) inside the non-working window that holds it."""

    start: datetime
    end: datetime
    window_start: datetime
    window_end: datetime

    @property
    def walltime(self) -> int:
        return int((self.end.astimezone(UTC) - self.start.astimezone(UTC)).total_seconds())

    @property
    def window(self) -> Window:
        return Window(self.window_start, self.window_end)

    @property
    def oar_reservation(self) -> str:
        """The start as OAR reads an advance reservation: local Paris time, ``YYYY-MM-DD HH:MM:SS``."""
        # The one ambiguous hour a year (02:00-03:00 on the last Sunday of October) could be misread by OAR;
        # slots start at the preferred time (19:05 by default), so only an odd ``preferred`` meets it.
        return f"{_paris(self.start):%Y-%m-%d %H:%M:%S}"

    def to_json(self) -> dict[str, Any]:
        return {
            "start": _paris(self.start).isoformat(),
            "end": _paris(self.end).isoformat(),
            "walltime": format_duration(self.walltime),
            "window": {
                "start": _paris(self.window_start).isoformat(),
                "end": _paris(self.window_end).isoformat(),
                "duration": format_duration(self.window.seconds),
            },
            "reservation": self.oar_reservation,
        }

    def __str__(self) -> str:
        return f"{label(self.start)} → {label(self.end)} (window {self.window.label})"


def _ceil_minute(moment: datetime) -> datetime:
    # OAR reservations are read to the second, but a whole minute reads better in logs and in ``oarstat``.
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def _preferred_start(window: Window, preferred: time) -> datetime:
    """When ``preferred`` falls in ``window``'s first night, in UTC; the window's start if it does not."""
    start = window.start.astimezone(UTC)
    evening = paris_at(_paris(start).date(), preferred)
    if evening >= start:
        return evening
    if preferred < DAY_START:
        # A morning time (02:00) means the small hours of that night, after midnight.
        return paris_at(_paris(start).date() + timedelta(days=1), preferred)
    # A daytime time means "as early as the policy allows".
    return start


def explain(
    now: datetime,
    walltime: int,
    preferred: time = DEFAULT_PREFERRED,
    *,
    margin: timedelta = DEFAULT_MARGIN,
    horizon: timedelta = DEFAULT_HORIZON,
) -> tuple[Slot, list[str]]:
    """The first slot for a job of ``walltime`` seconds, and why each earlier window did not hold it.

    In each window the job starts at ``preferred`` (or the window's start if later), never before
    ``now + margin``, and earlier than ``preferred`` if that is what it takes to end with the window.
    ``ConfigError`` names the longest window seen when no window within ``horizon`` can hold it.
    """
    if walltime <= 0:
        raise ConfigError(f"walltime must be positive, not {walltime} s")
    moment = as_utc(now)
    earliest_start = _ceil_minute(moment + margin)
    limit = moment + horizon
    duration = timedelta(seconds=walltime)
    needed = format_duration(walltime)
    notes: list[str] = []
    skipped = 0
    longest: Window | None = None
    for window in windows(moment):
        start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
        if start > limit:
            break
        if longest is None or window.seconds > longest.seconds:
            longest = window
        earliest = max(start, earliest_start)
        latest = end - duration
        if latest < earliest:
            skipped += 1
            if skipped <= MAX_NOTES:
                notes.append(_too_short(window, earliest, needed))
            continue
        wanted = max(_preferred_start(window, preferred), earliest)
        begin = min(wanted, latest)
        if begin < wanted:
            notes.append(
                f"starts at {label(begin)} rather than {label(wanted)} to end by {label(end)}, when the window closes"
            )
        if skipped > MAX_NOTES:
            notes.insert(MAX_NOTES, f"… and {skipped - MAX_NOTES} more windows too short for {needed}")
        slot = Slot(_paris(begin), _paris(begin + duration), window.start, window.end)
        return slot, notes
    seen = f"the longest is {longest.label} ({format_duration(longest.seconds)})" if longest else "there is none"
    raise ConfigError(
        f"a walltime of {needed} fits no non-working window in the {horizon.days} days after {label(moment)}: {seen}",
        hint="a night holds about 14 h (19:00 → 09:00), a weekend about 62 h: shorten the walltime or split the run",
    )


def _too_short(window: Window, earliest: datetime, needed: str) -> str:
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    if earliest > start:
        left = format_duration(max(0, int((end - earliest).total_seconds())))
        return f"{window.label} has {left} left after {label(earliest)}, too short for {needed}"
    return f"{window.label} is {format_duration(window.seconds)}, too short for {needed}"


def next_slot(
    now: datetime,
    walltime: int,
    *,
    preferred: time = DEFAULT_PREFERRED,
    margin: timedelta = DEFAULT_MARGIN,
    horizon: timedelta = DEFAULT_HORIZON,
) -> Slot:
    """The first slot for a job of ``walltime`` seconds from ``now`` (see ``explain``)."""
    return explain(now, walltime, preferred, margin=margin, horizon=horizon)[0]
