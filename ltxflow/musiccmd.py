"""`ltxflow music`: a song's tempo, bars with their times, sections and quiet gaps, to write scene
times by hand; of a song file, or of a project's song with its own `music:` settings and cache."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ltxflow.errors import BuildArgumentError, printable
from ltxflow.music.analysis import QUIET_DB, MIN_GAP_S
from ltxflow.music.grid import Grid
from ltxflow.music.sections import Section, clock

PROJECT_SUFFIXES = (".yaml", ".yml")
BARS_PER_LINE = 6


@dataclass(frozen=True)
class SongMusic:
    song: Path
    duration: float
    grid: Grid
    sections: tuple[Section, ...]


def song_music(source: Path, *, beats_per_bar: int | None = None, first_bar: int | None = None,
               allow_outside_paths: bool = False) -> SongMusic:
    """The music of `source`: a song file, or a project file (its song, `music:` settings and
    cache). Options given here override the project's. Raises MediaError, ProjectError."""
    from ltxflow.execute.cache import Cache, check_cache_root, default_cache_dir
    from ltxflow.media.probe import probe_audio
    from ltxflow.music.analysis import analyse_track
    from ltxflow.music.grid import make_grid
    from ltxflow.music.sections import find_sections

    source = Path(source)
    if not source.is_file():
        raise BuildArgumentError(f"{source}: no such file")
    audio_store = None
    if source.suffix.lower() in PROJECT_SUFFIXES:
        song, settings = _project_song(source, allow_outside_paths)
        beats_per_bar = beats_per_bar or settings.beats_per_bar
        first_bar = first_bar or settings.first_bar
        cache = Cache(default_cache_dir(source.parent))
        check_cache_root(cache.root)
        audio_store, store = cache.decoded_audio, cache.music
    else:
        song = source
        shared = os.environ.get("LTXFLOW_MUSIC_CACHE")  # no project: a shared store only, when set
        store = Path(shared).expanduser() if shared else None
    track = probe_audio(song, audio_store)
    grid = make_grid(analyse_track(track, store), beats_per_bar or 4, first_bar)
    return SongMusic(song, float(track.duration), grid, find_sections(track, grid))


def _project_song(project: Path, allow_outside_paths: bool):
    from ltxflow.errors import ProjectError
    from ltxflow.project.load import load_project
    from ltxflow.project.paths import PathRefused, media_ref

    loaded = load_project(project)
    try:
        ref = media_ref(loaded.project.audio, loaded.root, urls=False, allow_outside=allow_outside_paths)
    except PathRefused as exc:
        raise ProjectError([loaded.diagnostic(("audio",), str(exc))]) from None
    assert ref.path is not None
    return ref.path, loaded.project.music


def music_json(m: SongMusic) -> dict:
    g, a = m.grid, m.grid.analysis
    return {"song": str(m.song), "duration": round(m.duration, 4), "tempo": a.tempo,
            "beats_per_bar": g.beats_per_bar, "first_bar": g.phase + 1 if g.beats else None,
            "beats": list(g.beats),
            "bars": [{"bar": i + 1, "start": t} for i, t in enumerate(g.bars)],
            "sections": [s.to_json() for s in m.sections],
            "gaps": [{"start": s, "end": e, **({"bar": _bar_of(g, s)} if g.bars else {})} for s, e in g.gaps]}


def _bar_of(g: Grid, t: float) -> int:
    """The bar `t` lies in (0: the pickup before bar 1)."""
    import bisect

    return bisect.bisect_right(g.bars, t)


def music_text(m: SongMusic) -> str:
    g, a = m.grid, m.grid.analysis
    bars = g.bars
    head = f"{printable(m.song.name)}: {clock(m.duration)}, "
    if not bars:
        return head + "no beats found: write scene times in seconds\n"
    lines = [head + f"{a.tempo:.1f} BPM, {len(g.beats)} beats, {len(bars)} bars of {g.beats_per_bar}; bar 1 at "
             f"{clock(bars[0])} (beat {g.phase + 1}{', after a pickup' if g.phase else ''})",
             "", "bars (write `bar N` in a project: the start of bar N):"]
    cells = [f"bar {i + 1:>3} {clock(t)}" for i, t in enumerate(bars)]
    lines += ["  " + "   ".join(cells[i:i + BARS_PER_LINE]) for i in range(0, len(cells), BARS_PER_LINE)]
    lines += ["", "sections (cut on bar lines where the sound changes; one letter: they sound alike; the analysis "
                  "cannot tell a verse from a chorus):"]
    for s in m.sections:
        tag = f"{s.label} {s.role}".strip()
        lines.append(f"  {tag:<8} {clock(s.start)}-{clock(s.end)}  bars {s.first_bar:>3}-{s.end_bar - 1:<3}  "
                     f"{s.end - s.start:6.1f} s  {s.level_db:6.1f} dB")
    lines += ["", f"quiet gaps ({QUIET_DB:g} dB below the loud parts for {MIN_GAP_S:g} s or more; "
                  "chunking.boundaries: gaps puts seams in them):"]
    lines += [f"  {clock(s)}-{clock(e)}  {e - s:5.2f} s  bar {_bar_of(g, s)}" for s, e in g.gaps] or ["  none"]
    return "\n".join(lines) + "\n"
