"""Finds a working ffmpeg: LTXFLOW_FFMPEG, else one on PATH, else the binary imageio-ffmpeg ships."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

from ltxflow.errors import FfmpegNotFound


@dataclass(frozen=True)
class Ffmpeg:
    path: str
    source: str  # "LTXFLOW_FFMPEG" | "PATH" | "imageio-ffmpeg"
    version: str


def _version(path: str) -> str | None:
    try:
        out = subprocess.run([path, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.startswith("ffmpeg version"):
        return None
    return out.stdout.split()[2]


def candidates(env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The ffmpeg binaries to try, in order of preference, as (path, source)."""
    env = os.environ if env is None else env
    found: list[tuple[str, str]] = []
    if env.get("LTXFLOW_FFMPEG"):
        found.append((env["LTXFLOW_FFMPEG"], "LTXFLOW_FFMPEG"))
        return found  # an explicit choice is never silently replaced
    on_path = shutil.which("ffmpeg", path=env.get("PATH"))
    if on_path:
        found.append((on_path, "PATH"))
    try:
        import imageio_ffmpeg

        found.append((imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg"))
    except (ImportError, RuntimeError):
        pass
    return found


@functools.lru_cache(maxsize=4)
def _find(env_key: tuple[tuple[str, str], ...]) -> Ffmpeg:
    tried = []
    for path, source in candidates(dict(env_key)):
        version = _version(path)
        if version:
            return Ffmpeg(path, source, version)
        tried.append(f"{path} ({source})")
    if not tried:
        raise FfmpegNotFound("no ffmpeg found: install ltxflow's dependencies (imageio-ffmpeg) "
                             "or put ffmpeg on PATH or in LTXFLOW_FFMPEG")
    raise FfmpegNotFound("no working ffmpeg: tried " + ", ".join(tried)
                         + "; set LTXFLOW_FFMPEG to a working ffmpeg binary")


def find_ffmpeg(env: dict[str, str] | None = None) -> Ffmpeg:
    """The ffmpeg to use (checked by running `-version` once per process and environment)."""
    env = os.environ if env is None else env
    key = tuple(sorted((k, v) for k, v in env.items() if k in ("LTXFLOW_FFMPEG", "PATH")))
    return _find(key)
