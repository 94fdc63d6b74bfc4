"""`backend: fal`: each chunk is a request to fal's hosted LTX-2.3 queue, followed to its clip.

render(): media to URLs (uploaded once per digest) -> the body in the endpoint's own fields ->
an intent journalled -> submit (with the project's platform headers), journalled at once -> status polled with backoff (queue position and logs reported) ->
the result fetched and the video downloaded into the journal (paid for: kept until the chunk is
committed) -> a copy in the work folder for normalize. A journalled request is followed again
instead of submitted again, so a crash, a kill or Ctrl-C never pays twice. A kill between sending
a submit and journalling its answer cannot be recovered (fal has no idempotency key), only
detected: the intent written before the submit makes the next build submit the chunk again and
report a possible duplicate charge, with its price. Chunks of one build that share a key (a
repeated chorus) are one request: a render of a key another render is working on waits for it and
copies its clip (or, when that one failed, tries itself).

The journal lies in the project's cache, which a pull request can commit: an entry is followed
only when it is sound for this chunk and this queue (journal.py says why dropping the others
cannot pay twice), the key goes to the configured hosts only (falapi.py), and one hosted build at
a time uses a cache's journal (taken in preflight, or at the first render; released in close).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ltxflow.backends.base import Backend, BackendContext, BackendError, ChunkRequest, RenderResult
from ltxflow.backends.falapi import (KEY_HELP, FalApi, FalAuthError, FalError, FalHosts, FalKey, Handle,
                                     RetryPolicy, SubmitLost, _say, detail_field, max_download_bytes, submit_headers)
from ltxflow.backends.falstore import UploadStore
from ltxflow.endpoints import Endpoint, catalog
from ltxflow.backends.journal import Journal, JournalEntry, JournalLock, handle_problem
from ltxflow.errors import Stopped
from ltxflow.media.frames import video_info
from ltxflow.media.probe import MediaError, file_digest


@dataclass(frozen=True)
class PollPolicy:
    first_s: float = 1.0
    max_s: float = 10.0
    # How long one build follows a request that has not completed. fal queues what an account
    # cannot run yet (2 at once for a new account), so a long build's last chunks may wait a long
    # while; an hour covers a queue of dozens of chunks of a minute or two each and still bounds a
    # request that never moves. Past it the request stays journalled: the next build collects it.
    deadline_s: float = 3600.0
    factor: float = 1.5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "PollPolicy":
        """LTXFLOW_FAL_POLL="first_s,max_s,deadline_s" (seconds between status polls, and how long
        a request is followed; any prefix of it)."""
        env = os.environ if env is None else env
        parts = [float(p) for p in env.get("LTXFLOW_FAL_POLL", "").split(",") if p.strip()]
        return cls(*parts[:3]) if parts else cls()


def submitted(journal: Journal, hosts: FalHosts) -> set[str]:
    """Keys of chunks whose requests an earlier build submitted (paid for) to the queue at
    `hosts` (a request journalled against another host is not followed there: a build submits that
    chunk again). The one count of what is in flight, for a build and for `plan`."""
    return journal.keys(hosts.queue)


@dataclass(frozen=True)
class _Done:
    """A render of a key that succeeded in this build: what a render of the same key copies."""

    chunk: str
    start: str | None  # the start image it was made from (digest or URL)
    clip: Path  # its download in journal/results/ (kept while renders of the key are in flight)
    details: dict[str, Any]


@dataclass
class _Flight:
    """The renders of one key in this build: the one holding `lock` works, the others wait for it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0  # renders of the key that started and have not returned
    done: _Done | None = None
    committed: bool = False  # committed() came while renders were in flight: forget the request after them


class FalBackend(Backend):
    name = "fal"
    max_concurrency = 64  # fal queues whatever it is sent; --jobs is the limit

    def __init__(self, api: FalApi, journal: Journal, uploads: UploadStore, *, poll: PollPolicy | None = None,
                 emit: Callable[..., None] = lambda *a, **k: None, stop: threading.Event | None = None):
        self.api, self.journal, self.uploads = api, journal, uploads
        self.poll = poll or PollPolicy()
        self.emit = emit
        self.stop = stop or api.stop
        self._lock: JournalLock | None = None
        self._lock_guard = threading.Lock()
        self._flights: dict[str, _Flight] = {}  # guarded by _flights_guard
        self._flights_guard = threading.Lock()

    @classmethod
    def create(cls, ctx: BackendContext) -> "FalBackend":
        return cls.from_env(ctx.cache_root, ctx.project, emit=ctx.emit, stop=ctx.stop)

    @classmethod
    def from_env(cls, cache_root: Path, project: Path | None, *, emit: Callable[..., None],
                 stop: threading.Event, env: Mapping[str, str] | None = None) -> "FalBackend":
        hosts = FalHosts.from_env(env)

        def retried(what: str, attempt: int, delay: float, why: str) -> None:
            emit("fal_retry", what=what, attempt=attempt, delay_s=round(delay, 2), error=why)

        api = FalApi(FalKey.from_env(env), hosts, policy=RetryPolicy.from_env(env), stop=stop, on_retry=retried,
                     max_download=max_download_bytes(env))
        journal = Journal(cache_root, project)
        return cls(api, journal, UploadStore(cache_root, hosts.rest, api.upload, emit, cdn=hosts.cdn), poll=PollPolicy.from_env(env),
                   emit=emit, stop=stop)

    # -- the seam -------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Before anything is submitted: no other hosted build uses this cache's journal (CacheInUse
        names it), a key is set and fal accepts it."""
        self._hold_journal()
        if self.api.key is None:
            raise FalAuthError(f"backend fal needs an API key: {KEY_HELP}")
        try:
            self.api.check_key()
        except FalAuthError:
            raise
        except FalError as exc:
            raise FalError(f"cannot check the key with fal at {self.api.hosts.rest} (LTXFLOW_FAL_REST_URL); "
                           f"nothing was submitted: {exc}") from None

    def committed(self, key: str) -> None:
        """Forget the key's request, once no render of the key (another chunk sharing it) still
        needs its download."""
        with self._flights_guard:
            flight = self._flights.get(key)
            if flight is not None:
                flight.committed = True
                return
        self.journal.remove(key)

    def close(self) -> None:
        with self._lock_guard:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
        self.api.close()

    def _hold_journal(self) -> None:
        """Take the journal's lock for this build, once (`plan` never renders: it never takes it)."""
        with self._lock_guard:
            if self._lock is None:
                self._lock = self.journal.lock()

    def in_flight(self) -> set[str]:
        """Keys whose requests are already submitted (paid for) and will be followed, not resubmitted."""
        return submitted(self.journal, self.api.hosts)

    def render(self, request: ChunkRequest, workdir: Path) -> RenderResult:
        """One request per key in a build: a render of a key another render is working on waits for
        it and copies its clip (from the same start image), or tries itself when that one failed."""
        ep = catalog().get(request.endpoint)
        if ep is None:
            raise BackendError(f"{request.chunk_id}: endpoint {request.endpoint} is not in the catalog")
        t0 = time.monotonic()
        self._hold_journal()
        with self._flights_guard:
            flight = self._flights.setdefault(request.key, _Flight())
            flight.users += 1
        try:
            while not flight.lock.acquire(timeout=0.1):  # another chunk's render of the key works on it
                if self.stop.is_set():
                    raise Stopped(f"{request.chunk_id}: stopped while another chunk with the same key rendered")
            try:
                start = file_digest(request.start_image) if request.start_image is not None else request.start_image_url
                done = flight.done
                if done is not None and done.start == start:
                    return self._share(request, done, workdir, t0)
                result, downloaded = self._render(request, ep, workdir, start, t0)
                flight.done = _Done(request.chunk_id, start, downloaded, result.details)
                return result
            finally:
                flight.lock.release()
        finally:
            self._leave(request.key, flight)

    def _leave(self, key: str, flight: _Flight) -> None:
        with self._flights_guard:
            flight.users -= 1
            if flight.users:
                return
            del self._flights[key]
        if flight.committed:
            self.journal.remove(key)

    def _share(self, request: ChunkRequest, done: _Done, workdir: Path, t0: float) -> RenderResult:
        """The clip another chunk of this build got for the same key: copied, not paid again."""
        clip = workdir / f"fal{done.clip.suffix}"
        shutil.copyfile(done.clip, clip)
        self.emit("chunk_resumed", chunk=request.chunk_id, request_id=done.details["request_id"],
                  endpoint=done.details["endpoint"])
        details = {k: v for k, v in done.details.items() if k in ("request_id", "endpoint", "fal_seed", "fal_headers")}
        details.update(resumed=False, shared_with=done.chunk, seconds=round(time.monotonic() - t0, 3))
        self._check_clip(request, clip)
        return RenderResult(clip, request.seed, 0.0, details)

    def _render(self, request: ChunkRequest, ep: Endpoint, workdir: Path, start: str | None,
                t0: float) -> tuple[RenderResult, Path]:
        """The chunk's own request, submitted or resumed and followed to its clip; with its download."""
        handle, resumed, duplicate = self._handle(request, ep, start)
        downloaded = self._downloaded(request.key)
        if downloaded is None:
            output = self._follow(request, handle)
            downloaded = self._download(request, handle, output)
        clip = workdir / f"fal{downloaded.suffix}"
        shutil.copyfile(downloaded, clip)
        cost = ep.cost(request.width, request.height, request.frames)
        details: dict[str, Any] = {"request_id": handle.request_id, "endpoint": handle.endpoint, "resumed": resumed,
                                   "seconds": round(time.monotonic() - t0, 3)}
        if duplicate:
            details["possible_duplicate_charge"] = True
            details["possible_duplicate_charge_usd"] = cost
        entry = self.journal.get(request.key)
        if entry is not None and entry.headers is not None:
            details["fal_headers"] = dict(entry.headers)
        if entry is not None and isinstance(entry.fal_seed, int) and not isinstance(entry.fal_seed, bool):
            details["fal_seed"] = entry.fal_seed
        self._check_clip(request, clip)
        return RenderResult(clip, request.seed, cost, details), downloaded

    # -- submit or resume -----------------------------------------------------------------------

    def _handle(self, request: ChunkRequest, ep: Endpoint, start: str | None) -> tuple[Handle, bool, bool]:
        """(handle, resumed, possible duplicate): the journalled request, or a new one. An intent
        (a submit whose answer was never journalled) means fal may have queued and charged it:
        the chunk is submitted again, reported as a possible duplicate charge."""
        queue = self.api.hosts.queue
        found = self.journal.read(request.key, queue)
        entry, problem, intent = found.entry, found.problem, found.intent
        if (entry or intent) is not None and (entry or intent).endpoint != request.endpoint:  # type: ignore[union-attr]
            entry, intent, problem = None, None, (f"{self.journal.dir / (request.key + '.json')}: it names another "
                                                  "endpoint than this chunk's")
        if problem is not None:
            self.emit("warning", chunk=request.chunk_id, message=(
                f"{request.chunk_id}: journal entry {problem}; not followed (ltxflow did not write it for this "
                "queue, or it was altered): removed, and the chunk is submitted as new"))
            self.journal.remove(request.key)
        if entry is not None:
            handle = _handle_of(entry)
            if entry.start_image == start:
                self.emit("chunk_resumed", chunk=request.chunk_id, request_id=handle.request_id,
                          endpoint=handle.endpoint)
                return handle, True, entry.possible_duplicate
            # The chunk it chains from was rendered again since (its cache entry was removed) and
            # ended on another frame: that request started from a frame this video no longer has.
            self.emit("warning", chunk=request.chunk_id, message=(
                f"{request.chunk_id}: request {handle.request_id} (submitted earlier) started from another chain "
                "frame than the one this build has; submitting it anew"))
            self.journal.remove(request.key)
        body = self.body(request, ep)
        price = ep.cost(request.width, request.height, request.frames)
        duplicate = intent is not None
        if intent is not None:
            self.emit("warning", chunk=request.chunk_id, message=(
                f"{request.chunk_id}: possible duplicate charge of about ${price:.4f}: a build stopped after sending "
                f"this chunk's request ({_printable(intent.written)}) and before journalling fal's answer, so fal "
                "may have queued and charged it; submitting it again (check fal's dashboard for an extra request)"))
        headers = submit_headers(fallbacks=request.hosted.fallbacks, store_payloads=request.hosted.store_payloads)
        self.journal.intent(request.key, request.chunk_id, queue, request.endpoint, scene=request.scene_id,
                            start_image=start, cost_usd=price)
        try:
            try:
                handle = self.api.submit(request.endpoint, body, headers)
            except SubmitLost as exc:
                duplicate = True
                self.emit("warning", chunk=request.chunk_id, message=(
                    f"{request.chunk_id}: possible duplicate charge of about ${price:.4f}: {exc}; submitting once "
                    "more (check fal's dashboard for an extra request)"))
                handle = self.api.submit(request.endpoint, body, headers)
        except SubmitLost as exc:  # the intent stays: the next build reports the possible charge again
            raise BackendError(f"{request.chunk_id}: {exc}, twice; not submitting again: check fal's dashboard "
                               "for requests you were charged for, then build again") from None
        except FalError as exc:
            if not duplicate:  # fal answered: nothing was queued, and nothing earlier may have been
                self.journal.remove(request.key)
            raise self._rejected(request, exc, "submit") from None
        except Stopped:  # stopped while backing off: fal had answered each try, queuing nothing
            if not duplicate:
                self.journal.remove(request.key)
            raise
        if (problem := handle_problem(handle, queue)) is not None:  # never followed, so never journalled
            raise BackendError(f"{request.chunk_id}: fal's answer to the submit names a request ltxflow does not "
                               f"follow ({problem}); it may be queued and charged: check fal's dashboard")
        self.journal.submitted(request.key, request.chunk_id, queue, handle.to_json(),
                               scene=request.scene_id, start_image=start, possible_duplicate=duplicate,
                               headers=headers)
        self.emit("chunk_submitted", chunk=request.chunk_id, request_id=handle.request_id, endpoint=handle.endpoint)
        return handle, False, duplicate

    def body(self, request: ChunkRequest, ep: Endpoint) -> dict[str, Any]:
        """The request body: the planned arguments plus media as URLs, in the endpoint's fields."""
        body = dict(request.args)
        vocab = ep.vocab
        if request.audio is not None and "audio" in vocab:
            body[vocab["audio"]] = self.uploads.url_for(request.audio, request.chunk_id)
        for term, path, url in (("image", request.start_image, request.start_image_url),
                                ("end_image", request.end_image, request.end_image_url)):
            if (path is not None or url is not None) and term in vocab:
                body[vocab[term]] = url or self.uploads.url_for(path, request.chunk_id)  # type: ignore[arg-type]
        if request.loras and "loras" in vocab:
            item = ep.fields[vocab["loras"]].item or ("path", "scale")
            loras = []
            for lo in request.loras:
                url = lo.url or self.uploads.url_for(lo.path, request.chunk_id)  # type: ignore[arg-type]
                entry: dict[str, Any] = {"path": url, "scale": lo.scale}
                if "transformer" in item:
                    entry["transformer"] = lo.transformer
                loras.append(entry)
            body[vocab["loras"]] = loras
        return body

    # -- follow ---------------------------------------------------------------------------------

    def _follow(self, request: ChunkRequest, handle: Handle) -> dict[str, Any]:
        """Poll until COMPLETED (backing off), then fetch the result at once.

        A request that completed with an error is forgotten. fal has already retried
        infrastructure failures (error_type runner_*, request_timeout, startup_timeout; see fal's
        "Request Error Types") up to 10 times and does not bill them, so those are transient and
        the chunk is submitted again (--retries); a model's own error fails the chunk."""
        delay, seen_logs, last, started = self.poll.first_s, 0, None, time.monotonic()
        while True:
            try:
                status = self.api.status(handle, logs=True)
            except FalError as exc:
                if exc.status != 404:
                    raise
                # fal has no such request (its result expired, or the entry was never ltxflow's):
                # forgotten; the next build submits the chunk anew, which the user then chooses to pay.
                self.journal.remove(request.key)
                raise BackendError(f"{request.chunk_id}: fal does not know request {handle.request_id} (its result "
                                   "expired, or it was never made); build again to submit it anew, which is "
                                   "charged again") from None
            state = str(status.get("status"))
            position = status.get("queue_position")
            if (state, position) != last:
                last = (state, position)
                self.emit("chunk_queue", chunk=request.chunk_id, status=state, queue_position=position,
                          request_id=handle.request_id)
            logs = status.get("logs") or []
            if isinstance(logs, list):
                for line in logs[seen_logs:]:
                    message = line.get("message") if isinstance(line, dict) else line
                    if message:
                        self.emit("chunk_log", chunk=request.chunk_id, message=str(message)[:500])
                seen_logs = max(seen_logs, len(logs))
            if state == "COMPLETED":
                break
            left = self.poll.deadline_s - (time.monotonic() - started)
            if left <= 0:
                raise BackendError(
                    f"{request.chunk_id}: request {handle.request_id} is still {_printable(state)} on fal after "
                    f"{self.poll.deadline_s:g} s (the deadline of LTXFLOW_FAL_POLL); it stays journalled (paid for): "
                    f"build again to collect it, or cancel it with `ltxflow cancel {self.journal.project or 'PROJECT'}`")
            if self.stop.wait(min(delay, left)):
                raise BackendError(f"{request.chunk_id}: stopped while request {handle.request_id} runs on fal; "
                                   "build again to collect it")
            delay = min(self.poll.max_s, delay * self.poll.factor)
        if status.get("error"):
            self.journal.remove(request.key)
            kind = str(status.get("error_type") or "")
            infrastructure = kind.startswith("runner_") or kind in ("request_timeout", "startup_timeout")
            raise BackendError(f"{request.chunk_id}: fal reports the request {handle.request_id} failed"
                               f"{f' ({kind})' if kind else ''}: {_say(status['error'])}"
                               + ("; fal does not bill infrastructure failures: submitting it again"
                                  if infrastructure else ""), transient=infrastructure)
        try:
            return self.api.result(handle)
        except FalError as exc:
            if exc.transient:
                raise  # still journalled: the next try follows the same request
            self.journal.remove(request.key)
            if exc.status == 404:
                raise BackendError(f"{request.chunk_id}: fal no longer has the result of request "
                                   f"{handle.request_id} (results are kept about an hour); build again to "
                                   "submit it anew, which is charged again") from None
            raise self._rejected(request, exc, "result") from None

    def _download(self, request: ChunkRequest, handle: Handle, output: dict[str, Any]) -> Path:
        video = output.get("video") if isinstance(output, dict) else None
        url = video.get("url") if isinstance(video, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            self.journal.remove(request.key)
            raise BackendError(f"{request.chunk_id}: fal's result for {handle.request_id} has no video URL")
        suffix = Path(url.split("?")[0]).suffix.lower()
        suffix = suffix if suffix in (".mp4", ".webm", ".mov", ".gif") else ".mp4"
        dest = self.journal.result_path(handle.request_id, suffix)
        try:
            self.api.download(url, dest)
        except FalError as exc:
            if exc.transient:
                raise  # still journalled: the next try downloads it again
            raise BackendError(f"{request.chunk_id}: {exc}; request {handle.request_id} stays journalled (paid "
                               "for): the next build tries to collect it again") from None
        seed = output.get("seed")
        self.journal.update(request.key, result_file=dest.name,
                            fal_seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None)
        return dest

    def _downloaded(self, key: str) -> Path | None:
        entry = self.journal.get(key)
        return self.journal.result_of(entry) if entry is not None else None

    def _check_clip(self, request: ChunkRequest, clip: Path) -> None:
        """Normalize conforms frame count and size; a different rate is worth a warning too."""
        try:
            info = video_info(clip)
        except MediaError as exc:
            bad = self._downloaded(request.key)
            if bad is not None:
                bad.unlink(missing_ok=True)  # fetched again on the next try
            raise BackendError(f"{request.chunk_id}: the clip fal returned is unreadable ({exc})",
                               transient=True) from None
        if info.fps is not None and info.fps != request.fps:
            self.emit("warning", chunk=request.chunk_id, message=(
                f"{request.chunk_id}: fal's clip runs at {float(info.fps):g} fps, asked for {float(request.fps):g}; "
                "its frames are used one for one"))

    def _rejected(self, request: ChunkRequest, exc: FalError, phase: str) -> BackendError:
        """A final error, naming the scene, the chunk and the fields fal complained about."""
        locs = [f for f in map(detail_field, exc.detail) if f] if isinstance(exc.detail, list) else []
        fields = f" (field{'s' if len(locs) > 1 else ''} {', '.join(locs)})" if locs else ""
        return BackendError(f"scene {request.scene_id!r}, chunk {request.chunk_id}: fal rejected the {phase} "
                            f"to {request.endpoint}{fields}: {exc}", transient=exc.transient)


@dataclass(frozen=True)
class CancelReport:
    """What `ltxflow cancel` did: (chunk, request id, outcome) per sound entry, and the problem of
    each entry it would not follow (removed: the key is never sent where they point)."""

    done: list[tuple[str, str, str]]
    refused: list[str]


def cancel_in_flight(project: Path, cache_root: Path, env: Mapping[str, str] | None = None) -> CancelReport:
    """Cancel the journalled requests of `project` that fal still runs. Requests fal already
    finished stay journalled, so the next build collects them. An entry that is not sound for the
    configured queue (journal.py) is removed unfollowed."""
    hosts = FalHosts.from_env(env)
    journal = Journal(cache_root)
    found = journal.for_project(project, hosts.queue)
    refused = []
    for f in found:
        if f.intent is not None:  # nothing to cancel: fal never said which request it made, if any
            refused.append(f"{journal.dir / (f.key + '.json')}: chunk {_printable(f.intent.chunk)} was being "
                           "submitted when a build stopped, before fal's answer was journalled: fal may have "
                           "queued (and charged) it, with no request id ltxflow could cancel; check fal's "
                           "dashboard. Left for the next build, which submits the chunk again and reports the "
                           "possible duplicate charge")
        elif f.entry is None and not f.other_queue:
            journal.remove(f.key)
            refused.append(f"{f.problem}; not followed (ltxflow did not write it for this queue, or it was "
                           "altered): removed")
        elif f.entry is None:  # a sound request of another queue: a build with that queue collects it
            refused.append(f"{f.problem}; not followed, left as it is")
    entries = [f.entry for f in found if f.entry is not None]
    if not entries:
        return CancelReport([], refused)
    api = FalApi(FalKey.from_env(env), hosts, policy=RetryPolicy.from_env(env))
    if api.key is None:
        raise FalAuthError(f"cancelling needs the fal key the requests were made with: {KEY_HELP}")
    out = []
    try:
        for e in entries:
            if journal.result_of(e) is not None:
                out.append((_printable(e.chunk), e.request_id, "finished and downloaded; the next build uses it"))
                continue
            status = api.cancel(_handle_of(e))
            if status in ("OK", "CANCELLATION_REQUESTED", "NOT_FOUND"):
                journal.remove(e.key)
                out.append((_printable(e.chunk), e.request_id, status.lower().replace("_", " ")))
            else:
                out.append((_printable(e.chunk), e.request_id, "already completed (paid for); the next build collects it"))
    finally:
        api.close()
    return CancelReport(out, refused)


def _handle_of(entry: JournalEntry) -> Handle:
    return Handle(entry.endpoint, entry.request_id, entry.status_url, entry.response_url, entry.cancel_url)


def _printable(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())[:100]
