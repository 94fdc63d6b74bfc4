"""Colour continuity: slow colour drift in a clip is pulled back to its reference, fast changes are kept."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ltxflow.media.colormatch import ColorTarget, correction, frame_stats, reference_stats, trend
from ltxflow.media.encode import LOSSLESS_VIDEO, FrameWriter, encode_frames_args, output_format
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.frames import decode_rgb
from ltxflow.media.normalize import normalize_clip

FMT = output_format("mov", "high")  # ProRes 4444: coding noise (chroma subsampling) does not hide colour errors
W, H, N, FPS = 128, 96, 49, Fraction(24)


def textured(width: int = W, height: int = H) -> np.ndarray:
    """Gradients, a disc and a bar, every value inside [30, 200] (a cast of +-40 does not clip)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 30 + 150 * x / (width - 1)
    g = 40 + 140 * y / (height - 1)
    b = 110 + 60 * np.sin(x / 9) * np.cos(y / 7)
    disc = (x - width * 0.35) ** 2 + (y - height * 0.5) ** 2 < (height * 0.25) ** 2
    r[disc], g[disc], b[disc] = 190, 60, 70
    bar = (np.abs(x - width * 0.75) < width * 0.06)
    r[bar], g[bar], b[bar] = 40, 170, 195
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def drifted(image: np.ndarray, t: float, cast=(40.0, 0.0, -30.0), contrast: float = 0.7) -> np.ndarray:
    """`image` a fraction t of the way to a colour cast and a contrast change, about its mean."""
    f = image.astype(np.float64)
    mean = f.reshape(-1, 3).mean(axis=0)
    out = (f - mean) * (1 + (contrast - 1) * t) + mean + t * np.asarray(cast)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    h, w = frames[0].shape[:2]
    with FrameWriter(encode_frames_args(find_ffmpeg().path, w, h, FPS, path, LOSSLESS_VIDEO), path, "test") as wr:
        for f in frames:
            wr.write(f)
    return path


def normalize(raw: Path, out: Path, color: ColorTarget | None, head: int = 0, kept: int = N, png: Path | None = None):
    report = normalize_clip(raw, out, png, head=head, kept=kept, generated=N, width=W, height=H, fps=FPS, fmt=FMT,
                            color=color)
    return np.stack(list(decode_rgb(out))).astype(np.float64), report


def test_trend_follows_a_linear_drift_exactly_and_ignores_a_short_burst():
    n = 49
    linear = np.stack([np.linspace(10, 50, n), np.linspace(80, 20, n)], axis=1)
    assert np.allclose(trend(linear, 12), linear)
    burst = linear.copy()
    burst[20:23] += 100  # three frames: shorter than half the window
    # It moves the trend by at most the drift of the burst's length (a plain 25-frame mean: by 12 levels).
    slope = np.abs(linear[1] - linear[0])
    assert np.all(np.abs(trend(burst, 12) - linear).max(axis=0) <= 3 * slope)
    step = np.concatenate([np.zeros(24), np.full(25, 10.0)])[:, None]
    assert np.all(np.diff(trend(step, 12)[:, 0]) >= 0)  # a change that lasts is followed, smoothly


def test_gain_is_clamped_and_a_flat_frame_does_not_divide_by_zero():
    flat = np.zeros((5, 6))
    flat[:, :3] = 100
    ref = np.tile([100, 100, 100, 60, 60, 60], (5, 1)).astype(np.float64)
    fix = correction(flat, ref, 2)
    assert np.all(fix.gain == 2.0) and np.isfinite(fix.luts).all()
    assert fix.luts[0, 0, 100] == 100  # the mean level stays where the reference puts it


def test_drift_is_corrected(tmp_path):
    # The acceptance test: a static textured image whose colour drifts (red +40, blue -30, contrast
    # down to 70% by the last frame). Matched to the image, most of the error to it is gone.
    image = textured()
    raw = write_clip(tmp_path / "raw.mp4", [drifted(image, i / (N - 1)) for i in range(N)])
    plain, _ = normalize(raw, tmp_path / "plain.mov", None)
    png = tmp_path / "chain.png"
    matched, report = normalize(raw, tmp_path / "matched.mov", ColorTarget(image, label="the image"), png=png)
    err_plain = np.abs(plain - image).mean()
    err_matched = np.abs(matched - image).mean()
    assert err_plain > 10
    assert err_matched <= 0.2 * err_plain, (err_plain, err_matched)
    # The last frame, the most drifted, is fixed as well as the rest; the chain PNG is that frame, corrected.
    assert np.abs(matched[-1] - image).mean() <= 0.2 * np.abs(plain[-1] - image).mean()
    chain = np.asarray(Image.open(png)).astype(np.float64)
    assert np.abs(chain - image).mean() <= 0.2 * np.abs(plain[-1] - image).mean()
    rec = report.record()["color_match"]
    assert rec["reference"] == "the image" and rec["end"] is False
    assert 35 <= rec["max_shift"] <= 45  # the red cast, undone at the last frame
    assert rec["gain"][1] == pytest.approx(1 / 0.7, abs=0.05)


def flash_clip(tmp_path: Path, image: np.ndarray) -> tuple[Path, list[np.ndarray]]:
    frames = [drifted(image, 0.5 * i / (N - 1)) for i in range(N)]
    for i in (20, 21, 22):  # a flash on the beat: three frames much brighter
        frames[i] = np.clip(frames[i].astype(np.int16) + 60, 0, 255).astype(np.uint8)
    return write_clip(tmp_path / "raw.mp4", frames), frames


def flash_excess(clip: np.ndarray) -> float:
    """How much brighter the flash frames are than the frames just around them."""
    return float(clip[20:23].mean() - np.concatenate([clip[16:19], clip[24:27]]).mean())


def test_a_flash_survives(tmp_path):
    image = textured()
    raw, _ = flash_clip(tmp_path, image)
    plain, _ = normalize(raw, tmp_path / "plain.mov", None)
    matched, _ = normalize(raw, tmp_path / "matched.mov", ColorTarget(image))
    assert flash_excess(plain) > 40
    assert flash_excess(matched) >= 0.9 * flash_excess(plain)
    # The frames around it are not dimmed to pay for it: they match the image as well as the rest.
    around = np.abs(matched[[16, 17, 18, 24, 25, 26]] - image).mean()
    assert around <= np.abs(matched[[5, 6, 40, 41]] - image).mean() + 1.5


def test_a_part_of_a_chunk_is_corrected_as_the_whole_chunk(tmp_path):
    # --range makes clips of part of a chunk: the trend comes from the chunk's span, not the
    # part's, so a part that ends inside the flash keeps the flash in its last frame.
    image = textured()
    raw, _ = flash_clip(tmp_path, image)
    with_span, without = tmp_path / "span.png", tmp_path / "nospan.png"
    normalize(raw, tmp_path / "a.mov", ColorTarget(image, span=(0, N)), head=10, kept=12, png=with_span)
    normalize(raw, tmp_path / "b.mov", ColorTarget(image), head=10, kept=12, png=without)
    spanned = np.asarray(Image.open(with_span)).astype(np.float64)
    partial = np.asarray(Image.open(without)).astype(np.float64)
    assert spanned.mean() - image.mean() > 40  # frame 21, still flashing
    assert abs(partial.mean() - image.mean()) < 3  # the part's own trend ends there: flash matched away


def test_end_reference_is_followed_not_fought(tmp_path):
    # A planned change of look toward an end image: the reference moves with it, so the clip is
    # left nearly as generated; matched to the start alone it would be pulled back.
    start = textured()
    look = {"cast": (-20.0, 20.0, 25.0), "contrast": 1.1}
    end = drifted(start, 1.0, **look)
    raw = write_clip(tmp_path / "raw.mp4", [drifted(start, i / (N - 1), **look) for i in range(N)])
    plain, _ = normalize(raw, tmp_path / "plain.mov", None)
    both, report = normalize(raw, tmp_path / "both.mov", ColorTarget(start, end))
    only_start, _ = normalize(raw, tmp_path / "start.mov", ColorTarget(start))
    assert np.abs(both - plain).mean() < 1.5
    assert np.abs(both[-1] - end).mean() <= np.abs(plain[-1] - end).mean() + 0.5
    assert np.abs(only_start[-1] - start).mean() < 3 and np.abs(only_start[-1] - end).mean() > 15
    assert report.record()["color_match"]["end"] is True


def test_reference_stats_interpolate_from_the_start_image_moment():
    a = np.full((32, 32, 3), 50, np.uint8)
    b = np.full((32, 32, 3), 150, np.uint8)
    ref = reference_stats(ColorTarget(a, b), first=1, count=10)  # raw frames 1..10; frame 0 is the start image
    assert ref[:, 0] == pytest.approx(50 + 100 * np.arange(1, 11) / 10)
    assert frame_stats(b)[3:] == pytest.approx([0, 0, 0])


def records(cache: Path) -> dict[str, dict]:
    out = {}
    for f in (cache / "chunks").glob("*/*/record.json"):
        rec = json.loads(f.read_text())
        out[rec["chunk"]] = {**rec, "dir": f.parent}
    return out


def test_build_matches_chained_chunks_and_a_toggle_renormalizes_without_rendering(tmp_path):
    from test_build import build_json, ltx, make_project, media, names

    project = make_project(tmp_path)
    plan = json.loads(ltx("plan", str(project), "--json", cwd=tmp_path, check=True).stdout)
    chunks = [c["id"] for c in plan["chunks"]]
    verse = [c for c in chunks if c.startswith("verse.")]
    intro = [c for c in chunks if c.startswith("intro.")]
    assert len(verse) >= 2 and len(intro) >= 2
    _, first = build_json(project)
    assert names(first, "chunk_done") == sorted(chunks)
    recs = records(tmp_path / "cache")
    # A chunk of a keyframe scene matches to the keyframe, even when it chains; a chained chunk of a
    # scene without one, to the chain frame it started from, which is its source's matched frame.
    assert recs[intro[1]]["normalize"]["color_match"]["reference"] == "keyframe a.png"
    v0 = recs[verse[0]]
    assert v0["normalize"]["color_match"]["reference"] == f"chain frame of {intro[-1]}"
    tagged = [k for k in recs[intro[-1]]["frames"] if "." in k]
    assert len(tagged) == 1 and v0["chain_digest"] == recs[intro[-1]]["frames"][tagged[0]]
    (variant,) = v0["variants"]
    assert "-cm" in variant and variant in v0["color_match"]

    # color_match off for the verse: its first chunk is normalized again from its cached raw clip,
    # not rendered; the chunks after it start from a frame that is no longer matched, so they render.
    project.write_text(project.read_text().replace("    camera: dolly_in\n", "    camera: dolly_in\n"
                                                   "    color_match: false\n"))
    plan = json.loads(ltx("plan", str(project), "--json", cwd=tmp_path, check=True).stdout)
    status = {c["id"]: c["status"] for c in plan["chunks"]}
    assert [c for c in chunks if status[c] == "render"] == verse[1:]
    _, second = build_json(project)
    assert names(second, "chunk_started") == verse[1:]
    assert set(names(second, "chunk_cached")) == set(chunks) - set(verse[1:])
    recs = records(tmp_path / "cache")
    assert recs[verse[0]]["dir"] == v0["dir"] and recs[verse[0]]["created"] == v0["created"]  # not rendered
    assert len(recs[verse[0]]["variants"]) == 2  # matched and as generated, side by side
    assert all("color_match" not in recs[c]["normalize"] for c in verse[1:])
    # The re-rendered chunk replaced its entry (same key, another start image), so the next build reuses it.
    plain = [d for k, d in recs[verse[0]]["frames"].items() if "." not in k]
    assert recs[verse[1]]["chain_digest"] == plain[0] != v0["frames"][next(iter(v0["frames"]))]
    assert media(tmp_path / "out" / "video.mp4")[0] == 144

    # Back on: the matched clip of the verse's first chunk is still in the cache and used as it is.
    clip = v0["dir"] / f"clip.{variant}"
    mtime = clip.stat().st_mtime_ns
    project.write_text(project.read_text().replace("    color_match: false\n", ""))
    _, third = build_json(project)
    assert names(third, "chunk_started") == verse[1:]
    assert clip.stat().st_mtime_ns == mtime
