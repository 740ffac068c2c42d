"""The bench results of a run, read once into plain records that plots and reports share.

A result file is ``bench/<combination>/<node>.json`` as the bench phase writes it. Everything here tolerates
partial data: a file that is damaged, or lacks a field, is skipped or carries ``None`` for that field, and the
reason is appended to ``problems`` so the report can say what it left out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from g5kdeploy.collect.files import read_json
from g5kdeploy.log import get_logger

log = get_logger(__name__)
BENCH_DIR = "bench"
PERCENTILES = ("min", "mean", "p50", "p90", "p99", "p999", "max")

#: One histogram bucket: [lo_ns, hi_ns) and how many calls fell in it.
Bucket = tuple[int, int, int]


@dataclass(frozen=True)
class BenchResult:
    """One node's result for one combination (threads x eBPF state x repetition)."""

    path: Path
    node: str
    threads: int
    ebpf: str
    repetition: int
    key: str
    calls: int | None = None
    calls_per_s: float | None = None
    duration_s: float | None = None
    latency_ns: dict[str, float] = field(default_factory=dict)
    buckets: tuple[Bucket, ...] = ()
    errors: dict[str, int] = field(default_factory=dict)
    errors_total: int | None = None
    finished_at: str | None = None

    def percentile(self, name: str) -> float | None:
        return self.latency_ns.get(name)


def load_results(run_dir: Path, problems: list[str] | None = None) -> list[BenchResult]:
    """Every readable result under ``run_dir/bench``, sorted by (threads, eBPF, repetition, node).

    Only the current sweep is read: ``bench-before-redo-*`` directories are the earlier results ``--redo``
    moved aside, and mixing them in would count repetitions twice.
    """
    notes = problems if problems is not None else []
    bench = run_dir / BENCH_DIR
    results: list[BenchResult] = []
    if not bench.is_dir():
        _note(notes, f"no {BENCH_DIR}/ directory: the bench phase has not run")
        return results
    for path in sorted(bench.glob("*/*.json")):
        parsed = _parse(path, notes)
        if parsed is not None:
            results.append(parsed)
    if not results:
        _note(notes, f"no finished bench results under {BENCH_DIR}/")
    results.sort(key=lambda r: (r.threads, r.ebpf, r.repetition, r.node))
    return results


def _note(notes: list[str], message: str) -> None:
    log.warning(message)
    notes.append(message)


def _parse(path: Path, notes: list[str]) -> BenchResult | None:
    relative = f"{path.parent.name}/{path.name}"
    document = read_json(path)
    if document is None:
        _note(notes, f"{relative}: unreadable, skipped")
        return None
    combination = document.get("combination")
    result = document.get("result")
    if not isinstance(combination, dict) or not isinstance(result, dict):
        _note(notes, f"{relative}: no combination or result, skipped")
        return None
    try:
        threads = int(combination["threads"])
        ebpf = str(combination["ebpf"])
        repetition = int(combination.get("repetition", 1))
    except (KeyError, TypeError, ValueError):
        _note(notes, f"{relative}: combination lacks threads or ebpf, skipped")
        return None
    latency = json_object(result.get("latency_ns"))
    errors = json_object(result.get("errors"))
    parsed = BenchResult(
        path=path,
        node=str(document.get("node") or path.stem),
        threads=threads,
        ebpf=ebpf,
        repetition=repetition,
        key=str(combination.get("key") or path.parent.name),
        calls=_int(result.get("calls")),
        calls_per_s=_float(result.get("calls_per_s")),
        duration_s=_float(result.get("duration_s")),
        latency_ns={name: value for name in PERCENTILES if (value := _float(latency.get(name))) is not None},
        buckets=_buckets(result.get("histogram")),
        errors={str(name): count for name, value in errors.items() if (count := _int(value)) is not None},
        errors_total=_int(result.get("errors_total")),
        finished_at=document.get("finished_at"),
    )
    missing = [name for name in ("p50", "p99") if name not in parsed.latency_ns]
    if parsed.calls_per_s is None:
        missing.append("calls_per_s")
    if not parsed.buckets:
        missing.append("histogram")
    if missing:
        _note(notes, f"{relative}: lacks {', '.join(missing)}; used for the rest")
    return parsed


def json_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one: a record's optional or damaged sub-object."""
    return value if isinstance(value, dict) else {}


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _buckets(histogram: Any) -> tuple[Bucket, ...]:
    if not isinstance(histogram, dict) or not isinstance(histogram.get("buckets"), list):
        return ()
    buckets: list[Bucket] = []
    for entry in histogram["buckets"]:
        if not isinstance(entry, dict):
            continue
        lo, hi, count = _int(entry.get("lo_ns")), _int(entry.get("hi_ns")), _int(entry.get("count"))
        if lo is not None and hi is not None and count is not None and count > 0 and hi > lo:
            buckets.append((lo, hi, count))
    return tuple(sorted(buckets))


def merge_buckets(results: Iterable[BenchResult]) -> list[Bucket]:
    """The histograms of several results summed bucket by bucket.

    Repetitions on one node share the TSC frequency and so the bucket bounds; when bounds differ (nodes with
    different clocks) the union is kept, which the CDF reads at each bucket's upper bound.
    """
    counts: dict[tuple[int, int], int] = {}
    for result in results:
        for lo, hi, count in result.buckets:
            counts[(lo, hi)] = counts.get((lo, hi), 0) + count
    return sorted((lo, hi, count) for (lo, hi), count in counts.items())


@dataclass(frozen=True)
class Spread:
    """Mean and range of one metric over repeated measurements (repetitions, and nodes where stated)."""

    mean: float
    low: float
    high: float
    samples: int


def spread(values: Iterable[float | None]) -> Spread | None:
    present = [value for value in values if value is not None]
    if not present:
        return None
    return Spread(statistics.fmean(present), min(present), max(present), len(present))


def group(results: Iterable[BenchResult], *fields: str) -> dict[tuple[Any, ...], list[BenchResult]]:
    """Results keyed by the values of ``fields`` (e.g. ``"threads", "ebpf"``), keys in sorted order."""
    groups: dict[tuple[Any, ...], list[BenchResult]] = {}
    for result in results:
        groups.setdefault(tuple(getattr(result, name) for name in fields), []).append(result)
    return dict(sorted(groups.items()))
