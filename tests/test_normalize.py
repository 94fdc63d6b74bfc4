"""Normalizing clips as they enter the cache, and the ffmpeg command lines behind it."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ltxflow.media.encode import concat_list, encode_frames_args, output_format, stitch_args, timescale
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.frames import decode_rgb, video_info
from ltxflow.media.normalize import normalize_clip

FMT = output_format("mp4", "low")


def numbered_clip(path: Path, frames: int, fps: str, size: tuple[int, int]) -> Path:
    """A clip whose frame i is a flat grey of level 8*i (so frames can be told apart after coding)."""
    w, h = size
    subprocess.run([find_ffmpeg().path, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
                    "-framerate", fps, "-i", "pipe:0", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p",
                    str(path)],
                   input=b"".join(bytes([8 * i % 256]) * (w * h) for i in range(frames)), check=True)
    return path


def levels(path: Path) -> list[int]:
    return [int(round(f.mean() / 8)) for f in decode_rgb(path)]


def test_keeps_planned_frames_by_index_and_conforms(tmp_path):
    # A clip that came back at 25 fps and another size: retimed by index, scaled, head/tail dropped.
    raw = numbered_clip(tmp_path / "raw.mp4", 25, "25", (160, 90))
    out, png = tmp_path / "clip.mp4", tmp_path / "chain.png"
    report = normalize_clip(raw, out, png, head=1, kept=20, generated=25, width=128, height=64,
                            fps=Fraction(24), fmt=FMT)
    info = video_info(out)
    assert (info.frames, info.width, info.height, info.fps) == (20, 128, 64, Fraction(24))
    assert levels(out) == list(range(1, 21))
    assert report.deviations == ["size: asked for 128x64, got 160x90"]
    chain = np.asarray(Image.open(png))
    assert chain.shape == (64, 128, 3) and round(chain.mean() / 8) == 20  # the last kept frame


def test_short_clip_holds_its_last_frame_and_says_so(tmp_path):
    raw = numbered_clip(tmp_path / "raw.mp4", 15, "24", (128, 64))
    out = tmp_path / "clip.mp4"
    report = normalize_clip(raw, out, None, head=1, kept=20, generated=25, width=128, height=64,
                            fps=Fraction(24), fmt=FMT)
    assert levels(out) == list(range(1, 15)) + [14] * 6
    assert report.deviations == ["frames: asked for 25, got 15"]


def test_drawn_frames_are_normalized_as_drawn_and_never_drawn_past_the_last_kept(tmp_path):
    # A drawing backend's frames (Pillow images) go straight into the clip; each pass draws only up
    # to the last kept frame, and the report counts the frames the drawing has.
    from ltxflow.media.colormatch import ColorTarget
    from ltxflow.media.normalize import DrawnFrames

    drawn: list[int] = []

    def draw():
        for i in range(12):
            drawn.append(i)
            yield Image.new("RGB", (128, 64), (8 * i, 8 * i, 8 * i))

    source = DrawnFrames("s.0", draw, 12)
    out, png = tmp_path / "clip.mp4", tmp_path / "chain.png"
    report = normalize_clip(source, out, png, head=2, kept=5, generated=12, width=128, height=64,
                            fps=Fraction(24), fmt=FMT)
    assert levels(out) == [2, 3, 4, 5, 6] and drawn == list(range(7))
    assert report.raw_frames == 12 and report.deviations == [] and report.read_s > 0
    assert round(np.asarray(Image.open(png)).mean() / 8) == 6
    drawn.clear()
    report = normalize_clip(source, out, None, head=2, kept=5, generated=12, width=128, height=64,
                            fps=Fraction(24), fmt=FMT, color=ColorTarget(0.9))
    assert drawn == list(range(7)) * 2 and report.color is not None  # statistics, then the frames
    assert video_info(out).frames == 5


def test_undecodable_clip(tmp_path):
    from ltxflow.media.probe import MediaError

    bad = tmp_path / "raw.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError):
        normalize_clip(bad, tmp_path / "o.mp4", None, head=0, kept=9, generated=9, width=64, height=64,
                       fps=Fraction(24), fmt=FMT)
    assert not (tmp_path / "o.mp4").exists()


def pair(args: list[str], flag: str) -> str:
    """The value that follows `flag` in an argument list (the flag given once)."""
    assert args.count(flag) == 1, (flag, args)
    return args[args.index(flag) + 1]


def test_command_lines():
    fps = Fraction(24000, 1001)
    assert timescale(fps) == 24000 and timescale(Fraction(24)) == 10008 and timescale(Fraction(25)) == 10000
    # The pairs that matter, wherever ffmpeg's argument order puts them: raw RGB frames of this
    # size and exact rate from stdin, one output frame per input frame, the rate's own timescale.
    args = encode_frames_args("ffmpeg", 64, 32, fps, Path("o.mp4"), ("-c:v", "libx264"))
    for flag, value in (("-f", "rawvideo"), ("-pix_fmt", "rgb24"), ("-s", "64x32"), ("-framerate", "24000/1001"),
                        ("-i", "pipe:0"), ("-c:v", "libx264"), ("-fps_mode", "passthrough"),
                        ("-video_track_timescale", "24000"), ("-movflags", "+faststart")):
        assert pair(args, flag) == value, flag
    assert args[0] == "ffmpeg" and args[-1] == "o.mp4" and "-an" in args and "-nostdin" not in args
    assert args.index("-framerate") < args.index("-i") < args.index("-c:v")  # input options before the input
    # The stitch copies the concatenated clips' video and the master track's audio, untouched.
    args = stitch_args("ffmpeg", Path("l.txt"), Path("a.m4a"), Path("o.mp4"), Fraction(24), FMT)
    assert [args[i + 1] for i, a in enumerate(args) if a == "-i"] == ["l.txt", "a.m4a"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "-map"] == ["0:v:0", "1:a:0"]
    for flag, value in (("-f", "concat"), ("-safe", "0"), ("-c", "copy"), ("-video_track_timescale", "10008"),
                        ("-movflags", "+faststart")):
        assert pair(args, flag) == value, flag
    assert args.index("-f") < args.index("-i") and args[-1] == "o.mp4"
    args = stitch_args("ffmpeg", Path("l"), None, Path("o.webm"), Fraction(24), output_format("webm", "high"))
    assert [args[i + 1] for i, a in enumerate(args) if a == "-map"] == ["0:v:0"] and pair(args, "-c") == "copy"
    assert "-movflags" not in args and args[-1] == "o.webm"
    assert concat_list([Path("/a/it's.mp4")]) == "ffconcat version 1.0\nfile '/a/it'\\''s.mp4'\n"
