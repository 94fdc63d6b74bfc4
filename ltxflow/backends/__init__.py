"""Backends by name. A plain dict: outside packages do not plug in yet."""

from __future__ import annotations

from typing import Callable

from ltxflow.backends.base import Backend, BackendContext
from ltxflow.errors import BackendUnavailable


def _preview(ctx: BackendContext) -> Backend:
    from ltxflow.backends.preview import PreviewBackend

    return PreviewBackend(stop=ctx.stop)


def _test(ctx: BackendContext) -> Backend:
    from ltxflow.backends.testing import TestBackend

    return TestBackend.from_env(stop=ctx.stop)


def _fal(ctx: BackendContext) -> Backend:
    from ltxflow.backends.fal import FalBackend

    return FalBackend.from_env(ctx.cache_root, ctx.project, emit=ctx.emit, stop=ctx.stop)


def _local(ctx: BackendContext) -> Backend:
    from ltxflow.backends.local import LocalBackend, job_kind

    return LocalBackend(ctx.models, {job_kind(mode, family) for mode, family in ctx.needs}, fp8=ctx.fp8,
                        emit=ctx.emit, stop=ctx.stop)


BACKENDS: dict[str, Callable[[BackendContext], Backend]] = {
    "preview": _preview,
    "fal": _fal,
    "local": _local,
    "test": _test,
}


# Backends whose clips are drafts, encoded at this quality whatever the project's `quality:` says:
# the animatic is for timing and continuity, and its normalized clips are named by that quality,
# so a draft clip is never taken for a final one.
CLIP_QUALITY: dict[str, str] = {"preview": "draft"}


def clip_quality(backend: str, quality: str) -> str:
    """The quality a build with `backend` encodes its normalized clips (and so the output) at."""
    return CLIP_QUALITY.get(backend, quality)


def make_backend(name: str, ctx: BackendContext) -> Backend:
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](ctx)
