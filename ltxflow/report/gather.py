"""What the build report shows, gathered from a plan and the cache: chunks, thumbnails, seam scores, music."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ltxflow.media.probe import MediaError
from ltxflow.timeline import frame_to_sample, frame_to_seconds

if TYPE_CHECKING:
    from ltxflow.execute.cache import Cache, Entry
    from ltxflow.execute.record import Record
    from ltxflow.report.ends import Ends, EndsStore
    from ltxflow.media.encode import Format
    from ltxflow.plan.planner import Chunk, Plan

SEAM_FRAMES = 9  # frames read at each end of a clip: 8 consecutive differences on each side of a seam
# 8-bit levels: a typical step below this counts as this. Still pictures step by ~0, and a whole
# picture changing by under 2 levels on average between two frames is not seen.
SCORE_FLOOR = 2.0
ENVELOPE_POINTS = 2400


@dataclass(frozen=True)
class ChunkRow:
    """One chunk as the report shows it. `state`: rendered (its cache entry is current), stale (the
    cache holds a render the next build replaces), or missing (not in the cache)."""

    chunk: Chunk
    prompt: str
    state: str
    notes: tuple[str, ...]
    record: Record | None  # the cache entry's record (None when missing)
    first_jpeg: bytes | None = None  # thumbnails of the first and last kept frame
    last_jpeg: bytes | None = None

    @property
    def seed(self) -> int:
        """The seed the backend reports it used, else the planned one."""
        seed = self.record.seed if self.record else None
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else self.chunk.seed

    @property
    def cost_usd(self) -> float:
        """What the render cost, or for a chunk not rendered, what the plan expects it to."""
        if self.record is None:
            return self.chunk.cost_usd
        return float(self.record.cost_usd)

    @property
    def timings(self) -> dict[str, float]:
        """render_s and normalize_s, where the record has them."""
        t = self.record.timings if self.record else {}
        return {k: float(v) for k, v in t.items() if isinstance(v, (int, float))}


@dataclass(frozen=True)
class Seam:
    """A chunk boundary at timeline frame `frame`. `across`: the difference between the frames on
    either side; `typical`: the median step between consecutive frames next to it, inside the two
    clips. None when a side is not rendered. `chained`: the chunk after starts from the chunk
    before (continuity is expected); otherwise it starts from a keyframe (a cut is intended)."""

    frame: int
    before: str
    after: str
    chained: bool
    across: float | None
    typical: float | None
    music: str | None  # where it lands on the music, when the project has an analysis

    @property
    def score(self) -> float | None:
        """How many typical steps the jump across the seam is: about 1 is seamless."""
        if self.across is None or self.typical is None:
            return None
        return self.across / max(self.typical, SCORE_FLOOR)


@dataclass(frozen=True)
class Report:
    plan: Plan
    rows: tuple[ChunkRow, ...]
    seams: tuple[Seam, ...]
    envelope: tuple[float, ...]  # peak levels 0..1 over the video's span of the master track
    video: Path | None  # the output the report describes
    video_date: datetime | None  # when it was written; None when it does not exist
    generated: datetime
    clips_read: int = 0  # clips whose ends were decoded for this report (the others came from the ends store)
    clips_kept: int = 0  # clips whose ends the store held

    @property
    def weakest(self) -> tuple[Seam, ...]:
        """Chained seams with scores, worst first (cuts to a keyframe are meant to jump)."""
        scored = [s for s in self.seams if s.chained and s.score is not None]
        return tuple(sorted(scored, key=lambda s: (-(s.score or 0.0), s.frame)))

    @property
    def worst(self) -> Seam | None:
        return self.weakest[0] if self.weakest else None

    @property
    def spent_usd(self) -> float:
        return round(sum(r.cost_usd for r in self.rows if r.record is not None), 6)

    @property
    def to_spend_usd(self) -> float:
        return round(sum(r.chunk.cost_usd for r in self.rows if r.state != "rendered"), 6)


def gather(plan: Plan, cache: Cache, fmt: Format, video: Path | None,
           clips: Mapping[str, Path] | None = None) -> Report:
    """The report of a plan from what its cache holds. `clips` names the normalized clip of a chunk
    (a build passes the ones it stitched); otherwise the clip variant `fmt` names is used, or
    another variant keeping the same frames. Reads the first and last SEAM_FRAMES frames of each
    clip the cache's ends store (report/ends/, by the clip's sha256) does not hold yet, and the
    master track's decoded PCM when its envelope is not kept (report/levels/, by the song's digest)."""
    from ltxflow.execute.chunkwork import variant_name, variant_namer
    from ltxflow.execute.status import chunk_statuses, load_index
    from ltxflow.report.ends import EndsStore

    rp = plan.project
    namer = variant_namer(plan, fmt)
    names: dict[str, str] = {}  # the variant a build would use, colour tag and key frames included

    def variant(c: Chunk, tag: str | None) -> str:
        names[c.id] = namer(c, tag)
        return names[c.id]

    statuses = chunk_statuses(plan, cache, load_index(cache, rp.loaded.path), variant, check_clips=False)
    store = EndsStore(cache.root / "report" / "ends")
    rows: list[ChunkRow] = []
    seams: list[Seam] = []
    read = kept = 0
    prev: tuple[Chunk, Ends | None] | None = None  # seams are scored as chunks are read
    for c in plan.chunks:
        status = statuses[c.id]
        entry, problem = cache.lookup(c.key)
        clip = None
        if entry is not None:
            clip = (clips or {}).get(c.id) or clip_of(entry, c, names.get(c.id) or variant_name(c, fmt))
        row, ends = _row(c, entry, problem, status.status == "cached", status.reasons, clip, store)
        if ends is not None:
            read, kept = read + ends.read, kept + (not ends.read)
        rows.append(row)
        if prev is not None:
            seams.append(_seam(plan, prev[0], prev[1], c, ends))
        prev = (c, ends)
    return Report(plan, tuple(rows), tuple(seams), tuple(_envelope(plan, cache.root / "report" / "levels")), video,
                  _mtime(video), datetime.now().astimezone(), clips_read=read, clips_kept=kept)


def _row(c: Chunk, entry: Entry | None, problem: str | None, current: bool, reasons: tuple[str, ...],
         clip: Path | None, store: EndsStore) -> tuple[ChunkRow, Ends | None]:
    """A chunk's row, and its end frames for scoring the seams beside it (None without a clip)."""
    prompt = str(c.args.get(c.endpoint.vocab["prompt"], ""))
    if entry is None:
        notes = [f"not rendered: {'; '.join(reasons) or 'not in the cache'}"]
        if problem:
            notes.append(f"its cache entry is unusable ({problem})")
        return ChunkRow(c, prompt, "missing", tuple(notes), None), None
    state = "rendered" if current else "stale"
    notes = [] if current else [f"the next build renders it again: {'; '.join(reasons)}"]
    if clip is None:
        notes.append("no normalized clip in the cache yet (the next build makes it from the raw clip)")
        return ChunkRow(c, prompt, state, tuple(notes), entry.record), None
    # The digest recorded when the clip was written names its ends in the store.
    recorded = entry.record.variants.get(clip.name[len("clip."):]) if clip.parent == entry.dir else None
    try:
        e = store.ends(clip, recorded if isinstance(recorded, str) else None, SEAM_FRAMES, c.kept_frames)
    except (MediaError, OSError) as exc:
        notes.append(f"its clip cannot be read ({exc})")
        return ChunkRow(c, prompt, state, tuple(notes), entry.record), None
    return ChunkRow(c, prompt, state, tuple(notes), entry.record, e.first_jpeg, e.last_jpeg), e


def _seam(plan: Plan, before: Chunk, a: Ends | None, after: Chunk, b: Ends | None) -> Seam:
    """The seam between two neighbouring chunks: the jump across it against the steps beside it."""
    from ltxflow.media.thumbs import lasting_jump

    across = typical = None
    if a is not None and b is not None and a.last.shape == b.first.shape:
        near = a.tail_steps + b.head_steps
        typical = statistics.median(near) if near else 0.0
        across = lasting_jump(a.tail, b.head)
    return Seam(after.start_frame, before.id, after.id, after.chains_from == before.id, across, typical,
                describe_music(plan, after.start_frame))


def clip_of(entry: Entry, chunk: Chunk, variant: str) -> Path | None:
    """The entry's clip in the wanted variant, else any variant keeping the chunk's frames."""
    if entry.clip(variant).is_file():
        return entry.clip(variant)
    prefix = f"{chunk.head}-{chunk.kept_frames}-"
    for name in sorted(entry.record.variants):
        if name.startswith(prefix) and entry.clip(name).is_file():
            return entry.clip(name)
    return None


def describe_music(plan: Plan, frame: int) -> str | None:
    """Where a timeline frame lands on the music: the nearest beat and bar, and a quiet gap."""
    grid = plan.project.music
    if grid is None:
        return None
    from ltxflow.music.grid import describe_text

    return describe_text(grid.describe(float(frame_to_seconds(frame, plan.project.fps))))


def _envelope(plan: Plan, store: Path) -> list[float]:
    """The master track's peak envelope over the video, kept in `store` by what shapes it: the
    song's digest and decoded form, the span and the number of points. A kept envelope is read
    as untrusted (a regular file, no pickles, ENVELOPE_POINTS finite levels in 0..1, or none);
    any other file is made again."""
    import io

    import numpy as np

    from ltxflow.files import read_plain

    from ltxflow.media.waveform import peak_envelope
    from ltxflow.plan.keys import content_key

    rp = plan.project
    end = frame_to_sample(rp.total_frames, rp.fps, rp.audio.sample_rate)
    path = store / f"{content_key({'audio': rp.audio.facts(), 'end': end, 'points': ENVELOPE_POINTS})[:32]}.npy"
    try:
        kept = np.load(io.BytesIO(read_plain(path, 1 << 20)), allow_pickle=False)
        if (kept.dtype == np.float64 and kept.shape in ((ENVELOPE_POINTS,), (0,)) and np.isfinite(kept).all()
                and ((kept >= 0) & (kept <= 1)).all()):
            return kept.tolist()
    except (OSError, ValueError, EOFError):
        pass
    try:
        levels = peak_envelope(rp.audio, 0, end, ENVELOPE_POINTS)
    except (OSError, ValueError):
        return []  # the decoded track is gone: the strip is drawn without it
    try:
        store.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.save(f, np.array(levels, dtype=np.float64))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass  # not kept: the next report reads the track again
    return levels


def _mtime(path: Path | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime).astimezone() if path else None
    except OSError:
        return None
