"""Beats grouped into bars, musical times resolved to seconds, and seconds described in music (pure)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ltxflow.music.analysis import Analysis
from ltxflow.timeline import MusicTime


@dataclass(frozen=True)
class Grid:
    """A track's beats and bars: bar 1 starts on beat index `phase` (0-based); the beats before
    it are a pickup (bar 0)."""

    analysis: Analysis
    beats_per_bar: int
    phase: int

    @property
    def beats(self) -> tuple[float, ...]:
        return self.analysis.beats

    @property
    def bars(self) -> tuple[float, ...]:
        return self.beats[self.phase::self.beats_per_bar]

    @property
    def gaps(self) -> tuple[tuple[float, float], ...]:
        return self.analysis.gaps

    def seconds(self, t: MusicTime) -> float:
        """The time of a musical position. Raises ValueError naming what the track has."""
        beats, n = self.beats, len(self.beats)
        if n == 0:
            raise ValueError(f"`{t}`: no beats were found in the track")
        if t.unit == "beat":
            index = t.number - 1
        else:
            within = (t.beat or 1) - 1
            if within >= self.beats_per_bar:
                raise ValueError(f"`{t}`: a bar has {self.beats_per_bar} beats (music.beats_per_bar)")
            index = self.phase + (t.number - 1) * self.beats_per_bar + within
        if index >= n:
            last_bar = (n - 1 - self.phase) // self.beats_per_bar + 1
            raise ValueError(f"`{t}` is past the track's last beat: it has {n} beats in {last_bar} bars "
                             f"(the last beat at {beats[-1]:.2f} s)")
        return beats[index]

    def describe(self, seconds: float) -> dict:
        """Where a time falls in the music: the nearest beat (1-based number, bar and beat in
        bar, offset in seconds), and the quiet gap it lies in, if any."""
        out: dict = {}
        if self.beats:
            i = nearest(self.beats, seconds)
            bar, within = divmod(i - self.phase, self.beats_per_bar)
            out["beat"] = {"number": i + 1, "bar": bar + 1, "beat_in_bar": within + 1,
                           "offset_s": round(seconds - self.beats[i], 4)}
        for a, b in self.gaps:
            if a <= seconds <= b:
                out["gap"] = [a, b]
                break
        return out


def describe_text(where: dict) -> str:
    """A `Grid.describe` result in words: 'beat 39 (bar 10 beat 3) -0.001 s', 'beat 2 (pickup)
    +0.010 s', with ', in a quiet gap 1.16-1.47 s' when it lies in one."""
    parts = []
    beat = where.get("beat")
    if beat:
        bar = f"bar {beat['bar']} beat {beat['beat_in_bar']}" if beat["bar"] >= 1 else "pickup"
        parts.append(f"beat {beat['number']} ({bar}) {beat['offset_s']:+.3f} s")
    gap = where.get("gap")
    if gap:
        parts.append(f"in a quiet gap {gap[0]:.2f}-{gap[1]:.2f} s")
    return ", ".join(parts) or "no beats found in the track"


def nearest(values: tuple[float, ...], x: float) -> int:
    """Index of the value nearest x in a sorted, non-empty tuple."""
    i = bisect.bisect_left(values, x)
    if i == 0:
        return 0
    if i == len(values):
        return len(values) - 1
    return i if values[i] - x < x - values[i - 1] else i - 1


def make_grid(analysis: Analysis, beats_per_bar: int = 4, first_bar: int | None = None) -> Grid:
    """Bars from beats: bar 1 starts on beat `first_bar` (1-based) when given, else on the phase
    whose every `beats_per_bar`-th beat sounds most like a bar's start on average (the analysis's
    downbeat score: the kick's strength and the chord change at the beat; a heuristic, which
    `music.first_bar` overrides). The tracker drops beats in a near-silent intro, so the phase
    counts from the first beat heard, and a pickup before bar 1 is kept as bar 0."""
    beats, scores = analysis.beats, analysis.downbeat
    if first_bar is not None:
        return Grid(analysis, beats_per_bar, first_bar - 1)
    best, best_score = 0, -1.0
    for phase in range(min(beats_per_bar, len(beats))):
        chosen = scores[phase::beats_per_bar]
        score = sum(chosen) / len(chosen)
        if score > best_score + 1e-9:
            best, best_score = phase, score
    return Grid(analysis, beats_per_bar, best)
