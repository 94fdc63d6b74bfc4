"""Seams on the music (pure): inside a scene, each chunk boundary moves from its balanced place
to the nearest bar start, beat or quiet gap within a window, keeping every chunk valid."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ltxflow.music.grid import Grid

# What a seam's placement costs in the search: a beat or gap costs its distance from the seam's
# balanced place in windows (< 1), a beat that starts no bar half a window more (so a bar start
# up to half a window farther wins); a gaps seam that falls back to a beat costs 2 more; a seam
# left at its balanced place costs 10.
OFF_BAR = 0.5
FALLBACK_BEAT = 2.0
UNPLACED = 10.0


@dataclass(frozen=True)
class Candidate:
    offset: int  # kept-frame offset inside the scene
    placed: str  # "beat" | "gap" | "even"
    cost: float


Event = tuple[int, int, float]  # (first, last) timeline frames where a seam may go, and its cost


def event_frames(grid: Grid, kind: str, fps: Fraction, start: int, end: int) -> list[Event]:
    """Music events inside timeline frames (start, end) where a seam may go: one frame per beat
    (the one nearest it; OFF_BAR unless it starts a bar), the whole frame range inside each quiet
    gap."""
    out: list[Event] = []
    if kind == "beats":
        bars = set(grid.bars)
        for t in grid.beats:
            f = math.floor(Fraction(str(t)) * fps + Fraction(1, 2))
            if start < f < end:
                out.append((f, f, 0.0 if t in bars else OFF_BAR))
    else:
        for a, b in grid.gaps:
            lo, hi = math.ceil(Fraction(str(a)) * fps), math.floor(Fraction(str(b)) * fps)
            lo, hi = max(lo, start + 1), min(hi, end - 1)
            if lo <= hi:
                out.append((lo, hi, 0.0))
    return out


def candidates(ideal: int, window: int, events: dict[str, list[Event]], scene_start: int,
               order: tuple[str, ...]) -> list[Candidate]:
    """Where one seam may go: each event of the kinds in `order` within `window` frames of its
    balanced place `ideal` (the point of a range nearest to it), and the balanced place itself."""
    out = [Candidate(ideal, "even", UNPLACED)]
    for rank, kind in enumerate(order):
        placed = kind.rstrip("s")
        for lo, hi, cost in events.get(kind, ()):
            at = min(max(ideal + scene_start, lo), hi) - scene_start
            distance = abs(at - ideal)
            if distance <= window:
                out.append(Candidate(at, placed, rank * FALLBACK_BEAT + distance / (window + 1) + cost))
    return out


def place_seams(ideals: list[int], frames: int, fits, options: list[list[Candidate]]) -> list[Candidate]:
    """The cheapest choice of one candidate per seam such that every chunk fits.

    `ideals`: the balanced seam offsets (a valid split, so a solution always exists);
    `fits(i, kept)`: whether chunk i may keep `kept` frames. Dynamic programming over seams."""
    best: dict[int, tuple[float, list[Candidate]]] = {0: (0.0, [])}
    for j, opts in enumerate(options):
        nxt: dict[int, tuple[float, list[Candidate]]] = {}
        for prev, (cost, path) in best.items():
            for c in opts:
                if c.offset <= prev or not fits(j, c.offset - prev):
                    continue
                total = cost + c.cost
                if c.offset not in nxt or total < nxt[c.offset][0]:
                    nxt[c.offset] = (total, path + [c])
        best = nxt
    done = [(cost, path) for last, (cost, path) in best.items() if fits(len(options), frames - last)]
    if not done:  # cannot happen for a valid balanced split; keep it as a plain error
        raise ValueError(f"no placement of seams {ideals} fits")
    return min(done, key=lambda x: x[0])[1]
