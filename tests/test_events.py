"""The events' contract (ltxflow/events.py): every event the code emits, in builds of every kind,
has the fields its contract names, of the types it names; and a reporter shown an event that
breaks it prints the event whole instead of failing."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import ltxflow
from ltxflow.events import EVENTS, problems
from ltxflow.fakefal import FakeFal
from ltxflow.progress import RichReporter, TextReporter
from test_build import build_json, ltx, make_project
from test_fal import fal_env, fal_project


def test_every_event_the_code_emits_has_a_contract():
    source = "\n".join(p.read_text() for p in Path(ltxflow.__file__).parent.rglob("*.py"))
    emitted = set(re.findall(r"""(?:\.event|emit)\(\s*["']([a-z_]+)["']""", source))
    assert emitted and emitted == set(EVENTS), (emitted ^ set(EVENTS))


def test_builds_of_every_kind_keep_the_contract(tmp_path):
    seen: dict[str, int] = {}

    def check(evs: list[dict]) -> None:
        for e in evs:
            fields = {k: v for k, v in e.items() if k not in ("event", "t")}
            assert problems(e["event"], fields) == [], e
            seen[e["event"]] = seen.get(e["event"], 0) + 1

    # A build, one with a transient failure and a failing chunk (its chain skipped), a no-op.
    project = make_project(tmp_path / "a")
    r = ltx("build", str(project), "--backend", "test", "--log-format", "json", cwd=project.parent,
            env={"LTXFLOW_TEST_BACKEND": "fail=intro.0,transient=outro.0:1"})
    assert r.returncode == 1
    check(lines(r.stdout))
    check(build_json(project, "--backend", "test")[1])
    check(build_json(project, "--backend", "test")[1])  # nothing changed: the no-op path
    # A hosted build against the fake fal, one of its requests retried by the client.
    fal = fal_project(tmp_path / "b")
    with FakeFal(faults=["500"]) as fake:
        r = ltx("build", str(fal), "--log-format", "json", cwd=fal.parent, env=fal_env(fake))
        assert r.returncode == 0, r.stderr
        check(lines(r.stdout))
    assert {"build_started", "chunk_started", "chunk_done", "chunk_cached", "chunk_retry", "chunk_failed",
            "chunk_skipped", "stitch_done", "report_written", "build_done", "upload_done", "chunk_submitted",
            "chunk_queue", "fal_retry"} <= set(seen), sorted(seen)


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_a_reporter_shows_an_event_that_breaks_the_contract_whole():
    for reporter_class in (TextReporter, RichReporter):
        stream = io.StringIO()
        reporter = reporter_class(stream)
        for name in EVENTS:
            reporter.event(name)  # every field missing: shown, never a KeyError
        reporter.event("build_done", output=None, seconds=1.0, rendered=1, cached=0, failed=0, skipped=0,
                       cost_usd=0.0, unexpected="x")
        reporter.close()
        text = stream.getvalue()
        assert "chunk_done {}" in text and '"unexpected": "x"' in text, text
