"""Every error ltxflow reports, and the exit codes the CLI returns for them (one map).

    LtxflowError (1)                       base of everything a user is told; (the exit code)
    ├── ProjectError (2)                   the project file or media it names is invalid: every
    │   │                                  Diagnostic (file:line:col: field: message) at once
    │   └── project.load.ModelInvalid      the file does not match the model (pydantic)
    ├── BuildArgumentError (2)             the command line asks for something impossible
    ├── MediaError (2)                     a media file is missing, unreadable, undecodable
    ├── ColorReferenceError (2)            a colour reference image cannot be read
    ├── BackendUnavailable (2)             no backend of that name
    ├── LocalSetupError (2)                backend local lacks its pipelines or weights
    ├── FfmpegNotFound (3)                 no working ffmpeg
    ├── FfmpegFailed (1)                   an ffmpeg run failed (its error output's end)
    ├── BackendError (1)                   one chunk could not be rendered; `transient`
    ├── FalError (1)                       fal answered with an error or not at all; `status`,
    │   ├── FalAuthError (2)               `transient`; the key is missing or refused
    │   └── SubmitLost (1)                 a submit's answer never came (maybe billed)
    ├── CacheInUse (1)                     another hosted build holds the cache's journal
    ├── CacheRefused (2)                   the cache folder is not ltxflow's own: a symbolic
    │                                      link, or another user's folder
    ├── StitchFailed (1)                   the chunks are cached; the stitch failed
    ├── Stopped (130)                      work in progress gave up: the build is stopping
    └── Interrupted (130)                  the build stopped (Ctrl-C; the CLI returns 143 for
                                           SIGTERM) and says what is cached

Transient failures are retried in one layer per concern: an HTTP request to fal, by the fal
client (backends/falapi.py: 429, 5xx, timeouts, with backoff); a chunk, by the build
(execute/chunkwork.py) when the backend raises BackendError(transient=True) or its is_transient()
says so. Nothing else retries.

Internal signals that never reach a user: media.audiodecode.CannotDecode (the next decoder is
tried), media.songlimits.TooLong (probe turns it into a MediaError naming the limit),
project.paths.PathRefused (becomes a Diagnostic), execute.executor.Cancelled (the DAG
stopped; build turns it into Interrupted), backends.falapi._Retry (a request to try again).

Diagnostics: every user-facing problem with the input names a file, a line and column, and a field path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

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
        text = f"{where}: {field}: {self.message}" if self.path else f"{where}: {self.message}"
        return printable(text, newlines=False)  # one line, whatever the file's keys and values hold


EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_NO_FFMPEG = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + the signal: SIGINT (Ctrl-C), SIGTERM (a CI cancel)


class LtxflowError(Exception):
    """Base of every error ltxflow reports to a user; `exit_code` is what the CLI returns."""

    exit_code = EXIT_FAILED


class Stopped(LtxflowError):
    """The build is stopping (Ctrl-C, SIGTERM): work in progress gave up when it saw the stop."""

    exit_code = EXIT_INTERRUPTED


class Interrupted(LtxflowError):
    """The build stopped before it finished; the message says what is cached and what is left."""

    exit_code = EXIT_INTERRUPTED


class BuildArgumentError(LtxflowError):
    exit_code = EXIT_INVALID


class StitchFailed(LtxflowError):
    """Every chunk is cached, but the stitch failed: the next build only stitches."""


class MediaError(LtxflowError):
    """A media file is missing, unreadable or cannot be decoded."""

    exit_code = EXIT_INVALID


class ColorReferenceError(LtxflowError):
    """A colour reference image cannot be read (the chunk fails; its raw clip stays cached)."""

    exit_code = EXIT_INVALID


class FfmpegNotFound(LtxflowError):
    exit_code = EXIT_NO_FFMPEG


class FfmpegFailed(LtxflowError):
    """An ffmpeg run failed; the message carries the end of its error output."""


class BackendUnavailable(LtxflowError):
    exit_code = EXIT_INVALID


class LocalSetupError(LtxflowError):
    exit_code = EXIT_INVALID


class BackendError(LtxflowError):
    """A chunk could not be rendered. `transient` errors are retried with backoff."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class FalError(LtxflowError):
    """fal answered with an error, or could not be reached. `status` is the HTTP status (None when
    no answer came); `transient` says whether trying again later may succeed."""

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None, transient: bool = False):
        super().__init__(message)
        self.status, self.detail, self.transient = status, detail, transient


class FalAuthError(FalError):
    exit_code = EXIT_INVALID


class SubmitLost(FalError):
    """A submit was sent but its answer never came: fal may or may not have queued (and billed) it."""


class CacheInUse(LtxflowError):
    """Another hosted build (its pid and project named) holds the cache's journal: two builds of
    one cache would each submit, and pay for, the same chunks."""


class CacheRefused(LtxflowError):
    """The cache folder is not ltxflow's own (a symbolic link, a link inside it, another user's
    folder): nothing is read or written there. The message says what to do."""

    exit_code = EXIT_INVALID


class ProjectError(LtxflowError):
    """The project file (or media it names) is invalid. Carries every diagnostic found at once."""

    exit_code = EXIT_INVALID

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = sorted(
            diagnostics, key=lambda d: (d.file, d.line or 0, d.column or 0, d.message)
        )
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    @classmethod
    def single(cls, file: str | Path, message: str, path: FieldPath = (), line: int | None = None,
               column: int | None = None) -> "ProjectError":
        return cls([Diagnostic(str(file), path, message, line, column)])


# What a terminal would act on rather than show: C0 controls but tab and newline (ESC starts escape
# sequences, CR rewrites the line, BEL rings), DEL, C1 controls (0x9b is a one-byte CSI), the bidi
# controls that reorder what follows (Trojan Source) and the Unicode line and paragraph separators.
_UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    o = ord(m.group())
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def printable(text: object, *, newlines: bool = True) -> str:
    """`text` as a terminal should show it: every control character written out (ESC as \\x1b, a
    right-to-left override as \\u202e); newlines kept unless not `newlines` (then \\n). For text
    that comes from a project file or a server: names, paths, messages, log lines."""
    out = _UNSHOWN.sub(_escape, str(text))
    return out if newlines else out.replace("\n", "\\n")
