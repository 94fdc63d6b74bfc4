"""YAML loading with positions."""

import pytest

from ltxflow.errors import ProjectError
from ltxflow.project.yamlsrc import load_yaml


def test_positions_of_keys_and_values():
    data, smap = load_yaml("a: 1\nscenes:\n  - id: x\n    end: '0:12'\n", "f.yaml")
    assert data == {"a": 1, "scenes": [{"id": "x", "end": "0:12"}]}
    assert smap.keys[("scenes", 0, "end")] == (4, 5)
    assert smap.values[("scenes", 0, "end")] == (4, 10)
    assert smap.locate(("scenes", 0, "end")) == (4, 5)
    # A path that is not in the file falls back to its nearest ancestor.
    assert smap.locate(("scenes", 0, "missing", 3)) == (3, 5)


def test_duplicate_keys_are_errors():
    with pytest.raises(ProjectError) as exc:
        load_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert str(exc.value) == "f.yaml:3:1: a: duplicate key (first set on line 1)"


def test_merge_keys_and_aliases_work():
    data, _ = load_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "f.yaml")
    assert data["other"] == {"x": 1, "y": 2}


def test_recursive_alias_is_refused():
    with pytest.raises(ProjectError, match="recursive"):
        load_yaml("a: &a\n  b: *a\n", "f.yaml")


def test_empty_document():
    assert load_yaml("", "f.yaml")[0] is None
    assert load_yaml("# only a comment\n", "f.yaml")[0] is None
