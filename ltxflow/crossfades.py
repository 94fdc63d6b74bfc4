"""Seams between stitched pieces (pure): which crossfade windows a selection gets, where each piece
is cut for them, and which frames, with which weights, every window frame blends."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Sequence

from ltxflow.timeline import Span

if TYPE_CHECKING:
    from ltxflow.media.encode import Format
    from ltxflow.plan.planner import Plan


@dataclass(frozen=True)
class Piece:
    """One stitched clip, `frames` long. When `joined` (it continues the timeline of the piece
    before it), it joins that piece by `seam`: "cut", or "crossfade" over `crossfade_frames`."""

    name: str  # the chunk, for messages
    frames: int
    seam: str = "cut"
    crossfade_frames: int = 8
    joined: bool = True


@dataclass(frozen=True)
class Window:
    """A crossfade over the seam before piece `index`: the last `before` frames of the piece
    before it (A) and the first `after` frames of piece `index` (B) become `before + after`
    blended frames, so the pieces keep their lengths."""

    index: int
    before: int
    after: int

    @property
    def frames(self) -> int:
        return self.before + self.after

    def sources(self) -> list[tuple[int, int, Fraction]]:
        """Per window frame j: (A's frame, B's frame, B's weight a_j = (j + 1/2) / frames). Frames
        count from the seam: A's -1 is its last frame, B's 0 its first. A past its end holds its
        last frame, B before its start holds its first."""
        n = self.frames
        return [(min(j - self.before, -1), max(j - self.before, 0), Fraction(2 * j + 1, 2 * n)) for j in range(n)]


@dataclass(frozen=True)
class Split:
    """How one piece is used: its first `head` frames feed the window before it, its last `tail`
    frames the window after it, and the frames between (its body) are copied untouched."""

    frames: int
    head: int = 0
    tail: int = 0

    @property
    def body(self) -> tuple[int, int]:
        return self.head, self.frames - self.tail

    @property
    def keyframes(self) -> tuple[int, ...]:
        """Frames that must start a closed group of pictures, so that packet copy cuts here."""
        return tuple(sorted({k for k in self.body if 0 < k < self.frames}))

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """The parts the piece is cut into: [0, k1), [k1, k2), ... [kn, frames)."""
        bounds = [0, *self.keyframes, self.frames]
        return list(zip(bounds, bounds[1:]))


@dataclass(frozen=True)
class Seams:
    """A selection's seams: its pieces, the crossfade windows between them, how each piece is cut,
    and (chunk, message) notes for crossfades that were shortened or fell back to a cut."""

    pieces: tuple[Piece, ...]
    windows: tuple[Window, ...]
    splits: tuple[Split, ...]
    notes: tuple[tuple[str, str], ...]

    @property
    def blended(self) -> int:
        """Frames the windows encode again."""
        return sum(w.frames for w in self.windows)


def fit(n: int, a_frames: int, b_frames: int) -> int:
    """The longest window up to `n` frames that takes at most half of A's frames (n // 2 come
    from A) and at most half of B's (n - n // 2 come from B). Under 2: no crossfade fits."""
    return max(0, min(n, 2 * (a_frames // 2) + 1, 2 * (b_frames // 2)))


def plan_seams(pieces: Sequence[Piece]) -> Seams:
    """The crossfade windows between `pieces` (in output order) and the cuts they need."""
    windows: list[Window] = []
    notes: list[tuple[str, str]] = []
    for i in range(1, len(pieces)):
        a, b = pieces[i - 1], pieces[i]
        if not b.joined or b.seam != "crossfade":
            continue
        m = fit(b.crossfade_frames, a.frames, b.frames)
        sizes = f"{a.name} has {a.frames} frames here and {b.name} {b.frames}; a window takes at most half of either"
        if m < 2:
            notes.append((b.name, f"{b.name}: no crossfade fits at its start ({sizes}); the seam is a cut"))
            continue
        if m < b.crossfade_frames:
            notes.append((b.name, f"{b.name}: its crossfade is shortened from {b.crossfade_frames} to {m} frames "
                                  f"({sizes})"))
        windows.append(Window(i, m // 2, m - m // 2))
    head = {w.index: w.after for w in windows}
    tail = {w.index - 1: w.before for w in windows}
    splits = tuple(Split(p.frames, head.get(i, 0), tail.get(i, 0)) for i, p in enumerate(pieces))
    return Seams(tuple(pieces), tuple(windows), splits, tuple(notes))


def selection_pieces(plan: "Plan", pieces: Sequence[tuple[str, Span]]) -> list[Piece]:
    """Pieces for (chunk id, timeline frames of it) in output order. The seam at the start of a
    chunk uses its scene's settings; spans that do not continue the one before (the first, or
    after a gap in an --only selection) are not joined."""
    scenes = {s.id: s for s in plan.project.scenes}
    out: list[Piece] = []
    for k, (cid, span) in enumerate(pieces):
        scene = scenes[plan.chunk(cid).scene]
        joined = k > 0 and pieces[k - 1][1].end == span.start
        out.append(Piece(cid, span.count, scene.seam, scene.crossfade_frames, joined))
    return out


def chunk_keyframes(plan: "Plan", fmt: "Format") -> dict[str, tuple[int, ...]]:
    """The key frames each chunk's normalized clip needs for a stitch of the whole video."""
    seams = plan_seams(selection_pieces(plan, [(c.id, Span(c.start_frame, c.end_frame)) for c in plan.chunks]))
    return {c.id: forced(s, fmt) for c, s in zip(plan.chunks, seams.splits)}


def forced(split: Split, fmt: "Format") -> tuple[int, ...]:
    """The key frames to force when normalizing a clip for `split` in `fmt` (none where every frame
    is one)."""
    return () if fmt.all_key else split.keyframes
