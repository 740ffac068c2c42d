"""When a nightly job may run: Grid'5000's non-working time, and the first slot in it that holds a walltime.

Grid'5000's usage policy keeps working days' 09:00-19:00 (Europe/Paris) for interactive use; nights, weekends
and French public holidays are for long and automated runs. The non-working time is therefore a sequence of
windows, each from 19:00 on a working day to 09:00 on the next working day, so weekends and holidays merge with
the nights around them (Fri 19:00 → Mon 09:00; Wed 19:00 → Fri 09:00 when Thursday is a holiday).

Everything here is a pure function of an injected ``now``. Arithmetic is done in UTC: Python adds and compares
aware datetimes that share a tzinfo on the wall clock, which is wrong by an hour across a DST change.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import holidays

from g5kdeploy.errors import ConfigError
from g5kdeploy.playbook import PARIS
from g5kdeploy.walltime import format_duration

DAY_START = time(9, 0)
DAY_END = time(19, 0)
DEFAULT_PREFERRED = time(19, 5)
# A reservation must be submitted before it starts; a few minutes covers the submission and the API's clock.
DEFAULT_MARGIN = timedelta(minutes=5)
# A year sees every kind of long weekend (Easter Monday, Ascension, Christmas), so a walltime that fits none
# of them in this horizon fits nothing.
DEFAULT_HORIZON = timedelta(days=366)
# Past this many skipped windows, the rest are summed up in one note: a 70 h job skips months of nights.
MAX_NOTES = 8

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.lru_cache(maxsize=32)
def _holidays(year: int) -> frozenset[date]:
    # National holidays only: Alsace-Moselle's extra days are not Grid'5000-wide.
    return frozenset(holidays.France(years=year))


def is_working_day(day: date) -> bool:
    """Monday to Friday, except French public holidays."""
    return day.weekday() < 5 and day not in _holidays(day.year)


def _at(day: date, moment: time) -> datetime:
    """``day`` at ``moment`` in Paris, in UTC; a time skipped by DST (02:30 in March) is the instant after it."""
    return datetime.combine(day, moment, tzinfo=PARIS).astimezone(UTC)


def _paris(moment: datetime) -> datetime:
    return moment.astimezone(PARIS)


def _aware(moment: datetime) -> datetime:
    # Like the playbook's dates, a naive datetime is Paris time.
    return (moment if moment.tzinfo else moment.replace(tzinfo=PARIS)).astimezone(UTC)


def label(moment: datetime) -> str:
    """``Tue 14 Jul 19:00`` in Paris time, locale-independent."""
    local = _paris(moment)
    return f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local:%H:%M}"


@dataclass(frozen=True)
class Window:
    """A stretch of non-working time, ``start`` at 19:00 on a working day, ``end`` at 09:00 on the next one."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        # Real seconds: subtracting in UTC counts the hour a DST change adds or removes.
        return int((self.end.astimezone(UTC) - self.start.astimezone(UTC)).total_seconds())

    @property
    def label(self) -> str:
        return f"{label(self.start)} → {label(self.end)}"


def _next_working_day(day: date) -> date:
    following = day + timedelta(days=1)
    while not is_working_day(following):
        following += timedelta(days=1)
    return following


def windows(after: datetime) -> Iterator[Window]:
    """The non-working windows that end after ``after``, in order (the current one first, if inside one)."""
    moment = _aware(after)
    # The window holding ``moment``, or the next one, begins on the last working day before today's date at the
    # latest (today's 19:00 is after a morning ``moment``, whose window began on an earlier working day).
    day = _paris(moment).date() - timedelta(days=1)
    while not is_working_day(day):
        day -= timedelta(days=1)
    while True:
        following = _next_working_day(day)
        window = Window(_paris(_at(day, DAY_END)), _paris(_at(following, DAY_START)))
        if window.end.astimezone(UTC) > moment:
            yield window
        day = following


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
    evening = _at(_paris(start).date(), preferred)
    if evening >= start:
        return evening
    if preferred < DAY_START:
        # A morning time (02:00) means the small hours of that night, after midnight.
        return _at(_paris(start).date() + timedelta(days=1), preferred)
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
    moment = _aware(now)
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
