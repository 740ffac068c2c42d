"""Release: delete every job the run's ledger knows, wait until the API shows each one over.

Tolerant by design: a job already killed, expired or never created is simply marked released, a job whose
uid was never recorded is found by its name, and a release cut short is finished by the next one.
"""

from __future__ import annotations

from g5kdeploy.errors import DeadlineExceeded
from g5kdeploy.log import get_logger
from g5kdeploy.results import FINAL_STATES, JobEntry, RunRecord, RunStore, utc_now
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.base import Testbed

log = get_logger(__name__)
#: API seconds to wait for OAR to show deleted jobs as over.
RELEASE_TIMEOUT = 120.0
POLL = 2.0


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
    if all(entry.released for entry in record.jobs):
        record.released_at = utc_now()
        testbed.close(record, store)
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
