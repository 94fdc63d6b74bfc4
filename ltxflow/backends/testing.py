"""A backend for tests and benchmarks: real small clips, a fixed latency, failures on demand.

Configured by LTXFLOW_TEST_BACKEND, e.g. "sleep=0.5,fail=verse.1,transient=drop.0:2,jobs=8":
sleep seconds per chunk; chunks that always fail; chunks that fail transiently N times first;
how many chunks it renders at once; and pace=SECONDS, the time its frames take to write, spread
over them (its ffmpeg runs all along: how tests stop a build mid-render). Its frames are flat
colours keyed by chunk and frame index, so they are deterministic and cheap.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from ltxflow.backends.base import Backend, BackendContext, BackendError, ChunkRequest, RenderResult
from ltxflow.errors import Stopped
from ltxflow.media.encode import LOSSLESS_VIDEO, FfmpegFailed, FrameWriter, encode_frames_args
from ltxflow.media.ffmpeg import find_ffmpeg



class TestBackend(Backend):  # explicit: inherits the no-op preflight and committed
    __test__ = False  # not a pytest test class
    name = "test"

    def __init__(self, sleep: float = 0.0, fail: frozenset[str] = frozenset(),
                 transient: dict[str, int] | None = None, max_concurrency: int = 64,
                 stop: threading.Event | None = None, pace: float = 0.0):
        self.sleep, self.fail, self.pace = sleep, fail, pace
        self.stop = stop or threading.Event()  # set when the build stops: the sleep and frame loop give up
        self.transient = dict(transient or {})
        self.max_concurrency = max_concurrency
        self.calls: list[str] = []
        self._lock = threading.Lock()

    @classmethod
    def create(cls, ctx: BackendContext) -> "TestBackend":
        return cls.from_env(stop=ctx.stop)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, stop: threading.Event | None = None) -> "TestBackend":
        env = os.environ if env is None else env
        opts: dict[str, str] = {}
        for part in filter(None, env.get("LTXFLOW_TEST_BACKEND", "").split(",")):
            k, _, v = part.partition("=")
            opts.setdefault(k.strip(), "")
            opts[k.strip()] += ("+" if opts[k.strip()] else "") + v.strip()
        transient = {}
        for item in filter(None, opts.get("transient", "").split("+")):
            chunk, _, n = item.partition(":")
            transient[chunk] = int(n or 1)
        return cls(sleep=float(opts.get("sleep") or 0), fail=frozenset(filter(None, opts.get("fail", "").split("+"))),
                   transient=transient, max_concurrency=int(opts.get("jobs") or 64), stop=stop,
                   pace=float(opts.get("pace") or 0))

    def render(self, request: ChunkRequest, workdir: Path) -> RenderResult:
        with self._lock:
            self.calls.append(request.chunk_id)
            left = self.transient.get(request.chunk_id, 0)
            if left:
                self.transient[request.chunk_id] = left - 1
        if self.sleep and self.stop.wait(self.sleep):
            raise Stopped(f"{request.chunk_id}: stopped")
        if left:
            raise BackendError(f"{request.chunk_id}: simulated transient failure", transient=True)
        if request.chunk_id in self.fail:
            raise BackendError(f"{request.chunk_id}: simulated failure")
        out = workdir / "test.mp4"
        args = encode_frames_args(find_ffmpeg().path, request.width, request.height, request.fps, out, LOSSLESS_VIDEO)
        seed = hashlib.sha256(request.chunk_id.encode()).digest()
        try:
            with FrameWriter(args, out, f"test {request.chunk_id}", stop=self.stop) as writer:
                for i in range(request.frames):
                    colour = bytes(((seed[0] + 3 * i) % 256, seed[1], (seed[2] + i) % 256))
                    writer.write(colour * (request.width * request.height))
                    if self.pace:
                        self.stop.wait(self.pace / request.frames)  # the next write sees a stop
        except FfmpegFailed as exc:
            raise BackendError(str(exc)) from exc
        return RenderResult(out, request.seed, 0.0, {"renderer": "test"})
