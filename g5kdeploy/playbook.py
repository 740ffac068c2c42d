"""Playbooks: one YAML file per experiment, validated in one pass.

Every problem is reported together, each as ``file:line: field: what is wrong (what was expected)``, and
the whole load fails with a :class:`ConfigError` (exit code 2) before anything touches the testbed.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from g5kdeploy.errors import ConfigError
from g5kdeploy.walltime import parse_duration

PARIS = ZoneInfo("Europe/Paris")
QUEUES = ("default", "production", "besteffort", "testing", "admin")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_OAR_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{1,2})(?::(\d{2}))?(?::(\d{2}))?$")
_CLUSTER = re.compile(r"^[a-z][a-z0-9-]*$")


def parse_oar_date(text: str) -> datetime:
    """An OAR reservation date (``YYYY-MM-DD hh[:mm[:ss]]``, Europe/Paris) as an aware datetime."""
    match = _OAR_DATE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a date OAR accepts: use 'YYYY-MM-DD hh:mm:ss' (Europe/Paris time)")
    year, month, day, hour, minute, second = (int(part) if part else 0 for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=PARIS)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a real date ({exc})") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(_Strict):
    nodes: Annotated[int, Field(gt=0, le=10_000)]
    cluster: str | None = None
    properties: str | None = None
    min_nodes: Annotated[int, Field(gt=0)] | None = None

    @field_validator("cluster")
    @classmethod
    def _cluster_name(cls, value: str | None) -> str | None:
        if value is not None and not _CLUSTER.match(value):
            raise ValueError(f"{value!r} is not a cluster name (lower-case letters, digits, '-'; e.g. gros)")
        return value

    @field_validator("properties")
    @classmethod
    def _no_quotes_left_open(cls, value: str | None) -> str | None:
        if value is not None and value.count("'") % 2:
            raise ValueError(f"{value!r} has an unbalanced quote: OAR properties are SQL, e.g. \"wattmeter='YES'\"")
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
            if not _SLUG.match(name):
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
            if not _SLUG.match(name):
                raise ValueError(f"role name {name!r}: use lower-case letters, digits, '-' or '_'")
        return value

    @field_validator("walltime", "max_wait", "start_deadline", mode="before")
    @classmethod
    def _hours_as_text(cls, value: Any) -> Any:
        # ``walltime: 2`` means two hours, as on oarsub's command line.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("walltime", "max_wait")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(str(value))
        return str(value)

    @field_validator("types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        for job_type in value:
            if not job_type or any(char.isspace() for char in job_type):
                raise ValueError(f"job type {job_type!r}: OAR types are single words, e.g. deploy, night, exotic")
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
        if value is not None and not re.match(r"^[A-Za-z0-9_.-]{1,100}$", value):
            raise ValueError(f"{value!r}: use letters, digits, '.', '_' or '-' (OAR job names)")
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


class Bench(_Strict):
    """The statx sweep: every combination of threads, eBPF state and repetition, on every selected node."""

    roles: list[str] | None = None
    paths: Annotated[list[str], Field(min_length=1)]
    iterations: Annotated[int, Field(gt=0, le=1_000_000_000)] = 100_000
    warmup: Annotated[int, Field(ge=0, le=1_000_000_000)] = 1_000
    threads: Annotated[list[Annotated[int, Field(gt=0, le=1024)]], Field(min_length=1)] = [1]
    repetitions: Annotated[int, Field(gt=0, le=1000)] = 1
    ebpf: Annotated[list[EbpfState], Field(min_length=1)] = ["off"]
    timeout: Annotated[int, Field(gt=0, le=86_400)] = 600

    @field_validator("ebpf", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare on/off as a boolean.
        if isinstance(value, list):
            return [{True: "on", False: "off"}.get(item, item) if isinstance(item, bool) else item for item in value]
        return value

    @field_validator("paths")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} is relative: give absolute paths, as the nodes see them")
        return value

    @field_validator("threads", "ebpf", "roles")
    @classmethod
    def _distinct(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"{value!r} repeats an entry: list each value once")
        return value


class BinaryCache(_Strict):
    url: str
    public_key: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^(https?|file|s3|ssh|ssh-ng)://", value):
            raise ValueError(f"{value!r}: a substituter URL such as https://cache.example.org")
        return value

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9._-]+:[A-Za-z0-9+/]+=*$", value):
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
        if self.environment and not re.match(r"^https?://", self.environment):
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
    port: Annotated[int, Field(gt=0, lt=65536)] = 9090
    step: Annotated[float, Field(gt=0, le=3600)] = 1.0
    queries: dict[str, str] = DEFAULT_QUERIES

    @field_validator("queries")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expr in value.items():
            if not _SLUG.match(name):
                raise ValueError(f"query name {name!r}: lower-case letters, digits, '-' or '_' (it names a CSV file)")
            if not expr.strip():
                raise ValueError(f"query {name!r} is empty: give a PromQL expression")
        return value


NightlyMetric = Literal["p50_ns", "p99_ns", "calls_per_s", "override_total"]


class Nightly(_Strict):
    """Every night: when to start, for how long, what to track and what to do on a regression."""

    start: str = "19:05"
    walltime: str | None = None
    keep: Annotated[int, Field(gt=0, le=10_000)] = 60
    metrics: Annotated[list[NightlyMetric], Field(min_length=1)] = ["p50_ns", "p99_ns", "calls_per_s"]
    threshold: Annotated[float, Field(gt=0, lt=10)] = 0.05
    on_regression: str | None = None

    @field_validator("start")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not re.match(r"^([01]?\d|2[0-3]):[0-5]\d$", value):
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
            parse_duration(value)
        return value


class Ssh(_Strict):
    """How to reach Grid'5000 nodes; the local testbed makes its own keys."""

    key: str | None = None


class Playbook(_Strict):
    version: Literal[1]
    name: str
    testbed: Literal["grid5000", "local"]
    reservation: Reservation
    ssh: Ssh = Ssh()
    deploy: Deploy | None = None
    bench: Bench | None = None
    collect: Collect | None = None
    nightly: Nightly | None = None

    @model_validator(mode="after")
    def _deploy_fits_testbed(self) -> Playbook:
        if self.deploy is None:
            return self
        if self.testbed == "local" and self.deploy.method != "artifacts":
            raise ValueError(
                f"deploy.method: {self.deploy.method} needs Grid'5000; the local testbed deploys with: artifacts"
            )
        if self.testbed == "grid5000" and self.deploy.method == "artifacts":
            raise ValueError("deploy.method: artifacts is for the local testbed; on Grid'5000 use nxc or kadeploy")
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
        if not _SLUG.match(value):
            raise ValueError(f"{value!r}: use lower-case letters, digits, '-' or '_' (it names runs and jobs)")
        return value


class _PlaybookLoader(yaml.SafeLoader):
    """YAML 1.1 without its traps for OAR values.

    PyYAML reads an unquoted ``walltime: 1:00`` as the sexagesimal integer 60 and ``2026-12-01 19:00:00``
    as a datetime; here both stay the strings the user wrote.
    """


def _keeps(tag: str, regexp: re.Pattern[str]) -> bool:
    if tag == "tag:yaml.org,2002:timestamp":
        return False
    return not (tag == "tag:yaml.org,2002:int" and "[0-5]?[0-9]" in regexp.pattern)


_PlaybookLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if _keeps(tag, regexp)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PlaybookLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789")
)


def load_playbook(path: Path) -> Playbook:
    """Read and validate a playbook file; :class:`ConfigError` lists every problem with its line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the playbook ({exc.strerror})") from None
    return parse_playbook(text, source=str(path))


def parse_playbook(text: str, *, source: str = "<playbook>") -> Playbook:
    try:
        root = yaml.compose(text, Loader=_PlaybookLoader)
        data = yaml.load(text, Loader=_PlaybookLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{line}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a playbook is a YAML mapping with version, name, testbed, reservation")
    problems = _duplicate_keys(root, source)
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(error, root, source) for error in exc.errors()]
        playbook = None
    if problems or playbook is None:
        raise ConfigError("\n".join(problems), hint="fix the fields above; nothing was submitted")
    return playbook


def _duplicate_keys(node: yaml.Node | None, source: str) -> list[str]:
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
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
    named = re.match(r"^([a-z_]+(?:\.[a-z_]+)+): (.*)$", str(error.get("ctx", {}).get("error", "")))
    if named and named.group(1).startswith(".".join(str(part) for part in loc)):
        # A check across sections names the field it is about at the start of its message.
        loc = tuple(named.group(1).split("."))
        error = {**error, "ctx": {"error": named.group(2)}}
    node = _node_at(root, loc)
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    field = ".".join(str(part) for part in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key (check its spelling and where it is indented)"
        if len(loc) > 1:
            message += f"; allowed under {'.'.join(str(p) for p in loc[:-1])}: " + _allowed(loc[:-1])
        else:
            message += "; allowed at the top: " + ", ".join(Playbook.model_fields)
    elif kind == "missing":
        message = "missing (this field is required)"
    elif kind == "literal_error":
        message = f"{error.get('input')!r} is not allowed; expected {error['ctx']['expected']}"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    else:
        message = f"{error['msg']} (got {error.get('input')!r})"
    return f"{source}{line}: {field}: {message}"


def _is_union_tag(part: Any) -> bool:
    # pydantic names the union member it tried ("str", "list[str]", "function-after[...]") in the location.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "list", "dict"})


def _allowed(parent: tuple[Any, ...]) -> str:
    model: type[BaseModel] = Playbook
    for part in parent:
        field = model.model_fields.get(str(part))
        if field is None:
            return ", ".join(Role.model_fields)
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else Role
    return ", ".join(model.model_fields)
