"""The two testbeds behind one interface: the real Grid'5000 and the local testbed.

Both hand the phases the same :class:`~g5kdeploy.testbeds.api.Api` (python-grid5000 over HTTP) and a clock
in the API's time; the phases never ask which one they have.
"""

from __future__ import annotations

from typing import Protocol

from g5kdeploy.clock import Clock
from g5kdeploy.results import RunRecord, RunStore
from g5kdeploy.testbeds.api import Api


class Testbed(Protocol):
    clock: Clock

    def open(self, record: RunRecord, store: RunStore) -> Api:
        """Make the API reachable for ``record`` (starting what the testbed needs) and return it."""
        ...

    def connect(self, record: RunRecord) -> Api | None:
        """The API if it can be reached without starting anything (for ``g5k status``), else None."""
        ...

    def close(self, record: RunRecord, store: RunStore) -> None:
        """Stop what :meth:`open` started; called once the run's jobs are released."""
        ...
