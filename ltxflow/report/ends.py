"""A clip's ends for the build report (small head and tail frames, their steps, two thumbnails),
kept by the clip's sha256 so that a report decodes only the clips it has not seen.

Layout, under the cache (see execute/cache.py):

    report/ends/<sha[:2]>/<sha>.<n>-<side>-v<schema>.npz   head, tail, head_steps, tail_steps,
                                                           first_jpeg, last_jpeg, stat

The name holds everything that shaped the file: the clip's bytes (its sha256), how many frames
each end keeps, how small they are and ENDS_SCHEMA (bump it when what is kept or how it is
computed changes). `stat` is the clip file's size, mtime and inode when it was read: while they
match, the digest recorded when the clip was written is trusted; when they moved, the clip is
hashed again before the kept ends are used (doit's MD5Checker). Files are written to a temp name
and renamed, so a crash never leaves a half-written one that looks finished.

A kept file is read as untrusted (the cache may be a pull request's): only a regular file, never
through a link, no pickles, and only when every array has the shape and type _save gives it;
anything else is no file: the clip is decoded again and the file written anew.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from ltxflow.files import read_plain
from ltxflow.media.probe import file_digest
from ltxflow.media.thumbs import SMALL, ClipEnds, clip_ends, jpeg, steps

ENDS_SCHEMA = 1


@dataclass(frozen=True)
class Ends(ClipEnds):
    """The first and last `n` small frames of a clip (ClipEnds), the steps between consecutive
    ones, and JPEG thumbnails of its first and last frames. `read`: decoded from the clip just now
    (False: taken from the store)."""

    head_steps: list[float]
    tail_steps: list[float]
    first_jpeg: bytes
    last_jpeg: bytes
    read: bool


class EndsStore:
    """Ends by clip digest under `root` (the cache's report/ends/). Thread-safe: files are
    written once under a temp name and renamed; readers only ever see whole files."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, digest: str, n: int) -> Path:
        return self.root / digest[:2] / f"{digest}.{n}-{SMALL}-v{ENDS_SCHEMA}.npz"

    def ends(self, clip: Path, recorded: str | None, n: int, frames: int) -> Ends:
        """The ends of `clip` (of `frames` frames, as planned), from the store when it holds them
        for the clip's digest, else decoded (see thumbs.clip_ends) and stored. `recorded`: the
        sha256 the cache recorded when it wrote the clip (None: hash it now). Raises MediaError
        for a clip that cannot be decoded."""
        st = _stat(clip)
        digest = recorded or file_digest(clip)
        kept = self._load(self.path(digest, n))
        if kept is not None:
            ends, at = kept
            if at == st:
                return ends
            digest = file_digest(clip)  # the file moved since: trust its bytes, not the record
            if digest == recorded:
                self._save(self.path(digest, n), ends, st)  # the same bytes: remember where they are now
                return ends
            kept = self._load(self.path(digest, n))
            if kept is not None:
                return kept[0]
        e = clip_ends(clip, n, frames)
        ends = Ends(e.head, e.tail, steps(e.head), steps(e.tail), jpeg(e.first), jpeg(e.last), read=True)
        self._save(self.path(digest, n), ends, _stat(clip))
        return ends

    def unused(self, keep: set[str]) -> list[Path]:
        """The files of kept ends whose clip digest is not in `keep` (for `cache gc`); no symbolic
        link is followed (gc removes links as links)."""
        out = []
        for shard in _listing(self.root):
            if shard.is_symlink() or not shard.is_dir():
                continue
            out += [p for p in _listing(shard) if p.suffix == ".npz" and not p.is_symlink()
                    and p.name.split(".", 1)[0] not in keep]
        return out

    def _load(self, path: Path) -> tuple[Ends, list[int]] | None:
        """The kept ends at `path` and the clip's stat when they were kept, or None when absent or
        not a file as _save writes it."""
        import numpy as np

        try:
            with np.load(io.BytesIO(read_plain(path, MAX_BYTES)), allow_pickle=False) as z:
                arrays = {name: z[name] for name in _ARRAYS}
        except (OSError, ValueError, KeyError, EOFError):  # absent, or not a file this code wrote
            return None
        if not _valid(arrays):
            return None
        a = arrays
        ends = Ends(list(a["head"]), list(a["tail"]), a["head_steps"].tolist(), a["tail_steps"].tolist(),
                    a["first_jpeg"].tobytes(), a["last_jpeg"].tobytes(), read=False)
        return ends, a["stat"].tolist()

    def _save(self, path: Path, ends: Ends, st: list[int]) -> None:
        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, head=np.stack(ends.head), tail=np.stack(ends.tail),
                 head_steps=np.array(ends.head_steps, dtype=np.float64),
                 tail_steps=np.array(ends.tail_steps, dtype=np.float64),
                 first_jpeg=np.frombuffer(ends.first_jpeg, dtype=np.uint8),
                 last_jpeg=np.frombuffer(ends.last_jpeg, dtype=np.uint8), stat=np.array(st, dtype=np.int64))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                tmp.write_bytes(buf.getvalue())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError:
            pass  # a store that cannot be written costs the next report a decode, nothing more


MAX_BYTES = 32 << 20  # kept ends are tens of kilobytes
_ARRAYS = ("head", "tail", "head_steps", "tail_steps", "first_jpeg", "last_jpeg", "stat")


def _valid(a: dict) -> bool:
    """Whether the arrays are kept ends as _save writes them: frames uint8 (k, h, w, 3) with
    1 <= k and h, w <= SMALL, the same size at both ends; k - 1 finite steps per end; JPEG bytes;
    a stat of three integers."""
    import numpy as np

    head, tail = a["head"], a["tail"]
    frames_ok = all(f.dtype == np.uint8 and f.ndim == 4 and f.shape[0] >= 1 and f.shape[3] == 3
                    and 0 < f.shape[1] <= SMALL and 0 < f.shape[2] <= SMALL for f in (head, tail))
    if not frames_ok or head.shape[1:] != tail.shape[1:]:
        return False
    for steps_, frames in ((a["head_steps"], head), (a["tail_steps"], tail)):
        if steps_.dtype != np.float64 or steps_.shape != (frames.shape[0] - 1,) or not np.isfinite(steps_).all():
            return False
    for j in (a["first_jpeg"], a["last_jpeg"]):
        if j.dtype != np.uint8 or j.ndim != 1 or j.size < 4 or j[:2].tobytes() != b"\xff\xd8":
            return False
    return a["stat"].dtype == np.int64 and a["stat"].shape == (3,)


def _listing(folder: Path) -> list[Path]:
    """The names in `folder`, sorted; [] when it is not a readable folder."""
    try:
        with os.scandir(folder) as it:
            return sorted(Path(e.path) for e in it)
    except OSError:
        return []


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]
