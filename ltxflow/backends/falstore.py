"""Uploads of local media to fal's storage, once per content digest and host, reused while valid.

Records live in <cache>/fal/uploads/<id>.json: {url, digest, host, expires}. Each upload asks fal
to keep the file for LIFETIME_S; a record is reused while at least MARGIN_S of that remains, so a
URL never expires while a queued request still needs it. A record that is not exactly what this
module writes (a file committed into the cache, say) is not reused: the file is uploaded again.
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

from ltxflow.files import write_json_atomic
from ltxflow.media.probe import file_digest

LIFETIME_S = 2 * 24 * 3600  # unreleased music should not linger on a CDN; two days covers a re-render
MARGIN_S = 12 * 3600


class UploadStore:
    def __init__(self, cache_root: Path, host: str, upload: Callable[[Path, str, int], str],
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
            url = self.upload(path, content_type, LIFETIME_S)
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
