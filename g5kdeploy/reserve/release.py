"""Release: delete every job the run's ledger knows, wait until the API shows each one over.

Tolerant by design: a job already killed, expired or never created is simply marked released, a job whose
uid was never recorded is found by its name, and a release cut short is finished by the next one. Whatever
happens to the jobs, the testbed's own daemons (the local testbed's nodes, monitoring and simulator) are
stopped. (The pipeline's :func:`~g5kdeploy.pipeline.release` then rewrites a collected run's report.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from g5kdeploy.errors import DeadlineExceeded, G5kError
from g5kdeploy.log import get_logger
from g5kdeploy.results import FINAL_STATES, JobEntry, RunRecord, RunStore, utc_now
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.base import Testbed

log = get_logger(__name__)
#: API seconds to wait for OAR to show deleted jobs as over.
RELEASE_TIMEOUT = 120.0
POLL = 2.0


@dataclass
class Released:
    """What one release did: a line per job, the daemons it stopped, and the error that left jobs behind."""

    messages: list[str] = field(default_factory=list)
    stopped: int = 0
    error: G5kError | None = None

    @property
    def remaining(self) -> bool:
        return self.error is not None


def release_run(record: RunRecord, store: RunStore, testbed: Testbed, *, timeout: float = RELEASE_TIMEOUT) -> Released:
    """Release ``record`` completely: its jobs through the API, then every daemon of its testbed.

    Never raises a G5kError: a job that could not be deleted is reported in :attr:`Released.error`, with the
    ledger still holding it for the next ``g5k release``; the daemons are stopped either way.
    """
    outcome = Released()
    try:
        if any(not entry.released for entry in record.jobs):
            outcome.messages = release(record, store, testbed.open(record, store), testbed, timeout=timeout)
        elif not record.released_at:
            record.released_at = utc_now()
    except G5kError as exc:
        outcome.error = exc
        log.error(
            "could not release every job; they stay in the ledger", error=str(exc), fix=f"g5k release {record.run_id}"
        )
    finally:
        outcome.stopped = len(testbed.running_daemons(record))
        testbed.close(record, store)
        store.save(record)
    return outcome


def release(
    record: RunRecord, store: RunStore, api: Api, testbed: Testbed, *, timeout: float = RELEASE_TIMEOUT
) -> list[str]:
    """Delete the run's live jobs and stop the testbed's parts; returns one line per job for the user."""
    messages: list[str] = []
    doomed: list[tuple[JobEntry, int]] = []
    for entry in record.jobs:
        if entry.released:
            continue
        uids = [entry.uid] if entry.uid is not None else [job["uid"] for job in api.find_jobs(entry.site, entry.name)]
        if not uids:
            entry.released, entry.state = True, "never created"
            messages.append(f"{entry.label}: never created, nothing to release")
            continue
        for uid in uids:
            entry.uid = uid
            deleted = api.delete_job(entry.site, uid)
            messages.append(f"{entry.site}/{uid}: {'deletion requested' if deleted else 'already over'}")
            doomed.append((entry, uid))
        store.save(record)
    _wait_final(record, store, api, testbed, doomed, timeout=timeout)
    if all(entry.released for entry in record.jobs) and not record.released_at:
        record.released_at = utc_now()
    store.save(record)
    return messages


def _wait_final(
    record: RunRecord,
    store: RunStore,
    api: Api,
    testbed: Testbed,
    doomed: list[tuple[JobEntry, int]],
    *,
    timeout: float,
) -> None:
    clock = testbed.clock
    deadline = clock.now() + timeout
    left = list(doomed)
    while left:
        still: list[tuple[JobEntry, int]] = []
        for entry, uid in left:
            state = api.get_job(entry.site, uid).get("state", "")
            if state in FINAL_STATES:
                entry.state, entry.released = state, True
                log.info("job released", site=entry.site, uid=uid, state=state)
            else:
                entry.state = state
                still.append((entry, uid))
        store.save(record)
        left = still
        if left and clock.now() >= deadline:
            jobs = ", ".join(f"{entry.site}/{uid} ({entry.state})" for entry, uid in left)
            raise DeadlineExceeded(
                f"jobs still not over {timeout:.0f} s after deletion: {jobs}",
                hint=f"run g5k release {record.run_id} again later; they are still in the ledger",
            )
        if left:
            clock.sleep(POLL)
