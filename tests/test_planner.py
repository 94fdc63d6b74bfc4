"""The planner: exact totals, chaining, the DAG, audio spans, seeds and costs."""

from __future__ import annotations

from fractions import Fraction

import networkx as nx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ltxflow.endpoints import catalog
from ltxflow.plan.chunks import valid_count
from ltxflow.plan.planner import STITCH
from ltxflow.timeline import frame_to_sample, round_half_up, seconds_to_frame

from conftest import DEMO, plan_of

FPS = ["24", "25", "30", "60", "24000/1001"]


def project_yaml(fps: str, bounds: list[Fraction], keyframed: list[bool], driven: list[bool],
                 max_frames: int = 481) -> str:
    lines = ["version: 1", "audio: media/song.wav", f'fps: "{fps}"', "resolution: 256x128",
             f"chunking: {{max_frames: {max_frames}}}", "scenes:"]
    for i, (kf, drv) in enumerate(zip(keyframed, driven)):
        lines += [f"  - id: s{i}", f"    prompt: scene {i}"]
        if i < len(bounds):
            lines.append(f"    end: {float(bounds[i])!r}")
        if kf or (i == 0 and not drv):
            lines.append("    image: keyframes/a.png")
        if not drv:
            lines.append("    audio_driven: false")
    return "\n".join(lines) + "\n"


@st.composite
def layouts(draw):
    fps = draw(st.sampled_from(FPS))
    n = draw(st.integers(1, 7))
    # Boundaries in milliseconds, at least one frame apart on any grid.
    cuts = sorted(draw(st.sets(st.integers(1, 239_900), min_size=n - 1, max_size=n - 1)))
    grid = Fraction(fps)
    frames = [seconds_to_frame(Fraction(c, 1000), grid) for c in cuts]
    assume(len(set(frames)) == len(frames) and 0 not in frames)  # cuts must not collide on the grid
    keyframed = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    driven = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    max_frames = draw(st.sampled_from([481, 481, 241, 121, 9]))
    return fps, [Fraction(c, 1000) for c in cuts], keyframed, driven, max_frames


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts())
def test_random_layouts_keep_exact_totals(layout, shared_project):
    fps, bounds, keyframed, driven, max_frames = layout
    path = shared_project.write(project_yaml(fps, bounds, keyframed, driven, max_frames), "random.yaml")
    plan = plan_of(path)
    rp = plan.project
    assert rp.fps == Fraction(fps)
    total = round_half_up(Fraction(240) * rp.fps)  # the song is exactly 240 s
    assert rp.total_frames == total == plan.total_frames == sum(c.kept_frames for c in plan.chunks)
    # Chunks tile the timeline and scene boundaries land on the nearest frame.
    assert plan.chunks[0].start_frame == 0 and plan.chunks[-1].end_frame == total
    for a, b in zip(plan.chunks, plan.chunks[1:]):
        assert a.end_frame == b.start_frame
    starts = {c.scene: c.start_frame for c in reversed(plan.chunks)}
    for i, t in enumerate(bounds):
        assert starts[f"s{i + 1}"] == seconds_to_frame(t, rp.fps)
    for c in plan.chunks:
        assert valid_count(c.generated_frames) and c.generated_frames <= max_frames
        assert c.head + c.kept_frames + c.tail == c.generated_frames
        assert c.head == (1 if c.chains_from else 0)
        if c.audio:
            assert c.audio.start_sample == frame_to_sample(c.start_frame - c.head, rp.fps, 16000)


def test_demo_dag(tmp_path):
    plan = plan_of(DEMO)
    g = plan.graph
    assert nx.is_directed_acyclic_graph(g)
    chunk_edges = {(a, b) for a, b in g.edges if b != STITCH}
    assert chunk_edges == {("intro.0", "verse.0"), ("verse.0", "verse.1"), ("verse.1", "drop.0")}
    assert set(g.predecessors(STITCH)) == {c.id for c in plan.chunks}
    # The executor's parents are the same edges.
    assert {(p, c) for c, p in plan.parents.items() if p} == chunk_edges and set(plan.parents) == set(g) - {STITCH}
    # outro starts from its own keyframe: it shares no edge with the chain and can render in parallel.
    assert g.in_degree("outro.0") == 0 and g.in_degree("intro.0") == 0
    assert plan.longest_chain == 4
    by_id = {c.id: c for c in plan.chunks}
    assert by_id["verse.0"].start_image.kind == "chain"
    assert by_id["verse.0"].start_image.frame == by_id["intro.0"].generated_frames - 1 - by_id["intro.0"].tail
    assert by_id["intro.0"].start_image.kind == "keyframe"
    # The end image goes to the scene's last chunk only, with its strength.
    assert by_id["drop.0"].end_image is not None
    assert [c.id for c in plan.chunks if c.end_image] == ["drop.0"]


def test_end_image_only_on_last_chunk_and_surplus_on_first(project_dir):
    path = project_dir.write("""
        version: 1
        audio: media/song.wav
        resolution: 256x128
        model: ltx-2.3-22b-distilled
        scenes:
          - id: long
            prompt: p
            image: keyframes/a.png
            end_image: keyframes/b.png
            end_image_strength: 0.9
    """)
    plan = plan_of(path)
    assert len(plan.chunks) == 2  # 30 s at 24 fps = 720 frames
    first, last = plan.chunks
    assert first.end_image is None and last.end_image is not None
    assert "end_image_strength" not in first.args and last.args["end_image_strength"] == 0.9
    assert last.tail == 0  # the end image is the last generated frame, so it is kept
    assert first.tail == sum(c.generated_frames for c in plan.chunks) - 720 - 1


def test_first_scene_without_keyframe_is_text_and_audio(project_dir):
    path = project_dir.write("""
        version: 1
        audio: media/song.wav
        scenes:
          - id: a
            prompt: p
            end: 10
          - id: b
            prompt: q
    """)
    plan = plan_of(path)
    assert plan.chunks[0].start_image.kind == "none" and plan.chunks[0].chains_from is None
    assert plan.chunks[1].start_image.kind == "chain" and plan.chunks[1].chains_from == "a.0"


def test_request_args_use_the_endpoints_own_names():
    plan = plan_of(DEMO)
    by_id = {c.id: c for c in plan.chunks}
    quality = by_id["intro.0"].args
    assert quality["resolution"] == {"width": 1280, "height": 704}
    assert quality["frames_per_second"] == 24.0 and quality["num_frames"] == 201  # 192 kept + 8 after the chain frame
    assert quality["num_inference_steps"] == 15 and quality["match_audio_length"] is False
    distilled = by_id["drop.0"].args
    assert distilled["video_size"] == {"width": 1280, "height": 704} and distilled["fps"] == 24.0
    assert distilled["camera_lora"] == "dolly_in" and distilled["camera_lora_scale"] == 0.8
    assert "num_inference_steps" not in distilled  # `steps: null` dropped the inherited default
    i2v = by_id["outro.0"].args
    assert "match_audio_length" not in i2v and by_id["outro.0"].audio is None
    for c in plan.chunks:
        assert c.args["seed"] == c.seed


def test_lora_scenes_use_the_lora_endpoint_and_plain_scenes_its_sibling(project_dir):
    path = project_dir.write("""
        version: 1
        audio: media/song.wav
        endpoint: fal-ai/ltx-2.3-quality/audio-to-video/lora
        scenes:
          - id: a
            prompt: p
            end: 10
            loras: [{path: loras/style.safetensors, scale: 0.5}]
          - id: b
            prompt: q
    """)
    plan = plan_of(path)
    assert plan.chunks[0].endpoint.id == "fal-ai/ltx-2.3-quality/audio-to-video/lora"
    assert plan.chunks[0].loras[0].scale == 0.5
    assert plan.chunks[1].endpoint.id == "fal-ai/ltx-2.3-quality/audio-to-video"


@pytest.mark.parametrize("endpoint, expected", [
    ("fal-ai/ltx-2.3-quality/audio-to-video/lora", 0.3032),
    ("fal-ai/ltx-2.3-22b/distilled/audio-to-video", 0.1344),
    ("fal-ai/ltx-2.3-quality/image-to-video", 0.270),
    ("fal-ai/ltx-2.3-22b/image-to-video/lora", 0.2013),
])
def test_cost_matches_the_seed_pages_within_a_cent(endpoint, expected):
    assert abs(catalog().get(endpoint).cost(1280, 720, 121) - expected) < 0.01


def test_costs_by_backend():
    preview = plan_of(DEMO)
    fal = plan_of(DEMO, backend="fal")
    assert preview.cost_usd == 0 and all(c.cost_usd == 0 for c in preview.chunks)
    assert fal.cost_usd == pytest.approx(sum(c.endpoint.cost(1280, 704, c.generated_frames) for c in fal.chunks))
    assert fal.cost_usd == preview.hosted_cost_usd > 1


def test_seeds_derive_from_names_not_positions(project_dir):
    two = project_dir.write("""
        version: 1
        audio: media/song.wav
        seed: 7
        scenes:
          - {id: a, prompt: p, end: 10}
          - {id: b, prompt: q}
    """, "two.yaml")
    three = project_dir.write("""
        version: 1
        audio: media/song.wav
        seed: 7
        scenes:
          - {id: new, prompt: n, end: 5}
          - {id: a, prompt: p, end: 10}
          - {id: b, prompt: q, seed: 100}
    """, "three.yaml")
    p2, p3 = plan_of(two), plan_of(three)
    s2 = {c.id: c.seed for c in p2.chunks}
    s3 = {c.id: c.seed for c in p3.chunks}
    assert s3["a.0"] == s2["a.0"]  # inserting a scene before it does not reseed it
    assert s3["b.0"] == 100  # an explicit scene seed is used as is
    assert len({c.seed for c in p2.chunks}) == len(p2.chunks)


def test_one_chunk_scene_ends_on_its_end_image_and_the_next_chains_from_it(project_dir):
    path = project_dir.write("""
        version: 1
        audio: media/song.wav
        model: ltx-2.3-22b-distilled
        defaults:
          end_image_strength: 0.5    # applies only where there is an end image
          camera_scale: 0.5          # applies only where there is a camera move
        scenes:
          - {id: a, prompt: p, image: keyframes/a.png, end: 4.1666667, end_image: keyframes/b.png}
          - {id: b, prompt: q, end: 20, camera: jib_up}
          - {id: c, prompt: r}
    """)
    plan = plan_of(path)
    a, b0 = plan.chunks[0], plan.chunks[1]
    assert (a.generated_frames, a.head, a.kept_frames, a.tail) == (105, 5, 100, 0)
    assert b0.start_image.frame == a.generated_frames - 1  # the end image frame itself
    assert a.args["end_image_strength"] == 0.5 and "camera_lora_scale" not in a.args
    assert all("end_image_strength" not in c.args for c in plan.chunks[1:])
    assert all(c.args.get("camera_lora_scale") == 0.5 for c in plan.chunks if c.scene == "b")


def test_which_frames_are_kept_is_not_in_the_key(project_dir):
    # Growing a scene by one frame keeps its generation request (and so its paid render); only
    # the chunk chaining from it (whose chain frame moved) gets a new key.
    def plan_with(end: str):
        return plan_of(project_dir.write(f"""
            version: 1
            audio: media/song.wav
            scenes:
              - {{id: a, prompt: p, image: keyframes/a.png, end: {end}}}
              - {{id: b, prompt: q}}
        """, f"p{end}.yaml"))

    p100, p101 = plan_with("4.1666667"), plan_with("4.2083333")
    assert p100.chunks[0].kept_frames == 100 and p101.chunks[0].kept_frames == 101
    assert p100.chunks[0].key == p101.chunks[0].key
    assert p100.chunks[1].key != p101.chunks[1].key


def test_image_strength_without_a_start_image_is_not_sent(project_dir):
    path = project_dir.write("""
        version: 1
        audio: media/song.wav
        defaults: {image_strength: 0.6}
        scenes:
          - {id: a, prompt: p, end: 10}
          - {id: b, prompt: q}
    """)
    plan = plan_of(path)
    assert "image_strength" not in plan.chunks[0].args  # text and audio only
    assert plan.chunks[1].args["image_strength"] == 0.6  # chained: the chain image is its start
