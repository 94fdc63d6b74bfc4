"""`backend: local` in the build process, without torch or ltx-pipelines: which pipeline a chunk
needs, finding the weights (and naming every missing one), one worker per GPU, and the stereo
audio the A2V pipeline takes. These run everywhere; tests/test_local.py renders for real."""

from __future__ import annotations

import stat
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from ltxflow.backends.local import WEIGHTS, LocalBackend, LocalSetupError, find_weights, gpu_ids, job_kind, stereo_wav

from conftest import REPO, write_wav


def test_the_module_imports_neither_torch_nor_ltx_pipelines():
    code = ("import sys, ltxflow.backends.local; "
            "print(sorted({'torch', 'ltx_pipelines', 'ltx_core'} & set(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("mode, family, kind", [
    ("audio-to-video", "ltx-2.3-22b", "a2v"),
    ("audio-to-video", "ltx-2.3-22b-distilled", "a2v"),  # audio-driven always runs the A2V two-stage pipeline
    ("image-to-video", "ltx-2.3-22b", "i2v"),
    ("image-to-video", "ltx-2.3-quality", "i2v"),
    ("image-to-video", "ltx-2.3-22b-distilled", "distilled"),
])
def test_job_kind(mode, family, kind):
    assert job_kind(mode, family) == kind


def put(folder: Path, *names: str) -> None:
    for name in names:
        if name.startswith("gemma"):
            (folder / name).mkdir(parents=True)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(b"\0" * 16)


def test_missing_weights_are_each_named_with_where_they_are_published(tmp_path):
    put(tmp_path, "ltx-2.3-22b-dev.safetensors")
    with pytest.raises(LocalSetupError) as e:
        find_weights(tmp_path, {"a2v", "distilled"})
    text = str(e.value)
    assert e.value.exit_code == 2 and f"{tmp_path} lacks 4 of the weights" in text
    for name in ("ltx-2.3-22b-distilled-1.1.safetensors", "ltx-2.3-22b-distilled-lora-384-1.1.safetensors",
                 "ltx-2.3-spatial-upscaler-x2-1.1.safetensors", "gemma-3-12b-it-qat-q4_0-unquantized/",
                 "https://huggingface.co/Lightricks/LTX-2.3",
                 "https://huggingface.co/google/gemma-3-12b-it-qat-q4_0-unquantized"):
        assert name in text, name
    assert "ltx-2.3-22b-dev.safetensors" not in text  # present: not listed
    # Only what the job kinds need: an image-to-video build on the distilled model needs no dev weights.
    with pytest.raises(LocalSetupError) as e:
        find_weights(tmp_path / "empty", {"distilled"})
    assert "lacks 3 of the weights" in str(e.value) and "22b-dev" not in str(e.value)


def test_weights_prefer_the_newest_published_name_and_accept_the_older(tmp_path):
    newest = {role: names[0] for role, (names, _) in WEIGHTS.items()}
    put(tmp_path / "new", *newest.values())
    put(tmp_path / "new", "ltx-2.3-22b-distilled.safetensors")  # an older release beside the newest
    found = find_weights(tmp_path / "new", {"a2v", "i2v", "distilled"})
    assert found == {role: tmp_path / "new" / name for role, name in newest.items()}
    older = {role: names[-1] for role, (names, _) in WEIGHTS.items()}
    put(tmp_path / "old", *older.values())
    assert find_weights(tmp_path / "old", {"distilled"}) == {
        role: tmp_path / "old" / older[role] for role in ("distilled", "upsampler", "gemma")}


def fake_nvidia_smi(folder: Path, gpus: int) -> Path:
    """A stand-in that lists GPUs as `nvidia-smi -L` does."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    lines = "".join(f"echo 'GPU {i}: NVIDIA H100 (UUID: GPU-{i:04d})'\n" for i in range(gpus))
    tool.write_text("#!/bin/sh\n" + lines)
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return folder


def test_one_worker_per_gpu(tmp_path, monkeypatch):
    assert gpu_ids({"LTXFLOW_GPUS": "0, 2,", "CUDA_VISIBLE_DEVICES": "1"}) == ["0", "2"]  # LTXFLOW_GPUS first
    assert gpu_ids({"CUDA_VISIBLE_DEVICES": "1,3"}) == ["1", "3"]
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path / "two", 2)))
    assert gpu_ids({"CUDA_VISIBLE_DEVICES": " "}) == ["0", "1"]  # what nvidia-smi lists
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path / "one", 1)))
    assert gpu_ids({}) == [None]  # one GPU: one worker on whatever torch finds
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert gpu_ids({}) == [None]
    # The backend renders one chunk per GPU at a time.
    assert LocalBackend(None, {"a2v"}, env={"LTXFLOW_GPUS": "0,1,2"}).max_concurrency == 3


def test_a_mono_span_goes_to_the_pipeline_as_stereo(tmp_path):
    mono = write_wav(tmp_path / "mono.wav", 0.5, rate=16000, channels=1)
    out = stereo_wav(mono, tmp_path)
    with wave.open(str(mono)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 16000)
        both = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert np.array_equal(both[:, 0], samples) and np.array_equal(both[:, 1], samples)
    stereo = write_wav(tmp_path / "stereo.wav", 0.5, channels=2)
    assert stereo_wav(stereo, tmp_path / "unused") == stereo  # already two channels: passed as is
