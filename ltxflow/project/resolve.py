"""Resolve phase: defaults merged, media checked and probed, scene times on the frame grid,
an endpoint chosen and checked for every scene. Collects every problem before raising."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ltxflow.endpoints import MANAGED_FIELDS, MANAGED_TERMS, Catalog, Endpoint, Mode, catalog
from ltxflow.errors import Diagnostic, FieldPath, ProjectError
from ltxflow.media.probe import AudioTrack, keep_audio
from ltxflow.project.load import LoadedProject, ModelInvalid, load_project
from ltxflow.project.media import Media, check_media
from ltxflow.project.model import (DEFAULT_CHAIN_OFFSET, SCENE_PARAM_NAMES, SIZE_LIMITS, SIZE_MULTIPLE, SIZE_PRESETS,
                                   DEFAULT_COLOR_STRENGTH, Chunking, FalOptions, Scene, color_strength)
from ltxflow.project.paths import PathRefused, media_ref
from ltxflow.music.grid import Grid
from ltxflow.registry import BACKENDS, BackendSpec
from ltxflow.timeline import MusicTime, largest_valid, seconds_to_frame, timecode

# auto resolution: the first keyframe's aspect ratio at about this many pixels.
AUTO_AREA = 1280 * 704
DEFAULT_SIZE = (1280, 704)

# Scene parameters that map onto an endpoint field and are checked against its range.
ENDPOINT_TERMS = ("negative_prompt", "image_strength", "end_image_strength", "audio_strength",
                  "camera", "camera_scale", "steps", "guidance_scale")


@dataclass(frozen=True)
class ResolvedLora:
    media: Media
    scale: float
    transformer: str


@dataclass(frozen=True)
class ResolvedScene:
    index: int
    id: str
    start_frame: int
    end_frame: int  # exclusive
    endpoint: Endpoint
    values: dict[str, Any]  # vocabulary term -> value, for the terms that are set
    origins: dict[str, FieldPath]  # term -> where in the file it was set
    params: dict[str, Any]  # endpoint extras, in the endpoint's own field names
    image: Media | None
    end_image: Media | None
    loras: tuple[ResolvedLora, ...]
    seed: int | None
    color_match: float = DEFAULT_COLOR_STRENGTH  # share of colour drift taken out of each clip (0: off)
    seam: str = "cut"  # how each chunk of the scene joins the clip before it: cut | crossfade
    crossfade_frames: int = 8

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def mode(self) -> Mode:
        return self.endpoint.mode


@dataclass(frozen=True)
class ResolvedProject:
    loaded: LoadedProject
    name: str
    fps: Fraction
    width: int  # the output's size, as asked
    height: int
    gen_width: int  # the size chunks are generated at: the nearest the backend's model accepts
    gen_height: int
    audio: AudioTrack
    total_frames: int
    backend: str
    seed: int
    max_frames: int
    output: Path
    scenes: tuple[ResolvedScene, ...] = field(default=())
    models: Path | None = None  # the project's `models:` folder (backend local)
    fp8: bool = False
    boundaries: str = "even"  # chunking.boundaries: even | beats | gaps
    window: Fraction = Fraction(2)  # chunking.window, seconds
    chain_offset: int = 0  # chunking.chain_offset
    music: Grid | None = None  # the track's beats and bars, when the project uses them
    fal: FalOptions = FalOptions()  # the project's `fal:` section: platform headers, not in chunk keys
    notes: tuple[str, ...] = ()  # warnings, located like diagnostics (the song down-mixed, ...)

    @property
    def file(self) -> str:
        return self.loaded.source.file

    @property
    def clip_scale(self) -> tuple[int, int] | None:
        """The output size when clips are generated at another and scaled to it, else None."""
        return None if (self.gen_width, self.gen_height) == (self.width, self.height) else (self.width, self.height)


class _Collector:
    """Gathers diagnostics against one loaded project."""

    def __init__(self, loaded: LoadedProject):
        self.loaded = loaded
        self.items: list[Diagnostic] = []

    def add(self, path: FieldPath, message: str) -> None:
        self.items.append(self.loaded.diagnostic(path, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise ProjectError(self.items)


def open_project(path: str | Path, *, backend: str | None = None, allow_outside_paths: bool = False,
                 audio_store: Path | None = None, music_store: Path | None = None,
                 keep: bool = True) -> ResolvedProject:
    """Load and resolve a project file. Raises ProjectError with every problem found: when the
    file fails model validation, problems with the media it names are reported with it. `keep`:
    see resolve_project."""
    try:
        loaded = load_project(path)
    except ModelInvalid as exc:
        found = check_media(exc.data, Path(path).parent, allow_outside_paths, audio_store)
        extra = [exc.source.diagnostic(p, m) for p, m in found.problems]
        raise ProjectError([*exc.diagnostics, *extra]) from None
    return resolve_project(loaded, backend=backend, allow_outside_paths=allow_outside_paths,
                           audio_store=audio_store, music_store=music_store, keep=keep)


def resolve_project(loaded: LoadedProject, *, backend: str | None = None, allow_outside_paths: bool = False,
                    audio_store: Path | None = None, music_store: Path | None = None,
                    cat: Catalog | None = None, keep: bool = True) -> ResolvedProject:
    """Check media, place scenes on the frame grid and pick endpoints. Raises ProjectError.

    `audio_store`: where decoded songs are kept between runs; the song is kept there only once
    the project is valid (nothing is written for an invalid project). `music_store`: where the
    track's analysis is kept (see music/analysis.py); it is made only when the project uses
    musical times or music-placed seams. Not `keep` (validate): both stores are read, and
    nothing is written to either."""
    cat = cat or catalog()
    p = loaded.project
    errs = _Collector(loaded)
    root = loaded.root

    found = check_media(loaded.data, root, allow_outside_paths, audio_store)
    for path, message in found.problems:
        errs.add(path, message)
    media, audio = found.media, found.audio
    output = _output_path(errs, loaded, allow_outside_paths)
    models = _models_path(errs, loaded, allow_outside_paths)
    # Without the audio's length the checks against the end of the song are skipped; the rest run.
    total = seconds_to_frame(audio.duration, p.fps) if audio is not None else None
    if total is not None and total < 1:
        errs.add(("audio",), f"the track is {float(audio.duration):.3f} s: shorter than one frame at the project fps")
        total = None
    grid = _music(loaded, audio, music_store, keep) if total is not None else None
    spans = _scene_frames(errs, loaded, total, grid)
    backend = backend or p.backend
    spec = BACKENDS[backend]
    multiple = spec.size_multiple
    width, height = _size(errs, loaded, media, multiple)
    generated = generation_size(width, height, multiple)
    scenes = []
    for i, scene in enumerate(p.scenes):
        rs = _resolve_scene(errs, loaded, cat, i, scene, spans[i], media)
        if rs is not None:
            scenes.append(rs)
    _check_ids(errs, p.scenes)
    _check_start_images(errs, cat, scenes)
    _check_backend(errs, spec, scenes)
    chain_offset = _chain_offset(errs, p.chunking)
    errs.raise_if_any()
    assert audio is not None and total is not None
    if audio_store is not None and keep:
        audio = keep_audio(audio, audio_store)
    return ResolvedProject(
        loaded=loaded, name=loaded.name, fps=p.fps, width=width, height=height, gen_width=generated[0],
        gen_height=generated[1], audio=audio,
        total_frames=total, backend=backend, seed=p.seed, max_frames=p.chunking.max_frames,
        output=output, scenes=tuple(scenes), models=models,
        fp8=p.fp8, boundaries=p.chunking.boundaries, window=Fraction(str(p.chunking.window)),
        chain_offset=chain_offset, music=grid, fal=p.fal,
        notes=tuple(str(loaded.diagnostic(path, message)) for path, message in found.notes))


def _chain_offset(errs: _Collector, chunking: Chunking) -> int:
    """chunking.chain_offset, or its default: 8 frames, at most a quarter of the longest chunk."""
    top = largest_valid(chunking.max_frames)
    if chunking.chain_offset is None:
        return min(DEFAULT_CHAIN_OFFSET, (top - 1) // 4)
    if chunking.chain_offset > top - 2:
        errs.add(("chunking", "chain_offset"), f"chain_offset {chunking.chain_offset} leaves no frame to keep in "
                                               f"a chunk of {top} frames (max_frames): at most {top - 2}")
    return chunking.chain_offset


def uses_music(loaded: LoadedProject) -> bool:
    """Whether resolving needs the track's analysis: musical scene times, or seams placed on it."""
    p = loaded.project
    return p.chunking.boundaries != "even" or any(
        isinstance(t, MusicTime) for s in p.scenes for t in (s.start, s.end))


def _music(loaded: LoadedProject, audio: AudioTrack | None, store: Path | None, keep: bool = True) -> Grid | None:
    """The track's beats and bars when the project uses them: the analysis kept in `store`, else
    computed (and kept there only when `keep`)."""
    if audio is None or not uses_music(loaded):
        return None
    from ltxflow.music.analysis import analyse_track, compute, load_cached
    from ltxflow.music.grid import make_grid

    m = loaded.project.music
    analysis = analyse_track(audio, store) if keep else (load_cached(store, audio.digest) or compute(audio))
    return make_grid(analysis, m.beats_per_bar, m.first_bar)


def _output_path(errs: _Collector, loaded: LoadedProject, allow_outside: bool) -> Path:
    ref = loaded.project.output or f"out/{loaded.name}.mp4"
    try:
        m = media_ref(ref, loaded.root, urls=False, allow_outside=allow_outside)
        if (loaded.root / ref).is_symlink():
            raise PathRefused(f"{ref!r} is a symbolic link (to {m.path}): ltxflow does not write its output "
                              "through a link, which could name any file; remove the link or name another file")
    except PathRefused as exc:
        errs.add(("output",), str(exc))
        return loaded.root / "out" / f"{loaded.name}.mp4"
    assert m.path is not None
    return m.path


def _models_path(errs: _Collector, loaded: LoadedProject, allow_outside: bool) -> Path | None:
    """`models:`, confined to the project folder as media are: a project file must not point
    backend local at the user's other folders. --models and LTXFLOW_LTX_MODELS, the user's own,
    go anywhere."""
    ref = loaded.project.models
    if ref is None:
        return None
    try:
        m = media_ref(ref, loaded.root, urls=False, allow_outside=allow_outside)
    except PathRefused as exc:
        errs.add(("models",), f"{exc}; weights outside the project are yours to name: --models or LTXFLOW_LTX_MODELS")
        return None
    return m.path


def inputs(rp: ResolvedProject, models: Path | None = None) -> list[tuple[Path, str]]:
    """Every file and folder a build of `rp` reads, with what it is: the project file, the song,
    keyframes, LoRA files, the models folder (the project's, and `models` when another is used).
    Nothing a command writes may be one of these (paths.overwrites)."""
    found = {rp.loaded.path: "the project file", rp.audio.path: "the song"}
    for s in rp.scenes:  # a keyframe many scenes share is named once, by the first
        for what, m in (("start image", s.image), ("end image", s.end_image),
                        *(("LoRA", lo.media) for lo in s.loras)):
            if m is not None and m.ref.path is not None:
                found.setdefault(m.ref.path, f"the {what} of scene '{s.id}'")
    for folder in (rp.models, models):
        if folder is not None:
            found.setdefault(folder, "the models folder")
    return list(found.items())


def _scene_frames(errs: _Collector, loaded: LoadedProject, total: int | None,
                  grid: Grid | None = None) -> list[tuple[int, int]]:
    """Each scene's [start, end) on the frame grid; gaps, overlaps and order are reported.
    `total` (the song's frames) is None when the audio could not be read; musical times are
    resolved on `grid`."""
    p = loaded.project
    fps = p.fps
    tc = lambda f: timecode(f, fps)  # noqa: E731
    n = len(p.scenes)
    spans: list[tuple[int, int]] = []
    prev_end = 0

    def frame(t: Fraction | MusicTime, path: FieldPath, fallback: int) -> int:
        if not isinstance(t, MusicTime):
            return seconds_to_frame(t, fps)
        if grid is None:  # the audio could not be read: reported already
            return fallback
        try:
            return seconds_to_frame(Fraction(str(grid.seconds(t))), fps)
        except ValueError as exc:
            errs.add(path, str(exc))
            return fallback

    for i, s in enumerate(p.scenes):
        start = frame(s.start, ("scenes", i, "start"), prev_end) if s.start is not None else prev_end
        if s.end is not None:
            end = frame(s.end, ("scenes", i, "end"), start + 1)
        elif i + 1 < n and p.scenes[i + 1].start is not None:
            end = frame(p.scenes[i + 1].start, ("scenes", i + 1, "start"), start + 1)
        elif i + 1 < n:
            errs.add(("scenes", i), f"scene '{s.id}' needs an end (or the next scene a start)")
            end = start + 1
        else:
            end = total if total is not None else start + 1
        if s.start is not None and i == 0 and start != 0:
            errs.add(("scenes", 0, "start"), f"the first scene starts at {tc(start)}: nothing covers 0:00.000-{tc(start)}")
        elif s.start is not None and i > 0 and start > prev_end:
            errs.add(("scenes", i, "start"), f"gap {tc(prev_end)}-{tc(start)} between scenes "
                                              f"'{p.scenes[i - 1].id}' and '{s.id}'")
        elif s.start is not None and i > 0 and start < prev_end:
            errs.add(("scenes", i, "start"), f"{tc(start)} overlaps scene '{p.scenes[i - 1].id}', "
                                              f"which ends at {tc(prev_end)}")
        where = ("scenes", i, "end") if s.end is not None else ("scenes", i)
        if end < start:
            errs.add(where, f"{tc(end)} is before start {tc(start)}")
        elif end == start:
            errs.add(where, f"scene '{s.id}' is empty: start and end are both {tc(start)} on the frame grid")
        if total is not None and i == n - 1 and end < total:
            errs.add(where, f"the last scene ends at {tc(end)} but the audio runs to {tc(total)}: "
                            "add a scene or drop this end to run to the end of the audio")
        if total is not None and end > total:
            errs.add(where, f"{tc(end)} is past the end of the audio ({tc(total)})")
        spans.append((start, max(end, start)))
        prev_end = max(end, start)
    return spans


def _size(errs: _Collector, loaded: LoadedProject, media: dict[FieldPath, Media],
          multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    res = loaded.project.resolution
    if res in SIZE_PRESETS:
        return SIZE_PRESETS[res]
    if res != "auto":
        w, h = res.split("x")
        return int(w), int(h)
    for i, scene in enumerate(loaded.project.scenes):
        if scene.image is not None:
            m = media.get(("scenes", i, "image"))
        elif "image" not in scene.model_fields_set:  # `image: null` opts out of the default
            m = media.get(("defaults", "image"))
        else:
            continue
        if m is None:
            continue
        if m.size is None:
            errs.add(("resolution",), f"auto takes the aspect ratio of the first keyframe, but {m.ref.ref} is "
                                      "a URL that is not fetched while planning: set WxH")
            return DEFAULT_SIZE
        size = auto_size(*m.size, multiple=multiple)
        lo, hi = SIZE_LIMITS
        if not all(lo <= side <= hi for side in size):
            errs.add(("resolution",), f"auto gives {size[0]}x{size[1]} from the aspect ratio of {m.ref.ref} "
                                      f"({m.size[0]}x{m.size[1]}), outside {lo}..{hi}: set WxH")
        return size
    return DEFAULT_SIZE


def generation_size(width: int, height: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """The size to generate an output of width x height at: sides in multiples of `multiple` (what
    the model and backend accept), the aspect ratio as near as can be (so normalize's scale to
    cover crops the least), then the pixel count. A size that is already such a multiple is kept.
    1920x1080 -> 1920x1088, 1280x720 -> 1312x736, 3840x2160 -> 3872x2176 (multiple 32)."""
    if width % multiple == 0 and height % multiple == 0:
        return width, height
    aspect, area = math.log(width / height), math.log(width * height)

    def cost(size: tuple[int, int]) -> tuple[float, float]:
        w, h = size
        return (round(abs(math.log(w / h) - aspect) + 0.25 * abs(math.log(w * h) - area), 9), -w * h)

    def near(side: int) -> list[int]:
        base = side // multiple
        return [k * multiple for k in range(max(1, base - 1), base + 3)]

    return min(((w, h) for w in near(width) for h in near(height)), key=cost)


def auto_size(width: int, height: int, area: int = AUTO_AREA, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """A size of about `area` pixels with the aspect ratio of width x height, sides multiples of `multiple`."""
    ratio = width / height
    w = max(multiple, round(math.sqrt(area * ratio) / multiple) * multiple)
    h = max(multiple, round(math.sqrt(area / ratio) / multiple) * multiple)
    return w, h


def _check_ids(errs: _Collector, scenes: list[Scene]) -> None:
    seen: dict[str, int] = {}
    for i, s in enumerate(scenes):
        if s.id in seen:
            errs.add(("scenes", i, "id"), f"duplicate scene id '{s.id}' (also scenes[{seen[s.id]}])")
        seen.setdefault(s.id, i)


def _merged(loaded: LoadedProject, i: int, scene: Scene) -> tuple[dict[str, Any], dict[str, FieldPath]]:
    """Scene parameters with defaults filled in, and where each came from.

    `params` merges key by key; the origin of each key is recorded under "params.<key>"."""
    p = loaded.project
    values: dict[str, Any] = {}
    origins: dict[str, FieldPath] = {}
    for name in SCENE_PARAM_NAMES:
        own, inherited = getattr(scene, name), getattr(p.defaults, name)
        if own is not None:
            values[name], origins[name] = own, ("scenes", i, name)
        elif name in scene.model_fields_set:
            continue  # an explicit `key: null` in the scene drops the inherited default
        elif inherited is not None:
            values[name], origins[name] = inherited, ("defaults", name)
    params: dict[str, Any] = {}
    for base, src in ((("defaults", "params"), p.defaults.params), (("scenes", i, "params"), scene.params)):
        for key, value in (src or {}).items():
            params[key] = value
            origins[f"params.{key}"] = base + (key,)
    values["params"] = params
    for name, top in (("endpoint", p.endpoint), ("model", p.model)):
        if name not in values and top is not None:
            values[name], origins[name] = top, (name,)
    return values, origins


def _inherited(origins: dict[str, FieldPath], key: str, scene_id: str) -> str:
    """' (scene x)' when a value came from defaults or the top level, so the message names the scene."""
    return "" if origins[key][0] == "scenes" else f" (scene '{scene_id}')"


def _choose_endpoint(errs: _Collector, cat: Catalog, values: dict[str, Any],
                     origins: dict[str, FieldPath]) -> Endpoint | None:
    wants_loras = bool(values.get("loras"))
    driven = values.get("audio_driven")
    if "endpoint" in values:
        ep = cat.get(values["endpoint"])
        if ep is None:
            close = difflib.get_close_matches(values["endpoint"], list(cat.endpoints), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known: {', '.join(cat.endpoints)}"
            errs.add(origins["endpoint"], f"unknown endpoint '{values['endpoint']}'{hint}")
            return None
        if ep.lora and not wants_loras and ep.sibling:
            ep = cat.endpoints[ep.sibling]  # no LoRAs: the non-LoRA sibling
        if driven is not None and (ep.mode == "audio-to-video") != driven:
            errs.add(origins["audio_driven"], f"audio_driven: {str(driven).lower()} conflicts with endpoint "
                                              f"{ep.id}, which is {ep.mode}")
            return None
        return ep
    family = values["model"]
    if family not in cat.families:
        close = difflib.get_close_matches(family, list(cat.families), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else f"; known: {', '.join(cat.families)}"
        errs.add(origins["model"], f"unknown model family '{family}'{hint}")
        return None
    mode: Mode = "image-to-video" if driven is False else "audio-to-video"
    return cat.for_family(family, mode, wants_loras)


def _alternatives(cat: Catalog, term: str, ep: Endpoint, scene_id: str, explicit_endpoint: bool) -> str:
    """What to change so the scene gets an endpoint that takes `term`: a model family when one
    does (what a user writes), else the endpoint ids that do."""
    families = cat.families_supporting(term, ep.mode, ep.lora)
    if families and not explicit_endpoint:
        first, *rest = families
        also = f" (or {' / '.join(rest)})" if rest else ""
        return f"set `model: {first}`{also} in scene '{scene_id}' or in defaults"
    ids = cat.supporting(term, ep.mode) or cat.supporting(term)
    return f"endpoints that do: {', '.join(ids) if ids else 'none in the catalog'}"


def _resolve_scene(errs: _Collector, loaded: LoadedProject, cat: Catalog, i: int, scene: Scene,
                   span: tuple[int, int], media: dict[FieldPath, Media]) -> ResolvedScene | None:
    values, origins = _merged(loaded, i, scene)
    ep = _choose_endpoint(errs, cat, values, origins)
    if ep is None:
        return None
    before = len(errs.items)

    def unsupported(term: str, what: str) -> None:
        hint = f"; or set {term}: null in scene '{scene.id}'" if origins[term][0] == "defaults" else ""
        errs.add(origins[term], f"{ep.id} takes no {what}{_inherited(origins, term, scene.id)}; "
                                f"{_alternatives(cat, term, ep, scene.id, 'endpoint' in origins)}{hint}")

    if not values.get("prompt"):
        errs.add(("scenes", i), f"scene '{scene.id}' has no prompt (set prompt: here or in defaults)")
    if values.get("end_image") is not None and not ep.supports("end_image"):
        unsupported("end_image", "end image")
    if values.get("loras") and not ep.supports("loras"):
        unsupported("loras", "LoRAs")
    if values.get("camera") == "none":
        del values["camera"]
    for term in ENDPOINT_TERMS:
        if term not in values:
            continue
        needs = {"camera_scale": "camera", "end_image_strength": "end_image"}.get(term)
        if needs and values.get(needs) is None:
            if origins[term][0] == "defaults":
                del values[term]  # a default applies only to the scenes it is relevant to
            else:
                errs.add(origins[term], f"{term} without {'a camera move' if needs == 'camera' else 'an end_image'}")
        elif not ep.supports(term):
            unsupported(term, "camera move (camera LoRA)" if term == "camera" else term.replace("_", " "))
        else:
            problem = ep.fields[ep.vocab[term]].check(values[term])
            if problem:
                errs.add(origins[term], f"{problem} for {ep.id}{_inherited(origins, term, scene.id)}")
    _check_params(errs, ep, values["params"], origins, scene.id)
    lora_media = [media.get(origins["loras"] + (j, "path")) for j in range(len(values.get("loras") or ()))]
    if len(errs.items) > before or None in lora_media:  # a LoRA file that failed is reported already
        return None
    loras = tuple(ResolvedLora(m, lora.scale, lora.transformer)
                  for m, lora in zip(lora_media, values.get("loras") or ()))
    return ResolvedScene(
        index=i, id=scene.id, start_frame=span[0], end_frame=span[1], endpoint=ep,
        values={k: values[k] for k in ("prompt",) + ENDPOINT_TERMS if k in values},
        origins=origins, params=values["params"],
        image=media.get(origins["image"]) if "image" in origins else None,
        end_image=media.get(origins["end_image"]) if "end_image" in origins else None,
        loras=loras, seed=values.get("seed"), color_match=color_strength(values.get("color_match")),
        seam=values.get("seam", "cut"), crossfade_frames=values.get("crossfade_frames", 8))


def _check_backend(errs: _Collector, spec: BackendSpec, scenes: list[ResolvedScene]) -> None:
    """What the backend cannot do (its registry line says), found before anything renders: moves
    of `camera:` (fal adds camera LoRAs; backend local's published weights have none), media as
    URLs (backend local reads files)."""
    for s in scenes:
        if "camera" in s.values and not spec.camera_moves:
            errs.add(s.origins["camera"], f"backend {spec.name} has no camera moves (fal adds camera LoRAs): drop "
                                          f"camera in scene '{s.id}', or give a camera-control LoRA file in loras")
        if not spec.files_only:
            continue
        for term, m in (("image", s.image), ("end_image", s.end_image)):
            if m is not None and m.ref.url is not None:
                errs.add(s.origins[term], f"backend {spec.name} reads images from files: download {m.ref.url} into "
                                          "the project and name the file")
        for j, lo in enumerate(s.loras):
            if lo.media.ref.url is not None:
                errs.add(s.origins["loras"] + (j, "path"), f"backend {spec.name} reads LoRAs from files: download "
                                                           f"{lo.media.ref.url} and name the file")


def _check_params(errs: _Collector, ep: Endpoint, params: dict[str, Any], origins: dict[str, FieldPath],
                  scene_id: str) -> None:
    term_of = {f: t for t, f in ep.vocab.items()}
    for name, value in params.items():
        key = f"params.{name}"
        path, where = origins[key], _inherited(origins, key, scene_id)
        spec = ep.fields.get(name)
        if spec is None:
            close = difflib.get_close_matches(str(name), list(ep.fields), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            errs.add(path, f"{ep.id} has no field '{name}'{hint}{where}")
        elif name in term_of and term_of[name] in MANAGED_TERMS:
            errs.add(path, f"'{name}' is set by ltxflow from the project ({term_of[name]})")
        elif name in term_of:
            errs.add(path, f"'{name}' is set by the scene key '{term_of[name]}'; use that")
        elif name in MANAGED_FIELDS:
            errs.add(path, f"'{name}' is managed by ltxflow and cannot be set")
        else:
            problem = spec.check(value)
            if problem:
                errs.add(path, f"{problem} for {ep.id}{where}")


def _check_start_images(errs: _Collector, cat: Catalog, scenes: list[ResolvedScene]) -> None:
    """An image-to-video scene needs a keyframe or a previous scene to chain from."""
    for s in scenes:
        if s.endpoint.start_image_required and s.image is None and s.index == 0 and "image" not in s.origins:
            errs.add(("scenes", s.index), f"scene '{s.id}' is image-to-video ({s.endpoint.id}) but has no start "
                                          "image and nothing to chain from: give it an image, or make it "
                                          "audio_driven (endpoints: "
                                          f"{', '.join(cat.supporting('audio'))})")
