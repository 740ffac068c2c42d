"""The bench results of a run, read once into plain records that plots and reports share.

A result file is ``bench/<combination>/<node>.json`` as the bench phase writes it. Everything here tolerates
partial data: a file that is damaged, or lacks a field, is skipped or carries ``None`` for that field, and the
reason is appended to ``problems`` so the report can say what it left out. The eBPF exporter's counters come
from the collect phase's exports (``exports/<name>.csv``), read by :func:`counter_totals`.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from g5kdeploy.collect.files import read_json
from g5kdeploy.log import get_logger
from g5kdeploy.playbook import STATX_METRICS, Combination

log = get_logger(__name__)
BENCH_DIR = "bench"
#: The tool name statx-bench puts in its JSON: results carrying it get the statx view of the report.
STATX_BENCH = "statx-bench"
PERCENTILES = ("min", "mean", "p50", "p90", "p99", "p999", "max")

#: One histogram bucket: [lo_ns, hi_ns) and how many calls fell in it.
Bucket = tuple[int, int, int]

#: The struct statx the program writes for it, as statx-bench reports it (``<time>.sec``/``.nsec`` for the
#: timestamps): the FAKE_* values and the fields the program's memset leaves at 0. A test reads them back from
#: the C source, so the two cannot drift apart.
FAKE_STATX: dict[str, int] = {
    "mask": 0x7FF,  # STATX_BASIC_STATS: no btime, unlike a real answer
    "size": 424242,
    "mode": 0o100644,
    "ino": 4242,
    "nlink": 1,
    "uid": 0,
    "gid": 0,
    "blksize": 4096,
    "blocks": (424242 + 511) // 512,
    **{f"{time}.{part}": (1000000000 if part == "sec" else 0)
       for time in ("atime", "mtime", "ctime", "btime") for part in ("sec", "nsec")},
}  # fmt: skip
#: The fields that say a path's real answer did not change between two statx calls (atime may, if read).
IDENTITY_FIELDS = ("size", "ino", "mode", "nlink", "uid", "gid", "mtime.sec", "mtime.nsec", "ctime.sec")


@dataclass(frozen=True)
class StatxAnswer:
    """What statx(2) on one path returned to statx-bench's sample call, after its timed calls."""

    ok: bool
    errno: str | None = None
    #: ``size``, ``mode`` (an int), ``ino``, ... and ``atime.sec``, ``atime.nsec``, ...
    fields: dict[str, int] = field(default_factory=dict)

    @property
    def is_fake(self) -> bool:
        """Every field the eBPF program sets, as it sets it. A statx-bench before ``blksize`` and ``blocks``
        did not report them: the fields it did report decide, as long as they include the size, inode and times."""
        if not self.ok or any(name not in self.fields for name in ("size", "ino", "mode", "mtime.sec")):
            return False
        return all(self.fields.get(name, value) == value for name, value in FAKE_STATX.items())

    def identity(self) -> tuple[Any, ...]:
        """What must stay the same from one call to the next on an unchanged file (or the same errno)."""
        return (self.errno,) if not self.ok else tuple(self.fields.get(name) for name in IDENTITY_FIELDS)

    def describe(self) -> str:
        if not self.ok:
            return str(self.errno or "failed")
        mode = self.fields.get("mode")
        parts = [
            f"size {self.fields.get('size', '?')}",
            f"ino {self.fields.get('ino', '?')}",
            f"mode {'?' if mode is None else f'0{mode:o}'}",
            f"mtime {self.fields.get('mtime.sec', '?')}",
        ]
        return ", ".join(parts)


@dataclass(frozen=True)
class PathResult:
    """One path of one result: its statx(2) calls, their latency, and the answer it got.

    Results of a statx-bench older than its per-path figures carry only ``answer``.
    """

    path: str
    #: Every statx(2) on this path in the whole run, all threads: warm-up, timed and sample calls.
    calls: int | None = None
    warmup_calls: int | None = None
    timed_calls: int | None = None
    sample_calls: int | None = None
    errors_total: int | None = None
    latency_ns: dict[str, float] = field(default_factory=dict)
    buckets: tuple[Bucket, ...] = ()
    answer: StatxAnswer | None = None

    def percentile(self, name: str) -> float | None:
        return self.latency_ns.get(name)


@dataclass(frozen=True)
class BenchResult:
    """One node's result for one combination: its parameters, its metrics, and, for a statx-bench workload,
    everything statx-bench's JSON tells (the statx view of the report reads those)."""

    path: Path
    node: str
    #: statx-bench's threads (its parameter, else its own JSON's), and the eBPF state ("off" without the parameter).
    threads: int | None
    ebpf: str
    repetition: int
    key: str
    parameters: dict[str, str | int | float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    calls: int | None = None
    calls_per_s: float | None = None
    duration_s: float | None = None
    latency_ns: dict[str, float] = field(default_factory=dict)
    buckets: tuple[Bucket, ...] = ()
    errors: dict[str, int] = field(default_factory=dict)
    errors_total: int | None = None
    finished_at: str | None = None
    #: One entry per distinct benchmarked path, in the order the bench gave them.
    paths: tuple[PathResult, ...] = ()
    #: Whether the result is statx-bench's JSON: the statx view of the report and its plots read the fields above.
    statx: bool = False

    @property
    def label(self) -> str:
        """``threads=1 ebpf=on``: the combination without its repetition, as the playbook's sweep names it."""
        return Combination(tuple(self.parameters.items()), self.repetition).label

    def percentile(self, name: str) -> float | None:
        return self.latency_ns.get(name)

    def path_result(self, path: str) -> PathResult | None:
        return next((entry for entry in self.paths if entry.path == path), None)


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
    results.sort(key=lambda r: (r.threads or 0, r.ebpf, r.label, r.repetition, r.node))
    return results


def metric_names(results: Iterable[BenchResult]) -> list[str]:
    """Every metric of the results, in the order first met (the parser's order)."""
    return list(dict.fromkeys(name for result in results for name in result.metrics))


def parameter_names(results: Iterable[BenchResult]) -> list[str]:
    """Every parameter of the results, in the playbook's order (the order each result lists them)."""
    return list(dict.fromkeys(name for result in results for name in result.parameters))


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
    metrics = document.get("metrics")
    if not isinstance(combination, dict) or not (isinstance(result, dict) or isinstance(metrics, dict)):
        _note(notes, f"{relative}: no combination or result, skipped")
        return None
    # Results of the statx-only bench (before workloads) name threads and ebpf in the combination itself.
    parameters = json_object(combination.get("parameters")) or {
        name: combination[name] for name in ("threads", "ebpf") if name in combination
    }
    result = result if isinstance(result, dict) and result.get("tool") == STATX_BENCH else {}
    if not isinstance(metrics, dict) and not result:
        _note(notes, f"{relative}: neither metrics nor a statx-bench result, skipped")
        return None
    config = json_object(result.get("config"))
    try:
        threads = _int(parameters.get("threads", config.get("threads")))
        ebpf = str(parameters.get("ebpf", "off"))
        repetition = int(combination.get("repetition", 1))
    except (TypeError, ValueError):
        _note(notes, f"{relative}: combination unreadable, skipped")
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
        parameters={str(name): value for name, value in parameters.items() if isinstance(value, str | int | float)},
        metrics={
            str(name): number
            for name, value in (metrics.items() if isinstance(metrics, dict) else _statx_metrics(result))
            if (number := _float(value)) is not None
        },
        calls=_int(result.get("calls")),
        calls_per_s=_float(result.get("calls_per_s")),
        duration_s=_float(result.get("duration_s")),
        latency_ns={name: value for name in PERCENTILES if (value := _float(latency.get(name))) is not None},
        buckets=_buckets(result.get("histogram")),
        errors={str(name): count for name, value in errors.items() if (count := _int(value)) is not None},
        errors_total=_int(result.get("errors_total")),
        finished_at=document.get("finished_at"),
        paths=_paths(config.get("paths"), json_object(result.get("per_path")), json_object(result.get("statx"))),
        statx=bool(result),
    )
    if not result:
        return parsed
    missing = [name for name in ("p50", "p99") if name not in parsed.latency_ns]
    if parsed.calls_per_s is None:
        missing.append("calls_per_s")
    if not parsed.buckets:
        missing.append("histogram")
    if missing:
        _note(notes, f"{relative}: lacks {', '.join(missing)}; used for the rest")
    return parsed


def _statx_metrics(result: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    """The metrics of a statx-only bench's result (before workloads, which had no ``metrics``): what the statx
    playbooks' ``metrics`` mapping now names, so their nightly history goes on across the change."""
    for name, path in STATX_METRICS.items():
        value: Any = result
        for part in path.split("."):
            value = json_object(value).get(part)
        yield name, value


def _paths(configured: Any, per_path: dict[str, Any], answers: dict[str, Any]) -> tuple[PathResult, ...]:
    names = [str(path) for path in configured] if isinstance(configured, list) else []
    entries = []
    for path in dict.fromkeys([*names, *per_path, *answers]):
        figures = json_object(per_path.get(path))
        latency = json_object(figures.get("latency_ns"))
        entries.append(PathResult(
            path=path,
            calls=_int(figures.get("calls")),
            warmup_calls=_int(figures.get("warmup_calls")),
            timed_calls=_int(figures.get("timed_calls")),
            sample_calls=_int(figures.get("sample_calls")),
            errors_total=_int(figures.get("errors_total")),
            latency_ns={name: value for name in PERCENTILES if (value := _float(latency.get(name))) is not None},
            buckets=_buckets(figures.get("histogram")),
            answer=_answer(answers.get(path)),
        ))  # fmt: skip
    return tuple(entries)


def _answer(value: Any) -> StatxAnswer | None:
    if not isinstance(value, dict) or not isinstance(value.get("ok"), bool):
        return None
    if not value["ok"]:
        return StatxAnswer(ok=False, errno=str(value.get("errno") or "?"))
    fields: dict[str, int] = {}
    for name, item in value.items():
        if isinstance(item, dict):
            fields |= {
                f"{name}.{part}": number for part in ("sec", "nsec") if (number := _int(item.get(part))) is not None
            }
        elif name == "mode" and isinstance(item, str):
            try:
                fields["mode"] = int(item, 8)
            except ValueError:
                continue
        elif name != "ok" and (number := _int(item)) is not None:
            fields[name] = number
    return StatxAnswer(ok=True, fields=fields)


#: The series of a counter export (their labels), each with its total over the run.
CounterTotals = list[tuple[dict[str, str], float]]


def counter_totals(path: Path) -> CounterTotals | None:
    """Each series of a counter export (``timestamp,value,<labels>``) with its total over the run: the last
    value, plus the value before each reset (an exporter restarted with fresh maps starts again from 0).

    None when the file is missing or unreadable (collect did not export it); an empty list when it has no point.
    """
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    points: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for row in rows:
        try:
            timestamp, value = float(row["timestamp"]), float(row["value"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(value) and math.isfinite(timestamp):
            labels = tuple(sorted((name, text or "") for name, text in row.items()
                                  if name not in ("timestamp", "value") and name is not None))  # fmt: skip
            points.setdefault(labels, []).append((timestamp, value))
    totals: CounterTotals = []
    for labels, series in points.items():
        series.sort()
        total = previous = 0.0
        for _, value in series:
            total += value - previous if value >= previous else value
            previous = value
        totals.append((dict(labels), total))
    return totals


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
