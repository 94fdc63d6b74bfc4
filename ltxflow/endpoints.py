"""The endpoint catalog (endpoints.yaml) as typed data: fields, ranges, vocabulary, prices."""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["audio-to-video", "image-to-video"]
MODES: tuple[Mode, ...] = ("audio-to-video", "image-to-video")

# Vocabulary terms ltxflow itself sets on every request; a project cannot set their fields via params.
MANAGED_TERMS = ("prompt", "negative_prompt", "seed", "frames", "size", "fps", "audio", "image", "end_image", "loras")
# Fields ltxflow always sets or that would change how results come back.
MANAGED_FIELDS = ("match_audio_length", "sync_mode", "video_output_type")


class FieldSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["string", "int", "float", "bool", "enum", "size", "url", "loras"]
    required: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    max_items: int | None = None
    item: tuple[str, ...] | None = None

    def check(self, value: Any) -> str | None:
        """None when `value` is acceptable, else why not (for a message)."""
        t = self.type
        if t == "bool" and not isinstance(value, bool):
            return f"expected true or false, got {value!r}"
        if t in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"expected a number, got {value!r}"
            if isinstance(value, float) and not math.isfinite(value):
                return f"expected a finite number, got {value!r}"
            if t == "int" and not isinstance(value, int):
                return f"expected a whole number, got {value!r}"
            if self.min is not None and value < self.min:
                return f"{value} is below the minimum {_num(self.min)}"
            if self.max is not None and value > self.max:
                return f"{value} is above the maximum {_num(self.max)}"
        if t in ("string", "url") and not isinstance(value, str):
            return f"expected text, got {value!r}"
        if t == "enum" and value not in (self.choices or ()):
            return f"{value!r} is not one of {', '.join(map(str, self.choices or ()))}"
        if t == "loras" and self.max_items is not None and len(value) > self.max_items:
            return f"{len(value)} LoRAs; at most {self.max_items}"
        return None

    def describe(self) -> str:
        if self.type == "enum":
            return "one of " + ", ".join(map(str, self.choices or ()))
        if self.min is not None or self.max is not None:
            return f"{self.type} {_num(self.min)}..{_num(self.max)}"
        return self.type


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else str(x)


class Endpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    mode: Mode
    family: str
    lora: bool
    sibling: str | None = Field(None, description="the LoRA / non-LoRA counterpart")
    price_per_mp: float
    price_confirmed: bool = True
    range_source: Literal["own", "sibling"] = "own"
    fields: dict[str, FieldSpec]
    vocab: dict[str, str]

    def field_for(self, term: str) -> str | None:
        """The endpoint's own field name for a vocabulary term, or None when it has none."""
        return self.vocab.get(term)

    def supports(self, term: str) -> bool:
        return term in self.vocab

    @property
    def start_image_required(self) -> bool:
        return self.fields[self.vocab["image"]].required

    def megapixels(self, width: int, height: int, frames: int) -> int:
        """fal bills width x height x frames in megapixels, rounded up."""
        return math.ceil(width * height * frames / 1_000_000)

    def cost(self, width: int, height: int, frames: int) -> float:
        return round(self.megapixels(width, height, frames) * self.price_per_mp, 6)


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)

    endpoints: dict[str, Endpoint]
    families: dict[str, dict[Mode, dict[Literal["plain", "lora"], str]]]

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self.endpoints.get(endpoint_id)

    def for_family(self, family: str, mode: Mode, lora: bool) -> Endpoint:
        return self.endpoints[self.families[family][mode]["lora" if lora else "plain"]]

    def supporting(self, term: str, mode: Mode | None = None) -> list[str]:
        """Ids of endpoints (of `mode`, when given) that take vocabulary term `term`."""
        return [e.id for e in self.endpoints.values() if e.supports(term) and (mode is None or e.mode == mode)]

    def families_supporting(self, term: str, mode: Mode, lora: bool = False) -> list[str]:
        """Model families (`model:` values) whose endpoint for `mode` (with LoRAs or without) takes `term`."""
        return [f for f in self.families if self.for_family(f, mode, lora).supports(term)]


def _build(raw: dict[str, Any]) -> Catalog:
    groups = raw["groups"]
    family_of: dict[str, str] = {}
    lora_of: dict[str, bool] = {}
    siblings: dict[str, str] = {}
    for family, modes in raw["families"].items():
        for pair in modes.values():
            family_of[pair["plain"]], lora_of[pair["plain"]] = family, False
            family_of[pair["lora"]], lora_of[pair["lora"]] = family, True
            siblings[pair["plain"]], siblings[pair["lora"]] = pair["lora"], pair["plain"]
    endpoints = {}
    for eid, spec in raw["endpoints"].items():
        fields: dict[str, Any] = {}
        vocab: dict[str, str] = {}
        for g in spec["uses"]:
            fields.update(groups[g].get("fields", {}))
            vocab.update(groups[g].get("vocab", {}))
        extra = {k: v for k, v in spec.items() if k != "uses"}
        endpoints[eid] = Endpoint(id=eid, family=family_of[eid], lora=lora_of[eid], sibling=siblings.get(eid),
                                  fields=fields, vocab=vocab, **extra)
    for eid, ep in endpoints.items():
        missing = [f for f in ep.vocab.values() if f not in ep.fields]
        if missing:
            raise ValueError(f"catalog: {eid} maps vocabulary onto unknown fields {missing}")
    return Catalog(endpoints=endpoints, families=raw["families"])


@functools.cache
def catalog() -> Catalog:
    """The packaged endpoint catalog (parsed once per process)."""
    text = resources.files("ltxflow").joinpath("endpoints.yaml").read_text(encoding="utf-8")
    # libyaml's parser where PyYAML has it (the same safe constructors; 0.2 s less per command)
    return _build(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
