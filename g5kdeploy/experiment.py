"""The agent from Python: one run of a playbook, phase by phase, as the ``g5k`` commands drive it.

::

    from g5kdeploy import Experiment

    with Experiment("playbooks/statx-local.yaml", results_dir="results") as exp:
        exp.reserve()
        print(exp.run("uname -r", role="exporter"))   # {node: CommandResult}
        exp.deploy(); exp.bench(); exp.collect()

Each method calls the library function its command calls (:func:`~g5kdeploy.reserve.phase.reserve`,
:func:`~g5kdeploy.deploy.phase.run_deploy`, :func:`~g5kdeploy.bench.phase.run_bench`,
:func:`~g5kdeploy.collect.phase.run_collect`, :func:`~g5kdeploy.pipeline.release`), on the same run record in
``results_dir``, so ``g5k status``, ``g5k bench --run`` or ``g5k release`` work on it too. Leaving the ``with`` block
releases the run's jobs and daemons, also on an exception, Ctrl-C or SIGTERM (unless ``keep=True``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

import structlog

from g5kdeploy.bench.phase import BenchSummary, run_bench
from g5kdeploy.collect.phase import CollectSummary, run_collect
from g5kdeploy.credentials import resolve_endpoint
from g5kdeploy.deploy.phase import DeploySummary, run_deploy
from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.log import configure, get_logger
from g5kdeploy.pipeline import release
from g5kdeploy.playbook import LOCAL_TESTBEDS, Playbook, load_playbook
from g5kdeploy.remote import CommandResult, SshRunner
from g5kdeploy.reserve.phase import check_pinned, create_run, reserve
from g5kdeploy.reserve.release import Released
from g5kdeploy.results import RunRecord, RunStore
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.testbeds import Testbed, testbed_for

log = get_logger(__name__)
_Handler = Callable[[int, FrameType | None], object] | int | None
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Experiment:
    """One run of a playbook: reserve, run commands on its nodes, deploy, bench, collect, release.

    ``Experiment(playbook)`` reads and checks the playbook (a :class:`~g5kdeploy.errors.ConfigError` names the
    field, as ``g5k`` does); the run is created by :meth:`reserve`. ``Experiment(run="latest")`` takes up a run
    already in ``results_dir`` (an id, the start of one, ``latest`` or its directory). With ``keep=True`` the
    jobs outlive the ``with`` block (``g5k release RUN`` later). ``allow_unlocked=True`` is ``--allow-unlocked``:
    :meth:`reserve` then goes ahead with an nxc deploy to Grid'5000 although no committed flake.lock pins its inputs.
    """

    def __init__(
        self,
        playbook: str | Path | None = None,
        *,
        results_dir: str | Path = "results",
        run: str | None = None,
        keep: bool = False,
        allow_unlocked: bool = False,
    ) -> None:
        if (playbook is None) == (run is None):
            raise ConfigError("Experiment: give a playbook to start a run, or run= to take one up (not both)")
        if not structlog.is_configured():
            # Left alone, structlog would print to stdout and mask no secret: the agent's own set-up, on stderr.
            configure()
        self.store = RunStore(Path(results_dir))
        self.keep = keep
        self.allow_unlocked = allow_unlocked
        self.record: RunRecord | None = self.store.load(run) if run is not None else None
        self.playbook_path = Path(playbook) if playbook is not None else None
        self.playbook: Playbook = (
            load_playbook(Path(playbook)) if playbook is not None else self._require("playbook").playbook
        )
        self.testbed: Testbed = testbed_for(self.playbook.testbed)
        self._runner: SshRunner | None = None
        self._released = False
        self._handlers: dict[int, _Handler] | None = None

    # The run ------------------------------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self._require("run_id").run_id

    @property
    def directory(self) -> Path:
        """The run's results directory (``run.json``, bench results, the report)."""
        return self.store.directory(self.run_id)

    @property
    def roles(self) -> dict[str, list[str]]:
        """Each role's nodes, once reserved."""
        return dict(self._require("roles").roles)

    def nodes(self, role: str | None = None) -> list[str]:
        """The nodes of ``role``, or every node of the run."""
        roles = self.roles
        if role is None:
            return sorted({node for members in roles.values() for node in members})
        if role not in roles:
            raise ConfigError(f"role {role!r} is not in the run; its roles: {', '.join(sorted(roles))}")
        return list(roles[role])

    # The phases ---------------------------------------------------------------------------------------------

    def reserve(self) -> dict[str, list[str]]:
        """``g5k reserve``: the playbook's jobs, running, and each role's nodes (the run is created first)."""
        check_pinned(self.playbook, allow_unlocked=self.allow_unlocked)
        if self.record is None:
            assert self.playbook_path is not None
            # As `g5k reserve` does: the local testbeds' simulator URL is only known once it runs.
            api_url = "local simulator" if self.playbook.testbed in LOCAL_TESTBEDS else resolve_endpoint().url
            self.record = create_run(self.store, self.playbook, self.playbook_path, api_url=api_url)
            log.info("run created", run=self.record.run_id, directory=str(self.directory))
        self._released = False
        self.record = reserve(self.record, self.store, self.testbed, keep=self.keep)
        return self.roles

    def run(
        self,
        command: str,
        *,
        role: str | None = None,
        nodes: Sequence[str] | None = None,
        timeout: float = 60.0,
    ) -> dict[str, CommandResult]:
        """Run a shell ``command`` on ``nodes``, or on ``role``'s, or on every node, all at once, in each node's
        working directory's environment (``$G5K_NODE_DIR``); ``{node: CommandResult}``, whatever each exit code.
        """
        if role is not None and nodes is not None:
            raise ConfigError("Experiment.run: give role= or nodes=, not both")
        targets = self.nodes(role) if nodes is None else list(nodes)
        unknown = sorted(set(targets) - set(self.nodes()))
        if unknown:
            raise ConfigError(f"{', '.join(unknown)}: not a node of run {self.run_id}", hint="see Experiment.roles")
        record = self._require("run")
        access = self.testbed.access(record, self.store)
        if self._runner is None:
            self._runner = SshRunner(Path(access.ssh_config))
        return self._runner.run(targets, command, timeout=timeout, env=access.workdir_env(targets))

    def deploy(self, *, dry_run: bool = False) -> DeploySummary:
        """``g5k deploy``: the experiment's system on every node, each verified."""
        return run_deploy(self._require("deploy"), self.store, self.testbed, dry_run=dry_run)

    def bench(self, *, redo: bool = False) -> BenchSummary:
        """``g5k bench``: the playbook's sweep; what already finished is kept unless ``redo``."""
        return run_bench(self._require("bench"), self.store, self.testbed, redo=redo)

    def collect(self) -> CollectSummary:
        """``g5k collect``: the Prometheus snapshot, node facts, exports, plots and the report."""
        return run_collect(self._require("collect"), self.store, self.testbed)

    def release(self) -> Released:
        """``g5k release``: every job and local daemon of the run; a G5kError says which jobs remain."""
        self._close_runner()
        record = self._require("release")
        with self.store.locked(record.run_id):
            outcome = release(record, self.store, self.testbed)
        self._released = outcome.error is None
        if outcome.error is not None:
            jobs = ", ".join(job.label for job in record.live_jobs()) or "jobs"
            raise G5kError(
                f"run {record.run_id}: {jobs} not released: {outcome.error}",
                hint=f"release them with: g5k release {record.run_id}",
            )
        return outcome

    # The context manager ------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        # SIGTERM too becomes KeyboardInterrupt, so a killed script leaves through __exit__ and releases; the
        # caller's handlers (a notebook's) come back on exit.
        if threading.current_thread() is threading.main_thread():
            self._handlers = {sig: signal.getsignal(sig) for sig in _SIGNALS}
            terminate_as_interrupt()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if self.record is not None and not self.keep and not self._released:
                try:
                    self.release()
                except G5kError as failure:
                    if exc is None:
                        raise
                    # The exception that ended the block is the one to see; the jobs left are logged.
                    log.error("release failed", run=self.record.run_id, error=str(failure))
            self._close_runner()
        finally:
            if self._handlers is not None:
                for sig, handler in self._handlers.items():
                    signal.signal(sig, handler)
                self._handlers = None

    # Helpers ------------------------------------------------------------------------------------------------

    def _require(self, what: str) -> RunRecord:
        if self.record is None:
            raise ConfigError(f"Experiment.{what}: no run yet", hint="call reserve() first")
        return self.record

    def _close_runner(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
