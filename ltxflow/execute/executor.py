"""Runs work over a DAG with a worker pool: each node starts as soon as the node it depends on is
done; a failure stops only what depends on it; Ctrl-C cancels what has not started."""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, Literal, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    node: str
    state: Literal["ok", "failed", "skipped"]
    value: T | None = None
    error: str | None = None
    seconds: float = 0.0


class Cancelled(Exception):
    """The run was interrupted; `outcomes` holds what finished before."""

    def __init__(self, outcomes: dict[str, Outcome]):
        super().__init__("interrupted")
        self.outcomes = outcomes


def run_dag(order: list[str], parent: dict[str, str | None], work: Callable[[str, dict[str, Outcome]], T],
            jobs: int, *, on_failure: Callable[[str, BaseException], str] = lambda n, e: str(e),
            on_skip: Callable[[str, str], None] = lambda n, why: None,
            stop: threading.Event | None = None,
            group: Callable[[str], Hashable] | None = None) -> dict[str, Outcome]:
    """Run `work(node, outcomes_so_far)` for every node of `order` (a topological order), each
    after its parent (None: no parent) succeeded, at most `jobs` at once.

    A node whose parent failed or was skipped is skipped, with the reason. `on_failure` turns an
    exception into the message recorded for it. KeyboardInterrupt cancels every node not yet
    started, sets `stop` (running work is expected to watch it and give up at once), waits for
    running nodes to end, and raises Cancelled with the outcomes so far: a running node that
    still succeeded counts, one that raised is left out (given up, neither failed nor done).

    `group(node)`, when given, names what a node shares with others (backend local: the LoRA set
    its models are built with): among ready nodes, those of the group started last go first."""
    stop = stop or threading.Event()
    outcomes: dict[str, Outcome] = {}
    children: dict[str, list[str]] = {n: [] for n in order}
    waiting = {n for n in order if parent.get(n) in children}
    for n in order:
        p = parent.get(n)
        if p in children:
            children[p].append(n)
    ready = [n for n in order if n not in waiting]
    # Longest run of work still below each node (itself included): starting the nodes with the
    # most below them first keeps every chain moving and the build on its critical path.
    below: dict[str, int] = {}
    for n in reversed(order):
        below[n] = 1 + max((below[c] for c in children[n]), default=0)
    priority = {n: (-below[n], i) for i, n in enumerate(order)}
    running: dict[Future, tuple[str, float]] = {}
    last_group: list[Hashable] = []

    def skip_below(node: str, why: str) -> None:
        for child in children[node]:
            waiting.discard(child)
            outcomes[child] = Outcome(child, "skipped", error=why)
            on_skip(child, why)
            skip_below(child, f"depends on {node}, which was skipped")

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="ltxflow") as pool:
        try:
            while ready or running:
                while ready and len(running) < jobs:
                    ready.sort(key=priority.__getitem__)  # most work below first, then timeline order
                    same = [n for n in ready if last_group and group is not None and group(n) == last_group[0]]
                    node = same[0] if same else ready[0]
                    ready.remove(node)
                    if group is not None:
                        last_group[:] = [group(node)]
                    running[pool.submit(work, node, outcomes)] = (node, time.monotonic())
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    node, t0 = running[fut]
                    seconds = time.monotonic() - t0
                    exc = fut.exception()
                    if exc is None:
                        outcomes[node] = Outcome(node, "ok", fut.result(), seconds=seconds)
                        for child in children[node]:
                            waiting.discard(child)
                            ready.append(child)
                    else:
                        if isinstance(exc, KeyboardInterrupt):
                            del running[fut]
                            raise exc
                        outcomes[node] = Outcome(node, "failed", error=on_failure(node, exc), seconds=seconds)
                        skip_below(node, f"depends on {node}, which failed")
                    del running[fut]  # only now: an interrupt before this still finds the node running
        except KeyboardInterrupt:
            stop.set()
            for fut in running:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            for fut, (node, t0) in running.items():  # what ended while stopping: done work counts
                if node not in outcomes and not fut.cancelled() and fut.exception() is None:
                    outcomes[node] = Outcome(node, "ok", fut.result(), seconds=time.monotonic() - t0)
            raise Cancelled(outcomes) from None
    return outcomes
