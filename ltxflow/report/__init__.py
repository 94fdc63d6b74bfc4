"""The build report: an HTML page and a contact sheet beside the video, made from the plan and the cache.

Importing this package is cheap (the CLI's no-op check names the report's path); the work is done
by write_report, which imports the rest."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from ltxflow.execute.cache import Cache
    from ltxflow.media.encode import Format
    from ltxflow.plan.planner import Plan
    from ltxflow.report.gather import Report


SHEETS_KEPT = 16  # contact sheets kept in the cache's report/sheets/, by content


def spread(count: int, most: int) -> list[int]:
    """Indices of at most `most` of `count` items, spread evenly from the first to the last: all of
    them when they fit. How the contact sheet and the page stay bounded whatever the chunk count."""
    if count <= most:
        return list(range(count))
    if most <= 1:
        return [0][:most]
    return [round(i * (count - 1) / (most - 1)) for i in range(most)]


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    contact: Path


def report_paths(video: Path) -> ReportPaths:
    """Beside a video: <stem>.report.html and <stem>.contact.png."""
    return paths_for_html(video.with_name(f"{video.stem}.report.html"))


def paths_for_html(html: Path) -> ReportPaths:
    """A report written to `html`, its contact sheet beside it: x.report.html or x.html -> x.contact.png."""
    stem = html.name[: -len(html.suffix)] if html.suffix else html.name
    stem = stem[: -len(".report")] if stem.endswith(".report") else stem
    return ReportPaths(html, html.with_name(f"{stem}.contact.png"))


def write_report(plan: Plan, cache: Cache, fmt: Format, video: Path | None, paths: ReportPaths,
                 clips: Mapping[str, Path] | None = None) -> Report:
    """Gather the report (see gather.gather) and write both files, each replacing the old one
    only once it is complete. Raises OSError when a file cannot be written."""
    from ltxflow.report.gather import gather
    from ltxflow.report.page import render_html

    report = gather(plan, cache, fmt, video, clips)
    _write_atomic(paths.contact, _sheet(report, cache.root / "report" / "sheets"))
    _write_atomic(paths.html, render_html(report, paths.contact.name).encode("utf-8"))
    return report


def _sheet(report: Report, store: Path) -> bytes:
    """The contact sheet's PNG: from `store` when a sheet of the same content was drawn before
    (sheet.sheet_key), else drawn and kept there; the store keeps the SHEETS_KEPT latest used."""
    from ltxflow.report.sheet import contact_sheet, sheet_key

    path = store / f"{sheet_key(report)}.png"
    try:
        data = path.read_bytes()
        os.utime(path)  # used now: the last the store lets go
        return data
    except OSError:
        pass
    data = contact_sheet(report)
    try:
        _write_atomic(path, data)
        kept = sorted(store.glob("*.png"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in kept[SHEETS_KEPT:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a store that cannot be written costs the next report a drawing, nothing more
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
