"""The build journal: hosted requests that were submitted (paid for) and not yet in the cache.

One small JSON file per chunk key under <cache>/journal/, written atomically the moment a submit
returns, so a build that crashes, is killed or interrupted picks its requests up again instead of
paying for them twice. An entry goes when its chunk is committed to the cache, when fal says the
request failed, or when `ltxflow cancel` cancelled it.

An entry holds where to follow the request (fal's status/response/cancel URLs), never a key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ltxflow.files import write_json_atomic


@dataclass(frozen=True)
class JournalEntry:
    key: str
    data: dict[str, Any]

    @property
    def project(self) -> str | None:
        return self.data.get("project")

    @property
    def chunk(self) -> str:
        return str(self.data.get("chunk", "?"))

    @property
    def result_file(self) -> Path | None:
        """The downloaded clip, once the result was fetched (kept until the chunk is committed)."""
        name = self.data.get("result_file")
        return Path(name) if name else None


class Journal:
    def __init__(self, cache_root: Path, project: Path | None = None):
        self.dir = cache_root / "journal"
        self.results = cache_root / "journal" / "results"
        self.project = str(project.resolve()) if project is not None else None

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str) -> JournalEntry | None:
        try:
            data = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        return JournalEntry(key, data) if isinstance(data, dict) else None

    def submitted(self, key: str, chunk: str, host: str, handle: dict[str, str], **extra: Any) -> None:
        """Record a request the moment fal accepted it."""
        write_json_atomic(self._path(key), {
            "key": key, "chunk": chunk, "project": self.project, "host": host, **handle,
            "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra})

    def update(self, key: str, **fields: Any) -> None:
        entry = self.get(key)
        if entry is not None:
            write_json_atomic(self._path(key), {**entry.data, **fields})

    def remove(self, key: str) -> None:
        """Forget a request (its chunk is cached, or it failed or was cancelled) and its download."""
        entry = self.get(key)
        if entry is not None and entry.result_file is not None:
            entry.result_file.unlink(missing_ok=True)
        self._path(key).unlink(missing_ok=True)

    def entries(self) -> Iterator[JournalEntry]:
        if not self.dir.is_dir():
            return
        for p in sorted(self.dir.glob("*.json")):
            entry = self.get(p.stem)
            if entry is not None:
                yield entry

    def keys(self, host: str | None = None) -> set[str]:
        """Chunk keys with a journalled request (already paid for), on `host` when given."""
        return {e.key for e in self.entries() if host is None or e.data.get("host") == host}

    def for_project(self, project: Path) -> list[JournalEntry]:
        where = str(project.resolve())
        return [e for e in self.entries() if e.project == where]

    def result_path(self, request_id: str, suffix: str) -> Path:
        self.results.mkdir(parents=True, exist_ok=True)
        safe = "".join(ch for ch in request_id if ch.isalnum() or ch in "-_")[:80] or "request"
        return self.results / f"{safe}{suffix}"

