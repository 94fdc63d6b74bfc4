"""Runs the repository's composite action (action.yml) on this machine the way a GitHub runner
does, for tests: each `run:` step verbatim in `bash --noprofile --norc -eo pipefail`, with its
`env:` and `if:` expressions evaluated, fresh GITHUB_OUTPUT / GITHUB_STEP_SUMMARY / GITHUB_ENV files
per step (outputs parsed, summaries appended to the job's), the workspace as working folder,
RUNNER_TEMP, GITHUB_ACTION_PATH and the caller's environment (secrets included) as a workflow's
`env:` would give them; a cancel sends SIGINT, then SIGTERM, then SIGKILL, and the steps that
ask for `always()` still run.

The `uses:` steps are GitHub's own JavaScript actions. They stand in here, keeping what the
action relies on: setup-python gives a Python whose `-m venv` makes a folder whose pip records
its calls instead of downloading (the real `ltxflow` of this checkout runs), cache/restore and
cache/save keep immutable entries in a folder (an exact key first, then the newest entry under a
restore prefix; a key saved twice is refused with a warning), upload-artifact copies the paths
into a folder per artifact name (a name used twice fails)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
LTXFLOW = Path(sys.executable).parent / "ltxflow"

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<call>[A-Za-z_]\w*)\(\)"
                    r"|(?P<op>==|!=|&&|\|\||!|\(|\))"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.-]*))")


def evaluate(expr: str, lookup: Callable[[str], Any], functions: dict[str, Callable[[], bool]]) -> Any:
    """A GitHub expression of the kinds action.yml uses: literals, context names, ==, !=, !, &&,
    ||, parentheses and status functions. Strings compare case-insensitively, as GitHub's do."""
    fold = "==" in expr or "!=" in expr
    out, pos = [], 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read expression {expr!r} at {pos}")
        pos = m.end()
        if m["str"]:
            text = m["str"][1:-1].replace("''", "'")
            out.append(repr(text.lower() if fold else text))
        elif m["num"]:
            out.append(m["num"])
        elif m["op"]:
            out.append({"&&": " and ", "||": " or ", "!": " not "}.get(m["op"], f" {m['op']} "))
        elif m["name"] in ("true", "false", "null"):
            out.append({"true": "True", "false": "False", "null": "''"}[m["name"]])
        elif m["call"]:
            out.append(f"_f[{m['call']!r}]")
        else:
            out.append(f"_v({m['name']!r})")

    def value(name: str) -> Any:
        v = lookup(name)
        return v.lower() if fold and isinstance(v, str) else v

    return eval("".join(out), {"__builtins__": {}}, {"_v": value, "_f": {k: f() for k, f in functions.items()}})


def substitute(text: str, lookup: Callable[[str], Any], functions: dict[str, Callable[[], bool]]) -> str:
    """`${{ expr }}` in a value replaced by its result, as GitHub writes it into a string."""
    def one(m: re.Match) -> str:
        v = evaluate(m[1], lookup, functions)
        return "true" if v is True else "false" if v is False else "" if v is None else str(v)
    return re.sub(r"\$\{\{(.*?)\}\}", one, text)


def read_outputs(text: str) -> dict[str, str]:
    """A GITHUB_OUTPUT file: `name=value` lines and `name<<DELIMITER` blocks."""
    out, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body = []
            for ln in lines:
                if ln == delim:
                    break
                body.append(ln)
            else:
                raise ValueError(f"output {name}: no closing delimiter {delim}")
            out[name] = "\n".join(body)
        elif "=" in line:
            name, v = line.split("=", 1)
            out[name] = v
        elif line.strip():
            raise ValueError(f"GITHUB_OUTPUT line is neither name=value nor name<<DELIMITER: {line!r}")
    return out


@dataclass
class Cancel:
    """Cancel the step `step` once `when()` is true: SIGINT, `term_after` s later SIGTERM, then
    SIGKILL `kill_after` s after that (GitHub's runner: 7.5 s and 2.5 s)."""

    step: str
    when: Callable[[], bool]
    term_after: float = 7.5
    kill_after: float = 2.5
    sent: list[str] = field(default_factory=list)


@dataclass
class StepRun:
    id: str | None
    name: str
    outcome: str  # success | failure | cancelled | skipped
    outputs: dict[str, str]
    stdout: str = ""
    returncode: int | None = None


@dataclass
class ActionRun:
    steps: list[StepRun]
    summary: str  # the job summary: every step's, in order
    outputs: dict[str, str]  # the action's outputs
    pip: list[dict[str, Any]]  # what the install step asked pip to do

    def step(self, id_or_name: str) -> StepRun:
        return next(s for s in self.steps if id_or_name in (s.id, s.name))


class Runner:
    """One repository's runner state: its cache store and artifacts (folders under `root`)."""

    def __init__(self, root: Path, workspace: Path, env: dict[str, str]):
        self.root, self.workspace, self.env = root, workspace, env
        self.caches = root / "actions-cache"
        self.artifacts = root / "artifacts"
        self.run_id = 1000
        self.attempts = 1

    def run(self, inputs: dict[str, str], *, env: dict[str, str] | None = None, rerun: bool = False,
            cancel: Cancel | None = None, timeout: float = 300) -> ActionRun:
        """The action once, with `inputs` and the step's `env:` (secrets): a new workflow run, or
        with `rerun` the last one's next attempt (same run id, as "Re-run jobs" does)."""
        if rerun:
            self.run_id -= 1
            self.attempts += 1
        else:
            self.attempts = 1
        attempt = self.attempts
        action = yaml.safe_load((ROOT / "action.yml").read_text())
        given = {k: str(v) for k, v in inputs.items()}
        unknown = set(given) - set(action["inputs"])
        assert not unknown, f"the action has no inputs {sorted(unknown)}"
        values = {k: given.get(k, str(spec.get("default", ""))) for k, spec in action["inputs"].items()}
        missing = [k for k, spec in action["inputs"].items() if spec.get("required") and not values[k]]
        assert not missing, f"required inputs missing: {missing}"
        temp = self.root / f"runner-temp-{self.run_id}-{attempt}"
        temp.mkdir(parents=True)
        steps: dict[str, StepRun] = {}
        done: list[StepRun] = []
        state = {"failed": False, "cancelled": False}
        summary: list[str] = []

        def lookup(name: str) -> Any:
            parts = name.split(".")
            if parts[0] == "inputs":
                return values.get(parts[1], "")
            if parts[0] == "steps":
                s = steps.get(parts[1])
                if s is None:
                    return ""
                return s.outcome if parts[2] in ("outcome", "conclusion") else s.outputs.get(parts[3], "")
            if parts[0] == "github":
                return {"run_id": str(self.run_id), "run_attempt": str(attempt), "workspace": str(self.workspace),
                        "action_path": str(ROOT)}[parts[1]]
            if parts[0] == "runner":
                return {"os": "Linux", "temp": str(temp)}[parts[1]]
            raise KeyError(f"unknown context {name}")

        functions = {"always": lambda: True, "success": lambda: not state["failed"] and not state["cancelled"],
                     "failure": lambda: state["failed"], "cancelled": lambda: state["cancelled"]}
        pip_log = temp / "pip-calls.jsonl"
        for i, spec in enumerate(action["runs"]["steps"]):
            sid, name = spec.get("id"), spec.get("name", f"step {i}")
            condition = spec.get("if", "success()")
            condition = condition[3:-2] if condition.startswith("${{") else condition
            if not any(f"{f}()" in condition for f in functions):
                condition = f"success() && ({condition})"
            if not evaluate(condition, lookup, functions):
                run = StepRun(sid, name, "skipped", {})
            elif "uses" in spec:
                with_ = {k: substitute(str(v), lookup, functions) for k, v in (spec.get("with") or {}).items()}
                run = StepRun(sid, name, *self._uses(spec["uses"], with_, temp))
            else:
                step_env = {k: substitute(str(v), lookup, functions) for k, v in (spec.get("env") or {}).items()}
                run = self._script(sid, name, spec, step_env, {**self.env, **(env or {})}, temp, attempt,
                                   cancel if cancel and cancel.step in (sid, name) else None, timeout, summary)
                if run.outcome == "cancelled":
                    state["cancelled"] = True
            if run.outcome == "failure":
                state["failed"] = True
            if sid:
                steps[sid] = run
            done.append(run)
        outputs = {k: substitute(str(v["value"]), lookup, functions) for k, v in action.get("outputs", {}).items()}
        pip = [json.loads(ln) for ln in pip_log.read_text().splitlines()] if pip_log.exists() else []
        self.run_id += 1
        return ActionRun(done, "".join(summary), outputs, pip)

    # -- run: steps ------------------------------------------------------------------------------

    def _script(self, sid: str | None, name: str, spec: dict, step_env: dict[str, str], base: dict[str, str],
                temp: Path, attempt: int, cancel: Cancel | None, timeout: float, summary: list[str]) -> StepRun:
        assert spec.get("shell") == "bash", f"step {name}: a composite action's run step needs shell: bash"
        files = {v: temp / f"{sid or 'step'}-{v.lower()}" for v in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY",
                                                                     "GITHUB_ENV", "GITHUB_PATH")}
        for f in files.values():
            f.write_text("")
        script = temp / f"{sid or 'step'}.sh"
        script.write_text(spec["run"])
        env = {**base, "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_WORKSPACE": str(self.workspace),
               "GITHUB_ACTION_PATH": str(ROOT), "RUNNER_TEMP": str(temp), "RUNNER_OS": "Linux",
               "GITHUB_RUN_ID": str(self.run_id), "GITHUB_RUN_ATTEMPT": str(attempt),
               **{k: str(v) for k, v in files.items()}, **step_env}
        proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=self.workspace,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        outcome = None
        if cancel is not None:
            end = time.monotonic() + timeout
            while proc.poll() is None and not cancel.when():
                assert time.monotonic() < end, f"step {name}: the moment to cancel never came"
                time.sleep(0.05)
            if proc.poll() is None:
                outcome = "cancelled"
                for sig, wait in ((signal.SIGINT, cancel.term_after), (signal.SIGTERM, cancel.kill_after),
                                  (signal.SIGKILL, None)):
                    proc.send_signal(sig)
                    cancel.sent.append(sig.name)
                    try:
                        proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
        stdout, _ = proc.communicate(timeout=timeout)
        summary.append(files["GITHUB_STEP_SUMMARY"].read_text())
        outcome = outcome or ("success" if proc.returncode == 0 else "failure")
        return StepRun(sid, name, outcome, read_outputs(files["GITHUB_OUTPUT"].read_text()), stdout, proc.returncode)

    # -- uses: steps (stand-ins for GitHub's JavaScript actions) ---------------------------------------

    def _uses(self, uses: str, with_: dict[str, str], temp: Path) -> tuple[str, dict[str, str]]:
        action = uses.split("@")[0]
        if action == "actions/setup-python":
            return "success", {"python-path": str(self._python(temp))}
        if action == "actions/cache/restore":
            return "success", self._restore(Path(with_["path"]), with_["key"], with_.get("restore-keys", ""))
        if action == "actions/cache/save":
            return self._save(Path(with_["path"]), with_["key"]), {}
        if action == "actions/upload-artifact":
            return self._upload(with_["name"], with_["path"]), {}
        raise AssertionError(f"no stand-in for {uses}")

    def _python(self, temp: Path) -> Path:
        """A Python for the action: itself for scripts; `-m venv DIR` makes DIR/bin/python, whose pip
        records each call (arguments, and whether a FAL_ variable reached it) in pip-calls.jsonl,
        and DIR/bin/ltxflow, this checkout's."""
        shim = temp / "python"
        venv_python = (f'#!/bin/bash\nif [ "$1" = -m ] && [ "$2" = pip ]; then\n'
                       f'  exec {sys.executable} -c \'import json, os, sys; '
                       f'print(json.dumps({{"args": sys.argv[1:], "fal_env": sorted(k for k in os.environ '
                       f'if k.startswith("FAL_"))}}))\' "${{@:3}}" >> "{temp}/pip-calls.jsonl"\nfi\n'
                       f'exec {sys.executable} "$@"\n')
        shim.write_text(f'#!/bin/bash\nif [ "$1" = -m ] && [ "$2" = venv ]; then\n'
                        f'  mkdir -p "$3/bin"\n'
                        f"  cat > \"$3/bin/python\" <<'EOF'\n{venv_python}EOF\n"
                        f"  printf '#!/bin/bash\\nexec %s \"$@\"\\n' '{LTXFLOW}' > \"$3/bin/ltxflow\"\n"
                        f'  chmod +x "$3/bin/python" "$3/bin/ltxflow"\n  exit 0\nfi\n'
                        f'exec {sys.executable} "$@"\n')
        shim.chmod(0o755)
        return shim

    def _restore(self, path: Path, key: str, restore_keys: str) -> dict[str, str]:
        hit = self.caches / key
        if not hit.is_dir():
            prefixes = [k.strip() for k in restore_keys.splitlines() if k.strip()]
            found = [(e.stat().st_mtime_ns, e) for e in self.caches.glob("*")
                     if any(e.name.startswith(p) for p in prefixes)] if self.caches.is_dir() else []
            hit = max(found)[1] if found else None
        if hit is None:
            return {"cache-hit": "false", "cache-matched-key": ""}
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(hit, path, symlinks=True)
        return {"cache-hit": str(hit.name == key).lower(), "cache-matched-key": hit.name}

    def _save(self, path: Path, key: str) -> str:
        entry = self.caches / key
        if entry.exists():  # entries are immutable: GitHub warns and saves nothing
            return "success"
        if not path.is_dir():
            return "success"  # "Path Validation Error: Path(s) specified in the action for caching do(es) not exist"
        shutil.copytree(path, self.caches / f".{key}", symlinks=True)
        (self.caches / f".{key}").rename(entry)
        return "success"

    def _upload(self, name: str, paths: str) -> str:
        folder = self.artifacts / str(self.run_id) / name
        if folder.exists():
            return "failure"  # v4 and later: an artifact name is used once per run
        folder.mkdir(parents=True)
        for p in (Path(ln) for ln in paths.splitlines() if ln.strip()):
            if p.is_file():
                shutil.copy2(p, folder / p.name)
        return "success"
