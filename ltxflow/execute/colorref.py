"""Which image a chunk's colours are matched to, and the short tag that names that choice in the cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ltxflow.errors import LtxflowError
from ltxflow.plan.keys import content_key
from ltxflow.plan.planner import Chunk
from ltxflow.project.resolve import ResolvedScene

# Bump when the correction itself changes (media/colormatch.py), so clips matched the old way are
# made again from their raw clips instead of being reused.
COLOR_SCHEMA = 1


class ColorReferenceError(LtxflowError):
    """A colour reference image cannot be read (the chunk fails; its raw clip stays cached)."""

    exit_code = 2


@dataclass(frozen=True)
class ColorRef:
    """A chunk's colour reference: `start` (and `end`, reached at its last kept frame) as files,
    named by `tag`: a digest of their contents' identities, the matching schema and the chunk's
    planned frames, so a clip or chain frame matched to one reference is never taken for another."""

    tag: str
    start: Path
    end: Path | None
    label: str


def color_ref(chunk: Chunk, scene: ResolvedScene, chain: tuple[Path, str] | None) -> ColorRef | None:
    """The reference of `chunk` (None: its colours are left as generated).

    The scene's keyframe, when it is a local file, for every chunk of the scene; otherwise, for a
    chunk that chains, the chain image it starts from: `chain` is (that PNG, its digest). An end
    image the chunk ends on must be a local file too: the reference moves toward it. Reads no file:
    identities are the digests resolve and the cache recorded."""
    if not scene.color_match:
        return None
    if scene.image is not None and scene.image.ref.path is not None and scene.image.digest:
        start, start_id, label = scene.image.ref.path, {"keyframe": scene.image.digest}, \
            f"keyframe {scene.image.ref.path.name}"
    elif chunk.start_image.kind == "chain" and chain is not None:
        start, start_id, label = chain[0], {"chain": chain[1]}, f"chain frame of {chunk.chains_from}"
    else:
        return None
    end = end_id = None
    if chunk.end_image is not None:
        if chunk.end_image.ref.path is None or not chunk.end_image.digest:
            return None  # a URL: its colours are not known here, and a match toward `start` alone would fight it
        end, end_id = chunk.end_image.ref.path, chunk.end_image.digest
        label += f" to end image {end.name}"
    tag = content_key({"color": COLOR_SCHEMA, "start": start_id, "end": end_id,
                       "span": [chunk.head, chunk.kept_frames]})
    return ColorRef(f"cm{tag[:10]}", start, end, label)


def color_target(ref: ColorRef, chunk: Chunk, width: int, height: int):
    """The ColorTarget for normalize_clip: the reference images read and conformed to the clip size,
    the trend taken over the chunk's planned kept frames. Raises ColorReferenceError."""
    from ltxflow.media.colormatch import ColorTarget
    from ltxflow.media.normalize import reference_image
    from ltxflow.media.probe import MediaError

    try:
        start = reference_image(ref.start, width, height)
        end = reference_image(ref.end, width, height) if ref.end is not None else None
    except (MediaError, OSError) as exc:
        raise ColorReferenceError(f"{chunk.id}: colour reference ({ref.label}): {exc}") from None
    return ColorTarget(start, end, span=(chunk.head, chunk.kept_frames), label=ref.label)
