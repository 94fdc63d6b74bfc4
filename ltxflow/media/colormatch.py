"""Colour continuity: take the slow colour and contrast drift out of a clip, relative to where it started.

Pure numpy. Each frame is summarised by the mean and standard deviation of its R, G and B values,
taken on a strided sample of its pixels and only on the pixels that carry the picture: pixels that
hold still over the whole clip (burnt-in text, logos, a caption bar, clipped highlights) and black
bars at the borders are left out (see `content_mask`). The trend of these statistics over time (a
running median, then a running mean, over a symmetric window of about a second that shrinks at
the clip's ends, so a linear drift is followed exactly and a flash shorter than half a second
barely moves it) is compared with the path the clip should take: where it started (raw frame 0,
the start image's moment) held still, or, toward an end image, a straight line from there to the
end image's statistics at the last frame. A `strength` (0..1) of each frame's deviation from that
path is taken out per channel by an affine correction applied through 256-entry lookup tables.
What changes faster than the trend (a flash on the beat, a cut, motion) is kept, and a clip that
holds its colours gets identity tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ltxflow.timeline import Span

GAIN_RANGE = (0.5, 2.0)  # a correction never more than halves or doubles a channel's contrast
SAMPLE_PIXELS = 65536  # statistics are taken on about this many pixels of a frame (a strided grid)
STILL_LEVELS = 3  # a pixel that moves less than this (every channel, whole clip) is an overlay, not picture
BAR_LEVEL = 16  # border rows and columns never brighter than this are letterbox bars
BAND_STILL = 0.85  # a row or column this much still is an overlay band, left out whole
MIN_CONTENT = 0.1  # a clip where less of the picture than this moves is still
NOISE = (0.5, 0.005)  # deviations smaller than this are coding noise, left alone: (levels of mean, log of std)
TRIM = (2, 98)  # contrast: the std of the values between these percentiles (stray text pixels barely move it)
STD_FLOOR = 2.0  # levels: a flat channel's contrast is not matched by a division by ~0
_LEVELS = np.arange(256, dtype=np.float64)
_IDENTITY = np.arange(256, dtype=np.uint8)


@dataclass(frozen=True)
class ColorTarget:
    """How a clip's colours are corrected.

    `strength`: the share of the drift taken out, 0..1 (the project's default is
    project.model.DEFAULT_COLOR_STRENGTH). `end`: an image (HxWx3 uint8, at the clip's output
    size) the clip moves toward, reached at the last frame of `span` (None: the clip should hold
    the colours it started with). `span`: the kept raw frames of the chunk (timeline.Span):
    the statistics are taken on raw frames 0 up to the span's end, so a clip of part of them is
    corrected exactly as the whole is (None: the frames being normalized). `label`: what the clip
    started from, for the report."""

    strength: float
    end: Any = None
    span: Span | None = None
    label: str = ""


def sample_step(height: int, width: int) -> int:
    """The stride of the sample grid: about SAMPLE_PIXELS pixels, at least 16 rows and columns."""
    return max(1, min(math.ceil(math.sqrt(height * width / SAMPLE_PIXELS)), height // 16, width // 16))


def sample(frame: np.ndarray) -> np.ndarray:
    """The pixels of an HxWx3 frame that statistics are taken on (a strided grid, uint8)."""
    step = sample_step(*frame.shape[:2])
    return np.ascontiguousarray(frame[::step, ::step, :3])


def content_mask(samples: np.ndarray) -> np.ndarray:
    """Which pixels of the sample grid show the picture (h x w bool), from a clip's samples (n x h x w x 3).

    Left out: rows and columns from each border that are never brighter than BAR_LEVEL (letterbox
    bars, still or flickering); pixels that stay within STILL_LEVELS on every channel through the
    clip (burnt-in text and logos, a caption band, pixels clipped at 0 or 255: none of them
    drifts, and a band's black would inflate the contrast), with their next neighbours (the
    anti-aliased edges of text); and whole rows and columns that are
    mostly such pixels (a caption band with a running timecode in it). When less than MIN_CONTENT
    of the picture inside the bars moves, the clip is still: nothing in it drifts, and its still
    pixels are the statistics (steady, so the clip is left as it is)."""
    peak = samples.max(axis=0)
    picture = ~_bars(peak.max(axis=-1) <= BAR_LEVEL)
    still = picture & ((peak.astype(np.int16) - samples.min(axis=0)).max(axis=-1) < STILL_LEVELS)
    area = np.maximum(picture.sum(axis=1), 1), np.maximum(picture.sum(axis=0), 1)
    band = (still.sum(axis=1) >= BAND_STILL * area[0])[:, None] | (still.sum(axis=0) >= BAND_STILL * area[1])[None, :]
    moving = picture & ~_grow(still) & ~band
    if moving.sum() >= MIN_CONTENT * picture.sum() and moving.any():
        return moving
    return still if still.any() else np.ones(picture.shape, bool)


def _grow(mask: np.ndarray) -> np.ndarray:
    """`mask` (h x w bool) with its 4-neighbours: the anti-aliased edge of a burnt-in text or logo
    blends it with the picture, so it moves only partly with the picture's drift."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _bars(dark: np.ndarray) -> np.ndarray:
    """The rows and columns of `dark` (h x w bool) that are dark throughout, running in from a border."""
    out = np.zeros(dark.shape, bool)
    for axis, lines in ((0, dark.all(axis=1)), (1, dark.all(axis=0))):
        n = len(lines)
        top = n if lines.all() else int(np.argmin(lines))
        bottom = n if lines.all() else int(np.argmin(lines[::-1]))
        index = [i for i in range(n) if i < top or i >= n - bottom]
        if axis == 0:
            out[index, :] = True
        else:
            out[:, index] = True
    return out


def frame_stats(frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """[mean R, mean G, mean B, std R, std G, std B] of an HxWx3 uint8 frame, on its sample grid
    (`sample`), over the grid's pixels where `mask` is true (None: all)."""
    return _stats(sample(frame), mask)


def _stats(grid: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The statistics from each channel's 256-level histogram of the pixels: the mean, and the std
    of the values between the TRIM percentiles (linear interpolation between ranks, as
    numpy.percentile takes them), without sorting or copying the pixels."""
    pixels = grid.reshape(-1, 3) if mask is None else grid[mask]
    n = len(pixels)
    out = np.empty(6)
    for c in range(3):
        hist = np.bincount(pixels[:, c], minlength=256).astype(np.float64)
        out[c] = hist @ _LEVELS / n
        cum = np.cumsum(hist)
        low, high = (_rank_value(cum, (n - 1) * p / 100) for p in TRIM)
        inside = hist * ((_LEVELS >= low) & (_LEVELS <= high))
        m = inside.sum()
        mean = inside @ _LEVELS / m
        out[3 + c] = math.sqrt(max(inside @ (_LEVELS * _LEVELS) / m - mean * mean, 0.0))
    return out


def _rank_value(cum: np.ndarray, rank: float) -> float:
    """The value at fractional `rank` (0-based) of the sorted pixels whose cumulative histogram is `cum`."""
    lo = math.floor(rank)
    a = int(np.searchsorted(cum, lo + 1))  # the level holding the (lo+1)-th pixel
    b = int(np.searchsorted(cum, min(lo + 2, cum[-1])))
    return a + (rank - lo) * (b - a)


def clip_stats(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(statistics per frame (n x 6), the content mask they were taken over) of a clip's samples."""
    mask = content_mask(samples)
    return np.array([_stats(grid, mask) for grid in samples]), mask


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


def expected_path(start: np.ndarray, count: int, end: np.ndarray | None = None) -> np.ndarray:
    """The statistics raw frames 0..count-1 should have (count x 6): `start` held, or moving
    linearly from `start` at frame 0 to `end` at the last frame."""
    if end is None or count < 2:
        return np.tile(start, (count, 1))
    t = np.arange(count) / (count - 1)
    return start[None, :] + t[:, None] * (np.asarray(end, np.float64) - start)[None, :]


@dataclass(frozen=True)
class Correction:
    """Per-frame, per-channel affine maps v -> (v - trend mean) * gain + trend mean + shift, as lookup tables."""

    gain: np.ndarray  # n x 3
    shift: np.ndarray  # n x 3: how far each channel's mean moves (levels)
    luts: np.ndarray  # n x 3 x 256 uint8
    strength: float
    masked: float = 0.0  # the share of the sample grid left out of the statistics

    @property
    def frames(self) -> int:
        return len(self.gain)

    @property
    def identity(self) -> bool:
        """True when no frame changes: the clip already holds its colours."""
        return bool((self.luts == _LEVELS.astype(np.uint8)).all())

    def apply(self, frame, i: int):
        """Frame `i` (an HxWx3 uint8 array, or a Pillow RGB image) corrected, as the same kind
        (clamped to the frames there are tables for). Identity tables return the frame itself;
        others go through Pillow's per-band lookup (the same values as indexing each channel's
        table, several times faster)."""
        from PIL import Image

        lut = self.luts[min(max(i, 0), self.frames - 1)]
        if (lut == _IDENTITY).all():
            return frame
        if isinstance(frame, Image.Image):
            return frame.point(lut.reshape(-1).tolist())
        return np.asarray(Image.fromarray(frame).point(lut.reshape(-1).tolist()))

    def summary(self) -> dict[str, Any]:
        """For a report: the strength, whether the tables are identity, the largest mean shift
        (levels, any channel), the range of gains (none when the tables are identity: a shift or gain
        too small to move a level) and the share of pixels left out as overlays or bars."""
        identity = self.identity
        shift, gain = (np.zeros(1), np.ones(1)) if identity else (self.shift, self.gain)
        return {"strength": self.strength, "identity": identity,
                "max_shift": round(float(np.abs(shift).max(initial=0.0)), 1),
                "gain": [round(float(gain.min(initial=1.0)), 3), round(float(gain.max(initial=1.0)), 3)],
                "masked": round(self.masked, 3)}


def correction(stats: np.ndarray, half: int, strength: float, end: np.ndarray | None = None,
               masked: float = 0.0) -> Correction:
    """The correction that takes `strength` of the drift out of a clip whose raw frames 0..n-1
    have statistics `stats` (n x 6): the deviation of their trend from `expected_path` (from the
    trend at frame 0, toward `end`'s statistics when given). Deviations within NOISE are kept as
    they are (a clip that holds its colours is left alone) and larger ones are reduced by that
    much, so the correction starts smoothly."""
    slow = trend(stats, half)
    path = expected_path(slow[0], len(slow), end)
    mean, std = slow[:, :3], np.maximum(slow[:, 3:], STD_FLOOR)
    drift_mean = _beyond(mean - path[:, :3], NOISE[0])
    drift_std = _beyond(np.log(std / np.maximum(path[:, 3:], STD_FLOOR)), NOISE[1])
    gain = np.clip(np.exp(-strength * drift_std), *GAIN_RANGE)
    shift = -strength * drift_mean
    values = (_LEVELS[None, None, :] - mean[:, :, None]) * gain[:, :, None] + (mean + shift)[:, :, None]
    luts = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Correction(gain, shift, luts, strength, masked)


def _beyond(x: np.ndarray, noise: float) -> np.ndarray:
    """`x` moved toward 0 by `noise` (0 within it)."""
    return np.sign(x) * np.maximum(np.abs(x) - noise, 0.0)
