"""Probing media: audio length to the sample, image size, LoRA headers, content digests.

Audio is decoded with PyAV (the FFmpeg libraries in a wheel), else libsndfile, else the ffmpeg
binary (see audiodecode), and counted sample by sample, because container durations are rounded
and mp3/aac carry priming; images are decoded with Pillow. Every probe raises MediaError with a message fit for a user.
"""

from __future__ import annotations

import atexit
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
from ltxflow.timeline import Span

AUDIO_EXTENSIONS = {".wav", ".mp3", ".flac", ".ogg", ".m4a"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp"}
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

    @property
    def duration(self) -> Fraction:
        return Fraction(self.samples, self.sample_rate)

    def facts(self) -> dict[str, object]:
        return {"digest": self.digest, "codec": self.codec, "sample_rate": self.sample_rate,
                "channels": self.channels, "samples": self.samples, "decoder": self.decoder}

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


_TEMP_PCM: list[Path] = []


@atexit.register
def _remove_temp_pcm() -> None:
    for p in _TEMP_PCM:
        p.unlink(missing_ok=True)


@functools.lru_cache(maxsize=8)
def _decode_audio(path: Path, digest: str, decoders: tuple[str, ...] = DEFAULT_ORDER) -> AudioTrack:
    """Decode to a temporary PCM file (removed at exit), streaming: nothing is held in memory.
    Tries each decoder in turn (see audiodecode); when none can, the error says what each said and
    how to convert the file."""
    reasons = []
    for name in decoders:
        fd, tmp = tempfile.mkstemp(prefix=f"ltxflow-{digest[:12]}-", suffix=".s16")
        pcm_file = Path(tmp)
        _TEMP_PCM.append(pcm_file)
        try:
            with os.fdopen(fd, "wb") as out:
                got = DECODERS[name](path, out)
        except CannotDecode as exc:
            reasons.append(f"{name}: {exc}")
            pcm_file.unlink(missing_ok=True)
            continue
        if got.samples == 0:
            reasons.append(f"{name}: audio stream decodes to no samples")
            pcm_file.unlink(missing_ok=True)
            continue
        return AudioTrack(path, digest, got.codec, got.sample_rate, got.channels, got.samples, pcm_file, name)
    raise MediaError(f"{path.name}: no decoder reads audio from it ({'; '.join(reasons)}); if it plays "
                     f"elsewhere, convert it to WAV and use that (in its folder: {convert_command(path)})")


def probe_audio(path: Path, store: Path | None = None, decoders: tuple[str, ...] = DEFAULT_ORDER) -> AudioTrack:
    """Decode a master track (wav, mp3, flac, ogg, m4a). Raises MediaError.

    `store`: a folder of tracks decoded before (see keep_audio), looked up by the file's digest,
    so a song is decoded once, not on every plan. `decoders`: names in audiodecode.DECODERS, tried
    in this order."""
    path = Path(path)
    _check_file(path, AUDIO_EXTENSIONS, "audio")
    digest = file_digest(path)
    if store is not None:
        kept = _kept_track(path, digest, store)
        if kept is not None:
            return kept
    return _decode_audio(path, digest, tuple(decoders))


def _kept_track(path: Path, digest: str, store: Path) -> AudioTrack | None:
    try:
        facts = json.loads((store / f"{digest}.json").read_text())
        pcm = store / f"{digest}.s16"
        if facts.get("digest") != digest or pcm.stat().st_size != facts["samples"] * 2 * facts["channels"]:
            return None
        return AudioTrack(path, digest, facts["codec"], facts["sample_rate"], facts["channels"], facts["samples"], pcm,
                          facts.get("decoder", "pyav"))  # kept before there were other decoders
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    """Decode a keyframe image fully (a truncated file fails here, not on a GPU). Raises MediaError."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _check_file(path, IMAGE_EXTENSIONS, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise MediaError(f"{path.name}: {img.width}x{img.height} is too large for a keyframe "
                                     f"(at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels)")
                img.load()
                return ImageInfo(path, file_digest(path), img.width, img.height, img.format or "?")
    except UnidentifiedImageError:
        raise MediaError(f"{path.name}: not a decodable image") from None
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

