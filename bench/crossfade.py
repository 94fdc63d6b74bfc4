"""Stitch time with and without crossfade seams: `.venv/bin/python bench/crossfade.py [--runs N]`.

Six normalized 241-frame 1280x704 clips (quality high, as a build makes them) joined onto a master
track by stitch(): all seams cut, then all seams crossfade over 8 frames (the same clip normalized
with the key frames the crossfades need). The master audio is encoded once before timing, as a
build does while its chunks render. Inputs go to bench/.work/crossfade/; prints median seconds."""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import write_wav  # noqa: E402

from ltxflow.media.encode import LOSSLESS_VIDEO, FrameWriter, encode_frames_args, output_format  # noqa: E402
from ltxflow.media.ffmpeg import find_ffmpeg  # noqa: E402
from ltxflow.media.normalize import normalize_clip  # noqa: E402
from ltxflow.media.probe import probe_audio  # noqa: E402
from ltxflow.media.stitch import master_audio, stitch  # noqa: E402
from ltxflow.crossfades import Piece, plan_seams  # noqa: E402

W, H, FRAMES, CLIPS, FPS = 1280, 704, 241, 6, Fraction(24)


def raw_clip(path: Path) -> None:
    import numpy as np

    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rng = np.random.default_rng(1)
    grain = rng.integers(0, 24, (H, W, 3), dtype=np.uint8)
    with FrameWriter(encode_frames_args(find_ffmpeg().path, W, H, FPS, path, LOSSLESS_VIDEO), path, "raw") as w:
        for i in range(FRAMES):
            r = np.sin((xx + 4 * i) / 37) * 90 + 120
            g = np.cos((yy - 2 * i) / 29 + xx / 211) * 90 + 120
            b = (np.sin((xx * yy) / (9000 + 40 * i)) * 90 + 120)
            w.write(np.stack([r, g, b], -1).astype(np.uint8) + grain)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
    work = ROOT / "bench" / ".work" / "crossfade"
    work.mkdir(parents=True, exist_ok=True)
    fmt = output_format("mp4", "high")
    raw = work / "raw.mp4"
    if not raw.is_file():
        raw_clip(raw)
    cut = [Piece(f"c.{i}", FRAMES, "cut") for i in range(CLIPS)]
    fade = [Piece(f"c.{i}", FRAMES, "crossfade", 8) for i in range(CLIPS)]
    seams = plan_seams(fade)
    keys = seams.splits[1].keyframes  # (4, 237): a middle clip's; the outer clips cut at one of them
    clips = {}
    for name, kf in (("cut", ()), ("fade", keys)):
        clips[name] = work / f"clip-{name}.mp4"
        if not clips[name].is_file():
            normalize_clip(raw, clips[name], None, head=0, kept=FRAMES, generated=FRAMES, width=W, height=H, fps=FPS,
                           fmt=fmt, keyframes=kf)
    song = write_wav(work / "song.wav", CLIPS * FRAMES / 24, rate=48000, channels=2)
    track, segments = probe_audio(song), [(0, CLIPS * FRAMES)]
    master_audio(track, segments, FPS, fmt, work / "audio")
    for name, joins in (("cut", plan_seams(cut)), ("crossfade", seams)):
        times = []
        for _ in range(runs):
            scratch = work / "scratch"
            scratch.mkdir(exist_ok=True)
            clip = clips["cut" if name == "cut" else "fade"]
            t0 = time.monotonic()
            report = stitch([clip] * CLIPS, segments, track, FPS, fmt, work / f"out-{name}.mp4", work / "audio",
                            scratch, joins)
            times.append(time.monotonic() - t0)
            shutil.rmtree(scratch)
        print(f"{name:9s} {CLIPS} x {FRAMES} frames {W}x{H}: median {statistics.median(times):.3f} s "
              f"(min {min(times):.3f}, max {max(times):.3f}, {runs} runs); {report.frames} frames, "
              f"{report.reencoded} encoded again")


if __name__ == "__main__":
    main()
