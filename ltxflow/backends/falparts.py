"""fal storage's multipart upload as data: the upload under way and where its progress is kept,
a file (or part of one) streamed as a body, and the checks of what the storage answers. The
HTTP calls are FalApi's (falapi.py)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol
from urllib.parse import quote

MULTIPART_MB = 100  # fal's own client uploads a file larger than 100 MiB in parts
PART_BYTES = 10 * 2**20  # the part size fal's own client uses
PART_THREADS = 4  # parts sent at once (fal's client sends 10; a build uploads alongside its renders)


def multipart_bytes(env: Mapping[str, str] | None = None) -> int:
    """LTXFLOW_FAL_MULTIPART_MB (MiB; fractions allowed), in bytes: a larger file goes up in parts."""
    env = os.environ if env is None else env
    text = env.get("LTXFLOW_FAL_MULTIPART_MB", "").strip()
    return int(float(text) * 2**20) if text else MULTIPART_MB * 2**20


@dataclass(frozen=True)
class Multipart:
    """A multipart upload under way: what finishing it needs. `parts`: part number -> ETag."""

    upload_id: str
    access_url: str  # the file's URL once complete; parts go to {access_url}/multipart/{upload_id}/{n}
    size: int  # of the file, in bytes
    part_size: int
    parts: dict[int, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return -(-self.size // self.part_size)

    def part_bytes(self, n: int) -> int:
        return max(0, min(self.part_size, self.size - (n - 1) * self.part_size))


class PartsLedger(Protocol):
    """Where a multipart upload's progress is kept between builds (falstore.PartsRecord).
    load: the upload recorded for a file of this size in parts of this size, or None (nothing
    usable recorded); save: called once the upload is created and after each part is sent;
    clear: once it is complete, or no longer known to fal."""

    def load(self, size: int, part_size: int) -> Multipart | None: ...

    def save(self, upload: Multipart) -> None: ...

    def clear(self) -> None: ...


class FileBody:
    """A file, or `size` bytes of it from `offset`, streamed as a request body, read again from the
    start on every try (LoRAs are large)."""

    def __init__(self, path: Path, offset: int = 0, size: int | None = None):
        self.path, self.offset = path, offset
        self.size = path.stat().st_size - offset if size is None else size

    def __iter__(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            left = self.size
            while left > 0 and (block := f.read(min(1 << 20, left))):
                left -= len(block)
                yield block


def lifecycle_headers(lifetime_s: int) -> dict[str, str]:
    """How long fal keeps an upload: fal's client sends both names (the CDN reads the first, the
    storage API the second)."""
    value = json.dumps({"expiration_duration_seconds": lifetime_s})
    return {"X-Fal-Object-Lifecycle": value, "X-Fal-Object-Lifecycle-Preference": value}


def upload_id_ok(value: Any) -> bool:
    """Whether a multipart upload id is one to put in a URL path (it is quoted there)."""
    return isinstance(value, str) and 0 < len(value) <= 1024 and value.isprintable()


def etag_ok(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 1024 and value.isprintable()


def parts_url(upload: Multipart) -> str:
    return f"{upload.access_url}/multipart/{quote(upload.upload_id, safe='')}"


def token_expiry(value: Any) -> float:
    """A token's expiry as a Unix time (fal sends ISO 8601); unknown: ten minutes from now."""
    from datetime import datetime

    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time() + 600
