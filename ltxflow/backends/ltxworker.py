"""The local backend's worker process: Lightricks' ltx-pipelines 1.0.0 on one device, weights kept.

Runs in a child process (one per GPU, CUDA_VISIBLE_DEVICES set by the parent) and serves jobs sent
over a pipe until it gets None. torch and ltx-pipelines are imported here only. Built models are
kept between jobs (MemoLedger): the text encoder, VAEs, vocoder and upsampler once per worker, the
transformer once per LoRA set (at most `max_transformers` fused copies at a time). An
out-of-memory error fails its job with advice and drops the cached transformers, and the worker
goes on with the next job.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

# Defaults of ltx-pipelines 1.0.0 for LTX-2.3 (ltx_pipelines/utils/constants.py).
VIDEO_GUIDER = {"cfg_scale": 3.0, "stg_scale": 1.0, "rescale_scale": 0.7, "modality_scale": 3.0}
AUDIO_GUIDER = {"cfg_scale": 7.0, "stg_scale": 1.0, "rescale_scale": 0.7, "modality_scale": 3.0}
DEFAULT_STEPS = 30
OOM_ADVICE = ("lower the resolution, or chunking.max_frames (shorter chunks), use fewer LoRAs, set `fp8: true` "
              "in the project, or LTXFLOW_LTX_MAX_TRANSFORMERS=1 (keep one transformer loaded)")


def apply_gemma_config(folder: Path) -> bool:
    """ltx-core builds the Gemma 3 text encoder from a hard-coded config (12B) and ignores the
    folder's config.json; apply the folder's config when it says otherwise. True when it changed."""
    from ltx_core.text_encoders.gemma.config import GEMMA3_CONFIG_FOR_LTX as target

    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    changed = False

    def assign(obj: Any, values: dict[str, Any]) -> None:
        nonlocal changed
        for name in getattr(obj, "__dataclass_fields__", {}):
            if name not in values:
                continue
            value, current = values[name], getattr(obj, name)
            if hasattr(current, "__dataclass_fields__") and isinstance(value, dict):
                assign(current, value)
            elif current != value:
                setattr(obj, name, value)
                changed = True

    assign(target, data)
    return changed


class Worker:
    def __init__(self, weights: dict[str, str], device: str | None, fp8: bool, max_transformers: int = 2):
        import torch

        if not torch.cuda.is_available():  # ltx-pipelines 1.0.0 calls it unconditionally
            torch.cuda.synchronize = lambda *a, **k: None  # type: ignore[assignment]
        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.weights = {k: Path(v) for k, v in weights.items()}
        self.fp8 = fp8
        self.max_transformers = max_transformers
        self.memo: dict[tuple, Any] = {}
        self.builds: dict[str, int] = {}
        self.pipelines: dict[tuple, Any] = {}
        self.frozen = False
        self.dtypes: list[str] = []  # of the transformer built last
        apply_gemma_config(self.weights["gemma"])

    # -- models ---------------------------------------------------------------------------------

    def _pipeline(self, kind: str, loras: tuple) -> Any:
        """The pipeline for a job kind and user LoRA set, its ledgers drawing on the shared memo."""
        from ltx_core.loader import LTXV_LORA_COMFY_RENAMING_MAP, LoraPathStrengthAndSDOps

        key = (kind, loras)
        if key in self.pipelines:
            return self.pipelines[key]
        import ltx_pipelines as lp
        from ltx_core.quantization.policy import QuantizationPolicy

        w = self.weights
        user = [LoraPathStrengthAndSDOps(path, scale, LTXV_LORA_COMFY_RENAMING_MAP) for path, scale in loras]
        common = {"gemma_root": str(w["gemma"]), "spatial_upsampler_path": str(w["upsampler"]), "loras": user,
                  "device": self.device, "quantization": QuantizationPolicy.fp8_cast() if self.fp8 else None}
        if kind == "distilled":
            pipe = lp.DistilledPipeline(distilled_checkpoint_path=str(w["distilled"]), **common)
        else:
            cls = lp.A2VidPipelineTwoStage if kind == "a2v" else lp.TI2VidTwoStagesPipeline
            distilled = [LoraPathStrengthAndSDOps(str(w["distilled_lora"]), 0.8, LTXV_LORA_COMFY_RENAMING_MAP)]
            pipe = cls(checkpoint_path=str(w["dev"]), distilled_lora=distilled, **common)
        for name, value in list(vars(pipe).items()):
            if type(value).__name__ == "ModelLedger":
                setattr(pipe, name, self._memo_ledger(value))
        self.pipelines = {k: v for k, v in self.pipelines.items() if k[1] == loras}  # one LoRA set at a time
        self.pipelines[key] = pipe
        return pipe

    def _memo_ledger(self, ledger: Any) -> Any:
        from ltx_pipelines.utils.model_ledger import ModelLedger

        worker = self

        class MemoLedger(ModelLedger):
            def with_loras(self, loras):  # the base class builds a plain ModelLedger here
                return worker._memo_ledger(ModelLedger.with_loras(self, loras))

        for name in ("transformer", "video_encoder", "video_decoder", "audio_encoder", "audio_decoder", "vocoder",
                     "text_encoder", "gemma_embeddings_processor", "spatial_upsampler"):
            setattr(MemoLedger, name, self._memoised(name))
        memo = MemoLedger.__new__(MemoLedger)
        memo.__dict__.update(ledger.__dict__)
        return memo

    def _memoised(self, name: str):
        from ltx_pipelines.utils.model_ledger import ModelLedger

        build = getattr(ModelLedger, name)
        worker = self

        def get(ledger):
            source = {"text_encoder": ledger.gemma_root_path, "gemma_embeddings_processor": ledger.checkpoint_path,
                      "spatial_upsampler": ledger.spatial_upsampler_path}.get(name, ledger.checkpoint_path)
            loras = tuple((str(lo.path), float(lo.strength)) for lo in ledger.loras) if name == "transformer" else ()
            key = (name, str(source), loras)
            if key not in worker.memo:
                if name == "transformer":
                    kept = [k for k in worker.memo if k[0] == "transformer"]
                    for old in kept[: max(0, len(kept) - worker.max_transformers + 1)]:
                        del worker.memo[old]  # the oldest fused copies go first
                    gc.collect()
                worker.memo[key] = build(ledger)
                worker.builds[name] = worker.builds.get(name, 0) + 1
                if name == "transformer":
                    worker.dtypes = sorted({str(p.dtype).removeprefix("torch.")
                                            for p in worker.memo[key].parameters()})
            return worker.memo[key]

        return get

    # -- one job --------------------------------------------------------------------------------

    def render(self, job: dict[str, Any]) -> dict[str, Any]:
        torch = self.torch
        from ltx_core.components.guiders import MultiModalGuiderParams
        from ltx_pipelines.utils.args import ImageConditioningInput

        t0 = time.monotonic()
        frames, fps = job["frames"], job["fps"]
        images = []
        if job.get("start_image"):
            images.append(ImageConditioningInput(job["start_image"], 0, float(job.get("start_strength", 1.0))))
        if job.get("end_image"):
            images.append(ImageConditioningInput(job["end_image"], frames - 1, float(job.get("end_strength", 1.0))))
        loras = tuple((p, float(s)) for p, s in job.get("loras", []))
        pipe = self._pipeline(job["kind"], loras)
        common = {"prompt": job["prompt"], "seed": int(job["seed"]), "height": job["height"], "width": job["width"],
                  "num_frames": frames, "frame_rate": float(fps), "images": images}
        if job["kind"] != "distilled":
            video_guider = MultiModalGuiderParams(**{**VIDEO_GUIDER, "cfg_scale": job.get("guidance") or 3.0},
                                                  stg_blocks=[0])
            common.update(negative_prompt=job.get("negative_prompt") or "", video_guider_params=video_guider,
                          num_inference_steps=int(job.get("steps") or DEFAULT_STEPS))
        if job["kind"] == "a2v":
            common.update(audio_path=job["audio"], audio_max_duration=frames / fps)
        elif job["kind"] == "i2v":
            common.update(audio_guider_params=MultiModalGuiderParams(**AUDIO_GUIDER, stg_blocks=[0]))
        with torch.inference_mode():
            chunks, _audio = pipe(**common)
            video = torch.cat([c.to("cpu") for c in chunks], dim=0)  # [frames, H, W, 3] uint8
        if not self.frozen:  # the pipelines gc.collect() several times a call: keep the models out of it
            gc.collect()
            gc.freeze()
            self.frozen = True
        write_clip(video.numpy(), job["out"], job["rate"])
        return {"ok": True, "clip": job["out"], "frames": int(video.shape[0]), "builds": dict(self.builds),
                "transformer_dtypes": self.dtypes,
                "seconds": round(time.monotonic() - t0, 3), "device": str(self.device)}

    def drop_models(self) -> None:
        self.memo.clear()
        self.pipelines.clear()
        gc.collect()
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()


def write_clip(frames, out: str, rate: str) -> None:
    """Frames (uint8 [n, H, W, 3]) to a lossless clip for normalize, at `rate` ("24000/1001")."""
    from fractions import Fraction

    from ltxflow.media.encode import LOSSLESS_VIDEO, FrameWriter, encode_frames_args
    from ltxflow.media.ffmpeg import find_ffmpeg

    h, w = frames.shape[1:3]
    args = encode_frames_args(find_ffmpeg().path, w, h, Fraction(rate), Path(out), LOSSLESS_VIDEO)
    with FrameWriter(args, Path(out),
                     f"local clip {Path(out).name}") as writer:
        for frame in frames:
            writer.write(frame)


def serve(conn, weights: dict[str, str], device: str | None, fp8: bool, max_transformers: int,
          fault: str | None = None, gpus: str | None = None) -> None:
    """The worker's loop: jobs in, results out, until None. `gpus`: the GPU ids this worker may
    see (CUDA_VISIBLE_DEVICES, set here, before torch is imported; None: as inherited). `fault`
    ("oom@TEXT") makes a job whose prompt contains TEXT raise torch's out-of-memory error once
    (to test recovery)."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.setpgid(0, 0)  # a group of its own, with its ffmpeg: the parent kills both at once on a stop
    os.environ.setdefault("TQDM_DISABLE", "1")  # progress is the parent's to show, per chunk
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        worker = Worker(weights, device, fp8, max_transformers)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the build
        conn.send({"ok": False, "kind": "start", "message": f"{type(exc).__name__}: {exc}"})
        return
    conn.send({"ok": True, "ready": True, "device": str(worker.device),
               "visible": os.environ.get("CUDA_VISIBLE_DEVICES")})
    while True:
        job = conn.recv()
        if job is None:
            return
        oom = bool(fault and fault.startswith("oom@") and fault[4:] in job["prompt"])
        if oom:
            fault = None
        conn.send(answer(worker, job, inject_oom=oom))


def answer(worker: Worker, job: dict[str, Any], inject_oom: bool = False) -> dict[str, Any]:
    """One job's answer (a dict with `ok`): what every host of a Worker sends back, the worker
    process above and a Ray actor alike. Out of memory drops the built models; any other error
    fails the job alone, and the worker serves the next."""
    try:
        if inject_oom:
            raise worker.torch.OutOfMemoryError("CUDA out of memory (injected)")
        return worker.render(job)
    except worker.torch.OutOfMemoryError as exc:
        worker.drop_models()
        return {"ok": False, "kind": "oom", "message": f"out of memory on {worker.device}: "
                                                      f"{str(exc).splitlines()[0]}; {OOM_ADVICE}"}
    except Exception as exc:  # noqa: BLE001 - one job failed; the worker serves the next
        tail = traceback.format_exc().strip().splitlines()[-3:]
        return {"ok": False, "kind": "error", "message": f"{type(exc).__name__}: {exc}",
                "trace": " | ".join(tail)}


def env_max_transformers() -> int:
    try:
        return max(1, int(os.environ.get("LTXFLOW_LTX_MAX_TRANSFORMERS", "2")))
    except ValueError:
        return 2
