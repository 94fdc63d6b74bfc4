"""Reading video: decoded RGB frames, and fast frame counts for verifying clips (PyAV)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

from ltxflow.media.probe import MediaError


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    width: int
    height: int
    fps: Fraction | None
    codec: str
    has_audio: bool


def open_video(path: Path):
    """A PyAV container for reading `path`. Raises MediaError when it cannot be opened."""
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"{path.name}: cannot open as video ({exc})") from None


def video_info(path: Path) -> VideoInfo:
    """Frame count by demuxing (no decoding: one packet per frame in the clips ltxflow writes),
    size, rate and codec. Raises MediaError for a missing, truncated or video-less file."""
    import av

    with open_video(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path.name}: has no video stream")
        stream = container.streams.video[0]
        frames = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    frames += 1
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path.name}: damaged ({exc})") from None
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(frames, stream.codec_context.width, stream.codec_context.height,
                         Fraction(rate) if rate else None, stream.codec_context.name,
                         bool(container.streams.audio))


def frame_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video's first stream, from its header. Raises MediaError."""
    with open_video(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path.name}: has no video stream")
        ctx = container.streams.video[0].codec_context
        return ctx.width, ctx.height


def decode_rgb(path: Path, size: tuple[int, int] | None = None) -> Iterator["object"]:
    """Every frame of a video's first stream as an HxWx3 uint8 numpy array, in decode order of
    presentation, whatever its timestamps say (clips are retimed by index). `size` (w, h): each
    frame subsampled to it by the decoder's scaler, nearest pixel (a grid of the picture's own
    pixels, for statistics), instead of converted whole."""
    import av

    with open_video(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path.name}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if size is None:
                    yield frame.to_ndarray(format="rgb24")
                else:
                    yield frame.to_ndarray(width=size[0], height=size[1], format="rgb24", interpolation="POINT")
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path.name}: cannot be decoded ({exc})") from None
