"""`ltxflow cache gc`: it keeps every entry a project references, whatever backend made it; a dry
run removes nothing; a project it cannot read stops it unless forced. Through the real CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ltxflow.fakefal import FakeFal

from test_build import build_json, ltx, make_project
from test_fal import fal_env

pytestmark = pytest.mark.slow  # three builds, and gc plans every project for each backend


def records(cache: Path) -> dict[Path, dict]:
    """The cache's entries (chunks/<key[:2]>/<key>/record.json) and their records."""
    return {p.parent: json.loads(p.read_text()) for p in (cache / "chunks").glob("*/*/record.json")}


def keys_on_disk(cache: Path) -> set[str]:
    return {entry.name for entry in records(cache)}


def everything(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))


def plan_keys(project: Path, backend: str) -> set[str]:
    r = ltx("plan", str(project), "--backend", backend, "--json", cwd=project.parent, check=True)
    return {c["key"] for c in json.loads(r.stdout)["chunks"]}


def gc(root: Path, *extra: str):
    return ltx("cache", "gc", str(root), "--cache-dir", str(root / "cache"), *extra, cwd=root)


def drop_outro(project: Path) -> None:
    """The outro scene goes and the verse runs to the end: the outro's entries, and the verse's
    last ones, are referenced no more."""
    project.write_text(project.read_text().split("  - id: outro")[0].replace("end: 4.5", ""))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A project built on the test, preview and fal (the fake server) backends, and a local entry
    for each of its chunks (the local backend needs a GPU's weights: a built clip is committed
    under each local key instead). A copy of this folder is given to each test."""
    root = tmp_path_factory.mktemp("gc")
    project = make_project(root)
    # Scenes every backend can render: backend local has no camera moves.
    project.write_text(project.read_text().replace("    camera: dolly_in\n", ""))
    build_json(project, "--backend", "test")
    build_json(project, "--backend", "preview")
    with FakeFal() as fake:
        build_json(project, "--backend", "fal", env=fal_env(fake))
    made = {r["chunk"]: entry for entry, r in records(root / "cache").items() if r["backend"] == "test"}
    plan = json.loads(ltx("plan", str(project), "--backend", "local", "--json", cwd=root, check=True).stdout)
    for c in plan["chunks"]:
        entry = root / "cache" / "chunks" / c["key"][:2] / c["key"]
        shutil.copytree(made[c["id"]], entry)
        record = json.loads((entry / "record.json").read_text())
        (entry / "record.json").write_text(json.dumps({**record, "key": c["key"], "backend": "local"}))
    return root


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "p")
    return tmp_path / "p"


BACKENDS = ("test", "preview", "fal", "local")


def test_every_backends_entries_are_kept_while_the_project_references_them(root):
    project = root / "song.yaml"
    by_backend = {b: plan_keys(project, b) for b in BACKENDS}
    on_disk = keys_on_disk(root / "cache")
    for backend, keys in by_backend.items():  # each backend's chunks have entries of their own
        assert keys and keys <= on_disk, backend
    assert all(not (by_backend[a] & by_backend[b]) for a in BACKENDS for b in BACKENDS if a < b)
    r = gc(root)
    assert r.returncode == 0, r.stderr
    assert "removed 0 entries" in r.stdout
    assert keys_on_disk(root / "cache") == on_disk
    # Rebuilding on the test backend finds every chunk still cached.
    _, evs = build_json(project, "--backend", "test")
    assert [e for e in evs if e["event"] == "chunk_started"] == []


def test_dry_run_reports_and_removes_nothing(root):
    project = root / "song.yaml"
    cache = root / "cache"
    before = keys_on_disk(cache)
    stale = cache / "tmp" / "abc-999999-deadbeef"  # a work folder of a build that died
    stale.mkdir(parents=True)
    drop_outro(project)
    kept = before & {k for b in BACKENDS for k in plan_keys(project, b)}  # the intro's and the verse's first
    gone = before - kept
    assert kept and gone
    files = everything(cache)
    r = gc(root, "--dry-run")
    assert r.returncode == 0, r.stderr
    said = re.search(r"would remove (\d+) entries and (\d+) stale files", r.stdout)
    assert said and int(said[1]) == len(gone) and int(said[2]) >= 1, r.stdout  # the dead build's folder at least
    assert everything(cache) == files  # not a file removed
    r = gc(root)
    assert r.returncode == 0, r.stderr
    assert f"removed {said[1]} entries and {said[2]} stale files" in r.stdout  # what the dry run said
    assert keys_on_disk(cache) == kept and not stale.exists()


def test_an_unreadable_project_stops_gc_unless_forced(root):
    project = root / "song.yaml"
    cache = root / "cache"
    before = keys_on_disk(cache)
    drop_outro(project)
    kept = before & {k for b in BACKENDS for k in plan_keys(project, b)}
    assert kept and kept != before
    # Another project beside it that cannot be read: its entries cannot be told from garbage.
    (root / "other.yaml").write_text("version: 1\naudio: media/song.wav\nscenes:\n  - {id: a, prompt: p, stepz: 3}\n")
    files = everything(cache)
    r = gc(root)
    assert r.returncode != 0
    assert "other.yaml" in r.stderr and "--force" in r.stderr and r.stdout == ""
    assert everything(cache) == files
    r = gc(root, "--dry-run")  # a dry run refuses too: it could not say what would go
    assert r.returncode != 0 and everything(cache) == files
    r = gc(root, "--force")
    assert r.returncode == 0, r.stderr
    assert "cannot read" in r.stderr and "other.yaml" in r.stderr
    assert f"removed {len(before - kept)} entries" in r.stdout
    assert keys_on_disk(cache) == kept
