"""ffmpeg command lines, built by pure functions (tests compare lists), and the one place they run."""

from __future__ import annotations

import math
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal, Sequence

from ltxflow.errors import FfmpegFailed, Stopped
from ltxflow.timeline import fps_str

Quality = Literal["draft", "low", "medium", "high", "maximum"]
QUALITIES: tuple[Quality, ...] = ("low", "medium", "high", "maximum")  # what a project may ask for
# "draft": how an animatic's clips are encoded whatever the project asks (registry.py: clip_quality):
# x264's fastest preset, at a rate factor that keeps its burnt-in text sharp.


@dataclass(frozen=True)
class Format:
    """How one output container is encoded at one quality: the normalized clips use `video`,
    the stitched file stream-copies them (except gif, which is encoded from them once)."""

    container: Literal["mp4", "webm", "mov", "gif"]
    quality: Quality
    clip_ext: str  # extension of the normalized clips
    video: tuple[str, ...]
    audio: tuple[str, ...]  # empty: no audio track
    audio_ext: str
    scaled_to: tuple[int, int] | None = None  # clips generated at another size, scaled to this one

    @property
    def tag(self) -> str:
        """Names the normalized clip variant: codec family and quality (and the size scaled to,
        so a clip conformed to one output size is never taken for another's)."""
        size = f"-{self.scaled_to[0]}x{self.scaled_to[1]}" if self.scaled_to else ""
        return f"{self.clip_ext}-{self.quality}{size}"

    @property
    def all_key(self) -> bool:
        """Every frame is a key frame (ProRes): a clip cuts anywhere without forcing any."""
        return _all_key(self.video)


def _all_key(video: Sequence[str]) -> bool:
    return "prores_ks" in video


_X264 = {"draft": ("ultrafast", "18"), "low": ("veryfast", "28"), "medium": ("veryfast", "23"), "high": ("medium", "19"), "maximum": ("slow", "15")}
_VP9 = {"draft": ("8", "34"), "low": ("8", "40"), "medium": ("5", "34"), "high": ("3", "30"), "maximum": ("2", "24")}
_AAC = {"draft": "128k", "low": "128k", "medium": "160k", "high": "192k", "maximum": "256k"}
_OPUS = {"draft": "96k", "low": "96k", "medium": "128k", "high": "160k", "maximum": "192k"}


def output_format(container: str, quality: Quality, scaled_to: tuple[int, int] | None = None) -> Format:
    """The encoder settings for an output container (mp4, webm, mov, gif) at a quality preset.
    `scaled_to`: the output size, when clips are generated at another (ResolvedProject.clip_scale)."""
    return replace(_container_format(container, quality), scaled_to=scaled_to)


def _container_format(container: str, quality: Quality) -> Format:
    if container in ("mp4", "gif"):
        preset, crf = _X264[quality]
        video = ("-c:v", "libx264", "-preset", preset, "-crf", crf, "-profile:v", "high", "-pix_fmt", "yuv420p")
        audio = ("-c:a", "aac", "-b:a", _AAC[quality]) if container == "mp4" else ()
        return Format(container, quality, "mp4", video, audio, "m4a")  # type: ignore[arg-type]
    if container == "webm":
        cpu, crf = _VP9[quality]
        video = ("-c:v", "libvpx-vp9", "-b:v", "0", "-crf", crf, "-deadline", "good", "-cpu-used", cpu,
                 "-row-mt", "1", "-pix_fmt", "yuv420p")
        return Format("webm", quality, "webm", video, ("-c:a", "libopus", "-b:a", _OPUS[quality]), "opus")
    if container == "mov":
        video = ("-c:v", "prores_ks", "-profile:v", "4", "-pix_fmt", "yuva444p10le", "-vendor", "apl0")
        return Format("mov", quality, "mov", video, ("-c:a", "pcm_s16le"), "wav")
    raise ValueError(f"unknown container {container!r}")


# A lossless H.264 clip, quick to write: how generated frames are handed to normalize.
LOSSLESS_VIDEO = ("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv444p")


def timescale(fps: Fraction) -> int:
    """An MP4 track timescale on which every frame lasts a whole number of ticks (about 10 kHz)."""
    return fps.numerator * max(1, math.ceil(10_000 / fps.numerator))


def _base(ffmpeg: str) -> list[str]:
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]


def encode_frames_args(ffmpeg: str, width: int, height: int, fps: Fraction, out: Path,
                       video: Sequence[str], *, keyframes: Sequence[int] = (),
                       exact_duration: bool = False) -> list[str]:
    """Encode raw RGB frames read from stdin into `out`, one output frame per input frame.

    `keyframes`: output frame indices that must start a closed group of pictures (see
    keyframe_args). `exact_duration`: MP4/MOV movie header on the track's timescale, so the edit
    list, and the duration the concat demuxer reads from it, is not rounded to the millisecond."""
    args = _base(ffmpeg)
    args[args.index("-nostdin")] = "-nostats"  # stdin carries the frames
    args += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", fps_str(fps),
             "-i", "pipe:0", "-an", *video, *keyframe_args(video, keyframes), "-fps_mode", "passthrough"]
    if out.suffix in (".mp4", ".mov"):
        args += ["-video_track_timescale", str(timescale(fps))]
        if exact_duration:
            args += ["-movie_timescale", str(timescale(fps))]
    if out.suffix == ".mp4":
        args += ["-movflags", "+faststart"]
    return args + [str(out)]


def keyframe_args(video: Sequence[str], keyframes: Sequence[int]) -> list[str]:
    """Force key frames at these output frame indices: IDR frames for x264 (whose groups of
    pictures are closed by default), key frames for VP9; none needed for ProRes."""
    if not keyframes or _all_key(video):
        return []
    args = ["-force_key_frames", "expr:" + "+".join(f"eq(n,{k})" for k in sorted(keyframes))]
    return args + (["-forced-idr", "1"] if "libx264" in video else [])


# A normalized clip read as a file of its own (not through a concat list): its containers only.
CLIP_FILE_DEMUXERS = "mov,matroska"


def held_frames_args(ffmpeg: str, clip: Path, out: Path, fps: Fraction, video: Sequence[str], *,
                     head: int, tail: int) -> list[str]:
    """Encode `clip` (a normalized clip at `fps`) into `out` with its first frame held `head`
    times before it and its last frame held `tail` times after it (the frames a crossfade's
    window reads past its ends: crossfades.Window.sources), with the clips' `video` settings and
    (MP4/MOV) their track timescale and an exact edit list, as encode_frames_args writes them."""
    pad = f"tpad=start={head}:stop={tail}:start_mode=clone:stop_mode=clone"
    args = _base(ffmpeg) + [*input_args(CLIP_FILE_DEMUXERS), "-i", str(clip), "-map", "0:v:0", "-an",
                            "-vf", pad, *video, "-fps_mode", "passthrough"]
    if out.suffix in (".mp4", ".mov"):
        args += ["-video_track_timescale", str(timescale(fps)), "-movie_timescale", str(timescale(fps))]
    if out.suffix == ".mp4":
        args += ["-movflags", "+faststart"]
    return args + [str(out)]


def piece_mux_options(out: Path, fps: Fraction) -> dict[str, str]:
    """Muxer options for a clip cut by packet copy: the clips' track timescale, and (MP4/MOV) an
    exact edit list, as encode_frames_args(exact_duration=True) writes."""
    if out.suffix not in (".mp4", ".mov"):
        return {}
    return {"video_track_timescale": str(timescale(fps)), "movie_timescale": str(timescale(fps))}


# What each file input of ffmpeg is read as: the file protocol and these demuxers only. The
# clips and the kept master audio sit in the cache, which a pull request can fill; a file there
# that is really a playlist, a DASH manifest or a concat list would read whatever it names.
CLIP_DEMUXERS = "concat,mov,matroska,gif"  # the stitch's list and the normalized clips it names
MASTER_DEMUXERS = "mov,ogg,wav"  # the kept master audio: .m4a, .opus, .wav


def input_args(demuxers: str) -> list[str]:
    """The options before an `-i` that confine it: file protocol, `demuxers` only."""
    return ["-protocol_whitelist", "file", "-format_whitelist", demuxers]


def encode_audio_args(ffmpeg: str, wav: Path, out: Path, audio: Sequence[str]) -> list[str]:
    """Encode the master track's span (a WAV) once, for muxing by stream copy."""
    return _base(ffmpeg) + [*input_args("wav"), "-i", str(wav), "-vn", *audio, str(out)]


def concat_list(clips: Sequence[Path]) -> str:
    """The concat demuxer's list file for `clips`."""
    lines = ["ffconcat version 1.0"]
    for c in clips:
        escaped = str(c.resolve()).replace("'", "'\\''")
        lines.append(f"file '{escaped}'")
    return "\n".join(lines) + "\n"


def stitch_args(ffmpeg: str, listing: Path, audio: Path | None, out: Path, fps: Fraction,
                fmt: Format) -> list[str]:
    """Concatenate normalized clips by stream copy and mux the encoded master audio beside them."""
    args = _base(ffmpeg) + [*input_args(CLIP_DEMUXERS), "-f", "concat", "-safe", "0", "-i", str(listing)]
    if audio is not None:
        args += [*input_args(MASTER_DEMUXERS), "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0"]
    else:
        args += ["-map", "0:v:0"]
    args += ["-c", "copy"]
    if out.suffix in (".mp4", ".mov"):
        args += ["-video_track_timescale", str(timescale(fps))]
    if out.suffix == ".mp4":
        args += ["-movflags", "+faststart"]
    return args + [str(out)]


def gif_args(ffmpeg: str, listing: Path, out: Path, width: int) -> list[str]:
    """Encode the concatenated clips as a GIF with a palette made from them (no audio)."""
    graph = (f"scale={width}:-1:flags=lanczos,split[a][b];[a]palettegen=stats_mode=diff[p];"
             "[b][p]paletteuse=dither=bayer:bayer_scale=3")
    return _base(ffmpeg) + [*input_args(CLIP_DEMUXERS), "-f", "concat", "-safe", "0", "-i", str(listing),
                            "-filter_complex", graph,
                            "-fps_mode", "passthrough", str(out)]


STOP_POLL_S = 0.1  # how often a running ffmpeg looks at the build's stop


def run(args: Sequence[str], *, what: str, stdin: int | None = None, timeout: float | None = None,
        stop: threading.Event | None = None) -> None:
    """Run one ffmpeg command; raise FfmpegFailed naming `what` with the end of its error output.
    When `stop` is set (the build is stopping) ffmpeg is killed and Stopped raised; on any other
    exception here (Ctrl-C in this thread) it is killed too: no ffmpeg outlives its caller."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with subprocess.Popen(list(args), stdin=stdin if stdin is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            while True:
                poll = STOP_POLL_S if stop is not None else None
                if deadline is not None:
                    left = max(0.0, deadline - time.monotonic())
                    poll = left if poll is None else min(poll, left)
                try:
                    _, err = proc.communicate(timeout=poll)
                    break
                except subprocess.TimeoutExpired:
                    if stop is not None and stop.is_set():
                        raise Stopped(f"{what}: stopped") from None
                    if deadline is not None and time.monotonic() >= deadline:
                        raise FfmpegFailed(f"{what}: ffmpeg ran past {timeout} s") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        raise FfmpegFailed(f"{what}: ffmpeg exited {proc.returncode}: {_tail(err)}")


def _tail(stderr: bytes, lines: int = 6) -> str:
    text = stderr.decode("utf-8", "replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "(no error output)"


class FrameWriter:
    """Streams RGB frames (numpy uint8 HxWx3) into an ffmpeg encoder; use as a context manager.

    The output file is complete only when the block exits without error; on error the ffmpeg
    process is killed and the partial file removed. `stop`: once set (the build is stopping), the
    next write raises Stopped, which kills ffmpeg the same way."""

    def __init__(self, args: Sequence[str], out: Path, what: str, stop: threading.Event | None = None):
        self.args, self.out, self.what, self.stop = list(args), out, what, stop
        self.proc: subprocess.Popen | None = None
        self.frames = 0

    def __enter__(self) -> "FrameWriter":
        self._check_stop()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        return self

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Stopped(f"{self.what}: stopped")

    def write(self, frame) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self._check_stop()
        try:
            self.proc.stdin.write(memoryview(frame).cast("B"))
        except BrokenPipeError:
            err = self.proc.stderr.read() if self.proc.stderr else b""
            raise FfmpegFailed(f"{self.what}: ffmpeg stopped reading frames: {_tail(err)}") from None
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.proc is not None
        if exc_type is not None:
            self.proc.kill()
            self.proc.wait()
            self.out.unlink(missing_ok=True)
            return
        assert self.proc.stdin is not None and self.proc.stderr is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        err = self.proc.stderr.read()
        if self.proc.wait() != 0:
            self.out.unlink(missing_ok=True)
            raise FfmpegFailed(f"{self.what}: ffmpeg exited {self.proc.returncode}: {_tail(err)}")
