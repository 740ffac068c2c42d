"""Playbooks: one YAML file per experiment, read within bounds and validated in one pass.

Every problem is reported together, each as ``file:line: field: what is wrong (what was expected)``, and
the whole load fails with a :class:`ConfigError` (exit code 2) before anything touches the testbed. Reading
is bounded: regular files only, at most :data:`MAX_BYTES`, UTF-8, nesting and alias expansion capped.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import re
import reprlib
import stat
import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from g5kdeploy.errors import ConfigError
from g5kdeploy.walltime import MAX_WALLTIME, parse_duration

PARIS = ZoneInfo("Europe/Paris")
#: The experiment's own eBPF programs, shared with the Nix side (nix/ebpf/default.nix builds them too).
DEFAULT_EBPF_DIR = Path(__file__).resolve().parents[1] / "nix" / "ebpf"
QUEUES = ("default", "production", "besteffort", "testing", "admin")
#: A playbook is a few kilobytes: a larger file is the wrong one.
MAX_BYTES = 1024 * 1024
#: Nesting, aliases included; a playbook needs five levels.
MAX_DEPTH = 32
#: Values in the document once aliases are expanded; a playbook needs a few hundred.
MAX_VALUES = 10_000
#: Problems listed in one error; past them, a count (the wrong file can have thousands).
MAX_PROBLEMS = 50
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_OAR_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{1,2})(?::(\d{2}))?(?::(\d{2}))?")
_CLUSTER = re.compile(r"[a-z][a-z0-9-]*")
# OAR's job types (its default admission rule: deploy, besteffort, container[=x], inner=<job>, timesharing=user,*,
# token:x=1, postpone=<date>...) and Grid'5000's (night, exotic, monitor=<regex>, origin=<tag>): a name, then
# maybe "=" and a value of word characters and the few signs those forms use, or a date. Never a space, quote,
# ';', '&', '|', '$' or '`': the types end up on an oarsub command line.
_JOB_TYPE = re.compile(
    r"(?:token:)?[A-Za-z][\w-]{0,62}(?:=(?:[\w.*+?^\[\],:-]{1,200}|\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?))?", re.ASCII
)
_PROJECT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_JOB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# Messages quote what was given, not a megabyte of it.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_quote = _REPR.repr


def parse_oar_date(text: str) -> datetime:
    """An OAR reservation date (``YYYY-MM-DD hh[:mm[:ss]]``, Europe/Paris) as an aware datetime."""
    match = _OAR_DATE.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a date OAR accepts: use 'YYYY-MM-DD hh:mm:ss' (Europe/Paris time)")
    year, month, day, hour, minute, second = (int(part) if part else 0 for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=PARIS)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a real date ({exc})") from None


class _Strict(BaseModel):
    # strict: ``nodes: true`` is not one node, ``nodes: "2"`` is not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Role(_Strict):
    nodes: Annotated[int, Field(gt=0, le=10_000)]
    cluster: str | None = None
    properties: str | None = None
    min_nodes: Annotated[int, Field(gt=0)] | None = None

    @field_validator("cluster")
    @classmethod
    def _cluster_name(cls, value: str | None) -> str | None:
        if value is not None and not _CLUSTER.fullmatch(value):
            raise ValueError(f"{value!r} is not a cluster name (lower-case letters, digits, '-'; e.g. gros)")
        return value

    @field_validator("properties")
    @classmethod
    def _sql_filter(cls, value: str | None) -> str | None:
        if value is not None:
            check_properties(value)
        return value

    @model_validator(mode="after")
    def _min_not_above_nodes(self) -> Role:
        if self.min_nodes is not None and self.min_nodes > self.nodes:
            raise ValueError(f"min_nodes ({self.min_nodes}) is larger than nodes ({self.nodes}): lower it")
        return self


class Reservation(_Strict):
    site: str | list[str] = "auto"
    roles: dict[str, Role]
    walltime: str = "1:00"
    queue: Literal["default", "production", "besteffort", "testing", "admin"] = "default"
    project: str | None = None
    types: list[str] = []
    reservation: str | None = None
    start_deadline: str | None = None
    job_name: str | None = None
    max_wait: str = "12:00"

    @field_validator("site")
    @classmethod
    def _site_names(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names:
            raise ValueError("an empty list: name at least one site, or use 'auto'")
        for name in names:
            if not _SLUG.fullmatch(name):
                raise ValueError(f"{name!r} is not a site name (e.g. nancy, rennes, or auto)")
        if isinstance(value, list) and "auto" in value:
            raise ValueError("'auto' stands alone: use site: auto, or list sites")
        return value

    @field_validator("roles")
    @classmethod
    def _role_names(cls, value: dict[str, Role]) -> dict[str, Role]:
        if not value:
            raise ValueError("no roles: add at least one, e.g. roles: {exporter: {nodes: 2}}")
        for name in value:
            if not _SLUG.fullmatch(name):
                raise ValueError(f"role name {name!r}: use lower-case letters, digits, '-' or '_'")
        return value

    @field_validator("walltime", "max_wait", "start_deadline", mode="before")
    @classmethod
    def _hours_as_text(cls, value: Any) -> Any:
        # ``walltime: 2`` means two hours, as on oarsub's command line.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value: str) -> str:
        parse_duration(value, maximum=MAX_WALLTIME, kind="walltime")
        return value

    @field_validator("max_wait")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        for job_type in value:
            if not _JOB_TYPE.fullmatch(job_type):
                raise ValueError(
                    f"job type {_quote(job_type)}: OAR types are single words (deploy, night, exotic) or name=value "
                    "(inner=1234, timesharing=user,*, monitor=prom_.*), without spaces or shell characters"
                )
        return value

    @field_validator("project")
    @classmethod
    def _project(cls, value: str | None) -> str | None:
        if value is not None and not _PROJECT.fullmatch(value):
            raise ValueError(f"{_quote(value)}: a Grid'5000 project name, letters, digits, '.', '_' or '-'")
        return value

    @field_validator("reservation")
    @classmethod
    def _reservation_date(cls, value: str | None) -> str | None:
        if value is not None:
            parse_oar_date(value)
        return value

    @field_validator("start_deadline")
    @classmethod
    def _start_deadline(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_deadline(value)
        return value

    @field_validator("job_name")
    @classmethod
    def _job_name(cls, value: str | None) -> str | None:
        if value is not None and not _JOB_NAME.fullmatch(value):
            raise ValueError(f"{_quote(value)}: use letters, digits, '.', '_' or '-' (OAR job names)")
        return value

    @property
    def walltime_seconds(self) -> int:
        return parse_duration(self.walltime)

    @property
    def max_wait_seconds(self) -> int:
        return parse_duration(self.max_wait)

    @property
    def sites(self) -> list[str] | None:
        """The sites the user allows, or None for ``auto``."""
        if self.site == "auto":
            return None
        return [self.site] if isinstance(self.site, str) else list(self.site)

    def start_deadline_epoch(self, submitted_at: float) -> float | None:
        """The latest acceptable start, in epoch seconds, for a job submitted at ``submitted_at``."""
        if self.start_deadline is None:
            return None
        deadline = _parse_deadline(self.start_deadline)
        if isinstance(deadline, datetime):
            return deadline.timestamp()
        return submitted_at + deadline

    def reservation_epoch(self) -> float | None:
        return parse_oar_date(self.reservation).timestamp() if self.reservation else None


def _parse_deadline(value: str) -> datetime | int:
    """A duration after submission (``0:30``) or an absolute time (ISO 8601; naive means Paris time)."""
    try:
        return parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r}: give a duration after submission (H:MM, e.g. 0:30) or a date "
            "(ISO 8601, e.g. 2026-12-01T19:30, Europe/Paris unless an offset is given)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=PARIS)


EbpfState = Literal["on", "off"]
#: A parameter's value, as YAML gives it (on/off/yes stay strings: see _PlaybookLoader).
Value = str | int | float
#: Names a command may use besides the parameters', and that no parameter may take.
RESERVED_FIELDS = ("repetition", "node")
#: The parameter that attaches (on) and detaches (off) the run's eBPF programs around each run.
EBPF_PARAMETER = "ebpf"
#: The benchmark the agent builds itself (from g5kdeploy/payload/statx-bench.c): an artifact by name.
BUILTIN_ARTIFACTS = ("statx-bench",)
#: What statx-bench's JSON gives, as the statx view of the report and the nightly metrics name it.
STATX_METRICS = {
    "calls": "calls", "calls_per_s": "calls_per_s", "duration_s": "duration_s", "errors_total": "errors_total",
    **{f"{name}_ns": f"latency_ns.{name}" for name in ("min", "p50", "p90", "p99", "p999", "max")},
}  # fmt: skip
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_V1_KEYS = ("paths", "iterations", "warmup", "threads", "ebpf")


def slug(value: Value) -> str:
    """A parameter value as it appears in a combination's key (and so in file names)."""
    return re.sub(r"[^A-Za-z0-9.+]+", "-", str(value)).strip("-") or "-"


@dataclass(frozen=True)
class Combination:
    """One point of the sweep: a value for every parameter, and the repetition."""

    parameters: tuple[tuple[str, Value], ...]
    repetition: int

    @property
    def key(self) -> str:
        """``threads-1_ebpf-on_rep-2``: the parameters in the playbook's order, then the repetition."""
        return "_".join([*(f"{name}-{slug(value)}" for name, value in self.parameters), f"rep-{self.repetition}"])

    @property
    def values(self) -> dict[str, Value]:
        return dict(self.parameters)

    @property
    def label(self) -> str:
        """``threads=1 ebpf=on``: the combination without its repetition."""
        return " ".join(f"{name}={value}" for name, value in self.parameters) or "(no parameters)"

    def value(self, name: str) -> Value | None:
        return self.values.get(name)


def command_fields(command: str) -> list[str]:
    """The format fields of a workload command; ``ValueError`` for what ``str.format`` would do differently."""
    fields: list[str] = []
    try:
        parsed = list(string.Formatter().parse(command))
    except ValueError as exc:
        raise ValueError(f"{_quote(command)}: {exc} (write a literal brace as {{{{ or }}}})") from None
    for _text, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _NAME.fullmatch(name):
            raise ValueError(f"{{{name}}}: a field names a parameter, e.g. {{threads}} (write a literal brace as {{{{)")
        if spec or conversion:
            raise ValueError(f"{{{name}}}: no format spec or conversion; the value is put in as given, shell-quoted")
        fields.append(name)
    return fields


class Workload(_Strict):
    """The command each combination runs on every benched node, and how its output becomes metrics."""

    command: Annotated[str, Field(min_length=1, max_length=4096)]
    output: Literal["json", "csv", "regex"] = "json"
    #: With output: regex, the named groups of the first match become the metrics.
    pattern: str | None = None
    #: json: metric name -> dotted path in the output (default: every number); csv: metric name -> column.
    metrics: dict[str, Annotated[str, Field(min_length=1)]] | None = None
    #: Files the command needs in its working directory: statx-bench (built by the agent) or paths relative to
    #: the playbook, pushed by the deploy phase.
    artifacts: list[str] = []

    @model_validator(mode="after")
    def _parser(self) -> Workload:
        if self.output == "regex":
            if not self.pattern:
                raise ValueError(
                    "bench.workload.pattern: output: regex needs a pattern with named groups, e.g. "
                    "'sum=(?P<sum>[0-9.]+)'"
                )
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"bench.workload.pattern: not a regular expression: {exc}") from None
            if not compiled.groupindex:
                raise ValueError(
                    f"bench.workload.pattern: {_quote(self.pattern)} has no named group: name what it "
                    "captures, e.g. (?P<events_per_s>[0-9.]+); each named group becomes a metric"
                )
            bad = [name for name in compiled.groupindex if not _NAME.fullmatch(name)]
            if bad:
                raise ValueError(
                    f"bench.workload.pattern: group names {', '.join(bad)}: use lower-case letters, digits and _"
                )
            if self.metrics is not None:
                raise ValueError(
                    "bench.workload.metrics: with output: regex the pattern's named groups are the "
                    "metrics: leave metrics out"
                )
        elif self.pattern is not None:
            raise ValueError(
                f"bench.workload.pattern: only for output: regex (this workload's output is {self.output})"
            )
        for name in self.metrics or {}:
            if not _NAME.fullmatch(name):
                raise ValueError(f"bench.workload.metrics: {_quote(name)}: use lower-case letters, digits and _")
        return self

    @field_validator("artifacts")
    @classmethod
    def _artifacts(cls, value: list[str]) -> list[str]:
        for name in value:
            if name.startswith("/") or ".." in Path(name).parts or not name.strip():
                raise ValueError(
                    f"{_quote(name)}: an artifact is statx-bench or a path inside the playbook's directory"
                )
        if len({Path(name).name for name in value}) != len(value):
            raise ValueError(f"{value!r}: two artifacts share a file name (each lands in the nodes' artifacts/)")
        return value


class Bench(_Strict):
    """The sweep: every combination of the parameters (minus the excluded ones), each repeated, on every node."""

    roles: list[str] | None = None
    workload: Workload
    parameters: dict[str, Annotated[list[Value], Field(min_length=1)]] = {}
    exclude: list[dict[str, Value]] = []
    repetitions: Annotated[int, Field(gt=0, le=1000)] = 1
    timeout: Annotated[int, Field(gt=0, le=86_400)] = 600

    @model_validator(mode="before")
    @classmethod
    def _not_version_1(cls, data: Any) -> Any:
        if isinstance(data, dict) and (old := [key for key in _V1_KEYS if key in data]):
            raise ValueError(
                f"bench: {', '.join(old)} are version-1 keys; a version-2 bench is a workload and "
                f"parameters:\n{bench_v2_text(data)}"
            )
        return data

    @field_validator("roles")
    @classmethod
    def _distinct_roles(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"{value!r} repeats a role: list each once")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, list[Value]]) -> dict[str, list[Value]]:
        for name, values in value.items():
            if name in RESERVED_FIELDS:
                raise ValueError(
                    f"{name}: a reserved name (the command gets {{{name}}} from the agent): rename the parameter"
                )
            if not _NAME.fullmatch(name):
                raise ValueError(f"{_quote(name)}: a parameter name is lower-case letters, digits and _")
            if len(set(map(str, values))) != len(values):
                raise ValueError(f"{name}: {values!r} repeats a value: list each once")
            if len({slug(v) for v in values}) != len(values):
                raise ValueError(
                    f"{name}: {values!r} has values that name the same result directory: "
                    "make them differ in letters or digits"
                )
            if name == EBPF_PARAMETER and not set(map(str, values)) <= {"on", "off"}:
                raise ValueError(
                    f"ebpf: {values!r}: a reserved parameter, attaching the run's eBPF programs: its "
                    'values are "on" and "off"'
                )
        return value

    @model_validator(mode="after")
    def _sweep(self) -> Bench:
        try:
            fields = command_fields(self.workload.command)
        except ValueError as exc:
            raise ValueError(f"bench.workload.command: {exc}") from None
        unknown = [name for name in fields if name not in self.parameters and name not in RESERVED_FIELDS]
        if unknown:
            known = ", ".join([*self.parameters, *RESERVED_FIELDS])
            raise ValueError(f"bench.workload.command: {{{unknown[0]}}} is not a parameter; known: {known}")
        unused = [name for name in self.parameters if name != EBPF_PARAMETER and name not in fields]
        if unused:
            raise ValueError(
                f"bench.parameters: {unused[0]} is not used in bench.workload.command: add "
                f"{{{unused[0]}}} where its value goes, or remove it"
            )
        for index, entry in enumerate(self.exclude):
            for name, value in entry.items():
                if name not in self.parameters:
                    raise ValueError(f"bench.exclude: entry {index + 1}: {name} is not a parameter")
                if str(value) not in map(str, self.parameters[name]):
                    raise ValueError(
                        f"bench.exclude: entry {index + 1}: {name}: {value!r} is not one of its values "
                        f"{self.parameters[name]!r}"
                    )
            if not entry:
                raise ValueError(f"bench.exclude: entry {index + 1} is empty: it would exclude everything")
        if not self.combinations():
            raise ValueError("bench.exclude: every combination is excluded: nothing would run")
        return self

    @property
    def ebpf_states(self) -> list[str]:
        """The eBPF states the sweep goes through (none: the programs are left as the deploy put them)."""
        return [str(value) for value in self.parameters.get(EBPF_PARAMETER, [])]

    def combinations(self) -> list[Combination]:
        """Repetitions outermost, then the parameters in the playbook's order, the first one outermost: a sweep
        cut short still has every combination measured at least once."""
        names = list(self.parameters)
        points = [
            tuple(zip(names, values, strict=True))
            for values in itertools.product(*(self.parameters[name] for name in names))
        ]
        kept = [point for point in points if not any(_matches(point, entry) for entry in self.exclude)]
        return [Combination(point, repetition) for repetition in range(1, self.repetitions + 1) for point in kept]


def _matches(point: tuple[tuple[str, Value], ...], entry: dict[str, Value]) -> bool:
    values = dict(point)
    return all(str(values.get(name)) == str(value) for name, value in entry.items())


def bench_v2_text(bench: dict[str, Any]) -> str:
    """A version-1 bench section rewritten as version 2: the statx-bench workload with the same sweep."""
    paths = bench.get("paths") or ["/tmp/g5k-statx-target", "/etc/hostname"]
    command = (
        f"statx-bench --json --iterations {bench.get('iterations', 100_000)} "
        f"--warmup {bench.get('warmup', 1_000)} --threads {{threads}} " + " ".join(f"--path {path}" for path in paths)
    )
    lines = ["bench:"]
    if bench.get("roles"):
        lines.append(f"  roles: [{', '.join(map(str, bench['roles']))}]")
    lines += [
        "  workload:",
        f'    command: "{command}"',
        "    output: json",
        f"    metrics: {{{', '.join(f'{name}: {path}' for name, path in STATX_METRICS.items())}}}",
        "    artifacts: [statx-bench]",
        "  parameters:",
        f"    threads: [{', '.join(map(str, bench.get('threads') or [1]))}]",
    ]
    if bench.get("ebpf"):
        lines.append(f"    ebpf: [{', '.join(repr(str(state)).replace(chr(39), chr(34)) for state in bench['ebpf'])}]")
    for key in ("repetitions", "timeout"):
        if key in bench:
            lines.append(f"  {key}: {bench[key]}")
    return "\n".join(lines)


class BinaryCache(_Strict):
    url: str
    public_key: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"(https?|file|s3|ssh|ssh-ng)://\S+", value):
            raise ValueError(f"{value!r}: a substituter URL such as https://cache.example.org")
        return value

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]+:[A-Za-z0-9+/]+=*", value):
            raise ValueError(f"{value!r}: a Nix public key, name:base64 (nix-store --generate-binary-cache-key)")
        return value


Flavour = Literal["g5k-nfs-store", "g5k-ramdisk", "g5k-image"]
KEXEC_FLAVOURS = ("g5k-nfs-store", "g5k-ramdisk")


class Deploy(_Strict):
    """How the nodes get the experiment's system: nxc (kexec or image), Kadeploy, or plain artifacts."""

    method: Literal["nxc", "kadeploy", "artifacts"]
    flavour: Flavour = "g5k-nfs-store"
    composition: str = "nxc/composition.nix"
    environment: str | None = None
    binary_cache: BinaryCache | None = None
    min_nodes: Annotated[int, Field(ge=0)] | None = None
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    timeout: Annotated[int, Field(gt=0, le=86_400)] = 1800

    @model_validator(mode="after")
    def _method_needs(self) -> Deploy:
        if self.method == "kadeploy" and not self.environment:
            raise ValueError("deploy.environment: kadeploy needs the image's environment description (an http URL)")
        if self.environment and not re.fullmatch(r"https?://\S+", self.environment):
            raise ValueError(f"deploy.environment: {self.environment!r} is not an http(s) URL")
        return self

    @property
    def needs_deploy_job(self) -> bool:
        """Kadeploy (and nxc's g5k-image flavour) needs an OAR job of type deploy; kexec does not."""
        return self.method == "kadeploy" or (self.method == "nxc" and self.flavour == "g5k-image")

    @property
    def kexec(self) -> bool:
        return self.method == "nxc" and self.flavour in KEXEC_FLAVOURS


DEFAULT_QUERIES = {
    "statx_latency": "ebpf_exporter_statx_latency_seconds_bucket",
    "statx_override": "ebpf_exporter_statx_override_total",
    "node_cpu": "sum by (node, mode) (rate(node_cpu_seconds_total[5s]))",
}


class Collect(_Strict):
    """What to bring back: the collector's Prometheus (snapshot and exported series)."""

    role: str = "collector"
    #: None: 9090 on Grid'5000 (where NixOS' Prometheus listens), a free port per run on the local testbed.
    port: Annotated[int, Field(gt=0, lt=65536)] | None = None
    step: Annotated[float, Field(gt=0, le=3600)] = 1.0
    queries: dict[str, str] = DEFAULT_QUERIES

    @field_validator("queries")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expr in value.items():
            if not _SLUG.fullmatch(name):
                raise ValueError(f"query name {name!r}: lower-case letters, digits, '-' or '_' (it names a CSV file)")
            if not expr.strip():
                raise ValueError(f"query {name!r} is empty: give a PromQL expression")
        return value


class Nightly(_Strict):
    """Every night: when to start, for how long, what to track and what to do on a regression.

    ``metrics`` names what the workload produces (``override_total``, the eBPF override counter's total over the
    run, besides); left out, every metric the workload names whose direction is known. Whether a higher value
    is better comes from ``better``, else from the name: ``*_per_s``, ``*iops``, ``*throughput``,
    ``*bandwidth``, ``*_bps``, ``*_ops`` are better higher; ``*_ns``, ``*_us``, ``*_ms``, ``*_s``,
    ``*_seconds``, ``*latency``, ``*_time``, ``*errors``, ``*errors_total`` are better lower.
    """

    start: str = "19:05"
    walltime: str | None = None
    keep: Annotated[int, Field(gt=0, le=10_000)] = 60
    metrics: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(min_length=1)] | None = None
    #: metric -> "higher" or "lower" (is better), for the metrics whose name does not say.
    better: dict[str, Literal["higher", "lower"]] = {}
    threshold: Annotated[float, Field(gt=0, lt=10)] = 0.05
    on_regression: str | None = None

    @field_validator("start")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"{value!r}: a time of day, HH:MM in Europe/Paris (e.g. 19:05)")
        return value

    @field_validator("walltime", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("walltime")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value, maximum=MAX_WALLTIME, kind="walltime")
        return value

    @field_validator("metrics")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"{value!r} repeats a metric: list each once")
        return value

    @staticmethod
    def direction_by_name(metric: str) -> bool | None:
        """Whether a higher value is better, as the metric's name tells (its last dotted part first); None when
        it does not say."""
        higher = ("per_s", "per_sec", "per_second", "iops", "throughput", "bandwidth", "_bps", "_ops")
        lower = ("_ns", "_us", "_ms", "_s", "_sec", "_seconds", "latency", "_time", "errors", "errors_total")
        if metric == "override_total":
            # Fewer overrides means the program stopped working: the experiment is the override.
            return True
        for part in reversed(metric.lower().split(".")):
            if part.endswith(higher):
                return True
            if part.endswith(lower):
                return False
        return None

    def higher_is_better(self, metric: str) -> bool | None:
        if metric in self.better:
            return self.better[metric] == "higher"
        return self.direction_by_name(metric)

    def tracked(self, bench: Bench | None) -> tuple[list[str], dict[str, str]]:
        """The metrics the history follows, and the workload's metrics left out with why; ``ValueError`` naming
        ``nightly.metrics`` or ``nightly.better`` for what the workload cannot produce or an unknown direction.

        What can be checked is: the names the workload gives its metrics (``bench.workload.metrics``, or the
        named groups of its regex); a json or csv workload without ``metrics`` takes every number it finds.
        """
        workload = bench.workload if bench else None
        named: list[str] | None = None
        source = ""
        if workload is not None and workload.output == "regex" and workload.pattern:
            named, source = list(re.compile(workload.pattern).groupindex), "the named groups of bench.workload.pattern"
        elif workload is not None and workload.metrics is not None:
            named, source = list(workload.metrics), "bench.workload.metrics"
        left_out: dict[str, str] = {}
        if self.metrics is None:
            if workload is None:
                return [], left_out
            if named is None:
                raise ValueError(
                    f"nightly.metrics: the workload (output: {workload.output}, no bench.workload.metrics) does not "
                    "name its metrics: list the ones to follow, e.g. metrics: [latency_ns.p50]"
                )
            tracked = [name for name in named if self.higher_is_better(name) is not None]
            left_out = {name: "whether higher is better is unknown (set nightly.better)"
                        for name in named if name not in tracked}  # fmt: skip
            if not tracked:
                raise ValueError(
                    f"nightly.metrics: no metric of the workload ({', '.join(named)}) says by its name whether "
                    f"higher is better: list them in nightly.better, e.g. better: {{{named[0]}: higher}}"
                )
        else:
            tracked = list(self.metrics)
            unknown = [name for name in tracked if name != "override_total" and named is not None and name not in named]
            if unknown:
                raise ValueError(
                    f"nightly.metrics: {', '.join(unknown)} not among the workload's metrics ({source}: "
                    f"{', '.join(named or [])}); also allowed: override_total"
                )
            undirected = [name for name in tracked if self.higher_is_better(name) is None]
            if undirected:
                raise ValueError(
                    f"nightly.metrics: whether a higher {undirected[0]} is better cannot be told from its name: say "
                    f"it in nightly.better, e.g. better: {{{undirected[0]}: higher}} (or lower)"
                )
        stray = [name for name in self.better if name not in tracked]
        if stray:
            raise ValueError(
                f"nightly.better: {', '.join(stray)} not among the followed metrics ({', '.join(tracked)})"
            )
        return tracked, left_out


class Ssh(_Strict):
    """How to reach Grid'5000 nodes; the local testbed makes its own keys."""

    key: str | None = None


class Ebpf(_Strict):
    """The eBPF programs the deploy phase compiles and loads: each ``<name>.bpf.c`` with its ebpf_exporter
    config ``<name>.yaml``, in ``directory`` (relative to the playbook's; default the agent's nix/ebpf)."""

    programs: Annotated[list[str], Field(min_length=1)] = ["statx-override"]
    directory: str | None = None

    @field_validator("programs")
    @classmethod
    def _program_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _SLUG.fullmatch(name):
                raise ValueError(f"{_quote(name)}: a program name is its files' stem: <name>.bpf.c, <name>.yaml")
        if len(set(value)) != len(value):
            raise ValueError(f"{value!r} repeats a program: list each once")
        return value

    def source_dir(self, playbook_path: Path) -> Path:
        if self.directory is None:
            return DEFAULT_EBPF_DIR
        directory = Path(self.directory)
        return directory if directory.is_absolute() else playbook_path.parent / directory


class Vm(_Strict):
    """The VM testbed: which roles are QEMU guests running the experiment's kernel, and their size."""

    #: Default: every role but the collector (which stays a loopback node beside its real Prometheus).
    roles: list[str] | None = None
    memory: Annotated[int, Field(ge=256, le=65_536)] = 1024
    boot_timeout: Annotated[int, Field(gt=0, le=3600)] = 300

    @field_validator("roles")
    @classmethod
    def _distinct_roles(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"{value!r} repeats a role: list each once")
        return value


#: The kernel options the statx override needs: the one list, which Nix forces, the VM kernel carries and the
#: deploy checks in /proc/config.gz.
KERNEL_OPTIONS_FILE = Path(__file__).resolve().parents[1] / "nix" / "kernel-options.json"
_GITHUB_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
# An SRI sha256 (what fetchFromGitHub's hash takes): 32 bytes in base64, 43 characters and one '='.
_SRI_SHA256 = re.compile(r"sha256-[A-Za-z0-9+/]{43}=")
_KCONFIG_NAME = re.compile(r"[A-Z0-9_]{1,100}")
_KERNEL_BRANCH = re.compile(r"\d+\.\d+")


def experiment_kernel_options() -> dict[str, str]:
    """``{"BPF_KPROBE_OVERRIDE": "y", ...}``: what nix/kernel-options.json asks for."""
    options: dict[str, str] = json.loads(KERNEL_OPTIONS_FILE.read_text())
    return options


class KernelSource(_Strict):
    """A kernel fork on GitHub, pinned: what fetchFromGitHub gets (owner/repo, rev, hash)."""

    github: str
    rev: str
    hash: str
    version: str
    #: The modules' directory name (``uname -r``); buildLinux derives it from version when left out.
    modDirVersion: str | None = None  # noqa: N815 - nixpkgs' name for it, as the user knows it

    @model_validator(mode="before")
    @classmethod
    def _pinned(cls, data: Any) -> Any:
        # A source without its commit or hash builds whatever the branch holds that day: never the same kernel.
        if isinstance(data, dict):
            if "rev" not in data:
                raise ValueError(
                    "kernel.source.rev: missing: pin the source to a commit (40 hex digits; "
                    "git ls-remote https://github.com/OWNER/REPO BRANCH gives it)"
                )
            if "hash" not in data:
                raise ValueError(
                    'kernel.source.hash: missing: give the SRI hash of the source (hash: "sha256-...="; with '
                    "lib.fakeHash in its place, nix build prints the real one)"
                )
        return data

    @field_validator("github")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not _GITHUB_REPO.fullmatch(value):
            raise ValueError(f"{_quote(value)}: a GitHub repository, owner/repo (e.g. torvalds/linux)")
        return value

    @field_validator("rev")
    @classmethod
    def _commit(cls, value: str) -> str:
        if not _COMMIT.fullmatch(value):
            raise ValueError(
                f"{_quote(value)} is not a commit: a branch or tag moves, so the kernel would change under the "
                "experiment; give the full 40-hex commit (git rev-parse, or git ls-remote on the repository)"
            )
        return value

    @field_validator("hash")
    @classmethod
    def _sri(cls, value: str) -> str:
        if not _SRI_SHA256.fullmatch(value):
            raise ValueError(
                f"{_quote(value)} is not an SRI sha256 (sha256- then 44 base64 characters): convert a hex or "
                "base32 hash with nix hash to-sri --type sha256 HASH"
            )
        return value

    @field_validator("version", "modDirVersion")
    @classmethod
    def _kernel_version(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+\.\d+(?:\.\d+)?(?:[-+][A-Za-z0-9._+-]{1,60})?", value):
            raise ValueError(f"{_quote(value)}: a kernel version as its Makefile gives it, e.g. 6.12.8 or 6.13.0-rc1")
        return value

    @property
    def owner(self) -> str:
        return self.github.split("/")[0]

    @property
    def repo(self) -> str:
        return self.github.split("/")[1]


class Kernel(_Strict):
    """The nodes' kernel: a nixpkgs branch (default 6.12) or a pinned source, with the experiment's own patches
    (files relative to the playbook's directory) and Kconfig options (``NAME: y|m|n|value``, no ``CONFIG_``),
    merged under nix/kernel-options.json, whose options always win."""

    branch: str | None = None
    source: KernelSource | None = None
    patches: list[str] = []
    config: dict[str, str] = {}

    @field_validator("branch", mode="before")
    @classmethod
    def _branch_quoted(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError(f'{value}: quote the branch, e.g. branch: "6.12" (YAML reads 6.10 as the number 6.1)')
        return value

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        if value is not None and not _KERNEL_BRANCH.fullmatch(value):
            raise ValueError(f'{_quote(value)}: a nixpkgs kernel branch, major.minor, e.g. "6.12"')
        return value

    @field_validator("patches")
    @classmethod
    def _patches(cls, value: list[str]) -> list[str]:
        for name in value:
            if name.startswith("/") or ".." in Path(name).parts or not name.strip():
                raise ValueError(f"{_quote(name)}: a patch is a file inside the playbook's directory, relative to it")
        if len(set(value)) != len(value):
            raise ValueError(f"{value!r} repeats a patch: list each once")
        return value

    @field_validator("config", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        # ``HZ: 1000`` is the number Kconfig writes as text.
        if isinstance(value, dict):
            return {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in value.items()}
        return value

    @field_validator("config")
    @classmethod
    def _options(cls, value: dict[str, str]) -> dict[str, str]:
        for name, setting in value.items():
            if name.startswith("CONFIG_"):
                raise ValueError(f"{name}: write the option without CONFIG_ ({name.removeprefix('CONFIG_')})")
            if not _KCONFIG_NAME.fullmatch(name):
                raise ValueError(f"{_quote(name)}: a Kconfig option name, upper-case letters, digits and _")
            if not setting or any(not char.isprintable() or char in '"\\' for char in setting):
                raise ValueError(f"{name}: {_quote(setting)}: y, m, n, or a value on one line without quotes")
        needed = experiment_kernel_options()
        for name, setting in value.items():
            if name in needed and needed[name] != setting:
                raise ValueError(
                    f"kernel.config.{name}: {setting} contradicts nix/kernel-options.json, which the statx override "
                    f"needs ({name}={needed[name]}, always applied): remove it"
                )
        return value

    @model_validator(mode="after")
    def _branch_or_source(self) -> Kernel:
        if self.branch is not None and self.source is not None:
            raise ValueError(
                "kernel.branch: a kernel is a nixpkgs branch or a source, not both: remove branch (or source)"
            )
        return self

    @property
    def nixpkgs_branch(self) -> str:
        """The nixpkgs branch built when there is no source."""
        return self.branch or "6.12"


LOCAL_TESTBEDS = ("local", "vm")


class Playbook(_Strict):
    version: Literal[2]
    name: str
    testbed: Literal["grid5000", "local", "vm"]
    reservation: Reservation
    ssh: Ssh = Ssh()
    vm: Vm | None = None
    ebpf: Ebpf = Ebpf()
    kernel: Kernel | None = None
    deploy: Deploy | None = None
    bench: Bench | None = None
    collect: Collect | None = None
    nightly: Nightly | None = None

    @model_validator(mode="after")
    def _vm_fits_testbed(self) -> Playbook:
        if self.vm is not None and self.testbed != "vm":
            raise ValueError(f"vm: only for testbed: vm (this playbook's testbed is {self.testbed})")
        if self.testbed != "vm":
            return self
        unknown = [role for role in self.vm_roles if role not in self.reservation.roles]
        if unknown:
            raise ValueError(
                f"vm.roles: {', '.join(unknown)} not among reservation.roles ({', '.join(self.reservation.roles)})"
            )
        if self.collect and self.collect.role in self.vm_roles:
            raise ValueError(
                f"vm.roles: {self.collect.role} is the collect role, which stays a loopback node beside its "
                "Prometheus: leave it out"
            )
        if self.bench and "on" in self.bench.ebpf_states:
            outside = [role for role in self.bench_roles if role not in self.vm_roles]
            if outside:
                raise ValueError(
                    f"bench.roles: {', '.join(outside)} run the host's kernel (not in vm.roles), where eBPF cannot "
                    "be switched on: bench VM roles only, or add them to vm.roles"
                )
        return self

    @model_validator(mode="after")
    def _kernel_fits_testbed(self) -> Playbook:
        kernel = self.kernel
        if kernel is None or self.testbed == "grid5000":
            return self
        if self.testbed == "local":
            raise ValueError(
                "kernel: the local testbed runs this machine's kernel: remove kernel, or use testbed: vm (Debian's "
                "6.1 source with the playbook's patches and config) or grid5000"
            )
        given = "source" if kernel.source is not None else "branch" if kernel.branch is not None else None
        if given is not None:
            raise ValueError(
                f"kernel.{given}: the VM testbed builds Debian's linux-source-6.1 with the playbook's patches and "
                f"config, never a nixpkgs branch or a fork: remove {given} here (keep it in the grid5000 playbook)"
            )
        return self

    @property
    def vm_roles(self) -> list[str]:
        """The roles whose nodes are QEMU guests (testbed: vm)."""
        if self.testbed != "vm":
            return []
        if self.vm is not None and self.vm.roles is not None:
            return list(self.vm.roles)
        collector = self.collect.role if self.collect else "collector"
        return [role for role in self.reservation.roles if role != collector]

    @model_validator(mode="after")
    def _deploy_fits_testbed(self) -> Playbook:
        if self.deploy is None:
            return self
        if self.testbed in LOCAL_TESTBEDS and self.deploy.method != "artifacts":
            raise ValueError(
                f"deploy.method: {self.deploy.method} needs Grid'5000; the {self.testbed} testbed deploys with: "
                "artifacts"
            )
        if self.testbed == "grid5000" and self.deploy.method == "artifacts":
            raise ValueError(
                "deploy.method: artifacts is for the local and VM testbeds; on Grid'5000 use nxc or kadeploy"
            )
        return self

    @model_validator(mode="after")
    def _nightly_metrics_exist(self) -> Playbook:
        if self.nightly is not None:
            self.nightly.tracked(self.bench)
        return self

    @model_validator(mode="after")
    def _collector_role_exists(self) -> Playbook:
        if self.collect and self.collect.role not in self.reservation.roles:
            roles = ", ".join(self.reservation.roles)
            raise ValueError(f"collect.role: {self.collect.role} is not among reservation.roles ({roles})")
        return self

    @model_validator(mode="after")
    def _bench_roles_exist(self) -> Playbook:
        if self.bench and self.bench.roles:
            unknown = [role for role in self.bench.roles if role not in self.reservation.roles]
            if unknown:
                raise ValueError(
                    f"bench.roles: {', '.join(unknown)} not among reservation.roles "
                    f"({', '.join(self.reservation.roles)})"
                )
        return self

    @property
    def bench_roles(self) -> list[str]:
        if self.bench and self.bench.roles:
            return list(self.bench.roles)
        return list(self.reservation.roles)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SLUG.fullmatch(value):
            raise ValueError(f"{_quote(value)}: use lower-case letters, digits, '-' or '_' (it names runs and jobs)")
        return value


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses but that the loader will not build: too deep, too large once expanded, or looping."""


class _PlaybookLoader(yaml.SafeLoader):
    """YAML without its traps for OAR values, and composed within bounds.

    PyYAML reads an unquoted ``walltime: 1:00`` as the sexagesimal integer 60, ``2026-12-01 19:00:00`` as a
    datetime and ``yes``/``on``/``off`` as booleans; here they stay the strings the user wrote (only ``true`` and
    ``false`` are booleans, as in YAML 1.2). Composition counts every node with aliases expanded, and refuses
    nesting past :data:`MAX_DEPTH`, more than :data:`MAX_VALUES` values and aliases inside their own anchor,
    before anything recurses or expands (PyYAML composes recursively and shares aliased nodes).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = False
        # Values composed so far, an alias counting as its target's values: the document's size once expanded.
        self._values = 0
        # id(node) -> (values once expanded, height), for every node composed so far.
        self._measured: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._measured:
                raise _Refused(
                    problem=f"alias *{event.anchor} is used inside its own anchor: a playbook has no loops",
                    problem_mark=event.start_mark,
                )
            self._aliases = True
            if target is not None:
                self._count(self._measured[id(target)][0], event.start_mark)
            return super().compose_node(parent, index)
        self._count(1, self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    problem=f"nested deeper than {MAX_DEPTH} levels: a playbook needs a handful",
                    problem_mark=self.peek_event().start_mark,
                )
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._measure(node)
        return node

    def _measure(self, node: yaml.Node) -> None:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        sizes = [self._measured[id(child)] for child in children]
        values = 1 + sum(size for size, _ in sizes)
        height = 1 + max((depth for _, depth in sizes), default=0)
        if height > MAX_DEPTH:
            raise _Refused(
                problem=f"nested deeper than {MAX_DEPTH} levels once aliases are expanded", problem_mark=node.start_mark
            )
        self._measured[id(node)] = (values, height)

    def _count(self, values: int, mark: yaml.Mark) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            what = "aliases expand to" if self._aliases else "the document holds"
            raise _Refused(
                problem=f"{what} more than {MAX_VALUES} values: a playbook needs a few hundred", problem_mark=mark
            )


def _keeps(tag: str, regexp: re.Pattern[str]) -> bool:
    if tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool"):
        return False
    return not (tag == "tag:yaml.org,2002:int" and "[0-5]?[0-9]" in regexp.pattern)


_PlaybookLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if _keeps(tag, regexp)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PlaybookLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# Decimal only, and short enough for int(): a longer number stays text, and its field says it wants a number.
_PlaybookLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]{0,17})$"), list("-+0123456789")
)


def load_playbook(path: Path) -> Playbook:
    """Read and validate a playbook file; :class:`ConfigError` lists every problem with its line."""
    playbook = parse_playbook(read_playbook_text(path), source=str(path))
    for name in playbook.bench.workload.artifacts if playbook.bench else []:
        if name not in BUILTIN_ARTIFACTS and not artifact_path(path, name).is_file():
            raise ConfigError(
                f"{path}: bench.workload.artifacts: {name} is neither {', '.join(BUILTIN_ARTIFACTS)} nor a file "
                f"next to the playbook ({artifact_path(path, name)} does not exist)",
                hint="give a path relative to the playbook's directory; nothing was submitted",
            )
    for index, name in enumerate(playbook.kernel.patches if playbook.kernel else []):
        if not artifact_path(path, name).is_file():
            raise ConfigError(
                f"{path}: kernel.patches[{index}]: {name} is not a file next to the playbook "
                f"({artifact_path(path, name)} does not exist)",
                hint="give the patch's path relative to the playbook's directory; nothing was submitted",
            )
    return playbook


def artifact_path(playbook_path: Path, name: str) -> Path:
    """Where an artifact the playbook names lies on this machine: relative to the playbook's directory."""
    return playbook_path.absolute().parent / name


def read_playbook_text(path: Path) -> str:
    """The text of a playbook file: a regular file of at most :data:`MAX_BYTES`, in UTF-8."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it changes nothing for a regular file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the playbook ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(
                    f"{path}: not a regular file ({_file_kind(info.st_mode)})", hint="give the playbook's YAML file"
                )
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the playbook ({exc.strerror})") from None
    if len(data) > MAX_BYTES:
        size = max(info.st_size, len(data)) / 2**20
        raise ConfigError(
            f"{path}: {size:.1f} MiB, more than a playbook's limit of {MAX_BYTES // 2**20} MiB",
            hint="is this the right file? a playbook is a few kilobytes of YAML",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            hint="save the playbook as UTF-8",
        ) from None


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def parse_playbook(text: str, *, source: str = "<playbook>") -> Playbook:
    loader = _PlaybookLoader(text)
    try:
        root = loader.get_single_node()
        # Before construction, which flattens merge keys (<<: *defaults) into the node tree.
        problems = _duplicate_keys(root, source)
        data = loader.construct_document(root) if root is not None else None
    except _Refused as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise ConfigError(f"{source}{line}: {exc.problem}", hint="nothing was submitted") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{line}: not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a playbook is a YAML mapping with version, name, testbed, reservation")
    if data.get("version") == 1:
        bench = data.get("bench")
        rewrite = "version: 2" + (f"\n{bench_v2_text(bench)}" if isinstance(bench, dict) else "")
        raise ConfigError(
            f"{source}: version: 1 is the statx-only format; this agent reads version 2, where bench is any "
            f"workload and sweep. Replace version and bench with:\n{rewrite}",
            hint="the other sections stay as they are; nothing was submitted",
        )
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(error, root, source) for error in exc.errors()]
        playbook = None
    if problems or playbook is None:
        if len(problems) > MAX_PROBLEMS:
            problems = [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more problems"]
        raise ConfigError("\n".join(problems), hint="fix the fields above; nothing was submitted")
    return playbook


def _duplicate_keys(node: yaml.Node | None, source: str) -> list[str]:
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    problems.append(f"{source}:{key.start_mark.line + 1}: {key.value}: given twice (keep one)")
                seen.add(key.value)
            problems += _duplicate_keys(value, source)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            problems += _duplicate_keys(item, source)
    return problems


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The YAML node that ``loc`` (a pydantic error location) points at, or its nearest parent."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == str(part)), None)
            if child is None:
                key_node = next((key for key, _ in node.value if key.value == str(part)), None)
                return key_node or node
            node = child
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _describe(error: Any, root: yaml.Node | None, source: str) -> str:
    loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
    named = re.match(r"^([a-z_]+(?:\.[A-Za-z0-9_]+)+): (.*)$", str(error.get("ctx", {}).get("error", "")))
    if named and named.group(1).startswith(".".join(str(part) for part in loc)):
        # A check across sections names the field it is about at the start of its message.
        loc = tuple(named.group(1).split("."))
        error = {**error, "ctx": {"error": named.group(2)}}
    node = _node_at(root, loc)
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    field = ".".join(str(part) for part in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key (check its spelling and where it is indented)" + _allowed_keys(loc)
    elif kind == "missing":
        message = "missing (this field is required)"
    elif kind == "literal_error":
        message = f"{_quote(error.get('input'))} is not allowed; expected {error['ctx']['expected']}"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    else:
        message = f"{error['msg']} (got {_quote(error.get('input'))})"
    return f"{source}{line}: {field}: {message}"


def _is_union_tag(part: Any) -> bool:
    # pydantic names the union member it tried ("str", "list[str]", "function-after[...]") in the location.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "list", "dict"})


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    """The keys the section holding an unknown key allows, with the nearest one as a suggestion."""
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    suggestion = f"; did you mean {close[0]}?" if close else ";"
    where = f"under {'.'.join(str(part) for part in loc[:-1])}" if len(loc) > 1 else "at the top"
    return f"{suggestion} allowed {where}: {', '.join(allowed)}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model of the section at ``loc``: fields lead to their models, dict keys and list indexes to items."""
    annotation: Any = Playbook
    for part in loc:
        annotation = _without_none(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) in (dict, list):
            # A role's name or a list index: the item's type is the last argument (dict[str, Role], list[str]).
            annotation = get_args(annotation)[-1]
        else:
            return None
    annotation = _without_none(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _without_none(annotation: Any) -> Any:
    """``X`` for ``X | None``; anything else unchanged."""
    if get_origin(annotation) in (Union, UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def check_properties(text: str) -> None:
    """What can be told of an OAR properties filter (SQL) without its database; ``ValueError`` if it is wrong.

    Quotes and parentheses balance, nothing ends or starts half-way through a condition, and none of the
    characters that would end the filter early in OAR's ``{...}/nodes=N`` resource string or the SQL statement.
    """
    example = "OAR properties are SQL, e.g. \"wattmeter='YES' AND cluster IN ('gros')\""
    if not text.strip():
        raise ValueError("empty: leave properties out, or give a condition, e.g. \"wattmeter='YES'\"")
    if any(not char.isprintable() for char in text):
        raise ValueError(f"{_quote(text)} holds a control character: write the condition on one line")
    if any(char in "{}" for char in text):
        raise ValueError(f"{_quote(text)}: braces end the filter in OAR's resource request; {example}")
    outside: list[str] = []
    depth = 0
    quoted = False
    for char in text:
        if char == "'":
            # SQL escapes a quote inside a string by doubling it: two toggles, still inside.
            quoted = not quoted
            outside.append(char)
        elif not quoted:
            outside.append(char)
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth < 0:
                raise ValueError(f"{_quote(text)} closes a parenthesis it never opened")
            if char == ";":
                raise ValueError(f"{_quote(text)}: ';' ends the SQL statement; {example}")
    if quoted:
        raise ValueError(f"{_quote(text)} has an unbalanced quote: {example}")
    if depth:
        raise ValueError(f"{_quote(text)} opens a parenthesis it does not close")
    bare = "".join(outside)
    dangling = re.search(r"(?:\b(and|or|not|in|like)|(=|<>|!=|<=|>=|<|>))\s*$", bare, re.IGNORECASE)
    if dangling:
        word = (dangling.group(1) or dangling.group(2)).upper()
        raise ValueError(f"{_quote(text)} ends with {word}: complete the condition")
    leading = re.match(r"\s*(and|or)\b", bare, re.IGNORECASE)
    if leading:
        raise ValueError(f"{_quote(text)} starts with {leading.group(1).upper()}: remove it")
