"""How a plan's chains spread over N workers: the build's own order (most work below first) played
out with one time unit per chunk, for `plan --ray` and the scheduler benchmark."""

from __future__ import annotations

import heapq
from typing import Mapping


def makespan(order: list[str], parent: Mapping[str, str | None], workers: int) -> int:
    """Chunk-times a build of `order` (a topological order; `parent` None: a chain's start) takes
    with `workers` chunks at once when every chunk takes one unit, scheduled as the executor
    does (ltxflow/execute/executor.py: most chunks below first, then timeline order). Never below
    the longest chain nor ceil(chunks / workers)."""
    children: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        p = parent.get(n)
        if p in children:
            children[p].append(n)
    below: dict[str, int] = {}
    for n in reversed(order):
        below[n] = 1 + max((below[c] for c in children[n]), default=0)
    rank = {n: (-below[n], i) for i, n in enumerate(order)}
    ready = [rank[n] + (n,) for n in order if parent.get(n) not in children]
    heapq.heapify(ready)
    running: list[tuple[int, str]] = []  # (finish time, node)
    now = 0
    while ready or running:
        while ready and len(running) < max(1, workers):
            node = heapq.heappop(ready)[-1]
            heapq.heappush(running, (now + 1, node))
        now, node = heapq.heappop(running)
        for child in children[node]:
            heapq.heappush(ready, rank[child] + (child,))
    return now

