"""Files written whole or not at all (a temp name in the same folder, renamed into place), and
files read back from the cache without trusting them: plain files only, never through a link."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 64 << 20  # no cache JSON ltxflow writes comes near this


def write_json_atomic(path: Path, data: Any) -> None:
    """`data` as indented JSON at `path`; a crash leaves the old file or none, never half of one,
    and a failed write (a full disk) leaves no temp file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plain_file(path: Path) -> os.stat_result | None:
    """The stat of `path` when it is a regular file itself (not a symbolic link, a folder, a
    device), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def read_plain(path: Path, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file at `path`, opened without following a symbolic link. Raises
    OSError when it is absent, a link, not a regular file, or larger than `max_bytes`."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))  # a FIFO never blocks
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        if st.st_size > max_bytes:
            raise OSError(f"{path}: {st.st_size} bytes, more than {max_bytes}")
        return f.read(max_bytes + 1)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON in the regular file at `path` (see read_plain). Raises OSError, or ValueError when
    it is not JSON; NaN and Infinity, which JSON does not have and ltxflow never writes, are refused."""
    return json.loads(read_plain(path, max_bytes), parse_constant=_no_constant)
