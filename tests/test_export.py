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


def frames(t) -> int:
    return round(t.to_frames())


def video_items(timeline) -> list:
    (track,) = timeline.video_tracks()
    return list(track)


def check_video(timeline, plan, built: list[str], rate: float, transitions: bool = True, whole: bool = True) -> None:
    """Clips at their plan frames (source range and record position), gaps for the rest,
    dissolves with the plan's windows, the whole as long as the video (unless not `whole`: an
    EDL has no event after its last clip, so a gap at the end is not there)."""
    clips = {c.name: c for c in timeline.find_clips() if c.parent().kind == otio.schema.TrackKind.Video}
    assert sorted(clips) == sorted(built)
    for chunk in plan.chunks:
        if chunk.id not in built:
            continue
        clip = clips[chunk.id]
        assert abs(clip.source_range.duration.rate - rate) < 1e-3
        assert (frames(clip.source_range.start_time), frames(clip.source_range.duration)) == (0, chunk.kept_frames)
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


def check_edl_markers(edl, plan) -> None:
    """LOC comments: each marker by name (the EDL upper-cases it) at its frame, on the clip it starts in."""
    got = sorted((m.name.split(" (")[0].lower(), frames(c.range_in_parent().start_time) + frames(m.marked_range.start_time))
                 for c in edl.find_clips() for m in c.markers)
    built = {c.name for c in edl.find_clips()}
    want = [(s.id, s.start_frame) for s in plan.project.scenes]
    want += [(f"{a.id} | {b.id}", b.start_frame) for a, b in zip(plan.chunks, plan.chunks[1:])]
    starts = {c.start_frame: c.id for c in plan.chunks}
    assert got == sorted(w for w in want if starts[w[1]] in built)


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

    # Final Cut Pro 7 XML, read back through its adapter: clips, dissolves, sequence markers.
    export(project, "--format", "xml")
    xml = otio.adapters.read_from_file(str(tmp_path / "out" / "video.xml"), adapter_name="fcp_xml")
    check_video(xml, plan, built, rate)
    check_markers(xml.tracks.markers, plan)
    assert len(xml.audio_tracks()) == 1

    # CMX 3600: one video track; crossfades are cuts, and the markers LOC comments on the clips.
    r = export(project, "-o", str(tmp_path / "cut.edl"))
    assert "crossfades" in r.stderr
    edl = otio.adapters.read_from_file(str(tmp_path / "cut.edl"), adapter_name="cmx_3600", rate=rate)
    check_video(edl, plan, built, rate, transitions=False)
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

    export(project, "--format", "edl")
    edl = otio.adapters.read_from_file(str(tmp_path / "out" / "video.edl"), adapter_name="cmx_3600", rate=24)
    check_video(edl, plan, built, 24.0, transitions=False, whole=False)  # it ends at the last clip built
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
    cache = (tmp_path / "cache").resolve()

    export(project, "--in-place", "-o", str(tmp_path / "here.otio"))
    assert not (tmp_path / "here-media").exists()
    timeline = otio.adapters.read_from_file(str(tmp_path / "here.otio"))
    for clip in timeline.video_tracks()[0].find_clips():
        path = Path(clip.media_reference.target_url.removeprefix("file://"))
        assert path.is_file() and path.is_relative_to(cache), path
    (song,) = timeline.audio_tracks()[0].find_clips()
    assert song.media_reference.target_url == (tmp_path / "media" / "song.wav").absolute().as_uri()

    export(project, "-o", str(tmp_path / "edit" / "cut.otio"))
    media = tmp_path / "edit" / "cut-media"
    names = [f"{k:03d}-{c.id.replace('.', '-')}.mp4" for k, c in enumerate(plan.chunks, 1)]
    assert sorted(p.name for p in media.iterdir()) == sorted(names + ["master-song.wav"])
    assert names[0] == "001-intro-0.mp4"
    timeline = otio.adapters.read_from_file(str(tmp_path / "edit" / "cut.otio"))
    for clip, name in zip(timeline.video_tracks()[0].find_clips(), names):
        assert clip.media_reference.target_url == (media / name).as_uri()
    from ltxflow.media.frames import video_info

    assert [video_info(media / n).frames for n in names] == [c.kept_frames for c in plan.chunks]


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
