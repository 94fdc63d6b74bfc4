"""The backend seam: a fully resolved chunk request in, a clip file and a record out."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from ltxflow.errors import BackendError, LtxflowError  # noqa: F401 (BackendError: defined in errors.py, raised by backends)


@dataclass(frozen=True)
class LoraFile:
    path: Path | None  # a local .safetensors file, or None for a URL
    url: str | None
    scale: float
    transformer: str


@dataclass(frozen=True)
class HostedOptions:
    """How a hosted backend asks its platform to treat a request (the project's `fal:` section).
    Not part of a chunk's key: they change where a request may run and what is kept of it, not
    what was asked; a backend records what it sent in the chunk's details."""

    fallbacks: bool = False  # the platform may reroute a failing request to an "equivalent" endpoint
    store_payloads: bool = True  # the platform may keep the request's inputs and outputs


@dataclass(frozen=True)
class ChunkRequest:
    """Everything a backend needs for one chunk, with media as local files (or URLs).

    `args` is the request body in the endpoint's own field names, media fields excepted; the
    other fields restate what a backend that does not speak the endpoint's dialect needs."""

    chunk_id: str
    key: str  # the chunk's content key (a hosted backend journals its request under it)
    scene_id: str
    endpoint: str
    mode: str  # "audio-to-video" | "image-to-video"
    family: str  # the model family (ltx-2.3-quality, ltx-2.3-22b, ltx-2.3-22b-distilled)
    prompt: str
    values: dict[str, Any]  # vocabulary terms (camera, camera_scale, image_strength, ...)
    args: dict[str, Any]
    seed: int
    frames: int  # generated frames (8k+1)
    width: int
    height: int
    fps: Fraction
    timeline_frame: int  # the timeline frame of generated frame 0 (for burn-in timecodes)
    start_image: Path | None = None
    # When start_image is a chain frame that goes back to a prompt card (no keyframe or end image
    # before it): the scene of the chunk it is from. Else None.
    chain_scene: str | None = None
    start_image_url: str | None = None
    end_image: Path | None = None
    end_image_url: str | None = None
    audio: Path | None = None  # WAV of the exact span the generated frames cover
    loras: tuple[LoraFile, ...] = field(default=())
    hosted: HostedOptions = field(default=HostedOptions())


@dataclass(frozen=True)
class RenderResult:
    """The clip a backend wrote (inside the work folder it was given) and what to record of it."""

    clip: Path
    seed: int
    cost_usd: float
    details: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """One way of turning a ChunkRequest into a clip.

    `render` writes only inside `workdir`, which the caller owns and discards on failure; it
    raises BackendError (transient or not) for failures it understands. `max_concurrency` caps
    how many chunks it renders at once, whatever --jobs says."""

    name: str
    max_concurrency: int
    keeps_models: bool = False  # True: chunks sharing a LoRA set should run back to back
    # True: the backend draws frames in this process, cheaply and the same every time (the
    # preview): a build takes them from `draw` straight into the normalized clip, with no clip
    # encoded and decoded in between, keeps no raw clip, and draws again for another variant.
    draws: bool = False

    def draw(self, request: ChunkRequest) -> Iterator[Any]:
        """A drawing backend's frames for `request`: exactly request.frames Pillow RGB images at
        request.width x request.height, the same every time (an iterator that may be closed early)."""
        raise NotImplementedError(f"{self.name} renders clips; it does not draw frames")

    @classmethod
    def create(cls, ctx: "BackendContext") -> "Backend":
        """The backend for a build, from what the build hands every backend (backends.make_backend)."""
        raise NotImplementedError(f"{cls.__name__} does not say how a build makes it")

    def preflight(self) -> None:
        """Called once before a build renders anything: fail fast (a missing key, no weights)."""

    def render(self, request: ChunkRequest, workdir: Path) -> RenderResult: ...

    def is_transient(self, error: BaseException) -> bool:
        """Whether trying the chunk again may succeed: the one place a build decides to retry a
        chunk (execute/chunkwork.py). By default, what the error says of itself (BackendError's and
        FalError's `transient`); a backend may know more."""
        return isinstance(error, LtxflowError) and bool(getattr(error, "transient", False))

    def committed(self, key: str) -> None:
        """The chunk rendered under `key` is in the cache: forget what tracked its render."""

    def in_flight(self) -> set[str]:
        """Keys of chunks already submitted (paid for) by an earlier build, to be collected."""
        return set()

    def close(self) -> None:
        """The build is over: release processes and devices."""


@dataclass(frozen=True)
class BackendContext:
    """What a backend may use of the build: its cache folder, the project file, the reporter's
    emit, the event set when the build stops (Ctrl-C); for a local backend the weights folder, fp8,
    and the (mode, model family) pairs the plan's chunks use."""

    cache_root: Path
    project: Path | None = None
    emit: Callable[..., None] = lambda *a, **k: None
    stop: threading.Event = field(default_factory=threading.Event)
    models: Path | None = None
    fp8: bool = False
    needs: frozenset[tuple[str, str]] = frozenset()
