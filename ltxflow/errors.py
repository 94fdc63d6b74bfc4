"""Diagnostics: every user-facing error names a file, a line and column, and a field path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

# A field path as pydantic reports it: ("scenes", 2, "end").
FieldPath = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """('scenes', 2, 'end') -> 'scenes[2].end'; () -> '<root>'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


@dataclass(frozen=True)
class Diagnostic:
    """One problem with the input. line and column are 1-based; None when unknown."""

    file: str
    path: FieldPath
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = format_path(self.path)
        return f"{where}: {field}: {self.message}" if self.path else f"{where}: {self.message}"


class LtxflowError(Exception):
    """Base of every error ltxflow reports to a user; `exit_code` is what the CLI returns."""

    exit_code = 1


class Stopped(LtxflowError):
    """The build is stopping (Ctrl-C, SIGTERM): work in progress gave up when it saw the stop."""

    exit_code = 130


class ProjectError(LtxflowError):
    """The project file (or media it names) is invalid. Carries every diagnostic found at once."""

    exit_code = 2

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = sorted(
            diagnostics, key=lambda d: (d.file, d.line or 0, d.column or 0, d.message)
        )
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    @classmethod
    def single(cls, file: str | Path, message: str, path: FieldPath = (), line: int | None = None,
               column: int | None = None) -> "ProjectError":
        return cls([Diagnostic(str(file), path, message, line, column)])
