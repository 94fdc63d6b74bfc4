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
    lines = err.splitlines()
    for line_no, field in marks:
        prefix = f"{target}:{line_no}:"
        hits = [ln for ln in lines if ln.startswith(prefix)]
        assert hits, f"no error at {case.name}:{line_no}; got:\n{err}"
        if field != "(root)":
            assert any(re.match(rf"{re.escape(prefix)}\d+: {re.escape(field)}: ", h) for h in hits), \
                f"no error for field {field} at line {line_no}; got:\n{err}"
    for msg in messages:
        assert msg in err, f"{msg!r} not in:\n{err}"
    # One line per problem, then the count.
    assert lines[-1].endswith("found")
