"""The project read, checked and planned, as every command sees it (build, plan, report, validate)."""

from __future__ import annotations

from pathlib import Path

from ltxflow.execute.cache import Cache, check_cache_root
from ltxflow.plan.planner import Plan, build_plan
from ltxflow.project.resolve import open_project


def open_plan(project: Path, cache: Cache, *, backend: str | None = None, allow_outside_paths: bool = False,
              cache_checked: bool = False) -> Plan:
    """The plan of `project` (with `backend`, else its own): its decoded song and music analysis
    kept in `cache`. Raises ProjectError, or CacheRefused for a cache folder that is not ltxflow's
    own (unless the caller checked it: `cache_checked`)."""
    if not cache_checked:
        check_cache_root(cache.root)
    rp = open_project(project, backend=backend, allow_outside_paths=allow_outside_paths,
                      audio_store=cache.decoded_audio, music_store=cache.music)
    return build_plan(rp)
