"""Compile checks for the eBPF payload in nix/ebpf (no loading: attaching needs a kernel with KPROBES and
BPF_KPROBE_OVERRIDE, which a CI host does not have).

Every program named in nix/ebpf/programs.json is compiled against a vmlinux.h generated from this host's
/sys/kernel/btf/vmlinux; then the skeleton, the CO-RE relocations (bpftool gen min_core_btf), the maps
behind the ebpf_exporter config, the sections, helpers and license are checked, and nix/ebpf/default.nix
is parsed, evaluated with stubs and its build script run with the host's tools.

Missing tools skip the module locally, but fail it when CI is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EBPF_DIR = REPO / "nix" / "ebpf"
PROGRAMS: list[str] = json.loads((EBPF_DIR / "programs.json").read_text())
KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")
HELPER_DEFS = Path("/usr/include/bpf/bpf_helper_defs.h")
TOOLS = ("clang", "bpftool", "llvm-objdump", "llvm-strip", "llvm-objcopy")
CFLAGS = ["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-D__TARGET_ARCH_x86"]

# ebpf_exporter v2 (config/config.go, decoder/decoder.go)
DECODERS = {
    "cgroup",
    "dname",
    "errno",
    "hex",
    "ifname",
    "inet_ip",
    "kstack",
    "ksym",
    "majorminor",
    "pci_class",
    "pci_device",
    "pci_subclass",
    "pci_vendor",
    "regexp",
    "static_map",
    "string",
    "syscall",
    "uint",
}
BUCKET_TYPES = {"exp2", "exp2zero", "linear", "fixed"}
COUNTER_KEYS = {"name", "help", "labels", "perf_event_array", "flush_interval"}
HISTOGRAM_KEYS = {
    "name",
    "help",
    "labels",
    "bucket_type",
    "bucket_min",
    "bucket_max",
    "bucket_multiplier",
    "bucket_keys",
}
LABEL_KEYS = {"name", "size", "padding", "decoders"}


def _missing(what: str) -> None:
    message = f"{what}: install clang, llvm, bpftool and libbpf-dev (a kernel with BTF is needed too)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {message}")
    pytest.skip(message)


def _require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        _missing(f"missing {', '.join(missing)}")


def run(*cmd: str | Path, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], check=False, cwd=cwd, capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, f"{' '.join(map(str, cmd))} -> rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def compile_bpf(
    src: Path, obj: Path, include: Path, *defines: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    return run("clang", *CFLAGS, *defines, f"-I{include}", "-c", src, "-o", obj, ok=ok)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_tools(*TOOLS)
    if not KERNEL_BTF.exists():
        _missing(f"{KERNEL_BTF} does not exist (kernel without CONFIG_DEBUG_INFO_BTF)")
    if not HELPER_DEFS.exists():
        _missing(f"{HELPER_DEFS} does not exist (libbpf-dev)")
    work = tmp_path_factory.mktemp("ebpf")
    (work / "vmlinux.h").write_text(run("bpftool", "btf", "dump", "file", KERNEL_BTF, "format", "c").stdout)
    return work


@pytest.fixture(scope="module")
def objects(workdir: Path) -> dict[str, Path]:
    built = {}
    for name in PROGRAMS:
        obj = workdir / f"{name}.bpf.o"
        compile_bpf(EBPF_DIR / f"{name}.bpf.c", obj, workdir)
        built[name] = obj
    return built


# --- reading the object -------------------------------------------------------------------------------------


class Btf:
    """The BTF of an object, from `bpftool -j btf dump file`."""

    def __init__(self, obj: Path) -> None:
        self.types = {t["id"]: t for t in json.loads(run("bpftool", "-j", "btf", "dump", "file", obj).stdout)["types"]}

    def resolve(self, type_id: int) -> dict:
        t = self.types[type_id]
        while t["kind"] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            t = self.types[t["type_id"]]
        return t

    def size(self, type_id: int) -> int:
        t = self.resolve(type_id)
        if t["kind"] == "ARRAY":
            return t["nr_elems"] * self.size(t["type_id"])
        if t["kind"] == "PTR":
            return 8
        return t["size"]

    def datasec(self, name: str) -> list[dict]:
        for t in self.types.values():
            if t["kind"] == "DATASEC" and t["name"] == name:
                return [self.types[v["type_id"]] for v in t["vars"]]
        return []

    def maps(self) -> dict[str, dict[str, int]]:
        """Map name -> {type, max_entries, key_size, value_size}, decoded from libbpf's BTF map definitions:
        __uint(x, n) is `int (*x)[n]`, __type(x, T) is `T *x`."""
        result = {}
        for var in self.datasec(".maps"):
            struct = self.resolve(var["type_id"])
            info: dict[str, int] = {}
            for member in struct["members"]:
                pointee = self.resolve(self.resolve(member["type_id"])["type_id"])
                if member["name"] in ("type", "max_entries", "map_flags"):
                    info[member["name"]] = pointee["nr_elems"]
                elif member["name"] in ("key", "value"):
                    info[f"{member['name']}_size"] = self.size(pointee["id"])
            result[var["name"]] = info
        return result


def helper_ids() -> dict[str, int]:
    text = HELPER_DEFS.read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"\(\*(\w+)\)\([^;]*\) = \(void \*\) (\d+);", text)}


def section_calls(obj: Path) -> dict[str, set[int]]:
    """Section name -> helper ids called from it (llvm-objdump disassembly)."""
    calls: dict[str, set[int]] = {}
    current = None
    for line in run("llvm-objdump", "-d", "--no-show-raw-insn", obj).stdout.splitlines():
        header = re.match(r"Disassembly of section (.+):", line)
        if header:
            current = header[1]
            calls[current] = set()
        elif current and (call := re.search(r"\bcall (\d+)\b", line)):
            calls[current].add(int(call[1]))
    return calls


def dump_section(obj: Path, section: str, out: Path) -> bytes:
    run("llvm-objcopy", "-O", "binary", f"--only-section={section}", obj, out)
    return out.read_bytes()


# enum bpf_map_type, include/uapi/linux/bpf.h (stable ABI)
MAP_TYPE = {"HASH": 1, "ARRAY": 2, "PERCPU_HASH": 5, "PERCPU_ARRAY": 6, "LRU_HASH": 9, "LRU_PERCPU_HASH": 10}
ARRAY_TYPES = {MAP_TYPE["ARRAY"], MAP_TYPE["PERCPU_ARRAY"]}


# --- the list of programs and the sources -------------------------------------------------------------------


def test_programs_json_lists_existing_programs() -> None:
    assert isinstance(PROGRAMS, list)
    assert PROGRAMS, "programs.json is empty"
    assert len(set(PROGRAMS)) == len(PROGRAMS), "duplicate names in programs.json"
    for name in PROGRAMS:
        assert isinstance(name, str)
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", name), f"{name!r}: use lower-case letters, digits and dashes"
        assert (EBPF_DIR / f"{name}.bpf.c").is_file(), f"nix/ebpf/{name}.bpf.c is missing"
        assert (EBPF_DIR / f"{name}.yaml").is_file(), f"nix/ebpf/{name}.yaml is missing"
    assert "statx-override" in PROGRAMS


@pytest.mark.parametrize("name", PROGRAMS)
def test_license_is_gpl(objects: dict[str, Path], workdir: Path, name: str) -> None:
    # bpf_probe_write_user and bpf_override_return are GPL-only helpers: the kernel rejects the program otherwise.
    assert dump_section(objects[name], "license", workdir / f"{name}.license").rstrip(b"\0") == b"GPL"


# --- compile, skeleton, CO-RE -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROGRAMS)
def test_skeleton(objects: dict[str, Path], workdir: Path, name: str) -> None:
    skel_name = name.replace("-", "_") + "_bpf"
    skel = run("bpftool", "gen", "skeleton", objects[name], "name", skel_name).stdout
    assert f"struct {skel_name} {{" in skel
    assert f"{skel_name}__open_and_load" in skel
    for map_name in Btf(objects[name]).maps():
        assert f"struct bpf_map *{map_name};" in skel


@pytest.mark.parametrize("name", PROGRAMS)
def test_stripped_object_keeps_btf(objects: dict[str, Path], workdir: Path, name: str) -> None:
    """The Nix package ships `llvm-strip -g` objects: BTF (maps, CO-RE) must survive."""
    stripped = workdir / f"{name}.stripped.bpf.o"
    shutil.copy(objects[name], stripped)
    run("llvm-strip", "-g", stripped)
    assert stripped.stat().st_size < objects[name].stat().st_size
    assert Btf(stripped).maps() == Btf(objects[name]).maps()
    run("bpftool", "gen", "skeleton", stripped)
    assert_core_resolves(stripped, workdir / f"{name}.stripped.btf")


def assert_core_resolves(obj: Path, out: Path) -> None:
    # bpftool exits 0 even when a relocation finds no target: read libbpf's debug log.
    proc = run("bpftool", "-d", "gen", "min_core_btf", KERNEL_BTF, out, obj)
    log = proc.stdout + proc.stderr
    failures = [line for line in log.splitlines() if "no matching targets found" in line or "failed" in line.lower()]
    assert not failures, "\n".join(failures)
    assert out.exists()


@pytest.mark.parametrize("name", PROGRAMS)
def test_core_relocations_resolve_against_kernel_btf(objects: dict[str, Path], workdir: Path, name: str) -> None:
    assert_core_resolves(objects[name], workdir / f"{name}.min.btf")


def test_core_check_detects_a_bad_relocation(workdir: Path) -> None:
    """The check above must be able to fail: a field the kernel does not have."""
    src = workdir / "bad.bpf.c"
    src.write_text(
        '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_core_read.h>\n'
        "struct task_struct___g5k { int g5k_no_such_field; } __attribute__((preserve_access_index));\n"
        'SEC("kprobe/do_nanosleep") int bad(void *ctx) {\n'
        "  struct task_struct___g5k *t = (void *)bpf_get_current_task();\n"
        "  return BPF_CORE_READ(t, g5k_no_such_field);\n}\n"
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    compile_bpf(src, workdir / "bad.bpf.o", workdir)
    with pytest.raises(AssertionError, match="no matching targets found"):
        assert_core_resolves(workdir / "bad.bpf.o", workdir / "bad.btf")


# --- the ebpf_exporter config against the maps --------------------------------------------------------------


def load_config(name: str) -> dict:
    config = yaml.safe_load((EBPF_DIR / f"{name}.yaml").read_text())
    assert isinstance(config, dict)
    return config


def check_labels(metric: dict, key_size: int) -> list[dict]:
    labels = metric.get("labels") or []
    total = 0
    for label in labels:
        assert set(label) <= LABEL_KEYS, f"{metric['name']}: unknown label keys {set(label) - LABEL_KEYS}"
        assert label.get("name"), f"{metric['name']}: a label without name"
        assert isinstance(label.get("size"), int) and label["size"] > 0, f"{metric['name']}.{label['name']}: size"
        decoders = label.get("decoders") or []
        assert decoders, f"{metric['name']}.{label['name']}: no decoders"
        for i, decoder in enumerate(decoders):
            assert decoder.get("name") in DECODERS, f"{metric['name']}.{label['name']}: decoder {decoder.get('name')}"
            if decoder["name"] == "static_map":
                assert decoder.get("static_map"), f"{metric['name']}.{label['name']}: empty static_map"
                assert i > 0 and decoders[i - 1]["name"] == "uint", "static_map keys are decimal: decode uint first"
        total += label["size"] + label.get("padding", 0)
    names = [label["name"] for label in labels]
    assert len(set(names)) == len(names), f"{metric['name']}: duplicate label names"
    if labels or key_size != 4:  # no labels: ebpf_exporter expects a single u32 key 0
        assert total == key_size, f"{metric['name']}: labels cover {total} bytes, the map key has {key_size}"
    return labels


def static_map_values(label: dict) -> dict[int, str]:
    for decoder in label["decoders"]:
        if decoder["name"] == "static_map":
            return {int(k): v for k, v in decoder["static_map"].items()}
    return {}


@pytest.mark.parametrize("name", PROGRAMS)
def test_config_matches_maps(objects: dict[str, Path], name: str) -> None:
    config = load_config(name)
    maps = Btf(objects[name]).maps()
    metrics = config.get("metrics")
    assert isinstance(metrics, dict) and set(metrics) <= {"counters", "histograms"}, "metrics: counters/histograms"
    counters = metrics.get("counters") or []
    histograms = metrics.get("histograms") or []
    assert counters or histograms
    all_names = [m.get("name") for m in counters + histograms]
    assert len(set(all_names)) == len(all_names), "duplicate metric names"

    for metric in counters + histograms:
        allowed = COUNTER_KEYS if metric in counters else HISTOGRAM_KEYS
        assert set(metric) <= allowed, f"{metric.get('name')}: unknown keys {set(metric) - allowed} (silently ignored)"
        assert metric.get("name") and metric.get("help"), "every metric needs name and help"
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", metric["name"]), f"{metric['name']}: not a Prometheus name"
        assert metric["name"] in maps, f"metric {metric['name']}: no map of that name in {sorted(maps)}"
        info = maps[metric["name"]]
        assert info["value_size"] == 8, f"map {metric['name']}: values must be u64"

    for counter in counters:
        info = maps[counter["name"]]
        labels = check_labels(counter, info["key_size"])
        if info["type"] in ARRAY_TYPES and len(labels) == 1:
            # Every index of an array is exported: each must have a name, or it shows as unknown:<n>.
            values = static_map_values(labels[0])
            if values:
                assert set(values) == set(range(info["max_entries"])), f"{counter['name']}: static_map vs indices"

    for histogram in histograms:
        info = maps[histogram["name"]]
        assert histogram.get("bucket_type") in BUCKET_TYPES
        labels = check_labels(histogram, info["key_size"])
        assert labels, f"{histogram['name']}: the last label is the bucket"
        assert labels[-1]["decoders"][-1]["name"] == "uint", f"{histogram['name']}: the bucket label decodes to uint"
        if histogram["bucket_type"] in ("exp2", "exp2zero", "linear"):
            bmin, bmax = histogram.get("bucket_min", 0), histogram.get("bucket_max")
            assert isinstance(bmax, int) and 0 <= bmin < bmax
            # buckets bucket_min..bucket_max plus the optional sum key bucket_max + 1, per label set
            label_sets = 1
            for label in labels[:-1]:
                label_sets *= max(1, len(static_map_values(label)))
            needed = (bmax - bmin + 2) * label_sets
            assert info["max_entries"] >= needed, f"{histogram['name']}: {info['max_entries']} entries < {needed}"


def test_statx_config_matches_source(objects: dict[str, Path]) -> None:
    """Label values and bucket bounds in statx-override.yaml follow the enums and macros of the C source."""
    source = (EBPF_DIR / "statx-override.bpf.c").read_text()
    config = load_config("statx-override")

    def enum(name: str) -> dict[int, str]:
        body = re.search(rf"enum {name} \{{(.*?)\}};", source, re.S)
        assert body, f"enum {name} not found"
        return {int(v): k for k, v in re.findall(r"\b(STATX_\w+) = (\d+)", body[1])}

    outcomes = {k: v for k, v in enum("statx_outcome").items() if v != "STATX_OUTCOME_COUNT"}
    (counter,) = config["metrics"]["counters"]
    assert counter["name"] == "statx_override_total"
    assert static_map_values(counter["labels"][0]) == {k: v.removeprefix("STATX_").lower() for k, v in outcomes.items()}

    calls = enum("statx_call")
    (histogram,) = config["metrics"]["histograms"]
    assert histogram["name"] == "statx_latency_seconds"
    assert histogram["bucket_type"] == "exp2"
    assert histogram["bucket_multiplier"] == pytest.approx(1e-9), "the program measures nanoseconds"
    assert static_map_values(histogram["labels"][0]) == {
        k: v.removeprefix("STATX_CALL_").lower() for k, v in calls.items()
    }
    assert histogram["bucket_max"] == int(re.search(r"#define LATENCY_BUCKET_MAX (\d+)", source)[1])

    maps = Btf(objects["statx-override"]).maps()
    assert maps["statx_override_total"] == {
        "type": MAP_TYPE["ARRAY"],
        "max_entries": len(outcomes),
        "key_size": 4,
        "value_size": 8,
    }
    assert maps["statx_latency_seconds"]["type"] == MAP_TYPE["HASH"]
    assert maps["statx_start"]["type"] == MAP_TYPE["LRU_HASH"]


# --- the statx override itself ------------------------------------------------------------------------------


def test_statx_programs_sections_and_helpers(objects: dict[str, Path]) -> None:
    obj = objects["statx-override"]
    helpers = helper_ids()
    calls = section_calls(obj)
    assert "ksyscall/statx" in calls and "kretsyscall/statx" in calls, sorted(calls)
    entry = calls["ksyscall/statx"]
    for helper in ("bpf_probe_read_user_str", "bpf_probe_write_user", "bpf_override_return", "bpf_ktime_get_ns"):
        assert helpers[helper] in entry, f"ksyscall/statx does not call {helper}"
    assert helpers["bpf_ktime_get_ns"] in calls["kretsyscall/statx"]
    assert helpers["bpf_override_return"] not in calls["kretsyscall/statx"]

    skel = run("bpftool", "gen", "skeleton", obj, "name", "statx_override_bpf").stdout
    assert "struct bpf_program *statx_enter;" in skel
    assert "struct bpf_program *statx_exit;" in skel
    # a loader may set the target between __open() and __load(): skel->rodata->target_path
    assert re.search(r"struct \w+__rodata \{[^}]*\bchar target_path\[128\];", skel), "target_path not in .rodata"


def rodata_target(obj: Path, out: Path) -> bytes:
    return dump_section(obj, ".rodata", out).split(b"\0", 1)[0]


def test_target_path_default_and_build_time_override(objects: dict[str, Path], workdir: Path) -> None:
    src = EBPF_DIR / "statx-override.bpf.c"
    assert rodata_target(objects["statx-override"], workdir / "default.rodata") == b"/tmp/g5k-statx-target"
    nix_default = re.search(r'targetPath \? "([^"]+)"', (EBPF_DIR / "default.nix").read_text())
    assert nix_default and nix_default[1] == "/tmp/g5k-statx-target", "default.nix and the C default differ"

    obj = workdir / "custom.bpf.o"
    compile_bpf(src, obj, workdir, '-DTARGET_PATH="/srv/bench/file-1"')
    assert rodata_target(obj, workdir / "custom.rodata") == b"/srv/bench/file-1"

    too_long = "/" + "x" * 126
    proc = compile_bpf(src, workdir / "long.bpf.o", workdir, f'-DTARGET_PATH="{too_long}"', ok=False)
    assert proc.returncode != 0
    assert "TARGET_PATH is too long" in proc.stderr
    compile_bpf(src, workdir / "max.bpf.o", workdir, f'-DTARGET_PATH="{too_long[:126]}"')


# --- Nix ----------------------------------------------------------------------------------------------------

NIX_STUB = """
let
  escapeShellArg = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\\\''" ] s + "'";
  lib = {
    inherit escapeShellArg;
    escapeShellArgs = xs: builtins.concatStringsSep " " (map escapeShellArg xs);
    concatMap = f: xs: builtins.concatLists (map f xs);
    getDev = x: x;
    assertMsg = cond: msg: if cond then true else builtins.throw msg;
    fileset = { toSource = _: "src"; unions = xs: xs; };
    licenses.gpl2Only = "gpl2Only";
    platforms.linux = [ "x86_64-linux" ];
  };
  stdenv = {
    hostPlatform = { isx86_64 = true; isAarch64 = false; system = "x86_64-linux"; };
    mkDerivation = attrs: attrs;
  };
  drv = import (builtins.toPath "@DEFAULT_NIX@") ({
    inherit lib stdenv;
    clang = "clang"; llvm = "llvm"; libbpf = "@LIBBPF@"; bpftools = "bpftools";
    kernel = { dev = "@KERNEL_DEV@"; };
  } // @EXTRA@);
in { inherit (drv) buildPhase installPhase passthru pname; }
"""


def nix_eval(kernel_dev: Path, extra: str = "{ }") -> subprocess.CompletedProcess[str]:
    expr = (
        NIX_STUB.replace("@DEFAULT_NIX@", str(EBPF_DIR / "default.nix"))
        .replace("@LIBBPF@", "/usr")
        .replace("@KERNEL_DEV@", str(kernel_dev))
        .replace("@EXTRA@", extra)
    )
    cmd = ["nix-instantiate", "--store", "dummy://", "--eval", "--strict", "--json", "-E", expr]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def nix() -> None:
    _require_tools("nix-instantiate")


@pytest.mark.parametrize("path", sorted(EBPF_DIR.rglob("*.nix")), ids=lambda p: p.name)
def test_nix_files_parse(nix: None, path: Path) -> None:
    run("nix-instantiate", "--store", "dummy://", "--parse", path)


def test_nix_package_build_script_runs_with_host_tools(nix: None, workdir: Path) -> None:
    """Evaluate default.nix with stub lib/stdenv, then run its buildPhase and installPhase with bash here:
    the kernel's vmlinux is stood in for by the host's raw BTF, which bpftool reads the same way."""
    kernel_dev = workdir / "kernel-dev"
    kernel_dev.mkdir(exist_ok=True)
    shutil.copy(KERNEL_BTF, kernel_dev / "vmlinux")
    proc = nix_eval(kernel_dev, '{ targetPath = "/srv/g5k/target-2"; }')
    assert proc.returncode == 0, proc.stderr
    drv = json.loads(proc.stdout)
    assert drv["passthru"] == {"programs": PROGRAMS, "targetPath": "/srv/g5k/target-2"}
    assert "'-DTARGET_PATH=\"/srv/g5k/target-2\"'" in drv["buildPhase"]

    build = workdir / "nix-build"
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(EBPF_DIR, build)
    out = workdir / "nix-out"
    shutil.rmtree(out, ignore_errors=True)
    script = "set -euo pipefail\nrunHook() { :; }\n" + drv["buildPhase"] + drv["installPhase"]
    proc = subprocess.run(
        ["bash", "-c", script],
        check=False,
        cwd=build,
        env={**os.environ, "out": str(out)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in PROGRAMS:
        for installed in (f"{name}.bpf.o", f"{name}.yaml"):
            assert (out / "lib/ebpf_exporter" / installed).is_file(), installed
        assert (out / "include" / f"{name}.skel.h").is_file()
    obj = out / "lib/ebpf_exporter/statx-override.bpf.o"
    assert rodata_target(obj, workdir / "nix.rodata") == b"/srv/g5k/target-2"
    assert "ksyscall/statx" in section_calls(obj)


@pytest.mark.parametrize("bad", ["relative/path", "/tmp/a b", '/tmp/q"uote', "/" + "x" * 127])
def test_nix_package_rejects_bad_target_path(nix: None, tmp_path: Path, bad: str) -> None:
    proc = nix_eval(tmp_path, "{ targetPath = " + json.dumps(bad) + "; }")
    assert proc.returncode != 0
    assert "targetPath must be an absolute path" in proc.stderr
