"""A corpus of invalid project files: each exits 2 and names file:line and the field.

Each file in tests/invalid marks the line an error must point at with a trailing
`# <- FIELD` comment (`(root)` for errors about the whole file), and may carry
`# message: TEXT` lines that the output must contain. Every marked error must be
reported, all in one run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ltxflow.cli import main

from conftest import ProjectDir, write_png

CORPUS = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))
MARK = re.compile(r"#\s*<-\s*(\S+)\s*$")


def expectations(text: str) -> tuple[list[tuple[int, str]], list[str]]:
    marks, messages = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        m = MARK.search(line)
        if m:
            marks.append((n, m.group(1)))
        if line.startswith("# message:"):
            messages.append(line.split(":", 1)[1].strip())
    return marks, messages


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> ProjectDir:
    base = tmp_path_factory.mktemp("corpus")
    proj = ProjectDir(base / "proj")
    png = (proj.root / "keyframes" / "a.png").read_bytes()
    (proj.root / "keyframes" / "broken.png").write_bytes(png[: len(png) // 2])
    (proj.root / "media" / "notaudio.mp3").write_text("this is not an mp3\n" * 20)
    (proj.root / "loras" / "fake.safetensors").write_text("not a tensor file")
    write_png(base / "outside.png")
    write_png(proj.root / "keyframes" / "thin.png", (640, 10))
    from PIL import Image

    Image.new("1", (8200, 8200)).save(proj.root / "keyframes" / "huge.png")  # 67 MP, a few KB
    (proj.root / "keyframes" / "link.png").symlink_to(base / "outside.png")
    return proj


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 25


def mismatches(err: str, target: Path, marks: list[tuple[int, str]], messages: list[str]) -> list[str]:
    """What `validate`'s stderr gets wrong against a file's marks: a marked error missing, a
    message missing, a problem at no marked line (or with another field), or a wrong count."""
    lines = err.splitlines()
    problems, wrong = lines[:-1], []
    for line_no, field in marks:
        hits = [ln for ln in problems if ln.startswith(f"{target}:{line_no}:")]
        if not hits:
            wrong.append(f"no error at line {line_no}")
        elif field != "(root)" and not any(re.match(rf"{re.escape(str(target))}:{line_no}:\d+: {re.escape(field)}: ", h)
                                           for h in hits):
            wrong.append(f"no error for field {field} at line {line_no}")
    wrong += [f"{msg!r} not reported" for msg in messages if msg not in err]
    # Every problem is a marked one (a marked line may hold more than one about its field) ...
    for line in problems:
        if not any(line.startswith(f"{target}:{n}:") and (field == "(root)" or f": {field}: " in line)
                   for n, field in marks):
            wrong.append(f"unmarked problem: {line}")
    # ... and the last line counts them.
    if not lines or lines[-1] != f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found":
        wrong.append(f"last line is not the count of {len(problems)} problems")
    return wrong


@pytest.mark.parametrize("case", CORPUS, ids=lambda p: p.stem)
def test_invalid_project(case: Path, corpus_dir: ProjectDir, capsys):
    text = case.read_text()
    marks, messages = expectations(text)
    assert marks, f"{case.name} marks no expected error"
    target = corpus_dir.root / case.name
    shutil.copy(case, target)
    code = main(["validate", str(target)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert mismatches(err, target, marks, messages) == [], err


def test_an_unmarked_second_error_fails_its_file(corpus_dir: ProjectDir, capsys):
    """The corpus check itself: a file whose marked error is reported along with one it does not
    mark (scene 'a' has no end), or whose count line is off, does not pass."""
    text = ("version: 1\naudio: media/song.wav\nscenes:\n  - id: a\n    prompt: p\n"
            "    image: keyframes/nope.png   # <- scenes[0].image\n  - id: b\n    prompt: q\n")
    target = corpus_dir.root / "unmarked.yaml"
    target.write_text(text)
    assert main(["validate", str(target)]) == 2
    err = capsys.readouterr().err
    marks, messages = expectations(text)
    assert [w.split(":")[0] for w in mismatches(err, target, marks, messages)] == ["unmarked problem"], err
    # With the second error marked too, the same output passes; a wrong count does not.
    both = marks + [(4, "scenes[0]")]
    assert mismatches(err, target, both, messages) == []
    assert mismatches(err.replace("2 problems found", "3 problems found"), target, both, messages) != []
