"""Frames for the build report: the first and last few frames of a clip, small, and how much they differ."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ltxflow.media.frames import open_video
from ltxflow.media.probe import MediaError

# Frames are decoded at most this wide and tall (aspect kept): large enough for a thumbnail, small
# enough that differences measure the picture rather than compression noise.
SMALL = 320


@dataclass(frozen=True)
class ClipEnds:
    """The first and last `n` frames of a clip (fewer when it is shorter), as HxWx3 uint8 arrays
    at most SMALL pixels on a side. A clip of fewer than 2n frames shares frames between them."""

    head: list
    tail: list

    @property
    def first(self):
        return self.head[0]

    @property
    def last(self):
        return self.tail[-1]


def small_size(width: int, height: int, limit: int = SMALL) -> tuple[int, int]:
    """(w, h) fitting inside limit x limit with the aspect kept, both even and at least 2."""
    s = min(1.0, limit / max(width, height))
    return max(2, round(width * s / 2) * 2), max(2, round(height * s / 2) * 2)


def clip_ends(path: Path, n: int, frames: int) -> ClipEnds:
    """The first and last `n` frames of a clip of `frames` frames (the count the plan expects),
    decoding only what is needed: the head, then from the keyframe before the tail. Falls back to
    decoding the whole clip when seeking does not land where the timestamps say. Raises MediaError."""
    import av

    with open_video(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path.name}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        size = small_size(stream.codec_context.width, stream.codec_context.height)
        head, pts = [], []
        try:
            for frame in container.decode(stream):
                head.append(_small(frame, size))
                pts.append(frame.pts)
                if len(head) == n:
                    break
            if not head:
                raise MediaError(f"{path.name}: no frames")
            tail = _seek_tail(container, stream, n, frames, pts, size)
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path.name}: cannot be decoded ({exc})") from None
    if tail is None:
        tail = _decode_tail(path, n, size)
    return ClipEnds(head, tail)


def _small(frame, size: tuple[int, int]):
    return frame.to_ndarray(width=size[0], height=size[1], format="rgb24", interpolation="AREA")


def _seek_tail(container, stream, n: int, frames: int, pts: list, size: tuple[int, int]) -> list | None:
    """The last n frames by seeking, or None when that cannot be trusted (irregular or missing
    timestamps, a seek past the target, a frame count other than expected)."""
    if frames <= 3 * n or len(pts) < 2 or None in pts:
        return None
    step = pts[1] - pts[0]
    if step <= 0 or any(b - a != step for a, b in zip(pts, pts[1:])):
        return None
    target = pts[0] + (frames - n) * step
    container.seek(target, stream=stream, backward=True, any_frame=False)
    tail: deque = deque(maxlen=n)
    landed = None
    after = 0
    for frame in container.decode(stream):
        if landed is None:
            landed = frame.pts
        if frame.pts is None:
            return None
        if frame.pts >= target:
            after += 1
            tail.append(frame)
    if landed is None or landed > target or after != n:
        return None
    return [_small(f, size) for f in tail]


def _decode_tail(path: Path, n: int, size: tuple[int, int]) -> list:
    """The last n frames by decoding every frame (converting only the ones kept)."""
    import av

    tail: deque = deque(maxlen=n)
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                tail.append(frame)
            return [_small(f, size) for f in tail]
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path.name}: cannot be decoded ({exc})") from None


def mean_abs_diff(a, b) -> float:
    """Mean absolute difference of two frames of one size, in 8-bit levels (0..255)."""
    import numpy as np

    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


FLASH_FRAMES = 3  # a change across a seam that is gone this many frames later is a flash, not a jump


def lasting_jump(before: list, after: list) -> float:
    """The change across a seam that lasts: between the last frame of `before` and the first of
    `after` (frames of one size), unless a flash on one side of it fades within FLASH_FRAMES (an
    animatic's beat pulse, a strobe on the downbeat the seam is placed on). Then the difference
    from the frame on the other side to a frame up to FLASH_FRAMES on (or back) counts, less the
    steps of motion that side takes in as many frames (its median step, times k; never below 0);
    the smallest of these."""
    import statistics

    best = mean_abs_diff(before[-1], after[0])
    for frames, forward in ((after, True), (before, False)):
        step = statistics.median(steps(frames)) if len(frames) > 1 else 0.0
        for k in range(1, min(FLASH_FRAMES, len(frames) - 1) + 1):
            a, b = (before[-1], after[k]) if forward else (before[-1 - k], after[0])
            best = min(best, max(0.0, mean_abs_diff(a, b) - k * step))
    return best


def steps(frames: list) -> list[float]:
    """Differences between consecutive frames."""
    return [mean_abs_diff(a, b) for a, b in zip(frames, frames[1:])]


def jpeg(frame, quality: int = 82) -> bytes:
    """A frame as JPEG bytes (for data: URIs)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
