"""`ltxflow build`: plan, render what is not cached, stitch, report."""

from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ltxflow import __version__, crossfades, timeline
from ltxflow.backends import make_backend
from ltxflow.backends.base import Backend, BackendContext
from ltxflow.cluster import ray_settings
from ltxflow.errors import BuildArgumentError, Interrupted, LtxflowError, StitchFailed
from ltxflow.registry import BACKENDS
from ltxflow.execute.cache import Cache, check_cache_root, default_cache_dir, read_output_stamp, write_json_atomic
from ltxflow.execute.chunkwork import ChunkResult, ChunkWork, clip_format, variant_name, variant_namer
from ltxflow.execute.executor import Cancelled, Outcome, run_dag
from ltxflow.execute.prepare import open_plan
from ltxflow.execute.status import chunk_statuses, load_index, save_index
from ltxflow.media.encode import Format
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.stitch import master_audio, stitch
from ltxflow.plan.keys import content_key
from ltxflow.plan.planner import Plan, cost_once
from ltxflow.progress import Reporter
from ltxflow.project.paths import overwrites
from ltxflow.project.resolve import ResolvedProject, inputs
from ltxflow.report import report_paths, write_report
from ltxflow.timeline import MusicTime, Span, seconds_to_frame, timecode
from ltxflow.uptodate import project_digest, snapshot, stamp_options, stamp_path, write_stamp


@dataclass(frozen=True)
class BuildOptions:
    backend: str | None = None
    jobs: int = 4
    only: tuple[str, ...] = ()
    time_range: tuple[Fraction | MusicTime, Fraction | MusicTime] | None = None  # musical: resolved by build()
    cache_dir: Path | None = None
    output: Path | None = None
    allow_outside_paths: bool = False
    retries: int = 3
    backoff_s: float = 1.0
    max_cost: float | None = None  # USD; None: the project's max_cost, if any
    models: Path | None = None  # backend local's weights; None: LTXFLOW_LTX_MODELS, else the project's
    stale: dict[str, str] | None = None  # why the no-op check fell through (uptodate.check), for the log
    ray: str | None = None  # a Ray cluster's address (--ray); None: LTXFLOW_RAY_ADDRESS, the project's ray:, or none
    ray_shared: Path | None = None  # a folder the cluster's nodes share (--ray-shared); None: the project's, or none


@dataclass
class BuildResult:
    output: Path | None
    outcomes: dict[str, Outcome]
    seconds: float
    cost_usd: float = 0.0
    stitched: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.output is not None


@dataclass(frozen=True)
class Selection:
    """What a build renders (`needed`, in plan order) and what it stitches: timeline segments and
    for each piece, the chunk and the frames of it that fall inside."""

    needed: list[str]
    pieces: list[tuple[str, Span]]  # (chunk id, the timeline frames of it stitched) in output order
    segments: list[Span]  # timeline frames stitched
    label: str | None  # names a partial output: None for the whole video


def select(plan: Plan, only: tuple[str, ...], time_range: tuple[Fraction, Fraction] | None) -> Selection:
    rp = plan.project
    if only and time_range:
        raise BuildArgumentError("use --only or --range, not both")
    if only:
        ids = [s.id for s in rp.scenes]
        unknown = [s for s in only if s not in ids]
        if unknown:
            raise BuildArgumentError(f"--only: no scene {', '.join(unknown)} in {rp.file} (scenes: {', '.join(ids)})")
        picked = [s for s in rp.scenes if s.id in only]
        segments = _merge([Span(s.start_frame, s.end_frame) for s in picked])
        label = "+".join(s.id for s in picked)
    elif time_range:
        a, b = (seconds_to_frame(t, rp.fps) for t in time_range)
        a, b = max(0, a), min(rp.total_frames, b)
        if b <= a:
            raise BuildArgumentError(f"--range selects no frames of the {timecode(rp.total_frames, rp.fps)} video")
        segments, label = [Span(a, b)], f"{_stamp(a, rp.fps)}-{_stamp(b, rp.fps)}"
    else:
        segments, label = [Span(0, rp.total_frames)], None
    pieces = []
    for c in plan.chunks:
        for segment in segments:
            part = segment.intersect(Span(c.start_frame, c.end_frame))
            if part is not None:
                pieces.append((c.id, part))
    needed_set = set()
    for cid, _ in pieces:
        node: str | None = cid
        while node and node not in needed_set:  # a chunk needs the chain it starts from
            needed_set.add(node)
            node = plan.parents[node]
    needed = [c.id for c in plan.chunks if c.id in needed_set]
    return Selection(needed, pieces, segments, label)


def _merge(segments: list[Span]) -> list[Span]:
    """Spans in order, those that touch joined."""
    out: list[Span] = []
    for s in segments:
        if out and out[-1].end == s.start:
            out[-1] = Span(out[-1].start, s.end)
        else:
            out.append(s)
    return out


def _stamp(frame: int, fps: Fraction) -> str:
    """A frame's time for a file name: seconds to the millisecond, no trailing zeros ("1.5s")."""
    ms = round(Fraction(frame * 1000) / fps)
    return f"{ms // 1000}.{ms % 1000:03d}".rstrip("0").rstrip(".") + "s"


def parse_range(text: str) -> tuple[Fraction | MusicTime, Fraction | MusicTime]:
    """--range START-END -> seconds or musical times; BuildArgumentError (exit 2) when malformed."""
    try:
        return timeline.parse_range(text)
    except ValueError as exc:
        raise BuildArgumentError(f"--range: {exc}") from None


def range_seconds(rp: ResolvedProject, time_range: tuple[Fraction | MusicTime, Fraction | MusicTime],
                  music_store: Path | None) -> tuple[Fraction, Fraction]:
    """--range's ends in seconds: musical ones resolved on the track's bars as scene times are
    (analysing the track when the project itself uses no musical time). BuildArgumentError when a
    bar or beat is past the track's last one."""
    if all(isinstance(t, Fraction) for t in time_range):
        return time_range  # type: ignore[return-value]
    grid = rp.music
    if grid is None:
        from ltxflow.music.analysis import analyse_track
        from ltxflow.music.grid import make_grid

        m = rp.loaded.project.music
        grid = make_grid(analyse_track(rp.audio, music_store), m.beats_per_bar, m.first_bar)
    try:
        a, b = (t if isinstance(t, Fraction) else Fraction(str(grid.seconds(t))) for t in time_range)
    except ValueError as exc:
        raise BuildArgumentError(f"--range: {exc}") from None
    if b <= a:
        raise BuildArgumentError(f"--range: {time_range[1]} ({float(b):.3f} s) is not after {time_range[0]} "
                                 f"({float(a):.3f} s)")
    return a, b


def output_path(plan: Plan, sel: Selection, explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    out = plan.project.output
    return out if sel.label is None else out.with_name(f"{out.stem}.{sel.label}{out.suffix}")


def build(project: str | Path, opts: BuildOptions, reporter: Reporter, backend: Backend | None = None) -> BuildResult:
    """Build a project: render every chunk the selection needs that is not cached, then stitch.
    `backend`: render with this one (tests, programs embedding ltxflow; the build closes it)
    instead of making the project's by name from the registry; its name is the build's backend.
    Raises ProjectError (invalid project), BuildArgumentError, Interrupted (a KeyboardInterrupt while
    chunks render: Ctrl-C, or SIGTERM as the CLI turns it into one; running chunks give up at once),
    StitchFailed."""
    return Build(Path(project), opts, reporter, backend).run()


class Build:
    """One build, as its phases. The skeleton (`run`):

        prepare   read the project, plan, select, check the output and ffmpeg, make the backend
        budget    which chunks render now, what they cost (max_cost), the backend's preflight
        render    the chunks, in DAG order, the master audio encoded meanwhile
        stitch    the selection onto the master track (skipped when the output is current)
        record    the no-op stamp of everything the build read and wrote
        report    the HTML report and contact sheet (a failure is a warning)

    Every way out (done, chunks failed, stitch failed, interrupted) goes through `finish`, which
    sends build_done with the counts and where the seconds went (`phases`)."""

    def __init__(self, project: Path, opts: BuildOptions, reporter: Reporter, backend: Backend | None = None):
        self.project, self.opts, self.reporter, self.backend = project, opts, reporter, backend
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        # Where the build's seconds go (build_done's `breakdown`): wall-clock phases, and per-chunk
        # seconds summed over chunks (which overlap when chunks render in parallel).
        self.phases = {"plan_s": 0.0, "chunks_s": 0.0, "render_s": 0.0, "normalize_s": 0.0,
                       "color_s": 0.0, "stitch_s": 0.0, "report_s": 0.0}
        self.lock = threading.Lock()

    def run(self) -> BuildResult:
        self.prepare()
        assert self.backend is not None
        with closing(self.backend):  # a local backend's worker processes end with the build
            self.budget()
            outcomes, audio_job = self.render()
            result, error = self.collect(outcomes, audio_job)
            if result.counts["failed"] or result.counts["skipped"]:
                result.seconds = self.finish(None, result, failures={n: o.error for n, o in outcomes.items()
                                                                     if o.state != "ok"})
                return result
            self.stitch(result, error)
            self.record(result)
            self.report(result)
            result.seconds = self.finish(self.out, result)
            return result

    # -- phases -----------------------------------------------------------------------------------

    def prepare(self) -> None:
        opts = self.opts
        if opts.jobs < 1:
            raise BuildArgumentError("--jobs must be at least 1")
        self.cache = cache = Cache(default_cache_dir(self.project.parent, opts.cache_dir))
        check_cache_root(cache.root)  # a link or another user's folder: refused before anything is read there
        _writable_folder(cache.root, "the cache (--cache-dir / LTXFLOW_CACHE_DIR)")
        self.project_sha = project_digest(self.project)  # before reading it: see write_stamp
        self.plan = plan = open_plan(self.project, cache, allow_outside_paths=opts.allow_outside_paths,
                                     backend=opts.backend or (self.backend.name if self.backend else None),
                                     cache_checked=True)
        self.rp = rp = plan.project
        for note in rp.notes:
            self.reporter.event("warning", message=note)
        self.inputs = snapshot([rp.audio.path] + [m.ref.path for s in rp.scenes
                                                  for m in (s.image, s.end_image, *(lo.media for lo in s.loras))
                                                  if m is not None and m.ref.path is not None])
        time_range = range_seconds(rp, opts.time_range, cache.music) if opts.time_range else None
        self.sel = select(plan, opts.only, time_range)
        self.out = out = output_path(plan, self.sel, opts.output)
        env_models = os.environ.get("LTXFLOW_LTX_MODELS")
        models = opts.models or (Path(env_models).expanduser() if env_models else rp.models)
        _check_outputs(rp, out, models)
        container = out.suffix.lower().lstrip(".")
        if container not in ("mp4", "webm", "mov", "gif"):
            raise BuildArgumentError(f"{out}: the output must end in .mp4, .webm, .mov or .gif")
        self.fmt = clip_format(rp, container)
        _writable_folder(out.parent, f"the output's folder ({out})")
        find_ffmpeg()  # no working ffmpeg: exit 3 now, not a failure of every chunk
        self.keyframes = crossfades.chunk_keyframes(plan, self.fmt)  # where crossfade seams cut each chunk's clip
        self.ray = None if self.backend is not None else ray_settings(opts.ray, opts.ray_shared,
                                                                       rp.loaded.project.ray, self.project.parent)
        if self.ray is not None and BACKENDS[rp.backend].journals:
            raise BuildArgumentError(f"--ray {self.ray.address}: backend {rp.backend} renders on its own servers "
                                     "(its requests are journalled in this machine's cache); Ray spreads the "
                                     "backends that render here: preview, test, local. Drop --ray (and "
                                     "LTXFLOW_RAY_ADDRESS, the project's ray.address) for this build")
        if self.backend is None:
            ctx = BackendContext(cache.root, self.project, self.reporter.event, self.stop, models=models, fp8=rp.fp8,
                                 needs=frozenset((s.endpoint.mode, s.endpoint.family) for s in rp.scenes))
            if self.ray is None:
                self.backend = make_backend(rp.backend, ctx)
            else:  # Ray is imported here only: chunks render in its actors (ltxflow/cluster/pool.py)
                from ltxflow.cluster.pool import RayBackend

                self.backend = RayBackend(rp.backend, ctx, self.ray)

    def budget(self) -> None:
        plan, rp, opts, backend, keyframes = self.plan, self.rp, self.opts, self.backend, self.keyframes
        assert backend is not None
        statuses = chunk_statuses(plan, self.cache, load_index(self.cache, rp.loaded.path),
                                  lambda c, tag: variant_name(c, self.fmt, tag=tag, keyframes=keyframes[c.id]))
        self.to_render = to_render = [n for n in self.sel.needed if statuses[n].status == "render"]
        in_flight = backend.in_flight()
        self.resume = resume = [n for n in to_render if plan.chunk(n).key in in_flight]
        for n in self.sel.needed:  # cached, but a crash came between the commit and forgetting its request
            if statuses[n].status == "cached" and plan.chunk(n).key in in_flight:
                backend.committed(plan.chunk(n).key)
        self.cost_now = cost_now = cost_once(plan.chunk(n) for n in to_render if n not in resume)  # a key is paid once
        max_cost = opts.max_cost if opts.max_cost is not None else rp.loaded.project.max_cost
        if max_cost is not None and cost_now > max_cost:
            limit = "--max-cost" if opts.max_cost is not None else f"max_cost in {rp.file}"
            raise BuildArgumentError(
                f"the {len(to_render) - len(resume)} chunks to render now would cost about ${cost_now:.2f}, above the "
                f"limit of ${max_cost:.2f} ({limit}); nothing was submitted. Raise the limit, or build part of the "
                "video with --only or --range")
        if to_render:
            backend.preflight()  # a missing or rejected key fails here, before anything is submitted

    def render(self) -> tuple[dict[str, Outcome], Any]:
        """The chunks' outcomes, and the master audio's encode (a future; None for gif). Raises
        Interrupted, after finish, when the build is stopped."""
        plan, rp, sel, opts, backend, fmt = self.plan, self.rp, self.sel, self.opts, self.backend, self.fmt
        assert backend is not None
        self.phases["plan_s"] = time.monotonic() - self.t0
        self.reporter.event("build_started", project=rp.name, backend=rp.backend, jobs=opts.jobs,
                            chunks=len(sel.needed), to_render=len(self.to_render),
                            cached=len(sel.needed) - len(self.to_render), output=str(self.out),
                            cost_now_usd=self.cost_now, resuming=len(self.resume), order=list(sel.needed),
                            **({"stale": opts.stale} if opts.stale else {}))
        self.work = ChunkWork(plan, self.cache, backend, fmt, retries=opts.retries, backoff_s=opts.backoff_s,
                              stop=self.stop, emit=self.reporter.event, keyframes=self.keyframes)
        # The master audio is encoded while the chunks render (the AAC encode of a 2-minute stereo
        # song takes seconds), so the stitch after the last chunk only remuxes.
        self.audio_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltxflow-audio")
        audio_job = self.audio_pool.submit(master_audio, rp.audio, sel.segments, rp.fps, fmt,
                                           self.cache.root / "audio", self.stop) if fmt.audio else None
        # A backend that keeps models loaded renders what shares them back to back: it gets no
        # more chunks at once than it renders, so the order chosen here is the order it runs.
        group, jobs = None, opts.jobs
        if backend.keeps_models:
            group, jobs = (lambda n: _model_set(plan.chunk(n))), min(opts.jobs, backend.max_concurrency)
        if self.ray is not None:  # one thread per actor: the order chosen here is the order the cluster runs
            jobs = backend.max_concurrency
        t_chunks = time.monotonic()
        try:
            outcomes = run_dag(sel.needed, plan.parents, self._one, jobs, on_failure=self._failed, stop=self.stop,
                               group=group, on_skip=lambda n, why: self.reporter.event("chunk_skipped", chunk=n,
                                                                                       reason=why))
        except Cancelled as exc:
            self.phases["chunks_s"] = time.monotonic() - t_chunks
            self.audio_pool.shutdown(wait=True, cancel_futures=True)  # the master audio's encode saw `stop` too
            self._interrupted(exc.outcomes)
        self.phases["chunks_s"] = time.monotonic() - t_chunks
        return outcomes, audio_job

    def collect(self, outcomes: dict[str, Outcome], audio_job: Any) -> tuple[BuildResult, str | None]:
        """The result so far (counts, cost; the index of what is cached saved), and why the stitch
        cannot run (the master audio's encode failed), else None."""
        self.t_stitch = time.monotonic()
        self.results = results = {n: o.value for n, o in outcomes.items() if o.state == "ok"}
        counts, spent = _tally(outcomes)
        save_index(self.cache, self.rp.loaded.path, [self.plan.chunk(n) for n in results])
        result = BuildResult(None, outcomes, 0.0, spent, counts=counts)
        error = None
        try:
            if audio_job is not None and not (counts["failed"] or counts["skipped"]):
                audio_job.result()  # an encoding failure surfaces here, before the stitch
        except (LtxflowError, OSError) as exc:
            error = str(exc)
        except KeyboardInterrupt:
            self.stop.set()  # the master audio's encode gives up before the wait below
            raise
        finally:
            self.audio_pool.shutdown(wait=True)
        return result, error

    def stitch(self, result: BuildResult, error: str | None) -> None:
        """Raises StitchFailed, after finish, when it fails: every chunk is cached, and the next
        build only stitches."""
        if error is None:
            try:
                result.stitched = _stitch(self.plan, self.sel, self.results, self.work, self.cache, self.fmt,
                                          self.out, self.reporter)
                self.phases["stitch_s"] = time.monotonic() - self.t_stitch  # with the wait for the master audio
            except (LtxflowError, OSError) as exc:
                error = str(exc)
        if error is not None:
            self.finish(None, result, failures={"stitch": error})
            raise StitchFailed(f"the stitch failed: {error}")
        result.output = self.out

    def record(self, result: BuildResult) -> None:
        opts = self.opts
        options = stamp_options(opts.backend, opts.only, opts.time_range, opts.output, opts.allow_outside_paths)
        write_stamp(stamp_path(self.cache.root, self.project, options), self.project, self.project_sha, self.inputs,
                    self.rp.name, self.out, [r.clip for r in self.results.values()], self.sel.needed,
                    backend=self.rp.backend)

    def report(self, result: BuildResult) -> None:
        t0 = time.monotonic()
        _report(self.plan, self.cache, self.fmt, self.out, {n: r.clip for n, r in self.results.items()}, self.reporter)
        self.phases["report_s"] = time.monotonic() - t0

    def finish(self, output: Path | None, result: BuildResult | None = None, *, counts: dict[str, int] | None = None,
               cost_usd: float | None = None, **extra: Any) -> float:
        """build_done: the counts, the money spent, where the seconds went; the build's seconds."""
        counts = counts if counts is not None else (result.counts if result else {})
        cost = cost_usd if cost_usd is not None else (result.cost_usd if result else 0.0)
        seconds = time.monotonic() - self.t0
        with self.lock:
            breakdown = {k: round(v, 3) for k, v in self.phases.items()}
        self.reporter.event("build_done", output=str(output) if output else None, seconds=round(seconds, 3),
                            **counts, cost_usd=cost, breakdown=breakdown, **extra)
        return seconds

    # -- inside render ------------------------------------------------------------------------------

    def _one(self, node: str, done: dict[str, Outcome]) -> ChunkResult:
        res = self.work(node, done)
        with self.lock:  # normalize_s includes the colour pass; the breakdown shows them apart
            self.phases["render_s"] += res.render_s
            self.phases["normalize_s"] += res.normalize_s - res.color_s
            self.phases["color_s"] += res.color_s
        if res.state == "rendered":
            self.reporter.event("chunk_done", chunk=node, seconds=round(res.render_s + res.normalize_s, 3),
                                render_s=round(res.render_s, 3), normalize_s=round(res.normalize_s, 3),
                                cost_usd=res.cost_usd, **_hosted(res.entry.record.details))
        return res

    def _failed(self, node: str, exc: BaseException) -> str:
        known = isinstance(exc, LtxflowError)
        message = str(exc) if known and str(exc) else f"{type(exc).__name__}: {exc}"
        self.reporter.event("chunk_failed", chunk=node, error=message)
        return message

    def _interrupted(self, outcomes: dict[str, Outcome]) -> None:
        """Counts as `plan` will show them: cached are all the selection's chunks the cache now
        holds (reached by this build or not), and the rest render next time; then Interrupted."""
        plan, sel, rp, backend = self.plan, self.sel, self.rp, self.backend
        assert backend is not None
        counts, spent = _tally(outcomes)
        save_index(self.cache, rp.loaded.path, [plan.chunk(n) for n, o in outcomes.items() if o.state == "ok"])
        now = chunk_statuses(plan, self.cache, {}, variant_namer(plan, self.fmt), check_clips=False)
        counts["cached"] = sum(1 for n in sel.needed if now[n].status == "cached") - counts["rendered"]
        left = len(sel.needed) - counts["rendered"] - counts["cached"]
        self.finish(None, counts=counts, cost_usd=spent, interrupted=True, to_render=left)
        waiting = len(backend.in_flight() & {plan.chunk(n).key for n in sel.needed})
        them = "them" if waiting != 1 else "it"
        hosted = (f"; {waiting} request{'s still run' if waiting != 1 else ' still runs'} on {rp.backend} (paid "
                  f"for): the next build collects {them}, `ltxflow cancel {self.project}` cancels {them}") if waiting else ""
        raise Interrupted(f"interrupted: {len(sel.needed) - left} of {len(sel.needed)} chunks are cached "
                          f"({counts['rendered']} rendered now); run the build again to render the other "
                          f"{left}{hosted}") from None


def _report(plan: Plan, cache: Cache, fmt: Format, out: Path, clips: dict[str, Path], reporter: Reporter) -> None:
    """The build report beside the video. The video is written: a report that fails is a warning."""
    paths = report_paths(out)
    t0 = time.monotonic()
    try:
        report = write_report(plan, cache, fmt, out, paths, clips)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the build's result stands
        reporter.event("warning", message=f"the build report was not written: {type(exc).__name__}: {exc}")
        return
    weakest = report.weakest
    reporter.event("report_written", report=str(paths.html), contact_sheet=str(paths.contact),
                   seconds=round(time.monotonic() - t0, 3), clips_read=report.clips_read,
                   clips_kept=report.clips_kept, seams_scored=len(weakest),
                   seams=[{"before": s.before, "after": s.after, "frame": s.frame, "score": round(s.score or 0.0, 2)}
                          for s in weakest[:5]])


def _hosted(details: dict) -> dict:
    """What a hosted chunk's record says a summary should tell: a request of an earlier build
    collected, one shared with another chunk, a possible duplicate charge (chunk_done's fields)."""
    out: dict = {}
    if details.get("resumed") is True and isinstance(details.get("request_id"), str):
        out["collected"] = details["request_id"]
    if isinstance(details.get("shared_with"), str):
        out["shared_with"] = details["shared_with"]
    price = details.get("possible_duplicate_charge_usd")
    if details.get("possible_duplicate_charge") is True and isinstance(price, (int, float)):
        out["possible_duplicate_charge_usd"] = price
    return out


def _model_set(chunk) -> tuple:
    """What a chunk's models are built from: its pipeline (mode, family) and its LoRAs."""
    return (chunk.endpoint.mode, chunk.endpoint.family,
            tuple((str(sorted(lo.media.identity().items())), lo.scale) for lo in chunk.loras))


def _tally(outcomes: dict[str, Outcome]) -> tuple[dict[str, int], float]:
    """Chunks rendered, cached, failed and skipped, and the money the rendered ones cost."""
    done = [o.value for o in outcomes.values() if o.state == "ok"]
    counts = {"rendered": sum(1 for r in done if r.state == "rendered"),
              "cached": sum(1 for r in done if r.state == "cached"),
              "failed": sum(1 for o in outcomes.values() if o.state == "failed"),
              "skipped": sum(1 for o in outcomes.values() if o.state == "skipped")}
    return counts, round(sum(r.cost_usd for r in done if r.state == "rendered"), 6)


def _stitch(plan: Plan, sel: Selection, results: dict[str, ChunkResult], work: ChunkWork, cache: Cache,
            fmt: Format, out: Path, reporter: Reporter) -> bool:
    """Stitch the selection into `out` unless it is already up to date. True when it stitched."""
    rp = plan.project
    joins = crossfades.plan_seams(crossfades.selection_pieces(plan, sel.pieces))
    clips: list[Path] = []
    ident: list[Any] = []
    for (cid, (lo, hi)), split in zip(sel.pieces, joins.splits):
        chunk, res = plan.chunk(cid), results[cid]
        # A whole chunk, or part of one (--range): a variant holding just those frames, colour
        # matched as the whole chunk is, with the key frames its crossfades cut it at.
        clip, digest = work.part(res, chunk.head + lo - chunk.start_frame, hi - lo, crossfades.forced(split, fmt))
        clips.append(clip)
        ident.append([chunk.key, clip.name, digest])  # the clip's bytes: a re-rendered chunk re-stitches
    shape = {"clips": ident, "segments": sel.segments, "audio": rp.audio.digest,
             "format": [fmt.container, fmt.quality], "fps": rp.fps, "ltxflow": __version__}
    if joins.windows:
        shape["windows"] = [[w.index, w.before, w.after] for w in joins.windows]
    signature = content_key(shape)
    stamp = cache.root / "outputs" / f"{content_key(str(out.resolve()))[:24]}.json"
    if _output_current(out, stamp, signature):
        reporter.event("stitch_done", output=str(out), skipped=True, frames=sum(s.count for s in sel.segments),
                       seconds=0.0)
        return False
    for chunk_id, message in joins.notes:
        reporter.event("warning", chunk=chunk_id, message=message)
    scratch = cache.work_dir("stitch")
    try:
        report = stitch(clips, sel.segments, rp.audio, rp.fps, fmt, out, cache.root / "audio", scratch, joins)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    st = out.stat()
    write_json_atomic(stamp, {"output": str(out.resolve()), "signature": signature, "size": st.st_size,
                              "mtime_ns": st.st_mtime_ns})
    reporter.event("stitch_done", output=str(out), skipped=False, frames=report.frames,
                   audio_samples=report.audio_samples, audio_cached=report.audio_cached,
                   seconds=round(report.seconds, 3), crossfades=len(joins.windows),
                   reencoded_frames=report.reencoded)
    return True


def _check_outputs(rp: ResolvedProject, out: Path, models: Path | None) -> None:
    """Outputs never overwrite inputs: BuildArgumentError (exit 2, before anything renders) when the
    video, its report or its contact sheet is a link, or would replace a file or folder the build
    reads (the project file, the song, a keyframe, a LoRA, the models folder)."""
    paths = report_paths(out)
    outputs = [(out, "the video"), (paths.html, "the report"), (paths.contact, "the contact sheet")]
    problem = overwrites(outputs, inputs(rp, models))
    if problem:
        raise BuildArgumentError(f"{problem}; nothing was rendered. Name another output: `output:` in {rp.file}, "
                                 "or -o")


def _writable_folder(folder: Path, what: str) -> None:
    """Fail before rendering, not after, when a folder the build writes cannot be made."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildArgumentError(f"{what}: cannot create {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK):
        raise BuildArgumentError(f"{what}: {folder} is not writable")


def _output_current(out: Path, stamp: Path, signature: str) -> bool:
    """The output is the file the last stitch with this signature wrote (an invalid signature
    file is none: the output is stitched again and the file written anew)."""
    data = read_output_stamp(stamp)
    try:
        st = out.stat()
    except OSError:
        return False
    return (data is not None and data["output"] == str(out.resolve()) and data["signature"] == signature
            and data["size"] == st.st_size and data["mtime_ns"] == st.st_mtime_ns)
