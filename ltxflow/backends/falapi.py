"""fal's queue and storage protocol over HTTP (httpx): submit, status, result, cancel, upload.

The one place ltxflow talks to fal. The httpx client is injected (tests pass one with a
transport, or point the hosts at `ltxflow fake-fal`). The key lives only in a header built per
request: it is never part of a URL, a message or anything this module returns.

Retry policy: a request that never reached the server (connect errors), 429 and 5xx answers are
retried with exponential backoff and jitter, honouring Retry-After. A GET or PUT whose connection
drops mid-answer is retried the same way. A submit whose answer was lost after it was sent
(timeout, dropped connection) is NOT retried here: it may have created a billed job, so it raises
SubmitLost and the caller decides; so does a submit answered 2xx with a body that is not a
handle (fal queued something, or not: the same doubt).

The key goes only to the configured queue and rest hosts (`_call` refuses any other origin, so a
URL from elsewhere, e.g. a journal file, cannot carry it away); uploads to the CDN carry a storage
token, downloads carry nothing, and httpx drops the Authorization header on a redirect to another
origin. Downloads are capped (LTXFLOW_FAL_MAX_DOWNLOAD_MB, default 4096).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import httpx

from ltxflow.backends.falparts import (PART_BYTES, PART_THREADS, FileBody, Multipart, PartsLedger, etag_ok,
                                       lifecycle_headers, multipart_bytes, parts_url, token_expiry, upload_id_ok)
from ltxflow.errors import FalAuthError, FalError, Stopped, SubmitLost

KEY_HELP = ("set FAL_KEY to your fal API key (https://fal.ai/dashboard/keys), e.g. `export FAL_KEY=...`, "
            "or FAL_KEY_ID and FAL_KEY_SECRET")
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_DOWNLOAD_MB = 4096  # a clip of 481 frames is tens of MB; 4 GiB bounds the disk a bad answer can fill


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL without user info; None for anything else."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        return None
    if u.scheme not in ("http", "https") or not u.hostname or u.username is not None or u.password is not None:
        return None
    return u.scheme, u.hostname.lower(), port or (443 if u.scheme == "https" else 80)


def max_download_bytes(env: Mapping[str, str] | None = None) -> int:
    """LTXFLOW_FAL_MAX_DOWNLOAD_MB (MiB; fractions allowed), in bytes."""
    env = os.environ if env is None else env
    text = env.get("LTXFLOW_FAL_MAX_DOWNLOAD_MB", "").strip()
    return int(float(text) * 2**20) if text else MAX_DOWNLOAD_MB * 2**20


class FalKey:
    """The API key. Its repr and str never show it; `header()` is the only way out."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str):
        self._secret = secret

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "FalKey | None":
        env = os.environ if env is None else env
        if env.get("FAL_KEY", "").strip():
            return cls(env["FAL_KEY"].strip())
        key_id, secret = env.get("FAL_KEY_ID", "").strip(), env.get("FAL_KEY_SECRET", "").strip()
        if key_id and secret:
            return cls(f"{key_id}:{secret}")
        return None

    def header(self) -> str:
        return f"Key {self._secret}"

    def __repr__(self) -> str:
        return "FalKey(***)"

    __str__ = __repr__


@dataclass(frozen=True)
class FalHosts:
    """Base URLs: fal's by default, or a local server's (LTXFLOW_FAL_QUEUE_URL, _REST_URL, _CDN_URL)."""

    queue: str = "https://queue.fal.run"
    rest: str = "https://rest.fal.ai"
    cdn: str | None = None  # None: the base_url the storage token names

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "FalHosts":
        env = os.environ if env is None else env
        return cls(queue=env.get("LTXFLOW_FAL_QUEUE_URL", "").rstrip("/") or cls.queue,
                   rest=env.get("LTXFLOW_FAL_REST_URL", "").rstrip("/") or cls.rest,
                   cdn=env.get("LTXFLOW_FAL_CDN_URL", "").rstrip("/") or None)


@dataclass(frozen=True)
class Handle:
    """A queued request: what the journal keeps to follow it after a crash."""

    endpoint: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str

    def to_json(self) -> dict[str, str]:
        return {"endpoint": self.endpoint, "request_id": self.request_id, "status_url": self.status_url,
                "response_url": self.response_url, "cancel_url": self.cancel_url}


def submit_headers(*, fallbacks: bool, store_payloads: bool) -> dict[str, str]:
    """fal's platform headers for a submit (docs.fal.ai: model-endpoints/reliability, common-parameters).

    fallbacks False: `x-fal-disable-fallbacks: true`, so fal never reroutes the request to an
    "equivalent" endpoint whose clip would be another model's. store_payloads False:
    `X-Fal-Store-IO: 0`, so fal keeps no copy of the request's inputs and outputs (the media
    uploaded to its CDN stay there until they expire)."""
    headers = {}
    if not fallbacks:
        headers["x-fal-disable-fallbacks"] = "true"
    if not store_payloads:
        headers["X-Fal-Store-IO"] = "0"
    return headers


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries of one call in all
    base_s: float = 1.0
    max_s: float = 30.0
    timeout_s: float = 60.0  # read timeout of one HTTP call (uploads and downloads: per chunk read)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RetryPolicy":
        """LTXFLOW_FAL_RETRY="attempts,base_s,max_s,timeout_s" (any prefix of it)."""
        env = os.environ if env is None else env
        parts = [p for p in env.get("LTXFLOW_FAL_RETRY", "").split(",") if p.strip()]
        defaults = cls()
        values = [int(parts[0]) if parts else defaults.attempts]
        values += [float(p) for p in parts[1:4]]
        return cls(*values)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before try `attempt + 1`: exponential with jitter, or what the server asked."""
        if retry_after is not None:
            return min(self.max_s, max(0.0, retry_after))
        return min(self.max_s, self.base_s * 2 ** (attempt - 1)) * (0.5 + random.random())


class FalApi:
    """fal's REST protocol. Thread-safe (httpx.Client is); `stop` interrupts backoff waits."""

    def __init__(self, key: FalKey | None, hosts: FalHosts | None = None, *, client: httpx.Client | None = None,
                 policy: RetryPolicy | None = None, stop: threading.Event | None = None,
                 on_retry: Callable[[str, int, float, str], None] = lambda what, attempt, delay, why: None,
                 max_download: int = MAX_DOWNLOAD_MB * 2**20, multipart_threshold: int | None = None,
                 part_size: int = PART_BYTES, part_threads: int = PART_THREADS):
        self.key = key
        self.hosts = hosts or FalHosts()
        self.policy = policy or RetryPolicy()
        self.client = client or httpx.Client(timeout=httpx.Timeout(self.policy.timeout_s, connect=15.0),
                                             follow_redirects=True)
        self.stop = stop or threading.Event()
        self.on_retry = on_retry
        self.max_download = max_download
        # a file larger than this goes up in parts (None: LTXFLOW_FAL_MULTIPART_MB, default 100 MiB)
        self.multipart_threshold = multipart_bytes() if multipart_threshold is None else multipart_threshold
        self.part_size, self.part_threads = part_size, max(1, part_threads)
        self._token: tuple[str, str, float] | None = None  # (authorization header, cdn base url, expiry)
        self._token_lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    # -- the queue ------------------------------------------------------------------------------

    def submit(self, endpoint: str, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Handle:
        """Queue one request, with `headers` (platform headers: submit_headers). Raises SubmitLost
        when the answer was lost after sending, or came (2xx) without a readable handle: either way
        fal may have queued, and billed, it."""
        url = f"{self.hosts.queue}/{endpoint}"
        resp = self._call("POST", url, f"submit to {endpoint}", json=body, idempotent=False,
                          headers=dict(headers or {}))
        try:
            data, why = resp.json(), "lacking request_id, status_url, response_url or cancel_url"
            fields = [data[k] for k in ("request_id", "status_url", "response_url", "cancel_url")]
        except ValueError:
            fields, why = [], "a body that is not JSON"
        except (KeyError, TypeError):
            fields = []
        if len(fields) != 4 or not all(isinstance(f, str) and f for f in fields):
            raise SubmitLost(f"submit to {endpoint}: fal answered HTTP {resp.status_code} with {why}; fal may have "
                             "queued it", status=resp.status_code, transient=True)
        return Handle(endpoint, *fields)

    def status(self, handle: Handle, logs: bool = True) -> dict[str, Any]:
        """The request's status object: status IN_QUEUE | IN_PROGRESS | COMPLETED, queue_position,
        logs, and on COMPLETED possibly error / error_type."""
        resp = self._call("GET", handle.status_url, f"status of {handle.request_id}",
                          params={"logs": "1" if logs else "0"}, ok=(200, 202))
        data = self._json(resp)
        if not isinstance(data, dict) or "status" not in data:
            raise FalError(f"status of {handle.request_id}: unexpected answer {_short(data)}", transient=True)
        return data

    def result(self, handle: Handle) -> dict[str, Any]:
        """The model's output. A failed model run raises FalError with fal's message."""
        return self._json(self._call("GET", handle.response_url, f"result of {handle.request_id}"))

    def cancel(self, handle: Handle) -> str:
        """OK | CANCELLATION_REQUESTED | ALREADY_COMPLETED | NOT_FOUND (fal's words)."""
        resp = self._call("PUT", handle.cancel_url, f"cancel {handle.request_id}", ok=(200, 202, 400, 404))
        try:
            status = resp.json().get("status")
        except (ValueError, AttributeError):
            status = None
        if status:
            return str(status)
        return {404: "NOT_FOUND", 400: "ALREADY_COMPLETED"}.get(resp.status_code, "OK")

    # -- storage --------------------------------------------------------------------------------

    def check_key(self) -> None:
        """The cheap preflight: a storage token needs a valid key and costs nothing."""
        self._storage_token(refresh=True)

    def upload(self, path: Path, content_type: str, lifetime_s: int, ledger: PartsLedger | None = None) -> str:
        """Upload a file to fal's CDN; returns its URL, valid for `lifetime_s`. A file larger than
        `multipart_threshold` goes up in parts (upload_parts), resumable through `ledger`."""
        body = FileBody(path)
        if body.size > self.multipart_threshold:
            return self.upload_parts(path, content_type, lifetime_s, ledger)
        headers = {"Content-Type": content_type, "X-Fal-File-Name": path.name, "Content-Length": str(body.size),
                   **lifecycle_headers(lifetime_s)}
        resp = self._storage_call("POST", lambda base: f"{base}/files/upload", f"upload {path.name}",
                                  content=body, headers=headers)
        url = _field(self._json(resp), "access_url")
        if not _http_url(url):
            raise FalError(f"upload {path.name}: fal's answer has no access_url: {_short(resp.text)}")
        return url  # type: ignore[return-value]

    def upload_parts(self, path: Path, content_type: str, lifetime_s: int, ledger: PartsLedger | None = None) -> str:
        """Upload a file in parts, as fal's own client does above 100 MiB: create the upload (POST
        {cdn}/files/upload/multipart -> access_url, uploadId), PUT each part of `part_size` bytes,
        read from disk as it is sent, to {access_url}/multipart/{uploadId}/{n} (n from 1; fal
        answers the part's ETag), `part_threads` at once, each retried like any call, then POST
        .../complete with every part's number and ETag; the file's URL is the access_url. With a
        ledger, the upload and the parts sent are kept as they go, so an interrupted upload sends
        only the missing parts next time; a kept upload fal refuses (4xx) is started over, once."""
        size, what = path.stat().st_size, f"upload {path.name}"
        upload = ledger.load(size, self.part_size) if ledger else None
        while True:
            resumed = upload is not None
            if upload is None:
                upload = self._create_upload(path, content_type, lifetime_s, size)
                if ledger:
                    ledger.save(upload)
            try:
                upload = self._send_parts(path, content_type, upload, ledger)
                parts = [{"partNumber": n, "etag": upload.parts[n]} for n in sorted(upload.parts)]
                self._storage_call("POST", lambda base: f"{parts_url(upload)}/complete", f"complete {what}",
                                   json={"parts": parts}, headers={"Accept": "application/json"})
            except FalError as exc:
                gone = exc.status is not None and 400 <= exc.status < 500 and not isinstance(exc, FalAuthError)
                if not (resumed and gone):
                    raise
                upload = None  # fal no longer knows the kept upload (expired, or the record was wrong)
                if ledger:
                    ledger.clear()
                continue
            if ledger:
                ledger.clear()
            return upload.access_url

    def _create_upload(self, path: Path, content_type: str, lifetime_s: int, size: int) -> Multipart:
        headers = {"Accept": "application/json", "Content-Type": content_type, "X-Fal-File-Name": path.name,
                   **lifecycle_headers(lifetime_s)}
        resp = self._storage_call("POST", lambda base: f"{base}/files/upload/multipart", f"start upload {path.name}",
                                  headers=headers)
        data = self._json(resp)
        url, upload_id = _field(data, "access_url"), _field(data, "uploadId")
        if not _http_url(url) or not upload_id_ok(upload_id):
            raise FalError(f"start upload {path.name}: fal's answer lacks access_url or uploadId: {_short(resp.text)}")
        return Multipart(upload_id, url, size, self.part_size)  # type: ignore[arg-type]

    def _send_parts(self, path: Path, content_type: str, upload: Multipart, ledger: PartsLedger | None) -> Multipart:
        """Send the parts `upload` lacks; returns it with all of them. Each part sent is saved to
        the ledger at once; on a failure (or a stop) the parts in flight finish, the rest are not
        started, and the first error is raised."""
        done, lock, failed = dict(upload.parts), threading.Lock(), threading.Event()

        def send(n: int) -> None:
            if failed.is_set():
                return  # another part failed: start no more
            if self.stop.is_set():
                raise Stopped(f"upload {path.name}: stopped")
            body = FileBody(path, (n - 1) * upload.part_size, upload.part_bytes(n))
            headers = {"Content-Type": content_type, "Content-Length": str(body.size),
                       "Accept-Encoding": "identity"}  # as fal's client sends, so the ETag comes back
            try:
                resp = self._storage_call("PUT", lambda base: f"{parts_url(upload)}/{n}",
                                          f"upload {path.name} part {n}/{upload.count}", content=body, headers=headers)
            except BaseException:
                failed.set()
                raise
            etag = resp.headers.get("etag", "")
            if not etag_ok(etag):
                failed.set()
                raise FalError(f"upload {path.name} part {n}: fal's answer has no ETag")
            with lock:
                done[n] = etag
                if ledger:
                    ledger.save(replace(upload, parts=dict(done)))

        missing = [n for n in range(1, upload.count + 1) if n not in done]
        if missing:
            pool = ThreadPoolExecutor(max_workers=min(self.part_threads, len(missing)), thread_name_prefix="fal-part")
            try:
                futures = [pool.submit(send, n) for n in missing]
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
            if errors:
                raise errors[0]  # type: ignore[misc]
        return replace(upload, parts=done)

    def download(self, url: str, dest: Path) -> int:
        """Stream a result file to `dest` (written whole or not at all); returns its size. Sends no
        key. A file over `max_download` bytes (Content-Length, or counted as it streams) is a final
        FalError and leaves nothing behind."""
        tmp = dest.with_name(f".{dest.name}.part")
        cap = self.max_download
        too_big = (f"download {_host_path(url)}: the file is larger than the cap of {cap / 2**20:g} MiB "
                   "(LTXFLOW_FAL_MAX_DOWNLOAD_MB)")
        for attempt in range(1, self.policy.attempts + 1):
            try:
                with self.client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        resp.read()
                        self._raise_for(resp, f"download {_host_path(url)}", attempt)
                        continue
                    length = resp.headers.get("content-length", "")
                    if length.isdigit() and int(length) > cap:
                        raise FalError(too_big)
                    size = 0
                    tmp.unlink(missing_ok=True)  # never written through a link left there
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
                    with open(fd, "wb") as f:
                        for block in resp.iter_bytes(1 << 20):
                            if self.stop.is_set():
                                raise Stopped(f"download {_host_path(url)}: stopped")
                            size += len(block)
                            if size > cap:
                                raise FalError(too_big)
                            f.write(block)
                os.replace(tmp, dest)
                return size
            except (httpx.TransportError, _Retry) as exc:
                self._backoff(f"download {_host_path(url)}", attempt, _why(exc), getattr(exc, "retry_after", None))
            finally:
                tmp.unlink(missing_ok=True)  # a stop or a failure leaves no partial file
        raise AssertionError("unreachable")

    def _storage_token(self, refresh: bool = False) -> tuple[str, str, float]:
        with self._token_lock:
            if self._token and not refresh and self._token[2] > time.time() + 60:
                return self._token
            resp = self._call("POST", f"{self.hosts.rest}/storage/auth/token", "storage token",
                              params={"storage_type": "fal-cdn-v3"}, json={})
            data = self._json(resp)
            try:
                auth = f"{data.get('token_type', 'Bearer')} {data['token']}"
            except (KeyError, TypeError, AttributeError):
                shape = sorted(data) if isinstance(data, dict) else type(data).__name__
                raise FalError(f"storage token: unexpected answer (fields {shape})") from None
            base = self.hosts.cdn or str(data.get("base_url") or "").rstrip("/")
            if not base:
                raise FalError("storage token: fal named no upload host; set LTXFLOW_FAL_CDN_URL")
            self._token = (auth, base, token_expiry(data.get("expires_at")))
            return self._token

    def _storage_call(self, method: str, url: Callable[[str], str], what: str, *, headers: dict[str, str],
                      **kwargs: Any) -> httpx.Response:
        """A call to fal's storage (`url` of the upload host) with the storage token, not the key;
        a token refused (expired) is fetched again, once."""
        for again in (False, True):
            auth, base, _ = self._storage_token(refresh=again)
            resp = self._call(method, url(base), what, headers={**headers, "Authorization": auth}, authorize=False,
                              ok=(200, 201, 204, 401, 403), **kwargs)
            if resp.status_code not in (401, 403):
                return resp
        raise FalAuthError(f"{what}: fal's storage refused the token ({resp.status_code})", status=resp.status_code)

    # -- the HTTP call --------------------------------------------------------------------------

    def _call(self, method: str, url: str, what: str, *, idempotent: bool = True, authorize: bool = True,
              ok: tuple[int, ...] = (200, 201, 202), headers: dict[str, str] | None = None,
              **kwargs: Any) -> httpx.Response:
        headers = dict(headers or {})
        if authorize:
            if self.key is None:
                raise FalAuthError(f"no fal key: {KEY_HELP}")
            if origin(url) is None or origin(url) not in (origin(self.hosts.queue), origin(self.hosts.rest)):
                raise FalError(f"{what}: refusing to send the fal key to {_origin_text(url)}, which is not the "
                               "configured queue or rest host (LTXFLOW_FAL_QUEUE_URL, LTXFLOW_FAL_REST_URL)")
            headers["Authorization"] = self.key.header()
        for attempt in range(1, self.policy.attempts + 1):
            try:
                resp = self.client.request(method, url, headers=headers, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                self._backoff(what, attempt, _why(exc))  # never reached the server: always safe to try again
                continue
            except httpx.TransportError as exc:
                if not idempotent:
                    raise SubmitLost(f"{what}: the answer was lost ({_why(exc)}); fal may have queued it",
                                     transient=True) from None
                self._backoff(what, attempt, _why(exc))
                continue
            if resp.status_code in ok:
                return resp
            try:
                self._raise_for(resp, what, attempt)
            except _Retry as exc:
                self._backoff(what, attempt, str(exc), exc.retry_after)
        raise AssertionError("unreachable")

    def _raise_for(self, resp: httpx.Response, what: str, attempt: int) -> None:
        """Raise FalError for a final answer, or _Retry for one worth another try."""
        status = resp.status_code
        detail = _detail(resp)
        if status in RETRY_STATUS and resp.headers.get("x-fal-retryable", "").lower() != "false":
            retry_after = _retry_after(resp.headers.get("retry-after"))
            if attempt < self.policy.attempts:
                raise _Retry(f"HTTP {status}: {_say(detail)}", retry_after)
            raise FalError(f"{what}: HTTP {status} after {attempt} tries: {_say(detail)}", status=status,
                           detail=detail, transient=True)
        if status in (401, 403):
            raise FalAuthError(f"{what}: fal rejected the key (HTTP {status}: {_say(detail)}); {KEY_HELP}",
                               status=status, detail=detail)
        raise FalError(f"{what}: HTTP {status}: {_say(detail)}", status=status, detail=detail,
                       transient=resp.headers.get("x-fal-retryable", "").lower() == "true")

    def _backoff(self, what: str, attempt: int, why: str, retry_after: float | None = None) -> None:
        if attempt >= self.policy.attempts:
            raise FalError(f"{what}: gave up after {attempt} tries: {why}", transient=True)
        delay = self.policy.delay(attempt, retry_after)
        self.on_retry(what, attempt, delay, why)
        if self.stop.wait(delay):
            raise Stopped(f"{what}: stopped")

    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise FalError(f"{_host_path(str(resp.request.url))}: HTTP {resp.status_code} with a body that is "
                           f"not JSON: {_short(resp.text)}", status=resp.status_code, transient=True) from None


def _field(data: Any, name: str) -> Any:
    return data.get(name) if isinstance(data, dict) else None


def _http_url(value: Any) -> bool:
    return isinstance(value, str) and origin(value) is not None


class _Retry(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _detail(resp: httpx.Response) -> Any:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:300]
    return data.get("detail", data) if isinstance(data, dict) else data


def detail_field(item: Any) -> str | None:
    """The field a validation detail item ({loc, msg, type}) names, e.g. `loras.0.scale`."""
    if not isinstance(item, dict):
        return None
    return ".".join(str(x) for x in item.get("loc", []) if x != "body") or "?"


def _say(detail: Any) -> str:
    """fal's detail as one line: a validation list becomes `field: message; ...`."""
    if isinstance(detail, list):
        return "; ".join(f"{detail_field(d)}: {d.get('msg', d.get('type', '?'))}" if isinstance(d, dict)
                         else str(d) for d in detail)
    return _short(detail)


def _short(value: Any, n: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= n else text[:n] + "..."


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _origin_text(url: str) -> str:
    """scheme://host:port of a URL for messages (printable characters only, no user info or path)."""
    o = origin(url)
    text = f"{o[0]}://{o[1]}:{o[2]}" if o else "a URL that is not plain http(s)"
    return "".join(ch for ch in text if ch.isprintable())[:200]


def _host_path(url: str) -> str:
    """A URL without its query (signed URLs carry tokens there) for messages."""
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}{u.path}"
