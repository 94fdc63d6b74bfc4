"""The GitHub Actions recipe: action.yml (the composite action) and the workflows in examples/github/.

actionlint checks the workflows, laid out as a repository that holds the action (so `uses: ./` is
checked against action.yml's inputs), and the action's own steps, copied into a reusable workflow
(actionlint reads composite actions only for their inputs). ShellCheck, when installed, checks
every `run:` script through it. The rest are the rules actionlint does not know: pinned actions,
no expression inside a script, the key never an input nor echoed, the cache saved whatever happens,
the write token only where it is needed, a paid render never cancelled."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

ACTION = REPO / "action.yml"
WORKFLOWS = sorted((REPO / "examples" / "github").glob("*.yml")) + sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
# actions/checkout@v7, or a full commit SHA; a branch (@main) or a minor tag is not a pin we keep.
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+|[0-9a-f]{40})$")
KEY_NAMES = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET")


def _load(path: Path) -> dict:
    # PyYAML reads a bare `on:` key as True (YAML 1.1); the workflows' triggers are under it.
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def _actionlint() -> str:
    found = Path(sys.executable).parent / "actionlint"
    path = str(found) if found.exists() else shutil.which("actionlint")
    assert path, "actionlint is missing: it comes with the test extra (pip install -c constraints.txt -e '.[test]')"
    return path


def _action_steps() -> list[dict]:
    return _load(ACTION)["runs"]["steps"]


def _workflow_steps() -> list[tuple[Path, str, dict]]:
    return [(wf, name, step) for wf in WORKFLOWS for name, job in _load(wf)["jobs"].items()
            for step in job.get("steps", [])]


def test_there_are_workflows_to_check():
    names = {wf.name for wf in WORKFLOWS}
    assert {"plan-on-pull-request.yml", "render.yml"} <= names


def test_actionlint_passes_on_the_workflows(tmp_path):
    # A repository with the action at its root: actionlint finds the project by its .git folder
    # and then checks each `uses: ./` step's inputs against action.yml.
    (tmp_path / ".git").mkdir()
    flows = tmp_path / ".github" / "workflows"
    flows.mkdir(parents=True)
    shutil.copy(ACTION, tmp_path / "action.yml")
    for wf in WORKFLOWS:
        shutil.copy(wf, flows / wf.name)
    r = subprocess.run([_actionlint(), "-no-color"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_actionlint_passes_on_the_actions_steps(tmp_path):
    """The composite action's steps as a reusable workflow with the same inputs and outputs:
    expressions, the inputs and outputs of the actions it uses, and its scripts get checked."""
    action = _load(ACTION)
    inputs = {name: {"type": "string", "required": bool(spec.get("required", False)),
                     **({"default": spec["default"]} if "default" in spec else {})}
              for name, spec in action["inputs"].items()}
    outputs = {name: spec["value"] for name, spec in action["outputs"].items()}
    steps = [{k: v for k, v in step.items()} for step in action["runs"]["steps"]]
    workflow = {"name": "action.yml's steps", "on": {"workflow_call": {"inputs": inputs}},
                "permissions": {"contents": "read"},
                "jobs": {"action": {"runs-on": "ubuntu-24.04", "outputs": outputs, "steps": steps}}}
    (tmp_path / ".git").mkdir()
    flows = tmp_path / ".github" / "workflows"
    flows.mkdir(parents=True)
    (flows / "action.yml").write_text(yaml.safe_dump(workflow, sort_keys=False))
    r = subprocess.run([_actionlint(), "-no-color"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_action_is_composite_with_a_shell_on_every_script():
    action = _load(ACTION)
    assert action["runs"]["using"] == "composite"
    for step in _action_steps():
        assert ("run" in step) != ("uses" in step), step.get("name")
        if "run" in step:
            assert step.get("shell") == "bash", f"{step.get('name')}: a run step of a composite action needs shell:"


@pytest.mark.parametrize("where", ["action", "workflows"])
def test_every_action_used_is_pinned(where):
    steps = ([(ACTION, "", s) for s in _action_steps()] if where == "action" else _workflow_steps())
    uses = [(path.name, step["uses"]) for path, _, step in steps if "uses" in step]
    assert uses
    for name, ref in uses:
        assert ref == "./" or PINNED.match(ref), f"{name}: {ref} is not pinned to a major version or a commit"
        assert ref == "./" or ref.startswith("actions/"), f"{name}: {ref}: only GitHub's own actions are used"


def test_every_input_is_used():
    text = ACTION.read_text()
    steps = yaml.safe_dump(_action_steps())
    for name in _load(ACTION)["inputs"]:
        assert f"inputs.{name} " in steps or f"inputs.{name}}}" in steps, f"input {name} is never used"
    assert "${{ inputs." in text


@pytest.mark.parametrize("where", ["action", "workflows"])
def test_no_expression_inside_a_script(where):
    """Inputs, outputs and event fields reach scripts as environment variables: an expression
    inside `run:` is pasted into the script before the shell reads it (script injection)."""
    steps = ([(ACTION, "", s) for s in _action_steps()] if where == "action" else _workflow_steps())
    scripts = [(path.name, step.get("name"), step["run"]) for path, _, step in steps if "run" in step]
    scripts += [(path.name, step.get("name"), step["with"]["script"]) for path, _, step in steps
                if str(step.get("uses", "")).startswith("actions/github-script@")]
    assert scripts
    for name, step, script in scripts:
        assert "${{" not in script, f"{name}: step {step!r} has an expression inside its script; pass it in env:"


def test_the_key_is_never_an_input_nor_echoed():
    action = _load(ACTION)
    for name, spec in action["inputs"].items():
        assert not re.search(r"key|secret|token", name, re.I), f"input {name}: a secret is passed as env, not an input"
    for path, _, step in [(ACTION, "", s) for s in _action_steps()] + _workflow_steps():
        for line in step.get("run", "").splitlines():
            if any(k in line for k in KEY_NAMES):
                assert line.strip().startswith("unset "), f"{path.name}: {line.strip()!r} handles the key in a script"
        for var, value in (step.get("env") or {}).items():
            if var in KEY_NAMES:
                assert value == f"${{{{ secrets.{var} }}}}", f"{path.name}: {var} comes from secrets only"
                assert step.get("uses") == "./", f"{path.name}: only the ltxflow step gets {var}"
    install = next(s for s in _action_steps() if s.get("id") == "install")
    assert "unset FAL_KEY FAL_KEY_ID FAL_KEY_SECRET" in install["run"], "pip's build scripts must not see the key"


def test_the_cache_is_restored_then_saved_whatever_happens_under_a_key_of_its_own():
    steps = {s.get("uses", "").split("@")[0]: s for s in _action_steps() if "uses" in s}
    restore, save = steps["actions/cache/restore"], steps["actions/cache/save"]
    prefix = "${{ steps.resolve.outputs.key-prefix }}"
    assert restore["with"]["restore-keys"] == prefix
    for step in (restore, save):
        assert step["with"]["key"] == prefix + "${{ github.run_id }}-${{ github.run_attempt }}"
        assert step["with"]["path"] == "${{ steps.resolve.outputs.cache-dir }}"
    assert save["if"].startswith("always() &&")
    order = [s.get("uses", "").split("@")[0] or s.get("id") for s in _action_steps()]
    assert order.index("actions/cache/restore") < order.index("build") < order.index("actions/cache/save")


def test_the_build_gets_the_cap_on_the_command_line_and_stops_on_a_signal():
    build = next(s for s in _action_steps() if s.get("id") == "build")
    assert build["env"]["MAX_COST"] == "${{ inputs.max-cost }}"
    assert '--max-cost "$MAX_COST"' in build["run"]
    assert "--allow-outside-paths" not in ACTION.read_text()
    assert re.search(r'^exec "\$LTXFLOW"', build["run"], re.M), "exec: the runner's signals reach ltxflow itself"
    for step in _action_steps():
        if '"$LTXFLOW"' in step.get("run", ""):
            assert step["env"]["LTXFLOW_CACHE_DIR"] == "${{ steps.resolve.outputs.cache-dir }}", step["name"]


def test_no_workflow_runs_pull_request_code_with_secrets():
    for wf in WORKFLOWS:
        data = _load(wf)
        on = data["on"]
        assert "pull_request_target" not in (on if isinstance(on, (dict, list)) else [on]), wf.name
        assert "permissions" in data, f"{wf.name}: narrow the token at the workflow's level"
        uses_secrets = "secrets." in wf.read_text()
        if uses_secrets and "pull_request" in on:
            for name, job in data["jobs"].items():
                assert "github.event.pull_request.head.repo.full_name == github.repository" in job.get("if", ""), \
                    f"{wf.name}: job {name} must not run for a fork's pull request"


def test_only_the_comment_job_may_write_and_it_runs_no_pull_request_code():
    data = _load(REPO / "examples" / "github" / "plan-on-pull-request.yml")
    assert data["permissions"] == {}
    assert "secrets." not in (REPO / "examples" / "github" / "plan-on-pull-request.yml").read_text()
    for name, job in data["jobs"].items():
        writes = {k for k, v in job.get("permissions", {}).items() if v == "write"}
        if name == "comment":
            assert writes == {"pull-requests"}
            assert all(not s.get("uses", "").startswith(("actions/checkout", "./")) for s in job["steps"])
            assert "head.repo.full_name == github.repository" in job["if"]
        else:
            assert not writes, f"job {name} needs no write access"
    plan = next(s for s in data["jobs"]["plan"]["steps"] if s.get("uses") == "./")
    assert plan["with"]["save-cache"] == "false", "a pull request only reads caches"
    assert data["concurrency"]["cancel-in-progress"] is True


def test_a_paid_render_is_never_cancelled_by_a_newer_run():
    data = _load(REPO / "examples" / "github" / "render.yml")
    assert data["concurrency"]["cancel-in-progress"] is False
    assert "github.ref" in data["concurrency"]["group"]
    assert data["on"]["pull_request"]["types"] == ["labeled"]
    assert "github.event.label.name == 'render'" in data["jobs"]["render"]["if"]
    step = next(s for s in data["jobs"]["render"]["steps"] if s.get("uses") == "./")
    assert step["with"]["backend"] == "fal" and step["with"]["max-cost"]


def _parse_outputs(text: str) -> dict[str, str]:
    """Read a $GITHUB_OUTPUT file as the runner does: `name=value` lines and `name<<DELIM` blocks."""
    values, lines = {}, iter(text.split("\n"))
    for line in lines:
        if "<<" in line:
            name, delim = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delim:
                    break
                body.append(inner)
            else:
                raise AssertionError(f"{name}: the value never ends ({delim} missing)")
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


@pytest.mark.parametrize("long", [False, True])
def test_the_plan_reaches_the_comment_job_whole_or_cut_on_a_character(tmp_path, long):
    # The step's own script, run by bash with its env: a plan that quotes a prompt ending the heredoc
    # early must not, and a long plan is cut to fit a comment without splitting a character (here
    # byte 60,000 falls inside the three bytes of a note sign).
    data = _load(REPO / "examples" / "github" / "plan-on-pull-request.yml")
    step = next(s for s in data["jobs"]["plan"]["steps"] if s.get("id") == "markdown")
    quoted = "| verse.0 | plan<<EOF \u00e9t\u00e9 \u2014 \u266b |\nEOF\n"
    text = ("x" * 59_999 + "\u266b" if long else "") + quoted * 3
    plan_file, output = tmp_path / "plan.md", tmp_path / "output"
    plan_file.write_text(text, encoding="utf-8")
    output.touch()
    env = {k: v for k, v in step["env"].items() if k != "PLAN_FILE"}
    env.update(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin", PLAN_FILE=str(plan_file), GITHUB_OUTPUT=str(output))
    subprocess.run(["bash", "-e", "-c", step["run"]], env=env, check=True, timeout=30)
    values = _parse_outputs(output.read_text(encoding="utf-8"))  # strict: a split character raises here
    assert list(values) == ["plan"]
    assert values["plan"] == ("x" * 59_999 if long else text)
