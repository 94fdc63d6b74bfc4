"""`ltxflow doctor`: whether this machine can build, and what to do about each thing missing.

Every check reads the environment it is given (ffmpeg, keys, weights, GPUs, Ray's address) and
the Python packages this process can import; nothing is mocked or installed. A check is a problem
only for the backends that need it: exit 0 when the chosen backend can run."""

from __future__ import annotations

import importlib
import json
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

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
    checks += [_gpus(env), _ray(env, online, rp), *_cache(env, project)]
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


# Run in a child process: ray.init changes signal handlers and starts threads doctor has no use for.
_RAY_PROBE = """import json, sys
import ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, logging_level="ERROR",
         configure_logging=False)
total = ray.cluster_resources()
print(json.dumps({"nodes": sum(1 for n in ray.nodes() if n.get("Alive")), "gpus": int(total.get("GPU", 0)),
                  "cpus": int(total.get("CPU", 0))}))
ray.shutdown()
"""
RAY_PROBE_S = 90  # joining a cluster that is not there takes Ray about a minute to give up


def _ray(env: Mapping[str, str], online: bool, rp: Any) -> Check:
    """Ray: installed or not (never imported here), the address a build would use (--ray aside:
    LTXFLOW_RAY_ADDRESS, else the project's `ray.address`) and, with --online, whether that
    cluster answers and what it has. A configured address Ray cannot serve is a problem for every
    backend (the build would stop before its first chunk)."""
    project_address = rp.loaded.project.ray.address if rp is not None else None
    address = env.get("LTXFLOW_RAY_ADDRESS") or project_address
    where = (f"LTXFLOW_RAY_ADDRESS={address}" if env.get("LTXFLOW_RAY_ADDRESS") else
             f"the project's ray.address {address}" if address else "no cluster configured (builds render here)")
    if importlib.util.find_spec("ray") is None:
        if address:
            return Check("Ray", False, f"not installed; {where}", "pip install 'ltxflow[ray]'")
        return Check("Ray", None, f"not installed (pip install 'ltxflow[ray]' to render on a cluster); {where}")
    if not address or address == "local":
        extra = "; `local` starts a private cluster for each build" if address else ""
        return Check("Ray", None, f"installed; {where}{extra}")
    if not online:
        return Check("Ray", None, f"installed; {where} (not joined: --online checks it answers)")
    refused = _port_refused(address)
    if refused:  # Ray itself takes a minute to give up on a port nothing listens on
        return Check("Ray", False, f"{where}: cannot join the cluster: {refused}",
                     "start it (`ray start --head`) or fix the address")
    try:
        r = subprocess.run([sys.executable, "-c", _RAY_PROBE, address], capture_output=True, text=True,
                           timeout=RAY_PROBE_S, env=dict(env))
        found = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else None
    except (OSError, subprocess.SubprocessError, ValueError):
        found, r = None, None
    if not isinstance(found, dict):
        why = (r.stderr.strip().splitlines() or ["no answer"])[-1][:300] if r is not None else f"no answer in {RAY_PROBE_S} s"
        return Check("Ray", False, f"{where}: cannot join the cluster: {why}",
                     "start it (`ray start --head`), fix the address, or for a remote cluster set RAY_AUTH_TOKEN")
    return Check("Ray", True, f"{where}: joined: {found.get('nodes')} nodes, {found.get('gpus')} GPUs, "
                              f"{found.get('cpus')} CPUs")


def _port_refused(address: str) -> str | None:
    """Why nothing answers at a `host:port` or `ray://host:port` address (None: something does, or
    the address is another form, e.g. `auto`)."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


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
    if project is not None and project.is_file() and root.exists():  # no project, nothing to weigh against
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
