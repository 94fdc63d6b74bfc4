"""`ltxflow cache ls` and `ltxflow cache gc`: what the chunk store holds, and removing what no project uses."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Iterator

from ltxflow.errors import LtxflowError, ProjectError
from ltxflow.execute.cache import Cache, Entry
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


def referenced_keys(paths: list[Path], allow_outside_paths: bool = False) -> tuple[set[str], list[Path], list[str]]:
    """Chunk keys of every project under `paths`, for every backend (a project built with
    --backend fal keeps its paid entries). Returns (keys, projects read, problems): a file that
    looks like a project but cannot be read is a problem (its entries cannot be told apart)."""
    from ltxflow.plan.planner import build_plan
    from ltxflow.project.resolve import open_project

    keys: set[str] = set()
    read, problems = [], []
    for f in project_files(paths):
        try:
            rp = open_project(f, allow_outside_paths=allow_outside_paths)
        except ProjectError as exc:
            if _looks_like_project(f):
                problems.append(f"{f}: {exc.diagnostics[0] if exc.diagnostics else 'invalid'}")
            continue
        read.append(f)
        for backend in BACKENDS:
            keys |= {c.key for c in build_plan(dataclasses.replace(rp, backend=backend)).chunks}
    return keys, read, problems


def entry_size(entry: Entry) -> int:
    return sum(p.stat().st_size for p in entry.dir.iterdir() if p.is_file())


def gc(cache: Cache, paths: list[Path], dry_run: bool = False, allow_outside_paths: bool = False,
       force: bool = False) -> tuple[list[Entry], list[Path], int, list[str]]:
    """Remove entries no project under `paths` references, and stale files: temporary ones of
    builds that died, and the report's kept ends of clips that no kept entry holds.
    Returns (entries removed, temp files removed, bytes freed, problems). Refuses to remove
    anything while a project under `paths` cannot be read, unless `force`."""
    keys, read, problems = referenced_keys(paths, allow_outside_paths)
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
    # Stale: temporary files of dead builds, and the report's kept ends of clips no entry keeps.
    stale = cache.stale_tmp() + EndsStore(cache.root / "report" / "ends").unused(clips)
    freed = sum(entry_size(e) for e in gone) + sum(_tree_size(p) for p in stale)
    if not dry_run:
        for e in gone:
            cache.remove(e.key)
        for p in stale:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return gone, stale, freed, problems


def _tree_size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
