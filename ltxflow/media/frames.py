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


# The demuxers a clip is read with (a backend's, a normalized one): MP4/MOV, Matroska/WebM, GIF.
# Never a playlist, a concat list or a network protocol: a clip comes from a server or from a
# cache a pull request could have committed, and such a file would read whatever it names.
VIDEO_DEMUXERS = ("mov", "matroska", "gif")


def open_video(path: Path):
    """A PyAV container for reading `path`: the file protocol and VIDEO_DEMUXERS only. Raises
    MediaError when it cannot be opened."""
    import av

    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(VIDEO_DEMUXERS)}
    try:
        return av.open(f"file:{path}", container_options=options)
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"{path.name}: cannot open as video, or not an MP4, MOV, WebM or GIF file ({exc})") from None


def is_video_file(path: Path) -> bool:
    """Whether `path` starts as the clips ltxflow writes do (an MP4/MOV `ftyp` box, Matroska's
    EBML header, GIF): what a stitch checks of each clip before its concat list names it, since the
    concat demuxer probes each file it opens and would follow a nested list."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return starts_iso_media(head) or head[:4] == b"\x1a\x45\xdf\xa3" or head[:4] == b"GIF8"


def starts_iso_media(head: bytes) -> bool:
    """Whether these first bytes are an ISO media file's (MP4, MOV, M4A): an `ftyp` box of a
    plausible size first (text that spells ftyp at offset 4 is not one)."""
    return len(head) >= 12 and head[4:8] == b"ftyp" and 8 <= int.from_bytes(head[:4], "big") <= 4096


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
