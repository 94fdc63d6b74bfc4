"""Stitching: normalized clips joined by stream copy, with the master track's span muxed beside them.

The master audio is encoded once per song span and format and kept in the cache's audio/ folder
as master-<tag>.<ext>, with master-<tag>.<ext>.json beside it: its size and sha256 when written.
A kept file is used only when it is a regular file (not a link) of that size and digest;
otherwise (truncated, altered, a sidecar missing or invalid) it is encoded again."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ltxflow.media.crossfade import join
from ltxflow.media.encode import Format, FfmpegFailed, concat_list, encode_audio_args, gif_args, run, stitch_args
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.frames import is_video_file, starts_iso_media, video_info
from ltxflow.files import plain_file, read_json, write_json_atomic
from ltxflow.media.probe import AudioTrack, file_digest
from ltxflow.crossfades import Seams
from ltxflow.timeline import Span, frame_to_sample


@dataclass(frozen=True)
class StitchReport:
    output: Path
    frames: int
    audio_samples: int
    seconds: float
    audio_cached: bool
    reencoded: int = 0  # frames encoded again: the crossfade windows


def segment_samples(segments: list[Span], fps: Fraction, rate: int) -> list[Span]:
    """Timeline frame segments -> the master's sample spans they cover."""
    return [Span(frame_to_sample(s.start, fps, rate), frame_to_sample(s.end, fps, rate)) for s in segments]


def master_audio(track: AudioTrack, segments: list[Span], fps: Fraction, fmt: Format,
                 audio_dir: Path, stop: threading.Event | None = None) -> tuple[Path, int, bool]:
    """The master track's samples for `segments`, encoded once for `fmt` and kept in `audio_dir`.
    Returns (file, samples, whether it was already there: see kept_master). Raises Stopped when
    `stop` is set while it encodes (nothing is left in `audio_dir` then)."""
    spans = segment_samples(segments, fps, track.sample_rate)
    tag = hashlib.sha256(f"{track.digest}|{spans}|{fmt.audio}".encode()).hexdigest()[:32]
    target = audio_dir / f"master-{tag}.{fmt.audio_ext}"
    samples = sum(n for _, n in spans)
    if kept_master(target):
        return target, samples, True
    audio_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    wav = audio_dir / f".master-{tag}.{stamp}.wav"
    tmp = audio_dir / f".master-{tag}.{stamp}.{fmt.audio_ext}"
    try:
        track.write_wav(wav, spans)
        if fmt.audio_ext == "wav":
            wav.replace(tmp)
        else:
            run(encode_audio_args(find_ffmpeg().path, wav, tmp, fmt.audio), what="encoding the master audio",
                stop=stop)
        write_json_atomic(_sidecar(target), {"size": tmp.stat().st_size, "sha256": file_digest(tmp)})
        tmp.replace(target)
    finally:
        wav.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return target, samples, False


_HEX = re.compile(r"[0-9a-f]{64}")


def _starts_as_audio(path: Path) -> bool:
    """Whether `path` starts as the master audio ltxflow encodes does (M4A, Ogg Opus, WAV)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return starts_iso_media(head) or head[:4] == b"OggS" or (head[:4] == b"RIFF" and head[8:12] == b"WAVE")


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".json")


def kept_master(target: Path) -> bool:
    """Whether the kept master audio `target` is the file written: a regular file (not a link)
    of the size and sha256 its sidecar recorded then."""
    st = plain_file(target)
    if st is None or not _starts_as_audio(target):
        return False
    try:
        seen = read_json(_sidecar(target))
    except (OSError, ValueError):
        return False
    if not (isinstance(seen, dict) and set(seen) == {"size", "sha256"} and seen["size"] == st.st_size
            and isinstance(seen["sha256"], str) and _HEX.fullmatch(seen["sha256"])):
        return False
    try:
        return file_digest(target) == seen["sha256"]
    except OSError:
        return False


def stitch(clips: list[Path], segments: list[Span], track: AudioTrack, fps: Fraction, fmt: Format,
           out: Path, audio_dir: Path, work: Path, seams: Seams | None = None) -> StitchReport:
    """Join `clips` (normalized, one per timeline segment piece, in order) into `out`.

    The video is stream-copied (gif: encoded from the clips once), except the crossfade windows
    of `seams` (the clips must have been normalized with its splits' key frames); the audio is
    the master track's span for `segments`. The result is checked for its frame count and
    renamed into place, so `out` is either the previous file or a complete new one."""
    t0 = time.monotonic()
    expected = sum(s.count for s in segments)
    ffmpeg = find_ffmpeg().path
    reencoded = 0
    if seams is not None and seams.windows:
        clips, reencoded = join(clips, seams, fps, fmt, work)
    for clip in clips:
        if not is_video_file(clip):  # a planted file the concat demuxer would follow (a nested list)
            raise FfmpegFailed(f"stitching {out.name}: {clip} is not an MP4, MOV, WebM or GIF file; "
                               "remove its cache entry (`ltxflow cache gc`) and build again")
    listing = work / "clips.ffconcat"
    listing.write_text(concat_list(clips))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}{out.suffix}")
    audio, samples, cached = None, 0, False
    try:
        if fmt.container == "gif":
            run(gif_args(ffmpeg, listing, tmp, min(640, _width(clips[0]))), what=f"writing {out.name}")
        else:
            if fmt.audio:
                audio, samples, cached = master_audio(track, segments, fps, fmt, audio_dir)
            run(stitch_args(ffmpeg, listing, audio, tmp, fps, fmt), what=f"stitching {out.name}")
        frames = video_info(tmp).frames
        if frames != expected:
            raise FfmpegFailed(f"stitching {out.name}: wrote {frames} frames, expected {expected}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return StitchReport(out, expected, samples, time.monotonic() - t0, cached, reencoded)


def _width(clip: Path) -> int:
    return video_info(clip).width
