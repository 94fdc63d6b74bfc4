"""The scheduler on Ray: build wall against the critical path with N actors and a fixed chunk latency.

`.venv/bin/python bench/ray_scheduler.py [--quick]` (also run by `make bench`): starts a private
Ray cluster (ray.init(address="local")), builds a project of independent chains with the test
backend (LTXFLOW_TEST_BACKEND sleep=L) through N actors, and prints a markdown section for
bench/RESULTS.md. The critical path is the build's own order played with one unit per chunk
(ltxflow/plan/spread.py), times the measured per-chunk latency."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import WORK, SceneSpec, write_project, write_song  # noqa: E402


class Events:
    def __init__(self):
        self.all: list[dict] = []
        self.t0 = time.monotonic()

    def event(self, name: str, **f) -> None:
        self.all.append({"event": name, "t": time.monotonic() - self.t0, **f})

    def close(self) -> None:
        pass


def main(quick: bool) -> str:
    import ray

    from ltxflow.build import BuildOptions, build
    from ltxflow.plan.spread import makespan

    chains, per_chain, actors, sleep, runs = (3, 3, 2, 0.5, 1) if quick else (5, 6, 4, 2.0, 2)
    frames, fps = 17, 24
    base = WORK / "ray-scheduler"
    shutil.rmtree(base, ignore_errors=True)
    scene_frames = frames + (frames - 1) * (per_chain - 1)
    song = base / "song.wav"
    write_song(song, chains * scene_frames / fps)
    scenes = [SceneSpec(f"chain{i}", None if i == chains - 1 else (i + 1) * scene_frames / fps, i + 1)
              for i in range(chains)]
    proj = write_project(base / "project", "raybench", song, scenes, resolution="128x64", max_frames=frames)
    proj.write_text(proj.read_text().replace("\nscenes:", f"\nray: {{actors: {actors}}}\nscenes:", 1))
    os.environ["LTXFLOW_TEST_BACKEND"] = f"sleep={sleep}"
    t0 = time.monotonic()
    ray.init(address="local", num_cpus=actors, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", object_store_memory=200 << 20)
    start_s = time.monotonic() - t0
    rows = []
    try:
        for _ in range(runs):
            rep = Events()
            result = build(proj, BuildOptions(backend="test", cache_dir=base / "cache", ray="local"), rep)
            shutil.rmtree(base / "cache", ignore_errors=True)
            assert result.ok, result.outcomes
            done = [e for e in rep.all if e["event"] == "chunk_done"]
            started = [e for e in rep.all if e["event"] == "chunk_started"]
            latency = statistics.fmean(e["seconds"] for e in done)
            order = [n for n in result.outcomes]
            plan_parents = {n: None for n in order}  # filled below from the chunk records
            for n, o in result.outcomes.items():
                plan_parents[n] = o.value.entry.record.chains_from
            units = makespan(order, plan_parents, actors)
            phase = max(e["t"] for e in done) - min(e["t"] for e in started)
            build_s = next(e["seconds"] for e in rep.all if e["event"] == "build_done")
            rows.append((latency, units, phase, build_s, len(done)))
    finally:
        ray.shutdown()
    lat = statistics.median(r[0] for r in rows)
    units = rows[0][1]
    critical = units * lat
    phase = statistics.median(r[2] for r in rows)
    build_s = statistics.median(r[3] for r in rows)
    return "\n".join([
        "## 8. Scheduler on Ray", "",
        f"`bench/ray_scheduler.py{' --quick' if quick else ''}`: the test backend (sleep={sleep}) through {actors} "
        f"Ray actors of a private cluster (ray.init(address=\"local\"), started in {start_s:.1f} s, not counted), "
        f"{chains} independent chains of {per_chain} chunks ({rows[0][4]} chunks), 128x64, cold cache; "
        f"{runs} run{'s' if runs > 1 else ''}, medians.", "",
        "| what | seconds | vs. critical path |", "|---|---|---|",
        f"| per-chunk latency L (mean chunk_done `seconds`) | {lat:.2f} | |",
        f"| critical path: the build's order on {actors} workers, {units} chunk-times x L | {critical:.2f} | 1.000x |",
        f"| render phase: first chunk_started .. last chunk_done | {phase:.2f} | {phase / critical:.3f}x |",
        f"| build_done `seconds` (actors started, planning, stitch, cluster calls) | {build_s:.2f} | "
        f"{build_s / critical:.3f}x |", "",
        f"Target: render phase within 1.1x of the critical path: "
        f"**{'met' if phase / critical <= 1.1 else 'not met'}** ({phase / critical:.3f}x).", ""])


if __name__ == "__main__":
    print(main("--quick" in sys.argv))
