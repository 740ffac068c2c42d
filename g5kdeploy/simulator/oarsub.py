"""Parsing of what `oarsub` receives through the API: the `-l` resource string and the reservation date."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
DEFAULT_WALLTIME = 3600
ALL = -1
_NODE_LEVELS = {"nodes", "node", "host", "network_address"}
_CORE_LEVELS = {"cpu", "core", "gpu", "thread"}
_NON_NODE = {"subnet", "disk"}
_WALLTIME = re.compile(r"(?:^|,)\s*walltime\s*=\s*(\d+)(?::(\d+))?(?::(\d+))?\s*$")
_LEVEL = re.compile(r"^\s*([a-z_0-9]+)\s*=\s*(\d+|ALL|BEST)\s*$", re.IGNORECASE)
_RESERVATION = re.compile(r"^\s*(?:(\d{4})-(\d{1,2})-(\d{1,2})\s+)?(\d{1,2})(?::(\d{1,2}))?(?::(\d{1,2}))?\s*$")


class ResourceSyntaxError(ValueError):
    """A `resources` string oarsub cannot parse."""


@dataclass(frozen=True)
class Part:
    """One `+`-separated part of a request: `count` whole nodes (or VLANs) matching `sql` (ALL = every match)."""

    sql: str
    count: int
    same_cluster: bool = False
    vlan: bool = False


@dataclass(frozen=True)
class Request:
    parts: tuple[Part, ...]
    walltime: int


def parse_walltime(text: str) -> int:
    """`H`, `H:MM` or `H:MM:SS` (hours may exceed 24) to seconds."""
    match = re.fullmatch(r"\s*(\d+)(?::(\d+))?(?::(\d+))?\s*", text)
    if not match:
        raise ResourceSyntaxError(f"Bad walltime: {text}")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _split_outside_braces(text: str, sep: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _parse_part(text: str) -> Part:
    text = text.strip()
    sql = ""
    if text.startswith("{"):
        end = text.find("}")
        if end < 0:
            raise ResourceSyntaxError(f"unbalanced braces in {text!r}")
        sql, text = text[1:end].strip(), text[end + 1 :].lstrip("/ ")
    count: int | None = None
    same_cluster = False
    vlan = False
    for level in (lvl for lvl in text.split("/") if lvl.strip()):
        match = _LEVEL.match(level)
        if not match:
            raise ResourceSyntaxError(f"cannot parse resource level {level.strip()!r}")
        name, value = match.group(1).lower(), match.group(2).upper()
        number = ALL if value in ("ALL", "BEST") else int(value)
        if name in _NON_NODE or name.startswith("slash_"):
            # Dropping the part would hand out a job without the VLAN/subnet/disk the caller relies on.
            raise ResourceSyntaxError(f"{name} resources are not allocated by the simulator")
        if name == "vlan":
            # `{type='kavlan-local'}/vlan=1`: the part is VLANs, of the type its braces name.
            count, vlan = number, True
        elif name in _NODE_LEVELS and not vlan:
            count = number
        elif name == "cluster":
            same_cluster = number == 1
        elif name not in _CORE_LEVELS and name != "switch":
            raise ResourceSyntaxError(f"unknown resource type {name!r}")
    if count is None:
        # Whole nodes only: a bare core/cpu request still takes one node.
        count = 1
    if count == 0:
        raise ResourceSyntaxError("a resource count must be positive")
    return Part(sql, count, same_cluster, vlan)


def parse_resources(text: str | None) -> Request:
    """Parse OAR's `-l` syntax; the walltime must be the last item and defaults to one hour."""
    text = (text or "").strip() or "nodes=1"
    walltime = DEFAULT_WALLTIME
    match = _WALLTIME.search(text)
    if match:
        hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
        walltime = hours * 3600 + minutes * 60 + seconds
        text = text[: match.start()].strip() or "nodes=1"
    if "walltime" in text:
        raise ResourceSyntaxError("walltime must be the last item of the resource request")
    if walltime <= 0:
        raise ResourceSyntaxError("walltime must be positive")
    parts = tuple(_parse_part(t) for t in _split_outside_braces(text, "+"))
    return Request(parts, walltime)


class ReservationDateError(ValueError):
    """A reservation oarsub refuses; `parts` names the invalid dates: `start`, `end` or both."""

    def __init__(self, parts: tuple[str, ...], text: str) -> None:
        super().__init__(f"{' and '.join(parts)}: {text}")
        self.parts = parts


def _paris_epoch(text: str, now: float) -> float | None:
    """Paris-local `[YYYY-MM-DD ]hh[:mm[:ss]]` to epoch seconds, None if it is no valid date.

    At the DST changes: a wall time skipped in spring (02:30 on the last Sunday of March) does not
    exist and is refused like a malformed date; a wall time seen twice in autumn (02:30 on the last
    Sunday of October) means its first occurrence, still in summer time (`fold=0`).
    """
    match = _RESERVATION.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second = match.groups()
    today = datetime.fromtimestamp(now, PARIS)
    try:
        naive = datetime(
            int(year) if year else today.year,
            int(month) if month else today.month,
            int(day) if day else today.day,
            int(hour),
            int(minute or 0),
            int(second or 0),
        )
    except ValueError:
        return None
    moment = naive.replace(tzinfo=PARIS, fold=0)
    try:
        if moment.astimezone(UTC).astimezone(PARIS).replace(tzinfo=None) != naive:
            return None
    except OverflowError:  # the first hours of year 1 have no UTC equivalent
        return None
    return moment.timestamp()


def parse_window(text: str, now: float) -> tuple[float, float | None]:
    """`start[, end]` to epoch seconds; ReservationDateError naming every invalid date.

    The start may be `now`, spelt exactly so: g5k-api compares it unstripped and case-sensitively.
    """
    start_text, _, end_text = text.partition(",")
    start = now if start_text == "now" else _paris_epoch(start_text, now)
    end = _paris_epoch(end_text, now) if end_text else None
    bad = []
    if start is None:
        bad.append("start")
    if end_text and end is None:
        bad.append("end")
    if start is None or bad:
        raise ReservationDateError(tuple(bad), text)
    return start, end


def parse_reservation(text: str, now: float) -> float:
    """The start of a reservation (see `parse_window`)."""
    return parse_window(text, now)[0]


def paris_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, PARIS).strftime("%Y-%m-%d %H:%M:%S")
