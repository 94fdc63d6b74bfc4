"""The decoders of a master track: PyAV, libsndfile (soundfile), the ffmpeg binary.

Each decoder reads the song as 16-bit interleaved PCM at the file's own rate and channel count and
hands it, block by block, to a songlimits.Sink, which writes the song as it is kept into a file
the caller owns: more than two channels down-mixed to stereo, a rate above 48 kHz resampled, and
never more than the longest song allowed, whatever the file's header declares (TooLong); a
decoder whose header declares too long a song raises TooLong before decoding. A decoder returns
what it decoded; it raises CannotDecode (a reason in a few words) when it cannot.
probe.py tries them in order (DEFAULT_ORDER). All three convert to 16 bits the way FFmpeg's
resampler does (integers: the top 16 bits; floats: x * 32768, rounded to nearest even, clipped),
and the Sink's conversions are one code path whichever decoder fed it, so a lossless file gives
the same samples whichever decoder read it.

A song comes from a project folder, which may come from anyone. FFmpeg opens it through the file
protocol only and with audio demuxers only (AUDIO_DEMUXERS): a playlist, a concat list, an HLS or
DASH manifest or an image sequence named .wav is refused before it can name another file.
libsndfile reads from an open file object, so it never looks for a resource fork beside the song.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ltxflow.media.songlimits import Decoded, Limits, Sink, TooLong

BLOCK = 1 << 16  # samples per block written; a song is never held in memory
# FFmpeg demuxers a song may be read with (names as FFmpeg's -formats lists them; "mov" is the
# MP4/M4A demuxer, "aac" raw ADTS): formats that hold audio and never name another file.
AUDIO_DEMUXERS = ("wav", "mp3", "flac", "ogg", "mov", "aiff", "matroska", "aac")
# Demuxers whose declared length is exact (an MP3 or ADTS length is estimated from its first
# frames' bitrate, often far off for VBR): only these are refused on their header, before decoding.
_EXACT_LENGTH = {"wav", "flac", "ogg", "mov", "aiff", "matroska"}


class CannotDecode(Exception):
    """This decoder cannot read the file; str() is the reason, short enough for a message."""


def _check_declared(seconds: float | None, limits: Limits) -> None:
    if seconds is not None and seconds > limits.max_seconds:
        raise TooLong(seconds)


def decode_pyav(path: Path, out: BinaryIO, limits: Limits = Limits()) -> Decoded:
    """The FFmpeg libraries in a wheel. Trims AAC end padding that an MP4 edit list declares."""
    import av  # only loaded when a track is decoded

    container = _open_pyav(path)
    with container:
        names = set(container.format.name.split(","))
        if not names & set(AUDIO_DEMUXERS):  # the whitelist already refused it; kept in case one is not honoured
            raise CannotDecode(f"a {container.format.name} file, not an audio format that is read")
        streams = container.streams.audio
        if not streams:
            raise CannotDecode("has no audio stream")
        stream = streams[0]
        rate = stream.codec_context.sample_rate or stream.rate
        channels = stream.codec_context.channels
        if not rate or not channels:
            raise CannotDecode("audio stream has no sample rate or channels")
        if names & _EXACT_LENGTH and container.duration is not None:
            _check_declared(container.duration / av.time_base, limits)
        sink = Sink(out, rate, channels, limits, keep=_declared_samples(container, stream, rate))
        width = 2 * channels
        try:
            resampler = av.AudioResampler(format="s16", layout=stream.codec_context.layout.name, rate=rate)
            for frame in container.decode(stream):
                for piece in resampler.resample(frame):
                    sink.write(memoryview(piece.planes[0])[: piece.samples * width])
            for piece in resampler.resample(None):
                sink.write(memoryview(piece.planes[0])[: piece.samples * width])
            return sink.close(stream.codec_context.name)
        except (av.error.FFmpegError, ValueError) as exc:
            raise CannotDecode(f"audio cannot be decoded ({_reason(exc)})") from None


def _open_pyav(path: Path):
    """Opens `path` with the file protocol and audio demuxers only. FFmpeg's log is captured for
    the open, so a refusal can say which demuxer the file asked for (a concat list, a playlist)."""
    import av

    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(AUDIO_DEMUXERS)}
    with _ffmpeg_log() as logs:
        try:
            return av.open(f"file:{path}", container_options=options)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            refused = [name for _, name, message in logs if "not on whitelist" in message]
            if refused:
                raise CannotDecode(f"a {refused[0]} file, not an audio format that is read "
                                   f"(only {', '.join(AUDIO_DEMUXERS)})") from None
            raise CannotDecode(f"cannot open as audio ({_reason(exc)})") from None


@contextmanager
def _ffmpeg_log() -> Iterator[list]:
    """FFmpeg's errors while the block runs, as (level, name, message); PyAV passes FFmpeg's log
    on only while a level is set, so one is set for the block and the one before put back."""
    import av.logging

    before = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        av.logging.set_level(before)


def _declared_samples(container, stream, rate: int) -> int | None:
    """The sample count an MP4/M4A declares (its edit list is exact); None for other containers,
    whose durations may be estimates (CBR mp3 without a header)."""
    names = set(container.format.name.split(","))
    if not names & {"mov", "mp4", "m4a"} or stream.duration is None or stream.time_base is None:
        return None
    return round(stream.duration * stream.time_base * rate)


# libsndfile subtypes held as integers: read as 32-bit and keep the top 16 bits, as FFmpeg does.
_INTEGER_SUBTYPES = ("PCM_", "ALAC_", "ULAW", "ALAW")


def decode_soundfile(path: Path, out: BinaryIO, limits: Limits = Limits()) -> Decoded:
    """libsndfile (wav, flac, ogg vorbis/opus, mp3, aiff, ...), through the soundfile package,
    reading from an open file (given a name, libsndfile looks for a resource fork beside it)."""
    try:
        import numpy as np
        import soundfile
    except (ImportError, OSError) as exc:  # OSError: the package is there but libsndfile is not
        raise CannotDecode(f"soundfile is not available ({exc})") from None
    try:
        with open(path, "rb") as raw, soundfile.SoundFile(raw) as f:
            if f.samplerate <= 0 or f.channels <= 0:
                raise CannotDecode("audio stream has no sample rate or channels")
            if f.format not in ("MP3", "MPEG"):  # an MP3's length is estimated
                _check_declared(f.frames / f.samplerate, limits)
            sink = Sink(out, f.samplerate, f.channels, limits)
            integer = f.subtype.startswith(_INTEGER_SUBTYPES)
            for block in f.blocks(BLOCK, dtype="int32" if integer else "float64", always_2d=True):
                pcm = block >> 16 if integer else np.clip(np.rint(block * 32768.0), -32768, 32767)
                sink.write(pcm.astype("<i2").tobytes())
            return sink.close(f"{f.format}/{f.subtype}".lower())
    except (RuntimeError, OSError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        reason = getattr(exc, "error_string", None) or str(exc)
        raise CannotDecode(reason.strip().rstrip(".")) from None


def ffmpeg_decode_args(ffmpeg: str, path: Path) -> list[str]:
    """The ffmpeg command that decodes a song's first audio stream to 16-bit WAV on stdout, at its
    own rate and channels. Safe on any file: only the file protocol and audio demuxers may be
    opened (a playlist or concat list is refused before it names another file, and `-safe 0` is
    never given), the name cannot be read as an option or a protocol, and nothing is read from stdin."""
    return [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-v", "info", "-protocol_whitelist", "file",
            "-format_whitelist", ",".join(AUDIO_DEMUXERS), "-i", f"file:{path}", "-map", "0:a:0",
            "-map_metadata", "-1", "-c:a", "pcm_s16le", "-bitexact", "-f", "wav", "pipe:1"]


def decode_ffmpeg(path: Path, out: BinaryIO, limits: Limits = Limits(), ffmpeg: str | None = None) -> Decoded:
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
        sink = None
        try:
            rate, channels = _read_wav_header(proc.stdout)
            if rate is not None:
                sink = Sink(out, rate, channels, limits)
                while block := proc.stdout.read(channels * 2 * BLOCK):
                    sink.write(block)
        except BaseException:
            proc.kill()  # TooLong, or the user stopping: ffmpeg need not decode the rest
            raise
        finally:
            proc.stdout.close()
            code = proc.wait()
        err.seek(0)
        log = err.read().decode(errors="replace")
    if code != 0 or sink is None:
        raise CannotDecode(_ffmpeg_reason(log) or f"ffmpeg exited with status {code}")
    codec = re.search(r"Stream #0:\d+ -> #0:0 \(([\w-]+)", log)
    return sink.close(codec.group(1) if codec else "unknown")


def _ffmpeg_reason(log: str) -> str:
    """The first line of an ffmpeg log that says what went wrong, without its `[demuxer @ 0x..]`."""
    if "not on whitelist" in log:
        return f"not an audio format that is read (only {', '.join(AUDIO_DEMUXERS)})"
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


DECODERS: dict[str, Callable[[Path, BinaryIO, Limits], Decoded]] = {
    "pyav": decode_pyav, "soundfile": decode_soundfile, "ffmpeg": decode_ffmpeg,
}
DEFAULT_ORDER = ("pyav", "soundfile", "ffmpeg")


def convert_command(path: Path) -> str:
    """The command, for a person to run in the file's folder, that converts it to a 16-bit WAV."""
    target = f"{path.stem}{'-16bit' if path.suffix.lower() == '.wav' else ''}.wav"
    return "ffmpeg -i {} {}".format(*(shlex.quote(f"./{n}" if n.startswith("-") else n) for n in (path.name, target)))


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[0] or type(exc).__name__
