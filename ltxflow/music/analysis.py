"""Music analysis of the master track (librosa): tempo, beats (see beats.py), onset envelope and
quiet gaps, computed once per track digest and kept on disk, so later plans import no librosa.

A kept analysis is read as untrusted (the cache may be a pull request's): load_cached takes it
only when it has exactly the shape compute gives (finite numbers, beats in order inside the
track, levels in 0..1, gaps in order); any other file is no analysis, and is made again."""

from __future__ import annotations

import functools
import json
import math
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ltxflow.files import read_json
from ltxflow.media.probe import AudioTrack

VERSION = 2  # bump when the analysis changes: cached analyses of another version are made again
RATE = 22050  # the track is analysed mono at this rate
HOP = 256  # onset envelope / level step: 11.6 ms
QUIET_DB = 18.0  # a gap is this far below the track's loud parts (its 90th level percentile) ...
MIN_GAP_S = 0.12  # ... for at least this long


@dataclass(frozen=True)
class Analysis:
    """What the planner and the report know of the music. Times in seconds from the track's start."""

    digest: str  # the track's digest
    duration: float
    tempo: float  # beats per minute
    beats: tuple[float, ...]
    downbeat: tuple[float, ...]  # per beat, 0..1: how much it sounds like a bar's start
    onset_rate: float  # onset envelope values per second
    onset: tuple[float, ...]  # onset strength, 0..1
    gaps: tuple[tuple[float, float], ...]  # quiet spans [start, end)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Analysis":
        return cls(digest=data["digest"], duration=float(data["duration"]), tempo=float(data["tempo"]),
                   beats=tuple(float(b) for b in data["beats"]),
                   downbeat=tuple(float(v) for v in data["downbeat"]), onset_rate=float(data["onset_rate"]),
                   onset=tuple(float(v) for v in data["onset"]),
                   gaps=tuple((float(a), float(b)) for a, b in data["gaps"]))


def cache_path(store: Path, digest: str) -> Path:
    return store / f"{digest[:32]}-v{VERSION}.json"


def load_cached(store: Path | None, digest: str) -> Analysis | None:
    """The kept analysis of a track, or None (absent, unreadable, of another version or track,
    or not an analysis as compute makes one: see valid)."""
    if store is None:
        return None
    try:
        data = read_json(cache_path(store, digest))
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and set(data) == {"version", "analysis"} and data["version"] == VERSION):
        return None
    a = data["analysis"]
    if not valid(a) or a["digest"] != digest:
        return None
    return Analysis.from_json(a)


def _num(v: Any, lo: float = 0.0, hi: float = math.inf) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def _ordered(values: list) -> bool:
    return all(a <= b for a, b in zip(values, values[1:]))


def valid(a: Any) -> bool:
    """Whether `a` is an analysis's JSON exactly as to_json writes one: its fields, each of its
    type, finite, in range (times inside the track) and in order."""
    if not (isinstance(a, dict) and set(a) == {f for f in Analysis.__dataclass_fields__} and isinstance(a["digest"], str)
            and _num(a["duration"]) and _num(a["tempo"]) and _num(a["onset_rate"]) and a["onset_rate"] > 0):
        return False
    beats, downbeat, onset, gaps = a["beats"], a["downbeat"], a["onset"], a["gaps"]
    if not all(isinstance(x, list) for x in (beats, downbeat, onset, gaps)):
        return False
    duration = a["duration"]
    return (all(_num(b, 0, duration) for b in beats) and _ordered(beats) and len(downbeat) == len(beats)
            and all(_num(v, 0, 1) for v in downbeat) and all(_num(v, 0, 1) for v in onset)
            and all(isinstance(g, list) and len(g) == 2 and _num(g[0], 0, duration) and _num(g[1], g[0], duration)
                    for g in gaps)
            and _ordered([g[0] for g in gaps]))


def analyse_track(track: AudioTrack, store: Path | None = None) -> Analysis:
    """The track's analysis: read from `store` when kept there, else computed (imports librosa)
    and kept. Writing is atomic; an unwritable store only costs the next plan the analysis again."""
    cached = load_cached(store, track.digest)
    if cached is not None:
        return cached
    analysis = compute(track)
    if store is not None:
        try:
            store.mkdir(parents=True, exist_ok=True)
            path = cache_path(store, track.digest)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
            try:
                tmp.write_text(json.dumps({"version": VERSION, "analysis": analysis.to_json()}, allow_nan=False))
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        except (OSError, ValueError):  # ValueError: a non-finite number, which load_cached would refuse
            pass
    return analysis


def mono_samples(track: AudioTrack):
    """The whole track as mono float32 in -1..1 at its own rate (memory-mapped PCM, mixed down)."""
    import numpy as np

    if track.samples == 0:
        return np.zeros(0, dtype=np.float32)
    pcm = np.memmap(track.pcm_file, dtype="<i2", mode="r", shape=(track.samples, track.channels))
    return (pcm.astype(np.float32).mean(axis=1) / 32768.0).astype(np.float32)


def analysed_samples(track: AudioTrack):
    """The track as the analysis reads it: mono float32 at RATE (imports librosa to resample)."""
    y = mono_samples(track)
    if track.sample_rate != RATE and len(y):
        import librosa

        y = librosa.resample(y, orig_sr=track.sample_rate, target_sr=RATE, res_type="soxr_hq")
    return y


@functools.lru_cache(maxsize=4)
def compute(track: AudioTrack) -> Analysis:
    """The analysis itself (memoised per process: a plan resolved twice analyses once)."""
    import librosa
    import numpy as np

    from ltxflow.music.beats import track as track_beats

    y = analysed_samples(track)
    duration = float(track.duration)
    if len(y) < 4 * HOP or not np.any(y):
        return Analysis(track.digest, duration, 0.0, (), (), RATE / HOP, (), ((0.0, duration),) if duration else ())
    found = track_beats(y, RATE, HOP)
    envelope = found.envelope
    peak = float(envelope.max()) or 1.0
    rms = librosa.feature.rms(y=y, frame_length=4 * HOP, hop_length=HOP)[0]
    return Analysis(
        digest=track.digest, duration=duration, tempo=found.tempo,
        beats=tuple(round(b, 4) for b in found.times if b < duration),
        downbeat=tuple(round(v, 3) for b, v in zip(found.times, found.downbeat) if b < duration),
        onset_rate=RATE / HOP, onset=tuple(round(float(v) / peak, 3) for v in envelope),
        gaps=quiet_gaps(rms, RATE / HOP, duration))


def quiet_gaps(rms, rate: float, duration: float, quiet_db: float = QUIET_DB,
               min_gap_s: float = MIN_GAP_S) -> tuple[tuple[float, float], ...]:
    """Spans where the level (RMS per step, `rate` steps a second) stays `quiet_db` below the
    track's loud parts (its 90th percentile) for at least `min_gap_s`."""
    import numpy as np

    level = 20 * np.log10(np.maximum(np.asarray(rms, dtype=np.float64), 1e-6))
    if not len(level):
        return ()
    quiet = level < np.percentile(level, 90) - quiet_db
    out = []
    i, n = 0, len(quiet)
    while i < n:
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < n and quiet[j]:
            j += 1
        # Level steps are centred on their times: a quiet run spans from the first one's centre
        # to the last one's, shrunk by half a step so a gap never reaches into sound.
        a, b = i / rate, min(duration, (j - 1) / rate)
        if b - a >= min_gap_s:
            out.append((round(a, 4), round(b, 4)))
        i = j
    return tuple(out)
