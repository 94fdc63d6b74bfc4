"""record.json, typed: what made a cache entry and what it holds, and the names of its files.

A record is read as untrusted (the cache can be committed into a project folder): Record.read
checks every field (_RECORD_FIELDS) and every file name in it is a plain name inside its entry.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

RECORD = "record.json"

@dataclass(frozen=True)
class Record:
    """An entry's record.json, typed: what made the entry and what it holds. Read (Record.read)
    and written (to_json) here only; fields a newer ltxflow adds are left out of an older one's
    reading, and fields an older record lacks take these defaults."""

    key: str
    chunk: str = ""
    scene: str = ""
    project: str = ""
    backend: str = ""
    endpoint: str = ""
    seed: int | None = None  # as the backend reports it
    cost_usd: float = 0.0
    chains_from: str | None = None
    chain_digest: str | None = None  # sha256 of the start image it was rendered from (chained chunks)
    raw: str | None = None  # the raw clip's file name; None for a drawing backend's entry
    drawn: bool = False  # a drawing backend's: no raw clip, drawn again for another variant
    raw_sha256: str | None = None
    frames: dict[str, str] = field(default_factory=dict)  # chain frames (frame_key) -> sha256
    variants: dict[str, str] = field(default_factory=dict)  # clip variants -> sha256
    stat: dict[str, list[int]] = field(default_factory=dict)  # file name -> [size, mtime_ns] when written
    color_match: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> what matching did
    normalize: dict[str, Any] = field(default_factory=dict)  # NormalizeReport.record() of the first clip
    details: dict[str, Any] = field(default_factory=dict)  # the backend's own (request ids, GPU, ...)
    timings: dict[str, float] = field(default_factory=dict)  # render_s, normalize_s
    inputs: dict[str, Any] = field(default_factory=dict)  # the chunk's key inputs
    created: str = ""
    ltxflow: str = ""

    @classmethod
    def read(cls, data: Any) -> "Record":
        """A record from record.json's object, every field checked (_RECORD_FIELDS): digests are
        sha256 hex, and every file it names is a plain name inside its entry. Raises ValueError,
        naming the field, when it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"not a JSON object but {type(data).__name__}")
        if "key" not in data:
            raise ValueError("key: missing")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name, value in values.items():
            ok, what = _RECORD_FIELDS[name]
            if not ok(value):
                raise ValueError(f"{name}: {_show(value)} is not {what}")
        record = cls(**values)
        if not record.drawn and record.raw is None:
            raise ValueError("raw: no raw clip named")
        return record

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_FRAME_KEY = re.compile(r"[0-9]{1,9}(\.[A-Za-z0-9_-]{1,64})?")


def plain_name(name: Any) -> bool:
    """A file name inside its folder: no separator, not a dot-file (temps; also "." and ".."),
    no drive or NUL, not empty, not too long."""
    return (isinstance(name, str) and 0 < len(name) <= 200 and not name.startswith(".")
            and not any(c in name for c in "/\\:\0"))


def is_digest(v: Any) -> bool:
    """A sha256 hex digest, as ltxflow writes them."""
    return isinstance(v, str) and HEX_DIGEST.fullmatch(v) is not None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _dict_of(key: Callable[[Any], bool], value: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(key(k) and value(x) for k, x in v.items())


def _is(kind: type) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, kind)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Every field, checked as read (a check, and what a value that fails it is not). The free-form
# ones (details, normalize, inputs, color_match's values) are data the report shows as they are.
_RECORD_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "key": (is_digest, "a sha256 hex digest"),
    **{name: (_is(str), "a string") for name in ("chunk", "scene", "project", "backend", "endpoint", "created",
                                                 "ltxflow")},
    "seed": (_opt(is_int), "an integer or null"),
    "cost_usd": (lambda v: _number(v) and v >= 0, "a finite amount of USD"),
    "chains_from": (_opt(_is(str)), "a chunk id or null"),
    "chain_digest": (_opt(is_digest), "a sha256 hex digest or null"),
    "raw": (_opt(plain_name), "a plain file name in the entry, or null"),
    "drawn": (_is(bool), "true or false"),
    "raw_sha256": (_opt(is_digest), "a sha256 hex digest or null"),
    "frames": (_dict_of(lambda k: isinstance(k, str) and _FRAME_KEY.fullmatch(k) is not None, is_digest),
               "a map of chain frames (N or N.<colour tag>) to sha256 hex digests"),
    "variants": (_dict_of(lambda k: plain_name(f"clip.{k}") and plain_name(k), is_digest),
                 "a map of clip variants (plain file names) to sha256 hex digests"),
    "stat": (_dict_of(plain_name, lambda v: isinstance(v, list) and len(v) == 2 and is_int(v[0]) and v[0] >= 0
                      and is_int(v[1])),
             "a map of plain file names to [size, mtime_ns]"),
    "color_match": (_dict_of(lambda k: isinstance(k, str), _is(dict)), "a map of clip variants to objects"),
    "normalize": (_is(dict), "an object"),
    "details": (_is(dict), "an object"),
    "timings": (_dict_of(lambda k: isinstance(k, str), _number), "a map of names to finite seconds"),
    "inputs": (_is(dict), "an object"),
}


def file_stat(path: Path) -> list[int]:
    """[size, mtime_ns] of a file, as a record keeps them (see Cache.file_problem)."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def frame_name(index: int, tag: str | None = None) -> str:
    """The file of chain frame `index`: as generated, or colour-matched under `tag`."""
    return f"frame{index}.{tag}.png" if tag else f"frame{index}.png"


def frame_key(index: int, tag: str | None = None) -> str:
    """Names a chain frame in a record's `frames`: "N", or "N.<colour tag>"."""
    return f"{index}.{tag}" if tag else str(index)
