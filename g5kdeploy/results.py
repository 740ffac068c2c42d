"""Run records: ``results/<run-id>/run.json``, written atomically, holding the job ledger.

The ledger is the agent's promise never to leak a reservation: a job's intent (site and name) is on disk
before its POST leaves, and its uid right after the answer, so ``g5k release`` can always find it again,
by uid or, after a crash between the two, by name.
"""

from __future__ import annotations

import fcntl
import json
import secrets
import string
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from g5kdeploy.errors import ConfigError
from g5kdeploy.files import atomic_write_text
from g5kdeploy.log import get_logger
from g5kdeploy.plans import StoredPlan
from g5kdeploy.playbook import Playbook

log = get_logger(__name__)
RUN_FILE = "run.json"
FINAL_STATES = frozenset({"terminated", "error"})
PhaseState = Literal["running", "done", "failed"]


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(playbook_name: str, now: datetime | None = None) -> str:
    """``<playbook>-<UTC yyyymmddThhmmss>-<4 random chars>``, unique per run and sortable by time."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))
    return f"{playbook_name}-{moment}-{suffix}"


class JobPart(BaseModel):
    """One part of an OAR request: its cluster (None: any), properties, and the roles it holds with their counts."""

    cluster: str | None = None
    properties: str | None = None
    roles: list[tuple[str, int]] = []


class JobEntry(BaseModel):
    """One OAR job of the run, as far as the agent knows it."""

    site: str
    name: str
    resources: str
    walltime: int
    uid: int | None = None
    state: str = "intent"
    recorded_at: str = Field(default_factory=utc_now)
    submitted_at: int | None = None
    scheduled_at: int | None = None
    started_at: int | None = None
    nodes: list[str] = []
    types: list[str] = []
    #: The OAR request's parts, to map nodes back to roles.
    parts: list[JobPart] = []
    released: bool = False

    @property
    def live(self) -> bool:
        """Whether this job may still hold (or come to hold) nodes."""
        return not self.released and self.state not in FINAL_STATES

    @property
    def label(self) -> str:
        return f"{self.site}/{self.uid if self.uid is not None else '?' + self.name}"


class PhaseRecord(BaseModel):
    state: PhaseState
    started_at: str
    finished_at: str | None = None
    error: str | None = None


class GuestPorts(BaseModel):
    """The host ports forwarded to each VM guest, on the guest's own loopback address."""

    model_config = {"frozen": True}

    ssh: int
    node_exporter: int
    ebpf_exporter: int


class LocalTestbedRecord(BaseModel):
    """What the local testbed started for this run, so that another process can stop it."""

    simulator_pid: int | None = None
    simulator_url: str | None = None
    simulator_state: str | None = None
    sshd_pids: dict[str, int] = {}
    #: The VM testbed's QEMU guests (the PIDs of the vng processes that run them).
    guest_pids: dict[str, int] = {}
    guest_ports: GuestPorts | None = None
    #: Which accelerator the guests run under, and why (VM testbed).
    accelerator: str | None = None
    #: The experiment's kernel the guests boot: its cache directory (VM testbed).
    kernel_dir: str | None = None
    addresses: dict[str, str] = {}
    monitoring_pids: list[int] = []
    #: The collector's Prometheus and the nodes' exporters, picked free for this run unless the playbook pins one.
    prometheus_port: int | None = None
    exporter_port: int | None = None

    def forget_nodes(self) -> None:
        """The run moves to other nodes: what was started for the old ones is history (and already stopped)."""
        self.sshd_pids, self.guest_pids, self.addresses, self.monitoring_pids = {}, {}, {}, []
        self.guest_ports = None
        self.prometheus_port = self.exporter_port = None


class NodeAccess(BaseModel):
    """How later phases reach the run's nodes: ``ssh -F ssh_config <node name>``, and where to work there."""

    ssh_config: str
    workdirs: dict[str, str]
    #: The host keys ssh_config checks against (fabric does not read ssh_config's UserKnownHostsFile).
    known_hosts: str | None = None

    def workdir_env(self, nodes: list[str]) -> dict[str, str] | None:
        """``G5K_NODE_DIR`` for a command on ``nodes`` that share one working directory (Grid'5000).

        Local testbed nodes each have their own directory, which their sshd already exports.
        """
        shared = {self.workdirs[node] for node in nodes}
        return {"G5K_NODE_DIR": shared.pop()} if len(shared) == 1 else None


class NodeFacts(BaseModel):
    """What a node said about itself when its deploy was verified."""

    boot_id: str | None = None
    cmdline: str | None = None
    kernel: str | None = None
    #: Where /run/current-system points (NixOS).
    system: str | None = None
    #: The kernel options asked for, as /proc/config.gz has them (name without CONFIG_ → value).
    config: dict[str, str] = {}
    #: The eBPF exporter's metric lines that verification looks at.
    metrics: list[str] = []
    #: Pushed file (relative to the node's working directory) → its sha256 on the node.
    sha256: dict[str, str] = {}


class NodeDeployState(BaseModel):
    """One node's deploy, as the ledger keeps it between attempts and reruns."""

    state: Literal["pending", "verified", "failed", "dropped"] = "pending"
    attempts: int = 0
    reason: str | None = None
    log_tail: list[str] = []
    facts: NodeFacts = NodeFacts()
    #: The Kadeploy deployment that installed the node (``site/uid``), where one did.
    deployment: str | None = None


class DeployRecord(BaseModel):
    method: str
    #: A per-run nonce put on the kernel command line of booted nodes, so a node still on its old system shows.
    marker: str
    plan: StoredPlan = None
    nodes: dict[str, NodeDeployState] = {}

    @property
    def deployments(self) -> list[str]:
        """The Kadeploy deployments of the run's nodes, as ``site/uid``."""
        return sorted({state.deployment for state in self.nodes.values() if state.deployment})


class ExportSummary(BaseModel):
    """One Prometheus query exported as CSV: its size, and why it is empty when it is."""

    rows: int
    series: int
    empty: str | None = None


class CollectedRecord(BaseModel):
    """The collect phase's progress and findings, so a collect cut short resumes and the report can tell."""

    #: The collector's snapshot name, the fetched tarball and its sha256, and whether the node's copy is gone.
    snapshot: str | None = None
    tarball: str | None = None
    sha256: str | None = None
    tree_sha256: str | None = None
    removed: bool = False
    #: What the user must know about the data (targets not scraped, queries that returned nothing).
    warnings: list[str] = []
    exports: dict[str, ExportSummary] = {}


class RunRecord(BaseModel):
    run_id: str
    created_at: str = Field(default_factory=utc_now)
    playbook_path: str
    playbook: Playbook
    testbed: str
    api_url: str
    phases: dict[str, PhaseRecord] = {}
    jobs: list[JobEntry] = []
    #: Jobs of earlier reservations of this run (ended before a resume reserved again).
    past_jobs: list[JobEntry] = []
    roles: dict[str, list[str]] = {}
    local: LocalTestbedRecord | None = None
    access: NodeAccess | None = None
    deploy: DeployRecord | None = None
    #: Commands that switch the eBPF program on and off on a node, once a deploy phase has provided them.
    ebpf_toggle: dict[str, str] | None = None
    #: The workload's artifacts a deploy phase put on the nodes (in the system, or in the working directory's
    #: artifacts/); the bench phase pushes the others itself. None: no deploy phase ran.
    provided: list[str] | None = None
    #: For nightly runs: the start of the night's window (local testbed: the date), naming that night's run.
    nightly_slot: str | None = None
    collected: CollectedRecord = CollectedRecord()
    released_at: str | None = None

    def live_jobs(self) -> list[JobEntry]:
        return [job for job in self.jobs if job.live]

    def job_for(self, site: str) -> JobEntry | None:
        return next((job for job in self.jobs if job.site == site), None)

    @property
    def phase(self) -> str:
        """The last phase reached and its state, e.g. ``reserve:done`` or ``released``."""
        if self.released_at:
            return "released"
        if not self.phases:
            return "created"
        name, record = list(self.phases.items())[-1]
        return f"{name}:{record.state}"


class RunStore:
    """The runs under one results directory."""

    def __init__(self, results_dir: Path) -> None:
        # Absolute: paths in a run reach nodes and daemons whose working directory is not ours.
        self.results_dir = results_dir.absolute()

    def directory(self, run_id: str) -> Path:
        return self.results_dir / run_id

    def create(self, record: RunRecord) -> Path:
        directory = self.directory(record.run_id)
        directory.mkdir(parents=True, exist_ok=False)
        self.save(record)
        return directory

    def save(self, record: RunRecord) -> None:
        text = json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
        atomic_write_text(self.directory(record.run_id) / RUN_FILE, text)

    def load(self, run: str) -> RunRecord:
        """A run by id, by a prefix of one id, by ``latest``, or by the path of its directory."""
        path = Path(run)
        directory = path if (path / RUN_FILE).exists() else self.directory(self.resolve(run))
        try:
            return RunRecord.model_validate_json((directory / RUN_FILE).read_bytes())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "the top level"
            raise ConfigError(
                f"{directory / RUN_FILE} is damaged or from another version of g5kdeploy: "
                f"{where}: {first['msg']} ({exc.error_count()} problem{'s' if exc.error_count() != 1 else ''})",
                hint="start a new run from the playbook; this one's files are left as they are",
            ) from None

    def resolve(self, run: str) -> str:
        """The id of the run that ``run`` names: an id, ``latest``, or the start of exactly one id."""
        ids = self.run_ids()
        if run == "latest" and ids:
            return ids[-1]
        if run in ids:
            return run
        matches = [run_id for run_id in ids if run_id.startswith(run)] if run else []
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ConfigError(
                f"{run!r} names {len(matches)} runs: {', '.join(matches[-5:])}", hint="give more of the run id"
            )
        known = ", ".join(ids[-5:]) or "none yet"
        raise ConfigError(
            f"no run {run!r} in {self.results_dir}", hint=f"recent runs: {known} (or latest, or pass --results-dir)"
        )

    @contextmanager
    def locked(self, run_id: str) -> Iterator[None]:
        """Serialise the agents that work on one run (a reserve and a release, say)."""
        lock_path = self.directory(run_id) / ".lock"
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def run_ids(self) -> list[str]:
        if not self.results_dir.is_dir():
            return []
        return sorted(
            (entry.name for entry in self.results_dir.iterdir() if (entry / RUN_FILE).exists()),
            key=lambda name: (self._created(name), name),
        )

    def _created(self, run_id: str) -> str:
        try:
            return str(json.loads((self.directory(run_id) / RUN_FILE).read_text()).get("created_at", ""))
        except (OSError, json.JSONDecodeError):
            return ""

    def latest(self) -> RunRecord:
        ids = self.run_ids()
        if not ids:
            raise ConfigError(f"no runs in {self.results_dir}", hint="start one with: g5k reserve PLAYBOOK")
        return self.load(ids[-1])

    def all(self) -> list[RunRecord]:
        """Every readable run; one that cannot be read is logged and left out, not allowed to hide the others."""
        records = []
        for run_id in self.run_ids():
            try:
                records.append(self.load(run_id))
            except ConfigError as exc:
                log.warning("run left out", run=run_id, error=str(exc))
        return records


def read_record(run_dir: Path) -> RunRecord | None:
    """``run_dir``'s record, or None (logged) when it is missing, damaged or of another format.

    Reports are written after the fact, often from a run that ended badly: a damaged record must cost the
    report its sections about the run, never the whole report.
    """
    try:
        return RunRecord.model_validate_json((run_dir / RUN_FILE).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        log.warning("unreadable run record, left out", path=str(run_dir / RUN_FILE), error=str(exc).splitlines()[0])
        return None


def start_phase(record: RunRecord, name: str) -> None:
    record.phases[name] = PhaseRecord(state="running", started_at=utc_now())


def finish_phase(record: RunRecord, name: str, *, error: str | None = None) -> None:
    phase = record.phases.setdefault(name, PhaseRecord(state="running", started_at=utc_now()))
    phase.state = "failed" if error else "done"
    phase.finished_at = utc_now()
    phase.error = error
