"""The project file, version 1, as frozen pydantic models (the JSON Schema is generated from these)."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
)

from ltxflow.registry import PROJECT_BACKENDS
from ltxflow.timeline import MUSICAL_PATTERN, MusicTime, fps_str, parse_fps, parse_time

CURRENT_VERSION = 1

# fal's size presets (named the same in the project file).
SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "landscape_16_9": (1024, 576),
    "portrait_16_9": (576, 1024),
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "landscape_4_3": (1024, 768),
    "portrait_4_3": (768, 1024),
}
SIZE_MULTIPLE = 32
SIZE_LIMITS = (64, 4096)
_SIZE = re.compile(r"^(\d+)\s*[xX×]\s*(\d+)$")

CAMERA_MOVES = ("dolly_in", "dolly_out", "dolly_left", "dolly_right", "jib_up", "jib_down", "static", "none")
Camera = Literal["dolly_in", "dolly_out", "dolly_left", "dolly_right", "jib_up", "jib_down", "static", "none"]
Backend = Literal[PROJECT_BACKENDS]  # type: ignore[valid-type] # the registry's names a project may give
OUTPUT_CONTAINERS = (".mp4", ".webm", ".mov", ".gif")


def _parse_resolution(value: object) -> str:
    """The output size as asked: any even WxH within SIZE_LIMITS (chunks are generated at the
    nearest size the model accepts and scaled to it; see resolve.generation_size), a preset, or
    auto. Every side's problem is reported at once."""
    if not isinstance(value, str):
        raise ValueError("expected WxH (e.g. 1920x1080), a preset or auto")
    text = value.strip()
    if text == "auto" or text in SIZE_PRESETS:
        return text
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"{value!r} is not WxH (e.g. 1920x1080), auto, or one of {', '.join(SIZE_PRESETS)}")
    w, h = int(m.group(1)), int(m.group(2))
    lo, hi = SIZE_LIMITS
    problems = []
    for side, name in ((w, "width"), (h, "height")):
        if not lo <= side <= hi:
            problems.append(f"{name} {side} is outside {lo}..{hi}")
        elif side % 2:
            problems.append(f"{name} {side} is odd (video needs even sides: {side - 1} or {side + 1})")
    if problems:
        raise ValueError("; ".join(problems))
    return f"{w}x{h}"


Fps = Annotated[
    Fraction,
    BeforeValidator(parse_fps),
    PlainSerializer(fps_str, return_type=str),
    WithJsonSchema({
        "description": "frames per second, 1..60: a number or a ratio such as \"24000/1001\"",
        "anyOf": [
            {"type": "number", "minimum": 1, "maximum": 60},
            {"type": "string", "pattern": r"^\s*\d+(\.\d+)?(\s*/\s*\d+)?\s*$"},
        ],
    }),
]

def _time_str(t: Fraction | MusicTime) -> str:
    if isinstance(t, MusicTime):
        return str(t)
    return str(float(t)) if t.denominator != 1 else str(t.numerator)


TimeSpec = Annotated[
    Any,  # Fraction seconds, or a MusicTime resolved against the track's beats
    PlainValidator(parse_time),
    PlainSerializer(_time_str, return_type=str),
    WithJsonSchema({
        "description": "seconds (12.5), a timecode \"m:ss.fff\" / \"h:mm:ss.fff\", or musical: "
                       "\"bar 17\", \"bar 17 beat 3\", \"beat 64\" (1-based, from the track's analysis)",
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|(\d+:)?\d+:\d+(\.\d+)?)\s*$"},
            {"type": "string", "pattern": MUSICAL_PATTERN},
        ],
    }),
]

Resolution = Annotated[
    str,
    BeforeValidator(_parse_resolution),
    WithJsonSchema({
        "description": "WxH, even sides (e.g. 1920x1080: chunks are generated at the nearest size the model "
                       "accepts and scaled to it exactly), a preset, or auto",
        "anyOf": [
            {"type": "string", "pattern": r"^\d+[xX]\d+$"},
            {"enum": ["auto", *SIZE_PRESETS]},
        ],
    }),
]

Unit = Annotated[float, Field(ge=0, le=1)]
# A prompt's length, in characters: generous (the prompts LTX-2.3 is made for are a few sentences to a
# few paragraphs), and a bound on what every chunk carries into its key, its request and the report.
MAX_PROMPT_CHARS = 20_000
DEFAULT_COLOR_STRENGTH = 0.9  # what `color_match: true` (the default) means; see media/colormatch.py


def color_strength(value: bool | float | None) -> float:
    """The strength a scene's color_match asks for: true or unset -> DEFAULT_COLOR_STRENGTH, false -> 0."""
    if value is None or value is True:
        return DEFAULT_COLOR_STRENGTH
    return float(value)


class _Frozen(BaseModel):
    # strict: "30" is not a number and true is not 1.0 -- a wrong type is an error, not a guess.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class Lora(_Frozen):
    """A LoRA applied to the model: a URL or a .safetensors file inside the project."""

    path: str = Field(min_length=1, description="http(s) URL or a path relative to the project file")
    scale: float = Field(1.0, ge=-4, le=4, description="strength of the LoRA")
    transformer: Literal["both"] = Field("both", description="which transformer the LoRA applies to")


class SceneParams(_Frozen):
    """Everything a scene can set; `defaults:` takes the same keys and every scene inherits them."""

    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="what the chunk shows")
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    image: str | None = Field(None, description="start keyframe: a file in the project or an http(s) URL; "
                                                "absent: chained from the previous scene's last frame")
    end_image: str | None = Field(None, description="image the scene ends on (its last chunk only)")
    image_strength: Unit | None = None
    end_image_strength: Unit | None = None
    audio_strength: Unit | None = Field(None, description="how strongly the audio drives motion "
                                                          "(endpoints that support it)")
    audio_driven: bool | None = Field(None, description="true: audio-to-video (default); false: image-to-video")
    loras: list[Lora] | None = Field(None, max_length=3, description="at most 3")
    camera: Camera | None = Field(None, description="camera move (a camera LoRA where the endpoint has one)")
    camera_scale: float | None = Field(None, ge=0, le=1)
    steps: int | None = Field(None, ge=1, description="inference steps")
    guidance_scale: float | None = Field(None, ge=0)
    seed: int | None = Field(None, ge=0, lt=2**32, description="seed for this scene's chunks "
                                                              "(default: derived from the project seed)")
    model: str | None = Field(None, description="model family for this scene")
    endpoint: str | None = Field(None, description="explicit endpoint id, e.g. fal-ai/ltx-2.3-quality/image-to-video")
    params: dict[str, Any] | None = Field(None, description="endpoint-specific extras, in the endpoint's own "
                                                            "field names, validated against it")
    color_match: bool | Unit | None = Field(
        None, description="take the slow colour drift out of each clip, relative to the image it starts from "
                          "(moving toward its end image, if any): the share taken out, 0..1; true: "
                          f"{DEFAULT_COLOR_STRENGTH} (the default), false or 0: off. Overlays and letterbox bars "
                          "are left out of the statistics; a clip that holds its colours is left as it is")
    seam: Literal["cut", "crossfade"] | None = Field(None, description="how each of this scene's chunks joins the "
                                                                       "clip before it; default cut")
    crossfade_frames: int | None = Field(None, ge=2, le=48, description="frames a crossfade seam blends "
                                                                        "over, centred on the seam (default 8)")

    @field_validator("prompt", "negative_prompt", mode="before")
    @classmethod
    def _prompt_length(cls, v: object) -> object:
        """Said in characters and without echoing the text (max_length's own message would not)."""
        if isinstance(v, str) and len(v) > MAX_PROMPT_CHARS:
            raise ValueError(f"{len(v)} characters; at most {MAX_PROMPT_CHARS} (a prompt is a few sentences to a "
                             "few paragraphs)")
        return v


SCENE_PARAM_NAMES = tuple(SceneParams.model_fields)


class Scene(SceneParams):
    id: str = Field(pattern=r"^[a-z0-9_-]+$", max_length=64, description="unique, [a-z0-9_-]+")
    start: TimeSpec | None = Field(None, description="default: the previous scene's end (first scene: 0)")
    end: TimeSpec | None = Field(None, description="default: the next scene's start; last scene: end of audio")


DEFAULT_CHAIN_OFFSET = 8  # one latent frame of LTX's VAE (8 pixel frames): see README, "The chain frame"


class Chunking(_Frozen):
    max_frames: int = Field(481, ge=9, le=481, description="most frames one generation may produce (9..481)")
    boundaries: Literal["even", "beats", "gaps"] = Field(
        "beats", description="where seams inside a scene go: even (balanced chunks), beats (the nearest beat), "
                             "gaps (the nearest quiet gap in the music)")
    window: float = Field(2.0, gt=0, le=30, description="seconds a seam may move from its balanced place to land "
                                                        "on a beat or gap")
    chain_offset: int | None = Field(None, ge=0, le=64,
                                     description="a chained chunk starts from the frame this many frames before "
                                                 "the end of the previous chunk, whose last frames are dropped "
                                                 f"(default {DEFAULT_CHAIN_OFFSET}, less when max_frames is below 33)")


class Music(_Frozen):
    """How the track's beats group into bars (the beats themselves come from the analysis)."""

    beats_per_bar: int = Field(4, ge=1, le=16, description="beats in a bar (4 for 4/4)")
    first_bar: int | None = Field(None, ge=1, description="the beat (1-based) bar 1 starts on; default: the "
                                                          "phase whose beats carry the strongest onsets")


class FalOptions(_Frozen):
    """How fal treats this project's requests (backend fal): platform headers sent with every submit.
    Not part of a chunk's key (each chunk's record says which were sent)."""

    fallbacks: bool = Field(False, description="let fal reroute a request it keeps failing to run to an "
                                               "\"equivalent\" endpoint (another model, whose clip would be cached "
                                               "under this endpoint); default false: x-fal-disable-fallbacks is sent")
    store_payloads: bool = Field(True, description="false: ask fal not to keep the requests' inputs and outputs "
                                                   "(X-Fal-Store-IO: 0; fal keeps them 30 days by default), e.g. for "
                                                   "unreleased music; uploaded media still expire on their own")


class RayOptions(_Frozen):
    """Rendering on a Ray cluster (`ltxflow build --ray`, LTXFLOW_RAY_ADDRESS override `address`).
    Not part of a chunk's key: where a chunk renders does not change what it is."""

    address: str | None = Field(None, min_length=1, description="local (a private cluster for the build), auto "
                                                                "(the one running here), host:6379 or ray://host:10001")
    shared: str | None = Field(None, min_length=1, description="a folder every node and this machine mount: clips "
                                                               "come back through it instead of Ray's object store")
    actors: int | None = Field(None, ge=1, description="how many actors render; default one per GPU (backend "
                                                       "local) or one per cpus_per_actor CPUs")
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs each preview or test actor reserves")


class Project(_Frozen):
    """An ltxflow project file."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False, title="ltxflow project",
                              json_schema_extra={"$id": "https://ltxflow.dev/schemas/project.schema.json"})

    version: Literal[1] = Field(description="format version; this ltxflow reads 1")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$", max_length=100,
                             description="default: the project file's stem")
    audio: str = Field(min_length=1, description="master track (wav, mp3, flac, ogg, m4a), relative to the project file")
    fps: Fps = Field(Fraction(24), description="1..60, or a ratio such as 24000/1001")
    resolution: Resolution = Field("1280x704", description="the output's WxH (even sides), a preset, or auto")
    seed: int = Field(0, ge=0, lt=2**32, description="project seed; chunk seeds derive from it")
    backend: Backend = Field("preview", description=f"{' | '.join(PROJECT_BACKENDS)} (CLI --backend overrides)")
    model: str = Field("ltx-2.3-quality", description="model family, mapped to an endpoint per scene mode")
    endpoint: str | None = Field(None, description="explicit endpoint id for every scene that sets none")
    output: str | None = Field(None, description="output video; container from the extension "
                                                 "(.mp4 .webm .mov .gif); default out/<name>.mp4")
    quality: Literal["low", "medium", "high", "maximum"] = Field(
        "high", description="encoder quality preset of the output video")
    chunking: Chunking = Field(default_factory=Chunking)
    music: Music = Field(default_factory=Music)
    models: str | None = Field(None, min_length=1, description="folder of LTX-2.3 weights for backend local, "
                                                              "inside the project folder (LTXFLOW_LTX_MODELS "
                                                              "and --models, which may name any folder, override)")
    fp8: bool = Field(False, description="backend local: cast the transformer to fp8 for 24-32 GB cards "
                                         "(changes the output, so it is part of each chunk's key)")
    max_cost: float | None = Field(None, gt=0, description="refuse a build whose chunks to render now would cost "
                                                          "more than this many USD (hosted backends; --max-cost overrides)")
    fal: FalOptions = Field(default_factory=FalOptions, description="backend fal: how fal treats the requests")
    ray: RayOptions = Field(default_factory=RayOptions, description="where chunks render on a Ray cluster")
    defaults: SceneParams = Field(default_factory=SceneParams)
    scenes: list[Scene] = Field(min_length=1)

    @field_validator("output")
    @classmethod
    def _output_container(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().endswith(OUTPUT_CONTAINERS):
            raise ValueError(f"{v!r}: the extension must be one of {' '.join(OUTPUT_CONTAINERS)}")
        return v
