"""Uploads in parts (fal storage's multipart protocol) against the fake fal over real HTTP: parts
sent and retried, an interrupted upload resumed with the missing parts only, a parts record that
is not ours ignored, and the fake refusing what fal would."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from conftest import write_lora
from test_build import events, ltx
from test_fal import fal_env, fal_project

from ltxflow.backends.falapi import FalApi, FalHosts, FalKey, RetryPolicy
from ltxflow.backends.falstore import UploadStore
from ltxflow.errors import FalError, Stopped
from ltxflow.events import problems
from ltxflow.fakefal import FakeFal

PART = 64 * 1024
SIZE = 5 * PART - 1000  # five parts, the last one short


@pytest.fixture
def fake():
    with FakeFal() as server:
        yield server


def _api(fake: FakeFal, retried: list | None = None, threads: int = 3) -> FalApi:
    return FalApi(FalKey("k"), FalHosts(fake.url, fake.url), policy=RetryPolicy(3, 0.01, 0.05, 10),
                  on_retry=lambda *a: retried.append(a) if retried is not None else None,
                  multipart_threshold=2 * PART, part_size=PART, part_threads=threads)


def _file(tmp_path: Path, size: int = SIZE) -> Path:
    path = tmp_path / "big.safetensors"
    path.write_bytes(os.urandom(size))
    return path


def _calls(fake: FakeFal, call: str, status: int | None = 200) -> list[dict]:
    return [c for c in fake.storage_calls if c["call"] == call and (status is None or c["status"] == status)]


def _records(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "fal" / "uploads").glob("*.parts.json"))


def test_a_large_file_goes_up_in_parts_and_arrives_whole_once(tmp_path, fake):
    big, events = _file(tmp_path), []
    store = UploadStore(tmp_path / "cache", fake.url, _api(fake).upload, lambda name, **f: events.append((name, f)))
    url = store.url_for(big, "verse.0")
    assert fake.local_file(url).read_bytes() == big.read_bytes()
    assert len(_calls(fake, "start")) == 1 and len(_calls(fake, "complete")) == 1
    assert sorted(c["part"] for c in _calls(fake, "part")) == [1, 2, 3, 4, 5]
    assert fake.state()["uploads"] == 1 and not fake.multipart and not _records(tmp_path)  # nothing left over
    progress = [f for name, f in events if name == "upload_progress"]
    assert [f["parts_done"] for f in progress] == [0, 1, 2, 3, 4, 5]
    assert progress[-1]["bytes_done"] == progress[-1]["bytes"] == SIZE and progress[-1]["chunk"] == "verse.0"
    assert all(problems(name, f) == [] for name, f in events)
    # Once per digest: another build on the same cache sends nothing.
    assert UploadStore(tmp_path / "cache", fake.url, _api(fake).upload).url_for(big) == url
    assert len(fake.storage_calls) == 7


def test_a_small_file_is_one_upload(tmp_path, fake):
    small = _file(tmp_path, 2 * PART)  # not above the threshold
    url = _api(fake).upload(small, "application/octet-stream", 3600)
    assert fake.local_file(url).read_bytes() == small.read_bytes()
    assert fake.storage_calls == [] and fake.state()["uploads"] == 1


def test_a_part_that_fails_for_a_while_is_sent_again(tmp_path, fake):
    big, retried = _file(tmp_path), []
    fake.part_faults = ["503", "drop"]
    url = _api(fake, retried, threads=1).upload(big, "application/octet-stream", 3600)
    assert fake.local_file(url).read_bytes() == big.read_bytes()
    assert [c["status"] for c in _calls(fake, "part", None)] == [503, 0, 200, 200, 200, 200, 200]
    assert [r[0] for r in retried] == ["upload big.safetensors part 1/5"] * 2


@pytest.mark.parametrize("how", ["stop", "fault"])
def test_an_interrupted_upload_resumes_with_the_missing_parts_only(tmp_path, fake, how):
    big = _file(tmp_path)
    api = _api(fake, threads=1)

    def emit(name, **f):  # after the second part: a stop (Ctrl-C), or fal failing for good
        if name == "upload_progress" and f["parts_done"] == 2:
            if how == "stop":
                api.stop.set()
            else:
                fake.part_faults = ["500"] * 3

    with pytest.raises(Stopped if how == "stop" else FalError):
        UploadStore(tmp_path / "cache", fake.url, api.upload, emit).url_for(big)
    [record] = _records(tmp_path)
    assert sorted(json.loads(record.read_text())["parts"]) == ["1", "2"]
    assert fake.state()["uploads"] == 0
    before = len(fake.storage_calls)
    url = UploadStore(tmp_path / "cache", fake.url, _api(fake).upload).url_for(big)
    again = fake.storage_calls[before:]
    assert [c["call"] for c in again if c["call"] == "start"] == []  # the same upload, continued
    assert sorted(c["part"] for c in again if c["call"] == "part") == [3, 4, 5]
    assert fake.local_file(url).read_bytes() == big.read_bytes() and not _records(tmp_path)


def _plant(tmp_path: Path, fake: FakeFal, big: Path) -> Path:
    """A genuine parts record with two parts sent (the build stopped there)."""
    api = _api(fake, threads=1)

    def emit(name, **f):
        if name == "upload_progress" and f["parts_done"] == 2:
            api.stop.set()

    with pytest.raises(Stopped):
        UploadStore(tmp_path / "cache", fake.url, api.upload, emit).url_for(big)
    return _records(tmp_path)[0]


BAD_RECORDS = {
    "not JSON": lambda d: "{",
    "a list": lambda d: [d],
    "a field more": lambda d: {**d, "extra": 1},
    "a field less": lambda d: {k: v for k, v in d.items() if k != "started"},
    "other content": lambda d: {**d, "digest": "0" * 64},
    "another part size": lambda d: {**d, "part_size": PART * 2},
    "a size as text": lambda d: {**d, "size": str(d["size"])},
    "off fal's storage": lambda d: {**d, "access_url": "http://127.0.0.1:9/files/x/big.safetensors"},
    "a part out of range": lambda d: {**d, "parts": {**d["parts"], "6": '"x"'}},
    "a part number padded": lambda d: {**d, "parts": {"01": d["parts"]["1"]}},
    "an etag not text": lambda d: {**d, "parts": {"1": 5}},
    "an upload id empty": lambda d: {**d, "upload_id": ""},
    "started in the future": lambda d: {**d, "started": d["started"] + 3600},
    "started days ago": lambda d: {**d, "started": d["started"] - 3 * 24 * 3600},
    "started as a boolean": lambda d: {**d, "started": True},
}


@pytest.mark.parametrize("bad", sorted(BAD_RECORDS))
def test_a_parts_record_that_is_not_ours_is_ignored_and_the_upload_starts_over(tmp_path, fake, bad):
    big = _file(tmp_path)
    record = _plant(tmp_path, fake, big)
    planted = BAD_RECORDS[bad](json.loads(record.read_text()))
    record.write_text(planted if isinstance(planted, str) else json.dumps(planted))
    before = len(fake.storage_calls)
    url = UploadStore(tmp_path / "cache", fake.url, _api(fake).upload).url_for(big)
    again = fake.storage_calls[before:]
    assert [c["call"] for c in again].count("start") == 1
    assert sorted(c["part"] for c in again if c["call"] == "part") == [1, 2, 3, 4, 5]
    assert all(c["status"] == 200 for c in again)  # nothing was sent where the record pointed
    assert fake.local_file(url).read_bytes() == big.read_bytes() and not _records(tmp_path)


def test_a_recorded_upload_fal_no_longer_knows_is_started_over(tmp_path, fake):
    big = _file(tmp_path)
    _plant(tmp_path, fake, big)
    fake.multipart.clear()  # fal dropped the unfinished upload
    before = len(fake.storage_calls)
    url = UploadStore(tmp_path / "cache", fake.url, _api(fake, threads=1).upload).url_for(big)
    again = fake.storage_calls[before:]
    assert [(c["call"], c["status"]) for c in again][:2] == [("part", 404), ("start", 200)]
    assert fake.local_file(url).read_bytes() == big.read_bytes()


def test_the_fake_refuses_what_fal_would(fake):
    with httpx.Client() as http:
        token = http.post(f"{fake.url}/storage/auth/token", headers={"Authorization": "Key k"}, json={}).json()
        auth = {"Authorization": f"Bearer {token['token']}"}
        assert http.post(f"{fake.url}/files/upload/multipart").status_code == 401
        start = http.post(f"{fake.url}/files/upload/multipart", headers={**auth, "X-Fal-File-Name": "a.bin"}).json()
        base = f"{start['access_url']}/multipart/{start['uploadId']}"
        etags = {n: http.put(f"{base}/{n}", content=bytes([n]) * 10, headers=auth).headers["etag"] for n in (1, 3)}
        for n in ("0", "10001", "x", "01"):
            assert http.put(f"{base}/{n}", content=b"x", headers=auth).status_code == 400, n
        assert http.put(f"{start['access_url']}/multipart/nope/1", content=b"x", headers=auth).status_code == 404
        assert http.put(f"{base}/2", content=b"x").status_code == 401

        def complete(parts):
            return http.post(f"{base}/complete", json=parts, headers=auth)

        assert complete({"parts": []}).status_code == 400  # complete without parts
        assert complete({}).status_code == 400
        assert complete({"parts": [{"partNumber": 1, "etag": etags[1]},
                                   {"partNumber": 3, "etag": etags[3]}]}).status_code == 400  # part 2 missing
        assert complete({"parts": [{"partNumber": 1, "etag": etags[3]}]}).status_code == 400  # wrong etag
        assert complete({"parts": [{"partNumber": 1, "etag": etags[1]}] * 2}).status_code == 400
        assert http.get(start["access_url"]).status_code == 404  # nothing stored yet
        ok = complete({"parts": [{"partNumber": 1, "etag": etags[1]}]})
        assert ok.status_code == 200 and http.get(start["access_url"]).content == b"\x01" * 10
        assert complete({"parts": [{"partNumber": 1, "etag": etags[1]}]}).status_code == 404  # done already


def test_a_build_uploads_a_large_lora_in_parts(tmp_path, fake):
    scene = """
  - id: opening
    prompt: "opening: a singer under neon"
    image: keyframes/a.png
    endpoint: fal-ai/ltx-2.3-quality/audio-to-video/lora
    loras: [{path: loras/style.safetensors, scale: 0.8}]
"""
    project = fal_project(tmp_path, scene, seconds=1.0)
    lora = write_lora(tmp_path / "loras" / "style.safetensors", tensors=6000)  # ~0.4 MiB
    r = ltx("build", str(project), "--log-format", "json", cwd=project.parent,
            env={**fal_env(fake), "LTXFLOW_FAL_MULTIPART_MB": "0.25"})
    evs = events(r.stdout)
    assert r.returncode == 0, r.stderr
    [body] = [s["body"] for s in fake.state()["submits"] if s["queued"]]
    assert fake.local_file(body["loras"][0]["path"]).read_bytes() == lora.read_bytes()
    assert _calls(fake, "start") and len(_calls(fake, "start")) == len(_calls(fake, "complete"))
    assert any(e["event"] == "upload_progress" and e["file"] == "style.safetensors" for e in evs)
