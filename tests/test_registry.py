"""The backend registry (ltxflow/registry.py): one line per backend, read by the CLI, the project
model, resolve, plan and cache gc; a backend is one module and that line."""

from __future__ import annotations

import json

from ltxflow.backends import backend_class
from ltxflow.backends.base import Backend, BackendContext
from ltxflow.backends.testing import TestBackend
from ltxflow.cli import main
from ltxflow.registry import BACKENDS, PROJECT_BACKENDS, BackendSpec
from test_build import make_project


class EchoBackend(TestBackend):
    """A backend added the documented way: this class, and one registry line (in the test below)."""

    name = "echo"

    @classmethod
    def create(cls, ctx: BackendContext) -> "EchoBackend":
        return cls(stop=ctx.stop)


def test_every_line_names_a_backend_class_of_that_name():
    assert set(BACKENDS) == {"preview", "fal", "local", "test"} and "test" not in PROJECT_BACKENDS
    for name, spec in BACKENDS.items():
        cls = backend_class(name)
        assert Backend in cls.__mro__ and cls.name == name, name
        assert cls.create is not Backend.create, f"{name} does not say how a build makes it"


def test_a_backend_is_one_module_and_one_registry_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(BACKENDS, "echo", BackendSpec("echo", "test_registry:EchoBackend", priced=True))
    monkeypatch.setenv("LTXFLOW_CACHE_DIR", str(tmp_path / "cache"))
    project = make_project(tmp_path)
    # The CLI offers it, plan prices it as its line says, and a build makes it and renders with it.
    assert main(["plan", str(project), "--backend", "echo", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["backend"] == "echo" and plan["totals"]["cost_now_usd"] == plan["totals"]["hosted_cost_usd"] > 0
    assert main(["build", str(project), "--backend", "echo", "--max-cost", "1000", "--log-format", "json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    started = [e for e in events if e["event"] == "build_started"]
    assert started[0]["backend"] == "echo" and started[0]["to_render"] == len(plan["chunks"])
    # A project file may not name it unless its line says so (the model reads the registry when
    # ltxflow starts): a typo'd or CLI-only backend is a diagnostic, not a traceback.
    project.write_text(project.read_text().replace("resolution: 128x64", "resolution: 128x64\nbackend: echo"))
    assert main(["validate", str(project)]) == 2
    assert "backend" in capsys.readouterr().err
