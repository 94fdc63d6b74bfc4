"""The media a project names: found in the file's data, confined to the project, probed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from ltxflow.errors import FieldPath
from ltxflow.media.probe import AudioTrack, MediaError, probe_audio, probe_image, probe_lora
from ltxflow.project.paths import MediaRef, PathRefused, media_ref, suggest_path

Kind = Literal["audio", "image", "lora"]


@dataclass(frozen=True)
class Media:
    """A checked media reference: a probed file (digest set) or a URL passed through."""

    ref: MediaRef
    digest: str | None = None
    size: tuple[int, int] | None = None

    def identity(self) -> dict[str, str]:
        """What a content key records of it."""
        return {"sha256": self.digest} if self.digest else {"url": self.ref.url or ""}


@dataclass
class MediaCheck:
    """What checking a project's media found: usable media by field path, problems (errors), and
    notes (warnings: what decoding the song changed, e.g. 'down-mixed from 9 channels to stereo')."""

    media: dict[FieldPath, Media] = field(default_factory=dict)
    audio: AudioTrack | None = None
    problems: list[tuple[FieldPath, str]] = field(default_factory=list)
    notes: list[tuple[FieldPath, str]] = field(default_factory=list)


def references(data: Any) -> Iterator[tuple[FieldPath, str, Kind]]:
    """(field path, reference, kind) of every media reference in a project's raw data.

    Works on data that failed model validation too (anything not shaped as expected is skipped),
    so media problems are reported together with schema problems."""
    if not isinstance(data, dict):
        return
    if isinstance(data.get("audio"), str):
        yield ("audio",), data["audio"], "audio"
    holders: list[tuple[FieldPath, Any]] = [(("defaults",), data.get("defaults"))]
    scenes = data.get("scenes")
    if isinstance(scenes, list):
        holders += [(("scenes", i), s) for i, s in enumerate(scenes)]
    for base, h in holders:
        if not isinstance(h, dict):
            continue
        for name in ("image", "end_image"):
            if isinstance(h.get(name), str):
                yield base + (name,), h[name], "image"
        loras = h.get("loras")
        for j, lora in enumerate(loras if isinstance(loras, list) else ()):
            if isinstance(lora, dict) and isinstance(lora.get("path"), str):
                yield base + ("loras", j, "path"), lora["path"], "lora"


def check_media(data: Any, root: Path, allow_outside: bool = False, audio_store: Path | None = None) -> MediaCheck:
    """Confine and probe every media reference; a file's problems are collected, not raised.
    `audio_store` holds songs decoded by earlier runs (read here, written only by the caller).
    A song longer than the limit (LTXFLOW_MAX_SONG_MINUTES) is a problem; one with more than two
    channels or a rate above 48 kHz is decoded to stereo at 48 kHz, with a note saying so."""
    out = MediaCheck()
    for path, ref, kind in references(data):
        try:
            mref = media_ref(ref, root, urls=kind != "audio", allow_outside=allow_outside)
            if mref.kind == "url":
                out.media[path] = Media(mref)
                continue
            assert mref.path is not None
            if kind == "audio":
                out.audio = probe_audio(mref.path, audio_store)
                if out.audio.conversions():
                    out.notes.append((path, f"{ref}: {'; '.join(out.audio.conversions())} (the video's sound "
                                            "is stereo, at most 48 kHz)"))
            elif kind == "image":
                info = probe_image(mref.path)
                out.media[path] = Media(mref, info.digest, (info.width, info.height))
            else:
                out.media[path] = Media(mref, probe_lora(mref.path).digest)
        except PathRefused as exc:
            out.problems.append((path, str(exc)))
        except MediaError as exc:
            message = f"{ref}: {str(exc).split(': ', 1)[-1]}"
            guess = suggest_path(ref, root) if message.endswith("file not found") else None
            message += f" (did you mean '{guess}'?)" if guess else ""
            out.problems.append((path, message))
    return out
