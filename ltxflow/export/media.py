"""The export's media folder: each built clip copied under a readable name, or, where a dissolve
reads past its ends, encoded again with its first and last frames held there (its handles)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ltxflow.errors import FfmpegFailed
from ltxflow.files import plain_file, read_json, write_json_atomic
from ltxflow.media.encode import held_frames_args, run
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.frames import video_info
from ltxflow.timeline import fps_str

if TYPE_CHECKING:
    from ltxflow.export.layout import Layout
    from ltxflow.media.encode import Format
    from ltxflow.plan.planner import Plan

HELD_SCHEMA = "ltxflow-export-held-v1"  # in each held copy's sidecar: what its signature is over


def media_name(position: int, chunk_id: str, suffix: str, head: int = 0, tail: int = 0) -> str:
    """A copied clip's file name: its place in the plan and its chunk ("001-verse-0.mp4" for
    verse.0), and the frames held before and after it, if any ("002-verse-1-held5-4.mp4"): a
    later export whose crossfades differ writes another file instead of taking this one."""
    held = f"-held{head}-{tail}" if head or tail else ""
    return f"{position:03d}-{chunk_id.replace('.', '-')}{held}{suffix}"


def copy_media(plan: Plan, lay: Layout, clips: Mapping[str, Path], audio: Path, folder: Path,
               fmt: Format) -> tuple[dict[str, Path], Path]:
    """The clips (chunk id -> normalized clip) and the song `audio` copied into `folder`; returns
    where they are now. A clip with handles in `lay` (a crossfade into or out of it) is encoded
    again with `fmt`'s video settings, its first frame held `head` times before it and its last
    `tail` times after; the others, and the song, are copied as they are. A file already there is
    kept when it is what this export would write (a plain copy: the source's size and
    modification time; a held copy: its sidecar's signature, see _kept_held). Raises
    FfmpegFailed when a held copy cannot be written."""
    folder.mkdir(parents=True, exist_ok=True)
    handles = {i.chunk: (i.head, i.tail) for i in lay.items if i.kind == "clip"}
    copied = {}
    for k, c in enumerate(plan.chunks, 1):
        if c.id not in clips:
            continue
        src = clips[c.id]
        head, tail = handles.get(c.id, (0, 0))
        dest = folder / media_name(k, c.id, src.suffix, head, tail)
        if head or tail:
            copied[c.id] = _held_copy(src, dest, c.kept_frames, head, tail, plan, fmt)
        else:
            copied[c.id] = _copy(src, dest)
    return copied, _copy(audio, folder / f"master-{audio.name}")


def _temp(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{dest.suffix}")


def _copy(src: Path, dest: Path) -> Path:
    s = src.stat()
    d = plain_file(dest)
    if d is not None and d.st_size == s.st_size and d.st_mtime_ns == s.st_mtime_ns:
        return dest
    tmp = _temp(dest)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)  # replaces a link itself, never writes through it
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _sidecar(dest: Path) -> Path:
    """Where a held copy's signature is kept: a hidden file beside it, which an editor's media
    browser does not list."""
    return dest.with_name(f".{dest.name}.json")


def _held_signature(src: Path, head: int, tail: int, plan: Plan, fmt: Format) -> dict:
    """Everything that shapes a held copy: the clip it is made from (path, size, modification
    time), the frames held, the fps and the encoder's video settings."""
    s = src.stat()
    return {"schema": HELD_SCHEMA, "source": str(src.resolve()), "size": s.st_size, "mtime_ns": s.st_mtime_ns,
            "head": head, "tail": tail, "fps": fps_str(plan.project.fps), "video": list(fmt.video)}


def _kept_held(dest: Path, signature: dict) -> bool:
    """Whether `dest` is the held copy `signature` describes: a plain file of the size and
    modification time its sidecar recorded when it was written, for the same signature."""
    st = plain_file(dest)
    if st is None:
        return False
    try:
        seen = read_json(_sidecar(dest))
    except (OSError, ValueError):
        return False
    return seen == {"signature": signature, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _held_copy(src: Path, dest: Path, kept: int, head: int, tail: int, plan: Plan, fmt: Format) -> Path:
    """`src` (`kept` frames) encoded into `dest` with its first frame held `head` times and its
    last `tail` times (media.encode.held_frames_args), checked for its frame count; then its
    sidecar, so that a crash between the two leaves a copy that the next export writes again."""
    signature = _held_signature(src, head, tail, plan, fmt)
    if _kept_held(dest, signature):
        return dest
    _sidecar(dest).unlink(missing_ok=True)
    tmp = _temp(dest)
    try:
        run(held_frames_args(find_ffmpeg().path, src, tmp, plan.project.fps, fmt.video, head=head, tail=tail),
            what=f"writing {dest.name}")
        frames = video_info(tmp).frames
        if frames != head + kept + tail:
            raise FfmpegFailed(f"writing {dest.name}: wrote {frames} frames, expected {head + kept + tail}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    st = os.lstat(dest)
    write_json_atomic(_sidecar(dest), {"signature": signature, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return dest
