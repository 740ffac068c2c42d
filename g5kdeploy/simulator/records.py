"""Jobs and deployments as the simulator stores them, with their persistent form."""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import Any

FINAL_STATES = frozenset({"terminated", "error"})
ACTIVE_STATES = frozenset({"launching", "running"})
_SLEEP = re.compile(r"^\s*sleep\s+(\d+(?:\.\d+)?)\s*$")
_FALSE = {"", "false", "no", "0", "off"}


def as_flag(value: object) -> bool:
    """Form bodies (and some JSON clients) send flags as strings, where `bool("false")` would be True."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    return bool(value)


@functools.lru_cache(maxsize=4096)  # called for every live job at every replayed event
def sleep_seconds(command: str) -> float | None:
    """How long `sleep N` runs; other commands are assumed to hold their nodes until the walltime."""
    match = _SLEEP.match(command)
    return float(match.group(1)) if match else None


@dataclass
class Job:
    uid: int
    site: str
    user: str
    command: str
    resources: str
    properties: str
    walltime: int
    submitted_at: float
    types: list[str] = field(default_factory=list)
    queue: str = "default"
    project: str = "default"
    name: str | None = None
    directory: str | None = None
    reservation: float | None = None
    state: str = "waiting"
    scheduled_at: float | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    exit_code: int | None = None
    nodes: list[str] = field(default_factory=list)
    # KaVLAN VLAN ids (as strings, as OAR lists them) the job holds beside its nodes.
    vlans: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    message: str = "FIFO scheduling OK"
    background: bool = False
    # Sum of the accepted walltime changes (negative for decreases): what oarwalltime reports as granted.
    walltime_granted: int = 0

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def end_time(self, launch_seconds: float) -> tuple[float, str]:
        """When a started job ends and in which state (`error` when the walltime kills it)."""
        assert self.started_at is not None
        limit = self.started_at + self.walltime
        run = sleep_seconds(self.command)
        if run is not None and self.started_at + launch_seconds + run <= limit:
            return self.started_at + launch_seconds + run, "terminated"
        return limit, "error"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(**data)


@dataclass
class Deployment:
    uid: str
    site: str
    user: str
    nodes: list[str]
    environment: str
    created_at: float
    end_at: float
    # Drawn at creation so a seeded run is reproducible whatever the polling pattern.
    planned_status: str
    planned_ko: list[str]
    status: str = "processing"
    updated_at: float = 0.0
    key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        return cls(**data)
