"""`ltxflow export`: what the cache holds of a project's build, as a timeline an editor opens.

Formats (FORMATS): OpenTimelineIO's JSON (.otio), Final Cut Pro 7 XML (.xml, the xmeml that
Premiere Pro and DaVinci Resolve import) and CMX 3600 EDL (.edl), each through OpenTimelineIO and
its adapter plugin (the `export` extra; imported only here, when a command asks). Final Cut Pro X's
.fcpxml is not written: its OTIO adapter drops crossfades and NTSC rates (see the README).

The clips are the normalized clips a build stitches, found as `ltxflow report` finds them
(report.gather.clip_of); chunks the cache does not hold are gaps. A crossfade is a dissolve, which
reads frames past both ends of its seam: the clips copied into the export's media folder hold
their first and last frames there, as the stitch's blend does (export.media); with `in_place`
the cache's clips have none, and the EDL, whose source timecode cannot go before a clip's first
frame, has cuts instead."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltxflow.errors import BuildArgumentError, LtxflowError
from ltxflow.timeline import fps_str

if TYPE_CHECKING:
    from ltxflow.execute.cache import Cache
    from ltxflow.media.encode import Format
    from ltxflow.plan.planner import Plan

INSTALL = "pip install 'ltxflow[export]'"


@dataclass(frozen=True)
class Target:
    adapter: str  # the OTIO adapter's name
    package: str  # the distribution that brings it
    suffix: str
    what: str


FORMATS = {
    "otio": Target("otio_json", "opentimelineio", ".otio", "OpenTimelineIO"),
    "xml": Target("fcp_xml", "otio-fcp-adapter", ".xml", "Final Cut Pro 7 XML"),
    "edl": Target("cmx_3600", "otio-cmx3600-adapter", ".edl", "CMX 3600 EDL"),
}


@dataclass(frozen=True)
class ExportOptions:
    format: str | None = None  # None: by the output's suffix, else otio
    output: Path | None = None  # None: beside the project's video, with the format's suffix
    in_place: bool = False  # reference the clips in the cache instead of copying them beside the export
    backend: str | None = None  # the backend the chunks were built with (None: the project's)
    cache_dir: Path | None = None
    allow_outside_paths: bool = False


@dataclass(frozen=True)
class ExportResult:
    output: Path
    format: str
    media: Path | None  # the folder the clips (with their handles) and the song were copied into; None with in_place
    chunks: int  # in the plan
    built: int  # on the timeline
    crossfades: int  # transitions on the timeline
    markers: int
    notes: tuple[str, ...]  # warnings: chunks left out, what the format cannot hold


def format_of(opts: ExportOptions) -> str:
    """The format asked for, else the one the output's suffix names, else otio. An output whose
    suffix is not its format's is refused (BuildArgumentError): `-o out/video.mp4` would
    otherwise write a timeline over the rendered video."""
    if opts.format is not None and opts.format not in FORMATS:
        raise BuildArgumentError(f"--format {opts.format}: not one of {', '.join(FORMATS)}")
    if opts.output is None:
        return opts.format or "otio"
    suffix = opts.output.suffix.lower()
    named = next((name for name, t in FORMATS.items() if t.suffix == suffix), None)
    if named is None or (opts.format is not None and named != opts.format):
        want = FORMATS[opts.format].suffix if opts.format else " or ".join(t.suffix for t in FORMATS.values())
        raise BuildArgumentError(f"-o {opts.output}: an export is written to a {want} file, not "
                                 f"{suffix or 'a name without a suffix'}; nothing was written")
    return named


def load_otio(target: Target) -> Any:
    """The opentimelineio module, with `target`'s adapter available. BuildArgumentError (exit 2)
    naming the install command when either is missing."""
    try:
        import opentimelineio as otio
    except ImportError:
        raise BuildArgumentError(f"ltxflow export needs OpenTimelineIO, which is not installed: {INSTALL}") from None
    if target.adapter not in {a.name for a in otio.plugins.ActiveManifest().adapters}:
        raise BuildArgumentError(f"the {target.what} export needs OpenTimelineIO's {target.adapter} adapter "
                                 f"({target.package}), which is not installed: {INSTALL}")
    return otio


def export(project: Path, opts: ExportOptions) -> ExportResult:
    """Write the project's timeline as the cache holds it now (nothing is rendered). Raises
    ProjectError, BuildArgumentError (bad arguments, the extra missing, an output that would
    overwrite an input), LtxflowError (exit 1) when no chunk is built yet."""
    from ltxflow.execute.cache import Cache, default_cache_dir
    from ltxflow.execute.chunkwork import clip_format
    from ltxflow.execute.prepare import open_plan
    from ltxflow.export.layout import layout, to_otio
    from ltxflow.export.media import copy_media
    from ltxflow.project.paths import overwrites
    from ltxflow.project.resolve import inputs

    name = format_of(opts)
    target = FORMATS[name]
    otio = load_otio(target)
    cache = Cache(default_cache_dir(project.parent, opts.cache_dir))
    plan = open_plan(project, cache, backend=opts.backend, allow_outside_paths=opts.allow_outside_paths)
    rp = plan.project
    if name != "otio" and not timebase_rate(rp.fps):
        raise BuildArgumentError(f"{rp.file}: fps {fps_str(rp.fps)} has no {target.what} timebase (whole numbers and "
                                 "NTSC rates such as 24000/1001 have); use --format otio")
    out = opts.output or rp.output.with_suffix(target.suffix)
    media = None if opts.in_place else out.with_name(f"{out.stem}-media")
    written = [(out, "the export")] + ([(media, "the export's media folder")] if media else [])
    problem = overwrites(written, inputs(rp))
    if problem:
        raise BuildArgumentError(f"{problem}; nothing was written. Name another export with -o")
    clips = built_clips(plan, cache, clip_format(rp))
    if not clips:
        raise LtxflowError(f"no chunk of {rp.file} is in the cache {cache.root}: run `ltxflow build {project}` "
                           "first (the export takes what a build rendered); nothing was written")
    lay = layout(plan, clips)
    audio = rp.audio.path
    if media is not None:
        clips, audio = copy_media(plan, lay, clips, audio, media, clip_format(rp))
    handles = media is not None  # the copies hold the frames each dissolve reads past its seam; the cache's do not
    edl = name == "edl"
    dissolves = handles or not edl  # an EDL's source timecode cannot go before a clip's first frame
    timeline = to_otio(otio, plan, lay, clips, audio, handles=handles, dissolves=dissolves, markers_on_clips=edl)
    notes = []
    if lay.missing:
        shown = ", ".join(lay.missing[:5]) + (f" and {len(lay.missing) - 5} more" if len(lay.missing) > 5 else "")
        notes.append(f"{len(lay.missing)} of {len(plan.chunks)} chunks are not built ({shown}): they are gaps "
                     f"in the export; `ltxflow build {project}` renders them")
    if lay.crossfades and not handles:
        if edl:
            notes.append(f"the EDL has cuts where the video has {lay.crossfades} crossfades: with --in-place the "
                         "clips have no frames past their ends for a dissolve to read (an export without it "
                         "writes them); their seams' LOC comments name them")
        else:
            notes.append(f"with --in-place the clips have no frames past their ends for the {lay.crossfades} "
                         "dissolves to read: an editor shortens or drops them (an export without --in-place "
                         "copies the clips with their first and last frames held there)")
    if media is not None:
        notes += _unused_media(media, {*clips.values(), audio})
    _write(otio, timeline, out, target)
    return ExportResult(out, name, media, len(plan.chunks), len(clips), lay.crossfades if dissolves else 0,
                        len(lay.marks), tuple(notes))


def timebase_rate(fps: Fraction) -> bool:
    """Whether FCP 7 XML and EDL timecode can state `fps`: a whole number, or one over 1.001 (NTSC)."""
    return fps.denominator == 1 or (fps * Fraction(1001, 1000)).denominator == 1


def built_clips(plan: Plan, cache: Cache, fmt: Format) -> dict[str, Path]:
    """Chunk id -> its normalized clip, for the chunks a build of `plan` would take from the cache
    as they are (execute.status: cached), in the variant the build names, else one keeping the
    same frames (as `ltxflow report` finds them). Nothing is decoded or rendered."""
    from ltxflow.execute.chunkwork import variant_namer
    from ltxflow.execute.status import chunk_statuses
    from ltxflow.report.gather import clip_of

    namer = variant_namer(plan, fmt)
    names: dict[str, str] = {}

    def variant(c, tag: str | None) -> str:
        names[c.id] = namer(c, tag)
        return names[c.id]

    statuses = chunk_statuses(plan, cache, {}, variant)  # checking the clips names each one's variant
    out: dict[str, Path] = {}
    for c in plan.chunks:
        if statuses[c.id].status != "cached":
            continue
        entry, _ = cache.lookup(c.key)
        clip = clip_of(entry, c, names[c.id]) if entry is not None and c.id in names else None
        if clip is not None:
            out[c.id] = clip
    return out


def _unused_media(folder: Path, used: set[Path]) -> list[str]:
    """A note naming the files in the media folder this export does not use: an earlier export's
    clips (another build, other crossfades). They are left there, since a timeline written before
    (in an editor's project, or this folder's other formats) may still point at them."""
    names = {p.name for p in used}
    unused = sorted(p.name for p in folder.iterdir()
                    if not p.name.startswith(".") and p.name not in names and p.is_file())
    if not unused:
        return []
    shown = ", ".join(unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
    if len(unused) == 1:
        return [f"1 file in {folder} is not in this export ({shown}): an earlier export's; remove it once no "
                "timeline uses it"]
    return [f"{len(unused)} files in {folder} are not in this export ({shown}): earlier exports'; remove them "
            "once no timeline uses them"]


def _write(otio: Any, timeline: Any, out: Path, target: Target) -> None:
    """The timeline through the target's adapter, renamed into place whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}{out.suffix}")
    try:
        otio.adapters.write_to_file(timeline, str(tmp), adapter_name=target.adapter)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
