"""Load phase: a project file -> a validated Project, or every problem at once as a ProjectError."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from ltxflow.errors import Diagnostic, ProjectError
from ltxflow.project.model import CURRENT_VERSION, Project
from ltxflow.project.yamlsrc import SourceMap, load_yaml

MAX_PROJECT_BYTES = 4 * 1024 * 1024

# Messages for pydantic's type errors that would otherwise name internal classes.
TYPE_MESSAGES = {
    "model_type": "expected a mapping (key: value)", "model_attributes_type": "expected a mapping (key: value)",
    "dict_type": "expected a mapping (key: value)", "list_type": "expected a list",
    "string_type": "expected text", "int_type": "expected a whole number", "float_type": "expected a number",
    "bool_type": "expected true or false", "finite_number": "expected a finite number",
}

# What a field's pattern means, for messages (pydantic would print the regular expression).
PATTERN_HELP = {
    "id": "use lowercase letters, digits, '_' and '-' only",
    "name": "start with a letter or digit; then letters, digits, '.', '_', '-' and spaces",
}

# Upgrades from older format versions: {from_version: function(data) -> data of from_version + 1}.
# Version 1 is the first format, so there is nothing to upgrade yet; a version 2 adds UPGRADES[1].
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class ModelInvalid(ProjectError):
    """The file parsed as YAML but does not fit the model; keeps the data for further checks."""

    def __init__(self, diagnostics: list[Diagnostic], data: Any, source: SourceMap):
        super().__init__(diagnostics)
        self.data = data
        self.source = source


@dataclass(frozen=True)
class LoadedProject:
    """A validated project with where it came from: its file, folder, raw data and YAML positions."""

    project: Project
    path: Path
    source: SourceMap
    data: dict[str, Any]

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def name(self) -> str:
        return self.project.name or self.path.stem

    def diagnostic(self, path: tuple, message: str) -> Diagnostic:
        return self.source.diagnostic(path, message)


def display_name(path: Path) -> str:
    """How a project file is named in messages: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_project(path: str | Path) -> LoadedProject:
    """Read and validate a project file. Raises ProjectError (exit code 2) naming file:line:col."""
    path = Path(path)
    shown = display_name(path)
    try:
        if path.is_dir():
            raise ProjectError.single(shown, "is a folder, not a project file")
        size = path.stat().st_size
        if size > MAX_PROJECT_BYTES:
            raise ProjectError.single(shown, f"project file is {size} bytes; the limit is {MAX_PROJECT_BYTES}")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ProjectError.single(shown, "project file not found") from None
    except UnicodeDecodeError as exc:
        raise ProjectError.single(shown, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ProjectError.single(shown, f"cannot read project file ({exc.strerror})") from None
    data, smap = load_yaml(text, shown)
    project = validate_data(data, smap)
    return LoadedProject(project, path, smap, data)


def validate_data(data: Any, smap: SourceMap) -> Project:
    """The Project in `data` (upgraded to the current version). Raises ProjectError."""
    if data is None:
        raise ProjectError([smap.diagnostic((), "empty project file; it needs at least version, audio and scenes")])
    if not isinstance(data, dict):
        raise ProjectError([smap.diagnostic((), f"a project file is a mapping of keys, not a {type(data).__name__}")])
    data = upgrade(data, smap)
    try:
        return Project.model_validate(data)
    except ValidationError as exc:
        raise ModelInvalid(_diagnostics(exc, smap), data, smap) from None


def upgrade(data: dict[str, Any], smap: SourceMap) -> dict[str, Any]:
    """Bring an older format version up to CURRENT_VERSION through the explicit UPGRADES steps."""
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return data  # the model reports it, together with every other problem
    if version > CURRENT_VERSION:
        raise ProjectError([smap.diagnostic(
            ("version",), f"format version {version} is newer than this ltxflow reads ({CURRENT_VERSION}); "
                          "upgrade ltxflow")])
    while version < CURRENT_VERSION:
        data = UPGRADES[version](data)
        version += 1
        data["version"] = version
    return data


def _model_at(loc: tuple, root: type[BaseModel] = Project) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at `loc` (for did-you-mean suggestions)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _diagnostics(exc: ValidationError, smap: SourceMap) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: set[tuple] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "lax-"))))
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(loc[:-1])
            name = str(loc[-1])
            msg = f"unknown key '{name}'"
            if parent is not None:
                close = difflib.get_close_matches(name, list(parent.model_fields), n=1, cutoff=0.6)
                if close:
                    msg += f" (did you mean '{close[0]}'?)"
            out.append(smap.diagnostic(loc, msg))
            continue
        if kind == "missing":
            msg = f"required key '{loc[-1]}' is missing"
            line, col = smap.locate(loc[:-1])
            out.append(Diagnostic(smap.file, loc, msg, line, col))
            continue
        ctx = err.get("ctx") or {}
        msg = str(ctx["error"]) if kind == "value_error" and "error" in ctx else TYPE_MESSAGES.get(kind, err["msg"])
        if kind == "string_pattern_mismatch" and loc and loc[-1] in PATTERN_HELP:
            msg = PATTERN_HELP[str(loc[-1])]
        if "input" in err and kind not in ("value_error",) and _short(err["input"]):
            msg += f" (got {err['input']!r})"
        # A union reports one error per member; keep the first for each field.
        if (loc, kind) in seen:
            continue
        seen.add((loc, kind))
        out.append(smap.diagnostic(loc, msg))
    return out


def _short(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) and len(repr(value)) <= 60
