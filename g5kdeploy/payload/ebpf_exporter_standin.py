"""A STAND-IN for ebpf_exporter (cloudflare/ebpf_exporter v2), for the VM testbed only.

ebpf_exporter itself cannot be installed on the machines that run the VM testbed (no registry we reach has it),
so each VM node runs this script instead. It is not ebpf_exporter: it reads the same configs
(``<config.dir>/<name>.yaml`` beside ``<config.dir>/<name>.bpf.o``), loads and attaches the same objects through
libbpf (ctypes on the host's ``libbpf.so.1``), reads the same maps at each scrape and serves the metric names,
labels, buckets and values that ebpf_exporter v2.5.1 derives from them. Grid'5000 runs the real ebpf_exporter from
nixpkgs. Every place it shows itself says "stand-in": log lines, the HTTP page, and the metric
``ebpf_exporter_standin_info``.

Run as a plain script, with the agent's Python (standard library and PyYAML only, nothing from g5kdeploy)::

    python ebpf_exporter_standin.py --config.dir DIR --config.names statx-override \\
        --web.listen-address 0.0.0.0:9435 --state-file F --pid-file P [--detached]

SIGUSR1 attaches the programs, SIGUSR2 detaches them (only the links go: the objects, maps and counts stay),
SIGTERM/SIGINT detach and exit 0. The state file holds ``attached``, ``detached``, or ``failed: <reason>`` after a
SIGUSR1 that could not attach; it is written atomically once the HTTP server listens, and after each signal.

What follows ebpf_exporter's source (paths in cloudflare/ebpf_exporter at v2.5.1, identical at HEAD for these):
- configs: ``config/config.go`` ParseConfigs (``<dir>/<name>.yaml``, object ``<dir>/<name>.bpf.o``, yaml.v2 field
  names and scalar rules), validateConfig (name and help required);
- maps to label sets: ``exporter/exporter.go`` mapValues, readMapValues, aggregateMapValues, decodeValue (u64 in
  host byte order), validateMaps (u64 values), the no-label ``u32 0`` key and the per-CPU ``cpu`` label;
- labels: ``decoder/decoder.go`` decodeLabels (sizes plus padding, in order, add up to the key), and the decoders
  ``uint``, ``static_map``, ``string``, ``hex``, ``regexp``, ``inet_ip``, ``majorminor`` (``decoder/*.go``);
- histograms: ``exporter/exporter.go`` collectHistograms (the last label is the bucket, parsed with
  ``strconv.ParseUint(s, 0, 64)``) and ``exporter/histogram.go`` (exp2, exp2zero, linear, fixed; cumulative counts
  from bucket_min to bucket_max inclusive; ``_count`` is the last cumulative count; the sum is the key
  ``bucket_max + 1`` times bucket_multiplier, 0 when absent; multiplier 0 means 1);
- info metrics: ``exporter/exporter.go`` New and Collect, ``exporter/program_info.go``;
- text: client_golang's registry (families sorted by name, metrics by label values, label pairs by name,
  ``+Inf`` bucket added) and prometheus/common ``expfmt/text_create.go`` (``strconv.FormatFloat(v, 'g', -1, 64)``).

Where the stand-in is stricter (refuses at start what ebpf_exporter would only log at each scrape) or lacks a
feature, it says so with an error naming the config, metric and field.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import errno
import gzip
import http.server
import logging
import math
import os
import platform
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: What this script stands in for: the ebpf_exporter release whose behaviour it reproduces.
MIMICS = "ebpf_exporter v2.5.1"
NAMESPACE = "ebpf_exporter"
LOG = logging.getLogger("ebpf_exporter_standin")


class ConfigError(Exception):
    """A config the stand-in cannot serve as ebpf_exporter would: the message names the field and the fix."""


class BpfError(Exception):
    """libbpf or the kernel refused something; ``details`` holds libbpf's or the verifier's last lines."""

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = list(details)


# --- configs (config/config.go) --------------------------------------------------------------------------------

SUPPORTED_DECODERS = ("hex", "inet_ip", "majorminor", "regexp", "static_map", "string", "uint")
# decoder/decoder.go NewSet: the decoders ebpf_exporter has but the stand-in cannot reproduce faithfully here
# (they need kallsyms, cgroupfs, the PCI database, Go's errno and syscall tables, or network interfaces).
UNSUPPORTED_DECODERS = (
    "cgroup",
    "dname",
    "errno",
    "ifname",
    "kstack",
    "ksym",
    "pci_class",
    "pci_device",
    "pci_subclass",
    "pci_vendor",
    "syscall",
)
BUCKET_TYPES = ("exp2", "exp2zero", "linear", "fixed")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Names of ebpf_exporter's own metrics (and ours): a config metric of the same name fails its registration.
_RESERVED = (
    "decoder_errors_total",
    "ebpf_program_attached",
    "ebpf_program_info",
    "ebpf_program_run_count_total",
    "ebpf_program_run_time_seconds",
    "enabled_configs",
    "build_info",
    "standin_info",
)


@dataclass(frozen=True)
class Decoder:
    name: str
    #: None when the config has no ``static_map`` (Go's nil map: the decoder then answers "empty mapping").
    static_map: Mapping[bytes, bytes] | None = None
    regexps: tuple[re.Pattern[bytes], ...] | None = None
    allow_unknown: bool = False


@dataclass(frozen=True)
class Label:
    name: str
    size: int
    decoders: tuple[Decoder, ...]
    padding: int = 0


@dataclass(frozen=True)
class Counter:
    name: str
    help: str
    labels: tuple[Label, ...]


@dataclass(frozen=True)
class Histogram:
    name: str
    help: str
    bucket_type: str
    labels: tuple[Label, ...]
    bucket_multiplier: float = 0.0
    bucket_min: int = 0
    bucket_max: int = 0
    bucket_keys: tuple[float, ...] = ()


@dataclass(frozen=True)
class Config:
    name: str
    counters: tuple[Counter, ...]
    histograms: tuple[Histogram, ...]
    bpf_path: Path

    @property
    def metric_maps(self) -> list[tuple[str, tuple[Label, ...]]]:
        """Each metric's map (of the same name) and the labels decoded from its keys."""
        return [(c.name, c.labels) for c in self.counters] + [(h.name, h.labels) for h in self.histograms]


# yaml.v2 resolves plain scalars with YAML 1.1 rules and decodes them into the Go field's type; these helpers do
# the same for the types the config uses, so that e.g. `static_map: {0x1: a}` keeps the key "0x1" as Go does.
_YAML_NULLS = {"", "~", "null", "Null", "NULL"}
_YAML_TRUE = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"}
_YAML_FALSE = {"n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"}
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_YAML_SPECIAL_FLOATS = {
    **{
        f"{sign}{inf}": -math.inf if sign == "-" else math.inf
        for sign in ("", "+", "-")
        for inf in (".inf", ".Inf", ".INF")
    },
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
}
_DIGITS = {
    2: re.compile(r"[01]+"),
    8: re.compile(r"[0-7]+"),
    10: re.compile(r"[0-9]+"),
    16: re.compile(r"[0-9a-fA-F]+"),
}


def _underscore_ok(text: str) -> bool:
    """Go strconv's underscoreOK: underscores only between digits (a base prefix counts as a digit)."""
    text = text[1:] if text[:1] in ("+", "-") else text
    saw, start, hexadecimal = "^", 0, False
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in "box":
        saw, start, hexadecimal = "0", 2, text[1].lower() == "x"
    for char in text[start:]:
        if char in "0123456789" or (hexadecimal and char.lower() in "abcdef"):
            saw = "0"
        elif char == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def parse_go_uint(text: str) -> int | None:
    """``strconv.ParseUint(text, 0, 64)``: None where Go returns an error (0x/0o/0b prefixes, 0-leading octal)."""
    if not text:
        return None
    base, digits = 10, text
    if text[0] == "0":
        if len(text) >= 3 and text[1].lower() in "box":
            base, digits = {"b": 2, "o": 8, "x": 16}[text[1].lower()], text[2:]
        else:
            base, digits = 8, text[1:]
    if "_" in text:
        if not _underscore_ok(text):
            return None
        digits = digits.replace("_", "")
    if not digits:
        return 0 if base == 8 else None
    if not _DIGITS[base].fullmatch(digits):
        return None
    value = int(digits, base)
    return value if value < 1 << 64 else None


def _yaml_number(text: str) -> int | float | None:
    """yaml.v2's resolution of a plain scalar to a number: underscores dropped, then ``strconv.ParseInt`` (base 0,
    so 0x, 0o, 0b and 0-leading octal), then its float pattern (which, unlike YAML 1.1, needs no dot)."""
    plain = text.replace("_", "")
    if not plain:
        return None
    sign = plain[0] if plain[0] in "+-" else ""
    magnitude = parse_go_uint(plain[len(sign) :])
    if magnitude is not None:
        return -magnitude if sign == "-" else magnitude
    if _YAML_FLOAT.fullmatch(plain):
        return float(plain)
    return None


class _Yaml:
    """Typed access to a composed YAML node, with the field's path in every error."""

    def __init__(self, node: yaml.Node | None, where: str, source: str) -> None:
        self.node, self.where, self.source = node, where, source

    def fail(self, expected: str) -> ConfigError:
        value = self.node.value if isinstance(self.node, yaml.ScalarNode) else type(self.node).__name__
        return ConfigError(f"{self.source}: {self.where}: expected {expected}, got {value!r}")

    def is_null(self) -> bool:
        node = self.node
        return node is None or (isinstance(node, yaml.ScalarNode) and node.style is None and node.value in _YAML_NULLS)

    def _plain(self, expected: str) -> str:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.style is not None:
            raise self.fail(expected)
        return str(self.node.value)

    def string(self) -> str:
        if self.is_null():
            return ""
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.fail("a string")
        return str(self.node.value)

    def integer(self, *, unsigned: bool = False) -> int:
        if self.is_null():
            return 0
        value = _yaml_number(self._plain("an integer"))
        if isinstance(value, float):
            # yaml.v2 decodes a float into an int field when it fits, truncating it
            value = int(value) if math.isfinite(value) else None
        if value is None or (unsigned and value < 0):
            raise self.fail("a non-negative integer" if unsigned else "an integer")
        return value

    def number(self) -> float:
        if self.is_null():
            return 0.0
        text = self._plain("a number")
        if text in _YAML_SPECIAL_FLOATS:
            return _YAML_SPECIAL_FLOATS[text]
        value = _yaml_number(text)
        if value is None:
            raise self.fail("a number")
        return float(value)

    def boolean(self) -> bool:
        if self.is_null():
            return False
        text = self._plain("true or false")
        if text in _YAML_TRUE:
            return True
        if text in _YAML_FALSE:
            return False
        raise self.fail("true or false")

    def items(self, known: Sequence[str]) -> dict[str, _Yaml]:
        """A mapping's fields. yaml.v2 ignores unknown fields, and so does the stand-in, with a warning."""
        if self.is_null():
            return {}
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail("a mapping")
        fields: dict[str, _Yaml] = {}
        for key, value in self.node.value:
            name = _Yaml(key, self.where, self.source).string()
            where = f"{self.where}.{name}" if self.where else name
            if name not in known:
                LOG.warning("%s: %s: unknown field, ignored (as ebpf_exporter does)", self.source, where)
            fields[name] = _Yaml(value, where, self.source)
        return fields

    def pairs(self) -> list[tuple[_Yaml, _Yaml]]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail("a mapping")
        return [(_Yaml(k, self.where, self.source), _Yaml(v, self.where, self.source)) for k, v in self.node.value]

    def sequence(self) -> list[_Yaml]:
        if self.is_null():
            return []
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail("a list")
        return [_Yaml(item, f"{self.where}[{i}]", self.source) for i, item in enumerate(self.node.value)]


def _parse_decoder(node: _Yaml, label: str) -> Decoder:
    fields = node.items(("name", "static_map", "regexps", "allow_unknown"))
    name = fields["name"].string() if "name" in fields else ""
    if name in UNSUPPORTED_DECODERS:
        raise ConfigError(
            f"{node.source}: {node.where}: decoder {name!r} of label {label!r} is not supported by the "
            f"ebpf_exporter stand-in (it supports {', '.join(SUPPORTED_DECODERS)}); run the real ebpf_exporter"
        )
    if name not in SUPPORTED_DECODERS:
        raise ConfigError(
            f"{node.source}: {node.where}: unknown decoder {name!r} for label {label!r} "
            f"(ebpf_exporter has none of that name; the stand-in supports {', '.join(SUPPORTED_DECODERS)})"
        )
    static_map: dict[bytes, bytes] | None = None
    if "static_map" in fields and not fields["static_map"].is_null():
        static_map = {k.string().encode(): v.string().encode() for k, v in fields["static_map"].pairs()}
    regexps: tuple[re.Pattern[bytes], ...] | None = None
    if "regexps" in fields and not fields["regexps"].is_null():
        compiled = []
        for item in fields["regexps"].sequence():
            try:
                compiled.append(re.compile(item.string().encode()))
            except re.error as e:
                raise ConfigError(f"{node.source}: {item.where}: regexp {item.string()!r} does not compile: {e}") from e
        regexps = tuple(compiled)
    allow_unknown = fields["allow_unknown"].boolean() if "allow_unknown" in fields else False
    return Decoder(name=name, static_map=static_map, regexps=regexps, allow_unknown=allow_unknown)


def _parse_labels(node: _Yaml) -> tuple[Label, ...]:
    labels = []
    for item in node.sequence():
        fields = item.items(("name", "size", "padding", "decoders"))
        name = fields["name"].string() if "name" in fields else ""
        size = fields["size"].integer(unsigned=True) if "size" in fields else 0
        decoders = tuple(_parse_decoder(d, name) for d in fields["decoders"].sequence()) if "decoders" in fields else ()
        # decoder/decoder.go decodeLabels fails every scrape of the metric on these: refuse them at start.
        if size == 0:
            raise ConfigError(f"{item.source}: {item.where}.size: label {name!r} needs a size in bytes")
        if not decoders:
            raise ConfigError(f"{item.source}: {item.where}.decoders: label {name!r} needs at least one decoder")
        if any(d.name == "majorminor" for d in decoders) and size < 4:
            raise ConfigError(f"{item.source}: {item.where}.size: majorminor reads a u32: size must be at least 4")
        padding = fields["padding"].integer(unsigned=True) if "padding" in fields else 0
        labels.append(Label(name=name, size=size, padding=padding, decoders=decoders))
    return tuple(labels)


def _check_label_names(node: _Yaml, metric: str, labels: Sequence[Label]) -> None:
    """The labels a metric exports must make a valid Prometheus descriptor, or ebpf_exporter cannot register it."""
    names = [label.name for label in labels]
    for name in names:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ConfigError(f"{node.source}: {node.where}: label {name!r} of {metric!r} is not a Prometheus name")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{node.source}: {node.where}: metric {metric!r} has duplicate labels {duplicates}")


def _check_metric_name(node: _Yaml, kind: str, name: str, help_text: str, config: str) -> None:
    # config/config.go validateConfig
    if not name:
        raise ConfigError(f"{node.source}: {node.where}: {kind} {name!r} in config {config!r} lacks name")
    if not help_text:
        raise ConfigError(f"{node.source}: {node.where}: {kind} {name!r} in config {config!r} lacks help")
    if not _METRIC_NAME.fullmatch(NAMESPACE + "_" + name) or name in _RESERVED:
        raise ConfigError(f"{node.source}: {node.where}.name: {name!r} cannot be a metric name here")


def parse_config(text: str, name: str, directory: Path) -> Config:
    """One config as ebpf_exporter's ParseConfigs reads it, or a ConfigError naming the field."""
    source = str(directory / f"{name}.yaml")
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        reason = " ".join(str(e).split())
        raise ConfigError(f'error parsing "{source}" for config "{name}": {reason}') from e
    if document is None:
        raise ConfigError(f'error parsing "{source}" for config "{name}": the file is empty')
    top = _Yaml(document, "", source).items(("name", "metrics", "tracing", "kaddrs", "cgroup_id_map"))
    # What ebpf_exporter does with these (tracing spans, kernel addresses in globals, a cgroup id map) needs more
    # than maps of counts: refused when used, the way exporter.go decides they are used.
    tracing = top["tracing"].items(("spans",)) if "tracing" in top else {}
    cgroup_id_map = top["cgroup_id_map"].items(("name", "type", "regexps")) if "cgroup_id_map" in top else {}
    used = {
        "tracing.spans": "spans" in tracing and bool(tracing["spans"].sequence()),
        "kaddrs": "kaddrs" in top and bool(top["kaddrs"].sequence()),
        "cgroup_id_map": "name" in cgroup_id_map and bool(cgroup_id_map["name"].string()),
    }
    unsupported = [field_name for field_name, is_used in used.items() if is_used]
    if unsupported:
        raise ConfigError(f"{source}: {', '.join(unsupported)}: not supported by the ebpf_exporter stand-in")
    metrics = top["metrics"].items(("counters", "histograms")) if "metrics" in top else {}
    metrics = {key: value for key, value in metrics.items() if not value.is_null()}  # null is Go's nil slice
    if not metrics:
        raise ConfigError(f'error validating config: neither metrics nor tracing are defined for config "{name}"')

    counters = []
    for node in metrics["counters"].sequence() if "counters" in metrics else []:
        fields = node.items(("name", "help", "perf_event_array", "flush_interval", "labels"))
        metric = fields["name"].string() if "name" in fields else ""
        help_text = fields["help"].string() if "help" in fields else ""
        _check_metric_name(node, "counter", metric, help_text, name)
        if "perf_event_array" in fields and fields["perf_event_array"].boolean():
            raise ConfigError(f"{source}: {node.where}.perf_event_array: not supported by the ebpf_exporter stand-in")
        labels = _parse_labels(fields["labels"]) if "labels" in fields else ()
        _check_label_names(node, metric, labels)
        counters.append(Counter(name=metric, help=help_text, labels=labels))

    histograms = []
    known = ("name", "help", "bucket_type", "bucket_multiplier", "bucket_min", "bucket_max", "bucket_keys", "labels")
    for node in metrics["histograms"].sequence() if "histograms" in metrics else []:
        fields = node.items(known)
        metric = fields["name"].string() if "name" in fields else ""
        help_text = fields["help"].string() if "help" in fields else ""
        _check_metric_name(node, "histogram", metric, help_text, name)
        bucket_type = fields["bucket_type"].string() if "bucket_type" in fields else ""
        if bucket_type not in BUCKET_TYPES:
            # exporter/histogram.go fails every scrape with "unknown histogram type"
            raise ConfigError(f"{source}: {node.where}.bucket_type: {bucket_type!r} is not one of {BUCKET_TYPES}")
        labels = _parse_labels(fields["labels"]) if "labels" in fields else ()
        if not labels:
            # exporter.go Describe slices labels[0:len-1]: ebpf_exporter panics on a histogram without labels.
            raise ConfigError(f"{source}: {node.where}.labels: histogram {metric!r} needs its bucket label (the last)")
        _check_label_names(node, metric, labels[:-1])
        histograms.append(
            Histogram(
                name=metric,
                help=help_text,
                bucket_type=bucket_type,
                labels=labels,
                bucket_multiplier=fields["bucket_multiplier"].number() if "bucket_multiplier" in fields else 0.0,
                bucket_min=fields["bucket_min"].integer() if "bucket_min" in fields else 0,
                bucket_max=fields["bucket_max"].integer() if "bucket_max" in fields else 0,
                bucket_keys=tuple(k.number() for k in fields["bucket_keys"].sequence())
                if "bucket_keys" in fields
                else (),
            )
        )
    config = Config(name, tuple(counters), tuple(histograms), bpf_path=directory / f"{name}.bpf.o")
    names = [metric for metric, _ in config.metric_maps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: metrics: {duplicates} defined twice (each name is one map and one metric)")
    return config


def parse_configs(directory: Path, names: Sequence[str]) -> list[Config]:
    """config/config.go ParseConfigs: ``<dir>/<name>.yaml`` for each name, the object beside it."""
    configs = []
    for name in names:
        path = directory / f"{name}.yaml"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else str(e)
            raise ConfigError(f'error opening "{path}" for config "{name}": {reason}') from e
        configs.append(parse_config(text, name, directory))
    seen = [c.name for c in configs]
    if len(set(seen)) != len(seen):
        raise ConfigError(f"--config.names: multiple configs with the same name in {','.join(seen)}")
    return configs


def expected_key_size(labels: Sequence[Label], percpu: bool) -> int:
    """The map key size with which decodeLabels can decode every key (exporter.go mapValues/readMapValues)."""
    if not labels:
        return 4  # "If there are no labels, assume a single key of uint32(0)"
    total = sum(label.size + label.padding for label in labels)
    if percpu and labels[-1].name == "cpu":
        if len(labels) == 1:
            return 4  # a u32 0 key, skipped, and the CPU number as u16
        return total - 2  # the CPU number is appended to the key as u16
    return total


# --- decoders (decoder/*.go) ----------------------------------------------------------------------------------


class DecodeError(Exception):
    """A decoder failed: ebpf_exporter skips the whole metric for this scrape and counts a decoder error."""


class SkipLabelSet(Exception):
    """decoder.ErrSkipLabelSet: the row is dropped, silently."""


def _go_bytes(data: bytes) -> str:
    return "[]byte{" + ", ".join(f"0x{b:x}" for b in data) + "}"


def _decode_uint(data: bytes, _decoder: Decoder) -> bytes:
    if len(data) not in (1, 2, 4, 8):
        raise DecodeError(f"unknown value length {len(data)} for {_go_bytes(data)}")
    return str(int.from_bytes(data, sys.byteorder)).encode()


def _decode_static_map(data: bytes, decoder: Decoder) -> bytes:
    if decoder.static_map is None:
        return b"empty mapping"
    if data in decoder.static_map:
        return decoder.static_map[data]
    return data if decoder.allow_unknown else b"unknown:" + data


def _decode_string(data: bytes, _decoder: Decoder) -> bytes:
    return data.split(b"\0", 1)[0]


def _decode_hex(data: bytes, _decoder: Decoder) -> bytes:
    return data.hex().encode()


def _decode_regexp(data: bytes, decoder: Decoder) -> bytes:
    if decoder.regexps is None:
        raise DecodeError("no regexps defined in config")
    for pattern in decoder.regexps:
        match = pattern.search(data)
        if match is None:
            continue
        # Go's FindSubmatch: one group -> that group, no group -> the match, more groups -> next regexp.
        if pattern.groups == 1:
            return match.group(1) or b""
        if pattern.groups == 0:
            return match.group(0)
    raise SkipLabelSet


def _decode_inet_ip(data: bytes, _decoder: Decoder) -> bytes:
    import ipaddress  # only configs that use it pay for the import

    if not data:
        return b"<nil>"
    if len(data) == 4:
        return str(ipaddress.IPv4Address(data)).encode()
    if len(data) == 16:
        address = ipaddress.IPv6Address(data)
        # net.IP.String prints an IPv4-mapped address as IPv4
        return str(address.ipv4_mapped or address.compressed).encode()
    return b"?" + data.hex().encode()


def _major_minor_name(major: int, minor: int, partitions: str) -> str:
    for line in partitions.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[0] == str(major) and fields[1] == str(minor):
            return fields[3]
    return ""


class _MajorMinor:
    """decoder/majorminor.go: a new_encode_dev() u32 to the device name in /proc/partitions (names are cached)."""

    def __init__(self, partitions: Path = Path("/proc/partitions")) -> None:
        self.partitions = partitions
        self.cache: dict[int, bytes] = {}

    def __call__(self, data: bytes, _decoder: Decoder) -> bytes:
        number = int.from_bytes(data[:4], sys.byteorder)
        if number not in self.cache:
            try:
                text = self.partitions.read_text()
            except OSError as e:
                raise DecodeError(str(e)) from e
            major, minor = os.major(number), os.minor(number)
            name = _major_minor_name(major, minor, text)
            if not name:
                return f"unknown:{major}:{minor}".encode()
            self.cache[number] = name.encode()
        return self.cache[number]


# --- Prometheus text, as client_golang and prometheus/common write it ------------------------------------------


def go_float(value: float) -> str:
    """expfmt writeFloat: 1, 0, -1, NaN, ±Inf spelled out, else ``strconv.FormatFloat(value, 'g', -1, 64)``."""
    if value == 1:
        return "1"
    if value == 0:
        return "0"
    if value == -1:
        return "-1"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, as Go's shortest formatting does; Go then picks %e when
    # the decimal exponent is < -4 or >= 6 (the precision used for that decision when formatting shortest).
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + int(exponent or 0)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    exp = point - 1
    if exp < -4 or exp >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(pairs: Sequence[tuple[str, str]]) -> str:
    return ",".join(f'{name}="{_escape_label_value(value)}"' for name, value in pairs)


class ScrapeError(Exception):
    """What makes client_golang's Gather fail, so that promhttp answers 500 for the whole scrape."""


@dataclass
class _Family:
    name: str
    help: str
    kind: str
    #: (label values in label-name order, text lines) per metric, sorted by the former at the end
    metrics: list[tuple[tuple[str, ...], list[str]]] = field(default_factory=list)

    def _pairs(self, names: Sequence[str], values: Sequence[bytes | str]) -> list[tuple[str, str]]:
        pairs = []
        for name, value in zip(names, values, strict=True):
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    raise ScrapeError(
                        f"collected metric {self.name!r} has a label named {name!r} whose value is not utf8: {value!r}"
                    ) from None
            pairs.append((name, value))
        return sorted(pairs)  # MakeLabelPairs sorts by label name

    def add(self, names: Sequence[str], values: Sequence[bytes | str], value: float) -> None:
        pairs = self._pairs(names, values)
        braces = "{" + _label_text(pairs) + "}" if pairs else ""
        self.metrics.append((tuple(v for _, v in pairs), [f"{self.name}{braces} {go_float(value)}"]))

    def add_histogram(
        self,
        names: Sequence[str],
        values: Sequence[bytes | str],
        buckets: Mapping[float, int],
        count: int,
        total: float,
    ) -> None:
        pairs = self._pairs(names, values)
        prefix = _label_text(pairs) + "," if pairs else ""
        braces = "{" + _label_text(pairs) + "}" if pairs else ""
        lines = []
        bounds = sorted(buckets)
        for bound in bounds:
            lines.append(f'{self.name}_bucket{{{prefix}le="{go_float(bound)}"}} {go_float(float(buckets[bound]))}')
        if not bounds or bounds[-1] != math.inf:
            lines.append(f'{self.name}_bucket{{{prefix}le="+Inf"}} {go_float(float(count))}')
        lines.append(f"{self.name}_sum{braces} {go_float(total)}")
        lines.append(f"{self.name}_count{braces} {go_float(float(count))}")
        self.metrics.append((tuple(v for _, v in pairs), lines))

    def text(self) -> str:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for _, metric_lines in sorted(self.metrics, key=lambda m: (len(m[0]), m[0])):
            lines.extend(metric_lines)
        return "\n".join(lines) + "\n"


#: One map as read at a scrape: key bytes -> u64, or -> one u64 per possible CPU for per-CPU maps.
MapValues = Mapping[bytes, int | tuple[int, ...]]


@dataclass(frozen=True)
class ProgramState:
    """One program of a loaded config, as ebpf_exporter reads it from /proc/self/fdinfo/<prog fd>."""

    config: str
    name: str
    tag: str
    id: int
    attached: bool
    run_time_ns: int = 0
    run_count: int = 0


def _go_seconds(nanoseconds: int) -> float:
    """time.Duration.Seconds()."""
    seconds, rest = divmod(abs(nanoseconds), 1_000_000_000)
    value = float(seconds) + float(rest) / 1e9
    return -value if nanoseconds < 0 else value


def _exp2(bucket: float) -> float:
    """math.Exp2 on the integer bucket keys: exact powers of two, 0 below and +Inf above float64's range."""
    if bucket > 1023:
        return math.inf
    if bucket < -1074:
        return 0.0
    return math.ldexp(1.0, int(bucket))


def histogram_keyer(histogram: Histogram) -> Callable[[float], float]:
    """exporter/histogram.go histogramKeyerMaker: bucket key -> the upper bound (``le``)."""
    multiplier = histogram.bucket_multiplier or 1.0
    if histogram.bucket_type == "exp2":
        return lambda bucket: _exp2(bucket) * multiplier
    if histogram.bucket_type == "exp2zero":
        return lambda bucket: 0.0 if bucket == 0 else _exp2(bucket - 1) * multiplier
    return lambda bucket: bucket * multiplier  # linear and fixed


_U64 = (1 << 64) - 1


def transform_histogram(histogram: Histogram, buckets: Mapping[float, int]) -> tuple[dict[float, int], int, float]:
    """exporter/histogram.go transformHistogram: cumulative buckets (le -> count), count, sum.

    Buckets run from bucket_min to bucket_max inclusive (fixed: the bucket_keys), missing keys count 0, keys
    outside are ignored, the count is the last cumulative count, and the key after the last bucket holds the sum
    (0 when absent), multiplied by bucket_multiplier like the bounds.
    """
    keyer = histogram_keyer(histogram)
    multiplier = histogram.bucket_multiplier or 1.0
    transformed: dict[float, int] = {}
    count = 0
    if histogram.bucket_type == "fixed":
        if not histogram.bucket_keys:
            raise ValueError("histogram buckets have zero size: len(bucket_keys) = 0")
        keys = list(histogram.bucket_keys)
        sum_key = keys[-1] + 1
    else:
        if histogram.bucket_max == histogram.bucket_min:
            raise ValueError(
                f"histogram buckets have zero size: [bucket_min .. bucket_max] = "
                f"[{histogram.bucket_min} .. {histogram.bucket_max}]"
            )
        keys = [float(i) for i in range(histogram.bucket_min, histogram.bucket_max + 1)]
        sum_key = float(histogram.bucket_max + 1)
    for key in keys:
        count = (count + buckets.get(key, 0)) & _U64
        transformed[keyer(key)] = count
    return transformed, count, float(buckets.get(sum_key, 0)) * multiplier


def _float_to_u64(value: float) -> int:
    """uint64(f) on amd64 for the values a u64 counter can have."""
    return int(value) & _U64 if math.isfinite(value) and value >= 0 else 0


class Renderer:
    """The pure half: configs + what was read from the maps -> the text ebpf_exporter would serve.

    It keeps ``ebpf_exporter_decoder_errors_total`` across scrapes, as ebpf_exporter's CounterVec does.
    """

    def __init__(self, configs: Sequence[Config], standin_labels: Mapping[str, str] | None = None) -> None:
        self.configs = list(configs)
        self.decoder_errors = {config.name: 0 for config in configs}
        self.standin_labels = dict(standin_labels or {"mimics": MIMICS})
        self._decoders: dict[str, Callable[[bytes, Decoder], bytes]] = {
            "uint": _decode_uint,
            "static_map": _decode_static_map,
            "string": _decode_string,
            "hex": _decode_hex,
            "regexp": _decode_regexp,
            "inet_ip": _decode_inet_ip,
            "majorminor": _MajorMinor(),
        }

    # -- map rows to label sets: exporter.go mapValues and decoder.go decodeLabels --

    def _decode_labels(self, raw: bytes, labels: Sequence[Label]) -> list[bytes]:
        total = 0
        for label in labels:
            total += label.size + label.padding
        if total != len(raw):
            raise DecodeError(
                f"error decoding labels: total size of key {_go_bytes(raw)} is {len(raw)} bytes, "
                f"but we have labels to decode {total}"
            )
        values, offset = [], 0
        for label in labels:
            result = raw[offset : offset + label.size]
            for decoder in label.decoders:
                try:
                    result = self._decoders[decoder.name](result, decoder)
                except DecodeError as e:
                    raise DecodeError(f"error decoding with decoder {decoder.name!r}: {e}") from e
            offset += label.size + label.padding
            values.append(result)
        return values

    def _rows(self, values: MapValues, labels: Sequence[Label]) -> list[tuple[list[bytes], float]]:
        """readMapValues + mapValues + aggregateMapValues: (label values, value) per distinct label set."""
        add_cpu = bool(labels) and labels[-1].name == "cpu"
        raw_rows: list[tuple[bytes, float, bool]] = []
        for key, stored in values.items():
            if isinstance(stored, tuple):
                for cpu, per_cpu in enumerate(stored):
                    raw = key + (cpu & 0xFFFF).to_bytes(2, sys.byteorder) if add_cpu else key
                    raw_rows.append((raw, float(per_cpu), True))
            else:
                raw_rows.append((key, float(stored), False))
        rows: list[tuple[list[bytes], float]] = []
        for raw, value, percpu in raw_rows:
            if not labels and raw == b"\0\0\0\0":
                rows.append(([], value))
                continue
            if percpu and len(labels) == 1 and labels[0].name == "cpu" and raw[:4] == b"\0\0\0\0":
                raw = raw[4:]
            try:
                rows.append((self._decode_labels(raw, labels), value))
            except SkipLabelSet:
                continue
        # aggregateMapValues: rows whose labels join (with "|") to the same string are summed
        aggregated: dict[bytes, tuple[list[bytes], float]] = {}
        for label_values, value in rows:
            joined = b"|".join(label_values)
            first = aggregated.get(joined)
            aggregated[joined] = (first[0], first[1] + value) if first else (label_values, value)
        return list(aggregated.values())

    def _map_rows(
        self, config: Config, name: str, labels: Sequence[Label], maps: Mapping[str, MapValues | None]
    ) -> list[tuple[list[bytes], float]] | None:
        values = maps.get(name)
        try:
            if values is None:
                raise DecodeError(f"failed to retrieve map {name!r}")
            return self._rows(values, labels)
        except DecodeError as e:
            self.decoder_errors[config.name] += 1
            LOG.error("Error getting map %r values for metric %r of config %r: %s", name, name, config.name, e)
            return None

    def _histogram_family(self, config: Config, histogram: Histogram, rows: list[tuple[list[bytes], float]]) -> _Family:
        family = _Family(f"{NAMESPACE}_{histogram.name}", histogram.help, "histogram")
        names = [label.name for label in histogram.labels[:-1]]
        sets: dict[tuple[bytes, ...], dict[float, int]] = {}
        for label_values, value in rows:
            bucket = parse_go_uint(label_values[-1].decode("utf-8", "replace"))
            if bucket is None:
                LOG.error(
                    "Error parsing float value for bucket %r in map %r of config %r",
                    label_values,
                    histogram.name,
                    config.name,
                )
                return _Family(family.name, family.help, family.kind)
            sets.setdefault(tuple(label_values[:-1]), {})[float(bucket)] = _float_to_u64(value)
        for label_set, buckets in sets.items():
            try:
                transformed, count, total = transform_histogram(histogram, buckets)
            except ValueError as e:
                LOG.error("Error transforming histogram for metric %r in config %r: %s", histogram.name, config.name, e)
                continue
            family.add_histogram(names, label_set, transformed, count, total)
        return family

    def render(
        self,
        maps: Mapping[str, Mapping[str, MapValues | None]],
        programs: Sequence[ProgramState] = (),
        *,
        bpf_stats_enabled: bool = False,
    ) -> str:
        """The /metrics text for one scrape. ``maps``: config name -> map name -> contents (None: unreadable)."""
        families: list[_Family] = []
        # Collect sends the decoder errors CounterVec before it reads the maps, and the registry writes it out as
        # it arrives: a scrape shows the errors of the scrapes before it, not its own.
        errors_before = dict(self.decoder_errors)

        enabled = _Family(f"{NAMESPACE}_enabled_configs", "The set of enabled configs", "gauge")
        for config in self.configs:
            enabled.add(["name"], [config.name], 1)
        info = _Family(f"{NAMESPACE}_ebpf_program_info", "Info about ebpf programs", "gauge")
        attached = _Family(f"{NAMESPACE}_ebpf_program_attached", "Whether a program is attached", "gauge")
        run_time = _Family(
            f"{NAMESPACE}_ebpf_program_run_time_seconds", "How long has the program been executing", "counter"
        )
        run_count = _Family(
            f"{NAMESPACE}_ebpf_program_run_count_total", "How many times has the program been executed", "counter"
        )
        for program in programs:
            program_id = str(program.id)
            info.add(["config", "program", "tag", "id"], [program.config, program.name, program.tag, program_id], 1)
            attached.add(["id"], [program_id], 1 if program.attached else 0)
            if bpf_stats_enabled:
                run_time.add(["id"], [program_id], _go_seconds(program.run_time_ns))
                run_count.add(["id"], [program_id], float(program.run_count))
        families += [enabled, info, attached, run_time, run_count]

        for config in self.configs:
            config_maps = maps.get(config.name, {})
            for counter in config.counters:
                rows = self._map_rows(config, counter.name, counter.labels, config_maps)
                family = _Family(f"{NAMESPACE}_{counter.name}", counter.help, "counter")
                for label_values, value in rows or []:
                    family.add([label.name for label in counter.labels], label_values, value)
                families.append(family)
            for histogram in config.histograms:
                rows = self._map_rows(config, histogram.name, histogram.labels, config_maps)
                if rows is not None:
                    families.append(self._histogram_family(config, histogram, rows))

        help_text = "How many times has decoders encountered errors"
        errors = _Family(f"{NAMESPACE}_decoder_errors_total", help_text, "counter")
        for config in self.configs:
            errors.add(["config"], [config.name], float(errors_before[config.name]))
        standin = _Family(
            f"{NAMESPACE}_standin_info",
            "This is NOT ebpf_exporter but g5kdeploy's stand-in for it (VM testbed): same configs, maps and metrics",
            "gauge",
        )
        standin.add(list(self.standin_labels), list(self.standin_labels.values()), 1)
        families += [errors, standin]

        # client_golang's registry: empty families pruned, families sorted by name.
        present = sorted((f for f in families if f.metrics), key=lambda f: f.name)
        return "".join(f.text() for f in present)


# --- libbpf through ctypes (the impure half) ------------------------------------------------------------------

_PERCPU_MAP_TYPES = {5, 6, 10}  # BPF_MAP_TYPE_PERCPU_HASH, _PERCPU_ARRAY, _LRU_PERCPU_HASH
_LIBBPF_WARN, _LIBBPF_INFO, _LIBBPF_DEBUG = 0, 1, 2
# size of va_list, to va_copy it by value (x86-64: __va_list_tag[1]; AArch64: struct __va_list)
_VA_LIST_SIZE = {"x86_64": 24, "amd64": 24, "aarch64": 32, "arm64": 32}
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
LIBBPF_CANDIDATES = ("libbpf.so.1", "/usr/lib/x86_64-linux-gnu/libbpf.so.1", "/usr/lib/aarch64-linux-gnu/libbpf.so.1")
VERIFIER_TAIL = 20

# (name, restype, argtypes) from /usr/include/bpf/libbpf.h and bpf.h (libbpf 1.1)
_P, _I, _U32, _S = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_char_p
LIBBPF_FUNCTIONS: tuple[tuple[str, Any, tuple[Any, ...]], ...] = (
    ("libbpf_major_version", _U32, ()),
    ("libbpf_minor_version", _U32, ()),
    ("libbpf_set_print", _P, (_PRINT_FN,)),
    ("libbpf_strerror", _I, (_I, ctypes.c_char_p, ctypes.c_size_t)),
    ("libbpf_num_possible_cpus", _I, ()),
    ("bpf_object__open_file", _P, (_S, _P)),
    ("bpf_object__load", _I, (_P,)),
    ("bpf_object__close", None, (_P,)),
    ("bpf_object__next_program", _P, (_P, _P)),
    ("bpf_object__next_map", _P, (_P, _P)),
    ("bpf_program__name", _S, (_P,)),
    ("bpf_program__section_name", _S, (_P,)),
    ("bpf_program__fd", _I, (_P,)),
    ("bpf_program__attach", _P, (_P,)),
    ("bpf_link__destroy", _I, (_P,)),
    ("bpf_map__name", _S, (_P,)),
    ("bpf_map__fd", _I, (_P,)),
    ("bpf_map__type", _I, (_P,)),
    ("bpf_map__key_size", _U32, (_P,)),
    ("bpf_map__value_size", _U32, (_P,)),
    ("bpf_map__max_entries", _U32, (_P,)),
    ("bpf_map_get_next_key", _I, (_I, _P, _P)),
    ("bpf_map_lookup_elem", _I, (_I, _P, _P)),
)


class Libbpf:
    """The host's libbpf 1.x, with its log (and the verifier's) captured rather than printed."""

    _print: Any = None

    def __init__(self, path: str | None = None, *, debug: bool = False) -> None:
        self.lib = self._open(path)
        for name, restype, argtypes in LIBBPF_FUNCTIONS:
            try:
                function = getattr(self.lib, name)
            except AttributeError as e:
                raise BpfError(f"{self.path} has no {name}: libbpf 1.x is needed (Debian: apt install libbpf1)") from e
            function.restype = restype
            function.argtypes = list(argtypes)
        self.version = f"{self.lib.libbpf_major_version()}.{self.lib.libbpf_minor_version()}"
        if not self.version.startswith("1."):
            raise BpfError(f"running with libbpf v{self.version} ({self.path}), v1.x is expected")
        self.libc = ctypes.CDLL(None)
        self.libc.vsnprintf.restype = ctypes.c_int
        self.libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        machine = platform.machine()
        if machine not in _VA_LIST_SIZE:
            raise BpfError(f"the ebpf_exporter stand-in cannot read libbpf's log on {machine} (x86_64, aarch64 only)")
        self.va_list_size = _VA_LIST_SIZE[machine]
        self.debug = debug
        self._captured: list[tuple[int, str]] | None = None
        # libbpf keeps one print function for the whole process: the class holds the last one set, so that it
        # outlives the instance that set it
        Libbpf._print = _PRINT_FN(self._on_print)
        self.lib.libbpf_set_print(Libbpf._print)

    def _open(self, path: str | None) -> ctypes.CDLL:
        failures = []
        for candidate in [path] if path else [*LIBBPF_CANDIDATES, None]:
            # find_library (ldconfig -p) only when the usual names fail: it costs a process
            candidate = candidate or ctypes.util.find_library("bpf")
            if candidate is None:
                continue
            try:
                library = ctypes.CDLL(candidate, use_errno=True)
            except OSError as e:
                failures.append(str(e))
                continue
            self.path = candidate
            return library
        raise BpfError(f"cannot load libbpf ({'; '.join(failures)}): install Debian's libbpf1")

    def _format(self, fmt: bytes, args: int) -> str:
        # The message is formatted twice (size, then text): the first pass gets a copy of the va_list (va_copy).
        copy = ctypes.create_string_buffer(self.va_list_size)
        ctypes.memmove(copy, args, self.va_list_size)
        size = self.libc.vsnprintf(None, 0, fmt, ctypes.addressof(copy))
        if size < 0:
            return fmt.decode(errors="replace")
        buffer = ctypes.create_string_buffer(size + 1)
        self.libc.vsnprintf(buffer, size + 1, fmt, args)
        return buffer.value.decode(errors="replace")

    def _on_print(self, level: int, fmt: bytes | None, args: int | None) -> int:
        try:
            text = self._format(fmt, args) if fmt is not None and args is not None else (fmt or b"").decode()
            if self._captured is not None:
                self._captured.append((level, text))
            elif level != _LIBBPF_DEBUG or self.debug:
                self.log(level, text)
        except Exception:  # an exception must never unwind through libbpf's C frames
            return 0
        return 0

    @staticmethod
    def log(level: int, text: str) -> None:
        name = {_LIBBPF_WARN: "warn", _LIBBPF_INFO: "info", _LIBBPF_DEBUG: "debug"}.get(level, "unknown")
        for line in text.rstrip("\n").splitlines():
            LOG.info("libbpf [%s]: %s", name, line)

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[tuple[int, str]]]:
        """libbpf's messages during a call, for the error message (or logged afterwards when it succeeds)."""
        captured: list[tuple[int, str]] = []
        self._captured = captured
        try:
            yield captured
        finally:
            self._captured = None

    def strerror(self, code: int) -> str:
        buffer = ctypes.create_string_buffer(256)
        self.lib.libbpf_strerror(code, buffer, len(buffer))
        return buffer.value.decode(errors="replace") or os.strerror(abs(code))


def _libbpf_lines(captured: Sequence[tuple[int, str]]) -> list[str]:
    """libbpf's warnings, without the verifier log they may carry."""
    lines = []
    for level, text in captured:
        if level == _LIBBPF_WARN and "-- BEGIN PROG LOAD LOG --" not in text:
            lines += [line.strip() for line in text.splitlines() if line.strip()]
    return lines


def verifier_tail(captured: Sequence[tuple[int, str]], lines: int = VERIFIER_TAIL) -> list[str]:
    """The last lines of the verifier log libbpf printed for the program that failed to load."""
    for _, text in reversed(captured):
        if "-- BEGIN PROG LOAD LOG --" in text:
            log = text.split("-- BEGIN PROG LOAD LOG --", 1)[1].split("-- END PROG LOAD LOG --", 1)[0]
            return [line for line in log.splitlines() if line.strip()][-lines:]
    return []


@dataclass
class BpfMap:
    name: str
    fd: int
    type: int
    key_size: int
    value_size: int
    max_entries: int

    @property
    def percpu(self) -> bool:
        return self.type in _PERCPU_MAP_TYPES


@dataclass
class BpfProgram:
    name: str
    section: str
    pointer: int
    link: int | None = None

    def fd(self, lib: Libbpf) -> int:
        return int(lib.lib.bpf_program__fd(self.pointer))


class BpfObject:
    """One config's object: opened, its maps checked against the config, loaded, its programs attached."""

    def __init__(self, lib: Libbpf, config: Config) -> None:
        self.lib, self.config = lib, config
        with lib.capture() as captured:
            pointer = lib.lib.bpf_object__open_file(str(config.bpf_path).encode(), None)
            code = ctypes.get_errno()
        if not pointer:
            raise self._error("error creating module from", code, captured)
        self.pointer: int = pointer
        self._replay(captured)
        self.programs: list[BpfProgram] = []
        program = lib.lib.bpf_object__next_program(self.pointer, None)
        while program:
            name = (lib.lib.bpf_program__name(program) or b"").decode()
            section = (lib.lib.bpf_program__section_name(program) or b"").decode()
            self.programs.append(BpfProgram(name, section, program))
            program = lib.lib.bpf_object__next_program(self.pointer, program)

    def _error(self, what: str, code: int, captured: Sequence[tuple[int, str]]) -> BpfError:
        reason = self.lib.strerror(-abs(code)) if code else "unknown error"
        context = _libbpf_lines(captured)
        message = f'{what} "{self.config.bpf_path}" for config "{self.config.name}": {reason}'
        if context:
            message += " (" + "; ".join(context[-3:]) + ")"
        tail = verifier_tail(captured)
        if tail:
            message += f"; the verifier's last {len(tail)} lines:"
        return BpfError(message, tail)

    def _replay(self, captured: Sequence[tuple[int, str]]) -> None:
        for level, text in captured:
            if level != _LIBBPF_DEBUG or self.lib.debug:
                self.lib.log(level, text)

    def maps(self) -> dict[str, BpfMap]:
        found = {}
        pointer = self.lib.lib.bpf_object__next_map(self.pointer, None)
        while pointer:
            lib = self.lib.lib
            name = (lib.bpf_map__name(pointer) or b"").decode()
            found[name] = BpfMap(
                name=name,
                fd=lib.bpf_map__fd(pointer),
                type=lib.bpf_map__type(pointer),
                key_size=lib.bpf_map__key_size(pointer),
                value_size=lib.bpf_map__value_size(pointer),
                max_entries=lib.bpf_map__max_entries(pointer),
            )
            pointer = lib.bpf_object__next_map(self.pointer, pointer)
        return found

    def check_maps(self) -> None:
        """exporter.go validateMaps (each metric's map exists, u64 values), plus the key size the labels need."""
        maps = self.maps()
        where = f'config "{self.config.name}" ({self.config.bpf_path})'
        for name, labels in self.config.metric_maps:
            if name not in maps:
                raise ConfigError(f"error validating maps for {where}: failed to get map {name!r}: no such map")
            found = maps[name]
            if found.value_size != 8:
                raise ConfigError(
                    f"error validating maps for {where}: value size for map {name!r} is not expected 8 bytes (u64), "
                    f"it is {found.value_size} bytes"
                )
            wanted = expected_key_size(labels, found.percpu)
            if found.key_size != wanted:
                sizes = " + ".join(f"{label.name} {label.size + label.padding}" for label in labels) or "no labels"
                raise ConfigError(
                    f"{where}: map {name!r} has {found.key_size}-byte keys but the labels of metric {name!r} decode "
                    f"{wanted} ({sizes}): ebpf_exporter would fail every scrape of it; fix the labels' sizes"
                )

    def load(self) -> None:
        with self.lib.capture() as captured:
            code = self.lib.lib.bpf_object__load(self.pointer)
        if code < 0:
            raise self._error("error loading bpf object from", -code, captured)
        self._replay(captured)

    def attach(self) -> None:
        """exporter/attach.go attachModule, except that a program that does not attach is an error here."""
        for program in self.programs:
            if program.link is not None:
                continue
            with self.lib.capture() as captured:
                link = self.lib.lib.bpf_program__attach(program.pointer)
                code = ctypes.get_errno()
            if not link:
                context = _libbpf_lines(captured)
                reason = self.lib.strerror(-abs(code)) if code else "unknown error"
                raise BpfError(
                    f"Failed to attach program {program.name!r} ({program.section}) for config {self.config.name!r}: "
                    f"{reason}" + (" (" + "; ".join(context[-3:]) + ")" if context else "")
                )
            self._replay(captured)
            program.link = link

    def detach(self) -> None:
        for program in self.programs:
            if program.link is not None:
                code = self.lib.lib.bpf_link__destroy(program.link)
                if code < 0:
                    LOG.error(
                        "Failed to detach program %r for config %r: %s",
                        program.name,
                        self.config.name,
                        self.lib.strerror(code),
                    )
                program.link = None

    def close(self) -> None:
        self.detach()
        self.lib.lib.bpf_object__close(self.pointer)

    def read_map(self, found: BpfMap) -> dict[bytes, int | tuple[int, ...]]:
        """Every key and value of a map (exporter.go readMapValues: u64 values in host byte order)."""
        lib = self.lib.lib
        cpus = lib.libbpf_num_possible_cpus() if found.percpu else 1
        if cpus <= 0:
            raise BpfError(f"libbpf_num_possible_cpus: {self.lib.strerror(cpus)}")
        stride = (found.value_size + 7) // 8 * 8 if found.percpu else found.value_size
        key = ctypes.create_string_buffer(found.key_size)
        next_key = ctypes.create_string_buffer(found.key_size)
        value = ctypes.create_string_buffer(stride * cpus)
        result: dict[bytes, int | tuple[int, ...]] = {}
        code = lib.bpf_map_get_next_key(found.fd, None, next_key)
        while code == 0:
            raw = next_key.raw
            if raw in result:
                break  # the kernel restarted the walk (a key was deleted under us): everything was seen
            code = lib.bpf_map_lookup_elem(found.fd, next_key, value)
            if code == 0:
                data = value.raw
                numbers = tuple(int.from_bytes(data[i * stride : i * stride + 8], sys.byteorder) for i in range(cpus))
                result[raw] = numbers if found.percpu else numbers[0]
            elif code != -errno.ENOENT:
                raise BpfError(f"bpf_map_lookup_elem on map {found.name!r}: {self.lib.strerror(code)}")
            ctypes.memmove(key, next_key, found.key_size)
            code = lib.bpf_map_get_next_key(found.fd, key, next_key)
        if code not in (0, -errno.ENOENT):
            raise BpfError(f"bpf_map_get_next_key on map {found.name!r}: {self.lib.strerror(code)}")
        return result


def read_program_info(fd: int, proc: Path = Path("/proc/self/fdinfo")) -> dict[str, str]:
    """exporter/program_info.go extractProgramInfo: prog_tag, prog_id, run_time_ns, run_cnt from fdinfo."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in (proc / str(fd)).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                fields[parts[0].rstrip(":")] = parts[1]
    return fields


def bpf_stats_enabled(path: Path = Path("/proc/sys/kernel/bpf_stats_enabled")) -> bool:
    try:
        return path.read_bytes()[:1] == b"1"
    except OSError:
        return False


class Exporter:
    """Loaded configs, their links, and the scrape: everything the HTTP thread and the signal loop share."""

    def __init__(self, lib: Libbpf, configs: Sequence[Config]) -> None:
        self.lib = lib
        self.configs = list(configs)
        self.renderer = Renderer(configs, {"mimics": MIMICS, "libbpf": lib.version})
        self.objects: list[BpfObject] = []
        self.lock = threading.Lock()
        self.attached = False

    def load(self) -> None:
        for config in self.configs:
            obj = BpfObject(self.lib, config)
            self.objects.append(obj)
            obj.check_maps()
            obj.load()

    def attach(self) -> None:
        with self.lock:
            try:
                for obj in self.objects:
                    obj.attach()
            except BpfError:
                for obj in self.objects:
                    obj.detach()
                self.attached = False
                raise
            self.attached = True

    def detach(self) -> None:
        with self.lock:
            for obj in self.objects:
                obj.detach()
            self.attached = False

    def close(self) -> None:
        with self.lock:
            for obj in self.objects:
                obj.close()
            self.objects = []
            self.attached = False

    def scrape(self) -> str:
        with self.lock:
            maps: dict[str, dict[str, MapValues | None]] = {}
            programs = []
            for obj in self.objects:
                found = obj.maps()
                contents: dict[str, MapValues | None] = {}
                for name, _ in obj.config.metric_maps:
                    try:
                        contents[name] = obj.read_map(found[name])
                    except (BpfError, KeyError) as e:
                        LOG.error("Error reading map %r of config %r: %s", name, obj.config.name, e)
                        contents[name] = None
                maps[obj.config.name] = contents
                for program in obj.programs:
                    info = read_program_info(program.fd(self.lib))
                    programs.append(
                        ProgramState(
                            config=obj.config.name,
                            name=program.name,
                            tag=info.get("prog_tag", ""),
                            id=int(info.get("prog_id", "0")),
                            attached=program.link is not None,
                            run_time_ns=int(info.get("run_time_ns", "0")),
                            run_count=int(info.get("run_cnt", "0")),
                        )
                    )
            return self.renderer.render(maps, programs, bpf_stats_enabled=bpf_stats_enabled())


# --- the process: HTTP, signals, state and pid files ----------------------------------------------------------

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
PAGE = """<html>
<head><title>ebpf_exporter stand-in</title></head>
<body>
<h1>ebpf_exporter stand-in</h1>
<p>This is not ebpf_exporter: it is g5kdeploy's stand-in for it on the VM testbed ({mimics} configs, maps and
metric names; Grid'5000 runs the real ebpf_exporter).</p>
<p><a href="{path}">Metrics</a></p>
</body>
</html>
"""


def _handler(scrape: Callable[[], str], metrics_path: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "ebpf_exporter-standin"

        def _send(self, status: int, body: bytes, content_type: str, head: bool) -> None:
            gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
            if gzipped:
                body = gzip.compress(body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _serve(self, head: bool) -> None:
            if self.path.split("?", 1)[0] != metrics_path:
                page = PAGE.format(mimics=MIMICS, path=metrics_path).encode()
                self._send(200, page, "text/html; charset=utf-8", head)
                return
            try:
                text = scrape()
            except ScrapeError as e:
                # promhttp's HTTPErrorOnError
                message = f"An error has occurred while serving metrics:\n\n{e}\n"
                self._send(500, message.encode(), "text/plain; charset=utf-8", head)
                return
            self._send(200, text.encode(), CONTENT_TYPE, head)

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def log_message(self, format: str, *args: Any) -> None:
            LOG.debug("%s %s", self.address_string(), format % args)

    return Handler


def listen(address: str, handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    """--web.listen-address ``host:port`` (``:port`` or ``[::]:port`` for every address)."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit():
        raise ConfigError(f"--web.listen-address: {address!r} is not host:port (e.g. 0.0.0.0:9435)")
    host = host.strip("[]")

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        return Server((host, int(port)), handler)
    except OSError as e:
        raise BpfError(f"Error listening on {address}: {e.strerror or e}") from e


def write_atomically(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ebpf_exporter_standin.py",
        description="A stand-in for ebpf_exporter v2 on the VM testbed (same configs, maps and metrics).",
    )
    parser.add_argument("--config.dir", dest="config_dir", required=True, type=Path, help="Config dir path.")
    parser.add_argument("--config.names", dest="config_names", required=True, help="Comma separated config names.")
    parser.add_argument("--web.listen-address", dest="listen", default=":9435", help="host:port to serve on.")
    parser.add_argument("--web.telemetry-path", dest="metrics_path", default="/metrics", help="Path of the metrics.")
    parser.add_argument("--state-file", type=Path, help="Where to write attached/detached (atomically).")
    parser.add_argument("--pid-file", type=Path, help="Where to write this process's id (removed at exit).")
    parser.add_argument("--detached", action="store_true", help="Load the programs but do not attach them.")
    parser.add_argument("--debug", action="store_true", help="Log libbpf's debug messages and HTTP requests.")
    parser.add_argument("--libbpf", help="Path of libbpf.so.1 (default: the dynamic loader's, then Debian's).")
    args = parser.parse_args(argv)
    if not args.config_dir.is_dir():
        parser.error(f"--config.dir: {args.config_dir} is not a directory")
    return args


SIGNALS = {signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT}


def _serve(args: argparse.Namespace, build: Callable[[], Exporter]) -> int:
    started = time.monotonic()
    # Signals wait for the main loop (sigwait), in every thread: none interrupts a libbpf call or a scrape, and
    # one that arrives while the programs load is handled once the exporter serves.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    exporter = build()
    server: http.server.ThreadingHTTPServer | None = None

    def state(text: str) -> None:
        if args.state_file:
            write_atomically(args.state_file, text + "\n")

    try:
        exporter.load()
        if not args.detached:
            exporter.attach()
        server = listen(args.listen, _handler(exporter.scrape, args.metrics_path))
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        LOG.info(
            "Started with %d programs found in %d configs in %dms (%s), listening on %s:%d",
            sum(len(obj.programs) for obj in exporter.objects),
            len(exporter.configs),
            (time.monotonic() - started) * 1000,
            "attached" if exporter.attached else "detached",
            *server.server_address[:2],
        )
        state("attached" if exporter.attached else "detached")
        while True:
            received = signal.sigwait(SIGNALS)
            if received == signal.SIGUSR1:
                try:
                    exporter.attach()
                except BpfError as e:
                    LOG.error("%s", e)
                    state("failed: " + " ".join(str(e).split()))
                    continue
                LOG.info("Attached on SIGUSR1")
                state("attached")
            elif received == signal.SIGUSR2:
                exporter.detach()
                LOG.info("Detached on SIGUSR2 (maps kept)")
                state("detached")
            else:
                LOG.info("Received signal: %s", signal.Signals(received).name)
                detaching = time.monotonic()
                exporter.detach()
                LOG.info("Detached in %dms", (time.monotonic() - detaching) * 1000)
                state("detached")
                return 0
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        exporter.close()


def configure_logging(debug: bool) -> None:
    """Go's log format (date time message), every line naming the stand-in."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s ebpf_exporter stand-in: %(message)s",
        datefmt="%Y/%m/%d %H:%M:%S",
    )


def run(args: argparse.Namespace, build: Callable[[], Exporter]) -> int:
    """Serve until SIGTERM/SIGINT, with the pid file for the whole run; errors become one line and an exit code."""
    if args.state_file:
        with contextlib.suppress(FileNotFoundError):
            args.state_file.unlink()  # a stale "attached" must not be read as this run's
    try:
        if args.pid_file:
            write_atomically(args.pid_file, f"{os.getpid()}\n")
        return _serve(args, build)
    except ConfigError as e:
        LOG.error("%s", e)
        return 2
    except BpfError as e:
        LOG.error("%s", e)
        for line in e.details:
            print(line, file=sys.stderr)
        return 1
    except OSError as e:
        LOG.error("%s", e)
        return 1
    finally:
        if args.pid_file:
            with contextlib.suppress(OSError):
                args.pid_file.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging(args.debug)

    def build() -> Exporter:
        configs = parse_configs(args.config_dir, args.config_names.split(","))
        return Exporter(Libbpf(args.libbpf, debug=args.debug), configs)

    return run(args, build)


if __name__ == "__main__":
    sys.exit(main())
