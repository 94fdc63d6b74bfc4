"""A real song and real pictures through the whole pipeline at the default settings, as a new
user's first build: the video must look like its keyframes (frames extracted and compared)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from ltxflow.media.ffmpeg import find_ffmpeg

from conftest import realmedia
from test_build import ltx

pytestmark = pytest.mark.slow


def _fit(path, w: int, h: int) -> np.ndarray:
    """A picture as the pipeline fits it to w x h: scaled to cover, centre-cropped."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        s = max(w / img.width, h / img.height)
        img = img.resize((max(w, round(img.width * s)), max(h, round(img.height * s))), Image.LANCZOS)
        x, y = (img.width - w) // 2, (img.height - h) // 2
        return np.asarray(img.crop((x, y, x + w, y + h)), dtype=np.float64)


def _frames(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.float64) for f in c.decode(c.streams.video[0])]


@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    """14 s of a real song (an excerpt cut with ffmpeg: still real music) with two real pictures,
    every setting at its default (1280x704, 24 fps, colour matching, seams on beats)."""
    root = tmp_path_factory.mktemp("real")
    song, first, second = realmedia("Through Space.ogg"), realmedia("softwaves-16x9.png"), \
        realmedia("desktop-preview.jpg")
    (root / "media").mkdir()
    subprocess.run([find_ffmpeg().path, "-v", "error", "-ss", "60", "-t", "14", "-i", str(song),
                    "-c:a", "pcm_s16le", str(root / "media" / "excerpt.wav")], check=True)
    (root / "keyframes").mkdir()
    (root / "keyframes" / "waves.png").write_bytes(first.read_bytes())
    (root / "keyframes" / "desktop.jpg").write_bytes(second.read_bytes())
    project = root / "real.yaml"
    project.write_text("""version: 1
audio: media/excerpt.wav
scenes:
  - id: intro
    end: 5
    prompt: "soft waves of colour drift under a logo"
    image: keyframes/waves.png
  - id: verse
    end: 10
    prompt: "the waves flow on"
  - id: outro
    prompt: "a desktop, calm"
    image: keyframes/desktop.jpg
""")
    r = ltx("build", str(project), "--log-format", "json", cwd=root)
    assert r.returncode == 0, r.stderr
    return root, _frames(root / "out" / "real.mp4"), _fit(first, 1280, 704), _fit(second, 1280, 704)


def test_each_keyframe_scene_starts_on_its_picture(real_build):
    root, frames, waves, desktop = real_build
    assert len(frames) == 14 * 24 and frames[0].shape == (704, 1280, 3)
    top = 600  # the preview writes its caption in a bar at the bottom
    for at, picture in ((0, waves), (10 * 24, desktop)):
        mad = np.abs(frames[at][:top] - picture[:top]).mean()
        assert mad < 8, (at, mad)


def test_chained_chunks_keep_the_keyframes_look(real_build):
    """The verse is chained from the intro's picture: its frames keep that picture's colours and
    contrast (colour matching must not wash them out or tint them). Medians over the verse: the
    animatic brightens frames on the music's onsets, as a real clip may flash."""
    root, frames, waves, _ = real_build
    top = 600
    want_mean, want_std = waves[:top].mean(axis=(0, 1)), waves[:top].std(axis=(0, 1))
    verse = [frames[at][:top] for at in range(5 * 24, 10 * 24, 6)]
    means = np.median([f.mean(axis=(0, 1)) for f in verse], axis=0)
    ratios = np.median([f.std(axis=(0, 1)) / want_std for f in verse], axis=0)
    assert np.abs(means - want_mean).max() < 12, (means, want_mean)
    assert (ratios > 0.85).all() and (ratios < 1.15).all(), ratios
