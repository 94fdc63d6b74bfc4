"""Uploads of local media to fal's storage, once per content digest and host, reused while valid.

Records live in <cache>/fal/uploads/<id>.json: {url, digest, host, expires}. Each upload asks fal
to keep the file for LIFETIME_S; a record is reused while at least MARGIN_S of that remains, so a
URL never expires while a queued request still needs it. A record that is not exactly what this
module writes (a file committed into the cache, say) is not reused: the file is uploaded again.

A file uploaded in parts (FalApi.upload_parts) keeps <id>.parts.json while it goes up: the upload
id and each part sent with its ETag (PartsRecord), so an interrupted build sends only the missing
parts; it is removed once the file is complete. A parts record that is not exactly what this
module writes, or older than PARTS_MAX_AGE_S, is ignored and the upload starts over.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from ltxflow.backends.falparts import Multipart, etag_ok, upload_id_ok
from ltxflow.files import read_json, write_json_atomic
from ltxflow.media.probe import file_digest

LIFETIME_S = 2 * 24 * 3600  # unreleased music should not linger on a CDN; two days covers a re-render
MARGIN_S = 12 * 3600
PARTS_MAX_AGE_S = 24 * 3600  # a guess: how long fal keeps an unfinished multipart upload is not documented


class UploadStore:
    def __init__(self, cache_root: Path, host: str, upload: Callable[..., str],
                 emit: Callable[..., None] = lambda *a, **k: None, cdn: str | None = None):
        self.dir = cache_root / "fal" / "uploads"
        self.host = host
        self.cdn = cdn  # LTXFLOW_FAL_CDN_URL, when set: the only origin a kept URL may be on
        self.upload = upload
        self.emit = emit
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()

    def url_for(self, path: Path, chunk: str = "") -> str:
        """The URL of `path`'s content on fal's CDN, uploading it when no valid record exists."""
        digest = file_digest(path)
        rid = hashlib.sha256(f"{self.host}\n{digest}".encode()).hexdigest()[:40]
        record = self.dir / f"{rid}.json"
        with self._guard:
            lock = self._locks[rid]
        with lock:  # one upload per digest, however many chunks want it at once
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError):
                data = None
            if _reusable(data, digest, self.host) and self.on_cdn(data["url"]):  # type: ignore[index]
                return data["url"]  # type: ignore[index]
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            t0 = time.monotonic()
            ledger = PartsRecord(self.dir / f"{rid}.parts.json", digest, self.host, self.on_cdn,
                                 lambda **f: self.emit("upload_progress", chunk=chunk, file=path.name, **f))
            url = self.upload(path, content_type, LIFETIME_S, ledger)  # upload(path, type, lifetime, ledger)
            self.emit("upload_done", chunk=chunk, file=path.name, bytes=path.stat().st_size,
                      seconds=round(time.monotonic() - t0, 3))
            write_json_atomic(record, {"url": url, "digest": digest, "host": self.host, "file": path.name,
                                       "expires": time.time() + LIFETIME_S})
            return url


    def on_cdn(self, url: str) -> bool:
        """Whether a kept URL points at fal's storage: the configured CDN's origin, else a host of
        fal.media (where fal's storage puts uploads) or the REST host's own origin (a local fal).
        A record naming any other host, committed into the cache, is never sent to fal as media."""
        if self.cdn:
            return _origin(url) == _origin(self.cdn)
        host = urlsplit(url).hostname or ""
        return host == "fal.media" or host.endswith(".fal.media") or _origin(url) == _origin(self.host)


class PartsRecord:
    """A multipart upload's progress in <cache>/fal/uploads/<id>.parts.json (falapi.PartsLedger):
    {digest, host, size, part_size, upload_id, access_url, parts: {"n": etag}, started}. Read
    back strictly: a record of other content, host or part size, a URL off fal's storage (the
    storage token is sent there), a part number out of range, any field more or less: None."""

    FIELDS = frozenset({"digest", "host", "size", "part_size", "upload_id", "access_url", "parts", "started"})

    def __init__(self, path: Path, digest: str, host: str, on_cdn: Callable[[str], bool],
                 progress: Callable[..., None] = lambda **f: None):
        self.path, self.digest, self.host, self.on_cdn, self.progress = path, digest, host, on_cdn, progress
        self._started = time.time()

    def load(self, size: int, part_size: int) -> Multipart | None:
        try:
            data = read_json(self.path, 1 << 20)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or set(data) != self.FIELDS:
            return None
        upload = Multipart(data["upload_id"], data["access_url"], size, part_size)
        parts, started = data["parts"], data["started"]
        if not (data["digest"] == self.digest and data["host"] == self.host and _int(data["size"]) == size
                and _int(data["part_size"]) == part_size and upload_id_ok(upload.upload_id)
                and isinstance(upload.access_url, str) and upload.access_url.startswith(("https://", "http://"))
                and self.on_cdn(upload.access_url) and isinstance(parts, dict)
                and isinstance(started, (int, float)) and not isinstance(started, bool)
                and time.time() - PARTS_MAX_AGE_S < started <= time.time() + 60):
            return None
        for key, etag in parts.items():
            if not (isinstance(key, str) and key.isdigit() and key == str(int(key))
                    and 1 <= int(key) <= upload.count and etag_ok(etag)):
                return None
            upload.parts[int(key)] = etag
        self._started = started
        return upload

    def save(self, upload: Multipart) -> None:
        write_json_atomic(self.path, {"digest": self.digest, "host": self.host, "size": upload.size,
                                      "part_size": upload.part_size, "upload_id": upload.upload_id,
                                      "access_url": upload.access_url, "started": self._started,
                                      "parts": {str(n): e for n, e in sorted(upload.parts.items())}})
        self.progress(parts_done=len(upload.parts), parts=upload.count,
                      bytes_done=sum(upload.part_bytes(n) for n in upload.parts), bytes=upload.size)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self._started = time.time()


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        u = urlsplit(url)
        return u.scheme.lower(), (u.hostname or "").lower(), u.port
    except ValueError:
        return "", "", None


def _reusable(data: object, digest: str, host: str) -> bool:
    """Whether a record is one of ours for this content and host, with time left on its URL."""
    if not isinstance(data, dict):
        return False
    url, expires = data.get("url"), data.get("expires")
    return (data.get("digest") == digest and data.get("host") == host and isinstance(url, str)
            and url.startswith(("https://", "http://")) and isinstance(expires, (int, float))
            and not isinstance(expires, bool) and expires > time.time() + MARGIN_S)
