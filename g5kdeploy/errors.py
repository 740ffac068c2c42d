"""The agent's errors. The CLI catches ``G5kError`` only, and shows it as one line plus a hint.

::

    G5kError                      exit 1
    ├── ConfigError               exit 2  bad playbook, flag, credentials file or run name
    │   ├── CredentialsError      exit 2
    │   └── JobRefused            exit 2  OAR refused a job for something in the playbook (also an ApiError)
    ├── ApiError                  exit 1  the Grid'5000 API (or the simulator) refused or failed
    ├── ReservationError          exit 1  a job ended early, was refused, or would start too late
    ├── DeadlineExceeded          exit 1  a wait ran out of time
    ├── DeployError               exit 1  too few nodes came up on the experiment's system
    ├── RemoteError               exit 1  an SSH operation could not be made at all
    ├── PrometheusError           exit 1  Prometheus refused a query or a snapshot, or could not be reached
    ├── CollectError              exit 1  the run's data could not be brought back
    ├── IncompleteRun             exit 1  the pipeline went to the end with measurements missing
    ├── TestbedError              exit 1  the local testbed could not start or stop a part
    │   └── KernelConfigError     exit 1  an option the experiment needs did not survive the kernel's configuration
    └── ToolError                 exit 1  an external program (make, clang, vng...) failed or ran out of time
"""

from __future__ import annotations


class G5kError(Exception):
    """Root of the agent's errors; ``hint`` says what the user can do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(G5kError):
    exit_code = 2


class CredentialsError(ConfigError):
    pass


class ApiError(G5kError):
    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class ReservationError(G5kError):
    pass


class DeadlineExceeded(G5kError):
    pass


class DeployError(G5kError):
    pass


class TestbedError(G5kError):
    pass


class JobRefused(ConfigError, ApiError):
    """OAR refused a job (a 4xx from ``POST /jobs``): nothing was created, and the playbook must change.

    Bad input (exit 2) that the API reported: ``field`` is the playbook field it is most likely about,
    ``oar_text`` OAR's own words.
    """

    def __init__(self, message: str, *, status: int, field: str, oar_text: str, hint: str | None = None) -> None:
        super().__init__(message, status=status, hint=hint)
        self.field = field
        self.oar_text = oar_text


class KernelConfigError(TestbedError):
    """The kernel's configuration dropped an option the experiment needs (its dependencies are not met)."""


class ToolError(G5kError):
    """An external program failed; ``command`` is its argv, for the user to run again by hand."""

    def __init__(self, message: str, *, command: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.command = command


class CollectError(G5kError):
    """The run's data could not be brought back from the collector."""


class RemoteError(G5kError):
    """An SSH operation could not be made at all (bad arguments, no connection, a refused host key)."""


class PrometheusError(G5kError):
    """Prometheus answered with an error (bad PromQL, admin API disabled, ...) or could not be reached."""

    def __init__(
        self, message: str, *, status: int | None = None, error_type: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.error_type = error_type


class IncompleteRun(G5kError):
    """The pipeline went to the end, but some measurements are missing."""
