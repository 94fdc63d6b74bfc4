"""The fake fal's request validation: a body checked against the endpoint catalog, with fal's
422 detail shape ({loc, msg, type}). Stricter than fal in one way: unknown fields are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ltxflow.endpoints import Endpoint


class Storage(Protocol):
    """What validation asks of the fake's storage (server.FakeFal): its base URL, and the file an
    uploaded URL names (None: not one it holds)."""

    url: str

    def local_file(self, url: str) -> Path | None: ...

PRESETS = {"square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
           "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576),
           "auto": (1280, 720)}


def size_of(value: Any) -> tuple[int, int]:
    if isinstance(value, dict):
        return int(value["width"]), int(value["height"])
    return PRESETS.get(str(value), PRESETS["auto"])


def validate(ep: Endpoint, body: Any, fake: Storage) -> list[dict[str, Any]]:
    """fal-style validation details (loc, msg, type) for a body, [] when valid."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    out = []

    def bad(name: str, msg: str, kind: str = "value_error") -> None:
        out.append({"loc": ["body", name], "msg": msg, "type": kind})

    for name, spec in ep.fields.items():
        if spec.required and name not in body:
            bad(name, "Field required", "missing")
    for name, value in body.items():
        spec = ep.fields.get(name)
        if spec is None:
            bad(name, "Extra inputs are not permitted", "extra_forbidden")
        elif spec.type == "size":
            ok = (isinstance(value, dict) and set(value) == {"width", "height"}
                  and all(isinstance(value[k], int) and not isinstance(value[k], bool) and 1 <= value[k] <= 4096
                          for k in value)) or (isinstance(value, str) and value in PRESETS)
            if not ok:
                bad(name, "Input should be an image size {width, height} or a preset")
        elif spec.type == "url":
            _check_url(name, value, fake, bad)
        elif spec.type == "loras":
            if not isinstance(value, list):
                bad(name, "Input should be a valid list", "list_type")
                continue
            if (why := spec.check(value)) is not None:
                bad(name, why)
            for i, item in enumerate(value):
                keys = set(spec.item or ())
                if not isinstance(item, dict) or "path" not in item or not set(item) <= keys:
                    bad(f"{name}.{i}", f"Input should be an object with keys {sorted(keys)}")
                    continue
                _check_url(f"{name}.{i}.path", item["path"], fake, bad)
                if not isinstance(item.get("scale", 1), (int, float)) or isinstance(item.get("scale"), bool):
                    bad(f"{name}.{i}.scale", "Input should be a valid number")
                if "transformer" in item and item["transformer"] != "both":
                    bad(f"{name}.{i}.transformer", "Input should be 'both'")
        elif (why := spec.check(value)) is not None:
            bad(name, why)
    return out


def _check_url(name: str, value: Any, fake: Storage, bad: Any) -> None:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        bad(name, "Input should be a valid URL")
    elif value.startswith(fake.url) and fake.local_file(value) is None:
        bad(name, f"File {value} could not be downloaded", "file_download_error")
