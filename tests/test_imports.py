"""Heavy libraries are imported only where they are used: `ltxflow plan` imports none once the
song's music analysis is cached, and none at all for a project that does not use the music."""

import os
import shutil
import subprocess
import sys

from conftest import DEMO, REPO

HEAVY = ("torch", "librosa", "moviepy", "opentimelineio")

# A finder at the front of sys.meta_path sees every import attempt, so the check holds whether or
# not the heavy packages are installed; it records and refuses them.
PROBE = f"""
import sys
HEAVY = {HEAVY!r}
attempts = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            attempts.append(name)
            raise ImportError("blocked by test: " + name)
        return None
sys.meta_path.insert(0, Watch())
import ltxflow
from ltxflow.cli import main
assert main(["plan", sys.argv[1]]) == 0
assert main(["plan", sys.argv[1], "--json"]) == 0
assert main(["validate", sys.argv[1]]) == 0
loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print("ATTEMPTS", attempts, "LOADED", loaded, file=sys.stderr)
sys.exit(1 if attempts or loaded else 0)
"""


def test_plan_imports_no_heavy_library():
    # The first plan analyses the demo's song (librosa) and keeps the analysis; later plans read it.
    subprocess.run([sys.executable, "-m", "ltxflow", "plan", str(DEMO)], capture_output=True, check=True, cwd=REPO)
    r = subprocess.run([sys.executable, "-c", PROBE, str(DEMO)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ATTEMPTS [] LOADED []" in r.stderr


def test_even_boundaries_never_analyse_the_song(tmp_path):
    demo = tmp_path / "demo"
    shutil.copytree(DEMO.parent, demo, ignore=shutil.ignore_patterns(".ltxflow", "out"))
    text = DEMO.read_text().replace("boundaries: beats", "boundaries: even")
    for bar, seconds in (("bar 5", "8"), ("bar 16", "30"), ("bar 19", "36")):
        text = text.replace(f"end: {bar} ", f"end: {seconds} ").replace(f"end: {bar}\n", f"end: {seconds}\n")
    assert "boundaries: even" in text and "end: bar" not in text
    (demo / "demo.yaml").write_text(text)
    music = tmp_path / "music"  # an empty analysis cache: nothing to read
    env = {**os.environ, "LTXFLOW_MUSIC_CACHE": str(music)}
    r = subprocess.run([sys.executable, "-c", PROBE, str(demo / "demo.yaml")], capture_output=True, text=True,
                       cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ATTEMPTS [] LOADED []" in r.stderr
    assert not music.exists()


def test_the_watch_catches_an_import():
    # The probe itself works: an import of a heavy name is caught.
    code = PROBE.replace("import ltxflow\n", "import ltxflow\ntry:\n    import librosa\nexcept ImportError:\n    pass\n")
    r = subprocess.run([sys.executable, "-c", code, str(DEMO)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "ATTEMPTS ['librosa']" in r.stderr
