"""A workload's output as metrics: JSON (dotted paths to numbers), CSV (a row's numeric columns) or a regular
expression (its named groups, first match)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from g5kdeploy.playbook import Workload

#: More numbers than this in one output is not a set of metrics but a dump: name the ones to keep.
MAX_METRICS = 256


@dataclass(frozen=True)
class Parsed:
    metrics: dict[str, float]
    #: The whole JSON document, for output: json (a report may read more than the metrics).
    document: Any = None


def parse_output(workload: Workload, stdout: str) -> Parsed | str:
    """The metrics of one run, or why there are none (the pair then fails with that reason)."""
    match workload.output:
        case "json":
            return _from_json(workload, stdout)
        case "csv":
            return _from_csv(workload, stdout)
        case _:
            return _from_regex(workload, stdout)


def _from_json(workload: Workload, stdout: str) -> Parsed | str:
    try:
        document = json.loads(stdout)
    except json.JSONDecodeError as exc:
        return f"output is not JSON ({exc.msg} at line {exc.lineno}): {_start(stdout)}"
    if workload.metrics is None:
        found = dict(_numbers(document, ""))
        if not found:
            return f"the JSON output holds no number: {_start(stdout)}"
        if len(found) > MAX_METRICS:
            return (f"the JSON output holds {len(found)} numbers: name the metrics to keep in "
                    "bench.workload.metrics (metric: dotted.path)")  # fmt: skip
        return Parsed(found, document)
    metrics: dict[str, float] = {}
    for name, path in workload.metrics.items():
        value = _at(document, path)
        number = _number(value)
        if number is None:
            return f"metric {name}: no number at {path} in the JSON output (found {_start(json.dumps(value))})"
        metrics[name] = number
    return Parsed(metrics, document)


def _from_csv(workload: Workload, stdout: str) -> Parsed | str:
    rows = list(csv.DictReader(io.StringIO(stdout)))
    if not rows:
        return f"no CSV row under a header in the output: {_start(stdout)}"
    row = rows[0]
    if workload.metrics is None:
        found = {str(column): number for column, text in row.items() if (number := _number(text)) is not None}
        return Parsed(found) if found else f"the first CSV row has no numeric column: {_start(stdout)}"
    metrics: dict[str, float] = {}
    for name, column in workload.metrics.items():
        number = _number(row.get(column))
        if number is None:
            return f"metric {name}: column {column} is missing or not a number in the first CSV row"
        metrics[name] = number
    return Parsed(metrics)


def _from_regex(workload: Workload, stdout: str) -> Parsed | str:
    assert workload.pattern is not None  # the playbook requires it with output: regex
    found = re.search(workload.pattern, stdout)
    if found is None:
        return f"the pattern {workload.pattern!r} does not match the output: {_start(stdout)}"
    metrics: dict[str, float] = {}
    for name, text in found.groupdict().items():
        number = _number(text)
        if number is None:
            return f"group {name} matched {text!r}, not a number"
        metrics[name] = number
    return Parsed(metrics)


def _numbers(value: Any, prefix: str) -> list[tuple[str, float]]:
    """Every number in a JSON value, by dotted path (list items by index)."""
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _numbers(item, f"{prefix}{key}.")]
    if isinstance(value, list):
        return [pair for index, item in enumerate(value) for pair in _numbers(item, f"{prefix}{index}.")]
    number = _number(value)
    return [(prefix.rstrip("."), number)] if number is not None and prefix else []


def _at(document: Any, path: str) -> Any:
    value = document
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _number(value: Any) -> float | None:
    """A finite number from JSON or text; booleans and anything else are not metrics."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _start(text: str) -> str:
    text = text.strip()
    return repr(text[:120] + ("..." if len(text) > 120 else ""))
