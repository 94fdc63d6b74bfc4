"""Build progress through one injected reporter: a live display for people, JSON lines for CI,
plain lines with workflow commands for GitHub Actions."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

from ltxflow import github
from ltxflow.errors import printable
from ltxflow.events import problems

# The events and their fields: ltxflow/events.py (the contract, checked by tests/test_events.py).


class Reporter(Protocol):
    def event(self, name: str, **fields: Any) -> None: ...

    def close(self) -> None: ...


class JsonReporter:
    """One JSON object per line, each with `event` and `t` (seconds since the build started)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def event(self, name: str, **fields: Any) -> None:
        line = json.dumps({"event": name, "t": round(time.monotonic() - self.t0, 3), **fields}, default=str)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        pass


class TextReporter:
    """Plain lines for logs and terminals; `quiet` keeps only warnings, failures and the result."""

    LOUD = {"warning", "chunk_failed", "chunk_skipped", "build_done"}

    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.counts = {"done": 0, "cached": 0, "failed": 0, "skipped": 0}
        self.total = 0

    def event(self, name: str, **f: Any) -> None:
        if self.quiet and name not in self.LOUD:
            return
        with self.lock:  # _line updates the counts: one event at a time
            lines = self._lines(name, f)
            if lines:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()

    def _lines(self, name: str, f: dict[str, Any]) -> list[str]:
        """What an event prints: its line, or the whole event when it breaks its contract."""
        line = self._line(name, f) if not problems(name, f) else _whole(name, f, time.monotonic() - self.t0)
        return [shown(line)] if line else []

    def _line(self, name: str, f: dict[str, Any]) -> str | None:
        el = f"[{time.monotonic() - self.t0:6.1f}s]"
        if name == "build_started":
            self.total = f["chunks"]
            why = f"; {describe(f['stale'])}" if f.get("stale") else ""
            return (f"{el} building {f['project']}: {f['chunks']} chunks, {f['to_render']} to render, "
                    f"{f['cached']} cached (backend {f['backend']}, {f['jobs']} jobs{why})")
        if name == "chunk_cached":
            self.counts["cached"] += 1
            return None
        if name == "chunk_started":
            return f"{el} rendering {f['chunk']}"
        if name == "chunk_done":
            self.counts["done"] += 1
            n = self.counts["done"] + self.counts["cached"]
            return f"{el} done {f['chunk']} in {f['seconds']:.1f}s ({n}/{self.total}){self._eta(n)}"
        if name == "chunk_retry":
            return f"{el} retrying {f['chunk']} in {f['delay_s']}s (attempt {f['attempt']}): {f['error']}"
        if name == "chunk_failed":
            self.counts["failed"] += 1
            return f"{el} FAILED {f['chunk']}: {f['error']}"
        if name == "chunk_skipped":
            self.counts["skipped"] += 1
            return f"{el} skipped {f['chunk']}: {f['reason']}"
        if name == "warning":
            return f"{el} warning: {f['message']}"
        if name == "chunk_submitted":
            return f"{el} submitted {f['chunk']} to {f['endpoint']} (request {f['request_id']})"
        if name == "chunk_resumed":
            return f"{el} {f['chunk']}: following request {f['request_id']}, submitted by an earlier build"
        if name == "chunk_queue" and f["status"] != "COMPLETED":
            where = f"in queue, position {f['queue_position']}" if f["status"] == "IN_QUEUE" else "running"
            return f"{el} {f['chunk']}: {where}"
        if name == "chunk_log":
            return f"{el} {f['chunk']}: {f['message']}"
        if name == "fal_retry":
            return f"{el} {f['what']}: retrying in {f['delay_s']}s (try {f['attempt'] + 1}): {f['error']}"
        if name == "stitch_done":
            if f.get("skipped"):
                return f"{el} {f['output']} is up to date"
            fades = f", {f['crossfades']} crossfades" if f.get("crossfades") else ""
            return f"{el} stitched {f['output']}: {f['frames']} frames{fades} in {f['seconds']:.2f}s"
        if name == "report_written":
            return f"{el} report: {f['report']} (contact sheet {f['contact_sheet']})"
        if name == "build_done":
            return None if self.quiet and not f.get("failed") else self._summary(f)
        return None

    def _eta(self, n: int) -> str:
        rendered = self.counts["done"]
        left = self.total - n
        if not rendered or not left:
            return ""
        per = (time.monotonic() - self.t0) / rendered
        return f", about {per * left:.0f}s left"

    def _summary(self, f: dict[str, Any]) -> str:
        parts = [f"{f['rendered']} rendered", f"{f['cached']} cached"]
        if f.get("failed"):
            parts.append(f"{f['failed']} failed")
        if f.get("skipped"):
            parts.append(f"{f['skipped']} skipped")
        head = "build failed" if f.get("failed") else "built"
        where = f": {f['output']}" if f.get("output") and not f.get("failed") else ""
        return f"{head}{where} ({', '.join(parts)}; ${f.get('cost_usd', 0):.2f} spent; {f['seconds']:.1f}s)"

    def close(self) -> None:
        pass


class GithubReporter(TextReporter):
    """The text reporter's lines for a GitHub Actions log, on stdout where the runner reads workflow
    commands: the chunks, the stitch and the report each in a collapsible group, warnings and
    failed chunks as annotations (on the project file's line when a warning names one). `project`
    is the project file as given; `workspace` is GITHUB_WORKSPACE (None: paths as given)."""

    # The events that begin a phase (a group); every other event stays in the open one.
    PHASES = {"build_started": "chunks", "stitch_done": "stitch", "report_written": "report", "build_done": None}

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, project: str | None = None,
                 workspace: str | None = None):
        super().__init__(stream or sys.stdout, quiet)
        self.project, self.workspace = project, workspace
        self.group: str | None = None

    def _lines(self, name: str, f: dict[str, Any]) -> list[str]:
        text = [github.inert(part) for line in super()._lines(name, f) for part in line.split("\n")]
        if problems(name, f):
            return text
        if name == "build_started":  # the build's headline, then the chunks' group
            return text + self._enter(name, f)
        return self._enter(name, f) + text + self._annotations(name, f)

    def _enter(self, name: str, f: dict[str, Any]) -> list[str]:
        if name not in self.PHASES or self.quiet:
            return []
        out = [github.command("endgroup")] if self.group else []
        self.group = self.PHASES[name]
        if self.group == "chunks":
            out.append(github.command("group", f"chunks: {f['to_render']} to render, {f['cached']} cached"))
        elif self.group:
            out.append(github.command("group", self.group))
        return out

    def _annotations(self, name: str, f: dict[str, Any]) -> list[str]:
        if name == "warning":
            return [github.warning_command(f["message"], self.project, self.workspace, f.get("chunk"))]
        if name == "chunk_failed":
            return [github.command("error", f["error"], title=f"ltxflow: {f['chunk']} failed")]
        return []

    def close(self) -> None:
        with self.lock:
            if self.group:  # a build that stopped between phases
                self.stream.write(github.command("endgroup") + "\n")
                self.stream.flush()
                self.group = None


class Tee:
    """Every event to each of `reporters` in turn (a printing one and github.BuildRecord)."""

    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def event(self, name: str, **fields: Any) -> None:
        for r in self.reporters:
            r.event(name, **fields)

    def close(self) -> None:
        for r in self.reporters:
            r.close()


class RichReporter(TextReporter):
    """A live progress bar with the chunk counts, for a terminal; log lines print above it."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__(stream)
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.console = Console(file=self.stream)
        self.escape = escape  # the bar's description is read as markup: a file stem's "[red]" is text
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self.task = None
        self.rendering: set[str] = set()
        self.waiting: set[str] = set()  # chunks waiting in a hosted queue

    def event(self, name: str, **f: Any) -> None:
        with self.lock:
            if problems(name, f):  # not what the contract says: shown whole, nothing else
                self.console.print(shown(_whole(name, f, time.monotonic() - self.t0)), markup=False, highlight=False)
                return
            line = self._line(name, f)
            if name == "build_started":
                self.progress.start()
                self.task = self.progress.add_task(self.escape(shown(f"{f['project']}")), total=f["chunks"], status="")
            if name == "chunk_started":
                self.rendering.add(f["chunk"])
            if name in ("chunk_done", "chunk_failed"):
                self.rendering.discard(f["chunk"])
                self.waiting.discard(f["chunk"])
            if name == "chunk_queue":  # shown as a count, not a line per poll
                (self.waiting.add if f["status"] == "IN_QUEUE" else self.waiting.discard)(f["chunk"])
            if self.task is not None and name in ("chunk_cached", "chunk_done", "chunk_failed", "chunk_skipped"):
                self.progress.advance(self.task)
            if self.task is not None:
                c = self.counts
                queued = self.total - sum(c.values()) - len(self.rendering)
                remote = f" ({len(self.waiting)} in the backend's queue)" if self.waiting else ""
                self.progress.update(self.task, status=f"{queued} queued, {c['cached']} cached, "
                                                       f"{len(self.rendering)} rendering{remote}, "
                                                       f"{c['done']} done, {c['failed']} failed"
                                                       + (f", {c['skipped']} skipped" if c["skipped"] else ""))
            if line and name not in ("chunk_started", "chunk_done", "chunk_queue", "chunk_log"):
                self.console.print(shown(line), markup=False, highlight=False)
            if name == "build_done":
                self.progress.stop()

    def close(self) -> None:
        self.progress.stop()


def describe(why: dict[str, str]) -> str:
    """A person's words for why a build runs at all (uptodate.check's reason, build_started's `stale`)."""
    return {"no-stamp": "no build with these options yet", "version": "last built by another ltxflow version",
            "project": "the project file changed", "file": f"{Path(str(why.get('file', '?'))).name} changed",
            "report": "its report is gone"}.get(str(why.get("reason", "")), "something changed")


def shown(line: str) -> str:
    """A line for a terminal: control characters from project files and servers (scene ids, paths,
    fal's log lines, error text) written out visibly (errors.printable), and the lines after the
    first of a multi-line message indented, so no text of theirs passes for a line of ltxflow's."""
    return printable(line).replace("\n", "\n    ")


def _whole(name: str, f: dict[str, Any], elapsed: float) -> str:
    """An event that does not keep its contract (events.py), shown as it came rather than lost."""
    return f"[{elapsed:6.1f}s] {name} {json.dumps(f, default=str)}"


def make_reporter(log_format: str, quiet: bool, stream: TextIO | None = None, *, project: str | None = None,
                  workspace: str | None = None) -> Reporter:
    """text, json or github (see GithubReporter for `project` and `workspace`)."""
    if log_format == "json":
        return JsonReporter(stream or sys.stdout)
    if log_format == "github":
        return GithubReporter(stream or sys.stdout, quiet, project=project, workspace=workspace)
    err = stream or sys.stderr
    if not quiet and err.isatty():
        return RichReporter(err)
    return TextReporter(err, quiet=quiet)


def build_reporter(log_format: str, quiet: bool, project: str) -> tuple[Reporter, github.BuildRecord | None]:
    """A build's reporter (make_reporter) and, when GitHub Actions asks for a job summary or step
    outputs, the github.BuildRecord that hears its events too (else None)."""
    reporter = make_reporter(log_format, quiet, project=project, workspace=os.environ.get("GITHUB_WORKSPACE"))
    if not (os.environ.get("GITHUB_STEP_SUMMARY") or os.environ.get("GITHUB_OUTPUT")):
        return reporter, None
    record = github.BuildRecord()
    return Tee(reporter, record), record
