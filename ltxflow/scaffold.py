"""`ltxflow init`: a new project from a song, one scene per section of the music, times in bars.

The project file is written as text (not dumped from the model) so that it carries comments:
one above each key saying what it does, the seconds beside each bar. It is checked as the other
commands read it before init returns: what init writes validates and builds as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ltxflow.errors import BuildArgumentError, ProjectError
from ltxflow.music.grid import Grid
from ltxflow.music.sections import MAX_SECTIONS, MIN_BARS, Section, clock
from ltxflow.project.model import Project, Resolution
from ltxflow.schema import schema_text
from ltxflow.timeline import fps_str, parse_fps

SCHEMA_NAME = "project.schema.json"
MEDIA_DIR = "media"
NEGATIVE = "blurry, low quality, watermark, text"


@dataclass(frozen=True)
class InitOptions:
    backend: str = "preview"
    fps: str = "24"
    resolution: str = "1280x704"
    name: str | None = None  # default: from the song's file name
    link: bool = False  # hard-link the song into the project instead of copying it
    force: bool = False  # replace files init would write that exist with other content
    min_bars: int = MIN_BARS
    max_sections: int = MAX_SECTIONS


@dataclass(frozen=True)
class Scaffold:
    project: Path
    song: Path
    grid: Grid
    sections: tuple[Section, ...]


def slug(text: str) -> str:
    """A song's file stem as a project name: 'Through Space' -> 'through-space'."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out[:60].strip("-") or "project"


def init_project(folder: Path, song: Path, opts: InitOptions, audio_store: Path | None = None,
                 music_store: Path | None = None) -> Scaffold:
    """Write `folder`/<name>.yaml, the song (in media/) and the schema beside it; returns what was
    found. Raises BuildArgumentError (exit 2) for a file that exists with other content, unless
    `opts.force`, and MediaError for a song that cannot be read. Decoded song and analysis are
    kept in the stores, as a build keeps them, so the first plan does not analyse again."""
    from ltxflow.media.probe import AUDIO_EXTENSIONS, keep_audio, probe_audio
    from ltxflow.music.analysis import analyse_track
    from ltxflow.music.grid import make_grid
    from ltxflow.music.sections import find_sections
    from ltxflow.project.resolve import open_project

    song = Path(song)
    if not song.is_file():
        raise BuildArgumentError(f"{song}: no such file")
    if song.suffix.lower() not in AUDIO_EXTENSIONS:
        raise BuildArgumentError(f"{song}: not a song ltxflow reads ({' '.join(sorted(AUDIO_EXTENSIONS))})")
    if folder.exists() and not folder.is_dir():
        raise BuildArgumentError(f"{folder} is a file: init writes a project into a folder (made if missing)")
    fps = _checked_fps(opts.fps)
    _check_resolution(opts.resolution)
    name = slug(opts.name or song.stem)
    project = folder / f"{name}.yaml"
    target = folder / MEDIA_DIR / song.name
    _refuse_existing(project, target, song, opts.force)
    track = probe_audio(song, audio_store)  # before anything is written: an unreadable song writes nothing
    grid = make_grid(analyse_track(track, music_store))
    sections = find_sections(track, grid, min_bars=opts.min_bars, max_sections=opts.max_sections)
    folder.mkdir(parents=True, exist_ok=True)
    _place_song(song, target, opts.link)
    text = project_text(name, f"{MEDIA_DIR}/{song.name}", grid, sections, opts, fps)
    _write(folder / SCHEMA_NAME, schema_text())
    _write(project, text)
    if audio_store is not None:
        keep_audio(track, audio_store)
    try:
        open_project(project, audio_store=audio_store, music_store=music_store)  # it validates as written
    except ProjectError:
        project.unlink(missing_ok=True)  # what does not validate is not left to refuse the next init
        raise
    return Scaffold(project, target, grid, sections)


def _checked_fps(text: str) -> Fraction:
    try:
        return parse_fps(text)
    except ValueError as exc:
        raise BuildArgumentError(f"--fps: {exc}") from None


def _check_resolution(text: str) -> None:
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(Resolution).validate_python(text)
    except ValidationError as exc:
        raise BuildArgumentError(f"--resolution: {exc.errors()[0]['msg']}") from None


def _refuse_existing(project: Path, target: Path, song: Path, force: bool) -> None:
    if force:
        return
    if project.exists() or project.is_symlink():
        raise BuildArgumentError(f"{project} exists: init does not replace a project. Choose another folder or "
                                 "--name, or pass --force to write it anew")
    if target.exists() and not _same_bytes(song, target):
        raise BuildArgumentError(f"{target} exists and is not {song}: init does not replace it. Remove it, choose "
                                 "another folder, or pass --force")


def _same_bytes(a: Path, b: Path) -> bool:
    from ltxflow.media.probe import file_digest

    try:
        return a.resolve() == b.resolve() or (a.stat().st_size == b.stat().st_size
                                              and file_digest(a) == file_digest(b))
    except OSError:
        return False


def _place_song(song: Path, target: Path, link: bool) -> None:
    """The song inside the project (project files name media inside their folder only): a copy,
    or with `link` a hard link (no second copy on disk; the same file system only)."""
    if target.exists() and _same_bytes(song, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        if link:
            try:
                os.link(song, tmp)
            except OSError as exc:
                raise BuildArgumentError(f"--link: cannot hard-link {song} into {target.parent} "
                                         f"({exc.strerror or exc}); the song and the project must be on one "
                                         "file system. Leave out --link to copy it") from None
        else:
            shutil.copyfile(song, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def scene_ids(sections: tuple[Section, ...]) -> list[str]:
    """intro / outro for those roles, else the label and its count: a1, b1, a2, ..."""
    seen: dict[str, int] = {}
    out = []
    for s in sections:
        if s.role:
            out.append(s.role)
            continue
        seen[s.label] = seen.get(s.label, 0) + 1
        out.append(f"{s.label.lower()}{seen[s.label]}")
    return out


def _field(key: str) -> str:
    """What a key of the project does: its description in the model (one source of truth)."""
    return Project.model_fields[key].description or ""


def project_text(name: str, audio: str, grid: Grid, sections: tuple[Section, ...], opts: InitOptions,
                 fps: Fraction) -> str:
    """The project file, comments and all (see the module's docstring)."""
    a = grid.analysis
    bars = grid.bars
    q = json.dumps  # a YAML double-quoted scalar is a JSON string
    first = (f"; bar 1 starts at {bars[0]:.3f} s (beat {grid.phase + 1})" if bars else "; no beats were found")
    lines = [
        f"# yaml-language-server: $schema={SCHEMA_NAME}",
        f"# Made by `ltxflow init` from {audio} ({clock(a.duration)}, {a.tempo:.1f} BPM, {len(bars)} bars of "
        f"{grid.beats_per_bar}{first}).",
        "# One scene per section of the song, as the music analysis found them: cut on bar lines where the",
        "# sound changes, lettered by likeness (sections with one letter sound alike; intro and outro only for a",
        "# quiet first or last section). Whether a section is a verse or a chorus, the analysis cannot know:",
        "# rename the scenes, join or split them as you hear the song. `ltxflow music` prints every bar's time.",
        "# Write each scene's prompt, then: ltxflow plan, ltxflow build.",
        "",
        f"# {_field('version')}",
        "version: 1",
        "# the project's name (the plan and the report show it)",
        f"name: {q(name)}",
        "# the master track, relative to this file",
        f"audio: {q(audio)}",
        f"# frames per second: {_field('fps')}",
        f"fps: {q(fps_str(fps)) if fps.denominator != 1 else fps_str(fps)}",
        f"# {_field('resolution')}",
        f"resolution: {opts.resolution}",
        "# preview: an animatic drawn on the CPU; fal: fal's hosted LTX-2.3 (needs FAL_KEY); local: your GPUs",
        "# (needs the weights: `ltxflow doctor --backend local` lists them). --backend on the command line overrides",
        f"backend: {opts.backend}",
        f"# {_field('model')}",
        "model: ltx-2.3-quality",
        f"# {_field('output')}",
        f"output: out/{name}.mp4",
        "# how scenes are split into chunks the model renders (at most 481 frames each)",
        "chunking:",
        "  # where seams inside a scene go: beats (the nearest beat), gaps (the nearest quiet gap) or even",
        "  boundaries: beats",
        "# how the song's beats group into bars (what `bar N` counts)",
        "music:",
        "  # beats in a bar",
        f"  beats_per_bar: {grid.beats_per_bar}",
        "  # the beat (1-based) bar 1 starts on, as the analysis placed it: the scenes' `bar N` count from it",
        f"  first_bar: {grid.phase + 1}",
        "# what every scene inherits unless it sets its own",
        "defaults:",
        "  # what no picture should show",
        f"  negative_prompt: {q(NEGATIVE)}",
        "",
        "# Each scene starts where the one before ends (`bar N`: the start of bar N); the last runs to the song's end.",
        "scenes:",
    ]
    for i, (s, sid) in enumerate(zip(sections, scene_ids(sections))):
        role = f"{s.role}, " if s.role else ""
        span = f"bars {s.first_bar}-{s.end_bar - 1}" if s.end_bar > s.first_bar else "no bars"
        lines.append(f"  # {role}section {s.label}: {clock(s.start)}-{clock(s.end)} ({s.end - s.start:.1f} s, "
                     f"{span}), level {s.level_db:.1f} dB against the loudest section")
        if i == 0:
            lines += ["  # unique, [a-z0-9_-]+: the name --only and the plan use",
                      f"  - id: {sid}",
                      "    # where the scene starts: seconds, a timecode, or `bar N` / `bar N beat M`",
                      "    start: 0",
                      "    # what the video shows (placeholder: describe the picture, the motion and the light)",
                      f"    prompt: {q(_placeholder(s, sid))}"]
        else:
            lines += [f"  - id: {sid}",
                      f"    start: bar {s.first_bar}  # {clock(s.start)} ({round(s.start * 1000) / 1000:.3f} s)",
                      f"    prompt: {q(_placeholder(s, sid))}"]
    return "\n".join(lines) + "\n"


def _placeholder(s: Section, sid: str) -> str:
    return f"Placeholder for scene {sid} (section {s.label}, {s.end - s.start:.0f} s): describe what the video shows"
