"""Synthetic drum patterns with known beats and downbeats: the corpus that tests beat phase against
truth. Kicks are pitch-swept sines, snares noise plus a tone, hats high-passed noise mixed LOUDER
than the kick (as real mixes often are, and as fooled a broadband tracker), over a bass line and a
pad whose chord changes on every bar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RATE = 22050
SECONDS = 24.0
# Chord roots (Hz) of a four-bar progression, one chord a bar: A, F, C, G.
ROOTS = (55.0, 43.65, 65.41, 49.0)


@dataclass(frozen=True)
class Truth:
    """What a pattern's beats are: every true beat (seconds), the bar starts among them (bar 1
    first), and the tempo (beats per minute) at the start."""

    name: str
    beats: tuple[float, ...]
    downbeats: tuple[float, ...]
    tempo: float

    @property
    def first_bar(self) -> float:
        return self.downbeats[0]

    @property
    def offbeats(self) -> tuple[float, ...]:
        """The midpoints between consecutive true beats (where 8th hats sit)."""
        return tuple((a + b) / 2 for a, b in zip(self.beats, self.beats[1:]))


def _np():
    import numpy as np

    return np


def kick(rate: int = RATE):
    """A kick: a sine swept from ~150 Hz down to ~50 Hz with a fast decay, and a short click."""
    np = _np()
    t = np.arange(round(0.25 * rate)) / rate
    freq = 50 + 100 * np.exp(-t / 0.025)
    phase = 2 * np.pi * np.cumsum(freq) / rate
    click = np.exp(-t / 0.002) * np.random.default_rng(1).normal(0, 0.15, len(t))
    return np.sin(phase) * np.exp(-t / 0.09) * np.minimum(1, t / 0.004) + 0.3 * click


def _filtered_noise(seconds: float, band, kind: str, seed: int, rate: int = RATE):
    from scipy.signal import butter, sosfilt

    np = _np()
    noise = np.random.default_rng(seed).normal(0, 1, round(seconds * rate))
    return sosfilt(butter(4, band, kind, fs=rate, output="sos"), noise)


def snare(rate: int = RATE):
    """A snare: a band-passed noise burst and a 185 Hz tone, both decaying in ~50 ms."""
    np = _np()
    t = np.arange(round(0.2 * rate)) / rate
    noise = _filtered_noise(0.2, (300, 9000), "bandpass", 2, rate)
    return 0.7 * noise / np.abs(noise).max() * np.exp(-t / 0.05) + 0.6 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.04)


def hat(open_: bool = False, rate: int = RATE):
    """A hi-hat: noise high-passed at 7 kHz, closed (~25 ms decay) or open (~150 ms)."""
    np = _np()
    length = 0.3 if open_ else 0.08
    t = np.arange(round(length * rate)) / rate
    noise = _filtered_noise(length, 7000, "highpass", 3 if open_ else 4, rate)
    return noise / np.abs(noise).max() * np.exp(-t / (0.15 if open_ else 0.025))


class Mix:
    """A mono mix being written: drums at sample positions, bass and pad per bar."""

    def __init__(self, seconds: float = SECONDS, rate: int = RATE):
        np = _np()
        self.rate = rate
        self.y = np.zeros(round(seconds * rate))
        self.sounds = {"kick": kick(rate), "snare": snare(rate), "hat": hat(False, rate), "open": hat(True, rate)}
        # Peak levels: the hats are louder than the kick.
        self.levels = {"kick": 0.3, "snare": 0.4, "hat": 1.2, "open": 1.0}

    def hit(self, sound: str, at: float, gain: float = 1.0) -> None:
        i = round(at * self.rate)
        if not 0 <= i < len(self.y):
            return
        s = self.sounds[sound][: len(self.y) - i]
        self.y[i:i + len(s)] += self.levels[sound] * gain * s

    def bar_harmony(self, start: float, end: float, chord: int, gain: float = 1.0, bass: tuple[float, ...] = ()) -> None:
        """A pad chord (root's triad, two octaves up) held from `start` to `end`, and bass notes
        (the root) at the times in `bass`, each held to the next one or the bar's end."""
        np = _np()
        root = ROOTS[chord % len(ROOTS)]
        a, b = round(start * self.rate), min(len(self.y), round(end * self.rate))
        if b <= a:
            return
        t = np.arange(b - a) / self.rate
        ramp = np.minimum(1, np.minimum(t, t[-1] - t) / 0.03)
        minor = chord % 2 == 0
        for ratio in (4, 4 * (1.189 if minor else 1.26), 6):
            self.y[a:b] += gain * 0.06 * ramp * np.sin(2 * np.pi * root * ratio * t)
        for k, at in enumerate(bass):
            until = bass[k + 1] if k + 1 < len(bass) else end
            i, j = round(at * self.rate), min(len(self.y), round(until * self.rate))
            if j <= i:
                continue
            u = np.arange(j - i) / self.rate
            env = np.minimum(1, u / 0.01) * np.exp(-u / 0.6)
            self.y[i:j] += gain * 0.25 * env * (np.sin(2 * np.pi * root * 2 * u) + 0.3 * np.sin(2 * np.pi * root * 4 * u))


def _grid(first: float, tempo_changes: list[tuple[int, float]], until: float) -> list[float]:
    """Beat times from `first`: tempo_changes is [(from beat index, bpm), ...]."""
    beats, t, i = [], first, 0
    changes = dict(tempo_changes)
    bpm = changes[0]
    while t < until:
        bpm = changes.get(i, bpm)
        beats.append(round(t, 6))
        t += 60 / bpm
        i += 1
    return beats


# Each groove: for a beat index within the bar (0..3), what plays on it and on its off-beat.
GROOVES = {
    "kick-hats": lambda m, k, t, half, swing: (m.hit("kick", t), m.hit("hat", t + half)),
    "backbeat": lambda m, k, t, half, swing: (
        m.hit("kick" if k in (0, 2) else "snare", t), m.hit("hat", t, 0.8), m.hit("hat", t + half)),
    "four-floor": lambda m, k, t, half, swing: (
        m.hit("kick", t), k in (1, 3) and m.hit("snare", t, 0.8), m.hit("open", t + half)),
    "half-time": lambda m, k, t, half, swing: (
        k == 0 and m.hit("kick", t), k == 2 and m.hit("snare", t), m.hit("hat", t, 0.8), m.hit("hat", t + half)),
    "swing": lambda m, k, t, half, swing: (
        m.hit("kick" if k in (0, 2) else "snare", t), m.hit("hat", t, 0.8), m.hit("hat", t + swing)),
}


@dataclass(frozen=True)
class Pattern:
    name: str
    groove: str
    tempi: tuple[tuple[int, float], ...]  # (from beat index, bpm)
    first: float = 0.5  # seconds of the first beat played (bar 1, or the pickup)
    pickup: int = 0  # beats before bar 1 (played as snare/tom hits)
    intro_bars: int = 0  # bars of a near-silent pad before bar 1 (no drums, no bass)


PATTERNS = (
    Pattern("kick-hats", "kick-hats", ((0, 120.0),)),
    Pattern("backbeat", "backbeat", ((0, 100.0),)),
    Pattern("four-floor", "four-floor", ((0, 126.0),)),
    Pattern("half-time", "half-time", ((0, 140.0),)),
    Pattern("swing", "swing", ((0, 96.0),)),
    Pattern("tempo-change", "backbeat", ((0, 100.0), (20, 128.0))),
    Pattern("quiet-intro", "kick-hats", ((0, 118.0),), intro_bars=2),
    Pattern("pickup", "backbeat", ((0, 110.0),), pickup=2),
    Pattern("on-the-one", "backbeat", ((0, 120.0),), first=0.0),  # the file opens on its first downbeat
)


def render(p: Pattern, seconds: float = SECONDS, rate: int = RATE):
    """The pattern's signal and its truth. The intro's pad plays in tempo, but its beats are not
    true beats: nothing marks them, and bar 1 is where the drums come in."""
    m = Mix(seconds, rate)
    intro = p.intro_bars * 4
    grid = _grid(p.first, list(p.tempi), seconds - 0.05)
    bar_one = intro + p.pickup  # index of bar 1's first beat in `grid`
    for i, t in enumerate(grid):
        nxt = grid[i + 1] if i + 1 < len(grid) else t + (t - grid[i - 1])
        half, swing = (nxt - t) / 2, (nxt - t) * 2 / 3
        if i < intro:
            if i % 4 == 0:
                m.bar_harmony(t, grid[min(i + 4, len(grid) - 1)], i // 4, gain=0.08)
            continue
        if i < bar_one:  # the pickup: a fill on the snare
            m.hit("snare", t, 0.7 + 0.15 * (i - intro))
            continue
        k = (i - bar_one) % 4
        GROOVES[p.groove](m, k, t, half, swing)
        if k == 0:
            end = grid[i + 4] if i + 4 < len(grid) else seconds
            bass = [grid[j] for j in (i, i + 2) if j < len(grid)]
            m.bar_harmony(t, end, (i - bar_one) // 4, bass=tuple(bass))
    beats = tuple(grid[intro:])
    truth = Truth(p.name, beats, tuple(grid[bar_one::4]), p.tempi[0][1])
    return m.y, truth


def write_pattern(path: Path, p: Pattern, seconds: float = SECONDS, rate: int = RATE) -> Truth:
    from conftest import write_signal

    y, truth = render(p, seconds, rate)
    write_signal(path, y, rate)
    return truth


@dataclass(frozen=True)
class Score:
    """How a grid and a plan's seams sit on a pattern's truth."""

    tempo: float
    errors_ms: tuple[float, ...]  # |tracked beat - nearest true beat|, for beats within the truth's span
    off_beats: int  # tracked beats nearer an off-beat than a beat
    missed: int  # true beats with no tracked beat within 42 ms
    bar_one_ms: float  # the grid's bar 1 - the true bar 1
    seam_ms: tuple[float, ...]  # per seam placed on a beat: its time - the nearest true beat's
    seams_on_bars: int  # seams within a frame of a true bar start


def score(truth: Truth, grid, plan=None) -> Score:
    np = _np()
    tb = np.asarray(truth.beats)
    period = float(np.median(np.diff(tb)))
    tracked = np.asarray([b for b in grid.beats if tb[0] - period / 2 <= b <= tb[-1] + period / 2])
    nearest = np.abs(tracked[:, None] - tb[None, :]).min(axis=1) if len(tracked) else np.zeros(0)
    off = np.asarray(truth.offbeats)
    to_off = np.abs(tracked[:, None] - off[None, :]).min(axis=1) if len(tracked) and len(off) else nearest + 1
    missed = int(sum(not len(tracked) or np.abs(tracked - t).min() > 0.042 for t in tb))
    seams, on_bars = [], 0
    if plan is not None:
        for c in plan.chunks[1:]:
            if c.placed != "beat":
                continue
            t = float(c.start_frame / plan.project.fps)
            seams.append(float(t - tb[np.argmin(np.abs(tb - t))]) * 1000)
            on_bars += min(abs(t - d) for d in truth.downbeats) <= 1 / plan.project.fps
    bars = grid.bars
    return Score(grid.analysis.tempo, tuple(float(e) * 1000 for e in nearest), int((to_off < nearest).sum()),
                 missed, (bars[0] - truth.first_bar) * 1000 if bars else float("nan"), tuple(seams), on_bars)


def project_text(audio: str, fps: int = 24, max_frames: int = 121) -> str:
    """One scene over the whole song, seams on the beats."""
    return (f'version: 1\naudio: {audio}\nfps: "{fps}"\nresolution: 256x128\n'
            f"chunking: {{boundaries: beats, max_frames: {max_frames}}}\n"
            "scenes:\n  - id: all\n    prompt: one long scene\n    image: keyframes/a.png\n")
