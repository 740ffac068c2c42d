"""Validation of a job submission into what the scheduler needs, with OAR's refusal texts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from g5kdeploy.simulator import kavlan
from g5kdeploy.simulator.errors import ApiError, oar_relay
from g5kdeploy.simulator.oarsub import (
    ReservationDateError,
    ResourceSyntaxError,
    parse_resources,
    parse_window,
)
from g5kdeploy.simulator.properties import PropertyError, compile_properties
from g5kdeploy.simulator.records import Job
from g5kdeploy.simulator.reference import Reference
from g5kdeploy.simulator.scheduler import Gantt, PartNeed, fit

_INVALID = "The job you are trying to submit is not valid: "
_QUEUES = {
    "default": "default",
    "besteffort": "default",
    "admin": "default",
    "production": "production",
    "testing": "testing",
}
# g5k-api's own check of the reservation (Grid5000::Job#valid?), which joins its errors with "; ".
_DATE_SYNTAX = (
    "Syntax error in reservation {which} date, should at least match the format: 'YYYY-MM-DD hh:mm:ss'. "
    "Please see documentation for available date syntaxes."
)
# g5k-api forwards these to OAR as they come, where Perl turns an object into `HASH(0x...)`: the simulator
# refuses them in the words g5k-api uses for an ill-typed `reservation`.
_STRING_FIELDS = ("command", "resources", "properties", "queue", "project", "name", "directory", "reservation")
# A reservation up to a minute in the past is accepted: `hh:mm` cannot say "now" more precisely.
RESERVATION_SLACK = 60.0
_OARSUB_PREFIX = "Oarsub command exited with status 1: "


@dataclass(frozen=True)
class JobSpec:
    command: str
    resources: str
    properties: str
    walltime: int
    types: list[str]
    queue: str
    reservation: float | None
    needs: list[PartNeed]


def _check_types(body: dict[str, Any]) -> None:
    """400 naming every field of the wrong JSON type; null stands for an absent field."""
    errors = [
        f"`{field}` should be a String."
        for field in _STRING_FIELDS
        if body.get(field) is not None and not isinstance(body[field], str)
    ]
    types = body.get("types")
    if not (
        types is None or isinstance(types, str) or (isinstance(types, list) and all(isinstance(t, str) for t in types))
    ):
        errors.append("`types` should be an Array of Strings.")
    if errors:
        raise ApiError(400, _INVALID + "; ".join(errors))


class Requirements:
    """Turns submissions into node requirements over one inventory."""

    def __init__(self, reference: Reference, api_version: str) -> None:
        self.reference = reference
        self.api_version = api_version
        first = next((nodes[0] for nodes in reference.nodes.values() if nodes), None)
        self.columns = set(first.props) if first else set()

    def relay(self, site: str, what: str, body: str, status: int = 400) -> ApiError:
        return oar_relay(self.api_version, site, what, body, status)

    def check(self, site: str, body: dict[str, Any], now: float) -> JobSpec:
        _check_types(body)
        command = body.get("command")
        reservation_text = body.get("reservation")
        if not command and not reservation_text:
            raise ApiError(400, _INVALID + "you must give a :command to execute on launch")
        types = body.get("types") or []
        if isinstance(types, str):
            types = [types]
        queue = str(body.get("queue") or "default")
        if queue not in _QUEUES:
            # oarsub's refusal, with the code OAR's API counts as a bad request. On the real platform oarsub
            # exits with -8, seen as 248, which OAR's API does not list, so users there get a 500 instead.
            raise self.relay(
                site, "jobs.json", f"Oarsub command exited with status 8: # Error: queue '{queue}' does not exist"
            )
        resources = str(body.get("resources") or "nodes=1")
        properties = str(body.get("properties") or "").strip()
        try:
            request = parse_resources(resources)
        except ResourceSyntaxError as exc:
            raise self.relay(site, "jobs.json", f"{_OARSUB_PREFIX}Bad resource request ({exc})") from exc
        reservation = None
        walltime = request.walltime
        if reservation_text:
            try:
                reservation, end = parse_window(reservation_text, now)
            except ReservationDateError as exc:
                raise ApiError(
                    400, _INVALID + "; ".join(_DATE_SYNTAX.format(which=part) for part in exc.parts)
                ) from exc
            if reservation < now - RESERVATION_SLACK:
                raise self.relay(site, "jobs.json", f"{_OARSUB_PREFIX}[OAR] Reservation too old ({reservation_text})")
            if end is not None:
                # `start, end`: the window sets the walltime, whatever `resources` says.
                walltime = int(end - reservation)
                if walltime <= 0:
                    raise ApiError(
                        400, _INVALID + f"the reservation end date must be after its start date ({reservation_text})"
                    )
        needs = self._needs(site, request.parts, properties, list(types), queue)
        return JobSpec(
            command=str(command or ""),
            resources=resources,
            properties=properties,
            walltime=walltime,
            types=[str(t) for t in types],
            queue=queue,
            reservation=reservation,
            needs=needs,
        )

    def needs_for(self, job: Job) -> list[PartNeed]:
        return self._needs(job.site, parse_resources(job.resources).parts, job.properties, job.types, job.queue)

    def _needs(
        self, site: str, parts: tuple[Any, ...], properties: str, types: list[str], queue: str
    ) -> list[PartNeed]:
        try:
            job_filter = compile_properties(properties, self.columns)
            part_filters = [compile_properties("" if part.vlan else part.sql, self.columns) for part in parts]
            vlans = {i: kavlan.candidates(self.reference.sites[site], p.sql) for i, p in enumerate(parts) if p.vlan}
        except (PropertyError, kavlan.VlanFilterError) as exc:
            raise self.relay(site, "jobs.json", f"{_OARSUB_PREFIX}Bad resource request ({exc})") from exc
        wanted_queue = _QUEUES[queue]
        clusters = self.reference.collection(site, "clusters")
        nodes = [
            n
            for n in self.reference.nodes.get(site, [])
            if wanted_queue in clusters.get(n.cluster, {}).get("queues", ["default"])
            and ("exotic" in types or n.props["exotic"] == "NO")
            and ("deploy" not in types or n.props["deploy"] == "YES")
            and job_filter(n.props)
        ]
        needs = [
            PartNeed(vlans[i], part.count)
            if part.vlan
            else PartNeed(
                tuple((n.cluster, n.fqdn) for n in nodes if part_filter(n.props)), part.count, part.same_cluster
            )
            for i, (part, part_filter) in enumerate(zip(parts, part_filters, strict=True))
        ]
        # Every node free: if the request does not fit now, it never will.
        if fit(Gantt(), needs, 0.0, 1.0) is None:
            raise self.relay(
                site,
                "jobs.json",
                f"{_OARSUB_PREFIX}[ADMISSION RULE] Set default walltime to 3600. "
                "There are not enough resources for your request",
            )
        return needs
