"""Project files are untrusted: media must stay inside the project folder."""

from __future__ import annotations

import pytest

from ltxflow.cli import main
from ltxflow.project.paths import PathRefused, media_ref

from conftest import write_png


@pytest.mark.parametrize("ref", [
    "../outside.png", "keyframes/../../outside.png", "/etc/passwd", "keyframes/link.png",
    "keyframes/dirlink/outside.png",
])
def test_escapes_are_refused(tmp_path, ref):
    root = tmp_path / "proj"
    (root / "keyframes").mkdir(parents=True)
    write_png(tmp_path / "outside.png")
    (root / "keyframes" / "link.png").symlink_to(tmp_path / "outside.png")
    (root / "keyframes" / "dirlink").symlink_to(tmp_path)
    with pytest.raises(PathRefused, match="outside the project folder"):
        media_ref(ref, root, urls=True)
    assert media_ref(ref, root, urls=True, allow_outside=True).kind == "file"


@pytest.mark.parametrize("ref, allowed", [
    ("https://example.com/a.png", True), ("http://example.com/a.png", True),
    ("file:///etc/passwd", False), ("ftp://example.com/a.png", False), ("data:image/png;base64,AAAA", False),
    ("javascript:alert(1)", False), ("HTTPS://example.com/a.png", True), ("https:///nohost.png", False),
])
def test_schemes(tmp_path, ref, allowed):
    if allowed:
        assert media_ref(ref, tmp_path, urls=True).kind == "url"
        with pytest.raises(PathRefused, match="not a URL"):
            media_ref(ref, tmp_path, urls=False)
    else:
        with pytest.raises(PathRefused):
            media_ref(ref, tmp_path, urls=True)


def test_inside_paths_and_symlinks_inside_are_fine(tmp_path):
    root = tmp_path / "proj"
    write_png(root / "keyframes" / "a.png")
    (root / "alias.png").symlink_to(root / "keyframes" / "a.png")
    assert media_ref("keyframes/a.png", root, urls=True).path == (root / "keyframes" / "a.png").resolve()
    assert media_ref("alias.png", root, urls=True).path == (root / "keyframes" / "a.png").resolve()


def test_cli_allow_outside_paths(project_dir, capsys):
    write_png(project_dir.root.parent / "shared.png")
    path = project_dir.write("""
        version: 1
        audio: media/song.wav
        scenes:
          - id: a
            prompt: p
            image: ../shared.png
    """)
    assert main(["validate", str(path)]) == 2
    assert "outside the project folder" in capsys.readouterr().err
    assert main(["validate", str(path), "--allow-outside-paths"]) == 0
