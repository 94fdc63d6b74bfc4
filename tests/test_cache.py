"""The chunk store: atomic entries, first commit wins, damage detected by digest."""

from __future__ import annotations

import json

from ltxflow.execute.cache import Cache
from ltxflow.execute.record import Record


def work_with(cache: Cache, name: str, content: bytes):
    work = cache.work_dir(name)
    (work / "raw.mp4").write_bytes(content)
    return work


def test_first_commit_wins_and_the_second_is_discarded(tmp_path):
    cache = Cache(tmp_path / "c")
    key = "ab" * 32
    first, ours1 = cache.commit(work_with(cache, "a", b"first"), key, Record(key, raw="raw.mp4"))
    second_work = work_with(cache, "b", b"second")
    second, ours2 = cache.commit(second_work, key, Record(key, raw="raw.mp4"))
    assert ours1 and not ours2
    assert second.dir == first.dir and (first.dir / "raw.mp4").read_bytes() == b"first"
    assert not second_work.exists()
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


def test_an_unusable_entry_is_replaced(tmp_path):
    cache = Cache(tmp_path / "c")
    key = "cd" * 32
    d = cache.entry_dir(key)
    d.mkdir(parents=True)
    (d / "record.json").write_text("{broken")
    entry, ours = cache.commit(work_with(cache, "a", b"new"), key, Record(key, raw="raw.mp4"))
    assert ours and json.loads((entry.dir / "record.json").read_text())["key"] == key


def test_an_entry_made_from_another_start_is_replaced(tmp_path):
    # A chained chunk renders again when its start image changed; its key did not (colour matching
    # of the chunk before it changed), so the old entry must give way to the new one.
    cache = Cache(tmp_path / "c")
    key = "ee" * 32
    old, new = "0" * 64, "1" * 64  # the start images' digests
    cache.commit(work_with(cache, "a", b"old"), key, Record(key, raw="raw.mp4", chain_digest=old))
    entry, ours = cache.commit(work_with(cache, "b", b"new"), key, Record(key, raw="raw.mp4", chain_digest=new),
                               usable=lambda e: e.record.chain_digest == new)
    assert ours and (entry.dir / "raw.mp4").read_bytes() == b"new"
    assert cache.lookup(key)[0].record.chain_digest == new
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


def test_half_written_work_is_never_an_entry(tmp_path):
    cache = Cache(tmp_path / "c")
    key = "ef" * 32
    work_with(cache, "a", b"raw")  # a render that died before its commit
    assert cache.lookup(key) == (None, None)
    assert len(cache.stale_tmp()) == 0  # its process (this one) is alive: not stale yet


def test_a_record_is_read_typed_and_a_malformed_one_is_unusable(tmp_path):
    cache = Cache(tmp_path / "c")
    key = "ff" * 32
    digest = "d" * 64
    entry, _ = cache.commit(work_with(cache, "a", b"clip"), key, Record(key, raw="raw.mp4", variants={"v": digest}))
    path = entry.dir / "record.json"
    data = json.loads(path.read_text())
    assert data["variants"] == {"v": digest} and data["drawn"] is False and cache.lookup(key)[0].record == entry.record
    # An older record lacks fields (defaults), a newer one has more (left out); neither is damage.
    path.write_text(json.dumps({"key": key, "raw": "raw.mp4", "added_later": 1}))
    record = cache.lookup(key)[0].record
    assert record.variants == {} and record.stat == {} and not hasattr(record, "added_later")
    for bad, field in (({"key": key, "raw": "raw.mp4", "variants": ["v"]}, "variants"), ({"key": key, "raw": 7}, "raw"),
                       ({"key": key}, "raw"), ({"key": key, "raw": "raw.mp4", "chain_digest": 3}, "chain_digest"),
                       (["not", "an", "object"], "not a JSON object"), ({"key": "ee" * 32, "raw": "raw.mp4"}, "key")):
        path.write_text(json.dumps(bad))
        entry, problem = cache.lookup(key)
        assert entry is None and problem.startswith(f"{path}: invalid record (") and field in problem, (bad, problem)
    path.write_text(json.dumps({"key": key, "drawn": True, "raw": None}))  # a drawing backend's: no raw clip
    assert cache.lookup(key)[0].raw is None
