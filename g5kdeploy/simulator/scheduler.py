"""Whole-node placement on a per-site gantt, used for FIFO with conservative backfilling.

A job's requirement lists, per `+` part, the nodes that may serve it; placement looks for the earliest
start where every part finds enough nodes free for the whole walltime.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from g5kdeploy.simulator.oarsub import ALL


@dataclass(frozen=True)
class PartNeed:
    """`count` nodes (ALL = every candidate) taken from `candidates`, ordered (cluster, fqdn) pairs."""

    candidates: tuple[tuple[str, str], ...]
    count: int
    same_cluster: bool = False


class Gantt:
    """Busy intervals per node fqdn; intervals are half-open [start, end)."""

    def __init__(self) -> None:
        self.busy: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def add(self, nodes: list[str], start: float, end: float) -> None:
        for node in nodes:
            self.busy[node].append((start, end))

    def is_free(self, node: str, start: float, end: float) -> bool:
        return all(e <= start or s >= end for s, e in self.busy.get(node, ()))

    def boundaries(self, after: float) -> list[float]:
        return sorted({e for spans in self.busy.values() for _, e in spans if e > after})


def _first_free(gantt: Gantt, need: PartNeed, used: set[str], start: float, end: float) -> list[str] | None:
    """The first `count` free candidates, without testing the others (the common case, and the hot path)."""
    chosen: list[str] = []
    for _, node in need.candidates:
        if node not in used and gantt.is_free(node, start, end):
            chosen.append(node)
            if len(chosen) == need.count:
                return chosen
    return None


def _pick(gantt: Gantt, need: PartNeed, used: set[str], start: float, end: float) -> list[str] | None:
    if need.count != ALL and not need.same_cluster:
        return _first_free(gantt, need, used, start, end)
    free = [(c, n) for c, n in need.candidates if n not in used and gantt.is_free(n, start, end)]
    if need.count == ALL:
        return [n for _, n in free] if len(free) == len(need.candidates) else None
    if need.same_cluster:
        by_cluster: dict[str, list[str]] = defaultdict(list)
        for cluster, node in free:
            by_cluster[cluster].append(node)
        return next((nodes[: need.count] for nodes in by_cluster.values() if len(nodes) >= need.count), None)
    return None


def fit(gantt: Gantt, needs: list[PartNeed], start: float, end: float) -> list[str] | None:
    """Nodes serving every part over [start, end), or None."""
    used: set[str] = set()
    chosen: list[str] = []
    for need in needs:
        nodes = _pick(gantt, need, used, start, end)
        if nodes is None:
            return None
        used.update(nodes)
        chosen.extend(nodes)
    return chosen


def earliest(gantt: Gantt, needs: list[PartNeed], walltime: float, not_before: float) -> tuple[float, list[str]]:
    """Earliest start >= not_before; the start is always found once every interval has ended."""
    for start in [not_before, *gantt.boundaries(not_before)]:
        nodes = fit(gantt, needs, start, start + walltime)
        if nodes is not None:
            return start, nodes
    raise ValueError("requirement cannot be satisfied even on an empty gantt")
