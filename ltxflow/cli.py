"""The ltxflow command line: each command parses, calls one library function, and shows the result."""

from __future__ import annotations

import argparse
import errno
import gc
import json
import os
import signal
import sys
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from ltxflow import __version__, github
from ltxflow.errors import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_TERMINATED, LtxflowError,
                            ProjectError, printable)
from ltxflow.registry import BACKENDS



def _project_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", help="the project file (YAML)")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let media paths resolve outside the project's folder (off: project files are untrusted)")


def _cache_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", type=Path, help="the chunk cache (default: .ltxflow beside the project, "
                                                  "or LTXFLOW_CACHE_DIR)")


def _log_format_arg(p: argparse.ArgumentParser, *formats: str, help: str) -> None:
    p.add_argument("--log-format", choices=formats, default=None,
                   help=f"{help}; github is the default where GITHUB_ACTIONS=true, text elsewhere")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ltxflow", description="Turn a song and a YAML scene list into an LTX-2.3 music video.")
    parser.add_argument("--version", action="version", version=f"ltxflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a project file and its media", description=(
        "Check a project file and the media it names. Exit 0 with a summary, or print every problem "
        "(file:line:column: field: message) and exit 2."))
    _project_args(p)
    _log_format_arg(p, "text", "github", help="github adds each problem as a GitHub Actions annotation on stdout")

    p = sub.add_parser("plan", help="show the chunks a build would render", description=(
        "Split the project into LTX-2.3 chunks and show them: time ranges, frames, start images, "
        "endpoints, seeds, costs, and whether each is cached or must render."))
    _project_args(p)
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                   help="text (a table, the default), json (stable JSON, see the README) or markdown "
                        "(a table and the totals, for a job summary or a pull request comment)")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="the same as --format json")
    _log_format_arg(p, "text", "github", help="github adds the project's problems and warnings as GitHub "
                                               "Actions annotations on stdout")
    p.add_argument("--backend", choices=list(BACKENDS), help="override the project's backend")
    p.add_argument("--explain", action="store_true", help="say why each chunk that must render must render")
    _cache_dir_arg(p)
    p.add_argument("--ray", metavar="ADDRESS", help="show the Ray cluster at ADDRESS (local, auto, host:6379, "
                                                   "ray://host:10001) and how the chains spread over its workers")

    p = sub.add_parser("build", help="render the chunks that are not cached and stitch the video", description=(
        "Render every chunk of the plan that is not cached, in dependency order and in parallel where "
        "the plan allows, and stitch them onto the master track. Exit 0 built, 1 a chunk or the stitch "
        "failed, 2 invalid project or arguments, 130 interrupted (Ctrl-C), 143 stopped by SIGTERM (what a "
        "CI runner sends on cancel). Either signal stops the build within seconds: chunks in progress are "
        "abandoned, finished ones stay cached."))
    _project_args(p)
    p.add_argument("--backend", choices=list(BACKENDS), help="override the project's backend")
    p.add_argument("-j", "--jobs", type=_positive, default=4, help="chunks in flight at once (default 4)")
    p.add_argument("--only", action="extend", type=_scene_list, metavar="SCENE[,SCENE...]", default=[],
                   help="render and stitch only these scenes: --only verse,drop or --only verse --only drop "
                        "(before or after the project file)")
    p.add_argument("--range", dest="time_range", metavar="START-END",
                   help="render the chunks overlapping this part of the timeline and stitch just it, "
                        "e.g. 0:30-1:00")
    p.add_argument("-o", "--output", type=Path, help="write the video here (default: the project's output; "
                                                      "--only/--range add a suffix)")
    _cache_dir_arg(p)
    p.add_argument("--retries", type=int, default=3, help="retries of a transient backend error (default 3)")
    p.add_argument("--models", type=Path, metavar="DIR",
                   help="backend local: the folder of LTX-2.3 weights (overrides LTXFLOW_LTX_MODELS and models:)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="render the chunks on a Ray cluster: local (a private one for this build), auto (the one "
                        "running here), host:6379 or ray://host:10001 (overrides LTXFLOW_RAY_ADDRESS and ray:)")
    p.add_argument("--ray-shared", type=Path, metavar="DIR",
                   help="with --ray: a folder every node mounts; clips come back through it, not the object store")
    p.add_argument("--max-cost", type=_usd, metavar="USD",
                   help="refuse to start when the chunks to render now would cost more (overrides max_cost)")
    _log_format_arg(p, "text", "json", "github",
                    help="text (a live display on a terminal), json (one object per line, for CI) or github "
                         "(text lines on stdout with GitHub Actions' groups and annotations)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only warnings, failures and errors")

    p = sub.add_parser("report", help="write the build report from the plan and the cache", description=(
        "Write the build report (an HTML page and a contact sheet PNG: chunks with their first and last "
        "frames, seam scores, the waveform with beats and seams) from the plan and what the cache holds, "
        "without rendering. Chunks not in the cache are listed as not rendered. Exit 0, or 2 for an invalid "
        "project."))
    _project_args(p)
    p.add_argument("--backend", choices=list(BACKENDS), help="the backend the chunks were built with "
                                                            "(default: the project's)")
    _cache_dir_arg(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="write the HTML here (default: <video>.report.html beside the project's output); "
                        "the contact sheet goes beside it as <name>.contact.png")

    p = sub.add_parser("export", help="write the build as a timeline for an editor (OTIO, FCP 7 XML, EDL)",
                       description=(
        "Write the project's timeline from the plan and what the cache holds, without rendering: one clip "
        "per chunk at its plan frames, crossfades as dissolves, scene and seam markers, the song on an "
        "audio track, at the project's fps. Chunks not in the cache are gaps (a warning says how many). "
        "Needs the export extra: pip install 'ltxflow[export]'. Exit 0 written (also when part is not "
        "built), 1 nothing is built yet, 2 invalid project or arguments, or the extra missing."))
    _project_args(p)
    p.add_argument("--format", type=_export_format, choices=("otio", "xml", "edl"), default=None,
                   help="otio (OpenTimelineIO: DaVinci Resolve, Kdenlive, ...), xml (Final Cut Pro 7 XML: "
                        "Premiere Pro, DaVinci Resolve; not Final Cut Pro X's .fcpxml) or edl (CMX 3600: one "
                        "video track, markers as comments, crossfades as cuts with --in-place); default: by -o's suffix, "
                        "else otio")
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="write it here (default: beside the project's video, <video>.otio/.xml/.edl); the "
                        "clips and the song are copied into <FILE's name>-media/ beside it")
    p.add_argument("--in-place", action="store_true",
                   help="point at the clips in the cache and the song where it is instead of copying them "
                        "(the export then breaks when `ltxflow cache gc` removes them)")
    p.add_argument("--backend", choices=list(BACKENDS), help="the backend the chunks were built with "
                                                            "(default: the project's)")
    _cache_dir_arg(p)

    p = sub.add_parser("cache", help="list or clean the chunk cache",
                       description="Inspect (ls) or clean (gc) the content-addressed chunk cache.")
    csub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    q = csub.add_parser("ls", help="list cache entries", description="List the entries of a chunk cache.")
    q.add_argument("project", nargs="?", type=Path, help="use this project's cache (default: ./.ltxflow)")
    q.add_argument("--cache-dir", type=Path, help="the cache folder")
    q = csub.add_parser("gc", help="remove entries no project references", description=(
        "Remove cache entries that no project under the given paths references (for any backend), "
        "and work folders left by builds that died."))
    q.add_argument("paths", nargs="+", type=Path, help="project files or folders holding them")
    q.add_argument("--cache-dir", type=Path, help="the cache folder (default: beside the first project)")
    q.add_argument("-n", "--dry-run", action="store_true", help="only say what would be removed")
    q.add_argument("--allow-outside-paths", action="store_true",
                   help="read projects whose media lie outside their folders")
    q.add_argument("--force", action="store_true",
                   help="remove even while some project under the paths cannot be read")

    p = sub.add_parser("cancel", help="cancel a project's requests still running on fal", description=(
        "Cancel the hosted requests that builds of this project submitted and have not collected "
        "(the build journal in the cache). Requests fal already finished are kept for the next build."))
    p.add_argument("project", type=Path, help="the project file")
    _cache_dir_arg(p)

    p = sub.add_parser("fake-fal", help="run a local stand-in for fal's API (tests, dry runs)", description=(
        "Serve fal's queue and storage protocol on 127.0.0.1, validating each request against the "
        "endpoint catalog and answering with real small MP4s. Point ltxflow at it with "
        "LTXFLOW_FAL_QUEUE_URL and LTXFLOW_FAL_REST_URL (printed at start)."))
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--key", action="append", help="accept only this key (repeatable; default: any key)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="inject a fault: KIND[:ARG][xCOUNT][@PROMPT-TEXT], e.g. 429x3, slow:20, drop, error, "
                        "crash, gone, frames:-8, fps:25, lost, 422:num_frames (see ltxflow/fakefal/faults.py)")

    sub.add_parser("schema", help="print the project file's JSON Schema",
                   description="Print the JSON Schema of the project file format (for editors).")

    p = sub.add_parser("init", help="start a project from a song: one scene per section of the music", description=(
        "Analyse the song and write DIR/<name>.yaml: one scene per section of the song (cut on bar lines where "
        "the sound changes, lettered by likeness: A, B, A...; intro and outro only for a quiet first or last "
        "section), times in bars with the seconds in comments, a placeholder prompt per scene and a comment "
        "above each key; the song is copied into DIR/media and the JSON Schema written beside the project for "
        "editors. The project validates and builds as written. Exit 0, or 2 when a file exists (--force) or "
        "the song cannot be read."))
    p.add_argument("dir", type=Path, help="the project folder (made if missing)")
    p.add_argument("--audio", type=Path, required=True, metavar="SONG", help="the song (wav, mp3, flac, ogg, m4a)")
    p.add_argument("--backend", choices=[n for n, s in BACKENDS.items() if s.in_project], default="preview",
                   help="the project's backend (default preview)")
    p.add_argument("--fps", default="24", help="frames per second: a number or a ratio such as 24000/1001 (default 24)")
    p.add_argument("--resolution", default="1280x704", help="WxH with even sides, a preset or auto (default 1280x704)")
    p.add_argument("--name", help="the project's name and file name (default: from the song's file name)")
    p.add_argument("--link", action="store_true", help="hard-link the song into DIR/media instead of copying it "
                                                       "(one file system)")
    p.add_argument("--force", action="store_true", help="replace the project file (and a different song of "
                                                        "that name in DIR/media)")
    p.add_argument("--max-sections", type=_positive, default=12, help="at most this many scenes (default 12)")
    p.add_argument("--min-bars", type=_positive, default=4, help="bars a section has at least (default 4)")

    p = sub.add_parser("music", help="print a song's tempo, bars, sections and quiet gaps", description=(
        "Print what the music analysis finds in a song: tempo, every bar's start time, the sections "
        "(as init cuts them) and the quiet gaps, to write scene times by hand. Given a project file, its "
        "song with the project's music: settings (bar 1 where the project puts it) and its cache."))
    p.add_argument("song", type=Path, help="a song, or a project file")
    p.add_argument("--json", action="store_true", help="the same as JSON, for scripts")
    p.add_argument("--beats-per-bar", type=_positive, help="beats in a bar (default 4, or the project's)")
    p.add_argument("--first-bar", type=_positive, metavar="BEAT",
                   help="the beat (1-based) bar 1 starts on (default: found, or the project's)")
    p.add_argument("--allow-outside-paths", action="store_true", help="a project's song may lie outside its folder")

    p = sub.add_parser("doctor", help="check what a build needs here: ffmpeg, packages, keys, weights, GPUs", description=(
        "Check what builds need on this machine: ffmpeg and its version, PyAV, librosa, a Chromium for reports, "
        "each backend (fal: a key, accepted by fal with --online; local: ltx-pipelines and the weights, which "
        "are missing), the GPUs seen, Ray, and the cache (its size; with a project, what `cache gc` would "
        "free). Exit 0 when the chosen backend can run, else 1 with what to do for each problem."))
    p.add_argument("project", nargs="?", type=Path, help="a project file: its backend, weights and cache")
    p.add_argument("--backend", choices=list(BACKENDS), help="the backend to check for (default: the project's, "
                                                            "else preview)")
    p.add_argument("--online", action="store_true", help="ask fal whether it accepts the key (a storage token: free)")
    p.add_argument("--models", type=Path, metavar="DIR", help="backend local: the weights folder to check "
                                                             "(default: LTXFLOW_LTX_MODELS, else the project's models:)")
    p.add_argument("--json", action="store_true", help="the checks as JSON")

    p = sub.add_parser("completion", help="print the shell completion script (bash, zsh, fish)", description=(
        "Print a completion script for the shell, made from ltxflow's own argument parser (shtab). "
        "bash: `eval \"$(ltxflow completion bash)\"` in ~/.bashrc; zsh: `ltxflow completion zsh > "
        "~/.zfunc/_ltxflow` with ~/.zfunc on fpath before compinit; fish: `ltxflow completion fish > "
        "~/.config/fish/completions/ltxflow.fish`."))
    p.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell")
    return parser


def _usd(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount of USD, e.g. 12.50") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive amount")
    return value


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _export_format(text: str) -> str:
    if text.lower() == "fcpxml":
        raise argparse.ArgumentTypeError(
            "fcpxml (Final Cut Pro X's format) is not written: OpenTimelineIO's adapter for it loses crossfades "
            "and NTSC rates. Use xml (Final Cut Pro 7 XML: Premiere Pro, DaVinci Resolve) or otio")
    return text.lower()


def _scene_list(text: str) -> list[str]:
    """`verse,drop` -> ['verse', 'drop'] (one option value: the project file may follow it)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected scene ids, e.g. verse or verse,drop")
    return names


def _plan(args: argparse.Namespace, cache):
    """The project's plan, read as a build reads it (execute/prepare.py): the decoded song and its
    music analysis kept in `cache`."""
    from ltxflow.execute.prepare import open_plan

    return open_plan(Path(args.project), cache, backend=getattr(args, "backend", None),
                     allow_outside_paths=args.allow_outside_paths)


def _notes(rp, args: argparse.Namespace) -> None:
    """The project's warnings (the song down-mixed or resampled, ...), on stderr; with
    --log-format github also as annotations on stdout, unless stdout holds the plan's JSON."""
    for note in rp.notes:
        print(printable(f"warning: {note}"), file=sys.stderr)
        if args.log_format == "github" and getattr(args, "format", None) != "json":
            print(github.warning_command(note, args.project, os.environ.get("GITHUB_WORKSPACE")))


def _warn(problems: list[str | None]) -> None:
    for problem in filter(None, problems):
        print(printable(f"ltxflow: warning: {problem}"), file=sys.stderr)


def _shown_path(args: argparse.Namespace, path: object) -> str:
    """The video's path as the last line on stdout (never a workflow command in a GitHub log)."""
    return github.inert(str(path)) if args.log_format == "github" else str(path)


def cmd_validate(args: argparse.Namespace) -> int:
    """Writes nothing, valid project or not: the decoded song and the music analysis that earlier
    runs kept in the project's cache are read, and nothing new is kept."""
    from ltxflow.execute.cache import Cache, check_cache_root, default_cache_dir
    from ltxflow.plan.planner import build_plan
    from ltxflow.project.resolve import open_project
    from ltxflow.timeline import fps_str, timecode

    cache = Cache(default_cache_dir(Path(args.project).parent))
    check_cache_root(cache.root)  # what it reads there must be ltxflow's own too
    plan = build_plan(open_project(args.project, allow_outside_paths=args.allow_outside_paths,
                                   audio_store=cache.decoded_audio, music_store=cache.music, keep=False))
    rp = plan.project
    _notes(rp, args)
    print(printable(f"{rp.file}: ok: {rp.name}, {len(rp.scenes)} scenes, {timecode(rp.total_frames, rp.fps)} "
                    f"at {fps_str(rp.fps)} fps, {rp.width}x{rp.height}, {len(plan.chunks)} chunks"))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from ltxflow.execute.cache import Cache, default_cache_dir
    from ltxflow.execute.chunkwork import clip_format, variant_namer
    from ltxflow.execute.status import chunk_statuses, load_index
    from ltxflow.plan.view import plan_json, plan_markdown, plan_table

    cache = Cache(default_cache_dir(Path(args.project).parent, args.cache_dir))
    plan = _plan(args, cache)
    rp = plan.project
    _notes(rp, args)
    container = rp.output.suffix.lstrip(".").lower()
    fmt = clip_format(rp, container)
    in_flight: frozenset[str] = frozenset()
    if BACKENDS[rp.backend].journals:  # counted by the backend itself, as a build counts them
        from ltxflow.backends import make_backend
        from ltxflow.backends.base import BackendContext

        with closing(make_backend(rp.backend, BackendContext(cache.root, Path(args.project)))) as backend:
            in_flight = frozenset(backend.in_flight())
    statuses = chunk_statuses(plan, cache, load_index(cache, rp.loaded.path), variant_namer(plan, fmt),
                              in_flight=in_flight)
    cluster = _cluster_spread(args, plan) if args.ray else None
    if args.format == "json":
        print(json.dumps({**plan_json(plan, statuses), **({"cluster": cluster} if cluster else {})}, indent=2))
    elif args.format == "markdown":
        sys.stdout.write(plan_markdown(plan, statuses))
    else:
        print(printable(plan_table(plan, statuses, explain=args.explain)))
        if cluster:
            spread = (f"{cluster['actors']} actors for backend {rp.backend}: {len(plan.chunks)} chunks in "
                      f"{cluster['chunk_times']} chunk-times (longest chain {plan.longest_chain})"
                      if cluster["actors"] else cluster["no_actors"])
            print(f"ray {cluster['address']}: {cluster['nodes']} nodes, {cluster['gpus']} GPUs, {cluster['cpus']} CPUs; "
                  f"{spread}")
    if os.environ.get("GITHUB_STEP_SUMMARY") or os.environ.get("GITHUB_OUTPUT"):
        totals = plan_json(plan, statuses)["totals"]
        outputs = github.output_lines({k: totals[k] for k in ("cost_now_usd", "to_render")})
        _warn([github.append("GITHUB_STEP_SUMMARY", plan_markdown(plan, statuses) + "\n"),
               github.append("GITHUB_OUTPUT", outputs)])
    return EXIT_OK


def _cluster_spread(args: argparse.Namespace, plan) -> dict:
    """`plan --ray`: the cluster's nodes, GPUs and CPUs, the actors a build would run and the
    chunk-times its chains take on them (one unit per chunk, the build's order)."""
    from ltxflow.cluster import ray_settings
    from ltxflow.cluster.pool import actor_count, cluster_info, connect, no_actor_reason
    from ltxflow.plan.spread import makespan

    rp = plan.project
    settings = ray_settings(args.ray, None, rp.loaded.project.ray, Path(args.project).parent)
    ray, started = connect(settings.address)
    try:
        info = cluster_info(ray)
    finally:
        if started:
            ray.shutdown()
    actors = actor_count(rp.backend, info, settings)
    if actors < 1:  # a build would stop with this line (RayBackend)
        return {"address": settings.address, **info, "actors": 0, "chunk_times": None,
                "no_actors": no_actor_reason(rp.backend, info, settings)}
    order = [c.id for c in plan.chunks]
    return {"address": settings.address, **info, "actors": actors, "chunk_times": makespan(order, plan.parents, actors)}


def _up_to_date(args: argparse.Namespace) -> bool:
    """The no-op check, before anything heavy is imported (see ltxflow/uptodate.py). When it
    falls through, args.stale holds why (build_started's `stale`)."""
    from ltxflow import uptodate
    from ltxflow.execute.cache import default_cache_dir
    from ltxflow.progress import build_reporter
    from ltxflow.report import report_paths
    from ltxflow.timeline import parse_range

    project = Path(args.project)
    root = default_cache_dir(project.parent, args.cache_dir)
    try:
        time_range = parse_range(args.time_range) if args.time_range else None
    except ValueError:
        args.stale = {}
        return False  # the full build reports it
    options = uptodate.stamp_options(args.backend, args.only, time_range, args.output, args.allow_outside_paths)
    data, args.stale = uptodate.check(uptodate.stamp_path(root, project, options), project)
    if data is not None and not report_paths(Path(data["output"])).html.is_file():
        data, args.stale = None, {"reason": "report"}  # the full build writes it again
    if data is None:
        return False
    reporter, record = build_reporter(args.log_format, args.quiet, args.project)
    chunks = data["chunks"]
    n = len(chunks)
    backend = args.backend or data.get("backend") or "?"  # the stamp records the backend that built it
    reporter.event("build_started", project=data.get("name"), backend=backend, jobs=args.jobs, chunks=n,
                   to_render=0, cached=n, output=data["output"], up_to_date=True, order=list(chunks))
    for chunk in chunks:
        reporter.event("chunk_cached", chunk=chunk)
    reporter.event("stitch_done", output=data["output"], skipped=True, frames=None, seconds=0.0)
    reporter.event("build_done", output=data["output"], rendered=0, cached=n, failed=0, skipped=0,
                   cost_usd=0.0, seconds=0.0, up_to_date=True)
    reporter.close()
    if record is not None:  # the report the last build wrote
        paths = report_paths(Path(data["output"]))
        record.report = str(paths.html)
        record.contact_sheet = str(paths.contact) if paths.contact.is_file() else None
        _warn(record.write())
    if args.log_format != "json":
        print(_shown_path(args, data["output"]))
    return True


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """Inside the block SIGINT and SIGTERM stop a build alike (a KeyboardInterrupt in this, the main,
    thread). A second signal while the build stops is noted, not obeyed: a CI runner sends SIGTERM
    a few seconds after SIGINT, and the stop (within seconds) must finish writing what the next
    build resumes from and the summary. A third forces the stop. Yields the signals received, for
    the exit code."""
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 2:
            print("ltxflow: stopping; finishing what the next build resumes from (signal again to force)",
                  file=sys.stderr)
            return
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def cmd_build(args: argparse.Namespace) -> int:
    if _up_to_date(args):
        return EXIT_OK
    from ltxflow.build import BuildOptions, Interrupted, build, parse_range
    from ltxflow.progress import build_reporter

    opts = BuildOptions(backend=args.backend, jobs=args.jobs, only=tuple(args.only),
                        time_range=parse_range(args.time_range) if args.time_range else None,
                        cache_dir=args.cache_dir, output=args.output, allow_outside_paths=args.allow_outside_paths,
                        retries=args.retries, max_cost=args.max_cost, models=args.models,
                        stale=getattr(args, "stale", None) or None, ray=args.ray, ray_shared=args.ray_shared)
    reporter, record = build_reporter(args.log_format, args.quiet, args.project)
    with _stop_signals() as received:
        try:
            result = build(args.project, opts, reporter)
        except (Interrupted, KeyboardInterrupt) as exc:
            print(printable(f"ltxflow: {str(exc) or 'interrupted'}"), file=sys.stderr)
            # The process ends now: spare the interpreter's last full collection, which takes a
            # second or more once the music analysis (numba) has run in it.
            gc.freeze()
            return EXIT_TERMINATED if signal.SIGTERM in received else EXIT_INTERRUPTED
        finally:
            reporter.close()
            _warn(record.write() if record else [])
    if result.output is None:
        for node, outcome in result.outcomes.items():
            if outcome.state != "ok":
                print(printable(f"ltxflow: {node}: {outcome.state}: {outcome.error}"), file=sys.stderr)
        return EXIT_FAILED
    if args.log_format != "json":
        print(_shown_path(args, result.output))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from ltxflow.execute.cache import Cache, default_cache_dir
    from ltxflow.errors import BuildArgumentError
    from ltxflow.execute.chunkwork import clip_format
    from ltxflow.project.paths import overwrites
    from ltxflow.project.resolve import inputs
    from ltxflow.report import paths_for_html, report_paths, write_report

    cache = Cache(default_cache_dir(Path(args.project).parent, args.cache_dir))
    plan = _plan(args, cache)
    rp = plan.project
    paths = paths_for_html(args.output) if args.output else report_paths(rp.output)
    problem = overwrites([(paths.html, "the report"), (paths.contact, "the contact sheet")], inputs(rp))
    if problem:
        raise BuildArgumentError(f"{problem}; nothing was written. Name another report with -o")
    fmt = clip_format(rp)
    report = write_report(plan, cache, fmt, rp.output, paths)
    rendered = sum(1 for r in report.rows if r.state == "rendered")
    worst = report.worst
    weakest = f"; weakest seam {worst.before} | {worst.after}, score {worst.score:.2f}" if worst else ""
    print(f"{rendered} of {len(report.rows)} chunks rendered{weakest}; contact sheet {paths.contact}; "
          f"{report.clips_read} clips read, {report.clips_kept} from the thumbnail store", file=sys.stderr)
    print(paths.html)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from ltxflow.export import ExportOptions, export

    result = export(Path(args.project), ExportOptions(
        format=args.format, output=args.output, in_place=args.in_place, backend=args.backend,
        cache_dir=args.cache_dir, allow_outside_paths=args.allow_outside_paths))
    _warn(list(result.notes))
    media = f"; clips and song in {result.media}" if result.media else "; clips referenced in the cache"
    print(f"{result.built} of {result.chunks} chunks, {result.crossfades} crossfades, {result.markers} markers"
          f"{media}", file=sys.stderr)
    print(result.output)
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    from ltxflow.cachecmd import entry_size, gc, project_files
    from ltxflow.execute.cache import Cache, default_cache_dir

    if args.cache_command == "ls":
        root = args.project.resolve().parent if args.project else Path.cwd()
        cache = Cache(default_cache_dir(root, args.cache_dir))
        total = 0
        for e in cache.entries():
            r, size = e.record, entry_size(e)
            total += size
            print(printable(f"{e.key[:12]}  {r.project or '?':<16} {r.chunk or '?':<14} {r.backend or '?':<8} "
                            f"{r.created or '?':<25} {size / 1e6:8.1f} MB  ${r.cost_usd:.2f}"))  # a record's text
        print(f"{cache.root}: {total / 1e6:.1f} MB")
        return EXIT_OK
    first = next(project_files(args.paths), None)
    root = first.resolve().parent if first else Path.cwd()
    cache = Cache(default_cache_dir(root, args.cache_dir))
    gone, stale, freed, problems = gc(cache, args.paths, dry_run=args.dry_run,
                                      allow_outside_paths=args.allow_outside_paths, force=args.force)
    for line in problems:
        print(printable(f"cannot read {line}"), file=sys.stderr)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{cache.root}: {verb} {len(gone)} entries and {len(stale)} stale files ({freed / 1e6:.1f} MB)")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from ltxflow.backends.fal import cancel_in_flight
    from ltxflow.execute.cache import default_cache_dir

    root = default_cache_dir(args.project.resolve().parent, args.cache_dir)
    report = cancel_in_flight(args.project, root)
    for problem in report.refused:  # never followed: the key is not sent where such an entry points
        print(printable(f"ltxflow: warning: journal entry {problem}"), file=sys.stderr)
    if not report.done:
        print(f"{args.project}: no requests in flight")
    for chunk, request_id, outcome in report.done:
        print(printable(f"{chunk}: {request_id}: {outcome}"))
    return EXIT_OK


def cmd_fake_fal(args: argparse.Namespace) -> int:
    import threading

    from ltxflow.fakefal import FakeFal

    try:
        fake = FakeFal(args.host, args.port, keys=set(args.key) if args.key else None, faults=args.fault)
    except ValueError as exc:
        print(f"ltxflow fake-fal: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"fake fal listening on {fake.url}; point ltxflow at it with:", flush=True)
    for k, v in fake.env().items():
        print(f"  export {k}={v}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    fake.serve()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.close()
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from ltxflow.execute.cache import Cache, check_cache_root, default_cache_dir
    from ltxflow.scaffold import InitOptions, init_project

    cache = Cache(default_cache_dir(args.dir))
    check_cache_root(cache.root)
    opts = InitOptions(backend=args.backend, fps=args.fps, resolution=args.resolution, name=args.name,
                       link=args.link, force=args.force, min_bars=args.min_bars, max_sections=args.max_sections)
    made = init_project(args.dir, args.audio, opts, cache.decoded_audio, cache.music)
    labels = " ".join(s.role or s.label for s in made.sections)
    print(printable(f"{made.project}: {len(made.sections)} scenes ({labels}); write their prompts, then "
                    f"`ltxflow plan {made.project}`"), file=sys.stderr)
    print(printable(str(made.project)))
    return EXIT_OK


def cmd_music(args: argparse.Namespace) -> int:
    from ltxflow.musiccmd import music_json, music_text, song_music

    m = song_music(args.song, beats_per_bar=args.beats_per_bar, first_bar=args.first_bar,
                   allow_outside_paths=args.allow_outside_paths)
    if args.json:
        print(json.dumps(music_json(m), indent=2))
    else:
        sys.stdout.write(music_text(m))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from ltxflow.doctor import diagnose, report_text

    report = diagnose(args.backend, args.project, online=args.online, models=args.models)
    if args.json:
        print(json.dumps({"backend": report.backend, "ready": not report.problems,
                          "checks": [c.to_json() for c in report.checks]}, indent=2))
    else:
        sys.stdout.write(printable(report_text(report)))
    return EXIT_FAILED if report.problems else EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    sys.stdout.write(shtab.complete(_parser(), shell=args.shell))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from ltxflow.schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


COMMANDS = {"validate": cmd_validate, "plan": cmd_plan, "build": cmd_build, "report": cmd_report, "cache": cmd_cache,
            "export": cmd_export,
            "cancel": cmd_cancel, "fake-fal": cmd_fake_fal, "schema": cmd_schema,
            "init": cmd_init, "music": cmd_music, "doctor": cmd_doctor, "completion": cmd_completion}


def _annotate(args: argparse.Namespace, message: str) -> None:
    """An error as a GitHub Actions annotation on stdout, with --log-format github."""
    if args.log_format == "github":
        print(github.command("error", message, title="ltxflow"), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # --log-format as given, else by where it runs; commands without the option annotate errors alike
    args.log_format = getattr(args, "log_format", None) or github.default_log_format()
    try:
        code = COMMANDS[args.command](args)
        # The interpreter's last collection walks every object the music analysis (librosa,
        # numba) left behind: 1-2 s spent on nothing at the end of a first plan or build.
        gc.freeze()
        return code
    except ProjectError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        n = len(exc.diagnostics)
        print(f"{n} problem{'s' if n != 1 else ''} found", file=sys.stderr)
        if args.log_format == "github":  # on each file's line: on a pull request's diff
            for d in exc.diagnostics:
                print(github.diagnostic_command(d, os.environ.get("GITHUB_WORKSPACE")), flush=True)
        return exc.exit_code
    except LtxflowError as exc:  # its text may carry a server's or a project file's: shown escaped
        print(printable(f"ltxflow: {exc}"), file=sys.stderr)
        _annotate(args, str(exc))
        return exc.exit_code
    except OSError as exc:  # a full disk, a folder that cannot be written, ...
        where = f" ({exc.filename})" if exc.filename else ""
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        hint = ("; free some space (`ltxflow cache gc PATH` removes what no project there uses) and run it again: "
                "chunks already in the cache are kept" if full else "")
        print(printable(f"ltxflow: {exc.strerror or exc}{where}{hint}"), file=sys.stderr)
        _annotate(args, f"{exc.strerror or exc}{where}{hint}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ltxflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
