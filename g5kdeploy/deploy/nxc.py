"""NixOS-Compose: the kexec flavours with our own boot, every node at once, every exit code checked; and the
g5k-image flavour, whose image Kadeploy installs.

``plan`` works on the frontend only: it pushes the flake, asks the binary cache for the whole closure in one
query (and fails fast on any missing path), substitutes it into the user's store, runs ``nxc build`` and lets
``nxc start --start-option no-launch`` write its kexec script and deployment descriptor for every node of the
run. ``boot`` loads nxc's kernel, initrd and command line on the nodes to boot, in parallel (checking ``kexec
-l``), starts ``kexec -e`` detached so the SSH session ends cleanly, and waits, with a deadline, for SSH to
answer again.

For ``g5k-image``, ``plan`` does the same push, eval, cache check and substitution, runs ``nxc build -f
g5k-image``, makes the deployment descriptor itself and publishes the image under
``~/public/g5kdeploy/<run_id>/`` (checked by sha256): nxc 0.7.11 writes the descriptor and the Kadeploy
environment only in the ``nxc start`` that runs kadeploy3. ``boot`` writes the environment description next
to the image, with the run's marker on its kernel command line, and hands its public URL to ``KadeployMethod``
(a deploy job; the orchestration retries KO nodes).

Either way the descriptor reaches the nodes the way nxc sends it, on the kernel command line, or, when it is
too long for it, from an HTTP server on the frontend that lives for the boot only (``nxc_deployment``).
"""

from __future__ import annotations

import getpass
import hashlib
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from g5kdeploy.credentials import inside_grid5000
from g5kdeploy.deploy import nix, nxc_deployment
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
FLAKE_PARTS = ("flake.nix", "flake.lock", "nxc.json", "nix", "nxc", "g5kdeploy/payload")
#: The root public key, sent in the flake directory for ``nxc start -i``.
ROOT_KEY_FILE = ".g5k-root-key.pub"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
#: The old system must be gone before the first probe, or it would answer it: kexec -e runs 1 s after the
#: command, and jumps to the new kernel at once (no shutdown), so a few seconds are plenty.
SETTLE_SECONDS = 5.0
PROBE_TIMEOUT = 15.0
BACKOFF = (1.0, 2.0, 4.0, 8.0)
EVAL_TIMEOUT = 600.0
GIB = 1 << 30
#: What the new system needs besides its initrd: the initrd is held twice while it unpacks, then the system
#: (a tmpfs root for the kexec flavours) runs; nixos-anywhere asks for 1.5 GB in all for a small initrd.
RAM_HEADROOM = GIB
QUERY_TIMEOUT = 300.0


def ram_needed(initrd_bytes: int) -> int:
    """RAM a node needs to kexec into an initrd of this size and run the system from it."""
    return 2 * initrd_bytes + RAM_HEADROOM


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
        self.settle_seconds = settle_seconds
        self.repo = repo
        self.http_bind = http_bind
        self.cmdline_limit = cmdline_limit
        self._plan: dict[str, Any] = {}
        self._toplevels: dict[str, str] = {}

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
        steps["nxc_build"] = time.monotonic() - started
        started = time.monotonic()
        # The descriptor names every node of the run, not only those to boot now: each node's /etc/hosts is
        # made from it, and nxc would shift roles if one had no node.
        machines, counts = self._machines(context)
        roles_in_order = list(nix.composition_roles(info))
        nxc_deployment.check_roles(roles_in_order, context.record.roles)
        common = self._plan_common(context, deploy, nodes, root, report)
        if deploy.flavour == nix.IMAGE_FLAVOUR:
            descriptor = self._image_descriptor(context, info, machines)
            steps["descriptor"] = time.monotonic() - started
            started = time.monotonic()
            site = site_of(machines[0])
            login = self._login(context)
            image = nix.publish_image(
                self.frontend, info, run_id=context.record.run_id, site=site, login=login, timeout=budget
            )
            steps["publish"] = time.monotonic() - started
            log.info("g5k-image published", url=image.url, sha256=image.sha256)
            description = f"{nix.public_run_dir(context.record.run_id)}/{nix.DESCRIPTION_NAME}"
            self._plan = {
                **common,
                "image": image.to_dict(),
                "arch": self._arch(info),
                "environment": nix.public_url(site, login, description),
                "descriptor": descriptor,
                "deploy_param": self._deploy_param_plan(descriptor, self._other_params(context, None)),
                "deadlines": {"deploy_timeout": deploy.timeout, "poll_seconds": KadeployMethod().poll_seconds},
                "plan_seconds": {step: round(seconds, 1) for step, seconds in steps.items()},
            }
            return self._plan
        kexec, descriptor = nix.nxc_prepare_kexec(
            self.frontend, deploy.flavour, machines, counts, identity=self.identity, timeout=budget
        )
        ips = nxc_deployment.resolve_ips(self.frontend, machines, timeout=QUERY_TIMEOUT)
        nxc_deployment.check_placement(descriptor, nxc_deployment.place(roles_in_order, context.record.roles, ips))
        initrd_bytes = nix.file_size(self.frontend, kexec.initrd, timeout=QUERY_TIMEOUT)
        steps["nxc_start"] = time.monotonic() - started
        self._plan = {
            **common,
            "kexec": kexec.to_dict(),
            "initrd_bytes": initrd_bytes,
            "ram_needed_bytes": ram_needed(initrd_bytes),
            "descriptor": descriptor,
            "deploy_param": self._deploy_param_plan(descriptor, self._other_params(context, kexec.append)),
            "deadlines": {
                "deploy_timeout": deploy.timeout,
                "settle_seconds": self.settle_seconds,
                "probe_timeout": PROBE_TIMEOUT,
            },
            "plan_seconds": {step: round(seconds, 1) for step, seconds in steps.items()},
        }
        return self._plan

    def boot(self, context: DeployContext, nodes: list[str], *, deadline: float) -> dict[str, BootOutcome]:
        marker = context.record.deploy.marker if context.record.deploy else None
        if not marker:
            raise G5kError("the run has no deploy marker to put on the kernel command line")
        plan = self._saved_plan(context)
        append = plan["kexec"]["append"] if "kexec" in plan else None
        with self._deploy_param(context, plan, self._other_params(context, append), deadline) as deploy_param:
            if self._deploy(context).flavour == nix.IMAGE_FLAVOUR:
                return self._boot_image(context, plan, nodes, f"deploy={deploy_param} g5k.run={marker}", deadline)
            kexec = KexecParams(**plan["kexec"])
            append = f"{nxc_deployment.with_deploy(kexec.append, deploy_param)} g5k.run={marker}"
            return self._boot_kexec(context, kexec, append, nodes, deadline)

    def _boot_kexec(
        self, context: DeployContext, kexec: KexecParams, append: str, nodes: list[str], deadline: float
    ) -> dict[str, BootOutcome]:
        args = f"{shlex.quote(kexec.kernel)} --initrd={shlex.quote(kexec.initrd)} --append={shlex.quote(append)}"
        need = ram_needed(int(self._saved_plan(context).get("initrd_bytes", 0)))
        load = (
            f"cat {BOOT_ID} && "
            # Swap does not count: the new system starts with RAM only (nixos-anywhere #84).
            # awk would print a byte count in floating point; the shell's arithmetic keeps it whole.
            "kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo) && ram=$((kib * 1024)) && "
            f'if [ "$ram" -lt {need} ]; then '
            f'echo "needs {need / GIB:.1f} GiB of RAM for this initrd, has $((ram / {GIB})) GiB" >&2; exit 3; fi && '
            # kexec_load first, as nxc does; a kernel in lockdown refuses it, and then only kexec_file_load
            # (which checks the kernel's signature there) can load.
            f"{{ {{ kexec -l {args} && echo syscall=kexec_load; }} || "
            f"{{ kexec -s {args} && echo syscall=kexec_file_load; }}; }} && "
            # Detached and a second later, so this SSH session ends cleanly before the kernel goes away.
            "{ nohup sh -c 'sleep 1; kexec -e' >/dev/null 2>&1 & }"
        )
        outcomes: dict[str, BootOutcome] = {}
        remaining = max(1.0, deadline - context.clock.now())
        loaded = context.runner.run(nodes, load, timeout=min(PROBE_TIMEOUT * 4, remaining), env=self.env or None)
        old_boot: dict[str, str] = {}
        loaded_by: dict[str, str] = {}
        for node in nodes:
            result = loaded[node]
            if result.ok:
                lines = result.stdout.strip().splitlines()
                old_boot[node] = lines[0] if lines else ""
                loaded_by[node] = next((line for line in lines if line.startswith("syscall=")), "syscall=?")
                continue
            why = "not enough RAM" if result.exit_code == 3 else "kexec -l and kexec -s failed"
            outcomes[node] = BootOutcome(ok=False, reason=f"{why}: {nix.describe_failure(result)}")
        kexec_at = context.clock.now()
        log.info("kexec started", nodes=len(old_boot), failed=len(outcomes))
        for node, outcome in self._wait_for_ssh(context, old_boot, kexec_at, deadline).items():
            outcomes[node] = BootOutcome(ok=outcome.ok, reason=outcome.reason, log=(loaded_by[node], *outcome.log))
        return {node: outcomes[node] for node in nodes}

    def _boot_image(
        self, context: DeployContext, plan: dict[str, Any], nodes: list[str], params: str, deadline: float
    ) -> dict[str, BootOutcome]:
        """Write the environment description next to the image, then let Kadeploy install it."""
        text = nix.environment_description(
            image_url=plan["image"]["url"],
            arch=plan["arch"],
            author=self._login(context),
            kernel_params=f"{nix.IMAGE_KERNEL_PARAMS} {params}",
        )
        nix.publish_text(
            self.frontend,
            f"{nix.public_run_dir(context.record.run_id)}/{nix.DESCRIPTION_NAME}",
            text,
            timeout=QUERY_TIMEOUT,
            what="writing the environment description under ~/public",
        )
        kadeploy = KadeployMethod(public_key_text=self.public_key_text, environment=plan["environment"])
        return kadeploy.boot(context, nodes, deadline=deadline)

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
        # Both paths put the marker on the kernel command line: kexec's append, the image's environment.
        return Expectation(rebooted=True, marker=True, kernel_options=True, toplevel=per_node, exporter=True)

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
            "flake_lock": self._flake_lock(),
        }

    def _flake_lock(self) -> str:
        """The sha256 of flake.lock, which pins nixpkgs and nxc; without it they follow their branches and two
        nightly runs may build different systems from the same commit."""
        lock = self.repo / "flake.lock"
        if lock.is_file():
            return hashlib.sha256(lock.read_bytes()).hexdigest()
        log.warning("no flake.lock: nixpkgs and nxc are not pinned", hint="run `nix flake lock` and commit it")
        return "absent: inputs follow their branches (run `nix flake lock` and commit flake.lock)"

    def _saved_plan(self, context: DeployContext) -> dict[str, Any]:
        """This process's plan, else the one saved in the run (a boot after a restart)."""
        plan = self._plan or dict(context.record.deploy.plan if context.record.deploy else {})
        if "descriptor" not in plan:
            raise G5kError("no deployment descriptor in the run: plan the deploy first")
        return plan

    @staticmethod
    def _other_params(context: DeployContext, append: str | None) -> str:
        """The kernel command line but for ``deploy=``: nxc's kexec append, or nxc's parameters for the
        image; the run's marker in both cases."""
        marker = context.record.deploy.marker if context.record.deploy else ""
        base = nxc_deployment.without_deploy(append) if append is not None else nix.IMAGE_KERNEL_PARAMS
        return f"{base} g5k.run={marker}"

    def _deploy_param_plan(self, descriptor: dict[str, Any], others: str) -> str:
        inline = nxc_deployment.inline_value(descriptor, others, self.cmdline_limit)
        if inline is not None:
            return f"kernel command line, base64, {len(inline)} characters"
        limit = self.cmdline_limit
        return f"HTTP from {self.frontend.host} during the boot (inline, the command line would pass {limit} bytes)"

    @contextmanager
    def _deploy_param(
        self, context: DeployContext, plan: dict[str, Any], others: str, deadline: float
    ) -> Iterator[str]:
        """The value of ``deploy=``: the descriptor itself when the command line stays short enough, else the
        URL of a server on the frontend that lives until the boot returns (and never past the deadline)."""
        descriptor = plan["descriptor"]
        inline = nxc_deployment.inline_value(descriptor, others, self.cmdline_limit)
        if inline is not None:
            yield inline
            return
        # `timeout` on the frontend counts wall-clock seconds; the deadline is in the API's time.
        seconds = max(1.0, (deadline - context.clock.now()) / context.clock.speed)
        served = nxc_deployment.serve(self.frontend, descriptor, bind=self.http_bind, seconds=seconds)
        log.info("deployment descriptor served", url=served.url, seconds=round(seconds))
        try:
            yield served.url
        finally:
            nxc_deployment.stop(self.frontend, served.pid)

    def _image_descriptor(self, context: DeployContext, info: dict[str, Any], machines: list[str]) -> dict[str, Any]:
        if not self.public_key_text:
            raise ConfigError("g5k-image needs your public key for root on the nodes", hint="set ssh.key")
        ips = nxc_deployment.resolve_ips(self.frontend, machines, timeout=QUERY_TIMEOUT)
        roles = list(nix.composition_roles(info))
        placements = nxc_deployment.place(roles, context.record.roles, ips)
        return nxc_deployment.descriptor(info, placements, ssh_key=self.public_key_text, user=self._login(context))

    @staticmethod
    def _arch(info: dict[str, Any]) -> str:
        system = str(info.get("system") or nix.SYSTEM)
        if system not in nxc_deployment.KADEPLOY_ARCH:
            raise G5kError(f"Kadeploy has no architecture for the composition's system {system}")
        return nxc_deployment.KADEPLOY_ARCH[system]

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
