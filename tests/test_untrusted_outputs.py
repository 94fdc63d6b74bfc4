"""A project folder from a pull request cannot turn a build against its user: outputs never replace
inputs, the report stays bounded, long prompts cost linear time, terminal output shows control
characters instead of obeying them, validate writes nothing, and `models:` stays in the project."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from conftest import plan_of, write_png, write_wav
from test_build import ltx, make_project

LTXFLOW = Path(sys.executable).parent / "ltxflow"
EVEN = "max_frames: 25, boundaries: even"  # seams not on the music: no analysis of the song, which takes seconds


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(root: Path) -> list[tuple[str, int, int]]:
    """Every path under `root` with its size and mtime: what a command that writes nothing leaves alone."""
    out = []
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out.append((str(p.relative_to(root)), st.st_size if p.is_file() else 0, st.st_mtime_ns))
    return out


# -- outputs never overwrite inputs ---------------------------------------------------------------

def keyframe_project(root: Path, output: str = "out/video.mp4") -> Path:
    """The shared test project whose intro keyframe is keyframes/a.contact.png: the contact sheet of
    an output keyframes/a.mp4 would take its name."""
    project = make_project(root, output=output, chunking=EVEN)
    write_png(root / "keyframes" / "a.contact.png", (96, 48), (10, 200, 30))
    project.write_text(project.read_text().replace("image: keyframes/a.png", "image: keyframes/a.contact.png"))
    return project


def refused_before_rendering(r: subprocess.CompletedProcess, root: Path) -> None:
    assert r.returncode == 2, r.stderr
    assert "nothing was rendered" in r.stderr and "-o" in r.stderr
    assert not (root / "cache" / "chunks").exists()  # before any chunk was rendered (or paid for)


def test_an_output_whose_contact_sheet_is_a_keyframe_is_refused(tmp_path):
    project = keyframe_project(tmp_path, output="keyframes/a.mp4")
    keyframe = tmp_path / "keyframes" / "a.contact.png"
    before = sha(keyframe)
    r = ltx("build", str(project), cwd=tmp_path)
    refused_before_rendering(r, tmp_path)
    assert f"{keyframe} (the contact sheet) would overwrite {keyframe.resolve()} (the start image of scene " \
           "'intro')" in r.stderr
    assert "`output:` in song.yaml" in r.stderr
    assert sha(keyframe) == before
    # The same name through -o, and the report command's -o: refused as well.
    project.write_text(project.read_text().replace("output: keyframes/a.mp4", "output: out/video.mp4"))
    r = ltx("build", str(project), "-o", "keyframes/a.mp4", cwd=tmp_path)
    refused_before_rendering(r, tmp_path)
    r = ltx("report", str(project), "-o", "keyframes/a.report.html", cwd=tmp_path)
    assert r.returncode == 2 and "(the contact sheet) would overwrite" in r.stderr, r.stderr
    assert not (tmp_path / "keyframes" / "a.report.html").exists()
    assert sha(keyframe) == before


@pytest.mark.parametrize("output, what", [
    ("media/song.wav", "the song"),
    ("song.yaml", "the project file"),
    ("keyframes/b.png", "the start image of scene 'outro'"),
])
def test_an_output_that_is_an_input_is_refused(tmp_path, output, what):
    project = keyframe_project(tmp_path)
    target = tmp_path / output
    before = sha(target)
    r = ltx("build", str(project), "-o", output, cwd=tmp_path)
    refused_before_rendering(r, tmp_path)
    assert f"{output} (the video) would overwrite {target.resolve()} ({what})" in r.stderr
    assert sha(target) == before


def test_links_as_outputs_are_refused(tmp_path):
    project = keyframe_project(tmp_path)
    keyframe = tmp_path / "keyframes" / "a.contact.png"
    before = sha(keyframe)
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "link.mp4"
    link.symlink_to(keyframe)
    r = ltx("build", str(project), "-o", "out/link.mp4", cwd=tmp_path)
    refused_before_rendering(r, tmp_path)
    assert "out/link.mp4 (the video) is a symbolic link to" in r.stderr
    assert link.is_symlink() and sha(keyframe) == before

    # A link to any file: still not written through (a report's link, here, to a file of no importance).
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "out" / "video.report.html").symlink_to(tmp_path / "notes.txt")
    r = ltx("build", str(project), cwd=tmp_path)
    refused_before_rendering(r, tmp_path)
    assert "video.report.html (the report) is a symbolic link" in r.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"

    # A hard link of a keyframe named as the output.
    os.link(keyframe, tmp_path / "out" / "hard.mp4")
    r = ltx("build", str(project), "-o", "out/hard.mp4", cwd=tmp_path)
    refused_before_rendering(r, tmp_path)
    assert f"would overwrite {keyframe.resolve()}" in r.stderr

    # The project's own `output:` a link: refused when the project is read, naming the field.
    (tmp_path / "out" / "video.mp4").symlink_to(tmp_path / "elsewhere.mp4")
    r = ltx("validate", str(project), cwd=tmp_path)
    assert r.returncode == 2 and "song.yaml:5:1: output: 'out/video.mp4' is a symbolic link" in r.stderr, r.stderr


def test_an_output_in_the_models_folder_is_refused(tmp_path):
    project = keyframe_project(tmp_path)
    (tmp_path / "weights").mkdir()
    project.write_text(project.read_text().replace("quality: low", "quality: low\nmodels: weights"))
    r = ltx("build", str(project), "-o", "weights/video.mp4", cwd=tmp_path)
    refused_before_rendering(r, tmp_path)
    assert f"would overwrite {(tmp_path / 'weights').resolve()} (the models folder)" in r.stderr
    assert list((tmp_path / "weights").iterdir()) == []


# -- the report stays bounded whatever the chunk count ---------------------------------------------

def test_a_contact_sheet_and_page_of_thousands_of_chunks_are_bounded(tmp_path):
    """Rows made up from one real chunk (the report is drawn from rows, however many): 5000 portrait
    chunks, every one with frames, once took gigabytes; now a fixed pixel budget and page size."""
    from PIL import Image

    from ltxflow.report.gather import ChunkRow, Report
    from ltxflow.report.page import MAX_PAGE_THUMBS, PROMPT_SHOWN, render_html
    from ltxflow.report.sheet import MAX_SHEET_PIXELS, contact_sheet, layout

    write_wav(tmp_path / "media" / "song.wav", 2.0, rate=8000)
    project = tmp_path / "p.yaml"
    project.write_text("version: 1\naudio: media/song.wav\nresolution: 1088x1920\n"
                       "chunking: {max_frames: 25, boundaries: even}\nscenes:\n  - id: one\n    prompt: night\n")
    plan = plan_of(project)
    buf = io.BytesIO()
    Image.new("RGB", (180, 320), (200, 60, 90)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    n, c = 5000, plan.chunks[0]
    rows = tuple(ChunkRow(dataclasses.replace(c, id=f"one.{i}", start_frame=7 * i, end_frame=7 * i + 7),
                          "p" * 5000, "rendered", (), None, jpeg, jpeg) for i in range(n))
    report = Report(plan, rows, (), (), None, None, datetime.now().astimezone())

    at = layout(report)
    assert 30 <= len(at.rows) < n and at.width * at.height <= MAX_SHEET_PIXELS
    assert at.rows[0] is rows[0] and at.rows[-1] is rows[-1]  # spread over the whole video
    png = contact_sheet(report)
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (at.width, at.height)
        assert im.size[1] <= 2 * im.size[0] * 10  # not a strip thousands of cells tall
    assert len(png) < 8_000_000

    page = render_html(report, "p.contact.png")
    assert page.count("data:image/jpeg") == 2 * MAX_PAGE_THUMBS
    assert page.count('class="prompt"') == n  # every chunk listed, its prompt cut short
    assert page.count("p" * PROMPT_SHOWN) == n and page.count("p" * (PROMPT_SHOWN + 1)) == 0
    assert f"The frames of {MAX_PAGE_THUMBS} of the {n} chunks are shown" in page
    assert len(page) < n * 3_000 + 2 * MAX_PAGE_THUMBS * 2 * len(jpeg)


def test_the_report_command_draws_a_bounded_sheet_of_many_portrait_chunks(tmp_path):
    """600 portrait chunks through the CLI: the sheet that was 1522 x 95,600 pixels (145 megapixels)."""
    from PIL import Image

    from ltxflow.report.sheet import MAX_SHEET_PIXELS

    write_wav(tmp_path / "media" / "song.wav", 60.0, rate=8000)
    project = tmp_path / "p.yaml"
    project.write_text("version: 1\naudio: media/song.wav\nfps: 60\nresolution: 1088x1920\n"
                       "chunking: {max_frames: 9, boundaries: even}\nscenes:\n  - id: one\n    prompt: night\n")
    r = ltx("report", str(project), cwd=tmp_path, check=True)
    assert "0 of 600 chunks rendered" in r.stderr
    with Image.open(tmp_path / "out" / "p.contact.png") as im:
        assert im.size[0] * im.size[1] <= MAX_SHEET_PIXELS
    assert (tmp_path / "out" / "p.report.html").stat().st_size < 3_000_000


# -- long prompts -----------------------------------------------------------------------------------

def test_a_3_mb_prompt_is_refused_at_once_without_being_echoed(tmp_path):
    write_wav(tmp_path / "media" / "song.wav", 2.0, rate=8000)
    project = tmp_path / "p.yaml"
    project.write_text("version: 1\naudio: media/song.wav\nscenes:\n  - id: one\n"
                       f"    prompt: {json.dumps('neon rain ' * 300_000)}\n")
    r = ltx("validate", str(project), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["p.yaml:5:5: scenes[0].prompt: 3000000 characters; at most 20000 (a prompt is "
                                     "a few sentences to a few paragraphs)", "1 problem found"]


def test_prompts_at_the_limit_validate_plan_and_build(tmp_path):
    """The longest prompt allowed, one 'word' (the worst case for wrapping), in every scene."""
    from ltxflow.project.model import MAX_PROMPT_CHARS

    prompt = "x" * MAX_PROMPT_CHARS
    project = make_project(tmp_path, chunking=EVEN, scenes=f"""
  - id: intro
    end: 2
    prompt: {prompt}
  - id: verse
    end: 4
    prompt: {prompt}
  - id: outro
    prompt: {prompt}
""")
    assert ltx("validate", str(project), cwd=tmp_path).returncode == 0
    assert ltx("plan", str(project), cwd=tmp_path).returncode == 0
    ltx("build", str(project), "--backend", "preview", "--log-format", "json", cwd=tmp_path, check=True)
    assert (tmp_path / "out" / "video.report.html").stat().st_size < 1_000_000  # prompts cut short there


def test_the_preview_card_draws_what_fits_of_any_prompt():
    from ltxflow.backends.preview import card_text

    text = card_text("x" * 3_000_000, 16, 10)
    assert text.split("\n") == ["x" * 16] * 10
    assert card_text("a few words", 16, 10) == "a few words"


# -- terminal output shows control characters -----------------------------------------------------

EVIL = "\x1b]0;owned\x07\x1b[2J\rX\u202egnp.exe\x9b31m"
SHOWN = "\\x1b]0;owned\\x07\\x1b[2J\\x0dX\\u202egnp.exe\\x9b31m"


def test_text_and_rich_reporters_escape_what_servers_and_projects_send():
    from ltxflow.progress import JsonReporter, RichReporter, TextReporter

    for cls in (TextReporter, RichReporter):
        out = io.StringIO()
        rep = cls(out)
        rep.event("build_started", project="p", backend="fal", jobs=1, chunks=1, to_render=1, cached=0,
                  output="out/v.mp4", cost_now_usd=0.0, resuming=0)
        rep.event("chunk_log", chunk="intro.0", message=EVIL)
        rep.event("warning", message=f"fal said: {EVIL}\nsecond line")
        rep.event("chunk_failed", chunk="intro.0", error=EVIL)
        rep.close()
        text = out.getvalue()
        assert "\x1b" not in text and "\r" not in text and "\x07" not in text and "\u202e" not in text, cls
        assert f"FAILED intro.0: {SHOWN}" in text, cls
        assert f"warning: fal said: {SHOWN}\n    second line" in text, cls  # continuation lines indented
        if cls is TextReporter:
            assert f"intro.0: {SHOWN}" in text
    out = io.StringIO()
    JsonReporter(out).event("chunk_log", chunk="intro.0", message=EVIL)
    line = out.getvalue()
    assert "\x1b" not in line and "\u202e" not in line and "\x9b" not in line and "\r" not in line
    assert json.loads(line)["message"] == EVIL


def test_the_cli_escapes_control_characters_from_project_files(tmp_path):
    write_wav(tmp_path / "media" / "song.wav", 2.0, rate=8000)
    # A scene id and an unknown key with escapes (YAML's "\e" is ESC): the diagnostics show them written out.
    project = tmp_path / "p.yaml"
    project.write_text('version: 1\naudio: media/song.wav\nscenes:\n  - id: "a\\e[2Jb"\n    prompt: x\n'
                       '    "x\\e]0;t\\a\\u202e": 1\n')
    r = ltx("validate", str(project), cwd=tmp_path)
    assert r.returncode == 2
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr and "\u202e" not in r.stderr
    assert "scenes[0].id:" in r.stderr and "\\x1b[2J" in r.stderr
    assert "unknown key 'x\\x1b]0;t\\x07\\u202e'" in r.stderr

    # A project file named with an escape: its name (the file's stem) reaches the text log and the result.
    named = tmp_path / "\x1b[31mred.yaml"
    named.write_text("version: 1\naudio: media/song.wav\nresolution: 128x64\noutput: out/v.mp4\nquality: low\n"
                     "chunking: {max_frames: 25, boundaries: even}\nscenes:\n  - id: one\n    prompt: x\n")
    r = ltx("validate", str(named), cwd=tmp_path)
    assert r.returncode == 0 and "\x1b" not in r.stdout and "\\x1b[31mred.yaml: ok: \\x1b[31mred," in r.stdout
    r = ltx("build", str(named), "--log-format", "text", cwd=tmp_path, check=True)
    assert "\x1b" not in r.stderr and "building \\x1b[31mred:" in r.stderr, r.stderr

    # A media path with control characters is refused: it would be printed in many places.
    project.write_text('version: 1\naudio: "media/\\e[2Jsong.wav"\nscenes:\n  - id: one\n    prompt: x\n')
    r = ltx("validate", str(project), cwd=tmp_path)
    assert r.returncode == 2 and "audio: 'media/\\x1b[2Jsong.wav': a name with control characters" in r.stderr


# -- validate writes nothing ----------------------------------------------------------------------

def _no_cache_env() -> dict[str, str]:
    """The environment of a user who sets no cache: the default .ltxflow beside the project."""
    env = {k: v for k, v in os.environ.items() if k not in ("LTXFLOW_CACHE_DIR", "LTXFLOW_MUSIC_CACHE")}
    return env


@pytest.mark.parametrize("valid", [True, False])
def test_validate_writes_nothing(tmp_path, valid):
    root = tmp_path / "proj"
    if valid:  # the song is decoded (a valid project's is kept by other commands)
        project = make_project(root, chunking=EVEN)
    else:  # the song is analysed, then a problem found: the last scene ends past the song
        project = make_project(root, chunking="max_frames: 25, boundaries: beats")
        project.write_text(project.read_text().replace("  - id: outro\n", "  - id: outro\n    end: 60\n"))
    before = listing(tmp_path)
    r = subprocess.run([str(LTXFLOW), "validate", str(project)], capture_output=True, text=True, cwd=root,
                       env=_no_cache_env(), timeout=300)
    assert r.returncode == (0 if valid else 2), r.stderr
    assert listing(tmp_path) == before
    assert not (root / ".ltxflow").exists()

    if valid:  # caches kept by a plan are read, and left as they are
        subprocess.run([str(LTXFLOW), "plan", str(project)], capture_output=True, cwd=root, env=_no_cache_env(),
                       timeout=300, check=True)
        assert (root / ".ltxflow").is_dir()
        before = listing(tmp_path)
        r = subprocess.run([str(LTXFLOW), "validate", str(project)], capture_output=True, text=True, cwd=root,
                           env=_no_cache_env(), timeout=300)
        assert r.returncode == 0 and listing(tmp_path) == before


# -- models: stays in the project -----------------------------------------------------------------

@pytest.mark.parametrize("models, why", [
    ("../outside", "outside the project folder"),
    ("~/x", "'~' (a home folder) is not expanded"),
    ("link", "outside the project folder"),
])
def test_models_outside_the_project_are_refused(tmp_path, models, why):
    root = tmp_path / "proj"
    project = make_project(root, chunking=EVEN)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    project.write_text(project.read_text().replace("quality: low", f"quality: low\nmodels: {models}"))
    r = ltx("validate", str(project), cwd=root)
    assert r.returncode == 2
    assert f"song.yaml:7:1: models: '{models}'" in r.stderr and why in r.stderr, r.stderr
    assert "--models or LTXFLOW_LTX_MODELS" in r.stderr
    if models != "~/x":
        assert ltx("validate", str(project), "--allow-outside-paths", cwd=root).returncode == 0


def test_models_inside_the_project_are_fine(tmp_path):
    project = make_project(tmp_path, chunking=EVEN)
    (tmp_path / "weights").mkdir()
    project.write_text(project.read_text().replace("quality: low", "quality: low\nmodels: weights"))
    assert ltx("validate", str(project), cwd=tmp_path).returncode == 0
