"""The ltxflow command line: each command parses, calls one library function, and shows the result."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ltxflow import __version__
from ltxflow.errors import LtxflowError, ProjectError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _project_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", help="the project file (YAML)")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let media paths resolve outside the project's folder (off: project files are untrusted)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ltxflow", description="Turn a song and a YAML scene list into an LTX-2.3 music video.")
    parser.add_argument("--version", action="version", version=f"ltxflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a project file and its media", description=(
        "Check a project file and the media it names. Exit 0 with a summary, or print every problem "
        "(file:line:column: field: message) and exit 2."))
    _project_args(p)

    p = sub.add_parser("plan", help="show the chunks a build would render", description=(
        "Split the project into LTX-2.3 chunks and show them: time ranges, frames, start images, "
        "endpoints, seeds and costs."))
    _project_args(p)
    p.add_argument("--json", action="store_true", help="print the plan as stable JSON (see the README)")
    p.add_argument("--backend", choices=("preview", "fal", "local"), help="override the project's backend")

    sub.add_parser("schema", help="print the project file's JSON Schema",
                   description="Print the JSON Schema of the project file format (for editors).")
    return parser


def _plan(args: argparse.Namespace):
    from ltxflow.plan.planner import build_plan
    from ltxflow.project.resolve import open_project

    return build_plan(open_project(args.project, backend=getattr(args, "backend", None),
                                   allow_outside_paths=args.allow_outside_paths))


def cmd_validate(args: argparse.Namespace) -> int:
    from ltxflow.timeline import fps_str, timecode

    plan = _plan(args)
    rp = plan.project
    print(f"{rp.file}: ok: {rp.name}, {len(rp.scenes)} scenes, {timecode(rp.total_frames, rp.fps)} "
          f"at {fps_str(rp.fps)} fps, {rp.width}x{rp.height}, {len(plan.chunks)} chunks")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from ltxflow.plan.view import plan_json, plan_table

    plan = _plan(args)
    if args.json:
        print(json.dumps(plan_json(plan), indent=2))
    else:
        print(plan_table(plan))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from ltxflow.schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


COMMANDS = {"validate": cmd_validate, "plan": cmd_plan, "schema": cmd_schema}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ProjectError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        n = len(exc.diagnostics)
        print(f"{n} problem{'s' if n != 1 else ''} found", file=sys.stderr)
        return exc.exit_code
    except LtxflowError as exc:
        print(f"ltxflow: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ltxflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
