"""Settings of one simulator instance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SimConfig:
    """What the simulator serves and how it behaves; every field has a realistic default."""

    reference: Path | None = None
    speed: float = 1.0
    faults: str = ""
    users: dict[str, str] | None = None
    background_load: float = 0.0
    state_file: Path | None = None
    seed: int | None = None
    launch_seconds: float = 5.0
    deploy_seconds: float = 300.0
    deploy_ko_rate: float = 0.0
    deploy_error_rate: float = 0.0
    api_version: str = "stable"
    # Take the caller's login from `X-Api-User-CN`, as g5k-api does behind a Grid'5000 frontend's proxy.
    trust_user_header: bool = False
    # Simulated seconds before the scheduler first sees a waiting job (gives it `scheduled_at` and nodes).
    prediction_delay: float = 0.0
    # The simulated time (epoch seconds) when the simulator starts; default: the wall clock's. A test that
    # depends on the time of day (usage-policy windows) pins it.
    start: float | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        if self.speed <= 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        for name in ("background_load", "deploy_ko_rate", "deploy_error_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.launch_seconds < 0 or self.deploy_seconds < 0:
            raise ValueError("launch_seconds and deploy_seconds must be >= 0")
        if self.prediction_delay < 0:
            raise ValueError(f"prediction_delay must be >= 0, got {self.prediction_delay}")
        if not self.api_version or "/" in self.api_version:
            raise ValueError(f"api_version must be a single path segment, got {self.api_version!r}")
