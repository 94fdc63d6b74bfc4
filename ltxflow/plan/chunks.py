"""Splitting a scene's frames into chunks LTX-2.3 accepts: 8k+1 generated frames, balanced, totals exact."""

from __future__ import annotations

from dataclasses import dataclass

from ltxflow.timeline import MIN_FRAMES, largest_valid, valid_count  # noqa: F401 (the rule, kept in core)


@dataclass(frozen=True)
class Split:
    """One chunk of a scene. The chunk generates `generated` frames; it drops `head` of them
    (1 when its first frame repeats the chain image; more in a one-chunk scene that ends on an
    end image), keeps `kept`, and trims `tail` at the end: head + kept + tail == generated."""

    generated: int
    head: int
    kept: int
    tail: int


def overheads(n: int, chained: bool, chain_offset: int, tail_after: bool) -> list[tuple[int, int]]:
    """(head, tail) frames each of n chunks generates beyond the frames it keeps: a head of 1 when
    it starts from the chain image; a tail of `chain_offset` when a following chunk chains from
    it (every chunk but the scene's last, which only when `tail_after`)."""
    return [(1 if (i > 0 or chained) else 0, chain_offset if (i < n - 1 or tail_after) else 0) for i in range(n)]


def fewest_chunks(frames: int, chained: bool, top: int, chain_offset: int, tail_after: bool) -> int:
    """The fewest chunks of at most `top` generated frames that keep `frames` frames."""
    if top - 1 - chain_offset < 1:
        raise ValueError(f"chain_offset {chain_offset} leaves no frame to keep in a chunk of {top} frames")
    n = 1
    while sum(top - h - t for h, t in overheads(n, chained, chain_offset, tail_after)) < frames:
        n += 1
    return n


def split_scene(frames: int, chained: bool, max_frames: int = 481, end_anchored: bool = False,
                chain_offset: int = 0, tail_after: bool = False, extra_chunks: int = 0) -> list[Split]:
    """Split a scene of `frames` kept frames into as few balanced chunks as the model allows.

    `chained`: the scene's first chunk starts from the previous chunk's chain frame (it generates
    one frame more than it keeps). Later chunks in the scene are always chained. A chunk that a
    later one chains from also generates `chain_offset` frames after its chain frame, which are
    dropped (the scene's last chunk only when `tail_after`: the next scene chains from it). The
    surplus of rounding up to 8k+1 (at most 7 frames, beyond the 9-frame minimum) is trimmed from
    one chunk: the end of the last one. When `end_anchored` (the scene ends on an end image, which
    must stay its last frame) it is trimmed from the end of the first chunk instead, or, for a
    one-chunk scene, dropped just after its start image. `extra_chunks` splits into that many
    more chunks than the fewest (shorter chunks leave seams room to move onto the music).
    """
    if frames < 1:
        raise ValueError(f"a scene needs at least one frame, got {frames}")
    top = largest_valid(max_frames)
    tail_after = tail_after and not end_anchored
    n = min(frames, fewest_chunks(frames, chained, top, chain_offset, tail_after) + extra_chunks)
    over = overheads(n, chained, chain_offset, tail_after)
    heads = [h for h, _ in over]
    tails = [t for _, t in over]
    needed = frames + sum(heads) + sum(tails)  # generated frames the chunks need at least
    # The smallest total of n counts that are each 1 mod 8: congruent to n mod 8.
    total = max(needed + (n - needed) % 8, MIN_FRAMES * n)
    eighths = (total - n) // 8
    base, extra = divmod(eighths, n)
    generated = [8 * (base + (1 if i < extra else 0)) + 1 for i in range(n)]
    surplus = total - needed
    if end_anchored and n == 1:
        heads[0] += surplus
        surplus = 0
    # The surplus goes to one chunk; only with tiny chunks (9-frame minimums) may it exceed what
    # that chunk keeps, and the rest then goes to its neighbours.
    for i in (range(n) if end_anchored else range(n - 1, -1, -1)):
        take = min(surplus, generated[i] - heads[i] - tails[i] - 1)
        tails[i] += take
        surplus -= take
    out = [Split(generated=g, head=h, kept=g - h - t, tail=t) for g, h, t in zip(generated, heads, tails)]
    assert sum(s.kept for s in out) == frames and all(
        valid_count(s.generated) and s.generated <= top and s.kept >= 1 for s in out), out
    return out


def round_up(count: int) -> int:
    """The smallest valid 8k+1 frame count not below `count`."""
    return max(MIN_FRAMES, count + (1 - count) % 8)


def split_at(frames: int, cuts: list[int], chained: bool, max_frames: int = 481, end_anchored: bool = False,
             chain_offset: int = 0, tail_after: bool = False) -> list[Split]:
    """Split a scene at the given seams (`cuts`: kept-frame offsets inside the scene, increasing).
    Each chunk generates the smallest 8k+1 count that covers its head, kept frames and tail, and
    trims its own rounding surplus at its end; the end-anchored scene's last chunk drops it just
    after its start image, so the end image stays the last frame. Raises ValueError when a
    chunk would exceed max_frames or keep nothing."""
    top = largest_valid(max_frames)
    tail_after = tail_after and not end_anchored
    bounds = [0, *cuts, frames]
    n = len(bounds) - 1
    out = []
    for i, ((head, tail), a, b) in enumerate(zip(overheads(n, chained, chain_offset, tail_after), bounds, bounds[1:])):
        kept = b - a
        g = round_up(head + kept + tail)
        if kept < 1 or g > top:
            raise ValueError(f"chunk {i} of the scene would keep {kept} frames and generate {g} (at most {top})")
        if end_anchored and i == n - 1:
            head += g - head - kept - tail
        else:
            tail += g - head - kept - tail
        out.append(Split(generated=g, head=head, kept=kept, tail=tail))
    return out
