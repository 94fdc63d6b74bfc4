"""Content keys: the same in any process, and changed by exactly what shapes a chunk."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from ltxflow.plan.keys import canonical_json, content_key

from conftest import DEMO, REPO, plan_of, write_png, write_lora


def keys(path: Path, **kw) -> dict[str, str]:
    return {c.id: c.key for c in plan_of(path, **kw).chunks}


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(DEMO.parent, tmp_path / "demo", ignore=shutil.ignore_patterns("out", ".ltxflow"))
    return tmp_path / "demo" / "demo.yaml"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before if before[k] != after.get(k)}


@pytest.mark.slow  # two fresh processes analyse the song
def test_keys_are_stable_across_processes():
    code = ("import json, sys; from ltxflow.plan.planner import build_plan; "
            "from ltxflow.project.load import load_project; from ltxflow.project.resolve import resolve_project; "
            "p = build_plan(resolve_project(load_project(sys.argv[1]))); "
            "print(json.dumps({c.id: c.key for c in p.chunks}))")
    outs = [subprocess.run([sys.executable, "-c", code, str(DEMO)], capture_output=True, text=True, check=True,
                           cwd=REPO, env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout
            for seed in (1, 2)]
    assert json.loads(outs[0]) == json.loads(outs[1]) == keys(DEMO)


def test_canonical_json_is_one_spelling():
    assert canonical_json({"b": 1, "a": [1.5, "x"]}) == canonical_json({"a": [1.5, "x"], "b": 1})
    assert content_key({"a": 1}) != content_key({"a": 1.0 + 1e-9})
    with pytest.raises(ValueError):
        canonical_json({"a": float("nan")})


def test_prompt_change_rerenders_the_scene_and_what_chains_from_it(demo):
    before = keys(demo)
    edit(demo, "A singer walks", "A dancer walks")
    assert changed(before, keys(demo)) == {"verse.0", "verse.1", "drop.0"}


def test_keyframe_content_change(demo):
    before = keys(demo)
    write_png(demo.parent / "keyframes" / "outro.png", (640, 352), (1, 2, 3))
    assert changed(before, keys(demo)) == {"outro.0"}
    # The image the drop ends on shapes its last chunk (nothing chains from it: the outro has a keyframe).
    write_png(demo.parent / "keyframes" / "drop-end.png", (640, 352), (1, 2, 3))
    assert changed(before, keys(demo)) == {"outro.0", "drop.0"}
    write_png(demo.parent / "keyframes" / "intro.png", (640, 352), (1, 2, 3))
    assert changed(before, keys(demo)) == {"outro.0", "drop.0", "intro.0", "verse.0", "verse.1"}


def test_an_end_image_keys_only_its_scenes_last_chunk(project_dir):
    """end_image is in the key of the chunk that ends on it, and of no earlier chunk of its scene."""
    text = """
        version: 1
        audio: media/song.wav
        chunking: {max_frames: 121, boundaries: even}
        scenes:
          - {id: long, prompt: p, image: keyframes/a.png, model: ltx-2.3-22b-distilled, end_image: keyframes/b.png}
    """
    path = project_dir.write(text)
    before = keys(path)
    assert len(before) > 2
    project_dir.write(text.replace("end_image: keyframes/b.png", "end_image: keyframes/a.png"))
    last = max(before, key=lambda c: int(c.split(".")[1]))
    assert changed(before, keys(path)) == {last}


def test_audio_change_inside_one_span(demo):
    before = keys(demo)
    song = demo.parent / "media" / "song.wav"
    with wave.open(str(song)) as w:
        params, data = w.getparams(), bytearray(w.readframes(w.getnframes()))
    at = 25 * 16000 * 2  # 25 s: only verse.1's span (18.96-30.0 s) covers it
    data[at:at + 200] = b"\x10" * 200
    with wave.open(str(song), "wb") as w:
        w.setparams(params)
        w.writeframes(bytes(data))
    # verse.1 hears the change; drop.0 chains from verse.1; the rest are untouched.
    assert changed(before, keys(demo)) == {"verse.1", "drop.0"}


@pytest.mark.parametrize("old, new, expected", [
    ("seed: 7", "seed: 8", {"intro.0", "verse.0", "verse.1", "drop.0", "outro.0"}),
    ("fps: 24", "fps: 25", {"intro.0", "verse.0", "verse.1", "drop.0", "outro.0"}),
    ("resolution: 1280x704", "resolution: 1024x576", {"intro.0", "verse.0", "verse.1", "drop.0", "outro.0"}),
    ('negative_prompt: "blurry', 'negative_prompt: "grainy', {"intro.0", "verse.0", "verse.1", "drop.0", "outro.0"}),
    ("camera_scale: 0.8", "camera_scale: 0.7", {"drop.0"}),
    ("image_strength: 0.8", "image_strength: 0.9", {"intro.0", "verse.0", "verse.1", "drop.0"}),
    ("    image: keyframes/outro.png", "    image: keyframes/outro.png\n    params: {video_quality: maximum}",
     {"outro.0"}),
    ("    image: keyframes/outro.png", "    image: keyframes/outro.png\n    seed: 5", {"outro.0"}),
    ("name: neon-nights", "name: other-name", set()),
    ("output: out/neon-nights.mp4", "output: out/x.webm", set()),
])
def test_what_changes_which_keys(demo, old, new, expected):
    before = keys(demo)
    edit(demo, old, new)
    assert changed(before, keys(demo)) == expected


def test_backend_and_lora_changes(demo):
    before = keys(demo)
    assert changed(before, keys(demo, backend="fal")) == set(before)
    write_lora(demo.parent / "loras" / "style.safetensors")
    edit(demo, "    image: keyframes/outro.png",
         "    image: keyframes/outro.png\n    loras: [{path: loras/style.safetensors, scale: 1.0}]")
    with_lora = keys(demo)
    assert changed(before, with_lora) == {"outro.0"}
    edit(demo, "scale: 1.0}]", "scale: 0.5}]")
    half = keys(demo)
    assert changed(with_lora, half) == {"outro.0"}
    write_lora(demo.parent / "loras" / "style.safetensors", tensors=3)  # same name, new content
    assert changed(half, keys(demo)) == {"outro.0"}


def test_the_preview_key_holds_the_chunks_place_and_a_models_does_not(project_dir):
    # Two scenes with the same request: the animatic burns in different ids and timecodes, so on
    # the preview backend they are different renders; on fal they would be one paid request.
    path = project_dir.write("""
        version: 1
        audio: media/song.wav
        scenes:
          - {id: chorus1, prompt: same, image: keyframes/a.png, audio_driven: false, seed: 5, end: 15}
          - {id: chorus2, prompt: same, image: keyframes/a.png, audio_driven: false, seed: 5}
    """)
    preview = plan_of(path)
    assert preview.chunks[0].key != preview.chunks[1].key
    fal = {c.id: c.key for c in plan_of(path, backend="fal").chunks}
    assert fal["chorus1.0"] == fal["chorus2.0"]
