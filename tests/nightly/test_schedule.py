"""Non-working windows and the first slot that holds a walltime, with French holidays and DST changes."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta

import pytest

from g5kdeploy.errors import ConfigError
from g5kdeploy.nightly.phase import SUBMIT_SECONDS, plan_night
from g5kdeploy.nightly.schedule import Slot, explain, next_slot
from g5kdeploy.playbook import PARIS, parse_playbook
from g5kdeploy.reserve.policy import is_working_day, windows
from g5kdeploy.reserve.policy import paris_at as _at

HOUR = 3600


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def real_hours(start: datetime, end: datetime) -> float:
    return (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() / HOUR


def first_window(now: datetime) -> tuple[datetime, datetime]:
    window = next(windows(now))
    return window.start, window.end


def test_working_days() -> None:
    assert is_working_day(date(2026, 11, 24))  # a Tuesday
    assert not is_working_day(date(2026, 11, 28))  # Saturday
    assert not is_working_day(date(2026, 7, 14))  # Bastille Day, a Tuesday
    assert not is_working_day(date(2027, 5, 6))  # Ascension, next year's holidays too


def test_weekday_evening() -> None:
    slot = next_slot(paris(2026, 11, 24, 17, 0), 4 * HOUR)
    assert slot.start == paris(2026, 11, 24, 19, 5)
    assert slot.end == paris(2026, 11, 24, 23, 5)
    assert (slot.window_start, slot.window_end) == (paris(2026, 11, 24, 19), paris(2026, 11, 25, 9))
    assert slot.walltime == 4 * HOUR


def test_inside_the_night_starts_soon_never_in_the_past() -> None:
    now = paris(2026, 11, 24, 21, 0)
    slot, notes = explain(now, 4 * HOUR)
    assert slot.start >= now + timedelta(minutes=5)
    assert slot.start <= now + timedelta(minutes=6)
    assert slot.end <= paris(2026, 11, 25, 9)
    assert slot.window_start == paris(2026, 11, 24, 19)
    assert notes == []
    # Seconds are rounded up to a whole minute, still after the margin.
    odd = next_slot(paris(2026, 11, 24, 21, 0, 30), HOUR)
    assert odd.start == paris(2026, 11, 24, 21, 6)


def test_what_is_left_of_tonight_is_too_short() -> None:
    slot, notes = explain(paris(2026, 11, 25, 5, 0), 10 * HOUR)
    assert slot.start == paris(2026, 11, 25, 19, 5)
    assert len(notes) == 1
    assert "Tue 24 Nov 19:00 → Wed 25 Nov 09:00 has 3:55:00 left after Wed 25 Nov 05:05" in notes[0]


def test_starts_earlier_than_preferred_to_end_with_the_window() -> None:
    slot, notes = explain(paris(2026, 11, 24, 12), 13 * HOUR + 58 * 60)
    assert slot.start == paris(2026, 11, 24, 19, 2)
    assert slot.end == paris(2026, 11, 25, 9)
    assert "rather than Tue 24 Nov 19:05" in notes[0]


def test_preferred_times() -> None:
    # A daytime preference means "as early as allowed"; a morning one means that night's small hours.
    assert next_slot(paris(2026, 11, 24, 12), HOUR, preferred=time(12)).start == paris(2026, 11, 24, 19)
    assert next_slot(paris(2026, 11, 24, 12), HOUR, preferred=time(2)).start == paris(2026, 11, 25, 2)
    assert next_slot(paris(2026, 11, 24, 12), HOUR, preferred=time(22)).start == paris(2026, 11, 24, 22)


def test_friday_weekend() -> None:
    now = paris(2026, 11, 27, 10)
    slot = next_slot(now, 30 * HOUR)
    assert (slot.start, slot.end) == (paris(2026, 11, 27, 19, 5), paris(2026, 11, 29, 1, 5))
    assert (slot.window_start, slot.window_end) == (paris(2026, 11, 27, 19), paris(2026, 11, 30, 9))
    assert next_slot(now, 60 * HOUR).end == paris(2026, 11, 30, 7, 5)
    # 70 h fits no plain weekend: the next long one is Christmas (Thu 24 Dec 19:00 → Mon 28 Dec 09:00, 86 h).
    slot, notes = explain(now, 70 * HOUR)
    assert slot.window_start == paris(2026, 12, 24, 19)
    assert slot.window_end == paris(2026, 12, 28, 9)
    assert notes[0] == "Fri 27 Nov 19:00 → Mon 30 Nov 09:00 is 62:00:00, too short for 70:00:00"
    # Weeks of skipped nights are summed up, not listed one by one.
    assert len(notes) == 9
    assert re.match(r"… and \d+ more windows too short for 70:00:00", notes[-1])


def test_walltime_no_window_holds_is_refused_naming_the_longest() -> None:
    with pytest.raises(ConfigError) as error:
        next_slot(paris(2026, 11, 27, 10), 100 * HOUR)
    message = str(error.value)
    assert "100:00:00" in message
    # All Saints' 2027 is a Monday, and the clocks go back that Sunday: Fri 19:00 → Tue 09:00 is 87 real hours.
    assert "in the 366 days after Fri 27 Nov 10:00" in message
    assert "the longest is Fri 29 Oct 19:00 → Tue 2 Nov 09:00 (87:00:00)" in message
    assert error.value.hint and "62 h" in error.value.hint
    with pytest.raises(ConfigError):
        next_slot(paris(2026, 11, 27, 10), 0)


def test_bastille_day_merges_monday_night_to_wednesday() -> None:
    # 2026-07-14 is a Tuesday: Monday is a working day, Tuesday is not.
    assert first_window(paris(2026, 7, 13, 10)) == (paris(2026, 7, 13, 19), paris(2026, 7, 15, 9))
    slot = next_slot(paris(2026, 7, 13, 10), 30 * HOUR)
    assert (slot.start, slot.end) == (paris(2026, 7, 13, 19, 5), paris(2026, 7, 15, 1, 5))


def test_christmas_friday_merges_thursday_to_monday() -> None:
    assert first_window(paris(2026, 12, 24, 10)) == (paris(2026, 12, 24, 19), paris(2026, 12, 28, 9))
    assert real_hours(*first_window(paris(2026, 12, 24, 10))) == 86


def test_on_a_weekend_the_current_window_is_used() -> None:
    now = paris(2026, 11, 28, 15)  # Saturday afternoon
    assert first_window(now) == (paris(2026, 11, 27, 19), paris(2026, 11, 30, 9))
    slot = next_slot(now, 10 * HOUR)
    assert slot.start == paris(2026, 11, 28, 15, 5)
    # Monday 07:00 is still in the weekend window.
    assert first_window(paris(2026, 11, 30, 7)) == (paris(2026, 11, 27, 19), paris(2026, 11, 30, 9))


def test_too_long_for_a_night_waits_for_the_weekend() -> None:
    slot, notes = explain(paris(2026, 11, 24, 10), 20 * HOUR)
    assert (slot.start, slot.end) == (paris(2026, 11, 27, 19, 5), paris(2026, 11, 28, 15, 5))
    assert notes == [
        "Tue 24 Nov 19:00 → Wed 25 Nov 09:00 is 14:00:00, too short for 20:00:00",
        "Wed 25 Nov 19:00 → Thu 26 Nov 09:00 is 14:00:00, too short for 20:00:00",
        "Thu 26 Nov 19:00 → Fri 27 Nov 09:00 is 14:00:00, too short for 20:00:00",
    ]


@pytest.mark.parametrize(
    ("friday", "hours"),
    [((2026, 3, 27), 61), ((2026, 10, 23), 63), ((2026, 11, 27), 62)],
    ids=["spring-forward", "fall-back", "plain"],
)
def test_dst_weekends_count_real_hours(friday: tuple[int, int, int], hours: int) -> None:
    now = paris(*friday, 10)
    start, end = first_window(now)
    assert (start.hour, end.hour, end.weekday()) == (19, 9, 0)
    assert real_hours(start, end) == hours
    # A job fills the weekend to the real hour, and a minute more does not fit.
    slot = next_slot(now, hours * HOUR, preferred=time(19))
    assert (slot.start, slot.end) == (start, end)
    assert slot.walltime == hours * HOUR
    assert next_slot(now, hours * HOUR + 60, preferred=time(19)).window_start != start


def test_a_time_dst_skips_is_the_instant_after() -> None:
    # Windows start on a working day, so a first night is never a DST night; the conversion still must not fail.
    assert _at(date(2026, 3, 29), time(2, 30)) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert _at(date(2026, 10, 25), time(2, 30)) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30
    slot = next_slot(paris(2026, 3, 27, 10), HOUR, preferred=time(2, 30))
    assert slot.start == paris(2026, 3, 28, 2, 30)


def test_json_and_reservation() -> None:
    slot = next_slot(paris(2026, 10, 23, 10), 60 * HOUR)
    data = json.loads(json.dumps(slot.to_json()))
    assert data["start"] == "2026-10-23T19:05:00+02:00"
    assert data["end"] == "2026-10-26T06:05:00+01:00"  # after the fall-back: 60 real hours
    assert data["window"] == {
        "start": "2026-10-23T19:00:00+02:00",
        "end": "2026-10-26T09:00:00+01:00",
        "duration": "63:00:00",
    }
    assert data["walltime"] == "60:00:00"
    assert data["reservation"] == slot.oar_reservation == "2026-10-23 19:05:00"
    for key in ("start", "end"):
        assert datetime.fromisoformat(data[key]).utcoffset() is not None
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", slot.oar_reservation)


def test_aware_now_in_any_timezone_and_naive_is_paris() -> None:
    utc = next_slot(datetime(2026, 11, 24, 16, 0, tzinfo=UTC), 4 * HOUR)  # 17:00 in Paris
    naive = next_slot(datetime(2026, 11, 24, 17, 0), 4 * HOUR)
    assert utc == naive
    assert utc.start == paris(2026, 11, 24, 19, 5)
    assert utc.start.tzinfo == PARIS
    assert isinstance(utc, Slot)


def test_horizon_bounds_the_search() -> None:
    with pytest.raises(ConfigError, match="longest is Tue 24 Nov 19:00"):
        next_slot(paris(2026, 11, 24, 10), 20 * HOUR, horizon=timedelta(days=2))


def test_a_faster_clock_leaves_the_agent_its_wall_seconds_to_submit() -> None:
    """At simulator speed 600, 5 minutes of API time are half a wall second: the slot that starts now must
    leave the agent its few wall seconds to submit, or OAR refuses it as already past."""
    playbook = parse_playbook(
        "version: 2\nname: n\ntestbed: grid5000\n"
        "reservation: {site: nancy, roles: {node: {nodes: 1, cluster: gros}}, walltime: '1:00'}\n"
        "nightly: {start: '19:05', walltime: '2:00'}\n"
    )
    now = paris(2026, 11, 24, 21, 0)
    wall, _ = plan_night(playbook, now)
    assert now + timedelta(minutes=5) <= wall.start <= now + timedelta(minutes=6)
    fast, _ = plan_night(playbook, now, clock_speed=600)
    assert fast.start >= now + timedelta(seconds=SUBMIT_SECONDS * 600)
