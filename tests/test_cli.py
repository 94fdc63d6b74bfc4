"""The command line, run as a user runs it: the installed `ltxflow` console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import DEMO, REPO, plan_of

LTXFLOW = Path(sys.executable).parent / "ltxflow"


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(LTXFLOW), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


# The demo song (projects/demo/make_media.py): 40 s at 120 BPM, starting on a downbeat, so a bar
# every 2 s. Numbers the music analysis decides (beats found, where seams land, chunk lengths) are
# taken from the plan made in this process; the command line must show that plan.
FPS = Fraction(24)


@pytest.fixture(scope="module")
def demo_plan():
    return plan_of(DEMO, backend="fal")


def clock(frame: int) -> str:
    ms = round(Fraction(frame) * 1000 / FPS)
    return f"{ms // 60000}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def longest_chain(chunks: list[dict]) -> int:
    depth: dict[str, int] = {}
    for c in chunks:  # in timeline order: a chunk's source comes before it
        depth[c["id"]] = 1 + (depth[c["chains_from"]] if c["chains_from"] else 0)
    return max(depth.values())


def test_the_demo_plan_follows_its_song(demo_plan):
    """What the other tests take from the plan agrees with how the song was made."""
    music = demo_plan.project.music
    assert abs(music.analysis.tempo - 120) < 1 and abs(len(music.beats) - 80) <= 1
    assert all(abs(b - 2 * i) < 0.02 for i, b in enumerate(music.bars))  # bar 1 at 0 s, one every 2 s
    ends = {s.id: s.end_frame for s in demo_plan.project.scenes}
    assert ends == {"intro": 8 * 24, "verse": 30 * 24, "drop": 36 * 24, "outro": 40 * 24}  # bars 5, 16, 19; the end
    seams = [c for c in demo_plan.chunks if c.index > 0]
    assert seams and all(music.describe(float(c.start_frame / FPS))["beat"]["beat_in_bar"] == 1 for c in seams)


def test_validate_demo(demo_plan):
    r = run("validate", "projects/demo/demo.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("projects/demo/demo.yaml: ok: neon-nights, 4 scenes, 0:40.000 at 24 fps, "
                                f"1280x704, {len(demo_plan.chunks)} chunks")


def test_plan_table(demo_plan):
    r = run("plan", "projects/demo/demo.yaml", "--backend", "fal")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    music = demo_plan.project.music
    assert lines[0].startswith(f"neon-nights: 1280x704 @ 24 fps, backend fal; music {music.analysis.tempo:.1f} BPM, "
                               f"{len(music.beats)} beats, {len(music.bars)} bars of 4")
    assert lines[1].split() == ["scene", "chunk", "time", "gen/kept", "start", "image", "endpoint", "seed", "cost",
                                "status", "starts", "on"]
    scenes = {s.id for s in demo_plan.project.scenes}
    rows = {ln.split()[1]: ln for ln in lines[3:] if len(ln.split()) > 1 and ln.split()[0] in scenes}
    assert list(rows) == [c.id for c in demo_plan.chunks]
    for c in demo_plan.chunks:
        cells = rows[c.id].split()
        assert cells[:4] == [c.scene, c.id, f"{clock(c.start_frame)}-{clock(c.end_frame)}",
                             f"{c.generated_frames}/{c.kept_frames}"], rows[c.id]
        assert str(c.seed) in cells and f"${c.cost_usd:.2f}" in cells and "render" in cells  # nothing cached here
        if c.start_image.kind == "chain":
            assert f"chain {c.chains_from}" in rows[c.id]
        if c.index > 0:  # a seam inside a scene: on the beat the plan found, named by its bar
            at = music.describe(float(c.start_frame / FPS))["beat"]
            assert f"beat | beat {at['number']} (bar {at['bar']} beat {at['beat_in_bar']})" in rows[c.id], rows[c.id]
    verse0 = demo_plan.chunks[1]
    # its kept frames, the chain frame repeated at its head, and the frames after the one verse.1 chains from
    assert verse0.head == 1 and verse0.tail == 8 and verse0.generated_frames == verse0.head + verse0.kept_frames + 8
    total = sum(c.cost_usd for c in demo_plan.chunks)
    n = len(demo_plan.chunks)
    assert f"to render now: {n} of {n} chunks, ${total:.2f}" in lines
    assert lines[-1] == (f"{n} chunks, 960 frames (0:40.000), {sum(c.generated_frames for c in demo_plan.chunks)} "
                         f"generated, longest chain {demo_plan.longest_chain}; cost ${total:.2f}")


def test_plan_json_is_stable_and_complete(demo_plan):
    r = run("plan", "projects/demo/demo.yaml", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert run("plan", "projects/demo/demo.yaml", "--json").stdout == r.stdout
    assert (plan["fps"], plan["fps_rational"], plan["width"], plan["height"]) == (24.0, "24", 1280, 704)
    chunks = plan["chunks"]
    # The chunks tile the 40 s timeline scene by scene, as the plan made here splits it (the preview
    # backend is free; the hosted price is fal's for the same frames).
    assert [(c["id"], c["start_frame"], c["end_frame"], c["generated_frames"]) for c in chunks] == \
        [(c.id, c.start_frame, c.end_frame, c.generated_frames) for c in demo_plan.chunks]
    assert chunks[0]["start_frame"] == 0 and chunks[-1]["end_frame"] == 960
    assert all(a["end_frame"] == b["start_frame"] for a, b in zip(chunks, chunks[1:]))
    assert [(s["id"], s["chunks"]) for s in plan["scenes"]] == \
        [(s.id, [c.id for c in demo_plan.chunks if c.scene == s.id]) for s in demo_plan.project.scenes]
    assert plan["totals"] == {"frames": 960, "duration_s": 40.0, "chunks": len(chunks),
                              "generated_frames": sum(c["generated_frames"] for c in chunks),
                              "cost_usd": 0.0,
                              "hosted_cost_usd": round(sum(c.hosted_cost_usd for c in demo_plan.chunks), 6),
                              "longest_chain": longest_chain(chunks), "to_render": len(chunks), "cost_now_usd": 0.0,
                              "submitted": 0}
    assert plan["totals"]["longest_chain"] == 4  # intro -> verse.0 -> verse.1 -> drop; the outro has a keyframe
    required = {"id", "scene", "start_frame", "end_frame", "generated_frames", "start_image", "chains_from",
                "endpoint", "seed", "cost_usd", "key"}
    for c in chunks:
        assert required <= set(c)
        assert c["start_image"]["kind"] in ("keyframe", "chain", "none")
        assert len(c["key"]) == 64
        assert c["status"] == "render" and c["reasons"] == ["new"]
        assert c["head_frames"] + c["end_frame"] - c["start_frame"] + c["tail_frames"] == c["generated_frames"]
        if c["scene"] == "outro":  # not audio-driven: no audio is sent
            assert c["audio"] is None
            continue
        # its audio span starts at its first generated frame (head included) and covers every one
        first = c["start_frame"] - c["head_frames"]
        assert c["audio"]["start_sample"] == round(Fraction(first * 16000) / FPS)
        assert c["audio"]["samples"] == round(Fraction((first + c["generated_frames"]) * 16000) / FPS) - \
            c["audio"]["start_sample"]
    intro, verse0 = chunks[0], chunks[1]
    assert verse0["start_image"] == {"kind": "chain", "chunk": "intro.0",
                                     "frame": intro["head_frames"] + intro["end_frame"] - intro["start_frame"] - 1}
    assert intro["start_image"]["ref"] == "keyframes/intro.png"


def test_schema_command_matches_the_committed_file():
    r = run("schema")
    assert r.returncode == 0
    assert r.stdout == (REPO / "schemas" / "project.schema.json").read_text(), "run `make schema`"


@pytest.mark.parametrize("command", [[], ["validate"], ["plan"], ["build"], ["report"], ["cache"], ["cache", "ls"],
                                     ["cache", "gc"], ["schema"]])
def test_help_everywhere(command):
    r = run(*command, "--help")
    assert r.returncode == 0 and "usage: ltxflow" in r.stdout


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("ltxflow ")


def test_invalid_project_exits_2_and_writes_nothing(tmp_path):
    proj = tmp_path / "demo"
    shutil.copytree(DEMO.parent, proj)
    text = (proj / "demo.yaml").read_text().replace('end: bar 16', 'end: "0:07"').replace("steps: 15", "stepz: 15")
    (proj / "demo.yaml").write_text(text)
    before = sorted(p.relative_to(proj) for p in proj.rglob("*"))
    r = run("plan", "demo.yaml", cwd=proj)
    assert r.returncode == 2
    err = r.stderr.splitlines()
    assert 'end: "0:07"' in text
    assert any(ln.startswith("demo.yaml:21:3: defaults.stepz: unknown key 'stepz' (did you mean 'steps'?)")
               for ln in err), r.stderr
    assert err[-1] == "1 problem found"  # model errors stop before timing errors are looked for
    assert r.stdout == ""
    assert sorted(p.relative_to(proj) for p in proj.rglob("*")) == before


def test_missing_project_file(tmp_path):
    r = run("validate", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "project file not found" in r.stderr
    r = run("validate", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ltxflow", "validate", str(DEMO)], capture_output=True, text=True,
                       env={**os.environ})
    assert r.returncode == 0 and "ok: neon-nights" in r.stdout
