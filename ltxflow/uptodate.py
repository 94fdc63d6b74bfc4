"""The no-op build check: is the output of the last successful build of this project, with these
options, still what a build would produce? Standard library only, so it costs about as much as the
CLI's start-up; any doubt falls through to the full build, which plans and checks everything.

A stamp, written after each successful build, records the ltxflow version, the options, the sha256
of the project file's bytes (which holds every scene parameter), and the size, mtime, ctime and
inode of every file the build read or wrote: the song, keyframes, LoRAs, the cached clips and the
output. ctime cannot be set back by a user, so an edited file is never taken for an unchanged one.

A stamp is read as untrusted (the cache may be a pull request's): read_stamp parses it into its
exact shape, and one that is not (or is a link, or holds NaN) is no stamp: the full build runs,
says why ("invalid-stamp") and writes a valid one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from ltxflow import __version__
from ltxflow.files import read_json, write_json_atomic


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
    write_json_atomic(stamp, data)


_HEX = re.compile(r"[0-9a-f]{64}")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def valid_stamp(data: Any) -> bool:
    """Whether `data` is a stamp exactly as write_stamp writes it (types included)."""
    return (isinstance(data, dict) and set(data) == {"ltxflow", "project_sha256", "name", "output", "chunks",
                                                     "files", "backend"}
            and isinstance(data["ltxflow"], str) and isinstance(data["project_sha256"], str)
            and _HEX.fullmatch(data["project_sha256"]) is not None and isinstance(data["name"], str)
            and isinstance(data["output"], str) and isinstance(data["backend"], str)
            and isinstance(data["chunks"], list) and all(isinstance(c, str) for c in data["chunks"])
            and isinstance(data["files"], list)
            and all(isinstance(f, list) and len(f) == 5 and isinstance(f[0], str) and all(_int(n) for n in f[1:])
                    for f in data["files"]))


def read_stamp(stamp: Path) -> dict[str, Any] | None:
    """The stamp at `stamp` (see valid_stamp), or None when absent, unreadable or not one."""
    try:
        data = read_json(stamp)
    except (OSError, ValueError):
        return None
    return data if valid_stamp(data) else None


def check(stamp: Path, project: Path) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """(the stamp's data, {}) when the last build's output is up to date, else (None, why not):
    a reason as data, worded by whoever shows it ({"reason": "no-stamp" | "invalid-stamp" |
    "version" | "project" | "file", "file": the path that changed, or the invalid stamp})."""
    if not os.path.lexists(stamp):
        return None, {"reason": "no-stamp"}
    try:
        data = read_json(stamp)
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and data.get("ltxflow") != __version__:
        return None, {"reason": "version"}
    if not valid_stamp(data):
        return None, {"reason": "invalid-stamp", "file": str(stamp)}
    assert data is not None
    if data["project_sha256"] != project_digest(project):
        return None, {"reason": "project"}
    for recorded in data["files"]:
        if _stat(Path(recorded[0])) != recorded:
            return None, {"reason": "file", "file": recorded[0]}
    return data, {}
