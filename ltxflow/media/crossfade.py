"""Crossfade seams at stitch time: each clip is cut at its forced key frames by packet copy, the
frames of each seam window are decoded, blended and encoded again with the clips' own settings,
and every other frame is copied untouched."""

from __future__ import annotations

import os
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

from ltxflow.media.encode import Format, FrameWriter, encode_frames_args, piece_mux_options
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.frames import decode_rgb, open_video, video_info
from ltxflow.media.probe import MediaError
from ltxflow.crossfades import Seams, Split, Window


def split_clip(clip: Path, split: Split, fps: Fraction, stem: Path) -> dict[tuple[int, int], Path]:
    """`clip` cut into split.ranges by packet copy, as files named from `stem`; the clip itself
    when it is not cut. Each part starts on a key frame and holds exactly its frames, which is
    checked by demuxing. Raises MediaError when the clip has no key frame where a part starts, or a
    group of pictures crosses a cut (the clip was not normalized for this split)."""
    import av

    ranges = split.ranges
    if len(ranges) == 1:
        return {ranges[0]: clip}
    paths = [stem.with_name(f"{stem.name}.{lo}-{hi}{clip.suffix}") for lo, hi in ranges]
    starts = [lo for lo, _ in ranges]
    outputs = []
    try:
        with open_video(clip) as src:
            stream = src.streams.video[0]
            origin = stream.start_time or 0
            for path in paths:
                out = av.open(str(path), "w", options=piece_mux_options(path, fps))
                target = out.add_stream_from_template(stream)
                if stream.codec_context.codec_tag:  # else ProRes 4444 would be tagged, and decoded, as 422
                    target.codec_context.codec_tag = stream.codec_context.codec_tag
                outputs.append((out, target))
            part, shift = -1, 0
            for packet in src.demux(stream):
                if not packet.size:
                    continue
                frame = round((packet.pts - origin) * stream.time_base * fps)
                if not 0 <= frame < split.frames:
                    raise MediaError(f"{clip.name}: has a frame at {frame}, outside its {split.frames} frames")
                k = bisect_right(starts, frame) - 1
                if k != part:
                    if k < part or not packet.is_keyframe or frame != starts[k]:
                        raise MediaError(f"{clip.name}: cannot be cut at frame {starts[max(k, part)]} without "
                                         "decoding (no closed group of pictures starts there)")
                    part, shift = k, packet.pts
                packet.pts -= shift
                packet.dts -= shift
                packet.stream = outputs[k][1]
                outputs[k][0].mux(packet)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{clip.name}: cutting it failed ({exc})") from None
    finally:
        for out, _ in outputs:
            out.close()
    for (lo, hi), path in zip(ranges, paths):
        if video_info(path).frames != hi - lo:
            raise MediaError(f"{clip.name}: its part [{lo}, {hi}) holds {video_info(path).frames} frames, "
                             f"expected {hi - lo}")
    return dict(zip(ranges, paths))


def blend(a: Sequence, b: Sequence, window: Window) -> Iterator:
    """The window's frames from A's last `before` frames and B's first `after` (uint8 RGB):
    (1 - a_j) * A + a_j * B in integer arithmetic, halves rounded up."""
    import numpy as np

    n = window.frames
    wide = np.uint16 if 511 * n < 2**16 else np.uint32  # 255 * 2n + n at most
    for j, (ai, bi, _) in enumerate(window.sources()):
        wa, wb = 2 * n - 2 * j - 1, 2 * j + 1  # (1 - a_j) and a_j, times 2n
        mix = a[window.before + ai].astype(wide) * wa + b[bi].astype(wide) * wb + n
        yield (mix // (2 * n)).astype(np.uint8)


def _frames(path: Path, count: int) -> list:
    frames = list(decode_rgb(path))
    if len(frames) != count:
        raise MediaError(f"{path.name}: decoded {len(frames)} frames, expected {count}")
    return frames


def join(clips: Sequence[Path], seams: Seams, fps: Fraction, fmt: Format, work: Path) -> tuple[list[Path], int]:
    """The files to concatenate for `clips` (one per piece of `seams`, normalized with its split's
    key frames): the bodies cut from the clips and the windows, encoded with fmt.video, in order.
    Returns them with the number of frames encoded. Work files go in `work`; windows are made a
    few at a time (each is a decode, a blend and an ffmpeg encode of a handful of frames)."""
    parts = [split_clip(clip, s, fps, work / f"piece{i}") for i, (clip, s) in enumerate(zip(clips, seams.splits))]
    jobs = {}
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="ltxflow-fade") as pool:
        for w in seams.windows:
            a_len = seams.splits[w.index - 1].frames
            jobs[w.index] = pool.submit(_window, parts[w.index - 1][(a_len - w.before, a_len)],
                                        parts[w.index][(0, w.after)], w, work / f"window{w.index}.{fmt.clip_ext}",
                                        seams.pieces[w.index].name, fps, fmt)
        files: list[Path] = []
        for i, split in enumerate(seams.splits):
            if i in jobs:
                files.append(jobs[i].result())
            lo, hi = split.body
            if hi > lo:
                files.append(parts[i][(lo, hi)])
    return files, seams.blended


def _window(a_part: Path, b_part: Path, w: Window, out: Path, name: str, fps: Fraction, fmt: Format) -> Path:
    """Encode window `w` from the parts holding A's last and B's first frames into `out`."""
    a, b = _frames(a_part, w.before), _frames(b_part, w.after)
    height, width = b[0].shape[:2]
    args = encode_frames_args(find_ffmpeg().path, width, height, fps, out, fmt.video, exact_duration=True)
    with FrameWriter(args, out, f"crossfade into {name}") as writer:
        for frame in blend(a, b, w):
            writer.write(frame)
    got = video_info(out).frames
    if got != w.frames or writer.frames != w.frames:
        raise MediaError(f"{out.name}: the crossfade into {name} encoded {got} frames, expected {w.frames}")
    return out
