"""Shared fixtures: real small media made on the fly, and project folders built from them."""

from __future__ import annotations

import math
import struct
import textwrap
import wave
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "projects" / "demo" / "demo.yaml"
# Real songs and pictures nobody on the team made (see its README): read in place, never copied
# into the repository. LTXFLOW_REALMEDIA overrides where it is.
REALMEDIA = Path(__import__("os").environ.get("LTXFLOW_REALMEDIA") or REPO.parent / "shared" / "realmedia")


def _hypothesis_profiles() -> None:
    """The property tests draw the same examples on every run ("repeatable", the default: one CI
    run cannot fail where the next passes), or new ones with HYPOTHESIS_PROFILE=explore."""
    import os

    from hypothesis import HealthCheck, settings

    settings.register_profile("repeatable", derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("explore", derandomize=False, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


_hypothesis_profiles()


def realmedia(name: str) -> Path:
    """A file of the real-media corpus. Skips the test when it is absent, or fails it when
    LTXFLOW_REQUIRE_REALMEDIA=1 (CI sets it: the real-material tests never skip quietly there)."""
    import os

    path = REALMEDIA / name
    if not path.is_file():
        message = f"real media {name!r} not found in {REALMEDIA} (set LTXFLOW_REALMEDIA)"
        if os.environ.get("LTXFLOW_REQUIRE_REALMEDIA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def write_wav(path: Path, seconds: float, rate: int = 16000, channels: int = 1, freq: float = 220.0,
              amp: float = 0.3) -> Path:
    """A tone of exactly round(seconds * rate) samples whose loudness changes every second
    (so spans of different seconds have different samples). Built from 8 one-second blocks."""
    n = round(seconds * rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = []
    for k in range(8):
        a = amp * (k + 1) / 8
        blocks.append(b"".join(struct.pack("<h", int(a * 32767 * math.sin(2 * math.pi * freq * i / rate))) * channels
                               for i in range(rate)))
    width = 2 * channels
    frames = b"".join(blocks[s % 8] for s in range(n // rate + 1))[: n * width]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


def write_music(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A non-periodic test signal (chirps and beats on a drifting tone), so that a cross-correlation
    has one clear peak; exactly round(seconds * rate) mono samples."""
    import numpy as np

    n = round(seconds * rate)
    t = np.arange(n) / rate
    tone = np.sin(2 * np.pi * (180 * t + 40 * t ** 2 / max(seconds, 1)))
    beats = np.exp(-((t * 2) % 1) * 12) * np.sin(2 * np.pi * 90 * t)
    wobble = 0.4 * np.sin(2 * np.pi * (600 + 300 * np.sin(2 * np.pi * 0.37 * t)) * t)
    return write_signal(path, 0.35 * tone + 0.4 * beats + 0.15 * wobble, rate)


def write_signal(path: Path, signal, rate: int) -> Path:
    """A mono float signal as a 16-bit WAV, normalized to 80% of full scale."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((signal / np.abs(signal).max() * 0.8 * 32767).astype("<i2").tobytes())
    return path


def write_png(path: Path, size: tuple[int, int] = (64, 36), color: tuple[int, int, int] = (200, 40, 90)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_lora(path: Path, tensors: int = 2) -> Path:
    """A minimal valid safetensors file (float32 zeros)."""
    import json

    header = {}
    offset = 0
    for i in range(tensors):
        header[f"lora_unet.{i}.lora_down.weight"] = {"dtype": "F32", "shape": [2, 2], "data_offsets": [offset, offset + 16]}
        offset += 16
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


class ProjectDir:
    """A project folder with a song and keyframes; `write(yaml)` puts a project file in it."""

    def __init__(self, root: Path, seconds: float = 30.0):
        self.root = root
        self.song = write_wav(root / "media" / "song.wav", seconds)
        write_png(root / "keyframes" / "a.png")
        write_png(root / "keyframes" / "b.png", color=(20, 120, 200))
        write_lora(root / "loras" / "style.safetensors")

    def write(self, text: str, name: str = "project.yaml") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Tests never read or write a developer's .ltxflow cache: one empty cache for the session
    unless a test sets its own (subprocesses inherit it). Music analyses are shared by the whole
    session (they depend only on a song's bytes), so each test song is analysed once."""
    import os

    # A run on GitHub Actions must not switch the CLI under test to its github format, nor append
    # to the runner's own summary and step outputs: the tests that want those set them.
    github = ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_WORKSPACE")
    names = ("LTXFLOW_CACHE_DIR", "LTXFLOW_MUSIC_CACHE", *github)
    old = {name: os.environ.get(name) for name in names}
    for name in github:
        os.environ.pop(name, None)
    os.environ["LTXFLOW_CACHE_DIR"] = str(tmp_path_factory.mktemp("session-cache"))
    os.environ["LTXFLOW_MUSIC_CACHE"] = str(tmp_path_factory.mktemp("session-music"))
    yield
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def project_dir(tmp_path: Path) -> ProjectDir:
    return ProjectDir(tmp_path / "proj")


@pytest.fixture(scope="session")
def shared_project(tmp_path_factory) -> ProjectDir:
    """A read-only project folder shared by tests that only write new project files into it."""
    return ProjectDir(tmp_path_factory.mktemp("shared") / "proj", seconds=240.0)


def plan_of(path: Path, **kw):
    from ltxflow.plan.planner import build_plan
    from ltxflow.project.load import load_project
    from ltxflow.project.resolve import resolve_project

    return build_plan(resolve_project(load_project(path), **kw))
