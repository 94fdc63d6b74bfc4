"""A project folder from an untrusted pull request cannot turn a hosted build against its user:
planted journal entries are never followed (the key never leaves for another host, nothing outside
the cache is used or deleted), one hosted build at a time uses a cache, and fal's own answers are
bounded (a polling deadline, a download cap, a garbled submit reported as a possible double charge)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from test_build import ltx, media
from test_fal import KEY, _journalled, _start, _wait, build, fal_env, fal_project, plan_of, queued

from ltxflow.backends.falapi import FalApi, FalError, FalHosts, FalKey, Handle, RetryPolicy, SubmitLost
from ltxflow.backends.fal import FalBackend, PollPolicy
from ltxflow.backends.falstore import UploadStore
from ltxflow.backends.journal import Journal, handle_problem
from ltxflow.backends.base import BackendError
from ltxflow.errors import CacheInUse
from ltxflow.fakefal import FakeFal
from ltxflow.media.probe import file_digest


class Listener:
    """A real HTTP server on 127.0.0.1 that answers anything and records whether the key came."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                seen.append((self.command, self.path, KEY in str(self.headers)))
                body = json.dumps({"status": "COMPLETED", "request_id": "planted"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = _any

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def keys_received(self) -> list:
        return [s for s in self.seen if s[2]]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def fake():
    with FakeFal() as server:
        yield server


def _urls(root: str, endpoint: str, request_id: str) -> dict[str, str]:
    base = f"{root}/{'/'.join(endpoint.split('/')[:2])}/requests/{request_id}"
    return {"status_url": f"{base}/status", "response_url": base, "cancel_url": f"{base}/cancel"}


def _entry(project: Path, fake: FakeFal, chunk: dict, **changes) -> dict:
    """A journal entry as ltxflow writes one (for request `planted` on the fake), then `changes`."""
    entry = {"key": chunk["key"], "chunk": chunk["id"], "project": str(project.resolve()), "host": fake.url,
             "endpoint": chunk["endpoint"], "request_id": "planted", "scene": chunk["scene"],
             "start_image": None, "possible_duplicate": False, "submitted": "2026-01-01T00:00:00+00:00",
             **_urls(fake.url, chunk["endpoint"], "planted")}
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not ...}


def _plant(project: Path, entry: dict) -> Path:
    path = project.parent / "cache" / "journal" / f"{entry['key']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry))
    return path


OTHER_ENDPOINT = "fal-ai/ltx-2.3-22b/distilled/audio-to-video"


@pytest.mark.parametrize("case", ["foreign urls", "foreign host", "wrong endpoint", "wrong request id",
                                  "no status_url", "key of another file", "not json"])
def test_a_planted_journal_entry_is_dropped_and_never_followed(tmp_path, fake, listener, case):
    project = fal_project(tmp_path / "proj")
    outside = tmp_path / "outside" / "secret.mp4"
    outside.parent.mkdir()
    outside.write_bytes(b"the user's own file")
    before = outside.stat()
    chunk = next(c for c in plan_of(project, fake)["chunks"] if c["id"] == "intro.0")
    entry = {
        "foreign urls": lambda: _entry(project, fake, chunk, **_urls(listener.url, chunk["endpoint"], "planted")),
        "foreign host": lambda: _entry(project, fake, chunk, host=listener.url,
                                       **_urls(listener.url, chunk["endpoint"], "planted")),
        "wrong endpoint": lambda: _entry(project, fake, chunk, endpoint=OTHER_ENDPOINT,
                                         **_urls(fake.url, OTHER_ENDPOINT, "planted")),
        "wrong request id": lambda: _entry(project, fake, chunk, **_urls(fake.url, chunk["endpoint"], "another")),
        "no status_url": lambda: _entry(project, fake, chunk, status_url=...),
        "key of another file": lambda: _entry(project, fake, chunk, key="0" * 64),
        "not json": lambda: _entry(project, fake, chunk),
    }[case]()
    path = project.parent / "cache" / "journal" / f"{chunk['key']}.json"
    _plant(project, {**entry, "key": chunk["key"]})
    if case == "key of another file":
        path.write_text(json.dumps(entry))
    if case == "not json":
        path.write_text("{not json")

    r, evs = build(project, fake)
    assert r.returncode == 0, r.stderr
    # Finished exactly: each chunk submitted once to the configured queue, the video whole.
    assert sorted(e["chunk"] for e in evs if e["event"] == "chunk_submitted") == ["drop.0", "intro.0"]
    assert not [e for e in evs if e["event"] == "chunk_resumed"]
    assert sorted(fake.submit_counts().values()) == [1, 1]
    assert media(project.parent / "out" / "video.mp4")[0] == 48
    warnings = [e["message"] for e in evs if e["event"] == "warning"]
    assert any(f"{chunk['key']}.json" in m and "not followed" in m for m in warnings), warnings
    assert listener.keys_received() == [] and listener.seen == []
    assert outside.read_bytes() == b"the user's own file" and outside.stat().st_mtime_ns == before.st_mtime_ns
    assert _journalled(project) == 0  # the planted entry went; the build's own were collected
    assert KEY not in r.stdout + r.stderr


@pytest.mark.parametrize("result_file", ["outside", "../../../../outside/secret.mp4"])
def test_a_result_file_outside_the_cache_is_never_read_or_deleted(tmp_path, fake, listener, result_file):
    """Only a result_file's name counts, in journal/results/: the outside file is neither used as
    the clip nor deleted (here the planted request started from another frame than the chunk's, so
    it is submitted anew; see the unit test below for the name rule itself)."""
    project = fal_project(tmp_path / "proj")
    outside = tmp_path / "outside" / "secret.mp4"
    outside.parent.mkdir()
    outside.write_bytes(b"the user's own file")
    before = outside.stat()
    chunk = next(c for c in plan_of(project, fake)["chunks"] if c["id"] == "intro.0")
    _plant(project, _entry(project, fake, chunk, result_file=str(outside) if result_file == "outside" else result_file))
    r, evs = build(project, fake)
    assert r.returncode == 0, r.stderr
    assert sorted(fake.submit_counts().values()) == [1, 1] and _journalled(project) == 0
    assert media(project.parent / "out" / "video.mp4")[0] == 48
    assert outside.read_bytes() == b"the user's own file" and outside.stat().st_mtime_ns == before.st_mtime_ns
    assert listener.seen == []


def test_only_a_result_files_name_in_results_is_ever_the_download(tmp_path):
    journal = Journal(tmp_path / "cache", tmp_path / "p.yaml")
    journal.results.mkdir(parents=True)
    (journal.results / "r1.mp4").write_bytes(b"clip")
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"the user's own file")
    (journal.results / "link.mp4").symlink_to(outside)
    base = {"key": "f" * 64, "chunk": "c.0", "host": "https://queue.fal.run", "endpoint": "fal-ai/x/y",
            "request_id": "r1", **_urls("https://queue.fal.run", "fal-ai/x/y", "r1")}
    from ltxflow.backends.journal import JournalEntry

    def download(name):
        return journal.result_of(JournalEntry.model_validate({**base, "result_file": name}))
    assert download("r1.mp4") == journal.results / "r1.mp4"
    assert download(str(journal.results / "r1.mp4")) == journal.results / "r1.mp4"  # an older version's path
    assert download("cache/journal/results/r1.mp4") == journal.results / "r1.mp4"
    for name in (str(outside), "../../secret.mp4", "link.mp4", "..", "", ".", "results"):
        assert download(name) is None, name
    journal.dir.mkdir(exist_ok=True)
    (journal.dir / f"{'f' * 64}.json").write_text(json.dumps({**base, "result_file": str(outside)}))
    journal.remove("f" * 64)
    assert outside.read_bytes() == b"the user's own file" and not (journal.dir / f"{'f' * 64}.json").exists()


def test_plan_counts_a_planted_entry_as_to_render(tmp_path, fake, listener):
    """A planted entry cannot hide a chunk's cost from plan or the --max-cost guard."""
    project = fal_project(tmp_path)
    chunk = plan_of(project, fake)["chunks"][0]
    _plant(project, _entry(project, fake, chunk, **_urls(listener.url, chunk["endpoint"], "planted")))
    plan = plan_of(project, fake)
    assert {c["status"] for c in plan["chunks"]} == {"render"}
    assert plan["totals"]["cost_now_usd"] == plan["totals"]["cost_usd"] > 0
    assert listener.seen == []


def test_cancel_never_sends_the_key_to_a_foreign_host(tmp_path, fake, listener):
    project = fal_project(tmp_path)
    chunk = plan_of(project, fake)["chunks"][0]
    path = _plant(project, _entry(project, fake, chunk, **_urls(listener.url, chunk["endpoint"], "planted")))
    r = ltx("cancel", str(project), cwd=tmp_path, env=fal_env(fake))
    assert r.returncode == 0, r.stderr
    assert f"{chunk['key']}.json" in r.stderr and "status_url is not on the configured fal queue" in r.stderr
    assert "not followed" in r.stderr and "no requests in flight" in r.stdout
    assert listener.seen == [] and not path.exists()
    assert KEY not in r.stdout + r.stderr


def test_cancel_leaves_a_sound_request_of_another_queue_alone(tmp_path, fake, listener):
    """An entry journalled (soundly) against another queue, say a build run with another
    LTXFLOW_FAL_QUEUE_URL: cancel neither follows it nor deletes it."""
    project = fal_project(tmp_path)
    chunk = plan_of(project, fake)["chunks"][0]
    path = _plant(project, _entry(project, fake, chunk, host=listener.url,
                                  **_urls(listener.url, chunk["endpoint"], "planted")))
    r = ltx("cancel", str(project), cwd=tmp_path, env=fal_env(fake))
    assert r.returncode == 0, r.stderr
    assert "journalled against another fal queue" in r.stderr and "left as it is" in r.stderr
    assert path.exists() and listener.seen == []


def test_a_renamed_chunk_with_the_same_key_collects_its_request(tmp_path, fake):
    """Keys, not chunk ids, name a request (a scene renamed, two projects sharing a cache): the
    journalled request is collected, not paid again."""
    import dataclasses

    from test_falapi import _api, _request

    api, journal = _api(fake), Journal(tmp_path / "cache", tmp_path / "p.yaml")
    backend = FalBackend(api, journal, UploadStore(tmp_path / "cache", fake.url, api.upload),
                         poll=PollPolicy(0.01, 0.05))
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    try:
        first = backend.render(_request(tmp_path, "e" * 64), tmp_path / "w1")
        again = backend.render(dataclasses.replace(_request(tmp_path, "e" * 64), chunk_id="chorus.0",
                                                   scene_id="chorus"), tmp_path / "w2")
    finally:
        backend.close()
    assert again.details["resumed"] is True and again.details["request_id"] == first.details["request_id"]
    assert sorted(fake.submit_counts().values()) == [1]


def test_one_hosted_build_at_a_time_uses_a_cache(tmp_path, fake):
    project = fal_project(tmp_path)
    fake.paused = True  # the first build's requests wait in the queue
    first = _start(project, fake)
    _wait(lambda: _journalled(project) == 2, what="the first build's two journalled submits")
    assert {c["status"] for c in plan_of(project, fake)["chunks"]} == {"submitted"}  # plan takes no lock
    r, evs = build(project, fake)
    assert r.returncode == 1
    assert f"another hosted build (pid {first.pid}, project {project.resolve()})" in r.stderr
    assert "wait for it or stop it" in r.stderr and "nothing was submitted" in r.stderr
    assert not [e for e in evs if e["event"] in ("chunk_submitted", "chunk_resumed")]
    fake.paused = False
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert sorted(fake.submit_counts().values()) == [1, 1] and len(queued(fake)) == 2
    # The lock file now names a dead build: it is taken over, and nothing is submitted again.
    lock = tmp_path / "cache" / "journal" / ".lock"
    assert json.loads(lock.read_text())["pid"] == first.pid
    project.write_text(project.read_text().replace("neon sign flickers", "neon sign hums"))
    r, evs = build(project, fake)
    assert r.returncode == 0, r.stderr
    assert [e["chunk"] for e in evs if e["event"] == "chunk_submitted"] == ["intro.0"]
    assert len(queued(fake)) == 3 and set(fake.submit_counts().values()) == {1}


def test_a_stale_or_planted_lock_file_does_not_block(tmp_path, fake):
    project = fal_project(tmp_path / "proj")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = project.parent / "cache" / "journal" / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": int(dead.stdout), "project": "/elsewhere/song.yaml"}))
    r, _ = build(project, fake)
    assert r.returncode == 0, r.stderr
    assert json.loads(lock.read_text()) == {"pid": json.loads(lock.read_text())["pid"], "project": str(project.resolve())}


# Links inside the cache are refused by the cache itself before a build starts; the journal does not
# rely on that: these go through its own code, without the CLI.


def test_a_lock_file_planted_as_a_link_is_replaced_not_written_through(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_text("keep me")
    journal = Journal(tmp_path / "cache", tmp_path / "song.yaml")
    journal.dir.mkdir(parents=True)
    (journal.dir / ".lock").symlink_to(target)
    held = journal.lock()
    try:
        assert target.read_text() == "keep me" and not (journal.dir / ".lock").is_symlink()
        with pytest.raises(CacheInUse, match=f"pid {os.getpid()}, project {tmp_path / 'song.yaml'}"):
            journal.lock()  # another open file description: refused, as another process would be
    finally:
        held.release()
    journal.lock().release()


def test_a_result_file_linked_out_of_the_cache_is_never_used_or_deleted(tmp_path, fake):
    from test_falapi import _api, _request

    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"the user's own file")
    api, journal = _api(fake), Journal(tmp_path / "cache", tmp_path / "p.yaml")
    request = _request(tmp_path, "c" * 64)
    entry = {"key": request.key, "chunk": request.chunk_id, "project": journal.project, "host": fake.url,
             "endpoint": request.endpoint, "request_id": "planted", "result_file": "planted.mp4",
             "start_image": file_digest(request.start_image),
             **_urls(fake.url, request.endpoint, "planted")}
    journal.dir.mkdir(parents=True)
    (journal.dir / f"{request.key}.json").write_text(json.dumps(entry))
    journal.results.mkdir()
    (journal.results / "planted.mp4").symlink_to(outside)
    found = journal.read(request.key, fake.url)
    assert found.entry is not None and journal.result_of(found.entry) is None  # a link is never the download
    backend = FalBackend(api, journal, UploadStore(tmp_path / "cache", fake.url, api.upload),
                         poll=PollPolicy(0.01, 0.05))
    (tmp_path / "w").mkdir()
    try:
        with pytest.raises(BackendError, match="fal does not know request planted"):
            backend.render(request, tmp_path / "w")  # followed instead: fal has no such request
    finally:
        backend.close()
    assert journal.get(request.key) is None  # forgotten; the link's target untouched
    assert outside.read_bytes() == b"the user's own file"


def test_a_request_that_never_leaves_the_queue_stops_being_followed(tmp_path, fake):
    project = fal_project(tmp_path)
    fake.paused = True
    env = {**fal_env(fake), "LTXFLOW_FAL_POLL": "0.05,0.1,1"}
    r = ltx("build", str(project), "--log-format", "json", cwd=tmp_path, env=env)
    assert r.returncode == 1
    failed = [json.loads(line) for line in r.stdout.splitlines() if '"chunk_failed"' in line]
    assert sorted(e["chunk"] for e in failed) == ["drop.0", "intro.0"]
    for e in failed:
        assert "still IN_QUEUE on fal after 1 s" in e["error"] and "stays journalled" in e["error"]
        assert "build again" in e["error"] and f"ltxflow cancel {project.resolve()}" in e["error"]
    assert _journalled(project) == 2
    fake.paused = False
    r, evs = build(project, fake)  # the next build collects them, paying nothing more
    assert r.returncode == 0, r.stderr
    assert sorted(e["chunk"] for e in evs if e["event"] == "chunk_resumed") == ["drop.0", "intro.0"]
    assert sorted(fake.submit_counts().values()) == [1, 1]


def test_a_submit_answered_with_garbage_is_a_possible_duplicate_charge(tmp_path):
    project = fal_project(tmp_path)
    with FakeFal(faults=["garbled@intro"]) as fake:
        r, evs = build(project, fake)
        counts = fake.submit_counts()
    assert r.returncode == 0, r.stderr
    warnings = [e["message"] for e in evs if e["event"] == "warning"]
    assert any("intro.0: possible duplicate charge" in m and "not JSON" in m for m in warnings), warnings
    assert sorted(counts.values()) == [1, 2]  # the garbled answer's job, and the one followed


def test_a_download_over_the_cap_fails_cleanly(tmp_path, fake):
    project = fal_project(tmp_path)
    r = ltx("build", str(project), "--log-format", "json", cwd=tmp_path,
            env={**fal_env(fake), "LTXFLOW_FAL_MAX_DOWNLOAD_MB": "0.001"})
    assert r.returncode == 1
    failed = [json.loads(line) for line in r.stdout.splitlines() if '"chunk_failed"' in line]
    assert sorted(e["chunk"] for e in failed) == ["drop.0", "intro.0"]
    for e in failed:
        assert e["error"].startswith(f"{e['chunk']}: download ") and "larger than the cap" in e["error"]
        assert "LTXFLOW_FAL_MAX_DOWNLOAD_MB" in e["error"] and "stays journalled" in e["error"]
    results = tmp_path / "cache" / "journal" / "results"
    assert [p.name for p in results.iterdir()] == []  # no partial file
    assert _journalled(project) == 2  # paid for: a build with a higher cap collects them
    r, evs = build(project, fake)
    assert r.returncode == 0, r.stderr
    assert sorted(fake.submit_counts().values()) == [1, 1]


# -- the client and the journal's checks, without a build ---------------------------------------------


def _mock_api(seen: list, handler=None, max_download: int = 2**20) -> FalApi:
    def respond(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("authorization")))
        return handler(request) if handler else httpx.Response(200, json={"status": "IN_QUEUE"})

    return FalApi(FalKey("s3cret"), FalHosts("http://queue.test", "http://rest.test"),
                  client=httpx.Client(transport=httpx.MockTransport(respond)), policy=RetryPolicy(2, 0.01, 0.02, 5),
                  max_download=max_download)


def test_the_client_never_sends_the_key_to_another_origin(tmp_path):
    seen: list = []
    api = _mock_api(seen)
    for url in ("http://evil.test/fal-ai/x/requests/r/status", "http://queue.test:8080/fal-ai/x/requests/r/status",
                "https://queue.test/fal-ai/x/requests/r/status", "http://user@queue.test/x", "file:///etc/passwd"):
        with pytest.raises(FalError, match="refusing to send the fal key") as exc:
            api.status(Handle("fal-ai/x", "r", url, url, url))
        assert exc.value.transient is False and "s3cret" not in str(exc.value)
    assert seen == []
    api.status(Handle("fal-ai/x", "r", "http://queue.test/fal-ai/x/requests/r/status", "", ""))
    assert seen == [("http://queue.test/fal-ai/x/requests/r/status?logs=1", "Key s3cret")]
    seen.clear()
    body = b"clip" * 10
    api = _mock_api(seen, lambda req: httpx.Response(200, content=body))
    assert api.download("http://cdn.elsewhere/out.mp4", tmp_path / "out.mp4") == len(body)
    assert seen == [("http://cdn.elsewhere/out.mp4", None)]  # downloads carry no key


@pytest.mark.parametrize("with_length", [True, False])
def test_a_download_over_the_cap_leaves_nothing(tmp_path, with_length):
    seen: list = []
    blocks = [b"x" * 600, b"y" * 600]
    content = b"".join(blocks) if with_length else iter(blocks)  # an iterator: streamed, no Content-Length
    api = _mock_api(seen, lambda req: httpx.Response(200, content=content), max_download=1000)
    with pytest.raises(FalError, match="larger than the cap") as exc:
        api.download("http://cdn.test/out.mp4", tmp_path / "out.mp4")
    assert exc.value.transient is False
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("answer", [httpx.Response(200, text="<html>502</html>"),
                                    httpx.Response(200, json={"request_id": "r"}),
                                    httpx.Response(202, json=["not", "a", "handle"])])
def test_a_submit_answered_without_a_handle_is_submit_lost(answer):
    api = _mock_api([], lambda req: answer)
    with pytest.raises(SubmitLost, match="fal may have queued it"):
        api.submit("fal-ai/ltx-2.3/x", {"prompt": "p"})


Q = "https://queue.fal.run"
EP = "fal-ai/ltx-2.3-quality/audio-to-video/lora"


@pytest.mark.parametrize("base, request_id, endpoint, problem", [
    (f"{Q}/fal-ai/ltx-2.3-quality/requests/r1", "r1", EP, None),  # as fal answers
    (f"{Q}/fal-ai/ltx-2.3-quality/audio-to-video/lora/requests/r1", "r1", EP, None),  # with the endpoint's path
    (f"{Q}:443/fal-ai/ltx-2.3-quality/requests/r1", "r1", EP, None),  # the default port, spelled out
    (f"{Q}/fal-ai/ltx-2.3-quality/image-to-video/requests/r1", "r1", EP, "not request r1"),
    (f"{Q}/fal-ai/ltx-2.3-22b/requests/r1", "r1", EP, "not request r1"),
    (f"{Q}/fal-ai/ltx-2.3-quality/requests/r2", "r1", EP, "not request r1"),
    (f"{Q}/fal-ai/ltx-2.3-quality/requests/r1/../r2", "r1", EP, "not request r1"),
    ("https://queue.fal.run.evil.test/fal-ai/ltx-2.3-quality/requests/r1", "r1", EP, "not on the configured"),
    ("http://queue.fal.run/fal-ai/ltx-2.3-quality/requests/r1", "r1", EP, "not on the configured"),
    ("https://queue.fal.run:8443/fal-ai/ltx-2.3-quality/requests/r1", "r1", EP, "not on the configured"),
    ("https://k@queue.fal.run/fal-ai/ltx-2.3-quality/requests/r1", "r1", EP, "not on the configured"),
    (f"{Q}/fal-ai/ltx-2.3-quality/requests/r1", "r/../1", EP, "request_id"),
    (f"{Q}/fal-ai/ltx-2.3-quality/requests/r1", "r1", "fal-ai/../x", "endpoint"),
])
def test_which_handles_are_followed(base, request_id, endpoint, problem):
    said = handle_problem(Handle(endpoint, request_id, f"{base}/status", base, f"{base}/cancel"), Q)
    assert said is None if problem is None else problem in said


def test_a_query_or_another_suffix_is_not_followed():
    base = f"{Q}/fal-ai/ltx-2.3-quality/requests/r1"
    for status in (f"{base}/status?x=1", f"{base}/cancel", f"{base}/status#x"):
        assert handle_problem(Handle(EP, "r1", status, base, f"{base}/cancel"), Q) is not None
