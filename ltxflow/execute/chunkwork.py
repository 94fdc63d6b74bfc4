"""One chunk's work in a build: reuse its cache entry, or render it, normalize it and commit it."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import uuid
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from ltxflow import __version__
from ltxflow.backends.base import Backend, ChunkRequest, HostedOptions, LoraFile, RenderResult
from ltxflow.errors import Stopped
from ltxflow.execute.cache import Cache, Entry
from ltxflow.execute.record import Record, file_stat, frame_key, frame_name
from ltxflow.execute.colorref import ColorRef, color_ref, color_target
from ltxflow.media.encode import Format, output_format
from ltxflow.media.normalize import ClipFrames, DrawnFrames, FrameSource, NormalizeReport, normalize_clip
from ltxflow.media.probe import MediaError, file_digest
from ltxflow.plan.planner import Chunk, Plan
from ltxflow.project.resolve import ResolvedProject
from ltxflow.registry import BACKENDS
from ltxflow.timeline import Span

T = TypeVar("T")


@dataclass(frozen=True)
class ChunkResult:
    """A chunk ready for stitching: its normalized clip and the digest of its chain frame."""

    chunk: str
    state: str  # "cached" | "rendered"
    entry: Entry
    clip: Path
    chain_digest: str  # digest of its last kept frame, which a following chunk starts from
    chain_png: Path  # that frame
    cost_usd: float = 0.0
    render_s: float = 0.0
    normalize_s: float = 0.0  # the colour matching in it included
    color_s: float = 0.0  # of normalize_s, matching colour (see NormalizeReport.color_s)
    color: ColorRef | None = None  # what its clip and chain frame are colour-matched to (None: not)
    raw: FrameSource | None = field(default=None, compare=False)  # its raw frames, for parts of it

    @property
    def tag(self) -> str | None:
        return self.color.tag if self.color else None


def variant_name(chunk: Chunk, fmt: Format, head: int | None = None, kept: int | None = None,
                 tag: str | None = None, keyframes: tuple[int, ...] = ()) -> str:
    """Names a normalized clip: which raw frames it keeps, in which format, matched to which
    colour reference (`tag`, see execute/colorref.py; None: colours as generated), with which
    forced key frames (where a crossfade stitch cuts it; "-k4.21")."""
    head = chunk.head if head is None else head
    kept = chunk.kept_frames if kept is None else kept
    keys = f"-k{'.'.join(map(str, keyframes))}" if keyframes else ""
    return f"{head}-{kept}-{fmt.tag}{f'-{tag}' if tag else ''}{keys}.{fmt.clip_ext}"


def variant_namer(plan: Plan, fmt: Format) -> Callable[[Chunk, str | None], str]:
    """How a build of `plan` names each chunk's clip variant, given its colour tag: with the key
    frames its crossfade seams cut it at (for plan statuses and the report)."""
    from ltxflow.crossfades import chunk_keyframes

    keyframes = chunk_keyframes(plan, fmt)
    return lambda c, tag: variant_name(c, fmt, tag=tag, keyframes=keyframes[c.id])


def clip_format(rp: ResolvedProject, container: str | None = None) -> Format:
    """How a build of `rp` encodes its normalized clips and output (`container`: the output's
    extension, default the project's output's): the project's quality, or a draft for a backend
    whose clips are drafts (registry: clip_quality), scaled to the output's size when generated at
    another."""
    container = container or rp.output.suffix.lstrip(".").lower()
    quality = BACKENDS[rp.backend].clip_quality or rp.loaded.project.quality
    return output_format(container, quality, rp.clip_scale)


class ChunkWork:
    """Callable per chunk id inside the executor. Thread-safe: each chunk writes only its own
    work folder and entry; the backend's concurrency limit is a semaphore. `keyframes`: the key
    frames each chunk's clip is normalized with (seams.chunk_keyframes; none when absent)."""

    def __init__(self, plan: Plan, cache: Cache, backend: Backend, fmt: Format, *,
                 retries: int = 3, backoff_s: float = 1.0, stop: threading.Event | None = None,
                 emit: Callable[..., None] = lambda *a, **k: None,
                 keyframes: Mapping[str, tuple[int, ...]] | None = None):
        self.plan, self.cache, self.backend, self.fmt = plan, cache, backend, fmt
        self.keyframes = dict(keyframes or {})
        self.retries, self.backoff_s = retries, backoff_s
        self.stop = stop or threading.Event()
        self.emit = emit
        self.slots = threading.Semaphore(max(1, backend.max_concurrency))
        # One chunk of a key at a time (a repeated chorus: same inputs, same key): the second finds
        # the first's entry in the cache instead of rendering (and, hosted, paying) again.
        self._keys: dict[str, threading.Lock] = {}
        self._keys_guard = threading.Lock()
        self.rp = plan.project
        self.values = {s.id: s.values for s in self.rp.scenes}
        self.scenes = {s.id: s for s in self.rp.scenes}

    # -- reuse ---------------------------------------------------------------------------------

    def __call__(self, chunk_id: str, done: dict[str, Any]) -> ChunkResult:
        if self.stop.is_set():  # started as the build stopped: nothing to begin
            raise Stopped(f"{chunk_id}: stopped")
        chunk = self.plan.chunk(chunk_id)
        source = done[chunk.chains_from].value if chunk.chains_from else None
        want = source.chain_digest if source else None
        color = color_ref(chunk, self.scenes[chunk.scene], (source.chain_png, want) if source else None)
        lock = self._key_lock(chunk.key)
        while not lock.acquire(timeout=0.25):  # another chunk of this key is being made
            if self.stop.is_set():
                raise Stopped(f"{chunk_id}: stopped")
        try:
            return self._reuse_or_render(chunk, source, want, color)
        finally:
            lock.release()

    def _key_lock(self, key: str) -> threading.Lock:
        with self._keys_guard:
            return self._keys.setdefault(key, threading.Lock())

    def _reuse_or_render(self, chunk: Chunk, source: ChunkResult | None, want: str | None,
                         color: ColorRef | None) -> ChunkResult:
        entry, problem = self.cache.lookup(chunk.key)
        damaged = None
        if entry is not None and entry.record.chain_digest == want:
            try:
                result = self._reuse(chunk, entry, color, self._raw_frames(chunk, entry, source))
                self.emit("chunk_cached", chunk=chunk.id)
                return result
            except MediaError as exc:
                problem, damaged = f"its raw clip is corrupt ({exc})", entry
        if problem:
            self.emit("warning", chunk=chunk.id, message=f"{chunk.id}: cache entry is unusable ({problem}); "
                                                         "rendering it again")
        return self._render(chunk, source, color, damaged)

    def _reuse(self, chunk: Chunk, entry: Entry, color: ColorRef | None, raw: FrameSource,
               state: str = "cached") -> ChunkResult:
        """The chunk from its entry, its clip variant and chain frame checked against their recorded
        digests and made again from the raw frames when missing or damaged (a change of colour
        reference or of crossfade key frames only makes another variant). Raises MediaError when
        the raw clip itself cannot be decoded, ColorReferenceError when a colour reference image
        cannot be read."""
        tag = color.tag if color else None
        keys = self.keyframes.get(chunk.id, ())
        variant = self._variant(chunk, color)
        t0 = time.monotonic()
        problem = self.cache.clip_problem(entry, variant, chunk.kept_frames, self.rp.width, self.rp.height)
        frame_problem = self.cache.frame_problem(entry, chunk.chain_frame, tag)
        if problem or frame_problem:
            for what, why in (("clip", problem), ("chain frame", frame_problem)):
                if why and why != "missing":
                    self.emit("warning", chunk=chunk.id, message=f"{chunk.id}: cached {what} is damaged ({why}); "
                                                                 "making it again from the raw clip")
            entry = self._derive(entry, raw, chunk, chunk.head, chunk.kept_frames, color, chain=True, keyframes=keys)
        return ChunkResult(chunk.id, state, entry, entry.clip(variant),
                           entry.frame_digest(chunk.chain_frame, tag) or "", entry.frame(chunk.chain_frame, tag),
                           normalize_s=time.monotonic() - t0, color=color, raw=raw)

    def _raw_frames(self, chunk: Chunk, entry: Entry, source: ChunkResult | None) -> FrameSource:
        """Where the entry's raw frames come from: its raw clip, or the backend drawing them again
        (same inputs as the entry's key, so the same frames). Raises MediaError when neither can."""
        if entry.raw is not None:
            return ClipFrames(entry.raw)
        if not self.backend.draws:
            raise MediaError(f"it keeps no raw clip (drawn by {entry.record.backend}), "
                             f"and {self.backend.name} does not draw")
        return DrawnFrames(chunk.id, lambda: self.backend.draw(self._request(chunk, source)), chunk.generated_frames)

    def _variant(self, chunk: Chunk, color: ColorRef | None) -> str:
        """The name of the chunk's whole clip in this build: its colour tag and crossfade key frames."""
        return variant_name(chunk, self.fmt, tag=color.tag if color else None,
                            keyframes=self.keyframes.get(chunk.id, ()))

    def part(self, result: ChunkResult, head: int, kept: int,
             keyframes: tuple[int, ...] = ()) -> tuple[Path, str]:
        """A clip of `kept` raw frames from `head` of a chunk this build has (for --range, --only),
        colour matched as its whole clip is, with at least `keyframes` forced, made once; returns
        it with its digest."""
        chunk, entry = self.plan.chunk(result.chunk), result.entry
        standard = self.keyframes.get(chunk.id, ())
        if (head, kept) == (chunk.head, chunk.kept_frames) and set(keyframes) <= set(standard):
            keyframes = standard  # the whole build's clip serves: it can be cut at these and more
        variant = variant_name(chunk, self.fmt, head, kept, tag=result.tag, keyframes=keyframes)
        if self.cache.clip_problem(entry, variant, kept, self.rp.width, self.rp.height) is not None:
            assert result.raw is not None
            entry = self._derive(entry, result.raw, chunk, head, kept, result.color, chain=False, keyframes=keyframes)
        return entry.clip(variant), entry.record.variants[variant]

    def _derive(self, entry: Entry, raw: FrameSource, chunk: Chunk, head: int, kept: int, color: ColorRef | None,
                *, chain: bool, keyframes: tuple[int, ...] = ()) -> Entry:
        """Normalize a clip variant (and the chain frame after it) from the entry's raw frames into
        the entry, recording their digests (and what colour matching did, by variant)."""
        tag = color.tag if color else None
        target = color_target(color, chunk, self.rp.width, self.rp.height) if color else None
        variant = variant_name(chunk, self.fmt, head, kept, tag=tag, keyframes=keyframes)
        last = head + kept - 1
        png = entry.dir / f".frame{last}.{os.getpid()}.{threading.get_ident()}.png" if chain else None
        reports = []
        try:
            clip = self.cache.add_file(entry, f"clip.{variant}", lambda tmp: reports.append(normalize_clip(
                raw, tmp, png, head=head, kept=kept, generated=chunk.generated_frames,
                width=self.rp.width, height=self.rp.height, fps=self.rp.fps, fmt=self.fmt, color=target,
                keyframes=keyframes, asked=(self.rp.gen_width, self.rp.gen_height), stop=self.stop)))
            frames = dict(entry.record.frames)
            if png is not None:
                png.replace(entry.frame(last, tag))
                frames[frame_key(last, tag)] = file_digest(entry.frame(last, tag))
        finally:
            if png is not None:
                png.unlink(missing_ok=True)
        r = entry.record
        made = [clip, entry.frame(last, tag)] if chain else [clip]
        changes: dict[str, Any] = {"frames": frames, "variants": {**r.variants, variant: file_digest(clip)},
                                   "stat": {**r.stat, **{f.name: file_stat(f) for f in made}}}
        if reports and reports[0].color is not None:
            changes["color_match"] = {**r.color_match, variant: reports[0].color}
        return self.cache.update_record(entry, **changes)

    # -- render ---------------------------------------------------------------------------------

    def _render(self, chunk: Chunk, source: ChunkResult | None, color: ColorRef | None,
                damaged: Entry | None = None) -> ChunkResult:
        """Render the chunk into a work folder, normalize it there and commit the folder as its
        entry (replacing `damaged`, the entry found unusable). A drawing backend's frames go
        straight into the normalized clip (Backend.draw)."""
        work = self.cache.work_dir(chunk.key[:16])
        try:
            request = self._request(chunk, source)
            # Read before rendering: an unreadable reference fails the chunk before it is paid for.
            target = color_target(color, chunk, self.rp.width, self.rp.height) if color else None
            tag = color.tag if color else None
            variant = self._variant(chunk, color)
            clip, chain = work / f"clip.{variant}", work / frame_name(chunk.chain_frame, tag)

            def normalize(raw: Path | FrameSource) -> NormalizeReport:
                return normalize_clip(raw, clip, chain, head=chunk.head, kept=chunk.kept_frames,
                                      generated=chunk.generated_frames, width=self.rp.width, height=self.rp.height,
                                      fps=self.rp.fps, fmt=self.fmt, color=target,
                                      keyframes=self.keyframes.get(chunk.id, ()),
                                      asked=(self.rp.gen_width, self.rp.gen_height), stop=self.stop)

            raw: Path | None = None
            if self.backend.draws:
                drawn = DrawnFrames(chunk.id, lambda: self.backend.draw(request), chunk.generated_frames)
                report, seconds = self._attempts(chunk, lambda: normalize(drawn))
                # Drawing is the render; the rest of the one pass is normalizing (colour included).
                render_s, normalize_s = report.read_s, seconds - report.read_s
                result = RenderResult(clip, request.seed, 0.0, {"drawn": True})
            else:
                result, render_s = self._attempts(chunk, lambda: self.backend.render(request, work))
                raw = work / f"raw{result.clip.suffix or '.mp4'}"
                result.clip.replace(raw)
                t1 = time.monotonic()
                report = normalize(raw)
                normalize_s = time.monotonic() - t1
            for d in report.deviations:
                self.emit("warning", chunk=chunk.id, message=f"{chunk.id}: the clip deviates from its request "
                                                             f"({d}); conformed")
            want = source.chain_digest if source else None
            record = Record(
                chunk.key, chunk=chunk.id, scene=chunk.scene, project=self.rp.name, backend=self.backend.name,
                endpoint=chunk.endpoint.id, seed=result.seed, cost_usd=result.cost_usd, chains_from=chunk.chains_from,
                chain_digest=want, raw=raw.name if raw else None, drawn=raw is None,
                raw_sha256=file_digest(raw) if raw else None,
                frames={frame_key(chunk.chain_frame, tag): file_digest(chain)},
                variants={variant: file_digest(clip)},
                # sizes and mtimes of the clips, to check them without hashing (Cache.file_problem)
                stat={f.name: file_stat(f) for f in (raw, clip, chain) if f is not None},
                color_match={variant: report.color} if report.color is not None else {},
                normalize=report.record(), details=result.details,
                timings={"render_s": round(render_s, 3), "normalize_s": round(normalize_s, 3)},
                inputs=chunk.key_inputs, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                ltxflow=__version__)
            # An entry for this key made from another start image (its chain source was matched
            # differently then), or the damaged one this render replaces, is replaced; one another
            # build committed meanwhile from the same start wins.
            entry, ours = self.cache.commit(work, chunk.key, record, usable=lambda e: (
                e.record.chain_digest == want and (damaged is None or e.record != damaged.record)))
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        self.backend.committed(chunk.key)
        frames = self._raw_frames(chunk, entry, source)
        if not ours:  # another build committed this key first: use its entry (what it cached wins)
            return replace(self._reuse(chunk, entry, color, frames, state="rendered"), cost_usd=result.cost_usd,
                           render_s=render_s, normalize_s=normalize_s, color_s=report.color_s)
        return ChunkResult(chunk.id, "rendered", entry, entry.clip(variant), record.frames[frame_key(
            chunk.chain_frame, tag)], entry.frame(chunk.chain_frame, tag), result.cost_usd, render_s, normalize_s,
            color=color, color_s=report.color_s, raw=frames)

    def _attempts(self, chunk: Chunk, attempt: Callable[[], T]) -> tuple[T, float]:
        """What `attempt` (the backend's render) returns and the seconds it took (not counting the
        wait for a slot), retried while the backend calls its failure transient."""
        attempts = 0
        while True:
            attempts += 1
            try:
                with self.slots:
                    if self.stop.is_set():  # the build stopped while this chunk waited for a slot
                        raise Stopped(f"{chunk.id}: stopped")
                    if attempts == 1:
                        self.emit("chunk_started", chunk=chunk.id)
                    t0 = time.monotonic()
                    return attempt(), time.monotonic() - t0
            except Exception as exc:  # noqa: BLE001 - the backend decides what is transient
                if not self.backend.is_transient(exc) or attempts > self.retries or self.stop.is_set():
                    raise
                delay = self.backoff_s * 2 ** (attempts - 1) * (0.5 + random.random())
                self.emit("chunk_retry", chunk=chunk.id, attempt=attempts, delay_s=round(delay, 2), error=str(exc))
                if self.stop.wait(delay):
                    raise

    def _request(self, chunk: Chunk, source: ChunkResult | None) -> ChunkRequest:
        start = end = None
        start_url = end_url = chain_scene = None
        if chunk.start_image.kind == "keyframe":
            media = chunk.start_image.media
            assert media is not None
            start, start_url = media.ref.path, media.ref.url
        elif chunk.start_image.kind == "chain":
            assert source is not None
            start, chain_scene = source.chain_png, self._card_scene(source.chunk)
        if chunk.end_image is not None:
            end, end_url = chunk.end_image.ref.path, chunk.end_image.ref.url
        audio = self._audio_span(chunk) if chunk.audio else None
        return ChunkRequest(
            chunk_id=chunk.id, key=chunk.key, scene_id=chunk.scene, endpoint=chunk.endpoint.id, mode=chunk.endpoint.mode,
            family=chunk.endpoint.family,
            prompt=chunk.args[chunk.endpoint.vocab["prompt"]], values=dict(self.values[chunk.scene]),
            args=dict(chunk.args),
            seed=chunk.seed, frames=chunk.generated_frames, width=self.rp.gen_width, height=self.rp.gen_height,
            fps=self.rp.fps, timeline_frame=chunk.start_frame - chunk.head, start_image=start, chain_scene=chain_scene,
            start_image_url=start_url, end_image=end, end_image_url=end_url, audio=audio,
            loras=tuple(LoraFile(lo.media.ref.path, lo.media.ref.url, lo.scale, lo.transformer) for lo in chunk.loras),
            hosted=HostedOptions(fallbacks=self.rp.fal.fallbacks, store_payloads=self.rp.fal.store_payloads))

    def _card_scene(self, chunk_id: str) -> str | None:
        """The scene of chunk `chunk_id` when its frames go back, chain by chain, to a chunk that
        started from no picture (a drawing backend's prompt card) with no end image on the way;
        None when a keyframe or an end image put a picture in them."""
        chunk = self.plan.chunk(chunk_id)
        while chunk.end_image is None and chunk.start_image.kind == "chain":
            chunk = self.plan.chunk(chunk.start_image.chunk)
        if chunk.end_image is None and chunk.start_image.kind == "none":
            return self.plan.chunk(chunk_id).scene
        return None

    def _audio_span(self, chunk: Chunk) -> Path:
        """The WAV of the chunk's audio span, written once per span digest."""
        span = chunk.audio
        assert span is not None
        path = self.cache.root / "audio" / f"span-{span.digest[:32]}.wav"
        if not _span_intact(path, span.digest):  # a kept span is untrusted too: its samples are checked
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                self.rp.audio.write_wav(tmp, [Span.of(span.start_sample, span.samples)])
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)  # a full disk leaves no half-written span
        return path


def _span_intact(path: Path, digest: str) -> bool:
    """Whether `path` is a plain WAV file whose samples are the span's (AudioTrack.span_digest)."""
    import stat
    import wave

    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                return False
            count = w.getnframes()
            h = hashlib.sha256(f"pcm_s16le:{w.getframerate()}:{w.getnchannels()}:{count}:".encode())
            h.update(w.readframes(count))
    except (OSError, EOFError, wave.Error):
        return False
    return h.hexdigest() == digest
