"""`backend: local`: chunks rendered by Lightricks' LTX-2.3 pipelines (ltx-pipelines 1.0.0) on this
machine's GPUs, one worker process per GPU keeping the weights loaded (see ltxworker.py).

This module runs in the build process and imports neither torch nor ltx-pipelines: it finds the
weights, starts workers on demand (CUDA_VISIBLE_DEVICES per worker), hands each a job and turns
its answer into a clip or a BackendError.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import queue
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ltxflow.backends.base import Backend, BackendContext, BackendError, ChunkRequest, RenderResult
from ltxflow.errors import LocalSetupError, Stopped
from ltxflow.timeline import fps_str

HF = "https://huggingface.co"
# Each role: the file names Lightricks publishes (newest first) and where.
WEIGHTS: dict[str, tuple[tuple[str, ...], str]] = {
    "dev": (("ltx-2.3-22b-dev.safetensors",), f"{HF}/Lightricks/LTX-2.3"),
    "distilled": (("ltx-2.3-22b-distilled-1.1.safetensors", "ltx-2.3-22b-distilled.safetensors"),
                  f"{HF}/Lightricks/LTX-2.3"),
    "distilled_lora": (("ltx-2.3-22b-distilled-lora-384-1.1.safetensors",
                        "ltx-2.3-22b-distilled-lora-384.safetensors"), f"{HF}/Lightricks/LTX-2.3"),
    "upsampler": (("ltx-2.3-spatial-upscaler-x2-1.1.safetensors", "ltx-2.3-spatial-upscaler-x2-1.0.safetensors"),
                  f"{HF}/Lightricks/LTX-2.3"),
    "gemma": (("gemma-3-12b-it-qat-q4_0-unquantized",), f"{HF}/google/gemma-3-12b-it-qat-q4_0-unquantized"),
}
# What each kind of job needs. Audio-driven scenes run A2VidPipelineTwoStage (dev + distilled LoRA),
# image-to-video the two-stage TI2Vid pipeline, or DistilledPipeline for the distilled family.
NEEDS = {"a2v": ("dev", "distilled_lora", "upsampler", "gemma"), "i2v": ("dev", "distilled_lora", "upsampler", "gemma"),
         "distilled": ("distilled", "upsampler", "gemma")}


def job_kind(mode: str, family: str) -> str:
    if mode == "audio-to-video":
        return "a2v"
    return "distilled" if family.endswith("distilled") else "i2v"


def find_weights(folder: Path, kinds: set[str]) -> dict[str, Path]:
    """The weight files the job kinds need, by role; LocalSetupError listing every missing one."""
    found, missing = {}, []
    roles = sorted({r for k in kinds for r in NEEDS[k]})
    for role in roles:
        names, where = WEIGHTS[role]
        hit = next((folder / n for n in names if (folder / n).exists()), None)
        if hit is None:
            missing.append(f"  {names[0]}{'/' if role == 'gemma' else ''}  ({where})")
        else:
            found[role] = hit
    if missing:
        raise LocalSetupError(f"backend local: {folder} lacks {len(missing)} of the weights this build needs:\n"
                              + "\n".join(missing) + "\nDownload them into that folder (nothing is downloaded at "
                              "run time); see the README, 'Rendering on your GPU'.")
    return found


def gpu_ids(env: Mapping[str, str] | None = None) -> list[str | None]:
    """One entry per worker: the GPU ids it may see (CUDA_VISIBLE_DEVICES), or [None] for one worker
    on whatever device torch finds (a single GPU or the CPU)."""
    env = os.environ if env is None else env
    if env.get("LTXFLOW_GPUS"):
        return [g.strip() for g in env["LTXFLOW_GPUS"].split(",") if g.strip()]
    if env.get("CUDA_VISIBLE_DEVICES", "").strip():
        return [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            lines = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            lines = []
        ids = [str(i) for i, line in enumerate(lines) if line.startswith("GPU ")]
        if len(ids) > 1:
            return ids
    return [None]


def stereo_wav(wav: Path, workdir: Path) -> Path:
    """The audio span as the A2V pipeline takes it: its audio VAE encodes two channels, and
    ltx-pipelines 1.0.0 does not up-mix (a mono span fails inside the VAE)."""
    import wave

    import numpy as np

    with wave.open(str(wav)) as w:
        channels, width, rate, data = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.readframes(w.getnframes())
    if channels == 2:
        return wav
    samples = np.frombuffer(data, dtype={1: np.uint8, 2: "<i2", 4: "<i4"}[width]).reshape(-1, channels)
    out = workdir / "audio-stereo.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.repeat(samples[:, :1], 2, axis=1).tobytes() if channels == 1
                      else np.ascontiguousarray(samples[:, :2]).tobytes())
    return out


def _kill(process) -> None:
    """Kill a worker and what it started (its ffmpeg): it leads a process group of its own (see
    ltxworker.serve), unless it was killed before it made one."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.join(timeout=10)


@dataclass
class _WorkerHandle:
    gpu: str | None
    process: Any
    conn: Any
    device: str = "?"
    visible: str | None = None  # the CUDA_VISIBLE_DEVICES the worker runs with (None: unset)


class LocalBackend(Backend):
    name = "local"
    keeps_models = True

    @classmethod
    def create(cls, ctx: BackendContext) -> "LocalBackend":
        return cls(ctx.models, {job_kind(mode, family) for mode, family in ctx.needs}, fp8=ctx.fp8,
                   emit=ctx.emit, stop=ctx.stop)

    def __init__(self, models: Path | None, kinds_needed: set[str], *, fp8: bool = False,
                 emit: Callable[..., None] = lambda *a, **k: None, stop: threading.Event | None = None,
                 env: Mapping[str, str] | None = None):
        self.models = models
        self.kinds_needed = kinds_needed
        self.fp8 = fp8
        self.emit = emit
        self.stop = stop or threading.Event()
        self.env = dict(os.environ if env is None else env)
        self.gpus = gpu_ids(self.env)
        self.max_concurrency = len(self.gpus)  # one chunk per GPU at a time
        self.weights: dict[str, Path] = {}
        self.idle: queue.Queue[_WorkerHandle] = queue.Queue()
        self.started: list[_WorkerHandle] = []
        self.claimed: set[str | None] = set()  # GPUs with a worker, or one starting
        self.lock = threading.Lock()

    def preflight(self) -> None:
        if importlib.util.find_spec("ltx_pipelines") is None:
            raise LocalSetupError("backend local needs Lightricks' LTX-2.3 pipelines: pip install 'ltxflow[local]'")
        if self.models is None:
            raise LocalSetupError("backend local needs a folder of LTX-2.3 weights: set `models:` in the project, "
                                  "--models DIR or LTXFLOW_LTX_MODELS")
        if not self.models.is_dir():
            raise LocalSetupError(f"backend local: the weights folder {self.models} does not exist")
        self.weights = find_weights(self.models, self.kinds_needed)

    # -- workers --------------------------------------------------------------------------------

    def _start(self, gpu: str | None) -> _WorkerHandle:
        from ltxflow.backends.ltxworker import env_max_transformers, serve

        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        # The worker pins itself to its GPU (CUDA_VISIBLE_DEVICES, set in the child before torch
        # is imported): this process's environment is never changed, so workers may start at once.
        proc = ctx.Process(target=serve, name=f"ltxflow-gpu{gpu if gpu is not None else ''}", daemon=True,
                           args=(child, {k: str(v) for k, v in self.weights.items()}, None, self.fp8,
                                 env_max_transformers(), self.env.get("LTXFLOW_LOCAL_FAULT"), gpu))
        proc.start()
        child.close()
        handle = _WorkerHandle(gpu, proc, parent)
        hello = self._receive(handle, "starting")
        if not hello.get("ok"):
            proc.join(timeout=5)
            raise LocalSetupError(f"backend local: the worker could not start: {hello.get('message')}")
        handle.device, handle.visible = str(hello.get("device")), hello.get("visible")
        self.emit("worker_started", gpu=gpu, device=handle.device, visible=handle.visible, pid=proc.pid)
        return handle

    def _receive(self, handle: _WorkerHandle, what: str) -> dict[str, Any]:
        while not handle.conn.poll(0.2):
            if self.stop.is_set():  # Ctrl-C: a GPU chunk can take minutes; the worker is let go
                _kill(handle.process)
                raise Stopped(f"stopped while {what}")
            if not handle.process.is_alive():
                raise BackendError(f"the worker on {handle.device} died while {what} "
                                   f"(exit code {handle.process.exitcode})")
        try:
            return handle.conn.recv()
        except (EOFError, OSError) as exc:
            raise BackendError(f"the worker on {handle.device} stopped answering while {what}: {exc}") from None

    def _acquire(self) -> _WorkerHandle:
        try:
            return self.idle.get_nowait()
        except queue.Empty:
            pass
        with self.lock:  # claim a GPU without a worker, then start one on it (seconds) outside the lock
            free = [g for g in self.gpus if g not in self.claimed]
            gpu = free[0] if free else None
            if free:
                self.claimed.add(gpu)
        if not free:
            return self.idle.get()
        try:
            handle = self._start(gpu)
        except BaseException:
            with self.lock:
                self.claimed.discard(gpu)
            raise
        with self.lock:
            self.started.append(handle)
        return handle

    def _release(self, handle: _WorkerHandle) -> None:
        if handle.process.is_alive():
            self.idle.put(handle)
        else:  # a dead worker is replaced on the next job
            with self.lock:
                self.started.remove(handle)
                self.claimed.discard(handle.gpu)

    def close(self) -> None:
        """End the workers: asked to finish, or killed when the build is stopping."""
        for handle in self.started:
            if self.stop.is_set():
                _kill(handle.process)
                continue
            try:
                handle.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for handle in self.started:
            handle.process.join(timeout=10)
            if handle.process.is_alive():
                _kill(handle.process)
        self.started.clear()
        self.claimed.clear()

    # -- one chunk ------------------------------------------------------------------------------

    def render(self, request: ChunkRequest, workdir: Path) -> RenderResult:
        if not self.weights:
            self.preflight()
        out = workdir / "local.mp4"
        v, start, end = request.values, request.start_image, request.end_image
        if request.start_image_url or request.end_image_url or any(lo.path is None for lo in request.loras):
            raise BackendError(f"{request.chunk_id}: backend local reads images and LoRAs from files, not URLs")
        job = {"kind": job_kind(request.mode, request.family), "prompt": request.prompt,
               "negative_prompt": v.get("negative_prompt"), "seed": request.seed, "frames": request.frames,
               "fps": float(request.fps), "rate": fps_str(request.fps), "width": request.width, "height": request.height,
               "steps": v.get("steps"), "guidance": v.get("guidance_scale"),
               "start_image": str(start) if start else None, "start_strength": v.get("image_strength", 1.0),
               "end_image": str(end) if end else None, "end_strength": v.get("end_image_strength", 1.0),
               "audio": str(stereo_wav(request.audio, workdir)) if request.audio else None,
               "loras": [(str(lo.path), lo.scale) for lo in request.loras], "out": str(out)}
        answer, gpu = self._run(job, request.chunk_id)
        if not answer.get("ok"):
            raise BackendError(f"{request.chunk_id}: {answer.get('message')}")
        return RenderResult(out, request.seed, 0.0, {"device": answer.get("device"), "gpu": gpu,
                                                     "seconds": answer.get("seconds"),
                                                     "model_builds": answer.get("builds"),
                                                     "transformer_dtypes": answer.get("transformer_dtypes")})

    def _run(self, job: dict[str, Any], chunk_id: str) -> tuple[dict[str, Any], str | None]:
        """The worker's answer to a job, and the GPU it ran on: one of this machine's worker processes."""
        handle = self._acquire()
        try:
            handle.conn.send(job)
            answer = self._receive(handle, f"rendering {chunk_id}")
        finally:
            self._release(handle)
        return answer, handle.gpu


class LocalInProcess(LocalBackend):
    """Backend local's Worker in this very process, on the device it was given (a Ray actor's GPU:
    ltxflow/cluster/actor.py): the same job and answer as a worker process, without one."""

    def __init__(self, models: Path | None, kinds_needed: set[str], *, fp8: bool = False):
        super().__init__(models, kinds_needed, fp8=fp8)
        self.max_concurrency = 1
        self.worker: Any = None

    def _run(self, job: dict[str, Any], chunk_id: str) -> tuple[dict[str, Any], str | None]:
        from ltxflow.backends.ltxworker import Worker, answer, env_max_transformers

        if self.worker is None:  # built once, kept between jobs: the point of a long-lived actor
            os.environ.setdefault("TQDM_DISABLE", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            self.worker = Worker({k: str(v) for k, v in self.weights.items()}, None, self.fp8, env_max_transformers())
        return answer(self.worker, job), os.environ.get("CUDA_VISIBLE_DEVICES")

    def close(self) -> None:
        if self.worker is not None:
            self.worker.drop_models()
            self.worker = None
