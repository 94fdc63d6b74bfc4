"""What colour matching costs normalize: `.venv/bin/python bench/colormatch.py [--runs N]`.

Writes a 1280x704, 121-frame clip (a moving textured image with grain and a colour drift, as
H.264 CRF 18, like a hosted backend's output) under bench/.work/colormatch/, then normalizes it at
the project's default quality (mp4, high) with and without matching, interleaved, N times each,
and prints the medians, plus the parts of the matching (the statistics pass, the lookup tables).
"""

from __future__ import annotations

import argparse
import statistics
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from ltxflow.media.colormatch import ColorTarget, clip_stats, correction, sample
from ltxflow.media.encode import FrameWriter, encode_frames_args, output_format
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.frames import decode_rgb
from ltxflow.media.normalize import normalize_clip
from ltxflow.project.model import DEFAULT_COLOR_STRENGTH

W, H, N, FPS = 1280, 704, 121, Fraction(24)
WORK = Path(__file__).resolve().parent / ".work" / "colormatch"


def reference() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.stack([40 + 150 * x / W, 40 + 140 * y / H, 110 + 60 * np.sin(x / 37) * np.cos(y / 23)], axis=-1)
    return img.astype(np.uint8)


def write_raw(path: Path, ref: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    args = encode_frames_args(find_ffmpeg().path, W, H, FPS, path,
                              ("-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"))
    with FrameWriter(args, path, "bench raw") as writer:
        for i in range(N):
            t = i / (N - 1)
            moved = np.roll(ref, 3 * i, axis=1).astype(np.int16)
            frame = moved + np.array([40 * t, 0, -30 * t], dtype=np.int16) + rng.integers(-6, 7, moved.shape)
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
    WORK.mkdir(parents=True, exist_ok=True)
    ref = reference()
    raw = WORK / "raw.mp4"
    if not raw.is_file():
        write_raw(raw, ref)
    fmt = output_format("mp4", "high")
    target = ColorTarget(DEFAULT_COLOR_STRENGTH, label="bench")
    times: dict[str, list[float]] = {"plain": [], "matched": []}
    for _ in range(runs):
        for name, color in (("plain", None), ("matched", target)):
            t0 = time.perf_counter()
            normalize_clip(raw, WORK / f"{name}.mp4", WORK / f"{name}.png", head=0, kept=N, generated=N,
                           width=W, height=H, fps=FPS, fmt=fmt, color=color)
            times[name].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    frames = list(decode_rgb(raw))
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats, _ = clip_stats(np.stack([sample(f) for f in frames]))
    stats_s = time.perf_counter() - t0
    fix = correction(stats, 12, DEFAULT_COLOR_STRENGTH)
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        fix.apply(f, i)
    lut_s = time.perf_counter() - t0
    plain, matched = statistics.median(times["plain"]), statistics.median(times["matched"])
    print(f"normalize {W}x{H}, {N} frames, mp4 high, median of {runs}:")
    print(f"  without matching  {plain:.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times['plain'])})")
    print(f"  with matching     {matched:.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times['matched'])})")
    print(f"  ratio             {matched / plain:.2f}x")
    print(f"  parts: decode to RGB {decode_s:.2f} s, statistics (sample, mask, per frame) {stats_s:.2f} s, "
          f"lookup tables {lut_s:.2f} s")


if __name__ == "__main__":
    main()
