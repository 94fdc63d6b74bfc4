"""The preview backend: an animatic with exactly the planned frames, deterministic, that shows
start and end images, camera moves and the music's onsets."""

from __future__ import annotations

import dataclasses
import hashlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ltxflow.backends.base import ChunkRequest
from ltxflow.backends.preview import PreviewBackend, animatic_frames
from ltxflow.media.frames import decode_rgb, video_info

from conftest import write_music, write_wav


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("preview")
    start = np.zeros((128, 256, 3), np.uint8)
    start[:, :128] = (160, 60, 60)  # left half reddish, right half bluish: pans show
    start[:, 128:] = (60, 60, 160)
    start[16:48, 32:80] = 240  # a white square up and left of centre: zooms and tilts show
    Image.fromarray(start).save(d / "start.png")
    Image.new("RGB", (256, 128), (40, 170, 40)).save(d / "end.png")
    write_music(d / "span.wav", 2.0)
    return d


def request(media: Path, **kw) -> ChunkRequest:
    base = dict(chunk_id="verse.0", key="k" * 64, scene_id="verse", family="ltx-2.3-quality", endpoint="fal-ai/x", mode="audio-to-video",
                prompt="a test prompt", values={}, args={}, seed=1, frames=41, width=256, height=128,
                fps=Fraction(24), timeline_frame=0, start_image=media / "start.png")
    base.update(kw)
    return ChunkRequest(**base)


def frames_of(req: ChunkRequest) -> list[np.ndarray]:
    return [np.frombuffer(f, np.uint8).reshape(req.height, req.width, 3) for f in animatic_frames(req)]


def picture(frame: np.ndarray) -> np.ndarray:
    """The frame above the burned-in caption band."""
    return frame[: frame.shape[0] * 2 // 3].astype(np.float64)


def test_exact_frames_size_and_rate(media, tmp_path):
    req = request(media, frames=49, fps=Fraction(24000, 1001))
    result = PreviewBackend().render(req, tmp_path)
    info = video_info(result.clip)
    assert (info.frames, info.width, info.height, info.fps) == (49, 256, 128, Fraction(24000, 1001))
    assert result.cost_usd == 0 and result.seed == 1


def test_deterministic(media, tmp_path):
    req = request(media)
    for name in "abc":
        (tmp_path / name).mkdir()
    a = PreviewBackend().render(req, tmp_path / "a")
    b = PreviewBackend().render(req, tmp_path / "b")
    c = PreviewBackend().render(dataclasses.replace(req, prompt="another prompt"), tmp_path / "c")
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(a.clip) == digest(b.clip)
    assert digest(c.clip) != digest(a.clip)


def test_starts_on_the_start_image_and_moves_toward_the_end_image(media):
    req = request(media, end_image=media / "end.png")
    frames = frames_of(req)
    start = picture(np.asarray(Image.open(media / "start.png")))
    end = picture(np.asarray(Image.open(media / "end.png")))
    assert np.abs(picture(frames[0]) - start).mean() < 3
    assert np.abs(picture(frames[-1]) - end).mean() < 3
    middle = picture(frames[len(frames) // 2])
    assert np.abs(middle - start).mean() > 20 and np.abs(middle - end).mean() > 20


def test_without_a_start_image_a_prompt_card(media):
    frames = frames_of(request(media, start_image=None))
    assert picture(frames[0]).std() > 5  # a gradient with the prompt written on it, not a blank frame


def white(f: np.ndarray) -> np.ndarray:
    return f.min(axis=2) > 200


def rows_of(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[0].mean())


@pytest.mark.parametrize("camera, check", [
    ("static", lambda f0, f1: np.abs(f1 - f0).mean() < 1),
    # dolly_in: the picture is magnified, so the square grows
    ("dolly_in", lambda f0, f1: white(f1).sum() > 1.3 * white(f0).sum()),
    ("dolly_out", lambda f0, f1: white(f1).sum() < white(f0).sum() / 1.3),
    # dolly_right: the view moves right, so the red/blue edge moves left past the middle column
    ("dolly_right", lambda f0, f1: f0[60, 128, 0] > 120 and f1[60, 128, 2] > 120),
    ("dolly_left", lambda f0, f1: f0[60, 128, 2] > 120 and f1[60, 128, 0] > 120),
    # jib_up: the view tilts up, so the square moves down the frame (jib_down: up)
    ("jib_up", lambda f0, f1: rows_of(white(f1)) > rows_of(white(f0)) + 5),
    ("jib_down", lambda f0, f1: rows_of(white(f1)) < rows_of(white(f0)) - 5),
])
def test_camera_moves(media, camera, check):
    frames = frames_of(request(media, values={"camera": camera, "camera_scale": 1.0}))
    assert check(picture(frames[0]), picture(frames[-1])), camera


def test_pulses_with_onsets(media):
    quiet = frames_of(request(media))
    loud = frames_of(request(media, audio=media / "span.wav"))
    brightness_quiet = [picture(f).mean() for f in quiet]
    brightness_loud = [picture(f).mean() for f in loud]
    assert max(np.subtract(brightness_loud, brightness_quiet)) > 8  # some frames flash on onsets
    assert min(np.subtract(brightness_loud, brightness_quiet)) >= -0.5  # none are darkened


def test_burn_in_shows_the_timecode(media):
    # Two frames one second apart differ in the caption band (the timecode ticks).
    frames = frames_of(request(media, values={"camera": "static"}, frames=33))
    band = lambda f: f[f.shape[0] * 2 // 3:].astype(int)  # noqa: E731
    assert np.abs(band(frames[0]) - band(frames[24])).sum() > 0
    assert np.abs(picture(frames[0]) - picture(frames[24])).mean() < 1


def test_decoded_clip_matches_the_frames(media, tmp_path):
    req = request(media, frames=17)
    clip = PreviewBackend().render(req, tmp_path).clip
    decoded = list(decode_rgb(clip))
    drawn = frames_of(req)
    assert len(decoded) == 17
    assert np.abs(decoded[8].astype(int) - drawn[8].astype(int)).mean() < 4  # x264 at crf 14


def test_a_scene_chained_from_another_dissolves_into_its_own_card(media):
    # A scene that starts from another scene's chain frame turns into a card of its own prompt
    # within a second; a chunk chained inside its own scene holds its frame; an end image is
    # reached at the last frame, from the new card.
    start = picture(np.asarray(Image.open(media / "start.png")))
    card = picture(frames_of(request(media, start_image=None))[0])
    frames = [picture(f) for f in frames_of(request(media, chain_scene="intro"))]  # 41 frames, the fade 24
    assert np.abs(frames[0] - start).mean() < 3
    assert np.abs(frames[12] - start).mean() > 15 and np.abs(frames[12] - card).mean() > 15
    assert all(np.abs(f - card).mean() < 1 for f in frames[24:])
    steps = [np.abs(a - b).mean() for a, b in zip(frames, frames[1:24])]
    assert min(steps) > 0 and steps[0] < 2 * np.median(steps)  # no jump at the seam: an even dissolve
    held = [picture(f) for f in frames_of(request(media, chain_scene="verse"))]
    assert all(np.abs(f - start).mean() < 3 for f in held)
    end = picture(np.asarray(Image.open(media / "end.png")))
    led = [picture(f) for f in frames_of(request(media, chain_scene="intro", end_image=media / "end.png"))]
    assert np.abs(led[0] - start).mean() < 3 and np.abs(led[-1] - end).mean() < 3
    plain = [picture(f) for f in frames_of(request(media, end_image=media / "end.png"))]  # from the start image
    assert np.abs(led[24] - plain[24]).mean() > 10  # the card, not the start image, fades toward the end


@pytest.mark.parametrize("keyframe", [False, True])
def test_a_build_shows_each_chained_scene_its_own_prompt(project_dir, tmp_path, keyframe):
    # Through the build: the second scene chains from the first. Without keyframes its frames
    # after the dissolve are its own card, not the first scene's card held on; after a keyframe,
    # the picture goes on, as a model would continue it. Colours as drawn; a silent song, so no
    # frame flashes on an onset.
    import io

    from ltxflow.build import BuildOptions, build
    from ltxflow.progress import JsonReporter

    write_wav(project_dir.song, 30.0, amp=0.0)
    image = "\n            image: keyframes/b.png" if keyframe else ""
    project = project_dir.write(f"""
        version: 1
        name: chained
        audio: media/song.wav
        fps: 12
        resolution: 256x144
        backend: preview
        output: out/chained.mp4
        scenes:
          - id: sea
            start: 0
            prompt: "a calm sea at dawn"
            color_match: false{image}
          - id: city
            start: 4
            prompt: "a neon city at night"
            color_match: false
        """)
    result = build(project, BuildOptions(cache_dir=tmp_path / "c"), JsonReporter(io.StringIO()))
    frames = list(decode_rgb(result.output))
    sea, late = picture(frames[20]), picture(frames[100])
    step = lambda i: np.abs(picture(frames[i + 1]) - picture(frames[i])).mean()  # noqa: E731
    assert np.abs(late - picture(frames[-1])).mean() < 1  # the city holds to the end
    if keyframe:
        assert np.abs(late - sea).mean() < 1  # the sea's picture goes on
        return
    assert step(46) < 1 and 0 < step(47) < 1.5 * step(48)  # the seam (frame 48, 4 s) is a dissolve's first step
    assert np.abs(late - sea).mean() > 10  # ... and the city's own card follows
