"""The build journal: hosted requests that were submitted (paid for) and not yet in the cache.

One small JSON file per chunk key under <cache>/journal/, written atomically the moment a submit
returns, so a build that crashes, is killed or interrupted picks its requests up again instead of
paying for them twice. An entry goes when its chunk is committed to the cache, when fal says the
request failed, or when `ltxflow cancel` cancelled it. An entry holds where to follow the request
(fal's status/response/cancel URLs), never a key.

Trust. The cache lies in the project folder, which a pull request can commit, so an entry is
read as untrusted data: `Journal.read` parses it into a JournalEntry (exact fields and types) and
names any problem: its `key` is not its file's name, it was journalled against another queue, a
URL is not on the configured queue (scheme, host and port) or not that entry's own endpoint app
and request id, or its `result_file` is not a plain file inside <cache>/journal/results/. A
problem entry is never followed: the build deletes it with a warning and treats its chunk as
never submitted. That cannot pay twice for anything ltxflow submitted: ltxflow only ever
journals handles the configured queue answered (checked the same way before they are written),
so an entry that fails these checks was not written by ltxflow for this configuration, or was
altered since; following it would send the key somewhere else.

Intents. fal has no idempotency key, so a crash between fal accepting a submit and the entry
being written would lose a paid request. Right before each submit the chunk's file holds a
JournalIntent instead (state "intent": what is about to be submitted, no request id), replaced by
the JournalEntry when fal answers, removed when fal refuses the submit. An intent found later means
"maybe submitted": it is never followed (there is nothing to follow); the build submits the chunk
again and reports a possible duplicate charge. Entries keep their earlier shape (no state field),
so entries written by the previous version read as before.

One hosted build at a time uses a cache's journal (JournalLock: an flock on journal/.lock that the
kernel releases when its holder dies, however it dies).
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from ltxflow.backends.falapi import origin
from ltxflow.errors import CacheInUse
from ltxflow.files import write_json_atomic

ENTRY_MAX_BYTES = 64 * 1024  # an entry is a few hundred bytes; anything larger is not one
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # fal's are UUIDs
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")


class JournalEntry(BaseModel):
    """One journalled request, exactly as ltxflow writes it (anything else is refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    key: str
    chunk: str
    project: str | None = None
    host: str  # the queue (LTXFLOW_FAL_QUEUE_URL) it was submitted to
    endpoint: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str
    submitted: str | None = None
    scene: str | None = None
    start_image: str | None = None  # digest of the start frame (or its URL) the request was made from
    possible_duplicate: bool = False
    result_file: str | None = None  # the downloaded clip's name in journal/results/, once fetched
    fal_seed: Any = None  # as fal answered it (only an integer is reported)
    headers: dict[str, str] | None = None  # the platform headers the submit carried (None: written before them)


class JournalIntent(BaseModel):
    """A submit about to be sent (no answer yet): what a crash leaves when fal's answer was never
    recorded. Never followed; it only tells the next build that the chunk may be paid for already."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    state: Literal["intent"]
    key: str
    chunk: str
    project: str | None = None
    host: str  # the queue it was about to be submitted to
    endpoint: str
    written: str
    scene: str | None = None
    start_image: str | None = None
    cost_usd: float = 0.0  # the endpoint's price for the chunk, as estimated when it was written


class _Handle(Protocol):
    endpoint: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


def handle_problem(handle: _Handle, queue: str) -> str | None:
    """Why a request handle is not one to follow with the key at `queue`, or None.

    fal's queue URLs are {queue}/{owner}/{app}/requests/{request_id}[/status|/cancel] (the app
    being the endpoint id's first two segments; fal's notes and its client build them so). The
    endpoint's further path between the app and /requests is tolerated, nothing else."""
    if not _REQUEST_ID.fullmatch(handle.request_id):
        return "its request_id is not one fal gives"
    endpoint = handle.endpoint.split("/")
    if len(endpoint) < 2 or not all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in endpoint):
        return "its endpoint is not an endpoint id"
    home = origin(queue)
    base = [s for s in urlsplit(queue).path.split("/") if s]
    for name, suffix in (("status_url", ["status"]), ("response_url", []), ("cancel_url", ["cancel"])):
        url = getattr(handle, name)
        if home is None or origin(url) != home:
            return f"its {name} is not on the configured fal queue (LTXFLOW_FAL_QUEUE_URL)"
        u = urlsplit(url)
        path = u.path.split("/")[1:] if u.path.startswith("/") else []
        head, tail = base + endpoint[:2], ["requests", handle.request_id] + suffix
        middle = path[len(head):len(path) - len(tail)]
        if u.query or u.fragment or len(path) < len(head) + len(tail) or path[:len(head)] != head \
                or path[len(path) - len(tail):] != tail or middle != endpoint[2:2 + len(middle)]:
            return f"its {name} is not request {handle.request_id} of {'/'.join(endpoint[:2])}"
    return None


@dataclass(frozen=True)
class Found:
    """What one journal file holds: a sound `entry`, or the `problem` that keeps it from being
    followed. `project` is the project the file names, sound or not (cancel reports by project)."""

    key: str
    entry: JournalEntry | None
    problem: str | None = None
    project: str | None = None
    other_queue: bool = False  # sound, but journalled against another queue: left for that queue
    intent: JournalIntent | None = None  # a submit whose answer was never recorded (maybe paid for)


class Journal:
    def __init__(self, cache_root: Path, project: Path | None = None):
        self.dir = cache_root / "journal"
        self.results = cache_root / "journal" / "results"
        self.project = str(project.resolve()) if project is not None else None

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def read(self, key: str, queue: str | None = None) -> Found:
        """The entry of `key`, checked (against `queue` when given): see the module docstring."""
        path = self._path(key)
        where = "".join(ch if ch.isprintable() else "?" for ch in str(path))  # a file's name is anyone's text
        raw = _read_small(path)
        if raw is None:
            return Found(key, None)
        if isinstance(raw, str):
            return Found(key, None, f"{where}: {raw}")
        project = raw.get("project") if isinstance(raw.get("project"), str) else None
        if "state" in raw:
            return self._read_intent(key, raw, where, project, queue)
        try:
            entry = JournalEntry.model_validate(raw)
        except ValidationError as exc:
            said = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors()[:3])
            said = "".join(ch if ch.isprintable() else "?" for ch in said)[:300]
            return Found(key, None, f"{where}: not a journal entry ltxflow writes ({said})", project)
        if entry.key != key:
            return Found(key, None, f"{where}: its key field is not its file's name", project)
        if queue is not None and entry.host != queue:
            return Found(key, None, f"{where}: it was journalled against another fal queue than the configured one "
                                    "(LTXFLOW_FAL_QUEUE_URL)", project, other_queue=handle_problem(entry, entry.host) is None)
        problem = handle_problem(entry, queue) if queue is not None else None
        return Found(key, None, f"{where}: {problem}", project) if problem else Found(key, entry, None, project)

    @staticmethod
    def _read_intent(key: str, raw: dict[str, Any], where: str, project: str | None, queue: str | None) -> Found:
        try:
            intent = JournalIntent.model_validate(raw)
        except ValidationError as exc:
            said = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'intent'}: {e['msg']}" for e in exc.errors()[:3])
            said = "".join(ch if ch.isprintable() else "?" for ch in said)[:300]
            return Found(key, None, f"{where}: not a journal intent ltxflow writes ({said})", project)
        if intent.key != key:
            return Found(key, None, f"{where}: its key field is not its file's name", project)
        if queue is not None and intent.host != queue:
            return Found(key, None, f"{where}: it was journalled against another fal queue than the configured one "
                                    "(LTXFLOW_FAL_QUEUE_URL)", project)
        return Found(key, None, None, project, intent=intent)

    def get(self, key: str, queue: str | None = None) -> JournalEntry | None:
        """The sound entry of `key`, or None (none, or one not to follow)."""
        return self.read(key, queue).entry

    def scan(self, queue: str | None = None) -> Iterator[Found]:
        if not self.dir.is_dir():
            return
        for p in sorted(self.dir.glob("*.json")):
            if not p.name.startswith("."):
                yield self.read(p.stem, queue)

    def submitted(self, key: str, chunk: str, host: str, handle: dict[str, str], **extra: Any) -> None:
        """Record a request the moment fal accepted it."""
        entry = JournalEntry(key=key, chunk=chunk, project=self.project, host=host, **handle,
                             submitted=datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra)
        write_json_atomic(self._path(key), entry.model_dump())

    def intent(self, key: str, chunk: str, host: str, endpoint: str, **extra: Any) -> None:
        """Record a submit about to be sent (replaced by `submitted` when fal answers)."""
        intent = JournalIntent(state="intent", key=key, chunk=chunk, project=self.project, host=host,
                               endpoint=endpoint, written=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               **extra)
        write_json_atomic(self._path(key), intent.model_dump())

    def update(self, key: str, **fields: Any) -> None:
        entry = self.get(key)
        if entry is not None:
            write_json_atomic(self._path(key), JournalEntry.model_validate({**entry.model_dump(), **fields}).model_dump())

    def remove(self, key: str) -> None:
        """Forget a request (its chunk is cached, or it failed or was cancelled) and its download.
        A file that is not a sound entry goes too; what it names outside results/ is never touched."""
        entry = self.get(key)
        result = self.result_of(entry) if entry is not None else None
        if result is not None:
            result.unlink(missing_ok=True)
        self._path(key).unlink(missing_ok=True)  # a link is removed, not what it points to

    def keys(self, queue: str | None = None) -> set[str]:
        """Chunk keys with a sound journalled request (already paid for), on `queue` when given."""
        return {f.key for f in self.scan(queue) if f.entry is not None}

    def for_project(self, project: Path, queue: str | None = None) -> list[Found]:
        """The journal files that name `project`, sound or not."""
        where = str(project.resolve())
        return [f for f in self.scan(queue) if f.project == where]

    # -- downloads ----------------------------------------------------------------------------------

    def result_path(self, request_id: str, suffix: str) -> Path:
        """Where a request's clip is downloaded: a plain file in results/ (a link there is replaced)."""
        if self.results.is_symlink():
            self.results.unlink()
        self.results.mkdir(parents=True, exist_ok=True)
        safe = "".join(ch for ch in request_id if ch.isalnum() or ch in "-_")[:80] or "request"
        return self.results / f"{safe}{suffix}"

    def result_of(self, entry: JournalEntry) -> Path | None:
        """The downloaded clip of `entry`: the file of that name in results/, when it is a regular
        file there (None otherwise: the result is fetched again). Only the name counts: older
        versions wrote a path (absolute, or relative to where the build ran), and whatever a
        result_file says, nothing outside results/ and no link is ever read or removed."""
        if entry.result_file is None or self.results.is_symlink():
            return None
        name = entry.result_file.replace("\\", "/").rsplit("/", 1)[-1]
        if name in ("", ".", "..") or name.startswith(".") or "\0" in name:
            return None
        path = self.results / name
        try:
            return path if stat.S_ISREG(os.lstat(path).st_mode) else None
        except (OSError, ValueError):
            return None

    # -- one build at a time ------------------------------------------------------------------------

    def lock(self) -> "JournalLock":
        """Take the journal for this process's build (raises CacheInUse when another holds it)."""
        return JournalLock(self.dir / ".lock", self.project).acquire()


class JournalLock:
    """An exclusive flock on journal/.lock held while a hosted build may submit and follow requests,
    so two builds of one cache never both submit a chunk. The file says who holds it (pid, project);
    a lock file whose holder died is not locked any more (the kernel drops a dead process's flock),
    so it is taken over. Where flock does not exist (Windows) nothing is locked."""

    def __init__(self, path: Path, project: str | None):
        self.path, self.project = path, project
        self.fd: int | None = None

    def acquire(self) -> "JournalLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0))
            os.close(fd)
            raise CacheInUse(f"another hosted build ({holder}) is using this cache ({self.path.parent.parent}); "
                             "wait for it or stop it, then build again; nothing was submitted") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "project": self.project}).encode(), 0)
        self.fd = fd
        return self

    def _open(self) -> int:
        """The lock file, never through a link (a committed link could aim the write elsewhere)."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(2):
            try:
                fd = os.open(self.path, flags | os.O_NONBLOCK, 0o644)
            except OSError:
                if not self.path.is_symlink():
                    raise
                self.path.unlink()
                continue
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.set_blocking(fd, True)
                return fd
            os.close(fd)
            raise CacheInUse(f"{self.path} is not a regular file; remove it")
        raise CacheInUse(f"cannot open {self.path}")

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None


def _holder(data: bytes) -> str:
    """'pid 1234, project /x/y.yaml' from a lock file's text (printable characters only)."""
    try:
        info = json.loads(data)
        pid, project = int(info["pid"]), str(info.get("project") or "?")
    except (ValueError, KeyError, TypeError):
        return "pid unknown"
    return f"pid {pid}, project {''.join(ch for ch in project if ch.isprintable())[:300]}"


def _read_small(path: Path) -> dict[str, Any] | str | None:
    """A journal file's JSON object; a problem as text; None when there is no file. Never follows
    a link and never reads more than ENTRY_MAX_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError:
        return "not a regular file (a link?)" if path.is_symlink() else "unreadable"
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return "not a regular file"
        data = f.read(ENTRY_MAX_BYTES + 1)
    if len(data) > ENTRY_MAX_BYTES:
        return "larger than a journal entry"
    try:
        value = json.loads(data)
    except ValueError:
        return "not JSON"
    return value if isinstance(value, dict) else "not a JSON object"
