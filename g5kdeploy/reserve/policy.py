"""Grid'5000's usage policy for one job: when working-day daytime is, and whether a walltime respects it.

Working days' 09:00-19:00 (Europe/Paris) are kept for interactive use and smaller experiments; nights, weekends
and French public holidays are for long and automated runs. The non-working time is a sequence of windows, each
from 19:00 on a working day to 09:00 on the next working day, so weekends and holidays merge with the nights
around them (Fri 19:00 → Mon 09:00). A long job starts in a window and ends with it. What breaks the policy is
a note, not an error: OAR accepts such jobs, and Grid'5000 grants exceptions to the users who need them.

Arithmetic is done in UTC: Python compares aware datetimes that share a tzinfo on the wall clock, which is wrong
by an hour across a DST change.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import holidays

from g5kdeploy.playbook import PARIS, Reservation
from g5kdeploy.walltime import format_duration

DAY_START = time(9, 0)
DAY_END = time(19, 0)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.lru_cache(maxsize=32)
def _holidays(year: int) -> frozenset[date]:
    # National holidays only: Alsace-Moselle's extra days are not Grid'5000-wide.
    return frozenset(holidays.France(years=year))


def is_working_day(day: date) -> bool:
    """Monday to Friday, except French public holidays."""
    return day.weekday() < 5 and day not in _holidays(day.year)


def paris_at(day: date, moment: time) -> datetime:
    """``day`` at ``moment`` in Paris, in UTC; a time skipped by DST (02:30 in March) is the instant after it."""
    return datetime.combine(day, moment, tzinfo=PARIS).astimezone(UTC)


def as_utc(moment: datetime) -> datetime:
    # Like the playbook's dates, a naive datetime is Paris time.
    return (moment if moment.tzinfo else moment.replace(tzinfo=PARIS)).astimezone(UTC)


def label(moment: datetime) -> str:
    """``Tue 14 Jul 19:00`` in Paris time, locale-independent."""
    local = moment.astimezone(PARIS)
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
    moment = as_utc(after)
    # The window holding ``moment``, or the next one, begins on the last working day before today's date at the
    # latest (today's 19:00 is after a morning ``moment``, whose window began on an earlier working day).
    day = moment.astimezone(PARIS).date() - timedelta(days=1)
    while not is_working_day(day):
        day -= timedelta(days=1)
    while True:
        following = _next_working_day(day)
        window = Window(paris_at(day, DAY_END).astimezone(PARIS), paris_at(following, DAY_START).astimezone(PARIS))
        if window.end.astimezone(UTC) > moment:
            yield window
        day = following


@dataclass(frozen=True)
class PolicyCheck:
    """What the usage policy says of a job: one line for the user, and notes on what is allowed but unwise."""

    summary: str
    notes: list[str] = field(default_factory=list)


def check_walltime(reservation: Reservation, *, now: float) -> PolicyCheck:
    """The walltime against the usage policy, from the reservation's start (else ``now``, the API's clock).

    Breaking the policy is a note, never a refusal: OAR takes such jobs, and Grid'5000 grants exceptions.
    """
    epoch = reservation.reservation_epoch()
    start = datetime.fromtimestamp(epoch if epoch is not None else now, UTC)
    walltime = reservation.walltime_seconds
    end = start + timedelta(seconds=walltime)
    when = f"from {label(start)}" if epoch is not None else f"starting now ({label(start)})"
    lasting = f"walltime {format_duration(walltime)} {when} to {label(end)}"
    window = next(windows(start))
    opens, closes = window.start.astimezone(UTC), window.end.astimezone(UTC)
    if opens <= start:
        if end <= closes:
            return PolicyCheck(f"{lasting}: within the non-working window {window.label}")
        room = format_duration(int((closes - start).total_seconds()))
        fix = (
            f"ask for at most {room} from this start, or book a window that holds the walltime (g5k nightly plan)"
            if epoch is not None
            else "set reservation.reservation to book a window that holds it (g5k nightly plan finds one)"
        )
        return PolicyCheck(
            lasting,
            [
                f"reservation.walltime: the job would run past {label(closes)} into working-day daytime, which "
                f"Grid'5000's usage policy keeps for smaller experiments (long jobs end with the night): {fix}"
            ],
        )
    if end <= opens:
        return PolicyCheck(f"{lasting}: in working-day daytime (09:00-19:00), kept for smaller experiments")
    if end <= closes:
        return PolicyCheck(f"{lasting}: from working-day daytime into the non-working window {window.label}")
    return PolicyCheck(
        lasting,
        [
            f"reservation.walltime: the job spans the whole non-working window {window.label} and goes on into "
            "working-day daytime, which Grid'5000's usage policy keeps for smaller experiments: book a night or "
            "weekend that holds it (reservation.reservation; g5k nightly plan finds one)"
        ],
    )
