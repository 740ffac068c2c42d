"""NixOS-Compose, what its two ways of booting share: the frontend's half of the plan, and the descriptor.

``plan`` works on the frontend only: it pushes the flake, asks the binary cache for the whole closure in one
query (and fails fast on any missing path), substitutes it into the user's store and runs ``nxc build``; then
the flavour's method finishes it: the kexec flavours (:mod:`~g5kdeploy.deploy.nxc_kexec`) let ``nxc start
--start-option no-launch`` write the kexec script and descriptor, the g5k-image flavour
(:mod:`~g5kdeploy.deploy.nxc_image`) makes the descriptor and publishes the image for Kadeploy.

Either way the descriptor reaches the nodes the way nxc sends it, on the kernel command line, or, when it is
too long for it, from an HTTP server on the frontend that lives for the boot only (``nxc_deployment``).
"""

from __future__ import annotations

import getpass
import json
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Self, TypedDict, TypeVar

from g5kdeploy.credentials import inside_grid5000
from g5kdeploy.deploy import nxc_deployment
from g5kdeploy.deploy.base import NIXOS_EBPF_TOGGLE, BootOutcome, DeployContext, Expectation
from g5kdeploy.deploy.kadeploy import site_of
from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.files import sha256_file
from g5kdeploy.log import get_logger
from g5kdeploy.plans import NxcPlanBase
from g5kdeploy.playbook import Deploy
from g5kdeploy.remote import SshRunner
from g5kdeploy.testbeds.g5k_ssh import find_key, grid5000_ssh_config, public_key
from g5kdeploy.tools import nix, nxc
from g5kdeploy.tools.bpf import find_programs
from g5kdeploy.tools.frontend import Frontend
from g5kdeploy.tools.kernel import stage_nix_kernel
from g5kdeploy.tools.nix import BinaryCacheRef, CacheReport

log = get_logger(__name__)

REPO = Path(__file__).resolve().parents[2]
#: What the flake needs on the frontend, relative to the repository root.
FLAKE_PARTS = ("flake.nix", "flake.lock", "nxc.json", "nix", "nxc", "g5kdeploy/payload")
#: The root public key, sent in the flake directory for ``nxc start -i``.
ROOT_KEY_FILE = ".g5k-root-key.pub"
EVAL_TIMEOUT = 600.0
QUERY_TIMEOUT = 300.0

PlanT = TypeVar("PlanT", bound=NxcPlanBase)


class FrontendOptions(TypedDict, total=False):
    """What both nxc methods take besides the frontend and its runner (see :meth:`NxcMethod.__init__`)."""

    directory: str
    public_key_text: str | None
    env: dict[str, str] | None
    repo: Path
    http_bind: str | None
    cmdline_limit: int


@dataclass(frozen=True)
class Built:
    """The first half of a plan, the same for every flavour: the closure in the user's store, nxc's build."""

    deploy: Deploy
    root: str
    report: CacheReport
    compose_info: dict[str, Any]
    #: Every node of the run, as nxc's machine file lists them, and ``-r role=N`` for each role.
    machines: list[str]
    counts: dict[str, int]
    #: The composition's roles in compose-info's order, the order nxc fills them in.
    roles_in_order: list[str]
    #: Step → seconds, filled on by the flavour's method.
    steps: dict[str, float]

    def plan_seconds(self) -> dict[str, float]:
        return {step: round(seconds, 1) for step, seconds in self.steps.items()}


@contextmanager
def timed(steps: dict[str, float], step: str) -> Iterator[None]:
    """Record in ``steps`` how long the block took: the plan shows where its time went."""
    started = time.monotonic()
    yield
    steps[step] = time.monotonic() - started


class NxcMethod(ABC, Generic[PlanT]):
    """The DeployMethod of one nxc flavour family; its plan is a ``plan_type``."""

    name = "nxc"
    pushes_artifacts = False
    system_artifacts: tuple[str, ...] = ("statx-bench",)
    ebpf_toggle: dict[str, str] | None = NIXOS_EBPF_TOGGLE
    #: The flavours the method boots, and its plan's model.
    flavours: tuple[str, ...]
    plan_type: type[PlanT]

    def __init__(
        self,
        *,
        frontend: str,
        runner: SshRunner,
        directory: str = "~/g5kdeploy-flake",
        public_key_text: str | None = None,
        env: dict[str, str] | None = None,
        repo: Path = REPO,
        http_bind: str | None = None,
        cmdline_limit: int = nxc_deployment.CMDLINE_LIMIT,
    ) -> None:
        """``runner`` reaches ``frontend``; ``directory`` is the flake's place there; ``public_key_text`` is
        the key nxc puts in the deployment for root (sent with the flake, passed as ``nxc start -i``);
        ``env`` is exported for every remote command, on the frontend and on the nodes. A deployment
        descriptor longer than ``cmdline_limit`` is served over HTTP from the frontend, on ``http_bind``
        (default: the address of its default route, as nxc does)."""
        self.env = dict(env or {})
        self.frontend = Frontend(runner=runner, host=frontend, directory=directory, env=self.env)
        self.public_key_text = public_key_text
        self.identity = ROOT_KEY_FILE if public_key_text else None
        self.repo = repo
        self.http_bind = http_bind
        self.cmdline_limit = cmdline_limit
        self._plan: PlanT | None = None
        self._toplevels: dict[str, str] = {}

    @classmethod
    def for_context(cls, context: DeployContext) -> Self:
        """The site's frontend (``f<site>.<site>.grid5000.fr``) as the user, through the access gateway from
        outside, with an ssh_config of its own in the run directory (the run's one only knows the nodes)."""
        nodes = [node for members in context.record.roles.values() for node in members]
        if not nodes:
            raise ConfigError("the run has no nodes to deploy")
        site = site_of(nodes[0])
        frontend = f"f{site}.{site}.grid5000.fr"
        key = find_key(context.playbook.ssh.key, Path.home())
        login = context.api.user or getpass.getuser()
        config = context.run_dir / "ssh_config.frontend"
        config.write_text(
            grid5000_ssh_config(
                [frontend], login=login, key=key, known_hosts=context.run_dir / "known_hosts", inside=inside_grid5000()
            )
        )
        return cls(frontend=frontend, runner=SshRunner(config), public_key_text=public_key(key))

    # The DeployMethod interface --------------------------------------------------------------------------

    def plan(self, context: DeployContext, nodes: list[str]) -> PlanT:
        self._plan = self._finish_plan(context, nodes, self._build(context))
        return self._plan

    def boot(self, context: DeployContext, nodes: list[str], *, deadline: float) -> dict[str, BootOutcome]:
        marker = context.record.deploy.marker if context.record.deploy else None
        if not marker:
            raise G5kError("the run has no deploy marker to put on the kernel command line")
        plan = self._saved_plan(context)
        others = self._other_params(context, self._kernel_params(plan))
        with self._deploy_param(context, plan, others, deadline) as deploy_param:
            return self._boot(context, plan, nodes, deploy_param=deploy_param, marker=marker, deadline=deadline)

    def expectation(self, context: DeployContext) -> Expectation:
        saved = context.record.deploy.plan if context.record.deploy else None
        toplevels = self._toplevels or (dict(saved.toplevels) if isinstance(saved, self.plan_type) else {})
        per_node = {
            node: toplevels[role]
            for role, members in context.record.roles.items()
            if role in toplevels
            for node in members
        }
        # Both ways put the marker on the kernel command line: kexec's append, the image's environment.
        return Expectation(rebooted=True, marker=True, kernel_options=True, toplevel=per_node, exporter=True)

    # What each flavour's method does -----------------------------------------------------------------------

    @abstractmethod
    def _finish_plan(self, context: DeployContext, nodes: list[str], built: Built) -> PlanT:
        """The plan's second half, on the frontend still: the descriptor, and what the boot needs."""

    @abstractmethod
    def _kernel_params(self, plan: PlanT) -> str:
        """The nodes' kernel command line but for ``deploy=`` and the run's marker."""

    @abstractmethod
    def _boot(
        self, context: DeployContext, plan: PlanT, nodes: list[str], *, deploy_param: str, marker: str, deadline: float
    ) -> dict[str, BootOutcome]:
        """Boot ``nodes`` with ``deploy=<deploy_param> g5k.run=<marker>`` on their kernel command line."""

    # Helpers -------------------------------------------------------------------------------------------

    def _build(self, context: DeployContext) -> Built:
        deploy = self._deploy(context)
        cache = self._cache(deploy)
        composition = deploy.composition
        nxc.composition_name(composition)
        budget = float(deploy.timeout)
        steps: dict[str, float] = {}
        with timed(steps, "push"):
            self._push_flake(context)
        with timed(steps, "eval"):
            root = nix.eval_composition(self.frontend, deploy.flavour, timeout=EVAL_TIMEOUT)
        with timed(steps, "cache_query"):
            report = nix.query_cache(self.frontend, cache, [root], timeout=QUERY_TIMEOUT)
        if report.missing:
            shown = "\n  ".join(report.missing[:50])
            more = f"\n  ... and {len(report.missing) - 50} more" if len(report.missing) > 50 else ""
            raise G5kError(
                f"the binary cache {cache.url} lacks {len(report.missing)} path(s) of the closure:\n  {shown}{more}",
                hint="build the composition and push its closure (signed) to the cache, then plan again",
            )
        with timed(steps, "substitute"):
            nix.realise(self.frontend, cache, [root], timeout=budget)
        with timed(steps, "nxc_build"):
            info = nxc.nxc_build(self.frontend, deploy.flavour, composition, cache, timeout=budget)
            self._toplevels = nxc.role_toplevels(info)
        # The descriptor names every node of the run, not only those to boot now: each node's /etc/hosts is
        # made from it, and nxc would shift roles if one had no node.
        machines, counts = self._machines(context)
        roles_in_order = list(nxc.composition_roles(info))
        nxc_deployment.check_roles(roles_in_order, context.record.roles)
        return Built(deploy, root, report, info, machines, counts, roles_in_order, steps)

    def _deploy(self, context: DeployContext) -> Deploy:
        deploy = context.playbook.deploy
        if deploy is None or deploy.method != "nxc":
            raise ConfigError("the nxc method needs a deploy section with method: nxc")
        if deploy.flavour not in self.flavours:
            raise ConfigError(f"nxc flavour {deploy.flavour} is not supported")
        return deploy

    def _plan_common(self, context: DeployContext, nodes: list[str], built: Built) -> dict[str, Any]:
        """The fields of :class:`~g5kdeploy.plans.NxcPlanBase` that the first half of the plan knows."""
        return {
            "flavour": built.deploy.flavour,
            "frontend": self.frontend.host,
            "nodes": list(nodes),
            "roles": {role: [n for n in members if n in nodes] for role, members in context.record.roles.items()},
            "composition": built.root,
            "toplevels": dict(self._toplevels),
            "closure_paths": len(built.report.present),
            "closure_nar_size": built.report.nar_size,
            "missing_paths": built.report.missing,
            "flake_lock": self._flake_lock(),
        }

    def _flake_lock(self) -> str:
        """The sha256 of flake.lock, which pins nixpkgs and nxc; without it they follow their branches and two
        nightly runs may build different systems from the same commit."""
        lock = self.repo / "flake.lock"
        if lock.is_file():
            return sha256_file(lock)
        log.warning("no flake.lock: nixpkgs and nxc are not pinned", hint="run `nix flake lock` and commit it")
        return "absent: inputs follow their branches (run `nix flake lock` and commit flake.lock)"

    def _saved_plan(self, context: DeployContext) -> PlanT:
        """This process's plan, else the one saved in the run (a boot after a restart)."""
        plan = self._plan or (context.record.deploy.plan if context.record.deploy else None)
        if not isinstance(plan, self.plan_type):
            raise G5kError("no deployment descriptor in the run: plan the deploy first")
        return plan

    @staticmethod
    def _other_params(context: DeployContext, kernel_params: str) -> str:
        """The kernel command line but for ``deploy=``: the flavour's parameters and the run's marker."""
        marker = context.record.deploy.marker if context.record.deploy else ""
        return f"{kernel_params} g5k.run={marker}"

    def _deploy_param_plan(self, descriptor: dict[str, Any], others: str) -> str:
        inline = nxc_deployment.inline_value(descriptor, others, self.cmdline_limit)
        if inline is not None:
            return f"kernel command line, base64, {len(inline)} characters"
        limit = self.cmdline_limit
        return f"HTTP from {self.frontend.host} during the boot (inline, the command line would pass {limit} bytes)"

    @contextmanager
    def _deploy_param(self, context: DeployContext, plan: PlanT, others: str, deadline: float) -> Iterator[str]:
        """The value of ``deploy=``: the descriptor itself when the command line stays short enough, else the
        URL of a server on the frontend that lives until the boot returns (and never past the deadline)."""
        inline = nxc_deployment.inline_value(plan.descriptor, others, self.cmdline_limit)
        if inline is not None:
            yield inline
            return
        # `timeout` on the frontend counts wall-clock seconds; the deadline is in the API's time.
        seconds = max(1.0, (deadline - context.clock.now()) / context.clock.speed)
        served = nxc_deployment.serve(self.frontend, plan.descriptor, bind=self.http_bind, seconds=seconds)
        log.info("deployment descriptor served", url=served.url, seconds=round(seconds))
        try:
            yield served.url
        finally:
            nxc_deployment.stop(self.frontend, served.pid)

    @staticmethod
    def _login(context: DeployContext) -> str:
        return context.api.user or getpass.getuser()

    @staticmethod
    def _cache(deploy: Deploy) -> BinaryCacheRef:
        if deploy.binary_cache is None:
            raise ConfigError(
                "deploy.binary_cache: nxc needs the project's binary cache (url and public_key)",
                hint="the custom kernel is on no public cache; without one the frontend would compile it",
            )
        return BinaryCacheRef(url=deploy.binary_cache.url, public_key=deploy.binary_cache.public_key)

    def _push_flake(self, context: DeployContext) -> None:
        """One checksummed tree upload of the parts of the repository the flake reads, with the playbook's eBPF
        programs as the flake's own: their files in nix/ebpf and their names in nix/ebpf/programs.json, the list the
        package (nix/ebpf/default.nix) builds and ebpf_exporter loads (nix/lib/programs.nix); and the playbook's
        kernel section as nix/kernel.json with its patches."""
        ebpf = context.playbook.ebpf
        programs = find_programs(ebpf.programs, ebpf.source_dir(Path(context.record.playbook_path)))
        with tempfile.TemporaryDirectory(prefix="g5k-flake-") as scratch:
            stage = Path(scratch)
            for part in FLAKE_PARTS:
                source = self.repo / part
                target = stage / part
                if source.is_dir():
                    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "result*"))
                elif source.is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)
            ebpf_dir = stage / "nix" / "ebpf"
            ebpf_dir.mkdir(parents=True, exist_ok=True)
            for program in programs:
                for source in (program.source, program.config):
                    shutil.copy2(source, ebpf_dir / source.name)
            (ebpf_dir / "programs.json").write_text(json.dumps(ebpf.programs) + "\n")
            # nix/kernel.json and the patches beside it: the playbook's kernel, which nix/pkgs/kernel.nix builds.
            stage_nix_kernel(context.playbook.kernel, Path(context.record.playbook_path), stage / "nix")
            if self.public_key_text:
                (stage / ROOT_KEY_FILE).write_text(self.public_key_text.strip() + "\n")
            result = self.frontend.runner.put_tree([self.frontend.host], stage, self.frontend.directory)
        sent = result[self.frontend.host]
        if not sent.ok:
            raise G5kError(f"pushing the flake to {self.frontend.host} failed: {sent.error}")

    @staticmethod
    def _machines(context: DeployContext) -> tuple[list[str], dict[str, int]]:
        """The machine file and ``-r role=N`` for every node of the run: nxc fills roles in alphabetical order
        from the file's lines, so the lines go role by role, alphabetically, for each node to get its role."""
        machines: list[str] = []
        counts: dict[str, int] = {}
        for role in sorted(context.record.roles):
            members = context.record.roles[role]
            if members:
                machines += members
                counts[role] = len(members)
        if not machines:
            raise ConfigError("the run has no nodes to deploy")
        return machines, counts
