"""The report of a run with eBPF on and off: the side-by-side table, the probe's overhead and the override proof,
as a reader sees them in report.md, on run directories built by hand (tests/collect/runs.py)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from g5kdeploy.collect import load_results, write_report
from g5kdeploy.collect.data import FAKE_STATX, counter_totals
from g5kdeploy.collect.plots import plot_ebpf
from g5kdeploy.payload import STATX_TARGET
from tests.collect.conftest import assert_png
from tests.collect.runs import (
    FAKE_ANSWER,
    NODES,
    ORDINARY,
    PATHS,
    REAL_ANSWERS,
    SKIP_REASON,
    TARGET,
    make_run,
    target_calls,
    write_exports,
)

BPF_SOURCE = Path(__file__).resolve().parents[2] / "nix" / "ebpf" / "statx-override.bpf.c"
#: statx calls on the target per node in make_run's default sweep: 2 repetitions of threads 1 and 2, eBPF on.
PER_NODE = 2 * (target_calls(1) + target_calls(2))


def report(run_dir: Path) -> str:
    exports = {path.stem: path for path in sorted((run_dir / "exports").glob("*.csv"))}
    markdown, page = write_report(run_dir, plots=[], exports=exports, node_facts={})
    assert page.read_text().startswith("<!DOCTYPE html>")
    return markdown.read_text()


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r}"
    return match[1]


def proof_row(text: str, node: str) -> list[str]:
    """The cells of a node's row in the proof table: node, then checks (i) to (iv)."""
    line = next(line for line in section(text, "Override proof").splitlines() if line.startswith(f"| {node} |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def edit(run_dir: Path, key: str, node: str, change: Callable[[dict], None]) -> None:
    path = run_dir / "bench" / key / f"{node}.json"
    document = json.loads(path.read_text())
    change(document["result"])
    path.write_text(json.dumps(document))


def answer_of(path: str, answer: dict) -> Callable[[dict], None]:
    def change(result: dict) -> None:
        result["statx"][path] = answer

    return change


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path)


def test_a_working_override_is_proven_on_every_node(run_dir):
    text = report(run_dir)
    proof = section(text, "Override proof")
    assert "Verdict: the override is proven on 2 of 2 nodes." in proof
    for node in NODES:
        _, fake, detach, counter, histogram = proof_row(text, node)
        assert fake.startswith("PASS: /tmp/g5k-statx-target returned the program's struct in 4 of 4 results")
        assert "/etc/hostname its real values (size 3, ino 612, mode 0100644, mtime 1795000000) in 4 of 4" in fake
        assert detach.startswith("PASS: /tmp/g5k-statx-target returned its real values again (size 23, ino 77")
        # The sweep runs threads 1 off, 1 on, 2 off, 2 on in each repetition: three off results follow the first on.
        assert "in 3 eBPF-off results after an eBPF-on one" in detach
        assert counter == (f"PASS: overridden {PER_NODE:,} = {PER_NODE:,} statx calls on /tmp/g5k-statx-target in 4 "
                           "eBPF-on results (warm-up and sample calls included); write_user_failed 0, "
                           "path_read_failed 0")  # fmt: skip
        assert histogram == "PASS: 1,000 samples (real 1,000)"
    # Warm-up (1000 per thread, every other call) and the sample call count: 100,500 a thread, plus one.
    assert PER_NODE == 2 * ((1 * 100_500 + 1) + (2 * 100_500 + 1))


def test_the_target_without_the_programs_struct_fails_check_i(run_dir):
    edit(run_dir, "threads-2_ebpf-on_rep-1", NODES[1], answer_of(TARGET, REAL_ANSWERS[TARGET]))
    text = report(run_dir)
    assert (f"Verdict: the override is proven on 1 of 2 nodes; not on {NODES[1]} (program's struct with eBPF on "
            "FAIL).") in text  # fmt: skip
    fake = proof_row(text, NODES[1])[1]
    assert fake == ("FAIL: /tmp/g5k-statx-target returned its own answer (size 23, ino 77, mode 0100644, mtime "
                    "1796000000) in threads-2_ebpf-on_rep-1, not the program's struct")  # fmt: skip
    assert proof_row(text, NODES[0])[1].startswith("PASS")


def test_an_ordinary_path_that_changes_with_ebpf_on_fails_check_i(run_dir):
    edit(run_dir, "threads-1_ebpf-on_rep-2", NODES[0], answer_of(ORDINARY, {**REAL_ANSWERS[ORDINARY], "size": 99}))
    edit(run_dir, "threads-1_ebpf-on_rep-1", NODES[1], answer_of(ORDINARY, FAKE_ANSWER))
    text = report(run_dir)
    assert "Verdict: the override is proven on 0 of 2 nodes" in text
    assert proof_row(text, NODES[0])[1] == (
        "FAIL: /etc/hostname returned size 99, ino 612, mode 0100644, mtime 1795000000 in threads-1_ebpf-on_rep-2, "
        "with eBPF off size 3, ino 612, mode 0100644, mtime 1795000000"
    )
    assert (
        proof_row(text, NODES[1])[1]
        == "FAIL: /etc/hostname returned the program's struct too, in threads-1_ebpf-on_rep-1"
    )


def test_the_programs_struct_after_detach_fails_check_ii(run_dir):
    edit(run_dir, "threads-2_ebpf-off_rep-2", NODES[0], answer_of(TARGET, FAKE_ANSWER))
    text = report(run_dir)
    assert (f"not on {NODES[0]} (real values after detach FAIL)") in text
    assert proof_row(text, NODES[0])[2] == ("FAIL: /tmp/g5k-statx-target still returned the program's struct in "
                                            "threads-2_ebpf-off_rep-2, after the program was detached")  # fmt: skip


def test_one_repetition_cannot_show_the_detach(tmp_path):
    # One thread count and one repetition: the sweep is eBPF off, then on, and nothing after the attach.
    text = report(make_run(tmp_path, repetitions=1, threads=(1,)))
    assert "Verdict: the override is proven on 0 of 2 nodes" in text
    assert "real values after detach not measured" in text
    for node in NODES:
        row = proof_row(text, node)
        assert row[2] == "not measured: no eBPF-off combination ran after an eBPF-on one on this node"
        assert row[1].startswith("PASS") and row[3].startswith("PASS") and row[4].startswith("PASS")


def test_a_counter_that_does_not_match_the_calls_fails_check_iii(run_dir):
    write_exports(run_dir, {NODES[0]: PER_NODE - 5, NODES[1]: PER_NODE}, failed={NODES[1]: {"write_user_failed": 3}})
    text = report(run_dir)
    assert "Verdict: the override is proven on 0 of 2 nodes" in text
    assert proof_row(text, NODES[0])[3].startswith(
        f"FAIL: overridden {PER_NODE - 5:,} \u2260 {PER_NODE:,} statx calls on /tmp/g5k-statx-target"
    )
    counter = proof_row(text, NODES[1])[3]
    assert counter.startswith(f"FAIL: overridden {PER_NODE:,} = {PER_NODE:,}")
    assert counter.endswith("write_user_failed 3, path_read_failed 0")


def test_a_node_without_counter_fails_and_missing_exports_are_not_measured(run_dir):
    write_exports(run_dir, {NODES[0]: PER_NODE})
    text = report(run_dir)
    assert proof_row(text, NODES[1])[3].startswith("FAIL: no overridden counter for this node, for 603,004 statx")
    for export in ("statx_override", "statx_latency"):
        (run_dir / "exports" / f"{export}.csv").unlink()
    text = report(run_dir)
    assert "Verdict: the override is proven on 0 of 2 nodes" in text
    row = proof_row(text, NODES[0])
    assert row[3] == "not measured: no exports/statx_override.csv"
    assert row[4] == "not measured: no exports/statx_latency.csv"


def test_a_histogram_without_samples_fails_check_iv(run_dir):
    write_exports(run_dir, dict.fromkeys(NODES, PER_NODE), samples={NODES[0]: {"real": 700, "overridden": 300}})
    text = report(run_dir)
    assert f"Verdict: the override is proven on 1 of 2 nodes; not on {NODES[1]} (latency histogram FAIL)." in text
    assert proof_row(text, NODES[0])[4] == "PASS: 1,000 samples (overridden 300, real 700)"
    assert proof_row(text, NODES[1])[4] == "FAIL: no samples for this node"


def test_a_program_that_never_overrode_fails_everywhere(tmp_path):
    text = report(make_run(tmp_path, override=False))
    assert "Verdict: the override is proven on 0 of 2 nodes" in text
    for node in NODES:
        row = proof_row(text, node)
        assert row[1].startswith("FAIL: /tmp/g5k-statx-target returned its own answer")
        assert row[3].startswith(f"FAIL: overridden 0 \u2260 {PER_NODE:,}")


def test_the_counter_total_survives_an_exporter_restart(run_dir):
    # An exporter restarted between combinations starts its counter again from 0: the last value alone is
    # short of the run's total, the total counts the value reached before the restart too.
    path = run_dir / "exports" / "statx_override.csv"
    rows = ["timestamp,value,instance,job,node,outcome"]
    for node in NODES:
        first = PER_NODE // 3
        for step, value in enumerate((0, first // 2, first, 0, 5, PER_NODE - first)):
            rows.append(f"{1796000000 + step}.000,{float(value)},{node}:9435,ebpf,{node},overridden")
    path.write_text("\n".join(rows) + "\n")
    assert sorted(total for _, total in counter_totals(path) or []) == [PER_NODE, PER_NODE]
    assert "Verdict: the override is proven on 2 of 2 nodes." in report(run_dir)


def test_exports_labelled_by_instance_only_are_matched_to_their_node(run_dir):
    # NixOS' collector on Grid'5000 scrapes "<host>:9435" targets without a node label (nix/modules/collector.nix).
    for export in ("statx_override", "statx_latency"):
        path = run_dir / "exports" / f"{export}.csv"
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        with path.open("w", newline="") as handle:
            names = [name for name in rows[0] if name != "node"]
            writer = csv.DictWriter(handle, fieldnames=names, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                short = row["node"] if row["node"] == NODES[0] else row["node"].split(".")[0]
                writer.writerow({**row, "instance": f"{short}:9435"})
    text = report(run_dir)
    assert "Verdict: the override is proven on 2 of 2 nodes." in text
    (run_dir / "exports" / "statx_latency.csv").write_text("timestamp,value,le\n1.0,5.0,+Inf\n")
    row = proof_row(report(run_dir), NODES[0])
    assert row[4] == "not measured: exports/statx_latency.csv has neither a node nor an instance label"


def test_counter_totals_of_a_missing_or_odd_export(tmp_path):
    assert counter_totals(tmp_path / "nowhere.csv") is None
    odd = tmp_path / "odd.csv"
    odd.write_text("timestamp,value,node\n1.0,NaN,a\nx,2,a\n3.0,4.0,a\n")
    assert counter_totals(odd) == [({"node": "a"}, 4.0)]


def test_probe_overhead_on_the_ordinary_path_and_the_overridden_calls_cost(run_dir):
    text = report(run_dir)
    overhead = section(text, "Probe overhead")
    # runs.py adds 400 ns to the ordinary path's p50 with eBPF on (mean: 1.3 x p50), on every node and repetition.
    assert "- /etc/hostname, 1 thread: +400 ns per call at p50 (+520 ns mean) with the program attached, from 4 " \
           "results off and 4 on" in overhead  # fmt: skip
    assert "- /etc/hostname, 2 threads: +400 ns per call at p50" in overhead
    assert ("| 1 | /etc/hostname | probe overhead | 1511 (1504\u20131518) | 1911 (1904\u20131918) | +400 | "
            "1964 (1955\u20131973) | 2484 (2475\u20132493) | +520 | 4 / 4 |") in overhead  # fmt: skip
    # The target's eBPF-on figures are the overridden call itself, labelled as such, never a "probe overhead".
    assert ("| 1 | /tmp/g5k-statx-target | overridden call (the program answers) | 1211 (1204\u20131218) | "
            "711 (704\u2013718) | -500 |") in overhead  # fmt: skip
    assert "/tmp/g5k-statx-target, 1 thread" not in overhead


def test_on_vs_off_side_by_side_per_path(run_dir):
    on_off = section(report(run_dir), "eBPF on vs off")
    rows = [line for line in on_off.splitlines() if line.startswith("| 1 |")]
    assert [row.split(" | ")[1] for row in rows] == ["all paths", TARGET, ORDINARY]
    assert rows[0].startswith("| 1 | all paths | 4 / 4 | 1511 (1504\u20131518) | 1911 (1904\u20131918) | "
                              "2418 (2406\u20132429) | 3058 (3046\u20133069) | 595,640")  # fmt: skip
    assert rows[2].startswith("| 1 | /etc/hostname | 4 / 4 | 1511 (1504\u20131518) | 1911 (1904\u20131918) |")


def test_a_run_without_ebpf_on_says_the_proof_was_not_run(tmp_path):
    text = report(make_run(tmp_path, ebpf=("off",), skipped=("on",)))
    assert section(text, "Override proof").strip() == (
        f"The override proof was not run: the eBPF-on combinations were skipped ({SKIP_REASON})."
    )
    assert "Not compared" in section(text, "eBPF on vs off")
    assert "Not measured" in section(text, "Probe overhead")


def test_a_sweep_without_ebpf_on_or_without_the_target(tmp_path):
    text = report(make_run(tmp_path / "a", ebpf=("off",)))
    assert "The override proof was not run: the sweep has no eBPF-on combination" in text
    text = report(make_run(tmp_path / "b", paths=(ORDINARY,)))
    assert ("The override proof was not run: the benchmarked paths (/etc/hostname) do not include the program's "
            "target path /tmp/g5k-statx-target.") in text  # fmt: skip


def test_results_of_a_statx_bench_without_per_path_figures(run_dir):
    for path in (run_dir / "bench").glob("*/*.json"):
        document = json.loads(path.read_text())
        del document["result"]["per_path"]
        path.write_text(json.dumps(document))
    text = report(run_dir)
    assert [line.split(" | ")[1] for line in section(text, "eBPF on vs off").splitlines()
            if line.startswith("| 1 |")] == ["all paths"]  # fmt: skip
    assert "Not measured: the results have no per-path latency" in section(text, "Probe overhead")
    assert (
        proof_row(text, NODES[0])[3] == "not measured: statx-bench gave no per-path call counts (a version before them)"
    )
    assert proof_row(text, NODES[0])[1].startswith("PASS")  # the answers are there all the same
    assert_png(plot_ebpf(load_results(run_dir), run_dir / "plots"))


def test_results_carry_each_paths_calls_and_answer(run_dir):
    first = load_results(run_dir)[0]
    assert [entry.path for entry in first.paths] == list(PATHS)
    target = first.path_result(TARGET)
    assert target is not None and target.answer is not None
    assert (target.calls, target.warmup_calls, target.timed_calls, target.sample_calls) == (100_501, 500, 100_000, 1)
    assert not target.answer.is_fake and first.ebpf == "off"
    on = next(result for result in load_results(run_dir) if result.ebpf == "on")
    assert on.path_result(TARGET).answer.is_fake and not on.path_result(ORDINARY).answer.is_fake
    # A statx-bench before blksize and blocks: the fields it reported decide.
    older = {name: value for name, value in FAKE_ANSWER.items() if name not in ("blksize", "blocks")}
    edit(run_dir, on.key, on.node, answer_of(TARGET, older))
    edit(run_dir, on.key, NODES[1], answer_of(TARGET, {**older, "ino": 4243}))
    again = {(result.key, result.node): result for result in load_results(run_dir)}
    assert again[(on.key, on.node)].path_result(TARGET).answer.is_fake
    assert not again[(on.key, NODES[1])].path_result(TARGET).answer.is_fake


def test_the_programs_struct_is_the_one_in_the_bpf_source():
    """FAKE_STATX and STATX_TARGET say what statx-override.bpf.c writes: read back from the C source."""
    source = BPF_SOURCE.read_text()
    defines = dict(re.findall(r"^#define (\w+) (.+?)(?:\s*/\*.*)?$", source, re.M))

    def value(expression: str) -> int:
        for _ in range(3):  # defines that use defines
            expression = re.sub(r"\b[A-Z][A-Z0-9_]+\b", lambda m: f"({defines.get(m[0], m[0])})", expression)
        python = re.sub(r"\b0(\d+)", r"0o\1", re.sub(r"(?<=[0-9a-fA-F])(?:ULL|LL|U)\b", "", expression)).replace(
            "/", "//"
        )
        return int(eval(python, {"__builtins__": {}}))  # a C constant expression from our own source

    assert defines["TARGET_PATH"] == f'"{STATX_TARGET}"'
    assigned = {f"{m[1].removeprefix('stx_')}{'.sec' if m[2] else ''}": value(m[3])
                for m in re.finditer(r"^\s*fake\.(stx_\w+?)(\.tv_sec)?\s*=\s*(.+?);", source, re.M)}  # fmt: skip
    assert assigned, "no assignment to the fake struct found"
    assert "memset(&fake, 0, sizeof(fake))" in source  # what is not assigned is 0
    reported = {name: assigned.get(name, 0) for name in FAKE_STATX}
    assert reported == FAKE_STATX
    assert set(assigned) <= set(FAKE_STATX), "a field the program sets is not checked by the proof"
