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
