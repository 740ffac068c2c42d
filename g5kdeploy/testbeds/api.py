"""The Grid'5000 REST API through python-grid5000: the only module that imports ``grid5000``.

It adds what python-grid5000 lacks: bounded, jittered retries of reads and deletes (it gives up on 503
at once and ends with a bare ``requests`` RetryError on 5xx), a job submission that never creates two
jobs for one request, an idempotent delete, credentials sent as UTF-8, and errors translated into
:class:`ApiError` with the password masked, or :class:`JobRefused` naming the playbook's field when OAR
refuses a job.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import requests
from grid5000 import Grid5000
from grid5000.exceptions import Grid5000AuthenticationError, Grid5000Error
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from g5kdeploy.credentials import Endpoint
from g5kdeploy.errors import ApiError, G5kError, JobRefused
from g5kdeploy.log import get_logger, redact

log = get_logger(__name__)
T = TypeVar("T")
LIVE_STATES = "waiting,launching,running,hold"
ALREADY_KILLED = "This job was already killed"
#: The API relays OAR's submission, which may take minutes (its own time-out is 300 s, the proxy's 180 s).
DEFAULT_TIMEOUT = 200.0
# g5k-api wraps OAR's answers as "Request to <its internal OAR API URL> failed with status 400: <OAR's text>".
# The URL is the platform's inside (the simulator names the real one): no use to the user, unlike OAR's text.
_RELAY = re.compile(r"^Request to \S+ failed with status \d+: ")
# The part of a job an OAR refusal is about, from its text; first match wins ("not enough resources" comes after
# "Set default walltime" in one message). The body's fields all come from the playbook's reservation section
# (reserve/phase.py): resources from the roles, the rest by name.
_REFUSED_FIELDS = (
    (re.compile(r"reservation", re.IGNORECASE), "reservation.reservation"),
    (re.compile(r"resource|propert", re.IGNORECASE), "reservation.roles (nodes, cluster, properties)"),
    (re.compile(r"job type|\btypes?\b", re.IGNORECASE), "reservation.types"),
    (re.compile(r"queue", re.IGNORECASE), "reservation.queue"),
    (re.compile(r"project", re.IGNORECASE), "reservation.project"),
    (re.compile(r"walltime", re.IGNORECASE), "reservation.walltime"),
)
#: Refusals about who is asking, not what: they stay ApiErrors.
_AUTH_STATUSES = (401, 403)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and (exc.status is None or exc.status >= 500)


def _failure(state: RetryCallState) -> str:
    """The error of the attempt that just failed, for the retry log line."""
    # tenacity records the outcome before it calls ``before_sleep``; it is only None before the first attempt.
    if state.outcome is None:
        return "unknown (no attempt recorded)"
    return str(state.outcome.exception())


def _utf8(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8")


def _refused(site: str, status: int, text: str) -> JobRefused:
    """OAR's refusal of a job, naming the playbook field it is most likely about."""
    field = next((name for pattern, name in _REFUSED_FIELDS if pattern.search(text)), "reservation")
    return JobRefused(
        f"{field}: OAR refused the job on {site}: {text}",
        status=status,
        field=field,
        oar_text=text,
        hint=f"nothing was submitted; change {field.split(' ')[0]} and run again",
    )


@contextmanager
def _translated(action: str, *, refusal: Callable[[int, str], G5kError] | None = None) -> Iterator[None]:
    """Turn python-grid5000's and requests' exceptions into ApiError, naming the action.

    With ``refusal``, a 4xx answer about the request itself (not the credentials) becomes
    ``refusal(status, text)``.
    """
    try:
        yield
    except Grid5000AuthenticationError:
        raise ApiError(
            f"{action}: the API refused the credentials (401)",
            status=401,
            hint="check G5K_USERNAME/G5K_PASSWORD or ~/.python-grid5000.yaml",
        ) from None
    except Grid5000Error as exc:
        status = getattr(exc, "response_code", None)
        message = getattr(exc, "error_message", str(exc))
        if isinstance(message, bytes):
            message = message.decode(errors="replace")
        text = _RELAY.sub("", redact(str(message)).strip())
        if refusal is not None and status is not None and 400 <= status < 500 and status not in _AUTH_STATUSES:
            raise refusal(status, text) from None
        raise ApiError(f"{action}: {status}: {text}", status=status) from None
    except requests.exceptions.RetryError:
        raise ApiError(f"{action}: the API kept answering with server errors", status=None) from None
    except requests.exceptions.Timeout:
        raise ApiError(f"{action}: the API did not answer in time", status=None) from None
    except requests.exceptions.ConnectionError:
        raise ApiError(f"{action}: cannot connect to the API", status=None) from None


class Api:
    """The calls g5kdeploy makes, each returning plain JSON data."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = 4,
        retry_wait_max: float = 20.0,
        submit_settle: float = 3.0,
    ) -> None:
        self.endpoint = endpoint
        self._gk = Grid5000(
            uri=endpoint.url,
            # requests encodes str credentials as Latin-1 (UnicodeEncodeError past it) and sends bytes as they
            # are: UTF-8, as curl and browsers send them and as the API decodes them.
            username=_utf8(endpoint.username),
            password=_utf8(endpoint.password),
            verify_ssl=endpoint.verify_ssl,
            timeout=timeout,
        )
        self._attempts = attempts
        self._retry_wait_max = retry_wait_max
        self._submit_settle = submit_settle
        self._sites: dict[str, Any] = {}

    def _site(self, uid: str) -> Any:
        # Each ``gk.sites[uid]`` is a GET of static reference data: fetch a site once, not before every call.
        if uid not in self._sites:
            self._sites[uid] = self._gk.sites[uid]
        return self._sites[uid]

    @property
    def user(self) -> str | None:
        return self.endpoint.username

    def _retrying(self, action: str, call: Callable[[], T]) -> T:
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=1, max=self._retry_wait_max),
            before_sleep=lambda state: log.warning(
                "api retry", action=action, attempt=state.attempt_number, error=_failure(state)
            ),
            reraise=True,
        )
        for attempt in retrying:
            with attempt, _translated(action):
                return call()
        raise AssertionError("unreachable: tenacity reraises")

    # Reference and status -------------------------------------------------------------------------

    def site_uids(self) -> list[str]:
        return self._retrying("list sites", lambda: [site.uid for site in self._gk.sites.list()])

    def clusters(self, site: str) -> list[dict[str, Any]]:
        """Every cluster of ``site``, production ones included."""
        return self._retrying(
            f"list clusters of {site}",
            lambda: [c.to_dict() for c in self._site(site).clusters.list(queues="all")],
        )

    def node_uids(self, site: str, cluster: str) -> list[str]:
        """The nodes of ``cluster`` in the reference API, by short uid (``gros-12``)."""
        return self._retrying(
            f"list nodes of {cluster}", lambda: [node.uid for node in self._site(site).clusters[cluster].nodes.list()]
        )

    def site_status(self, site: str) -> dict[str, Any]:
        return self._retrying(
            f"status of {site}",
            lambda: self._site(site).status.list(disks="no", vlans="no", subnets="no").to_dict(),
        )

    # Jobs -------------------------------------------------------------------------------------------

    def find_jobs(self, site: str, name: str, *, live_only: bool = True) -> list[dict[str, Any]]:
        """Our jobs on ``site`` called ``name``, oldest first."""
        query: dict[str, Any] = {"name": name}
        if live_only:
            query["state"] = LIVE_STATES
        if self.user:
            query["user"] = self.user
        jobs = self._retrying(
            f"look up job {name!r} on {site}",
            lambda: [job.to_dict() for job in self._site(site).jobs.list(**query)],
        )
        return sorted((job for job in jobs if job.get("name") == name), key=lambda job: job["uid"])

    def get_job(self, site: str, uid: int) -> dict[str, Any]:
        return self._retrying(f"get job {site}/{uid}", lambda: self._site(site).jobs[uid].to_dict())

    def submit_job(self, site: str, body: dict[str, Any]) -> dict[str, Any]:
        """Submit ``body`` (which must carry a unique ``name``) and return the job, created exactly once.

        python-grid5000 never retries a POST. When one fails with a 5xx, a time-out or a dropped
        connection, the job may exist all the same, so the job is looked up by name before any new
        attempt; and should a slow first POST land after a retry, the younger duplicate is deleted.
        """
        name = body["name"]
        failures = 0
        while True:
            try:
                with _translated(
                    f"submit job {name!r} to {site}", refusal=lambda status, text: _refused(site, status, text)
                ):
                    job: dict[str, Any] = self._site(site).jobs.create(body).to_dict()
                break
            except ApiError as exc:
                if not _is_transient(exc):
                    raise
                failures += 1
                log.warning("job submission failed; looking the job up by name", site=site, error=str(exc))
                time.sleep(self._submit_settle)
                existing = self.find_jobs(site, name)
                if existing:
                    job = existing[0]
                    log.info("the failed submission did create the job", site=site, uid=job["uid"])
                    return self.get_job(site, job["uid"])
                if failures >= self._attempts:
                    raise
        if failures:
            self._delete_duplicates(site, name, keep=job["uid"])
        return job

    def _delete_duplicates(self, site: str, name: str, *, keep: int) -> None:
        for duplicate in self.find_jobs(site, name):
            if duplicate["uid"] != keep:
                log.warning("deleting a duplicate job", site=site, uid=duplicate["uid"], kept=keep)
                self.delete_job(site, duplicate["uid"])

    def delete_job(self, site: str, uid: int) -> bool:
        """Ask for ``uid`` to be killed; False when it was already over or gone."""
        try:
            self._retrying(f"delete job {site}/{uid}", lambda: self._site(site).jobs.delete(uid))
        except ApiError as exc:
            if ALREADY_KILLED in str(exc) or exc.status == 404:
                return False
            raise
        return True

    # Deployments ------------------------------------------------------------------------------------

    def create_deployment(self, site: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a Kadeploy deployment; not retried (a deployment is not idempotent), errors carry the API text."""
        with _translated(f"deploy on {site}"):
            deployment: dict[str, Any] = self._site(site).deployments.create(body).to_dict()
        return deployment

    def get_deployment(self, site: str, uid: str) -> dict[str, Any]:
        return self._retrying(f"get deployment {site}/{uid}", lambda: self._site(site).deployments[uid].to_dict())

    def node_reference(self, site: str, cluster: str, uid: str) -> dict[str, Any]:
        """A node's description in the reference API (hardware, as g5k-checks verified it)."""
        return self._retrying(f"reference of {uid}", lambda: self._site(site).clusters[cluster].nodes[uid].to_dict())

    def cancel_deployment(self, site: str, uid: str) -> None:
        """Cancel a deployment still processing (the API answers 202 and marks it canceled)."""
        self._retrying(f"cancel deployment {site}/{uid}", lambda: self._site(site).deployments.delete(uid))
