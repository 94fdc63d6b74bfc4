"""`ltxflow build` end to end, through the real CLI, on generated media."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import write_music, write_png

LTXFLOW = Path(sys.executable).parent / "ltxflow"


def make_project(root: Path, fps: str = "24", seconds: float = 6.0, extra: str = "", output: str = "out/video.mp4",
                 scenes: str | None = None, chunking: str = "max_frames: 25") -> Path:
    write_music(root / "media" / "song.wav", seconds)
    write_png(root / "keyframes" / "a.png", (96, 48), (220, 60, 90))
    write_png(root / "keyframes" / "b.png", (96, 48), (40, 160, 220))
    scenes = scenes or """
  - id: intro
    end: 2
    prompt: "an opening card"
    image: keyframes/a.png
  - id: verse
    end: 4.5
    prompt: "the verse, chained from the intro"
    camera: dolly_in
    model: ltx-2.3-22b-distilled
  - id: outro
    prompt: "a second keyframe starts an independent chain"
    image: keyframes/b.png
"""
    path = root / "song.yaml"
    path.write_text(f"""version: 1
audio: media/song.wav
fps: "{fps}"
resolution: 128x64
output: {output}
quality: low
chunking: {{{chunking}}}
{extra}
scenes:{scenes}""")
    return path


def ltx(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI with a cache of this test's own (content addressing would otherwise reuse
    chunks another test rendered from the same generated media)."""
    r = subprocess.run([str(LTXFLOW), *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                       env={**os.environ, "LTXFLOW_CACHE_DIR": str(cwd / "cache"), **(env or {})})
    if check and r.returncode != 0:
        raise AssertionError(f"ltxflow {' '.join(args)} exited {r.returncode}:\n{r.stderr}")
    return r


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def names(evs: list[dict], event: str) -> list[str]:
    return sorted(e["chunk"] for e in evs if e["event"] == event)


def build_json(project: Path, *extra: str, env: dict[str, str] | None = None, check: bool = True):
    r = ltx("build", str(project), "--log-format", "json", *extra, cwd=project.parent, env=env, check=check)
    return r, events(r.stdout)


def media(path: Path):
    """(video frames, (mono audio as float, rate) or None). Frames by demuxing with PyAV; audio
    decoded by the ffmpeg CLI, which applies the MP4 edit list (PyAV keeps AAC's end padding)."""
    import av

    from ltxflow.media.ffmpeg import find_ffmpeg

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for p in c.demux(v) if p.size)
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return frames, None
        rate = c.streams.audio[0].sample_rate
    raw = subprocess.run([find_ffmpeg().path, "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1",
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return frames, (np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768, rate)


def master(project: Path) -> np.ndarray:
    with wave.open(str(project.parent / "media" / "song.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768


@pytest.mark.parametrize("fps", ["24", "25", "24000/1001"])
def test_exact_frames_and_audio(tmp_path, fps):
    project = make_project(tmp_path, fps)
    r, evs = build_json(project)
    out = tmp_path / "out" / "video.mp4"
    frames, (audio, rate) = media(out)
    expected = round(Fraction(6) * Fraction(fps))
    assert frames == expected
    assert rate == 16000
    # The audio is the master track's span of the video, sample-accurate (at 24000/1001 the 144
    # frames last 6.006 s: the 6 s song plus zero padding), with a correlation peak at lag 0.
    ref = master(project)
    assert len(audio) == round(frames * Fraction(rate) / Fraction(fps))
    assert abs(len(audio) / rate - frames / Fraction(fps)) <= 1 / Fraction(fps)
    assert np.abs(audio[len(ref):]).max(initial=0) < 0.01  # silence, give or take AAC noise
    audio = audio[: len(ref)]
    corr = np.fft.irfft(np.fft.rfft(audio, 2 * len(ref)) * np.conj(np.fft.rfft(ref, 2 * len(ref))))
    lag = int(np.argmax(corr))
    assert lag == 0, f"audio is {lag} samples off"
    assert np.corrcoef(audio, ref)[0, 1] >= 0.99
    done = [e for e in evs if e["event"] == "build_done"][0]
    assert done["rendered"] == len(names(evs, "chunk_done")) > 3 and done["failed"] == 0


def test_second_build_renders_nothing_and_prompt_change_renders_exactly_its_chain(tmp_path):
    project = make_project(tmp_path)
    _, first = build_json(project)
    all_chunks = names(first, "chunk_done")
    assert {c.split(".")[0] for c in all_chunks} == {"intro", "verse", "outro"}
    out = tmp_path / "out" / "video.mp4"
    mtime = out.stat().st_mtime_ns

    _, second = build_json(project)
    assert names(second, "chunk_started") == [] and names(second, "chunk_cached") == all_chunks
    stitch = [e for e in second if e["event"] == "stitch_done"][0]
    assert stitch["skipped"] is True and out.stat().st_mtime_ns == mtime

    plan = json.loads(ltx("plan", str(project), "--json", cwd=tmp_path, check=True).stdout)
    assert {c["status"] for c in plan["chunks"]} == {"cached"}

    project.write_text(project.read_text().replace("the verse, chained", "the verse, rewritten and chained"))
    plan = json.loads(ltx("plan", str(project), "--json", cwd=tmp_path, check=True).stdout)
    to_render = sorted(c["id"] for c in plan["chunks"] if c["status"] == "render")
    verse = sorted(c for c in all_chunks if c.startswith("verse"))
    assert to_render == verse  # outro starts from its own keyframe and intro is before the change
    reasons = {c["id"]: c["reasons"] for c in plan["chunks"]}
    assert reasons[verse[0]] == ["prompt changed"]
    _, third = build_json(project)
    assert names(third, "chunk_started") == verse
    assert media(out)[0] == 144


def test_failing_chunk_leaves_independent_scenes_rendered(tmp_path):
    project = make_project(tmp_path)
    plan = json.loads(ltx("plan", str(project), "--json", cwd=tmp_path, check=True).stdout)
    verse = [c["id"] for c in plan["chunks"] if c["scene"] == "verse"]
    r, evs = build_json(project, "--backend", "test", env={"LTXFLOW_TEST_BACKEND": f"fail={verse[0]}"}, check=False)
    assert r.returncode == 1
    assert names(evs, "chunk_failed") == [verse[0]]
    assert names(evs, "chunk_skipped") == sorted(verse[1:])
    rendered = names(evs, "chunk_done")
    assert any(c.startswith("outro") for c in rendered) and any(c.startswith("intro") for c in rendered)
    assert f"{verse[0]}: failed: {verse[0]}: simulated failure" in r.stderr
    assert not (tmp_path / "out" / "video.mp4").exists()
    # Fixed, the next build renders only what failed or was skipped.
    _, again = build_json(project, "--backend", "test")
    assert names(again, "chunk_started") == sorted(verse)


def test_sigkill_mid_render_then_rerun_reuses_finished_chunks(tmp_path):
    project = make_project(tmp_path)
    env = {**os.environ, "LTXFLOW_TEST_BACKEND": "sleep=0.4", "LTXFLOW_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([str(LTXFLOW), "build", str(project), "--backend", "test", "--log-format", "json",
                             "-j", "1"], stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    done = []
    assert proc.stdout is not None
    for line in proc.stdout:
        ev = json.loads(line)
        if ev["event"] == "chunk_done":
            done.append(ev["chunk"])
        if len(done) == 2 and ev["event"] == "chunk_started":
            time.sleep(0.1)  # inside the third render
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    _, evs = build_json(project, "--backend", "test", env={"LTXFLOW_TEST_BACKEND": ""})
    assert set(done) <= set(names(evs, "chunk_cached"))
    assert not set(done) & set(names(evs, "chunk_started"))
    assert media(tmp_path / "out" / "video.mp4")[0] == 144


def descendants(pid: int) -> set[int]:
    """The live processes below `pid` (children, theirs, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z":
                parents.setdefault(int(fields[1]), []).append(int(d.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def temp_files(cache: Path) -> list[str]:
    """What exists in the cache only while a build runs: work folders under tmp/, files being
    written (dot names, .tmp, .part)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if p.parent == cache / "tmp" or p.name.startswith(".") or p.suffix in (".tmp", ".part"))


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_render_stops_cleanly_and_counts_as_plan_does(tmp_path, sig, code):
    """Ctrl-C, or SIGTERM (a CI runner's cancel), while chunks render: the running chunks are
    abandoned (their ffmpeg killed, their work folders removed), and the counts printed then are
    what `plan` says afterwards."""
    project = make_project(tmp_path)
    env = {**os.environ, "LTXFLOW_TEST_BACKEND": "pace=1.0", "LTXFLOW_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([str(LTXFLOW), "build", str(project), "--backend", "test", "--log-format", "json",
                             "-j", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=env)
    assert proc.stdout is not None
    done = 0
    for line in proc.stdout:
        event = json.loads(line)["event"]
        done += event == "chunk_done"
        if done >= 2 and event == "chunk_started":
            break
    children: set[int] = set()
    deadline = time.monotonic() + 10
    while not children and time.monotonic() < deadline:  # the chunk's ffmpeg, writing its frames
        children = descendants(proc.pid)
    assert children
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "interrupted" in err
    assert [p for p in children if running(p)] == []
    assert temp_files(tmp_path / "cache") == []
    summary = [e for e in events(out) if e["event"] == "build_done"][-1]
    assert summary["interrupted"]
    assert summary["breakdown"]["chunks_s"] >= 1.0  # chunks of a second's pace each were rendered before it
    plan = json.loads(ltx("plan", str(project), "--backend", "test", "--json", cwd=tmp_path, check=True).stdout)
    cached = [c["id"] for c in plan["chunks"] if c["status"] == "cached"]
    assert summary["rendered"] + summary["cached"] == len(cached) >= 2
    assert summary["to_render"] == len(plan["chunks"]) - len(cached) >= 1
    # The next build reuses exactly those and renders the rest.
    _, evs = build_json(project, "--backend", "test", env={"LTXFLOW_TEST_BACKEND": ""})
    assert names(evs, "chunk_cached") == sorted(cached)
    assert names(evs, "chunk_started") == sorted(set(c["id"] for c in plan["chunks"]) - set(cached))


def test_corrupt_cache_files_are_detected(tmp_path):
    project = make_project(tmp_path)
    cache = tmp_path / "cache"
    env = {"LTXFLOW_CACHE_DIR": str(cache)}
    _, first = build_json(project, env=env)
    entries = sorted((cache / "chunks").glob("*/*"))
    by_chunk = {json.loads((e / "record.json").read_text())["chunk"]: e for e in entries}
    outro = sorted(c for c in by_chunk if c.startswith("outro"))[-1]
    intro = sorted(c for c in by_chunk if c.startswith("intro"))[0]
    # A truncated normalized clip: detected, and made again without rendering: the preview keeps
    # no raw clip and draws the same frames again, so the clip comes back byte for byte.
    assert not list(by_chunk[outro].glob("raw.*"))
    clip = next(by_chunk[outro].glob("clip.*"))
    original = clip.read_bytes()
    clip.write_bytes(original[:500])
    # A corrupt record and raw clip: the entry is unusable and the chunk renders again.
    (by_chunk[intro] / "record.json").write_text("{not json")
    _, evs = build_json(project, env=env)
    warnings = " ".join(e["message"] for e in evs if e["event"] == "warning")
    assert outro in warnings and intro in warnings
    assert intro in names(evs, "chunk_started") and outro not in names(evs, "chunk_started")
    assert clip.read_bytes() == original
    assert media(tmp_path / "out" / "video.mp4")[0] == 144


def test_only_and_range(tmp_path):
    project = make_project(tmp_path)
    _, evs = build_json(project, "--only", "verse")
    # verse chains from intro, so intro renders too; only verse is stitched.
    assert {c.split(".")[0] for c in names(evs, "chunk_done")} == {"intro", "verse"}
    frames, (audio, rate) = media(tmp_path / "out" / "video.verse.mp4")
    assert frames == 60  # 2 s .. 4.5 s at 24 fps
    ref = master(project)[2 * 16000: 4 * 16000 + 8000]
    assert len(audio) == len(ref) and np.corrcoef(audio, ref)[0, 1] >= 0.99

    _, evs = build_json(project, "--range", "0:01.5-0:03")
    out = tmp_path / "out" / "video.1.5s-3s.mp4"
    assert media(out)[0] == 36
    assert names(evs, "chunk_started") == []  # everything it needs is cached already


def test_only_before_the_project_and_range_in_bars(tmp_path):
    """`build --only verse project.yaml` (options first, as people type them), a list of scenes in
    one value, and --range in bars, resolved on the track's beats as scene times are."""
    project = make_project(tmp_path)
    r = ltx("build", "--only", "verse", str(project), "--log-format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert media(tmp_path / "out" / "video.verse.mp4")[0] == 60
    r = ltx("build", "--only", "intro,outro", str(project), "--log-format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "video.intro+outro.mp4").is_file()
    # write_music beats twice a second from 0: bar 2 is at 2 s, bar 3 at 4 s (4 beats a bar)
    from ltxflow.music.analysis import analyse_track
    from ltxflow.music.grid import make_grid
    from ltxflow.project.resolve import open_project
    from ltxflow.timeline import parse_time

    grid = make_grid(analyse_track(open_project(project).audio))
    a, b = (grid.seconds(parse_time(t)) for t in ("bar 2", "bar 3"))
    r = ltx("build", str(project), "--range", "bar 2-bar 3", "--log-format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    done = [e for e in events(r.stdout) if e["event"] == "stitch_done"][0]
    assert done["frames"] == round(b * 24) - round(a * 24) > 0
    r = ltx("build", str(project), "--range", "bar 2-bar 99", cwd=tmp_path)
    assert r.returncode == 2 and "--range: `bar 99` is past the track's last beat" in r.stderr, r.stderr


@pytest.mark.parametrize("ext", ["webm", "mov", "gif"])
def test_containers(tmp_path, ext):
    project = make_project(tmp_path, seconds=3.0, output=f"out/video.{ext}", scenes="""
  - id: only
    prompt: "one scene"
    image: keyframes/a.png
""")
    build_json(project)
    frames, audio = media(tmp_path / "out" / f"video.{ext}")
    assert frames == 72
    assert (audio is None) == (ext == "gif")
    if audio is not None:
        assert abs(len(audio[0]) / audio[1] - 3.0) <= 1 / 24


def test_transient_errors_are_retried(tmp_path):
    from ltxflow.backends.testing import TestBackend
    from ltxflow.build import BuildOptions, build
    from ltxflow.progress import JsonReporter
    import io

    project = make_project(tmp_path)
    backend = TestBackend(transient={"outro.0": 2})
    stream = io.StringIO()
    result = build(project, BuildOptions(backoff_s=0.01, cache_dir=tmp_path / "c"), JsonReporter(stream), backend)
    assert result.ok
    retries = [e for e in events(stream.getvalue()) if e["event"] == "chunk_retry"]
    assert [(e["chunk"], e["attempt"]) for e in retries] == [("outro.0", 1), ("outro.0", 2)]
    assert backend.calls.count("outro.0") == 3


def test_cache_ls_and_gc(tmp_path):
    project = make_project(tmp_path)
    cache = tmp_path / "cache"
    env = {"LTXFLOW_CACHE_DIR": str(cache)}
    build_json(project, env=env)
    ls = ltx("cache", "ls", "--cache-dir", str(cache), cwd=tmp_path, check=True).stdout
    n_entries = len(ls.strip().splitlines()) - 1
    assert n_entries >= 4 and "outro" in ls
    stale = cache / "tmp" / "abc-999999-deadbeef"
    stale.mkdir(parents=True)
    # Drop the outro scene: its entries are no longer referenced.
    project.write_text(project.read_text().split("  - id: outro")[0].replace("end: 4.5", ""))
    def thumbnails() -> set[str]:  # the clips whose ends the report keeps, by digest
        return {p.name.split(".")[0] for p in (cache / "report" / "ends").glob("*/*.npz")}

    before = thumbnails()
    r = ltx("cache", "gc", str(tmp_path), "--cache-dir", str(cache), cwd=tmp_path, check=True)
    assert "stale files" in r.stdout
    left = ltx("cache", "ls", "--cache-dir", str(cache), cwd=tmp_path, check=True).stdout
    assert "outro" not in left and "intro" in left and not stale.exists()
    # The report's kept ends of the outro's clips went with them; the others stay.
    clips = {d for f in (cache / "chunks").glob("*/*/record.json") for d in json.loads(f.read_text())["variants"].values()}
    assert thumbnails() == before & clips and thumbnails() < before


def test_no_op_check_falls_through_on_any_change(tmp_path):
    project = make_project(tmp_path)
    out = tmp_path / "out" / "video.mp4"
    build_json(project)

    def last_build():
        _, evs = build_json(project)
        done = [e for e in evs if e["event"] == "build_done"][0]
        return done.get("up_to_date", False), names(evs, "chunk_started"), evs

    def stale(evs):  # why the quick check fell through, as build_started says it
        return [e.get("stale") for e in evs if e["event"] == "build_started"][0]

    fast, started, evs = last_build()
    assert fast and started == [] and len(names(evs, "chunk_cached")) > 3
    # The no-op build names the backend that built the video, not `None`.
    assert [e["backend"] for e in evs if e["event"] == "build_started"] == ["preview"]
    text = ltx("build", str(project), cwd=tmp_path, check=True).stderr
    assert "backend preview" in text and "backend None" not in text
    # A comment in the project file: the quick check cannot tell, the full build finds it all cached.
    project.write_text(project.read_text() + "# a comment\n")
    fast, started, evs = last_build()
    assert not fast and started == [] and stale(evs) == {"reason": "project"}
    assert last_build()[0]  # and it stamped the new state
    # New content in a keyframe (same size and name): only what it shapes renders again.
    write_png(tmp_path / "keyframes" / "b.png", (96, 48), (41, 160, 220))
    fast, started, evs = last_build()
    assert not fast and started and all(c.startswith("outro") for c in started)
    assert stale(evs) == {"reason": "file", "file": str(tmp_path / "keyframes" / "b.png")}
    # A deleted output is stitched again without rendering.
    out.unlink()
    fast, started, evs = last_build()
    assert not fast and started == [] and media(out)[0] == 144 and stale(evs)["reason"] == "file"
    assert [e["skipped"] for e in evs if e["event"] == "stitch_done"] == [False]


def test_damage_that_still_demuxes_is_caught_by_digest(tmp_path):
    project = make_project(tmp_path)
    cache = tmp_path / "cache"
    build_json(project)
    entries = {json.loads((e / "record.json").read_text())["chunk"]: e for e in (cache / "chunks").glob("*/*")}
    outro = sorted(c for c in entries if c.startswith("outro"))[0]
    clip = next(entries[outro].glob("clip.*"))
    clip.write_bytes(clip.read_bytes()[:-3])  # the last packet is cut short but still demuxes
    intro = sorted(c for c in entries if c.startswith("intro"))[-1]
    png = next(entries[intro].glob("frame*.png"))
    png.write_bytes(png.read_bytes()[: len(png.read_bytes()) // 2])
    (tmp_path / "out" / "video.mp4").unlink()
    _, evs = build_json(project)
    warnings = " ".join(e["message"] for e in evs if e["event"] == "warning")
    assert f"{outro}: cached clip is damaged" in warnings and f"{intro}: cached chain frame is damaged" in warnings
    assert names(evs, "chunk_started") == []  # both made again from the raw clips, nothing rendered
    assert media(tmp_path / "out" / "video.mp4")[0] == 144


def test_an_edit_during_a_build_is_not_stamped_as_built(tmp_path):
    project = make_project(tmp_path)
    env = {**os.environ, "LTXFLOW_TEST_BACKEND": "sleep=0.3", "LTXFLOW_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([str(LTXFLOW), "build", str(project), "--backend", "test", "--log-format", "json",
                             "-j", "1"], stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["event"] == "chunk_done":  # the project was read: now edit it
            project.write_text(project.read_text().replace("the verse, chained", "the verse, edited"))
            break
    proc.stdout.read()
    assert proc.wait(timeout=120) == 0
    _, evs = build_json(project, "--backend", "test", env={"LTXFLOW_TEST_BACKEND": ""})
    done = [e for e in evs if e["event"] == "build_done"][0]
    assert not done.get("up_to_date") and any(c.startswith("verse") for c in names(evs, "chunk_started"))


def test_bad_folders_and_missing_ffmpeg_fail_before_rendering(tmp_path):
    project = make_project(tmp_path)
    (tmp_path / "afile").write_text("x")
    r = ltx("build", str(project), "--cache-dir", str(tmp_path / "afile"), cwd=tmp_path)
    assert r.returncode == 2 and "cannot create" in r.stderr and "Traceback" not in r.stderr
    r = ltx("build", str(project), "-o", str(tmp_path / "afile" / "x.mp4"), cwd=tmp_path)
    assert r.returncode == 2 and "output's folder" in r.stderr and "Traceback" not in r.stderr
    r = ltx("build", str(project), "--log-format", "json", cwd=tmp_path,
            env={"LTXFLOW_FFMPEG": str(tmp_path / "no-such-ffmpeg")})
    assert r.returncode == 3 and "LTXFLOW_FFMPEG" in r.stderr and names(events(r.stdout), "chunk_started") == []


def test_a_failed_stitch_still_reports_build_done(tmp_path):
    from ltxflow.backends.testing import TestBackend
    from ltxflow.build import BuildOptions, StitchFailed, build
    from ltxflow.progress import JsonReporter
    import io

    project = make_project(tmp_path)
    out = tmp_path / "out" / "video.mp4"
    out.mkdir(parents=True)  # a folder where the video should go: the final rename fails
    stream = io.StringIO()
    with pytest.raises(StitchFailed):
        build(project, BuildOptions(cache_dir=tmp_path / "c"), JsonReporter(stream), TestBackend())
    done = [e for e in events(stream.getvalue()) if e["event"] == "build_done"]
    assert len(done) == 1 and done[0]["output"] is None and "stitch" in done[0]["failures"]
    assert done[0]["rendered"] >= 5


def test_gc_refuses_while_a_project_cannot_be_read(tmp_path):
    project = make_project(tmp_path)
    cache = tmp_path / "cache"
    build_json(project)
    broken = tmp_path / "other.yaml"
    broken.write_text("version: 1\naudio: missing.wav\nscenes:\n  - {id: a, prompt: p}\n")
    before = sorted((cache / "chunks").glob("*/*"))
    r = ltx("cache", "gc", str(tmp_path), "--cache-dir", str(cache), cwd=tmp_path)
    assert r.returncode == 1 and "cannot be read" in r.stderr and "other.yaml" in r.stderr
    assert sorted((cache / "chunks").glob("*/*")) == before
    (tmp_path / "notes.yaml").write_text("just: some yaml\n")  # not a project: no obstacle
    broken.unlink()
    assert ltx("cache", "gc", str(tmp_path), "--cache-dir", str(cache), cwd=tmp_path).returncode == 0
    assert sorted((cache / "chunks").glob("*/*")) == before  # everything is still referenced


def test_preview_clips_are_drafts_never_taken_for_final_ones(tmp_path):
    """The animatic's clips are encoded as drafts (x264's fastest preset) whatever `quality:` says,
    named so: the same chunk built by another backend is rendered and encoded at the project's
    quality, never served from the draft."""
    from ltxflow.execute.chunkwork import clip_format
    from ltxflow.project.resolve import open_project

    project = make_project(tmp_path, seconds=3.0, scenes="""
  - id: only
    prompt: "one scene"
    image: keyframes/a.png
""")
    project.write_text(project.read_text().replace("quality: low", "quality: high"))
    assert clip_format(open_project(project)).tag == "mp4-draft"
    assert clip_format(open_project(project, backend="test")).tag == "mp4-high"
    _, first = build_json(project)
    chunks = names(first, "chunk_started")

    def variants() -> dict[str, list[str]]:
        records = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("record.json")]
        return {r["backend"]: sorted(r["variants"]) for r in records}

    assert list(variants()) == ["preview"] and all("-mp4-draft" in v for v in variants()["preview"])
    _, evs = build_json(project, "--backend", "test", env={"LTXFLOW_TEST_BACKEND": ""})
    assert len(chunks) > 1 and names(evs, "chunk_started") == chunks  # all rendered anew: no preview clip taken
    assert all("-mp4-high" in v for v in variants()["test"]) and media(tmp_path / "out" / "video.mp4")[0] == 72
