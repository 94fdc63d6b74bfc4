"""Beats and seams on the synthetic drum patterns: `.venv/bin/python bench/music_beats.py`.

Renders each pattern of tests/drums.py (24 s, known beats and bar starts) into a temporary
project, plans it at 24 fps with `boundaries: beats, max_frames: 121` through the real loader,
resolver and planner, and prints per pattern: the tempo found, the beat errors against the truth
(median and max, ms), beats nearer an off-beat than a beat, true beats missed, bar 1's error, and
each seam's offset in frames from the nearest true beat (how many of them start a bar).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import ProjectDir, plan_of  # noqa: E402
from drums import PATTERNS, project_text, score, write_pattern  # noqa: E402


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LTXFLOW_MUSIC_CACHE"] = str(Path(tmp) / "music")
        os.environ["LTXFLOW_CACHE_DIR"] = str(Path(tmp) / "cache")
        for p in PATTERNS:
            d = ProjectDir(Path(tmp) / p.name, seconds=1)
            truth = write_pattern(d.root / "media" / "drums.wav", p)
            started = time.perf_counter()
            plan = plan_of(d.write(project_text("media/drums.wav")))
            s = score(truth, plan.project.music, plan)
            errors = sorted(s.errors_ms)
            rows.append((p.name, f"{s.tempo:.1f}", f"{errors[len(errors) // 2]:.1f}" if errors else "-",
                         f"{max(errors):.1f}" if errors else "-", str(s.off_beats), str(s.missed),
                         f"{s.bar_one_ms:+.0f}", " ".join(f"{x * 24 / 1000:+.1f}" for x in s.seam_ms),
                         f"{s.seams_on_bars}/{len(s.seam_ms)}", f"{time.perf_counter() - started:.1f}"))
    head = ("pattern", "BPM", "med ms", "max ms", "off", "missed", "bar1 ms", "seam - true beat (frames)",
            "on bar", "s")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
