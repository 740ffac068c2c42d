"""Grid'5000 itself: the public API (or whatever ``G5K_API_URL`` names) with the user's credentials."""

from __future__ import annotations

from collections.abc import Mapping

from g5kdeploy.clock import Clock, WallClock
from g5kdeploy.credentials import resolve_endpoint
from g5kdeploy.errors import CredentialsError
from g5kdeploy.results import RunRecord, RunStore
from g5kdeploy.testbeds.api import Api


class Grid5000Testbed:
    def __init__(self, *, env: Mapping[str, str] | None = None, clock: Clock | None = None) -> None:
        self._env = env
        self.clock: Clock = clock or WallClock()

    def open(self, record: RunRecord, store: RunStore) -> Api:  # noqa: ARG002 - nothing to start
        endpoint = resolve_endpoint(env=self._env)
        return Api(endpoint)

    def connect(self, record: RunRecord) -> Api | None:  # noqa: ARG002 - same API for every run
        try:
            return Api(resolve_endpoint(env=self._env), attempts=1)
        except CredentialsError:
            return None

    def close(self, record: RunRecord, store: RunStore) -> None:
        """Nothing of ours runs outside the jobs, which the release phase deletes."""
