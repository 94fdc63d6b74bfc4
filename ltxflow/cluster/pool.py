"""The driver's side of a Ray build: a Backend whose render hands the chunk to a free Ray actor.

The build keeps everything it owns (the DAG and its order, the cache, the journal, retries of
transient errors); Ray only places the actors and runs their calls. Each of the build's threads
takes a free actor, preferring one whose last chunk had the same LoRA set (its models are
built), sends the request with its input files (through the object store, once per digest),
waits for the clip (bytes, or a file in the shared folder) and checks its digest. Ray's own
retries are off (a retried GPU chunk would run twice): when an actor or its node dies under a
chunk, Ray restarts the actor (on a surviving or new node) and the chunk is sent again, to
whichever actor is free; a chunk under which actors died MAX_ACTOR_DEATHS times fails alone.
A stop (Ctrl-C, SIGTERM) cancels the calls; close() kills the actors and, when the build started
the cluster (`local`), shuts it down.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Iterator

from ltxflow.backends import backend_class
from ltxflow.backends.base import Backend, BackendContext, BackendError, ChunkRequest, RenderResult
from ltxflow.cluster import RaySettings
from ltxflow.cluster.actor import ChunkActor, request_files
from ltxflow.errors import BackendUnavailable, Stopped
from ltxflow.registry import BACKENDS

MAX_ACTOR_DEATHS = 2  # actors that died under one chunk before it fails (the chunk is the likely cause)
MAX_UNAVAILABLE = 60  # calls refused by a restarting actor before the chunk fails (RESTART_WAIT_S apart)
RESTART_WAIT_S = 0.5
# The driver's settings an actor renders with. Paths of this machine (LTXFLOW_FFMPEG, the cache,
# LTXFLOW_GPUS) stay here: a node has its own, and Ray gives each actor its GPU.
ACTOR_ENV = ("LTXFLOW_TEST_BACKEND", "LTXFLOW_LOCAL_FAULT", "LTXFLOW_LTX_MAX_TRANSFORMERS")
POLL_S = 0.2  # how often a waiting call looks at the build's stop event
CLOSE_WAIT_S = 5.0  # how long close() waits for the actors to remove their scratch folders


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def connect(address: str) -> tuple[Any, bool]:
    """The ray module connected to `address`, and whether this call started the connection (and so
    shuts it down after the build). A connection this process already has is used as it is."""
    try:
        import ray
    except ImportError:
        raise BackendUnavailable("--ray needs Ray: pip install 'ltxflow[ray]'") from None
    if ray.is_initialized():
        return ray, False
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:  # the clips' bytes travel as return values; actor output stays out of the build's log
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BackendUnavailable(f"--ray {address}: cannot connect to the Ray cluster: {exc}") from None
    finally:
        if main:  # ray.init makes SIGTERM exit at once; the build's own handling (Ctrl-C's) is put back
            signal.signal(signal.SIGTERM, previous)
    return ray, True


def cluster_info(ray: Any) -> dict[str, Any]:
    """The cluster's live nodes and its total GPUs and CPUs."""
    total = ray.cluster_resources()
    return {"nodes": sum(1 for n in ray.nodes() if n.get("Alive")), "gpus": int(total.get("GPU", 0)),
            "cpus": int(total.get("CPU", 0))}


def actor_count(backend: str, info: dict[str, Any], settings: RaySettings) -> int:
    """How many actors a build runs: `actors` when given, else one per GPU for a backend that
    reads weights (local), one per `cpus_per_actor` CPUs for the others."""
    fits = info["gpus"] if BACKENDS[backend].weights else int(info["cpus"] // settings.cpus_per_actor)
    # Never more than the cluster holds: an actor Ray cannot place waits forever, and the build
    # (its preflight waits for every actor) with it.
    return min(settings.actors, fits) if settings.actors else fits


def no_actor_reason(backend: str, info: dict[str, Any], settings: RaySettings) -> str:
    """Why actor_count found no actor a build could run on this cluster (one line, for `plan` and
    the build's error)."""
    if BACKENDS[backend].weights:
        return (f"no actor can run here: the cluster has {info['gpus']} GPUs for backend {backend} "
                "(one actor per GPU)")
    return (f"no actor can run here: the cluster has {info['cpus']} CPUs for backend {backend}, and each actor "
            f"reserves {settings.cpus_per_actor:g} (ray: cpus_per_actor)")


@dataclass
class _Slot:
    handle: Any
    busy: bool = False
    group: Hashable = None  # the LoRA set of its last chunk (None: none yet)


class RayBackend(Backend):
    """Backend `name` rendered by Ray actors (see the module's docstring)."""

    def __init__(self, name: str, ctx: BackendContext, settings: RaySettings):
        inner = backend_class(name)
        self.name, self.keeps_models, self.draws = name, inner.keeps_models, inner.draws
        self.settings, self.stop, self.emit = settings, ctx.stop, ctx.emit
        if settings.shared is not None:
            settings.shared.mkdir(parents=True, exist_ok=True)
        self.slots: list[_Slot] = []
        self.ray, self.started = connect(settings.address)
        try:  # the build closes a backend it got: one that fails to start closes itself
            self._start(name, ctx, settings)
        except BaseException:
            self.close()
            raise

    def _start(self, name: str, ctx: BackendContext, settings: RaySettings) -> None:
        self.ex = self.ray.exceptions
        info = cluster_info(self.ray)
        n = actor_count(name, info, settings)
        gpu = BACKENDS[name].weights
        if n < 1:
            raise BackendUnavailable(f"--ray {settings.address}: {no_actor_reason(name, info, settings)}")
        options = {"num_gpus": 1, "num_cpus": 0} if gpu else {"num_cpus": settings.cpus_per_actor}
        # num_cpus=0 on GPU actors: one that holds a CPU for its life starves plain tasks on a node
        # with as many CPUs as GPUs.
        cls = self.ray.remote(ChunkActor).options(max_restarts=-1, max_task_retries=0, scheduling_strategy="SPREAD",
                                                  **options)
        env = {k: v for k, v in os.environ.items() if k in ACTOR_ENV}
        from ltxflow.backends.local import job_kind

        kinds = sorted({job_kind(mode, family) for mode, family in ctx.needs})
        for _ in range(n):
            self.slots.append(_Slot(cls.remote(name, env, str(ctx.models) if ctx.models else None, kinds, ctx.fp8,
                                               str(settings.shared) if settings.shared else None)))
        self.max_concurrency = n
        self.cond = threading.Condition()
        self.sent: dict[tuple[str, int, int], tuple[str, Any]] = {}  # (path, size, mtime) -> (digest, object ref)
        self.drawn: dict[tuple, dict[str, Any]] = {}  # the last chunks' drawn frames, oldest first
        self.emit("cluster_ready", address=settings.address, nodes=info["nodes"], gpus=info["gpus"],
                  cpus=info["cpus"], actors=n, shared=str(settings.shared) if settings.shared else None)

    def preflight(self) -> None:
        """Every actor checks its node can render (backend local: ltx-pipelines and the weights there).
        An actor that dies meanwhile (its node lost) is restarted by Ray and asked again."""
        refs = [s.handle.preflight.remote() for s in self.slots]
        for slot, ref in zip(self.slots, refs):
            deaths = unavailable = 0
            while True:
                try:
                    self._wait(ref, "starting")
                    break
                except (self.ex.RayActorError, self.ex.ActorUnavailableError) as exc:
                    if isinstance(exc, self.ex.ActorUnavailableError):
                        unavailable += 1
                    else:
                        deaths += 1
                    if deaths >= MAX_ACTOR_DEATHS or unavailable > MAX_UNAVAILABLE:
                        lines = str(exc).strip().splitlines() or [type(exc).__name__]
                        last = f" ... {lines[-1][:300]}" if len(lines) > 1 else ""
                        raise BackendUnavailable(f"--ray {self.settings.address}: a Ray actor could not start: "
                                                 f"{_first_line(exc)}{last}") from None
                    self.stop.wait(RESTART_WAIT_S)
                    ref = slot.handle.preflight.remote()

    def render(self, request: ChunkRequest, workdir: Path) -> RenderResult:
        out = self._call("render", request)
        if "data" in out:
            data = out["data"]
        else:
            shared = Path(out["path"])
            if self.settings.shared is None or shared.parent != self.settings.shared:
                raise BackendError(f"{request.chunk_id}: actor {out['actor']} answered with a clip outside the "
                                   f"shared folder ({shared})")
            data = shared.read_bytes()
            shared.unlink(missing_ok=True)
        if hashlib.sha256(data).hexdigest() != out["sha256"]:
            raise BackendError(f"{request.chunk_id}: the clip from actor {out['actor']} does not match its "
                               "digest", transient=True)
        clip = workdir / f"ray{out['suffix']}"
        clip.write_bytes(data)
        details = {**out["details"], "ray_node": out["node"], "ray_actor": out["actor"], "ray_host": out["host"]}
        return RenderResult(clip, out["seed"], out["cost_usd"], details)

    def draw(self, request: ChunkRequest) -> Iterator[Any]:
        from PIL import Image

        memo = (request.chunk_id, request.key, tuple(d for d, _ in self._files(request).values()))
        with self.cond:
            out = self.drawn.get(memo)
        if out is None:  # a build reads a chunk's drawn frames twice (colour statistics, then the clip)
            out = self._call("draw", request)
            digest = hashlib.sha256()
            for blob in out["frames"]:
                digest.update(blob)
            if digest.hexdigest() != out["sha256"]:  # not kept: the retry draws them again
                raise BackendError(f"{request.chunk_id}: the frames from actor {out['actor']} do not match their "
                                   "digest", transient=True)
            with self.cond:
                self.drawn[memo] = out
                while len(self.drawn) > 2 * self.max_concurrency:
                    self.drawn.pop(next(iter(self.drawn)))
        import zlib

        for blob in out["frames"]:
            yield Image.frombytes(out["mode"], tuple(out["size"]), zlib.decompress(blob))

    # -- dispatch -------------------------------------------------------------------------------

    def _call(self, method: str, request: ChunkRequest) -> dict[str, Any]:
        """One chunk's call on a free actor, sent again when the actor or its node dies under it."""
        group = (request.mode, request.family, tuple((str(lo.path or lo.url), lo.scale) for lo in request.loras))
        files = self._files(request)
        deaths = unavailable = 0
        while True:
            slot = self._take(group)
            try:
                out = self._wait(getattr(slot.handle, method).remote(request, files), request.chunk_id)
            except self.ex.ActorUnavailableError as exc:  # restarting: sent again, not counted as a death
                slot.group = None
                unavailable += 1
                if unavailable > MAX_UNAVAILABLE:
                    raise BackendError(f"{request.chunk_id}: no Ray actor became available: {exc}") from None
                self.emit("chunk_requeued", chunk=request.chunk_id, attempt=deaths + unavailable,
                          error=_first_line(exc))
                self.stop.wait(RESTART_WAIT_S)
                continue
            except (self.ex.RayActorError, self.ex.ObjectLostError) as exc:
                deaths += 1
                slot.group = None  # restarted: it holds no models now
                why = _first_line(exc)
                if deaths >= MAX_ACTOR_DEATHS:
                    raise BackendError(f"{request.chunk_id}: its Ray actor died under it {deaths} times (the "
                                       f"chunk is the likely cause, e.g. out of host memory); not sent again. "
                                       f"Last: {why}") from None
                self.emit("chunk_requeued", chunk=request.chunk_id, attempt=deaths + unavailable, error=why)
                continue
            finally:
                self._give(slot)
            self.emit("chunk_placed", chunk=request.chunk_id, node=out["node"], actor=out["actor"],
                      host=out["host"], gpus=out["gpus"], requeued=deaths)
            return out

    def _take(self, group: Hashable) -> _Slot:
        """A free actor: one whose last chunk had this LoRA set, else a fresh one, else any."""
        with self.cond:
            while True:
                if self.stop.is_set():
                    raise Stopped("stopped")
                free = [s for s in self.slots if not s.busy]
                if free:
                    slot = next((s for s in free if s.group == group), None) or \
                        next((s for s in free if s.group is None), free[0])
                    slot.busy, slot.group = True, group
                    return slot
                self.cond.wait(POLL_S)

    def _give(self, slot: _Slot) -> None:
        with self.cond:
            slot.busy = False
            self.cond.notify()

    def _wait(self, ref: Any, what: str) -> Any:
        """The call's result; Stopped (the call cancelled) when the build stops first; the
        backend's own exception when it raised one in the actor."""
        ray = self.ray
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_S)
            if ready:
                try:
                    return ray.get(ref)
                except self.ex.TaskCancelledError:
                    raise Stopped(f"{what}: stopped") from None
                except self.ex.RayTaskError as exc:  # the backend raised: its own error, as if local
                    cause = exc.cause if isinstance(exc.cause, BaseException) else None
                    if cause is None:
                        raise BackendError(f"{what}: {exc}") from None
                    raise cause from None
            if self.stop.is_set():
                ray.cancel(ref)
                raise Stopped(f"{what}: stopped")

    def _files(self, request: ChunkRequest) -> dict[str, tuple[str, Any]]:
        """The request's files as (digest, object ref), each put in the object store once per build."""
        out = {}
        for path in request_files(request):
            st = path.stat()
            key = (str(path), st.st_size, st.st_mtime_ns)
            with self.cond:
                known = self.sent.get(key)
            if known is None:
                data = path.read_bytes()
                known = (hashlib.sha256(data).hexdigest(), self.ray.put(data))
                with self.cond:
                    self.sent[key] = known
            out[str(path)] = known
        return out

    def close(self) -> None:
        """Kill the actors (their GPUs freed at once), then shut Ray down when this build started it.
        After a build that was not stopped, the actors first remove their scratch folders (the
        inputs they kept), for a few seconds at most."""
        slots = self.slots
        if slots and not self.stop.is_set():
            try:
                self.ray.wait([s.handle.close.remote() for s in slots], num_returns=len(slots), timeout=CLOSE_WAIT_S)
            except Exception:  # noqa: BLE001 - the actors are killed below whatever happened
                pass
        for slot in slots:
            try:
                self.ray.kill(slot.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone, or the cluster is
                pass
        self.slots = []
        self.sent, self.drawn = {}, {}  # their object refs die with the cluster's connection
        if self.started and self.ray.is_initialized():  # after build_done: nothing more is emitted
            self.ray.shutdown()
            self.started = False
