"""Media references in an untrusted project file: local files confined to the project folder, or http(s) URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal
from urllib.parse import urlsplit

from ltxflow.errors import printable

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
    refused like a `../` path. A leading `~` (a home folder) is refused, and expanded only when
    `allow_outside`; a reference holding control characters is refused. Raises PathRefused.
    """
    if "\0" in ref:
        raise PathRefused("path contains a NUL byte")
    shown = printable(ref, newlines=False)
    if shown != ref:
        raise PathRefused(f"'{shown}': a name with control characters is not allowed (a terminal "
                          "would act on them when the name is shown)")
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
    if ref.startswith("~"):
        if not allow_outside:
            raise PathRefused(f"{ref!r}: '~' (a home folder) is not expanded in a project file; give a path "
                              "inside the project folder (--allow-outside-paths expands it)")
        ref = str(Path(ref).expanduser())
    root = root.resolve()
    target = (root / ref).resolve()
    if not allow_outside and not target.is_relative_to(root):
        raise PathRefused(f"{ref!r} resolves to {target}, outside the project folder {root} "
                          "(pass --allow-outside-paths to permit it)")
    return MediaRef(ref, "file", path=target)


def overwrites(outputs: Iterable[tuple[Path, str]], inputs: Iterable[tuple[Path, str]]) -> str | None:
    """Why the files a command writes, (path, what it is) each, must not be written, else None: one
    is a symbolic link (refused whatever it points to: a link in a project folder can name any
    file, and outputs are replaced, never written through), or it is one of the `inputs` (path,
    what) the command reads, resolves to one, lies inside one (a folder), or is a hard link of one."""
    import os

    real = [(p, p.resolve(), what) for p, what in inputs]
    for out, what in outputs:
        if out.is_symlink():
            return (f"{out} ({what}) is a symbolic link to {os.readlink(out)}: ltxflow replaces its outputs and "
                    "does not write through links; remove the link or choose another name")
        target = out.resolve()
        for src, src_real, src_what in real:
            if target == src_real or target.is_relative_to(src_real) or _same_file(out, src):
                return f"{out} ({what}) would overwrite {src} ({src_what}), which ltxflow reads"
    return None


def _same_file(a: Path, b: Path) -> bool:
    """Both exist and are one file (hard links; a name that differs only in case where case is ignored)."""
    import os

    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def suggest_path(ref: str, root: Path) -> str | None:
    """The file a reference that names nothing probably meant, relative to `root`: each part of
    the path matched to an entry of its folder, ignoring case first, then by spelling
    ('Keyframes/Intro.PNG' -> 'keyframes/intro.png'). None when no such file is found."""
    import difflib

    here, out = root, []
    try:
        for part in Path(ref).parts:
            if part in ("", "."):
                continue
            if part == ".." or not here.is_dir():
                return None
            if (here / part).exists():
                name = part
            else:
                names = sorted(p.name for p in here.iterdir())
                same = [n for n in names if n.lower() == part.lower()]
                close = same or difflib.get_close_matches(part, names, n=1, cutoff=0.75)
                if not close:
                    return None
                name = close[0]
            out.append(name)
            here = here / name
        if not here.is_file():
            return None
    except OSError:  # a name too long for the file system, an unreadable folder
        return None
    guess = "/".join(out)
    return guess if guess != ref else None
