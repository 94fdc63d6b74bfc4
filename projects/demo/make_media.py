"""Makes the demo project's media: a 40 s synthetic song at 120 BPM and its keyframe images.

Deterministic: running it again writes identical files. The outputs are committed, so the demo
validates from a fresh clone; run `python projects/demo/make_media.py` to regenerate them.
"""

from __future__ import annotations

import math
import random
import struct
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
RATE = 16_000
SECONDS = 40
BPM = 120
BEAT = 60 / BPM
# A quiet half-bar before the drop (29.0-30.0 s) and before the outro (35.5-36.0 s).
GAPS = [(29.0, 30.0), (35.5, 36.0)]
CHORDS = [(220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (196.0, 246.94, 293.66), (164.81, 207.65, 246.94)]


def _song() -> list[float]:
    rng = random.Random(7)
    n = RATE * SECONDS
    out = [0.0] * n
    noise = [rng.uniform(-1, 1) for _ in range(RATE // 4)]
    beats = int(SECONDS / BEAT)
    for b in range(beats):
        t0 = b * BEAT
        start = int(t0 * RATE)
        # Kick on every beat: a falling sine with a fast decay.
        for i in range(int(0.18 * RATE)):
            t = i / RATE
            f = 45 + 70 * math.exp(-t * 30)
            out[start + i] += 0.8 * math.sin(2 * math.pi * f * t) * math.exp(-t * 18)
        # Snare on beats 2 and 4 after the intro.
        if t0 >= 8 and b % 2 == 1:
            for i in range(int(0.12 * RATE)):
                out[start + i] += 0.35 * noise[i] * math.exp(-i / RATE * 35)
    # Chord pad: one chord per bar.
    for i in range(n):
        t = i / RATE
        chord = CHORDS[int(t / (4 * BEAT)) % len(CHORDS)]
        swell = 0.5 + 0.5 * math.sin(2 * math.pi * t / (4 * BEAT))
        out[i] += 0.06 * swell * sum(math.sin(2 * math.pi * f * t) for f in chord)
    for lo, hi in GAPS:
        for i in range(int(lo * RATE), int(hi * RATE)):
            out[i] = 0.0
    fade = int(0.5 * RATE)
    for i in range(fade):
        out[n - 1 - i] *= i / fade
    return out


def write_song(path: Path) -> None:
    samples = _song()
    peak = max(abs(s) for s in samples) or 1.0
    frames = b"".join(struct.pack("<h", int(round(s / peak * 0.89 * 32767))) for s in samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(frames)


def write_keyframe(path: Path, top: tuple[int, int, int], bottom: tuple[int, int, int], sun: tuple[int, int, int],
                   size: tuple[int, int] = (640, 352)) -> None:
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(h):
        a = y / (h - 1)
        draw.line([(0, y), (w, y)], fill=tuple(int(top[c] * (1 - a) + bottom[c] * a) for c in range(3)))
    draw.ellipse([w * 0.62, h * 0.18, w * 0.82, h * 0.18 + w * 0.2], fill=sun)
    for x in range(0, w, 40):  # a row of skyline blocks
        bh = int(h * (0.15 + 0.25 * ((x * 37) % 100) / 100))
        draw.rectangle([x, h - bh, x + 30, h], fill=(12, 10, 28))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)


def main() -> None:
    write_song(HERE / "media" / "song.wav")
    write_keyframe(HERE / "keyframes" / "intro.png", (20, 16, 60), (230, 60, 140), (255, 210, 90))
    write_keyframe(HERE / "keyframes" / "drop-end.png", (8, 8, 24), (40, 200, 220), (255, 255, 255))
    write_keyframe(HERE / "keyframes" / "outro.png", (255, 140, 60), (60, 20, 80), (255, 240, 200))
    print(f"wrote media under {HERE}")


if __name__ == "__main__":
    main()
