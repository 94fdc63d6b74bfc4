"""The DAG runner: order, parallelism, failure isolation, priorities."""

from __future__ import annotations

import threading
import time

import pytest

from ltxflow.execute.executor import Cancelled, run_dag


def chains(n_chains: int, length: int) -> tuple[list[str], dict[str, str | None]]:
    order, parent = [], {}
    for c in range(n_chains):
        for i in range(length):
            node = f"c{c}.{i}"
            order.append(node)
            parent[node] = f"c{c}.{i - 1}" if i else None
    return order, parent


def test_runs_parents_first_and_in_parallel():
    order, parent = chains(3, 3)
    lock = threading.Lock()
    running, peak = [0], [0]
    # The three chain heads wait for each other: the run finishes only if all three run at once
    # (a runner with fewer workers breaks the barrier after its timeout, failing those nodes).
    heads = threading.Barrier(3, timeout=10)

    def work(node, done):
        with lock:
            assert parent[node] is None or done[parent[node]].state == "ok"
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if parent[node] is None:
            heads.wait()
        with lock:
            running[0] -= 1
        return node.upper()

    out = run_dag(order, parent, work, jobs=3)
    assert {n: (o.state, o.value) for n, o in out.items()} == {n: ("ok", n.upper()) for n in order}
    assert peak[0] == 3


def test_never_runs_more_than_jobs_at_once():
    order, parent = chains(4, 2)
    lock = threading.Lock()
    running, peak = [0], [0]
    both = threading.Barrier(2, timeout=10)

    def work(node, done):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if node in ("c0.0", "c1.0"):  # the first two hold each other, so a third would start meanwhile
            both.wait()
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return node

    out = run_dag(order, parent, work, jobs=2)
    assert all(o.state == "ok" for o in out.values()) and len(out) == 8
    assert peak[0] == 2


def test_failure_skips_only_what_depends_on_it():
    order, parent = chains(2, 3)

    def work(node, done):
        if node == "c0.1":
            raise RuntimeError("boom")
        return node

    out = run_dag(order, parent, work, jobs=2)
    assert out["c0.0"].state == "ok" and out["c0.1"].state == "failed" and out["c0.1"].error == "boom"
    assert out["c0.2"].state == "skipped" and "c0.1" in out["c0.2"].error
    assert all(out[f"c1.{i}"].state == "ok" for i in range(3))


def test_longest_remaining_chain_goes_first():
    # Ready nodes start by the work still below them, then timeline order: with one worker the
    # chains advance round-robin instead of the first chain running to its end while the others
    # wait (which, on 4 workers with 5 chains of 6, took 11 rounds instead of ceil(30/4) = 8).
    order, parent = chains(5, 6)
    started: list[str] = []

    def work(node, done):
        started.append(node)
        return node

    run_dag(order, parent, work, jobs=1)
    assert started[:7] == ["c0.0", "c1.0", "c2.0", "c3.0", "c4.0", "c0.1", "c1.1"]
    # A lone chunk earlier on the timeline waits for the head of a long chain.
    order, parent = chains(1, 4)
    order.insert(0, "solo")
    parent["solo"] = None
    started.clear()
    run_dag(order, parent, work, jobs=1)
    assert started == ["c0.0", "c0.1", "c0.2", "solo", "c0.3"]  # ties go in timeline order


def test_keyboard_interrupt_cancels_what_has_not_started():
    order, parent = chains(1, 5)
    stop = threading.Event()

    def work(node, done):
        if node == "c0.2":
            raise KeyboardInterrupt
        return node

    with pytest.raises(Cancelled) as exc:
        run_dag(order, parent, work, jobs=1, stop=stop)
    assert stop.is_set()
    assert set(exc.value.outcomes) == {"c0.0", "c0.1"}


def test_nodes_of_the_group_started_last_go_first():
    """Backend local keeps one LoRA set's models loaded: independent chunks sharing it run together."""
    order = ["a.0", "b.0", "c.0", "d.0", "e.0", "e.1"]
    parent = {n: None for n in order} | {"e.1": "e.0"}
    lora = {"a.0": "x", "b.0": "y", "c.0": "x", "d.0": "y", "e.0": "x", "e.1": "y"}
    started: list[str] = []
    run_dag(order, parent, lambda n, done: started.append(n), jobs=1, group=lora.__getitem__)
    # e.0 has a chunk below it, so it starts first (critical path); then its group, x, runs out
    # before y starts, and e.1 joins y's run.
    assert started == ["e.0", "a.0", "c.0", "b.0", "d.0", "e.1"]
    runs = sum(1 for i in range(1, len(started)) if lora[started[i]] != lora[started[i - 1]])
    assert runs == 1
    started.clear()
    run_dag(order, parent, lambda n, done: started.append(n), jobs=1)
    assert started == ["e.0", "a.0", "b.0", "c.0", "d.0", "e.1"]  # without groups: timeline order


def test_an_interrupt_keeps_what_running_nodes_finished_and_drops_what_gave_up():
    """Running nodes see `stop` and end: one that still succeeded (its chunk is cached) counts;
    one that gave up is neither done nor failed; one not started never runs."""
    order = ["boom", "finishes", "gives_up", "never"]
    parent: dict[str, str | None] = {n: None for n in order}
    stop = threading.Event()
    started, failures = [], []

    def work(node, done):
        started.append(node)
        if node == "boom":
            time.sleep(0.2)  # the other two are running by now
            raise KeyboardInterrupt
        assert stop.wait(30)
        if node == "gives_up":
            raise RuntimeError("stopped")
        return node

    with pytest.raises(Cancelled) as exc:
        run_dag(order, parent, work, jobs=3, stop=stop, on_failure=lambda n, e: failures.append(n) or str(e))
    assert {n: o.state for n, o in exc.value.outcomes.items()} == {"finishes": "ok"}
    assert failures == [] and "never" not in started
