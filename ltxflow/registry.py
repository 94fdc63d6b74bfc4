"""The backends ltxflow knows: one line each, saying what the backend is.

What a backend is (its traits) is data here, so the layers below the backends (project: which
names a project file may give, sizes, what a backend cannot do; plan: cost, keys) and the CLI's
start read it without importing any backend; the class named in the line is imported only when a
build makes one (backends.make_backend calls its `create(context)`). Adding a backend: one module
under ltxflow/backends/ with a Backend class, and one line below (see the README, "Adding a
backend")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendSpec:
    name: str
    cls: str  # "module:Class", a subclass of backends.base.Backend with a `create(context)` classmethod
    priced: bool = False  # charges per chunk: plan and the max_cost guard count its cost (else $0)
    positional: bool = False  # draws the chunk's place in the video into its frames: the key holds it
    drawing: int = 0  # a drawing backend's version of its frames, in the key when not 0: bumped when
    #                   what it draws changes, so clips drawn the old way are drawn again
    size_multiple: int = 32  # width and height it generates at are multiples of this
    in_project: bool = True  # a project file may name it (`backend:`); else the CLI's --backend only
    fp8: bool = False  # `fp8:` changes what it renders: the key holds it
    clip_quality: str | None = None  # its clips are encoded at this quality whatever `quality:` says
    journals: bool = False  # requests it submits outlive a build (plan shows them as submitted)
    weights: bool = False  # reads a folder of model weights (`models:`, --models, LTXFLOW_LTX_MODELS)
    camera_moves: bool = True  # `camera:` is something it can do
    files_only: bool = False  # reads media from files only (no URLs)


BACKENDS: dict[str, BackendSpec] = {s.name: s for s in (
    BackendSpec("preview", "ltxflow.backends.preview:PreviewBackend", positional=True, clip_quality="draft",
                drawing=2),  # 2: a scene chained from another's card dissolves into its own
    BackendSpec("fal", "ltxflow.backends.fal:FalBackend", priced=True, journals=True),
    # ltx-pipelines' two-stage pipelines assert sizes that are multiples of 64 (utils/helpers.py)
    BackendSpec("local", "ltxflow.backends.local:LocalBackend", size_multiple=64, fp8=True, weights=True,
                camera_moves=False, files_only=True),
    BackendSpec("test", "ltxflow.backends.testing:TestBackend", positional=True, in_project=False),
)}

# The names a project file may give in `backend:`.
PROJECT_BACKENDS = tuple(n for n, s in BACKENDS.items() if s.in_project)
