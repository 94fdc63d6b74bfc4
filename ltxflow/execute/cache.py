"""The content-addressed store of rendered chunks under .ltxflow/ (or --cache-dir, LTXFLOW_CACHE_DIR).

Layout (every write is a temp file or folder renamed into place, so a crash or SIGKILL never
leaves anything that looks finished):

    chunks/<key[:2]>/<key>/record.json     what made it: key inputs, seed, backend, cost, timings
                           raw.<ext>       the clip as the backend produced it (none for a backend
                                           that draws its frames, the preview: it draws them again)
                           clip.<variant>  normalized clips: <head>-<kept>-<format tag>[-<colour tag>].<ext>
                           frame<N>.png    frame N as generated, the chain image a following chunk starts from
                           frame<N>.<colour tag>.png   frame N colour-matched (see execute/colorref.py)
    audio/                 span WAVs for backends, encoded master audio for stitching
    index/<project>.json   the last build's chunk keys and key inputs (for `plan --explain`)
    outputs/<hash>.json    signatures of stitched outputs (to skip an up-to-date stitch)
    report/ends/           each clip's first and last frames, small, by the clip's sha256 (report/ends.py)
    report/levels/         the master track's peak envelope, by the song's digest (report/gather.py)
    report/sheets/         the latest contact sheets, by what is drawn on them (report/__init__.py)
    tmp/                   work folders: <name>-<pid>-<random>; `cache gc` removes stale ones
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from ltxflow.files import write_json_atomic
from ltxflow.media.frames import video_info
from ltxflow.media.probe import MediaError, file_digest

RECORD = "record.json"
CACHE_DIR_NAME = ".ltxflow"


def music_store(cache_root: Path, env: dict[str, str] | None = None) -> Path:
    """Where music analyses are kept, by the song's digest (see music/analysis.py): the cache's
    music/ folder, or LTXFLOW_MUSIC_CACHE (one folder shared by projects that use the same songs)."""
    shared = (os.environ if env is None else env).get("LTXFLOW_MUSIC_CACHE")
    return Path(shared).expanduser() if shared else cache_root / "music"


def default_cache_dir(project_root: Path, explicit: Path | None = None, env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if explicit is not None:
        return explicit
    if env.get("LTXFLOW_CACHE_DIR"):
        return Path(env["LTXFLOW_CACHE_DIR"])
    return project_root / CACHE_DIR_NAME


@dataclass(frozen=True)
class Record:
    """An entry's record.json, typed: what made the entry and what it holds. Read (Record.read)
    and written (to_json) here only; fields a newer ltxflow adds are left out of an older one's
    reading, and fields an older record lacks take these defaults."""

    key: str
    chunk: str = ""
    scene: str = ""
    project: str = ""
    backend: str = ""
    endpoint: str = ""
    seed: int | None = None  # as the backend reports it
    cost_usd: float = 0.0
    chains_from: str | None = None
    chain_digest: str | None = None  # sha256 of the start image it was rendered from (chained chunks)
    raw: str | None = None  # the raw clip's file name; None for a drawing backend's entry
    drawn: bool = False  # a drawing backend's: no raw clip, drawn again for another variant
    raw_sha256: str | None = None
    frames: dict[str, str] = field(default_factory=dict)  # chain frames (frame_key) -> sha256
    variants: dict[str, str] = field(default_factory=dict)  # clip variants -> sha256
    stat: dict[str, list[int]] = field(default_factory=dict)  # file name -> [size, mtime_ns] when written
    color_match: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> what matching did
    normalize: dict[str, Any] = field(default_factory=dict)  # NormalizeReport.record() of the first clip
    details: dict[str, Any] = field(default_factory=dict)  # the backend's own (request ids, GPU, ...)
    timings: dict[str, float] = field(default_factory=dict)  # render_s, normalize_s
    inputs: dict[str, Any] = field(default_factory=dict)  # the chunk's key inputs
    created: str = ""
    ltxflow: str = ""

    @classmethod
    def read(cls, data: Any) -> "Record":
        """A record from record.json's object. Raises ValueError when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("key"), str):
            raise ValueError("not a record")
        known = {f.name: f for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name, kind in _RECORD_TYPES.items():
            if name in values and not isinstance(values[name], kind):
                raise ValueError(f"{name} is {type(values[name]).__name__}")
        record = cls(**values)
        if not record.drawn and record.raw is None:
            raise ValueError("no raw clip named")
        return record

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# The fields read checks (the others are free-form data for the report).
_RECORD_TYPES: dict[str, Any] = {
    "chain_digest": (str, type(None)), "raw": (str, type(None)), "drawn": bool, "raw_sha256": (str, type(None)),
    "frames": dict, "variants": dict, "stat": dict, "color_match": dict, "timings": dict,
    "cost_usd": (int, float), "backend": str,
}


@dataclass(frozen=True)
class Entry:
    """A finished cache entry (its folder was renamed into place with a valid record)."""

    key: str
    dir: Path
    record: Record

    @property
    def raw(self) -> Path | None:
        """The clip as the backend produced it; None for a drawing backend's entry (`drawn`)."""
        return self.dir / self.record.raw if self.record.raw else None

    def clip(self, variant: str) -> Path:
        return self.dir / f"clip.{variant}"

    def frame(self, index: int, tag: str | None = None) -> Path:
        """Chain frame `index` as generated, or as colour-matched under `tag`."""
        return self.dir / frame_name(index, tag)

    def frame_digest(self, index: int, tag: str | None = None) -> str | None:
        return self.record.frames.get(frame_key(index, tag))


def file_stat(path: Path) -> list[int]:
    """[size, mtime_ns] of a file, as a record keeps them (see Cache.file_problem)."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def frame_name(index: int, tag: str | None = None) -> str:
    """The file of chain frame `index`: as generated, or colour-matched under `tag`."""
    return f"frame{index}.{tag}.png" if tag else f"frame{index}.png"


def frame_key(index: int, tag: str | None = None) -> str:
    """Names a chain frame in a record's `frames`: "N", or "N.<colour tag>"."""
    return f"{index}.{tag}" if tag else str(index)


class Cache:
    def __init__(self, root: Path):
        self.root = root

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def decoded_audio(self) -> Path:
        """Songs decoded to PCM, by the song file's digest (see probe.keep_audio)."""
        return self.root / "audio" / "decoded"

    @property
    def music(self) -> Path:
        return music_store(self.root)

    def entry_dir(self, key: str) -> Path:
        return self.root / "chunks" / key[:2] / key

    def lookup(self, key: str) -> tuple[Entry | None, str | None]:
        """(entry, None) when a finished entry exists; (None, problem) when one exists but is
        unusable; (None, None) when there is none."""
        d = self.entry_dir(key)
        if not d.exists():
            return None, None
        try:
            data = json.loads((d / RECORD).read_text())
        except (OSError, ValueError) as exc:
            return None, f"unreadable record ({type(exc).__name__})"
        try:
            record = Record.read(data)
        except (TypeError, ValueError):
            return None, "record does not match its key"
        if record.key != key:
            return None, "record does not match its key"
        if record.raw is not None and not (d / record.raw).is_file():
            return None, "its clip is missing"
        return Entry(key, d, record), None

    def clip_problem(self, entry: Entry, variant: str, frames: int, width: int, height: int) -> str | None:
        """None when the entry's clip variant is intact (see file_problem; a clip missing its last
        bytes still demuxes, so counting frames is not enough). A variant recorded without a
        digest is decoded and counted."""
        recorded = entry.record.variants.get(variant)
        if recorded is None:
            return self.verify_clip(entry.clip(variant), frames, width, height)
        return self.file_problem(entry, f"clip.{variant}", recorded)

    def raw_problem(self, entry: Entry) -> str | None:
        """None when the entry's raw clip is intact, or when it keeps none (a drawing backend's:
        drawn again); an entry recorded without the raw clip's digest is taken as it is."""
        if entry.raw is None:
            return None
        return self.file_problem(entry, entry.raw.name, entry.record.raw_sha256)

    def file_problem(self, entry: Entry, name: str, digest: str | None) -> str | None:
        """None when the entry's file `name` is as it was written: the size recorded with it, and
        either the mtime too (nothing is hashed, as doit's MD5Checker) or, when that moved, the
        sha256 `digest`. Old records without a size are hashed. None also when nothing was recorded."""
        path = entry.dir / name
        try:
            st = path.stat()
        except OSError:
            return "missing"
        seen = entry.record.stat.get(name)
        if seen is not None:
            if st.st_size != seen[0]:
                return f"{st.st_size} bytes where {seen[0]} were written"
            if st.st_mtime_ns == seen[1]:
                return None
        if digest is None:
            return None
        return None if file_digest(path) == digest else "its bytes changed since it was written"

    def frame_problem(self, entry: Entry, index: int, tag: str | None = None) -> str | None:
        """None when the chain frame PNG `index` (under colour tag `tag`) is as written (see
        file_problem: its recorded size and mtime, else its sha256)."""
        recorded = entry.frame_digest(index, tag)
        if recorded is None:
            return "missing"
        return self.file_problem(entry, frame_name(index, tag), recorded)

    def verify_clip(self, path: Path, frames: int, width: int, height: int) -> str | None:
        """None when `path` is a readable clip of exactly `frames` frames at width x height."""
        if not path.is_file():
            return "missing"
        try:
            info = video_info(path)
        except MediaError as exc:
            return str(exc)
        if info.frames != frames or (info.width, info.height) != (width, height):
            return f"{info.frames} frames at {info.width}x{info.height}, expected {frames} at {width}x{height}"
        return None

    def work_dir(self, name: str) -> Path:
        """A fresh private folder under tmp/ for one render; the caller commits or removes it."""
        d = self.tmp / f"{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def commit(self, work: Path, key: str, record: Record,
               usable: Callable[[Entry], bool] = lambda entry: True) -> tuple[Entry, bool]:
        """Write the record into `work` and rename the folder into place as the entry for `key`.

        Returns (entry, True), or (the existing entry, False) when another build committed a
        usable entry for the key first: the first one wins and `work` is discarded. An unusable
        previous entry is moved aside and deleted; so is one for which `usable(entry)` is False
        (a chained chunk rendered from a start image that has changed since)."""
        record = replace(record, key=key)
        write_json_atomic(work / RECORD, record.to_json())
        final = self.entry_dir(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            existing, _ = self.lookup(key)
            if existing is not None and usable(existing):
                shutil.rmtree(work, ignore_errors=True)
                return existing, False
            trash = self.tmp / f"trash-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                os.replace(final, trash)
            except FileNotFoundError:
                pass
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(work, final)
        except OSError:  # another build renamed its entry into place between our check and now
            existing, _ = self.lookup(key)
            if existing is None or not usable(existing):
                raise
            shutil.rmtree(work, ignore_errors=True)
            return existing, False
        return Entry(key, final, record), True

    def update_record(self, entry: Entry, **changes: Any) -> Entry:
        record = replace(entry.record, **changes)
        write_json_atomic(entry.dir / RECORD, record.to_json())
        return Entry(entry.key, entry.dir, record)

    def add_file(self, entry: Entry, name: str, produce) -> Path:
        """Make a file inside an existing entry: `produce(tmp_path)` writes it, then it is renamed."""
        target = entry.dir / name
        tmp = entry.dir / f".{os.getpid()}.{uuid.uuid4().hex[:8]}.{name}"
        try:
            produce(tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def entries(self) -> Iterator[Entry]:
        for d in sorted((self.root / "chunks").glob("*/*")):
            entry, _ = self.lookup(d.name)
            if entry is not None:
                yield entry

    def remove(self, key: str) -> None:
        shutil.rmtree(self.entry_dir(key), ignore_errors=True)

    def stale_tmp(self, older_than_s: float = 3600) -> list[Path]:
        """Temporary files and folders left by builds that died: work folders under tmp/ whose
        process is gone, and dot-files (half-written temps) older than `older_than_s` elsewhere."""
        now = time.time()
        out = []
        if self.tmp.exists():
            for p in self.tmp.iterdir():
                pid = _pid_of(p.name)
                if pid is None:
                    if now - p.stat().st_mtime > older_than_s:
                        out.append(p)
                elif not _alive(pid):
                    out.append(p)
        for folder in [*(self.root / "chunks").glob("*/*"), *(self.root / d for d in ("audio", "audio/decoded",
                                                                                      "outputs", "stamps", "index"))]:
            if folder.is_dir():
                out += [p for p in folder.iterdir()
                        if p.name.startswith(".") and p.is_file() and now - p.stat().st_mtime > older_than_s]
        return out


def _pid_of(name: str) -> int | None:
    parts = name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def project_id(project_file: Path) -> str:
    """Names a project's index file: its resolved path, hashed."""
    return hashlib.sha256(str(project_file.resolve()).encode()).hexdigest()[:16]
