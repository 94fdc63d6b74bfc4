"""One chunk's work (execute/chunkwork.py) and the status check (execute/status.py), in process:
a real TestBackend, a real cache, real clips; no build, no subprocess."""

from __future__ import annotations

from ltxflow.backends.testing import TestBackend
from ltxflow.execute.cache import Cache
from ltxflow.execute.chunkwork import ChunkWork, clip_format, variant_namer
from ltxflow.execute.executor import Outcome
from ltxflow.execute.status import chunk_statuses
from ltxflow.media.frames import video_info
from ltxflow.plan.planner import build_plan
from ltxflow.project.resolve import open_project
from test_build import make_project


def setup(tmp_path, backend: TestBackend):
    rp = open_project(make_project(tmp_path), backend="test", music_store=tmp_path / "music")
    plan = build_plan(rp)
    cache = Cache(tmp_path / "cache")
    fmt = clip_format(rp)
    return plan, cache, fmt, ChunkWork(plan, cache, backend, fmt)


def run_all(plan, work) -> dict[str, Outcome]:
    done: dict[str, Outcome] = {}
    for c in plan.chunks:  # plan order: a chunk's source comes before it
        done[c.id] = Outcome(c.id, "ok", work(c.id, done))
    return done


def test_a_chunk_renders_once_then_is_reused_and_its_clip_made_again_without_rendering(tmp_path):
    backend = TestBackend()
    plan, cache, fmt, work = setup(tmp_path, backend)
    first = run_all(plan, work)
    assert backend.calls == [c.id for c in plan.chunks]
    for c in plan.chunks:
        res = first[c.id].value
        assert res.state == "rendered" and video_info(res.clip).frames == c.kept_frames
        assert res.entry.record.chunk == c.id and res.entry.record.variants[res.clip.name[len("clip."):]]
        if c.chains_from:  # rendered from the chain frame its source handed on
            assert res.entry.record.chain_digest == first[c.chains_from].value.chain_digest
    again = run_all(plan, work)
    assert backend.calls == [c.id for c in plan.chunks] and {r.value.state for r in again.values()} == {"cached"}
    # A lost clip variant is made again from the raw clip, byte for byte, and nothing renders.
    victim = plan.chunks[1]
    clip = again[victim.id].value.clip
    original = clip.read_bytes()
    clip.unlink()
    third = run_all(plan, work)
    assert backend.calls == [c.id for c in plan.chunks] and third[victim.id].value.state == "cached"
    assert clip.read_bytes() == original


def test_status_says_what_a_build_would_do_and_why(tmp_path):
    backend = TestBackend()
    plan, cache, fmt, work = setup(tmp_path, backend)
    namer = variant_namer(plan, fmt)
    before = chunk_statuses(plan, cache, {}, namer)
    assert {s.status for s in before.values()} == {"render"} and before[plan.chunks[0].id].reasons == ("new",)
    done = run_all(plan, work)
    assert {s.status for s in chunk_statuses(plan, cache, {}, namer).values()} == {"cached"}
    # A truncated clip with its raw clip intact: cached, made again; both truncated: render, and
    # the chunks chained from it render too (its chain frame would be new).
    c = next(c for c in plan.chunks if any(d.chains_from == c.id for d in plan.chunks))
    res = done[c.id].value
    res.clip.write_bytes(res.clip.read_bytes()[:400])
    st = chunk_statuses(plan, cache, {}, namer)
    assert st[c.id].status == "cached" and "normalized again" in st[c.id].reasons[0]
    res.entry.raw.write_bytes(res.entry.raw.read_bytes()[:400])
    st = chunk_statuses(plan, cache, {}, namer)
    assert st[c.id].status == "render" and "raw clip" in st[c.id].reasons[0]
    after = [d.id for d in plan.chunks if d.chains_from == c.id]
    assert after and all(st[d].status == "render" and c.id in st[d].reasons[0] for d in after)
