"""clang and bpftool: the experiment's eBPF programs compiled and checked against their ebpf_exporter configs.

A program is ``<name>.bpf.c`` and its ebpf_exporter config ``<name>.yaml`` in one directory. :func:`check_programs`
compiles each with clang, as nix/ebpf/default.nix does (``-Wall -Werror``: what would break the Nix build on
Grid'5000 breaks here first), against the ``vmlinux.h`` of the kernel it will run on, reads the object's maps from
its BTF (``bpftool btf dump file``) and holds the config to them the way ebpf_exporter does at run time: every
metric is a map of that name with u64 values, and the labels' sizes (plus padding) add up to the map's key size.

The config is read by the ebpf_exporter stand-in's parser (:mod:`g5kdeploy.payload.ebpf_exporter_standin`), which
follows ebpf_exporter v2's own rules field by field, so the check and the VM nodes read a config the same way.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from g5kdeploy.errors import ConfigError, TestbedError
from g5kdeploy.payload.ebpf_exporter_standin import Config, Label, expected_key_size, parse_config
from g5kdeploy.payload.ebpf_exporter_standin import ConfigError as ExporterConfigError
from g5kdeploy.process import run

KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")
#: nix/ebpf/default.nix's flags, less those that only nixpkgs' clang wrapper needs.
BPF_CFLAGS = ("-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-D__TARGET_ARCH_x86")
TOOLS = ("clang", "bpftool")
INSTALL_HINT = "apt-get install clang bpftool libbpf-dev"
COMPILE_TIMEOUT = 120.0
#: clang's diagnostics shown in an error: the first ones are the cause, the rest mostly follow from them.
DIAGNOSTIC_LINES = 30
#: enum bpf_map_type (include/uapi/linux/bpf.h): the per-CPU maps, whose values ebpf_exporter sums over CPUs.
PERCPU_MAP_TYPES = frozenset({5, 6, 10})
#: BTF kinds that only qualify or rename the type they point to.
_ALIASES = frozenset({"TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"})
#: The first line of one of clang's diagnostics: ``file:line:col: error: ...`` or a bare ``note: ...``.
_DIAGNOSTIC = re.compile(r"^(?:\S.*?:\d+:\d+: )?(?P<kind>fatal error|error|warning|note): ")
_SUMMARY = re.compile(r"^\d+ (?:errors?|warnings?)(?: and \d+ errors?)? generated\.$")


@dataclass(frozen=True)
class Program:
    """One program's two files."""

    name: str
    source: Path
    config: Path


@dataclass(frozen=True)
class BpfMap:
    """A map as libbpf creates it from the object's ``.maps`` section."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int

    @property
    def percpu(self) -> bool:
        return self.type in PERCPU_MAP_TYPES


@dataclass(frozen=True)
class Checked:
    """What :func:`check_programs` found: each program's maps, or why nothing was compiled."""

    programs: dict[str, dict[str, BpfMap]]
    against: str
    skipped: str | None = None


def find_programs(names: Sequence[str], directory: Path) -> list[Program]:
    """Each name's ``.bpf.c`` and ``.yaml`` in ``directory``; a missing one is a ConfigError naming it."""
    programs = []
    for name in names:
        program = Program(name, directory / f"{name}.bpf.c", directory / f"{name}.yaml")
        for needed in (program.source, program.config):
            if not needed.is_file():
                raise ConfigError(
                    f"ebpf.programs: {name} has no {needed.name} in {directory}",
                    hint=f"each program is {name}.bpf.c and its ebpf_exporter config {name}.yaml in ebpf.directory "
                    "(default nix/ebpf): add the file, or take the name out of ebpf.programs",
                )
        programs.append(program)
    return programs


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def write_vmlinux_h(directory: Path, *, vmlinux_h: Path | None = None) -> Path:
    """``directory/vmlinux.h``: a copy of ``vmlinux_h`` (a built kernel's), else generated from this machine's BTF."""
    header = directory / "vmlinux.h"
    if vmlinux_h is not None:
        shutil.copyfile(vmlinux_h, header)
        return header
    dump = ["bpftool", "btf", "dump", "file", str(KERNEL_BTF), "format", "c"]
    header.write_text(run(dump, timeout=60, what="generate vmlinux.h from this machine's BTF").stdout)
    return header


def compile_program(program: Program, include: Path, obj: Path) -> Path:
    """``program``'s object, compiled against ``include/vmlinux.h``; clang's own diagnostics in the error."""
    argv = ["clang", *BPF_CFLAGS, f"-I{include}", "-c", str(program.source), "-o", str(obj)]
    done = run(argv, timeout=COMPILE_TIMEOUT, what=f"compile the eBPF program {program.source.name}", check=False)
    if done.returncode != 0:
        lines = _diagnostics(done.stderr)
        shown = "\n".join(lines[:DIAGNOSTIC_LINES])
        more = f"\n... {len(lines) - DIAGNOSTIC_LINES} more lines" if len(lines) > DIAGNOSTIC_LINES else ""
        hint = "fix the program (clang's lines above give file:line:column)"
        if "bpf/bpf_helpers.h' file not found" in done.stderr:
            hint = f"libbpf's headers are missing: {INSTALL_HINT}"
        raise ConfigError(
            f"ebpf.programs: {program.name}: clang could not compile {program.source}:\n{shown}{more}", hint=hint
        )
    return obj


def _diagnostics(stderr: str) -> list[str]:
    """clang's errors with their source line and caret, without the notes (macro expansions) that follow them."""
    kept, keep = [], True
    for line in stderr.rstrip().splitlines():
        if header := _DIAGNOSTIC.match(line):
            keep = header["kind"] != "note"
        if keep or _SUMMARY.match(line):
            kept.append(line)
    return kept


def object_maps(obj: Path) -> dict[str, BpfMap]:
    """The maps an object defines in ``SEC(".maps")``, from its BTF (``__uint``/``__type`` members, as libbpf reads
    them: ``__uint(x, n)`` is ``int (*x)[n]``, ``__type(x, T)`` is ``T *x``)."""
    dump = run(["bpftool", "-j", "btf", "dump", "file", str(obj)], timeout=60, what=f"read the BTF of {obj.name}")
    types: dict[int, dict[str, Any]] = {t["id"]: t for t in json.loads(dump.stdout)["types"]}

    def resolve(type_id: int) -> dict[str, Any]:
        found = types[type_id]
        while found["kind"] in _ALIASES:
            found = types[found["type_id"]]
        return found

    def size(type_id: int) -> int:
        found = resolve(type_id)
        if found["kind"] == "ARRAY":
            return int(found["nr_elems"]) * size(found["type_id"])
        return 8 if found["kind"] == "PTR" else int(found["size"])

    maps = {}
    for section in types.values():
        if section["kind"] != "DATASEC" or section["name"] != ".maps":
            continue
        for var in section["vars"]:
            variable = types[var["type_id"]]
            fields: dict[str, int] = {}
            for member in resolve(variable["type_id"]).get("members", []):
                pointee = resolve(resolve(member["type_id"])["type_id"])
                if member["name"] in ("key", "value"):
                    fields[f"{member['name']}_size"] = size(pointee["id"])
                elif pointee["kind"] == "ARRAY":
                    fields[member["name"]] = int(pointee["nr_elems"])
            name = variable["name"]
            maps[name] = BpfMap(
                name=name,
                type=fields.get("type", 0),
                key_size=fields.get("key_size", 0),
                value_size=fields.get("value_size", 0),
                max_entries=fields.get("max_entries", 0),
            )
    return maps


def read_config(program: Program) -> Config:
    """The program's ebpf_exporter config, or a ConfigError naming its file and field."""
    try:
        text = program.config.read_text(encoding="utf-8")
        return parse_config(text, program.name, program.config.parent)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ebpf.programs: {program.name}: cannot read {program.config}: {exc}") from None
    except ExporterConfigError as exc:
        raise ConfigError(
            f"ebpf.programs: {program.name}: {exc}", hint="see ebpf_exporter's configuration reference"
        ) from None


def check_config(program: Program, config: Config, maps: dict[str, BpfMap]) -> None:
    """Each metric of ``config`` against the map of its name in ``maps``, as ebpf_exporter reads it at each scrape."""
    metrics = [("counters", i, c.name, c.labels) for i, c in enumerate(config.counters)]
    metrics += [("histograms", i, h.name, h.labels) for i, h in enumerate(config.histograms)]
    where = f"ebpf.programs: {program.name}: {program.config}:"
    for kind, index, name, labels in metrics:
        field = f"metrics.{kind}[{index}]"
        found = maps.get(name)
        if found is None:
            have = ", ".join(sorted(maps)) or "none"
            raise ConfigError(
                f"{where} {field}.name: {name!r} names no map of {program.name}.bpf.o (its maps: {have})",
                hint="a metric's name is the name of the map it reads: rename the metric or the map",
            )
        if found.value_size != 8:
            raise ConfigError(
                f"{where} {field}: map {name!r} has {found.value_size}-byte values; ebpf_exporter reads u64 counts",
                hint="declare the map's values as __u64",
            )
        wanted = expected_key_size(labels, found.percpu)
        if found.key_size != wanted:
            raise ConfigError(
                f"{where} {field}.labels: map {name!r} has {found.key_size}-byte keys, but the labels decode "
                f"{wanted} ({_sizes(labels)})",
                hint="the labels' size (plus padding), in order, must add up to sizeof the map's key",
            )


def _sizes(labels: Sequence[Label]) -> str:
    if not labels:
        return "no labels: a single u32 key 0"
    return " + ".join(f"{label.name} {label.size + label.padding}" for label in labels)


def check_programs(
    names: Sequence[str], directory: Path, *, vmlinux_h: Path | None = None, required: bool = False
) -> Checked:
    """Find, compile and check every program before anything is reserved; a ConfigError names the first fault.

    ``vmlinux_h`` is the header of the kernel the programs will run on; without it this machine's BTF stands in.
    Without clang, bpftool or that BTF the compile is skipped (``Checked.skipped`` says why), the files and configs
    still checked, unless ``required``: then it is an error.
    """
    programs = find_programs(names, directory)
    configs = {program.name: read_config(program) for program in programs}
    against = f"the kernel header {vmlinux_h}" if vmlinux_h is not None else f"this machine's BTF ({KERNEL_BTF})"
    missing = missing_tools()
    why = f"{', '.join(missing)} not installed" if missing else None
    if vmlinux_h is None and not KERNEL_BTF.exists():
        why = why or f"no kernel BTF at {KERNEL_BTF}"
    if why is not None:
        if required:
            raise TestbedError(f"the eBPF programs cannot be compiled: {why}", hint=INSTALL_HINT)
        return Checked(programs={}, against=against, skipped=f"eBPF programs not compiled: {why} ({INSTALL_HINT})")
    found: dict[str, dict[str, BpfMap]] = {}
    with tempfile.TemporaryDirectory(prefix="g5k-bpf-") as scratch:
        work = Path(scratch)
        write_vmlinux_h(work, vmlinux_h=vmlinux_h)
        for program in programs:
            maps = object_maps(compile_program(program, work, work / f"{program.name}.bpf.o"))
            check_config(program, configs[program.name], maps)
            found[program.name] = maps
    return Checked(programs=found, against=against)
