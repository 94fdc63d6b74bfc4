"""`backend: local` end to end: `ltxflow build` through Lightricks' real ltx-pipelines 1.0.0 classes on
tiny random LTX-2.3 weights (tests/tinyltx.py), on the CPU (or a GPU where one is present).

Marked `local`: `pytest -m local` runs exactly these. They need the [local] extra; without it they
skip, unless LTXFLOW_REQUIRE_LOCAL=1 (as `make test` sets), where they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_music, write_png
from test_build import ltx, media

pytestmark = pytest.mark.local

if importlib.util.find_spec("ltx_pipelines") is None:
    if os.environ.get("LTXFLOW_REQUIRE_LOCAL") == "1":
        raise RuntimeError("LTXFLOW_REQUIRE_LOCAL=1 but ltx-pipelines is not installed: pip install -e '.[local]'")
    pytest.skip("backend local needs the [local] extra", allow_module_level=True)

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """The tiny weights, built once in a separate process (ltx-core's Gemma config is global)."""
    folder = tmp_path_factory.mktemp("ltx-weights")
    subprocess.run([sys.executable, str(HERE / "tinyltx.py"), str(folder / "models"), str(folder / "style.safetensors")],
                   check=True, capture_output=True, timeout=300)
    return folder


def local_project(root: Path, weights: Path, scenes: str, seconds: float, extra: str = "") -> Path:
    write_music(root / "media" / "song.wav", seconds)
    write_png(root / "keyframes" / "a.png", (96, 48), (220, 60, 90))
    write_png(root / "keyframes" / "b.png", (96, 48), (40, 160, 220))
    (root / "loras").mkdir(parents=True, exist_ok=True)
    (root / "loras" / "style.safetensors").write_bytes((weights / "style.safetensors").read_bytes())
    # `models:` names a folder inside the project (a project cannot point outside it): the shared
    # tiny weights, hard-linked in rather than copied.
    shutil.copytree(weights / "models", root / "models", copy_function=_link_or_copy, dirs_exist_ok=True)
    path = root / "song.yaml"
    path.write_text(f"""version: 1
audio: media/song.wav
fps: 24
resolution: 128x64
backend: local
models: models
quality: low
chunking: {{max_frames: 25, boundaries: even, chain_offset: 0}}  # the chunk layout these tests count
defaults: {{steps: 8}}
{extra}
scenes:{scenes}""")
    return path


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


EVERY_PIPELINE = """
  - id: intro
    end: 1
    prompt: "a cat runs on the beach"
    image: keyframes/a.png
  - id: verse
    end: 2
    prompt: "the dog jumps over the sea"
    model: ltx-2.3-22b
    end_image: keyframes/b.png
  - id: bridge
    end: 3
    prompt: "red sky at night"
    audio_driven: false
    loras: [{path: loras/style.safetensors, scale: 0.7}]
  - id: outro
    prompt: "blue moon"
    audio_driven: false
    model: ltx-2.3-22b-distilled
    steps: null
"""


TWO_CHAINS = """
  - id: one
    end: 1
    prompt: "a red sun"
    image: keyframes/a.png
  - id: two
    prompt: "a blue moon"
    image: keyframes/b.png
"""


def build(project: Path, *extra: str, env: dict[str, str] | None = None):
    r = ltx("build", str(project), "--log-format", "json", *extra, cwd=project.parent, env=env)
    return r, [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def records(project: Path) -> dict[str, dict]:
    recs = [json.loads(p.read_text()) for p in (project.parent / "cache" / "chunks").glob("*/*/record.json")]
    return {r["chunk"]: r for r in recs}


def test_every_pipeline_renders_through_normalize_and_stitch(tmp_path, weights):
    project = local_project(tmp_path, weights, EVERY_PIPELINE, seconds=4.0)
    r, evs = build(project)
    assert r.returncode == 0, r.stderr
    frames, (audio, rate) = media(tmp_path / "out" / "song.mp4")
    assert frames == 96 and len(audio) == 4 * rate
    recs = records(project)
    assert set(recs) == {"intro.0", "verse.0", "bridge.0", "outro.0"}
    for rec in recs.values():
        assert rec["backend"] == "local" and rec["cost_usd"] == 0
        assert rec["normalize"]["raw_frames"] == 25 and rec["normalize"]["raw_size"] == [128, 64]
        assert rec["normalize"]["deviations"] == []
    # One worker rendered all four, on one device, and kept what it built: the text encoder
    # once; the dev and distilled checkpoints' decoders once each.
    assert len({e["pid"] for e in evs if e["event"] == "worker_started"}) == 1
    assert "float8_e4m3fn" not in recs["intro.0"]["details"]["transformer_dtypes"]
    builds = recs["outro.0"]["details"]["model_builds"]
    assert builds["text_encoder"] == 1 and builds["video_decoder"] == 2
    assert r.stderr == "" or "%|" not in r.stderr  # the pipelines' progress bars stay quiet


def test_weights_are_loaded_once_for_a_build_of_several_chunks(tmp_path, weights):
    scenes = """
  - id: long
    prompt: "the city at night, music loud"
    image: keyframes/a.png
"""
    project = local_project(tmp_path, weights, scenes, seconds=3.0)
    r, evs = build(project)
    assert r.returncode == 0, r.stderr
    recs = records(project)
    assert len(recs) == 3  # 72 frames in chunks of at most 25
    first, last = (recs[c]["details"]["model_builds"] for c in ("long.0", "long.2"))
    # Stage 1 (no LoRA) and stage 2 (the distilled LoRA fused) are built once and reused.
    assert first == last
    assert last["transformer"] == 2 and last["text_encoder"] == 1 and last["video_encoder"] == 1
    assert last["video_decoder"] == 1 and last["spatial_upsampler"] == 1 and last["audio_encoder"] == 1
    frames, _ = media(tmp_path / "out" / "song.mp4")
    assert frames == 72


def test_out_of_memory_fails_one_chunk_with_advice_and_the_worker_goes_on(tmp_path, weights):
    project = local_project(tmp_path, weights, TWO_CHAINS, seconds=2.0)
    r, evs = build(project, "--jobs", "1", env={"LTXFLOW_LOCAL_FAULT": "oom@red sun"})
    assert r.returncode == 1
    failed = [e for e in evs if e["event"] == "chunk_failed"]
    assert [e["chunk"] for e in failed] == ["one.0"]
    assert "out of memory" in failed[0]["error"] and "chunking.max_frames" in failed[0]["error"]
    assert [e["chunk"] for e in evs if e["event"] == "chunk_done"] == ["two.0"]
    assert len([e for e in evs if e["event"] == "worker_started"]) == 1  # the same worker went on


def test_missing_weights_are_named_with_where_they_are_published(tmp_path, weights):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "ltx-2.3-22b-dev.safetensors").write_bytes((weights / "models" / "ltx-2.3-22b-dev.safetensors").read_bytes())
    project = local_project(tmp_path / "p", weights, EVERY_PIPELINE, seconds=4.0)
    r, _ = build(project, "--models", str(partial))
    assert r.returncode == 2
    for name in ("ltx-2.3-22b-distilled-1.1.safetensors", "ltx-2.3-22b-distilled-lora-384-1.1.safetensors",
                 "ltx-2.3-spatial-upscaler-x2-1.1.safetensors", "gemma-3-12b-it-qat-q4_0-unquantized/",
                 "https://huggingface.co/Lightricks/LTX-2.3"):
        assert name in r.stderr, name
    assert "ltx-2.3-22b-dev.safetensors " not in r.stderr  # present: not listed
    r, _ = build(project, "--models", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_one_worker_per_gpu_and_the_chunks_fan_out(tmp_path, weights):
    """Two GPUs (LTXFLOW_GPUS names them; here the CPU stands in): two workers, each pinned with
    CUDA_VISIBLE_DEVICES, share the independent chains."""
    project = local_project(tmp_path, weights, TWO_CHAINS, seconds=2.0)
    r, evs = build(project, env={"LTXFLOW_GPUS": "0,1"})
    assert r.returncode == 0, r.stderr
    started = [e for e in evs if e["event"] == "worker_started"]
    assert sorted(e["gpu"] for e in started) == ["0", "1"] and len({e["pid"] for e in started}) == 2
    assert all(e["visible"] == e["gpu"] for e in started)  # each worker pinned to its own GPU
    assert sorted(rec["details"]["gpu"] for rec in records(project).values()) == ["0", "1"]


def test_workers_started_at_once_each_run_on_their_own_gpu(weights, monkeypatch):
    """Two workers starting together, with a slow process start (the window in which the parent's
    CUDA_VISIBLE_DEVICES used to be swapped under the other thread: both workers ran on GPU 1 and
    the build was left with 0): each worker sees its own GPU id, and the build's environment is
    never changed."""
    import multiprocessing.context
    import threading
    import time

    from ltxflow.backends.local import LocalBackend

    start = multiprocessing.context.SpawnProcess.start

    def slow_start(process):
        time.sleep(0.5)
        start(process)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", slow_start)
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    backend = LocalBackend(weights / "models", {"distilled"}, env={"LTXFLOW_GPUS": "0,1"})
    backend.preflight()
    handles: dict[str, object] = {}
    threads = [threading.Thread(target=lambda g=g: handles.__setitem__(g, backend._start(g))) for g in ("0", "1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert {g: h.visible for g, h in handles.items()} == {"0": "0", "1": "1"}
        assert os.environ.get("CUDA_VISIBLE_DEVICES") == before
    finally:
        for h in handles.values():
            h.conn.send(None)
            h.process.join(timeout=30)


def test_fp8_casts_the_transformer_and_keys_the_chunks_apart(tmp_path, weights):
    scenes = """
  - id: one
    prompt: "a red sun"
    image: keyframes/a.png
"""
    plain = local_project(tmp_path / "bf16", weights, scenes, seconds=1.0)
    fp8 = local_project(tmp_path / "fp8", weights, scenes, seconds=1.0, extra="fp8: true")
    keys = [json.loads(ltx("plan", str(p), "--json", cwd=p.parent, check=True).stdout)["chunks"][0]["key"]
            for p in (plain, fp8)]
    assert keys[0] != keys[1]
    r, _ = build(fp8)
    assert r.returncode == 0, r.stderr
    frames, _ = media(fp8.parent / "out" / "song.mp4")
    assert frames == 24
    assert "float8_e4m3fn" in records(fp8)["one.0"]["details"]["transformer_dtypes"]
