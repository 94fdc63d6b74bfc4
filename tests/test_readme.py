"""The README's examples of output are what the real demo prints: each fenced block after a
`<!-- output of: ltxflow ... -->` line is compared with that command's output on a fresh cache.

When a change alters what they print, write them anew with
`LTXFLOW_UPDATE_README=1 .venv/bin/python -m pytest tests/test_readme.py` and read the diff."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

README = REPO / "README.md"
LTXFLOW = Path(sys.executable).parent / "ltxflow"
BLOCK = re.compile(r"<!-- output of: (?P<cmd>ltxflow [^\n]*?) -->\n```[a-z]*\n(?P<body>.*?)```", re.DOTALL)


def _output(cmd: str, cache: Path) -> str:
    args = shlex.split(cmd)
    r = subprocess.run([str(LTXFLOW), *args[1:]], capture_output=True, text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "LTXFLOW_CACHE_DIR": str(cache)})
    assert r.returncode == 0, f"{cmd} exited {r.returncode}:\n{r.stderr}"
    return r.stdout


def test_readme_shows_what_the_demo_prints(tmp_path):
    text = README.read_text()
    blocks = list(BLOCK.finditer(text))
    assert blocks, "the README marks no command output (<!-- output of: ltxflow ... -->)"
    if os.environ.get("LTXFLOW_UPDATE_README") == "1":
        for m in reversed(blocks):
            out = _output(m.group("cmd"), tmp_path / "cache")
            text = text[:m.start("body")] + out + text[m.end("body"):]
        README.write_text(text)
        pytest.skip("README.md written anew: read the diff")
    for m in blocks:
        want = _output(m.group("cmd"), tmp_path / "cache")
        assert m.group("body") == want, (f"README.md's output of `{m.group('cmd')}` is stale; "
                                         f"LTXFLOW_UPDATE_README=1 rewrites it. It prints now:\n{want}")
