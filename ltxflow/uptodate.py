"""The no-op build check: is the output of the last successful build of this project, with these
options, still what a build would produce? Standard library only, so it costs about as much as the
CLI's start-up; any doubt falls through to the full build, which plans and checks everything.

A stamp, written after each successful build, records the ltxflow version, the options, the sha256
of the project file's bytes (which holds every scene parameter), and the size, mtime, ctime and
inode of every file the build read or wrote: the song, keyframes, LoRAs, the cached clips and the
output. ctime cannot be set back by a user, so an edited file is never taken for an unchanged one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from ltxflow import __version__


def stamp_options(backend: str | None, only: Iterable[str], time_range: tuple[Any, Any] | None,
                  output: Path | None, allow_outside_paths: bool) -> dict[str, Any]:
    """The options that shape a build's output: its stamp is kept under them."""
    return {"backend": backend, "only": list(only), "range": [str(t) for t in time_range] if time_range else None,
            "output": str(output.resolve()) if output else None, "allow_outside_paths": allow_outside_paths}


def stamp_path(cache_root: Path, project: Path, options: dict[str, Any]) -> Path:
    key = json.dumps({"project": str(project.resolve()), **options}, sort_keys=True, default=str)
    return cache_root / "stamps" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _stat(path: Path) -> list[Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def project_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def snapshot(files: Iterable[Path]) -> list[list[Any] | None]:
    """The stat of each file, taken when a build reads its inputs."""
    return [_stat(p) for p in sorted(set(files))]


def write_stamp(stamp: Path, project: Path, project_sha: str | None, inputs: list[list[Any] | None],
                name: str, output: Path, produced: Iterable[Path], chunks: list[str], backend: str = "") -> None:
    """Stamp a finished build. `project_sha` and `inputs` are what the build read, taken before
    it read them: if the project file or an input changed while it ran, no stamp is written (the
    output may predate the change), and the next build checks everything."""
    now_inputs = snapshot(Path(s[0]) for s in inputs if s is not None)
    if project_sha is None or project_digest(project) != project_sha or None in inputs or now_inputs != inputs:
        return
    stats = inputs + snapshot([*produced, output])
    if None in stats:
        return  # something vanished while building
    data = {"ltxflow": __version__, "project_sha256": project_sha, "name": name, "output": str(output),
            "chunks": chunks, "files": stats, "backend": backend}
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, stamp)


def check(stamp: Path, project: Path) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """(the stamp's data, {}) when the last build's output is up to date, else (None, why not):
    a reason as data, worded by whoever shows it ({"reason": "no-stamp" | "version" | "project" |
    "file", "file": the path that changed})."""
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None, {"reason": "no-stamp"}
    if not isinstance(data, dict) or data.get("ltxflow") != __version__:
        return None, {"reason": "version"}
    if data.get("project_sha256") != project_digest(project):
        return None, {"reason": "project"}
    for recorded in data.get("files", []):
        if not isinstance(recorded, list) or _stat(Path(recorded[0])) != recorded:
            return None, {"reason": "file", "file": str(recorded[0]) if isinstance(recorded, list) else "?"}
    return data, {}
