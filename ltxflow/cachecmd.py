"""`ltxflow cache ls` and `ltxflow cache gc`: what the chunk store holds, and removing what no project uses.

gc never follows a symbolic link: it removes links in the cache as links, walks no folder through
one, and so never removes anything outside the cache root (see execute/cache.py)."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Callable, Iterator

from ltxflow.errors import LtxflowError, ProjectError
from ltxflow.execute.cache import Cache, Entry, check_cache_root, read_output_stamp, remove_path
from ltxflow.registry import BACKENDS


def project_files(paths: list[Path]) -> Iterator[Path]:
    """Project files under `paths` (files are taken as given; folders searched for *.yaml/*.yml)."""
    for p in paths:
        if p.is_file():
            yield p
        elif p.is_dir():
            for f in sorted(p.rglob("*.y*ml")):
                if ".ltxflow" not in f.parts and f.suffix in (".yaml", ".yml"):
                    yield f


def _looks_like_project(f: Path) -> bool:
    import yaml

    try:
        data = yaml.safe_load(f.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "scenes" in data and "version" in data


def referenced_keys(paths: list[Path], allow_outside_paths: bool = False,
                    cache: Cache | None = None) -> tuple[set[str], list[Path], list[str]]:
    """Chunk keys of every project under `paths`, for every backend (a project built with
    --backend fal keeps its paid entries). Returns (keys, projects read, problems): a file that
    looks like a project but cannot be read is a problem (its entries cannot be told apart).
    `cache`: its decoded songs and music analyses are read (never written), not made again."""
    from ltxflow.plan.planner import build_plan
    from ltxflow.project.resolve import open_project

    keys: set[str] = set()
    read, problems = [], []
    for f in project_files(paths):
        try:
            rp = open_project(f, allow_outside_paths=allow_outside_paths, keep=False,
                              audio_store=cache.decoded_audio if cache else None,
                              music_store=cache.music if cache else None)
        except ProjectError as exc:
            if _looks_like_project(f):
                problems.append(f"{f}: {exc.diagnostics[0] if exc.diagnostics else 'invalid'}")
            continue
        read.append(f)
        for backend in BACKENDS:
            keys |= {c.key for c in build_plan(dataclasses.replace(rp, backend=backend)).chunks}
    return keys, read, problems


def entry_size(entry: Entry) -> int:
    return tree_size(entry.dir)


def gc(cache: Cache, paths: list[Path], dry_run: bool = False, allow_outside_paths: bool = False,
       force: bool = False) -> tuple[list[Entry], list[Path], int, list[str]]:
    """Remove entries no project under `paths` references, and stale files: temporary ones of
    builds that died, what cannot be parsed (unusable entries, invalid stamps, signatures and
    indexes), symbolic links (as links), and the report's kept ends of clips that no kept entry
    holds. Returns (entries removed, stale files removed, bytes freed, problems). Refuses to
    remove anything while a project under `paths` cannot be read, unless `force`; refuses a cache
    root that is a link or another user's (CacheRefused)."""
    check_cache_root(cache.root, links=False)
    keys, read, problems = referenced_keys(paths, allow_outside_paths, cache)
    if not read:
        raise LtxflowError("cache gc: no valid project under " + ", ".join(map(str, paths))
                           + "; refusing to remove every entry")
    if problems and not force:
        raise LtxflowError("cache gc: these projects cannot be read, so their entries cannot be told "
                           "apart; fix them or pass --force:\n  " + "\n  ".join(problems))
    from ltxflow.report.ends import EndsStore

    entries = list(cache.entries())
    gone = [e for e in entries if e.key not in keys]
    clips = {d for e in entries if e.key in keys for d in e.record.variants.values()}
    # Stale: links, temporary files of dead builds, what cannot be parsed, and the report's kept
    # ends of clips no entry keeps. Each once, and nothing inside another one (removed with it).
    found = (cache.links() + cache.stale_tmp() + cache.unusable() + invalid_files(cache)
             + EndsStore(cache.root / "report" / "ends").unused(clips))
    listed = set(found)
    stale = [p for p in dict.fromkeys(found) if listed.isdisjoint(p.parents)]
    freed = sum(entry_size(e) for e in gone) + sum(tree_size(p) for p in stale)
    if not dry_run:
        for e in gone:
            cache.remove(e.key)
        for p in stale:
            remove_path(p)
    return gone, stale, freed, problems


def invalid_files(cache: Cache) -> list[Path]:
    """Files in stamps/, outputs/ and index/ that their readers refuse (a build would ignore them
    and write them anew); dot-files there are temps, left to Cache.stale_tmp."""
    from ltxflow.execute.status import read_index
    from ltxflow.uptodate import read_stamp

    readers: dict[str, Callable[[Path], object]] = {"stamps": read_stamp, "outputs": read_output_stamp,
                                                    "index": read_index}
    out = []
    for name, read in readers.items():
        folder = cache.root / name
        if folder.is_symlink() or not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if not p.name.startswith(".") and not p.is_symlink() and read(p) is None:
                out.append(p)
    return out


def tree_size(p: Path) -> int:
    """Bytes of the files in `p` (a file, a folder, a link: as itself), following no link."""
    try:
        st = os.lstat(p)
    except OSError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    total = 0
    for folder, _, files in os.walk(p):  # os.walk follows no link into a folder
        for f in files:
            try:
                st = os.lstat(os.path.join(folder, f))
            except OSError:
                continue
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total
