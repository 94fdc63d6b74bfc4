"""The export's timeline: a plan and the chunks built -> clips (with the handles their dissolves read), gaps,
crossfades and markers (pure), then as OTIO."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Mapping

from ltxflow import crossfades
from ltxflow.timeline import Span, fps_str

if TYPE_CHECKING:
    from ltxflow.plan.planner import Chunk, Plan

PROMPT_CHARS = 400  # of a scene's prompt in its marker's comment


@dataclass(frozen=True)
class Item:
    """One thing on the video track, in order. A clip (a chunk's normalized clip, whole) or a gap
    (timeline frames nothing built covers) is `frames` long; a crossfade takes no time of its own:
    it blends the last `before` frames ahead of the seam with the first `after` frames past it.
    So a dissolve reads frames its clips do not keep: `head` before a clip's first (the crossfade
    into it: its `before`) and `tail` past its last (the crossfade out of it: its `after`), which
    the stitch holds as the clip's first and last frame (crossfades.Window.sources)."""

    kind: str  # "clip" | "gap" | "crossfade"
    frames: int = 0
    chunk: str | None = None  # the clip's chunk; a crossfade's: the chunk after the seam
    before: int = 0
    after: int = 0
    head: int = 0  # a clip's handles: frames held before its first, for the crossfade into it
    tail: int = 0  # and past its last, for the crossfade out of it


@dataclass(frozen=True)
class Mark:
    """A marker on the timeline: a scene over its frames, or a seam at its frame (an empty span)."""

    kind: str  # "scene" | "seam"
    name: str
    span: Span
    note: str


@dataclass(frozen=True)
class Layout:
    items: tuple[Item, ...]
    marks: tuple[Mark, ...]
    missing: tuple[str, ...]  # chunks not built, in plan order: gaps in the timeline

    @property
    def frames(self) -> int:
        return sum(i.frames for i in self.items)

    @property
    def crossfades(self) -> int:
        return sum(1 for i in self.items if i.kind == "crossfade")


def layout(plan: Plan, built: Collection[str]) -> Layout:
    """The timeline of `plan` with the chunks in `built`: each at its plan frames, the frames of
    the others as gaps, a crossfade on each crossfade seam whose two chunks are both built (the
    windows a stitch of them would blend: crossfades.plan_seams), a marker per scene and seam."""
    pieces = [(c.id, Span(c.start_frame, c.end_frame)) for c in plan.chunks if c.id in built]
    seams = crossfades.plan_seams(crossfades.selection_pieces(plan, pieces))
    windows = {pieces[w.index][0]: w for w in seams.windows}
    tails = {pieces[w.index - 1][0]: w.after for w in seams.windows}
    items: list[Item] = []
    cursor = 0
    for c in plan.chunks:
        if c.start_frame > cursor:  # frames no chunk keeps (none in a valid plan; kept exact anyway)
            _gap(items, c.start_frame - cursor)
        cursor = c.end_frame
        if c.id not in built:
            _gap(items, c.kept_frames)
            continue
        w = windows.get(c.id)
        if w is not None:
            items.append(Item("crossfade", chunk=c.id, before=w.before, after=w.after))
        items.append(Item("clip", c.kept_frames, c.id, head=w.before if w else 0, tail=tails.get(c.id, 0)))
    if plan.project.total_frames > cursor:
        _gap(items, plan.project.total_frames - cursor)
    marks = [Mark("scene", s.id, Span(s.start_frame, s.end_frame), _prompt(s.values.get("prompt")))
             for s in plan.project.scenes]
    # The plan's own crossfades, for seams whose two chunks are not both here (a partial build).
    whole = [(c.id, Span(c.start_frame, c.end_frame)) for c in plan.chunks]
    planned = {whole[w.index][0]: w for w in crossfades.plan_seams(crossfades.selection_pieces(plan, whole)).windows}
    for prev, c in zip(plan.chunks, plan.chunks[1:]):  # the name says how it joins: the EDL keeps just names
        w = windows.get(c.id)
        p = planned.get(c.id) if w is None else None
        how = f"crossfade {w.frames}" if w else f"crossfade {p.frames}, not built" if p else "cut"
        note = seam_note(prev, c, w or p) + ("; not in this export: a chunk beside it is not built" if p else "")
        marks.append(Mark("seam", f"{prev.id} | {c.id} ({how})", Span(c.start_frame, c.start_frame), note))
    return Layout(tuple(items), tuple(marks), tuple(c.id for c in plan.chunks if c.id not in built))


def _gap(items: list[Item], frames: int) -> None:
    if items and items[-1].kind == "gap":
        items[-1] = Item("gap", items[-1].frames + frames)
    else:
        items.append(Item("gap", frames))


def _prompt(value: object) -> str:
    text = " ".join(str(value or "").split())
    return text if len(text) <= PROMPT_CHARS else text[:PROMPT_CHARS - 3] + "..."


def seam_note(prev: Chunk, c: Chunk, window: crossfades.Window | None) -> str:
    """What a seam is, in words: how it joins, what the chunk after starts from, how it was placed."""
    how = (f"crossfade of {window.frames} frames ({window.before} before the seam, {window.after} after)"
           if window else "cut")
    if c.chains_from == prev.id:
        start = f"{c.id} continues from the last frame of {prev.id}"
    elif c.start_image.kind == "keyframe":
        start = f"{c.id} starts from its scene's keyframe"
    else:
        start = f"{c.id} starts anew"
    placed = {"scene": "a scene boundary", "even": "evenly split", "beat": "on a beat", "gap": "in a quiet gap"}
    return f"{how}; {start}; {placed.get(c.placed, c.placed)}"


COLORS = {"scene": "GREEN", "seam": "RED"}


def to_otio(otio: Any, plan: Plan, lay: Layout, clips: Mapping[str, Path], audio: Path | None, *,
            handles: bool, dissolves: bool = True, markers_on_clips: bool = False) -> Any:
    """`lay` as an OTIO Timeline at the project's fps: a video track of clips (pointing at `clips`,
    by chunk id), gaps and, unless not `dissolves`, a dissolve per crossfade; an audio track with
    the master track `audio` from frame 0; the markers on the timeline's stack, or with
    `markers_on_clips` on the clip each starts in (CMX 3600 writes clip markers as LOC comments
    and none else). With `handles` each clip's file holds its item's head and tail frames around
    its own: the media's available range is all of them and the clip's source range starts after
    the head, so a dissolve reads real frames on both sides of its seam; without, the media is
    the clip's frames alone. Either way each clip takes exactly its plan frames of the timeline."""
    rp = plan.project
    rate = float(rp.fps)

    def rt(frames: int) -> Any:
        return otio.opentime.RationalTime(frames, rate)

    def span(start: int, frames: int) -> Any:
        return otio.opentime.TimeRange(rt(start), rt(frames))

    timeline = otio.schema.Timeline(name=rp.name)
    timeline.metadata["ltxflow"] = {"project": str(rp.loaded.path.absolute()), "fps": fps_str(rp.fps),
                                    "frames": rp.total_frames, "missing": list(lay.missing)}
    video = otio.schema.Track(name="ltxflow chunks", kind=otio.schema.TrackKind.Video)
    placed: list[tuple[int, Any]] = []  # (first timeline frame, clip)
    cursor = 0
    for item in lay.items:
        if item.kind == "gap":
            video.append(otio.schema.Gap(source_range=span(0, item.frames)))
        elif item.kind == "crossfade":
            if dissolves:
                video.append(otio.schema.Transition(
                    name=f"crossfade into {item.chunk}", transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                    in_offset=rt(item.before), out_offset=rt(item.after)))
        else:
            assert item.chunk is not None
            c, path = plan.chunk(item.chunk), clips[item.chunk]
            head, tail = (item.head, item.tail) if handles else (0, 0)
            ref = otio.schema.ExternalReference(target_url=path.absolute().as_uri(),
                                                available_range=span(0, head + item.frames + tail))
            clip = otio.schema.Clip(name=c.id, media_reference=ref, source_range=span(head, item.frames),
                                    metadata={"ltxflow": _chunk_facts(c)})
            video.append(clip)
            placed.append((cursor, clip))
        cursor += item.frames
    timeline.tracks.append(video)
    if audio is not None:
        timeline.tracks.append(_audio_track(otio, plan, audio, span))
    for m in lay.marks:
        marker = otio.schema.Marker(name=m.name, color=COLORS[m.kind], comment=m.note,
                                    metadata={"ltxflow": {"kind": m.kind}})
        if not markers_on_clips:
            marker.marked_range = span(m.span.start, m.span.count)
            timeline.tracks.markers.append(marker)
            continue
        home = [(start, clip) for start, clip in placed
                if start <= m.span.start < start + clip.source_range.duration.to_frames()]
        if home:  # a marker over a gap has no clip to go on; on a clip it is in the clip's source time
            start, clip = home[0]
            marker.marked_range = span(round(clip.source_range.start_time.to_frames()) + m.span.start - start,
                                       min(m.span.count, clip.source_range.duration.to_frames()))
            clip.markers.append(marker)
    return timeline


def _audio_track(otio: Any, plan: Plan, audio: Path, span) -> Any:
    """The master track from the timeline's frame 0: the song's frames that the video spans (a
    song shorter than the video ends early; the stitch pads it with silence)."""
    rp = plan.project
    song_frames = int(Fraction(rp.audio.samples) * rp.fps / rp.audio.sample_rate)
    track = otio.schema.Track(name="master", kind=otio.schema.TrackKind.Audio)
    ref = otio.schema.ExternalReference(target_url=audio.absolute().as_uri(), available_range=span(0, song_frames))
    track.append(otio.schema.Clip(name=audio.name, media_reference=ref,
                                  source_range=span(0, min(rp.total_frames, song_frames))))
    return track


def _chunk_facts(c: Chunk) -> dict[str, Any]:
    """What a clip's metadata says of its chunk: where it sits in the plan and how it was made."""
    return {"chunk": c.id, "scene": c.scene, "start_frame": c.start_frame, "frames": c.kept_frames,
            "key": c.key, "seed": c.seed, "endpoint": c.endpoint.id, "chains_from": c.chains_from,
            "prompt": str(c.args.get(c.endpoint.vocab["prompt"], ""))}
