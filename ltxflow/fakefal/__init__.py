"""A fake fal (queue + storage over HTTP on 127.0.0.1) for tests and key-less dry runs."""

from ltxflow.fakefal.server import FakeFal

__all__ = ["FakeFal"]
