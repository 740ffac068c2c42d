"""The reserve phase: submit one OAR job per site, wait until every one runs, give each role its nodes.

Order of writes is what keeps reservations from leaking: the run record exists before the testbed is
touched, a job's intent is saved before its POST, its uid right after; on any failure, Ctrl-C or SIGTERM
the jobs are released (unless the caller keeps them) before the error goes up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from g5kdeploy.errors import ConfigError, DeadlineExceeded, ReservationError
from g5kdeploy.log import get_logger
from g5kdeploy.playbook import PARIS, Playbook
from g5kdeploy.reserve.check import check_playbook
from g5kdeploy.reserve.placement import Part
from g5kdeploy.reserve.polling import PollState
from g5kdeploy.reserve.release import release_run
from g5kdeploy.results import (
    FINAL_STATES,
    JobEntry,
    JobPart,
    RunRecord,
    RunStore,
    finish_phase,
    new_run_id,
    start_phase,
)
from g5kdeploy.signals import shielded
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.base import Testbed
from g5kdeploy.tools.bpf import check_programs
from g5kdeploy.tools.kernel import OnProgress
from g5kdeploy.tools.nix import FLAKE_ROOT, flake_unlocked, lock_hint

log = get_logger(__name__)
PHASE = "reserve"
#: Called after every poll of a job, for progress displays.
OnUpdate = Callable[[JobEntry, dict[str, Any]], None]


def create_run(store: RunStore, playbook: Playbook, playbook_path: Path, *, api_url: str) -> RunRecord:
    """Write the run's directory and record; nothing else happens before this is on disk."""
    record = RunRecord(
        run_id=new_run_id(playbook.name),
        playbook_path=str(playbook_path),
        playbook=playbook,
        testbed=playbook.testbed,
        api_url=api_url,
    )
    store.create(record)
    return record


def reserve(
    record: RunRecord,
    store: RunStore,
    testbed: Testbed,
    *,
    keep: bool = False,
    on_update: OnUpdate | None = None,
    on_build: OnProgress | None = None,
) -> RunRecord:
    """Bring every job of ``record`` to running and map its nodes to roles; resumable, never submits twice."""
    playbook = record.playbook
    start_phase(record, PHASE)
    store.save(record)
    api: Api | None = None
    try:
        testbed.preflight(playbook, on_progress=on_build, playbook_path=Path(record.playbook_path))
        check_ebpf(record, testbed)
        api = testbed.open(record, store)
        if not record.jobs:
            plan_jobs(record, store, api, playbook, now=testbed.clock.now(), usage_policy=testbed.usage_policy)
        for entry in record.jobs:
            _ensure_submitted(entry, record, store, api, playbook, testbed)
        _wait_running(record, store, api, testbed, playbook, on_update)
        record.roles = _roles(record)
        store.save(record)
        testbed.access(record, store)
        finish_phase(record, PHASE)
        store.save(record)
        return record
    except BaseException as exc:
        finish_phase(record, PHASE, error=str(exc) or type(exc).__name__)
        store.save(record)
        if not keep and api is not None:
            log.warning("reservation failed; releasing its jobs", run=record.run_id, error=str(exc))
            with shielded():
                release_run(record, store, testbed)
        raise


def check_pinned(playbook: Playbook, *, allow_unlocked: bool, root: Path = FLAKE_ROOT) -> None:
    """Refuse, before anything is reserved, to deploy an unpinned flake with nxc on Grid'5000: without a committed
    flake.lock, nixpkgs and nxc follow their branches and two runs of one commit may boot different systems."""
    deploy = playbook.deploy
    if allow_unlocked or playbook.testbed != "grid5000" or deploy is None or deploy.method != "nxc":
        return
    reason = flake_unlocked(root)
    if reason:
        raise ConfigError(f"deploy.method nxc: {reason}: nixpkgs and nxc would not be pinned", hint=lock_hint(root))


def check_ebpf(record: RunRecord, testbed: Testbed) -> None:
    """Compile the run's eBPF programs and check them against their ebpf_exporter configs, before any job exists:
    against the testbed's experiment kernel (VM testbed), else this machine's BTF. A run that does not deploy
    builds no program, and is not held to them."""
    playbook = record.playbook
    if playbook.deploy is None:
        return
    ebpf = playbook.ebpf
    kernel = testbed.experiment_kernel(record)
    checked = check_programs(
        ebpf.programs,
        ebpf.source_dir(Path(record.playbook_path)),
        vmlinux_h=kernel.vmlinux_h if kernel else None,
        required=kernel is not None,
    )
    if checked.skipped:
        log.warning("eBPF programs not checked", note=checked.skipped)
    else:
        log.info("eBPF programs compiled and checked", programs=", ".join(checked.programs), against=checked.against)


def jobs_over(record: RunRecord, api: Api) -> bool:
    """Whether the run's jobs have ended (released by us, or over in OAR): its nodes are no longer its own."""
    for entry in record.jobs:
        if entry.released or entry.state in FINAL_STATES:
            return True
        if entry.uid is not None and entry.state == "running":
            state = str(api.get_job(entry.site, entry.uid).get("state", entry.state))
            if state in FINAL_STATES:
                entry.state = state
                return True
    return False


def reserve_again(record: RunRecord, store: RunStore) -> None:
    """Forget the run's ended jobs and everything tied to their nodes, so the reserve phase starts afresh.

    The ended jobs stay in the ledger's history (``past_jobs``); results already measured stay on disk.
    """
    record.past_jobs += record.jobs
    record.jobs, record.roles = [], {}
    record.access, record.deploy, record.ebpf_toggle, record.provided = None, None, None, None
    record.released_at = None
    record.phases.pop(PHASE, None)
    if record.local is not None:
        record.local.forget_nodes()
    store.save(record)


def plan_jobs(
    record: RunRecord, store: RunStore, api: Api, playbook: Playbook, *, now: float, usage_policy: bool = False
) -> None:
    """Check the playbook as ``g5k check`` does, place its roles and record one job entry per site in the ledger
    (nothing is submitted)."""
    report = check_playbook(api, playbook, now=now, usage_policy=usage_policy)
    placement = report.placement
    for note in report.policy.notes if report.policy else []:
        log.warning("usage policy", note=note)
    for note in placement.notes:
        log.info("placement", note=note)
    for site, reason in placement.rejected.items():
        log.info("site not used", site=site, reason=reason)
    name = playbook.reservation.job_name or record.run_id
    for job in placement.jobs:
        record.jobs.append(
            JobEntry(
                site=job.site,
                name=name,
                resources=job.resources,
                walltime=job.walltime,
                types=_types(job.types, playbook),
                parts=[_part_record(part) for part in job.parts],
            )
        )
    store.save(record)


def _types(types: tuple[str, ...], playbook: Playbook) -> list[str]:
    """The playbook's types, plus ``deploy`` when the deploy method reinstalls nodes through Kadeploy."""
    needed = list(types)
    if playbook.deploy and playbook.deploy.needs_deploy_job and "deploy" not in needed:
        needed.append("deploy")
    return needed


def _part_record(part: Part) -> JobPart:
    return JobPart(cluster=part.cluster, properties=part.properties, roles=list(part.roles))


def _ensure_submitted(
    entry: JobEntry, record: RunRecord, store: RunStore, api: Api, playbook: Playbook, testbed: Testbed
) -> None:
    if entry.uid is not None:
        return
    existing = api.find_jobs(entry.site, entry.name)
    if existing:
        # A previous agent sent the POST and died before it could record the answer.
        log.info("re-attached to a job found by name", site=entry.site, uid=existing[0]["uid"])
        _apply(entry, existing[0])
        store.save(record)
        return
    entry.state = "submitting"
    store.save(record)
    job = api.submit_job(entry.site, job_body(entry, playbook, testbed.job_command(playbook, entry.walltime)))
    _apply(entry, job)
    store.save(record)
    log.info("job submitted", site=entry.site, uid=entry.uid, resources=entry.resources)


def job_body(entry: JobEntry, playbook: Playbook, command: str) -> dict[str, Any]:
    """The body of ``POST /sites/<site>/jobs`` for ``entry``."""
    reservation = playbook.reservation
    body: dict[str, Any] = {
        "name": entry.name,
        "resources": entry.resources,
        "command": command,
    }
    if entry.types:
        body["types"] = list(entry.types)
    if reservation.queue != "default":
        body["queue"] = reservation.queue
    if reservation.project:
        body["project"] = reservation.project
    if reservation.reservation:
        body["reservation"] = reservation.reservation
    return body


def _apply(entry: JobEntry, job: dict[str, Any]) -> None:
    entry.uid = int(job["uid"])
    entry.state = str(job.get("state", entry.state))
    for key in ("submitted_at", "scheduled_at", "started_at"):
        if job.get(key):
            setattr(entry, key, int(job[key]))
    if entry.state == "running":
        entry.nodes = list(job.get("assigned_nodes", []))


def _wait_running(
    record: RunRecord,
    store: RunStore,
    api: Api,
    testbed: Testbed,
    playbook: Playbook,
    on_update: OnUpdate | None,
) -> None:
    clock = testbed.clock
    reservation = playbook.reservation
    begin = reservation.reservation_epoch() or clock.now()
    deadline = max(begin, clock.now()) + reservation.max_wait_seconds
    pending = {id(entry): entry for entry in record.jobs if entry.state != "running" or not entry.nodes}
    planners = {key: PollState() for key in pending}
    due = dict.fromkeys(pending, clock.now())
    while pending:
        now = clock.now()
        for key in [k for k, at in due.items() if at <= now]:
            entry = pending[key]
            assert entry.uid is not None
            job = api.get_job(entry.site, entry.uid)
            before = entry.model_dump()
            _apply(entry, job)
            if on_update:
                on_update(entry, job)
            if entry.model_dump() != before:
                store.save(record)
            _check(entry, job, reservation.start_deadline_epoch(entry.submitted_at or now), reservation.start_deadline)
            if entry.state == "running":
                del pending[key], due[key]
                log.info("job running", site=entry.site, uid=entry.uid, nodes=len(entry.nodes))
            else:
                due[key] = clock.now() + planners[key].next_delay(job, clock.now())
        if not pending:
            break
        now = clock.now()
        if now >= deadline:
            waiting = ", ".join(f"{e.label} ({e.state})" for e in pending.values())
            raise DeadlineExceeded(
                f"jobs not running after max_wait {reservation.max_wait}: {waiting}",
                hint="raise reservation.max_wait, or choose a less busy site or time",
            )
        clock.sleep(max(0.0, min(min(due.values()), deadline) - now))


def _check(entry: JobEntry, job: dict[str, Any], start_deadline: float | None, deadline_text: str | None) -> None:
    if entry.state in FINAL_STATES:
        message = job.get("message") or "no message"
        raise ReservationError(f"job {entry.label} ended ({entry.state}) before it ran: {message}")
    scheduled = job.get("scheduled_at")
    if start_deadline is not None and scheduled and entry.state != "running" and scheduled > start_deadline:
        raise ReservationError(
            f"job {entry.label} would start at {_iso(scheduled)}, after start_deadline {deadline_text} "
            f"({_iso(start_deadline)}); it is deleted",
            hint="allow a later start_deadline, ask for fewer nodes, or pick another site or time",
        )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, PARIS).isoformat(timespec="seconds")


def _node_key(fqdn: str) -> tuple[str, int, str]:
    short = fqdn.split(".")[0]
    match = re.match(r"^(.*)-(\d+)$", short)
    return (match.group(1), int(match.group(2)), fqdn) if match else (short, 0, fqdn)


def _roles(record: RunRecord) -> dict[str, list[str]]:
    """Split each job's nodes among its roles: a cluster's nodes to the parts that asked for it."""
    roles: dict[str, list[str]] = {}
    for entry in record.jobs:
        left = sorted(entry.nodes, key=_node_key)
        for part in sorted(entry.parts, key=lambda p: p.cluster is None):
            pool = [n for n in left if part.cluster is None or _node_key(n)[0] == part.cluster]
            for name, count in part.roles:
                roles[name], pool = pool[:count], pool[count:]
                left = [n for n in left if n not in roles[name]]
    return roles
