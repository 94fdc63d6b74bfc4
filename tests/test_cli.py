"""The command line, run as a user runs it: the installed `ltxflow` console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEMO, REPO

LTXFLOW = Path(sys.executable).parent / "ltxflow"


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(LTXFLOW), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_validate_demo():
    r = run("validate", "projects/demo/demo.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("projects/demo/demo.yaml: ok: neon-nights, 4 scenes, 0:40.000 at 24 fps, "
                                "1280x704, 5 chunks")


def test_plan_table():
    r = run("plan", "projects/demo/demo.yaml", "--backend", "fal")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("neon-nights: 1280x704 @ 24 fps, backend fal; music 120.0 BPM, 80 beats, 20 bars")
    assert lines[1].split() == ["scene", "chunk", "time", "gen/kept", "start", "image", "endpoint", "seed", "cost",
                                "status", "starts", "on"]
    verse0 = next(ln for ln in lines if ln.split()[:2] == ["verse", "verse.0"])
    # 240 kept + the chain frame repeated + 8 frames after the frame verse.1 chains from
    assert "0:08.000-0:18.000" in verse0 and "249/240" in verse0 and "chain intro.0" in verse0
    assert verse0.split()[9] == "render"  # nothing is cached in this test's cache
    verse1 = next(ln for ln in lines if ln.split()[:2] == ["verse", "verse.1"])
    # the seam inside the verse is on a beat, and on a bar's first beat (18 s at 120 BPM, 4/4)
    assert "beat | beat 37 (bar 10 beat 1)" in verse1
    assert "to render now: 5 of 5 chunks, $1.99" in lines
    assert lines[-1].startswith("5 chunks, 960 frames (0:40.000), 989 generated, longest chain 4; cost $1.99")


def test_plan_json_is_stable_and_complete():
    r = run("plan", "projects/demo/demo.yaml", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert run("plan", "projects/demo/demo.yaml", "--json").stdout == r.stdout
    assert (plan["fps"], plan["fps_rational"], plan["width"], plan["height"]) == (24.0, "24", 1280, 704)
    assert plan["totals"] == {"frames": 960, "duration_s": 40.0, "chunks": 5, "generated_frames": 989,
                              "cost_usd": 0.0, "hosted_cost_usd": 1.994777, "longest_chain": 4,
                              "to_render": 5, "cost_now_usd": 0.0, "submitted": 0}
    required = {"id", "scene", "start_frame", "end_frame", "generated_frames", "start_image", "chains_from",
                "endpoint", "seed", "cost_usd", "key"}
    for c in plan["chunks"]:
        assert required <= set(c)
        assert c["start_image"]["kind"] in ("keyframe", "chain", "none")
        assert len(c["key"]) == 64
        assert c["status"] == "render" and c["reasons"] == ["new"]
    assert [c["end_frame"] - c["start_frame"] for c in plan["chunks"]] == [192, 240, 288, 144, 96]
    assert plan["chunks"][1]["start_image"] == {"kind": "chain", "chunk": "intro.0", "frame": 191}
    assert plan["chunks"][0]["start_image"]["ref"] == "keyframes/intro.png"
    assert plan["chunks"][1]["audio"]["start_sample"] == 127333


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
