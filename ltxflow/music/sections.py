"""A song's sections, found from the music (librosa, imported here only): cut on bar lines where
the music changes, labelled by likeness (A, B, A, ...), with each section's level.

Every bar gets features (its mean chroma, MFCCs 1-19 and level); the distance between two bars
sums the three, each on its own scale (chroma and MFCC by their median distance, level in units
of LEVEL_UNIT_DB). A checkerboard kernel of KERNEL_BARS bars on either side of each bar line
gives the novelty there (how unlike each other the bars before and after are, less how unlike
they are among themselves: Foote's measure). Boundaries are the highest novelty peaks above the
mean plus half a standard deviation, at least `min_bars` apart and from the ends, at most
`max_sections` - 1 of them; a section longer than `max_bars` is cut at its highest novelty, so no
scene of a video runs a minute on one prompt. Sections whose bars are as alike across as within
(the same block distance as novelty) share a label.

What it cannot know: which section is a verse or a chorus. Labels say only which sections sound
alike; `role` is "intro" or "outro" only for a first or last section well below the song's
typical level (a quiet opening, a fade-out)."""

from __future__ import annotations

from dataclasses import dataclass

from ltxflow.media.probe import AudioTrack
from ltxflow.music.analysis import RATE, analysed_samples
from ltxflow.music.grid import Grid

MIN_BARS = 4  # a section has at least this many bars
MAX_BARS = 32  # ... and at most this many, unless the music gives no bar line to cut it on
MAX_SECTIONS = 12
KERNEL_BARS = 8  # bars each side of a bar line that its novelty compares
LEVEL_UNIT_DB = 6.0  # a level difference of this many dB counts as much as a typical timbre change
SAME_LABEL = 0.35  # sections whose block distance is below this share a label
QUIET_ROLE_DB = 6.0  # an intro or outro lies this far below the median section level
HOP = 512  # feature step at RATE: 23 ms


@dataclass(frozen=True)
class Section:
    """Part of the song: bar lines `first_bar` (1-based) up to `end_bar` (exclusive), and its span
    in seconds. The first section starts at 0 s (with any pickup before bar 1), the last ends at
    the song's end. `level_db`: its mean level against the loudest section's (0)."""

    first_bar: int
    end_bar: int
    start: float
    end: float
    label: str
    level_db: float
    role: str = ""  # "intro" | "outro" | ""

    @property
    def bars(self) -> int:
        return self.end_bar - self.first_bar

    def to_json(self) -> dict:
        return {"first_bar": self.first_bar, "end_bar": self.end_bar, "start": round(self.start, 4),
                "end": round(self.end, 4), "label": self.label, "role": self.role or None,
                "level_db": round(self.level_db, 1)}


def clock(seconds: float) -> str:
    """Seconds as m:ss.mmm, as `ltxflow music` prints times and `ltxflow init` comments them."""
    ms = round(seconds * 1000)
    return f"{ms // 60000}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def find_sections(track: AudioTrack, grid: Grid, *, min_bars: int = MIN_BARS, max_bars: int = MAX_BARS,
                  max_sections: int = MAX_SECTIONS) -> tuple[Section, ...]:
    """The song's sections (see the module's docstring). A song with fewer than 2 * min_bars
    bars is one section."""
    duration = float(track.duration)
    bars = grid.bars
    if len(bars) < 2 * min_bars or max_sections < 2:
        return (Section(1, len(bars) + 1, 0.0, duration, "A", 0.0),)
    dist, level = bar_distances(analysed_samples(track), bars, duration)
    edges = boundaries(novelty(dist, KERNEL_BARS, min_bars), len(bars), min_bars, max_bars, max_sections)
    return describe(edges, bars, duration, dist, level)


def bar_distances(y, bars: tuple[float, ...], duration: float):
    """(bars x bars distance matrix, per-bar level in dB) of a mono signal at RATE."""
    import librosa
    import numpy as np
    from scipy.spatial.distance import cdist

    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=HOP)) ** 2
    chroma = librosa.feature.chroma_stft(S=S, sr=RATE, hop_length=HOP)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(S=S, sr=RATE, n_mels=64)),
                                n_mfcc=20)[1:]
    power = S.mean(axis=0, keepdims=True)
    period = bars[-1] - bars[-2]
    edges = np.round(np.asarray([*bars, min(duration, bars[-1] + period)]) * RATE / HOP).astype(int)
    edges = np.minimum(edges, S.shape[1] - 1)

    def per_bar(x):
        return np.stack([x[:, a:max(b, a + 1)].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)

    c = per_bar(chroma)
    c = c / (np.linalg.norm(c, axis=0, keepdims=True) + 1e-9)
    m = per_bar(mfcc)
    m = (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-9)
    level = 10 * np.log10(per_bar(power)[0] + 1e-12)
    dc, dm = cdist(c.T, c.T, "cosine"), cdist(m.T, m.T, "euclidean")
    dist = (dc / (np.median(dc) or 1.0) + dm / (np.median(dm) or 1.0)
            + np.abs(level[:, None] - level[None, :]) / LEVEL_UNIT_DB)
    return dist, level


def _block(dist, a: range, b: range, weights=None) -> float:
    import numpy as np

    block = dist[np.ix_(list(a), list(b))]
    if weights is None:
        return float(block.mean())
    w = np.outer(*weights)
    return float((block * w).sum() / w.sum())


def novelty(dist, half: int, min_bars: int):
    """Per bar line b (0..n: the line before bar index b), how unlike the bars before and after it
    are (cross blocks) less how unlike among themselves (within blocks), over up to `half` bars
    each side weighted by a Gaussian taper; 0 closer than `min_bars` to either end."""
    import numpy as np

    n = dist.shape[0]
    out = np.zeros(n + 1)
    for b in range(min_bars, n - min_bars + 1):
        width = min(half, b, n - b)
        w = np.exp(-0.5 * ((np.arange(width) + 0.5) / (0.6 * width)) ** 2)
        before, after = range(b - 1, b - 1 - width, -1), range(b, b + width)
        out[b] = _block(dist, before, after, (w, w)) - 0.5 * (_block(dist, before, before, (w, w))
                                                              + _block(dist, after, after, (w, w)))
    return out


def boundaries(nov, n: int, min_bars: int, max_bars: int, max_sections: int) -> list[int]:
    """Section edges as bar indices [0, ..., n] (pure; see the module's docstring)."""
    inner = nov[min_bars:n - min_bars + 1]
    floor = float(inner.mean() + 0.5 * inner.std()) if len(inner) else 0.0
    peaks = [b for b in range(min_bars, n - min_bars + 1)
             if nov[b] >= nov[b - 1] and nov[b] >= nov[b + 1] and nov[b] > floor]
    chosen: list[int] = []
    for b in sorted(peaks, key=lambda b: (-nov[b], b)):
        if len(chosen) < max_sections - 1 and all(abs(b - c) >= min_bars for c in (0, n, *chosen)):
            chosen.append(b)
    while len(chosen) < max_sections - 1:  # cut the longest section over max_bars at its peak
        edges = [0, *sorted(chosen), n]
        a, b = max(zip(edges, edges[1:]), key=lambda e: e[1] - e[0])
        if b - a <= max_bars or b - a < 2 * min_bars:
            break
        chosen.append(max(range(a + min_bars, b - min_bars + 1), key=lambda c: (nov[c], -c)))
    return [0, *sorted(chosen), n]


def labels(dist, edges: list[int]) -> list[str]:
    """A letter per section, in order of first appearance; a section takes the letter of the
    first earlier one within SAME_LABEL of it (block distance: across less within)."""
    spans = [range(a, b) for a, b in zip(edges, edges[1:])]
    within = [_block(dist, s, s) for s in spans]
    out: list[str] = []
    letters = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for i, s in enumerate(spans):
        like = [(_block(dist, s, spans[j]) - 0.5 * (within[i] + within[j]), out[j]) for j in range(i)]
        best = min(like, default=None)
        out.append(best[1] if best is not None and best[0] < SAME_LABEL else next(letters))
    return out


def describe(edges: list[int], bars: tuple[float, ...], duration: float, dist, level) -> tuple[Section, ...]:
    """Sections from their edges: times, labels, levels, the intro and outro roles."""
    import numpy as np

    n = len(bars)
    power = [float(10 * np.log10(np.mean(10 ** (level[a:b] / 10)))) for a, b in zip(edges, edges[1:])]
    top, typical = max(power), float(np.median(power))
    out = []
    for i, (a, b, label) in enumerate(zip(edges, edges[1:], labels(dist, edges))):
        quiet = power[i] <= typical - QUIET_ROLE_DB and len(power) > 2
        role = "intro" if quiet and i == 0 else "outro" if quiet and i == len(power) - 1 else ""
        out.append(Section(a + 1, b + 1, 0.0 if a == 0 else bars[a], duration if b == n else bars[b], label,
                           power[i] - top, role))
    return tuple(out)
