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

Nothing read from the cache is trusted. The default cache lies in the project folder, and a pull
request can commit files there (`git add -f`), links included. So a record is parsed into a
Record (execute/record.py) whose every field has its type and every file name is a plain name
inside its entry; an entry holding a symbolic link, or whose record is invalid, is unusable: the
build warns, naming the file, and makes it again; `cache gc` removes it. The other stores parse
what they read the same way (uptodate.read_stamp, status.load_index, read_output_stamp,
music/analysis.load_cached, report/ends.py, the master audio's sidecar in media/stitch.py), and
read only regular files, never through a link (files.read_json).

The cache folder is ours. ltxflow never makes a symbolic link in it, so a cache root that is a
link, a link anywhere inside it, or a root another user owns, can only be someone else's doing:
a build refuses it (check_cache_root, CacheRefused, exit 2) before it reads or writes anything
there, and says what to do. Refusing was chosen over quietly moving the cache elsewhere: it is
explicit, it never writes where the user did not ask, and the fix is one command (remove the
link) or one setting (for CI, LTXFLOW_CACHE_DIR outside the checkout). `cache gc` refuses a
linked or foreign root too, but removes links inside (the link itself, never what it points to)
and never walks through one, so it never touches anything outside the cache root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat as stat_mode
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from ltxflow.errors import CacheRefused
from ltxflow.execute.record import HEX_DIGEST, RECORD, Record, frame_key, frame_name, is_digest, is_int
from ltxflow.files import plain_file, read_json, write_json_atomic
from ltxflow.media.frames import is_video_file, video_info
from ltxflow.media.probe import MediaError, file_digest

CACHE_DIR_NAME = ".ltxflow"


def music_store(cache_root: Path, env: dict[str, str] | None = None) -> Path:
    """Where music analyses are kept, by the song's digest (see music/analysis.py): the cache's
    music/ folder, or LTXFLOW_MUSIC_CACHE (one folder shared by projects that use the same songs)."""
    shared = (os.environ if env is None else env).get("LTXFLOW_MUSIC_CACHE")
    return Path(shared).expanduser() if shared else cache_root / "music"


def default_cache_dir(project_root: Path, explicit: Path | None = None, env: dict[str, str] | None = None) -> Path:
    """The cache folder: `explicit` (--cache-dir), else LTXFLOW_CACHE_DIR, else .ltxflow beside the
    project. Checked before a build uses it: see check_cache_root."""
    env = os.environ if env is None else env
    if explicit is not None:
        return explicit
    if env.get("LTXFLOW_CACHE_DIR"):
        return Path(env["LTXFLOW_CACHE_DIR"])
    return project_root / CACHE_DIR_NAME


_KEEP_OUT = ("keep the cache outside the project with --cache-dir or LTXFLOW_CACHE_DIR (in CI: a folder "
             "outside the checkout, which a pull request cannot reach)")


def check_cache_root(root: Path, *, links: bool = True) -> None:
    """Refuse a cache folder that is not ltxflow's own before anything is read or written there
    (see the module's docstring): `root` a symbolic link, another user's folder,
    or (unless not `links`: `cache gc`, which removes them) holding a symbolic link anywhere.
    Raises CacheRefused (exit 2), saying what to do. A root that does not exist yet passes."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CacheRefused(f"the cache folder {root} cannot be read: {exc.strerror or exc}") from None
    if stat_mode.S_ISLNK(st.st_mode):
        raise CacheRefused(f"the cache folder {root} is a symbolic link (to {os.readlink(root)}): ltxflow writes only "
                           f"into a folder of its own. Remove the link ({root}; a build makes the folder again), "
                           f"or {_KEEP_OUT}")
    if not stat_mode.S_ISDIR(st.st_mode):
        return  # not a folder: making it fails, and says so (build's _writable_folder)
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise CacheRefused(f"the cache folder {root} belongs to another user (uid {st.st_uid}, not {os.geteuid()}): "
                           f"ltxflow uses only a cache of the user running it. Remove it, or {_KEEP_OUT}")
    found = Cache(root).links() if links else []
    if found:
        shown = ", ".join(str(p) for p in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise CacheRefused(f"the cache folder {root} holds symbolic links, which ltxflow never makes (a build would "
                           f"read or write through them): {shown}. Remove them (`ltxflow cache gc` removes the links "
                           f"in a cache, never what they point to), or {_KEEP_OUT}")


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
        unusable (the problem names the file: an invalid record, a symbolic link in the entry, its
        raw clip missing); (None, None) when there is none."""
        d = self.entry_dir(key)
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"{d}: cannot be read ({exc.strerror or exc})"
        if not stat_mode.S_ISDIR(st.st_mode):
            return None, f"{d} is {'a symbolic link' if stat_mode.S_ISLNK(st.st_mode) else 'not a folder'}"
        try:
            with os.scandir(d) as it:
                linked = sorted(e.name for e in it if e.is_symlink())
        except OSError as exc:
            return None, f"{d}: cannot be read ({exc.strerror or exc})"
        if linked:
            return None, f"{d / linked[0]} is a symbolic link (ltxflow makes none)"
        try:
            record = Record.read(read_json(d / RECORD))
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return None, f"{d / RECORD}: {'unreadable' if isinstance(exc, OSError) else 'invalid'} record ({why})"
        if record.key != key:
            return None, f"{d / RECORD}: invalid record (key: another entry's, {record.key[:12]}...)"
        if record.raw is not None and plain_file(d / record.raw) is None:
            return None, f"{d / record.raw}: its raw clip is missing"
        return Entry(key, d, record), None

    def clip_problem(self, entry: Entry, variant: str, frames: int, width: int, height: int) -> str | None:
        """None when the entry's clip variant is intact (see file_problem; a clip missing its last
        bytes still demuxes, so counting frames is not enough). A variant recorded without a
        digest is decoded and counted; a file that does not start as a video does (a list or
        playlist planted with a matching record) is a problem too."""
        recorded = entry.record.variants.get(variant)
        if recorded is None:
            return self.verify_clip(entry.clip(variant), frames, width, height)
        problem = self.file_problem(entry, f"clip.{variant}", recorded)
        if problem is None and not is_video_file(entry.clip(variant)):
            return "not an MP4, MOV, WebM or GIF file"
        return problem

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
        st = plain_file(path)
        if st is None:
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
        if plain_file(path) is None:
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
        if os.path.lexists(final):
            existing, _ = self.lookup(key)
            if existing is not None and usable(existing):
                shutil.rmtree(work, ignore_errors=True)
                return existing, False
            trash = self.tmp / f"trash-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                os.replace(final, trash)
            except FileNotFoundError:
                pass
            remove_path(trash)
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
        """The usable entries (see lookup), found without following a symbolic link."""
        for d in self._slots():
            entry, _ = self.lookup(d.name) if HEX_DIGEST.fullmatch(d.name) and d.parent.name == d.name[:2] else (None, None)
            if entry is not None:
                yield entry

    def unusable(self) -> list[Path]:
        """What under chunks/ is not a usable entry, for `cache gc` to remove: entries whose record
        is unreadable or invalid or whose raw clip is gone, folders and files that are no entry
        (a misplaced name), and symbolic links (removed as links)."""
        out = []
        chunks = self.root / "chunks"
        for shard in _listing(chunks):
            if shard.is_symlink() or not shard.is_dir() or len(shard.name) != 2:
                out.append(shard)
                continue
            for d in _listing(shard):
                if not (HEX_DIGEST.fullmatch(d.name) and d.name[:2] == shard.name) or self.lookup(d.name)[0] is None:
                    out.append(d)
        return out

    def remove(self, key: str) -> None:
        remove_path(self.entry_dir(key))

    def links(self) -> list[Path]:
        """Every symbolic link under the root, found without following any (ltxflow makes none)."""
        out, todo = [], [str(self.root)]
        while todo:
            try:
                with os.scandir(todo.pop()) as it:  # the entries' types come with the listing: no stat each
                    for e in it:
                        if e.is_symlink():
                            out.append(Path(e.path))
                        elif e.is_dir(follow_symlinks=False):
                            todo.append(e.path)
            except OSError:
                continue
        return sorted(out)

    def stale_tmp(self, older_than_s: float = 3600) -> list[Path]:
        """Temporary files and folders left by builds that died: work folders under tmp/ whose
        process is gone, and dot-files (half-written temps, half-downloaded results) older than
        `older_than_s` in the folders where ltxflow writes them. Symbolic links are not followed
        (nor listed: see links)."""
        now = time.time()
        out = []
        for p in _listing(self.tmp):
            if p.is_symlink():
                continue
            pid = _pid_of(p.name)
            if pid is None:
                if now - p.lstat().st_mtime > older_than_s:
                    out.append(p)
            elif not _alive(pid):
                out.append(p)
        folders = [*self._slots(), *(d for d in _listing(self.root / "report" / "ends") if not d.is_symlink()),
                   *(self.root / d for d in _TEMP_FOLDERS)]
        for folder in folders:
            if folder.is_symlink():
                continue
            for p in _listing(folder):
                if p.name.startswith("."):
                    st = plain_file(p)
                    if st is not None and now - st.st_mtime > older_than_s:
                        out.append(p)
        return out

    def _slots(self) -> list[Path]:
        """chunks/<key[:2]>/<name>: where entries are, reached through no symbolic link."""
        return [d for shard in _listing(self.root / "chunks") if not shard.is_symlink() and shard.is_dir()
                for d in _listing(shard)]


# Folders (besides tmp/, entries and report/ends/<xx>/) where ltxflow writes dot-named temps.
# journal/ itself is left alone: its lock file is a dot-file that lives as long as the journal.
_TEMP_FOLDERS = ("audio", "audio/decoded", "outputs", "stamps", "index", "music", "journal/results",
                 "report/levels", "report/sheets", "fal/uploads")


def _listing(folder: Path) -> list[Path]:
    """The names in `folder`, sorted; [] when it is not a readable folder (or is a link)."""
    if folder.is_symlink():
        return []
    try:
        with os.scandir(folder) as it:
            return sorted(Path(e.path) for e in it)
    except OSError:
        return []


def remove_path(path: Path) -> None:
    """Remove a file, a folder and all in it, or a symbolic link (the link itself: never what it
    points to, and never through it)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat_mode.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)  # removes links inside as links
    else:
        path.unlink(missing_ok=True)


def read_output_stamp(path: Path) -> dict[str, Any] | None:
    """A stitched output's signature (outputs/<hash>.json): {"output": path, "signature": sha256 hex,
    "size": bytes, "mtime_ns"}, or None when absent, unreadable or not that shape."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and set(data) == {"output", "signature", "size", "mtime_ns"}
            and isinstance(data["output"], str) and is_digest(data["signature"])
            and is_int(data["size"]) and is_int(data["mtime_ns"]) and data["size"] >= 0):
        return None
    return data


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
