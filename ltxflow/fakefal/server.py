"""A local stand-in for fal's queue and storage APIs, over real HTTP (stdlib http.server).

It speaks the protocol ltxflow's fal backend speaks: submit (POST /{endpoint}), status (GET
/{owner}/{app}/requests/{id}/status, 202 while queued or in progress, 200 when completed), result
(GET /{owner}/{app}/requests/{id}), cancel (PUT .../cancel), the storage token (POST
/storage/auth/token) and upload (POST /files/upload, or in parts: POST /files/upload/multipart, PUT
{access_url}/multipart/{id}/{n}, POST {access_url}/multipart/{id}/complete; stricter than fal in
asking complete for parts 1..N, no gaps), and serves uploads and results under /files/. Bodies are validated against the endpoint catalog (422 with fal's detail shape); it is
stricter than fal in one way: unknown fields are rejected, to catch mapping mistakes (validate.py). Results are
real MP4s of the requested size, frame count and rate. Jobs advance one step per status poll.
GET /_fake/state returns what it saw (submits per request body with their platform headers, uploads)
for tests. Platform headers (x-fal-*) are recorded, not enforced: fal documents X-Fal-Store-IO: 0
and x-fal-disable-fallbacks but not what it does with other values, so nothing is rejected for them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ltxflow.endpoints import catalog
from ltxflow.fakefal.faults import JOB_KINDS, Fault, Faults
from ltxflow.fakefal.validate import size_of, validate

@dataclass
class Job:
    id: str
    endpoint: str
    body: dict[str, Any]
    faults: list[Fault]
    queue_polls: int = 1
    polls: int = 0
    state: str = "IN_QUEUE"
    cancelled: bool = False
    dropped: bool = False
    video: str | None = None  # the file id of its clip, once made
    logs: list[dict[str, str]] = field(default_factory=list)

    def fault(self, kind: str) -> Fault | None:
        return next((f for f in self.faults if f.kind == kind), None)


class FakeFal:
    """The server's state; `serve()` starts it on a thread. Thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, keys: set[str] | None = None,
                 faults: list[str] | None = None, workdir: Path | None = None):
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self  # type: ignore[attr-defined]
        self.keys = keys  # None: any non-empty key is accepted
        self.faults = Faults([Fault.parse(s) for s in faults or []])
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-fal-") if workdir is None else None
        self.dir = Path(self._tmp.name) if self._tmp else workdir  # type: ignore[assignment]
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, tuple[str, str]] = {}  # id -> (file name, content type)
        self.tokens: set[str] = set()
        self.submits: list[dict[str, Any]] = []  # every submit that reached validation, in order
        self.uploads = 0  # files stored, whole or from parts
        self.multipart: dict[str, dict[str, Any]] = {}  # upload id -> {fid, name, content_type, parts: {n: etag}}
        self.storage_calls: list[dict[str, Any]] = []  # multipart calls in order: {call, upload_id, part, status}
        self.part_faults: list[str] = []  # how to answer the next part PUTs: a status ("503") or "drop"
        self.paused = False  # True: every job stays IN_QUEUE (tests kill builds while requests wait)
        self.unstall = threading.Event()  # set: stalled submit answers go out at once (and on close)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """The environment that points ltxflow at this server."""
        return {"LTXFLOW_FAL_QUEUE_URL": self.url, "LTXFLOW_FAL_REST_URL": self.url}

    def serve(self) -> "FakeFal":
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-fal", daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        self.unstall.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> "FakeFal":
        return self.serve()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def submit_counts(self) -> dict[str, int]:
        """Submits per distinct request (endpoint, prompt, seed): more than 1 is a double charge."""
        counts: dict[str, int] = {}
        with self.lock:
            for s in self.submits:
                if s["queued"]:
                    k = f"{s['endpoint']}|{s['body'].get('prompt')}|{s['body'].get('seed')}"
                    counts[k] = counts.get(k, 0) + 1
        return counts

    def state(self) -> dict[str, Any]:
        counts = self.submit_counts()
        with self.lock:
            return {"submits": list(self.submits), "uploads": self.uploads, "submit_counts": counts,
                    "jobs": {j.id: {"endpoint": j.endpoint, "state": j.state, "polls": j.polls,
                                    "cancelled": j.cancelled} for j in self.jobs.values()}}

    # -- storage ----------------------------------------------------------------------------------

    def store(self, data: bytes, name: str, content_type: str) -> str:
        fid = uuid.uuid4().hex
        safe = "".join(ch for ch in name if ch.isalnum() or ch in "._-")[:80] or "file"
        (self.dir / fid).write_bytes(data)
        with self.lock:
            self.files[fid] = (safe, content_type)
        return f"{self.url}/files/{fid}/{safe}"

    def start_upload(self, name: str, content_type: str) -> tuple[str, str]:
        """A new multipart upload: (access_url, upload id)."""
        fid, uid = uuid.uuid4().hex, secrets.token_hex(12)
        safe = "".join(ch for ch in name if ch.isalnum() or ch in "._-")[:80] or "file"
        with self.lock:
            self.multipart[uid] = {"fid": fid, "name": safe, "content_type": content_type, "parts": {}}
        return f"{self.url}/files/{fid}/{safe}", uid

    def put_part(self, fid: str, uid: str, number: str, data: bytes) -> tuple[int, str]:
        """(200, the part's ETag) or (status, why)."""
        with self.lock:
            upload = self.multipart.get(uid)
        if upload is None or upload["fid"] != fid:
            return 404, "Upload not found"
        if not (number.isdigit() and number == str(int(number)) and 1 <= int(number) <= 10000):
            return 400, f"Invalid part number {number[:20]!r}: 1 to 10000"
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        (self.dir / f"{uid}.{int(number)}").write_bytes(data)
        with self.lock:
            upload["parts"][int(number)] = etag
        return 200, etag

    def complete_upload(self, fid: str, uid: str, body: Any) -> tuple[int, str]:
        """(200, the file's URL) or (status, why): every part listed once, uploaded, with its ETag,
        numbered 1..N."""
        with self.lock:
            upload = self.multipart.get(uid)
        if upload is None or upload["fid"] != fid:
            return 404, "Upload not found"
        listed = body.get("parts") if isinstance(body, dict) else None
        if not isinstance(listed, list) or not listed:
            return 400, "parts is required: a list of {partNumber, etag}"
        numbers = []
        for item in listed:
            n, etag = (item.get("partNumber"), item.get("etag")) if isinstance(item, dict) else (None, None)
            if not isinstance(n, int) or isinstance(n, bool) or not isinstance(etag, str):
                return 400, "each part needs an integer partNumber and a string etag"
            if upload["parts"].get(n) != etag:
                return 400, f"InvalidPart: part {n} was not uploaded, or its etag differs"
            numbers.append(n)
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            return 400, "parts must be numbered 1..N, each once (a part is missing or repeated)"
        with self.lock:
            if self.multipart.pop(uid, None) is None:
                return 404, "Upload not found"  # completed meanwhile
        with open(self.dir / fid, "wb") as out:
            for n in sorted(numbers):
                out.write((self.dir / f"{uid}.{n}").read_bytes())
        for n in upload["parts"]:
            (self.dir / f"{uid}.{n}").unlink(missing_ok=True)
        with self.lock:
            self.files[fid] = (upload["name"], upload["content_type"])
            self.uploads += 1
        return 200, f"{self.url}/files/{fid}/{upload['name']}"

    def local_file(self, url: str) -> Path | None:
        """The stored file behind one of this server's /files/ URLs (None: not one of ours, or gone)."""
        if not url.startswith(self.url + "/files/"):
            return None
        fid = url[len(self.url) + len("/files/"):].split("/")[0]
        with self.lock:
            known = fid in self.files
        return self.dir / fid if known else None

    # -- jobs -----------------------------------------------------------------------------------

    def make_video(self, job: Job) -> str:
        """A real MP4: the requested size, frame count (+ a `frames` fault) and rate (or a `fps` fault)."""
        import numpy as np

        from ltxflow.media.encode import LOSSLESS_VIDEO, FrameWriter, encode_frames_args
        from ltxflow.media.ffmpeg import find_ffmpeg

        ep = catalog().endpoints[job.endpoint]
        width, height = size_of(job.body.get(ep.vocab["size"], "auto"))
        frames = int(job.body.get("num_frames", ep.fields["num_frames"].default or 121))
        fps = Fraction(str(job.body.get(ep.vocab["fps"], 24))).limit_denominator(1001)
        if (f := job.fault("frames")) is not None:
            frames = max(1, frames + int(f.arg or 0))
        if (f := job.fault("fps")) is not None:
            fps = Fraction(str(f.arg)).limit_denominator(1001)
        seed = hashlib.sha256(json.dumps(job.body, sort_keys=True).encode()).digest()
        out = self.dir / f"{job.id}.mp4"
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        with FrameWriter(encode_frames_args(find_ffmpeg().path, width, height, fps, out, LOSSLESS_VIDEO), out,
                         f"fake fal {job.id}") as writer:
            for i in range(frames):
                base = np.array([(seed[0] + 3 * i) % 256, seed[1], (seed[2] + 5 * i) % 256], dtype=np.float32)
                frame = (0.6 * base + 0.4 * ramp).astype(np.uint8)
                writer.write(np.ascontiguousarray(np.broadcast_to(frame, (height, width, 3))))
        fid = uuid.uuid4().hex
        out.replace(self.dir / fid)
        with self.lock:
            self.files[fid] = ("output.mp4", "video/mp4")
        return fid


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-fal/1"

    @property
    def fake(self) -> FakeFal:
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read state, not logs
        pass

    # -- plumbing -----------------------------------------------------------------------------

    def _send(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _drop(self) -> None:
        """Close the connection without an answer (a dropped connection, seen by the client)."""
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        key = auth[4:].strip() if auth.startswith("Key ") else ""
        if not key:
            self._send(401, {"detail": "No API key provided"})
            return False
        if self.fake.keys is not None and key not in self.fake.keys:
            self._send(401, {"detail": "Invalid API key"})
            return False
        return True

    def _parts(self) -> tuple[list[str], dict[str, list[str]]]:
        u = urlsplit(self.path)
        return [p for p in u.path.split("/") if p], parse_qs(u.query)

    # -- routes ---------------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        parts, _ = self._parts()
        data = self._body()
        if parts == ["storage", "auth", "token"]:
            if self._authorized():
                token = secrets.token_hex(16)
                with self.fake.lock:
                    self.fake.tokens.add(token)
                self._send(200, {"token": token, "token_type": "Bearer", "base_url": self.fake.url,
                                 "expires_at": "2999-01-01T00:00:00+00:00"})
            return
        if parts[:1] == ["files"]:
            self._storage_post(parts, data)
            return
        self._submit("/".join(parts), data)

    def _token_ok(self) -> bool:
        """Whether the call carries a storage token this server gave out (else answers 401)."""
        auth = self.headers.get("Authorization", "")
        with self.fake.lock:
            ok = auth.startswith("Bearer ") and auth[7:] in self.fake.tokens
        if not ok:
            self._send(401, {"detail": "Invalid token"})
        return ok

    def _record(self, call: str, uid: str, status: int, part: int | None = None) -> None:
        with self.fake.lock:
            self.fake.storage_calls.append({"call": call, "upload_id": uid, "part": part, "status": status})

    def _storage_post(self, parts: list[str], data: bytes) -> None:
        """POST /files/upload, /files/upload/multipart, /files/{fid}/{name}/multipart/{id}/complete."""
        if not self._token_ok():
            return
        content_type = self.headers.get("Content-Type", "application/octet-stream")
        name = self.headers.get("X-Fal-File-Name", "upload")
        if parts == ["files", "upload"]:
            url = self.fake.store(data, name, content_type)
            with self.fake.lock:
                self.fake.uploads += 1
            self._send(200, {"access_url": url})
        elif parts == ["files", "upload", "multipart"]:
            url, uid = self.fake.start_upload(name, content_type)
            self._record("start", uid, 200)
            self._send(200, {"access_url": url, "uploadId": uid})
        elif len(parts) == 6 and parts[3] == "multipart" and parts[5] == "complete":
            try:
                body = json.loads(data or b"null")
            except ValueError:
                body = None
            status, text = self.fake.complete_upload(parts[1], parts[4], body)
            self._record("complete", parts[4], status)
            self._send(status, {"access_url": text} if status == 200 else {"detail": text})
        else:
            self._send(404, {"detail": "Not found"})

    def _put_part(self, parts: list[str]) -> None:
        """PUT /files/{fid}/{name}/multipart/{id}/{n}: one part; answers its ETag."""
        data = self._body()
        if not self._token_ok():
            return
        if len(parts) != 6 or parts[3] != "multipart":
            self._send(404, {"detail": "Not found"})
            return
        number = int(parts[5]) if parts[5].isdigit() else None
        with self.fake.lock:
            fault = self.fake.part_faults.pop(0) if self.fake.part_faults else None
        if fault is not None:
            self._record("part", parts[4], 0 if fault == "drop" else int(fault), number)
            if fault == "drop":
                self._drop()
            else:
                self._send(int(fault), {"detail": f"injected {fault}"})
            return
        status, text = self.fake.put_part(parts[1], parts[4], parts[5], data)
        self._record("part", parts[4], status, number)
        self._send(status, {} if status == 200 else {"detail": text}, {"ETag": text} if status == 200 else None)

    def _submit(self, endpoint: str, data: bytes) -> None:
        if not self._authorized():
            return
        ep = catalog().get(endpoint)
        if ep is None:
            self._send(404, {"detail": f"Application '{endpoint}' not found"})
            return
        try:
            body = json.loads(data or b"null")
        except ValueError:
            self._send(422, {"detail": [{"loc": ["body"], "msg": "Invalid JSON", "type": "json_invalid"}]})
            return
        prompt = str(body.get("prompt", "")) if isinstance(body, dict) else ""
        # the platform headers it came with (x-fal-*; never the key)
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-fal-")}
        record = {"endpoint": endpoint, "body": body, "headers": headers, "queued": False, "status": 0}
        with self.fake.lock:
            self.fake.submits.append(record)
        for f in self.fake.faults.take(("429", "500", "503"), prompt, limit=1):
            record["status"] = int(f.kind)
            self._send(int(f.kind), {"detail": f"injected {f.kind}"}, {"Retry-After": "0"} if f.kind == "429" else None)
            return
        faults = self.fake.faults.take(("lost", "garbled", "422", "stall"), prompt)
        details = validate(ep, body, self.fake)
        details += [{"loc": ["body", f.arg], "msg": "Injected rejection", "type": "value_error"}
                    for f in faults if f.kind == "422"]
        if details:
            record["status"] = 422
            self._send(422, {"detail": details})
            return
        job = Job(uuid.uuid4().hex, endpoint, body, self.fake.faults.take(JOB_KINDS, prompt))
        if (slow := job.fault("slow")) is not None:
            job.queue_polls = int(slow.arg or 1)
        with self.fake.lock:
            self.fake.jobs[job.id] = job
            record.update(queued=True, status=200, request_id=job.id)
        if any(f.kind == "lost" for f in faults):
            self._drop()
            return
        for f in faults:
            if f.kind == "stall":
                self.fake.unstall.wait(int(f.arg or 0))
        if any(f.kind == "garbled" for f in faults):  # queued, but the answer is a proxy's error page
            page = b"<html><body>502 Bad Gateway</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        base = f"{self.fake.url}/{'/'.join(endpoint.split('/')[:2])}/requests/{job.id}"
        self._send(200, {"request_id": job.id, "status": "IN_QUEUE", "queue_position": job.queue_polls - 1,
                         "response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"})

    def _job(self, parts: list[str]) -> Job | None:
        """The job of /{owner}/{app}/requests/{id}[/...]: owner/app only, as fal's URLs are."""
        if len(parts) < 4 or parts[2] != "requests":
            return None
        with self.fake.lock:
            job = self.fake.jobs.get(parts[3])
        if job is None or "/".join(job.endpoint.split("/")[:2]) != "/".join(parts[:2]):
            return None
        return job

    def do_GET(self) -> None:  # noqa: N802
        parts, query = self._parts()
        if parts[:1] == ["files"] and len(parts) >= 2:
            self._file(parts[1])
            return
        if parts == ["_fake", "state"]:
            self._send(200, self.fake.state())
            return
        if not self._authorized():
            return
        job = self._job(parts)
        if job is None or len(parts) not in (4, 5) or (len(parts) == 5 and parts[4] != "status"):
            self._send(404, {"detail": "Request not found"})
            return
        if len(parts) == 5:
            self._status(job, query.get("logs", ["0"])[0] in ("1", "true"))
        else:
            self._result(job)

    def _status(self, job: Job, logs: bool) -> None:
        with self.fake.lock:
            job.polls += 1
            if job.state == "IN_QUEUE" and job.polls > job.queue_polls and not self.fake.paused:
                job.state = "IN_PROGRESS"
                job.logs.append({"message": "Generating video", "level": "INFO", "source": "user"})
                first_progress = True
            else:
                first_progress = False
                if job.state == "IN_PROGRESS":
                    job.state = "COMPLETED"
                    job.logs.append({"message": "Done", "level": "INFO", "source": "user"})
            state, polls = job.state, job.polls
        if first_progress and job.fault("drop") is not None and not job.dropped:
            job.dropped = True
            self._drop()
            return
        base: dict[str, Any] = {"status": state, "request_id": job.id,
                                "response_url": f"{self.fake.url}/{'/'.join(job.endpoint.split('/')[:2])}/requests/{job.id}"}
        if logs:
            base["logs"] = list(job.logs)
        if state == "IN_QUEUE":
            self._send(202, {**base, "queue_position": max(0, job.queue_polls - polls)})
        elif state == "IN_PROGRESS":
            self._send(202, base)
        else:
            if job.cancelled:
                base.update(error="Request was cancelled", error_type="cancelled")
            elif (f := job.fault("error")) is not None:
                base.update(error=f.arg or "Injected model failure")
            elif job.fault("crash") is not None:
                base.update(error="Runner disconnected unexpectedly", error_type="runner_disconnected")
            self._send(200, {**base, "metrics": {"inference_time": 0.01}})

    def _result(self, job: Job) -> None:
        if job.state != "COMPLETED":
            self._send(400, {"detail": "Request is still in progress"})
            return
        if job.fault("gone") is not None:
            self._send(404, {"detail": "Request not found"})
            return
        if job.cancelled or job.fault("error") is not None or job.fault("crash") is not None:
            self._send(500, {"detail": "Injected model failure" if not job.cancelled else "Request was cancelled"})
            return
        with self.fake.lock:
            fid = job.video
        if fid is None:
            fid = self.fake.make_video(job)
            with self.fake.lock:
                job.video = fid
        path = self.fake.dir / fid
        ep = catalog().endpoints[job.endpoint]
        self._send(200, {"video": {"url": f"{self.fake.url}/files/{fid}/output.mp4", "content_type": "video/mp4",
                                   "file_name": "output.mp4", "file_size": path.stat().st_size},
                         "seed": job.body.get(ep.vocab["seed"]), "prompt": job.body.get("prompt")})

    def _file(self, fid: str) -> None:
        with self.fake.lock:
            meta = self.fake.files.get(fid)
        if meta is None:
            self._send(404, {"detail": "File not found"})
            return
        data = (self.fake.dir / fid).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", meta[1])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:  # noqa: N802
        parts, _ = self._parts()
        if parts[:1] == ["files"]:
            self._put_part(parts)
            return
        self._body()
        if not self._authorized():
            return
        job = self._job(parts)
        if job is None or parts[4:] != ["cancel"]:
            self._send(404, {"status": "NOT_FOUND"})
            return
        with self.fake.lock:
            if job.state == "COMPLETED":
                answer = (400, "ALREADY_COMPLETED")
            else:
                job.cancelled, job.state = True, "COMPLETED"
                answer = (202, "CANCELLATION_REQUESTED")
        self._send(answer[0], {"status": answer[1]})
