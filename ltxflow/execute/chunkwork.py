"""One chunk's work in a build: reuse its cache entry, or render it, normalize it and commit it."""

from __future__ import annotations

import os
import random
import shutil
import uuid
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ltxflow import __version__
from ltxflow.backends.base import Backend, BackendError, ChunkRequest, LoraFile
from ltxflow.execute.cache import Cache, Entry
from ltxflow.media.encode import Format
from ltxflow.media.normalize import normalize_clip
from ltxflow.media.probe import MediaError, file_digest
from ltxflow.plan.planner import Chunk, Plan


@dataclass(frozen=True)
class ChunkResult:
    """A chunk ready for stitching: its normalized clip and the digest of its chain frame."""

    chunk: str
    state: str  # "cached" | "rendered"
    entry: Entry
    clip: Path
    chain_digest: str  # digest of its last kept frame, which a following chunk starts from
    cost_usd: float = 0.0
    render_s: float = 0.0
    normalize_s: float = 0.0
    notes: tuple[str, ...] = field(default=())


def variant_name(chunk: Chunk, fmt: Format, head: int | None = None, kept: int | None = None) -> str:
    """Names a normalized clip: which raw frames it keeps, in which format."""
    head = chunk.head if head is None else head
    kept = chunk.kept_frames if kept is None else kept
    return f"{head}-{kept}-{fmt.tag}.{fmt.clip_ext}"


class ChunkWork:
    """Callable per chunk id inside the executor. Thread-safe: each chunk writes only its own
    work folder and entry; the backend's concurrency limit is a semaphore."""

    def __init__(self, plan: Plan, cache: Cache, backend: Backend, fmt: Format, *,
                 retries: int = 3, backoff_s: float = 1.0, stop: threading.Event | None = None,
                 emit: Callable[..., None] = lambda *a, **k: None):
        self.plan, self.cache, self.backend, self.fmt = plan, cache, backend, fmt
        self.retries, self.backoff_s = retries, backoff_s
        self.stop = stop or threading.Event()
        self.emit = emit
        self.slots = threading.Semaphore(max(1, backend.max_concurrency))
        self.rp = plan.project
        self.values = {s.id: s.values for s in self.rp.scenes}

    # -- reuse ---------------------------------------------------------------------------------

    def __call__(self, chunk_id: str, done: dict[str, Any]) -> ChunkResult:
        chunk = self.plan.chunk(chunk_id)
        source = done[chunk.chains_from].value if chunk.chains_from else None
        want = source.chain_digest if source else None
        entry, problem = self.cache.lookup(chunk.key)
        notes: list[str] = []
        if entry is not None and entry.record.get("chain_digest") == want:
            try:
                result = self._reuse(chunk, entry)
                self.emit("chunk_cached", chunk=chunk.id)
                return result
            except MediaError as exc:
                problem = f"corrupt clip ({exc})"
        if problem:
            notes.append(f"cache entry was unusable: {problem}; rendered again")
            self.emit("warning", chunk=chunk.id, message=f"{chunk.id}: cache entry is unusable ({problem}); "
                                                         "rendering it again")
        elif entry is not None:
            notes.append("the chain image it starts from changed")
        return self._render(chunk, source, tuple(notes))

    def _reuse(self, chunk: Chunk, entry: Entry) -> ChunkResult:
        variant = variant_name(chunk, self.fmt)
        clip = entry.clip(variant)
        t0 = time.monotonic()
        problem = self.cache.verify_clip(clip, chunk.kept_frames, self.rp.width, self.rp.height)
        digest = entry.frame_digest(chunk.chain_frame)
        if problem or digest is None or not entry.frame(chunk.chain_frame).is_file():
            if problem and problem != "missing":
                self.emit("warning", chunk=chunk.id, message=f"{chunk.id}: cached clip is corrupt ({problem}); "
                                                             "normalizing it again from the raw clip")
            entry = self._normalize_into(entry, chunk)
            digest = entry.frame_digest(chunk.chain_frame)
        assert digest is not None
        return ChunkResult(chunk.id, "cached", entry, entry.clip(variant), digest,
                           normalize_s=time.monotonic() - t0)

    def _normalize_into(self, entry: Entry, chunk: Chunk) -> Entry:
        """Derive this chunk's clip variant and chain frame from the entry's raw clip."""
        png = entry.dir / f".frame{chunk.chain_frame}.{threading.get_ident()}.png"
        try:
            self._derive(entry, chunk, chunk.head, chunk.kept_frames, png)
            frame = entry.frame(chunk.chain_frame)
            png.replace(frame)
        finally:
            png.unlink(missing_ok=True)
        frames = {**entry.record.get("frames", {}), str(chunk.chain_frame): file_digest(frame)}
        return self.cache.update_record(entry, frames=frames)

    def part(self, entry: Entry, chunk: Chunk, head: int, kept: int) -> Path:
        """A clip of `kept` raw frames from `head` of a cached chunk (for --range), made once."""
        path = entry.clip(variant_name(chunk, self.fmt, head, kept))
        if self.cache.verify_clip(path, kept, self.rp.width, self.rp.height) is None:
            return path
        return self._derive(entry, chunk, head, kept, None)

    def _derive(self, entry: Entry, chunk: Chunk, head: int, kept: int, chain_png: Path | None) -> Path:
        return self.cache.add_file(entry, f"clip.{variant_name(chunk, self.fmt, head, kept)}", lambda tmp: normalize_clip(
            entry.raw, tmp, chain_png, head=head, kept=kept, generated=chunk.generated_frames,
            width=self.rp.width, height=self.rp.height, fps=self.rp.fps, fmt=self.fmt))

    # -- render ---------------------------------------------------------------------------------

    def _render(self, chunk: Chunk, source: ChunkResult | None, notes: tuple[str, ...]) -> ChunkResult:
        work = self.cache.work_dir(chunk.key[:16])
        try:
            request = self._request(chunk, work, source)
            self.emit("chunk_started", chunk=chunk.id)
            t0 = time.monotonic()
            result = self._render_with_retries(chunk, request, work)
            render_s = time.monotonic() - t0
            raw = work / f"raw{result.clip.suffix or '.mp4'}"
            result.clip.replace(raw)
            t1 = time.monotonic()
            variant = variant_name(chunk, self.fmt)
            chain = work / f"frame{chunk.chain_frame}.png"
            report = normalize_clip(raw, work / f"clip.{variant}", chain, head=chunk.head, kept=chunk.kept_frames,
                                    generated=chunk.generated_frames, width=self.rp.width,
                                    height=self.rp.height, fps=self.rp.fps, fmt=self.fmt)
            normalize_s = time.monotonic() - t1
            digest = file_digest(chain)
            for d in report.deviations:
                self.emit("warning", chunk=chunk.id, message=f"{chunk.id}: the clip deviates from its request "
                                                             f"({d}); conformed")
            record = {
                "chunk": chunk.id, "scene": chunk.scene, "project": self.rp.name, "backend": self.backend.name,
                "endpoint": chunk.endpoint.id, "seed": result.seed, "cost_usd": result.cost_usd,
                "chains_from": chunk.chains_from,
                "chain_digest": source.chain_digest if source else None,
                "raw": raw.name, "frames": {str(chunk.chain_frame): digest},
                "normalize": report.record(), "details": result.details,
                "timings": {"render_s": round(render_s, 3), "normalize_s": round(normalize_s, 3)},
                "inputs": chunk.key_inputs, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "ltxflow": __version__,
            }
            entry = self.cache.commit(work, chunk.key, record)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return ChunkResult(chunk.id, "rendered", entry, entry.clip(variant), digest, result.cost_usd,
                           render_s, normalize_s, notes)

    def _render_with_retries(self, chunk: Chunk, request: ChunkRequest, work: Path):
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.slots:
                    return self.backend.render(request, work)
            except Exception as exc:  # noqa: BLE001 - the backend decides what is transient
                transient = exc.transient if isinstance(exc, BackendError) else self.backend.is_transient(exc)
                if not transient or attempt > self.retries or self.stop.is_set():
                    raise
                delay = self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random())
                self.emit("chunk_retry", chunk=chunk.id, attempt=attempt, delay_s=round(delay, 2), error=str(exc))
                if self.stop.wait(delay):
                    raise

    def _request(self, chunk: Chunk, work: Path, source: ChunkResult | None) -> ChunkRequest:
        start = end = None
        start_url = end_url = None
        if chunk.start_image.kind == "keyframe":
            media = chunk.start_image.media
            assert media is not None
            start, start_url = media.ref.path, media.ref.url
        elif chunk.start_image.kind == "chain":
            assert source is not None
            start = source.entry.frame(chunk.start_image.frame)
        if chunk.end_image is not None:
            end, end_url = chunk.end_image.ref.path, chunk.end_image.ref.url
        audio = self._audio_span(chunk) if chunk.audio else None
        return ChunkRequest(
            chunk_id=chunk.id, scene_id=chunk.scene, endpoint=chunk.endpoint.id, mode=chunk.endpoint.mode,
            prompt=chunk.args[chunk.endpoint.vocab["prompt"]], values=dict(self.values[chunk.scene]),
            args=dict(chunk.args),
            seed=chunk.seed, frames=chunk.generated_frames, width=self.rp.width, height=self.rp.height,
            fps=self.rp.fps, timeline_frame=chunk.start_frame - chunk.head, start_image=start,
            start_image_url=start_url, end_image=end, end_image_url=end_url, audio=audio,
            loras=tuple(LoraFile(lo.media.ref.path, lo.media.ref.url, lo.scale, lo.transformer) for lo in chunk.loras))

    def _audio_span(self, chunk: Chunk) -> Path:
        """The WAV of the chunk's audio span, written once per span digest."""
        span = chunk.audio
        assert span is not None
        path = self.cache.root / "audio" / f"span-{span.digest[:32]}.wav"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            self.rp.audio.write_wav(tmp, [(span.start_sample, span.samples)])
            os.replace(tmp, path)
        return path
