"""Plan phase (pure): resolved scenes -> chunks the model accepts -> a DAG with content keys and costs."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterable, Literal

from ltxflow.endpoints import Endpoint
from ltxflow.plan.chunks import Split, largest_valid, overheads, split_at, split_scene
from ltxflow.plan.seams import Candidate, candidates, event_frames, place_seams
from ltxflow.plan.keys import content_key, derive_seed
from ltxflow.project.media import Media
from ltxflow.project.resolve import ResolvedLora, ResolvedProject, ResolvedScene
from ltxflow.registry import BACKENDS
from ltxflow.timeline import frame_to_sample

if TYPE_CHECKING:
    import networkx as nx

MORE_CHUNKS = 3  # chunks beyond the fewest a scene may take to put its seams on the music
STITCH = "stitch"  # the DAG's final node; chunk ids always contain a dot, so it cannot collide


@dataclass(frozen=True)
class StartImage:
    """Where a chunk's first frame comes from.

    keyframe: the scene's `image` (media set); chain: frame `frame` (an index into the generated
    frames) of chunk `chunk`; none: text and audio only."""

    kind: Literal["keyframe", "chain", "none"]
    media: Media | None = None
    chunk: str | None = None
    frame: int | None = None


@dataclass(frozen=True)
class AudioSpan:
    """The part of the master track a chunk's generated frames cover (zero-padded past the end)."""

    start_frame: int
    frames: int
    start_sample: int
    samples: int
    sample_rate: int
    digest: str


@dataclass(frozen=True)
class Chunk:
    """One generation request. Timeline frames [start_frame, end_frame) are kept; the request
    generates `generated_frames`, of which the first `head` repeat the chain image and the last
    `tail` are trimmed."""

    id: str
    scene: str
    index: int
    start_frame: int
    end_frame: int
    generated_frames: int
    head: int
    tail: int
    start_image: StartImage
    end_image: Media | None
    chains_from: str | None
    endpoint: Endpoint
    seed: int
    args: dict[str, Any]  # the request body in the endpoint's own field names, media fields excepted
    audio: AudioSpan | None
    loras: tuple[ResolvedLora, ...]
    cost_usd: float
    hosted_cost_usd: float
    key: str
    key_inputs: dict[str, Any]  # what `key` hashes: compared between builds to say what changed
    placed: str = "scene"  # how the seam at start_frame was placed: scene | even | beat | gap

    @property
    def kept_frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def chain_frame(self) -> int:
        """Index (in generated frames) of the frame a following chunk chains from: the last kept one."""
        return self.head + self.kept_frames - 1


@dataclass(frozen=True)
class Plan:
    project: ResolvedProject
    chunks: tuple[Chunk, ...]

    @functools.cached_property
    def graph(self) -> nx.DiGraph:
        """The plan as a DAG (networkx, imported when first asked for: a report or a no-op build
        never needs it): an edge from each chunk to the one chaining from it, and from every
        chunk to STITCH; nodes carry their chunk."""
        import networkx as nx

        graph = nx.DiGraph()
        for c in self.chunks:
            graph.add_node(c.id, chunk=c)
            if c.chains_from:
                graph.add_edge(c.chains_from, c.id)
        graph.add_node(STITCH)
        for c in self.chunks:
            graph.add_edge(c.id, STITCH)
        return graph

    @functools.cached_property
    def parents(self) -> dict[str, str | None]:
        """The DAG's chunk edges as the executor takes them: each chunk's id -> the chunk it chains
        from (None: it starts from a keyframe or nothing), the same edges `graph` holds."""
        return {c.id: c.chains_from for c in self.chunks}

    @functools.cached_property
    def _by_id(self) -> dict[str, Chunk]:
        return {c.id: c for c in self.chunks}

    def chunk(self, chunk_id: str) -> Chunk:
        return self._by_id[chunk_id]

    @property
    def total_frames(self) -> int:
        return sum(c.kept_frames for c in self.chunks)

    @property
    def duration(self) -> Fraction:
        return Fraction(self.total_frames) / self.project.fps

    @property
    def cost_usd(self) -> float:
        return cost_once(self.chunks)

    @property
    def hosted_cost_usd(self) -> float:
        return cost_once(self.chunks, hosted=True)

    @property
    def longest_chain(self) -> int:
        """Chunks in the longest run that must render one after another."""
        import networkx as nx

        return len(nx.dag_longest_path(self.graph.subgraph(c.id for c in self.chunks)))


def cost_once(chunks: Iterable[Chunk], hosted: bool = False) -> float:
    """What `chunks` cost when each key is paid once: chunks that share a key (a repeated chorus
    with the same seed, on a backend whose keys leave out the chunk's place) are one request."""
    cost = {c.key: c.hosted_cost_usd if hosted else c.cost_usd for c in chunks}
    return round(sum(cost.values()), 6)


def chunk_seed(project_seed: int, scene: ResolvedScene, index: int) -> int:
    """A scene's own seed counts up per chunk; otherwise derived from the project seed and names."""
    if scene.seed is not None:
        return (scene.seed + index) % 2**32
    return derive_seed(project_seed, scene.id, index)


def request_args(rp: ResolvedProject, scene: ResolvedScene, frames: int, seed: int, last: bool,
                 has_start: bool) -> dict[str, Any]:
    """The request body (media fields excepted) in the endpoint's own vocabulary. Strengths of
    images the chunk does not have are left out, so they do not change its key."""
    ep = scene.endpoint
    f = ep.vocab
    args: dict[str, Any] = {
        f["prompt"]: scene.values["prompt"],
        f["seed"]: seed,
        f["frames"]: frames,
        f["fps"]: float(rp.fps),
        f["size"]: {"width": rp.gen_width, "height": rp.gen_height},
    }
    if "audio" in f:
        args["match_audio_length"] = False  # the chunk's exact audio span is sent instead
    if "video_quality" in ep.fields:  # the endpoint's encode: as good as the output asks for
        args["video_quality"] = rp.loaded.project.quality
    for term, value in scene.values.items():
        if term == "prompt" or (term == "end_image_strength" and not last) or (
                term == "image_strength" and not has_start):
            continue
        args[f[term]] = value
    args.update(scene.params)
    return args


def build_plan(rp: ResolvedProject) -> Plan:
    spec = BACKENDS[rp.backend]
    chunks: list[Chunk] = []
    prev: Chunk | None = None
    for k, scene in enumerate(rp.scenes):
        chained = scene.image is None and prev is not None
        tail_after = k + 1 < len(rp.scenes) and rp.scenes[k + 1].image is None
        splits, placed = split_on_music(rp, scene, chained, tail_after)
        cursor = scene.start_frame
        for i, sp in enumerate(splits):
            last = i == len(splits) - 1
            if i == 0 and scene.image is not None:
                start = StartImage("keyframe", media=scene.image)
            elif prev is not None and (i > 0 or chained):
                start = StartImage("chain", chunk=prev.id, frame=prev.chain_frame)
            else:
                start = StartImage("none")
            seed = chunk_seed(rp.seed, scene, i)
            ep = scene.endpoint
            args = request_args(rp, scene, sp.generated, seed, last, has_start=start.kind != "none")
            audio = _audio_span(rp, cursor - sp.head, sp.generated) if ep.supports("audio") else None
            end_image = scene.end_image if last else None
            hosted = ep.cost(rp.gen_width, rp.gen_height, sp.generated)
            key_inputs = {
                "backend": rp.backend,
                "endpoint": ep.id,
                "args": args,
                "start_image": _start_identity(start, prev),
                "end_image": end_image.identity() if end_image else None,
                "audio": audio.digest if audio else None,
                "loras": [{**lo.media.identity(), "scale": lo.scale, "transformer": lo.transformer}
                          for lo in scene.loras],
            }  # which frames are kept is not in the key: a new keep re-normalizes, never re-renders
            if spec.fp8 and rp.fp8:
                key_inputs["precision"] = "fp8"
            # A backend that draws the chunk's place in the video into its frames (ids, timecodes):
            # that place shapes its output, so it is in the key. A model's output does not depend on
            # it: two identical requests share one render.
            if spec.positional:
                key_inputs["burn_in"] = {"scene": scene.id, "chunk": f"{scene.id}.{i}",
                                         "timeline_frame": cursor - sp.head}
                if spec.drawing:
                    key_inputs["burn_in"]["drawing"] = spec.drawing
            chunk = Chunk(
                id=f"{scene.id}.{i}", scene=scene.id, index=i, start_frame=cursor, end_frame=cursor + sp.kept,
                generated_frames=sp.generated, head=sp.head, tail=sp.tail, start_image=start,
                end_image=end_image, chains_from=start.chunk, endpoint=ep, seed=seed, args=args, audio=audio,
                loras=scene.loras, cost_usd=hosted if spec.priced else 0.0,
                hosted_cost_usd=hosted, key=content_key(key_inputs), key_inputs=key_inputs,
                placed="scene" if i == 0 else placed[i - 1])
            chunks.append(chunk)
            cursor += sp.kept
            prev = chunk
    plan = Plan(rp, tuple(chunks))
    if plan.total_frames != rp.total_frames:  # an invariant of split_scene and scene tiling
        raise AssertionError(f"plan keeps {plan.total_frames} frames, the timeline has {rp.total_frames}")
    return plan


def split_on_music(rp: ResolvedProject, scene: ResolvedScene, chained: bool,
                   tail_after: bool) -> tuple[list[Split], list[str]]:
    """A scene's chunks, and how each inner seam was placed. The balanced split decides how many
    chunks; with `boundaries: beats | gaps` each inner seam then moves to the nearest beat (or quiet
    gap, else beat) within `window` of its balanced place, where the chunks around it still fit.
    When the fewest chunks are too full for every seam to move, up to MORE_CHUNKS chunks more are
    tried, and the fewest that place every seam are used (each costs a chunk's few frames of
    overhead); when none does, the split placing the most seams."""
    end_anchored = scene.end_image is not None
    even = split_scene(scene.frames, chained, rp.max_frames, end_anchored=end_anchored,
                       chain_offset=rp.chain_offset, tail_after=tail_after)
    if rp.boundaries == "even" or rp.music is None or len(even) == 1:
        return even, ["even"] * (len(even) - 1)
    tries = []
    for extra in range(MORE_CHUNKS + 1):
        balanced = even if extra == 0 else split_scene(
            scene.frames, chained, rp.max_frames, end_anchored=end_anchored, chain_offset=rp.chain_offset,
            tail_after=tail_after, extra_chunks=extra)
        placed = _placed(rp, scene, chained, tail_after, balanced)
        unplaced = sum(c.placed != rp.boundaries.rstrip("s") for c in placed)
        tries.append((unplaced, extra, placed))
        if not unplaced or len(balanced) == scene.frames:
            break
    chosen = min(tries, key=lambda t: (t[0], t[1]))[2]
    splits = split_at(scene.frames, [c.offset for c in chosen], chained, rp.max_frames, end_anchored=end_anchored,
                      chain_offset=rp.chain_offset, tail_after=tail_after)
    return splits, [c.placed for c in chosen]


def _placed(rp: ResolvedProject, scene: ResolvedScene, chained: bool, tail_after: bool,
            balanced: list[Split]) -> list[Candidate]:
    """The seams of a balanced split moved onto the music (see split_on_music)."""
    assert rp.music is not None
    ideals, at = [], 0
    for sp in balanced[:-1]:
        at += sp.kept
        ideals.append(at)
    order = ("beats",) if rp.boundaries == "beats" else ("gaps", "beats")
    events = {kind: event_frames(rp.music, kind, rp.fps, scene.start_frame, scene.end_frame) for kind in order}
    window = math.floor(rp.window * rp.fps)
    top = largest_valid(rp.max_frames)
    over = overheads(len(balanced), chained, rp.chain_offset, tail_after and scene.end_image is None)

    def fits(i: int, kept: int) -> bool:
        return kept >= 1 and over[i][0] + kept + over[i][1] <= top

    return place_seams(ideals, scene.frames, fits, [
        candidates(ideal, window, events, scene.start_frame, order) for ideal in ideals])


def _start_identity(start: StartImage, prev: Chunk | None) -> Any:
    if start.kind == "keyframe":
        assert start.media is not None
        return {"keyframe": start.media.identity()}
    if start.kind == "chain":
        assert prev is not None and prev.id == start.chunk
        return {"chain": prev.key, "frame": start.frame}
    return None


def _audio_span(rp: ResolvedProject, start_frame: int, frames: int) -> AudioSpan:
    sr = rp.audio.sample_rate
    first = frame_to_sample(start_frame, rp.fps, sr)
    count = frame_to_sample(start_frame + frames, rp.fps, sr) - first
    return AudioSpan(start_frame, frames, first, count, sr, rp.audio.span_digest(first, count))
