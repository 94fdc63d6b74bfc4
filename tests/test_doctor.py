"""`ltxflow doctor` with each dependency present and missing, set through the environment of a
real `ltxflow doctor` process: PATH, LTXFLOW_FFMPEG, LTXFLOW_CHROMIUM, FAL_KEY against the local
fal server, a weights folder with some files missing, a package that cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

KEY = "doctor-test-key"


def doctor(*args, env=None, cwd=None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("FAL_KEY")}
    full.update(env or {})
    r = subprocess.run([sys.executable, "-m", "ltxflow", "doctor", "--json", *map(str, args)], capture_output=True,
                       text=True, env=full, cwd=cwd)
    assert r.returncode in (0, 1), r.stderr
    data = json.loads(r.stdout)
    return r.returncode, {c["name"]: c for c in data["checks"]}, r


@pytest.fixture(scope="module")
def fal():
    from ltxflow.fakefal import FakeFal

    fake = FakeFal("127.0.0.1", 0, keys={KEY})
    fake.serve()
    yield fake
    fake.close()


def test_preview_runs_with_the_defaults(tmp_path):
    code, checks, _ = doctor(cwd=tmp_path)
    assert code == 0
    assert checks["ffmpeg"]["ok"] and checks["PyAV"]["ok"] and checks["librosa"]["ok"]
    assert checks["backend preview"]["ok"]


def test_ffmpeg_missing_or_from_the_wheel(tmp_path):
    code, checks, _ = doctor(env={"LTXFLOW_FFMPEG": str(tmp_path / "nothing")}, cwd=tmp_path)
    assert code == 1 and checks["ffmpeg"]["ok"] is False and "LTXFLOW_FFMPEG" in checks["ffmpeg"]["fix"]
    code, checks, _ = doctor(env={"PATH": os.path.dirname(sys.executable)}, cwd=tmp_path)  # no ffmpeg on PATH
    assert code == 0 and "imageio-ffmpeg" in checks["ffmpeg"]["detail"]


def test_a_package_that_cannot_be_imported(tmp_path):
    shadow = tmp_path / "shadow" / "librosa"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('librosa is broken here')\n")
    code, checks, _ = doctor(env={"PYTHONPATH": str(shadow.parent)}, cwd=tmp_path)
    assert code == 1 and checks["librosa"]["ok"] is False and "broken here" in checks["librosa"]["detail"]


def test_chromium_found_or_not_is_information(tmp_path):
    browser = tmp_path / "bin" / "chromium"
    browser.parent.mkdir()
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    code, checks, _ = doctor(env={"LTXFLOW_CHROMIUM": str(browser)}, cwd=tmp_path)
    assert code == 0 and str(browser) in checks["Chromium"]["detail"]
    code, checks, _ = doctor(env={"LTXFLOW_CHROMIUM": str(tmp_path / "none")}, cwd=tmp_path)
    assert code == 0 and checks["Chromium"]["ok"] is None and "not an executable" in checks["Chromium"]["detail"]


def test_fal_key_unset_set_accepted_and_refused(tmp_path, fal):
    code, checks, _ = doctor("--backend", "fal", cwd=tmp_path)
    assert code == 1 and "FAL_KEY" in checks["backend fal"]["detail"]
    code, checks, _ = doctor("--backend", "fal", env={"FAL_KEY": KEY}, cwd=tmp_path)
    assert code == 0 and "not checked" in checks["backend fal"]["detail"]
    code, checks, r = doctor("--backend", "fal", "--online", env={"FAL_KEY": KEY, **fal.env()}, cwd=tmp_path)
    assert code == 0 and "accepts" in checks["backend fal"]["detail"]
    assert KEY not in r.stdout + r.stderr
    code, checks, r = doctor("--backend", "fal", "--online", env={"FAL_KEY": "wrong-key", **fal.env()},
                             cwd=tmp_path)
    assert code == 1 and "refused" in checks["backend fal"]["detail"] and "wrong-key" not in r.stdout + r.stderr
    # a problem only for fal: preview still runs
    assert doctor(env={"FAL_KEY": "wrong-key", **fal.env()}, cwd=tmp_path)[0] == 0


def test_local_weights_found_and_missing(tmp_path):
    from ltxflow.backends.local import WEIGHTS

    models = tmp_path / "models"
    models.mkdir()
    (models / WEIGHTS["dev"][0][0]).write_bytes(b"")
    (models / WEIGHTS["upsampler"][0][0]).write_bytes(b"")
    code, checks, _ = doctor("--backend", "local", env={"LTXFLOW_LTX_MODELS": str(models)}, cwd=tmp_path)
    weights = checks["weights"]
    assert code == 1 and weights["ok"] is False
    assert WEIGHTS["distilled_lora"][0][0] in weights["detail"] and WEIGHTS["gemma"][0][0] in weights["detail"]
    assert WEIGHTS["dev"][0][0] not in weights["detail"] and checks["weight dev"]["ok"]
    (models / WEIGHTS["distilled_lora"][0][0]).write_bytes(b"")
    (models / WEIGHTS["gemma"][0][0]).mkdir()
    code, checks, _ = doctor("--backend", "local", "--models", models, env={"PATH": os.path.dirname(sys.executable)},
                             cwd=tmp_path)
    assert checks["weights"]["ok"] and "none seen" in checks["GPUs"]["detail"]
    assert code == (0 if checks["ltx-pipelines"]["ok"] else 1)
    code, checks, _ = doctor("--backend", "local", cwd=tmp_path, env={"LTXFLOW_LTX_MODELS": ""})
    assert code == 1 and "no weights folder" in checks["weights"]["detail"]


def test_ray_and_cache_are_reported(tmp_path, project_dir):
    project = project_dir.write("""
        version: 1
        audio: media/song.wav
        chunking: {boundaries: even}
        scenes:
          - id: a
            prompt: "a wave"
        """)
    code, checks, r = doctor(project, env={"LTXFLOW_RAY_ADDRESS": "ray://head:10001",
                                           "LTXFLOW_CACHE_DIR": str(tmp_path / "cache")}, cwd=tmp_path)
    assert code == 0 and checks["project"]["ok"]
    assert "ray://head:10001" in checks["Ray"]["detail"]
    assert "cache" in checks and "ray" not in sys.modules


def test_cache_gc_is_weighed_only_against_a_project_that_exists(tmp_path, project_dir):
    project = project_dir.write("""
        version: 1
        audio: media/song.wav
        chunking: {boundaries: even}
        scenes:
          - id: a
            prompt: "a wave"
        """)
    env = {"LTXFLOW_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "cache").mkdir()
    _, checks, _ = doctor(project, env=env, cwd=tmp_path)
    assert "would free 0.0 MB (0 entries" in checks["cache gc"]["detail"], checks["cache gc"]
    code, checks, _ = doctor(tmp_path / "nowhere.yaml", env=env, cwd=tmp_path)
    assert code == 1 and checks["project"]["ok"] is False and "cache gc" not in checks, checks


def test_a_ray_address_nothing_answers_is_a_problem_online(tmp_path, project_dir):
    """The cluster a build would join, from the project's `ray:` section: not joined offline; with
    --online a port nothing listens on is a problem for every backend (the build would stop)."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    project = project_dir.write(f"""
        version: 1
        audio: media/song.wav
        ray: {{address: "127.0.0.1:{port}"}}
        scenes:
          - id: a
            prompt: "a wave"
        """)
    code, checks, _ = doctor(project, cwd=tmp_path)
    assert code == 0 and checks["Ray"]["ok"] is None and "--online" in checks["Ray"]["detail"]
    assert f"the project's ray.address 127.0.0.1:{port}" in checks["Ray"]["detail"]
    code, checks, _ = doctor(project, "--online", cwd=tmp_path)
    assert code == 1 and checks["Ray"]["ok"] is False and "refused" in checks["Ray"]["detail"].lower()
    assert "ray start --head" in checks["Ray"]["fix"]


def test_text_output_says_what_to_do(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ltxflow", "doctor", "--backend", "fal"], capture_output=True,
                       text=True, cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("FAL_")})
    assert r.returncode == 1
    assert "PROBLEM  backend fal" in r.stdout and "fix: set FAL_KEY" in r.stdout and "cannot run" in r.stdout
