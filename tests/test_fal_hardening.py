"""What a CI robot building on fal needs: a submit killed before its answer was journalled is
reported as a possible duplicate charge (with its price) instead of forgotten, chunks that share a
key are one paid request (and counted once by `plan`), and each submit carries the project's
platform headers (no fallbacks by default; fal asked not to keep payloads on request)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from test_build import ltx, media
from test_fal import KEY, _journalled, _start, _wait, build, fal_env, fal_project, plan_of, queued
from test_falapi import _api, _request

from ltxflow.backends.fal import FalBackend, PollPolicy
from ltxflow.backends.falapi import submit_headers
from ltxflow.backends.falstore import UploadStore
from ltxflow.backends.journal import Journal
from ltxflow.fakefal import FakeFal
from ltxflow.fakefal.faults import Fault

I2V = "fal-ai/ltx-2.3-quality/image-to-video"

# The same chorus twice: same image, prompt, seed, length and endpoint (no audio span), so the
# same request: one key.
CHORUS_TWICE = f"""
  - id: chorus
    end: 1
    prompt: "chorus: the crowd jumps"
    image: keyframes/a.png
    seed: 7
    endpoint: {I2V}
  - id: reprise
    prompt: "chorus: the crowd jumps"
    image: keyframes/a.png
    seed: 7
    endpoint: {I2V}
"""


@pytest.fixture
def fake():
    with FakeFal() as server:
        yield server


def _records(project: Path) -> dict[str, dict]:
    """The cache's records by chunk id."""
    records = (json.loads(p.read_text()) for p in (project.parent / "cache" / "chunks").glob("*/*/record.json"))
    return {r["chunk"]: r for r in records}


def _journal_file(project: Path, key: str) -> Path:
    return project.parent / "cache" / "journal" / f"{key}.json"


def _intent(project: Path, fake: FakeFal, chunk: dict, **changes) -> dict:
    """An intent as a build killed during its submit leaves it."""
    return {"state": "intent", "key": chunk["key"], "chunk": chunk["id"], "project": str(project.resolve()),
            "host": fake.url, "endpoint": chunk["endpoint"], "written": "2026-01-01T00:00:00+00:00",
            "scene": chunk["scene"], "start_image": None, "cost_usd": chunk["hosted_cost_usd"], **changes}


def _warnings(evs: list[dict]) -> list[str]:
    return [e["message"] for e in evs if e["event"] == "warning"]


# -- the intent before each submit ---------------------------------------------------------------


def test_a_planted_intent_is_submitted_again_and_reported_as_a_possible_duplicate_charge(tmp_path, fake):
    project = fal_project(tmp_path)
    chunk = next(c for c in plan_of(project, fake)["chunks"] if c["id"] == "intro.0")
    path = _journal_file(project, chunk["key"])
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_intent(project, fake, chunk)))

    # Nothing to cancel (no request id), so cancel leaves it, saying why.
    r = ltx("cancel", str(project), cwd=tmp_path, env=fal_env(fake), check=True)
    assert "no request id" in r.stderr and "dashboard" in r.stderr and path.exists()
    # plan: maybe paid for, but it is submitted again, so it costs now.
    plan = plan_of(project, fake)
    assert {c["status"] for c in plan["chunks"]} == {"render"}
    assert plan["totals"]["cost_now_usd"] == pytest.approx(sum(c["cost_usd"] for c in plan["chunks"]))

    r, evs = build(project, fake)
    assert r.returncode == 0, r.stderr
    price = chunk["hosted_cost_usd"]
    warned = [m for m in _warnings(evs) if "possible duplicate charge" in m]
    assert len(warned) == 1 and "intro.0" in warned[0] and f"${price:.4f}" in warned[0], warned
    assert sorted(e["chunk"] for e in evs if e["event"] == "chunk_submitted") == ["drop.0", "intro.0"]
    assert sorted(fake.submit_counts().values()) == [1, 1]
    details = _records(project)["intro.0"]["details"]
    assert details["possible_duplicate_charge"] is True and details["possible_duplicate_charge_usd"] == price
    assert "possible_duplicate_charge" not in _records(project)["drop.0"]["details"]
    assert _journalled(project) == 0 and not path.exists()
    assert media(tmp_path / "out" / "video.mp4")[0] == 48


def test_a_build_killed_between_its_submit_and_the_answer_is_reported_next_time(tmp_path):
    """fal queues the request and answers late; the build is killed meanwhile (SIGKILL): only the
    intent says a request may exist. The next build submits again and reports it."""
    with FakeFal(faults=["stall:120@intro"]) as fake:
        project = fal_project(tmp_path)
        key = next(c["key"] for c in plan_of(project, fake)["chunks"] if c["id"] == "intro.0")
        proc = _start(project, fake, "--jobs", "2")
        try:
            _wait(lambda: any(s["body"]["prompt"].startswith("intro") for s in queued(fake)),
                  what="the intro request queued, its answer held back")
            assert json.loads(_journal_file(project, key).read_text())["state"] == "intent"
        finally:
            proc.kill()
            proc.communicate()
        assert json.loads(_journal_file(project, key).read_text())["state"] == "intent"  # what the kill left
        fake.unstall.set()

        r, evs = build(project, fake)
        assert r.returncode == 0, r.stderr
        assert any("intro.0: possible duplicate charge" in m for m in _warnings(evs)), _warnings(evs)
        intro = [k for k in fake.submit_counts() if "intro" in k]
        assert [fake.submit_counts()[k] for k in intro] == [2]  # the charge the warning is about
        assert _records(project)["intro.0"]["details"]["possible_duplicate_charge"] is True
        assert _journalled(project) == 0 and not _journal_file(project, key).exists()


def test_a_rejected_submit_leaves_no_intent(tmp_path, fake):
    """fal answered (422): nothing was queued, so nothing is left to report later."""
    api = _api(fake)
    journal = Journal(tmp_path / "cache", tmp_path / "p.yaml")
    backend = FalBackend(api, journal, UploadStore(tmp_path / "cache", fake.url, api.upload),
                         poll=PollPolicy(0.01, 0.05))
    fake.faults.faults.append(Fault.parse("422:num_frames"))
    (tmp_path / "w").mkdir()
    with pytest.raises(Exception, match="rejected the submit"):
        backend.render(_request(tmp_path, "c" * 64), tmp_path / "w")
    backend.close()
    assert not (journal.dir / f"{'c' * 64}.json").exists()


@pytest.mark.parametrize("change, problem", [
    ({"request_id": "x"}, "not a journal intent"),
    ({"state": "submitted"}, "not a journal intent"),
    ({"key": "0" * 64}, "its key field is not its file's name"),
    ({"host": "https://elsewhere.example"}, "another fal queue"),
])
def test_an_intent_is_read_as_strictly_as_an_entry(tmp_path, change, problem):
    journal = Journal(tmp_path / "cache")
    key, queue = "e" * 64, "https://queue.fal.run"
    journal.intent(key, "c.0", queue, I2V, scene="c", start_image=None, cost_usd=0.27)
    found = journal.read(key, queue)
    assert found.intent is not None and found.entry is None and found.problem is None
    assert found.intent.cost_usd == 0.27 and journal.keys(queue) == set()  # not followed: not "submitted"
    path = journal.dir / f"{key}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    found = journal.read(key, queue)
    assert found.intent is None and found.entry is None and problem in (found.problem or "")


# -- one request per key ---------------------------------------------------------------------------


def test_a_repeated_chorus_is_one_request_and_plan_counts_it_once(tmp_path, fake):
    project = fal_project(tmp_path, CHORUS_TWICE)
    plan = plan_of(project, fake)
    chunks = plan["chunks"]
    assert len(chunks) == 2 and chunks[0]["key"] == chunks[1]["key"]  # the fixture's premise
    price = chunks[0]["cost_usd"]
    assert price > 0
    assert plan["totals"]["cost_now_usd"] == pytest.approx(price)
    assert plan["totals"]["cost_usd"] == pytest.approx(price)
    assert plan["totals"]["hosted_cost_usd"] == pytest.approx(chunks[0]["hosted_cost_usd"])
    table = ltx("plan", str(project), cwd=tmp_path, env=fal_env(fake), check=True).stdout
    assert "1 chunk shares another's render" in table

    # --max-cost counts the key once too: a limit between one price and two lets the build start
    r, evs = build(project, fake, "--jobs", "2", "--max-cost", f"{price * 1.5:.6f}")
    assert r.returncode == 0, r.stderr
    started = next(e for e in evs if e["event"] == "build_started")
    assert started["cost_now_usd"] == pytest.approx(price)
    assert len(queued(fake)) == 1 and list(fake.submit_counts().values()) == [1]
    # One of the two waits for the other's render, then takes it from the cache.
    submitted = [e for e in evs if e["event"] == "chunk_submitted"]
    done = {e["chunk"]: e for e in evs if e["event"] == "chunk_done"}
    cached = [e["chunk"] for e in evs if e["event"] == "chunk_cached"]
    assert len(submitted) == 1 and list(done) == [submitted[0]["chunk"]] and done[submitted[0]["chunk"]]["cost_usd"] \
        == pytest.approx(price)
    assert sorted([*done, *cached]) == ["chorus.0", "reprise.0"]
    end = next(e for e in evs if e["event"] == "build_done")
    assert end["cost_usd"] == pytest.approx(price)
    assert media(tmp_path / "out" / "video.mp4")[0] == 48
    assert _journalled(project) == 0 and not list((tmp_path / "cache" / "journal").glob("*.json"))


def test_a_render_waiting_on_a_failed_one_tries_itself(tmp_path, fake):
    """Two renders of one key at once: the first fails (the model's error), the second then
    submits its own request instead of sharing a failure."""
    api = _api(fake)
    journal = Journal(tmp_path / "cache", tmp_path / "p.yaml")
    backend = FalBackend(api, journal, UploadStore(tmp_path / "cache", fake.url, api.upload),
                         poll=PollPolicy(0.01, 0.05))
    fake.faults.faults.append(Fault.parse("error:boom"))
    fake.paused = True  # the first request waits in the queue until the second render waits too
    outcomes: dict[str, object] = {}
    request = _request(tmp_path, "f" * 64)  # once: two threads writing its start image raced each other's upload

    def render(name: str) -> None:
        (tmp_path / name).mkdir()
        try:
            outcomes[name] = backend.render(request, tmp_path / name)
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test compares
            outcomes[name] = exc

    threads = [threading.Thread(target=render, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    _wait(lambda: len(queued(fake)) == 1 and backend._flights["f" * 64].users == 2, what="two renders of one key")
    fake.paused = False
    for t in threads:
        t.join(60)
    backend.close()
    failed = [o for o in outcomes.values() if isinstance(o, Exception)]
    rendered = [o for o in outcomes.values() if not isinstance(o, Exception)]
    assert len(failed) == 1 and "boom" in str(failed[0]) and len(rendered) == 1
    assert len(queued(fake)) == 2 and rendered[0].details.get("shared_with") is None


# -- platform headers ------------------------------------------------------------------------------


def test_each_submit_disables_fallbacks_by_default_and_records_what_it_sent(tmp_path, fake):
    project = fal_project(tmp_path)
    keys = [c["key"] for c in plan_of(project, fake)["chunks"]]
    r, evs = build(project, fake)
    assert r.returncode == 0, r.stderr
    assert [s["headers"] for s in queued(fake)] == [{"x-fal-disable-fallbacks": "true"}] * 2
    assert all(rec["details"]["fal_headers"] == {"x-fal-disable-fallbacks": "true"}
               for rec in _records(project).values())
    assert not any(KEY in json.dumps(s) for s in fake.state()["submits"])

    # Opting back in to fallbacks and out of payload storage: other headers, the same keys (a
    # project of its own, with its own cache, so that its chunks are submitted).
    other = fal_project(tmp_path / "other", extra="fal: {fallbacks: true, store_payloads: false}")
    assert [c["key"] for c in plan_of(other, fake)["chunks"]] == keys
    r, evs = build(other, fake)
    assert r.returncode == 0, r.stderr
    assert [s["headers"] for s in queued(fake)][2:] == [{"x-fal-store-io": "0"}] * 2
    assert all(rec["details"]["fal_headers"] == {"X-Fal-Store-IO": "0"} for rec in _records(other).values())


@pytest.mark.parametrize("fallbacks, store, sent", [
    (False, True, {"x-fal-disable-fallbacks": "true"}),
    (True, True, {}),
    (False, False, {"x-fal-disable-fallbacks": "true", "X-Fal-Store-IO": "0"}),
    (True, False, {"X-Fal-Store-IO": "0"}),
])
def test_submit_headers(fallbacks, store, sent):
    assert submit_headers(fallbacks=fallbacks, store_payloads=store) == sent


def test_the_fal_section_is_checked_like_the_rest_of_the_project(tmp_path, fake):
    project = fal_project(tmp_path, extra="fal: {fallbacks: \"no\", store_io: 0}")
    r = ltx("validate", str(project), cwd=tmp_path, env=fal_env(fake))
    assert r.returncode != 0
    assert "fal.fallbacks" in r.stderr + r.stdout and "fal.store_io" in r.stderr + r.stdout
