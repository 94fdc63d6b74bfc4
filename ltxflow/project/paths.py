"""Media references in an untrusted project file: local files confined to the project folder, or http(s) URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


class PathRefused(ValueError):
    """A media reference that must not be followed; the message says why."""


@dataclass(frozen=True)
class MediaRef:
    """A file inside the project (path set) or an http(s) URL (url set); `ref` is as written."""

    ref: str
    kind: Literal["file", "url"]
    path: Path | None = None
    url: str | None = None


def media_ref(ref: str, root: Path, *, urls: bool, allow_outside: bool = False) -> MediaRef:
    """Resolve `ref` against the project folder `root`.

    Symlinks are followed before the containment check, so a link pointing out of the project is
    refused like a `../` path. Raises PathRefused.
    """
    m = _SCHEME.match(ref)
    if m:
        scheme = m.group(1).lower()
        if scheme in ("http", "https"):
            if not urls:
                raise PathRefused(f"{ref!r}: must be a file in the project, not a URL")
            parts = urlsplit(ref)
            if not parts.hostname:
                raise PathRefused(f"{ref!r}: URL has no host")
            return MediaRef(ref, "url", url=ref)
        raise PathRefused(f"{ref!r}: the {scheme}: scheme is not allowed"
                          + ("; use an http(s) URL or a file in the project" if urls else "; use a file in the project"))
    if "\0" in ref:
        raise PathRefused("path contains a NUL byte")
    root = root.resolve()
    target = (root / ref).resolve()
    if not allow_outside and not target.is_relative_to(root):
        raise PathRefused(f"{ref!r} resolves to {target}, outside the project folder {root} "
                          "(pass --allow-outside-paths to permit it)")
    return MediaRef(ref, "file", path=target)
