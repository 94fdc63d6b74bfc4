"""Whether and how a chunk's colours are corrected, and the short tag that names that choice in the cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ltxflow.errors import ColorReferenceError
from ltxflow.plan.keys import content_key
from ltxflow.plan.planner import Chunk
from ltxflow.project.resolve import ResolvedScene
from ltxflow.timeline import Span

# Bump when the correction itself changes (media/colormatch.py), so clips matched the old way are
# made again from their raw clips instead of being reused. 2: drift taken out relative to the
# clip's own start at a strength, overlays and bars left out of the statistics.
COLOR_SCHEMA = 2


@dataclass(frozen=True)
class ColorRef:
    """How a chunk's colours are corrected: `strength` (0..1) of the drift from where the clip
    started (`label` names the image it starts from), toward `end` (an image it ends on, reached at
    its last kept frame) when there is one. Named by `tag`: a digest of the images' identities, the
    strength, the matching schema and the chunk's planned frames, so a clip or chain frame
    corrected one way is never taken for another."""

    tag: str
    end: Path | None
    label: str
    strength: float


def color_ref(chunk: Chunk, scene: ResolvedScene, chain: tuple[Path, str] | None) -> ColorRef | None:
    """The colour correction of `chunk` (None: its colours are left as generated).

    A chunk is corrected when `color_match` is on (a strength above 0) and it starts from an
    image known here: the scene's keyframe (a local file), or, for a chunk that chains, the chain
    image it starts from: `chain` is (that PNG, its digest). An end image the chunk ends on must be
    a local file too: the expected path moves toward it. Reads no file: identities are the
    digests resolve and the cache recorded."""
    strength = float(scene.color_match)
    if strength <= 0:
        return None
    if chunk.start_image.kind == "chain" and chain is not None:
        start_id, label = {"chain": chain[1]}, f"chain frame of {chunk.chains_from}"
    elif chunk.start_image.kind == "keyframe" and scene.image is not None and scene.image.ref.path is not None \
            and scene.image.digest:
        start_id, label = {"keyframe": scene.image.digest}, f"keyframe {scene.image.ref.path.name}"
    else:
        return None
    end = end_id = None
    if chunk.end_image is not None:
        if chunk.end_image.ref.path is None or not chunk.end_image.digest:
            return None  # a URL: its colours are not known here, and holding the start would fight it
        end, end_id = chunk.end_image.ref.path, chunk.end_image.digest
        label += f" to end image {end.name}"
    tag = content_key({"color": COLOR_SCHEMA, "start": start_id, "end": end_id, "strength": strength,
                       "span": [chunk.head, chunk.kept_frames]})
    return ColorRef(f"cm{tag[:10]}", end, label, strength)


def color_target(ref: ColorRef, chunk: Chunk, width: int, height: int):
    """The ColorTarget for normalize_clip: the end image (when there is one) read and conformed to
    the clip size, the statistics taken up to the end of the chunk's planned kept frames. Raises
    ColorReferenceError."""
    from ltxflow.media.colormatch import ColorTarget
    from ltxflow.media.normalize import reference_image
    from ltxflow.media.probe import MediaError

    try:
        end = reference_image(ref.end, width, height) if ref.end is not None else None
    except (MediaError, OSError) as exc:
        raise ColorReferenceError(f"{chunk.id}: colour reference ({ref.label}): {exc}") from None
    return ColorTarget(ref.strength, end, span=Span.of(chunk.head, chunk.kept_frames), label=ref.label)
