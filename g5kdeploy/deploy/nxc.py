"""NixOS-Compose: the kexec flavours with our own boot, every node at once, every exit code checked; and the
g5k-image flavour, whose image Kadeploy installs.

``plan`` works on the frontend only: it pushes the flake, asks the binary cache for the whole closure in one
query (and fails fast on any missing path), substitutes it into the user's store, runs ``nxc build`` and lets
``nxc start --start-option no-launch`` write its kexec script, whose kernel, initrd and command line ``boot``
uses verbatim. ``boot`` then loads the kernel on every node in parallel (checking ``kexec -l``), starts
``kexec -e`` detached so the SSH session ends cleanly, and waits, with a deadline, for SSH to answer again.

For ``g5k-image``, ``plan`` does the same push, eval, cache check and substitution, runs ``nxc build -f
g5k-image`` and publishes the image and nxc's Kadeploy environment description (its image URL rewritten) under
``~/public/g5kdeploy/<run_id>/`` on the frontend, both checked by sha256; ``boot`` is ``KadeployMethod`` with
that description's public URL (a deploy job; the orchestration retries KO nodes).
"""

from __future__ import annotations

import getpass
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from g5kdeploy.credentials import inside_grid5000
from g5kdeploy.deploy import nix
from g5kdeploy.deploy.base import NIXOS_EBPF_TOGGLE, BootOutcome, DeployContext, Expectation
from g5kdeploy.deploy.kadeploy import KadeployMethod, site_of
from g5kdeploy.deploy.nix import BinaryCacheRef, Frontend, KexecParams
from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.log import get_logger
from g5kdeploy.playbook import KEXEC_FLAVOURS, Deploy
from g5kdeploy.remote import SshRunner
from g5kdeploy.testbeds.g5k_ssh import find_key, grid5000_ssh_config, public_key

log = get_logger(__name__)

REPO = Path(__file__).resolve().parents[2]
#: What the flake needs on the frontend, relative to the repository root.
FLAKE_PARTS = ("flake.nix", "flake.lock", "nix", "nxc", "g5kdeploy/payload")
#: The root public key, sent in the flake directory for ``nxc start -i``.
ROOT_KEY_FILE = ".g5k-root-key.pub"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
#: The old system must be gone before the first probe, or it would answer it: kexec -e runs 1 s after the
#: command, and jumps to the new kernel at once (no shutdown), so a few seconds are plenty.
SETTLE_SECONDS = 5.0
PROBE_TIMEOUT = 15.0
BACKOFF = (1.0, 2.0, 4.0, 8.0)
EVAL_TIMEOUT = 600.0
QUERY_TIMEOUT = 300.0


class NxcMethod:
    name = "nxc"
    bench_binary = "statx-bench"
    ebpf_toggle: dict[str, str] | None = NIXOS_EBPF_TOGGLE

    def __init__(
        self,
        *,
        frontend: str,
        runner: SshRunner,
        directory: str = "~/g5kdeploy-flake",
        public_key_text: str | None = None,
        env: dict[str, str] | None = None,
        settle_seconds: float = SETTLE_SECONDS,
        repo: Path = REPO,
    ) -> None:
        """``runner`` reaches ``frontend``; ``directory`` is the flake's place there; ``public_key_text`` is
        the key nxc puts in the deployment for root (sent with the flake, passed as ``nxc start -i``);
        ``env`` is exported for every remote command, on the frontend and on the nodes."""
        self.env = dict(env or {})
        self.frontend = Frontend(runner=runner, host=frontend, directory=directory, env=self.env)
        self.public_key_text = public_key_text
        self.identity = ROOT_KEY_FILE if public_key_text else None
        self.settle_seconds = settle_seconds
        self.repo = repo
        self._kexec: KexecParams | None = None
        self._toplevels: dict[str, str] = {}
        self._environment: str | None = None

    @classmethod
    def for_context(cls, context: DeployContext) -> NxcMethod:
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

    def plan(self, context: DeployContext, nodes: list[str]) -> dict[str, Any]:
        deploy = self._deploy(context)
        cache = self._cache(deploy)
        composition = deploy.composition
        nix.composition_name(composition)
        budget = float(deploy.timeout)
        steps: dict[str, float] = {}

        started = time.monotonic()
        self._push_flake()
        steps["push"] = time.monotonic() - started

        started = time.monotonic()
        root = nix.eval_composition(self.frontend, deploy.flavour, timeout=EVAL_TIMEOUT)
        steps["eval"] = time.monotonic() - started

        started = time.monotonic()
        report = nix.query_cache(self.frontend, cache, [root], timeout=QUERY_TIMEOUT)
        steps["cache_query"] = time.monotonic() - started
        if report.missing:
            shown = "\n  ".join(report.missing[:50])
            more = f"\n  ... and {len(report.missing) - 50} more" if len(report.missing) > 50 else ""
            raise G5kError(
                f"the binary cache {cache.url} lacks {len(report.missing)} path(s) of the closure:\n  {shown}{more}",
                hint="build the composition and push its closure (signed) to the cache, then plan again",
            )

        started = time.monotonic()
        nix.realise(self.frontend, cache, [root], timeout=budget)
        steps["substitute"] = time.monotonic() - started

        started = time.monotonic()
        info = nix.nxc_build(self.frontend, deploy.flavour, composition, cache, timeout=budget)
        self._toplevels = nix.role_toplevels(info)
        if deploy.flavour == nix.IMAGE_FLAVOUR:
            steps["nxc"] = time.monotonic() - started
            started = time.monotonic()
            image = nix.publish_image(
                self.frontend,
                info,
                run_id=context.record.run_id,
                site=site_of(nodes[0] if nodes else self._any_node(context)),
                login=context.api.user or getpass.getuser(),
                timeout=budget,
            )
            steps["publish"] = time.monotonic() - started
            self._environment = image.description_url
            log.info("g5k-image published", url=image.url, sha256=image.sha256)
            return {
                **self._plan_common(context, deploy, nodes, root, report),
                "image": image.to_dict(),
                "environment": image.description_url,
                "deadlines": {"deploy_timeout": deploy.timeout, "poll_seconds": KadeployMethod().poll_seconds},
                "plan_seconds": {step: round(seconds, 1) for step, seconds in steps.items()},
            }
        machines, counts = self._machines(context, nodes)
        self._kexec = nix.nxc_prepare_kexec(
            self.frontend, deploy.flavour, machines, counts, identity=self.identity, timeout=budget
        )
        steps["nxc"] = time.monotonic() - started
        return {
            **self._plan_common(context, deploy, nodes, root, report),
            "kexec": self._kexec.to_dict(),
            "deadlines": {
                "deploy_timeout": deploy.timeout,
                "settle_seconds": self.settle_seconds,
                "probe_timeout": PROBE_TIMEOUT,
            },
            "plan_seconds": {step: round(seconds, 1) for step, seconds in steps.items()},
        }

    def boot(self, context: DeployContext, nodes: list[str], *, deadline: float) -> dict[str, BootOutcome]:
        if self._deploy(context).flavour == nix.IMAGE_FLAVOUR:
            # The image is Kadeploy's to install: the same REST deployments as method kadeploy, with our URL.
            environment = self._image_environment(context)
            kadeploy = KadeployMethod(public_key_text=self.public_key_text, environment=environment)
            return kadeploy.boot(context, nodes, deadline=deadline)
        params = self._kexec_params(context)
        marker = context.record.deploy.marker if context.record.deploy else None
        if not marker:
            raise G5kError("the run has no deploy marker to put on the kernel command line")
        append = f"{params.append} g5k.run={marker}"
        load = (
            f"cat {BOOT_ID} && "
            f"kexec -l {shlex.quote(params.kernel)} --initrd={shlex.quote(params.initrd)} "
            f"--append={shlex.quote(append)} && "
            # Detached and a second later, so this SSH session ends cleanly before the kernel goes away.
            "{ nohup sh -c 'sleep 1; kexec -e' >/dev/null 2>&1 & }"
        )
        outcomes: dict[str, BootOutcome] = {}
        remaining = max(1.0, deadline - context.clock.now())
        loaded = context.runner.run(nodes, load, timeout=min(PROBE_TIMEOUT * 4, remaining), env=self.env or None)
        old_boot: dict[str, str] = {}
        for node in nodes:
            result = loaded[node]
            if result.ok:
                old_boot[node] = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
                continue
            outcomes[node] = BootOutcome(ok=False, reason=f"kexec -l failed: {nix.describe_failure(result)}")
        kexec_at = context.clock.now()
        log.info("kexec started", nodes=len(old_boot), failed=len(outcomes))
        outcomes.update(self._wait_for_ssh(context, old_boot, kexec_at, deadline))
        return {node: outcomes[node] for node in nodes}

    def expectation(self, context: DeployContext) -> Expectation:
        toplevels = self._toplevels or dict(
            (context.record.deploy.plan if context.record.deploy else {}).get("toplevels", {})
        )
        per_node = {
            node: toplevels[role]
            for role, members in context.record.roles.items()
            if role in toplevels
            for node in members
        }
        # A Kadeploy image's kernel command line is fixed by its environment description: no marker on it.
        marker = self._deploy(context).flavour != nix.IMAGE_FLAVOUR
        return Expectation(rebooted=True, marker=marker, kernel_options=True, toplevel=per_node, exporter=True)

    # Helpers -------------------------------------------------------------------------------------------

    def _deploy(self, context: DeployContext) -> Deploy:
        deploy = context.playbook.deploy
        if deploy is None or deploy.method != "nxc":
            raise ConfigError("the nxc method needs a deploy section with method: nxc")
        if deploy.flavour not in (*KEXEC_FLAVOURS, nix.IMAGE_FLAVOUR):
            raise ConfigError(f"nxc flavour {deploy.flavour} is not supported")
        return deploy

    def _plan_common(
        self, context: DeployContext, deploy: Deploy, nodes: list[str], root: str, report: nix.CacheReport
    ) -> dict[str, Any]:
        return {
            "method": self.name,
            "flavour": deploy.flavour,
            "frontend": self.frontend.host,
            "nodes": list(nodes),
            "roles": {role: [n for n in members if n in nodes] for role, members in context.record.roles.items()},
            "composition": root,
            "toplevels": dict(self._toplevels),
            "closure_paths": len(report.present),
            "closure_nar_size": report.nar_size,
            "missing_paths": report.missing,
        }

    @staticmethod
    def _any_node(context: DeployContext) -> str:
        for members in context.record.roles.values():
            if members:
                return members[0]
        raise ConfigError("the run has no nodes to deploy")

    def _image_environment(self, context: DeployContext) -> str:
        if self._environment is not None:
            return self._environment
        saved = (context.record.deploy.plan if context.record.deploy else {}).get("environment")
        if not saved:
            raise G5kError("no published g5k-image environment: plan the deploy first")
        self._environment = str(saved)
        return self._environment

    @staticmethod
    def _cache(deploy: Deploy) -> BinaryCacheRef:
        if deploy.binary_cache is None:
            raise ConfigError(
                "deploy.binary_cache: nxc needs the project's binary cache (url and public_key)",
                hint="the custom kernel is on no public cache; without one the frontend would compile it",
            )
        return BinaryCacheRef(url=deploy.binary_cache.url, public_key=deploy.binary_cache.public_key)

    def _push_flake(self) -> None:
        """One checksummed tree upload of the parts of the repository the flake reads."""
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
            if self.public_key_text:
                (stage / ROOT_KEY_FILE).write_text(self.public_key_text.strip() + "\n")
            result = self.frontend.runner.put_tree([self.frontend.host], stage, self.frontend.directory)
        sent = result[self.frontend.host]
        if not sent.ok:
            raise G5kError(f"pushing the flake to {self.frontend.host} failed: {sent.error}")

    @staticmethod
    def _machines(context: DeployContext, nodes: list[str]) -> tuple[list[str], dict[str, int]]:
        """The machine file and ``-r role=N``: nxc fills roles in alphabetical order from the file's lines,
        so the lines go role by role, alphabetically, for each node to get the role the run gave it."""
        machines: list[str] = []
        counts: dict[str, int] = {}
        for role in sorted(context.record.roles):
            members = [node for node in context.record.roles[role] if node in nodes]
            if members:
                machines += members
                counts[role] = len(members)
        unassigned = [node for node in nodes if node not in machines]
        if unassigned:
            raise ConfigError(f"nodes without a role in the run: {', '.join(unassigned)}")
        return machines, counts

    def _kexec_params(self, context: DeployContext) -> KexecParams:
        if self._kexec is not None:
            return self._kexec
        saved = (context.record.deploy.plan if context.record.deploy else {}).get("kexec")
        if not saved:
            raise G5kError("no kexec parameters: plan the deploy first")
        self._kexec = KexecParams(**saved)
        return self._kexec

    def _wait_for_ssh(
        self, context: DeployContext, old_boot: dict[str, str], kexec_at: float, deadline: float
    ) -> dict[str, BootOutcome]:
        outcomes: dict[str, BootOutcome] = {}
        pending = list(old_boot)
        context.clock.sleep(min(self.settle_seconds, max(0.0, deadline - context.clock.now())))
        round_ = 0
        while pending:
            now = context.clock.now()
            if now >= deadline:
                break
            probed = context.runner.run(
                pending, f"cat {BOOT_ID}", timeout=max(1.0, min(PROBE_TIMEOUT, deadline - now)), env=self.env or None
            )
            for node, result in probed.items():
                if not result.ok:
                    continue
                new_boot = result.stdout.strip()
                after = context.clock.now() - kexec_at
                note = f"SSH back {after:.0f} s after kexec; boot id {old_boot[node]} -> {new_boot}"
                if new_boot == old_boot[node]:
                    # Verification decides (boot id, marker); on a real node this means kexec did not happen.
                    note += " (unchanged)"
                outcomes[node] = BootOutcome(ok=True, log=(note,))
                pending.remove(node)
            if pending:
                pause = BACKOFF[min(round_, len(BACKOFF) - 1)]
                context.clock.sleep(min(pause, max(0.0, deadline - context.clock.now())))
                round_ += 1
        waited = context.clock.now() - kexec_at
        for node in pending:
            outcomes[node] = BootOutcome(ok=False, reason=f"no SSH within {waited:.0f} s after kexec")
        return outcomes
