"""Safe YAML loading that remembers where every key and value came from (line, column)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ltxflow.errors import Diagnostic, FieldPath, ProjectError

# Project files arrive in pull requests: bound how much an alias bomb can expand.
MAX_NODES = 200_000
MAX_DEPTH = 64
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


@dataclass
class SourceMap:
    """Positions (1-based line, column) of the keys and values of a loaded YAML document."""

    file: str
    keys: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)
    values: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: FieldPath) -> tuple[int | None, int | None]:
        """Position of `path`'s key, else of its value, else of its nearest ancestor's.
        Keys first: a block list or mapping starts on the line after its key."""
        p = tuple(path)
        while True:
            for t in (self.keys, self.values):
                if p in t:
                    return t[p]
            if not p:
                return None, None
            p = p[:-1]

    def diagnostic(self, path: FieldPath, message: str) -> Diagnostic:
        line, col = self.locate(path)
        return Diagnostic(self.file, tuple(path), message, line, col)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, smap: SourceMap):
        self.loader = loader
        self.smap = smap
        self.errors: list[Diagnostic] = []
        self.count = 0
        self.stack: set[int] = set()

    def convert(self, node: yaml.Node, path: FieldPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            top = path[:1]  # aliased nodes carry their anchor's position: name the top-level key instead
            raise ProjectError([self.smap.diagnostic(
                top, f"document too large (over {MAX_NODES} nodes after expanding aliases)")])
        if id(node) in self.stack:
            raise ProjectError([self.smap.diagnostic(path, "recursive YAML alias")])
        if len(path) > MAX_DEPTH:
            line, col = _mark(node)
            field = path[:4]  # where it starts to nest; the full path would be hundreds of [0]
            raise ProjectError([Diagnostic(self.smap.file, field, f"nested deeper than {MAX_DEPTH} levels", line, col)])
        self.smap.values.setdefault(path, _mark(node))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            line, col = _mark(node)
            self.errors.append(Diagnostic(self.smap.file, path, f"YAML tag {node.tag} is not allowed", line, col))
            return None
        if isinstance(node, yaml.MappingNode):
            self.stack.add(id(node))
            self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                key = self.loader.construct_object(knode, deep=True) if isinstance(knode, yaml.ScalarNode) else None
                if not isinstance(key, str):
                    line, col = _mark(knode)
                    shown = repr(key) if isinstance(knode, yaml.ScalarNode) else "a collection"
                    self.errors.append(Diagnostic(self.smap.file, path, f"keys must be text, not {shown}", line, col))
                    continue
                kpath = path + (key,)
                if key in out:
                    line, col = _mark(knode)
                    first = self.smap.keys.get(kpath, (None, None))[0]
                    self.errors.append(Diagnostic(
                        self.smap.file, kpath, f"duplicate key (first set on line {first})", line, col))
                    continue
                self.smap.keys[kpath] = _mark(knode)
                out[key] = self.convert(vnode, kpath)
            self.stack.discard(id(node))
            return out
        if isinstance(node, yaml.SequenceNode):
            self.stack.add(id(node))
            items = [self.convert(child, path + (i,)) for i, child in enumerate(node.value)]
            self.stack.discard(id(node))
            return items
        return self.loader.construct_object(node, deep=True)


def load_yaml(text: str, file: str | Path) -> tuple[Any, SourceMap]:
    """Parse one YAML document safely; return its data and a SourceMap.

    Raises ProjectError for syntax errors, duplicate keys and recursive or exploding aliases.
    """
    smap = SourceMap(str(file))
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ProjectError([Diagnostic(str(file), (), "YAML nested too deeply")]) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or str(exc)
            if exc.context:
                problem = f"{exc.context}, {problem}" if exc.problem else exc.context
            line = mark.line + 1 if mark else None
            col = mark.column + 1 if mark else None
            raise ProjectError([Diagnostic(str(file), (), f"YAML syntax error: {problem}", line, col)]) from None
        except yaml.YAMLError as exc:
            raise ProjectError([Diagnostic(str(file), (), f"YAML error: {exc}")]) from None
        if node is None:
            return None, smap
        conv = _Converter(loader, smap)
        try:
            data = conv.convert(node, ())
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            raise ProjectError([Diagnostic(
                str(file), (), f"YAML error: {exc.problem}",
                mark.line + 1 if mark else None, mark.column + 1 if mark else None)]) from None
        if conv.errors:
            raise ProjectError(conv.errors)
        return data, smap
    finally:
        loader.dispose()
