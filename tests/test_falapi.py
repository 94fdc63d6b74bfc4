"""The fal client's parts: key handling, retry policy, uploads, the journal, the fake's validation."""

from __future__ import annotations

import json
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import write_lora, write_png

from ltxflow.backends.base import ChunkRequest
from ltxflow.backends.fal import FalBackend, PollPolicy
from ltxflow.backends.falapi import FalApi, FalAuthError, FalHosts, FalKey, RetryPolicy
from ltxflow.backends.falstore import UploadStore
from ltxflow.endpoints import catalog
from ltxflow.backends.journal import Journal
from ltxflow.fakefal import FakeFal
from ltxflow.fakefal.faults import Fault
from ltxflow.fakefal.validate import validate


def test_the_key_comes_from_the_environment_and_never_shows():
    assert FalKey.from_env({}) is None
    assert FalKey.from_env({"FAL_KEY": "  "}) is None
    assert FalKey.from_env({"FAL_KEY": "abc"}).header() == "Key abc"
    assert FalKey.from_env({"FAL_KEY_ID": "id", "FAL_KEY_SECRET": "s"}).header() == "Key id:s"
    key = FalKey("top-secret")
    assert "top-secret" not in repr(key) + str(key) + f"{key}" + repr({"k": key})


def test_hosts_and_policies_from_the_environment():
    assert FalHosts.from_env({}) == FalHosts("https://queue.fal.run", "https://rest.fal.ai", None)
    assert FalHosts.from_env({"LTXFLOW_FAL_QUEUE_URL": "http://127.0.0.1:9/", "LTXFLOW_FAL_CDN_URL": "http://c"}) == \
        FalHosts("http://127.0.0.1:9", "https://rest.fal.ai", "http://c")
    assert RetryPolicy.from_env({"LTXFLOW_FAL_RETRY": "3,0.5"}) == RetryPolicy(3, 0.5, 30.0, 60.0)
    assert PollPolicy.from_env({"LTXFLOW_FAL_POLL": "0.2,2"}) == PollPolicy(0.2, 2.0)


def test_backoff_grows_with_jitter_is_capped_and_honours_retry_after():
    p = RetryPolicy(attempts=8, base_s=1.0, max_s=10.0)
    for attempt, (lo, hi) in {1: (0.5, 1.5), 2: (1.0, 3.0), 3: (2.0, 6.0), 6: (5.0, 15.0)}.items():
        delays = [p.delay(attempt) for _ in range(200)]
        assert lo <= min(delays) and max(delays) <= hi and max(delays) - min(delays) > 0.1 * lo
    assert p.delay(3, retry_after=2.5) == 2.5 and p.delay(1, retry_after=99) == 10.0


@pytest.mark.parametrize("spec, fault", [
    ("429", Fault("429")),
    ("429x3", Fault("429", None, 3)),
    ("slow:20@verse", Fault("slow", "20", 1, "verse")),
    ("error:out of memory x2", None),
    ("frames:-8x2@intro", Fault("frames", "-8", 2, "intro")),
    ("422:num_frames", Fault("422", "num_frames")),
])
def test_fault_specs(spec, fault):
    if fault is None:  # a free-text argument may contain spaces; "x2" after one is part of it
        assert Fault.parse(spec).arg == "out of memory x2"
    else:
        assert Fault.parse(spec) == fault


@pytest.mark.parametrize("spec", ["bogus", "slow", "slow:soon", "fps:-1", "422", ""])
def test_bad_fault_specs_are_refused(spec):
    with pytest.raises(ValueError, match="bad fault"):
        Fault.parse(spec)


@pytest.mark.parametrize("endpoint, body, locs", [
    ("fal-ai/ltx-2.3-quality/image-to-video", {"prompt": "p"}, {"image_url"}),
    ("fal-ai/ltx-2.3-quality/image-to-video", {"prompt": "p", "image_url": "ftp://x", "num_frames": 8},
     {"image_url", "num_frames"}),
    ("fal-ai/ltx-2.3-quality/image-to-video", {"prompt": "p", "image_url": "https://x/a.png", "fps": 24}, {"fps"}),
    ("fal-ai/ltx-2.3-22b/image-to-video/lora",
     {"prompt": "p", "image_url": "https://x/a.png", "loras": [{"path": "https://x/l", "scale": 1, "transformer": "both"}]},
     {"loras.0"}),
    ("fal-ai/ltx-2.3-quality/audio-to-video/lora",
     {"prompt": "p", "audio_url": "https://x/a.wav", "loras": [{"path": "https://x/l", "scale": 1, "transformer": "video"}],
      "resolution": {"width": 0, "height": 64}},
     {"loras.0.transformer", "resolution"}),
    ("fal-ai/ltx-2.3-22b/distilled/audio-to-video",
     {"prompt": "p", "audio_url": "https://x/a.wav", "video_size": "landscape_16_9", "camera_lora": "dolly_in",
      "seed": 5}, set()),
])
def test_the_fake_validates_bodies_against_the_catalog(endpoint, body, locs):
    with FakeFal() as fake:
        details = validate(catalog().endpoints[endpoint], body, fake)
    assert {".".join(str(x) for x in d["loc"][1:]) for d in details} == locs
    assert all({"loc", "msg", "type"} <= set(d) for d in details)


@pytest.fixture
def fake():
    with FakeFal() as server:
        yield server


def _api(fake: FakeFal, key: str | None = "k") -> FalApi:
    return FalApi(FalKey(key) if key else None, FalHosts(fake.url, fake.url), policy=RetryPolicy(3, 0.01, 0.05, 10))


def test_uploads_happen_once_per_digest_and_again_when_the_url_nears_expiry(tmp_path, fake):
    api = _api(fake)
    a = write_png(tmp_path / "a.png")
    same = tmp_path / "copy-of-a.png"
    same.write_bytes(a.read_bytes())
    store = UploadStore(tmp_path / "cache", fake.url, api.upload)
    urls = [store.url_for(a), store.url_for(same)]
    threads = [threading.Thread(target=lambda: urls.append(store.url_for(a))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(urls)) == 1 and fake.state()["uploads"] == 1
    assert fake.local_file(urls[0]).read_bytes() == a.read_bytes()
    # Another build (a new store on the same cache) reuses the recorded URL...
    assert UploadStore(tmp_path / "cache", fake.url, api.upload).url_for(a) == urls[0]
    assert fake.state()["uploads"] == 1
    # ...until too little of its lifetime is left, and never across hosts.
    record = next((tmp_path / "cache" / "fal" / "uploads").glob("*.json"))
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "expires": data["expires"] - 2 * 24 * 3600}))
    assert UploadStore(tmp_path / "cache", fake.url, api.upload).url_for(a) != urls[0]
    UploadStore(tmp_path / "cache", "http://elsewhere", api.upload).url_for(a)
    assert fake.state()["uploads"] == 3
    assert "k" not in {v for p in record.parent.glob("*.json") for v in json.loads(p.read_text()).values()
                       if isinstance(v, str)}


def test_a_large_file_streams_and_a_rejected_key_is_an_auth_error(tmp_path, fake):
    big = write_lora(tmp_path / "big.safetensors", tensors=200_000)  # ~3 MB, several blocks
    url = _api(fake).upload(big, "application/octet-stream", 3600)
    assert fake.local_file(url).read_bytes() == big.read_bytes()
    with FakeFal(keys={"right"}) as strict:
        with pytest.raises(FalAuthError, match="rejected the key"):
            _api(strict, "wrong").check_key()
        _api(strict, "right").check_key()
    with pytest.raises(FalAuthError, match="FAL_KEY"):
        _api(fake, None).check_key()


def _request(tmp_path: Path, key: str) -> ChunkRequest:
    return ChunkRequest(
        chunk_id="verse.0", key=key, scene_id="verse", endpoint="fal-ai/ltx-2.3-quality/image-to-video",
        family="ltx-2.3-quality",
        mode="image-to-video", prompt="p", values={}, args={"prompt": "p", "seed": 3, "num_frames": 9,
                                                           "frames_per_second": 24.0,
                                                           "resolution": {"width": 64, "height": 32}},
        seed=3, frames=9, width=64, height=32, fps=Fraction(24), timeline_frame=0,
        start_image=write_png(tmp_path / "start.png", (64, 32)))


def test_a_downloaded_result_is_used_without_asking_fal_again(tmp_path, fake):
    """A build that died after downloading a clip (paid for) and before committing it: the
    next build takes the clip from the journal and sends fal nothing."""
    api = _api(fake)
    journal = Journal(tmp_path / "cache", tmp_path / "p.yaml")
    backend = FalBackend(api, journal, UploadStore(tmp_path / "cache", fake.url, api.upload),
                         poll=PollPolicy(0.01, 0.05))
    (tmp_path / "w1").mkdir()
    first = backend.render(_request(tmp_path, "a" * 64), tmp_path / "w1")
    assert first.details["resumed"] is False and first.cost_usd > 0
    submits = len(fake.state()["submits"])
    entry = journal.get("a" * 64)
    result = journal.result_of(entry)
    assert entry is not None and result.is_file() and entry.request_id == first.details["request_id"]
    assert entry.result_file == result.name  # a name in journal/results/, never a path
    assert entry.project == str((tmp_path / "p.yaml").resolve())
    fake.jobs.clear()  # fal would not even know the request any more
    (tmp_path / "w2").mkdir()
    again = backend.render(_request(tmp_path, "a" * 64), tmp_path / "w2")
    assert again.details["resumed"] is True and len(fake.state()["submits"]) == submits
    assert again.clip.read_bytes() == first.clip.read_bytes()
    backend.committed("a" * 64)
    backend.close()
    assert journal.get("a" * 64) is None and not result.exists()


@pytest.mark.parametrize("written", ["absolute", "relative", "name"])
def test_an_entry_of_the_previous_version_is_collected_not_paid_again(tmp_path, fake, written):
    """Before entries were typed, result_file held the download's path as the build saw it
    (absolute, or relative to where it ran) and fal_seed whatever fal sent: such an entry is
    still collected from its download, never dropped and submitted again."""
    api = _api(fake)
    journal = Journal(tmp_path / "cache", tmp_path / "p.yaml")
    backend = FalBackend(api, journal, UploadStore(tmp_path / "cache", fake.url, api.upload),
                         poll=PollPolicy(0.01, 0.05))
    (tmp_path / "w1").mkdir()
    first = backend.render(_request(tmp_path, "d" * 64), tmp_path / "w1")
    path = journal.dir / f"{'d' * 64}.json"
    data = json.loads(path.read_text())
    result = journal.results / data["result_file"]
    data["result_file"] = {"absolute": str(result), "relative": f"cache/journal/results/{result.name}",
                           "name": result.name}[written]
    data["fal_seed"] = 1234.0  # fal's answer, kept as it came
    path.write_text(json.dumps(data))
    fake.jobs.clear()  # fal would not know the request any more: only the download can serve it
    submits = len(fake.state()["submits"])
    (tmp_path / "w2").mkdir()
    again = backend.render(_request(tmp_path, "d" * 64), tmp_path / "w2")
    backend.close()
    assert again.details["resumed"] is True and len(fake.state()["submits"]) == submits
    assert again.clip.read_bytes() == first.clip.read_bytes() and "fal_seed" not in again.details


def test_a_journalled_request_from_another_chain_frame_is_not_resumed(tmp_path, fake):
    api = _api(fake)
    warnings = []
    backend = FalBackend(api, Journal(tmp_path / "cache"), UploadStore(tmp_path / "cache", fake.url, api.upload),
                         poll=PollPolicy(0.01, 0.05), emit=lambda name, **f: warnings.append(f.get("message")))
    (tmp_path / "w1").mkdir()
    first = backend.render(_request(tmp_path, "b" * 64), tmp_path / "w1")
    request = _request(tmp_path, "b" * 64)
    write_png(request.start_image, (64, 32), (1, 2, 3))  # the chunk it chains from came out different
    (tmp_path / "w2").mkdir()
    second = backend.render(request, tmp_path / "w2")
    assert second.details["resumed"] is False and second.details["request_id"] != first.details["request_id"]
    assert any("started from another chain frame" in (w or "") for w in warnings)
    assert len(queued_submits := [s for s in fake.state()["submits"] if s["queued"]]) == 2
    assert queued_submits[0]["body"]["image_url"] != queued_submits[1]["body"]["image_url"]


@pytest.mark.parametrize("url", ["https://attacker.example/files/a.png", "http://127.0.0.1:9/a.png",
                                 "https://fal.media.attacker.example/a.png"])
def test_a_planted_upload_record_on_another_host_is_uploaded_again(tmp_path, fake, url):
    """A record committed into the cache naming a URL off fal's storage never reaches a request."""
    api = _api(fake)
    a = write_png(tmp_path / "a.png")
    store = UploadStore(tmp_path / "cache", fake.url, api.upload)
    first = store.url_for(a)
    record = next((tmp_path / "cache" / "fal" / "uploads").glob("*.json"))
    record.write_text(json.dumps({**json.loads(record.read_text()), "url": url}))
    again = UploadStore(tmp_path / "cache", fake.url, api.upload).url_for(a)
    assert again != url and again.startswith(fake.url) and fake.state()["uploads"] == 2
    assert first != url
    # On real fal (no CDN configured) a fal.media URL is kept; with a CDN configured only its origin.
    assert UploadStore(tmp_path, "https://rest.fal.ai", api.upload).on_cdn("https://v3b.fal.media/files/b/x.png")
    assert not UploadStore(tmp_path, "https://rest.fal.ai", api.upload, cdn="https://cdn.example").on_cdn(
        "https://v3b.fal.media/files/b/x.png")
