"""Probing media: audio length to the sample, image size, LoRA headers, content digests.

Audio is decoded with PyAV (the FFmpeg libraries in a wheel), else libsndfile, else the ffmpeg
binary (see audiodecode), within its limits (at most LTXFLOW_MAX_SONG_MINUTES long, 48 kHz,
stereo), and counted sample by sample, because container durations are rounded and mp3/aac carry
priming; images are decoded with Pillow's PNG, JPEG and WebP decoders only (see images). Every
probe raises MediaError with a message fit for a user.

A decoded song waits in a temporary file until it is kept (see temppcm).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import struct
import tempfile
import uuid
import warnings
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from ltxflow.errors import MediaError
from ltxflow.media.audiodecode import DECODERS, DEFAULT_ORDER, CannotDecode, convert_command
from ltxflow.media.images import FORMAT_NAMES, FORMATS_BY_EXTENSION, open_image
from ltxflow.media.songlimits import MAX_CHANNELS, MAX_RATE, Limits, TooLong
from ltxflow.media.temppcm import new_file, remove, sweep_leftovers, terminate_cleanly
from ltxflow.timeline import Span

AUDIO_EXTENSIONS = {".wav", ".mp3", ".flac", ".ogg", ".m4a"}
IMAGE_EXTENSIONS = set(FORMATS_BY_EXTENSION)
MAX_LORA_HEADER = 100 * 1024 * 1024
MAX_IMAGE_PIXELS = 64_000_000


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class AudioTrack:
    """A decoded master track: canonical 16-bit interleaved PCM at the file's own rate, kept in a
    file (`pcm_file`) and read by span, so memory does not grow with the song's length."""

    path: Path
    digest: str
    codec: str
    sample_rate: int
    channels: int
    samples: int
    pcm_file: Path = field(repr=False)
    decoder: str = "pyav"  # which of audiodecode.DECODERS read the file
    source_rate: int | None = None  # the file's own rate and channels, when they are not kept (None: they are)
    source_channels: int | None = None

    @property
    def duration(self) -> Fraction:
        return Fraction(self.samples, self.sample_rate)

    def facts(self) -> dict[str, object]:
        facts: dict[str, object] = {"digest": self.digest, "codec": self.codec, "sample_rate": self.sample_rate,
                                    "channels": self.channels, "samples": self.samples, "decoder": self.decoder}
        if self.source_rate is not None:
            facts["source_rate"] = self.source_rate
        if self.source_channels is not None:
            facts["source_channels"] = self.source_channels
        return facts

    def conversions(self) -> list[str]:
        """What decoding changed, in words ([] when nothing): 'down-mixed from 9 channels to stereo'."""
        said = []
        if self.source_channels is not None:
            said.append(f"down-mixed from {self.source_channels} channels to "
                        f"{'stereo' if self.channels == 2 else f'{self.channels} channels'}")
        if self.source_rate is not None:
            said.append(f"resampled from {self.source_rate} Hz to {self.sample_rate} Hz")
        return said

    def span_pcm(self, start: int, count: int) -> bytes:
        """Samples [start, start+count) as 16-bit interleaved PCM, zero-padded past either end."""
        width = 2 * self.channels
        before = min(count, max(0, -start))
        lo, hi = max(start, 0), min(start + count, self.samples)
        inside = max(0, hi - lo)
        with open(self.pcm_file, "rb") as f:
            f.seek(lo * width)
            body = f.read(inside * width)
        if len(body) != inside * width:
            raise MediaError(f"{self.pcm_file.name}: decoded audio is shorter than recorded")
        return b"\0" * (before * width) + body + b"\0" * ((count - before - inside) * width)

    def write_wav(self, path: Path, spans: list[Span], block: int = 1 << 18) -> None:
        """Write sample spans, one after another, as a 16-bit WAV at `path`, `block` samples at
        a time (a whole song is never held in memory)."""
        with wave.open(str(path), "wb") as w:
            w.setnchannels(self.channels)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate)
            for span in spans:
                for at in range(span.start, span.end, block):
                    w.writeframes(self.span_pcm(at, min(block, span.end - at)))

    def span_digest(self, start: int, count: int) -> str:
        """sha256 of a span's samples (see span_pcm), with the format they are in."""
        h = hashlib.sha256(f"pcm_s16le:{self.sample_rate}:{self.channels}:{count}:".encode())
        h.update(self.span_pcm(start, count))
        return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _decode_audio(path: Path, digest: str, decoders: tuple[str, ...], limits: Limits) -> AudioTrack:
    """Decode to a temporary PCM file (removed at exit), streaming: nothing is held in memory.
    Tries each decoder in turn (see audiodecode); when none can, the error says what each said and
    how to convert the file. A song longer than `limits` is refused by the first decoder that
    finds it out."""
    sweep_leftovers(Path(tempfile.gettempdir()))
    reasons = []
    with terminate_cleanly():
        for name in decoders:
            pcm_file, out = new_file(digest)
            try:
                with out:
                    got = DECODERS[name](path, out, limits)
            except CannotDecode as exc:
                reasons.append(f"{name}: {exc}")
                remove(pcm_file)
                continue
            except TooLong as exc:
                remove(pcm_file)
                raise MediaError(_too_long(path, exc.seconds, limits)) from None
            except BaseException:  # Ctrl-C, SIGTERM, a full disk: the file goes now, not at exit
                remove(pcm_file)
                raise
            if got.samples == 0:
                reasons.append(f"{name}: audio stream decodes to no samples")
                remove(pcm_file)
                continue
            return AudioTrack(path, digest, got.codec, got.sample_rate, got.channels, got.samples, pcm_file, name,
                              source_rate=got.source_rate if got.source_rate != got.sample_rate else None,
                              source_channels=got.source_channels if got.source_channels != got.channels else None)
    raise MediaError(f"{path.name}: no decoder reads audio from it ({'; '.join(reasons)}); if it plays "
                     f"elsewhere, convert it to WAV and use that (in its folder: {convert_command(path)})")


def _too_long(path: Path, seconds: float | None, limits: Limits) -> str:
    if seconds is None:
        return f"{path.name}: the song goes on past {limits.describe()}"
    return f"{path.name}: the song is {int(seconds // 60)}:{int(seconds % 60):02d} long, over {limits.describe()}"


def probe_audio(path: Path, store: Path | None = None, decoders: tuple[str, ...] = DEFAULT_ORDER,
                limits: Limits | None = None) -> AudioTrack:
    """Decode a master track (wav, mp3, flac, ogg, m4a). Raises MediaError.

    `store`: a folder of tracks decoded before (see keep_audio), looked up by the file's digest,
    so a song is decoded once, not on every plan; it is only read here. `decoders`: names in
    audiodecode.DECODERS, tried in this order. `limits`: None reads them from the environment
    (audiodecode.Limits.from_env). Nothing is written but a temporary file (see the module)."""
    path = Path(path)
    _check_file(path, AUDIO_EXTENSIONS, "audio")
    limits = Limits.from_env() if limits is None else limits
    digest = file_digest(path)
    kept = _kept_track(path, digest, store) if store is not None else None
    if kept is None:
        return _decode_audio(path, digest, tuple(decoders), limits)
    if kept.duration > limits.max_seconds:  # kept when the limit was higher
        raise MediaError(_too_long(path, float(kept.duration), limits))
    return kept


def _kept_track(path: Path, digest: str, store: Path) -> AudioTrack | None:
    """The track `store` keeps for `digest`, or None when there is none or it is not exactly what
    keep_audio writes: two regular files (never links), facts of the right types and ranges, PCM of
    the size they say. Anything else is decoded again, never trusted."""
    import stat

    facts_file, pcm = store / f"{digest}.json", store / f"{digest}.s16"
    try:
        if not (stat.S_ISREG(facts_file.lstat().st_mode) and stat.S_ISREG(pcm.lstat().st_mode)):
            return None
        facts = json.loads(facts_file.read_text())
        size = pcm.lstat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(facts, dict) or facts.get("digest") != digest:
        return None
    rate, channels, samples = facts.get("sample_rate"), facts.get("channels"), facts.get("samples")
    codec, decoder = facts.get("codec"), facts.get("decoder", "pyav")  # kept before there were other decoders
    source_rate, source_channels = facts.get("source_rate"), facts.get("source_channels")
    if not (_count(rate, MAX_RATE) and _count(channels, MAX_CHANNELS) and _count(samples)
            and isinstance(codec, str) and 0 < len(codec) <= 64 and codec.isprintable() and decoder in DECODERS
            and (source_rate is None or _count(source_rate)) and (source_channels is None or _count(source_channels))):
        return None
    if size != samples * 2 * channels:
        return None
    return AudioTrack(path, digest, codec, rate, channels, samples, pcm, decoder,
                      source_rate=source_rate, source_channels=source_channels)


def _count(value: object, most: int | None = None) -> bool:
    """Whether `value` is an int (not a bool) from 1 to `most`."""
    return type(value) is int and value >= 1 and (most is None or value <= most)


def keep_audio(track: AudioTrack, store: Path) -> AudioTrack:
    """Keep a decoded track in `store` for later runs (once its project validated); returns the
    track reading from there."""
    if track.pcm_file.parent == store:
        return track
    store.mkdir(parents=True, exist_ok=True)
    stamp = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp, tmp_facts = store / f".{track.digest}.{stamp}.s16", store / f".{track.digest}.{stamp}.json"
    shutil.copyfile(track.pcm_file, tmp)
    os.replace(tmp, store / f"{track.digest}.s16")
    tmp_facts.write_text(json.dumps(track.facts()))
    os.replace(tmp_facts, store / f"{track.digest}.json")
    return dataclasses.replace(track, pcm_file=store / f"{track.digest}.s16")


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    digest: str
    width: int
    height: int
    format: str


def probe_image(path: Path) -> ImageInfo:
    """Decode a keyframe image fully (a truncated file fails here, not on a GPU), with the PNG,
    JPEG and WebP decoders only, whatever its name says (see images.open_image). Raises MediaError."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _check_file(path, IMAGE_EXTENSIONS, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_image(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise MediaError(f"{path.name}: {img.width}x{img.height} is too large for a keyframe "
                                     f"(at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels)")
                img.load()
                return ImageInfo(path, file_digest(path), img.width, img.height, img.format or "?")
    except UnidentifiedImageError:
        raise MediaError(f"{path.name}: not a decodable image: keyframes must be {FORMAT_NAMES} images") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaError(f"{path.name}: image is too large to decode safely") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"{path.name}: image cannot be decoded ({exc})") from None


@dataclass(frozen=True)
class LoraInfo:
    path: Path
    digest: str
    tensors: int


def probe_lora(path: Path) -> LoraInfo:
    """Check that a LoRA file is a safetensors file with a readable header. Raises MediaError."""
    path = Path(path)
    _check_file(path, {".safetensors"}, "LoRA")
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise MediaError(f"{path.name}: too short to be a safetensors file")
            (size,) = struct.unpack("<Q", raw)
            if size > MAX_LORA_HEADER:
                raise MediaError(f"{path.name}: not a safetensors file (header length {size})")
            header = json.loads(f.read(size))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise MediaError(f"{path.name}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise MediaError(f"{path.name}: not a safetensors file (header is not an object)")
    tensors = sum(1 for k in header if k != "__metadata__")
    if tensors == 0:
        raise MediaError(f"{path.name}: safetensors file holds no tensors")
    return LoraInfo(path, file_digest(path), tensors)


def _check_file(path: Path, extensions: set[str], what: str) -> None:
    if path.suffix.lower() not in extensions:
        raise MediaError(f"{path.name}: {what} files must end in one of {', '.join(sorted(extensions))}")
    try:
        if not path.exists():
            raise MediaError(f"{path}: file not found")
        if not path.is_file():
            raise MediaError(f"{path}: not a file")
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise MediaError(f"{path.name[:60]}: cannot be read ({exc.strerror})") from None

