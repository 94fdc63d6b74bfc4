"""Crossfade seams: the window arithmetic, clips cut at forced key frames by packet copy, and
builds through the real CLI whose seams dissolve while every other frame is copied untouched."""

from __future__ import annotations

import json
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from test_build import build_json, ltx, make_project, media

from ltxflow.media.crossfade import blend, split_clip
from ltxflow.media.encode import (LOSSLESS_VIDEO, FrameWriter, encode_frames_args, keyframe_args, output_format,
                                  piece_mux_options)
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.frames import decode_rgb, video_info
from ltxflow.media.normalize import normalize_clip
from ltxflow.media.probe import MediaError
from ltxflow.crossfades import Piece, Split, Window, fit, plan_seams
from ltxflow.timeline import Span

# -- the window arithmetic (pure) -----------------------------------------------------------------


@pytest.mark.parametrize("n, a, b, frames", [
    (8, 25, 25, 8),    # room on both sides: as asked
    (9, 25, 25, 9),    # odd: 4 from A, 5 from B
    (8, 2, 25, 3),     # A gives at most 1 frame (half of 2): 1 + 2
    (8, 3, 25, 3),     # half of 3 is 1
    (8, 25, 5, 4),     # B gives at most 2: 2 + 2
    (8, 25, 2, 2),     # 1 + 1
    (8, 1, 25, 1),     # A has no frame to give: too short
    (8, 25, 1, 0),     # B has none
    (48, 10, 10, 10),  # a long crossfade over short clips: 5 + 5
])
def test_fit(n, a, b, frames):
    m = fit(n, a, b)
    assert m == frames
    if m >= 2:
        assert m // 2 <= a // 2 and m - m // 2 <= b // 2


@pytest.mark.parametrize("window, table", [
    # (A's frame counted back from the seam, B's frame from the seam, B's weight)
    (Window(1, 4, 4), [(-4, 0, Fraction(1, 16)), (-3, 0, Fraction(3, 16)), (-2, 0, Fraction(5, 16)),
                       (-1, 0, Fraction(7, 16)), (-1, 0, Fraction(9, 16)), (-1, 1, Fraction(11, 16)),
                       (-1, 2, Fraction(13, 16)), (-1, 3, Fraction(15, 16))]),
    (Window(1, 1, 2), [(-1, 0, Fraction(1, 6)), (-1, 0, Fraction(1, 2)), (-1, 1, Fraction(5, 6))]),
    (Window(3, 1, 1), [(-1, 0, Fraction(1, 4)), (-1, 0, Fraction(3, 4))]),
])
def test_window_sources(window, table):
    assert window.sources() == table


def test_plan_seams_windows_splits_and_notes():
    pieces = [Piece("a.0", 25), Piece("a.1", 11, "crossfade", 8), Piece("b.0", 25, "cut"),
              Piece("c.0", 3, "crossfade", 8), Piece("c.1", 1, "crossfade", 8),
              Piece("d.0", 10, "crossfade", 6, joined=False), Piece("d.1", 20, "crossfade", 9)]
    seams = plan_seams(pieces)
    assert seams.windows == (Window(1, 4, 4), Window(3, 1, 1), Window(6, 4, 5))
    assert seams.splits == (Split(25, 0, 4), Split(11, 4, 0), Split(25, 0, 1), Split(3, 1, 0), Split(1),
                            Split(10, 0, 4), Split(20, 5, 0))
    assert [s.keyframes for s in seams.splits] == [(21,), (4,), (24,), (1,), (), (6,), (5,)]
    assert seams.splits[0].ranges == [(0, 21), (21, 25)] and seams.splits[4].ranges == [(0, 1)]
    assert [c for c, _ in seams.notes] == ["c.0", "c.1"]
    assert "shortened from 8 to 2 frames" in seams.notes[0][1] and "b.0 has 25 frames" in seams.notes[0][1]
    assert "no crossfade fits" in seams.notes[1][1] and "cut" in seams.notes[1][1]
    assert seams.blended == 8 + 2 + 9
    # Bodies and windows tile the output: every frame once, totals as planned.
    assert sum(s.body[1] - s.body[0] for s in seams.splits) + seams.blended == sum(p.frames for p in pieces)
    assert Split(8, 4, 4).keyframes == (4,) and Split(8, 4, 4).ranges == [(0, 4), (4, 8)]  # an empty body


def test_blend_holds_the_ends_and_rounds():
    a = [np.full((2, 2, 3), v, np.uint8) for v in (10, 20)]  # A's last two frames
    b = [np.full((2, 2, 3), v, np.uint8) for v in (200, 100)]  # B's first two
    got = [int(f[0, 0, 0]) for f in blend(a, b, Window(1, 2, 2))]
    # j=0: A[-2] and B[0] at 1/8; j=1, 2: A[-1] and B[0] (held) at 3/8, 5/8; j=3: A[-1], B[1] at 7/8;
    # halves round up
    assert got == [int(x + 0.5) for x in (10 * 7 / 8 + 200 / 8, 20 * 5 / 8 + 200 * 3 / 8, 20 * 3 / 8 + 200 * 5 / 8,
                                          20 / 8 + 100 * 7 / 8)]
    assert got[2] == 133  # 132.5


def test_command_lines():
    x264 = output_format("mp4", "low").video
    assert keyframe_args(x264, (21, 4)) == ["-force_key_frames", "expr:eq(n,4)+eq(n,21)", "-forced-idr", "1"]
    assert keyframe_args(output_format("webm", "low").video, (4,)) == ["-force_key_frames", "expr:eq(n,4)"]
    assert keyframe_args(output_format("mov", "low").video, (4,)) == [] and keyframe_args(x264, ()) == []
    assert output_format("mov", "high").all_key and not output_format("gif", "high").all_key
    args = encode_frames_args("ffmpeg", 64, 32, Fraction(24), Path("w.mp4"), ("-c:v", "libx264"), keyframes=(3,),
                              exact_duration=True)
    after = {a: args[i + 1] for i, a in enumerate(args) if a.startswith("-") and i > args.index("libx264")}
    assert after["-force_key_frames"] == "expr:eq(n,3)" and after["-forced-idr"] == "1"
    assert after["-video_track_timescale"] == after["-movie_timescale"] == "10008"  # exact_duration: both
    assert after["-fps_mode"] == "passthrough" and args[-1] == "w.mp4"
    assert piece_mux_options(Path("p.mov"), Fraction(24000, 1001)) == {"video_track_timescale": "24000",
                                                                      "movie_timescale": "24000"}
    assert piece_mux_options(Path("p.webm"), Fraction(24)) == {}


# -- normalizing with key frames, cutting by packet copy --------------------------------------------


def raw_clip(path: Path, frames: int = 25, size: tuple[int, int] = (128, 64)) -> Path:
    """A lossless clip with motion (so the encoders use B-frames and inter prediction)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    args = encode_frames_args(find_ffmpeg().path, w, h, Fraction(24), path, LOSSLESS_VIDEO)
    with FrameWriter(args, path, "raw clip") as writer:
        for i in range(frames):
            writer.write(np.stack([np.sin((xx + 3 * i) / 7) * 100 + 120, np.cos((yy + i) / 5) * 100 + 120,
                                   (xx * yy / (i + 3)) % 255], -1).astype(np.uint8))
    return path


def packets(path: Path) -> list[tuple[int, bool, bytes]]:
    """(frame index, key frame, payload) of each packet, in display order."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = s.average_rate
        got = [(round(p.pts * s.time_base * fps), p.is_keyframe, bytes(p)) for p in c.demux(s) if p.size]
    return sorted(got)


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_key_frames_where_asked_and_exact_parts(tmp_path, ext):
    fmt = output_format(ext, "low")
    raw = raw_clip(tmp_path / "raw.mp4")
    clip = tmp_path / f"clip.{ext}"
    normalize_clip(raw, clip, None, head=0, kept=25, generated=25, width=128, height=64, fps=Fraction(24), fmt=fmt,
                   keyframes=(5, 17))
    pk = packets(clip)
    assert [i for i, _, _ in pk] == list(range(25))
    assert {0, 5, 17} <= {i for i, key, _ in pk if key}
    parts = split_clip(clip, Split(25, 5, 8), Fraction(24), tmp_path / "part")
    assert list(parts) == [(0, 5), (5, 17), (17, 25)]
    # Each part holds exactly its frames, packet for packet, and decodes to the clip's frames.
    joined = [p for lo, hi in parts for p in packets(parts[(lo, hi)])]
    assert [payload for _, _, payload in joined] == [payload for _, _, payload in pk]
    whole = list(decode_rgb(clip))
    for (lo, hi), path in parts.items():
        assert video_info(path).frames == hi - lo
        assert all(np.array_equal(x, y) for x, y in zip(decode_rgb(path), whole[lo:hi]))
    # A clip normalized without those key frames cannot be cut there, and says where.
    plain = tmp_path / f"plain.{ext}"
    normalize_clip(raw, plain, None, head=0, kept=25, generated=25, width=128, height=64, fps=Fraction(24), fmt=fmt)
    with pytest.raises(MediaError, match=f"plain.{ext}: cannot be cut at frame 5"):
        split_clip(plain, Split(25, 5, 8), Fraction(24), tmp_path / "bad")


# -- builds ------------------------------------------------------------------------------------------

TWO_SCENES = """
  - id: intro
    end: 1.5
    prompt: "a red card"
    image: keyframes/a.png
  - id: outro
    prompt: "a blue card"
    image: keyframes/b.png
"""


# Seams where these tests expect them: balanced 25-frame chunks chained from their last frame.
CHUNKING = "max_frames: 25, boundaries: even, chain_offset: 0"


def crossfade_project(root: Path, fps: str = "24", output: str = "out/video.mp4", frames: int = 8,
                      scenes: str = TWO_SCENES) -> Path:
    return make_project(root, fps, seconds=3.0, output=output, scenes=scenes, chunking=CHUNKING,
                        extra=f"defaults: {{seam: crossfade, crossfade_frames: {frames}}}")


def planned(project: Path) -> list[dict]:
    return json.loads(ltx("plan", str(project), "--json", cwd=project.parent, check=True).stdout)["chunks"]


def normalized(root: Path, chunks: list[dict]) -> list[Path]:
    """Each chunk's normalized clip in the build's cache (the only variant a whole build makes)."""
    entries = {json.loads(r.read_text())["chunk"]: r.parent for r in (root / "cache" / "chunks").glob("*/*/record.json")}
    clips = []
    for c in chunks:
        found = list(entries[c["id"]].glob("clip.*"))
        assert len(found) == 1, found
        clips.append(found[0])
    return clips


def stitch_event(evs: list[dict]) -> dict:
    return [e for e in evs if e["event"] == "stitch_done"][0]


def frame_times(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(p.pts for p in c.demux(s) if p.size)


@pytest.mark.parametrize("fps, chunking", [
    ("24", CHUNKING), ("25", CHUNKING), ("30", CHUNKING), ("24000/1001", CHUNKING),
    # The defaults: seams moved onto beats, each chained chunk's last frames dropped (chain_offset).
    ("25", "max_frames: 25"), ("24000/1001", "max_frames: 25, chain_offset: 3"),
])
def test_totals_are_exact_at_every_rate(tmp_path, fps, chunking):
    project = make_project(tmp_path, fps, seconds=3.0, scenes=TWO_SCENES, chunking=chunking,
                           extra="defaults: {seam: crossfade, crossfade_frames: 8}")
    chunks = planned(project)
    if chunking != CHUNKING:
        assert any(c["tail_frames"] >= 3 for c in chunks) and any(c["seam"]["placed"] == "beat" for c in chunks)
    _, evs = build_json(project)
    out = tmp_path / "out" / "video.mp4"
    frames, (audio, rate) = media(out)
    assert frames == round(3 * Fraction(fps)) == sum(c["kept_frames"] for c in chunks)
    assert len(audio) == round(frames * Fraction(rate) / Fraction(fps))
    times = frame_times(out)  # evenly spaced: no piece shifted by a rounded duration
    assert len(set(np.diff(times))) == 1
    st = stitch_event(evs)
    assert st["crossfades"] == len(chunks) - 1 >= 3 and st["reencoded_frames"] == 8 * (len(chunks) - 1)


def nal_slices(payload: bytes) -> bytes:
    """An H.264 packet (length-prefixed) without its parameter sets, which the concat demuxer
    repeats before key frames."""
    out, i = [], 0
    while i < len(payload):
        (n,) = struct.unpack(">I", payload[i:i + 4])
        if payload[i + 4] & 31 not in (7, 8):
            out.append(payload[i:i + 4 + n])
        i += 4 + n
    return b"".join(out)


def test_only_the_windows_are_encoded_again(tmp_path):
    project = crossfade_project(tmp_path)
    chunks = planned(project)
    _, evs = build_json(project)
    out = tmp_path / "out" / "video.mp4"
    clips = normalized(tmp_path, chunks)
    assert all("-k" in c.name for c in clips)  # normalized with the key frames the stitch cuts at
    ref = [f for c in clips for f in decode_rgb(c)]
    got = list(decode_rgb(out))
    seams = [c["start_frame"] for c in chunks[1:]]
    windows = {t: (s, t - (s - 4)) for s in seams for t in range(s - 4, s + 4)}  # frame -> (seam, j)
    assert len(got) == len(ref) == 72
    # Outside the windows: the clips' own frames, bit for bit (stream copy, no generation loss).
    assert [t for t in range(72) if t not in windows and not np.array_equal(got[t], ref[t])] == []
    # Inside: (1 - a_j) A + a_j B of the decoded clips (A holds its last frame, B its first), to within
    # the coding error of one encode at quality low; far from either clip's own frame where they differ.
    for t, (s, j) in windows.items():
        a, b = ref[min(t, s - 1)].astype(float), ref[max(t, s)].astype(float)
        alpha = (j + 0.5) / 8
        assert np.abs(got[t] - ((1 - alpha) * a + alpha * b)).mean() < 5, (t, s, j)
    scene_seam = chunks[[c["scene"] for c in chunks].index("outro")]["start_frame"]
    a_last, b_first, mid = (ref[scene_seam - 1].mean(axis=(0, 1)), ref[scene_seam].mean(axis=(0, 1)),
                            got[scene_seam].mean(axis=(0, 1)))  # j = 4 of 8: a = 9/16
    ch = int(np.argmax(np.abs(a_last - b_first)))  # the channel the red-to-blue dissolve moves most
    lo, hi = sorted((a_last[ch], b_first[ch]))
    assert hi - lo > 60 and lo + 0.3 * (hi - lo) < mid[ch] < hi - 0.3 * (hi - lo)
    # Packet for packet, the frames encoded again are exactly the windows.
    clip_packets = [nal_slices(p) for c in clips for _, _, p in packets(c)]
    out_packets = [nal_slices(p) for _, _, p in packets(out)]
    reencoded = [t for t in range(72) if out_packets[t] != clip_packets[t]]
    assert reencoded == sorted(windows) and stitch_event(evs)["reencoded_frames"] == len(windows) == 24

    # Another crossfade length makes the clips again (the preview draws them again: it keeps no
    # raw clip); nothing renders.
    project.write_text(project.read_text().replace("crossfade_frames: 8", "crossfade_frames: 6"))
    notes = {c["id"]: c["reasons"] for c in json.loads(ltx("plan", str(project), "--json", "--explain",
                                                           cwd=tmp_path, check=True).stdout)["chunks"]}
    assert all(c["status"] == "cached" for c in planned(project))
    assert all(n == ["its clip is drawn again (preview keeps no raw clip)"] for n in notes.values())
    _, evs = build_json(project)
    assert [e for e in evs if e["event"] == "chunk_started"] == []
    assert stitch_event(evs)["reencoded_frames"] == 18 and media(out)[0] == 72

    # A range: the seams inside it; a window cut by the range's start is clamped and says so.
    _, evs = build_json(project, "--range", "0:00.95-0:02.2")  # frames 23..53: 2 frames before intro.1
    ranged = tmp_path / "out" / "video.0.958s-2.208s.mp4"
    assert media(ranged)[0] == 30 and len(set(np.diff(frame_times(ranged)))) == 1
    warnings = [e for e in evs if e["event"] == "warning"]
    assert [e["chunk"] for e in warnings] == ["intro.1"] and "shortened from 6 to 3 frames" in warnings[0]["message"]
    st = stitch_event(evs)
    assert st["crossfades"] == 2 and st["reencoded_frames"] == 3 + 6
    assert [e for e in evs if e["event"] == "chunk_started"] == []

    # --only: the seams inside the scene; its whole chunks' clips serve as they are.
    variants = sorted((tmp_path / "cache" / "chunks").glob("*/*/clip.*"))
    _, evs = build_json(project, "--only", "outro")
    assert media(tmp_path / "out" / "video.outro.mp4")[0] == 36
    assert stitch_event(evs)["crossfades"] == sum(1 for c in chunks if c["scene"] == "outro") - 1
    assert sorted((tmp_path / "cache" / "chunks").glob("*/*/clip.*")) == variants


def test_short_clips_shorten_the_window_or_cut(tmp_path):
    scenes = """
  - id: intro
    end: 1.5
    prompt: "a red card"
    image: keyframes/a.png
    seam: cut
  - id: flash
    end: 1.5834
    prompt: "two frames"
    image: keyframes/b.png
  - id: blink
    end: 1.625
    prompt: "one frame"
    image: keyframes/a.png
  - id: outro
    prompt: "a blue card"
    image: keyframes/b.png
"""
    project = crossfade_project(tmp_path, scenes=scenes)
    chunks = planned(project)
    assert [(c["id"], c["kept_frames"]) for c in chunks[1:4]] == [("intro.1", 11), ("flash.0", 2), ("blink.0", 1)]
    assert [c["id"] for c in chunks[4:]] == ["outro.0", "outro.1"] and chunks[4]["kept_frames"] >= 8
    _, evs = build_json(project)
    warnings = {e["chunk"]: e["message"] for e in evs if e["event"] == "warning"}
    assert sorted(warnings) == ["blink.0", "flash.0", "outro.0"]  # intro.1: a cut by choice, outro.1: room
    assert "shortened from 8 to 2 frames" in warnings["flash.0"]  # one frame from each side
    assert "blink.0: no crossfade fits" in warnings["blink.0"] and "the seam is a cut" in warnings["blink.0"]
    assert "outro.0: no crossfade fits" in warnings["outro.0"]  # blink.0 has no frame to give
    st = stitch_event(evs)
    assert st["crossfades"] == 2 and st["reencoded_frames"] == 2 + 8
    assert media(tmp_path / "out" / "video.mp4")[0] == 72


@pytest.mark.parametrize("ext", ["webm", "mov", "gif"])
def test_containers(tmp_path, ext):
    project = crossfade_project(tmp_path, output=f"out/video.{ext}")
    chunks = planned(project)
    _, evs = build_json(project)
    out = tmp_path / "out" / f"video.{ext}"
    frames, audio = media(out)
    assert frames == 72 and (audio is None) == (ext == "gif")
    assert stitch_event(evs)["reencoded_frames"] == 8 * (len(chunks) - 1)
    clips = normalized(tmp_path, chunks)
    assert all(("-k" in c.name) == (ext != "mov") for c in clips)  # ProRes: every frame is a key frame
    if ext != "gif":
        ref = [f for c in clips for f in decode_rgb(c)]
        windows = {t for c in chunks[1:] for t in range(c["start_frame"] - 4, c["start_frame"] + 4)}
        got = list(decode_rgb(out))
        assert [t for t in range(72) if t not in windows and not np.array_equal(got[t], ref[t])] == []


def test_cut_seams_stitch_as_before(tmp_path):
    from ltxflow.media.probe import probe_audio
    from ltxflow.media.stitch import stitch

    project = make_project(tmp_path, seconds=3.0, scenes=TWO_SCENES, chunking=CHUNKING, extra="defaults: {seam: cut}")
    chunks = planned(project)
    _, evs = build_json(project)
    out = tmp_path / "out" / "video.mp4"
    clips = normalized(tmp_path, chunks)
    assert all("-k" not in c.name for c in clips)  # no key frames forced
    st = stitch_event(evs)
    assert st["crossfades"] == 0 and st["reencoded_frames"] == 0
    # The output is, byte for byte, the plain stream-copy stitch of the normalized clips.
    (tmp_path / "work").mkdir()
    again = tmp_path / "again.mp4"
    stitch(clips, [Span(0, 72)], probe_audio(tmp_path / "media" / "song.wav"), Fraction(24), output_format("mp4", "low"),
           again, tmp_path / "cache" / "audio", tmp_path / "work")
    assert again.read_bytes() == out.read_bytes()
