"""`ltxflow init` and `ltxflow music` on real songs: the project validates and builds as written,
its scenes tile the song and start on bar lines; the section finder's boundary rules (pure)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from pathlib import Path

from conftest import realmedia

SONGS = ("Awakening.ogg", "Through Space.ogg")


def ltx(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ltxflow", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Each real song through `ltxflow init` (small and slow-framed, so one builds in seconds)."""
    out = {}
    for song in SONGS:
        folder = tmp_path_factory.mktemp("init") / "video"
        r = ltx("init", folder, "--audio", realmedia(song), "--resolution", "256x144", "--fps", "12")
        assert r.returncode == 0, r.stderr
        out[song] = Path(r.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("song", SONGS)
def test_scenes_tile_the_song_and_start_on_bar_lines(made, song):
    from ltxflow.project.resolve import open_project
    from ltxflow.timeline import seconds_to_frame
    from fractions import Fraction

    rp = open_project(made[song])
    spans = [(s.start_frame, s.end_frame) for s in rp.scenes]
    assert spans[0][0] == 0 and spans[-1][1] == rp.total_frames
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    bar_frames = {seconds_to_frame(Fraction(str(t)), rp.fps) for t in rp.music.bars}
    assert all(start in bar_frames for start, _ in spans[1:])
    assert 3 <= len(spans) <= 12
    assert all(s.frames >= 4 * 60 / rp.music.analysis.tempo * 4 * rp.fps * 0.9 for s in rp.scenes)  # >= 4 bars


@pytest.mark.parametrize("song", SONGS)
def test_the_file_is_commented_in_bars_and_validates(made, song):
    text = made[song].read_text()
    lines = text.splitlines()
    assert lines[0] == "# yaml-language-server: $schema=project.schema.json"
    assert json.loads((made[song].parent / "project.schema.json").read_text())["title"] == "ltxflow project"
    for i, line in enumerate(lines):  # every top-level key has its comment above it
        if line and line[0].isalpha() and line.split(":")[0] != "scenes":
            assert lines[i - 1].lstrip().startswith("#"), line
    data = yaml.safe_load(text)
    assert data["scenes"][0]["start"] == 0
    for scene in data["scenes"][1:]:
        assert scene["start"].startswith("bar ")
    assert all(" # " in ln for ln in lines if "start: bar" in ln)  # the seconds beside each bar
    assert (made[song].parent / "media" / song).read_bytes() == realmedia(song).read_bytes()
    r = ltx("validate", made[song])
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("song", SONGS)
def test_init_project_builds_with_the_preview_backend(made, song):
    from ltxflow.media.frames import video_info
    from ltxflow.project.resolve import open_project

    project = made[song]
    r = ltx("build", project, "-q")
    assert r.returncode == 0, r.stderr
    rp = open_project(project)
    info = video_info(Path(r.stdout.strip()))
    assert (info.frames, info.width, info.height) == (rp.total_frames, 256, 144)


def test_init_refuses_to_overwrite_a_project(made, tmp_path):
    project = made["Awakening.ogg"]
    before = project.read_text()
    r = ltx("init", project.parent, "--audio", realmedia("Awakening.ogg"))
    assert r.returncode == 2 and "--force" in r.stderr and project.read_text() == before
    r = ltx("init", tmp_path / "p", "--audio", realmedia("Awakening.ogg"), "--fps", "99")
    assert r.returncode == 2 and "--fps" in r.stderr and not (tmp_path / "p").exists()


def test_force_writes_the_project_anew_and_link_shares_the_song(tmp_path):
    # A real song's excerpt (45 s of Through Space, soundfile keeps it exact): --link puts the song
    # in the project as a hard link (one copy on disk), --force replaces an edited project with a
    # fresh one, and without --force an edit is never overwritten.
    import soundfile

    pcm, rate = soundfile.read(realmedia("Through Space.ogg"), frames=45 * 44100, dtype="int16")
    song = tmp_path / "excerpt.wav"
    soundfile.write(song, pcm, rate, subtype="PCM_16")
    folder = tmp_path / "video"
    r = ltx("init", folder, "--audio", song, "--link", "--resolution", "256x144", "--fps", "12")
    assert r.returncode == 0, r.stderr
    project, placed = Path(r.stdout.strip()), folder / "media" / "excerpt.wav"
    assert placed.stat().st_ino == song.stat().st_ino and song.stat().st_nlink == 2
    first = project.read_text()
    project.write_text(first.replace("start: bar", "start:  bar"))  # the user's edit
    r = ltx("init", folder, "--audio", song, "--resolution", "256x144", "--fps", "12")
    assert r.returncode == 2 and "--force" in r.stderr and "start:  bar" in project.read_text()
    r = ltx("init", folder, "--audio", song, "--force", "--resolution", "256x144", "--fps", "12")
    assert r.returncode == 0, r.stderr
    assert project.read_text() == first and placed.stat().st_ino == song.stat().st_ino
    assert ltx("validate", project).returncode == 0


def test_music_prints_bars_sections_and_gaps(made):
    r = ltx("music", made["Through Space.ogg"], "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert 110 <= data["tempo"] <= 120 and data["beats_per_bar"] == 4
    bars = [b["start"] for b in data["bars"]]
    assert bars == sorted(bars) and len(bars) > 50
    sections = data["sections"]
    assert sections[0]["start"] == 0 and sections[-1]["end"] == data["duration"]
    assert all(a["end"] == b["start"] and b["start"] == bars[b["first_bar"] - 1]
               for a, b in zip(sections, sections[1:]))
    text = ltx("music", made["Through Space.ogg"]).stdout
    assert "BPM" in text and "bar   1 0:0" in text and "sections" in text and "quiet gaps" in text


def test_boundaries_keep_min_and_max_lengths():
    from ltxflow.music.sections import boundaries, labels

    nov = np.zeros(41)
    nov[[10, 12, 30]] = [3.0, 2.0, 1.5]  # 12 is too near 10
    assert boundaries(nov, 40, 4, 32, 12) == [0, 10, 30, 40]
    assert boundaries(nov, 40, 4, 32, 2) == [0, 10, 40]  # at most 2 sections
    flat = np.zeros(81)
    flat[37] = 0.1  # no peak stands out: the 80 bars are cut where novelty is highest, until <= 32 bars
    edges = boundaries(flat, 80, 4, 32, 12)
    assert all(b - a <= 32 for a, b in zip(edges, edges[1:])) and 37 in edges
    dist = np.ones((12, 12))
    for block in (range(0, 4), range(8, 12)):  # bars 0-3 and 8-11 alike
        for i in block:
            for j in (*range(0, 4), *range(8, 12)):
                dist[i, j] = 0.0
    assert labels(dist, [0, 4, 8, 12]) == ["A", "B", "A"]


def write_wav(path: Path, seconds: float, tone: bool) -> Path:
    """A mono 16-bit WAV: a 440 Hz tone (no beats to find), or silence."""
    import wave

    t = np.arange(int(16000 * seconds)) / 16000
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000 if tone else np.zeros_like(t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return path


@pytest.mark.parametrize("name, seconds, tone", [
    ("silence.wav", 5.0, False),  # no beats: one scene, times in seconds
    ("short.wav", 3.0, True),
    ("2024.wav", 3.0, True),  # a name YAML would read as a number ...
    ("yes.wav", 3.0, True),  # ... or as a boolean
    ("it's \"quoted\" ünï.wav", 3.0, True),
])
def test_init_songs_without_beats_and_odd_names_validate(tmp_path, name, seconds, tone):
    song = write_wav(tmp_path / name, seconds, tone)
    r = ltx("init", tmp_path / "video", "--audio", song, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    project = Path(r.stdout.strip())
    data = yaml.safe_load(project.read_text())
    assert isinstance(data["name"], str) and data["audio"] == f"media/{name}"
    assert [s["start"] for s in data["scenes"]] == [0]
    assert (project.parent / "media" / name).read_bytes() == song.read_bytes()
    r = ltx("validate", project)
    assert r.returncode == 0, r.stderr
