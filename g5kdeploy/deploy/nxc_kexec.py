"""nxc's kexec flavours (g5k-nfs-store, g5k-ramdisk) with our own boot: every node at once, every exit code checked.

``plan`` finishes the shared half (:class:`~g5kdeploy.deploy.nxc.NxcMethod`) by letting ``nxc start
--start-option no-launch`` write its kexec script and deployment descriptor for every node of the run, checks
that nxc placed each node in the role the run gave it, and reads the initrd's size. ``boot`` loads nxc's kernel,
initrd and command line on the nodes to boot, in parallel (checking ``kexec -l``), starts ``kexec -e`` detached
so the SSH session ends cleanly, and waits, with a deadline, for SSH to answer again.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict
from typing import Unpack

from g5kdeploy.deploy import nxc_deployment
from g5kdeploy.deploy.base import BootOutcome, DeployContext
from g5kdeploy.deploy.nxc import QUERY_TIMEOUT, Built, FrontendOptions, NxcMethod, timed
from g5kdeploy.log import get_logger
from g5kdeploy.plans import KexecDeadlines, KexecPlan, NxcKexecPlan
from g5kdeploy.playbook import KEXEC_FLAVOURS
from g5kdeploy.remote import SshRunner
from g5kdeploy.tools import nxc
from g5kdeploy.tools.frontend import describe_failure

log = get_logger(__name__)

BOOT_ID = "/proc/sys/kernel/random/boot_id"
#: The old system must be gone before the first probe, or it would answer it: kexec -e runs 1 s after the
#: command, and jumps to the new kernel at once (no shutdown), so a few seconds are plenty.
SETTLE_SECONDS = 5.0
PROBE_TIMEOUT = 15.0
BACKOFF = (1.0, 2.0, 4.0, 8.0)
GIB = 1 << 30
#: What the new system needs besides its initrd: the initrd is held twice while it unpacks, then the system
#: (a tmpfs root for the kexec flavours) runs; nixos-anywhere asks for 1.5 GB in all for a small initrd.
RAM_HEADROOM = GIB


def ram_needed(initrd_bytes: int) -> int:
    """RAM a node needs to kexec into an initrd of this size and run the system from it."""
    return 2 * initrd_bytes + RAM_HEADROOM


class NxcKexecMethod(NxcMethod[NxcKexecPlan]):
    flavours = KEXEC_FLAVOURS
    plan_type = NxcKexecPlan

    def __init__(
        self,
        *,
        frontend: str,
        runner: SshRunner,
        settle_seconds: float = SETTLE_SECONDS,
        **options: Unpack[FrontendOptions],
    ) -> None:
        """``settle_seconds``: how long after ``kexec -e`` the first SSH probe waits; the rest as
        :class:`~g5kdeploy.deploy.nxc.NxcMethod`."""
        super().__init__(frontend=frontend, runner=runner, **options)
        self.settle_seconds = settle_seconds

    def _finish_plan(self, context: DeployContext, nodes: list[str], built: Built) -> NxcKexecPlan:
        deploy = built.deploy
        common = self._plan_common(context, nodes, built)
        with timed(built.steps, "nxc_start"):
            kexec, descriptor = nxc.nxc_prepare_kexec(
                self.frontend,
                deploy.flavour,
                built.machines,
                built.counts,
                identity=self.identity,
                timeout=float(deploy.timeout),
            )
            ips = nxc_deployment.resolve_ips(self.frontend, built.machines, timeout=QUERY_TIMEOUT)
            placements = nxc_deployment.place(built.roles_in_order, context.record.roles, ips)
            nxc_deployment.check_placement(descriptor, placements)
            initrd_bytes = self.frontend.file_size(kexec.initrd, timeout=QUERY_TIMEOUT)
        others = self._other_params(context, nxc_deployment.without_deploy(kexec.append))
        return NxcKexecPlan(
            **common,
            kexec=KexecPlan(**asdict(kexec)),
            initrd_bytes=initrd_bytes,
            ram_needed_bytes=ram_needed(initrd_bytes),
            descriptor=descriptor,
            deploy_param=self._deploy_param_plan(descriptor, others),
            deadlines=KexecDeadlines(
                deploy_timeout=deploy.timeout, settle_seconds=self.settle_seconds, probe_timeout=PROBE_TIMEOUT
            ),
            plan_seconds=built.plan_seconds(),
        )

    def _kernel_params(self, plan: NxcKexecPlan) -> str:
        return nxc_deployment.without_deploy(plan.kexec.append)

    def _boot(
        self,
        context: DeployContext,
        plan: NxcKexecPlan,
        nodes: list[str],
        *,
        deploy_param: str,
        marker: str,
        deadline: float,
    ) -> dict[str, BootOutcome]:
        kexec = plan.kexec
        append = f"{nxc_deployment.with_deploy(kexec.append, deploy_param)} g5k.run={marker}"
        args = f"{shlex.quote(kexec.kernel)} --initrd={shlex.quote(kexec.initrd)} --append={shlex.quote(append)}"
        need = ram_needed(plan.initrd_bytes)
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
            outcomes[node] = BootOutcome(ok=False, reason=f"{why}: {describe_failure(result)}")
        kexec_at = context.clock.now()
        log.info("kexec started", nodes=len(old_boot), failed=len(outcomes))
        for node, outcome in self._wait_for_ssh(context, old_boot, kexec_at, deadline).items():
            outcomes[node] = BootOutcome(ok=outcome.ok, reason=outcome.reason, log=(loaded_by[node], *outcome.log))
        return {node: outcomes[node] for node in nodes}

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
