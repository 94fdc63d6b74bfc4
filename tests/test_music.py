"""Music analysis and seams on the music: synthetic tracks of known tempo and known quiet gaps,
analysed by the real librosa, planned through the real loader, resolver and planner."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from ltxflow.errors import ProjectError
from ltxflow.plan.chunks import valid_count
from ltxflow.timeline import MusicTime, parse_time

from conftest import ProjectDir, plan_of, realmedia, write_signal

FPS = ["24", "25", "30", "24000/1001"]
BPM = 100.0
FIRST_BEAT = 0.3  # seconds
SECONDS = 36.0


def write_clicks(path: Path, seconds: float = SECONDS, bpm: float = BPM, first: float = FIRST_BEAT,
                 gaps: list[tuple[float, float]] = (), rate: int = 22050, accent: int = 0) -> list[float]:
    """A drum-like click track: a low accented click on every 4th beat from beat index `accent`,
    a high one on the others, over a quiet pad, silent inside `gaps`. Returns the true beat times."""
    import numpy as np

    n = round(seconds * rate)
    t = np.arange(n) / rate
    y = 0.05 * np.sin(2 * np.pi * 220 * t)
    rng = np.random.default_rng(7)
    beats = [first + i * 60 / bpm for i in range(int((seconds - first) * bpm / 60) + 1)]
    beats = [b for b in beats if b < seconds - 0.1]
    length = round(0.08 * rate)
    env = np.exp(-np.arange(length) / (0.015 * rate))
    for i, b in enumerate(beats):
        at = round(b * rate)
        low = i % 4 == accent
        tone = np.sin(2 * np.pi * (150 if low else 900) * np.arange(length) / rate)
        click = (1.0 if low else 0.5) * env * (0.6 * tone + rng.normal(0, 0.2, length))
        y[at:at + length] += click[: n - at]
    for a, b in gaps:
        y[round(a * rate):round(b * rate)] = 0
    write_signal(path, y, rate)
    return [b for b in beats if not any(a <= b < e for a, e in gaps)]


@pytest.fixture(scope="module")
def clicks(tmp_path_factory) -> tuple[ProjectDir, list[float]]:
    d = ProjectDir(tmp_path_factory.mktemp("music") / "proj", seconds=1)
    return d, write_clicks(d.root / "media" / "clicks.wav")


def project(fps: str, scenes: str, chunking: str = "{boundaries: beats, max_frames: 97}", extra: str = "") -> str:
    return (f'version: 1\naudio: media/clicks.wav\nfps: "{fps}"\nresolution: 256x128\n'
            f"chunking: {chunking}\n{extra}scenes:\n{scenes}")


ONE_SCENE = "  - id: all\n    prompt: one long scene\n    image: keyframes/a.png\n"


def inner_seams(plan) -> list:
    return [c for c in plan.chunks if c.index > 0]


def check_valid(plan, max_frames: int) -> None:
    assert plan.total_frames == plan.project.total_frames
    for c in plan.chunks:
        assert valid_count(c.generated_frames) and c.generated_frames <= max_frames
        assert c.head + c.kept_frames + c.tail == c.generated_frames


@pytest.mark.parametrize("fps", FPS)
def test_beats_seams_land_within_a_frame_of_a_true_beat(clicks, fps):
    d, beats = clicks
    plan = plan_of(d.write(project(fps, ONE_SCENE), f"beats-{fps.replace('/', '_')}.yaml"))
    rate = Fraction(fps) if "/" not in fps else Fraction(*map(int, fps.split("/")))
    check_valid(plan, 97)
    seams = inner_seams(plan)
    assert len(seams) >= 8
    for c in seams:
        t = c.start_frame / rate
        nearest = min(beats, key=lambda b: abs(b - t))
        assert abs(t - Fraction(str(nearest))) <= 1 / rate, (c.id, float(t), nearest)
        assert c.placed == "beat"
    assert abs(plan.project.music.analysis.tempo - BPM) < 2


def test_even_boundaries_keep_the_balanced_split(clicks):
    d, beats = clicks
    beats_plan = plan_of(d.write(project("24", ONE_SCENE), "b.yaml"))
    even_plan = plan_of(d.write(project("24", ONE_SCENE, "{boundaries: even, max_frames: 97}"), "e.yaml"))
    assert even_plan.project.music is None  # nothing asks for the music: it is not analysed
    assert len(inner_seams(even_plan)) >= 8
    assert [c.placed for c in inner_seams(even_plan)] == ["even"] * len(inner_seams(even_plan))
    assert len(even_plan.chunks) == len(beats_plan.chunks)
    assert [c.start_frame for c in even_plan.chunks] != [c.start_frame for c in beats_plan.chunks]


GAPS = [(4.0, 4.6), (8.6, 9.2), (13.1, 13.7), (17.5, 18.1), (22.2, 22.8), (26.7, 27.3), (31.0, 31.6)]


@pytest.mark.parametrize("fps", ["24", "30000/1001"])
def test_gaps_seams_land_inside_quiet_gaps(tmp_path, fps):
    d = ProjectDir(tmp_path / "proj", seconds=1)
    write_clicks(d.root / "media" / "clicks.wav", gaps=GAPS)
    plan = plan_of(d.write(project(fps, ONE_SCENE, "{boundaries: gaps, max_frames: 161, window: 3}")))
    rate = Fraction(*map(int, fps.split("/"))) if "/" in fps else Fraction(fps)
    check_valid(plan, 161)
    found = plan.project.music.gaps
    for a, b in GAPS:  # each silence is found (within a few ms of where it is)
        assert any(abs(ga - a) < 0.05 and abs(gb - b) < 0.05 for ga, gb in found), (a, b, found)
    seams = inner_seams(plan)
    assert len(seams) >= 4
    for c in seams:
        t = float(c.start_frame / rate)
        assert c.placed == "gap" and any(a <= t <= b for a, b in GAPS), (c.id, t)


def test_each_seam_takes_the_beat_nearest_its_balanced_place(clicks):
    """With every beat a bar start (one beat a bar), a seam moves to the beat nearest where the
    even split puts it, not to another beat in its window (there are several: 0.6 s apart, window 2 s)."""
    import math

    d, _ = clicks
    one = "music: {beats_per_bar: 1}\n"
    beats = plan_of(d.write(project("24", ONE_SCENE, "{boundaries: beats, max_frames: 161}", one), "near.yaml"))
    even = plan_of(d.write(project("24", ONE_SCENE, "{boundaries: even, max_frames: 161}", one), "near-e.yaml"))
    frames = [math.floor(Fraction(str(t)) * 24 + Fraction(1, 2)) for t in beats.project.music.beats]
    assert len(inner_seams(beats)) == len(inner_seams(even)) >= 4
    for c, balanced in zip(inner_seams(beats), inner_seams(even)):
        nearest = min(frames, key=lambda f: abs(f - balanced.start_frame))
        others = [f for f in frames if f != nearest and abs(f - balanced.start_frame) <= 48]
        assert others and c.placed == "beat" and c.start_frame == nearest, (c.id, balanced.start_frame, nearest)


def test_a_seam_takes_the_nearer_of_two_beats_of_a_kind():
    from ltxflow.plan.seams import OFF_BAR, candidates, place_seams

    fits = lambda i, kept: kept <= 150  # noqa: E731
    # Around a balanced seam at 92: two beats that start no bar, then two bar starts; the nearer wins.
    for events, expected in (({"beats": [(80, 80, OFF_BAR), (100, 100, OFF_BAR)]}, 100),
                             ({"beats": [(84, 84, OFF_BAR), (110, 110, OFF_BAR)]}, 84),
                             ({"beats": [(70, 70, 0.0), (96, 96, 0.0)]}, 96),
                             ({"beats": [(89, 89, 0.0), (112, 112, 0.0)]}, 89)):
        chosen = place_seams([92], 200, fits, [candidates(92, 24, events, 0, ("beats",))])
        assert [(c.offset, c.placed) for c in chosen] == [(expected, "beat")], events


def test_a_seam_with_no_beat_in_reach_stays_balanced(tmp_path):
    d = ProjectDir(tmp_path / "proj", seconds=1)
    write_clicks(d.root / "media" / "clicks.wav", bpm=20)  # a beat every 3 s
    plan = plan_of(d.write(project("24", ONE_SCENE, "{boundaries: beats, max_frames: 49, window: 0.2}")))
    check_valid(plan, 49)
    placed = [c.placed for c in inner_seams(plan)]
    assert "even" in placed and set(placed) <= {"beat", "even"}


@pytest.mark.parametrize("fps", FPS)
@pytest.mark.parametrize("offset", [0, 3, 8, 16])
def test_chain_offset_keeps_exact_totals(clicks, fps, offset):
    d, _ = clicks
    scenes = ("  - id: a\n    prompt: a\n    image: keyframes/a.png\n    end: 9.3\n"
              "  - id: b\n    prompt: b\n    end: 20.05\n"
              "  - id: c\n    prompt: c\n    image: keyframes/b.png\n    end: 27\n"
              "  - id: d\n    prompt: d\n    model: ltx-2.3-22b-distilled\n    end_image: keyframes/a.png\n")
    for boundaries in ("even", "beats"):
        plan = plan_of(d.write(project(fps, scenes, f"{{boundaries: {boundaries}, max_frames: 121, "
                                                    f"chain_offset: {offset}}}"), "co.yaml"))
        check_valid(plan, 121)
        by_id = {c.id: c for c in plan.chunks}
        for c in plan.chunks:
            if c.chains_from:
                src = by_id[c.chains_from]
                # The chain image is `offset` (or more: rounding) frames before the source's end,
                # and the source keeps exactly up to it.
                assert c.start_image.frame == src.chain_frame == src.head + src.kept_frames - 1
                assert src.tail >= offset
                assert src.end_frame == c.start_frame
        ends_on_image = [c for c in plan.chunks if c.end_image is not None]
        assert ends_on_image and all(c.tail == 0 for c in ends_on_image)  # the end image stays last
        assert by_id["b.0"].start_image.kind == "chain" and by_id["c.0"].start_image.kind == "keyframe"


def test_default_chain_offset_is_eight_frames_and_shrinks_for_short_chunks(clicks):
    d, _ = clicks
    scenes = "  - id: a\n    prompt: a\n    image: keyframes/a.png\n"
    for max_frames, expected in ((481, 8), (33, 8), (17, 4), (9, 2)):
        plan = plan_of(d.write(project("24", scenes, f"{{boundaries: even, max_frames: {max_frames}}}"), "d.yaml"))
        assert plan.project.chain_offset == expected and len(plan.chunks) > 1
        assert all(c.tail >= expected for c in plan.chunks[:-1])


def test_chain_offset_too_large_for_max_frames_is_an_error(clicks):
    d, _ = clicks
    path = d.write(project("24", "  - id: a\n    prompt: a\n", "{max_frames: 17, chain_offset: 16}"), "big.yaml")
    with pytest.raises(ProjectError) as e:
        plan_of(path)
    assert "big.yaml:5" in str(e.value) and "chunking.chain_offset" in str(e.value) and "at most 15" in str(e.value)


@pytest.mark.parametrize("text, expected", [
    ("bar 17", MusicTime("bar", 17)), ("beat 64", MusicTime("beat", 64)),
    ("bar 3 beat 2", MusicTime("bar", 3, 2)), ("  Bar 2  ", MusicTime("bar", 2)),
    ("12.5", Fraction(25, 2)), ("1:02.5", Fraction(125, 2)),
])
def test_time_grammar(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["bar 0", "beat 3 beat 2", "bar", "bar x", "bars 3", "beat -1"])
def test_time_grammar_rejects(text):
    with pytest.raises(ValueError):
        parse_time(text)


def test_scene_times_in_bars_and_beats(clicks):
    d, beats = clicks
    scenes = ("  - id: intro\n    prompt: a\n    image: keyframes/a.png\n    end: bar 3\n"
              "  - id: verse\n    prompt: b\n    end: beat 30\n"
              "  - id: chorus\n    prompt: c\n    end: bar 12 beat 3\n"
              "  - id: outro\n    prompt: d\n")
    plan = plan_of(d.write(project("24", scenes, extra="music: {first_bar: 1}\n"), "bars.yaml"))
    fps = Fraction(24)
    s = {x.id: x for x in plan.project.scenes}
    near = lambda f, t: abs(Fraction(f) / fps - Fraction(str(t))) <= Fraction(1, 2) / fps  # noqa: E731
    assert near(s["intro"].end_frame, beats[8])  # bar 3 starts on beat 9 in 4/4
    assert near(s["verse"].end_frame, beats[29])
    assert near(s["chorus"].end_frame, beats[4 * 11 + 2])
    assert s["verse"].start_frame == s["intro"].end_frame


def test_beats_are_found_where_they_are_and_the_accented_one_starts_bar_one(clicks):
    d, beats = clicks
    plan = plan_of(d.write(project("24", ONE_SCENE), "phase.yaml"))
    grid = plan.project.music
    assert len(grid.beats) == len(beats)
    assert max(abs(a - b) for a, b in zip(grid.beats, beats)) < 0.005  # within 5 ms of the clicks
    assert grid.phase == 0 and grid.bars[:3] == grid.beats[0:9:4]  # the low click is on beats 1, 5, 9, ...


@pytest.mark.parametrize("accent", [1, 2, 3])
def test_bar_one_starts_on_the_accented_beat_wherever_it_is(tmp_path, accent):
    """The phase is found, not assumed: with the low click on beat `accent` (0-based) and every
    4th after it, bar 1 starts there and the beats before it are bar 0 (a pickup)."""
    d = ProjectDir(tmp_path / "proj", seconds=1)
    beats = write_clicks(d.root / "media" / "clicks.wav", seconds=16.0, accent=accent)
    grid = plan_of(d.write(project("24", ONE_SCENE))).project.music
    assert len(grid.beats) == len(beats)
    assert grid.phase == accent and grid.bars[:3] == grid.beats[accent:accent + 9:4]
    assert grid.describe(grid.beats[0])["beat"]["bar"] == 0 and grid.describe(grid.beats[accent])["beat"]["bar"] == 1
    # music.first_bar overrides what is heard: bar 1 on the first beat (1-based) it names.
    other = 1 + (accent + 2) % 4
    path = d.write(project("24", ONE_SCENE, extra=f"music: {{first_bar: {other}}}\n"), "first.yaml")
    grid = plan_of(path).project.music
    assert grid.phase == other - 1 and grid.bars[0] == grid.beats[other - 1]


def test_a_musical_time_past_the_end_names_the_field(clicks):
    d, beats = clicks
    path = d.write(project("24", "  - id: a\n    prompt: a\n    end: bar 400\n  - id: b\n    prompt: b\n"),
                   "late.yaml")
    with pytest.raises(ProjectError) as e:
        plan_of(path)
    text = str(e.value)
    assert "late.yaml:9" in text and "scenes[0].end" in text and f"it has {len(beats)} beats" in text


def test_plan_shows_where_seams_land_and_caches_the_analysis(clicks, tmp_path):
    import os
    import subprocess
    import sys

    d, _ = clicks
    path = d.write(project("24", ONE_SCENE), "show.yaml")
    music = tmp_path / "music"
    env = {**os.environ, "LTXFLOW_MUSIC_CACHE": str(music)}
    r = subprocess.run([sys.executable, "-m", "ltxflow", "plan", str(path), "--json"], capture_output=True,
                       text=True, env=env, check=True)
    data = json.loads(r.stdout)
    seams = [c["seam"] for c in data["chunks"][1:]]
    assert len(seams) >= 8 and all(s["placed"] == "beat" and abs(s["music"]["beat"]["offset_s"]) <= 1 / 24 for s in seams)
    assert [p.suffix for p in music.iterdir()] == [".json"]  # kept by the song's digest
    r = subprocess.run([sys.executable, "-m", "ltxflow", "plan", str(path)], capture_output=True, text=True,
                       env=env, check=True)
    assert "BPM" in r.stdout and "beat |" in r.stdout and "(bar " in r.stdout


# --- Drum patterns of known beats (tests/drums.py): beat phase and seams against the truth. ---

from drums import PATTERNS, project_text, score, write_pattern  # noqa: E402

BY_NAME = {p.name: p for p in PATTERNS}


@pytest.fixture(scope="module")
def drum_plans(tmp_path_factory):
    """Each pattern rendered, planned at 24 fps with seams on the beats, and scored (made once)."""
    made: dict = {}

    def get(name: str):
        if name not in made:
            d = ProjectDir(tmp_path_factory.mktemp(name) / "proj", seconds=1)
            truth = write_pattern(d.root / "media" / "drums.wav", BY_NAME[name])
            plan = plan_of(d.write(project_text("media/drums.wav")))
            made[name] = truth, plan, score(truth, plan.project.music, plan)
        return made[name]
    return get


@pytest.mark.parametrize("name", list(BY_NAME))
def test_drum_pattern_beats_lie_on_the_true_beats(drum_plans, name):
    truth, plan, s = drum_plans(name)
    errors = sorted(s.errors_ms)
    assert errors and errors[len(errors) // 2] < 15 and errors[-1] < 42, errors
    assert s.off_beats == 0 and s.missed == 0
    tempi = [bpm for _, bpm in BY_NAME[name].tempi]
    assert any(abs(s.tempo / bpm - 1) < 0.04 for bpm in tempi), (s.tempo, tempi)
    # Bar 1 is the real first downbeat: after a pickup, and where the drums come in after an intro.
    assert abs(s.bar_one_ms) < 42, s.bar_one_ms
    grid = plan.project.music
    assert all(min(abs(b - d) for b in grid.bars) < 0.042 for d in truth.downbeats[:-1])
    assert grid.beats[0] > truth.beats[0] - 0.042  # no beat in a near-silent intro


@pytest.mark.parametrize("name", list(BY_NAME))
def test_drum_pattern_seams_land_within_a_frame_of_a_true_beat(drum_plans, name):
    truth, plan, s = drum_plans(name)
    check_valid(plan, 121)
    assert len(s.seam_ms) >= 4
    assert all(abs(ms) <= 1000 / 24 for ms in s.seam_ms), s.seam_ms


def test_drum_pattern_seams_prefer_bar_starts(drum_plans):
    on, seams = 0, 0
    for name in BY_NAME:
        _, _, s = drum_plans(name)
        on, seams = on + s.seams_on_bars, seams + len(s.seam_ms)
    assert on >= 0.7 * seams, (on, seams)


def test_a_pickup_is_bar_zero(drum_plans):
    truth, plan, _ = drum_plans("pickup")
    grid = plan.project.music
    assert grid.phase == 2 and abs(grid.beats[0] - truth.beats[0]) < 0.042
    assert grid.describe(grid.beats[1])["beat"]["bar"] == 0 and grid.describe(grid.bars[1])["beat"]["bar"] == 2


def test_a_seam_takes_a_bar_start_over_a_nearer_beat():
    from ltxflow.plan.seams import OFF_BAR, candidates, place_seams

    # Beats at frames 90 and 100 (a bar start) around a balanced seam at 92, window 24.
    events = {"beats": [(90, 90, OFF_BAR), (100, 100, 0.0)]}
    options = [candidates(92, 24, events, 0, ("beats",))]
    chosen = place_seams([92], 200, lambda i, kept: kept <= 150, options)
    assert [(c.offset, c.placed) for c in chosen] == [(100, "beat")]
    # A bar start more than half a window farther loses to the nearer beat.
    events = {"beats": [(92, 92, OFF_BAR), (120, 120, 0.0)]}
    chosen = place_seams([92], 200, lambda i, kept: kept <= 150, [candidates(92, 24, events, 0, ("beats",))])
    assert chosen[0].offset == 92


# --- Real instrumentals (../shared/realmedia): no truth, but a plausible, steady tempo, and seams on
# strong onsets. Decoded with soundfile into a WAV here (the project's own decoder is tested elsewhere).

@pytest.mark.parametrize("name", ["Awakening.ogg", "Through Space.ogg"])
def test_real_song_tempo_is_steady_and_seams_land_on_onsets(tmp_path, name):
    import numpy as np
    import soundfile

    y, rate = soundfile.read(str(realmedia(name)), dtype="float32", always_2d=True)
    d = ProjectDir(tmp_path / "proj", seconds=1)
    write_signal(d.root / "media" / "song.wav", y.mean(axis=1)[: 90 * rate], rate)  # the first 90 s
    plan = plan_of(d.write(project_text("media/song.wav")))
    a = plan.project.music.analysis
    assert 70 <= a.tempo <= 180
    steps = np.diff(a.beats)
    assert np.percentile(np.abs(steps / np.median(steps) - 1), 75) < 0.03  # steady
    onset = np.asarray(a.onset)
    width = round(0.07 * a.onset_rate)
    local = np.array([onset[max(0, i - 2):i + width].max() for i in range(len(onset))])  # like at a beat
    seams = [c for c in plan.chunks[1:] if c.placed == "beat"]
    assert len(seams) >= 10
    at = [local[min(len(local) - 1, round(float(c.start_frame / plan.project.fps) * a.onset_rate))] for c in seams]
    assert np.median(at) > np.percentile(local, 60), (np.median(at), np.percentile(local, 60))
