"""Time as integer frames on a rational fps; seconds only at the edges (parsing, ffmpeg args)."""

from __future__ import annotations

from typing import NamedTuple

import math
import re
from dataclasses import dataclass
from fractions import Fraction

# Decimal spellings people use for the NTSC rates mean the exact rational rate.
NTSC_ALIASES = {
    "23.976": Fraction(24000, 1001),
    "23.98": Fraction(24000, 1001),
    "29.97": Fraction(30000, 1001),
    "47.952": Fraction(48000, 1001),
    "59.94": Fraction(60000, 1001),
}

_TIMECODE = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")
_DECIMAL = re.compile(r"^\d+(?:\.\d+)?$")


def parse_fps(value: object) -> Fraction:
    """24, 25.0, "30", "24000/1001", "29.97" -> an exact Fraction. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("fps must be a number or a ratio such as 24000/1001")
    if isinstance(value, int):
        fps = Fraction(value)
    elif isinstance(value, (float, str)):
        text = repr(value) if isinstance(value, float) else value.strip()
        if text in NTSC_ALIASES:
            fps = NTSC_ALIASES[text]
        elif re.fullmatch(r"\d+\s*/\s*\d+", text):
            num, den = (int(x) for x in text.split("/"))
            if den == 0:
                raise ValueError(f"fps {text!r} divides by zero")
            fps = Fraction(num, den)
        elif _DECIMAL.fullmatch(text):
            fps = Fraction(text)
        else:
            raise ValueError(f"fps {value!r} is not a number or a ratio such as 24000/1001")
    elif isinstance(value, Fraction):
        fps = value
    else:
        raise ValueError("fps must be a number or a ratio such as 24000/1001")
    if not (1 <= fps <= 60):
        raise ValueError(f"fps {fps_str(fps)} is outside 1..60")
    return fps


def fps_str(fps: Fraction) -> str:
    """Fraction(24) -> '24'; Fraction(24000, 1001) -> '24000/1001'."""
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def parse_seconds(value: object) -> Fraction:
    """A time in the project file -> exact seconds.

    Accepts a number of seconds (12, 12.5), a string of one ("12.5"), or a timecode
    "m:ss.fff" / "h:mm:ss.fff". (Unquoted YAML 1.1 reads 1:30 as sexagesimal 90, which is
    also the right number of seconds.) Raises ValueError.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError("expected seconds (12.5) or a timecode (\"m:ss.fff\")")
    if isinstance(value, int):
        seconds = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a time")
        seconds = Fraction(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        m = _TIMECODE.fullmatch(text)
        if _DECIMAL.fullmatch(text):
            seconds = Fraction(text)
        elif m:
            hours, minutes, secs = m.group(1), m.group(2), m.group(3)
            if hours is not None and int(minutes) >= 60:
                raise ValueError(f"{text!r}: minutes must be below 60 in h:mm:ss")
            if int(float(secs)) >= 60:
                raise ValueError(f"{text!r}: seconds must be below 60 in m:ss")
            seconds = Fraction(int(hours or 0) * 3600 + int(minutes) * 60) + Fraction(secs)
        else:
            raise ValueError(f"{value!r} is not seconds (12.5) or a timecode (\"m:ss.fff\")")
    else:
        raise ValueError("expected seconds (12.5) or a timecode (\"m:ss.fff\")")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative")
    return seconds


@dataclass(frozen=True)
class MusicTime:
    """A time in musical units, resolved to frames by the track's analysis: `bar 17` (the start of
    bar 17), `bar 17 beat 3` (its third beat), `beat 64` (the 64th beat of the track). 1-based."""

    unit: str  # "bar" | "beat"
    number: int
    beat: int | None = None  # the beat within the bar (unit "bar" only)

    def __str__(self) -> str:
        return f"{self.unit} {self.number}" + (f" beat {self.beat}" if self.beat is not None else "")


_MUSICAL = re.compile(r"^(bar|beat)\s+(\d+)(?:\s+beat\s+(\d+))?$", re.IGNORECASE)
MUSICAL_PATTERN = r"^\s*(bar\s+\d+(\s+beat\s+\d+)?|beat\s+\d+)\s*$"


def parse_time(value: object) -> Fraction | MusicTime:
    """A scene time: seconds or a timecode (see parse_seconds), or musical units: `bar N`,
    `bar N beat M`, `beat N` (1-based). Raises ValueError."""
    if isinstance(value, MusicTime):
        return value
    if isinstance(value, str):
        m = _MUSICAL.fullmatch(value.strip())
        if m:
            unit, number, beat = m.group(1).lower(), int(m.group(2)), m.group(3)
            if unit == "beat" and beat is not None:
                raise ValueError(f"{value!r}: write `bar N beat M` or `beat N`")
            if number < 1 or (beat is not None and int(beat) < 1):
                raise ValueError(f"{value!r}: bars and beats count from 1")
            return MusicTime(unit, number, int(beat) if beat is not None else None)
        if re.match(r"^\s*(bar|beat)\b", value, re.IGNORECASE):
            raise ValueError(f"{value!r} is not `bar N`, `bar N beat M` or `beat N` (N, M from 1)")
    try:
        return parse_seconds(value)
    except ValueError:
        raise ValueError(f"{value!r} is not seconds (12.5), a timecode (\"m:ss.fff\") "
                         "or musical (`bar 17`, `bar 17 beat 3`, `beat 64`)") from None


def round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def seconds_to_frame(seconds: Fraction, fps: Fraction) -> int:
    """The frame grid position nearest to `seconds` (halves round up)."""
    return round_half_up(seconds * fps)


def frame_to_seconds(frame: int, fps: Fraction) -> Fraction:
    return Fraction(frame) / fps


def timecode(frame: int, fps: Fraction) -> str:
    """Frame index -> "m:ss.fff" (milliseconds rounded; for display only)."""
    ms = round_half_up(Fraction(frame) * 1000 / fps)
    minutes, ms = divmod(ms, 60_000)
    return f"{minutes}:{ms // 1000:02d}.{ms % 1000:03d}"


def frame_to_sample(frame: int, fps: Fraction, sample_rate: int) -> int:
    """The audio sample nearest the start of `frame`; adjacent frame spans tile the samples."""
    return round_half_up(Fraction(frame) * sample_rate / fps)


def parse_range(text: str) -> tuple[Fraction | MusicTime, Fraction | MusicTime]:
    """'0:30-1:00', '30-60.5', 'bar 10-bar 14', 'bar 9 beat 3-1:00' -> (start, end): seconds, or
    musical times (see parse_time) that the caller resolves on the track's beats. Raises ValueError."""
    a, sep, b = text.partition("-")
    if not sep or not a.strip() or not b.strip():
        raise ValueError(f"{text!r} is not START-END (e.g. 0:30-1:00 or bar 10-bar 14)")
    start, end = parse_time(a.strip()), parse_time(b.strip())
    if isinstance(start, Fraction) and isinstance(end, Fraction) and end <= start:
        raise ValueError(f"{text!r}: the end is not after the start")
    if isinstance(start, MusicTime) and isinstance(end, MusicTime) and \
            (end.unit, end.number, end.beat or 1) <= (start.unit, start.number, start.beat or 1):
        raise ValueError(f"{text!r}: the end is not after the start")
    return start, end


# -- frame counts LTX-2.3 generates: 8k+1, at least 9 (project.resolve checks them, plan.chunks splits by them)

MIN_FRAMES = 9


def largest_valid(max_frames: int) -> int:
    """The largest 8k+1 frame count not above max_frames (>= 9)."""
    if max_frames < MIN_FRAMES:
        raise ValueError(f"max_frames {max_frames} is below {MIN_FRAMES}")
    return (max_frames - 1) // 8 * 8 + 1


def valid_count(n: int) -> bool:
    return n >= MIN_FRAMES and n % 8 == 1


class Span(NamedTuple):
    """Frames, or samples, [start, end): the one span type (end exclusive, as OpenTimelineIO's
    TimeRange). A tuple, so `a, b = span` still reads it; `count` and `intersect` say what it
    means, where a bare (start, end) or (start, count) pair left it to the reader."""

    start: int
    end: int

    @classmethod
    def of(cls, start: int, count: int) -> "Span":
        return cls(start, start + count)

    @property
    def count(self) -> int:
        return self.end - self.start

    def intersect(self, other: "Span") -> "Span | None":
        """The frames both spans hold (None when none)."""
        lo, hi = max(self.start, other.start), min(self.end, other.end)
        return Span(lo, hi) if lo < hi else None
