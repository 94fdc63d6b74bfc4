"""Which chunks a build would render, and why: the up-to-date check, with reasons."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ltxflow.execute.cache import Cache, project_id, write_json_atomic
from ltxflow.files import read_json
from ltxflow.execute.colorref import color_ref
from ltxflow.plan.planner import Chunk, Plan

# What a changed key input means to a person.
_INPUT_NAMES = {
    "backend": "the backend changed", "endpoint": "the endpoint changed", "audio": "its audio span changed",
    "end_image": "its end image changed", "loras": "its LoRAs changed",
}


@dataclass(frozen=True)
class ChunkStatus:
    status: Literal["cached", "render", "submitted"]  # submitted: paid for by an earlier build, to collect
    reasons: tuple[str, ...] = ()


def index_path(cache: Cache, project_file: Path) -> Path:
    return cache.root / "index" / f"{project_id(project_file)}.json"


_HEX = re.compile(r"[0-9a-f]{64}")


def read_index(path: Path) -> dict[str, dict[str, Any]] | None:
    """An index file's chunks ({chunk id: {"key": sha256 hex, "inputs": key inputs}}), or None when
    it is absent, unreadable or not exactly that shape (it is read as untrusted: see execute/cache.py)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and set(data) == {"project", "chunks"} and isinstance(data["project"], str)
            and isinstance(data["chunks"], dict)):
        return None
    for cid, c in data["chunks"].items():
        if not (isinstance(cid, str) and isinstance(c, dict) and set(c) == {"key", "inputs"}
                and isinstance(c["key"], str) and _HEX.fullmatch(c["key"])):
            return None
    return data["chunks"]


def load_index(cache: Cache, project_file: Path) -> dict[str, Any]:
    """The chunk keys and key inputs of the project's last build ({} when none, unreadable or
    invalid: every chunk's reason is then "new", and the build writes a valid index)."""
    return read_index(index_path(cache, project_file)) or {}


def save_index(cache: Cache, project_file: Path, chunks: list[Chunk]) -> None:
    old = load_index(cache, project_file)
    old.update({c.id: {"key": c.key, "inputs": c.key_inputs} for c in chunks})
    write_json_atomic(index_path(cache, project_file), {"project": str(project_file.resolve()), "chunks": old})


def changed_inputs(before: Any, after: Any, path: str = "") -> list[str]:
    """Dotted paths of the leaves that differ between two key-input trees."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for k in sorted(set(before) | set(after), key=str):
            out += changed_inputs(before.get(k), after.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if before == after else [path]


def _describe(chunk: Chunk, paths: list[str]) -> list[str]:
    term_of = {field: term for term, field in chunk.endpoint.vocab.items()}
    out: list[str] = []
    for p in paths:
        head, _, rest = p.partition(".")
        if head == "args":
            name = rest.split(".")[0]
            text = f"{term_of.get(name, name)} changed"
        elif head == "start_image":
            text = ("the chunk it chains from changed" if rest.startswith(("chain", "frame"))
                    else "its start keyframe changed")
        else:
            text = _INPUT_NAMES.get(head, f"{head} changed")
        if text not in out:
            out.append(text)
    return out


def chunk_statuses(plan: Plan, cache: Cache, previous: dict[str, Any], variant,
                   check_clips: bool = True, in_flight: frozenset[str] = frozenset()) -> dict[str, ChunkStatus]:
    """cached or render for every chunk of the plan, in plan order, with the reasons to render.

    `previous` is the last build's index; `variant(chunk, colour tag)` names the clip variant a
    build uses. `check_clips` also checks each cached clip (its size and mtime, hashed only when
    they moved; see Cache.file_problem): one to be made again from its raw clip is noted, and one
    whose raw clip is damaged too renders (counted in the cost). Chunks not cached whose keys are
    `in_flight` (journalled hosted requests) are `submitted`. No image is read: a chunk's colour
    reference is named by digests resolve and the cache recorded (see execute/colorref.py)."""
    rp = plan.project
    scenes = {s.id: s for s in rp.scenes}
    out: dict[str, ChunkStatus] = {}
    # The chain frame each cached chunk would hand on (as the build would match it): (PNG, digest).
    chains: dict[str, tuple[Path, str] | None] = {}
    for c in plan.chunks:
        entry, problem = cache.lookup(c.key)
        chains[c.id] = None
        if entry is None and c.key in in_flight:
            out[c.id] = ChunkStatus("submitted", ("submitted by an earlier build (paid for); "
                                                  "the next build collects the result",))
            continue
        if entry is None:
            if problem:
                reasons = [f"its cache entry is corrupt ({problem})"]
            elif c.id not in previous:
                reasons = ["new"]
            elif previous[c.id].get("key") == c.key:
                reasons = ["its cache entry is gone"]
            else:
                reasons = _describe(c, changed_inputs(previous[c.id].get("inputs"), c.key_inputs)) or ["changed"]
            out[c.id] = ChunkStatus("render", tuple(reasons))
            continue
        if c.chains_from:
            if out[c.chains_from].status != "cached":
                out[c.id] = ChunkStatus("render", (f"the chunk it chains from ({c.chains_from}) must render",))
                continue
            chain = chains[c.chains_from]
            if chain is None or entry.record.chain_digest != chain[1]:
                out[c.id] = ChunkStatus("render", (f"the chunk it chains from ({c.chains_from}) changed",))
                continue
        color = color_ref(c, scenes[c.scene], chains[c.chains_from] if c.chains_from else None)
        tag = color.tag if color else None
        digest = entry.frame_digest(c.chain_frame, tag)
        chains[c.id] = (entry.frame(c.chain_frame, tag), digest) if digest else None
        notes: tuple[str, ...] = ()
        clip = cache.clip_problem(entry, variant(c, tag), c.kept_frames, rp.width, rp.height) if check_clips else None
        if clip is not None:
            raw = cache.raw_problem(entry)
            if raw is not None:  # nothing to make its clip from: the build renders (and pays for) it again
                out[c.id] = ChunkStatus("render", (f"its cached clip is damaged or missing ({clip}), and so is "
                                                   f"its raw clip ({raw})",))
                chains[c.id] = None
                continue
            notes = (("its clip is normalized again from the cached raw clip",) if entry.raw is not None else
                     (f"its clip is drawn again ({entry.record.backend} keeps no raw clip)",))
        out[c.id] = ChunkStatus("cached", notes)
    return out
