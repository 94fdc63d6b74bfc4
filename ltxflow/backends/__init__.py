"""Backends by name. A plain dict: outside packages do not plug in yet."""

from __future__ import annotations

from typing import Callable

from ltxflow.backends.base import Backend
from ltxflow.errors import LtxflowError


class BackendUnavailable(LtxflowError):
    exit_code = 2


def _preview() -> Backend:
    from ltxflow.backends.preview import PreviewBackend

    return PreviewBackend()


def _test() -> Backend:
    from ltxflow.backends.testing import TestBackend

    return TestBackend.from_env()


def _not_yet(name: str) -> Callable[[], Backend]:
    def make() -> Backend:
        raise BackendUnavailable(f"the {name} backend is not available in this version of ltxflow; "
                                 "build with --backend preview")
    return make


BACKENDS: dict[str, Callable[[], Backend]] = {
    "preview": _preview,
    "fal": _not_yet("fal"),
    "local": _not_yet("local"),
    "test": _test,
}


def make_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]()
