"""What runs inside a Ray actor: one backend kept for the actor's life, the chunk's input files
fetched from the object store by digest, the clip sent back (bytes, or a file in a shared folder)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import socket
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any

from ltxflow.backends.base import BackendContext, ChunkRequest

# The ChunkRequest fields that name a file of the driver's machine (the LoRAs' are in `loras`).
FILE_FIELDS = ("start_image", "end_image", "audio")


def request_files(request: ChunkRequest) -> list[Path]:
    """The files of the driver's machine a request names: what an actor elsewhere needs sent."""
    return [p for p in [*(getattr(request, f) for f in FILE_FIELDS), *(lo.path for lo in request.loras)]
            if p is not None]


SCRATCH = "ltxflow-actor-"  # an actor's scratch folder: ltxflow-actor-<pid>-<random>


def sweep_scratch(folder: Path) -> list[Path]:
    """Remove the scratch folders of actors whose process is gone (an actor killed while busy
    never gets to remove its own, and it holds the inputs it received, LoRAs included). A folder
    whose process id is alive again is left: better a stale folder than a live actor's."""
    gone = []
    for d in folder.glob(f"{SCRATCH}*-*"):
        pid = d.name[len(SCRATCH):].split("-", 1)[0]
        if not pid.isdigit() or d.is_symlink() or not d.is_dir() or d.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
        except PermissionError:
            continue
    return gone


class ChunkActor:
    """Renders chunks with backend `backend`, built once here and kept (backend local: its Worker,
    with its models, in this process, on the GPU Ray gave the actor). `env`: the driver's LTXFLOW_*
    settings. `shared`: write clips into this folder (mounted on every node) instead of returning
    their bytes."""

    def __init__(self, backend: str, env: dict[str, str], models: str | None, kinds: list[str], fp8: bool,
                 shared: str | None):
        os.environ.update(env)
        sweep_scratch(Path(tempfile.gettempdir()))
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-"))
        self.shared = Path(shared) if shared else None
        self.files: dict[str, Path] = {}  # digest -> the input file here
        if backend == "local":
            from ltxflow.backends.local import LocalInProcess

            self.backend: Any = LocalInProcess(Path(models) if models else None, set(kinds), fp8=fp8)
        else:
            from ltxflow.backends import make_backend

            self.backend = make_backend(backend, BackendContext(self.scratch, stop=threading.Event(),
                                                                models=Path(models) if models else None, fp8=fp8))

    def where(self) -> dict[str, Any]:
        """This actor's node, id, host, process and GPUs (for the log)."""
        import ray

        ctx = ray.get_runtime_context()
        return {"node": ctx.get_node_id(), "actor": ctx.get_actor_id(), "host": socket.gethostname(),
                "pid": os.getpid(), "gpus": [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])]}

    def preflight(self) -> dict[str, Any]:
        self.backend.preflight()
        return self.where()

    def render(self, request: ChunkRequest, files: dict[str, tuple[str, Any]]) -> dict[str, Any]:
        """The backend's render of `request`: the clip's bytes (or its path in the shared folder)
        and sha256, the render's seed, cost and details, and where it ran."""
        request = self._localize(request, files)
        work = Path(tempfile.mkdtemp(dir=self.scratch, prefix="chunk-"))
        try:
            result = self.backend.render(request, work)
            data = result.clip.read_bytes()
            out = {"sha256": hashlib.sha256(data).hexdigest(), "suffix": result.clip.suffix or ".mp4",
                   "seed": result.seed, "cost_usd": result.cost_usd, "details": result.details, **self.where()}
            if self.shared is None:
                out["data"] = data
            else:  # whole or absent: written aside, then renamed
                path = self.shared / f"{request.key[:32]}-{out['sha256'][:16]}{out['suffix']}"
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)
                out["path"] = str(path)
            return out
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def draw(self, request: ChunkRequest, files: dict[str, tuple[str, Any]]) -> dict[str, Any]:
        """A drawing backend's frames for `request`, each compressed (zlib), exact: the same pixels
        the driver would have drawn."""
        request = self._localize(request, files)
        blobs, size, mode = [], (request.width, request.height), "RGB"
        digest = hashlib.sha256()
        for img in self.backend.draw(request):
            size, mode = img.size, img.mode
            blob = zlib.compress(img.tobytes(), 1)
            digest.update(blob)
            blobs.append(blob)
        return {"frames": blobs, "size": list(size), "mode": mode, "sha256": digest.hexdigest(), **self.where()}

    def _localize(self, request: ChunkRequest, files: dict[str, tuple[str, Any]]) -> ChunkRequest:
        """`request` with each file of the driver's machine replaced by its copy here (fetched once
        per digest, kept for the actor's life: a LoRA or keyframe shared by chunks is sent once)."""
        import ray

        def local(path: Path | None) -> Path | None:
            if path is None:
                return None
            digest, ref = files[str(path)]
            if digest not in self.files:
                data = ray.get(ref)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise OSError(f"{path.name}: the bytes received do not match their digest")
                kept = self.scratch / "inputs" / f"{digest[:32]}{path.suffix}"
                kept.parent.mkdir(exist_ok=True)
                kept.write_bytes(data)
                self.files[digest] = kept
            return self.files[digest]

        changes: dict[str, Any] = {f: local(getattr(request, f)) for f in FILE_FIELDS}
        changes["loras"] = tuple(dataclasses.replace(lo, path=local(lo.path)) for lo in request.loras)
        return dataclasses.replace(request, **changes)

    def close(self) -> None:
        self.backend.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
