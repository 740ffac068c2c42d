"""Whole-node placement on a per-site gantt, used for FIFO with conservative backfilling.

A job's requirement lists, per `+` part, the nodes that may serve it; placement looks for the earliest
start where every part finds enough nodes free for the whole walltime.
"""

from __future__ import annotations

import heapq
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
    """Places waiting jobs one after another, each as `earliest` would, on a gantt that only grows meanwhile.

    Exact shortcuts for one-part requests of whole nodes, which is what a FIFO of many alike jobs is made
    of. One node: a node's earliest start is the first gap of its own long enough for the walltime (its
    start is `not_before` or the end of one of the node's intervals, so it is one of `earliest`'s candidate
    starts), and the job takes the node with the smallest (earliest start, candidate position); a heap of
    them serves a run of alike requests, and only the chosen node's entry changes after each one. Several
    nodes: a busier gantt never lets a request start earlier, and at the start where the previous alike
    request found its nodes, the candidates it skipped are still busy, so the next one resumes there.
    """

    def __init__(self, gantt: Gantt) -> None:
        self.gantt = gantt
        # Alike requests are the same PartNeed object (the job book shares them) with the same walltime.
        self._resume: dict[tuple[int, float], tuple[float, int]] = {}
        # The heap of (earliest start, candidate position) of a run of alike one-node requests, valid while
        # nothing else is placed.
        self._heap_key: tuple[int, float] | None = None
        self._heap: list[tuple[float, int]] = []

    def place(self, needs: list[PartNeed], walltime: float, not_before: float) -> tuple[float, list[str]]:
        """Where the next job goes; its nodes are then busy in the gantt."""
        if len(needs) == 1 and needs[0].count == 1 and not needs[0].same_cluster:
            return self._place_one(needs[0], walltime, not_before)
        self._heap_key = None
        if len(needs) != 1 or needs[0].count == ALL or needs[0].same_cluster:
            start, nodes = earliest(self.gantt, needs, walltime, not_before)
        else:
            start, nodes = self._place_several(needs[0], walltime, not_before)
        self.gantt.add(nodes, start, start + walltime)
        return start, nodes

    def _free_from(self, node: str, walltime: float, not_before: float) -> float:
        start = not_before
        for busy_from, busy_to in sorted(self.gantt.busy.get(node, ())):
            if busy_from >= start + walltime:
                break
            start = max(start, busy_to)
        return start

    def _place_one(self, need: PartNeed, walltime: float, not_before: float) -> tuple[float, list[str]]:
        key = (id(need), walltime)
        if self._heap_key != key:
            self._heap = [
                (self._free_from(node, walltime, not_before), position)
                for position, (_, node) in enumerate(need.candidates)
            ]
            heapq.heapify(self._heap)
            self._heap_key = key
        start, position = heapq.heappop(self._heap)
        node = need.candidates[position][1]
        self.gantt.add([node], start, start + walltime)
        heapq.heappush(self._heap, (self._free_from(node, walltime, not_before), position))
        return start, [node]

    def _place_several(self, need: PartNeed, walltime: float, not_before: float) -> tuple[float, list[str]]:
        key = (id(need), walltime)
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
