"""The VM testbed's stand-in for ebpf_exporter (g5kdeploy/payload/ebpf_exporter_standin.py), without BPF.

Nothing here loads or attaches a program (the host kernel is shared): the pure half (config -> text) is compared
with the text ebpf_exporter itself produces, and the libbpf half is exercised up to bpf_object__open_file, which
parses the ELF file and makes no bpf() call. Loading, attaching and the signals are exercised inside the VM.

Where the expected texts come from: tests/payload/fixtures/<case>.prom were written by
tests/payload/fixtures/ebpf_exporter_reference/main.go from tests/payload/fixtures/<case>.input.json: that program
is ebpf_exporter v2.5.1's own metric code (config/config.go, decoder/*.go, exporter/exporter.go Collect,
collectCounters, collectHistograms, mapValues, readMapValues, aggregateMapValues, exporter/histogram.go) with the
libbpfgo map walk replaced by the JSON rows, registered in a real client_golang registry and written by
prometheus/common's expfmt, as promhttp serves it. Each row of the inputs says which rule it exercises.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from g5kdeploy.payload import ebpf_exporter_standin as standin

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
SCRIPT = REPO / "g5kdeploy" / "payload" / "ebpf_exporter_standin.py"
STATX_CONFIG = REPO / "nix" / "ebpf" / "statx-override.yaml"


def load_case(name: str) -> tuple[list[standin.Config], dict, list[standin.ProgramState], bool]:
    """A fixture input: the configs it names, its map rows as the stand-in reads them, its programs."""
    case = json.loads((FIXTURES / f"{name}.input.json").read_text())
    configs = standin.parse_configs(REPO / case["config_dir"], case["config_names"].split(","))
    maps: dict[str, dict[str, dict[bytes, int | tuple[int, ...]]]] = {}
    for where, contents in case["maps"].items():
        config, _, map_name = where.partition("/")
        rows = maps.setdefault(config, {}).setdefault(map_name, {})
        for row in contents["rows"]:
            rows[bytes.fromhex(row["key"])] = tuple(row["values"]) if contents["percpu"] else row["values"][0]
    programs = [
        standin.ProgramState(
            config=p["config"],
            name=p["name"],
            tag=p["tag"],
            id=p["id"],
            attached=p["attached"],
            run_time_ns=p["run_time_ns"],
            run_count=p["run_count"],
        )
        for p in case["programs"]
    ]
    return configs, maps, programs, case.get("stats_enabled", False)


def without_standin_info(text: str) -> str:
    """The text less the stand-in's own family (ebpf_exporter has none of that name), checked on its own."""
    return re.sub(r"# HELP ebpf_exporter_standin_info .*\n# TYPE .*\nebpf_exporter_standin_info.*\n", "", text)


@pytest.mark.parametrize("case", ["statx-override", "statx-override-detached", "buckets", "decoders"])
def test_renders_exactly_what_ebpf_exporter_serves(case):
    """Byte for byte the text of ebpf_exporter's code for the same config and maps (see the module docstring).

    statx-override: our real config (nix/ebpf/statx-override.yaml). The ARRAY counter has all its keys, 0 included
    (readMapValues walks every key); static_map names the outcomes; the histogram loses its last label (bucket,
    collectHistograms), has every bucket 0..bucket_max with cumulative counts (histogram.go), le = 2^i * 1e-9
    written by strconv.FormatFloat(le, 'g', -1, 64) (expfmt writeFloat), an +Inf bucket equal to the count
    (expfmt), the sum from key bucket_max + 1 times the multiplier, and ignores key 40. Families are sorted by name
    and series by label values (client_golang's registry), so id "41" comes before id "9". Detached: the programs'
    ebpf_program_attached is 0, as for a program without link in ebpf_exporter.
    """
    configs, maps, programs, stats = load_case(case)
    text = standin.Renderer(configs).render(maps, programs, bpf_stats_enabled=stats)
    assert without_standin_info(text) == (FIXTURES / f"{case}.prom").read_text()


def test_names_itself_a_stand_in_in_its_own_info_metric():
    configs, maps, programs, _ = load_case("statx-override")
    text = standin.Renderer(configs, {"mimics": standin.MIMICS, "libbpf": "1.1"}).render(maps, programs)
    family = text[text.index("# HELP ebpf_exporter_standin_info") : text.index("# HELP ebpf_exporter_statx")]
    assert family.splitlines() == [
        "# HELP ebpf_exporter_standin_info This is NOT ebpf_exporter but g5kdeploy's stand-in for it (VM testbed): "
        "same configs, maps and metrics",
        "# TYPE ebpf_exporter_standin_info gauge",
        'ebpf_exporter_standin_info{libbpf="1.1",mimics="ebpf_exporter v2.5.1"} 1',
    ]


def test_the_statx_fixture_is_our_real_config():
    """The expected text above is derived from the config that ships, not from a copy of it."""
    case = json.loads((FIXTURES / "statx-override.input.json").read_text())
    assert REPO / case["config_dir"] / "statx-override.yaml" == STATX_CONFIG
    (config,) = standin.parse_configs(STATX_CONFIG.parent, ["statx-override"])
    (histogram,) = config.histograms
    assert (histogram.bucket_type, histogram.bucket_min, histogram.bucket_max) == ("exp2", 0, 32)
    assert histogram.bucket_multiplier == 1e-9
    assert [label.name for label in histogram.labels] == ["call", "bucket"]
    assert config.bpf_path == STATX_CONFIG.parent / "statx-override.bpf.o"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # expfmt writeFloat: special cases, then strconv 'g' shortest: %e when the exponent is < -4 or >= 6
        (1.0, "1"),
        (0.0, "0"),
        (-1.0, "-1"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1e-9, "1e-09"),
        (2.0**32 * 1e-9, "4.294967296"),
        (1824 * 1e-6, "0.0018239999999999999"),  # ebpf_exporter's README, biolatency sum
        (float(2**64 - 1), "1.8446744073709552e+19"),
        (1e100, "1e+100"),
        (-2.5e-7, "-2.5e-07"),
    ],
)
def test_numbers_are_written_as_go_writes_them(value, text):
    assert standin.go_float(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("33", 33),
        ("0x21", 33),
        ("0o41", 33),
        ("041", 33),
        ("0b100001", 33),
        ("3_3", 33),
        ("18446744073709551615", 2**64 - 1),
    ],
)
def test_bucket_labels_parse_as_go_parseuint_base_0(text, value):
    """collectHistograms: strconv.ParseUint(label, 0, 64), so a 0-leading bucket label is octal."""
    assert standin.parse_go_uint(text) == value


@pytest.mark.parametrize("text", ["", "-1", "0x", "08", "3__3", "_3", "1e3", "18446744073709551616", " 3"])
def test_bucket_labels_go_would_refuse(text):
    assert standin.parse_go_uint(text) is None


def write_config(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(text)
    return directory


COUNTER_WITH_DECODER = """
metrics:
  counters:
    - name: calls_total
      help: calls
      labels:
        - name: addr
          size: 8
          decoders:
            - name: {decoder}
"""


@pytest.mark.parametrize("decoder", ["ksym", "cgroup", "syscall", "errno", "pci_vendor"])
def test_a_decoder_it_cannot_reproduce_is_refused_by_name(tmp_path, decoder):
    write_config(tmp_path, "c", COUNTER_WITH_DECODER.format(decoder=decoder))
    with pytest.raises(standin.ConfigError) as error:
        standin.parse_configs(tmp_path, ["c"])
    message = str(error.value)
    assert f"decoder {decoder!r} of label 'addr' is not supported by the ebpf_exporter stand-in" in message
    assert "metrics.counters[0].labels[0].decoders[0]" in message
    assert "uint" in message  # the supported ones are listed


def test_a_decoder_ebpf_exporter_does_not_have_is_refused(tmp_path):
    write_config(tmp_path, "c", COUNTER_WITH_DECODER.format(decoder="unit"))
    with pytest.raises(standin.ConfigError, match="unknown decoder 'unit' for label 'addr'"):
        standin.parse_configs(tmp_path, ["c"])


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ("metrics: {}", 'neither metrics nor tracing are defined for config "c"'),
        ("metrics:\n  counters:\n    - name: x_total\n", "counter 'x_total' in config 'c' lacks help"),
        (
            "metrics:\n  histograms:\n    - {name: h, help: h, bucket_type: exp3, labels: []}\n",
            "bucket_type: 'exp3' is not one of",
        ),
        ("metrics:\n  histograms:\n    - {name: h, help: h, bucket_type: exp2}\n", "needs its bucket label"),
        (
            "metrics:\n  counters:\n    - {name: x, help: x, labels: [{name: a, decoders: [{name: uint}]}]}\n",
            "label 'a' needs a size in bytes",
        ),
        (
            "metrics:\n  counters:\n    - {name: x, help: x, labels: [{name: a, size: four, decoders: []}]}\n",
            "labels[0].size: expected a non-negative integer, got 'four'",
        ),
        ("metrics: [", "error parsing"),
        ("tracing:\n  spans: [{name: s}]\nmetrics: {counters: [{name: x, help: x}]}\n", "tracing.spans: not supported"),
        ("kaddrs: [jiffies]\nmetrics: {counters: [{name: x, help: x}]}\n", "kaddrs: not supported"),
        (
            "metrics:\n  counters:\n    - {name: x, help: x, perf_event_array: true}\n",
            "perf_event_array: not supported",
        ),
        ("metrics:\n  counters:\n    - {name: enabled_configs, help: x}\n", "cannot be a metric name"),
    ],
)
def test_bad_configs_are_refused_with_the_field(tmp_path, config, error):
    write_config(tmp_path, "c", config)
    with pytest.raises(standin.ConfigError, match=re.escape(error)):
        standin.parse_configs(tmp_path, ["c"])


def test_a_missing_config_names_its_path(tmp_path):
    with pytest.raises(standin.ConfigError, match=re.escape(f'error opening "{tmp_path}/nope.yaml" for config "nope"')):
        standin.parse_configs(tmp_path, ["nope"])


def test_yaml_scalars_follow_yaml_v2(tmp_path):
    """config/config.go decodes with yaml.v2: static_map keys keep their text, 1e-3 is a float, 0x10 an int."""
    write_config(
        tmp_path,
        "c",
        "metrics:\n  histograms:\n    - name: h\n      help: h\n      bucket_type: linear\n"
        "      bucket_multiplier: 1e-3\n      bucket_max: 0x10\n      labels:\n"
        "        - {name: op, size: 4, decoders: [{name: uint}, {name: static_map, static_map: {0x1: a, 2: b}}]}\n"
        "        - {name: bucket, size: 4, decoders: [{name: uint}]}\n",
    )
    (config,) = standin.parse_configs(tmp_path, ["c"])
    (histogram,) = config.histograms
    assert histogram.bucket_multiplier == 1e-3
    assert histogram.bucket_max == 16
    assert histogram.labels[0].decoders[1].static_map == {b"0x1": b"a", b"2": b"b"}


def counter_renderer(tmp_path, labels: str) -> standin.Renderer:
    write_config(tmp_path, "c", f"metrics:\n  counters:\n    - name: x_total\n      help: x\n      labels: {labels}\n")
    return standin.Renderer(standin.parse_configs(tmp_path, ["c"]))


def test_a_key_the_labels_cannot_decode_skips_the_metric_and_counts_a_decoder_error(tmp_path):
    """mapValues fails on the whole map: the metric is left out and decoder_errors_total counts it. Collect sends
    that counter before it reads the maps, so a scrape shows the errors of the scrapes before it."""
    renderer = counter_renderer(tmp_path, "[{name: a, size: 4, decoders: [{name: uint}]}]")
    maps = {"c": {"x_total": {b"\1\0\0\0": 5, b"\1\0\0\0\0\0\0\0": 1}}}
    first = renderer.render(maps)
    assert "ebpf_exporter_x_total" not in first
    assert 'ebpf_exporter_decoder_errors_total{config="c"} 0\n' in first
    second = renderer.render(maps)
    assert 'ebpf_exporter_decoder_errors_total{config="c"} 1\n' in second
    fixed = renderer.render({"c": {"x_total": {b"\1\0\0\0": 5}}})
    assert 'ebpf_exporter_x_total{a="1"} 5\n' in fixed
    assert 'ebpf_exporter_decoder_errors_total{config="c"} 2\n' in fixed


def test_an_unreadable_map_is_a_decoder_error_too(tmp_path):
    renderer = counter_renderer(tmp_path, "[{name: a, size: 4, decoders: [{name: uint}]}]")
    renderer.render({"c": {"x_total": None}})
    assert 'ebpf_exporter_decoder_errors_total{config="c"} 1\n' in renderer.render({"c": {}})


def test_a_label_value_that_is_not_utf8_fails_the_scrape(tmp_path):
    """client_golang's registry refuses the metric and promhttp answers 500 for the whole scrape."""
    renderer = counter_renderer(tmp_path, "[{name: s, size: 2, decoders: [{name: string}]}]")
    with pytest.raises(standin.ScrapeError, match="not utf8"):
        renderer.render({"c": {"x_total": {b"\xff\xfe": 1}}})


def test_inet_ip_and_majorminor(tmp_path):
    """decoder/inet_ip.go (net.IP.String: IPv4-mapped addresses print as IPv4) and decoder/majorminor.go."""
    renderer = counter_renderer(tmp_path, "[{name: ip, size: 16, decoders: [{name: inet_ip}]}]")
    mapped = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])
    v6 = bytes.fromhex("20010db8000000000000000000000001")
    text = renderer.render({"c": {"x_total": {mapped: 1, v6: 2}}})
    assert 'ebpf_exporter_x_total{ip="192.0.2.1"} 1\n' in text
    assert 'ebpf_exporter_x_total{ip="2001:db8::1"} 2\n' in text

    decode = standin._MajorMinor(tmp_path / "partitions")
    (tmp_path / "partitions").write_text(
        "major minor  #blocks  name\n\n 259        0  1000 nvme0n1\n   8   17   10 sdb1\n"
    )
    as_dev = lambda major, minor: os.makedev(major, minor).to_bytes(4, sys.byteorder)  # noqa: E731
    assert decode(as_dev(259, 0), standin.Decoder("majorminor")) == b"nvme0n1"
    assert decode(as_dev(8, 17), standin.Decoder("majorminor")) == b"sdb1"
    assert decode(as_dev(8, 99), standin.Decoder("majorminor")) == b"unknown:8:99"


def test_histogram_transform_edges():
    """exporter/histogram.go: bucket_max == bucket_min is an error; the count wraps at 2^64 like Go's uint64."""
    label = standin.Label("bucket", 8, (standin.Decoder("uint"),))
    equal = standin.Histogram("h", "h", "exp2", (label,), bucket_min=3, bucket_max=3)
    with pytest.raises(ValueError, match=re.escape("[bucket_min .. bucket_max] = [3 .. 3]")):
        standin.transform_histogram(equal, {})
    exp2 = standin.Histogram("h", "h", "exp2", (label,), bucket_min=0, bucket_max=1)
    assert standin.transform_histogram(exp2, {0.0: 2**64 - 1, 1.0: 2}) == ({1.0: 2**64 - 1, 2.0: 1}, 1, 0.0)


# --- the libbpf half, up to open (no bpf() call) -------------------------------------------------------------


def test_every_libbpf_function_resolves_with_its_declared_signature():
    """A dry import: the host's libbpf.so.1 (Debian's libbpf1) has every symbol the stand-in declares."""
    lib = standin.Libbpf()
    assert lib.version.startswith("1.")
    for name, restype, argtypes in standin.LIBBPF_FUNCTIONS:
        function = getattr(lib.lib, name)
        assert function.restype is restype
        assert function.argtypes == list(argtypes)


def test_libbpf_messages_are_formatted_and_folded_into_one_line(tmp_path):
    """libbpf's print callback gets printf arguments (a va_list): the stand-in formats them with vsnprintf."""
    lib = standin.Libbpf()
    garbage = tmp_path / "c.bpf.o"
    garbage.write_bytes(b"not an ELF object")
    config = standin.Config("c", (), (), garbage)
    with pytest.raises(standin.BpfError) as error:
        standin.BpfObject(lib, config)
    assert str(error.value) == (
        f'error creating module from "{garbage}" for config "c": BPF object format invalid '
        f"(libbpf: elf: '{garbage}' is not a proper ELF object)"
    )


def test_the_verifier_log_tail_is_what_the_error_shows():
    """libbpf prints the verifier log in one warning (libbpf.c bpf_object_load_prog); its last lines are kept."""
    log = "".join(f"{i}: (b7) r{i % 10} = {i}\n" for i in range(100)) + "R1 invalid mem access 'scalar'\n"
    captured = [
        (0, "libbpf: prog 'statx_enter': BPF program load failed: Permission denied\n"),
        (0, f"libbpf: prog 'statx_enter': -- BEGIN PROG LOAD LOG --\n{log}-- END PROG LOAD LOG --\n"),
        (0, "libbpf: prog 'statx_enter': failed to load: -13\n"),
        (0, "libbpf: failed to load object 'x.bpf.o'\n"),
    ]
    tail = standin.verifier_tail(captured)
    assert len(tail) == 20
    assert tail[-1] == "R1 invalid mem access 'scalar'"
    assert tail[0] == "81: (b7) r1 = 81"
    assert standin._libbpf_lines(captured) == [
        "libbpf: prog 'statx_enter': BPF program load failed: Permission denied",
        "libbpf: prog 'statx_enter': failed to load: -13",
        "libbpf: failed to load object 'x.bpf.o'",
    ]


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {what}")
    pytest.skip(what)


@pytest.fixture(scope="module")
def statx_object(tmp_path_factory) -> Path:
    """nix/ebpf/statx-override.bpf.c compiled as tests/ebpf does, with its config beside it."""
    missing = [tool for tool in ("clang", "bpftool") if shutil.which(tool) is None]
    if missing or not Path("/sys/kernel/btf/vmlinux").exists():
        _missing(f"compiling the BPF object needs clang, bpftool and kernel BTF (missing: {missing or 'BTF'})")
    work = tmp_path_factory.mktemp("statx")
    header = subprocess.run(
        ["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    (work / "vmlinux.h").write_text(header.stdout)
    source = REPO / "nix" / "ebpf" / "statx-override.bpf.c"
    command = ["clang", "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", f"-I{work}", "-c", str(source)]
    subprocess.run([*command, "-o", str(work / "statx-override.bpf.o")], check=True, timeout=120)
    shutil.copy(STATX_CONFIG, work / "statx-override.yaml")
    return work


def test_opens_our_object_and_checks_its_maps_against_the_config(statx_object):
    """bpf_object__open_file parses the ELF file only: programs and map definitions, as the VM will load them."""
    (config,) = standin.parse_configs(statx_object, ["statx-override"])
    obj = standin.BpfObject(standin.Libbpf(), config)
    try:
        assert [(p.name, p.section) for p in obj.programs] == [
            ("statx_enter", "ksyscall/statx"),
            ("statx_exit", "kretsyscall/statx"),
        ]
        maps = obj.maps()
        assert (maps["statx_override_total"].type, maps["statx_override_total"].key_size) == (2, 4)
        assert (maps["statx_latency_seconds"].type, maps["statx_latency_seconds"].key_size) == (1, 8)
        obj.check_maps()
    finally:
        obj.lib.lib.bpf_object__close(obj.pointer)


def test_a_config_whose_labels_do_not_cover_the_key_is_refused_at_start(statx_object, tmp_path):
    """ebpf_exporter would fail every scrape of that metric; the stand-in says so before serving."""
    text = STATX_CONFIG.read_text().replace("size: 4 # __u32 latency_key.bucket", "size: 8")
    write_config(tmp_path, "statx-override", text)
    shutil.copy(statx_object / "statx-override.bpf.o", tmp_path)
    (config,) = standin.parse_configs(tmp_path, ["statx-override"])
    obj = standin.BpfObject(standin.Libbpf(), config)
    try:
        with pytest.raises(standin.ConfigError, match="map 'statx_latency_seconds' has 8-byte keys but the labels"):
            obj.check_maps()
    finally:
        obj.lib.lib.bpf_object__close(obj.pointer)


# --- the script ------------------------------------------------------------------------------------------------


def run_script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, *map(str, args)], check=False, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("object_bytes", [None, b"\x7fELF but not really"])
def test_an_object_that_cannot_be_opened_exits_with_one_line(tmp_path, object_bytes):
    """The script runs by path, as in the VM; it fails before any bpf() call, so this host's kernel is untouched."""
    shutil.copy(STATX_CONFIG, tmp_path / "statx-override.yaml")
    if object_bytes is not None:
        (tmp_path / "statx-override.bpf.o").write_bytes(object_bytes)
    pid_file, state_file = tmp_path / "pid", tmp_path / "state"
    state_file.write_text("attached\n")  # a previous run's: must not survive
    result = run_script(
        "--config.dir", tmp_path, "--config.names", "statx-override", "--web.listen-address", "127.0.0.1:0",
        "--pid-file", pid_file, "--state-file", state_file,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert "ebpf_exporter stand-in: " in line
    assert f'error creating module from "{tmp_path}/statx-override.bpf.o" for config "statx-override": ' in line
    assert not pid_file.exists()
    assert not state_file.exists()


def test_an_unsupported_decoder_exits_2_with_one_line(tmp_path):
    write_config(tmp_path, "c", COUNTER_WITH_DECODER.format(decoder="ksym"))
    result = run_script("--config.dir", tmp_path, "--config.names", "c")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert "decoder 'ksym' of label 'addr' is not supported by the ebpf_exporter stand-in" in line


def test_the_script_imports_nothing_from_g5kdeploy():
    """It runs inside the guest with the standard library and PyYAML only."""
    source = SCRIPT.read_text()
    assert not re.search(r"^\s*(from|import)\s+g5kdeploy", source, re.M)
    probe = (
        f"import runpy, sys; runpy.run_path({str(SCRIPT)!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'g5kdeploy'))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60)
    assert loaded.stdout == "[]\n"


# --- HTTP -------------------------------------------------------------------------------------------------------


@pytest.fixture
def served():
    configs, maps, programs, stats = load_case("statx-override")
    renderer = standin.Renderer(configs)
    server = standin.listen(
        "127.0.0.1:0", standin._handler(lambda: renderer.render(maps, programs, bpf_stats_enabled=stats), "/metrics")
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_serves_the_metrics_as_promhttp_does(served):
    with urllib.request.urlopen(f"{served}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
        body = response.read().decode()
    assert without_standin_info(body) == (FIXTURES / "statx-override.prom").read_text()
    request = urllib.request.Request(f"{served}/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(response.read()).decode() == body


def test_its_page_says_it_is_a_stand_in(served):
    with urllib.request.urlopen(f"{served}/", timeout=10) as response:
        page = response.read().decode()
    assert "<title>ebpf_exporter stand-in</title>" in page
    assert "This is not ebpf_exporter" in page
    assert '<a href="/metrics">' in page


def test_a_taken_port_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(standin.BpfError, match=f"Error listening on 127.0.0.1:{port}: "):
            standin.listen(f"127.0.0.1:{port}", standin._handler(lambda: "", "/metrics"))


def test_state_files_are_replaced_atomically(tmp_path):
    target = tmp_path / "state"
    target.write_text("detached\n")
    standin.write_atomically(target, "attached\n")
    assert target.read_text() == "attached\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


# --- the process: signals, state and pid files, with everything real but BPF ----------------------------------

DRIVER = """
import sys, threading
sys.path.insert(0, {payload!r})
import ebpf_exporter_standin as s


class NoBpfExporter(s.Exporter):
    # The stand-in's exporter less libbpf: attaching fails while <config.dir>/fail-attach exists.
    def __init__(self, configs, fail):
        self.configs, self.fail = configs, fail
        self.renderer = s.Renderer(configs)
        self.objects, self.lock, self.attached = [], threading.Lock(), False

    def load(self):
        pass

    def attach(self):
        if self.fail.exists():
            raise s.BpfError("Failed to attach program 'statx_enter' for config 'statx-override': Invalid argument")
        self.attached = True

    def detach(self):
        self.attached = False

    def close(self):
        pass

    def scrape(self):
        return self.renderer.render({{}}, [s.ProgramState("statx-override", "statx_enter", "00", 7, self.attached)])


def verifier_rejects():
    # BpfObject.load's error for what libbpf prints when the verifier rejects a program
    obj = object.__new__(s.BpfObject)
    obj.lib, obj.config = s.Libbpf(), s.Config("statx-override", (), (), args.config_dir / "statx-override.bpf.o")
    log = "".join(f"{{i}}: (b7) r1 = {{i}}\\n" for i in range(40)) + "unknown func bpf_override_return#58\\n"
    captured = [
        (0, "libbpf: prog 'statx_enter': BPF program load failed: Invalid argument\\n"),
        (0, f"libbpf: prog 'statx_enter': -- BEGIN PROG LOAD LOG --\\n{{log}}-- END PROG LOAD LOG --\\n"),
        (0, "libbpf: failed to load object 'statx-override.bpf.o'\\n"),
    ]
    raise obj._error("error loading bpf object from", 22, captured)


args = s._parse_args(sys.argv[2:])
s.configure_logging(args.debug)
configs = s.parse_configs(args.config_dir, args.config_names.split(","))
fail = args.config_dir / "fail-attach"
build = verifier_rejects if sys.argv[1] == "verifier" else lambda: NoBpfExporter(configs, fail)
sys.exit(s.run(args, build))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout} s")


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


@pytest.fixture
def driver(tmp_path) -> Path:
    shutil.copy(STATX_CONFIG, tmp_path / "statx-override.yaml")
    path = tmp_path / "driver.py"
    path.write_text(DRIVER.format(payload=str(SCRIPT.parent)))
    return path


def test_signals_attach_detach_and_stop_with_state_and_pid_files(tmp_path, driver):
    port, state, pid = free_port(), tmp_path / "state", tmp_path / "pid"
    command = [sys.executable, driver, "run", "--config.dir", tmp_path, "--config.names", "statx-override",
               "--web.listen-address", f"127.0.0.1:{port}", "--state-file", state, "--pid-file", pid]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:

        def attached_metric() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text = response.read().decode()
            return re.search(r'^ebpf_exporter_ebpf_program_attached\{id="7"\} (\d)$', text, re.M)[1]

        assert wait_for(lambda: read(state), "the state file") == "attached\n"
        assert read(pid) == f"{process.pid}\n"
        assert attached_metric() == "1"

        process.send_signal(signal.SIGUSR2)
        wait_for(lambda: read(state) == "detached\n", "detached on SIGUSR2")
        assert attached_metric() == "0"

        (tmp_path / "fail-attach").touch()
        process.send_signal(signal.SIGUSR1)
        failed = wait_for(lambda: (read(state) or "").startswith("failed: ") and read(state), "the attach failure")
        assert (
            failed == "failed: Failed to attach program 'statx_enter' for config 'statx-override': Invalid argument\n"
        )
        assert attached_metric() == "0"

        (tmp_path / "fail-attach").unlink()
        process.send_signal(signal.SIGUSR1)
        wait_for(lambda: read(state) == "attached\n", "attached on SIGUSR1")
        assert attached_metric() == "1"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        stderr = process.communicate(timeout=30)[1]
    assert read(state) == "detached\n"
    assert not pid.exists()
    assert "Traceback" not in stderr
    assert all(" ebpf_exporter stand-in: " in line for line in stderr.splitlines()), stderr
    assert f"(attached), listening on 127.0.0.1:{port}" in stderr


def test_sigint_stops_it_too_and_detached_starts_detached(tmp_path, driver):
    port, state = free_port(), tmp_path / "state"
    command = [sys.executable, driver, "run", "--config.dir", tmp_path, "--config.names", "statx-override",
               "--web.listen-address", f"127.0.0.1:{port}", "--state-file", state, "--detached"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: read(state), "the state file") == "detached\n"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.communicate(timeout=30)


def test_a_rejected_program_exits_1_with_the_verifiers_last_lines(tmp_path, driver):
    pid = tmp_path / "pid"
    command = [sys.executable, driver, "verifier", "--config.dir", tmp_path, "--config.names", "statx-override",
               "--pid-file", pid]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    reason, *tail = result.stderr.splitlines()
    assert reason.endswith(
        f'ebpf_exporter stand-in: error loading bpf object from "{tmp_path}/statx-override.bpf.o" for config '
        "\"statx-override\": Invalid argument (libbpf: prog 'statx_enter': BPF program load failed: Invalid argument; "
        "libbpf: failed to load object 'statx-override.bpf.o'); "
        "the verifier's last 20 lines:"
    )
    assert tail == [f"{i}: (b7) r1 = {i}" for i in range(21, 40)] + ["unknown func bpf_override_return#58"]
    assert not pid.exists()
