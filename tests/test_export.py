"""`ltxflow export`: timelines read back through OpenTimelineIO and its adapters equal the plan, frame for frame."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import plan_of, realmedia
from test_build import ltx, make_project

otio = pytest.importorskip("opentimelineio")  # the export extra (in the test extra)

SCENES = """
  - id: intro
    end: 1
    prompt: "an opening card"
    image: keyframes/a.png
  - id: verse
    end: 2
    prompt: "the verse, chained from the intro"
  - id: outro
    prompt: "a second keyframe"
    image: keyframes/b.png
"""


def crossfade_project(root: Path, fps: str) -> Path:
    """A 3-second song in 5 chunks (one of 6 frames: its crossfades are shortened to fit), every
    seam a crossfade of 8 frames, frames counted evenly (no music analysis)."""
    return make_project(root, fps, seconds=3.0, scenes=SCENES, extra="defaults: {seam: crossfade, crossfade_frames: 8}",
                        chunking="max_frames: 25, boundaries: even")


def export(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return ltx("export", str(project), *args, cwd=project.parent, check=check)


def windows(plan, built: list[str]) -> dict[str, tuple[int, int]]:
    """The stitch's crossfade windows between the built chunks: chunk after the seam -> (before, after)."""
    from ltxflow import crossfades
    from ltxflow.timeline import Span

    pieces = [(c.id, Span(c.start_frame, c.end_frame)) for c in plan.chunks if c.id in built]
    seams = crossfades.plan_seams(crossfades.selection_pieces(plan, pieces))
    return {pieces[w.index][0]: (w.before, w.after) for w in seams.windows}


def handles(plan, built: list[str]) -> dict[str, tuple[int, int]]:
    """Each built chunk's (head, tail): the frames its dissolves read before its first frame (the
    crossfade into it: its window's before) and past its last (the one out of it: its after)."""
    into = windows(plan, built)
    order = [c.id for c in plan.chunks if c.id in built]
    out_of = {a: into[b][1] for a, b in zip(order, order[1:]) if b in into}
    return {c: (into.get(c, (0, 0))[0], out_of.get(c, 0)) for c in order}


def frames(t) -> int:
    return round(t.to_frames())


def video_items(timeline) -> list:
    (track,) = timeline.video_tracks()
    return list(track)


def check_video(timeline, plan, built: list[str], rate: float, transitions: bool = True, whole: bool = True,
                held: bool = True) -> None:
    """Clips at their plan frames (source range and record position), gaps for the rest,
    dissolves with the plan's windows, the whole as long as the video (unless not `whole`: an
    EDL has no event after its last clip, so a gap at the end is not there). With `held` each
    clip's media has its handles around its frames and its source range starts after its head."""
    clips = {c.name: c for c in timeline.find_clips() if c.parent().kind == otio.schema.TrackKind.Video}
    assert sorted(clips) == sorted(built)
    pads = handles(plan, built)
    for chunk in plan.chunks:
        if chunk.id not in built:
            continue
        clip = clips[chunk.id]
        head, tail = pads[chunk.id] if held else (0, 0)
        assert abs(clip.source_range.duration.rate - rate) < 1e-3
        assert (frames(clip.source_range.start_time), frames(clip.source_range.duration)) == (head, chunk.kept_frames)
        available = clip.media_reference.available_range  # an EDL does not state it
        assert available is None or (frames(available.start_time), frames(available.duration)) == (
            0, head + chunk.kept_frames + tail)
        placed = clip.range_in_parent()
        assert (frames(placed.start_time), frames(placed.duration)) == (chunk.start_frame, chunk.kept_frames)
    seen = {}
    items = video_items(timeline)
    for k, item in enumerate(items):
        if isinstance(item, otio.schema.Transition):
            seen[items[k + 1].name] = (frames(item.in_offset), frames(item.out_offset))
    assert seen == (windows(plan, built) if transitions else {})
    if not whole:
        return
    gaps = [i for i in video_items(timeline) if isinstance(i, otio.schema.Gap)]
    assert sum(frames(g.source_range.duration) for g in gaps) == sum(c.kept_frames for c in plan.chunks
                                                                      if c.id not in built)
    assert frames(timeline.duration()) == plan.project.total_frames
    assert frames(timeline.video_tracks()[0].duration()) == plan.project.total_frames


def check_markers(markers, plan) -> None:
    """A marker per scene over its frames and one per seam at its frame."""
    got = sorted((m.name.split(" (")[0], frames(m.marked_range.start_time), frames(m.marked_range.duration))
                 for m in markers)
    want = [(s.id, s.start_frame, s.frames) for s in plan.project.scenes]
    want += [(f"{a.id} | {b.id}", b.start_frame, 0) for a, b in zip(plan.chunks, plan.chunks[1:])]
    assert got == sorted(want)


def check_edl_video(edl, plan, built: list[str], rate: float) -> None:
    """A CMX 3600 dissolve starts where its outgoing clip's event ends and reads the incoming
    clip's source from before its first frame, which the held copies have: read back, the
    dissolve is (0, before + after) and the clip after it starts `before` frames ahead of its
    seam at source frame 0 (its head less the window's before), and runs to the next dissolve.
    Each clip's own first frame is still at its plan frame; the whole ends with the last clip."""
    into = windows(plan, built)
    order = [c for c in plan.chunks if c.id in built]
    items = video_items(edl)
    seen = {items[k + 1].name: (frames(i.in_offset), frames(i.out_offset))
            for k, i in enumerate(items) if isinstance(i, otio.schema.Transition)}
    assert seen == {c: (0, b + a) for c, (b, a) in into.items()}
    clips = {c.name: c for c in edl.find_clips()}
    assert sorted(clips) == sorted(built)
    pads = handles(plan, built)
    for k, chunk in enumerate(order):
        clip = clips[chunk.id]
        before = into.get(chunk.id, (0, 0))[0]
        next_before = into.get(order[k + 1].id, (0, 0))[0] if k + 1 < len(order) else 0
        assert abs(clip.source_range.duration.rate - rate) < 1e-3
        start = frames(clip.source_range.start_time)
        assert start == pads[chunk.id][0] - before == 0
        placed = clip.range_in_parent()
        assert frames(placed.start_time) == chunk.start_frame - before
        assert frames(placed.duration) == chunk.kept_frames + before - next_before
    assert frames(edl.duration()) == order[-1].end_frame


def check_edl_markers(edl, plan, dissolves: bool = True) -> None:
    """LOC comments: each marker by name (the EDL upper-cases it) at its frame, on the clip it
    starts in (its source time, the clip's source start on its record start). A dissolve's event
    repeats the outgoing clip's comments, LOCs too: read back, they are on the clip after it as
    well, in the outgoing clip's source time, which is checked too."""
    clips = list(edl.find_clips())
    built = {c.name for c in clips}
    want = [(s.id, s.start_frame) for s in plan.project.scenes]
    want += [(f"{a.id} | {b.id}", b.start_frame) for a, b in zip(plan.chunks, plan.chunks[1:])]
    starts = {c.start_frame: c.id for c in plan.chunks}
    home = {c.id: [] for c in plan.chunks}
    for name, frame in sorted(want):
        if starts[frame] in built:
            home[starts[frame]].append((name, frame))

    def own(clip) -> list:  # (name, timeline frame) of its markers, in its source time
        at = frames(clip.range_in_parent().start_time) - frames(clip.source_range.start_time)
        return sorted((m.name.split(" (")[0].lower(), at + frames(m.marked_range.start_time)) for m in clip.markers)

    items = video_items(edl)
    for k, clip in enumerate(items):
        if not isinstance(clip, otio.schema.Clip):
            continue
        got = own(clip)
        if k and isinstance(items[k - 1], otio.schema.Transition):
            assert dissolves
            prev = items[k - 2]  # its markers repeated, in its source time
            shift = frames(prev.range_in_parent().start_time) - frames(clip.range_in_parent().start_time)
            for name, frame in home[prev.name]:
                got.remove((name, frame - shift))  # ValueError: not repeated
        assert got == home[clip.name], clip.name


def url_path(url: str) -> Path:
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(url).path))


def media_path(clip) -> Path:
    return url_path(clip.media_reference.target_url)


def check_held_media(timeline, plan, sources: dict[str, Path]) -> None:
    """Each clip's file has its head, its frames and its tail (demuxed); decoded, each held frame
    is its clip's first or last frame (`sources`: chunk -> the clip in the cache), encoded again:
    nearer to that frame than to the one next to it, and the frames between are the clip's."""
    import numpy as np

    from ltxflow.media.frames import decode_rgb, video_info

    def diff(a, b) -> float:
        return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())

    pads = handles(plan, list(sources))
    for clip in timeline.video_tracks()[0].find_clips():
        chunk = plan.chunk(clip.name)
        head, tail = pads[chunk.id]
        path = media_path(clip)
        assert video_info(path).frames == head + chunk.kept_frames + tail, path.name
        if not head and not tail:
            continue
        got, src = list(decode_rgb(path)), list(decode_rgb(sources[chunk.id]))
        assert len(got) == head + len(src) + tail and len(src) == chunk.kept_frames
        for k, frame in enumerate(src):
            assert diff(got[head + k], frame) < 1.5, (path.name, k)
        ends = [(got[:head], src[0], src[1]), (got[head + len(src):], src[-1], src[-2])]
        for held, end, beside in ends:
            for frame in held:
                assert diff(frame, end) < min(1.5, diff(frame, beside)), path.name


def check_fcp_xml(path: Path, media: Path) -> None:
    """Every clip item's in and out lie within its file (none negative: the dissolves read held
    frames), and each file is one of the export's copies."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    files = {f.get("id"): (url_path(f.findtext("pathurl")), int(f.findtext("duration")))
             for f in root.iter("file") if f.findtext("pathurl")}  # a file's later mentions are by id only
    clips = [(item, files[item.find("file").get("id")]) for item in root.iter("clipitem")
             if item.find("file") is not None]
    videos = [(item, file) for item, file in clips if file[0].suffix == ".mp4"]
    assert videos and {file[0].parent for _, file in videos} == {media}
    for item, (file, duration) in clips:
        cut = int(item.findtext("in")), int(item.findtext("out"))
        assert 0 <= cut[0] < cut[1] <= duration, (file.name, cut, duration)


@pytest.mark.parametrize("fps", ["24", "25", "24000/1001"])
def test_exports_read_back_equal_the_plan(tmp_path, fps):
    project = crossfade_project(tmp_path, fps)
    ltx("build", str(project), "-q", cwd=tmp_path, check=True)
    plan = plan_of(project)
    rate = float(Fraction(fps))
    built = [c.id for c in plan.chunks]
    assert windows(plan, built), "the project has crossfade seams"

    r = export(project)
    out = tmp_path / "out" / "video.otio"
    assert r.stdout.strip() == str(out)
    timeline = otio.adapters.read_from_file(str(out))
    check_video(timeline, plan, built, rate)
    check_markers(timeline.tracks.markers, plan)
    assert timeline.metadata["ltxflow"]["fps"] == fps
    (audio,) = timeline.audio_tracks()
    (song,) = audio.find_clips()
    song_frames = int(Fraction(round(3.0 * 16000)) * Fraction(fps) / 16000)
    assert frames(song.source_range.duration) == min(plan.project.total_frames, song_frames)
    assert Path(song.media_reference.target_url.removeprefix("file://")).name == "master-song.wav"
    # the copies hold the frames the dissolves read: the cache's clips (an in-place export's) do not
    export(project, "--in-place", "-o", str(tmp_path / "here.otio"))
    here = otio.adapters.read_from_file(str(tmp_path / "here.otio"))
    check_video(here, plan, built, rate, held=False)
    check_held_media(timeline, plan, {c.name: media_path(c) for c in here.video_tracks()[0].find_clips()})

    # Final Cut Pro 7 XML, read back through its adapter: clips, dissolves, sequence markers.
    export(project, "--format", "xml")
    xml = otio.adapters.read_from_file(str(tmp_path / "out" / "video.xml"), adapter_name="fcp_xml")
    check_video(xml, plan, built, rate)
    check_markers(xml.tracks.markers, plan)
    assert len(xml.audio_tracks()) == 1
    check_fcp_xml(tmp_path / "out" / "video.xml", tmp_path / "out" / "video-media")

    # CMX 3600: one video track; dissolves from the held copies, and the markers LOC comments on the clips.
    r = export(project, "-o", str(tmp_path / "cut.edl"))
    assert "warning" not in r.stderr
    edl = otio.adapters.read_from_file(str(tmp_path / "cut.edl"), adapter_name="cmx_3600", rate=rate)
    check_edl_video(edl, plan, built, rate)
    check_edl_markers(edl, plan)


def test_partial_build_exports_what_it_built(tmp_path):
    project = crossfade_project(tmp_path, "24")
    ltx("build", str(project), "-q", "--only", "verse", cwd=tmp_path, check=True)
    plan = plan_of(project)
    # verse chains from the intro: its build renders the intro's chunks too (what it starts from)
    assert [c.scene for c in plan.chunks].count("outro") >= 1

    r = export(project)
    timeline = otio.adapters.read_from_file(str(tmp_path / "out" / "video.otio"))
    built = sorted(c.name for c in timeline.find_clips() if c.parent().kind == otio.schema.TrackKind.Video)
    assert set(c.id for c in plan.chunks if c.scene == "verse") <= set(built)
    assert f"{len(plan.chunks) - len(built)} of {len(plan.chunks)} chunks are not built" in r.stderr
    check_video(timeline, plan, built, 24.0)  # gaps where the outro goes; dissolves only between built neighbours
    assert list(timeline.metadata["ltxflow"]["missing"]) == [c.id for c in plan.chunks if c.id not in built]
    check_markers(timeline.tracks.markers, plan)  # the plan's scenes and seams, built or not
    # A seam the plan crossfades keeps saying so when a chunk beside it is not built.
    seams = {m.name.split(" (")[0]: m.name for m in timeline.tracks.markers if " | " in m.name}
    for a, b in zip(plan.chunks, plan.chunks[1:]):
        name = seams[f"{a.id} | {b.id}"]
        assert "crossfade" in name, name  # every seam of this project is a crossfade
        assert name.endswith(", not built)") == (a.id not in built or b.id not in built), name
    assert any(name.endswith(", not built)") for name in seams.values()), seams

    export(project, "--format", "edl")
    edl = otio.adapters.read_from_file(str(tmp_path / "out" / "video.edl"), adapter_name="cmx_3600", rate=24)
    check_edl_video(edl, plan, built, 24.0)  # it ends at the last clip built
    check_edl_markers(edl, plan)


def test_a_failed_chunk_leaves_a_gap(tmp_path):
    project = crossfade_project(tmp_path, "25")
    r = ltx("build", str(project), "-q", "--backend", "test", cwd=tmp_path, env={"LTXFLOW_TEST_BACKEND": "fail=outro.0"})
    assert r.returncode == 1
    r = export(project, "--backend", "test")
    plan = plan_of(project)
    timeline = otio.adapters.read_from_file(str(tmp_path / "out" / "video.otio"))
    check_video(timeline, plan, [c.id for c in plan.chunks if c.id != "outro.0"], 25.0)
    assert "1 of 5 chunks are not built (outro.0)" in r.stderr


def test_in_place_references_the_cache_and_copies_have_readable_names(tmp_path):
    project = crossfade_project(tmp_path, "24")
    ltx("build", str(project), "-q", cwd=tmp_path, check=True)
    plan = plan_of(project)
    built = [c.id for c in plan.chunks]
    cache = (tmp_path / "cache").resolve()

    r = export(project, "--in-place", "-o", str(tmp_path / "here.otio"))
    assert "with --in-place the clips have no frames past their ends" in r.stderr
    assert not (tmp_path / "here-media").exists()
    timeline = otio.adapters.read_from_file(str(tmp_path / "here.otio"))
    check_video(timeline, plan, built, 24.0, held=False)  # the cache's clips: no handles
    for clip in timeline.video_tracks()[0].find_clips():
        path = Path(clip.media_reference.target_url.removeprefix("file://"))
        assert path.is_file() and path.is_relative_to(cache), path
    (song,) = timeline.audio_tracks()[0].find_clips()
    assert song.media_reference.target_url == (tmp_path / "media" / "song.wav").absolute().as_uri()
    # an EDL of them has cuts: its source timecode cannot go before a clip's first frame
    r = export(project, "--in-place", "-o", str(tmp_path / "here.edl"))
    assert "the EDL has cuts where the video has 3 crossfades" in r.stderr
    edl = otio.adapters.read_from_file(str(tmp_path / "here.edl"), adapter_name="cmx_3600", rate=24)
    check_video(edl, plan, built, 24.0, transitions=False, held=False)
    check_edl_markers(edl, plan, dissolves=False)

    r = export(project, "-o", str(tmp_path / "edit" / "cut.otio"))
    assert "not in this export" not in r.stderr, r.stderr
    media = tmp_path / "edit" / "cut-media"
    pads = handles(plan, built)
    names = [f"{k:03d}-{c.id.replace('.', '-')}-held{pads[c.id][0]}-{pads[c.id][1]}.mp4"
             for k, c in enumerate(plan.chunks, 1)]
    listed = sorted(p.name for p in media.iterdir())
    assert [n for n in listed if not n.startswith(".")] == sorted(names + ["master-song.wav"])
    assert [n for n in listed if n.startswith(".")] == sorted(f".{n}.json" for n in names)  # their signatures
    assert names[0] == "001-intro-0-held0-2.mp4"  # the crossfade out of it, shortened to 4 frames: 2 past its end
    timeline = otio.adapters.read_from_file(str(tmp_path / "edit" / "cut.otio"))
    for clip, name in zip(timeline.video_tracks()[0].find_clips(), names):
        assert clip.media_reference.target_url == (media / name).as_uri()
    from ltxflow.media.frames import video_info

    assert [video_info(media / n).frames for n in names] == [sum(pads[c.id]) + c.kept_frames for c in plan.chunks]

    # a later export keeps the copies that are what it would write, and writes again one that is not
    written = {n: (media / n).stat().st_mtime_ns for n in names}
    (media / names[1]).write_bytes(b"not the held copy")
    export(project, "-o", str(tmp_path / "edit" / "cut.otio"))
    assert {n: (media / n).stat().st_mtime_ns for n in names if n != names[1]} == {
        n: t for n, t in written.items() if n != names[1]}
    assert video_info(media / names[1]).frames == sum(pads[plan.chunks[1].id]) + plan.chunks[1].kept_frames

    # an earlier export's clip no timeline of this one uses is named, and left there
    (media / "004-outro-0-held3-0.mp4").write_bytes(b"an earlier export's")
    r = export(project, "-o", str(tmp_path / "edit" / "cut.otio"))
    assert f"1 file in {media} is not in this export (004-outro-0-held3-0.mp4)" in " ".join(r.stderr.split()), r.stderr
    assert (media / "004-outro-0-held3-0.mp4").read_bytes() == b"an earlier export's"
    (media / "master-old.wav").write_bytes(b"another")
    (media / "a-folder").mkdir()
    r = export(project, "-o", str(tmp_path / "edit" / "cut.otio"))
    assert f"2 files in {media} are not in this export (004-outro-0-held3-0.mp4, master-old.wav): earlier " \
        "exports'; remove them" in " ".join(r.stderr.split()), r.stderr


def test_held_frames_args():
    from ltxflow.media.encode import held_frames_args, output_format

    fmt = output_format("mp4", "low")
    args = held_frames_args("ffmpeg", Path("c/clip.mp4"), Path("m/001.mp4"), Fraction(24000, 1001), fmt.video,
                            head=3, tail=5)
    assert args == ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                    "-protocol_whitelist", "file", "-format_whitelist", "mov,matroska", "-i", "c/clip.mp4",
                    "-map", "0:v:0", "-an", "-vf", "tpad=start=3:stop=5:start_mode=clone:stop_mode=clone",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-profile:v", "high", "-pix_fmt", "yuv420p",
                    "-fps_mode", "passthrough", "-video_track_timescale", "24000", "-movie_timescale", "24000",
                    "-movflags", "+faststart", "m/001.mp4"]
    webm = output_format("webm", "low")
    args = held_frames_args("ffmpeg", Path("clip.webm"), Path("001.webm"), Fraction(25), webm.video, head=0, tail=2)
    assert args[args.index("-vf") + 1] == "tpad=start=0:stop=2:start_mode=clone:stop_mode=clone"
    assert args[-len(webm.video) - 3:] == [*webm.video, "-fps_mode", "passthrough", "001.webm"]


def test_bad_input_and_nothing_built(tmp_path):
    project = crossfade_project(tmp_path, "24")
    r = export(project, check=False)  # nothing built yet
    assert r.returncode == 1 and "ltxflow build" in r.stderr and not (tmp_path / "out").exists()
    r = export(project, "--format", "fcpxml", check=False)
    assert r.returncode == 2 and "xml (Final Cut Pro 7 XML" in r.stderr
    r = ltx("export", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert r.returncode == 2 and "nope.yaml" in r.stderr
    r = export(project, "-o", str(tmp_path / "media" / "song.wav"), check=False)
    assert r.returncode == 2 and "a .otio or .xml or .edl file, not .wav" in r.stderr
    video = tmp_path / "out" / "video.mp4"  # the rendered video: a timeline is never written over it
    video.parent.mkdir()
    video.write_bytes(b"the video")
    r = export(project, "-o", str(video), check=False)
    assert r.returncode == 2 and "not .mp4" in r.stderr and video.read_bytes() == b"the video"
    r = export(project, "--format", "xml", "-o", str(tmp_path / "cut.otio"), check=False)
    assert r.returncode == 2 and "a .xml file, not .otio" in r.stderr and not (tmp_path / "cut.otio").exists()
    (tmp_path / "linked.otio").symlink_to(project)
    r = export(project, "-o", str(tmp_path / "linked.otio"), check=False)
    assert r.returncode == 2 and "symbolic link" in r.stderr and (tmp_path / "linked.otio").is_symlink()
    odd = crossfade_project(tmp_path / "odd", "25/2")  # 12.5 fps: no FCP 7 or EDL timebase states it
    r = export(odd, "--format", "edl", check=False)
    assert r.returncode == 2 and "fps 25/2 has no CMX 3600 EDL timebase" in r.stderr and "--format otio" in r.stderr


# Whatever is installed, an import of opentimelineio fails in this interpreter (a finder first on
# sys.meta_path refuses it), as where the export extra is not installed.
NO_OTIO = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentimelineio":
            raise ImportError("not installed (test)")
sys.meta_path.insert(0, Refuse())
from ltxflow.cli import main
sys.exit(main(["export", sys.argv[1]]))
"""


def test_without_the_extra_it_says_what_to_install(tmp_path):
    project = crossfade_project(tmp_path, "24")
    r = subprocess.run([sys.executable, "-c", NO_OTIO, str(project)], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "LTXFLOW_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 2, r.stderr
    assert "pip install 'ltxflow[export]'" in r.stderr


@pytest.mark.slow
def test_real_song_export(tmp_path):
    from ltxflow.media.ffmpeg import find_ffmpeg

    song = tmp_path / "media" / "awakening-excerpt.ogg"  # 16 s of the real song, its Vorbis stream copied
    song.parent.mkdir()
    subprocess.run([find_ffmpeg().path, "-v", "error", "-ss", "40", "-t", "16", "-i", str(realmedia("Awakening.ogg")),
                    "-c", "copy", str(song)], check=True)
    image = realmedia("softwaves-16x9.png")
    project = tmp_path / "real.yaml"
    project.write_text(f"""version: 1
audio: media/awakening-excerpt.ogg
fps: "24000/1001"
resolution: 192x108
output: out/real.mp4
quality: low
chunking: {{max_frames: 97, boundaries: even}}
scenes:
  - id: intro
    end: 5.5
    prompt: "soft light over a gradient"
    image: "{image}"
  - id: rise
    prompt: "the gradient starts to move"
    seam: crossfade
""")
    ltx("build", str(project), "-q", "--allow-outside-paths", cwd=tmp_path, check=True)
    export(project, "--allow-outside-paths")
    plan = plan_of(project, allow_outside_paths=True)
    timeline = otio.adapters.read_from_file(str(tmp_path / "out" / "real.otio"))
    check_video(timeline, plan, [c.id for c in plan.chunks], float(Fraction(24000, 1001)))
    check_markers(timeline.tracks.markers, plan)
    (song_clip,) = timeline.audio_tracks()[0].find_clips()
    assert song_clip.name == "master-awakening-excerpt.ogg"
    audio = plan.project.audio
    song_frames = int(Fraction(audio.samples) * plan.project.fps / audio.sample_rate)
    assert frames(song_clip.source_range.duration) == min(plan.project.total_frames, song_frames)
    assert (tmp_path / "out" / "real-media" / "master-awakening-excerpt.ogg").is_file()
