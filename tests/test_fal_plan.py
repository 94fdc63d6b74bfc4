"""`ltxflow plan` counts requests in flight on fal as a build does: only those journalled against
the queue it talks to now."""

from __future__ import annotations

import json

from test_build import ltx
from test_fal import _journalled, _start, _wait, fake, fal_env, fal_project, plan_of  # noqa: F401 (fake: a fixture)


def test_plan_counts_in_flight_requests_only_on_the_queue_it_talks_to(tmp_path, fake):
    project = fal_project(tmp_path)
    fake.paused = True
    proc = _start(project, fake)
    _wait(lambda: _journalled(project) == 2, what="two journalled submits")
    proc.terminate()
    proc.communicate(timeout=60)
    assert {c["status"] for c in plan_of(project, fake)["chunks"]} == {"submitted"}
    # Against another queue (another LTXFLOW_FAL_QUEUE_URL) those requests are not followed: a
    # build would submit the chunks again, so plan says render and counts their cost.
    elsewhere = {**fal_env(fake), "LTXFLOW_FAL_QUEUE_URL": "http://127.0.0.1:9"}
    plan = json.loads(ltx("plan", str(project), "--json", cwd=tmp_path, env=elsewhere, check=True).stdout)
    assert {c["status"] for c in plan["chunks"]} == {"render"}
    assert plan["totals"]["cost_now_usd"] == plan["totals"]["cost_usd"] > 0


def test_a_damaged_cached_clip_is_counted_in_the_cost_before_it_is_paid_for_again(tmp_path, fake):
    """A chunk whose clip and raw clip were both cut short (a disk that filled up, a cache copied
    in part) has nothing to be made from: plan says render and counts its cost, the max_cost guard
    sees it, and the build renders that chunk alone. A damaged clip with its raw clip intact is
    made again from it for free. Sizes are compared without hashing; see Cache.file_problem."""
    from test_fal import build

    project = fal_project(tmp_path)
    r, _ = build(project, fake)
    assert r.returncode == 0, r.stderr
    plan = plan_of(project, fake)
    assert {c["status"] for c in plan["chunks"]} == {"cached"} and plan["totals"]["cost_now_usd"] == 0
    entries = {json.loads(f.read_text())["chunk"]: f.parent
               for f in (tmp_path / "cache" / "chunks").glob("*/*/record.json")}
    damaged, normalized = sorted(entries)[:2]
    for name in (damaged, normalized):
        clip = next(entries[name].glob("clip.*"))
        clip.write_bytes(clip.read_bytes()[:1000])
    raw = next(entries[damaged].glob("raw.*"))
    raw.write_bytes(raw.read_bytes()[:1000])

    plan = plan_of(project, fake)
    status = {c["id"]: c for c in plan["chunks"]}
    assert status[damaged]["status"] == "render" and "raw clip" in status[damaged]["reasons"][0]
    assert status[normalized]["status"] == "cached"
    assert plan["totals"]["cost_now_usd"] == status[damaged]["cost_usd"] > 0
    below = f"{status[damaged]['cost_usd'] / 2:.4f}"
    r = ltx("build", str(project), "--max-cost", below, cwd=tmp_path, env=fal_env(fake))
    assert r.returncode == 2 and "nothing was submitted" in r.stderr
    submits = len(fake.state()["submits"])
    r, evs = build(project, fake)
    assert r.returncode == 0, (r.stderr, [e for e in evs if e.get("chunk") == damaged])
    assert [e["chunk"] for e in evs if e["event"] == "chunk_submitted"] == [damaged]
    assert len(fake.state()["submits"]) == submits + 1
