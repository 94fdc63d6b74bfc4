"""Normalize a generated clip once, as it enters the cache: keep the planned frames, conform them
to the project's size, pixel format and rate (and colour, when asked), and keep the last one as
the next chunk's chain image."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from contextlib import closing
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ltxflow.errors import Stopped
from ltxflow.media.encode import Format, FrameWriter, encode_frames_args
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.frames import decode_rgb, frame_size, video_info
from ltxflow.media.probe import MediaError
from ltxflow.timeline import Span

if TYPE_CHECKING:
    import threading

    from ltxflow.media.colormatch import ColorTarget


@dataclass
class NormalizeReport:
    """What the raw clip was, and how it deviated from its request."""

    raw_frames: int = 0
    raw_size: tuple[int, int] = (0, 0)
    deviations: list[str] = field(default_factory=list)
    color: dict[str, Any] | None = None  # what colour matching did; None: not asked for
    color_s: float = 0.0  # seconds spent matching colour (its statistics pass and applying it); not recorded
    read_s: float = 0.0  # seconds the writing pass waited for raw frames (decoding, or a backend drawing them)

    def record(self) -> dict[str, Any]:
        out = {"raw_frames": self.raw_frames, "raw_size": list(self.raw_size), "deviations": self.deviations}
        if self.color is not None:
            out["color_match"] = self.color
        return out


class ClipFrames:
    """A raw clip's frames, decoded (PyAV). Its frame count is learnt by reading it all."""

    count: int | None = None

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name

    def frames(self) -> Iterator[Any]:
        return decode_rgb(self.path)

    def samples(self, width: int, height: int) -> Iterator[Any]:
        """Each frame's colour-statistics grid (colormatch.sample) as conformed to width x height:
        a clip at that size is subsampled by the decoder (only the grid's pixels are made RGB)."""
        from ltxflow.media import colormatch as cm

        if frame_size(self.path) == (width, height):
            step = cm.sample_step(height, width)
            return decode_rgb(self.path, (-(-width // step), -(-height // step)))
        return (cm.sample(_conform(f, width, height)) for f in decode_rgb(self.path))


class DrawnFrames:
    """Frames a backend draws in this process (backends.base.Backend.draw), exactly `count` of
    them, as Pillow RGB images: read as often as needed, each time drawn again, and never past
    the last one used. They stay images until they are written (each conversion of a frame to
    an array and back costs about as much as drawing it)."""

    def __init__(self, name: str, draw: Callable[[], Iterator[Any]], count: int):
        self.name, self.draw, self.count = name, draw, count

    def frames(self) -> Iterator[Any]:
        return self.draw()

    def samples(self, width: int, height: int) -> Iterator[Any]:
        """The statistics grid of each frame: a grid of its own pixels (nearest), as the decoder
        takes a clip's."""
        import numpy as np
        from PIL import Image

        from ltxflow.media import colormatch as cm

        step = cm.sample_step(height, width)
        grid = (-(-width // step), -(-height // step))
        for img in self.draw():
            if img.size == (width, height):
                yield np.asarray(img.resize(grid, Image.NEAREST))
            else:
                yield cm.sample(_conform(np.asarray(img), width, height))


FrameSource = ClipFrames | DrawnFrames


def normalize_clip(raw: Path | FrameSource, out: Path, chain_png: Path | None, *, head: int, kept: int,
                   generated: int, width: int, height: int, fps: Fraction, fmt: Format,
                   color: ColorTarget | None = None, keyframes: tuple[int, ...] = (),
                   asked: tuple[int, int] | None = None,
                   stop: threading.Event | None = None) -> NormalizeReport:
    """Write frames [head, head + kept) of `raw` (a clip file, or frames a backend draws) to `out`
    as the project's clip format.

    Frames are taken by index, whatever the clip's timestamps or rate say. A clip with fewer
    frames than requested holds its last frame; extra frames are dropped; another size is scaled
    to cover and centre-cropped. `asked`: the size the clip was generated at (default: the
    output's); a clip of another size is a deviation. Each deviation is reported. The last kept frame is written to
    `chain_png` as an exact PNG when given. `keyframes`: output frames that start a closed group
    of pictures, where a crossfade stitch cuts the clip. Raises MediaError for an undecodable clip,
    Stopped when `stop` is set while it writes (the partial clip removed).

    `color`: take the slow colour drift out of the frames (see media/colormatch.py). The frames
    are then read twice: once for the statistics of raw frames 0 to the span's end, once to
    write the corrected frames; the chain PNG is the corrected last frame. Drawn frames are read
    only as far as they are used; a clip file is read to its end, to count its frames."""
    from PIL import Image

    source = ClipFrames(raw) if isinstance(raw, Path) else raw
    report = NormalizeReport()
    fix = None
    if color is not None:
        t0 = time.monotonic()
        fix, report.color = _color_correction(source, color, head, kept, width, height, fps, stop)
        report.color_s = time.monotonic() - t0
    args = encode_frames_args(find_ffmpeg().path, width, height, fps, out, fmt.video, keyframes=keyframes)
    last = None
    frames = source.frames()
    with closing(frames), FrameWriter(args, out, f"normalize {source.name}", stop=stop) as writer:
        for i, frame in enumerate(_timed(frames, report)):
            report.raw_frames = i + 1
            if i == 0:
                report.raw_size = _size(frame)
            if head <= i < head + kept:
                last = _conform(frame, width, height)
                if fix is not None:
                    t0 = time.monotonic()
                    last = fix.apply(last, i)
                    report.color_s += time.monotonic() - t0
                writer.write(_pixels(last))
            if source.count is not None and i + 1 >= min(head + kept, source.count):
                break  # a drawing: the frames after the last kept one are never used
        if report.raw_frames == 0:
            raise MediaError(f"{source.name}: no frames")
        # A short clip holds its last frame to the planned length (also when it ended before `head`).
        for _ in range(head + kept - max(head, min(report.raw_frames, head + kept))):
            if last is None:
                last = _conform(frame, width, height)
                if fix is not None:
                    last = fix.apply(last, head)
            writer.write(_pixels(last))
    if source.count is not None:
        report.raw_frames = source.count
    if report.raw_frames != generated:
        report.deviations.append(f"frames: asked for {generated}, got {report.raw_frames}")
    asked = asked or (width, height)
    if report.raw_size != asked:
        report.deviations.append(f"size: asked for {asked[0]}x{asked[1]}, got {report.raw_size[0]}x{report.raw_size[1]}")
    info = video_info(out)
    if info.frames != kept or (info.width, info.height) != (width, height):
        raise MediaError(f"{out.name}: normalized clip has {info.frames} frames at {info.width}x{info.height}, "
                         f"expected {kept} at {width}x{height}")
    if chain_png is not None:
        (last if isinstance(last, Image.Image) else Image.fromarray(last)).save(chain_png, compress_level=1)
    return report


def _timed(frames: Iterator[Any], report: NormalizeReport) -> Iterator[Any]:
    """`frames`, adding the time each takes to come to report.read_s."""
    while True:
        t0 = time.monotonic()
        frame = next(frames, None)
        report.read_s += time.monotonic() - t0
        if frame is None:
            return
        yield frame


def _color_correction(source: FrameSource, color: ColorTarget, head: int, kept: int, width: int, height: int,
                      fps: Fraction, stop: threading.Event | None = None):
    """(the correction, indexed by raw frame; a report of it): the first pass over the raw frames,
    sampling frames 0 up to the end of the target's span. Frames the clip does not have are the
    last frame it has, held (as the second pass writes them)."""
    import numpy as np

    from ltxflow.media import colormatch as cm

    first, end = color.span or Span.of(head, kept)
    count = end - first
    grids = []
    with closing(source.samples(width, height)) as samples:
        for grid in samples:
            if stop is not None and stop.is_set():
                raise Stopped(f"normalize {source.name}: stopped")
            grids.append(grid)
            if len(grids) == first + count:
                break
    if not grids:
        raise MediaError(f"{source.name}: no frames")
    grids += [grids[-1]] * (first + count - len(grids))
    stats, mask = cm.clip_stats(np.stack(grids))
    end = cm.frame_stats(color.end, mask) if color.end is not None else None
    fix = cm.correction(stats, half=max(1, round(fps / 2)), strength=color.strength, end=end,
                        masked=1 - float(mask.mean()))
    return fix, {"reference": color.label, "end": color.end is not None, **fix.summary()}


def reference_image(path: Path, width: int, height: int):
    """An image file as an HxWx3 uint8 array conformed to width x height as clip frames are (a
    colour reference). Raises MediaError when it cannot be read."""
    import numpy as np
    from PIL import UnidentifiedImageError

    from ltxflow.media.images import open_image  # PNG, JPEG, WebP only: never Ghostscript or another delegate

    try:
        with open_image(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise MediaError(f"{path.name}: cannot be read as a colour reference ({exc})") from None
    return _conform(rgb, width, height)


def _size(frame) -> tuple[int, int]:
    """(width, height) of a frame: an HxWx3 array or a Pillow image."""
    return frame.size if hasattr(frame, "getbands") else (frame.shape[1], frame.shape[0])


def _pixels(frame):
    """A frame's packed RGB bytes (an array is its own buffer)."""
    return frame.tobytes() if hasattr(frame, "getbands") else frame


def _conform(frame, width: int, height: int):
    """A frame at exactly width x height: scaled to cover, centre-cropped. A Pillow image of
    that size is kept as it is; anything else becomes an HxWx3 array."""
    import numpy as np
    from PIL import Image

    w, h = _size(frame)
    if (w, h) == (width, height):
        return frame
    frame = np.asarray(frame)
    s = max(width / w, height / h)
    img = Image.fromarray(frame).resize((max(width, round(w * s)), max(height, round(h * s))), Image.LANCZOS)
    x, y = (img.width - width) // 2, (img.height - height) // 2
    return np.asarray(img.crop((x, y, x + width, y + height)))
