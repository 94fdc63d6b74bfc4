"""What a decoded song may be, and the Sink every decoder writes it through.

A song's decoded size is bounded before anything is written: its length by a limit (30 minutes,
LTXFLOW_MAX_SONG_MINUTES; TooLong past it, whatever the file's header declares), its rate by
48 kHz (resampled down), its channels by two (down-mixed to stereo: music videos play on stereo
devices, and AAC in MP4 carries no layout of 9 channels). At most 30 min * 48000 * 2 channels *
2 bytes, about 345 MB. The conversions are one code path whichever decoder fed the Sink, so every
decoder gives the same samples for the same lossless file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

from ltxflow.errors import MediaError

MAX_RATE = 48_000  # a faster rate is resampled to this (or to 44.1 kHz from its multiples)
MAX_CHANNELS = 2  # more are down-mixed to stereo: songs play on stereo devices, and AAC in MP4 carries no odd layouts
MAX_MINUTES_ENV = "LTXFLOW_MAX_SONG_MINUTES"
DEFAULT_MAX_MINUTES = 30


class TooLong(Exception):
    """The song is longer than Limits allow. `seconds`: the length its header declares, or None
    when decoding found it (the header declared less, or nothing). No other decoder is tried."""

    def __init__(self, seconds: float | None):
        super().__init__("longer than the limit")
        self.seconds = seconds


@dataclass(frozen=True)
class Limits:
    """What a decoded song may be: at most `max_seconds` long (TooLong past it). Rate and
    channels are not limits but conversions (MAX_RATE, MAX_CHANNELS)."""

    max_seconds: Fraction = Fraction(DEFAULT_MAX_MINUTES * 60)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Limits":
        """The limits a user set: LTXFLOW_MAX_SONG_MINUTES (a positive number), else 30 minutes.
        Raises MediaError when it is set to something else."""
        raw = (os.environ if env is None else env).get(MAX_MINUTES_ENV, "").strip()
        if not raw:
            return cls()
        try:
            minutes = Fraction(raw)
        except (ValueError, ZeroDivisionError):
            minutes = Fraction(0)
        if minutes <= 0:
            raise MediaError(f"the {MAX_MINUTES_ENV} setting {raw!r} is not a positive number of minutes")
        return cls(minutes * 60)

    def max_samples(self, rate: int) -> int:
        return math.floor(self.max_seconds * rate)

    def describe(self) -> str:
        """The limit as a message says it, with how to raise it: 'the 30-minute limit for a song (to
        allow longer songs, set LTXFLOW_MAX_SONG_MINUTES ...)'."""
        minutes = f"{float(self.max_seconds / 60):g}"
        return (f"the {minutes}-minute limit for a song (to allow longer songs, set {MAX_MINUTES_ENV} "
                f"to their length in minutes)")


def kept_rate(rate: int) -> int:
    """The rate a song at `rate` is kept at: its own up to MAX_RATE; 44.1 kHz from its multiples
    (88.2, 176.4 kHz), else 48 kHz."""
    if rate <= MAX_RATE:
        return rate
    return 44_100 if rate % 44_100 == 0 else MAX_RATE


_C = math.sqrt(0.5)  # -3 dB
# The channels of an n-channel file, in the order WAV (its default channel mask), FLAC and FFmpeg
# give them, and where each goes in stereo (ITU-R BS.775, as FFmpeg's default down-mix: the
# centre at -3 dB to both sides, surrounds at -3 dB to their side, the LFE left out).
_LAYOUTS = {3: "FL FR FC", 4: "FL FR BL BR", 5: "FL FR FC BL BR", 6: "FL FR FC LFE BL BR",
            7: "FL FR FC LFE BC SL SR", 8: "FL FR FC LFE BL BR SL SR"}
_TO_STEREO = {"FL": (1.0, 0.0), "FR": (0.0, 1.0), "FC": (_C, _C), "LFE": (0.0, 0.0), "BC": (_C, _C),
              "BL": (_C, 0.0), "SL": (_C, 0.0), "BR": (0.0, _C), "SR": (0.0, _C)}


def downmix_weights(channels: int) -> list[tuple[float, float]]:
    """(left, right) weight of each of `channels` (> 2) channels in the stereo down-mix, scaled so
    that no mix of full-scale channels clips. Past 8 channels there is no standard layout: even
    channels (0, 2, ...) go left, odd ones right."""
    roles = _LAYOUTS.get(channels)
    weights = ([_TO_STEREO[r] for r in roles.split()] if roles
               else [(1.0, 0.0) if c % 2 == 0 else (0.0, 1.0) for c in range(channels)])
    scale = max(sum(w[0] for w in weights), sum(w[1] for w in weights))
    return [(left / scale, right / scale) for left, right in weights]


@dataclass(frozen=True)
class Decoded:
    """What a decoder wrote: `sample_rate` and `channels` as kept; `source_rate` and
    `source_channels` as the file holds them."""

    codec: str
    sample_rate: int
    channels: int
    samples: int
    source_rate: int
    source_channels: int


class Sink:
    """Takes a song as 16-bit interleaved PCM at its own rate and channels, block by block, and
    writes it to `out` as kept: at most MAX_CHANNELS channels (downmix_weights), at most MAX_RATE
    (kept_rate; FFmpeg's resampler, whose output does not depend on how the input was cut into
    blocks). Raises TooLong as soon as more than `limits` allow came. `keep`: how many input
    samples to keep (what an MP4 declares, trimming AAC padding); None keeps all."""

    def __init__(self, out: BinaryIO, rate: int, channels: int, limits: Limits, keep: int | None = None):
        if rate <= 0 or channels <= 0:
            raise ValueError(f"no song has {rate} Hz and {channels} channels")
        self.out, self.source_rate, self.source_channels = out, rate, channels
        self.sample_rate, self.channels = kept_rate(rate), min(channels, MAX_CHANNELS)
        self._weights = downmix_weights(channels) if channels > MAX_CHANNELS else None
        self._limit, self._keep = limits.max_samples(rate), keep
        self._came = self._kept_in = self.samples = 0
        self._resampler = None
        self._partial = b""  # the start of a sample whose end is in the next block (from a pipe)

    def write(self, pcm: bytes | memoryview) -> None:
        width = 2 * self.source_channels
        if self._partial or len(pcm) % width:
            pcm = self._partial + bytes(pcm)
            self._partial = pcm[len(pcm) // width * width:]
        n = len(pcm) // width
        self._came += n
        if self._came > self._limit:
            raise TooLong(None)
        if self._keep is not None:
            n = min(n, max(0, self._keep - self._kept_in))
        if n == 0:
            return
        self._kept_in += n
        pcm = pcm[: n * width]
        if self._weights is not None:
            pcm = self._downmix(pcm)
        if self.sample_rate != self.source_rate:
            self._resample(pcm)
        else:
            self._put(pcm)

    def close(self, codec: str) -> Decoded:
        """Flushes what the resampler holds; what was written."""
        if self._resampler is not None:
            for piece in self._resampler.resample(None):
                self._put(memoryview(piece.planes[0])[: piece.samples * 2 * self.channels])
        return Decoded(codec, self.sample_rate, self.channels, self.samples, self.source_rate, self.source_channels)

    def _put(self, pcm: bytes | memoryview) -> None:
        self.out.write(pcm)
        self.samples += len(pcm) // (2 * self.channels)

    def _downmix(self, pcm: bytes | memoryview) -> bytes:
        """Element by element, in a fixed order (no matrix product, whose summation order may
        depend on the block), so every decoder's blocks give the same samples."""
        import numpy as np

        block = np.frombuffer(pcm, "<i2").reshape(-1, self.source_channels).astype(np.float64)
        mixed = np.zeros((len(block), 2))
        for c, (left, right) in enumerate(self._weights or ()):
            mixed[:, 0] += block[:, c] * left
            mixed[:, 1] += block[:, c] * right
        return np.clip(np.rint(mixed), -32768, 32767).astype("<i2").tobytes()

    def _resample(self, pcm: bytes | memoryview) -> None:
        import av
        import numpy as np

        layout = "stereo" if self.channels == 2 else "mono"
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout=layout, rate=self.sample_rate)
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = self.source_rate
        for piece in self._resampler.resample(frame):
            self._put(memoryview(piece.planes[0])[: piece.samples * 2 * self.channels])
