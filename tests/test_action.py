"""The composite action (action.yml) run as a GitHub runner runs it (tests/actionrunner.py), against
the fake fal: a render uploads its files; a render cancelled mid-build (SIGINT, then SIGTERM) and
re-run collects what fal accepted and submits nothing twice; a pull request's plan reports the cost
of what would render now against the cache the render saved; an intent left by a run killed
during a submit is reported as a possible duplicate charge. The key reaches no file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from actionrunner import LTXFLOW, Cancel, Runner
from test_fal import FAST, KEY, fal_project, queued
from test_github import commands, plain_markdown

from ltxflow.fakefal import FakeFal

SCENES = """
  - id: intro
    end: 1
    prompt: "intro: a neon sign flickers"
    image: keyframes/a.png
  - id: drop
    prompt: "drop: the street explodes with light"
    image: keyframes/b.png
"""


@pytest.fixture
def fake():
    with FakeFal() as server:
        yield server


def _read(files) -> list[dict]:
    """The JSON files, skipping one the build removes (or is writing) as it is read."""
    out = []
    for p in files:
        try:
            out.append(json.loads(p.read_text()))
        except (FileNotFoundError, ValueError):
            continue
    return out


def _records(cache: Path) -> dict[str, dict]:
    return {r["chunk"]: r for r in _read(cache.glob("chunks/*/*/record.json"))}


def _journal(cache: Path) -> list[dict]:
    """The requests fal accepted that the journal holds (not intents)."""
    return [e for e in _read(cache.glob("journal/*.json")) if e.get("state") != "intent"]


def _in_queue(cache: Path) -> list[str]:
    return sorted(e["chunk"] for e in _journal(cache))


def _newest_cache(runner: Runner) -> Path:
    return max(runner.caches.iterdir(), key=lambda p: p.stat().st_mtime_ns)


def _no_key_anywhere(*roots: Path, texts: tuple[str, ...] = ()) -> None:
    for root in roots:
        for f in root.rglob("*"):
            if f.is_file() and not f.is_symlink():
                assert KEY.encode() not in f.read_bytes(), f"the key is written in {f}"
    for t in texts:
        assert KEY not in t


@pytest.fixture
def repo(tmp_path, fake):
    """A repository's checkout with a fal project, and its runner."""
    workspace = tmp_path / "checkout"
    project = fal_project(workspace, SCENES, seconds=3.0)
    runner = Runner(tmp_path / "runner", workspace, {**fake.env(), **FAST, "FAL_KEY": "", "FAL_KEY_ID": "",
                                                     "FAL_KEY_SECRET": ""})
    return runner, project


def test_render_cancelled_then_rerun_then_pull_request_plan(repo, fake):
    runner, project = repo
    render = {"project": project.name, "backend": "fal", "max-cost": "5"}
    secrets = {"FAL_KEY": KEY}

    # The render is cancelled once one chunk is in the cache and another request waits at fal:
    # journalled and still queued there, which, paused, it stays (a request already running
    # would finish and commit as the build stops, and leave nothing to collect).
    def moment() -> bool:
        caches = list(runner.root.glob("runner-temp-*/ltxflow-cache"))
        if not caches or not _records(caches[-1]):
            return False
        fake.paused = True  # what fal accepts from now on stays queued
        jobs = fake.state()["jobs"]
        return any(jobs.get(e["request_id"], {}).get("state") == "IN_QUEUE" for e in _journal(caches[-1]))

    # SIGTERM follows at once, so it lands while ltxflow is stopping (the runner's 7.5 s would
    # find it gone: tests/test_fal.py covers SIGINT alone).
    cancel = Cancel("build", moment, term_after=0, kill_after=5)
    first = runner.run(render, env=secrets, cancel=cancel)
    build = first.step("build")
    assert build.outcome == "cancelled" and cancel.sent[:2] == ["SIGINT", "SIGTERM"], build.stdout
    assert build.returncode in (130, 143, -15), build.stdout  # -15: SIGTERM came as it exited
    # always(): pruned (the journal kept) and saved; nothing to upload, since no video was made.
    assert [first.step(s).outcome for s in ("Prune the chunk cache", "Save the chunk cache", "artifacts")] == \
        ["success", "success", "success"]
    assert first.step("Upload the video, report and contact sheet").outcome == "skipped"
    saved = _newest_cache(runner)
    rendered, waiting = sorted(_records(saved)), _in_queue(saved)
    assert rendered and waiting and not set(rendered) & set(waiting), (rendered, waiting)
    assert "### ltxflow build: song" in first.summary and "**Interrupted**" in first.summary
    submits_before = len(queued(fake))

    # Re-run: the newest cache under the prefix is restored; what fal accepted is collected.
    fake.paused = False
    second = runner.run(render, env=secrets, rerun=True)
    assert second.step("build").outcome == "success", second.step("build").stdout
    assert second.step("restore").outputs["cache-matched-key"] == saved.name
    order = [c["id"] for c in json.loads(runner_plan(runner, project))["chunks"]]
    chunks = len(order)
    counts = fake.submit_counts()
    assert len(counts) == chunks and set(counts.values()) == {1}, counts  # every chunk paid once
    assert len(queued(fake)) - submits_before == chunks - len(rendered) - len(waiting)
    text = plain_markdown(second.summary)
    collected = re.search(r"Collected \d+ fal requests? that an earlier build submitted \(not submitted "
                          r"again\): (.*)", text)
    assert collected and collected[1].split(", ") == [c for c in order if c in waiting], text  # plan order
    for chunk in waiting:
        assert re.search(rf"^\| {re.escape(chunk)} \| rendered: collected request \S+ of an earlier build \|",
                         text, re.MULTILINE), text
    assert f"Cached: {', '.join(c for c in order if c in rendered)}" in text  # in plan order, whichever came first
    assert re.search(r"^Seams: \d+ chained seams scored; weakest first", text, re.MULTILINE), text
    out = second.outputs
    assert out["video"].endswith("out/video.mp4") and int(out["rendered"]) == chunks - len(rendered)
    assert int(out["cached"]) == len(rendered) and out["failed"] == "0" and float(out["cost-usd"]) > 0, (out, text)
    uploaded = runner.artifacts / str(runner.run_id - 1) / "ltxflow-song.yaml"
    assert sorted(p.name for p in uploaded.iterdir()) == sorted(
        Path(out[k]).name for k in ("video", "report", "contact-sheet"))
    assert (uploaded / "video.mp4").read_bytes() == Path(out["video"]).read_bytes()
    # pip ran as the action asks, held to the constraints, with no key in its environment.
    install = [c for c in second.pip if c["args"][:1] == ["install"]]
    assert install[-1]["args"][-3:] == ["-c", str(Path(__file__).parent.parent / "constraints.txt"),
                                        str(Path(__file__).parent.parent)]
    assert all(c["fal_env"] == [] for c in second.pip)

    # A pull request edits one scene: its plan (no key) reports the cost of that scene alone,
    # against the cache the re-run saved; nothing is submitted and no cache is saved.
    project.write_text(project.read_text().replace("explodes with light", "drowns in light"))
    entries = len(list(runner.caches.iterdir()))
    plan = runner.run({"project": project.name, "backend": "fal", "command": "plan"})
    assert plan.step("plan").outcome == "success", plan.step("plan").stdout
    drops = sum(1 for c in json.loads(runner_plan(runner, project))["chunks"] if c["scene"] == "drop")
    assert plan.outputs["to-render"] == str(drops) and float(plan.outputs["cost-now-usd"]) > 0
    text = plain_markdown(plan.summary)
    assert "### ltxflow plan: song" in text
    assert re.search(rf"- to render now: {drops} of {chunks} chunks, \$[\d.]+", text), text
    assert Path(plan.outputs["plan"]).read_text().strip() == plan.summary.strip()
    assert len(list(runner.caches.iterdir())) == entries and len(queued(fake)) == submits_before + (
        chunks - len(rendered) - len(waiting))
    _no_key_anywhere(runner.root, project.parent, texts=tuple(s.stdout for r in (first, second, plan)
                                                              for s in r.steps))


def test_an_intent_left_by_a_killed_run_is_reported_as_a_possible_duplicate_charge(repo, fake):
    runner, project = repo
    render = {"project": project.name, "backend": "fal", "upload": "video"}
    first = runner.run(render, env={"FAL_KEY": KEY})
    assert first.step("build").outcome == "success", first.step("build").stdout
    # The runner was killed (SIGKILL: no chance to tidy) after sending intro's submit and before
    # fal's answer was journalled; its cache was saved from what the run had left.
    project.write_text(project.read_text().replace("a neon sign flickers", "a neon sign dies"))
    plan = json.loads(runner_plan(runner, project))
    intro = next(c for c in plan["chunks"] if c["id"] == "intro.0")
    killed = runner.caches / f"{first.step('resolve').outputs['key-prefix']}{runner.run_id}-1"
    shutil.copytree(_newest_cache(runner), killed)
    (killed / "journal").mkdir(exist_ok=True)
    (killed / "journal" / f"{intro['key']}.json").write_text(json.dumps({
        "state": "intent", "key": intro["key"], "chunk": "intro.0", "project": str(project.resolve()),
        "host": fake.url, "endpoint": intro["endpoint"], "written": "2026-01-01T00:00:00+00:00",
        "scene": "intro", "start_image": None, "cost_usd": intro["hosted_cost_usd"]}))

    runner.run_id += 1  # the killed run's
    second = runner.run(render, env={"FAL_KEY": KEY})
    build = second.step("build")
    assert build.outcome == "success", build.stdout
    assert second.step("restore").outputs["cache-matched-key"] == killed.name
    price = f"${intro['hosted_cost_usd']:,.4f}"
    warnings = [m for _, _, m in commands(build.stdout, "warning")]
    assert any(f"intro.0: possible duplicate charge of about {price}" in m for m in warnings), build.stdout
    text = plain_markdown(second.summary)
    assert f"| intro.0 | rendered: possible duplicate charge of about {price} |" in text, text
    assert re.search(r"\*\*Possible duplicate charges\*\* \(\$[\d.,]+ at most\): intro\.0 \(\$[\d.,]+\)", text), text
    assert sorted(p.name for p in (runner.artifacts / str(runner.run_id - 1)).rglob("*.mp4")) == ["video.mp4"]


def runner_plan(runner: Runner, project: Path) -> str:
    """The plan as JSON, straight from this checkout's ltxflow (what the test needs to know)."""
    return subprocess.run([str(LTXFLOW), "plan", str(project), "--json"], cwd=project.parent, check=True,
                          capture_output=True, text=True, env={**os.environ, **runner.env}).stdout
