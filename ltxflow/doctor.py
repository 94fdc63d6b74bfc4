"""`ltxflow doctor`: whether this machine can build, and what to do about each thing missing.

Every check reads the environment it is given (ffmpeg, keys, weights, GPUs, Ray's address) and
the Python packages this process can import; nothing is mocked or installed. A check is a problem
only for the backends that need it: exit 0 when the chosen backend can run."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ltxflow.registry import BACKENDS

ALL = "*"  # needed by every backend


@dataclass(frozen=True)
class Check:
    """One finding. `ok`: True fine, False a problem for the backends in `needs`, None for
    information only. `fix`: what to do, for a problem."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""
    needs: tuple[str, ...] = (ALL,)

    def blocks(self, backend: str) -> bool:
        return self.ok is False and (ALL in self.needs or backend in self.needs)

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix or None,
                "needed_by": list(self.needs)}


@dataclass(frozen=True)
class Report:
    backend: str
    checks: tuple[Check, ...]

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.blocks(self.backend)]


def diagnose(backend: str | None = None, project: Path | None = None, *, online: bool = False,
             models: Path | None = None, env: Mapping[str, str] | None = None) -> Report:
    """Every check; `backend` defaults to the project's, else preview."""
    env = dict(os.environ if env is None else env)
    rp, project_check = _project(project, env)
    backend = backend or (rp.backend if rp is not None else None) or _declared_backend(project) or "preview"
    checks = [Check("python", None, f"{sys.version.split()[0]} ({sys.executable})"), _ffmpeg(env),
              _package("PyAV", "av", "the FFmpeg libraries that probe media and read clips",
                       lambda m: f"{m.__version__}"),
              _package("librosa", "librosa", "the music analysis (beats, bars, sections)",
                       lambda m: m.__version__), _chromium(env)]
    if project_check is not None:
        checks.append(project_check)
    checks += [Check("backend preview", True, "draws an animatic on the CPU: needs no key, GPU or network",
                     needs=("preview",)), _fal(env, online)]
    checks += _local(env, models, rp)
    checks += [_gpus(env), _ray(env), *_cache(env, project)]
    return Report(backend, tuple(checks))


def _declared_backend(project: Path | None) -> str | None:
    """The backend a project file names, when it could not be resolved."""
    if project is None:
        return None
    try:
        import yaml

        data = yaml.safe_load(Path(project).read_text())
        value = data.get("backend") if isinstance(data, dict) else None
        return value if value in BACKENDS else None
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _project(project: Path | None, env: Mapping[str, str]):
    if project is None:
        return None, None
    from ltxflow.errors import LtxflowError, ProjectError
    from ltxflow.execute.cache import Cache, check_cache_root, default_cache_dir
    from ltxflow.project.resolve import open_project

    try:
        cache = Cache(default_cache_dir(Path(project).resolve().parent, env=dict(env)))
        check_cache_root(cache.root)  # read, as validate reads it: the song and analysis kept there
        rp = open_project(project, audio_store=cache.decoded_audio, music_store=cache.music, keep=False)
    except ProjectError as exc:
        first = exc.diagnostics[0] if exc.diagnostics else "invalid"
        return None, Check("project", False, f"{len(exc.diagnostics)} problem(s), the first: {first}",
                           f"`ltxflow validate {project}` lists them all")
    except LtxflowError as exc:
        return None, Check("project", False, str(exc), f"fix {project}")
    return rp, Check("project", True, f"{rp.file}: {len(rp.scenes)} scenes, backend {rp.backend}")


def _ffmpeg(env: Mapping[str, str]) -> Check:
    from ltxflow.errors import FfmpegNotFound
    from ltxflow.media.ffmpeg import find_ffmpeg

    try:
        found = find_ffmpeg(dict(env))
    except FfmpegNotFound as exc:
        return Check("ffmpeg", False, str(exc), "pip install imageio-ffmpeg (an ffmpeg in a wheel), put ffmpeg on "
                                                "PATH, or set LTXFLOW_FFMPEG to a working binary")
    return Check("ffmpeg", True, f"{found.version} ({found.path}, from {found.source})")


def _package(name: str, module: str, what: str, version) -> Check:
    """Imported for real: an installed package that fails to import is a problem too."""
    try:
        m = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 (a broken install raises anything)
        return Check(name, False, f"cannot import {module}: {type(exc).__name__}: {exc}"[:300],
                     "reinstall ltxflow's dependencies: pip install -c constraints.txt -e .")
    return Check(name, True, f"{version(m)}: {what}")


def chromium(env: Mapping[str, str]) -> str | None:
    """The browser the report's browser test drives: LTXFLOW_CHROMIUM, else one on PATH."""
    named = env.get("LTXFLOW_CHROMIUM")
    if named:
        return shutil.which(named, path=env.get("PATH"))
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found
    return None


def _chromium(env: Mapping[str, str]) -> Check:
    found = chromium(env)
    if found:
        return Check("Chromium", None, f"{found}: opens build reports and runs their browser test")
    named = env.get("LTXFLOW_CHROMIUM")
    why = f"LTXFLOW_CHROMIUM={named} is not an executable" if named else "none on PATH"
    return Check("Chromium", None, f"{why}: reports are still written (HTML and PNG), open them in any browser; "
                                   "the report's browser test skips (Debian: apt-get install chromium)")


def _fal(env: Mapping[str, str], online: bool) -> Check:
    from ltxflow.backends.falapi import KEY_HELP, FalApi, FalHosts, FalKey, RetryPolicy
    from ltxflow.errors import FalAuthError, FalError

    key = FalKey.from_env(env)
    if key is None:
        return Check("backend fal", False, "no key: FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET) is not set",
                     KEY_HELP, needs=("fal",))
    if not online:
        return Check("backend fal", True, "a key is set (not checked: --online asks fal whether it accepts it)",
                     needs=("fal",))
    hosts = FalHosts.from_env(env)
    api = FalApi(key, hosts, policy=RetryPolicy(attempts=2, base_s=0.5, max_s=2.0, timeout_s=15.0))
    try:
        api.check_key()
    except FalAuthError as exc:
        return Check("backend fal", False, f"{hosts.rest} refused the key: {exc}", KEY_HELP, needs=("fal",))
    except FalError as exc:
        return Check("backend fal", False, f"cannot reach fal at {hosts.rest}: {exc}",
                     "check the network (or LTXFLOW_FAL_REST_URL) and run doctor --online again", needs=("fal",))
    finally:
        api.close()
    return Check("backend fal", True, f"the key is set and {hosts.rest} accepts it", needs=("fal",))


def _local(env: Mapping[str, str], models: Path | None, rp) -> list[Check]:
    """ltx-pipelines importable, the weights folder and each weight file its jobs need."""
    from ltxflow.backends.local import NEEDS, WEIGHTS, job_kind

    need = ("local",)
    out = []
    if importlib.util.find_spec("ltx_pipelines") is None:
        out.append(Check("ltx-pipelines", False, "not installed", "pip install -c constraints.txt -e '.[local]'",
                         needs=need))
    else:
        out.append(Check("ltx-pipelines", True, "installed (imported only by the workers)", needs=need))
    env_models = env.get("LTXFLOW_LTX_MODELS")
    folder = models or (Path(env_models).expanduser() if env_models else None) or (rp.models if rp else None)
    if folder is None:
        return out + [Check("weights", False, "no weights folder named",
                            "pass --models DIR, set LTXFLOW_LTX_MODELS, or `models:` in the project", needs=need)]
    if not folder.is_dir():
        return out + [Check("weights", False, f"{folder} is not a folder", "download the weights into it (see the "
                            "README, 'Rendering on your GPU') or name the right folder", needs=need)]
    kinds = {job_kind(s.endpoint.mode, s.endpoint.family) for s in rp.scenes} if rp is not None else {"a2v"}
    roles = sorted({r for k in kinds for r in NEEDS[k]})
    missing = []
    for role in sorted(WEIGHTS):
        names, where = WEIGHTS[role]
        hit = next((n for n in names if (folder / n).exists()), None)
        if hit is None and role in roles:
            missing.append(f"{names[0]} ({where})")
        elif hit is not None:
            out.append(Check(f"weight {role}", True, str(folder / hit), needs=need))
    if missing:
        out.append(Check("weights", False, f"{folder} lacks {len(missing)} file(s) the jobs need: " + "; ".join(missing),
                         f"download them into {folder} (nothing is downloaded at run time)", needs=need))
    else:
        out.append(Check("weights", True, f"{folder} holds every file {', '.join(sorted(kinds))} jobs need",
                         needs=need))
    return out


def _gpus(env: Mapping[str, str]) -> Check:
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    lines: list[str] = []
    if smi:
        try:
            lines = [ln for ln in subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20,
                                                 env=dict(env)).stdout.splitlines() if ln.startswith("GPU ")]
        except (OSError, subprocess.SubprocessError):
            lines = []
    chosen = env.get("LTXFLOW_GPUS") or env.get("CUDA_VISIBLE_DEVICES")
    using = f"; workers use {chosen} (LTXFLOW_GPUS or CUDA_VISIBLE_DEVICES)" if chosen else ""
    if not lines:
        return Check("GPUs", None, f"none seen ({'nvidia-smi lists none' if smi else 'no nvidia-smi on PATH'}): "
                                   f"backend local would run one worker on whatever device torch finds{using}")
    return Check("GPUs", None, f"{len(lines)}: " + "; ".join(ln.split(" (UUID")[0] for ln in lines) + using)


def _ray(env: Mapping[str, str]) -> Check:
    """Whether Ray can be imported (not imported here) and the cluster address configured."""
    address = env.get("LTXFLOW_RAY_ADDRESS")
    where = f"LTXFLOW_RAY_ADDRESS={address}" if address else "LTXFLOW_RAY_ADDRESS not set"
    if importlib.util.find_spec("ray") is None:
        return Check("Ray", None, f"not installed (pip install ray to render on a cluster); {where}")
    return Check("Ray", None, f"importable; {where}")


def _cache(env: Mapping[str, str], project: Path | None) -> list[Check]:
    from ltxflow.cachecmd import gc, project_files, tree_size
    from ltxflow.errors import LtxflowError
    from ltxflow.execute.cache import Cache, check_cache_root, default_cache_dir

    root = default_cache_dir(project.resolve().parent if project else Path.cwd(), env=dict(env))
    try:
        check_cache_root(root)
    except LtxflowError as exc:
        return [Check("cache", False, str(exc), "see the message", needs=(ALL,))]
    size = tree_size(root)
    out = [Check("cache", None, f"{root}: {size / 1e6:.1f} MB" if root.exists() else f"{root}: not made yet")]
    if project is not None and root.exists():
        folder = project.resolve().parent
        try:
            gone, stale, freed, problems = gc(Cache(root), [folder], dry_run=True, force=True)
        except LtxflowError as exc:
            out.append(Check("cache gc", None, f"cannot tell: {exc}"))
        else:
            n = len(list(project_files([folder])))
            out.append(Check("cache gc", None, f"`ltxflow cache gc {folder}` would free {freed / 1e6:.1f} MB "
                                               f"({len(gone)} entries no project of the {n} there uses, "
                                               f"{len(stale)} stale files)"))
    return out


def report_text(r: Report) -> str:
    marks = {True: "ok", False: "PROBLEM", None: "-"}
    lines = [f"ltxflow doctor (backend {r.backend})"]
    for c in r.checks:
        mark = marks[c.ok] if c.ok is not False or c.blocks(r.backend) else "missing"
        lines.append(f"  {mark:<8} {c.name}: {c.detail}")
        if c.ok is False and c.fix:
            lines.append(f"  {'':<8} fix: {c.fix}")
    problems = r.problems
    if problems:
        lines.append(f"backend {r.backend} cannot run: {len(problems)} problem(s): "
                     + ", ".join(c.name for c in problems))
    else:
        lines.append(f"backend {r.backend} can run")
    return "\n".join(lines) + "\n"
