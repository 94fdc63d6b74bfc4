"""The preview backend: a free, deterministic animatic that shows timing and continuity on a CPU.

It starts from the chunk's start image (keyframe or chain frame) or a card made from the prompt,
moves toward the end image, moves the camera as the scene says, pulses with the onsets of its
audio span, and burns in the scene, chunk, timecode and prompt. A scene that starts from another
scene's prompt card (a chain frame that goes back to no picture: ChunkRequest.chain_scene)
dissolves from it into a card of its own prompt within SCENE_FADE_S (and on toward its end image,
when it has one); the chunks after it chain from that card. Without this, the card made for the
first scene of a project without keyframes ran through every scene chained after it, whatever
their prompts. A chain frame that holds a picture (a keyframe, an end image) is kept, as a model
would continue it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import textwrap
import threading
import wave
from pathlib import Path

from ltxflow.backends.base import Backend, BackendContext, BackendError, ChunkRequest, RenderResult
from ltxflow.media.encode import FfmpegFailed, FrameWriter, encode_frames_args
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.timeline import timecode

# Camera moves over one chunk at camera_scale 1: (zoom from, zoom to, pan x, pan y) with pans as
# a fraction of the frame; the crop window moves, so a pan right shows what is to the right.
CAMERA = {
    "dolly_in": (1.0, 1.3, 0.0, 0.0),
    "dolly_out": (1.3, 1.0, 0.0, 0.0),
    "dolly_left": (1.15, 1.15, -0.12, 0.0),
    "dolly_right": (1.15, 1.15, 0.12, 0.0),
    "jib_up": (1.15, 1.15, 0.0, -0.12),
    "jib_down": (1.15, 1.15, 0.0, 0.12),
    "static": (1.0, 1.0, 0.0, 0.0),
}
ONSET, FADED = 0.3, 0.125  # see _pulse
SCENE_FADE_S = 1.0  # a chained scene's dissolve into its own card
RAW_VIDEO = ("-c:v", "libx264", "-preset", "ultrafast", "-crf", "14", "-pix_fmt", "yuv420p")


class PreviewBackend(Backend):  # explicit: inherits the no-op preflight and committed
    name = "preview"
    draws = True  # a build normalizes its frames as drawn (see Backend.draw); `render` writes a clip

    def __init__(self, max_concurrency: int | None = None, stop: threading.Event | None = None):
        self.max_concurrency = max_concurrency or max(1, os.cpu_count() or 1)
        self.stop = stop  # set when the build stops: the frame loop gives up (Stopped)

    @classmethod
    def create(cls, ctx: BackendContext) -> "PreviewBackend":
        return cls(stop=ctx.stop)

    def render(self, request: ChunkRequest, workdir: Path) -> RenderResult:
        out = workdir / "preview.mp4"
        args = encode_frames_args(find_ffmpeg().path, request.width, request.height, request.fps, out, RAW_VIDEO)
        try:
            with FrameWriter(args, out, f"preview {request.chunk_id}", stop=self.stop) as writer:
                for frame in animatic_frames(request):
                    writer.write(frame)
        except FfmpegFailed as exc:
            raise BackendError(str(exc)) from exc
        return RenderResult(out, request.seed, 0.0, {"renderer": "animatic"})

    def draw(self, request: ChunkRequest):
        """The animatic's frames as Pillow RGB images (the same frames `render` encodes)."""
        return animatic_frames(request, raw=False)


def animatic_frames(request: ChunkRequest, raw: bool = True):
    """The chunk's frames as packed RGB bytes (w x h x 3), or as Pillow images (`raw` False):
    exactly request.frames of them."""
    import numpy as np
    from PIL import Image

    w, h, n = request.width, request.height, request.frames
    start = _base_image(request, request.start_image, w, h)
    end = _load(request.end_image, w, h) if request.end_image else None
    card = fade = None
    if request.start_image is not None and request.chain_scene not in (None, request.scene_id):
        card, fade = _prompt_card(request, w, h), max(1, round(float(request.fps) * SCENE_FADE_S))
    zoom0, zoom1, pan_x, pan_y = CAMERA.get(request.values.get("camera") or "static", CAMERA["static"])
    scale = float(request.values.get("camera_scale", 1.0))
    zoom0, zoom1 = 1 + (zoom0 - 1) * scale, 1 + (zoom1 - 1) * scale
    pulse = _pulse(request.audio, n, request.fps) if request.audio else np.zeros(n)
    band = _caption_band(request, w, h)
    for i in range(n):
        p = i / (n - 1) if n > 1 else 0.0
        zoom = zoom0 + (zoom1 - zoom0) * p
        # The crop window (the picture zoomed by `zoom`) travels across the pan, kept inside the picture.
        cw, ch = w / zoom, h / zoom
        cx = w / 2 + _travel(pan_x * scale * w, w - cw) * (p - 0.5)
        cy = h / 2 + _travel(pan_y * scale * h, h - ch) * (p - 0.5)
        box = (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
        mixed = start if card is None else Image.blend(start, card, i / fade) if i < fade else card
        if end is not None:
            mixed = Image.blend(mixed, end, p ** 1.5)
        frame = mixed.resize((w, h), Image.BILINEAR, box=box) if box != (0, 0, w, h) else mixed.copy()
        gain = 256 + int(64 * pulse[i])
        if gain > 258:
            frame = frame.point([min(255, (v * gain) >> 8) for v in range(256)] * 3)
        _burn_in(frame, band, request, i)
        yield frame.tobytes() if raw else frame


def _travel(wanted: float, room: float) -> float:
    """A pan of `wanted` pixels, limited to the `room` the zoomed crop window leaves."""
    return max(-room, min(room, wanted))


def _base_image(request: ChunkRequest, path: Path | None, w: int, h: int):
    if path is not None:
        return _load(path, w, h)
    return _prompt_card(request, w, h)


def _load(path: Path, w: int, h: int):
    """An image scaled to cover w x h and centre-cropped."""
    from PIL import Image

    from ltxflow.media.images import open_image  # PNG, JPEG, WebP only: never Ghostscript or another delegate

    try:
        with open_image(path) as img:
            img = img.convert("RGB")
            s = max(w / img.width, h / img.height)
            img = img.resize((max(w, round(img.width * s)), max(h, round(img.height * s))), Image.LANCZOS)
            x, y = (img.width - w) // 2, (img.height - h) // 2
            return img.crop((x, y, x + w, y + h))
    except OSError as exc:
        raise BackendError(f"cannot read image {path.name}: {exc}") from exc


def _prompt_card(request: ChunkRequest, w: int, h: int):
    """A gradient card coloured by the prompt's hash, with the prompt written on it."""
    import numpy as np
    from PIL import Image, ImageDraw

    d = np.frombuffer(hashlib.sha256(request.prompt.encode()).digest(), dtype=np.uint8).astype(np.float32)
    a, b = d[0:3], d[3:6] * 0.5
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = Image.fromarray(np.broadcast_to(a * (1 - ramp) + b * ramp, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    font = _font(max(12, h // 18))
    line_h = font.getbbox("A")[3] + 6  # multiline_text's step from line to line (spacing 6)
    text = card_text(request.prompt, max(16, w // max(8, h // 30)), (h - h // 4) // max(1, line_h) + 1)
    draw.multiline_text((w // 12, h // 4), text, fill=(255, 255, 255), font=font, spacing=6)
    return img


def card_text(prompt: str, width: int, lines: int) -> str:
    """The start of `prompt` wrapped at `width` characters, at most `lines` lines: what fits on the
    card, in time that does not grow with the prompt (wrapping and drawing all of a long one took
    minutes, most of it below the picture's edge)."""
    head = prompt[: 2 * width * lines]  # enough for `lines` lines however the words break
    wrapped = textwrap.wrap(head, width=width)
    return "\n".join(wrapped[:lines])


@functools.lru_cache(maxsize=8)
def _font(size: int):
    """Pillow's built-in font at `size` (loaded once: loading it decodes the font each time)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _caption_band(request: ChunkRequest, w: int, h: int):
    """The static part of the burn-in, drawn once per chunk: a black bar with scene and chunk and
    the start of the prompt; (the bar, where the running timecode goes in it)."""
    from PIL import Image, ImageDraw

    prompt = request.prompt if len(request.prompt) <= 70 else request.prompt[:67] + "..."
    size = max(10, h // 28)
    font = _font(size)
    bar = Image.new("RGB", (w, size * 2 + 12), (0, 0, 0))
    draw = ImageDraw.Draw(bar)
    ids = f"{request.scene_id} | {request.chunk_id} | "
    draw.text((8, 4), ids, fill=(255, 255, 0), font=font)
    draw.text((8, 6 + size), prompt, fill=(230, 230, 230), font=font)
    return bar, (8 + round(draw.textlength(ids, font=font)), 4), font


def _burn_in(img, band, request: ChunkRequest, i: int) -> None:
    from PIL import ImageDraw

    bar, at, font = band
    top = img.height - bar.height
    img.paste(bar, (0, top))
    ImageDraw.Draw(img).text((at[0], top + at[1]), timecode(request.timeline_frame + i, request.fps),
                             fill=(255, 255, 0), font=font)


def _pulse(audio: Path, n: int, fps) -> "object":
    """Per frame, 0..1: how strongly an onset falls on it, decaying after. An onset is a rise in
    loudness of at least ONSET of the span's strong rises (99th percentile); a pulse ends when it
    has decayed below FADED (a brightening of under 3% is not seen, and every pulsed frame costs
    a pass over its pixels)."""
    import numpy as np

    with wave.open(str(audio)) as wf:
        rate, ch = wf.getframerate(), wf.getnchannels()
        pcm = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2").astype(np.float32)
    mono = pcm.reshape(-1, ch).mean(axis=1) / 32768.0 if ch > 1 else pcm / 32768.0
    bounds = [round(i * rate / float(fps)) for i in range(n + 1)]
    rms = np.array([np.sqrt(np.mean(mono[a:b] ** 2)) if b > a and a < len(mono) else 0.0
                    for a, b in zip(bounds, bounds[1:])], dtype=np.float32)
    rise = np.maximum(0.0, np.diff(rms, prepend=rms[:1]))
    ref = max(float(np.percentile(rise, 99)) if rise.size else 0.0, 0.02)
    out = np.zeros(n, dtype=np.float32)
    level = 0.0
    for i in range(n):
        hit = rise[i] / ref
        level = max(min(1.0, hit) if hit >= ONSET else 0.0, level * 0.7)
        out[i] = level if level >= FADED else 0.0
    return out
