"""Colour continuity: pull a clip's slow colour and contrast drift back to a reference image's statistics.

Pure numpy. Each frame is summarised by the mean and standard deviation of its R, G and B values
(on a strided subsample). Their trend over time (a running median, then a running mean, both over
a symmetric window of about a second that shrinks at the clip's ends, so a linear drift is
followed exactly and a flash shorter than half a second barely moves it) is mapped per channel,
per frame, onto the reference statistics by an affine correction, applied through 256-entry
lookup tables. What changes faster than the trend (a flash on the beat, a cut, motion) is kept.
The reference may move linearly from a start image to an end image across the clip, so a planned
change of look toward an end image is followed rather than fought.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

GAIN_RANGE = (0.5, 2.0)  # a correction never more than halves or doubles a channel's contrast
STEP = 4  # statistics are taken on every STEP-th pixel of every STEP-th row
_LEVELS = np.arange(256, dtype=np.float64)


@dataclass(frozen=True)
class ColorTarget:
    """What a clip's colours are matched to.

    `start`: the reference image (HxWx3 uint8, at the clip's output size). `end`: a second
    reference the clip moves toward, reached at the last frame of `span` (None: `start`
    throughout). `span`: (first raw frame, count), the frames whose statistics make the trend:
    a chunk's planned kept frames, so a clip of part of them is corrected exactly as the whole is
    (None: the frames being normalized). `label`: what the reference is, for the report."""

    start: Any
    end: Any = None
    span: tuple[int, int] | None = None
    label: str = ""


def frame_stats(frame: np.ndarray) -> np.ndarray:
    """[mean R, mean G, mean B, std R, std G, std B] of an HxWx3 uint8 frame, on a strided
    subsample (exact on it: computed from per-channel histograms)."""
    h, w = frame.shape[:2]
    step = max(1, min(STEP, h // 16, w // 16))
    sample = np.ascontiguousarray(frame[::step, ::step]).reshape(-1, 3)
    n = len(sample)
    out = np.empty(6)
    for c in range(3):
        hist = np.bincount(sample[:, c], minlength=256).astype(np.float64)
        mean = hist @ _LEVELS / n
        out[c] = mean
        out[3 + c] = np.sqrt(max(hist @ (_LEVELS * _LEVELS) / n - mean * mean, 0.0))
    return out


def trend(stats: np.ndarray, half: int) -> np.ndarray:
    """The slow part of per-frame statistics (n x k): a running median, then a running mean, each
    over frames [i - h, i + h] with h = min(half, i, n - 1 - i). Both keep a linear sequence
    exactly (symmetric windows), and the median ignores any burst shorter than h + 1 frames."""
    stats = np.asarray(stats, dtype=np.float64)
    n = len(stats)
    idx = np.arange(n)
    h = np.minimum(half, np.minimum(idx, n - 1 - idx))
    median = np.array([np.median(stats[i - h[i]: i + h[i] + 1], axis=0) for i in range(n)]).reshape(stats.shape)
    csum = np.concatenate([np.zeros((1,) + stats.shape[1:]), np.cumsum(median, axis=0)])
    return (csum[idx + h + 1] - csum[idx - h]) / (2 * h + 1)[:, None]


def reference_stats(target: ColorTarget, first: int, count: int) -> np.ndarray:
    """The statistics raw frames first..first+count-1 should have (count x 6): the start image's,
    moving linearly to the end image's when there is one. Raw frame 0 is the start image's moment
    (the model starts from it) and the last of these frames the end image's, so frame j is at
    j / (first + count - 1) of the way."""
    start = frame_stats(target.start)
    if target.end is None:
        return np.tile(start, (count, 1))
    end = frame_stats(target.end)
    last = first + count - 1
    t = (first + np.arange(count)) / last if last > 0 else np.ones(count)
    return start[None, :] + t[:, None] * (end - start)[None, :]


@dataclass(frozen=True)
class Correction:
    """Per-frame, per-channel affine maps v -> (v - mean) * gain + ref_mean, as lookup tables."""

    gain: np.ndarray  # n x 3
    shift: np.ndarray  # n x 3: the reference mean minus the trend mean (levels)
    luts: np.ndarray  # n x 3 x 256 uint8

    @property
    def frames(self) -> int:
        return len(self.gain)

    def apply(self, frame: np.ndarray, i: int) -> np.ndarray:
        """Frame `i` of the span corrected (clamped to the span)."""
        lut = self.luts[min(max(i, 0), self.frames - 1)]
        out = np.empty_like(frame)
        for c in range(3):
            out[..., c] = np.take(lut[c], frame[..., c])
        return out

    def summary(self) -> dict[str, Any]:
        """The largest mean shift (levels, any channel) and the range of gains, for a report."""
        return {"max_shift": round(float(np.abs(self.shift).max(initial=0.0)), 1),
                "gain": [round(float(self.gain.min(initial=1.0)), 3), round(float(self.gain.max(initial=1.0)), 3)]}


def correction(stats: np.ndarray, reference: np.ndarray, half: int) -> Correction:
    """The correction that takes the trend of `stats` (n x 6, per frame) onto `reference` (n x 6).

    Only the trend is mapped: each frame keeps its own difference from the trend. A channel whose
    trend is flat (std near 0) gets the largest gain allowed rather than a division by zero."""
    slow = trend(stats, half)
    mean, std = slow[:, :3], slow[:, 3:]
    ref_mean, ref_std = reference[:, :3], reference[:, 3:]
    gain = np.clip(ref_std / np.maximum(std, 1e-6), *GAIN_RANGE)
    values = (_LEVELS[None, None, :] - mean[:, :, None]) * gain[:, :, None] + ref_mean[:, :, None]
    luts = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Correction(gain, ref_mean - mean, luts)
