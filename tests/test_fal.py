"""`backend: fal` end to end: `ltxflow build` against the fake fal server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import wave
from pathlib import Path

import pytest

from conftest import write_lora, write_music, write_png
from test_build import LTXFLOW, events, ltx, media

from ltxflow.fakefal import FakeFal

FAST = {"LTXFLOW_FAL_POLL": "0.02,0.1", "LTXFLOW_FAL_RETRY": "4,0.02,0.1,10"}
KEY = "ltxflow-test-key-7f3c9a1e5b"

SEED_ENDPOINTS = """
  - id: opening
    end: 1.5
    prompt: "opening: a singer under neon"
    image: keyframes/a.png
    endpoint: fal-ai/ltx-2.3-quality/audio-to-video/lora
    loras: [{path: loras/style.safetensors, scale: 0.8}]
  - id: verse
    end: 2.5
    prompt: "verse: the camera pushes in"
    endpoint: fal-ai/ltx-2.3-22b/distilled/audio-to-video
    camera: dolly_in
    end_image: keyframes/b.png
  - id: bridge
    end: 3.5
    prompt: "bridge: rain on glass"
    endpoint: fal-ai/ltx-2.3-quality/image-to-video
    steps: 12
  - id: chorus
    prompt: "chorus: the crowd jumps"
    image: keyframes/a.png
    end_image: keyframes/b.png
    endpoint: fal-ai/ltx-2.3-22b/image-to-video/lora
    loras: [{path: loras/style.safetensors, scale: 1.2}]
    negative_prompt: "blurry"
"""

SMALL = """
  - id: intro
    end: 1
    prompt: "intro: a neon sign flickers"
    image: keyframes/a.png
  - id: drop
    prompt: "drop: the street explodes with light"
    image: keyframes/b.png
"""


def fal_project(root: Path, scenes: str = SMALL, seconds: float = 2.0, extra: str = "") -> Path:
    write_music(root / "media" / "song.wav", seconds)
    write_png(root / "keyframes" / "a.png", (96, 48), (220, 60, 90))
    write_png(root / "keyframes" / "b.png", (96, 48), (40, 160, 220))
    write_lora(root / "loras" / "style.safetensors")
    path = root / "song.yaml"
    path.write_text(f"""version: 1
audio: media/song.wav
fps: 24
resolution: 128x64
output: out/video.mp4
quality: low
backend: fal
chunking: {{max_frames: 25}}
{extra}
scenes:{scenes}""")
    return path


@pytest.fixture
def fake():
    with FakeFal() as server:
        yield server


def fal_env(fake: FakeFal, key: str | None = KEY) -> dict[str, str]:
    env = {**fake.env(), **FAST, "FAL_KEY": key or "", "FAL_KEY_ID": "", "FAL_KEY_SECRET": ""}
    return env


def build(project: Path, fake: FakeFal, *extra: str, key: str | None = KEY):
    r = ltx("build", str(project), "--log-format", "json", *extra, cwd=project.parent, env=fal_env(fake, key))
    return r, events(r.stdout)


def plan_of(project: Path, fake: FakeFal) -> dict:
    r = ltx("plan", str(project), "--json", cwd=project.parent, env=fal_env(fake), check=True)
    return json.loads(r.stdout)


def queued(fake: FakeFal) -> list[dict]:
    return [s for s in fake.state()["submits"] if s["queued"]]


def stored(fake: FakeFal, url: str) -> bytes:
    path = fake.local_file(url)
    assert path is not None, f"{url} is not a file the fake stores"
    return path.read_bytes()


@pytest.mark.slow
def test_every_seed_endpoint_through_build(tmp_path, fake):
    project = fal_project(tmp_path, SEED_ENDPOINTS, seconds=5.0)
    plan = plan_of(project, fake)
    r, evs = build(project, fake)
    assert r.returncode == 0, r.stderr
    chunks = {(c["scene"], c["seed"]): c for c in plan["chunks"]}
    subs = queued(fake)
    assert len(subs) == len(plan["chunks"]) == len(fake.state()["submits"])  # nothing rejected or retried
    assert {s["endpoint"] for s in subs} == {
        "fal-ai/ltx-2.3-quality/audio-to-video/lora", "fal-ai/ltx-2.3-22b/distilled/audio-to-video",
        "fal-ai/ltx-2.3-quality/image-to-video", "fal-ai/ltx-2.3-22b/image-to-video/lora"}
    a, b = (tmp_path / "keyframes" / n for n in ("a.png", "b.png"))
    lora = (tmp_path / "loras" / "style.safetensors").read_bytes()
    lora_urls = set()
    for s in subs:
        body, ep = s["body"], s["endpoint"]
        scene = body["prompt"].split(":")[0]
        c = chunks[(scene, body["seed"])]
        assert c["endpoint"] == ep
        assert body["num_frames"] == c["generated_frames"] and 9 <= body["num_frames"] <= 481
        size, fps = ("resolution", "frames_per_second") if "quality" in ep else ("video_size", "fps")
        assert body[size] == {"width": 128, "height": 64} and body[fps] == 24
        assert body["video_quality"] == "low"  # the project's quality
        assert not {"resolution", "frames_per_second", "video_size", "fps"} - {size, fps} & set(body)
        if "audio-to-video" in ep:
            assert body["match_audio_length"] is False
            wav = tmp_path / "span.wav"
            wav.write_bytes(stored(fake, body["audio_url"]))
            with wave.open(str(wav)) as w:
                assert w.getnframes() == c["audio"]["samples"]
                # generated frames / fps, to the sample (span ends fall on whole samples)
                assert abs(w.getnframes() * 24 - body["num_frames"] * w.getframerate()) < 24
        else:
            assert "audio_url" not in body and "match_audio_length" not in body
        start = stored(fake, body["image_url"])
        if c["start_image"]["kind"] == "keyframe":
            assert start == a.read_bytes()
        else:
            assert start[:8] == b"\x89PNG\r\n\x1a\n" and c["start_image"]["kind"] == "chain"
        last_of_scene = c["id"] == max((x for x in plan["chunks"] if x["scene"] == scene), key=lambda x: x["index"])["id"]
        if scene in ("verse", "chorus") and last_of_scene:
            assert stored(fake, body["end_image_url"]) == b.read_bytes()
        else:
            assert "end_image_url" not in body
        if scene == "opening":
            assert [{k: v for k, v in lo.items() if k != "path"} for lo in body["loras"]] == [
                {"scale": 0.8, "transformer": "both"}]
        if scene == "chorus":
            assert [{k: v for k, v in lo.items() if k != "path"} for lo in body["loras"]] == [{"scale": 1.2}]
            assert body["negative_prompt"] == "blurry"
        if scene in ("opening", "chorus"):
            assert stored(fake, body["loras"][0]["path"]) == lora
            lora_urls.add(body["loras"][0]["path"])
        if scene == "verse":
            assert body["camera_lora"] == "dolly_in"
        if scene == "bridge":
            assert body["num_inference_steps"] == 12
    assert len(lora_urls) == 1  # one upload serves both scenes
    frames, (audio, rate) = media(tmp_path / "out" / "video.mp4")
    assert frames == 120 and len(audio) == 5 * rate
    done = [e for e in evs if e["event"] == "build_done"][0]
    assert done["cost_usd"] == pytest.approx(plan["totals"]["cost_usd"]) and done["cost_usd"] > 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "chunks").glob("*/*/record.json")]
    assert sorted(rec["cost_usd"] for rec in records) == sorted(c["cost_usd"] for c in plan["chunks"])
    assert all(rec["details"]["request_id"] for rec in records)
    assert not list((tmp_path / "cache" / "journal").glob("*.json"))  # every request collected

    uploads = fake.state()["uploads"]
    again = project.read_text().replace("bridge: rain on glass", "bridge: rain on a window")
    project.write_text(again)
    r, evs = build(project, fake)
    assert r.returncode == 0, r.stderr
    assert [e["chunk"] for e in evs if e["event"] == "chunk_submitted"] == ["bridge.0"]  # and nothing else
    assert fake.state()["uploads"] == uploads  # its audio span and chain frame were uploaded before


@pytest.mark.slow
def test_plan_shows_cost_now_and_max_cost_refuses_before_any_request(tmp_path, fake):
    project = fal_project(tmp_path)
    plan = plan_of(project, fake)
    total = plan["totals"]["cost_usd"]
    assert total > 0 and plan["totals"]["cost_now_usd"] == total
    r = ltx("plan", str(project), cwd=tmp_path, env=fal_env(fake), check=True)
    assert f"to render now: {len(plan['chunks'])} of {len(plan['chunks'])} chunks, ${total:.2f}" in r.stdout

    r, _ = build(project, fake, "--max-cost", f"{total / 2:.4f}")
    assert r.returncode == 2 and "--max-cost" in r.stderr and "nothing was submitted" in r.stderr
    project.write_text(project.read_text().replace("backend: fal", f"backend: fal\nmax_cost: {total / 2:.4f}"))
    r, _ = build(project, fake)
    assert r.returncode == 2 and "max_cost in" in r.stderr
    assert fake.state()["submits"] == [] and fake.state()["uploads"] == 0

    r, _ = build(project, fake, "--max-cost", f"{total * 2:.4f}")  # the flag overrides the file
    assert r.returncode == 0, r.stderr
    plan = plan_of(project, fake)
    assert plan["totals"]["cost_now_usd"] == 0 and plan["totals"]["cost_usd"] == total


@pytest.mark.parametrize("key, keys, words", [
    (None, None, "FAL_KEY"),
    ("wrong-key", {"right-key"}, "rejected the key"),
])
def test_a_missing_or_rejected_key_fails_before_any_submit(tmp_path, key, keys, words):
    project = fal_project(tmp_path)
    with FakeFal(keys=keys) as fake:
        r, _ = build(project, fake, key=key)
        assert r.returncode == 2 and words in r.stderr and "export FAL_KEY" in r.stderr
        assert fake.state()["submits"] == [] and fake.state()["uploads"] == 0
    assert "wrong-key" not in r.stderr + r.stdout


def test_an_unreachable_fal_fails_before_any_submit(tmp_path, fake):
    import socket

    project = fal_project(tmp_path)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    r = ltx("build", str(project), cwd=tmp_path, env={**fal_env(fake), "LTXFLOW_FAL_REST_URL": dead})
    assert r.returncode == 1 and f"cannot check the key with fal at {dead}" in r.stderr
    assert "nothing was submitted" in r.stderr and fake.state()["submits"] == []


@pytest.mark.parametrize("fault, warns", [
    ("429x3", None), ("500x2", None), ("503", None), ("slow:6", None), ("drop", None),
    ("lost@intro", "possible duplicate charge"), ("frames:-8@intro", "frames: asked for 25, got 17"),
    ("fps:25@drop", "runs at 25 fps"), ("crash@intro", None),
])
def test_recoverable_faults_end_in_a_finished_exact_build(tmp_path, fault, warns):
    project = fal_project(tmp_path)
    with FakeFal(faults=[fault]) as fake:
        r, evs = build(project, fake)
        assert r.returncode == 0, r.stderr
        counts = fake.submit_counts()
    frames, (audio, rate) = media(tmp_path / "out" / "video.mp4")
    assert frames == 48 and len(audio) == 2 * rate
    messages = [e["message"] for e in evs if e["event"] == "warning"]
    if warns:
        assert any(warns in m for m in messages), messages
    else:  # a fault recovered without doubt warns of nothing
        assert messages == [], messages
    # A duplicate charge is reported exactly when one may have happened: a submit lost after fal
    # queued it (never for a retried or a resubmitted request fal did not bill).
    assert any("possible duplicate charge" in m for m in messages) == fault.startswith("lost"), messages
    if fault.startswith("lost"):  # the lost submit queued a job; the retry queued another: reported
        assert sorted(counts.values()) == [1, 2]
    elif fault.startswith("crash"):  # fal bills no infrastructure failure: submitted again
        assert sorted(counts.values()) == [1, 2]
        assert [e["chunk"] for e in evs if e["event"] == "chunk_retry"] == ["intro.0"]
    else:
        assert set(counts.values()) == {1}, counts
    if fault[:3] in ("429", "500", "503") or fault == "drop":  # retried by the client, not resubmitted
        assert any(e["event"] == "fal_retry" for e in evs)
    if fault.startswith("slow"):  # the queue position was reported as it went down
        positions = [e["queue_position"] for e in evs if e["event"] == "chunk_queue" and e["status"] == "IN_QUEUE"]
        assert 5 in positions and 0 in positions


@pytest.mark.parametrize("fault, words", [
    ("error:out of GPU memory@drop", "fal reports the request"),
    ("gone@drop", "no longer has the result"),
    ("422:num_frames@drop", "field num_frames"),
])
def test_a_failing_request_fails_its_chunk_alone(tmp_path, fault, words):
    project = fal_project(tmp_path)
    with FakeFal(faults=[fault]) as fake:
        r, evs = build(project, fake)
        assert r.returncode == 1
        failed = [e for e in evs if e["event"] == "chunk_failed"]
        assert [e["chunk"] for e in failed] == ["drop.0"] and words in failed[0]["error"]
        assert "drop.0" in failed[0]["error"]  # the message names its chunk
        assert [e["chunk"] for e in evs if e["event"] == "chunk_done"] == ["intro.0"]
        assert fake.submit_counts() and set(fake.submit_counts().values()) == {1}  # not retried
        if fault.startswith("422"):
            assert "scene 'drop', chunk drop.0" in r.stderr
        # Nothing is left journalled: the next build submits that chunk anew and finishes.
        r, evs = build(project, fake)
        assert r.returncode == 0, r.stderr
        assert [e["chunk"] for e in evs if e["event"] == "chunk_submitted"] == ["drop.0"]


def _wait(cond, timeout: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _start(project: Path, fake: FakeFal, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "LTXFLOW_CACHE_DIR": str(project.parent / "cache"), **fal_env(fake)}
    return subprocess.Popen([str(LTXFLOW), "build", str(project), "--log-format", "json", *extra],
                            cwd=project.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _journalled(project: Path) -> int:
    """Journal entries (requests fal answered), not intents (submits still waiting for an answer)."""
    return sum(1 for p in (project.parent / "cache" / "journal").glob("*.json")
               if json.loads(p.read_text()).get("state") != "intent")


def test_a_killed_build_resumes_its_requests_and_never_submits_twice(tmp_path, fake):
    project = fal_project(tmp_path)
    fake.paused = True
    proc = _start(project, fake, "--jobs", "2")
    _wait(lambda: len(queued(fake)) == 2 and _journalled(project) == 2, what="two journalled submits")
    proc.kill()  # SIGKILL while both requests wait in fal's queue
    proc.communicate()
    fake.paused = False
    r, evs = build(project, fake)
    assert r.returncode == 0, r.stderr
    assert sorted(e["chunk"] for e in evs if e["event"] == "chunk_resumed") == ["drop.0", "intro.0"]
    assert not [e for e in evs if e["event"] == "chunk_submitted"]
    assert set(fake.submit_counts().values()) == {1} and len(fake.submit_counts()) == 2
    assert _journalled(project) == 0
    frames, _ = media(tmp_path / "out" / "video.mp4")
    assert frames == 48

    # A crash between committing a chunk and forgetting its request leaves a journal entry behind;
    # the next full build sees the chunk cached and forgets it (cancel would otherwise chase it).
    chunk = json.loads(ltx("plan", str(project), "--json", cwd=tmp_path, env=fal_env(fake)).stdout)["chunks"][0]
    key, base = chunk["key"], f"{fake.url}/{'/'.join(chunk['endpoint'].split('/')[:2])}/requests/old"
    stale = tmp_path / "cache" / "journal" / f"{key}.json"
    stale.write_text(json.dumps({"key": key, "chunk": "intro.0", "project": str(project.resolve()),
                                 "host": fake.url, "endpoint": chunk["endpoint"], "request_id": "old",
                                 "status_url": f"{base}/status", "response_url": base, "cancel_url": f"{base}/cancel"}))
    project.write_text(project.read_text() + "# edited\n")  # past the no-op fast path
    r, evs = build(project, fake)
    assert r.returncode == 0 and not stale.exists() and not [e for e in evs if e["event"] == "chunk_resumed"]


def test_ctrl_c_leaves_requests_to_collect_and_cancel_cancels_them(tmp_path, fake):
    project = fal_project(tmp_path)
    fake.paused = True
    proc = _start(project, fake)
    _wait(lambda: _journalled(project) == 2, what="two journalled submits")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "2 requests still run on fal" in err and "ltxflow cancel" in err
    plan = plan_of(project, fake)
    assert {c["status"] for c in plan["chunks"]} == {"submitted"} and plan["totals"]["cost_now_usd"] == 0

    r = ltx("cancel", str(project), cwd=tmp_path, env=fal_env(fake), check=True)
    lines = sorted(r.stdout.splitlines())
    ids = {s["body"]["prompt"].split(":")[0]: s["request_id"] for s in queued(fake)}
    assert lines == [f"drop.0: {ids['drop']}: cancellation requested", f"intro.0: {ids['intro']}: cancellation requested"]
    assert all(j["cancelled"] for j in fake.state()["jobs"].values())
    assert _journalled(project) == 0
    r = ltx("cancel", str(project), cwd=tmp_path, env=fal_env(fake), check=True)
    assert "no requests in flight" in r.stdout


def test_the_key_is_written_nowhere(tmp_path):
    project = fal_project(tmp_path)
    with FakeFal(faults=["422:seed@drop", "500"]) as fake:
        r, evs = build(project, fake)
        assert r.returncode == 1 and any(e["event"] == "fal_retry" for e in evs)
        assert any("field seed" in e.get("error", "") for e in evs if e["event"] == "chunk_failed")
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaks == []
    assert KEY not in r.stdout + r.stderr


def test_fake_fal_command_serves_the_protocol(tmp_path):
    import httpx

    proc = subprocess.Popen([str(LTXFLOW), "fake-fal", "--port", "0", "--fault", "429"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[4].rstrip(";")
        assert url.startswith("http://127.0.0.1:")
        env_lines = [proc.stdout.readline().strip() for _ in range(2)]
        assert env_lines == [f"export LTXFLOW_FAL_QUEUE_URL={url}", f"export LTXFLOW_FAL_REST_URL={url}"]
        h = {"Authorization": "Key k"}
        ep = "fal-ai/ltx-2.3-quality/image-to-video"
        body = {"prompt": "p", "image_url": f"{url}/files/nope/x.png", "num_frames": 500}
        assert httpx.post(f"{url}/{ep}", json=body, headers=h).status_code == 429  # the injected fault
        bad = httpx.post(f"{url}/{ep}", json=body, headers=h)
        assert bad.status_code == 422
        assert {tuple(d["loc"]) for d in bad.json()["detail"]} == {("body", "image_url"), ("body", "num_frames")}
        assert httpx.post(f"{url}/{ep}", json=body).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    r = subprocess.run([str(LTXFLOW), "fake-fal", "--fault", "bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "bad fault" in r.stderr
