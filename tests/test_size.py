"""Output at the size asked: chunks are generated at the nearest size the model accepts and
normalized to exactly the output's, through the real planner, the real CLI and real ffmpeg."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ltxflow.project.resolve import generation_size

from conftest import plan_of, realmedia
from test_build import LTXFLOW, ltx, make_project  # noqa: F401  (LTXFLOW: the installed CLI)


@pytest.mark.parametrize("size, multiple, want", [
    ((1920, 1080), 32, (1920, 1088)),
    ((1080, 1920), 32, (1088, 1920)),
    ((1280, 720), 32, (1312, 736)),
    ((3840, 2160), 32, (3872, 2176)),
    ((1920, 1080), 64, (1920, 1088)),
    ((1280, 720), 64, (1280, 704)),
    ((1280, 704), 32, (1280, 704)),  # already accepted: kept
    ((1280, 736), 64, (1344, 768)),
    ((64, 64), 32, (64, 64)),
])
def test_generation_size_table(size, multiple, want):
    assert generation_size(*size, multiple) == want


@pytest.mark.parametrize("w, h", [(1920, 1080), (1080, 1920), (1280, 720), (3840, 2160), (1000, 700), (854, 480),
                                  (64, 2000), (640, 360), (4096, 64)])
@pytest.mark.parametrize("multiple", [32, 64])
def test_generation_size_keeps_the_aspect(w, h, multiple):
    gw, gh = generation_size(w, h, multiple)
    assert gw % multiple == 0 and gh % multiple == 0
    # the aspect ratio within half a step of the nearest the multiple allows on the longer side
    assert abs(math.log(gw / gh) - math.log(w / h)) <= multiple / min(gw, gh)


def _project(shared_project, resolution: str, backend: str = "fal") -> object:
    return shared_project.write(f"""
        version: 1
        audio: media/song.wav
        resolution: {resolution}
        backend: {backend}
        scenes:
          - id: a
            end: 20
            prompt: p
            image: keyframes/a.png
          - id: b
            prompt: q
        """, name=f"size-{resolution}-{backend}.yaml")


def test_plan_requests_the_generation_size_and_prices_it(shared_project):
    plan = plan_of(_project(shared_project, "1920x1080"))
    rp = plan.project
    assert (rp.width, rp.height, rp.gen_width, rp.gen_height) == (1920, 1080, 1920, 1088)
    assert rp.clip_scale == (1920, 1080)
    for c in plan.chunks:
        size = c.args[c.endpoint.vocab["size"]]
        assert size == {"width": 1920, "height": 1088}
        assert c.hosted_cost_usd == c.endpoint.cost(1920, 1088, c.generated_frames)
        assert c.hosted_cost_usd != c.endpoint.cost(1920, 1080, c.generated_frames) or c.generated_frames < 10


def test_local_backend_takes_any_size(shared_project):
    """Backend local's pipelines need multiples of 64: 1280x736 is no longer refused."""
    rp = plan_of(_project(shared_project, "1280x736", "local")).project
    assert (rp.gen_width, rp.gen_height) == (1344, 768)


def test_plan_shows_both_sizes(shared_project):
    path = _project(shared_project, "1080x1920")
    r = ltx("plan", str(path), cwd=path.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("size-1080x1920-fal: 1080x1920 (generated at 1088x1920, scaled) @ 24 fps")
    data = json.loads(ltx("plan", str(path), "--json", cwd=path.parent, check=True).stdout)
    assert (data["width"], data["height"], data["generated_size"]) == (1080, 1920, {"width": 1088, "height": 1920})


def test_an_accepted_size_is_not_scaled(shared_project):
    path = _project(shared_project, "1280x704")
    assert "generated at" not in ltx("plan", str(path), cwd=path.parent, check=True).stdout.splitlines()[0]
    assert plan_of(path).project.clip_scale is None


def _frames(path):
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


@pytest.mark.parametrize("resolution", ["1920x1080", "1080x1920"])
def test_build_delivers_exactly_the_size_asked(tmp_path, resolution):
    """Through the CLI, a real 1920x1080 picture as keyframe: the output is exactly the size asked
    with every frame, and its first frame is the picture fitted (cover, centre crop) to it."""
    from PIL import Image

    picture = realmedia("softwaves-16x9.png")
    project = make_project(tmp_path, fps="8", seconds=2.0, chunking="max_frames: 33", scenes="""
  - id: only
    prompt: "a real wallpaper"
    image: keyframes/real.png
    color_match: false
""")
    (tmp_path / "keyframes" / "real.png").write_bytes(picture.read_bytes())
    project.write_text(project.read_text().replace("resolution: 128x64", f"resolution: {resolution}"))
    r = ltx("build", str(project), "--log-format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    w, h = map(int, resolution.split("x"))
    frames = _frames(tmp_path / "out" / "video.mp4")
    assert len(frames) == 16 and all(f.shape == (h, w, 3) for f in frames)
    with Image.open(picture) as img:
        s = max(w / img.width, h / img.height)
        big = img.convert("RGB").resize((max(w, round(img.width * s)), max(h, round(img.height * s))), Image.LANCZOS)
        x, y = (big.width - w) // 2, (big.height - h) // 2
        want = np.asarray(big.crop((x, y, x + w, y + h)), dtype=np.float64)
    # the preview draws its caption bar over the bottom; compare the picture above it
    top = int(h * 0.8)
    mad = np.abs(frames[0][:top].astype(np.float64) - want[:top]).mean()
    assert mad < 8, mad
