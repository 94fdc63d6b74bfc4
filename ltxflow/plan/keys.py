"""Content keys: a sha256 of canonical JSON of everything that shapes an artifact."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from typing import Any

# Bump when the meaning of a key's inputs changes, so old cache entries stop matching.
KEY_SCHEMA = "ltxflow-chunk-v1"


def _default(value: Any) -> Any:
    if isinstance(value, Fraction):
        return {"fraction": [value.numerator, value.denominator]}
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not canonical JSON: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, exact fractions, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False, default=_default)


def content_key(value: Any) -> str:
    """sha256 hex of the canonical JSON of `value`, prefixed by the key schema."""
    return hashlib.sha256(f"{KEY_SCHEMA}\n{canonical_json(value)}".encode()).hexdigest()


def derive_seed(project_seed: int, *parts: str | int) -> int:
    """A chunk seed from the project seed and stable names (not positions in the file),
    so adding a scene does not reseed the others. In 0..2**31-1, which every backend accepts."""
    digest = hashlib.sha256(canonical_json([project_seed, *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31)
