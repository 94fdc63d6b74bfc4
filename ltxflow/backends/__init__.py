"""Making a backend by name, from the registry (ltxflow/registry.py: what each one is, and its class)."""

from __future__ import annotations

import importlib

from ltxflow.backends.base import Backend, BackendContext
from ltxflow.errors import BackendUnavailable
from ltxflow.registry import BACKENDS


def backend_class(name: str) -> type[Backend]:
    """The class the registry names for backend `name` (its module imported now)."""
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[name].cls.partition(":")
    return getattr(importlib.import_module(module), cls)


def make_backend(name: str, ctx: BackendContext) -> Backend:
    return backend_class(name).create(ctx)
