"""`ltxflow completion`: scripts for bash, zsh and fish made from the CLI's own parser; the bash one
completes a real command line in a real bash."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest


def script(shell: str) -> str:
    r = subprocess.run([sys.executable, "-m", "ltxflow", "completion", shell], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_a_script_for_each_shell_names_every_command(shell):
    text = script(shell)
    for command in ("validate", "plan", "build", "init", "music", "doctor", "completion"):
        assert command in text
    assert "--max-cost" in text and "--audio" in text


def test_bash_completes_commands_and_options(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    path = tmp_path / "ltxflow.bash"
    path.write_text(script("bash"))
    assert subprocess.run([bash, "-n", str(path)]).returncode == 0

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        probe = (f"source {path}\nCOMP_WORDS=({line})\nCOMP_CWORD={len(words) - 1}\nCOMP_LINE='{line}'\n"
                 f"COMP_POINT=${{#COMP_LINE}}\n_shtab_ltxflow\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
        r = subprocess.run([bash, "-c", probe], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert {"init", "music", "doctor"} <= set(complete("ltxflow", ""))
    assert "music" in complete("ltxflow", "mu")
    assert "--backend" in complete("ltxflow", "init", "--ba")
    assert set(complete("ltxflow", "completion", "")) >= {"bash", "zsh", "fish"}


@pytest.mark.skipif(shutil.which("fish") is None, reason="no fish")
def test_fish_reads_its_script(tmp_path):
    path = tmp_path / "ltxflow.fish"
    path.write_text(script("fish"))
    assert subprocess.run(["fish", "--no-execute", str(path)]).returncode == 0
