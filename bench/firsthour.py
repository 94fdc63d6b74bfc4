"""The first hour on a real song: `.venv/bin/python bench/firsthour.py [--baseline REV]`.

A new user's first builds with the preview backend at the default settings (1280x704, colour
matching on, seams on beats) on a real song of shared/realmedia ("Through Space.ogg", 3:54, Ogg
Vorbis) with real pictures as keyframes, as `ltxflow` subprocesses, wall-clock
(time.perf_counter), one run each on a cold cache:

  first preview build / song length; a no-op build against `ltxflow --version`; a fully cached
  `--range 2:10-2:20` and `--only verse` (less the stitch of their output); `ltxflow report`; a
  rebuild after one prompt edit against that chunk's own render; and how long Ctrl-C (SIGINT) and
  SIGTERM take to stop a build mid-render, with what they leave behind.

`--baseline REV` runs the same with the ltxflow source of git revision REV (exported under
bench/.work/, imported through PYTHONPATH with this venv's packages) and prints both side by side.
The section "7. The first hour" of bench/RESULTS.md is written anew (`--out` another file).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "firsthour"
REAL = Path(os.environ.get("LTXFLOW_REALMEDIA") or ROOT.parent / "shared" / "realmedia")
SONG, PICTURES = "Through Space.ogg", ("softwaves-16x9.png", "desktop-preview.jpg", "waves.png")
SECTION = "## 7. The first hour"

PROJECT = """version: 1
audio: media/song.ogg
scenes:
  - id: intro
    end: 30
    prompt: "soft waves of colour drift under a logo"
    image: keyframes/softwaves.png
  - id: verse
    end: 100
    prompt: "the waves flow on, chained from the intro"
  - id: chorus
    end: 150
    prompt: "a desktop, calm, light moving over it"
    image: keyframes/desktop.jpg
  - id: bridge
    end: 190
    prompt: "the desktop drifts"
  - id: tag
    end: 200
    prompt: "waves, one short shot"
    image: keyframes/waves.png
  - id: outro
    prompt: "soft waves again to the end"
    image: keyframes/softwaves.png
"""


class Cli:
    """Runs one ltxflow: this checkout's, or a baseline source tree's with this venv's packages."""

    def __init__(self, source: Path | None):
        self.source = source

    def argv(self, *args: str) -> list[str]:
        if self.source is None:
            return [str(Path(sys.executable).parent / "ltxflow"), *args]
        return [sys.executable, "-c", "import sys; from ltxflow.cli import main; sys.exit(main())", *args]

    def env(self, cache: Path) -> dict[str, str]:
        env = {**os.environ, "LTXFLOW_CACHE_DIR": str(cache)}
        env.pop("LTXFLOW_MUSIC_CACHE", None)  # a cold first build analyses the song too
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)
        return env

    def run(self, *args: str, cwd: Path, cache: Path) -> tuple[float, subprocess.CompletedProcess]:
        t0 = time.perf_counter()
        r = subprocess.run(self.argv(*args), cwd=cwd, env=self.env(cache), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"ltxflow {' '.join(args)} exited {r.returncode}:\n{r.stderr[-2000:]}")
        return wall, r


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def first(evs: list[dict], name: str) -> dict:
    return next((e for e in evs if e.get("event") == name), {})


def make_project(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "media").mkdir(parents=True)
    (folder / "keyframes").mkdir()
    shutil.copyfile(REAL / SONG, folder / "media" / "song.ogg")  # a working copy; never committed
    for name, target in zip(PICTURES, ("softwaves.png", "desktop.jpg", "waves.png")):
        shutil.copyfile(REAL / name, folder / "keyframes" / target)
    path = folder / "song.yaml"
    path.write_text(PROJECT)
    return path


def song_seconds(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return float(s.duration * s.time_base) if s.duration else float(c.duration / 1e6)


def descendants(pid: int) -> set[int]:
    """Live processes whose parent chain reaches `pid` (from /proc)."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out


def interrupt(cli: Cli, project: Path, cache: Path, sig: int) -> dict:
    """Start a build that must render, send `sig` once its first chunk has started rendering for
    a second, and measure until the process is gone; what it leaves behind."""
    proc = subprocess.Popen(cli.argv("build", str(project), "--log-format", "json"), cwd=project.parent,
                            env=cli.env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"chunk_started"' in line:
            break
    time.sleep(1.0)
    kids = descendants(proc.pid)
    t0 = time.perf_counter()
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=600)
    latency = time.perf_counter() - t0
    time.sleep(0.2)
    left = [p for p in kids if Path(f"/proc/{p}").exists()]
    work = list((cache / "tmp").iterdir()) if (cache / "tmp").is_dir() else []  # render work folders
    temp = [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    return {"seconds": latency, "rc": proc.returncode, "children_left": len(left), "temp_left": len(work) + len(temp)}


def measure(cli: Cli, label: str) -> dict:
    folder = WORK / label
    project = make_project(folder / "project")
    cache = folder / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    out: dict = {"song_s": song_seconds(folder / "project" / "media" / "song.ogg")}
    print(f"[{label}] first preview build ...", file=sys.stderr, flush=True)
    wall, r = cli.run("build", str(project), "--log-format", "json", cwd=project.parent, cache=cache)
    done = first(events(r.stdout), "build_done")
    out["first_s"], out["breakdown"] = wall, done.get("breakdown")
    print(f"[{label}] no-op, --version ...", file=sys.stderr, flush=True)
    out["noop_s"] = statistics.median(cli.run("build", str(project), cwd=project.parent, cache=cache)[0] for _ in range(3))
    out["version_s"] = statistics.median(cli.run("--version", cwd=project.parent, cache=cache)[0] for _ in range(5))
    for key, args in (("range", ("--range", "2:10-2:20")), ("only", ("--only", "verse"))):
        print(f"[{label}] cached {args} ...", file=sys.stderr, flush=True)
        cli.run("build", str(project), *args, cwd=project.parent, cache=cache)
        outputs = list((project.parent / "out").glob("song.*.mp4"))
        for o in outputs:
            o.unlink()  # its output must be written again: the stitch is what the time may add
        wall, r = cli.run("build", str(project), *args, "--log-format", "json", cwd=project.parent, cache=cache)
        evs = events(r.stdout)
        stitch = first(evs, "stitch_done").get("seconds", 0.0) or 0.0
        report = first(evs, "report_written").get("seconds", 0.0) or 0.0
        out[key] = {"wall_s": wall, "stitch_s": stitch, "report_s": report,
                    "rendered": first(evs, "build_done").get("rendered")}
    print(f"[{label}] report ...", file=sys.stderr, flush=True)
    out["report_s"] = statistics.median(cli.run("report", str(project), cwd=project.parent, cache=cache)[0]
                                        for _ in range(3))
    print(f"[{label}] edit one prompt ...", file=sys.stderr, flush=True)
    text = project.read_text()
    project.write_text(text.replace("waves, one short shot", "waves, one short shot, edited"))
    wall, r = cli.run("build", str(project), "--log-format", "json", cwd=project.parent, cache=cache)
    evs = events(r.stdout)
    chunk = [e for e in evs if e.get("event") == "chunk_done"]
    own = sum((e.get("render_s") or 0.0) + (e.get("normalize_s") or 0.0) for e in chunk)
    out["edit"] = {"wall_s": wall, "chunks": [e["chunk"] for e in chunk], "chunk_s": own}
    for name, sig, edit in (("sigint", signal.SIGINT, "edited twice"), ("sigterm", signal.SIGTERM, "edited thrice")):
        print(f"[{label}] {name} ...", file=sys.stderr, flush=True)
        project.write_text(text.replace("waves, one short shot", f"waves, one short shot, {edit}"))
        out[name] = interrupt(cli, project, cache, sig)
    return out


def export(rev: str) -> Path:
    """The ltxflow package of git revision `rev`, exported under bench/.work/ (not a checkout)."""
    dest = WORK / f"source-{rev[:12]}"
    if not (dest / "ltxflow").is_dir():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        data = subprocess.run(["git", "archive", rev, "ltxflow"], cwd=ROOT, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest)
    return dest


def fmt_s(x) -> str:
    return "-" if x is None else (f"{x:.2f} s" if x < 100 else f"{x:.0f} s")


def section(now: dict, base: dict | None, rev: str | None, argv: list[str]) -> str:
    def row(what, key, target=None):
        n = key(now)
        b = key(base) if base else None
        return [what, b if b is not None else "-", n, target or ""]

    song = now["song_s"]
    lines = [SECTION, "",
             f"`{' '.join(['.venv/bin/python bench/firsthour.py', *argv])}`, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. {__doc__.split(chr(10) + chr(10))[1]}", ""]
    head = ["what", f"previous ({rev[:10]})" if rev else "previous", "now", "target"]
    cut = lambda d, k: d[k]["wall_s"] - d[k]["stitch_s"]  # noqa: E731
    rows = [
        ["song", fmt_s(song), fmt_s(song), ""],
        ["first preview build", fmt_s(base["first_s"]) if base else "-", fmt_s(now["first_s"]), ""],
        ["first preview / song length", f"{base['first_s'] / base['song_s']:.2f}x" if base else "-",
         f"{now['first_s'] / song:.2f}x", "<= 0.5x"],
        ["no-op build / `ltxflow --version`", f"{base['noop_s'] / base['version_s']:.1f}x ({fmt_s(base['noop_s'])})"
         if base else "-", f"{now['noop_s'] / now['version_s']:.1f}x ({fmt_s(now['noop_s'])})", "<= 3x"],
        ["cached `--range 2:10-2:20`, less its stitch", fmt_s(cut(base, "range")) if base else "-",
         fmt_s(cut(now, "range")), "<= 2 s"],
        ["cached `--only verse`, less its stitch", fmt_s(cut(base, "only")) if base else "-",
         fmt_s(cut(now, "only")), "<= 2 s"],
        ["`ltxflow report`", fmt_s(base["report_s"]) if base else "-", fmt_s(now["report_s"]), "<= 1 s"],
        ["rebuild after one prompt edit - that chunk's render and normalize",
         fmt_s(base["edit"]["wall_s"] - base["edit"]["chunk_s"]) if base else "-",
         fmt_s(now["edit"]["wall_s"] - now["edit"]["chunk_s"]), "<= 3 s"],
        ["Ctrl-C (SIGINT) mid-render to exit", fmt_s(base["sigint"]["seconds"]) if base else "-",
         fmt_s(now["sigint"]["seconds"]), "<= 2 s"],
        ["SIGTERM mid-render to exit", fmt_s(base["sigterm"]["seconds"]) if base else "-",
         fmt_s(now["sigterm"]["seconds"]), "<= 2 s"],
    ]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    lines += table + [""]
    for label, d in (("previous", base), ("now", now)):
        if d:
            lines.append(f"- {label}: first build breakdown {json.dumps(d['breakdown'])}; edit re-rendered "
                         f"{d['edit']['chunks']} ({fmt_s(d['edit']['chunk_s'])} of render and normalize, "
                         f"{fmt_s(d['edit']['wall_s'])} in all); SIGINT exit {d['sigint']['rc']}, SIGTERM exit "
                         f"{d['sigterm']['rc']}; children left {d['sigint']['children_left']}/"
                         f"{d['sigterm']['children_left']}, temp folders left {d['sigint']['temp_left']}/"
                         f"{d['sigterm']['temp_left']}; cached --range/--only rendered "
                         f"{d['range']['rendered']}/{d['only']['rendered']} chunks")
    return "\n".join(lines) + "\n"


def splice(results: Path, text: str) -> None:
    """Put `text` in place of the file's section 7 (added before the closing line when absent)."""
    old = results.read_text() if results.is_file() else ""
    if SECTION in old:
        start = old.index(SECTION)
        end = old.find("\n## ", start + 1)
        end = old.find("\n---\n", start) if end < 0 else end
        old = old[:start] + old[end + 1:] if end >= 0 else old[:start]
    at = old.rfind("\n---\n")
    new = old[:at + 1] + text + "\n" + old[at + 1:] if at >= 0 else old + "\n" + text
    results.write_text(new)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", metavar="REV", help="also run the ltxflow of this git revision")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)
    if not (REAL / SONG).is_file():
        print(f"{REAL / SONG} not found (set LTXFLOW_REALMEDIA)", file=sys.stderr)
        return 2
    now = measure(Cli(None), "now")
    splice(args.out, section(now, None, None, argv))  # written at once: the previous release takes long
    if args.baseline:
        base = measure(Cli(export(args.baseline)), "previous")
        splice(args.out, section(now, base, args.baseline, argv))
    print(args.out.read_text()[args.out.read_text().index(SECTION):])
    return 0


if __name__ == "__main__":
    sys.exit(main())
