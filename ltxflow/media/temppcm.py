"""Temporary files of decoded songs: named for the process, removed at exit, swept after a kill.

A song is decoded into a temporary file, as large as the decoded song (hundreds of MB), before it
is kept (probe.keep_audio). Each is named ltxflow-<pid>-<digest12>-<random>.s16 in the temporary
folder and locked while its process holds it. It goes when the process exits (atexit), when the
decode fails or is stopped (the caller's cleanup; SIGTERM is made an exit while decoding, see
terminate_cleanly), and, when the process was killed outright, at the next decode on the machine
(sweep_leftovers).
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_TEMP_PCM: dict[Path, int] = {}  # this process's temporary PCM files, each with a descriptor that holds its lock
_LEFTOVER = re.compile(r"ltxflow-([1-9][0-9]*)-[0-9a-f]{12}-[A-Za-z0-9_]+\.s16")


@atexit.register
def _remove_all() -> None:
    for p in list(_TEMP_PCM):
        remove(p)


def remove(p: Path) -> None:
    """Removes a file new_file made (gone already is fine) and lets go of its lock."""
    p.unlink(missing_ok=True)
    fd = _TEMP_PCM.pop(p, None)
    if fd is not None:
        os.close(fd)


def new_file(digest: str) -> tuple[Path, BinaryIO]:
    """A new temporary PCM file, named for this process and locked for as long as it lives (see
    sweep_leftovers), and a binary file to write it through."""
    fd, tmp = tempfile.mkstemp(prefix=f"ltxflow-{os.getpid()}-{digest[:12]}-", suffix=".s16")
    path = Path(tmp)
    _TEMP_PCM[path] = fd
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (ImportError, OSError):  # no fcntl (Windows), or a file system without locks
        pass
    return path, os.fdopen(os.dup(fd), "wb")


def sweep_leftovers(folder: Path) -> None:
    """Removes the temporary PCM files that processes killed while decoding left in `folder` (a
    SIGKILL runs no cleanup): files of this user, named for a process that no longer runs, that
    no one holds locked (a live process in another PID namespace sharing the folder holds its
    lock). Never follows a link. POSIX only (elsewhere os.kill does not test, it kills)."""
    if os.name != "posix":
        return
    import fcntl

    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        m = _LEFTOVER.fullmatch(entry.name)
        if m is None or int(m.group(1)) == os.getpid():
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            os.kill(int(m.group(1)), 0)
            continue  # its process runs
        except (ProcessLookupError, OverflowError):
            pass
        except OSError:  # a process of another user runs under that pid
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)


@contextmanager
def terminate_cleanly() -> Iterator[None]:
    """While the block runs, SIGTERM (when nothing else handles it: plan, validate) exits through
    SystemExit with the CLI's code for it (143), so the block's cleanup and atexit remove the
    temporary files; killed outright, the process would leave them as large as the song. In the
    main thread only (signal handlers can be set nowhere else); the handler before is put back."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
