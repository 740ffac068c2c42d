"""Whole-node placement on a per-site gantt, used for FIFO with conservative backfilling.

A job's requirement lists, per `+` part, the nodes that may serve it; placement looks for the earliest
start where every part finds enough nodes free for the whole walltime.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import Counter, defaultdict
from dataclasses import dataclass

from g5kdeploy.simulator.oarsub import ALL


@dataclass(frozen=True)
class PartNeed:
    """`count` nodes (ALL = every candidate) taken from `candidates`, ordered (cluster, fqdn) pairs."""

    candidates: tuple[tuple[str, str], ...]
    count: int
    same_cluster: bool = False


class Gantt:
    """Busy intervals per node fqdn; intervals are half-open [start, end).

    The interval ends are kept sorted as intervals come and go: they are the candidate starts of every
    placement, and sorting them again for each one made scheduling quadratic in the number of jobs.
    """

    def __init__(self) -> None:
        self.busy: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self._end_count: Counter[float] = Counter()
        self.ends: list[float] = []

    def add(self, nodes: list[str], start: float, end: float) -> None:
        for node in nodes:
            self.busy[node].append((start, end))
        if nodes:
            if not self._end_count[end]:
                insort(self.ends, end)
            self._end_count[end] += len(nodes)

    def remove(self, nodes: list[str], start: float, end: float) -> None:
        """Undo an `add` of the same interval."""
        for node in nodes:
            self.busy[node].remove((start, end))
        if nodes:
            self._end_count[end] -= len(nodes)
            if not self._end_count[end]:
                del self._end_count[end]
                del self.ends[bisect_left(self.ends, end)]

    def is_free(self, node: str, start: float, end: float) -> bool:
        return all(e <= start or s >= end for s, e in self.busy.get(node, ()))

    def boundaries(self, after: float) -> list[float]:
        return self.ends[bisect_right(self.ends, after) :]


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


def grows_monotonically(needs: list[PartNeed]) -> bool:
    """Whether fewer free nodes can never make `needs` fit where it did not.

    True unless a `cluster=1` part shares the request with other parts: with fewer free nodes it may pick
    another cluster and leave the next part the nodes it lacked.
    """
    return len(needs) == 1 or not any(need.same_cluster for need in needs)


class Planner:
    """`earliest` for waiting jobs placed one after another on a gantt that only grows meanwhile.

    Exact shortcut for a one-part request of `count` nodes: a busier gantt never lets it start earlier, and
    at the start where the previous identical request (same part, same walltime) found its nodes, the
    candidates it skipped are still busy. So the next identical request resumes where that one stopped
    instead of testing every earlier start and node again, which is what FIFO of many alike jobs costs.
    """

    def __init__(self, gantt: Gantt) -> None:
        self.gantt = gantt
        self._resume: dict[tuple[PartNeed, float], tuple[float, int]] = {}

    def place(self, needs: list[PartNeed], walltime: float, not_before: float) -> tuple[float, list[str]]:
        if len(needs) != 1 or needs[0].count == ALL or needs[0].same_cluster:
            return earliest(self.gantt, needs, walltime, not_before)
        need = needs[0]
        key = (need, walltime)
        low, first = self._resume.get(key, (not_before, 0))
        ends = self.gantt.ends
        index = bisect_right(ends, not_before) if low == not_before else bisect_left(ends, low)
        starts = ([not_before] if low == not_before else []) + ends[index:]
        is_free = self.gantt.is_free
        for start in starts:
            end = start + walltime
            chosen: list[str] = []
            for position in range(first, len(need.candidates)):
                node = need.candidates[position][1]
                if is_free(node, start, end):
                    chosen.append(node)
                    if len(chosen) == need.count:
                        self._resume[key] = (start, position + 1)
                        return start, chosen
            first = 0
        raise ValueError("requirement cannot be satisfied even on an empty gantt")
