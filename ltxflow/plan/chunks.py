"""Splitting a scene's frames into chunks LTX-2.3 accepts: 8k+1 generated frames, balanced, totals exact."""

from __future__ import annotations

from dataclasses import dataclass

MIN_FRAMES = 9


def largest_valid(max_frames: int) -> int:
    """The largest 8k+1 frame count not above max_frames (>= 9)."""
    if max_frames < MIN_FRAMES:
        raise ValueError(f"max_frames {max_frames} is below {MIN_FRAMES}")
    return (max_frames - 1) // 8 * 8 + 1


def valid_count(n: int) -> bool:
    return n >= MIN_FRAMES and n % 8 == 1


@dataclass(frozen=True)
class Split:
    """One chunk of a scene. The chunk generates `generated` frames; it drops `head` of them
    (1 when its first frame repeats the chain image; more in a one-chunk scene that ends on an
    end image), keeps `kept`, and trims `tail` at the end: head + kept + tail == generated."""

    generated: int
    head: int
    kept: int
    tail: int


def split_scene(frames: int, chained: bool, max_frames: int = 481, end_anchored: bool = False) -> list[Split]:
    """Split a scene of `frames` kept frames into as few balanced chunks as the model allows.

    `chained`: the scene's first chunk starts from the previous chunk's last frame (it generates
    one frame more than it keeps). Later chunks in the scene are always chained. The surplus of
    rounding up to 8k+1 (at most 7 frames, beyond the 9-frame minimum) is trimmed from one chunk:
    the end of the last one. When `end_anchored` (the scene ends on an end image, which must stay
    its last frame) it is trimmed from the end of the first chunk instead, or, for a one-chunk
    scene, dropped just after its start image.
    """
    if frames < 1:
        raise ValueError(f"a scene needs at least one frame, got {frames}")
    top = largest_valid(max_frames)
    head0 = 1 if chained else 0
    # Fewest chunks: the first keeps up to top - head0 frames, every later one top - 1.
    first_cap = top - head0
    n = 1 if frames <= first_cap else 1 + -(-(frames - first_cap) // (top - 1))
    heads = [head0] + [1] * (n - 1)
    needed = frames + sum(heads)  # generated frames the chunks need at least
    # The smallest total of n counts that are each 1 mod 8: congruent to n mod 8.
    total = max(needed + (n - needed) % 8, MIN_FRAMES * n)
    eighths = (total - n) // 8
    base, extra = divmod(eighths, n)
    generated = [8 * (base + (1 if i < extra else 0)) + 1 for i in range(n)]
    surplus = total - needed
    if end_anchored and n == 1:
        heads[0] += surplus
        surplus = 0
    trim_at = 0 if end_anchored else n - 1
    out = []
    for i, (g, h) in enumerate(zip(generated, heads)):
        t = surplus if i == trim_at else 0
        out.append(Split(generated=g, head=h, kept=g - h - t, tail=t))
    assert sum(s.kept for s in out) == frames and all(valid_count(s.generated) and s.generated <= top for s in out)
    return out
