"""The decoders of a master track: PyAV, libsndfile (soundfile), the ffmpeg binary.

Each decoder writes the whole song as 16-bit interleaved PCM, at the file's own rate and channel
count, into a file the caller owns, and returns what it decoded; it raises CannotDecode (a reason
in a few words) when it cannot. probe.py tries them in order (DEFAULT_ORDER). All three convert to
16 bits the way FFmpeg's resampler does (integers: the top 16 bits; floats: x * 32768, rounded to
nearest even, clipped), so a lossless file gives the same samples whichever decoder read it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BLOCK = 1 << 16  # samples per block written; a song is never held in memory


class CannotDecode(Exception):
    """This decoder cannot read the file; str() is the reason, short enough for a message."""


@dataclass(frozen=True)
class Decoded:
    codec: str
    sample_rate: int
    channels: int
    samples: int


def decode_pyav(path: Path, out: BinaryIO) -> Decoded:
    """The FFmpeg libraries in a wheel. Trims AAC end padding that an MP4 edit list declares."""
    import av  # only loaded when a track is decoded

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise CannotDecode(f"cannot open as audio ({_reason(exc)})") from None
    with container:
        streams = container.streams.audio
        if not streams:
            raise CannotDecode("has no audio stream")
        stream = streams[0]
        rate = stream.codec_context.sample_rate or stream.rate
        channels = stream.codec_context.channels
        if not rate or not channels:
            raise CannotDecode("audio stream has no sample rate or channels")
        width = 2 * channels
        try:
            resampler = av.AudioResampler(format="s16", layout=stream.codec_context.layout.name, rate=rate)
            for frame in container.decode(stream):
                for piece in resampler.resample(frame):
                    out.write(memoryview(piece.planes[0])[: piece.samples * width])
            for piece in resampler.resample(None):
                out.write(memoryview(piece.planes[0])[: piece.samples * width])
        except (av.error.FFmpegError, ValueError) as exc:
            raise CannotDecode(f"audio cannot be decoded ({_reason(exc)})") from None
        samples = out.tell() // width
        declared = _declared_samples(container, stream, rate)
        if declared is not None and declared < samples:
            samples = declared  # AAC end padding that the MP4 edit list declares but PyAV does not trim
            out.truncate(samples * width)
        return Decoded(stream.codec_context.name, rate, channels, samples)


def _declared_samples(container, stream, rate: int) -> int | None:
    """The sample count an MP4/M4A declares (its edit list is exact); None for other containers,
    whose durations may be estimates (CBR mp3 without a header)."""
    names = set(container.format.name.split(","))
    if not names & {"mov", "mp4", "m4a"} or stream.duration is None or stream.time_base is None:
        return None
    return round(stream.duration * stream.time_base * rate)


# libsndfile subtypes held as integers: read as 32-bit and keep the top 16 bits, as FFmpeg does.
_INTEGER_SUBTYPES = ("PCM_", "ALAC_", "ULAW", "ALAW")


def decode_soundfile(path: Path, out: BinaryIO) -> Decoded:
    """libsndfile (wav, flac, ogg vorbis/opus, mp3, aiff, ...), through the soundfile package."""
    try:
        import numpy as np
        import soundfile
    except (ImportError, OSError) as exc:  # OSError: the package is there but libsndfile is not
        raise CannotDecode(f"soundfile is not available ({exc})") from None
    try:
        with soundfile.SoundFile(str(path)) as f:
            integer = f.subtype.startswith(_INTEGER_SUBTYPES)
            samples = 0
            for block in f.blocks(BLOCK, dtype="int32" if integer else "float64", always_2d=True):
                pcm = block >> 16 if integer else np.clip(np.rint(block * 32768.0), -32768, 32767)
                out.write(pcm.astype("<i2").tobytes())
                samples += len(block)
            return Decoded(f"{f.format}/{f.subtype}".lower(), f.samplerate, f.channels, samples)
    except (RuntimeError, OSError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        reason = getattr(exc, "error_string", None) or str(exc)
        raise CannotDecode(reason.strip().rstrip(".")) from None


def ffmpeg_decode_args(ffmpeg: str, path: Path) -> list[str]:
    """The ffmpeg command that decodes a song's first audio stream to 16-bit WAV on stdout, at its
    own rate and channels. Safe on any file: only the file protocol may be opened (a playlist or
    concat list cannot reach the network or other protocols, and `-safe 0` is never given), the
    name cannot be read as an option or a protocol, and nothing is read from stdin."""
    return [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-v", "info", "-protocol_whitelist", "file",
            "-i", f"file:{path}", "-map", "0:a:0", "-map_metadata", "-1", "-c:a", "pcm_s16le",
            "-bitexact", "-f", "wav", "pipe:1"]


def decode_ffmpeg(path: Path, out: BinaryIO, ffmpeg: str | None = None) -> Decoded:
    """The ffmpeg binary (see ffmpeg.find_ffmpeg), its WAV output streamed from a pipe."""
    from ltxflow.media.ffmpeg import FfmpegNotFound, find_ffmpeg

    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if head.startswith((b"ffconcat", b"#EXTM3U", b"<?xml", b"<MPD")):  # lists that name other files
        raise CannotDecode("a playlist, not a song")
    if ffmpeg is None:
        try:
            ffmpeg = find_ffmpeg().path
        except FfmpegNotFound as exc:
            raise CannotDecode(str(exc)) from None
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(ffmpeg_decode_args(ffmpeg, path), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err)
        try:
            rate, channels = _read_wav_header(proc.stdout)
            if rate is not None:
                while block := proc.stdout.read(1 << 20):
                    out.write(block)
        finally:
            proc.stdout.close()
            code = proc.wait()
        err.seek(0)
        log = err.read().decode(errors="replace")
    if code != 0 or rate is None:
        raise CannotDecode(_ffmpeg_reason(log) or f"ffmpeg exited with status {code}")
    width = 2 * channels
    samples = out.tell() // width
    out.truncate(samples * width)
    codec = re.search(r"Stream #0:\d+ -> #0:0 \(([\w-]+)", log)
    return Decoded(codec.group(1) if codec else "unknown", rate, channels, samples)


def _ffmpeg_reason(log: str) -> str:
    """The first line of an ffmpeg log that says what went wrong, without its `[demuxer @ 0x..]`."""
    lines = [re.sub(r"^\[[^]]*\] ", "", line).strip() for line in log.splitlines()]
    said = [ln for ln in lines if re.search(r"(?i)error|invalid|no streams|not found|denied", ln)]
    return (said or [ln for ln in lines if ln] or [""])[0][:160].rstrip(".")


def _read_wav_header(pipe: BinaryIO) -> tuple[int | None, int]:
    """Reads a WAV header up to its data chunk; (rate, channels), or (None, 0) when what came is
    not one. The data chunk's size is not read: from a pipe, ffmpeg cannot fill it in."""
    riff = _read_exactly(pipe, 12)
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        return None, 0
    rate = channels = 0
    while True:
        chunk = _read_exactly(pipe, 8)
        if len(chunk) < 8:
            return None, 0
        size = int.from_bytes(chunk[4:], "little")
        if chunk[:4] == b"data":
            return (rate, channels) if rate and channels else (None, 0)
        body = _read_exactly(pipe, size + (size & 1))
        if chunk[:4] == b"fmt " and len(body) >= 16:
            channels = int.from_bytes(body[2:4], "little")
            rate = int.from_bytes(body[4:8], "little")
            if int.from_bytes(body[14:16], "little") != 16:
                return None, 0


def _read_exactly(pipe: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n and (more := pipe.read(n - len(data))):
        data += more
    return data


DECODERS: dict[str, Callable[[Path, BinaryIO], Decoded]] = {
    "pyav": decode_pyav, "soundfile": decode_soundfile, "ffmpeg": decode_ffmpeg,
}
DEFAULT_ORDER = ("pyav", "soundfile", "ffmpeg")


def convert_command(path: Path) -> str:
    """The command, for a person to run in the file's folder, that converts it to a 16-bit WAV."""
    target = f"{path.stem}{'-16bit' if path.suffix.lower() == '.wav' else ''}.wav"
    return "ffmpeg -i {} {}".format(*(shlex.quote(f"./{n}" if n.startswith("-") else n) for n in (path.name, target)))


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[0] or type(exc).__name__
