"""Builds on a Ray cluster (--ray): one real cluster for the session, a head and two worker nodes
(ray.cluster_utils.Cluster, fake GPUs), builds run in this process against it. Skips when Ray is
not installed, unless LTXFLOW_REQUIRE_LOCAL=1 (as `make test` sets), where it fails."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_build import LTXFLOW, make_project

if importlib.util.find_spec("ray") is None:
    if os.environ.get("LTXFLOW_REQUIRE_LOCAL") == "1":
        raise RuntimeError("LTXFLOW_REQUIRE_LOCAL=1 but Ray is not installed: pip install -e '.[ray]'")
    pytest.skip("the Ray tests need the [ray] extra", allow_module_level=True)

from ltxflow.build import BuildOptions, build  # noqa: E402
from ltxflow.errors import Interrupted  # noqa: E402
from ltxflow.plan.spread import makespan  # noqa: E402

NODE = {"num_cpus": 2, "num_gpus": 1, "object_store_memory": 80 << 20}
# A node that dies is noticed in about 2 s instead of Ray's default 30 or so.
FAST_DEATH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_timeout_ms": 500,
              "health_check_failure_threshold": 3}


@pytest.fixture(scope="session")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0, "include_dashboard": False,
                                                      "object_store_memory": 80 << 20, "_system_config": FAST_DEATH})
    c.add_node(**NODE)
    c.add_node(**NODE)
    ray.init(address=c.address, log_to_driver=False, logging_level="WARNING")
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


class Events:
    """A reporter that keeps the events (and may act on one as it comes)."""

    def __init__(self, on=None):
        self.all: list[dict] = []
        self.on = on

    def event(self, name: str, **fields) -> None:
        self.all.append({"event": name, **fields})
        if self.on:
            self.on(name, fields)

    def close(self) -> None:
        pass

    def of(self, name: str) -> list[dict]:
        return [e for e in self.all if e["event"] == name]


def run(project: Path, cache: str, on=None, **opts):
    rep = Events(on)
    result = build(project, BuildOptions(cache_dir=project.parent / cache, **opts), rep)
    return result, rep


def clips(result) -> dict[str, tuple[str, dict]]:
    """Each chunk's key and its normalized clips' digests, as its cache record has them."""
    return {n: (o.value.entry.record.key, dict(o.value.entry.record.variants)) for n, o in result.outcomes.items()}


def all_free(ray, timeout: float = 10) -> bool:
    """Every CPU and GPU of the cluster is free again (no actor holds one)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        total, free = ray.cluster_resources(), ray.available_resources()
        if all(free.get(k, 0) == total.get(k, 0) for k in ("CPU", "GPU")):
            return True
        time.sleep(0.2)
    return False


def test_preview_spreads_over_both_nodes_and_matches_a_build_without_ray(cluster, tmp_path):
    import ray

    project = make_project(tmp_path, extra="ray: {actors: 2}")
    plain, _ = run(project, "cache-plain")
    result, rep = run(project, "cache-ray", ray=cluster.address)
    assert result.ok and result.counts["failed"] == 0
    placed = rep.of("chunk_placed")
    assert {e["chunk"] for e in placed} == set(result.outcomes)  # the log names node and actor of every chunk
    assert len({e["node"] for e in placed}) == 2 and len({e["actor"] for e in placed}) == 2
    assert rep.of("cluster_ready")[0]["actors"] == 2
    assert clips(result) == clips(plain)  # the same keys, the same normalized clips, byte for byte
    assert all_free(ray)


def test_test_backend_survives_a_node_removed_mid_build(cluster, tmp_path, monkeypatch):
    import ray

    monkeypatch.setenv("LTXFLOW_TEST_BACKEND", "sleep=2.5")
    project = make_project(tmp_path, extra="ray: {actors: 2}")
    plain, _ = run(project, "cache-plain", backend="test")
    victim = sorted(cluster.worker_nodes, key=lambda n: n.unique_id)[0]
    removed = threading.Event()

    nodes: set[str] = set()  # the nodes that ran a chunk (chunk_placed comes as a chunk's call returns)
    flying = {"started": 0, "placed": 0}
    lock = threading.Lock()

    def kill_a_node(name, fields):  # once both actors' nodes are known and both run a chunk (2.5 s), one goes
        with lock:
            if name == "chunk_placed":
                nodes.add(fields["node"])
            if name in ("chunk_started", "chunk_placed"):
                flying[name.removeprefix("chunk_")] += 1
            if name != "chunk_started" or len(nodes) < 2 or flying["started"] - flying["placed"] < 2 \
                    or removed.is_set():
                return
            removed.set()
            threading.Timer(0.8, cluster.remove_node, (victim,), {"allow_graceful": False}).start()

    try:
        result, rep = run(project, "cache-ray", on=kill_a_node, backend="test", ray=cluster.address)
        assert removed.is_set()
        assert result.ok and result.counts["rendered"] == len(plain.outcomes), rep.of("chunk_failed")
        assert rep.of("chunk_requeued"), "no chunk was running on the removed node"
        assert {e["chunk"] for e in rep.of("chunk_placed")} == set(result.outcomes)  # none lost
        assert clips(result) == clips(plain)
    finally:
        cluster.add_node(**NODE)  # the next tests get two worker nodes again
        cluster.wait_for_nodes()
    assert all_free(ray)


def test_lora_sets_stay_on_their_actors(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("LTXFLOW_TEST_BACKEND", "sleep=0.3")
    (tmp_path / "loras").mkdir()
    for name in ("a", "b"):
        header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                             "__metadata__": {"name": name}}).encode()
        (tmp_path / "loras" / f"{name}.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    scenes = """
  - id: inka
    end: 3
    prompt: "chain with LoRA a"
    image: keyframes/a.png
    loras: [{path: loras/a.safetensors}]
  - id: inkb
    prompt: "chain with LoRA b"
    image: keyframes/b.png
    loras: [{path: loras/b.safetensors}]
"""
    project = make_project(tmp_path, extra="ray: {actors: 2}", scenes=scenes)
    result, rep = run(project, "cache", backend="test", ray=cluster.address)
    assert result.ok
    sets: dict[str, set[str]] = {}
    for e in rep.of("chunk_placed"):
        sets.setdefault(e["actor"], set()).add(e["chunk"].split(".")[0])
    assert len(sets) == 2 and all(len(s) == 1 for s in sets.values()), sets  # each actor kept its LoRA set
    assert sum(1 for e in rep.of("chunk_placed")) == len(result.outcomes) >= 4


def test_ctrl_c_cancels_the_calls_and_leaves_no_actor(cluster, tmp_path, monkeypatch):
    import ray

    monkeypatch.setenv("LTXFLOW_TEST_BACKEND", "sleep=60")
    project = make_project(tmp_path, extra="ray: {actors: 2}")
    started = threading.Event()
    sent: list[float] = []

    def interrupt():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C

    def ctrl_c(name, fields):
        if name == "chunk_started" and not started.is_set():
            started.set()
            threading.Timer(1.0, interrupt).start()

    with pytest.raises(Interrupted):
        run(project, "cache", on=ctrl_c, backend="test", ray=cluster.address)
    assert time.monotonic() - sent[0] < 20  # 60 s chunks: given up, not waited for
    assert all_free(ray)


def test_an_actor_removes_the_scratch_of_actors_that_died(tmp_path):
    """An actor killed while busy leaves its scratch folder (its inputs, LoRAs included); the next
    actor on the node removes those whose process is gone, and no other."""
    from ltxflow.cluster.actor import SCRATCH, sweep_scratch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{SCRATCH}{dead.pid}-abc"
    live = tmp_path / f"{SCRATCH}{os.getpid()}-def"
    other = tmp_path / "ltxflow-actor-notapid-x"
    for d in (stale, live, other):
        (d / "chunk-1").mkdir(parents=True)
        (d / "chunk-1" / "lora.safetensors").write_bytes(b"x" * 1000)
    assert sweep_scratch(tmp_path) == [stale]
    assert not stale.exists() and live.is_dir() and other.is_dir()


def test_a_normal_build_and_plan_never_import_ray(tmp_path):
    project = make_project(tmp_path)
    code = ("import sys; from ltxflow.cli import main; "
            f"rc = [main(['plan', {str(project)!r}]), main(['build', {str(project)!r}, '-q'])]; "
            "assert rc == [0, 0], rc; assert 'ray' not in sys.modules, 'ray was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "LTXFLOW_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr


def test_plan_shows_the_cluster_and_the_spread(cluster, tmp_path):
    project = make_project(tmp_path)
    r = subprocess.run([str(LTXFLOW), "plan", str(project), "--ray", cluster.address], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path, env={**os.environ, "LTXFLOW_CACHE_DIR": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("ray ")][0]
    assert "2 GPUs" in line and "4 CPUs" in line and "4 actors" in line, line


def test_a_hosted_backend_is_not_sent_to_ray(tmp_path):
    """fal renders on fal's servers and journals its requests in this machine's cache: --ray is
    refused (exit 2) before any cluster is joined or request made."""
    project = make_project(tmp_path)
    r = subprocess.run([str(LTXFLOW), "build", str(project), "--backend", "fal", "--ray", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={**os.environ, "FAL_KEY": "", "LTXFLOW_CACHE_DIR": str(tmp_path / "c")})
    assert r.returncode == 2 and "backend fal renders on its own servers" in r.stderr, r.stderr


def test_doctor_joins_the_cluster_a_build_would_use(cluster, tmp_path):
    """`ltxflow doctor --online` with LTXFLOW_RAY_ADDRESS: it joins (in a child process) and says
    what the cluster has."""
    r = subprocess.run([str(LTXFLOW), "doctor", "--online", "--json"], capture_output=True, text=True, timeout=180,
                       cwd=tmp_path, env={**os.environ, "LTXFLOW_RAY_ADDRESS": cluster.address})
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["Ray"]["ok"] is True, checks["Ray"]
    assert "joined: 3 nodes, 2 GPUs, 4 CPUs" in checks["Ray"]["detail"], checks["Ray"]


def test_plan_and_build_say_when_no_actor_can_run(cluster, tmp_path):
    from ltxflow.cluster import RaySettings
    from ltxflow.cluster.pool import actor_count, no_actor_reason
    from ltxflow.errors import BackendUnavailable

    gpuless = {"nodes": 1, "gpus": 0, "cpus": 4}
    assert actor_count("local", gpuless, RaySettings("auto")) == 0
    assert no_actor_reason("local", gpuless, RaySettings("auto")) == \
        "no actor can run here: the cluster has 0 GPUs for backend local (one actor per GPU)"
    project = make_project(tmp_path, extra="ray: {cpus_per_actor: 8}")  # the cluster has 4 CPUs
    r = subprocess.run([str(LTXFLOW), "plan", str(project), "--ray", cluster.address], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path,
                       env={**os.environ, "LTXFLOW_CACHE_DIR": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("ray ")][0]
    assert line.endswith("4 CPUs; no actor can run here: the cluster has 4 CPUs for backend preview, and each "
                         "actor reserves 8 (ray: cpus_per_actor)"), line
    assert "None" not in line
    with pytest.raises(BackendUnavailable, match="no actor can run here: the cluster has 4 CPUs"):
        run(project, "cache", ray=cluster.address)


@pytest.mark.parametrize("backend, actors, cpus_per_actor, expected", [
    ("local", None, 1.0, 2), ("local", 1, 1.0, 1), ("local", 8, 1.0, 2), ("preview", None, 1.0, 4),
    ("preview", 8, 1.0, 4), ("preview", 8, 2.0, 2), ("test", 3, 1.0, 3),
])
def test_actor_count_never_exceeds_what_the_cluster_holds(backend, actors, cpus_per_actor, expected):
    """An actor Ray cannot place waits forever, and the build's preflight with it: `ray: actors`
    above the cluster's GPUs (local) or CPUs (preview, test) is cut down to what fits."""
    from ltxflow.cluster import RaySettings
    from ltxflow.cluster.pool import actor_count

    info = {"nodes": 3, "gpus": 2, "cpus": 4}
    assert actor_count(backend, info, RaySettings("auto", actors=actors, cpus_per_actor=cpus_per_actor)) == expected


def test_a_transient_error_in_an_actor_is_retried_by_the_build(cluster, tmp_path, monkeypatch):
    """The backend's BackendError crosses the actor boundary with its `transient` flag: the build
    retries the chunk (chunk_retry) and finishes; a lasting failure fails its chunk alone."""
    monkeypatch.setenv("LTXFLOW_TEST_BACKEND", "transient=intro.0:1,fail=outro.0")
    project = make_project(tmp_path, extra="ray: {actors: 1}")
    result, rep = run(project, "cache", backend="test", ray=cluster.address, backoff_s=0.01)
    assert [e["chunk"] for e in rep.of("chunk_retry")] == ["intro.0"], rep.all
    assert "simulated transient failure" in rep.of("chunk_retry")[0]["error"]
    assert result.outcomes["intro.0"].state == "ok"
    assert result.outcomes["outro.0"].state == "failed" and "simulated failure" in result.outcomes["outro.0"].error
    assert not rep.of("chunk_requeued")  # an error raised by the backend is not an actor's death


@pytest.mark.parametrize("chains, workers, expected", [
    ([4], 1, 4), ([4], 3, 4), ([2, 2, 2, 2], 2, 4), ([5, 1, 1, 1], 2, 5), ([3, 3, 1, 1], 2, 4), ([1] * 7, 3, 3),
])
def test_makespan_follows_the_longest_chain_first(chains, workers, expected):
    order, parent = [], {}
    for i, n in enumerate(chains):
        for k in range(n):
            order.append(f"s{i}.{k}")
            parent[f"s{i}.{k}"] = f"s{i}.{k - 1}" if k else None
    assert makespan(order, parent, workers) == expected


def test_shared_folder_carries_the_clips(cluster, tmp_path, monkeypatch):
    monkeypatch.delenv("LTXFLOW_TEST_BACKEND", raising=False)
    project = make_project(tmp_path, extra="ray: {actors: 2}")
    shared = tmp_path / "shared"
    result, rep = run(project, "cache", backend="test", ray=cluster.address, ray_shared=shared)
    assert result.ok and rep.of("cluster_ready")[0]["shared"] == str(shared)
    assert list(shared.iterdir()) == []  # each clip taken into the cache and removed
    for o in result.outcomes.values():
        raw = o.value.entry.dir / o.value.entry.record.raw
        assert hashlib.sha256(raw.read_bytes()).hexdigest() == o.value.entry.record.raw_sha256




@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """tests/test_local.py's tiny LTX-2.3 weights (built once in a separate process); skips without
    the [local] extra, unless LTXFLOW_REQUIRE_LOCAL=1, where it fails."""
    if importlib.util.find_spec("ltx_pipelines") is None:
        if os.environ.get("LTXFLOW_REQUIRE_LOCAL") == "1":
            pytest.fail("LTXFLOW_REQUIRE_LOCAL=1 but ltx-pipelines is not installed: pip install -e '.[local]'")
        pytest.skip("backend local needs the [local] extra")
    folder = tmp_path_factory.mktemp("ltx-weights")
    subprocess.run([sys.executable, str(Path(__file__).parent / "tinyltx.py"), str(folder / "models"),
                    str(folder / "style.safetensors")], check=True, capture_output=True, timeout=300)
    return folder


@pytest.mark.local
def test_local_backend_renders_in_gpu_actors_that_build_each_model_once(cluster, tmp_path, tiny_weights):
    """backend local on the cluster's two (fake) GPUs: one actor each (num_gpus=1, num_cpus=0), each
    hosting the local worker's Worker in its own process on the tiny weights (on the CPU here).
    Three chunks on two actors: one actor renders twice and still builds each model once."""
    import ray

    from test_build import media
    from test_local import TWO_CHAINS, local_project

    project = local_project(tmp_path, tiny_weights, TWO_CHAINS, seconds=3.0)
    result, rep = run(project, "cache", ray=cluster.address)
    assert result.ok and result.counts["failed"] == 0, rep.of("chunk_failed")
    ready = rep.of("cluster_ready")[0]
    assert ready["gpus"] == 2 and ready["actors"] == 2
    placed = {e["chunk"]: e for e in rep.of("chunk_placed")}
    assert set(placed) == set(result.outcomes) == {"one.0", "two.0", "two.1"}
    assert all(len(e["gpus"]) == 1 for e in placed.values())  # each actor holds one GPU of its own
    frames, (audio, rate) = media(tmp_path / "out" / "song.mp4")
    assert frames == 72 and len(audio) == 3 * rate
    by_actor: dict[str, list[dict]] = {}
    for name, o in sorted(result.outcomes.items()):
        rec = o.value.entry.record
        assert rec.details["ray_actor"] == placed[name]["actor"]
        assert rec.normalize["raw_frames"] == 25 and rec.normalize["deviations"] == []
        by_actor.setdefault(rec.details["ray_actor"], []).append(rec.details["model_builds"])
    assert len(by_actor) == 2 and sorted(len(b) for b in by_actor.values()) == [1, 2], by_actor
    for builds in by_actor.values():  # counted by each actor's Worker: every model built once there
        assert all(b == builds[0] for b in builds), builds
        assert builds[0]["transformer"] == 2 and builds[0]["text_encoder"] == 1
        assert builds[0]["video_encoder"] == 1 and builds[0]["video_decoder"] == 1
    # Exact: a chunk rendered by a worker process of this machine (no Ray) is the same clip, byte
    # for byte (one chunk only: the tiny weights take tens of seconds a chunk on 2 cores).
    plain, _ = run(project, "cache-plain", only=("one",))
    assert set(plain.outcomes) == {"one.0"}
    assert plain.outcomes["one.0"].value.entry.record.details.get("ray_actor") is None
    assert clips(plain)["one.0"] == clips(result)["one.0"]
    raw = [r.outcomes["one.0"].value.entry.record.raw_sha256 for r in (plain, result)]
    assert raw[0] == raw[1]
    assert all_free(ray)
