"""GitHub Actions' syntaxes: workflow commands (annotations, log groups), Markdown for job
summaries, step outputs; the record of a build they are written from, and the appending to the
files GitHub Actions names in the environment (GITHUB_STEP_SUMMARY, GITHUB_OUTPUT).

Workflow commands are lines on stdout, `::NAME KEY=VALUE,KEY=VALUE::MESSAGE`. In the message `%`,
CR and LF are written %25, %0D and %0A; in a property value `:` and `,` too (%3A, %2C). Other
control characters are written out as errors.printable does. The runner takes any line that
starts with `::` after its leading blanks for a command: `inert` disarms lines of text that come
from project files and servers."""

from __future__ import annotations

import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any

from ltxflow.errors import Diagnostic, format_path, printable


def escape_data(text: object) -> str:
    """A workflow command's message."""
    s = str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return printable(s)  # after: printable would write CR and LF out as \x0d and \n


def escape_property(text: object) -> str:
    """A workflow command's property value (file=, title=, ...)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: object = "", **props: object) -> str:
    """`::name k=v,k=v::message`; properties that are None are left out."""
    given = ",".join(f"{k}={escape_property(v)}" for k, v in props.items() if v is not None)
    return f"::{name}{' ' + given if given else ''}::{escape_data(message)}"


def inert(line: str) -> str:
    """A line of log text the runner will not take for a workflow command: a leading `::` (after
    blanks) has its first colon written \\x3a."""
    stripped = line.lstrip()
    if not stripped.startswith("::"):
        return line
    return line[: len(line) - len(stripped)] + "\\x3a" + stripped[1:]


def workspace_path(file: str, workspace: str | None) -> str:
    """`file` relative to the workspace (GITHUB_WORKSPACE, the repository's checkout) when it lies
    inside it, so an annotation lands on the pull request's diff; else as given."""
    if not workspace:
        return file
    try:
        return Path(file).resolve().relative_to(Path(workspace).resolve()).as_posix()
    except (ValueError, OSError):
        return file


def diagnostic_command(d: Diagnostic, workspace: str | None) -> str:
    """A validation problem as an error annotation on its file, line and column."""
    title = f"ltxflow: {format_path(d.path)}" if d.path else "ltxflow"
    return command("error", d.message, file=workspace_path(d.file, workspace), line=d.line, col=d.column,
                   title=title)


# A project's warning names its place as a Diagnostic does: "FILE:LINE[:COL]: TEXT".
_LOCATED = re.compile(r"(?P<file>[^\n]+?):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<text>.*)\Z", re.DOTALL)


def warning_command(message: str, project: str | None, workspace: str | None, chunk: str | None = None) -> str:
    """A warning annotation; on the project file's line when the message starts with its place."""
    m = _LOCATED.match(message)
    title = f"ltxflow: {chunk}" if chunk else "ltxflow"
    if m and project and _same_file(m["file"], project):
        return command("warning", m["text"], file=workspace_path(m["file"], workspace), line=m["line"],
                       col=m["col"], title=title)
    return command("warning", message, title=title)


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


_MD_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def markdown_text(text: object) -> str:
    """Text from a project file or a server as literal Markdown: one line (a table cell can hold
    it), control characters written out, every punctuation character backslash-escaped (no
    markup, links, HTML or table pipes of its own)."""
    return _MD_SPECIAL.sub(r"\\\1", printable(text, newlines=False))


def output_lines(values: dict[str, object]) -> str:
    """Step outputs as $GITHUB_OUTPUT reads them: `name=value`, or, for a value with a line break,
    `name<<DELIMITER`, the value, `DELIMITER`, with a delimiter the value does not hold."""
    out = []
    for name, value in values.items():
        text = str(value)
        if "\n" not in text and "\r" not in text:
            out.append(f"{name}={text}\n")
            continue
        delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
        while delimiter in text:
            delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
        out.append(f"{name}<<{delimiter}\n{text}\n{delimiter}\n")
    return "".join(out)


def default_log_format() -> str:
    """github where GitHub Actions runs ltxflow (GITHUB_ACTIONS=true), else text."""
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


def append(variable: str, text: str) -> str | None:
    """Adds `text` to the file named by the environment `variable` (GITHUB_STEP_SUMMARY,
    GITHUB_OUTPUT), when it names one. Returns what went wrong, or None: a file that cannot be
    written is the caller's warning, never its failure."""
    path = os.environ.get(variable)
    if not path:
        return None
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        return f"cannot write {variable}: {exc.strerror or exc}"
    return None


def _money(x: float) -> str:
    """An amount as Markdown (a bare $ may start a formula)."""
    return markdown_text(f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.4f}")


class BuildRecord:
    """What a build's events said, kept for the job summary and the step outputs (a reporter: the
    CLI hands it the events beside the one that prints them). `report` and `contact_sheet` are
    None until report_written names them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: dict[str, Any] | None = None
        self.done: dict[str, Any] | None = None
        self.chunks: dict[str, tuple[str, dict[str, Any]]] = {}  # chunk -> (rendered|cached|failed|skipped, fields)
        self.warnings: list[str] = []
        self.report: str | None = None
        self.contact_sheet: str | None = None
        self.seams: list[dict[str, Any]] = []  # the weakest chained seams, from report_written
        self.seams_scored = 0
        self.order: dict[str, int] = {}  # chunk id -> its place in the plan, from build_started

    def _in_order(self) -> list[tuple[str, tuple[str, dict[str, Any]]]]:
        """The chunks heard of, in plan order (the summary reads the same whichever chunk finished
        first); any the plan's order did not name after them, as they came."""
        known = len(self.order)
        return sorted(self.chunks.items(), key=lambda kv: self.order.get(kv[0], known))

    def event(self, name: str, **f: Any) -> None:
        with self.lock:
            state = {"chunk_done": "rendered", "chunk_cached": "cached", "chunk_failed": "failed",
                     "chunk_skipped": "skipped"}.get(name)
            if state and isinstance(f.get("chunk"), str):
                self.chunks[f["chunk"]] = (state, f)
            elif name == "build_started":
                self.started = f
                self.order = {c: k for k, c in enumerate(f.get("order") or []) if isinstance(c, str)}
            elif name == "build_done":
                self.done = f
            elif name == "warning":
                self.warnings.append(str(f.get("message")))
            elif name == "report_written":
                self.report, self.contact_sheet = str(f.get("report")), str(f.get("contact_sheet"))
                self.seams = [s for s in f.get("seams") or [] if isinstance(s, dict)]
                self.seams_scored = int(f.get("seams_scored") or 0)

    def close(self) -> None:
        pass

    def write(self) -> list[str]:
        """The job summary and the step outputs, once build_done came; what could not be written."""
        if self.done is None:
            return []
        said = (append("GITHUB_STEP_SUMMARY", self.summary() + "\n"),
                append("GITHUB_OUTPUT", output_lines(self.outputs())))
        return [problem for problem in said if problem]

    def outputs(self) -> dict[str, object]:
        """video, report, contact_sheet (each when there is one), cost_usd and the counts."""
        done = self.done or {}
        paths = {"video": done.get("output"), "report": self.report if done.get("output") else None,
                 "contact_sheet": self.contact_sheet if done.get("output") else None}
        return {**{k: v for k, v in paths.items() if v},
                "cost_usd": round(float(done.get("cost_usd") or 0), 6),
                **{k: int(done.get(k) or 0) for k in ("rendered", "cached", "failed", "skipped")}}

    def summary(self) -> str:
        """The build as Markdown for the job summary: its result, the chunks it rendered, failed or
        skipped (a row each) and those it found cached, the files, the warnings."""
        done, started = self.done or {}, self.started or {}
        name = markdown_text(started.get("project") or "project")
        counts = ", ".join(f"{done.get(k) or 0} {k}" for k in ("rendered", "cached", "failed", "skipped"))
        if done.get("output"):
            head = f"**Built** {markdown_text(done['output'])}"
        elif done.get("interrupted"):
            head = f"**Interrupted** ({done.get('to_render', 0)} chunks left to render)"
        else:
            head = "**Build failed**"
        out = [f"### ltxflow build: {name}", "",
               f"{head}: {counts}; {_money(float(done.get('cost_usd') or 0))} spent; "
               f"{float(done.get('seconds') or 0):.1f} s (backend {markdown_text(started.get('backend', '?'))})", ""]
        worked = {c: v for c, v in self._in_order() if v[0] != "cached"}
        if worked:
            out += ["| chunk | result | cost | seconds |", "|---|---|--:|--:|"]
            for chunk, (state, f) in worked.items():
                why = f.get("error") if state == "failed" else f.get("reason") if state == "skipped" else _hosted_note(f)
                result = f"{state}: {markdown_text(why)}" if why else state
                cost = _money(float(f["cost_usd"])) if state == "rendered" else ""
                seconds = f"{float(f['seconds']):.1f}" if state == "rendered" else ""
                out.append(f"| {markdown_text(chunk)} | {result} | {cost} | {seconds} |")
            out.append("")
        cached = [c for c, (state, _) in self._in_order() if state == "cached"]
        if cached:
            out += [f"Cached: {', '.join(markdown_text(c) for c in cached)}", ""]
        out += self._hosted_lines()
        stitch = (done.get("failures") or {}).get("stitch")
        if stitch:
            out += [f"The stitch failed: {markdown_text(stitch)}", ""]
        if done.get("output") and self.report:
            sheet = f"; contact sheet {markdown_text(self.contact_sheet)}" if self.contact_sheet else ""
            out += [f"Report {markdown_text(self.report)}{sheet}", ""]
            out += self._seam_lines()
        if self.warnings:
            out += [f"{len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}:", ""]
            out += [f"- {markdown_text(w)}" for w in self.warnings] + [""]
        return "\n".join(out)

    def _hosted_lines(self) -> list[str]:
        """What was collected from earlier builds' requests and what may have been charged twice."""
        done = [(c, f) for c, (state, f) in self._in_order() if state == "rendered"]
        collected = [c for c, f in done if f.get("collected")]
        doubts = [(c, float(f["possible_duplicate_charge_usd"])) for c, f in done
                  if isinstance(f.get("possible_duplicate_charge_usd"), (int, float))]
        out = []
        if collected:
            out += [f"Collected {len(collected)} fal request{'s' if len(collected) != 1 else ''} that an earlier "
                    f"build submitted (not submitted again): {', '.join(markdown_text(c) for c in collected)}", ""]
        if doubts:
            total = sum(p for _, p in doubts)
            out += [f"**Possible duplicate charges** ({_money(total)} at most): "
                    + ", ".join(f"{markdown_text(c)} ({_money(p)})" for c, p in doubts)
                    + ". An earlier build stopped after sending these submits and before fal's answer was "
                      "recorded, so they were submitted again; fal's dashboard lists the requests it charged.", ""]
        return out

    def _seam_lines(self) -> list[str]:
        """The weakest chained seams the report scored (how many typical frame steps the jump is)."""
        if not self.seams:
            return []
        shown = ", ".join(f"{markdown_text(s.get('before'))} | {markdown_text(s.get('after'))} "
                          f"{float(s.get('score') or 0):.1f} (frame {s.get('frame')})" for s in self.seams)
        return [f"Seams: {self.seams_scored} chained seams scored; weakest first (about 1 is seamless): {shown}", ""]


def _hosted_note(f: dict[str, Any]) -> str | None:
    """A rendered chunk's row note, as plain text: collected, shared or possibly charged twice (None: none)."""
    if isinstance(f.get("possible_duplicate_charge_usd"), (int, float)):
        return f"possible duplicate charge of about ${float(f['possible_duplicate_charge_usd']):,.4f}"
    if f.get("collected"):
        return f"collected request {f['collected']} of an earlier build"
    if f.get("shared_with"):
        return f"shared the request of {f['shared_with']}"
    return None
